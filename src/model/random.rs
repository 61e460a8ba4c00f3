//! Random models of a given shape, built in memory on the target device (benchmarks and GPU
//! checks: no files, no tokenizer).

use super::config::ModelConfig;
use super::llama::{Block, Linear, Model, Weight};
use super::ModelError;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

/// Named shapes: `bench-tiny` (the SFT benchmark's Llama), `qwen2.5-0.5b`, `smollm2-135m`.
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
        _ => return None,
    })
}

/// A model of `config`'s shape with N(0, 0.02) weights and unit norms.
pub fn random_model(config: &Value, dtype: DType, device: &Device) -> Result<Model, ModelError> {
    let cfg = ModelConfig::from_json(config).map_err(|(field, message)| ModelError::Invalid {
        path: "random model config".into(),
        message: format!("{field}: {message}"),
    })?;
    let w = |o: usize, i: usize| -> Result<Tensor, ModelError> {
        Ok(Tensor::randn(0f32, 0.02, (o, i), device)?.to_dtype(dtype)?)
    };
    let ones = |n: usize| -> Result<Tensor, ModelError> { Ok(Tensor::ones(n, dtype, device)?) };
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let lin = |o: usize, i: usize, bias: bool| -> Result<Linear, ModelError> {
        Ok(Linear {
            weight: Weight::Dense(w(o, i)?),
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
            q: lin(q, h, b)?,
            k: lin(kv, h, b)?,
            v: lin(kv, h, b)?,
            o: lin(h, q, false)?,
            post_norm: ones(h)?,
            gate: lin(inter, h, false)?,
            up: lin(inter, h, false)?,
            down: lin(h, inter, false)?,
        });
    }
    let embed = w(cfg.vocab_size, h)?;
    let head = if cfg.tie_word_embeddings {
        embed.clone()
    } else {
        w(cfg.vocab_size, h)?
    };
    let norm = ones(h)?;
    Ok(Model::assemble(
        cfg,
        embed,
        layers,
        norm,
        Weight::Dense(head),
        dtype,
        device,
    ))
}
