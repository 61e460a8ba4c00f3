//! Answers to held-out prompts, to score against their references: each record's
//! conversation up to its last assistant turn is the prompt and that turn is the reference
//! (a preference pair's prompt and chosen reply, a desirable KTO completion). The answers are
//! generated greedily by default, one prompt at a time through the same decode loop as Chat
//! and `serve` ([`crate::infer::generate`]), so what is scored is what a user would see.

use crate::data::{DataError, Dataset, Message, Problem, Record, Role};
use crate::infer::sampling::Sampling;
use crate::infer::{GenEvent, StopReason};
use crate::model::Model;
use crate::template::encode::{template_message, template_tools};
use crate::template::{Encoder, TemplateError, TextTokenizer};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{file}: {problem}")]
    Record { file: PathBuf, problem: Problem },
    #[error("{file}: {location}: the prompt: {source}")]
    Prompt {
        file: PathBuf,
        location: String,
        #[source]
        source: TemplateError,
    },
    #[error("{file}: no record has a reply to compare with (a final assistant turn, a chosen reply or a desirable completion); {skipped} records without one")]
    NoReferences { file: PathBuf, skipped: usize },
    #[error("generation failed on {location}: {message}")]
    Generation { location: String, message: String },
}

/// A prompt and the reply the data holds for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Its position among the file's usable records (0-based).
    pub index: usize,
    /// Where it is in the file (`line 12`, `record 3`).
    pub location: String,
    pub messages: Vec<Message>,
    pub tools: Vec<serde_json::Value>,
    /// TRL's plain prompt/completion strings: prompted without a chat template, as trained.
    pub plain: bool,
    pub reference: String,
}

/// The usable prompts of a file and how many records had no reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompts {
    pub items: Vec<Prompt>,
    pub skipped: usize,
}

/// Reads the prompts of `path` (any format tunelab reads), at most `limit`. A record that
/// does not parse is an error naming it; a record with no reply to compare with is skipped
/// and counted.
pub fn prompts(path: &Path, limit: Option<usize>) -> Result<Prompts, GenerateError> {
    let dataset = Dataset::open(path, None)?;
    let mut items = Vec::new();
    let mut skipped = 0;
    for item in dataset.items()? {
        if limit.is_some_and(|l| items.len() >= l) {
            break;
        }
        let item = item?;
        let record = match item.result {
            Ok(r) => r,
            Err(mut problems) => {
                return Err(GenerateError::Record {
                    file: path.to_path_buf(),
                    problem: problems.remove(0),
                })
            }
        };
        match split(&record) {
            Some((messages, tools, plain, reference)) => items.push(Prompt {
                index: items.len(),
                location: item.location.to_string(),
                messages,
                tools,
                plain,
                reference,
            }),
            None => skipped += 1,
        }
    }
    if items.is_empty() {
        return Err(GenerateError::NoReferences {
            file: path.to_path_buf(),
            skipped,
        });
    }
    Ok(Prompts { items, skipped })
}

type Split = (Vec<Message>, Vec<serde_json::Value>, bool, String);

/// The messages before the reference reply, and that reply's text (its answer, without any
/// reasoning).
fn split(record: &Record) -> Option<Split> {
    use crate::data::Body;
    let last_reply = |messages: &[Message]| {
        messages
            .iter()
            .rposition(|m| m.role == Role::Assistant)
            .filter(|&i| i > 0)
    };
    match &record.body {
        Body::Conversation(c) => {
            let i = last_reply(&c.messages)?;
            Some((
                c.messages[..i].to_vec(),
                c.tools.clone(),
                c.plain,
                c.messages[i].text(),
            ))
        }
        Body::Preference(p) => {
            let reply = p.chosen.iter().rev().find(|m| m.role == Role::Assistant)?;
            (!p.prompt.is_empty())
                .then(|| (p.prompt.clone(), p.tools.clone(), p.plain, reply.text()))
        }
        Body::Labeled(l) if l.desirable => {
            let c = &l.conversation;
            let i = last_reply(&c.messages)?;
            Some((
                c.messages[..i].to_vec(),
                c.tools.clone(),
                c.plain,
                c.messages[i].text(),
            ))
        }
        Body::Labeled(_) | Body::Text(_) => None,
    }
}

