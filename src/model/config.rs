//! `config.json` of a Llama-family model (Llama 2/3/3.1/3.2, Qwen2/2.5, Mistral, SmolLM),
//! with an error that names the field for anything unsupported.

use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
    Mistral,
}

impl Arch {
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Mistral => "MistralForCausalLM",
        }
    }
}

/// Llama 3.1's frequency-dependent RoPE scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

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
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub qkv_bias: bool,
    pub torch_dtype: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {field}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub field: String,
    pub message: String,
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

    /// Parses a config; an error is (field, message).
    pub fn from_json(v: &Value) -> Result<Self, (String, String)> {
        let arch_name = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                v.get("model_type")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .ok_or((
                "architectures".to_string(),
                "missing; expected e.g. [\"LlamaForCausalLM\"]".to_string(),
            ))?;
        let arch = match arch_name.as_str() {
            "LlamaForCausalLM" | "llama" => Arch::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Arch::Qwen2,
            "MistralForCausalLM" | "mistral" => Arch::Mistral,
            other => {
                return Err((
                    "architectures".into(),
                    format!("unsupported architecture {other:?}; expected LlamaForCausalLM, Qwen2ForCausalLM or MistralForCausalLM"),
                ))
            }
        };
        let usize_of = |k: &str| -> Result<usize, (String, String)> {
            v.get(k).and_then(Value::as_u64).map(|n| n as usize).ok_or((
                k.to_string(),
                "missing or not a positive integer".to_string(),
            ))
        };
        let hidden_size = usize_of("hidden_size")?;
        let num_attention_heads = usize_of("num_attention_heads")?;
        let num_key_value_heads = v
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map_or(num_attention_heads, |n| n as usize);
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || num_attention_heads % num_key_value_heads != 0
        {
            return Err((
                "num_key_value_heads".into(),
                format!("must divide num_attention_heads ({num_attention_heads})"),
            ));
        }
        let head_dim = match v.get("head_dim").and_then(Value::as_u64) {
            Some(h) => h as usize,
            None => hidden_size / num_attention_heads,
        };
        // transformers 5 writes `rope_parameters` (theta and scaling together); older files
        // have `rope_theta` and `rope_scaling`.
        let rope_params = v.get("rope_parameters").filter(|p| p.is_object());
        let scaling_field = if rope_params.is_some() {
            "rope_parameters"
        } else {
            "rope_scaling"
        };
        let rope_scaling = match rope_params.or_else(|| v.get("rope_scaling")) {
            None | Some(Value::Null) => None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                match kind {
                    "default" => None,
                    "llama3" => {
                        let f = |k: &str| {
                            s.get(k).and_then(Value::as_f64).ok_or((
                                format!("{scaling_field}.{k}"),
                                "missing; expected a number".to_string(),
                            ))
                        };
                        Some(Llama3Scaling {
                            factor: f("factor")?,
                            low_freq_factor: f("low_freq_factor")?,
                            high_freq_factor: f("high_freq_factor")?,
                            original_max_position_embeddings: f(
                                "original_max_position_embeddings",
                            )?,
                        })
                    }
                    other => {
                        return Err((
                            format!("{scaling_field}.rope_type"),
                            format!("unsupported rope type {other:?}; expected default or llama3"),
                        ))
                    }
                }
            }
        };
        let act = v
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("silu");
        if act != "silu" {
            return Err((
                "hidden_act".into(),
                format!("unsupported activation {act:?}; expected silu"),
            ));
        }
        Ok(ModelConfig {
            arch,
            vocab_size: usize_of("vocab_size")?,
            hidden_size,
            intermediate_size: usize_of("intermediate_size")?,
            num_hidden_layers: usize_of("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta: rope_params
                .and_then(|p| p.get("rope_theta"))
                .or_else(|| v.get("rope_theta"))
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: v
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .unwrap_or(4096) as usize,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            qkv_bias: arch == Arch::Qwen2
                || v.get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            torch_dtype: v
                .get("torch_dtype")
                .or_else(|| v.get("dtype"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// RoPE inverse frequencies, with Llama 3.1 scaling when configured.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf(2.0 * i as f64 / d as f64);
                let Some(s) = &self.rope_scaling else {
                    return f;
                };
                let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
                let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / s.factor
                } else {
                    let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * f / s.factor + smooth * f
                }
            })
            .collect()
    }

    /// The linear modules LoRA can target, by their HF names.
    pub fn linear_modules() -> &'static [&'static str] {
        &[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    }

    /// Parameters of the base model.
    pub fn parameter_count(&self) -> usize {
        let (h, i, kv) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_key_value_heads * self.head_dim,
        );
        let q = self.num_attention_heads * self.head_dim;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        let layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h + bias;
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
            (c.arch, c.head_dim, c.num_key_value_heads, c.rope_theta),
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
        let plain = ModelConfig {
            rope_scaling: None,
            ..c.clone()
        }
        .inv_freq();
        let scaled = c.inv_freq();
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-15);
    }
}
