//! The example stream shared by training and evaluation: records → examples with loss
//! masks → (optionally packed) sequences → padded micro-batches, in an order that is a pure
//! function of the seed and the step, so a resumed run sees exactly the batches an
//! uninterrupted one would.

pub mod pairs;
pub mod prompts;
pub mod rated;

use crate::data::{DataError, Dataset, Item, Kind, Location, Record};
use crate::model::Batch;
use crate::template::{fit_length, pack, Encoded, Encoder, Example, Fit, LengthPolicy, IGNORE};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{file}: {location}: {message}")]
    Record {
        file: PathBuf,
        location: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Unusable { file: PathBuf, message: String },
}

/// One training sequence: ids, labels aligned with them (not shifted), and positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    pub position_ids: Vec<u32>,
}

impl Sequence {
    pub fn from_example(ex: Example) -> Self {
        let n = ex.input_ids.len() as u32;
        Sequence {
            input_ids: ex.input_ids,
            labels: ex.labels,
            position_ids: (0..n).collect(),
        }
    }
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
    /// Targets the shifted loss counts.
    pub fn targets(&self) -> usize {
        self.labels.iter().skip(1).filter(|l| **l != IGNORE).count()
    }
}

/// A padded micro-batch ready for the model.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    pub ids: Vec<Vec<u32>>,
    pub labels: Vec<Vec<i64>>,
    pub batch: Batch,
    /// Real (non-padding) tokens.
    pub tokens: usize,
    /// Targets the loss averages over.
    pub targets: usize,
}

/// What encoding a file left out, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeReport {
    /// Examples dropped for length or for having nothing to train.
    pub dropped: usize,
    /// Examples cut to fit (preference pairs; SFT examples are truncated silently by
    /// `data.length_policy`).
    pub truncated: usize,
    /// Records with tool calls or definitions.
    pub tool_records: usize,
    /// Of those, left out by `data.tool_format: drop`.
    pub tool_skipped: usize,
    /// Rated completions (KTO) kept, by label.
    pub desirable: usize,
    pub undesirable: usize,
    /// Undesirable completions SFT left out (`data.train_undesirable: false`).
    pub undesirable_skipped: usize,
}

impl EncodeReport {
    /// Counts how a preference or rated example fit the length limits; false when it was
    /// dropped.
    fn keeps(&mut self, fit: Fit) -> bool {
        match fit {
            Fit::Kept => true,
            Fit::Truncated => {
                self.truncated += 1;
                true
            }
            Fit::Dropped => {
                self.dropped += 1;
                false
            }
        }
    }
}

/// A record's encoding error, located in its file.
fn record_error(path: &Path, location: Location, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Record {
        file: path.into(),
        location: location.to_string(),
        message: e.to_string(),
    }
}

impl std::ops::AddAssign for EncodeReport {
    fn add_assign(&mut self, o: Self) {
        self.dropped += o.dropped;
        self.truncated += o.truncated;
        self.tool_records += o.tool_records;
        self.tool_skipped += o.tool_skipped;
        self.desirable += o.desirable;
        self.undesirable += o.undesirable;
        self.undesirable_skipped += o.undesirable_skipped;
    }
}

/// Opens `path` as `format` (`auto` detects it).
fn open_dataset(path: &Path, format: &str) -> Result<Dataset, DatasetError> {
    let fmt = if format == "auto" {
        None
    } else {
        Some(format.parse().map_err(|e: String| DatasetError::Unusable {
            file: path.into(),
            message: e,
        })?)
    };
    Ok(Dataset::open(path, fmt)?)
}

