//! Unpaired preference data (KTO): one completion with a boolean `label` (true: desirable,
//! false: undesirable), in LLaMA-Factory's shape (`messages`, the completion being the final
//! assistant message) or TRL's (`prompt`/`completion`, strings or message lists).

use super::fields::{read_tools, req_array};
use super::messages::{read_openai, write_openai, write_openai_tools};
use super::prompt_completion::{read_side, Side};
use super::{note_dropped_weights, Notes};
use crate::data::problem::{describe, Issues};
use crate::data::record::{Body, Conversation, Labeled, Message, Role};
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["messages", "prompt", "completion", "label", "tools"];

/// The `label` field: a boolean, or a problem naming what was found.
fn read_label(obj: &Map<String, Value>, issues: &mut Issues) -> Option<bool> {
    match obj.get("label") {
        Some(Value::Bool(b)) => Some(*b),
        None => {
            issues.push(
                "label",
                "missing; expected true (desirable) or false (undesirable)",
            );
            None
        }
        Some(other) => {
            issues.push(
                "label",
                format!(
                    "expected true (desirable) or false (undesirable), found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let label = read_label(obj, issues);
    let tools = read_tools(obj.get("tools"), "tools", issues);
    let (conversation, prompt_len, split) = if obj.contains_key("messages") {
        let list = req_array(obj, "messages", issues)?;
        let before = issues.len();
        let messages = read_openai(list, "messages", issues);
        if issues.len() != before {
            return None;
        }
        // The rated completion is the final assistant message; validation names a record
        // whose last message is someone else's.
        let prompt_len = match messages.last() {
            Some(m) if m.role == Role::Assistant => messages.len() - 1,
            _ => messages.len(),
        };
        let c = Conversation {
            messages,
            tools,
            plain: false,
        };
        (c, prompt_len, false)
    } else {
        let prompt = read_side(obj, "prompt", issues);
        let completion = read_side(obj, "completion", issues);
        match (prompt?, completion?) {
            (Side::Text(p), Side::Text(c)) => {
                let c = Conversation {
                    messages: vec![
                        Message::new(Role::User, p).with_source("prompt"),
                        Message::new(Role::Assistant, c).with_source("completion"),
                    ],
                    tools,
                    plain: true,
                };
                (c, 1, true)
            }
            (Side::Messages(mut p), Side::Messages(c)) => {
                let prompt_len = p.len();
                p.extend(c);
                let c = Conversation {
                    messages: p,
                    tools,
                    plain: false,
                };
                (c, prompt_len, true)
            }
            _ => {
                issues.push(
                    "completion",
                    "prompt and completion must both be strings or both be message lists",
                );
                return None;
            }
        }
    };
    Some(Body::Labeled(Labeled {
        conversation,
        prompt_len,
        desirable: label?,
        split,
    }))
}

pub fn write(l: &Labeled, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    let c = &l.conversation;
    let mut out = Map::new();
    if l.split || c.plain {
        let (prompt, completion) = (l.prompt(), l.completion());
        let plain = c.plain
            && prompt.len() == 1
            && completion.len() == 1
            && prompt[0].role == Role::User
            && c.tools.is_empty();
        if plain {
            note_dropped_weights(&c.messages, "plain prompt/completion", notes);
            out.insert("prompt".into(), Value::String(prompt[0].text()));
            out.insert(
                "completion".into(),
                Value::String(completion[0].text_with_reasoning()),
            );
        } else {
            out.insert("prompt".into(), write_openai(prompt));
            out.insert("completion".into(), write_openai(completion));
        }
    } else {
        out.insert("messages".into(), write_openai(&c.messages));
    }
    if !c.tools.is_empty() {
        out.insert("tools".into(), write_openai_tools(&c.tools));
    }
    out.insert("label".into(), Value::Bool(l.desirable));
    Ok(out)
}

/// A conversation (SFT record) as a desirable rated completion: the final assistant
/// message is the completion.
pub fn from_conversation(c: &Conversation, desirable: bool) -> Labeled {
    let prompt_len = match c.messages.iter().rposition(|m| m.role == Role::Assistant) {
        Some(k) => k,
        None => c.messages.len(),
    };
    Labeled {
        conversation: c.clone(),
        prompt_len,
        desirable,
        split: false,
    }
}
