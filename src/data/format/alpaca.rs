//! Alpaca (`instruction`, `input`, `output`, optional `system` and `history`) and its
//! preference variant (`chosen`/`rejected` instead of `output`), as LLaMA-Factory reads them.

use super::fields::{as_str, opt_str, req_str};
use super::{joined, note_dropped_weights, split_exchange, Notes};
use crate::data::problem::{describe, Issues};
use crate::data::record::{Body, Conversation, Message, PreferencePair, Role};
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["instruction", "input", "output", "system", "history"];
pub const PREFERENCE_KEYS: &[&str] = &[
    "instruction",
    "input",
    "chosen",
    "rejected",
    "system",
    "history",
];

/// System, history turns and the user turn (instruction and input as two parts).
fn read_prompt(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Vec<Message>> {
    let mut messages = Vec::new();
    if let Some(system) = opt_str(obj, "system", issues).and_then(system_turn) {
        messages.push(system);
    }
    match obj.get("history") {
        None | Some(Value::Null) => {}
        Some(Value::Array(turns)) => {
            for (i, turn) in turns.iter().enumerate() {
                let path = format!("history[{i}]");
                match turn.as_array().map(|t| t.as_slice()) {
                    Some([q, a]) => {
                        let q = as_str(q, &format!("{path}[0]"), issues);
                        let a = as_str(a, &format!("{path}[1]"), issues);
                        if let (Some(q), Some(a)) = (q, a) {
                            messages.push(
                                Message::new(Role::User, q).with_source(format!("{path}[0]")),
                            );
                            messages.push(
                                Message::new(Role::Assistant, a)
                                    .with_source(format!("{path}[1]"))
                                    .with_inline_reasoning(),
                            );
                        }
                    }
                    _ => issues.push(
                        &path,
                        format!(
                            "expected a [user, assistant] pair of strings, found {}",
                            describe(turn)
                        ),
                    ),
                }
            }
        }
        Some(other) => issues.push(
            "history",
            format!(
                "expected an array of [user, assistant] pairs, found {}",
                describe(other)
            ),
        ),
    }
    let instruction = req_str(obj, "instruction", issues);
    let input = opt_str(obj, "input", issues);
    messages.push(user_turn(instruction?, input));
    Some(messages)
}

/// The system turn: a non-empty `system`.
fn system_turn(system: String) -> Option<Message> {
    (!system.is_empty()).then(|| Message::new(Role::System, system).with_source("system"))
}

/// The user turn: the instruction, and the input (when not empty) as a second part.
fn user_turn(instruction: String, input: Option<String>) -> Message {
    let mut user = Message::new(Role::User, instruction).with_source("instruction");
    if let Some(input) = input.filter(|s| !s.is_empty()) {
        user.parts.push(input);
    }
    user
}

/// The assistant turn of `output`, with a leading `<think>` block as its reasoning.
fn reply_turn(output: String) -> Message {
    Message::new(Role::Assistant, output)
        .with_source("output")
        .with_inline_reasoning()
}

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let prompt = read_prompt(obj, issues);
    let output = req_str(obj, "output", issues);
    let mut messages = prompt?;
    messages.push(reply_turn(output?));
    Some(Body::Conversation(Conversation {
        messages,
        ..Default::default()
    }))
}

/// An alpaca record with nothing but string fields: what most records are.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain {
    instruction: Option<String>,
    input: Option<String>,
    output: Option<String>,
    system: Option<String>,
    history: Option<serde::de::IgnoredAny>,
}

/// The body [`read`] makes of the JSON object `text`, read straight into strings without a
/// `Value` tree, when the record is a plain one: `instruction` and `output` strings, `input`
/// and `system` strings or null or absent, `history` null or absent, no other keys (and no
/// key twice). `None` for any other text, which the general reader then reads (and reports
/// on).
pub fn read_plain(text: &str) -> Option<Body> {
    // A struct also deserializes from a JSON array; only an object is a record.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let plain: Plain = serde_json::from_str(text).ok()?;
    if plain.history.is_some() {
        return None;
    }
    let mut messages = Vec::with_capacity(3);
    if let Some(system) = plain.system.and_then(system_turn) {
        messages.push(system);
    }
    messages.push(user_turn(plain.instruction?, plain.input));
    messages.push(reply_turn(plain.output?));
    Some(Body::Conversation(Conversation {
        messages,
        ..Default::default()
    }))
}

