//! Held-out evaluation of any method, outside a run: the loss and TRL-named metrics of a
//! dataset under a model with its adapter, measured as the method's objective measures its
//! held-out set (preference methods against a reference: the base alone, or the base with
//! an adapter of its own). `tunelab eval` prints it; the workbench can show it.

use super::dpo::Dpo;
use super::kto::Kto;
use super::method::PromptedEncoder;
use crate::batch::pairs::encode_pairs;
use crate::batch::rated::encode_rated;
use crate::batch::{DatasetError, EncodeReport};
use crate::config::MethodConfig;
use crate::eval::EvalError;
use crate::model::{Model, ModelError};
use crate::runs::event::Metrics;
use crate::template::Encoder;
use std::path::Path;

/// The dataset to evaluate and its limits.
#[derive(Debug, Clone, Copy)]
pub struct EvalData<'a> {
    /// Any format tunelab reads, detected from the file.
    pub path: &'a Path,
    /// Examples are cut to this many tokens.
    pub max_seq_len: usize,
    /// Preference methods: prompts keep their last this many tokens.
    pub max_prompt_len: usize,
    /// Examples per forward pass; KTO's KL partners rotate within blocks of this size, in
    /// file order, as TRL pairs them.
    pub batch_size: usize,
}

/// The reference of a preference method when it is not the policy's base alone: the base
/// (a model folder, a .gguf file or a hub id) with this adapter.
#[derive(Debug, Clone, Copy)]
pub struct RefAdapter<'a> {
    pub base: &'a str,
    pub adapter: &'a Path,
}

/// What a held-out evaluation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// The method's loss: per trained token (SFT), per pair (DPO), per completion (KTO).
    pub loss: f64,
    /// Examples, pairs or rated completions evaluated.
    pub items: usize,
    /// Trained tokens the SFT loss averages over (preference losses average over items,
    /// and leave it 0).
    pub tokens: usize,
    /// What encoding left out, and the labels of rated completions.
    pub report: EncodeReport,
    /// TRL's names: `rewards/chosen`, `rewards/margins`, `logps/rejected`, `kl`, ….
    pub metrics: Metrics,
}

impl HeldOut {
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeldOutError {
    /// The dataset could not be read or encoded.
    #[error(transparent)]
    Data(#[from] DatasetError),
    /// The reference model or its adapter could not be loaded.
    #[error(transparent)]
    Reference(ModelError),
    /// SFT evaluation found nothing to evaluate, or a record it could not encode.
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Compute(#[from] candle_core::Error),
    /// The method has no held-out loss over a dataset (GRPO samples its completions).
    #[error("{0}")]
    Unsupported(String),
}

impl EvalData<'_> {
    /// The file's pairs or rated completions, its format detected, cut to the limits.
    fn encode<T>(
        &self,
        encoder: &Encoder,
        encode: PromptedEncoder<T>,
    ) -> Result<(Vec<T>, EncodeReport), DatasetError> {
        encode(
            self.path,
            "auto",
            encoder,
            self.max_prompt_len,
            self.max_seq_len,
        )
    }
}

impl RefAdapter<'_> {
    /// The base with the reference adapter, on `model`'s device.
    pub fn load(&self, model: &Model) -> Result<Model, HeldOutError> {
        let (mut r, _) = crate::model::source::load(self.base, &model.device)
            .map_err(HeldOutError::Reference)?;
        crate::model::peft::load(&mut r, self.adapter).map_err(HeldOutError::Reference)?;
        Ok(r)
    }
}

/// The loss and metrics of `data` under `model` (with its adapter) for `method`; preference
/// methods measure against `reference`, or the base alone (the adapter bypassed) without
/// one. Nothing is trained; there is no dropout.
pub fn held_out(
    model: &Model,
    encoder: &Encoder,
    data: &EvalData,
    method: MethodConfig,
    reference: Option<RefAdapter>,
) -> Result<HeldOut, HeldOutError> {
    let pad = encoder.tokenizer.pad_id();
    let (out, items, report) = match method {
        MethodConfig::Sft(_) => {
            let ds = crate::data::Dataset::open(data.path, None).map_err(DatasetError::from)?;
            let r = crate::eval::evaluate(model, encoder, &ds, data.max_seq_len, data.batch_size)?;
            return Ok(HeldOut {
                loss: r.loss,
                items: r.examples,
                tokens: r.tokens,
                report: EncodeReport::default(),
                metrics: Metrics::new(),
            });
        }
        MethodConfig::Dpo(cfg) => {
            let (pairs, report) = data.encode(encoder, encode_pairs)?;
            let n = pairs.len();
            let reference = match reference {
                Some(r) if cfg.loss.needs_reference() => Some(r.load(model)?),
                _ => None,
            };
            let out = Dpo::held_out(pairs, pad, cfg, model, reference.as_ref(), data.batch_size)?;
            (out, n, report)
        }
        MethodConfig::Grpo(_) => {
            return Err(HeldOutError::Unsupported(
                "train.method grpo has no loss over a dataset: `tunelab eval --grpo` scores fixed groups of completions".into(),
            ))
        }
        MethodConfig::Kto(cfg) => {
            let (rated, report) = data.encode(encoder, encode_rated)?;
            let n = rated.len();
            let reference = reference.map(|r| r.load(model)).transpose()?;
            let out = Kto::held_out(rated, pad, cfg, model, reference.as_ref(), data.batch_size)?;
            (out, n, report)
        }
    };
    Ok(HeldOut {
        loss: out.loss,
        items,
        tokens: 0,
        report,
        metrics: out.metrics,
    })
}
