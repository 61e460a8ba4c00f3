//! Scoring: each item becomes one row holding its context once and every choice's
//! continuation after it (a tree: each choice sees the shared part and itself), rows go
//! through the model longest first a batch at a time, and the head and log-softmax run only
//! where a continuation token is predicted.
//!
//! What each choice is scored on is exactly lm-eval's `_loglikelihood_tokens` input:
//! `(context + continuation)[-(max_length + 1):][:-1]`, the continuation's tokens read off
//! the last positions. The shared part of a row is the longest common prefix of those
//! inputs: the context when nothing is cut, less (or nothing) when a long context loses a
//! different number of tokens for each choice.

use super::{encode, fewshot, BenchOptions, BenchResult, ChoiceError, ItemScore, Task};
use crate::model::{Batch, Model};
use crate::template::TextTokenizer;
use candle_core::{DType, Tensor};

/// One item's packed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ids: Vec<u32>,
    pub positions: Vec<u32>,
    /// 0 for the shared prefix, `k + 1` for choice `k`'s own tokens.
    pub branch: Vec<u32>,
    /// Per choice: the row indices whose logits predict its continuation, and the tokens.
    pub scored: Vec<(Vec<usize>, Vec<u32>)>,
}

/// The row of one item: `context` and the token lists of its continuations.
pub fn plan_row(
    context: &[u32],
    continuations: &[Vec<u32>],
    max_length: usize,
    item: usize,
) -> Result<Row, ChoiceError> {
    // Each choice's model input and where its continuation's targets sit in it.
    let mut inputs: Vec<Vec<u32>> = Vec::with_capacity(continuations.len());
    for (k, cont) in continuations.iter().enumerate() {
        let mut whole: Vec<u32> = context.iter().chain(cont.iter()).copied().collect();
        if whole.len() > max_length + 1 {
            whole.drain(..whole.len() - (max_length + 1));
        }
        if cont.len() >= whole.len() {
            return Err(ChoiceError::TooLong {
                item,
                choice: k,
                tokens: cont.len(),
                max_length,
            });
        }
        whole.pop();
        inputs.push(whole);
    }
    let shared = inputs
        .iter()
        .skip(1)
        .fold(inputs.first().map_or(0, Vec::len), |n, x| {
            n.min(inputs[0].iter().zip(x).take_while(|(a, b)| a == b).count())
        });
    let mut row = Row {
        ids: inputs.first().map_or(&[][..], |x| &x[..shared]).to_vec(),
        positions: (0..shared as u32).collect(),
        branch: vec![0; shared],
        scored: Vec::with_capacity(inputs.len()),
    };
    for (k, (input, cont)) in inputs.iter().zip(continuations).enumerate() {
        let start = row.ids.len();
        row.ids.extend_from_slice(&input[shared..]);
        row.positions.extend(shared as u32..input.len() as u32);
        row.branch
            .extend(std::iter::repeat_n(k as u32 + 1, input.len() - shared));
        // Target t of the continuation is input position len - m + t + 1, predicted by the
        // logits one before it.
        let m = cont.len();
        let at: Vec<usize> = (0..m)
            .map(|t| {
                let p = input.len() + 1 - m + t - 1;
                if p < shared {
                    p
                } else {
                    start + (p - shared)
                }
            })
            .collect();
        row.scored.push((at, cont.clone()));
    }
    Ok(row)
}

/// The additive attention mask `[b, 1, t, t]` of packed rows: causal within a branch and
/// onto the shared prefix, never across branches or onto padding, within `window`
/// positions when the layer has one.
fn tree_mask(
    rows: &[&Row],
    t: usize,
    window: Option<usize>,
    model: &Model,
) -> candle_core::Result<Tensor> {
    let b = rows.len();
    let mut m = vec![-1e9f32; b * t * t];
    for (r, row) in rows.iter().enumerate() {
        let n = row.ids.len();
        for i in 0..t {
            let base = (r * t + i) * t;
            m[base + i] = 0.0;
            if i >= n {
                continue;
            }
            for j in 0..i {
                let visible = (row.branch[j] == 0 || row.branch[j] == row.branch[i])
                    && window.is_none_or(|w| ((row.positions[i] - row.positions[j]) as usize) < w);
                if visible {
                    m[base + j] = 0.0;
                }
            }
        }
    }
    Tensor::from_vec(m, (b, 1, t, t), &model.device)?.to_dtype(model.dtype)
}

