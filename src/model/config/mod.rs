//! `config.json` of a decoder of any family in `model::family`, with an error that names the
//! field for anything unsupported. The family's defaults come from its table entry; RoPE
//! (`rope`) and sliding windows (`sliding`) are parsed on their own, and `hf_json` writes a
//! config back.

use serde_json::Value;
use std::path::Path;

mod hf_json;
mod rope;
mod sliding;

pub use super::family::{Activation, Arch};
pub use rope::{Llama3Scaling, LongRope, Rope, RopeScaling};

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    /// The RoPE of full-attention layers (of every layer unless `rope_local` is set).
    pub rope: Rope,
    /// Sliding-window layers' own RoPE (Gemma 3's local base).
    pub rope_local: Option<Rope>,
    /// Leading dimensions of each head that RoPE rotates (Phi-4-mini rotates ¾).
    pub rotary_dim: usize,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2, or `attention_bias`).
    pub qkv_bias: bool,
    pub activation: Activation,
    /// Tokens a sliding-window layer sees: itself and the `window - 1` before it.
    pub sliding_window: Option<usize>,
    /// Which layers use the sliding window (none without `sliding_window`).
    pub sliding_layers: Vec<bool>,
    /// `cap · tanh(scores / cap)` on attention scores (Gemma 2).
    pub attn_logit_softcapping: Option<f64>,
    /// `cap · tanh(logits / cap)` on the output logits (Gemma 2).
    pub final_logit_softcapping: Option<f64>,
    /// Attention scores are scaled by `1/√query_pre_attn_scalar` instead of `1/√head_dim`.
    pub query_pre_attn_scalar: Option<f64>,
    pub torch_dtype: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {field}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub field: String,
    pub message: String,
}

type Field<T> = Result<T, (String, String)>;

