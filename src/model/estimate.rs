//! What a run will cost before it starts: trainable LoRA parameters and a memory estimate
//! (frozen weights, LoRA state, activations, logits) to hold against the GPU or RAM.

use super::config::ModelConfig;
use crate::lora::LoraConfig;
use serde::Serialize;

/// (in, out) of each of the seven projections, by HF name.
pub fn projection_shapes(c: &ModelConfig) -> [(&'static str, usize, usize); 7] {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    [
        ("q_proj", h, q),
        ("k_proj", h, kv),
        ("v_proj", h, kv),
        ("o_proj", q, h),
        ("gate_proj", h, i),
        ("up_proj", h, i),
        ("down_proj", i, h),
    ]
}

/// LoRA parameters `lora` adds to a model of shape `c`: r·(in + out) per targeted projection.
pub fn trainable_parameters(c: &ModelConfig, lora: &LoraConfig) -> usize {
    let per_layer: usize = projection_shapes(c)
        .iter()
        .filter(|(n, _, _)| lora.targets(n))
        .map(|(_, i, o)| lora.r * (i + o))
        .sum();
    per_layer * c.num_hidden_layers
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEstimate {
    pub weights: u64,
    /// LoRA parameters, gradients and two AdamW moments, all f32.
    pub lora_state: u64,
    pub activations: u64,
    pub logits: u64,
    pub total: u64,
}

/// Bytes a LoRA SFT run needs. `weight_bits` is 16 for bf16, 32 for f32, ~4.5 for a 4-bit
/// base. Activations: about 34·h + 5·a·t bytes per token per layer in 16-bit (the usual
/// transformer estimate), one layer's worth when checkpointing plus every layer's input.
#[allow(clippy::too_many_arguments)]
pub fn memory(
    c: &ModelConfig,
    lora: &LoraConfig,
    weight_bits: f64,
    compute_bytes: u64,
    batch: usize,
    seq: usize,
    checkpointing: bool,
) -> MemoryEstimate {
    let weights = (c.parameter_count() as f64 * weight_bits / 8.0) as u64;
    let lora_state = trainable_parameters(c, lora) as u64 * 16;
    let tokens = (batch * seq) as u64;
    let h = c.hidden_size as u64;
    let heads = c.num_attention_heads as u64;
    let per_layer = tokens * (34 * h + 5 * heads * seq as u64) * compute_bytes / 2;
    let layers = c.num_hidden_layers as u64;
    let activations = if checkpointing {
        per_layer + layers * tokens * h * compute_bytes
    } else {
        layers * per_layer
    };
    // Logits in the compute dtype, then f32 log-probabilities and their gradient.
    let logits = tokens * c.vocab_size as u64 * (compute_bytes + 8);
    let total = weights + lora_state + activations + logits;
    MemoryEstimate {
        weights,
        lora_state,
        activations,
        logits,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_match_a_built_model() {
        let v = json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 128, "hidden_size": 64,
                       "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "rms_norm_eps": 1e-5});
        let c = ModelConfig::from_json(&v).unwrap();
        let lora = LoraConfig {
            r: 4,
            target_modules: vec!["q_proj".into(), "down_proj".into()],
            ..LoraConfig::default()
        };
        // q: 4·(64+64), down: 4·(96+64), two layers
        assert_eq!(trainable_parameters(&c, &lora), 2 * (4 * 128 + 4 * 160));
        let mut m = crate::model::random::random_model(
            &v,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        m.add_lora(&lora, 0).unwrap();
        assert_eq!(m.trainable_parameters(), trainable_parameters(&c, &lora));
        let e = memory(&c, &lora, 32.0, 4, 2, 16, false);
        assert_eq!(e.weights, c.parameter_count() as u64 * 4);
        assert_eq!(e.total, e.weights + e.lora_state + e.activations + e.logits);
        assert!(memory(&c, &lora, 32.0, 4, 2, 16, true).activations < e.activations);
    }
}