/// Each row's per-choice summed log-probabilities, from one forward pass.
fn forward_rows(model: &Model, rows: &[&Row]) -> candle_core::Result<Vec<Vec<f64>>> {
    let b = rows.len();
    let t = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let mut out: Vec<Vec<f64>> = rows.iter().map(|r| vec![0.0; r.scored.len()]).collect();
    if b == 0 || t == 0 {
        return Ok(out);
    }
    let mut ids = Vec::with_capacity(b);
    let mut positions = Vec::with_capacity(b);
    let mut real = Vec::with_capacity(b);
    for row in rows {
        let n = row.ids.len();
        let mut x = row.ids.clone();
        x.resize(t, 0);
        let mut p = row.positions.clone();
        let last = p.last().copied().unwrap_or(0);
        p.extend((1..=(t - n) as u32).map(|k| last + k));
        let mut a = vec![1u8; n];
        a.resize(t, 0);
        ids.push(x);
        positions.push(p);
        real.push(a);
    }
    let batch = Batch {
        position_ids: Some(positions),
        attention_mask: Some(real),
    };
    // The rotary tables are the model's own for these positions; the masks are the tree's.
    let mut prepared = model.prepare(b, t, &batch)?;
    prepared.global.mask = tree_mask(rows, t, None, model)?;
    if let Some(local) = prepared.local.as_mut() {
        local.mask = tree_mask(rows, t, model.config.sliding_window, model)?;
    }
    let input = Tensor::new(ids, &model.device)?;
    let mut h = model.embed(&input)?;
    for i in 0..model.layers.len() {
        // Detached: an adapter's variables would otherwise keep every layer's activations.
        h = model.layer(i, &h, &prepared, None)?.detach();
    }
    // The positions that predict a continuation token, once each.
    let mut unique: Vec<u32> = Vec::new();
    let mut slot = std::collections::HashMap::new();
    let mut picks: Vec<(usize, usize, u32, u32)> = Vec::new(); // (row, choice, slot, target)
    for (r, row) in rows.iter().enumerate() {
        for (k, (at, targets)) in row.scored.iter().enumerate() {
            for (&p, &y) in at.iter().zip(targets) {
                let flat = (r * t + p) as u32;
                let s = *slot.entry(flat).or_insert_with(|| {
                    unique.push(flat);
                    unique.len() as u32 - 1
                });
                picks.push((r, k, s, y));
            }
        }
    }
    if picks.is_empty() {
        return Ok(out);
    }
    let hidden = model.config.hidden_size;
    let dev = &model.device;
    let hs = h
        .reshape((b * t, hidden))?
        .index_select(&Tensor::new(unique, dev)?, 0)?
        .unsqueeze(0)?;
    let logits = model.head(&hs)?.squeeze(0)?.to_dtype(DType::F32)?;
    let logp = crate::ops::log_softmax_last_dim(&logits)?;
    let rows_idx: Vec<u32> = picks.iter().map(|p| p.2).collect();
    let targets: Vec<u32> = picks.iter().map(|p| p.3).collect();
    let lp = logp
        .index_select(&Tensor::new(rows_idx, dev)?, 0)?
        .gather(&Tensor::new(targets, dev)?.unsqueeze(1)?, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    for ((r, k, _, _), v) in picks.iter().zip(lp) {
        out[*r][*k] += f64::from(v);
    }
    Ok(out)
}

/// The index of the largest value, the first of equals (numpy's `argmax`).
fn argmax(xs: impl IntoIterator<Item = f64>) -> usize {
    let mut best = (0usize, f64::NEG_INFINITY);
    for (i, x) in xs.into_iter().enumerate() {
        if i == 0 || x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// The mean of 0/1 scores and lm-eval's `mean_stderr` (sample standard deviation / √n).
pub fn mean_and_stderr(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, None);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, Some((var / n as f64).sqrt()))
}

/// Scores `task` on `model` (its adapter on or not, as it is): every item's per-choice
/// log-likelihoods, `acc` and `acc_norm` with their standard errors. `progress(done,
/// total)` is called with items as batches finish.
pub fn score(
    model: &Model,
    tok: &TextTokenizer,
    task: &Task,
    opts: &BenchOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<BenchResult, ChoiceError> {
    let contexts = fewshot::contexts(task, opts)?;
    let n = contexts.len();
    if n == 0 {
        return Err(ChoiceError::Options(format!(
            "{}: no items to score",
            task.name
        )));
    }
    let max_length = opts
        .max_length
        .unwrap_or(model.config.max_position_embeddings)
        .max(1);
    let mut rows = Vec::with_capacity(n);
    for (i, ctx) in contexts.iter().enumerate() {
        let item = &task.items[i];
        let mut context = Vec::new();
        let mut conts = Vec::with_capacity(item.choices.len());
        for choice in &item.choices {
            let cont = format!("{}{choice}", opts.target_delimiter);
            let (c, x) = encode::encode_pair(tok, ctx, &cont, opts.specials)
                .map_err(|source| ChoiceError::Tokenize { item: i, source })?;
            context = c;
            conts.push(x);
        }
        rows.push(plan_row(&context, &conts, max_length, i)?);
    }
    // Longest first, as lm-eval orders its requests: an out-of-memory shows at once, and
    // rows of like lengths share a batch's padding.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rows[i].ids.len()));
    let mut lls: Vec<Vec<f64>> = vec![Vec::new(); n];
    progress(0, n);
    let mut done = 0;
    for chunk in order.chunks(opts.batch_size.max(1)) {
        let batch: Vec<&Row> = chunk.iter().map(|&i| &rows[i]).collect();
        let scores = crate::ops::on_pool(|| forward_rows(model, &batch))?;
        for (&i, s) in chunk.iter().zip(scores) {
            lls[i] = s;
        }
        done += chunk.len();
        progress(done, n);
    }
    let mut per_item = Vec::with_capacity(n);
    let (mut hits, mut hits_norm) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, ll) in lls.into_iter().enumerate() {
        let item = &task.items[i];
        let pred = argmax(ll.iter().copied());
        let pred_norm = argmax(
            ll.iter()
                .zip(&item.choices)
                .map(|(l, c)| l / c.chars().count() as f64),
        );
        hits.push(f64::from(u8::from(pred == item.answer)));
        hits_norm.push(f64::from(u8::from(pred_norm == item.answer)));
        per_item.push(ItemScore {
            index: i,
            loglikelihoods: ll,
            pred,
            pred_norm,
            answer: item.answer,
        });
    }
    let (acc, acc_stderr) = mean_and_stderr(&hits);
    let (acc_norm, acc_norm_stderr) = mean_and_stderr(&hits_norm);
    Ok(BenchResult {
        acc,
        acc_stderr,
        acc_norm,
        acc_norm_stderr,
        items: n,
        num_fewshot: opts.num_fewshot,
        per_item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_holds_the_context_once_and_each_choice_after_it() {
        let row = plan_row(&[1, 2, 3], &[vec![4], vec![5, 6], vec![5, 7, 8]], 100, 0).unwrap();
        // Inputs [1,2,3], [1,2,3,5], [1,2,3,5,7]: the shared prefix is the context.
        assert_eq!(row.ids, vec![1, 2, 3, 5, 5, 7]);
        assert_eq!(row.positions, vec![0, 1, 2, 3, 3, 4]);
        assert_eq!(row.branch, vec![0, 0, 0, 2, 3, 3]);
        assert_eq!(row.scored[0], (vec![2], vec![4]));
        assert_eq!(row.scored[1], (vec![2, 3], vec![5, 6]));
        assert_eq!(row.scored[2], (vec![2, 4, 5], vec![5, 7, 8]));
    }

    #[test]
    fn long_contexts_lose_their_start_per_choice_as_in_lm_eval() {
        // max_length 4: [1,2,3,4,5]+[6] keeps [2,3,4,5,6] → input [2,3,4,5];
        // [1,2,3,4,5]+[7,8] keeps [3,4,5,7,8] → input [3,4,5,7]. Nothing is shared.
        let row = plan_row(&[1, 2, 3, 4, 5], &[vec![6], vec![7, 8]], 4, 0).unwrap();
        assert_eq!(row.ids, vec![2, 3, 4, 5, 3, 4, 5, 7]);
        assert_eq!(row.positions, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(row.scored[0], (vec![3], vec![6]));
        assert_eq!(row.scored[1], (vec![6, 7], vec![7, 8]));
        assert!(matches!(
            plan_row(&[1], &[vec![2, 3, 4, 5, 6]], 4, 3),
            Err(ChoiceError::TooLong { item: 3, .. })
        ));
    }

    #[test]
    fn stderr_is_lm_evals_sample_stderr() {
        let (m, s) = mean_and_stderr(&[1.0, 0.0, 1.0, 1.0]);
        assert_eq!(m, 0.75);
        // sqrt(((0.25² · 3 + 0.75²) / 3) / 4)
        assert!((s.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(mean_and_stderr(&[1.0]).1, None);
        assert_eq!(argmax([1.0, 3.0, 3.0, 2.0]), 1);
    }
}
