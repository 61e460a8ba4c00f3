//! Random models of a given shape, built in memory on the target device (benchmarks and GPU
//! checks: no files, no tokenizer).

use super::config::ModelConfig;
use super::decoder::{Block, Linear, Model, Weight};
use super::{ModelError, QuantPlan, QuantReport};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

/// Named shapes: `bench-tiny` (the SFT benchmark's Llama), `qwen2.5-0.5b`, `smollm2-135m`,
/// `llama-3.1-8b` (the QLoRA GPU check), `qwen3-0.6b`, `gemma-3-1b`, `phi-4-mini` (the
/// published configs' shapes and switches).
pub fn shape(name: &str) -> Option<Value> {
    Some(match name {
        "bench-tiny" => json!({
            "model_type": "llama", "vocab_size": 4096, "hidden_size": 256,
            "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "max_position_embeddings": 2048, "tie_word_embeddings": false,
        }),
        "qwen2.5-0.5b" => json!({
            "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "max_position_embeddings": 32768, "tie_word_embeddings": true,
        }),
        "smollm2-135m" => json!({
            "model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
            "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
            "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
            "max_position_embeddings": 8192, "tie_word_embeddings": true,
        }),
        "llama-3.1-8b" => json!({
            "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "max_position_embeddings": 131072, "tie_word_embeddings": false,
        }),
        "qwen3-0.6b" => json!({
            "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
            "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "max_position_embeddings": 40960, "tie_word_embeddings": true,
        }),
        "gemma-3-1b" => json!({
            "model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 1152,
            "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4,
            "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 512,
            "sliding_window_pattern": 6, "query_pre_attn_scalar": 256,
            "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768,
            "tie_word_embeddings": true,
        }),
        "phi-4-mini" => json!({
            "model_type": "phi3", "vocab_size": 200064, "hidden_size": 3072,
            "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 24,
            "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "partial_rotary_factor": 0.75, "max_position_embeddings": 131072,
            "tie_word_embeddings": true,
        }),
        _ => return None,
    })
}

/// A model of `config`'s shape with N(0, 0.02) weights and unit norms.
pub fn random_model(config: &Value, dtype: DType, device: &Device) -> Result<Model, ModelError> {
    Ok(random_model_quantized(config, dtype, device, QuantPlan::default())?.0)
}

