//! One micro-batch: forward, loss, backward into the accumulated LoRA gradients. With
//! activation checkpointing only each layer's input is kept; the backward recomputes one
//! layer at a time, so memory holds a single layer's activations (like torch's
//! `checkpoint` per decoder layer), at the price of a second forward.

use super::grads::Grads;
use super::micro::{MicroLoss, StepArgs};
use crate::batch::MicroBatch;
use crate::model::llama::causal_lm_loss;
use crate::model::Model;
use candle_core::{Result, Tensor, Var};

/// Forward and backward of `mb`. Losses are summed over targets and divided by `window_targets`
/// (every target in the accumulation window), so accumulation equals one large batch. A dense
/// base takes the hand-written backward ([`super::manual`]); a quantized or row-permuted (GGUF)
/// base takes candle's autograd.
pub fn forward_backward(
    model: &Model,
    mb: &MicroBatch,
    args: &StepArgs,
    grads: &mut Grads,
) -> Result<MicroLoss> {
    if super::manual::supported(model) {
        return super::manual::forward_backward(model, mb, args, grads);
    }
    autograd_forward_backward(model, mb, args, grads)
}

/// [`forward_backward`] through candle's autograd, for any base.
pub fn autograd_forward_backward(
    model: &Model,
    mb: &MicroBatch,
    args: &StepArgs,
    grads: &mut Grads,
) -> Result<MicroLoss> {
    let StepArgs {
        window_targets,
        dropout_seed,
        checkpointing,
    } = *args;
    let ids = Tensor::new(mb.ids.clone(), &model.device)?;
    let weight = |n: usize| n as f64 / window_targets.max(1) as f64;
    if !checkpointing {
        let logits = model.forward(&ids, &mb.batch, dropout_seed)?;
        let (mean, n) = causal_lm_loss(&logits, &mb.labels)?;
        let scaled = (mean * weight(n))?;
        let value = f64::from(scaled.to_scalar::<f32>()?);
        if n > 0 {
            grads.accumulate(&scaled.backward()?)?;
        }
        return Ok(MicroLoss {
            loss: value,
            targets: n,
        });
    }
    let (b, t) = ids.dims2()?;
    let prepared = model.prepare(b, t, &mb.batch)?;
    // Forward, keeping only each layer's input (the graph of each layer is dropped).
    let mut inputs = vec![model.embed(&ids)?.detach()];
    for i in 0..model.layers.len() {
        let h = model
            .layer(i, &inputs[i], &prepared, dropout_seed)?
            .detach();
        inputs.push(h);
    }
    let top = Var::from_tensor(&inputs[model.layers.len()])?;
    let logits = model.head(top.as_tensor())?;
    let (mean, n) = causal_lm_loss(&logits, &mb.labels)?;
    let scaled = (mean * weight(n))?;
    let value = f64::from(scaled.to_scalar::<f32>()?);
    if n == 0 {
        return Ok(MicroLoss {
            loss: value,
            targets: 0,
        });
    }
    let store = scaled.backward()?;
    let mut g = store
        .get(&top)
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("no gradient reached the last layer".into()))?;
    drop(logits);
    for i in (0..model.layers.len()).rev() {
        let x = Var::from_tensor(&inputs[i])?;
        let y = model.layer(i, x.as_tensor(), &prepared, dropout_seed)?;
        // d/dx of sum(y ⊙ g) is the layer's vector-Jacobian product with g.
        let surrogate = (y * &g)?.sum_all()?;
        let store = surrogate.backward()?;
        grads.accumulate(&store)?;
        if i > 0 {
            g = store
                .get(&x)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("no gradient reached layer {i}")))?;
        }
        inputs.truncate(i + 1);
    }
    Ok(MicroLoss {
        loss: value,
        targets: n,
    })
}
