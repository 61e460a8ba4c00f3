//! The canonical in-memory model every dataset format reads into and writes from.
//!
//! A record is a conversation (SFT), a preference pair (DPO) or raw text, plus the
//! source's extra fields (`meta`), which conversion carries along.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Who speaks a message.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn all() -> impl Iterator<Item = Role> {
        <Role as strum::IntoEnumIterator>::iter()
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function call an assistant message makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Usually a JSON object; kept as a string when the source's arguments were not valid JSON.
    pub arguments: Value,
}

/// The source field a message came from (`conversations[3]`), for error messages.
/// It never takes part in equality, so records read from different formats compare by content.
#[derive(Debug, Clone, Default)]
pub struct SourcePath(pub String);

impl PartialEq for SourcePath {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    /// Text segments, rendered joined by `"\n"`. Alpaca's `instruction` and `input` (and Dolly's
    /// `instruction` and `context`) stay separate segments so a round trip gives them back.
    pub parts: Vec<String>,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
    /// Per-message loss weight (OpenAI's `weight`, LLaMA-Factory's `loss_weight`); overrides the masking policy.
    pub weight: Option<f32>,
    /// An assistant message's reasoning (its "thinking"): read from `reasoning_content` (or
    /// `reasoning`), or split off a leading `<think>…</think>` block of the content in the
    /// message-list formats. Chat templates get it as `reasoning_content`, which is what Qwen3's
    /// reads; formats without such a field write it back in front of the text
    /// ([`Message::text_with_reasoning`]).
    pub reasoning: Option<String>,
    pub source: SourcePath,
}

impl ToolCall {
    /// OpenAI's `{id?, type: "function", function: {name, arguments}}`, with `arguments` as a
    /// JSON string (the API's wire form) or as the object (what chat templates read).
    pub fn to_openai(&self, arguments_as_string: bool) -> Value {
        let mut call = Map::new();
        if let Some(id) = &self.id {
            call.insert("id".into(), Value::String(id.clone()));
        }
        call.insert("type".into(), Value::String("function".into()));
        let arguments = match (&self.arguments, arguments_as_string) {
            (Value::String(s), true) => Value::String(s.clone()),
            (v, true) => Value::String(v.to_string()),
            (v, false) => v.clone(),
        };
        let mut f = Map::new();
        f.insert("name".into(), Value::String(self.name.clone()));
        f.insert("arguments".into(), arguments);
        call.insert("function".into(), Value::Object(f));
        Value::Object(call)
    }
}

/// The separator between a message's text parts when it is rendered.
pub const PART_SEPARATOR: &str = "\n";

impl Message {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            parts: vec![text.into()],
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
            weight: None,
            reasoning: None,
            source: SourcePath::default(),
        }
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = SourcePath(source.into());
        self
    }

    /// The message's text as a model sees it.
    pub fn text(&self) -> String {
        self.parts.join(PART_SEPARATOR)
    }

    pub fn char_len(&self) -> usize {
        self.parts.iter().map(|p| p.chars().count()).sum::<usize>()
            + self.parts.len().saturating_sub(1)
            + self.reasoning.as_ref().map_or(0, |r| r.chars().count())
    }

    /// An assistant message whose text starts with a `<think>…</think>` block (Qwen3,
    /// DeepSeek-R1 style data) with that block as its reasoning: what the readers of formats
    /// rendered through a chat template do (plain prompt/completion strings, trained without
    /// one, keep their text).
    pub fn with_inline_reasoning(mut self) -> Self {
        if self.role != Role::Assistant || self.reasoning.is_some() || self.parts.len() != 1 {
            return self;
        }
        if let Some((reasoning, answer)) = split_reasoning(&self.parts[0]) {
            if !reasoning.trim().is_empty() {
                self.reasoning = Some(reasoning);
            }
            self.parts = vec![answer];
        }
        self
    }

    /// The text with the reasoning (when there is some) written in front as Qwen3's template
    /// renders it, `<think>\n…\n</think>\n\n`: what formats without a reasoning field hold, and
    /// what [`split_reasoning`] reads back.
    pub fn text_with_reasoning(&self) -> String {
        match &self.reasoning {
            Some(r) => format!("{THINK_OPEN}\n{r}\n{THINK_CLOSE}\n\n{}", self.text()),
            None => self.text(),
        }
    }

    /// Adds OpenAI's optional message keys that are set: `reasoning_content`, `tool_calls`,
    /// `tool_call_id`, `name`.
    pub fn insert_openai_extras(&self, o: &mut Map<String, Value>, arguments_as_string: bool) {
        if let Some(r) = &self.reasoning {
            o.insert("reasoning_content".into(), Value::String(r.clone()));
        }
        if !self.tool_calls.is_empty() {
            let calls = self
                .tool_calls
                .iter()
                .map(|c| c.to_openai(arguments_as_string))
                .collect();
            o.insert("tool_calls".into(), Value::Array(calls));
        }
        if let Some(id) = &self.tool_call_id {
            o.insert("tool_call_id".into(), Value::String(id.clone()));
        }
        if let Some(n) = &self.name {
            o.insert("name".into(), Value::String(n.clone()));
        }
    }

    /// True when there is neither text nor a tool call (nor reasoning).
    pub fn is_empty(&self) -> bool {
        self.tool_calls.is_empty()
            && self.parts.iter().all(|p| p.trim().is_empty())
            && self
                .reasoning
                .as_deref()
                .is_none_or(|r| r.trim().is_empty())
    }
}

