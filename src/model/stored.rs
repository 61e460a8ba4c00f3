//! A quantized matrix as the base holds it: one of candle's (llama.cpp's) block formats or
//! NF4. Shared by quantizing (`quant`) and the cache (`quant_cache`).

use candle_core::quantized::{GgmlDType, QTensor};
use std::sync::Arc;

/// A quantized matrix: one of candle's (llama.cpp's) block formats, or NF4.
#[derive(Debug, Clone)]
pub enum Stored {
    Ggml(Arc<QTensor>),
    Nf4(Arc<super::nf4::Nf4Tensor>),
}

impl Stored {
    pub fn storage_size_in_bytes(&self) -> usize {
        match self {
            Stored::Ggml(q) => q.storage_size_in_bytes(),
            Stored::Nf4(q) => q.storage_size_in_bytes(),
        }
    }

    /// The type's name (`q4k`, `q5_0`, `nf4`).
    pub fn type_name(&self) -> String {
        match self {
            Stored::Ggml(q) => type_name(q.dtype()),
            Stored::Nf4(_) => "nf4".into(),
        }
    }
}

/// The name tunelab and llama.cpp use for a block type.
pub fn type_name(t: GgmlDType) -> String {
    format!("{t:?}").to_lowercase()
}
