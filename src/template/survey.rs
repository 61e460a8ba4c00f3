//! Token statistics over a whole dataset: tokens and trained tokens per example, and what
//! `max_seq_len` would truncate or drop. Encoding runs in ordered parallel batches.

use super::encode::{Encoded, Encoder};
use super::error::TemplateError;
use super::pack::{fit_labeled, fit_length, fit_pair, Fit, LengthPolicy};
use super::tools::Ignored;
use crate::data::scan::Lengths;
use crate::data::Body;
use crate::data::{parallel, read_record, DataError, Dataset, Location};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct TokenStats {
    /// Records encoded (invalid records are skipped and counted by the data scan).
    pub examples: u64,
    /// Records the template or tokenizer could not encode.
    pub errors: u64,
    pub first_errors: Vec<(Location, String)>,
    /// Tokens per example (for preference pairs: prompt plus the longer completion).
    pub tokens: Lengths,
    /// Trained tokens per example, before any truncation.
    pub trained: Lengths,
    pub max_seq_len: usize,
    /// Preference pairs: prompts keep their last this many tokens (as TRL's DPO does).
    pub max_prompt_len: usize,
    /// Whether the examples are preference pairs.
    pub pairs: bool,
    pub truncated: u64,
    pub dropped: u64,
    /// Records with tool calls or definitions, under `tool_format`.
    pub tool_records: u64,
    pub tool_format: super::tools::ToolFormat,
    /// Of those, left out (`drop`) or failed (`template` without tool support).
    pub tool_skipped: u64,
    pub tool_failed: u64,
    /// Records whose rendering leaves a field out, by field (`the system prompt`, …).
    pub ignored: BTreeMap<&'static str, u64>,
    pub seconds: f64,
}

impl TokenStats {
    pub fn examples_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.examples as f64 / self.seconds
        } else {
            0.0
        }
    }
}

const BATCH: usize = 512;

/// One record's outcome.
enum Outcome {
    /// Not a valid record (the data scan counts those).
    Invalid,
    Encoded {
        len: usize,
        trained: usize,
        fit: Fit,
    },
    Skipped,
    Failed(String),
}

/// What one record said about tools and ignored fields.
struct Notes {
    tools: bool,
    tool_failed: bool,
    ignored: Vec<Ignored>,
}

/// What the lengths are checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_seq_len: usize,
    /// Preference pairs only.
    pub max_prompt_len: usize,
    /// SFT examples only (pairs are cut as TRL cuts them, and dropped only when no
    /// completion token fits).
    pub policy: LengthPolicy,
}

