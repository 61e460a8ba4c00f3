//! Dataset formats: each reads a JSON object into a canonical [`Record`] and writes one back.
//!
//! The names here (`alpaca`, `prompt-completion`, …) are the ones the CLI, configs and JSON
//! output use.

mod alpaca;
mod dolly;
pub mod fields;
mod flan;
mod hh_rlhf;
mod kto;
pub mod messages;
mod openai;
mod preference;
mod prompt_completion;
mod sharegpt;
mod text;

pub use hh_rlhf::is_transcript as hh_rlhf_transcript;
pub use kto::from_conversation as labeled_from_conversation;

use crate::data::problem::Issues;
use crate::data::record::{Body, Conversation, Kind, Message, Record, Role};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumIter, strum::IntoStaticStr,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Format {
    Alpaca,
    Sharegpt,
    Openai,
    Dolly,
    Flan,
    PromptCompletion,
    Text,
    Preference,
    SharegptPreference,
    AlpacaPreference,
    HhRlhf,
    Kto,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub fn all() -> impl Iterator<Item = Format> {
        <Format as strum::IntoEnumIterator>::iter()
    }

    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn kind(self) -> Kind {
        match self {
            Format::Text => Kind::Text,
            Format::Preference
            | Format::SharegptPreference
            | Format::AlpacaPreference
            | Format::HhRlhf => Kind::Preference,
            Format::Kto => Kind::Unpaired,
            _ => Kind::Sft,
        }
    }

    /// The record shape, for help text and `tunelab data formats`.
    pub fn shape(self) -> &'static str {
        match self {
            Format::Alpaca => "instruction, input, output, optional system, optional history [[user, assistant], …]",
            Format::Sharegpt => "conversations[{from, value}] (human/gpt/system/function_call/observation/tool), optional system, optional tools; a gpt value's leading <think>…</think> is its reasoning",
            Format::Openai => "messages[{role, content}]; content is a string or a list of {type: text, text} parts; tool_calls and tool messages kept; an assistant's reasoning_content (or reasoning, or a leading <think>…</think>) is its reasoning",
            Format::Dolly => "instruction, context, response, category",
            Format::Flan => "inputs, targets (extra columns kept as metadata)",
            Format::PromptCompletion => "prompt, completion (strings, or message lists)",
            Format::Text => "text",
            Format::Preference => "prompt, chosen, rejected (TRL: strings or message lists; prompt may be implicit)",
            Format::SharegptPreference => "conversations plus chosen/rejected as single {from, value} messages (LLaMA-Factory)",
            Format::AlpacaPreference => "instruction, input, chosen, rejected",
            Format::HhRlhf => "chosen, rejected as \\n\\nHuman: … \\n\\nAssistant: … transcripts",
            Format::Kto => "label (true: desirable, false: undesirable) with messages[{role, content}] ending on the rated reply (LLaMA-Factory), or prompt, completion (TRL: strings or message lists)",
        }
    }

    /// The keys this format defines; the others become metadata.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Format::Alpaca => alpaca::KEYS,
            Format::Sharegpt => sharegpt::KEYS,
            Format::Openai => openai::KEYS,
            Format::Dolly => dolly::KEYS,
            Format::Flan => flan::KEYS,
            Format::PromptCompletion => prompt_completion::KEYS,
            Format::Text => text::KEYS,
            Format::Preference => preference::KEYS,
            Format::SharegptPreference => sharegpt::PREFERENCE_KEYS,
            Format::AlpacaPreference => alpaca::PREFERENCE_KEYS,
            Format::HhRlhf => hh_rlhf::KEYS,
            Format::Kto => kto::KEYS,
        }
    }

    /// Reads one record. Problems go to `issues`; `None` means the record is unusable.
    pub fn read(self, obj: &Map<String, Value>, issues: &mut Issues) -> Option<Record> {
        let body = match self {
            Format::Alpaca => alpaca::read(obj, issues),
            Format::Sharegpt => sharegpt::read(obj, issues),
            Format::Openai => openai::read(obj, issues),
            Format::Dolly => dolly::read(obj, issues),
            Format::Flan => flan::read(obj, issues),
            Format::PromptCompletion => prompt_completion::read(obj, issues),
            Format::Text => text::read(obj, issues),
            Format::Preference => preference::read(obj, issues),
            Format::SharegptPreference => sharegpt::read_preference(obj, issues),
            Format::AlpacaPreference => alpaca::read_preference(obj, issues),
            Format::HhRlhf => hh_rlhf::read(obj, issues),
            Format::Kto => kto::read(obj, issues),
        }?;
        Some(Record {
            body,
            meta: fields::extra_fields(obj, self.keys()),
        })
    }

    /// Reads one record straight from the JSON text of its object, without a `Value` tree,
    /// where this format has such a reader (alpaca) and the record is a plain one: the
    /// record [`read`](Self::read) gives, not yet validated. `None` means: parse the text and
    /// use [`read`](Self::read), which also says what is wrong with it.
    pub fn read_fast(self, text: &str) -> Option<Record> {
        let body = match self {
            Format::Alpaca => alpaca::read_plain(text)?,
            _ => return None,
        };
        Some(Record {
            body,
            meta: Map::new(),
        })
    }

    /// Appends the compact JSON of the one record [`write_records`](Self::write_records)
    /// makes of `record` to `out`, without building a `Value`, where it can (openai output
    /// of a conversation that has no tools, no extra fields and nothing to note). Returns
    /// false, with `out` untouched, where it cannot: then use
    /// [`write_records`](Self::write_records).
    pub fn write_fast(self, record: &Record, out: &mut Vec<u8>) -> bool {
        match (self, &record.body) {
            (Format::Openai, Body::Conversation(c)) if record.meta.is_empty() => {
                openai::write_plain(c, out)
            }
            _ => false,
        }
    }

    /// The records of this format that `record` becomes: usually one; a preference pair
    /// written as unpaired data becomes two (chosen → label true, rejected → label false),
    /// and an undesirable completion written as SFT data becomes none (counted in `notes`).
    pub fn write_records(
        self,
        record: &Record,
        notes: &mut Notes,
    ) -> Result<Vec<Map<String, Value>>, String> {
        match (self.kind(), &record.body) {
            (Kind::Unpaired, Body::Preference(p)) => {
                notes.note("preference pair became two rated completions (chosen → label true, rejected → label false)");
                let mut out = Vec::with_capacity(2);
                for labeled in p.unpaired() {
                    let r = Record {
                        body: Body::Labeled(labeled),
                        meta: record.meta.clone(),
                    };
                    out.push(self.write(&r, notes)?);
                }
                Ok(out)
            }
            (Kind::Sft, Body::Labeled(l)) if !l.desirable => {
                notes.note("undesirable completion (label false) left out: SFT trains only the desirable ones");
                Ok(Vec::new())
            }
            _ => Ok(vec![self.write(record, notes)?]),
        }
    }

    /// Writes one record in this format. `Err` says why this record cannot be held at all;
    /// what is carried imperfectly is counted in `notes`.
    pub fn write(self, record: &Record, notes: &mut Notes) -> Result<Map<String, Value>, String> {
        let converted;
        let body = match (self.kind(), &record.body) {
            (Kind::Sft, Body::Preference(p)) => {
                notes.note("preference pair became a conversation: prompt plus the chosen reply (rejected dropped)");
                let mut messages = p.prompt.clone();
                messages.extend(p.chosen.iter().cloned());
                converted = Body::Conversation(Conversation {
                    messages,
                    tools: p.tools.clone(),
                    plain: p.plain,
                });
                &converted
            }
            (Kind::Sft, Body::Labeled(l)) => {
                if !l.desirable {
                    return Err("an undesirable completion (label false) is not SFT data".into());
                }
                converted = Body::Conversation(l.conversation.clone());
                &converted
            }
            (Kind::Unpaired, Body::Conversation(c)) => {
                notes.note("conversation written as a desirable completion (label true)");
                converted = Body::Labeled(kto::from_conversation(c, true));
                &converted
            }
            (target, body) if target != record.kind() => {
                let _ = body;
                return Err(format!(
                    "a {} record cannot be written as {} ({} data)",
                    record.kind(),
                    self.name(),
                    target
                ));
            }
            (_, body) => body,
        };
        let mut out = match (self, body) {
            (Format::Alpaca, Body::Conversation(c)) => alpaca::write(c, notes),
            (Format::Sharegpt, Body::Conversation(c)) => sharegpt::write(c, notes),
            (Format::Openai, Body::Conversation(c)) => openai::write(c, notes),
            (Format::Dolly, Body::Conversation(c)) => dolly::write(c, &record.meta, notes),
            (Format::Flan, Body::Conversation(c)) => flan::write(c, notes),
            (Format::PromptCompletion, Body::Conversation(c)) => prompt_completion::write(c, notes),
            (Format::Text, Body::Text(t)) => Ok(text::write(t)),
            (Format::Preference, Body::Preference(p)) => preference::write(p, notes),
            (Format::SharegptPreference, Body::Preference(p)) => {
                sharegpt::write_preference(p, notes)
            }
            (Format::AlpacaPreference, Body::Preference(p)) => alpaca::write_preference(p, notes),
            (Format::HhRlhf, Body::Preference(p)) => hh_rlhf::write(p, notes),
            (Format::Kto, Body::Labeled(l)) => kto::write(l, notes),
            _ => Err(format!("{} cannot hold this record", self.name())),
        }?;
        for (k, v) in &record.meta {
            if out.contains_key(k) {
                if !(self == Format::Dolly && k == "category") {
                    notes.note(format!(
                        "extra field {k:?} dropped: {} uses that name",
                        self.name()
                    ));
                }
            } else {
                notes.note(format!("extra field {k:?} carried as a top-level key"));
                out.insert(k.clone(), v.clone());
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("format", s)
    }
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a conversion could not carry exactly, counted per kind of loss.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notes(BTreeMap<String, u64>);

impl Notes {
    pub fn note(&mut self, message: impl Into<String>) {
        *self.0.entry(message.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Notes) {
        for (k, n) in other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, n)| (k.as_str(), *n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A single-exchange view of a conversation, for the formats that hold one prompt and one reply
/// (plus alpaca's `history`).
pub(crate) struct Exchange<'a> {
    pub system: Option<&'a Message>,
    pub history: Vec<(&'a Message, &'a Message)>,
    pub user: &'a Message,
    pub assistant: &'a Message,
}

pub(crate) fn split_exchange<'a>(
    c: &'a Conversation,
    format: &str,
) -> Result<Exchange<'a>, String> {
    let mut rest: &[Message] = &c.messages;
    let system = match rest.first() {
        Some(m) if m.role == Role::System => {
            rest = &rest[1..];
            Some(m)
        }
        _ => None,
    };
    if rest
        .iter()
        .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty())
        || !c.tools.is_empty()
    {
        return Err(format!(
            "{format} cannot hold tool calls, tool messages or tool definitions"
        ));
    }
    let shape_err = || {
        let roles: Vec<&str> = rest.iter().map(|m| m.role.as_str()).collect();
        format!(
            "{format} needs alternating user and assistant turns ending on the assistant; found [{}]",
            roles.join(", ")
        )
    };
    if rest.len() < 2 || !rest.len().is_multiple_of(2) {
        return Err(shape_err());
    }
    let mut pairs = Vec::new();
    for pair in rest.chunks(2) {
        if pair[0].role != Role::User || pair[1].role != Role::Assistant {
            return Err(shape_err());
        }
        pairs.push((&pair[0], &pair[1]));
    }
    let (user, assistant) = pairs.pop().ok_or_else(shape_err)?;
    Ok(Exchange {
        system,
        history: pairs,
        user,
        assistant,
    })
}

/// Notes per-message weights that a format without them drops.
pub(crate) fn note_dropped_weights(messages: &[Message], format: &str, notes: &mut Notes) {
    if messages.iter().any(|m| m.weight.is_some()) {
        notes.note(format!(
            "per-message loss weights dropped ({format} has none)"
        ));
    }
}

/// Notes text parts joined into one string; reasoning goes in front as `<think>…</think>`.
pub(crate) fn joined(m: &Message, notes: &mut Notes) -> String {
    if m.parts.len() > 1 {
        notes.note("text parts (such as alpaca's input) joined into one message with a newline");
    }
    m.text_with_reasoning()
}
