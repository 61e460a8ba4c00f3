//! Mean loss over trained tokens (HF convention: shift by one, average over every unmasked
//! target) and perplexity, for a model with or without an adapter on a dataset.

use crate::batch::{collate, Sequence};
use crate::data::{DataError, Dataset};
use crate::model::llama::causal_lm_loss;
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
    let mut sum = 0f64;
    let mut n = 0usize;
    for chunk in seqs.chunks(batch_size.max(1)) {
        let rows: Vec<&Sequence> = chunk.iter().collect();
        let mb = collate(&rows, pad_id);
        let ids = Tensor::new(mb.ids.clone(), &model.device)?;
        let logits = model.forward(&ids, &mb.batch, None)?.detach();
        let (mean, k) = causal_lm_loss(&logits, &mb.labels)?;
        sum += f64::from(mean.to_scalar::<f32>()?) * k as f64;
        n += k;
    }
    Ok((sum, n))
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
