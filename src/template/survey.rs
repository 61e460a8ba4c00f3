//! Token statistics over a whole dataset: tokens and trained tokens per example, and what
//! `max_seq_len` would truncate or drop. Encoding runs in ordered parallel batches.

use super::encode::{Encoded, Encoder};
use super::pack::{fit_length, Fit, LengthPolicy};
use crate::data::scan::Lengths;
use crate::data::{parallel, read_record, DataError, Dataset, Location};

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
    pub truncated: u64,
    pub dropped: u64,
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

/// One record's outcome: (tokens, trained tokens, fit) or an error message.
type Outcome = Option<Result<(usize, usize, Fit), String>>;

pub fn token_stats(
    dataset: &Dataset,
    encoder: &Encoder,
    max_seq_len: usize,
    policy: LengthPolicy,
) -> Result<TokenStats, DataError> {
    let started = std::time::Instant::now();
    let mut s = TokenStats {
        max_seq_len,
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
        let outcomes: Vec<(Location, Outcome)> = parallel::map_ordered(batch, threads, |raw| {
            let location = raw.location;
            let Ok(record) = read_record(format, location, raw.value()) else {
                return (location, None);
            };
            let outcome = match encoder.encode(&record) {
                Ok(Encoded::Sft(mut ex)) => {
                    let (len, trained) = (ex.len(), ex.trained());
                    let fit = fit_length(&mut ex, max_seq_len, policy);
                    Ok((len, trained, fit))
                }
                Ok(Encoded::Preference(p)) => {
                    let len = p.prompt_ids.len() + p.chosen_ids.len().max(p.rejected_ids.len());
                    let fit = if len <= max_seq_len {
                        Fit::Kept
                    } else if policy == LengthPolicy::Drop {
                        Fit::Dropped
                    } else {
                        Fit::Truncated
                    };
                    Ok((len, p.chosen_ids.len() + p.rejected_ids.len(), fit))
                }
                Err(e) => Err(e.to_string()),
            };
            (location, Some(outcome))
        });
        for (location, outcome) in outcomes {
            match outcome {
                None => {}
                Some(Ok((len, trained, fit))) => {
                    s.examples += 1;
                    s.tokens.add(len as u64);
                    s.trained.add(trained as u64);
                    match fit {
                        Fit::Kept => {}
                        Fit::Truncated => s.truncated += 1,
                        Fit::Dropped => s.dropped += 1,
                    }
                }
                Some(Err(message)) => {
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
