//! Supervised fine-tuning as a method: examples to imitate, cross-entropy on their trained
//! tokens (packed into sequences when `data.packing`).

use super::error::TrainError;
use super::grads::Grads;
use super::method::{SamplePrompt, Setup, TrainingMethod};
use super::micro::StepArgs;
use super::objective::{EvalOut, MicroOut, Objective, Window};
use crate::batch::{self, collate, EncodeReport, Sequence};
use crate::model::Model;
use crate::runs::event::Metrics;
use crate::template::Example;
use candle_core::Result;
use std::path::Path;

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
        self.evaluate_with(model, batch_size, &mut |_| {})
    }

    fn evaluate_with(
        &self,
        model: &Model,
        batch_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Option<EvalOut>> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let (sum, n) =
            crate::eval::sequence_loss_with(model, &self.eval, batch_size, self.pad_id, progress)?;
        Ok(Some(EvalOut {
            loss: if n == 0 { f64::NAN } else { sum / n as f64 },
            count: n,
            metrics: Metrics::new(),
        }))
    }
}

impl TrainingMethod for Sft {
    type Item = Example;

    fn encode(
        s: &Setup,
        path: &Path,
    ) -> std::result::Result<(Vec<Example>, EncodeReport), TrainError> {
        let d = &s.cfg.data;
        Ok(batch::encode_file(
            path,
            &d.format,
            s.encoder,
            d.max_seq_len,
            d.length_policy,
            d.train_undesirable,
        )?)
    }

    /// The prompt exactly as the model saw it before the reply it learns.
    fn sample(e: &Example) -> Option<SamplePrompt> {
        if e.prompt.is_empty() {
            return None;
        }
        let prompt = e.prompt_ids()?;
        // The first trained run after the prompt: the reply to it.
        let reply = e.labels[prompt.len()..]
            .iter()
            .take_while(|&&l| l != crate::template::IGNORE)
            .filter_map(|&l| u32::try_from(l).ok())
            .collect();
        Some(SamplePrompt {
            text: e.prompt.clone(),
            ids: prompt.to_vec(),
            reply,
        })
    }

    fn build(
        s: &Setup,
        train: Vec<Example>,
        eval: Vec<Example>,
    ) -> std::result::Result<Self, TrainError> {
        let d = &s.cfg.data;
        Ok(Sft {
            train: batch::sequences(train, d.packing, d.max_seq_len),
            eval: batch::sequences(eval, false, d.max_seq_len),
            pad_id: s.encoder.tokenizer.pad_id(),
        })
    }
}
