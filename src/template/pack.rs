//! Length handling: truncating or dropping long examples, and packing several examples into
//! one sequence that keeps per-example position ids and boundaries, so packed examples never
//! attend to each other.

use super::encode::{Example, LabeledExample, PreferenceExample, IGNORE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to do with an example longer than `max_seq_len`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LengthPolicy {
    /// Keep the first `max_seq_len` tokens.
    #[default]
    Truncate,
    /// Leave the example out.
    Drop,
}

impl std::str::FromStr for LengthPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("length policy", s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Kept,
    Truncated,
    /// Dropped by the policy, or truncation left no trained token.
    Dropped,
}

/// Applies the length policy to one example.
pub fn fit_length(ex: &mut Example, max_seq_len: usize, policy: LengthPolicy) -> Fit {
    if ex.len() <= max_seq_len {
        return Fit::Kept;
    }
    if policy == LengthPolicy::Drop {
        return Fit::Dropped;
    }
    ex.input_ids.truncate(max_seq_len);
    ex.labels.truncate(max_seq_len);
    ex.offsets.truncate(max_seq_len);
    if ex.trained() == 0 {
        Fit::Dropped
    } else {
        Fit::Truncated
    }
}

/// TRL's truncation of a preference pair: the prompt keeps its last `max_prompt_len` tokens,
/// then each completion is cut so prompt plus completion fit `max_seq_len`. A pair whose
/// prompt leaves no room for a completion token is dropped.
pub fn fit_pair(p: &mut PreferenceExample, max_prompt_len: usize, max_seq_len: usize) -> Fit {
    fit_prompt_and(
        &mut p.prompt_ids,
        &mut [&mut p.chosen_ids, &mut p.rejected_ids],
        max_prompt_len,
        max_seq_len,
    )
}

/// [`fit_pair`] for a rated completion (KTO), which TRL truncates the same way.
pub fn fit_labeled(l: &mut LabeledExample, max_prompt_len: usize, max_seq_len: usize) -> Fit {
    fit_prompt_and(
        &mut l.prompt_ids,
        &mut [&mut l.completion_ids],
        max_prompt_len,
        max_seq_len,
    )
}

/// Keeps the prompt's last `max_prompt_len` ids, then cuts each completion to what is left
/// of `max_seq_len`; dropped when no completion token could be trained.
fn fit_prompt_and(
    prompt: &mut Vec<u32>,
    completions: &mut [&mut Vec<u32>],
    max_prompt_len: usize,
    max_seq_len: usize,
) -> Fit {
    let mut fit = Fit::Kept;
    if prompt.len() > max_prompt_len {
        let cut = prompt.len() - max_prompt_len;
        prompt.drain(..cut);
        fit = Fit::Truncated;
    }
    let room = max_seq_len.saturating_sub(prompt.len());
    if room == 0 || completions.iter().any(|c| c.is_empty()) {
        return Fit::Dropped;
    }
    for side in completions.iter_mut() {
        if side.len() > room {
            side.truncate(room);
            fit = Fit::Truncated;
        }
    }
    fit
}

/// Several examples in one sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packed {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// Restart at 0 for every example.
    pub position_ids: Vec<u32>,
    /// Start offset of each example, then the total length (like `cu_seqlens`).
    pub boundaries: Vec<usize>,
}

