//! A `config.json` transformers reads back to a `ModelConfig` (for models that came
//! without one: a GGUF base exported as a Hugging Face folder).

use super::rope::{Rope, RopeScaling};
use super::ModelConfig;
use serde_json::Value;

/// One RoPE as `rope_parameters` spells it.
fn rope_json(r: &Rope) -> Value {
    match &r.scaling {
        None => serde_json::json!({"rope_type": "default", "rope_theta": r.theta}),
        Some(RopeScaling::Linear { factor }) => {
            serde_json::json!({"rope_type": "linear", "factor": factor, "rope_theta": r.theta})
        }
        Some(RopeScaling::Llama3(s)) => serde_json::json!({
            "rope_type": "llama3", "rope_theta": r.theta, "factor": s.factor,
            "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        }),
        Some(RopeScaling::LongRope(l)) => serde_json::json!({
            "rope_type": "longrope", "rope_theta": r.theta,
            "short_factor": l.short_factor, "long_factor": l.long_factor,
            "original_max_position_embeddings": l.original_max_position_embeddings,
            "attention_factor": l.attention_factor,
        }),
    }
}

impl ModelConfig {
    /// A `config.json` transformers reads back to this config (for models that came without
    /// one: a GGUF base exported as a Hugging Face folder). `torch_dtype` names the weights.
    pub fn to_hf_json(&self, torch_dtype: &str) -> Value {
        let f = self.family();
        let mut rope = rope_json(&self.rope);
        if self.rotary_dim != self.head_dim {
            rope["partial_rotary_factor"] =
                serde_json::json!(self.rotary_dim as f64 / self.head_dim as f64);
        }
        let rope_parameters = match &self.rope_local {
            Some(local) => {
                serde_json::json!({"full_attention": rope, "sliding_attention": rope_json(local)})
            }
            None => rope,
        };
        let layer_types: Vec<&str> = self
            .sliding_layers
            .iter()
            .map(|s| {
                if *s {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        let act = self.activation.hf_name();
        let mut v = serde_json::json!({
            "architectures": [f.hf_class],
            "model_type": f.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": act,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.qkv_bias,
            "rope_parameters": rope_parameters,
            "torch_dtype": torch_dtype,
        });
        if let Some(w) = self.sliding_window {
            v["sliding_window"] = serde_json::json!(w);
            v["use_sliding_window"] = serde_json::json!(true);
            v["layer_types"] = serde_json::json!(layer_types);
        }
        if f.query_pre_attn_scalar {
            v["hidden_activation"] = serde_json::json!(act);
            v["query_pre_attn_scalar"] = serde_json::json!(self.query_pre_attn_scalar);
            v["attn_logit_softcapping"] = serde_json::json!(self.attn_logit_softcapping);
            v["final_logit_softcapping"] = serde_json::json!(self.final_logit_softcapping);
        }
        if let Some(RopeScaling::LongRope(l)) = &self.rope.scaling {
            v["original_max_position_embeddings"] =
                serde_json::json!(l.original_max_position_embeddings);
        }
        v
    }
}
