//! What is judged and what the judge is asked. Items are the prompts of a dataset (any
//! format the data layer reads): a record's messages up to its last user turn, its system
//! message included, so each side answers exactly what the record's user asked in the
//! setting the record gives. The judge gets a rubric and the prompt with two answers shown
//! as assistant A and assistant B, and must end with `[[A]]`, `[[B]]` or `[[C]]`; the
//! wording is tunelab's own, its shape MT-Bench's pairwise judge prompt ("pair-v2").

use super::error::JudgeError;
use crate::data::{Body, Dataset, Format, Message, Record, Role};
use crate::synth::message::{ChatRequest, Speaker};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// What the judge weighs when no `--rubric` is given.
pub const DEFAULT_RUBRIC: &str = "Judge the answers by their helpfulness (does the answer \
address what the user asked, clearly and usefully?) and their correctness (are its facts and \
its reasoning right?). A confident wrong answer is worse than a modest correct one.";

/// The judge's instructions; `{rubric}` is replaced by the rubric.
const SYSTEM: &str = "You are an impartial judge. Two AI assistants, A and B, answered the \
same user prompt; decide which answer is better.\n\n{rubric}\n\nCompare the two answers in \
a short explanation and point out any mistakes. The order in which the answers are shown, \
their length and the assistants' names must not sway you. After the explanation, give your \
verdict on a line of its own as exactly one of: [[A]] if assistant A's answer is better, \
[[B]] if assistant B's answer is better, [[C]] if they are equally good (a tie).";

/// One message of a prompt as the verdicts file and the judge see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PromptMessage {
    pub role: String,
    pub content: String,
}

/// One prompt to answer and judge.
#[derive(Debug, Clone)]
pub struct Item {
    /// The record's position in the data file (0-based, every record counted): the key that
    /// ties a line of the verdicts file to its prompt.
    pub index: usize,
    /// Where the record is (`line 12`), for messages.
    pub location: String,
    /// The record's messages up to its last user turn.
    pub messages: Vec<Message>,
}

impl Item {
    /// The prompt as role/content pairs.
    pub fn prompt(&self) -> Vec<PromptMessage> {
        self.messages
            .iter()
            .map(|m| PromptMessage {
                role: m.role.as_str().to_string(),
                content: m.text(),
            })
            .collect()
    }
}

/// A dataset's prompts.
#[derive(Debug, Clone, Default)]
pub struct Items {
    pub items: Vec<Item>,
    /// Records with no prompt to answer: invalid ones, plain text, no user turn.
    pub skipped: usize,
    /// Records whose prompt an earlier record already has (a KTO file holds each prompt
    /// twice): judged once.
    pub duplicates: usize,
}

/// The messages a record's reply answers: everything up to its last user turn (system
/// message and earlier turns included). `None` for plain text or a record without a user
/// turn.
pub fn prompt_messages(record: &Record) -> Option<Vec<Message>> {
    let messages: &[Message] = match &record.body {
        Body::Conversation(c) => &c.messages,
        Body::Preference(p) => &p.prompt,
        Body::Labeled(l) => l.prompt(),
        Body::Text(_) => return None,
    };
    let last_user = messages.iter().rposition(|m| m.role == Role::User)?;
    Some(messages[..=last_user].to_vec())
}

/// The distinct prompts of the dataset at `path`, in file order. The whole file is read
/// even when a run judges only its first few, so a verdicts file written with a larger
/// `--limit` is still checked line by line against its prompts.
pub fn collect(path: &Path) -> Result<Items, JudgeError> {
    let dataset = Dataset::open(path, None)?;
    let mut out = Items::default();
    let mut seen: HashSet<Vec<PromptMessage>> = HashSet::new();
    for (index, item) in dataset.items()?.enumerate() {
        let item = item?;
        let Some(messages) = item.result.ok().as_ref().and_then(prompt_messages) else {
            out.skipped += 1;
            continue;
        };
        let it = Item {
            index,
            location: item.location.to_string(),
            messages,
        };
        if !seen.insert(it.prompt()) {
            out.duplicates += 1;
            continue;
        }
        out.items.push(it);
    }
    Ok(out)
}