/// Best-fit-decreasing packing into sequences of at most `max_len` tokens. Examples must
/// already fit (see [`fit_length`]). The first label of each example is masked so the
/// shifted loss never predicts across a boundary.
pub fn pack(examples: Vec<Example>, max_len: usize) -> Vec<Packed> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(examples[i].len()));
    // remaining space → bins with that much room
    let mut by_room: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut bins: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let len = examples[i].len().min(max_len);
        let found = by_room
            .range(len..)
            .next()
            .map(|(room, list)| (*room, list[list.len() - 1]));
        let (bin, room) = match found {
            Some((room, bin)) => {
                let list = by_room.get_mut(&room);
                if let Some(list) = list {
                    list.pop();
                    if list.is_empty() {
                        by_room.remove(&room);
                    }
                }
                (bin, room)
            }
            None => {
                bins.push(Vec::new());
                (bins.len() - 1, max_len)
            }
        };
        bins[bin].push(i);
        by_room.entry(room - len).or_default().push(bin);
    }
    bins.into_iter()
        .map(|members| {
            let mut p = Packed {
                input_ids: Vec::new(),
                labels: Vec::new(),
                position_ids: Vec::new(),
                boundaries: Vec::new(),
            };
            for i in members {
                let ex = &examples[i];
                let n = ex.len().min(max_len);
                p.boundaries.push(p.input_ids.len());
                p.input_ids.extend(&ex.input_ids[..n]);
                p.labels.extend(&ex.labels[..n]);
                if let Some(first) = p.labels.len().checked_sub(n) {
                    p.labels[first] = IGNORE;
                }
                p.position_ids.extend(0..n as u32);
            }
            p.boundaries.push(p.input_ids.len());
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: usize, base: u32) -> Example {
        Example {
            input_ids: (base..base + n as u32).collect(),
            labels: (base..base + n as u32).map(i64::from).collect(),
            text: String::new(),
            offsets: vec![(0, 0); n],
            prompt: String::new(),
        }
    }

    #[test]
    fn pairs_keep_the_prompt_end_and_cut_completions() {
        let mut p = PreferenceExample {
            prompt_ids: vec![1, 2, 3, 4, 5],
            chosen_ids: vec![6, 7, 8, 9],
            rejected_ids: vec![10, 11],
        };
        assert_eq!(fit_pair(&mut p, 3, 6), Fit::Truncated);
        assert_eq!(p.prompt_ids, vec![3, 4, 5]);
        assert_eq!(p.chosen_ids, vec![6, 7, 8]);
        assert_eq!(p.rejected_ids, vec![10, 11]);
        let mut q = p.clone();
        assert_eq!(fit_pair(&mut q, 8, 16), Fit::Kept);
        assert_eq!(
            fit_pair(&mut p, 3, 3),
            Fit::Dropped,
            "no room for a completion"
        );
    }

    #[test]
    fn truncate_and_drop() {
        let mut e = ex(10, 0);
        assert_eq!(
            fit_length(&mut e, 4, LengthPolicy::Truncate),
            Fit::Truncated
        );
        assert_eq!(e.input_ids, [0, 1, 2, 3]);
        let mut e = ex(10, 0);
        assert_eq!(fit_length(&mut e, 4, LengthPolicy::Drop), Fit::Dropped);
        let mut e = ex(3, 0);
        assert_eq!(fit_length(&mut e, 4, LengthPolicy::Drop), Fit::Kept);
        let mut masked = ex(6, 0);
        masked.labels[..4].fill(IGNORE);
        assert_eq!(
            fit_length(&mut masked, 4, LengthPolicy::Truncate),
            Fit::Dropped
        );
    }

    #[test]
    fn packing_keeps_positions_and_boundaries() {
        let packed = pack(vec![ex(5, 0), ex(3, 100), ex(2, 200), ex(6, 300)], 8);
        assert_eq!(packed.len(), 2);
        let total: usize = packed.iter().map(|p| p.input_ids.len()).sum();
        assert_eq!(total, 16);
        for p in &packed {
            assert!(p.input_ids.len() <= 8);
            assert_eq!(*p.boundaries.last().unwrap(), p.input_ids.len());
            for w in p.boundaries.windows(2) {
                assert_eq!(p.position_ids[w[0]], 0, "positions restart per example");
                assert_eq!(p.labels[w[0]], IGNORE, "no loss across a boundary");
                assert_eq!(p.position_ids[w[1] - 1] as usize, w[1] - w[0] - 1);
            }
        }
        // best fit: the 6-token example takes the 2-token one, the 5 the 3.
        let mut sizes: Vec<Vec<usize>> = packed
            .iter()
            .map(|p| p.boundaries.windows(2).map(|w| w[1] - w[0]).collect())
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![vec![5, 3], vec![6, 2]]);
    }
}
