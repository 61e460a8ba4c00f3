//! Loading a model folder (config.json plus safetensors) and quantizing its frozen base
//! (QLoRA), from the files or in memory.

use super::block::Block;
use super::linear::{Linear, Weight};
use super::Model;
use crate::model::config::ModelConfig;
use crate::model::weights::Weights;
use crate::model::{ModelError, QuantPlan, QuantReport, Quantization};
use candle_core::{DType, Device, Result, Tensor};
use std::path::Path;

impl Model {
    /// Loads a model folder (config.json plus safetensors) onto `device` in `dtype`.
    pub fn load(
        dir: &Path,
        dtype: DType,
        device: &Device,
    ) -> std::result::Result<Self, ModelError> {
        Ok(Self::load_quantized(dir, dtype, device, Quantization::None.into())?.0)
    }

    /// [`Model::load`] with the seven projections of every layer quantized as `quant` asks
    /// (QLoRA's frozen base): each is read in f32 on the CPU, quantized and placed on
    /// `device`, so the dense model never exists in memory.
    pub fn load_quantized(
        dir: &Path,
        dtype: DType,
        device: &Device,
        plan: QuantPlan,
    ) -> std::result::Result<(Self, QuantReport), ModelError> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let w = Weights::open(dir)?;
        let get = |n: &str| w.get(n, dtype, device);
        let untied_head = !config.tie_word_embeddings && w.has("lm_head.weight");
        let family = config.family();
        let modules = family.modules();
        let mut names: Vec<String> = (0..config.num_hidden_layers)
            .flat_map(|i| {
                modules
                    .iter()
                    .map(move |(g, m)| format!("model.layers.{i}.{g}.{m}.weight"))
            })
            .collect();
        if plan.head && untied_head {
            names.push("lm_head.weight".into());
        }
        let (quantized, report) =
            crate::model::quant::quantize_base(&w, &names, &plan, dtype, device)?;
        let matrix = |name: &str| -> std::result::Result<Weight, ModelError> {
            Ok(match quantized.get(name) {
                Some(q) => Weight::from(q.clone()),
                None => Weight::Dense(get(name)?),
            })
        };
        let linear = |prefix: &str, bias: bool| -> std::result::Result<Linear, ModelError> {
            Ok(Linear {
                weight: matrix(&format!("{prefix}.weight"))?,
                out_perm: None,
                bias: if bias {
                    Some(get(&format!("{prefix}.bias"))?)
                } else {
                    None
                },
                lora: None,
            })
        };
        // Gemma stores norm weights as `w` and scales by `1 + w`: folded in once here.
        let norm = |name: &str| -> std::result::Result<Tensor, ModelError> {
            if family.norm_plus_one {
                Ok(w.get(name, DType::F32, device)?
                    .affine(1.0, 1.0)?
                    .to_dtype(dtype)?)
            } else {
                get(name)
            }
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let b = config.qkv_bias;
            let mut projections = Vec::with_capacity(modules.len());
            for (g, m) in modules.iter() {
                let bias = b && *g == "self_attn" && *m != "o_proj";
                projections.push(linear(&format!("{p}.{g}.{m}"), bias)?);
            }
            let optional =
                |name: &str, on: bool| -> std::result::Result<Option<Tensor>, ModelError> {
                    Ok(if on {
                        Some(norm(&format!("{p}.{name}.weight"))?)
                    } else {
                        None
                    })
                };
            let sandwich = family.sandwich_norms;
            let (post_norm, attn_out_norm) = if sandwich {
                (
                    norm(&format!("{p}.pre_feedforward_layernorm.weight"))?,
                    optional("post_attention_layernorm", true)?,
                )
            } else {
                (norm(&format!("{p}.post_attention_layernorm.weight"))?, None)
            };
            layers.push(Block::assemble(
                projections,
                modules,
                norm(&format!("{p}.input_layernorm.weight"))?,
                post_norm,
                [
                    optional("self_attn.q_norm", family.qk_norm)?,
                    optional("self_attn.k_norm", family.qk_norm)?,
                    attn_out_norm,
                    optional("post_feedforward_layernorm", sandwich)?,
                ],
                config.sliding_layers.get(i).copied().unwrap_or(false),
            ));
        }
        let embed = Weight::Dense(get("model.embed_tokens.weight")?);
        let lm_head = if untied_head {
            matrix("lm_head.weight")?
        } else {
            embed.clone()
        };
        let model = Self::assemble(
            config,
            embed,
            layers,
            norm("model.norm.weight")?,
            lm_head,
            dtype,
            device,
        );
        let mut report = report;
        report.params = model.config.parameter_count() as u64;
        report.base_bytes = model.resident_bytes();
        Ok((model, report))
    }

    /// Quantizes the dense projections of a model already in memory (a random benchmark
    /// model; files load quantized with [`Model::load_quantized`] instead).
    pub fn quantize(&mut self, plan: QuantPlan) -> Result<QuantReport> {
        let quant = plan.quantization;
        let mut report = QuantReport {
            quantization: quant.to_string(),
            ..Default::default()
        };
        let (dtype, device) = (self.dtype, self.device.clone());
        for (i, b) in self.layers.iter_mut().enumerate() {
            for (group, name, l) in b.linears_mut() {
                if let Weight::Dense(t) = &l.weight {
                    let src = t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
                    let full = format!("model.layers.{i}.{group}.{name}.weight");
                    if let Some(q) = crate::model::quant::quantize_matrix(
                        &full,
                        &src,
                        quant,
                        dtype,
                        &device,
                        &mut report,
                    )? {
                        l.weight = Weight::from(q);
                    }
                }
            }
        }
        report.params = self.config.parameter_count() as u64;
        report.base_bytes = self.resident_bytes();
        Ok(report)
    }
}
