//! QLoRA's frozen base: the linear weights of a safetensors model quantized at load time
//! into candle's block formats (q8_0, q4_0, q4k), each tensor read in f32 on the CPU,
//! quantized and placed on the device, so no full-precision copy of the model is ever
//! resident. A matrix whose input width a block type cannot take falls back as llama.cpp
//! does (q4k → q5_0), or stays dense, and the report says which. Embeddings, the output
//! head and norms keep the compute dtype.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

pub use super::stored::{type_name, Stored};

/// `model.quantization`: how the frozen base is stored.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Quantization {
    /// The compute dtype (`train.dtype`).
    #[default]
    None,
    /// 8.5 bits per weight: 32-weight blocks with an f16 scale.
    Q8_0,
    /// 4.5 bits per weight: 32-weight blocks with an f16 scale.
    Q4_0,
    /// 4.5 bits per weight: 256-weight super-blocks with 6-bit sub-block scales and mins.
    Q4k,
    /// 4.13 bits per weight: NormalFloat4 in 64-weight blocks with double-quantized scales
    /// (the QLoRA paper's type); dequantized on the device it lives on.
    Nf4,
}

impl std::str::FromStr for Quantization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("quantization", s)
    }
}

impl Quantization {
    /// The block type, for the formats candle stores.
    pub fn ggml(self) -> Option<GgmlDType> {
        match self {
            Quantization::None | Quantization::Nf4 => None,
            Quantization::Q8_0 => Some(GgmlDType::Q8_0),
            Quantization::Q4_0 => Some(GgmlDType::Q4_0),
            Quantization::Q4k => Some(GgmlDType::Q4K),
        }
    }
}

/// How a base is to be stored: the projections' quantization, whether an untied output
/// head is quantized too (`model.quantize_head`; embeddings and norms never are), and the
/// cache folder quantized bases are kept in (none: quantize on every load).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuantPlan {
    pub quantization: Quantization,
    pub head: bool,
    pub cache: Option<std::path::PathBuf>,
}

impl From<Quantization> for QuantPlan {
    fn from(quantization: Quantization) -> Self {
        QuantPlan {
            quantization,
            head: false,
            cache: None,
        }
    }
}

/// The type a matrix with `cols` inputs gets under `quant` (its name), or `None` when it
/// stays dense.
pub fn stored_type(quant: Quantization, cols: usize) -> Option<String> {
    match quant {
        Quantization::Nf4 => super::nf4::Nf4Tensor::fits(cols).then(|| "nf4".to_string()),
        q => q.ggml().and_then(|t| block_type(t, cols)).map(type_name),
    }
}

/// The block type a matrix with `cols` inputs takes for `wanted`: that one when the width
/// is a multiple of its block, else llama.cpp's fallback for it when that fits, else none
/// (the matrix stays dense).
pub fn block_type(wanted: GgmlDType, cols: usize) -> Option<GgmlDType> {
    let fits = |t: GgmlDType| cols.is_multiple_of(t.block_size());
    if fits(wanted) {
        return Some(wanted);
    }
    let fallback = match wanted {
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        _ => return None,
    };
    fits(fallback).then_some(fallback)
}

/// Bits per weight of a block type (its block's bytes over its weights).
pub fn bits_per_weight(t: GgmlDType) -> f64 {
    t.type_size() as f64 * 8.0 / t.block_size() as f64
}

/// A matrix that did not get the requested type, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fallback {
    pub tensor: String,
    pub wanted: String,
    /// The type it got, or the compute dtype's name when it stayed dense.
    pub used: String,
    pub cols: usize,
}

/// What quantizing (or not) left in memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QuantReport {
    pub quantization: String,
    /// Parameters of the whole base.
    pub params: u64,
    /// Resident bytes of the whole base (quantized layers, dense rest).
    pub base_bytes: u64,
    /// Parameters and bytes of the quantized matrices alone.
    pub quantized_params: u64,
    pub quantized_bytes: u64,
    pub fallbacks: Vec<Fallback>,
    /// Where the quantized matrices came from: `quantized now`, `cache <file>`, or
    /// `quantized now; cache entry rebuilt (<why>)`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
}