/// [`random_model`] with its projections (and an untied head, when `plan.head`) made in f32
/// on the CPU and quantized straight onto `device`, every matrix in parallel: an 8B shape
/// for the QLoRA GPU check never exists dense on the device.
pub fn random_model_quantized(
    config: &Value,
    dtype: DType,
    device: &Device,
    plan: QuantPlan,
) -> Result<(Model, QuantReport), ModelError> {
    use rayon::prelude::*;
    let cfg = ModelConfig::from_json(config).map_err(|(field, message)| ModelError::Invalid {
        path: "random model config".into(),
        message: format!("{field}: {message}"),
    })?;
    let quant = plan.quantization;
    // One matrix as the plan stores it, with its share of the report.
    let matrix = |name: String, o: usize, i: usize| -> Result<(Weight, QuantReport), ModelError> {
        let mut r = QuantReport::default();
        if quant == super::Quantization::None {
            let t = Tensor::randn(0f32, 0.02, (o, i), device)?.to_dtype(dtype)?;
            return Ok((Weight::Dense(t), r));
        }
        let src = Tensor::randn(0f32, 0.02, (o, i), &Device::Cpu)?;
        Ok(
            match super::quant::quantize_matrix(&name, &src, quant, dtype, device, &mut r)? {
                Some(q) => (Weight::from(q), r),
                None => (Weight::Dense(src.to_dtype(dtype)?.to_device(device)?), r),
            },
        )
    };
    let w = |o: usize, i: usize| -> Result<Tensor, ModelError> {
        Ok(Tensor::randn(0f32, 0.02, (o, i), device)?.to_dtype(dtype)?)
    };
    let ones = |n: usize| -> Result<Tensor, ModelError> { Ok(Tensor::ones(n, dtype, device)?) };
    let h = cfg.hidden_size;
    let family = cfg.family();
    // Every projection of every layer, (out, in), made and quantized in parallel.
    let shapes: Vec<(String, usize, usize)> = family
        .modules()
        .iter()
        .zip(cfg.projection_shapes())
        .map(|((g, m), (_, i, o))| (format!("{g}.{m}"), o, i))
        .collect();
    let jobs: Vec<(usize, usize)> = (0..cfg.num_hidden_layers)
        .flat_map(|l| (0..shapes.len()).map(move |k| (l, k)))
        .collect();
    let made: Vec<(Weight, QuantReport)> = jobs
        .par_iter()
        .map(|&(l, k)| {
            let (name, o, i) = &shapes[k];
            matrix(format!("model.layers.{l}.{name}.weight"), *o, *i)
        })
        .collect::<Result<_, _>>()?;
    let mut report = QuantReport {
        quantization: quant.to_string(),
        ..Default::default()
    };
    let mut made = made.into_iter();
    let mut next = |bias: bool, o: usize| -> Result<Linear, ModelError> {
        let (weight, r) = made.next().ok_or_else(|| ModelError::Invalid {
            path: "random model".into(),
            message: "a projection is missing".into(),
        })?;
        report.absorb(r);
        Ok(Linear {
            weight,
            bias: if bias {
                Some(Tensor::zeros(o, dtype, device)?)
            } else {
                None
            },
            lora: None,
            out_perm: None,
        })
    };
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    let hd = cfg.head_dim;
    for i in 0..cfg.num_hidden_layers {
        let mut projections = Vec::with_capacity(shapes.len());
        for (name, o, _) in &shapes {
            let bias = cfg.qkv_bias && name.starts_with("self_attn") && name != "self_attn.o_proj";
            projections.push(next(bias, *o)?);
        }
        let opt = |on: bool, n: usize| -> Result<Option<Tensor>, ModelError> {
            Ok(if on { Some(ones(n)?) } else { None })
        };
        layers.push(Block::assemble(
            projections,
            family.modules(),
            ones(h)?,
            ones(h)?,
            [
                opt(family.qk_norm, hd)?,
                opt(family.qk_norm, hd)?,
                opt(family.sandwich_norms, h)?,
                opt(family.sandwich_norms, h)?,
            ],
            cfg.sliding_layers.get(i).copied().unwrap_or(false),
        ));
    }
    // A quantized head is made (in f32) and quantized before the embedding exists, so the
    // f32 copy and the embedding, the same size, are never resident together: the load's
    // peak stays at the base's size (an 8B head is 2 GB in f32).
    let quantized_head = if !cfg.tie_word_embeddings && plan.head {
        let (weight, r) = matrix("lm_head.weight".into(), cfg.vocab_size, h)?;
        report.absorb(r);
        Some(weight)
    } else {
        None
    };
    let embed = Weight::Dense(w(cfg.vocab_size, h)?);
    let head = match quantized_head {
        Some(weight) => weight,
        None if cfg.tie_word_embeddings => embed.clone(),
        None => Weight::Dense(w(cfg.vocab_size, h)?),
    };
    let norm = ones(h)?;
    let model = Model::assemble(cfg, embed, layers, norm, head, dtype, device);
    report.params = model.config.parameter_count() as u64;
    report.base_bytes = model.resident_bytes();
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{Activation, Arch};

    /// The published parameter totals of Qwen3-0.6B and Gemma-3-1B (q/k norms, sandwich
    /// norms, tied embeddings) from their configs' shapes.
    #[test]
    fn new_families_count_their_published_parameters() {
        for (name, want) in [("qwen3-0.6b", 596_049_920), ("gemma-3-1b", 999_885_952)] {
            let c = ModelConfig::from_json(&shape(name).unwrap()).unwrap();
            assert_eq!(c.parameter_count(), want, "{name}");
        }
    }

    /// Gemma-3-1B's hub config (no `layer_types`, `rope_local_base_freq`) resolves to its
    /// switches.
    #[test]
    fn gemma3_hub_config_resolves_its_switches() {
        let gemma3 = ModelConfig::from_json(&shape("gemma-3-1b").unwrap()).unwrap();
        assert_eq!(gemma3.arch, Arch::Gemma3);
        assert_eq!(gemma3.activation, Activation::GeluTanh);
        assert_eq!(gemma3.sliding_window, Some(512));
        let pattern: Vec<bool> = gemma3.sliding_layers[..6].to_vec();
        assert_eq!(pattern, [true, true, true, true, true, false]);
        assert_eq!(gemma3.rope_of(true).theta, 10_000.0);
        assert_eq!(gemma3.rope_of(false).theta, 1_000_000.0);
        assert!((gemma3.attention_scale() - 1.0 / 16.0).abs() < 1e-12);
        assert!(gemma3.tie_word_embeddings);
    }
}
