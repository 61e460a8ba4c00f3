//! One micro-batch: forward, loss, backward into the accumulated LoRA gradients. With
//! activation checkpointing only each layer's input is kept; the backward recomputes one
//! layer at a time, so memory holds a single layer's activations (like torch's
//! `checkpoint` per decoder layer), at the price of a second forward.

use super::grads::Grads;
use super::micro::{sft_head, Head, MicroLoss, StepArgs, TargetLogps};
use crate::batch::MicroBatch;
use crate::model::Model;
use candle_core::{Result, Tensor, Var};

/// Forward and backward of an SFT micro-batch. Losses are summed over targets and divided
/// by `window_targets` (every target in the accumulation window), so accumulation equals one
/// large batch. A dense base takes the hand-written backward ([`super::manual`]); a quantized
/// or row-permuted (GGUF) base takes candle's autograd.
pub fn forward_backward(
    model: &Model,
    mb: &MicroBatch,
    args: &StepArgs,
    grads: &mut Grads,
) -> Result<MicroLoss> {
    forward_backward_with(model, mb, args, grads, &mut sft_head(args.window_targets))
}

/// Forward and backward of `mb` for any objective: its `head` turns the targets' log-probs
/// into the loss and the derivative for each target.
pub fn forward_backward_with(
    model: &Model,
    mb: &MicroBatch,
    args: &StepArgs,
    grads: &mut Grads,
    head: &mut Head,
) -> Result<MicroLoss> {
    // Every base takes the hand-written backward (a quantized weight is dequantized per
    // projection); autograd is the reference it is checked against.
    if !args.autograd {
        return super::manual::forward_backward_with(model, mb, args, grads, head);
    }
    autograd_forward_backward_with(model, mb, args, grads, head)
}

/// The targets' log-probs of `logits / temperature` as a graph node, and their values for
/// the head.
fn target_logps(
    logits: &Tensor,
    labels: &[Vec<i64>],
    temperature: f64,
) -> Result<Option<(Tensor, TargetLogps)>> {
    let rows = logits.dims3()?.0;
    let scaled;
    let logits = if temperature == 1.0 {
        logits
    } else {
        scaled = logits.affine(1.0 / temperature, 0.0)?;
        &scaled
    };
    let Some((node, row)) = crate::eval::target_logps(logits, labels)? else {
        return Ok(None);
    };
    let values = TargetLogps {
        logp: node.to_vec1::<f32>()?,
        row,
        rows,
    };
    Ok(Some((node, values)))
}

/// `Σ w · logp`: its gradient is the objective's, given the head's derivatives `w`.
fn surrogate(node: &Tensor, weights: Vec<f32>) -> Result<Tensor> {
    let n = weights.len();
    let w = Tensor::from_vec(weights, n, node.device())?;
    (node * w)?.sum_all()
}

/// [`forward_backward_with`] through candle's autograd, for any base.
fn autograd_forward_backward_with(
    model: &Model,
    mb: &MicroBatch,
    args: &StepArgs,
    grads: &mut Grads,
    head: &mut Head,
) -> Result<MicroLoss> {
    let StepArgs {
        dropout_seed,
        checkpointing,
        temperature,
        ..
    } = *args;
    let ids = Tensor::new(mb.ids.clone(), &model.device)?;
    if !checkpointing {
        let logits = model.forward(&ids, &mb.batch, dropout_seed)?;
        let Some((node, values)) = target_logps(&logits, &mb.labels, temperature)? else {
            return Ok(MicroLoss {
                loss: 0.0,
                targets: 0,
            });
        };
        let n = values.logp.len();
        let (loss, weights) = head(&values)?;
        grads.accumulate(&surrogate(&node, weights)?.backward()?)?;
        return Ok(MicroLoss { loss, targets: n });
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
    let Some((node, values)) = target_logps(&logits, &mb.labels, temperature)? else {
        return Ok(MicroLoss {
            loss: 0.0,
            targets: 0,
        });
    };
    let n = values.logp.len();
    let (loss, weights) = head(&values)?;
    let store = surrogate(&node, weights)?.backward()?;
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
    Ok(MicroLoss { loss, targets: n })
}