impl QuantReport {
    /// Adds another report's matrices (one built in parallel, matrix by matrix).
    pub fn absorb(&mut self, o: QuantReport) {
        self.quantized_params += o.quantized_params;
        self.quantized_bytes += o.quantized_bytes;
        self.fallbacks.extend(o.fallbacks);
    }

    /// Bits per weight over the quantized matrices.
    pub fn bits_per_quantized_weight(&self) -> f64 {
        if self.quantized_params == 0 {
            0.0
        } else {
            self.quantized_bytes as f64 * 8.0 / self.quantized_params as f64
        }
    }

    /// One line for logs: `q4k: 210 matrices, 4.50 bits/weight; base 95.3 MiB; 30 fell back (q5_0)`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} parameters quantized at {:.2} bits/weight; base {}",
            self.quantization,
            self.quantized_params,
            self.bits_per_quantized_weight(),
            crate::units::bytes(self.base_bytes)
        );
        if !self.source.is_empty() {
            s.push_str(&format!(" ({})", self.source));
        }
        if !self.fallbacks.is_empty() {
            let mut used: Vec<&str> = self.fallbacks.iter().map(|f| f.used.as_str()).collect();
            used.sort();
            used.dedup();
            s.push_str(&format!(
                "; {} matrices fell back to {} (input width not a multiple of the block)",
                self.fallbacks.len(),
                used.join(", ")
            ));
        }
        s
    }
}

/// One frozen matrix (`src`, f32 on the CPU) quantized onto `device` to its block type (or
/// the fallback, noted in `report`); `None` when it stays dense in `dtype` (neither fits
/// the width, or `quant` is `none`).
pub fn quantize_matrix(
    name: &str,
    src: &Tensor,
    quant: Quantization,
    dtype: DType,
    device: &Device,
    report: &mut QuantReport,
) -> candle_core::Result<Option<Stored>> {
    if quant == Quantization::Nf4 {
        let cols = src.dim(1)?;
        if !super::nf4::Nf4Tensor::fits(cols) {
            report.fallbacks.push(Fallback {
                tensor: name.to_string(),
                wanted: "nf4".into(),
                used: format!("{dtype:?}").to_lowercase(),
                cols,
            });
            return Ok(None);
        }
        let q = super::nf4::Nf4Tensor::quantize(src, device)?;
        report.quantized_params += src.elem_count() as u64;
        report.quantized_bytes += q.storage_size_in_bytes() as u64;
        return Ok(Some(Stored::Nf4(Arc::new(q))));
    }
    let Some(wanted) = quant.ggml() else {
        return Ok(None);
    };
    let cols = src.dim(1)?;
    let used = block_type(wanted, cols);
    if used != Some(wanted) {
        report.fallbacks.push(Fallback {
            tensor: name.to_string(),
            wanted: type_name(wanted),
            used: used.map_or_else(|| format!("{dtype:?}").to_lowercase(), type_name),
            cols,
        });
    }
    let Some(t) = used else {
        return Ok(None);
    };
    let q = QTensor::quantize_onto(src, t, device)?;
    report.quantized_params += src.elem_count() as u64;
    report.quantized_bytes += q.storage_size_in_bytes() as u64;
    Ok(Some(Stored::Ggml(Arc::new(q))))
}

