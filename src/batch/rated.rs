//! Rated completions for KTO: every completion of unpaired data (`label` true or false), or
//! both sides of preference pairs (chosen desirable, rejected undesirable), encoded as a
//! prompt and a completion with the boundary exact in ids and truncated as TRL truncates.

use super::{DatasetError, EncodeReport};
use crate::data::{Body, Kind, Record};
use crate::template::{fit_labeled, Encoded, Encoder};
use std::path::Path;

/// One encoded rated completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rated {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
    pub desirable: bool,
    /// The last user message (what sample replies answer), when there is one.
    pub prompt_text: String,
}

/// Encodes every rated completion of `path` (unpaired or preference data); a record that
/// cannot be used stops with its location. SFT data is refused with what it would need.
pub fn encode_rated(
    path: &Path,
    format: &str,
    encoder: &Encoder,
    max_prompt_len: usize,
    max_seq_len: usize,
) -> Result<(Vec<Rated>, EncodeReport), DatasetError> {
    let ds = super::open_dataset(path, format)?;
    if !matches!(ds.kind(), Kind::Unpaired | Kind::Preference) {
        return Err(DatasetError::Unusable {
            file: path.into(),
            message: format!(
                "{} holds {} records; KTO (train.method: kto) needs completions rated one at a \
                 time (kto data: a boolean label with messages or prompt/completion) or \
                 preference pairs",
                ds.format,
                ds.kind().as_str()
            ),
        });
    }
    let mut out = Vec::new();
    let mut report = EncodeReport::default();
    for item in ds.items()? {
        let (location, record) = super::usable(path, item?)?;
        let labeled = match record.body {
            Body::Labeled(l) => vec![l],
            Body::Preference(p) => p.unpaired().into(),
            _ => continue,
        };
        for l in labeled {
            let prompt_text = super::last_user_text(l.prompt());
            let record = Record {
                body: Body::Labeled(l),
                meta: Default::default(),
            };
            if crate::template::tools::record_carries_tools(&record) {
                report.tool_records += 1;
            }
            let encoded = encoder
                .encode(&record)
                .map_err(|e| super::record_error(path, location, e))?;
            let mut ex = match encoded {
                Encoded::Labeled(ex) => ex,
                Encoded::Skipped(_) => {
                    report.tool_skipped += 1;
                    continue;
                }
                Encoded::Sft(_) | Encoded::Preference(_) => continue,
            };
            if !report.keeps(fit_labeled(&mut ex, max_prompt_len, max_seq_len)) {
                continue;
            }
            if ex.desirable {
                report.desirable += 1;
            } else {
                report.undesirable += 1;
            }
            out.push(Rated {
                prompt: ex.prompt_ids,
                completion: ex.completion_ids,
                desirable: ex.desirable,
                prompt_text,
            });
        }
    }
    if out.is_empty() {
        return Err(DatasetError::Unusable {
            file: path.into(),
            message: "no completion fits data.max_seq_len with a token to train".into(),
        });
    }
    Ok((out, report))
}

/// The completion each example's KL estimate pairs with its prompt. TRL rotates completions
/// by one within each block of `block` examples, so an example takes the completion of the
/// one before it and the first of a block the last's. The blocks follow data order, or with
/// `seed` a seeded shuffle of it, so data sorted by prompt (a pair's two sides next to
/// each other) still gets mismatched pairs.
pub fn kl_partners(n: usize, block: usize, seed: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(seed) = seed {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            seed ^ 0x6B74_6F4B_4C21,
        ));
    }
    let block = block.max(2);
    let mut starts: Vec<usize> = (0..n).step_by(block).collect();
    // A last block of one would pair the example with itself: it joins the one before.
    if starts.len() > 1 && starts.last().is_some_and(|&s| n - s == 1) {
        starts.pop();
    }
    let mut out = vec![0; n];
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(n);
        let len = end - start;
        for i in start..end {
            out[order[i]] = order[start + (i - start + len - 1) % len];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_partners_rotate_within_blocks() {
        assert_eq!(kl_partners(4, 4, None), vec![3, 0, 1, 2]);
        assert_eq!(
            kl_partners(5, 2, None),
            vec![1, 0, 4, 2, 3],
            "no block of one"
        );
        assert_eq!(
            kl_partners(3, 1, None),
            vec![2, 0, 1],
            "blocks of at least two, no block of one"
        );
        let shuffled = kl_partners(40, 8, Some(7));
        assert!(shuffled.iter().enumerate().all(|(i, &p)| p != i));
        let mut seen = shuffled.clone();
        seen.sort();
        assert_eq!(seen, (0..40).collect::<Vec<_>>(), "a permutation");
        assert_ne!(shuffled, kl_partners(40, 8, None));
    }
}