fn field_err(field: impl Into<String>, message: impl Into<String>) -> (String, String) {
    (field.into(), message.into())
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            path: path.display().to_string(),
            field: field.into(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err("", e.to_string()))?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| err("", format!("invalid JSON: {e}")))?;
        Self::from_json(&v).map_err(|(field, message)| err(&field, message))
    }

    /// The family a config declares, by `architectures[0]`, else `model_type`.
    fn arch_of(v: &Value) -> Field<Arch> {
        let class = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str);
        let model_type = v.get("model_type").and_then(Value::as_str);
        if let Some(a) = class.and_then(Arch::from_hf) {
            return Ok(a);
        }
        if let Some(a) = model_type.and_then(Arch::from_hf) {
            return Ok(a);
        }
        let (field, name) = match (class, model_type) {
            (Some(c), _) => ("architectures", c),
            (None, Some(t)) => ("model_type", t),
            (None, None) => {
                return Err(field_err(
                    "architectures",
                    format!("missing; expected one of {}", Arch::supported()),
                ))
            }
        };
        let hint = if name.starts_with("Gemma3ForConditionalGeneration") || name == "gemma3" {
            " (a multimodal Gemma 3: point tunelab at a text-only checkpoint such as gemma-3-1b)"
        } else {
            ""
        };
        Err(field_err(
            field,
            format!(
                "unsupported architecture {name:?}{hint}; supported: {}",
                Arch::supported()
            ),
        ))
    }

    /// Parses a config; an error is (field, message).
    pub fn from_json(v: &Value) -> Result<Self, (String, String)> {
        let arch = Self::arch_of(v)?;
        let family = arch.family();
        let usize_of = |k: &str| -> Field<usize> {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| field_err(k, "missing or not a positive integer"))
        };
        let opt_usize = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize);
        let opt_f64 = |k: &str| v.get(k).and_then(Value::as_f64);
        let hidden_size = usize_of("hidden_size")?;
        let num_attention_heads = usize_of("num_attention_heads")?;
        let num_hidden_layers = usize_of("num_hidden_layers")?;
        let num_key_value_heads = opt_usize("num_key_value_heads").unwrap_or(num_attention_heads);
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || num_attention_heads % num_key_value_heads != 0
        {
            return Err(field_err(
                "num_key_value_heads",
                format!("must divide num_attention_heads ({num_attention_heads})"),
            ));
        }
        let head_dim = opt_usize("head_dim").unwrap_or(hidden_size / num_attention_heads);
        let ropes = rope::parse(v, head_dim)?;
        let activation = match v
            .get("hidden_activation")
            .or_else(|| v.get("hidden_act"))
            .and_then(Value::as_str)
        {
            None => family.activation,
            Some(a) => Activation::parse(a).ok_or_else(|| {
                field_err(
                    "hidden_act",
                    format!("unsupported activation {a:?}; expected silu or gelu_pytorch_tanh"),
                )
            })?,
        };
        let (sliding_window, sliding_layers) = sliding::parse(v, family, num_hidden_layers)?;
        Ok(ModelConfig {
            arch,
            vocab_size: usize_of("vocab_size")?,
            hidden_size,
            intermediate_size: usize_of("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: opt_f64("rms_norm_eps").unwrap_or(1e-6),
            rope: ropes.rope,
            rope_local: ropes.local,
            rotary_dim: ropes.rotary_dim,
            max_position_embeddings: opt_usize("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(family.tied_by_default),
            qkv_bias: family.qkv_bias
                || v.get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            activation,
            sliding_window,
            sliding_layers,
            attn_logit_softcapping: opt_f64("attn_logit_softcapping"),
            final_logit_softcapping: opt_f64("final_logit_softcapping"),
            query_pre_attn_scalar: opt_f64("query_pre_attn_scalar")
                .filter(|_| family.query_pre_attn_scalar),
            torch_dtype: v
                .get("torch_dtype")
                .or_else(|| v.get("dtype"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// A config with every family switch at its default (GGUF readers and tests fill in
    /// the rest).
    #[allow(clippy::too_many_arguments)]
    pub fn plain(
        arch: Arch,
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
        head_dim: usize,
    ) -> Self {
        ModelConfig {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: 1e-6,
            rope: Rope {
                theta: 10_000.0,
                scaling: None,
            },
            rope_local: None,
            rotary_dim: head_dim,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
            qkv_bias: arch.family().qkv_bias,
            activation: arch.family().activation,
            sliding_window: None,
            sliding_layers: vec![false; num_hidden_layers],
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            query_pre_attn_scalar: None,
            torch_dtype: None,
        }
    }

    pub fn family(&self) -> &'static super::family::Family {
        self.arch.family()
    }

    /// The linear modules LoRA can target in this model, by their HF names.
    pub fn linear_modules(&self) -> Vec<&'static str> {
        self.family().module_names()
    }

    /// Every module name any family can target (config validation before a model is
    /// chosen).
    pub fn all_linear_modules() -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for f in super::family::FAMILIES {
            for m in f.module_names() {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// (in, out) of each projection of a layer, by HF module name in the family's order (seven,
    /// or Phi-3's four fused ones).
    pub fn projection_shapes(&self) -> Vec<(&'static str, usize, usize)> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        self.family()
            .module_names()
            .into_iter()
            .map(|m| match m {
                "q_proj" => (m, h, q),
                "k_proj" | "v_proj" => (m, h, kv),
                "qkv_proj" => (m, h, q + 2 * kv),
                "o_proj" => (m, q, h),
                "gate_proj" | "up_proj" => (m, h, i),
                "gate_up_proj" => (m, h, 2 * i),
                _ => (m, i, h),
            })
            .collect()
    }

    /// The attention score scale: `1/√query_pre_attn_scalar` (Gemma) or `1/√head_dim`.
    pub fn attention_scale(&self) -> f64 {
        1.0 / self
            .query_pre_attn_scalar
            .unwrap_or(self.head_dim as f64)
            .sqrt()
    }

    /// Parameters of the base model.
    pub fn parameter_count(&self) -> usize {
        let (h, i, kv) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_key_value_heads * self.head_dim,
        );
        let f = self.family();
        let q = self.num_attention_heads * self.head_dim;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        let norms = if f.sandwich_norms { 4 * h } else { 2 * h };
        let qk_norm = if f.qk_norm { 2 * self.head_dim } else { 0 };
        let layer = h * q + 2 * h * kv + q * h + 3 * h * i + norms + bias + qk_norm;
        let embed = self.vocab_size * h;
        embed
            + if self.tie_word_embeddings { 0 } else { embed }
            + self.num_hidden_layers * layer
            + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5})
    }

    #[test]
    fn parses_gqa_and_defaults() {
        let c = ModelConfig::from_json(&base()).unwrap();
        assert_eq!(
            (c.arch, c.head_dim, c.num_key_value_heads, c.rope.theta),
            (Arch::Llama, 16, 2, 10_000.0)
        );
        assert!(!c.qkv_bias);
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v["architectures"] = json!(["GPT2LMHeadModel"]);
        assert_eq!(ModelConfig::from_json(&v).unwrap_err().0, "architectures");
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        let (field, msg) = ModelConfig::from_json(&v).unwrap_err();
        assert_eq!(field, "rope_scaling.rope_type");
        assert!(msg.contains("\"yarn\""));
        let mut v = base();
        v["num_key_value_heads"] = json!(3);
        assert_eq!(
            ModelConfig::from_json(&v).unwrap_err().0,
            "num_key_value_heads"
        );
    }

    #[test]
    fn llama3_scaling_keeps_high_and_scales_low_frequencies() {
        let mut v = base();
        v["rope_theta"] = json!(500000.0);
        v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c = ModelConfig::from_json(&v).unwrap();
        let plain = c.unscaled_inv_freq();
        let scaled = c.inv_freq();
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-15);
    }

    /// Configs as the hub ships them (before transformers 5's `rope_parameters` and
    /// `layer_types`) resolve to the same switches (Gemma 3's: `model::random`'s tests).
    #[test]
    fn legacy_family_configs_resolve_their_switches() {
        let mut v = base();
        v["architectures"] = json!(["Phi3ForCausalLM"]);
        v["original_max_position_embeddings"] = json!(4096);
        v["max_position_embeddings"] = json!(131072);
        v["partial_rotary_factor"] = json!(0.75);
        v["rope_scaling"] =
            json!({"type": "longrope", "short_factor": vec![1.0; 6], "long_factor": vec![2.0; 6]});
        let phi = ModelConfig::from_json(&v).unwrap();
        assert_eq!((phi.rotary_dim, phi.linear_modules()[0]), (12, "qkv_proj"));
        let Some(RopeScaling::LongRope(l)) = &phi.rope.scaling else {
            panic!("{:?}", phi.rope)
        };
        let want = (1.0 + (32.0f64).ln() / (4096.0f64).ln()).sqrt();
        assert!((l.attention_factor - want).abs() < 1e-12);
        assert!(!phi.wants_long_rope(4095) && phi.wants_long_rope(4096));
        v["rope_scaling"]["long_factor"] = json!([2.0]);
        assert_eq!(
            ModelConfig::from_json(&v).unwrap_err().0,
            "rope_scaling.long_factor"
        );

        // Qwen2.5 ships a sliding_window it does not use.
        let mut v = base();
        v["architectures"] = json!(["Qwen2ForCausalLM"]);
        v["sliding_window"] = json!(32768);
        v["use_sliding_window"] = json!(false);
        assert_eq!(ModelConfig::from_json(&v).unwrap().sliding_window, None);
    }

    /// Every fixture-like config survives `to_hf_json` and back.
    #[test]
    fn hf_json_round_trips() {
        let mut v = base();
        v["architectures"] = json!(["Gemma3ForCausalLM"]);
        v["sliding_window"] = json!(4);
        v["layer_types"] = json!(["sliding_attention", "full_attention"]);
        v["rope_parameters"] = json!({"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                                       "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}});
        v["query_pre_attn_scalar"] = json!(10);
        v["final_logit_softcapping"] = json!(2.0);
        let c = ModelConfig::from_json(&v).unwrap();
        let back = ModelConfig::from_json(&c.to_hf_json("float32")).unwrap();
        assert_eq!(
            back,
            ModelConfig {
                torch_dtype: Some("float32".into()),
                ..c
            }
        );
    }

    #[test]
    fn unknown_architectures_list_the_supported_ones() {
        let mut v = base();
        v["architectures"] = json!(["FalconForCausalLM"]);
        let (field, msg) = ModelConfig::from_json(&v).unwrap_err();
        assert_eq!(field, "architectures");
        for family in [
            "LlamaForCausalLM",
            "Qwen3ForCausalLM",
            "Gemma2ForCausalLM",
            "Phi3ForCausalLM",
        ] {
            assert!(msg.contains(family), "{msg}");
        }
        v["architectures"] = json!(["Gemma3ForConditionalGeneration"]);
        assert!(ModelConfig::from_json(&v)
            .unwrap_err()
            .1
            .contains("text-only"));
    }
}
