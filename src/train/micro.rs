//! What every step implementation shares: the arguments of one micro-batch's forward and
//! backward, and what it returns. Below both `step` (the dispatcher and the autograd path)
//! and `manual` (the hand-written backward), so neither imports the other's types.

/// How one micro-batch is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepArgs {
    /// Every target in the accumulation window: losses are summed over a micro-batch's
    /// targets and divided by this, so accumulation equals one large batch.
    pub window_targets: usize,
    /// Seeds the LoRA dropout masks (a pure function of the seed and the micro-batch index);
    /// `None` turns dropout off.
    pub dropout_seed: Option<u64>,
    /// Keep only each layer's input and recompute the layer in the backward.
    pub checkpointing: bool,
}

impl StepArgs {
    /// One micro-batch that is its own window, no dropout, no checkpointing.
    pub fn plain(window_targets: usize) -> Self {
        StepArgs {
            window_targets,
            dropout_seed: None,
            checkpointing: false,
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