fn write_prompt(
    out: &mut Map<String, Value>,
    system: Option<&Message>,
    history: &[(&Message, &Message)],
    user: &Message,
    notes: &mut Notes,
) {
    out.insert(
        "instruction".into(),
        Value::String(user.parts.first().cloned().unwrap_or_default()),
    );
    out.insert(
        "input".into(),
        Value::String(
            user.parts
                .get(1..)
                .map(|p| p.join("\n"))
                .unwrap_or_default(),
        ),
    );
    if let Some(s) = system {
        out.insert("system".into(), Value::String(joined(s, notes)));
    }
    if !history.is_empty() {
        notes.note("multi-turn conversation written through alpaca's history");
        let turns = history
            .iter()
            .map(|(u, a)| {
                Value::Array(vec![
                    Value::String(joined(u, notes)),
                    Value::String(joined(a, notes)),
                ])
            })
            .collect();
        out.insert("history".into(), Value::Array(turns));
    }
}

pub fn write(c: &Conversation, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    let ex = split_exchange(c, "alpaca")?;
    note_dropped_weights(&c.messages, "alpaca", notes);
    let mut out = Map::new();
    write_prompt(&mut out, None, &ex.history, ex.user, notes);
    // Keep alpaca's usual key order: instruction, input, output, then the optional keys.
    let mut ordered = Map::new();
    ordered.insert(
        "instruction".into(),
        out.remove("instruction").unwrap_or_default(),
    );
    ordered.insert("input".into(), out.remove("input").unwrap_or_default());
    ordered.insert("output".into(), Value::String(joined(ex.assistant, notes)));
    if let Some(s) = ex.system {
        ordered.insert("system".into(), Value::String(joined(s, notes)));
    }
    ordered.extend(out);
    Ok(ordered)
}

pub fn read_preference(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let prompt = read_prompt(obj, issues);
    let chosen = req_str(obj, "chosen", issues);
    let rejected = req_str(obj, "rejected", issues);
    Some(Body::Preference(PreferencePair {
        prompt: prompt?,
        chosen: vec![Message::new(Role::Assistant, chosen?)
            .with_source("chosen")
            .with_inline_reasoning()],
        rejected: vec![Message::new(Role::Assistant, rejected?)
            .with_source("rejected")
            .with_inline_reasoning()],
        ..Default::default()
    }))
}

pub fn write_preference(
    p: &PreferencePair,
    notes: &mut Notes,
) -> Result<Map<String, Value>, String> {
    let (system, history, user) = split_prompt(&p.prompt, "alpaca-preference")?;
    let chosen = single_reply(&p.chosen, "chosen", "alpaca-preference")?;
    let rejected = single_reply(&p.rejected, "rejected", "alpaca-preference")?;
    let mut out = Map::new();
    write_prompt(&mut out, None, &history, user, notes);
    let mut ordered = Map::new();
    ordered.insert(
        "instruction".into(),
        out.remove("instruction").unwrap_or_default(),
    );
    ordered.insert("input".into(), out.remove("input").unwrap_or_default());
    ordered.insert("chosen".into(), Value::String(joined(chosen, notes)));
    ordered.insert("rejected".into(), Value::String(joined(rejected, notes)));
    if let Some(s) = system {
        ordered.insert("system".into(), Value::String(joined(s, notes)));
    }
    ordered.extend(out);
    Ok(ordered)
}

type PromptParts<'a> = (
    Option<&'a Message>,
    Vec<(&'a Message, &'a Message)>,
    &'a Message,
);

/// A preference prompt as system, history pairs and the final user turn.
pub(crate) fn split_prompt<'a>(
    prompt: &'a [Message],
    format: &str,
) -> Result<PromptParts<'a>, String> {
    let mut rest = prompt;
    let system = match rest.first() {
        Some(m) if m.role == Role::System => {
            rest = &rest[1..];
            Some(m)
        }
        _ => None,
    };
    let err = || {
        let roles: Vec<&str> = rest.iter().map(|m| m.role.as_str()).collect();
        format!("{format} needs a prompt of alternating user and assistant turns ending on the user; found [{}]", roles.join(", "))
    };
    let Some((user, before)) = rest.split_last() else {
        return Err(err());
    };
    if user.role != Role::User || before.len() % 2 != 0 {
        return Err(err());
    }
    let mut history = Vec::new();
    for pair in before.chunks(2) {
        if pair[0].role != Role::User
            || pair[1].role != Role::Assistant
            || !pair[1].tool_calls.is_empty()
        {
            return Err(err());
        }
        history.push((&pair[0], &pair[1]));
    }
    Ok((system, history, user))
}

/// A completion that must be exactly one plain assistant message.
pub(crate) fn single_reply<'a>(
    msgs: &'a [Message],
    field: &str,
    format: &str,
) -> Result<&'a Message, String> {
    match msgs {
        [m] if m.role == Role::Assistant && m.tool_calls.is_empty() => Ok(m),
        _ => Err(format!(
            "{format} holds a single assistant reply in {field}; found {} messages",
            msgs.len()
        )),
    }
}