/// The tags Qwen3 (and DeepSeek-R1, QwQ and the models distilled from them) put around reasoning.
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// Splits a leading `<think>…</think>` block off `text`: `(reasoning, answer)`, read the way
/// Qwen3's chat template reads it (the reasoning without the newlines next to its tags, the
/// answer without the newlines that start it), so that rendering the two parts gives what the
/// template renders from the whole text. `None` when `text` does not start (after whitespace)
/// with `<think>` or has no `</think>`.
pub fn split_reasoning(text: &str) -> Option<(String, String)> {
    let rest = text.trim_start().strip_prefix(THINK_OPEN)?;
    let (reasoning, answer) = rest.split_once(THINK_CLOSE)?;
    Some((
        reasoning.trim_matches('\n').to_string(),
        answer.trim_start_matches('\n').to_string(),
    ))
}

/// Multi-turn supervised data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub messages: Vec<Message>,
    /// Tool (function) definitions: objects with `name`, `description`, `parameters`.
    pub tools: Vec<Value>,
    /// Plain prompt/completion strings (TRL's "standard" format): trained without a chat template.
    pub plain: bool,
}

/// A prompt with a preferred and a dispreferred completion.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreferencePair {
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    pub tools: Vec<Value>,
    /// Plain strings rather than messages (TRL's "standard" preference format).
    pub plain: bool,
}

/// One completion rated on its own (KTO's unpaired data): desirable or not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Labeled {
    /// The prompt followed by the rated completion.
    pub conversation: Conversation,
    /// Messages of `conversation` before the completion.
    pub prompt_len: usize,
    /// `label: true`: an answer to learn from; `false`: one to move away from.
    pub desirable: bool,
    /// Read from `prompt`/`completion` (TRL) rather than `messages` (LLaMA-Factory); writing
    /// keeps the shape.
    pub split: bool,
}

impl PreferencePair {
    /// The pair as two rated completions: chosen desirable, rejected undesirable.
    pub fn unpaired(&self) -> [Labeled; 2] {
        let side = |reply: &[Message], desirable: bool| {
            let mut messages = self.prompt.clone();
            messages.extend(reply.iter().cloned());
            Labeled {
                conversation: Conversation {
                    messages,
                    tools: self.tools.clone(),
                    plain: self.plain,
                },
                prompt_len: self.prompt.len(),
                desirable,
                split: true,
            }
        };
        [side(&self.chosen, true), side(&self.rejected, false)]
    }
}

impl Labeled {
    pub fn prompt(&self) -> &[Message] {
        &self.conversation.messages[..self.prompt_len.min(self.conversation.messages.len())]
    }

    pub fn completion(&self) -> &[Message] {
        &self.conversation.messages[self.prompt_len.min(self.conversation.messages.len())..]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Conversation(Conversation),
    Preference(PreferencePair),
    /// A rated completion (KTO).
    Labeled(Labeled),
    Text(String),
}

/// One dataset record in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub body: Body,
    /// Fields of the source record that the format does not define, in source order.
    pub meta: Map<String, Value>,
}

