//! `config.json` of a decoder of any family in `model::family`, with an error that names the
//! field for anything unsupported.

use serde_json::Value;
use std::path::Path;

pub use super::family::{Activation, Arch};

/// Llama 3.1's frequency-dependent RoPE scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Phi-3's LongRoPE: per-frequency factors, short ones up to the pretraining length and long
/// ones past it, and a cos/sin scale.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    pub short_factor: Vec<f64>,
    pub long_factor: Vec<f64>,
    pub original_max_position_embeddings: usize,
    pub attention_factor: f64,
}

/// How a RoPE's frequencies are scaled.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Llama3(Llama3Scaling),
    /// Positions divided by `factor` (Gemma 3's global layers on 4B and up).
    Linear {
        factor: f64,
    },
    LongRope(LongRope),
}

/// One rotary embedding: base and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub theta: f64,
    pub scaling: Option<RopeScaling>,
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

/// One RoPE's `{rope_type, rope_theta, factor, …}` (transformers 5's `rope_parameters`, or
/// the older `rope_scaling`), found at `path`.
fn parse_scaling(s: &Value, path: &str, config: &Value) -> Field<Option<RopeScaling>> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let f = |k: &str| {
        s.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| field_err(format!("{path}.{k}"), "missing; expected a number"))
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: f("factor")?,
        }),
        "llama3" => Some(RopeScaling::Llama3(Llama3Scaling {
            factor: f("factor")?,
            low_freq_factor: f("low_freq_factor")?,
            high_freq_factor: f("high_freq_factor")?,
            original_max_position_embeddings: f("original_max_position_embeddings")?,
        })),
        "longrope" | "su" => {
            let list = |k: &str| -> Field<Vec<f64>> {
                s.get(k)
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                    .ok_or_else(|| {
                        field_err(format!("{path}.{k}"), "missing; expected a list of numbers")
                    })
            };
            let original = s
                .get("original_max_position_embeddings")
                .or_else(|| config.get("original_max_position_embeddings"))
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    field_err(
                        "original_max_position_embeddings",
                        "missing; longrope needs the pretraining length",
                    )
                })? as f64;
            let max = config
                .get("max_position_embeddings")
                .and_then(Value::as_f64)
                .unwrap_or(original);
            // transformers: `factor` defaults to max / original, and the cos/sin scale to
            // √(1 + ln factor / ln original) when it is above 1.
            let factor = s
                .get("factor")
                .and_then(Value::as_f64)
                .unwrap_or(max / original);
            let attention_factor = match s.get("attention_factor").and_then(Value::as_f64) {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / original.ln()).sqrt(),
            };
            Some(RopeScaling::LongRope(LongRope {
                short_factor: list("short_factor")?,
                long_factor: list("long_factor")?,
                original_max_position_embeddings: original as usize,
                attention_factor,
            }))
        }
        other => {
            return Err(field_err(
                format!("{path}.rope_type"),
                format!(
                    "unsupported rope type {other:?}; expected default, linear, llama3 or longrope"
                ),
            ))
        }
    })
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
        // transformers 5 writes `rope_parameters` (theta and scaling together, or one entry
        // per layer type); older files have `rope_theta`, `rope_scaling` and Gemma 3's
        // `rope_local_base_freq`.
        let params = v.get("rope_parameters").filter(|p| p.is_object());
        let per_type = params.filter(|p| p.get("full_attention").is_some());
        let rope_at = |entry: Option<&Value>, path: &str, theta_default: f64| -> Field<Rope> {
            let legacy = v.get("rope_scaling").filter(|s| s.is_object());
            let scaling = match entry {
                Some(p) => parse_scaling(p, path, v)?,
                None => match legacy {
                    Some(s) => parse_scaling(s, "rope_scaling", v)?,
                    None => None,
                },
            };
            let theta = entry
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
                .or_else(|| opt_f64("rope_theta"))
                .unwrap_or(theta_default);
            Ok(Rope { theta, scaling })
        };
        let (rope, rope_local) = match per_type {
            Some(p) => {
                let global = rope_at(
                    p.get("full_attention"),
                    "rope_parameters.full_attention",
                    10_000.0,
                )?;
                let local = match p.get("sliding_attention") {
                    Some(s) => Some(rope_at(
                        Some(s),
                        "rope_parameters.sliding_attention",
                        10_000.0,
                    )?),
                    None => None,
                };
                (global, local)
            }
            None => {
                let global = rope_at(params, "rope_parameters", 10_000.0)?;
                let local = opt_f64("rope_local_base_freq").map(|theta| Rope {
                    theta,
                    scaling: None,
                });
                (global, local)
            }
        };
        let partial = params
            .and_then(|p| p.get("partial_rotary_factor"))
            .and_then(Value::as_f64)
            .or_else(|| opt_f64("partial_rotary_factor"))
            .unwrap_or(1.0);
        let rotary_dim = ((head_dim as f64 * partial) as usize) & !1;
        if rotary_dim == 0 || rotary_dim > head_dim {
            return Err(field_err(
                "partial_rotary_factor",
                format!("{partial} leaves no rotary dimensions of {head_dim}; expected (0, 1]"),
            ));
        }
        if let Some(RopeScaling::LongRope(l)) = &rope.scaling {
            for (k, f) in [
                ("short_factor", &l.short_factor),
                ("long_factor", &l.long_factor),
            ] {
                if f.len() != rotary_dim / 2 {
                    return Err(field_err(
                        format!("rope_scaling.{k}"),
                        format!(
                            "has {} factors; expected rotary_dim / 2 = {}",
                            f.len(),
                            rotary_dim / 2
                        ),
                    ));
                }
            }
        }
        let act_name = v
            .get("hidden_activation")
            .or_else(|| v.get("hidden_act"))
            .and_then(Value::as_str);
        let activation = match act_name {
            None => family.activation,
            Some(a) => Activation::parse(a).ok_or_else(|| {
                field_err(
                    "hidden_act",
                    format!("unsupported activation {a:?}; expected silu or gelu_pytorch_tanh"),
                )
            })?,
        };
        let use_window = v
            .get("use_sliding_window")
            .and_then(Value::as_bool)
            .unwrap_or(!family.window_opt_in);
        let sliding_window = opt_usize("sliding_window").filter(|_| use_window);
        let sliding_layers: Vec<bool> = match (sliding_window, v.get("layer_types")) {
            (None, _) => vec![false; num_hidden_layers],
            (Some(_), Some(types)) => {
                let types = types
                    .as_array()
                    .filter(|t| t.len() == num_hidden_layers)
                    .ok_or_else(|| {
                        field_err(
                            "layer_types",
                            format!("expected a list of {num_hidden_layers} layer types"),
                        )
                    })?;
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| match t.as_str() {
                        Some("sliding_attention") => Ok(true),
                        Some("full_attention") => Ok(false),
                        _ => Err(field_err(
                            format!("layer_types[{i}]"),
                            "expected \"sliding_attention\" or \"full_attention\"",
                        )),
                    })
                    .collect::<Field<_>>()?
            }
            (Some(_), None) => family.sliding.layers(num_hidden_layers, opt_usize),
        };
        if sliding_window == Some(0) {
            return Err(field_err("sliding_window", "must be at least 1"));
        }
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
            rope,
            rope_local,
            rotary_dim,
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

    /// The RoPE of layer `i`: Gemma 3's sliding layers have their own.
    pub fn rope_of(&self, sliding: bool) -> &Rope {
        match (&self.rope_local, sliding) {
            (Some(local), true) => local,
            _ => &self.rope,
        }
    }

    /// Inverse frequencies of `rope` for the rotated dimensions and the cos/sin scale;
    /// `long` picks LongRoPE's long factors (a batch reaching past the pretraining length).
    pub fn rope_frequencies(&self, rope: &Rope, long: bool) -> (Vec<f64>, f64) {
        let d = self.rotary_dim;
        let base = |i: usize| 1.0 / rope.theta.powf(2.0 * i as f64 / d as f64);
        let mut scale = 1.0;
        let freqs = (0..d / 2)
            .map(|i| {
                let f = base(i);
                match &rope.scaling {
                    None => f,
                    Some(RopeScaling::Linear { factor }) => f / factor,
                    Some(RopeScaling::LongRope(l)) => {
                        scale = l.attention_factor;
                        let ext = if long {
                            &l.long_factor
                        } else {
                            &l.short_factor
                        };
                        f / ext.get(i).copied().unwrap_or(1.0)
                    }
                    Some(RopeScaling::Llama3(s)) => {
                        let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
                        let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s.factor
                        } else {
                            let smooth = (s.original_max_position_embeddings / wavelen
                                - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    }
                }
            })
            .collect();
        (freqs, scale)
    }

    /// RoPE inverse frequencies of full-attention layers at short lengths.
    pub fn inv_freq(&self) -> Vec<f64> {
        self.rope_frequencies(&self.rope, false).0
    }

    /// Whether a batch whose largest position is `max_pos` takes LongRoPE's long factors
    /// (transformers switches when the length passes the pretraining one).
    pub fn wants_long_rope(&self, max_pos: usize) -> bool {
        matches!(&self.rope.scaling, Some(RopeScaling::LongRope(l)) if max_pos + 1 > l.original_max_position_embeddings)
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

    /// A `config.json` transformers reads back to this config (for models that came without
    /// one: a GGUF base exported as a Hugging Face folder). `torch_dtype` names the weights.
    pub fn to_hf_json(&self, torch_dtype: &str) -> Value {
        let f = self.family();
        let scaling = |r: &Rope| -> Value {
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
        };
        let mut rope = scaling(&self.rope);
        if self.rotary_dim != self.head_dim {
            rope["partial_rotary_factor"] =
                serde_json::json!(self.rotary_dim as f64 / self.head_dim as f64);
        }
        let rope_parameters = match &self.rope_local {
            Some(local) => {
                serde_json::json!({"full_attention": rope, "sliding_attention": scaling(local)})
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
        let plain = ModelConfig {
            rope: Rope {
                theta: c.rope.theta,
                scaling: None,
            },
            ..c.clone()
        }
        .inv_freq();
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
