//! Dolly (`instruction`, `context`, `response`, `category`). The context belongs to the user turn
//! (a second text part), not to a system prompt.

use super::fields::{opt_str, req_str};
use super::{joined, note_dropped_weights, split_exchange, Notes};
use crate::data::problem::Issues;
use crate::data::record::{Body, Conversation, Message, Role};
use serde_json::{Map, Value};

/// `category` is not in the list: it stays in the record's metadata so other formats carry it.
pub const KEYS: &[&str] = &["instruction", "context", "response"];

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let instruction = req_str(obj, "instruction", issues);
    let context = opt_str(obj, "context", issues);
    let response = req_str(obj, "response", issues);
    let mut user = Message::new(Role::User, instruction?).with_source("instruction");
    if let Some(ctx) = context.filter(|c| !c.is_empty()) {
        user.parts.push(ctx);
    }
    let assistant = Message::new(Role::Assistant, response?)
        .with_source("response")
        .with_inline_reasoning();
    Some(Body::Conversation(Conversation {
        messages: vec![user, assistant],
        ..Default::default()
    }))
}

pub fn write(
    c: &Conversation,
    meta: &Map<String, Value>,
    notes: &mut Notes,
) -> Result<Map<String, Value>, String> {
    let ex = split_exchange(c, "dolly")?;
    if ex.system.is_some() {
        return Err("dolly has no system prompt".into());
    }
    if !ex.history.is_empty() {
        return Err(format!(
            "dolly holds one exchange; this conversation has {} user turns",
            ex.history.len() + 1
        ));
    }
    note_dropped_weights(&c.messages, "dolly", notes);
    let mut out = Map::new();
    out.insert(
        "instruction".into(),
        Value::String(ex.user.parts.first().cloned().unwrap_or_default()),
    );
    out.insert(
        "context".into(),
        Value::String(
            ex.user
                .parts
                .get(1..)
                .map(|p| p.join("\n"))
                .unwrap_or_default(),
        ),
    );
    out.insert(
        "response".into(),
        Value::String(joined(ex.assistant, notes)),
    );
    if let Some(category) = meta.get("category") {
        out.insert("category".into(), category.clone());
    }
    Ok(out)
}