/// What a record trains: supervised fine-tuning, preference optimisation, or plain language modelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sft,
    Preference,
    /// Completions rated one at a time (KTO).
    Unpaired,
    Text,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sft => "sft",
            Kind::Preference => "preference",
            Kind::Unpaired => "unpaired",
            Kind::Text => "text",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Record {
    pub fn conversation(c: Conversation) -> Self {
        Record {
            body: Body::Conversation(c),
            meta: Map::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Conversation(_) => Kind::Sft,
            Body::Preference(_) => Kind::Preference,
            Body::Labeled(_) => Kind::Unpaired,
            Body::Text(_) => Kind::Text,
        }
    }

    /// Every message, in reading order (prompt, chosen, rejected for a pair).
    pub fn messages(&self) -> Vec<&Message> {
        match &self.body {
            Body::Conversation(c) => c.messages.iter().collect(),
            Body::Labeled(l) => l.conversation.messages.iter().collect(),
            Body::Preference(p) => p
                .prompt
                .iter()
                .chain(p.chosen.iter())
                .chain(p.rejected.iter())
                .collect(),
            Body::Text(_) => Vec::new(),
        }
    }

    /// The record's text: every message's, one per line in reading order, or the raw text.
    pub fn text(&self) -> String {
        match &self.body {
            Body::Text(t) => t.clone(),
            _ => self
                .messages()
                .iter()
                .map(|m| m.text())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Characters of text in the record (message texts, or the raw text).
    pub fn char_len(&self) -> usize {
        match &self.body {
            Body::Text(t) => t.chars().count(),
            _ => self.messages().iter().map(|m| m.char_len()).sum(),
        }
    }

    /// A stable 64-bit fingerprint of the content (not the meta), for duplicate detection.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv::default();
        match &self.body {
            Body::Text(t) => {
                h.write(b"T");
                h.write(t.as_bytes());
            }
            Body::Conversation(c) => {
                h.write(b"C");
                hash_messages(&mut h, &c.messages);
            }
            Body::Labeled(l) => {
                h.write(if l.desirable { b"L+" } else { b"L-" });
                hash_messages(&mut h, l.prompt());
                h.write(b"|");
                hash_messages(&mut h, l.completion());
            }
            Body::Preference(p) => {
                h.write(b"P");
                hash_messages(&mut h, &p.prompt);
                h.write(b"|c");
                hash_messages(&mut h, &p.chosen);
                h.write(b"|r");
                hash_messages(&mut h, &p.rejected);
            }
        }
        h.0
    }

    /// The canonical JSON form tunelab shows in `--json` output: OpenAI-style messages.
    pub fn to_canonical_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("kind".into(), Value::String(self.kind().as_str().into()));
        match &self.body {
            Body::Text(t) => {
                out.insert("text".into(), Value::String(t.clone()));
            }
            Body::Conversation(c) => {
                out.insert("messages".into(), messages_json(&c.messages));
                if !c.tools.is_empty() {
                    out.insert("tools".into(), Value::Array(c.tools.clone()));
                }
            }
            Body::Labeled(l) => {
                out.insert("prompt".into(), messages_json(l.prompt()));
                out.insert("completion".into(), messages_json(l.completion()));
                out.insert("label".into(), Value::Bool(l.desirable));
                if !l.conversation.tools.is_empty() {
                    out.insert("tools".into(), Value::Array(l.conversation.tools.clone()));
                }
            }
            Body::Preference(p) => {
                out.insert("prompt".into(), messages_json(&p.prompt));
                out.insert("chosen".into(), messages_json(&p.chosen));
                out.insert("rejected".into(), messages_json(&p.rejected));
            }
        }
        if !self.meta.is_empty() {
            out.insert("meta".into(), Value::Object(self.meta.clone()));
        }
        Value::Object(out)
    }
}

/// Messages as chat-template JSON (role, content, tool calls, reasoning, weight).
pub fn messages_json(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("role".into(), Value::String(m.role.as_str().into()));
                o.insert("content".into(), Value::String(m.text()));
                if !m.tool_calls.is_empty() {
                    let calls = serde_json::to_value(&m.tool_calls).unwrap_or(Value::Null);
                    o.insert("tool_calls".into(), calls);
                }
                if let Some(r) = &m.reasoning {
                    o.insert("reasoning_content".into(), Value::String(r.clone()));
                }
                if let Some(w) = m.weight {
                    o.insert("weight".into(), Value::from(w));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

fn hash_messages(h: &mut Fnv, messages: &[Message]) {
    for m in messages {
        h.write(m.role.as_str().as_bytes());
        h.write(&[0]);
        for p in &m.parts {
            h.write(p.as_bytes());
            h.write(&[1]);
        }
        for c in &m.tool_calls {
            h.write(c.name.as_bytes());
            h.write(c.arguments.to_string().as_bytes());
        }
        // Only when present, so records without reasoning keep their fingerprints.
        if let Some(r) = &m.reasoning {
            h.write(&[3]);
            h.write(r.as_bytes());
        }
        h.write(&[2]);
    }
}

/// FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_think_block_splits_as_qwen3_reads_it() {
        let s = |t: &str| split_reasoning(t);
        assert_eq!(
            s("<think>\nStep one.\n</think>\n\nAnswer."),
            Some(("Step one.".into(), "Answer.".into()))
        );
        assert_eq!(s("  <think>a</think>b"), Some(("a".into(), "b".into())));
        // Spaces are the text's own; only the newlines beside the tags go.
        assert_eq!(
            s("<think> a </think>\n b"),
            Some((" a ".into(), " b".into()))
        );
        assert_eq!(s("Answer <think>a</think>"), None);
        assert_eq!(s("<think>unfinished"), None);
        let mut m = Message::new(Role::Assistant, "x");
        m.reasoning = Some("r".into());
        assert_eq!(m.text_with_reasoning(), "<think>\nr\n</think>\n\nx");
        let back = Message::new(Role::Assistant, m.text_with_reasoning()).with_inline_reasoning();
        assert_eq!(
            (back.reasoning.as_deref(), back.text().as_str()),
            (Some("r"), "x")
        );
        // Users' <think> is their text.
        let u = Message::new(Role::User, "<think>a</think>b").with_inline_reasoning();
        assert_eq!(
            (u.reasoning.as_deref(), u.text().as_str()),
            (None, "<think>a</think>b")
        );
    }
}
