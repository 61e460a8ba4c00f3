//! Prompt/completion (TRL): plain strings, trained without a chat template, or message lists
//! (TRL's conversational form), which are templated like any conversation.

use super::messages::{read_openai, write_openai};
use super::{note_dropped_weights, Notes};
use crate::data::problem::{describe, Issues};
use crate::data::record::{Body, Conversation, Message, Role};
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["prompt", "completion"];

/// A string, or a message list.
pub(crate) enum Side {
    Text(String),
    Messages(Vec<Message>),
}

pub(crate) fn read_side(obj: &Map<String, Value>, key: &str, issues: &mut Issues) -> Option<Side> {
    match obj.get(key) {
        None => {
            issues.push(key, "missing; expected a string or a list of messages");
            None
        }
        Some(Value::String(s)) => Some(Side::Text(s.clone())),
        Some(Value::Array(list)) => {
            let before = issues.len();
            let msgs = read_openai(list, key, issues);
            (issues.len() == before).then_some(Side::Messages(msgs))
        }
        Some(other) => {
            issues.push(
                key,
                format!(
                    "expected a string or a list of messages, found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let prompt = read_side(obj, "prompt", issues);
    let completion = read_side(obj, "completion", issues);
    match (prompt?, completion?) {
        (Side::Text(p), Side::Text(c)) => Some(Body::Conversation(Conversation {
            messages: vec![
                Message::new(Role::User, p).with_source("prompt"),
                Message::new(Role::Assistant, c).with_source("completion"),
            ],
            tools: Vec::new(),
            plain: true,
        })),
        (Side::Messages(mut p), Side::Messages(c)) => {
            p.extend(c);
            Some(Body::Conversation(Conversation {
                messages: p,
                tools: Vec::new(),
                plain: false,
            }))
        }
        _ => {
            issues.push(
                "completion",
                "prompt and completion must both be strings or both be message lists",
            );
            None
        }
    }
}

pub fn write(c: &Conversation, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    let Some((last, prompt)) = c.messages.split_last() else {
        return Err("the conversation is empty".into());
    };
    if last.role != Role::Assistant {
        return Err(
            "prompt-completion needs the conversation to end on an assistant message".into(),
        );
    }
    let simple = prompt.len() == 1
        && prompt[0].role == Role::User
        && c.tools.is_empty()
        && last.tool_calls.is_empty()
        && last.reasoning.is_none()
        && prompt[0].parts.len() == 1;
    let mut out = Map::new();
    if simple {
        if !c.plain {
            notes.note("single exchange written as plain prompt/completion strings (TRL trains these without a chat template)");
        }
        note_dropped_weights(&c.messages, "plain prompt-completion", notes);
        out.insert("prompt".into(), Value::String(prompt[0].text()));
        out.insert("completion".into(), Value::String(last.text()));
    } else {
        if !c.tools.is_empty() {
            notes.note("tool definitions dropped (prompt-completion has no tools field)");
        }
        out.insert("prompt".into(), write_openai(prompt));
        out.insert(
            "completion".into(),
            write_openai(std::slice::from_ref(last)),
        );
    }
    Ok(out)
}
