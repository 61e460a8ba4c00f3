//! The decoder models: the family table, configuration, weights, and the one decoder every
//! family runs on, a differentiable forward pass that returns logits at every position, with
//! LoRA layers over a frozen base.

pub mod base;
pub mod catalog;
pub mod compute;
pub mod config;
pub mod decoder;
pub mod estimate;
pub mod family;
pub mod gguf;
pub mod hub;
pub mod kv_cache;
pub mod nf4;
pub mod peft;
pub mod quant;
pub mod quant_cache;
pub mod random;
pub mod source;
pub mod stored;
pub mod tiny;
pub mod weights;

pub use compute::{DeviceSpec, Dtype};
pub use config::{Arch, ModelConfig};
pub use decoder::{Batch, Model};
pub use quant::{QuantPlan, QuantReport, Quantization};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("weights: tensor {name}: {message}")]
    MissingTensor { name: String, message: String },
    #[error("adapter {}: {message}", path.display())]
    Adapter { path: PathBuf, message: String },
    /// An adapter whose tensors do not fit this model's layers (trained on another base).
    #[error("adapter {}: {message}", path.display())]
    AdapterMisfit { path: PathBuf, message: String },
    #[error("device: {0}")]
    Device(String),
    /// The model's tokenizer (its message names the file).
    #[error(transparent)]
    Tokenizer(#[from] crate::template::TemplateError),
    #[error("compute: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