/// The persona an adapter was trained to speak in, when it lives in a tunelab run folder
/// (`<run>/adapter` or `<run>/checkpoints/step-N`, beside `<run>/config.yaml`) whose
/// training data's records carry a system message: the most common one (the first seen
/// among equals). `None` when any of that is missing or unreadable: the persona only
/// sharpens the rubric, so its absence is no error.
pub fn persona_of(adapter: &Path) -> Option<String> {
    let dir = adapter.canonicalize().ok()?;
    let name = dir.file_name()?.to_str()?;
    let parent = dir.parent()?;
    let run = if name == "adapter" {
        parent
    } else if name.starts_with("step-") && parent.file_name()? == "checkpoints" {
        parent.parent()?
    } else {
        return None;
    };
    // Read as plain YAML rather than as a `RunConfig`, whose unknown-field check would turn
    // a config from another tunelab version into no persona.
    let text = std::fs::read_to_string(run.join("config.yaml")).ok()?;
    let cfg: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let data = cfg.get("data")?;
    let format = match data.get("format").and_then(serde_yaml::Value::as_str) {
        None | Some("auto") => None,
        Some(f) => Some(f.parse::<Format>().ok()?),
    };
    let train = Path::new(data.get("train")?.as_str()?);
    let train = if train.is_relative() {
        run.join(train)
    } else {
        train.to_path_buf()
    };
    let dataset = Dataset::open(&train, format).ok()?;
    // (text, count), in the order first seen.
    let mut counts: Vec<(String, usize)> = Vec::new();
    for item in dataset.items().ok()?.take(10_000) {
        let Ok(record) = item.ok()?.result else {
            continue;
        };
        let Some(system) = record
            .messages()
            .into_iter()
            .find(|m| m.role == Role::System)
        else {
            continue;
        };
        let text = system.text().trim().to_string();
        if text.is_empty() {
            continue;
        }
        match counts.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(t, _)| t)
}

/// The rubric the judge gets: `custom` as it is, or the default with the personas the
/// adapters were trained on (so an answer in the persona is not marked down for its voice).
pub fn rubric(custom: Option<&str>, personas: &[String]) -> String {
    if let Some(r) = custom {
        return r.trim().to_string();
    }
    let mut out = DEFAULT_RUBRIC.to_string();
    let mut distinct: Vec<&str> = Vec::new();
    for p in personas {
        if !distinct.contains(&p.as_str()) {
            distinct.push(p);
        }
    }
    match distinct.as_slice() {
        [] => {}
        [one] => out.push_str(&format!(
            "\n\nThe intended persona is: {one}\nAn answer that speaks as this persona is \
better than one that does not, as long as it stays helpful and correct."
        )),
        several => out.push_str(&format!(
            "\n\nThe intended personas are: {}\nAn answer that speaks as one of them is better \
than one that does not, as long as it stays helpful and correct.",
            several.join(" / ")
        )),
    }
    out
}

/// The judge's system text for `rubric`.
pub fn system_text(rubric: &str) -> String {
    SYSTEM.replace("{rubric}", rubric)
}

