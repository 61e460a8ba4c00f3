//! What the trainer optimizes, behind one seam: the loop asks an objective for a micro-batch's
//! loss and gradients and for held-out metrics, and never branches on the method. SFT is
//! the objective today; preference objectives plug in beside it.

use super::grads::Grads;
use super::micro::StepArgs;
use crate::batch::{collate, Sequence};
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
}

/// Supervised fine-tuning: cross-entropy on the trained tokens.
pub struct Sft {
    pub train: Vec<Sequence>,
    pub eval: Vec<Sequence>,
    pub pad_id: u32,
}

impl Objective for Sft {
    fn train_items(&self) -> usize {
        self.train.len()
    }

    fn eval_items(&self) -> usize {
        self.eval.len()
    }

    fn window(&self, items: &[usize]) -> Window {
        let targets = items.iter().map(|&i| self.train[i].targets()).sum();
        Window {
            units: targets,
            tokens: targets,
            desirable: 0,
        }
    }

    fn micro_step(
        &self,
        model: &Model,
        items: &[usize],
        _window: Window,
        args: &StepArgs,
        grads: &mut Grads,
    ) -> Result<MicroOut> {
        let rows: Vec<&Sequence> = items.iter().map(|&i| &self.train[i]).collect();
        let mb = collate(&rows, self.pad_id);
        let l = super::step::forward_backward(model, &mb, args, grads)?;
        Ok(MicroOut {
            loss: l.loss,
            tokens: mb.tokens,
            metrics: Metrics::new(),
        })
    }

    fn evaluate(&self, model: &Model, batch_size: usize) -> Result<Option<EvalOut>> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let (sum, n) = crate::eval::sequence_loss(model, &self.eval, batch_size, self.pad_id)?;
        Ok(Some(EvalOut {
            loss: if n == 0 { f64::NAN } else { sum / n as f64 },
            count: n,
            metrics: Metrics::new(),
        }))
    }
}