/// The quantized matrices among `names` of the weight files `w` under `plan`, by name (the
/// others stay dense), and the report. Read from the cache when an entry matches; otherwise
/// every matrix is quantized in parallel and the entry is written.
pub fn quantize_base(
    w: &super::weights::Weights,
    names: &[String],
    plan: &QuantPlan,
    dtype: DType,
    device: &Device,
) -> Result<(std::collections::HashMap<String, Stored>, QuantReport), super::ModelError> {
    use super::quant_cache::{self as cache, Lookup};
    use rayon::prelude::*;
    let mut report = QuantReport {
        quantization: plan.quantization.to_string(),
        ..Default::default()
    };
    if plan.quantization == Quantization::None {
        return Ok((Default::default(), report));
    }
    let wanted = plan.quantization.to_string();
    // The type each matrix should get, from the header's shapes.
    let mut expected: Vec<(String, usize, Option<String>)> = Vec::with_capacity(names.len());
    for n in names {
        let shape = w.shape(n).ok_or_else(|| super::ModelError::MissingTensor {
            name: n.clone(),
            message: "not in the weight files".into(),
        })?;
        let cols = shape.get(1).copied().unwrap_or(0);
        expected.push((n.clone(), cols, stored_type(plan.quantization, cols)));
    }
    let entry = plan.cache.as_ref().and_then(|c| {
        let id = (plan.quantization.to_string(), plan.head);
        cache::entry(c, w.files(), (id.0.as_str(), id.1), dtype).ok()
    });
    let mut rebuilt = None;
    let mut map: Option<std::collections::HashMap<String, Stored>> = None;
    if let Some(e) = &entry {
        match cache::read(e, device) {
            Lookup::Hit(m) => {
                let complete = expected.iter().all(|(n, _, t)| match t {
                    Some(t) => m.get(n).is_some_and(|q| q.type_name() == *t),
                    None => !m.contains_key(n),
                });
                if complete {
                    report.source = format!("cache {}", e.file.display());
                    map = Some(m);
                } else {
                    rebuilt = Some("its matrices do not match the plan".to_string());
                }
            }
            Lookup::Missing => {}
            Lookup::Damaged(why) => rebuilt = Some(why),
        }
    }
    let map = match map {
        Some(m) => m,
        None => {
            let made: Vec<(String, Stored)> = expected
                .par_iter()
                .filter(|(_, _, t)| t.is_some())
                .map(|(n, _, _)| {
                    let src = w.get(n, DType::F32, &Device::Cpu)?;
                    let mut scratch = QuantReport::default();
                    let q =
                        quantize_matrix(n, &src, plan.quantization, dtype, device, &mut scratch)?
                            .ok_or_else(|| candle_core::Error::Msg(format!("{n}: not quantized")))?;
                    Ok((n.clone(), q))
                })
                .collect::<Result<_, super::ModelError>>()?;
            report.source = match &rebuilt {
                Some(why) => format!("quantized now; cache entry rebuilt ({why})"),
                None => "quantized now".into(),
            };
            if let Some(e) = &entry {
                let dir = w
                    .files()
                    .first()
                    .and_then(|f| f.parent())
                    .unwrap_or(Path::new("."));
                let name = plan.quantization.to_string();
                if let Err(err) = cache::write(e, &made, dir, &name) {
                    report.source.push_str(&format!("; not cached: {err}"));
                }
            }
            made.into_iter().collect()
        }
    };
    for (n, cols, t) in &expected {
        match (t, map.get(n)) {
            (Some(t), Some(q)) => {
                let rows = w.shape(n).and_then(|s| s.first().copied()).unwrap_or(0);
                report.quantized_params += (rows * cols) as u64;
                report.quantized_bytes += q.storage_size_in_bytes() as u64;
                if *t != wanted {
                    report.fallbacks.push(Fallback {
                        tensor: n.clone(),
                        wanted: wanted.clone(),
                        used: t.clone(),
                        cols: *cols,
                    });
                }
            }
            _ => report.fallbacks.push(Fallback {
                tensor: n.clone(),
                wanted: wanted.clone(),
                used: format!("{dtype:?}").to_lowercase(),
                cols: *cols,
            }),
        }
    }
    Ok((map, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_a_block_cannot_take_fall_back_as_llama_cpp_does() {
        assert_eq!(block_type(GgmlDType::Q4K, 4096), Some(GgmlDType::Q4K));
        // SmolLM2's hidden width.
        assert_eq!(block_type(GgmlDType::Q4K, 576), Some(GgmlDType::Q5_0));
        assert_eq!(block_type(GgmlDType::Q4_0, 576), Some(GgmlDType::Q4_0));
        assert_eq!(block_type(GgmlDType::Q4K, 100), None);
        assert_eq!(block_type(GgmlDType::Q8_0, 48), None);
    }

    #[test]
    fn bits_per_weight_of_each_type() {
        assert_eq!(bits_per_weight(GgmlDType::Q8_0), 8.5);
        assert_eq!(bits_per_weight(GgmlDType::Q4_0), 4.5);
        assert_eq!(bits_per_weight(GgmlDType::Q4K), 4.5);
        assert_eq!(bits_per_weight(GgmlDType::Q5_0), 5.5);
    }
}
