//! Preference pairs for DPO and its cousins: every preference format the data layer reads,
//! encoded as prompt, chosen and rejected ids with the boundary exact in ids, truncated as
//! TRL truncates, and collated two rows per pair (chosen rows first, then rejected) so
//! both completions go through the model in one batch.

use super::{DatasetError, EncodeReport, MicroBatch};
use crate::data::{Body, Kind};
#[cfg(test)]
use crate::template::IGNORE;
use crate::template::{fit_pair, Encoded, Encoder, PreferenceExample};
use std::path::Path;

/// One encoded pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    /// The last user message (what sample replies answer), when there is one.
    pub prompt_text: String,
}

impl Pair {
    /// Tokens of both rows.
    pub fn tokens(&self) -> usize {
        2 * self.prompt.len() + self.chosen.len() + self.rejected.len()
    }
}

/// Encodes every preference pair of `path`; a record that cannot be used stops with its
/// location. SFT data is refused with what it would need.
pub fn encode_pairs(
    path: &Path,
    format: &str,
    encoder: &Encoder,
    max_prompt_len: usize,
    max_seq_len: usize,
) -> Result<(Vec<Pair>, EncodeReport), DatasetError> {
    let ds = super::open_dataset(path, format)?;
    if ds.kind() != Kind::Preference {
        let hint = if ds.kind() == Kind::Unpaired {
            "; completions rated one at a time train with train.method: kto"
        } else {
            ""
        };
        return Err(DatasetError::Unusable {
            file: path.into(),
            message: format!(
                "{} holds {} records; preference training (train.method: dpo) needs pairs: \
                 preference, sharegpt-preference, alpaca-preference or hh-rlhf data{hint}",
                ds.format,
                ds.kind().as_str()
            ),
        });
    }
    let mut out = Vec::new();
    let mut report = EncodeReport::default();
    for item in ds.items()? {
        let (location, record) = super::usable(path, item?)?;
        let prompt_text = match &record.body {
            Body::Preference(p) => {
                if crate::template::tools::carries_tools(&p.prompt, &p.tools) {
                    report.tool_records += 1;
                }
                super::last_user_text(&p.prompt)
            }
            _ => String::new(),
        };
        let encoded = encoder
            .encode(&record)
            .map_err(|e| super::record_error(path, location, e))?;
        let mut ex: PreferenceExample = match encoded {
            Encoded::Preference(p) => p,
            Encoded::Skipped(_) => {
                report.tool_skipped += 1;
                continue;
            }
            Encoded::Sft(_) | Encoded::Labeled(_) => continue,
        };
        if !report.keeps(fit_pair(&mut ex, max_prompt_len, max_seq_len)) {
            continue;
        }
        out.push(Pair {
            prompt: ex.prompt_ids,
            chosen: ex.chosen_ids,
            rejected: ex.rejected_ids,
            prompt_text,
        });
    }
    if out.is_empty() {
        return Err(DatasetError::Unusable {
            file: path.into(),
            message: "no pair fits data.max_seq_len with a completion token to train".into(),
        });
    }
    Ok((out, report))
}

/// Two rows per pair, padded to the longest: rows `0..n` are prompt + chosen, rows `n..2n`
/// prompt + rejected. Only completion tokens are targets.
pub fn collate_pairs(pairs: &[&Pair], pad_id: u32) -> MicroBatch {
    let rows: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
        .chain(
            pairs
                .iter()
                .map(|p| (p.prompt.as_slice(), p.rejected.as_slice())),
        )
        .collect();
    super::collate_rows(&rows, pad_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_collate_chosen_rows_then_rejected_rows() {
        let p = Pair {
            prompt: vec![1, 2],
            chosen: vec![3],
            rejected: vec![4, 5],
            prompt_text: String::new(),
        };
        let q = Pair {
            prompt: vec![6],
            chosen: vec![7, 8],
            rejected: vec![9],
            prompt_text: String::new(),
        };
        let mb = collate_pairs(&[&p, &q], 0);
        assert_eq!(
            mb.ids,
            vec![
                vec![1, 2, 3, 0],
                vec![6, 7, 8, 0],
                vec![1, 2, 4, 5],
                vec![6, 9, 0, 0]
            ]
        );
        assert_eq!(mb.labels[0], vec![IGNORE, IGNORE, 3, IGNORE]);
        assert_eq!(mb.labels[2], vec![IGNORE, IGNORE, 4, 5]);
        assert_eq!(mb.targets, 1 + 2 + 2 + 1);
        assert_eq!(mb.tokens, 3 + 3 + 4 + 2);
    }
}