/// The record of `item`, or its problems as one error naming the file and the location.
fn usable(path: &Path, item: Item) -> Result<(Location, Record), DatasetError> {
    let Item { location, result } = item;
    let record = result.map_err(|problems| DatasetError::Record {
        file: path.into(),
        location: location.to_string(),
        message: problems
            .iter()
            .map(|p| {
                if p.field.is_empty() {
                    p.message.clone()
                } else {
                    format!("{}: {}", p.field, p.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    Ok((location, record))
}

/// Encodes every SFT or text record of `path`; a record that cannot be used stops with its
/// location. Preference records are refused (they need `train.method: dpo`). Of rated
/// completions (KTO data) only the desirable ones train unless `train_undesirable`, and the
/// others are counted. Records whose
/// tool calls the template cannot render stop the encoding with the count of every record
/// that carries tools, so the message says how much of the file is affected.
pub fn encode_file(
    path: &Path,
    format: &str,
    encoder: &Encoder,
    max_seq_len: usize,
    policy: LengthPolicy,
    train_undesirable: bool,
) -> Result<(Vec<Example>, EncodeReport), DatasetError> {
    let ds = open_dataset(path, format)?;
    if ds.kind() == Kind::Preference {
        return Err(DatasetError::Unusable {
            file: path.into(),
            message: format!(
                "{} holds preference pairs; SFT needs conversations or text (DPO trains on pairs)",
                ds.format
            ),
        });
    }
    let mut out = Vec::new();
    let mut report = EncodeReport::default();
    // The first record the template could not carry tools for: (location, message).
    let mut tools_failed: Option<(String, String)> = None;
    for item in ds.items()? {
        let (location, mut record) = usable(path, item?)?;
        if let crate::data::Body::Labeled(l) = &record.body {
            if !l.desirable && !train_undesirable {
                report.undesirable_skipped += 1;
                continue;
            }
            // A rated completion trains as the conversation it is.
            record.body = crate::data::Body::Conversation(l.conversation.clone());
        }
        if crate::template::tools::record_carries_tools(&record) {
            report.tool_records += 1;
        }
        if tools_failed.is_some() {
            // Only counting from here on.
            continue;
        }
        let encoded = match encoder.encode(&record) {
            Ok(e) => e,
            Err(e @ crate::template::TemplateError::ToolsNotRendered { .. }) => {
                tools_failed = Some((location.to_string(), e.to_string()));
                continue;
            }
            Err(e) => return Err(record_error(path, location, e)),
        };
        let mut ex = match encoded {
            Encoded::Sft(ex) => ex,
            Encoded::Skipped(_) => {
                report.tool_skipped += 1;
                continue;
            }
            Encoded::Preference(_) | Encoded::Labeled(_) => continue,
        };
        ex.prompt = first_user_text(&record);
        if fit_length(&mut ex, max_seq_len, policy) == Fit::Dropped || ex.trained() == 0 {
            report.dropped += 1;
            continue;
        }
        out.push(ex);
    }
    if let Some((location, message)) = tools_failed {
        return Err(DatasetError::Record {
            file: path.into(),
            location,
            message: format!(
                "{message} ({} records of this file carry tool calls or definitions)",
                report.tool_records
            ),
        });
    }
    if out.is_empty() {
        let message = if report.undesirable_skipped > 0 {
            format!(
                "every completion is labelled undesirable ({}); SFT trains only desirable ones \
                 (train.method: kto learns from both)",
                report.undesirable_skipped
            )
        } else {
            "no example with trained tokens fits data.max_seq_len".into()
        };
        return Err(DatasetError::Unusable {
            file: path.into(),
            message,
        });
    }
    Ok((out, report))
}

/// The first user message of a conversation (the question a sample reply answers).
fn first_user_text(r: &crate::data::Record) -> String {
    match &r.body {
        crate::data::Body::Conversation(c) => c
            .messages
            .iter()
            .find(|m| m.role == crate::data::Role::User)
            .map(|m| m.text())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The last user message of a prompt (what a sample reply answers), or nothing.
fn last_user_text(prompt: &[crate::data::Message]) -> String {
    prompt
        .iter()
        .rev()
        .find(|m| m.role == crate::data::Role::User)
        .map(|m| m.text())
        .unwrap_or_default()
}

/// How many of `n` examples [`split`] holds out for `fraction`: none below two examples,
/// else at least one and never all.
pub fn held_out_count(n: usize, fraction: f64) -> usize {
    if fraction <= 0.0 || n < 2 {
        return 0;
    }
    ((n as f64 * fraction).ceil() as usize).clamp(1, n - 1)
}

/// Holds out `fraction` of `examples` (at least one) for evaluation, chosen by `seed`.
pub fn split<T>(examples: Vec<T>, fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let n_eval = held_out_count(examples.len(), fraction);
    if n_eval == 0 {
        return (examples, Vec::new());
    }
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x5EED_E7A1));
    let eval_set: std::collections::HashSet<usize> = idx[..n_eval].iter().copied().collect();
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (i, ex) in examples.into_iter().enumerate() {
        if eval_set.contains(&i) {
            eval.push(ex);
        } else {
            train.push(ex);
        }
    }
    (train, eval)
}

/// Sequences for training: packed when asked, one example each otherwise.
pub fn sequences(examples: Vec<Example>, packing: bool, max_seq_len: usize) -> Vec<Sequence> {
    if packing {
        pack(examples, max_seq_len)
            .into_iter()
            .map(|p| Sequence {
                input_ids: p.input_ids,
                labels: p.labels,
                position_ids: p.position_ids,
            })
            .collect()
    } else {
        examples.into_iter().map(Sequence::from_example).collect()
    }
}

/// Pads `rows` to their longest; padding has mask 0 and label [`IGNORE`].
pub fn collate(rows: &[&Sequence], pad_id: u32) -> MicroBatch {
    let t = rows.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut mb = MicroBatch {
        ids: Vec::new(),
        labels: Vec::new(),
        batch: Batch::default(),
        tokens: 0,
        targets: 0,
    };
    let mut positions = Vec::new();
    let mut mask = Vec::new();
    for s in rows {
        let n = s.len();
        let mut ids = s.input_ids.clone();
        ids.resize(t, pad_id);
        let mut labels = s.labels.clone();
        labels.resize(t, IGNORE);
        let mut pos = s.position_ids.clone();
        // Padding continues the positions of the last example so it never opens a segment.
        let last = pos.last().copied().unwrap_or(0);
        pos.extend((1..=(t - n) as u32).map(|k| last + k));
        let mut m = vec![1u8; n];
        m.resize(t, 0);
        mb.tokens += n;
        mb.targets += s.targets();
        mb.ids.push(ids);
        mb.labels.push(labels);
        positions.push(pos);
        mask.push(m);
    }
    mb.batch = Batch {
        position_ids: Some(positions),
        attention_mask: Some(mask),
    };
    mb
}

/// Prompt + completion rows padded to the longest; only completion tokens are targets.
/// Preference pairs and rated completions go through the model this way.
pub fn collate_rows(rows: &[(&[u32], &[u32])], pad_id: u32) -> MicroBatch {
    let t = rows
        .iter()
        .map(|(p, c)| p.len() + c.len())
        .max()
        .unwrap_or(0);
    let mut mb = MicroBatch {
        ids: Vec::new(),
        labels: Vec::new(),
        batch: Batch::default(),
        tokens: 0,
        targets: 0,
    };
    let mut positions = Vec::new();
    let mut mask = Vec::new();
    for (prompt, completion) in rows {
        let n = prompt.len() + completion.len();
        let mut ids: Vec<u32> = prompt.iter().chain(completion.iter()).copied().collect();
        let mut labels: Vec<i64> = prompt
            .iter()
            .map(|_| IGNORE)
            .chain(completion.iter().map(|&i| i64::from(i)))
            .collect();
        ids.resize(t, pad_id);
        labels.resize(t, IGNORE);
        let mut m = vec![1u8; n];
        m.resize(t, 0);
        mb.tokens += n;
        mb.targets += completion.len();
        mb.ids.push(ids);
        mb.labels.push(labels);
        positions.push((0..t as u32).collect());
        mask.push(m);
    }
    mb.batch = Batch {
        position_ids: Some(positions),
        attention_mask: Some(mask),
    };
    mb
}

/// The order of micro-batches: epoch `e` is a permutation of the sequences drawn from
/// `(seed, e)`, cut into batches of `batch_size` (the last may be short).
#[derive(Debug, Clone)]
pub struct Order {
    pub seed: u64,
    pub batch_size: usize,
    pub sequences: usize,
}

impl Order {
    pub fn micro_per_epoch(&self) -> u64 {
        self.sequences.div_ceil(self.batch_size.max(1)) as u64
    }

    /// Sequence indices of global micro-batch `m` (counting across epochs).
    pub fn micro_batch(&self, m: u64) -> Vec<usize> {
        let per = self.micro_per_epoch().max(1);
        let (epoch, k) = (m / per, (m % per) as usize);
        let mut order: Vec<usize> = (0..self.sequences).collect();
        let seed = self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let start = k * self.batch_size;
        order[start..(start + self.batch_size).min(self.sequences)].to_vec()
    }

    /// Epochs completed (fractional) after `micro` micro-batches.
    pub fn epoch(&self, micro: u64) -> f64 {
        micro as f64 / self.micro_per_epoch().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(ids: &[u32]) -> Sequence {
        Sequence {
            input_ids: ids.to_vec(),
            labels: ids.iter().map(|&i| i as i64).collect(),
            position_ids: (0..ids.len() as u32).collect(),
        }
    }

    #[test]
    fn each_epoch_visits_every_sequence_once_in_a_seeded_order() {
        let s = Order {
            seed: 7,
            batch_size: 3,
            sequences: 10,
        };
        assert_eq!(s.micro_per_epoch(), 4);
        for epoch in 0..2 {
            let mut seen: Vec<usize> = (0..4).flat_map(|k| s.micro_batch(epoch * 4 + k)).collect();
            assert_eq!(s.micro_batch(epoch * 4 + 3).len(), 1);
            seen.sort();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(s.micro_batch(0), s.micro_batch(4), "epochs reshuffle");
        assert_eq!(
            s.micro_batch(5),
            s.micro_batch(5),
            "pure function of the index"
        );
    }

    #[test]
    fn collate_pads_with_masked_labels_and_counts_targets() {
        let (a, b) = (seq(&[1, 2, 3]), seq(&[4]));
        let mb = collate(&[&a, &b], 0);
        assert_eq!(mb.ids, vec![vec![1, 2, 3], vec![4, 0, 0]]);
        assert_eq!(mb.labels[1], vec![4, IGNORE, IGNORE]);
        assert_eq!(mb.tokens, 4);
        assert_eq!(mb.targets, 2);
        let b = mb.batch;
        assert_eq!(b.attention_mask.unwrap()[1], vec![1, 0, 0]);
        assert_eq!(b.position_ids.unwrap()[1], vec![0, 1, 2]);
    }
}
