//! FLAN (`inputs`, `targets`); columns such as `task_name` and `template_type` stay as metadata.

use super::fields::req_str;
use super::{joined, note_dropped_weights, split_exchange, Notes};
use crate::data::problem::Issues;
use crate::data::record::{Body, Conversation, Message, Role};
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["inputs", "targets"];

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let inputs = req_str(obj, "inputs", issues);
    let targets = req_str(obj, "targets", issues);
    Some(Body::Conversation(Conversation {
        messages: vec![
            Message::new(Role::User, inputs?).with_source("inputs"),
            Message::new(Role::Assistant, targets?)
                .with_source("targets")
                .with_inline_reasoning(),
        ],
        ..Default::default()
    }))
}

pub fn write(c: &Conversation, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    let ex = split_exchange(c, "flan")?;
    if ex.system.is_some() {
        return Err("flan has no system prompt".into());
    }
    if !ex.history.is_empty() {
        return Err(format!(
            "flan holds one exchange; this conversation has {} user turns",
            ex.history.len() + 1
        ));
    }
    note_dropped_weights(&c.messages, "flan", notes);
    let mut out = Map::new();
    out.insert("inputs".into(), Value::String(joined(ex.user, notes)));
    out.insert("targets".into(), Value::String(joined(ex.assistant, notes)));
    Ok(out)
}
