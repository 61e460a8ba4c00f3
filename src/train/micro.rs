//! What every step implementation shares: the arguments of one micro-batch's forward and
//! backward, and what it returns. Below both `step` (the dispatcher and the autograd path)
//! and `manual` (the hand-written backward), so neither imports the other's types.

/// How one micro-batch is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepArgs {
    /// What the accumulation window averages over (every target for SFT, every pair for
    /// preference objectives): a micro-batch's loss is its sum divided by this, so
    /// accumulation equals one large batch.
    pub window_targets: usize,
    /// Seeds the LoRA dropout masks (a pure function of the seed and the micro-batch index);
    /// `None` turns dropout off.
    pub dropout_seed: Option<u64>,
    /// Keep only each layer's input and recompute the layer in the backward.
    pub checkpointing: bool,
    /// Take candle's autograd even where the hand-written backward applies (the parity
    /// tests and `tunelab bench train --autograd` compare the two).
    pub autograd: bool,
    /// Log-probs are taken of `logits / temperature`: GRPO scores completions at its
    /// sampling temperature, as TRL does; 1 for every other objective.
    pub temperature: f64,
}

impl StepArgs {
    /// One micro-batch that is its own window, no dropout, no checkpointing.
    pub fn plain(window_targets: usize) -> Self {
        StepArgs {
            window_targets,
            dropout_seed: None,
            checkpointing: false,
            autograd: false,
            temperature: 1.0,
        }
    }
}

/// What one micro-batch contributed: its share of the window's mean loss.
#[derive(Debug, Clone, Copy)]
pub struct MicroLoss {
    /// Sum of token losses divided by the window's target count.
    pub loss: f64,
    pub targets: usize,
}

/// The log-probabilities of a micro-batch's targets (in row-major order, as
/// `model::decoder::target_positions` lists them) and the row each belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetLogps {
    pub logp: Vec<f32>,
    pub row: Vec<usize>,
    /// Rows in the micro-batch.
    pub rows: usize,
}

impl TargetLogps {
    /// Per row: the sum of its targets' log-probs and their count.
    pub fn row_sums(&self) -> Vec<(f64, usize)> {
        let mut out = vec![(0.0f64, 0usize); self.rows];
        for (lp, r) in self.logp.iter().zip(&self.row) {
            out[*r].0 += f64::from(*lp);
            out[*r].1 += 1;
        }
        out
    }
}

/// An objective's view of a micro-batch: from its targets' log-probs, the micro-batch's share
/// of the window loss and, for each target, the derivative of that share with respect to
/// the target's log-prob. SFT's is `-1 / window` for every target; DPO's depends on the
/// pair. The step turns these into the gradient of the logits.
pub type Head<'a> = dyn FnMut(&TargetLogps) -> candle_core::Result<(f64, Vec<f32>)> + 'a;

/// SFT's head: mean cross-entropy over the window's targets.
pub fn sft_head(
    window_targets: usize,
) -> impl FnMut(&TargetLogps) -> candle_core::Result<(f64, Vec<f32>)> {
    move |t: &TargetLogps| {
        let denom = window_targets.max(1) as f64;
        let nll: f64 = t.logp.iter().map(|l| -f64::from(*l)).sum();
        Ok((nll / denom, vec![(-1.0 / denom) as f32; t.logp.len()]))
    }
}