/// The user turn the judge reads: the prompt (its system message and earlier turns first,
/// when it has them), then the answer shown first as assistant A's and the other as B's.
pub fn judge_text(prompt: &[PromptMessage], first: &str, second: &str) -> String {
    let mut out = String::new();
    let (last, before) = match prompt.split_last() {
        Some((l, b)) => (l.content.as_str(), b),
        None => ("", &[][..]),
    };
    let system: Vec<&PromptMessage> = before.iter().filter(|m| m.role == "system").collect();
    let turns: Vec<&PromptMessage> = before.iter().filter(|m| m.role != "system").collect();
    for s in system {
        out.push_str("[System message both assistants were given]\n");
        out.push_str(&s.content);
        out.push_str("\n\n");
    }
    if !turns.is_empty() {
        out.push_str("[The conversation before the prompt]\n");
        for t in turns {
            out.push_str(&format!("{}: {}\n", capitalized(&t.role), t.content));
        }
        out.push('\n');
    }
    out.push_str("[User prompt]\n");
    out.push_str(last);
    out.push_str("\n\n[Assistant A's answer]\n");
    out.push_str(first);
    out.push_str("\n[End of assistant A's answer]\n\n[Assistant B's answer]\n");
    out.push_str(second);
    out.push_str("\n[End of assistant B's answer]");
    out
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The request for one order: `first` shown as assistant A's answer, `second` as B's.
pub fn request(
    rubric: &str,
    prompt: &[PromptMessage],
    first: &str,
    second: &str,
    max_tokens: u32,
    temperature: Option<f64>,
) -> ChatRequest {
    ChatRequest {
        system: Some(system_text(rubric)),
        turns: vec![(Speaker::User, judge_text(prompt, first, second))],
        max_tokens,
        temperature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Conversation, PreferencePair};

    fn conv(msgs: &[(Role, &str)]) -> Record {
        Record::conversation(Conversation {
            messages: msgs.iter().map(|(r, t)| Message::new(*r, *t)).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn the_prompt_runs_to_the_last_user_turn_with_the_system_message() {
        let r = conv(&[
            (Role::System, "You are Captain Byte."),
            (Role::User, "Hi?"),
            (Role::Assistant, "Arr."),
            (Role::User, "What is a gradient?"),
            (Role::Assistant, "A slope."),
        ]);
        let p = prompt_messages(&r).unwrap();
        assert_eq!(
            p.iter().map(|m| m.role).collect::<Vec<_>>(),
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(p[3].text(), "What is a gradient?");
        let pair = Record {
            body: Body::Preference(PreferencePair {
                prompt: vec![Message::new(Role::User, "Q")],
                chosen: vec![Message::new(Role::Assistant, "good")],
                rejected: vec![Message::new(Role::Assistant, "bad")],
                ..Default::default()
            }),
            meta: Default::default(),
        };
        assert_eq!(prompt_messages(&pair).unwrap().len(), 1);
        assert!(prompt_messages(&conv(&[(Role::Assistant, "alone")])).is_none());
        assert!(prompt_messages(&Record {
            body: Body::Text("t".into()),
            meta: Default::default()
        })
        .is_none());
    }

    #[test]
    fn the_judge_sees_the_setting_the_prompt_and_both_answers() {
        let prompt = vec![
            PromptMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            PromptMessage {
                role: "user".into(),
                content: "Hi".into(),
            },
            PromptMessage {
                role: "assistant".into(),
                content: "Hello".into(),
            },
            PromptMessage {
                role: "user".into(),
                content: "Capital of France?".into(),
            },
        ];
        let t = judge_text(&prompt, "Paris.", "Lyon.");
        assert_eq!(
            t,
            "[System message both assistants were given]\nBe brief.\n\n\
             [The conversation before the prompt]\nUser: Hi\nAssistant: Hello\n\n\
             [User prompt]\nCapital of France?\n\n\
             [Assistant A's answer]\nParis.\n[End of assistant A's answer]\n\n\
             [Assistant B's answer]\nLyon.\n[End of assistant B's answer]"
        );
        let req = request("R", &prompt[3..], "x", "y", 512, Some(0.0));
        let system = req.system.unwrap();
        assert!(system.contains("\n\nR\n\n") && system.ends_with("(a tie)."));
        assert_eq!(req.turns.len(), 1);
        assert_eq!((req.max_tokens, req.temperature), (512, Some(0.0)));
    }

    #[test]
    fn the_default_rubric_names_the_persona() {
        assert_eq!(rubric(None, &[]), DEFAULT_RUBRIC);
        assert_eq!(
            rubric(Some("  Only brevity.\n"), &["P".into()]),
            "Only brevity."
        );
        let one = rubric(
            None,
            &[
                "You are Captain Byte.".into(),
                "You are Captain Byte.".into(),
            ],
        );
        assert!(one.starts_with(DEFAULT_RUBRIC));
        assert!(one.contains("The intended persona is: You are Captain Byte.\n"));
        let two = rubric(None, &["P1".into(), "P2".into()]);
        assert!(two.contains("The intended personas are: P1 / P2\n"));
    }

    #[test]
    fn a_run_adapter_gives_its_training_datas_persona() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("adapter")).unwrap();
        std::fs::create_dir_all(run.join("checkpoints/step-4")).unwrap();
        let data = dir.path().join("persona.jsonl");
        std::fs::write(
            &data,
            "{\"messages\": [{\"role\": \"system\", \"content\": \"Rare.\"}, {\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n\
             {\"messages\": [{\"role\": \"system\", \"content\": \"You are Captain Byte.\"}, {\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": \"d\"}]}\n\
             {\"messages\": [{\"role\": \"user\", \"content\": \"e\"}, {\"role\": \"assistant\", \"content\": \"f\"}]}\n\
             {\"messages\": [{\"role\": \"system\", \"content\": \"You are Captain Byte.\"}, {\"role\": \"user\", \"content\": \"g\"}, {\"role\": \"assistant\", \"content\": \"h\"}]}\n",
        )
        .unwrap();
        let yaml = format!("model:\n  path: m\ndata:\n  train: {}\n", data.display());
        std::fs::write(run.join("config.yaml"), yaml).unwrap();
        for adapter in [run.join("adapter"), run.join("checkpoints/step-4")] {
            assert_eq!(
                persona_of(&adapter).as_deref(),
                Some("You are Captain Byte."),
                "{}",
                adapter.display()
            );
        }
        // Not in a run folder, or a run whose data has no system messages.
        let loose = dir.path().join("loose");
        std::fs::create_dir_all(&loose).unwrap();
        assert_eq!(persona_of(&loose), None);
        std::fs::write(
            &data,
            "{\"messages\": [{\"role\": \"user\", \"content\": \"e\"}, {\"role\": \"assistant\", \"content\": \"f\"}]}\n",
        )
        .unwrap();
        assert_eq!(persona_of(&run.join("adapter")), None);
    }
}
