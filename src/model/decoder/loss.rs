//! The causal-LM loss over the logits, and the targets it counts.

use candle_core::{DType, IndexOp, Result, Tensor, D};

/// The flat positions (`row · t + i`) that predict a target, and those targets: position i
/// predicts label i+1 (labels are not shifted); -100 is ignored.
pub fn target_positions(labels: &[Vec<i64>], b: usize, t: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (r, lab) in labels.iter().enumerate().take(b) {
        for i in 0..t.saturating_sub(1) {
            let y = lab.get(i + 1).copied().unwrap_or(-100);
            if y >= 0 {
                rows.push((r * t + i) as u32);
                targets.push(y as u32);
            }
        }
    }
    (rows, targets)
}

/// Mean cross-entropy over unmasked targets (labels -100 are ignored), the HF causal-LM
/// convention: position i predicts label i+1, averaged over every counted target in the batch.
pub fn causal_lm_loss(logits: &Tensor, labels: &[Vec<i64>]) -> Result<(Tensor, usize)> {
    let (b, t, v) = logits.dims3()?;
    let (rows, targets) = target_positions(labels, b, t);
    let n = rows.len();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, logits.device())?, 0));
    }
    let flat = logits.reshape((b * t, v))?;
    let picked = flat
        .index_select(&Tensor::new(rows, logits.device())?, 0)?
        .to_dtype(DType::F32)?;
    let logp = candle_nn::ops::log_softmax(&picked, D::Minus1)?;
    let tgt = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    let nll = logp.gather(&tgt, 1)?.neg()?;
    Ok((nll.sum_all()?.affine(1.0 / n as f64, 0.0)?, n))
}

/// The logits row of one position, for tests and tools.
pub fn row(logits: &Tensor, b: usize, t: usize) -> Result<Vec<f32>> {
    logits.i((b, t))?.to_dtype(DType::F32)?.to_vec1()
}
