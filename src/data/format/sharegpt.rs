//! ShareGPT (`conversations[{from, value}]`, optional `system` and `tools`) and LLaMA-Factory's
//! preference variant (the prompt turns plus `chosen`/`rejected` as single messages).

use super::fields::{opt_str, read_tools, req_array};
use super::messages::{read_sharegpt_message, write_sharegpt_message};
use super::Notes;
use crate::data::problem::Issues;
use crate::data::record::{Body, Conversation, Message, PreferencePair, Role};
use crate::pyjson::dumps as python_json;
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["conversations", "system", "tools"];
pub const PREFERENCE_KEYS: &[&str] = &["conversations", "chosen", "rejected", "system", "tools"];

/// The message list lives in `conversations` (or, in some exports, `messages` with `from`/`value`).
fn list_key(obj: &Map<String, Value>) -> &'static str {
    if obj.contains_key("conversations") || !obj.contains_key("messages") {
        "conversations"
    } else {
        "messages"
    }
}

fn read_turns(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Vec<Message>> {
    let mut messages = Vec::new();
    if let Some(system) = opt_str(obj, "system", issues) {
        if !system.is_empty() {
            messages.push(Message::new(Role::System, system).with_source("system"));
        }
    }
    let key = list_key(obj);
    let list = req_array(obj, key, issues)?;
    let before = issues.len();
    for (i, m) in list.iter().enumerate() {
        if let Some(msg) = read_sharegpt_message(m, &format!("{key}[{i}]"), issues) {
            messages.push(msg);
        }
    }
    (issues.len() == before).then_some(messages)
}

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let tools = read_tools(obj.get("tools"), "tools", issues);
    let messages = read_turns(obj, issues)?;
    Some(Body::Conversation(Conversation {
        messages,
        tools,
        plain: false,
    }))
}

fn write_turns(messages: &[Message], tools: &[Value], notes: &mut Notes) -> Map<String, Value> {
    let mut out = Map::new();
    let mut rest = messages;
    let mut system = None;
    if let Some(first) = rest.first().filter(|m| m.role == Role::System) {
        system = Some(first.text());
        rest = &rest[1..];
    }
    let turns: Vec<Value> = rest
        .iter()
        .map(|m| write_sharegpt_message(m, notes))
        .collect();
    out.insert("conversations".into(), Value::Array(turns));
    if let Some(s) = system {
        out.insert("system".into(), Value::String(s));
    }
    if !tools.is_empty() {
        out.insert(
            "tools".into(),
            Value::String(python_json(&Value::Array(tools.to_vec()))),
        );
    }
    out
}

pub fn write(c: &Conversation, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    Ok(write_turns(&c.messages, &c.tools, notes))
}

pub fn read_preference(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let tools = read_tools(obj.get("tools"), "tools", issues);
    let prompt = read_turns(obj, issues);
    let mut one = |key: &str| match obj.get(key) {
        None => {
            issues.push(key, "missing; expected a {from, value} message");
            None
        }
        Some(v) => read_sharegpt_message(v, key, issues),
    };
    let chosen = one("chosen");
    let rejected = one("rejected");
    Some(Body::Preference(PreferencePair {
        prompt: prompt?,
        chosen: vec![chosen?],
        rejected: vec![rejected?],
        tools,
        plain: false,
    }))
}

pub fn write_preference(
    p: &PreferencePair,
    notes: &mut Notes,
) -> Result<Map<String, Value>, String> {
    let chosen = super::alpaca::single_reply(&p.chosen, "chosen", "sharegpt-preference")?;
    let rejected = super::alpaca::single_reply(&p.rejected, "rejected", "sharegpt-preference")?;
    let mut out = write_turns(&p.prompt, &p.tools, notes);
    let mut ordered = Map::new();
    ordered.insert(
        "conversations".into(),
        out.remove("conversations").unwrap_or_default(),
    );
    ordered.insert("chosen".into(), write_sharegpt_message(chosen, notes));
    ordered.insert("rejected".into(), write_sharegpt_message(rejected, notes));
    ordered.extend(out);
    Ok(ordered)
}
