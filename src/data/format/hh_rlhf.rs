//! Anthropic HH-RLHF: `chosen` and `rejected` are whole transcripts
//! (`\n\nHuman: … \n\nAssistant: …`) that share every turn but the last.

use super::fields::req_str;
use super::Notes;
use crate::data::problem::Issues;
use crate::data::record::{Body, Message, PreferencePair, Role};
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["chosen", "rejected"];

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

/// True when a string looks like an HH transcript (used by detection).
pub fn is_transcript(s: &str) -> bool {
    s.contains(HUMAN) && s.contains(ASSISTANT)
}

/// Splits a transcript into turns.
pub fn parse_transcript(text: &str, field: &str, issues: &mut Issues) -> Option<Vec<Message>> {
    let mut marks: Vec<(usize, Role, usize)> = Vec::new();
    for (marker, role) in [(HUMAN, Role::User), (ASSISTANT, Role::Assistant)] {
        marks.extend(text.match_indices(marker).map(|(i, m)| (i, role, m.len())));
    }
    marks.sort_by_key(|m| m.0);
    let Some(first) = marks.first() else {
        issues.push(
            field,
            "expected a transcript with \"\\n\\nHuman:\" and \"\\n\\nAssistant:\" turns",
        );
        return None;
    };
    if !text[..first.0].trim().is_empty() {
        issues.push(field, "text before the first \"\\n\\nHuman:\" marker");
        return None;
    }
    let mut turns = Vec::with_capacity(marks.len());
    for (k, &(start, role, len)) in marks.iter().enumerate() {
        let end = marks.get(k + 1).map_or(text.len(), |m| m.0);
        let body = &text[start + len..end];
        let body = body.strip_prefix(' ').unwrap_or(body);
        turns.push(Message::new(role, body).with_source(field));
    }
    Some(turns)
}

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let chosen = req_str(obj, "chosen", issues);
    let rejected = req_str(obj, "rejected", issues);
    let chosen = parse_transcript(&chosen?, "chosen", issues);
    let rejected = parse_transcript(&rejected?, "rejected", issues);
    let (c, r) = (chosen?, rejected?);
    let shared = c.iter().zip(r.iter()).take_while(|(a, b)| a == b).count();
    let shared = shared
        .min(c.len().saturating_sub(1))
        .min(r.len().saturating_sub(1));
    Some(Body::Preference(PreferencePair {
        prompt: c[..shared].to_vec(),
        chosen: c[shared..].to_vec(),
        rejected: r[shared..].to_vec(),
        tools: Vec::new(),
        plain: false,
    }))
}

fn transcript(messages: &[&Message], notes: &mut Notes) -> Result<String, String> {
    let mut out = String::new();
    for m in messages {
        let marker = match m.role {
            Role::User => HUMAN,
            Role::Assistant if m.tool_calls.is_empty() => ASSISTANT,
            Role::System => return Err("hh-rlhf has no system prompt".into()),
            _ => return Err("hh-rlhf cannot hold tool calls or tool messages".into()),
        };
        out.push_str(marker);
        out.push(' ');
        out.push_str(&super::joined(m, notes));
    }
    Ok(out)
}

pub fn write(p: &PreferencePair, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    let side = |reply: &[Message], notes: &mut Notes| {
        let all: Vec<&Message> = p.prompt.iter().chain(reply.iter()).collect();
        transcript(&all, notes)
    };
    let mut out = Map::new();
    out.insert("chosen".into(), Value::String(side(&p.chosen, notes)?));
    out.insert("rejected".into(), Value::String(side(&p.rejected, notes)?));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_turns_and_shared_prompt() {
        let mut obj = Map::new();
        obj.insert(
            "chosen".into(),
            "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: See you.".into(),
        );
        obj.insert(
            "rejected".into(),
            "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: No.".into(),
        );
        let mut issues = Issues::default();
        let Some(Body::Preference(p)) = read(&obj, &mut issues) else {
            panic!("{issues:?}")
        };
        assert_eq!(p.prompt.len(), 3);
        assert_eq!(p.prompt[2].text(), "Bye");
        assert_eq!(p.chosen[0].text(), "See you.");
        assert_eq!(p.rejected[0].text(), "No.");
        let back = write(&p, &mut Notes::default()).unwrap();
        assert_eq!(back["chosen"], obj["chosen"]);
        assert_eq!(back["rejected"], obj["rejected"]);
    }
}
