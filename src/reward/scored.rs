//! One completion to score, with what its record says about it. Borrowed, so a batch of
//! completions costs no copies; serialized as-is for command rewards (one JSON line each).

use serde::Serialize;
use serde_json::{Map, Value};

/// A completion and its context, as every reward function sees it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scored<'a> {
    /// The last user message's text.
    pub prompt: &'a str,
    /// The prompt conversation (role/content objects).
    pub messages: &'a [Value],
    pub completion: &'a str,
    /// The completion's length in tokens (the length reward reads it).
    pub completion_tokens: usize,
    /// The record's final assistant turn, or its answer/solution column.
    pub reference: Option<&'a str>,
    /// The record's other columns.
    pub metadata: &'a Map<String, Value>,
}

/// A message's text: its `content` string, or its text parts joined (OpenAI's list form).
pub fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}
