//! The dataset as the other tool reads it: each record written by the data layer's format
//! writers (`Format::write_records`), reshaped where the tool wants another layout, and
//! routed into the train or test file by tunelab's held-out split (`batch::split`: the same
//! fraction, seed and shuffle, over the records written). Both files are published
//! atomically; a record the layout cannot hold stops the export with its location.

use super::{ScaleoutError, Shape};
use crate::data::writer::RecordWriter;
use crate::data::{Body, Dataset, Kind, Message, Notes, Record, Role};
use crate::template::Encoder;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::Path;

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub train: u64,
    pub eval: u64,
    pub notes: Notes,
    /// Every top-level key of the records written to each file (a loader that names a
    /// column needs it to exist in that file).
    pub train_keys: std::collections::BTreeSet<String>,
    pub eval_keys: std::collections::BTreeSet<String>,
}

/// Converts `train` (and `eval`, or the held-out part of `train`) into `train_out` and
/// `eval_out` in `shape`.
#[allow(clippy::too_many_arguments)]
pub fn write(
    train: &Dataset,
    eval: Option<&Dataset>,
    eval_split: f64,
    seed: u64,
    shape: Shape,
    encoder: Option<&Encoder>,
    train_out: &Path,
    eval_out: &Path,
) -> Result<Written, ScaleoutError> {
    let target = shape.format();
    for ds in std::iter::once(train).chain(eval) {
        if !crate::data::convert::compatible(ds.kind(), target.kind()) {
            return Err(ScaleoutError::Unsupported(format!(
                "{}: {} data cannot be written as {} ({} data)",
                ds.file.path.display(),
                ds.kind(),
                target,
                target.kind()
            )));
        }
    }
    let mut written = Written::default();
    let mut train_w = RecordWriter::create(train_out)?;
    let held_out: HashSet<usize> = match eval {
        Some(_) => HashSet::new(),
        None if eval_split > 0.0 => {
            let mut n = 0usize;
            each(train, shape, encoder, &mut Notes::default(), &mut |_| {
                n += 1;
                Ok(())
            })?;
            let (_, held) = crate::batch::split((0..n).collect(), eval_split, seed);
            held.into_iter().collect()
        }
        None => HashSet::new(),
    };
    let mut eval_w = if eval.is_some() || !held_out.is_empty() {
        Some(RecordWriter::create(eval_out)?)
    } else {
        None
    };
    let mut i = 0usize;
    let (train_keys, eval_keys) = (&mut written.train_keys, &mut written.eval_keys);
    each(train, shape, encoder, &mut written.notes, &mut |obj| {
        let (w, keys) = match eval_w.as_mut() {
            Some(e) if held_out.contains(&i) => (e, &mut *eval_keys),
            _ => (&mut train_w, &mut *train_keys),
        };
        keys.extend(obj.keys().cloned());
        i += 1;
        w.write(&obj)
    })?;
    if let (Some(ds), Some(w)) = (eval, eval_w.as_mut()) {
        let keys = &mut written.eval_keys;
        each(ds, shape, encoder, &mut written.notes, &mut |obj| {
            keys.extend(obj.keys().cloned());
            w.write(&obj)
        })?;
    }
    written.train = train_w.finish()?;
    if let Some(w) = eval_w {
        written.eval = w.finish()?;
    }
    Ok(written)
}