pub fn token_stats(
    dataset: &Dataset,
    encoder: &Encoder,
    limits: Limits,
) -> Result<TokenStats, DataError> {
    let started = std::time::Instant::now();
    let Limits {
        max_seq_len,
        max_prompt_len,
        policy,
    } = limits;
    let mut s = TokenStats {
        max_seq_len,
        max_prompt_len,
        pairs: dataset.kind() == crate::data::Kind::Preference,
        tool_format: encoder.tool_format,
        ..Default::default()
    };
    let threads = parallel::threads();
    let format = dataset.format;
    let mut raws = dataset.file.records()?;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        for raw in raws.by_ref().take(BATCH) {
            batch.push(raw?);
        }
        if batch.is_empty() {
            break;
        }
        let outcomes: Vec<(Location, Outcome, Notes)> =
            parallel::map_ordered(batch, threads, |raw| {
                let location = raw.location;
                let mut notes = Notes {
                    tools: false,
                    tool_failed: false,
                    ignored: Vec::new(),
                };
                let Ok(record) = read_record(format, location, raw.value()) else {
                    return (location, Outcome::Invalid, notes);
                };
                notes.tools = super::tools::record_carries_tools(&record);
                let outcome = match encoder.encode(&record) {
                    Ok(Encoded::Sft(mut ex)) => {
                        if let Body::Conversation(c) = &record.body {
                            notes.ignored = encoder
                                .ignored(c, &ex.text)
                                .into_iter()
                                .filter(|i| {
                                    matches!(
                                        i,
                                        Ignored::ToolNames
                                            | Ignored::SystemPrompt
                                            | Ignored::Reasoning
                                    )
                                })
                                .collect();
                        }
                        let (len, trained) = (ex.len(), ex.trained());
                        let fit = fit_length(&mut ex, max_seq_len, policy);
                        Outcome::Encoded { len, trained, fit }
                    }
                    Ok(Encoded::Preference(mut p)) => {
                        let len = p.prompt_ids.len() + p.chosen_ids.len().max(p.rejected_ids.len());
                        let trained = p.chosen_ids.len() + p.rejected_ids.len();
                        let fit = fit_pair(&mut p, max_prompt_len, max_seq_len);
                        Outcome::Encoded { len, trained, fit }
                    }
                    Ok(Encoded::Labeled(mut l)) => {
                        let len = l.prompt_ids.len() + l.completion_ids.len();
                        let trained = l.completion_ids.len();
                        let fit = fit_labeled(&mut l, max_prompt_len, max_seq_len);
                        Outcome::Encoded { len, trained, fit }
                    }
                    Ok(Encoded::Skipped(_)) => Outcome::Skipped,
                    Err(e) => {
                        notes.tool_failed = matches!(e, TemplateError::ToolsNotRendered { .. });
                        Outcome::Failed(e.to_string())
                    }
                };
                (location, outcome, notes)
            });
        for (location, outcome, notes) in outcomes {
            s.tool_records += u64::from(notes.tools);
            s.tool_failed += u64::from(notes.tool_failed);
            for i in notes.ignored {
                *s.ignored.entry(i.describe()).or_default() += 1;
            }
            match outcome {
                Outcome::Invalid => {}
                Outcome::Skipped => s.tool_skipped += 1,
                Outcome::Encoded { len, trained, fit } => {
                    s.examples += 1;
                    s.tokens.add(len as u64);
                    s.trained.add(trained as u64);
                    match fit {
                        Fit::Kept => {}
                        Fit::Truncated => s.truncated += 1,
                        Fit::Dropped => s.dropped += 1,
                    }
                }
                Outcome::Failed(message) => {
                    s.errors += 1;
                    if s.first_errors.len() < 5 {
                        s.first_errors.push((location, message));
                    }
                }
            }
        }
    }
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

/// How a dataset's tool calls fare with an encoder: how many records carry tool calls or
/// definitions, and whether the template renders them (judged on the first such record).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolSurvey {
    pub records: u64,
    pub with_tools: u64,
    /// `None` when no record carries tools.
    pub template_renders: Option<bool>,
    pub first: Option<Location>,
}

impl ToolSurvey {
    /// One line for the CLI and the workbench, or `None` when no record carries tools.
    pub fn describe(&self, template: &str, policy: super::tools::ToolFormat) -> Option<String> {
        use super::tools::ToolFormat;
        let renders = self.template_renders?;
        let what = format!(
            "{} of {} records carry tool calls or definitions (first: {})",
            self.with_tools,
            self.records,
            self.first.map(|l| l.to_string()).unwrap_or_default()
        );
        Some(match (renders, policy) {
            (_, ToolFormat::Json) => format!(
                "{what}; data.tool_format json writes them as <tool_call> text"
            ),
            (_, ToolFormat::Drop) => {
                format!("{what}; data.tool_format drop leaves those records out")
            }
            (true, ToolFormat::Template) => {
                format!("{what}; chat template {template} renders them")
            }
            (false, ToolFormat::Template) => format!(
                "{what}; chat template {template} does NOT render them, so with data.tool_format template those records fail (json writes them as <tool_call> text, drop leaves them out)"
            ),
        })
    }
}

/// Counts the records with tools and checks the template on the first of them.
pub fn tool_survey(dataset: &Dataset, encoder: &Encoder) -> Result<ToolSurvey, DataError> {
    let mut s = ToolSurvey::default();
    for raw in dataset.file.records()? {
        let raw = raw?;
        let location = raw.location;
        let Ok(record) = read_record(dataset.format, location, raw.value()) else {
            continue;
        };
        s.records += 1;
        if !super::tools::record_carries_tools(&record) {
            continue;
        }
        s.with_tools += 1;
        if s.template_renders.is_none() {
            s.first = Some(location);
            let ok = match encoder.encode_with(&record, super::tools::ToolFormat::Template) {
                Ok(_) => true,
                Err(TemplateError::ToolsNotRendered { .. }) => false,
                Err(_) => true,
            };
            s.template_renders = Some(ok);
        }
    }
    Ok(s)
}
