//! Mean loss over trained tokens (HF convention: shift by one, average over every unmasked
//! target) and perplexity, for a model with or without an adapter on a dataset.

use crate::data::{DataError, Dataset};
use crate::model::llama::causal_lm_loss;
use crate::model::{Batch, Model, ModelError};
use crate::template::{fit_length, Encoded, Encoder, Example, LengthPolicy, TemplateError};
use candle_core::Tensor;

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
    let mut flush = |batch: &mut Vec<Example>| -> Result<(), EvalError> {
        if batch.is_empty() {
            return Ok(());
        }
        let t = batch.iter().map(Example::len).max().unwrap_or(0);
        let pad = encoder
            .tokenizer
            .pad_token
            .as_deref()
            .and_then(|p| encoder.tokenizer.token_to_id(p))
            .unwrap_or(0);
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        let mut labels = Vec::new();
        for ex in batch.iter() {
            let n = ex.len();
            let mut row = ex.input_ids.clone();
            row.resize(t, pad);
            ids.push(row);
            let mut m = vec![1u8; n];
            m.resize(t, 0);
            mask.push(m);
            let mut l = ex.labels.clone();
            l.resize(t, crate::template::IGNORE);
            labels.push(l);
        }
        let input = Tensor::new(ids, &model.device).map_err(ModelError::from)?;
        let logits = model
            .forward(
                &input,
                &Batch {
                    position_ids: None,
                    attention_mask: Some(mask),
                },
                None,
            )
            .map_err(ModelError::from)?;
        let (loss, n) = causal_lm_loss(&logits, &labels).map_err(ModelError::from)?;
        sum += f64::from(loss.to_scalar::<f32>().map_err(ModelError::from)?) * n as f64;
        tokens += n;
        examples += batch.len();
        batch.clear();
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
