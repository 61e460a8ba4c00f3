//! The one decoder every family in `model::family` runs on: a family is a set of switches
//! (table fields) over it, and a family's distinct op lives here, switched by its field.
//! Every op has a backward: frozen projections go through `ops::frozen_linear`, and norms,
//! RoPE and softmax through the spliced fused kernels of `ops`. `Model` and `Batch` are
//! defined here; the children add to `Model` by concern: `load` (folders, quantizing),
//! `lora` (attaching, merging, PEFT names), `tensors` (bytes, densifying, HF tensors out),
//! `tables` (per-batch RoPE tables and masks), `forward` (training forward, the shared
//! layer), `cached` (generation's cached forward); `linear` and `block` hold the weights,
//! and `loss` the causal-LM loss.

mod block;
mod cached;
mod forward;
mod linear;
mod load;
mod lora;
mod loss;
mod tables;
mod tensors;

pub use crate::model::kv_cache::KvCache;
pub use block::{split_last, Block};
pub use forward::{activate, repeat_kv, rope_partial, softcap};
pub use linear::{inverse_perm, Linear, Weight};
pub use loss::{causal_lm_loss, row, target_positions};
pub use tables::{Prepared, Tables};

use crate::lora::{LoraConfig, LoraSwitch};
use crate::model::config::ModelConfig;
use candle_core::{DType, Device, Tensor};

/// Inputs beside the token ids.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// [b, t] positions; packed sequences restart at 0 for every example, which also
    /// separates their attention. Default: 0..t per row.
    pub position_ids: Option<Vec<Vec<u32>>>,
    /// [b, t] 1 for real tokens, 0 for padding. Default: all real.
    pub attention_mask: Option<Vec<Vec<u8>>>,
}

/// A decoder of any family: its config, the frozen base (embeddings, layers, final norm,
/// head) on one device in one dtype, and the LoRA adapter's config and on/off switch.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    /// The token embedding [vocab, hidden]: dense, or a GGUF's quantized table (looked up
    /// a row at a time; tied, it is the head's very matrix).
    pub embed: Weight,
    pub layers: Vec<Block>,
    pub norm: Tensor,
    pub lm_head: Weight,
    pub device: Device,
    pub dtype: DType,
    pub lora: Option<LoraConfig>,
    pub switch: LoraSwitch,
}

impl Model {
    pub fn assemble(
        config: ModelConfig,
        embed: Weight,
        layers: Vec<Block>,
        norm: Tensor,
        lm_head: Weight,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Model {
            config,
            embed,
            layers,
            norm,
            lm_head,
            device: device.clone(),
            dtype,
            lora: None,
            switch: LoraSwitch::default(),
        }
    }
}
