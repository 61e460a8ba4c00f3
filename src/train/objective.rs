//! What the trainer optimizes, behind one seam: the loop asks an objective for a micro-batch's
//! loss and gradients and for held-out metrics, and never branches on the method. Each
//! method's objective lives in its own module (`sft`, `dpo`, `kto`), built through
//! [`super::method::TrainingMethod`].

use super::grads::Grads;
use super::micro::StepArgs;
use crate::model::Model;
use crate::runs::event::Metrics;
use candle_core::Result;

/// One micro-batch's contribution to the step.
#[derive(Debug, Clone, Default)]
pub struct MicroOut {
    /// Its share of the window's loss (the shares of a window sum to the step's loss).
    pub loss: f64,
    /// Real tokens processed.
    pub tokens: usize,
    /// Objective metrics, also as shares of the window.
    pub metrics: Metrics,
}

/// What an accumulation window averages over: `units` (targets for SFT, pairs or rated
/// completions for preference objectives), the chosen tokens an SFT term averages over, and
/// the desirable completions KTO's per-label metrics average over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub units: usize,
    pub tokens: usize,
    pub desirable: usize,
}

impl std::ops::AddAssign for Window {
    fn add_assign(&mut self, o: Self) {
        self.units += o.units;
        self.tokens += o.tokens;
        self.desirable += o.desirable;
    }
}

/// One of GRPO's sampled completions, for the run's events.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionSample {
    pub prompt: String,
    pub completion: String,
    /// Each reward function's score and the weighted `reward`.
    pub rewards: std::collections::BTreeMap<String, f64>,
    pub advantage: f64,
}

/// A step an objective lays out itself (GRPO: the micro-batches of its sampled completions).
#[derive(Debug, Clone, Default)]
pub struct StepPlan {
    /// The step's micro-batches, item indices each.
    pub windows: Vec<Vec<usize>>,
    /// Metrics of the step as a whole (rewards, completion lengths, generation speed).
    pub metrics: Metrics,
    /// Completions to write to the events.
    pub samples: Vec<CompletionSample>,
}

/// Held-out loss and metrics.
#[derive(Debug, Clone)]
pub struct EvalOut {
    pub loss: f64,
    /// Tokens (or pairs) the loss averages over.
    pub count: usize,
    pub metrics: Metrics,
}

pub trait Objective: Send + Sync {
    /// Training items (sequences, pairs); the data order permutes their indices.
    fn train_items(&self) -> usize;
    /// Held-out items.
    fn eval_items(&self) -> usize;
    /// What these items contribute to the window the loss averages over, so accumulation
    /// equals one large batch.
    fn window(&self, items: &[usize]) -> Window;
    /// Forward and backward of the micro-batch made of `items` into `grads`; `window` is the
    /// whole accumulation window's (`args.window_targets` is its `units`).
    fn micro_step(
        &self,
        model: &Model,
        items: &[usize],
        window: Window,
        args: &StepArgs,
        grads: &mut Grads,
    ) -> Result<MicroOut>;
    /// Loss and metrics over the held-out items, `batch_size` at a time; `None` without any.
    fn evaluate(&self, model: &Model, batch_size: usize) -> Result<Option<EvalOut>>;
    /// [`Objective::evaluate`], telling `progress` how many held-out items are done as it
    /// goes (the run's `eval` phase); an objective that cannot says nothing until the end.
    fn evaluate_with(
        &self,
        model: &Model,
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Option<EvalOut>> {
        let out = self.evaluate(model, batch_size)?;
        progress(self.eval_items());
        Ok(out)
    }
    /// Work before the first step of a session (DPO's precomputed reference); a line for
    /// the run's log when there was any.
    fn prepare(
        &mut self,
        _model: &Model,
        _run: &crate::runs::RunDir,
        _batch_size: usize,
    ) -> Result<Option<String>> {
        Ok(None)
    }
    /// Work at the start of optimizer step `step` with `accum` micro-batches: an objective
    /// that samples its own items (GRPO) does so here and lays out the step. `None`: the
    /// step takes the data order's micro-batches.
    fn plan_step(
        &mut self,
        _model: &Model,
        _step: u64,
        _accum: usize,
    ) -> std::result::Result<Option<StepPlan>, super::TrainError> {
        Ok(None)
    }
    /// What a resume needs beyond the adapter, the optimizer and the counters (GRPO's
    /// generation batch while it is reused), written into every checkpoint.
    fn state(&self) -> Option<Vec<u8>> {
        None
    }
    /// Takes back what [`Objective::state`] wrote.
    fn restore(&mut self, _state: &[u8]) -> std::result::Result<(), super::TrainError> {
        Ok(())
    }
}
