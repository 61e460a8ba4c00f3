//! Random models of a given shape, built in memory on the target device (benchmarks and GPU
//! checks: no files, no tokenizer).

use super::config::ModelConfig;
use super::llama::{Block, Linear, Model, Weight};
use super::{ModelError, QuantPlan, QuantReport};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

/// Named shapes: `bench-tiny` (the SFT benchmark's Llama), `qwen2.5-0.5b`, `smollm2-135m`,
/// `llama-3.1-8b` (the QLoRA GPU check).
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
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    // Every projection of every layer, (out, in), made and quantized in parallel.
    let shapes = [
        ("self_attn.q_proj", q, h),
        ("self_attn.k_proj", kv, h),
        ("self_attn.v_proj", kv, h),
        ("self_attn.o_proj", h, q),
        ("mlp.gate_proj", inter, h),
        ("mlp.up_proj", inter, h),
        ("mlp.down_proj", h, inter),
    ];
    let jobs: Vec<(usize, usize)> = (0..cfg.num_hidden_layers)
        .flat_map(|l| (0..shapes.len()).map(move |k| (l, k)))
        .collect();
    let made: Vec<(Weight, QuantReport)> = jobs
        .par_iter()
        .map(|&(l, k)| {
            let (name, o, i) = shapes[k];
            matrix(format!("model.layers.{l}.{name}.weight"), o, i)
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
    for _ in 0..cfg.num_hidden_layers {
        let b = cfg.qkv_bias;
        layers.push(Block {
            input_norm: ones(h)?,
            q: next(b, q)?,
            k: next(b, kv)?,
            v: next(b, kv)?,
            o: next(false, h)?,
            post_norm: ones(h)?,
            gate: next(false, inter)?,
            up: next(false, inter)?,
            down: next(false, h)?,
        });
    }
    let embed = w(cfg.vocab_size, h)?;
    let head = if cfg.tie_word_embeddings {
        Weight::Dense(embed.clone())
    } else if plan.head {
        let (weight, r) = matrix("lm_head.weight".into(), cfg.vocab_size, h)?;
        report.absorb(r);
        weight
    } else {
        Weight::Dense(w(cfg.vocab_size, h)?)
    };
    let norm = ones(h)?;
    let model = Model::assemble(cfg, embed, layers, norm, head, dtype, device);
    report.params = model.config.parameter_count() as u64;
    report.base_bytes = model.resident_bytes();
    Ok((model, report))
}
