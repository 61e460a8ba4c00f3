//! Loading a model to talk to: one sequence for `tunelab chat`, the Chat tab and `serve`.
//! The base is read once (dequantized for generation when that stays small), its chat
//! template chosen, and each adapter put on a storage-sharing copy of it after
//! [`crate::model::base::check`] has made sure it was trained on this base, so a
//! mismatched adapter is refused by name before any generation.

use crate::model::{base, peft, source, Model, ModelError};
use crate::template::{Encoder, TemplateChoice, TemplateError, TrainOn};
use serde_json::{Map, Value};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("chat template: {0}")]
    Template(#[from] TemplateError),
    /// An adapter trained on another model (the message names both).
    #[error("{0}")]
    WrongBase(String),
}

/// A base ready for generation, with the encoder its replies are prompted through.
pub struct Base {
    /// What it was loaded from (a folder, a `.gguf` file or a hub id).
    pub spec: String,
    pub model: Model,
    pub encoder: Encoder,
}

/// Loads `spec` on the CPU for generation, with `template` (`model`, a built-in name or a
/// Jinja file) and extra template arguments.
pub fn base(spec: &str, template: &str, kwargs: Map<String, Value>) -> Result<Base, LoadError> {
    let (mut model, tok) = source::load(spec, &candle_core::Device::Cpu)?;
    model.prepare_for_generation().map_err(ModelError::from)?;
    let encoder = Encoder::new(tok, &TemplateChoice::parse(template), TrainOn::Assistant)?
        .with_template_kwargs(kwargs);
    Ok(Base {
        spec: spec.to_string(),
        model,
        encoder,
    })
}

impl Base {
    /// The base with `adapter` on it, sharing the base's tensors (an adapter costs only its
    /// LoRA weights). Refuses an adapter trained on another model.
    pub fn with_adapter(&self, adapter: &Path) -> Result<Model, LoadError> {
        let mut m = self.model.bare_base();
        attach(&mut m, &self.spec, adapter)?;
        Ok(m)
    }

    /// Puts `adapter` on the base itself (one adapter, no copy).
    pub fn attach(&mut self, adapter: &Path) -> Result<(), LoadError> {
        attach(&mut self.model, &self.spec, adapter)
    }
}

/// Checks that `adapter` belongs to `model` (loaded from `spec`), then loads it.
pub fn attach(model: &mut Model, spec: &str, adapter: &Path) -> Result<(), LoadError> {
    base::check(adapter, spec, &model.config).map_err(LoadError::WrongBase)?;
    peft::load(model, adapter).map_err(|e| match e {
        ModelError::AdapterMisfit { .. } => LoadError::WrongBase(base::explain_misfit(
            adapter,
            spec,
            &model.config,
            &e.to_string(),
        )),
        e => LoadError::Model(e),
    })
}
