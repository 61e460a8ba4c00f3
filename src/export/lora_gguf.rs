//! The adapter alone as a llama.cpp LoRA GGUF (`general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`), for `llama-cli --lora` and an Ollama
//! `ADAPTER` line: a few MB instead of a whole model. Tensors are named after the base
//! weight they adapt (`blk.0.attn_q.weight.lora_a`, `….lora_b`); B's rows follow the base's
//! rows, so for the `llama` architecture they take llama.cpp's q/k permutation.

use super::gguf::write_file;
use super::{ExportError, Loaded, TensorProgress};
use crate::model::decoder::inverse_perm;
use crate::model::gguf::{hf_to_gguf, unpermute_rows};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::path::Path;

/// What was written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoraReport {
    pub architecture: String,
    pub pairs: usize,
    pub rank: usize,
    /// The `adapter.lora.alpha` written: llama.cpp scales by alpha / rank, so an rsLoRA
    /// adapter's √rank scale is folded in here.
    pub alpha: f64,
    pub bytes: u64,
}

/// Writes `loaded`'s adapter (not merged) as `path`. `progress` hears `(done, total)` as
/// each A and B tensor is converted.
pub fn write(
    loaded: &Loaded,
    path: &Path,
    name: &str,
    progress: TensorProgress,
) -> Result<LoraReport, ExportError> {
    let lora = loaded.lora.as_ref().ok_or_else(|| {
        ExportError::Invalid("--gguf-lora needs an adapter: name a run or an adapter folder".into())
    })?;
    let c = &loaded.model.config;
    let f = c.family();
    let permute = f.gguf_permuted_qk;
    let dev = Device::Cpu;
    // Two tensors (A and B) per adapted weight.
    let total = 2 * loaded
        .model
        .layers
        .iter()
        .flat_map(|b| b.linears())
        .filter(|(_, _, l)| l.lora.is_some())
        .count();
    let mut tensors = Vec::with_capacity(total);
    progress(0, total);
    for (i, b) in loaded.model.layers.iter().enumerate() {
        for (group, module, l) in b.linears() {
            let Some(pair) = &l.lora else { continue };
            let hf = format!("model.layers.{i}.{group}.{module}.weight");
            let base = hf_to_gguf(f, &hf)
                .ok_or_else(|| ExportError::Invalid(format!("no llama.cpp name for {hf}")))?;
            let a = pair.a.as_tensor().to_dtype(candle_core::DType::F32)?;
            let mut bm = pair.b.as_tensor().to_dtype(candle_core::DType::F32)?;
            // B's rows are HF rows; the base's rows in the file are permuted for `llama`.
            let rows = match (&l.out_perm, module) {
                (Some(p), _) => Some(p.clone()),
                (None, "q_proj") if permute => Some(Tensor::new(
                    unpermute_rows(c.num_attention_heads, c.head_dim),
                    &dev,
                )?),
                (None, "k_proj") if permute => Some(Tensor::new(
                    unpermute_rows(c.num_key_value_heads, c.head_dim),
                    &dev,
                )?),
                _ => None,
            };
            if let Some(map) = rows {
                bm = bm.index_select(&inverse_perm(&map)?, 0)?;
            }
            tensors.push((
                format!("{base}.lora_a"),
                QTensor::quantize(&a, GgmlDType::F32)?,
            ));
            progress(tensors.len(), total);
            tensors.push((
                format!("{base}.lora_b"),
                QTensor::quantize(&bm, GgmlDType::F32)?,
            ));
            progress(tensors.len(), total);
        }
    }
    if tensors.is_empty() {
        return Err(ExportError::Invalid("the adapter has no LoRA pairs".into()));
    }
    let alpha = lora.scale() * lora.r as f64;
    let meta: Vec<(String, Value)> = vec![
        (
            "general.architecture".into(),
            Value::String(f.gguf_arch.into()),
        ),
        ("general.type".into(), Value::String("adapter".into())),
        ("general.name".into(), Value::String(name.into())),
        ("adapter.type".into(), Value::String("lora".into())),
        ("adapter.lora.alpha".into(), Value::F32(alpha as f32)),
    ];
    write_file(path, &meta, &tensors)?;
    Ok(LoraReport {
        architecture: f.gguf_arch.into(),
        pairs: tensors.len() / 2,
        rank: lora.r,
        alpha,
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
    })
}
