//! Mean loss over trained tokens (HF convention: shift by one, average over every unmasked
//! target) and perplexity, for a model with or without an adapter on a dataset.

use crate::batch::{collate, MicroBatch, Sequence};
use crate::data::{DataError, Dataset};
use crate::model::decoder::causal_lm_loss;
use crate::model::{Model, ModelError};
use crate::template::{fit_length, Encoded, Encoder, Example, LengthPolicy, TemplateError};
use candle_core::Tensor;

/// Summed token loss and target count over `seqs`, `batch_size` padded rows at a time (no
/// dropout, no graph kept). The trainer's eval and `tunelab eval` both use it.
pub fn sequence_loss(
    model: &Model,
    seqs: &[Sequence],
    batch_size: usize,
    pad_id: u32,
) -> candle_core::Result<(f64, usize)> {
    sequence_loss_with(model, seqs, batch_size, pad_id, &mut |_| {})
}

/// [`sequence_loss`], telling `progress` how many sequences are done after each batch.
pub fn sequence_loss_with(
    model: &Model,
    seqs: &[Sequence],
    batch_size: usize,
    pad_id: u32,
    progress: &mut dyn FnMut(usize),
) -> candle_core::Result<(f64, usize)> {
    let mut sum = 0f64;
    let mut n = 0usize;
    let mut done = 0usize;
    for chunk in seqs.chunks(batch_size.max(1)) {
        let rows: Vec<&Sequence> = chunk.iter().collect();
        let mb = collate(&rows, pad_id);
        let ids = Tensor::new(mb.ids.clone(), &model.device)?;
        let logits = model.forward(&ids, &mb.batch, None)?.detach();
        let (mean, k) = causal_lm_loss(&logits, &mb.labels)?;
        sum += f64::from(mean.to_scalar::<f32>()?) * k as f64;
        n += k;
        done += chunk.len();
        progress(done);
    }
    Ok((sum, n))
}

/// The log-probs of the targets of `labels` in `logits` as one graph node (row-major, in
/// the order `model::decoder::target_positions` lists them) and the row each belongs to;
/// `None` when no position has a target. The training step back-propagates through it.
pub fn target_logps(
    logits: &Tensor,
    labels: &[Vec<i64>],
) -> candle_core::Result<Option<(Tensor, Vec<usize>)>> {
    use candle_core::DType;
    let (b, t, v) = logits.dims3()?;
    let (rows, targets) = crate::model::decoder::target_positions(labels, b, t);
    if rows.is_empty() {
        return Ok(None);
    }
    let row_of: Vec<usize> = rows.iter().map(|r| *r as usize / t).collect();
    let dev = logits.device();
    let picked = logits
        .reshape((b * t, v))?
        .index_select(&Tensor::new(rows, dev)?, 0)?
        .to_dtype(DType::F32)?;
    let logp = crate::ops::log_softmax_last_dim(&picked)?;
    let tgt = Tensor::new(targets, dev)?.unsqueeze(1)?;
    Ok(Some((logp.gather(&tgt, 1)?.flatten_all()?, row_of)))
}

/// Per row of `mb`: the summed log-prob of its targets and their count (no dropout, no
/// graph kept). Preference objectives read completions' log-probs through it.
pub fn row_logps(model: &Model, mb: &MicroBatch) -> candle_core::Result<Vec<(f64, usize)>> {
    let ids = Tensor::new(mb.ids.clone(), &model.device)?;
    let logits = model.forward(&ids, &mb.batch, None)?.detach();
    let mut out = vec![(0.0f64, 0usize); mb.ids.len()];
    let Some((node, row_of)) = target_logps(&logits, &mb.labels)? else {
        return Ok(out);
    };
    for (lp, r) in node.to_vec1::<f32>()?.iter().zip(row_of) {
        out[r].0 += f64::from(*lp);
        out[r].1 += 1;
    }
    Ok(out)
}

/// Per row of `mb`: its targets' log-probs of `logits / temperature`, in order (no dropout,
/// no graph kept). GRPO's old and reference log-probs come through it.
pub fn token_logps(
    model: &Model,
    mb: &MicroBatch,
    temperature: f64,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let ids = Tensor::new(mb.ids.clone(), &model.device)?;
    let mut logits = model.forward(&ids, &mb.batch, None)?.detach();
    if temperature != 1.0 {
        logits = logits.affine(1.0 / temperature, 0.0)?;
    }
    let mut out = vec![Vec::new(); mb.ids.len()];
    let Some((node, row_of)) = target_logps(&logits, &mb.labels)? else {
        return Ok(out);
    };
    for (lp, r) in node.to_vec1::<f32>()?.into_iter().zip(row_of) {
        out[r].push(lp);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{location}: {source}")]
    Encode {
        location: String,
        #[source]
        source: TemplateError,
    },
    #[error("no trained tokens in the data: nothing to evaluate")]
    Empty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    pub loss: f64,
    pub tokens: usize,
    pub examples: usize,
    pub perplexity: f64,
}

/// Evaluates SFT or text records (preference records are skipped), `batch_size` at a time.
pub fn evaluate(
    model: &Model,
    encoder: &Encoder,
    dataset: &Dataset,
    max_seq_len: usize,
    batch_size: usize,
) -> Result<EvalResult, EvalError> {
    let mut pending: Vec<Example> = Vec::new();
    let mut sum = 0f64;
    let mut tokens = 0usize;
    let mut examples = 0usize;
    let pad = encoder.tokenizer.pad_id();
    let mut flush = |batch: &mut Vec<Example>| -> Result<(), EvalError> {
        let seqs: Vec<Sequence> = batch.drain(..).map(Sequence::from_example).collect();
        let (s, n) = sequence_loss(model, &seqs, seqs.len(), pad).map_err(ModelError::from)?;
        sum += s;
        tokens += n;
        examples += seqs.len();
        Ok(())
    };
    for item in dataset.items()? {
        let item = item?;
        let Ok(record) = item.result else { continue };
        let encoded = encoder
            .encode(&record)
            .map_err(|source| EvalError::Encode {
                location: item.location.to_string(),
                source,
            })?;
        let Encoded::Sft(mut ex) = encoded else {
            continue;
        };
        if fit_length(&mut ex, max_seq_len, LengthPolicy::Truncate) == crate::template::Fit::Dropped
        {
            continue;
        }
        pending.push(ex);
        if pending.len() == batch_size.max(1) {
            flush(&mut pending)?;
        }
    }
    flush(&mut pending)?;
    if tokens == 0 {
        return Err(EvalError::Empty);
    }
    let loss = sum / tokens as f64;
    Ok(EvalResult {
        loss,
        tokens,
        examples,
        perplexity: loss.exp(),
    })
}
