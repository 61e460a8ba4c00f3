//! Prompts for GRPO: each record's conversation up to its last user turn, rendered with the
//! chat template and the generation prompt, and what reward functions may read beside the
//! completion: the reference (an `answer` or `solution` column, else the reply the record
//! holds) and the record's other columns.

use super::{DatasetError, EncodeReport};
use crate::data::{messages_json, Body, Message, Record, Role};
use crate::template::Encoder;
use serde_json::{Map, Value};
use std::path::Path;

/// Columns read as the reference answer before the record's own reply.
pub const REFERENCE_COLUMNS: &[&str] = &["answer", "solution"];

/// One prompt to sample a group of completions for.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The prompt as the model sees it (generation prompt included), its last
    /// `max_prompt_len` tokens (TRL keeps a prompt's end).
    pub ids: Vec<u32>,
    /// The conversation up to the last user turn, as chat-template JSON.
    pub messages: Vec<Value>,
    /// The last user message.
    pub text: String,
    pub reference: Option<String>,
    /// The reference's tokens (empty without one): the reply a `generate: held_out` task
    /// compares with.
    pub reference_ids: Vec<u32>,
    /// The record's other columns (reference columns included).
    pub metadata: Map<String, Value>,
}

/// The messages a reply answers (up to the last user turn) and the reply after them.
fn split_prompt(messages: &[Message]) -> Option<(&[Message], &[Message])> {
    let last_user = messages.iter().rposition(|m| m.role == Role::User)?;
    Some(messages.split_at(last_user + 1))
}

/// A reference column's text: a string as it is, a number as JSON writes it.
fn column_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A record as GRPO reads it: what it prompts with and what its rewards compare against.
/// The trainer and the TRL export (`scaleout`) both split records here, so a run and its
/// export prompt and score alike.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSplit {
    /// The conversation up to its last user turn.
    pub prompt: Vec<Message>,
    pub tools: Vec<Value>,
    /// Plain prompt/completion strings: the prompt is its messages' text, no chat template.
    pub plain: bool,
    /// The `answer` or `solution` column, else the assistant text after the last user turn.
    pub reference: Option<String>,
}

/// `record` split into its prompt and reference; `None` for plain text or a conversation
/// without a user turn (nothing to prompt with).
pub fn split_record(record: &Record) -> Option<PromptSplit> {
    let (messages, tools, plain): (Vec<Message>, Vec<Value>, bool) = match &record.body {
        Body::Conversation(c) => (c.messages.clone(), c.tools.clone(), c.plain),
        Body::Labeled(l) => (
            l.conversation.messages.clone(),
            l.conversation.tools.clone(),
            l.conversation.plain,
        ),
        Body::Preference(p) => {
            let mut m = p.prompt.clone();
            m.extend(p.chosen.iter().cloned());
            (m, Vec::new(), false)
        }
        Body::Text(_) => return None,
    };
    let (prompt, reply) = split_prompt(&messages)?;
    let reference = REFERENCE_COLUMNS
        .iter()
        .find_map(|c| record.meta.get(*c).and_then(column_text))
        .or_else(|| {
            let r: String = reply
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .map(|m| m.text())
                .collect();
            (!r.trim().is_empty()).then_some(r)
        });
    Some(PromptSplit {
        prompt: prompt.to_vec(),
        tools,
        plain,
        reference,
    })
}

/// The text a plain record prompts with: its prompt messages' text, joined as they are.
pub fn plain_text(prompt: &[Message]) -> String {
    prompt.iter().map(|m| m.text()).collect()
}

/// The prompts of `path`; a record that cannot be used stops with its location, one
/// without a user turn (plain text) is counted as dropped.
pub fn encode_prompts(
    path: &Path,
    format: &str,
    encoder: &Encoder,
    max_prompt_len: usize,
) -> Result<(Vec<Prompt>, EncodeReport), DatasetError> {
    let ds = super::open_dataset(path, format)?;
    let mut out = Vec::new();
    let mut report = EncodeReport::default();
    for item in ds.items()? {
        let (location, record) = super::usable(path, item?)?;
        let Some(PromptSplit {
            prompt,
            tools,
            plain,
            reference,
        }) = split_record(&record)
        else {
            report.dropped += 1;
            continue;
        };
        let text = prompt.last().map(|m| m.text()).unwrap_or_default();
        let json: Vec<Value> = match messages_json(&prompt) {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        let rendered = if plain {
            plain_text(&prompt)
        } else {
            let tools = (!tools.is_empty()).then(|| Value::Array(tools.clone()));
            encoder
                .render(&json, tools.as_ref(), true)
                .map_err(|e| super::record_error(path, location, e))?
        };
        let mut ids = encoder
            .tokenizer
            .encode(&rendered, false)
            .map_err(|e| super::record_error(path, location, e))?
            .ids;
        if ids.len() > max_prompt_len {
            ids.drain(..ids.len() - max_prompt_len);
            report.truncated += 1;
        }
        let reference_ids = match &reference {
            Some(r) => {
                encoder
                    .tokenizer
                    .encode(r, false)
                    .map_err(|e| super::record_error(path, location, e))?
                    .ids
            }
            None => Vec::new(),
        };
        out.push(Prompt {
            ids,
            messages: json,
            text,
            reference,
            reference_ids,
            metadata: record.meta.clone(),
        });
    }
    if out.is_empty() {
        return Err(DatasetError::Unusable {
            file: path.into(),
            message: "no record has a user turn to prompt with (GRPO samples replies to prompts)"
                .into(),
        });
    }
    Ok((out, report))
}