impl Prompt {
    /// The ids the answer continues: the chat template with its generation prompt, or the
    /// plain prompt string with the tokenizer's special tokens, as it was trained.
    pub fn ids(&self, encoder: &Encoder) -> Result<Vec<u32>, TemplateError> {
        if self.plain {
            let text: String = self.messages.iter().map(|m| m.text()).collect();
            return Ok(encoder.tokenizer.encode(&text, true)?.ids);
        }
        let msgs: Vec<serde_json::Value> = self.messages.iter().map(template_message).collect();
        let tools = template_tools(&self.tools);
        let text = encoder.render(&msgs, tools.as_ref(), true)?;
        Ok(encoder.tokenizer.encode(&text, false)?.ids)
    }

    /// The last user message (what a person reading the answers wants beside them).
    pub fn question(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .or(self.messages.last())
            .map(|m| m.text())
            .unwrap_or_default()
    }
}

/// One generated answer beside its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub index: usize,
    pub location: String,
    pub prompt: String,
    pub prediction: String,
    pub reference: String,
    /// Tokens generated.
    pub tokens: usize,
    pub prompt_tokens: usize,
    /// Whether it ended on a stop token (false: cut at the token budget).
    pub stopped: bool,
    pub seconds: f64,
}

/// What one generation gave: the text (trimmed), its tokens, whether a stop token ended it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub text: String,
    pub tokens: usize,
    pub stopped: bool,
    pub seconds: f64,
}

/// Continues `ids` with `model` through the decode loop Chat and `serve` use.
pub fn continue_ids(
    model: &Model,
    tok: &TextTokenizer,
    ids: &[u32],
    sampling: &Sampling,
) -> Result<Generated, String> {
    let started = Instant::now();
    let mut text = String::new();
    let mut failure = None;
    let mut done = (0, false);
    crate::infer::generate(model, tok, ids, sampling.clone(), |e| {
        match e {
            GenEvent::Text(t) => text.push_str(&t),
            GenEvent::Error(e) => failure = Some(e),
            GenEvent::Done { tokens, reason, .. } => done = (tokens, reason == StopReason::Stop),
        }
        true
    });
    match failure {
        Some(message) => Err(message),
        None => Ok(Generated {
            text: text.trim().to_string(),
            tokens: done.0,
            stopped: done.1,
            seconds: started.elapsed().as_secs_f64(),
        }),
    }
}

/// Answers `prompt` with `model` (its adapter on, if any).
pub fn answer(
    model: &Model,
    encoder: &Encoder,
    file: &Path,
    prompt: &Prompt,
    sampling: &Sampling,
) -> Result<Answer, GenerateError> {
    let ids = prompt
        .ids(encoder)
        .map_err(|source| GenerateError::Prompt {
            file: file.to_path_buf(),
            location: prompt.location.clone(),
            source,
        })?;
    let g = continue_ids(model, &encoder.tokenizer, &ids, sampling).map_err(|message| {
        GenerateError::Generation {
            location: prompt.location.clone(),
            message,
        }
    })?;
    Ok(Answer {
        index: prompt.index,
        location: prompt.location.clone(),
        prompt: prompt.question(),
        prediction: g.text,
        reference: prompt.reference.clone(),
        tokens: g.tokens,
        prompt_tokens: ids.len(),
        stopped: g.stopped,
        seconds: g.seconds,
    })
}

/// Answers every prompt in order, handing each answer to `on_answer` as it is made (it
/// returns false to stop). Returns the answers made.
pub fn answer_all(
    model: &Model,
    encoder: &Encoder,
    file: &Path,
    prompts: &[Prompt],
    sampling: &Sampling,
    mut on_answer: impl FnMut(&Answer) -> bool,
) -> Result<Vec<Answer>, GenerateError> {
    let mut out = Vec::with_capacity(prompts.len());
    for p in prompts {
        let a = answer(model, encoder, file, p, sampling)?;
        let go_on = on_answer(&a);
        out.push(a);
        if !go_on {
            break;
        }
    }
    Ok(out)
}

/// Generated tokens per second over `answers` (their generation time only).
pub fn tokens_per_second(answers: &[Answer]) -> f64 {
    let tokens: usize = answers.iter().map(|a| a.tokens).sum();
    let seconds: f64 = answers.iter().map(|a| a.seconds).sum();
    if seconds > 0.0 {
        tokens as f64 / seconds
    } else {
        0.0
    }
}