/// Every output record of `ds` in `shape`, in order.
fn each(
    ds: &Dataset,
    shape: Shape,
    encoder: Option<&Encoder>,
    notes: &mut Notes,
    sink: &mut dyn FnMut(Map<String, Value>) -> Result<(), crate::data::DataError>,
) -> Result<(), ScaleoutError> {
    for item in ds.items()? {
        let item = item?;
        let fail = |message: String| ScaleoutError::Record {
            path: ds.file.path.clone(),
            location: item.location.to_string(),
            message,
        };
        let record = item.result.as_ref().map_err(|problems| {
            fail(
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        for obj in convert(record, shape, encoder, notes).map_err(fail)? {
            sink(obj)?;
        }
    }
    Ok(())
}

/// One record in `shape`: none, one or two output records.
pub fn convert(
    record: &Record,
    shape: Shape,
    encoder: Option<&Encoder>,
    notes: &mut Notes,
) -> Result<Vec<Map<String, Value>>, String> {
    let format = shape.format();
    match shape {
        Shape::LastTurnWeighted => {
            let mut r = record.clone();
            weight_last_turn(&mut r);
            Ok(as_template_input(format.write_records(&r, notes)?))
        }
        Shape::PromptCompletion => as_template_input(format.write_records(record, notes)?)
            .into_iter()
            .map(|o| split_last(o, "messages"))
            .collect(),
        Shape::OrpoConversations => format
            .write_records(record, notes)?
            .into_iter()
            .map(orpo_conversations)
            .collect(),
        Shape::KtoPromptCompletion => format
            .write_records(record, notes)?
            .into_iter()
            .map(|o| {
                if o.contains_key("messages") {
                    split_last(o, "messages")
                } else {
                    Ok(o)
                }
            })
            .collect(),
        Shape::KtoMessages => format
            .write_records(record, notes)?
            .into_iter()
            .map(join_prompt_completion)
            .collect(),
        Shape::KtoRendered => {
            let enc = encoder.ok_or("no chat template to render the KTO records with")?;
            rated(record, notes)?
                .iter()
                .map(|l| render_rated(l, enc))
                .collect()
        }
        Shape::PromptOnly => Ok(prompt_only(record, notes)?.into_iter().collect()),
        Shape::Messages => Ok(as_template_input(format.write_records(record, notes)?)),
        Shape::Text | Shape::Sharegpt | Shape::Preference | Shape::SharegptPreference => {
            format.write_records(record, notes)
        }
    }
}

/// Conversations written for a tool that renders them with the chat template (TRL's and
/// Axolotl's SFT): each message as tunelab's encoder hands it to the template
/// (`template::encode::template_message`), with text content (an empty string beside tool
/// calls, where OpenAI's wire format writes null) and tool-call arguments as objects (where
/// it writes a JSON string), so the tool renders what tunelab trains on: a template writes
/// `arguments | tojson` and tests `content is string`.
fn as_template_input(mut records: Vec<Map<String, Value>>) -> Vec<Map<String, Value>> {
    for o in &mut records {
        let Some(Value::Array(messages)) = o.get_mut("messages") else {
            continue;
        };
        for m in messages.iter_mut().filter_map(Value::as_object_mut) {
            if m.get("content").is_none_or(Value::is_null) {
                m.insert("content".into(), Value::String(String::new()));
            }
            let calls = m.get_mut("tool_calls").and_then(Value::as_array_mut);
            for call in calls.into_iter().flatten() {
                let args = call
                    .get_mut("function")
                    .and_then(|f| f.get_mut("arguments"));
                if let Some(a) = args {
                    if let Some(parsed) = a.as_str().and_then(|t| serde_json::from_str(t).ok()) {
                        *a = parsed;
                    }
                }
            }
        }
    }
    records
}

/// The columns GRPO's layout writes itself; a record's own columns by these names cannot
/// be carried.
const PROMPT_ONLY_COLUMNS: &[&str] = &["prompt", "reference"];

/// A record as GRPO prompts with it (`batch::prompts::split_record`, the trainer's own
/// split): `prompt`, `reference`, then the record's other columns. A record without a user
/// turn is left out, as the trainer leaves it out.
fn prompt_only(record: &Record, notes: &mut Notes) -> Result<Option<Map<String, Value>>, String> {
    let Some(split) = crate::batch::prompts::split_record(record) else {
        notes.note("record without a user turn left out (GRPO prompts with the conversation up to its last user turn)");
        return Ok(None);
    };
    let mut meta = record.meta.clone();
    for column in PROMPT_ONLY_COLUMNS {
        if meta.shift_remove(*column).is_some() {
            notes.note(format!(
                "extra field {column:?} dropped: the GRPO layout uses that name"
            ));
        }
    }
    let prompt_record = Record {
        body: Body::Conversation(crate::data::Conversation {
            messages: split.prompt.clone(),
            tools: split.tools,
            plain: false,
        }),
        meta,
    };
    let mut written = crate::data::Format::Openai.write(&prompt_record, notes)?;
    let messages = written
        .shift_remove("messages")
        .unwrap_or(Value::Array(Vec::new()));
    let mut out = Map::new();
    let prompt = if split.plain {
        Value::String(crate::batch::prompts::plain_text(&split.prompt))
    } else {
        messages
    };
    out.insert("prompt".into(), prompt);
    out.insert(
        "reference".into(),
        split.reference.map_or(Value::Null, Value::String),
    );
    out.extend(written);
    Ok(Some(out))
}

/// `train_on: last_assistant` as per-message weights: every assistant turn before the last
/// gets weight 0, the last weight 1 (weights already set are kept: they override the policy
/// in tunelab too).
fn weight_last_turn(r: &mut Record) {
    let messages = match &mut r.body {
        Body::Conversation(c) => &mut c.messages,
        Body::Labeled(l) => &mut l.conversation.messages,
        _ => return,
    };
    let last = messages.iter().rposition(|m| m.role == Role::Assistant);
    for (i, m) in messages.iter_mut().enumerate() {
        if m.role == Role::Assistant && m.weight.is_none() {
            m.weight = Some(if Some(i) == last { 1.0 } else { 0.0 });
        }
    }
}

/// `{key: [..., last]}` → `{"prompt": [...], "completion": [last]}`; other keys kept.
fn split_last(mut o: Map<String, Value>, key: &str) -> Result<Map<String, Value>, String> {
    let Some(Value::Array(mut messages)) = o.remove(key) else {
        return Err(format!("no {key} list to split"));
    };
    let last = messages.pop().ok_or("an empty conversation")?;
    if last.get("role").and_then(Value::as_str) != Some("assistant") {
        return Err("the conversation does not end on an assistant message".into());
    }
    let mut out = Map::new();
    out.insert("prompt".into(), Value::Array(messages));
    out.insert("completion".into(), Value::Array(vec![last]));
    out.extend(o);
    Ok(out)
}

/// `prompt` and `completion` (lists or strings) → one `messages` list.
fn join_prompt_completion(mut o: Map<String, Value>) -> Result<Map<String, Value>, String> {
    if o.contains_key("messages") {
        return Ok(o);
    }
    let as_messages = |v: Option<Value>, role: &str| -> Result<Vec<Value>, String> {
        match v {
            Some(Value::Array(a)) => Ok(a),
            Some(Value::String(s)) => Ok(vec![serde_json::json!({"role": role, "content": s})]),
            _ => Err("a rated record needs a prompt and a completion".into()),
        }
    };
    let mut messages = as_messages(o.remove("prompt"), "user")?;
    messages.extend(as_messages(o.remove("completion"), "assistant")?);
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    out.extend(o);
    Ok(out)
}

/// TRL's explicit pair → Axolotl's ORPO layout: each side the whole conversation (without
/// the system message, which goes to `system`).
fn orpo_conversations(mut o: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let to_list = |v: Option<Value>, role: &str| -> Vec<Value> {
        match v {
            Some(Value::Array(a)) => a,
            Some(Value::String(s)) => vec![serde_json::json!({"role": role, "content": s})],
            _ => Vec::new(),
        }
    };
    let mut prompt = to_list(o.remove("prompt"), "user");
    let mut system = None;
    if prompt
        .first()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("system")
    {
        system = prompt.remove(0).get("content").cloned();
    }
    let users = prompt
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .count();
    if users != 1 || prompt.len() != 1 {
        return Err("Axolotl's ORPO layout holds one user turn and one reply per pair".into());
    }
    let mut out = Map::new();
    if let Some(s) = system {
        out.insert("system".into(), s);
    }
    for side in ["chosen", "rejected"] {
        let mut conv = prompt.clone();
        conv.extend(to_list(o.remove(side), "assistant"));
        out.insert(side.into(), Value::Array(conv));
    }
    out.extend(o);
    Ok(out)
}

/// The rated completions a record trains as under KTO.
fn rated(record: &Record, notes: &mut Notes) -> Result<Vec<crate::data::record::Labeled>, String> {
    match &record.body {
        Body::Labeled(l) => Ok(vec![l.clone()]),
        Body::Preference(p) => {
            notes.note("preference pair became two rated completions (chosen → label true, rejected → label false)");
            Ok(p.unpaired().to_vec())
        }
        Body::Conversation(c) => {
            notes.note("conversation written as a desirable completion (label true)");
            Ok(vec![crate::data::format::labeled_from_conversation(
                c, true,
            )])
        }
        Body::Text(_) => Err(format!(
            "a {} record cannot be rated for KTO",
            Kind::Text.as_str()
        )),
    }
}

/// A rated completion as text: the prompt rendered with the generation prompt, the
/// completion the rest of the full rendering (TRL's split, as tunelab's encoder makes it);
/// plain data stays plain.
fn render_rated(
    l: &crate::data::record::Labeled,
    enc: &Encoder,
) -> Result<Map<String, Value>, String> {
    let c = &l.conversation;
    let (prompt, completion) = if c.plain {
        let text = |m: &[Message]| {
            m.iter()
                .map(Message::text_with_reasoning)
                .collect::<Vec<_>>()
                .join("\n")
        };
        (text(l.prompt()), text(l.completion()))
    } else {
        let as_values = |m: &[Message]| -> Vec<Value> {
            m.iter()
                .map(crate::template::encode::template_message)
                .collect()
        };
        let tools = (!c.tools.is_empty()).then(|| {
            Value::Array(
                c.tools
                    .iter()
                    .map(|t| serde_json::json!({"type": "function", "function": t}))
                    .collect(),
            )
        });
        let prompt_msgs = as_values(l.prompt());
        let prompt = enc
            .render(&prompt_msgs, tools.as_ref(), true)
            .map_err(|e| e.to_string())?;
        let full = enc
            .render(&as_values(&c.messages), tools.as_ref(), false)
            .map_err(|e| e.to_string())?;
        let completion = full.strip_prefix(prompt.as_str()).ok_or_else(|| {
            format!(
                "the chat template ({}) renders the prompt differently once the completion follows it, so the prompt is not a prefix",
                enc.template_name()
            )
        })?;
        (prompt, completion.to_string())
    };
    let mut out = Map::new();
    out.insert("prompt".into(), Value::String(prompt));
    out.insert("completion".into(), Value::String(completion));
    out.insert("label".into(), Value::Bool(l.desirable));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_last_message_becomes_the_completion() {
        let o = obj(json!({"messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"}
        ], "label": true}));
        let got = split_last(o, "messages").unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
                   "completion": [{"role": "assistant", "content": "a"}], "label": true})
        );
        let bad = obj(json!({"messages": [{"role": "user", "content": "q"}]}));
        assert!(split_last(bad, "messages").is_err());
    }

    #[test]
    fn messages_go_out_as_templates_get_them_in_tunelab() {
        let o = obj(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}},
                {"type": "function", "function": {"name": "g", "arguments": "not json"}}
            ]}
        ]}));
        let got = as_template_input(vec![o]);
        assert_eq!(
            Value::Object(got[0].clone()),
            json!({"messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}},
                    {"type": "function", "function": {"name": "g", "arguments": "not json"}}
                ]}
            ]})
        );
    }

    fn conversation(turns: &[(Role, &str)], plain: bool, meta: Value) -> Record {
        Record {
            body: Body::Conversation(crate::data::Conversation {
                messages: turns.iter().map(|(r, t)| Message::new(*r, *t)).collect(),
                tools: Vec::new(),
                plain,
            }),
            meta: obj(meta),
        }
    }

    #[test]
    fn grpo_prompts_end_on_the_last_user_turn_with_the_reference_beside() {
        let mut notes = Notes::default();
        let turns = [
            (Role::System, "Be brief."),
            (Role::User, "2 + 2?"),
            (Role::Assistant, "4"),
            (Role::User, "And 3 + 3?"),
            (Role::Assistant, "6"),
        ];
        // The final assistant turn is the reference; a `reference` column of the record's
        // own cannot be carried under the name the layout uses.
        let r = conversation(&turns, false, json!({"id": 1, "reference": "mine"}));
        let got = prompt_only(&r, &mut notes).unwrap().unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"prompt": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "2 + 2?"},
                              {"role": "assistant", "content": "4"},
                              {"role": "user", "content": "And 3 + 3?"}],
                   "reference": "6", "id": 1})
        );
        // An `answer` column wins over the reply, numbers read as text; plain data prompts
        // with its text.
        let r = conversation(&[(Role::User, "3 + 4 =")], true, json!({"answer": 7}));
        let got = prompt_only(&r, &mut notes).unwrap().unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"prompt": "3 + 4 =", "reference": "7", "answer": 7})
        );
        // No user turn: left out, as the trainer leaves it out; no reference: null.
        let r = conversation(&[(Role::Assistant, "hi")], false, json!({}));
        assert_eq!(prompt_only(&r, &mut notes), Ok(None));
        let r = conversation(&[(Role::User, "hi")], false, json!({}));
        assert_eq!(
            prompt_only(&r, &mut notes).unwrap().unwrap()["reference"],
            Value::Null
        );
        let said: Vec<String> = notes.iter().map(|(k, _)| k.to_string()).collect();
        assert!(
            said.iter()
                .any(|k| k == "extra field \"reference\" dropped: the GRPO layout uses that name"),
            "{said:?}"
        );
        assert!(said
            .iter()
            .any(|k| k.starts_with("record without a user turn left out")));
    }

    #[test]
    fn prompt_and_completion_join_into_messages() {
        let got = join_prompt_completion(obj(
            json!({"prompt": "q", "completion": "a", "label": false}),
        ))
        .unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": false})
        );
    }

    #[test]
    fn orpo_pairs_carry_the_whole_exchange() {
        let got = orpo_conversations(obj(json!({
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}]
        })))
        .unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"system": "s",
                   "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
                   "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]})
        );
    }
}
