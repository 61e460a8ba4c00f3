//! RoPE in `config.json`: the base, its scaling (llama3, linear, LongRoPE), the rotated part
//! of a head and the sliding layers' own RoPE, and the frequencies they give.

use super::{field_err, Field, ModelConfig};
use serde_json::Value;

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

/// What a config says about RoPE.
pub(super) struct Ropes {
    pub rope: Rope,
    pub local: Option<Rope>,
    pub rotary_dim: usize,
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

/// The RoPEs of a config whose heads are `head_dim` wide. transformers 5 writes
/// `rope_parameters` (theta and scaling together, or one entry per layer type); older files
/// have `rope_theta`, `rope_scaling` and Gemma 3's `rope_local_base_freq`.
pub(super) fn parse(v: &Value, head_dim: usize) -> Field<Ropes> {
    let opt_f64 = |k: &str| v.get(k).and_then(Value::as_f64);
    let params = v.get("rope_parameters").filter(|p| p.is_object());
    let per_type = params.filter(|p| p.get("full_attention").is_some());
    let rope_at = |entry: Option<&Value>, path: &str| -> Field<Rope> {
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
            .unwrap_or(10_000.0);
        Ok(Rope { theta, scaling })
    };
    let (rope, local) = match per_type {
        Some(p) => {
            let global = rope_at(p.get("full_attention"), "rope_parameters.full_attention")?;
            let local = match p.get("sliding_attention") {
                Some(s) => Some(rope_at(Some(s), "rope_parameters.sliding_attention")?),
                None => None,
            };
            (global, local)
        }
        None => {
            let global = rope_at(params, "rope_parameters")?;
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
    Ok(Ropes {
        rope,
        local,
        rotary_dim,
    })
}

impl ModelConfig {
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

    /// [`ModelConfig::inv_freq`] without the scaling (llama.cpp's `rope_freqs` are these
    /// over the scaled ones).
    pub fn unscaled_inv_freq(&self) -> Vec<f64> {
        let plain = Rope {
            theta: self.rope.theta,
            scaling: None,
        };
        self.rope_frequencies(&plain, false).0
    }

    /// Whether a batch whose largest position is `max_pos` takes LongRoPE's long factors
    /// (transformers switches when the length passes the pretraining one).
    pub fn wants_long_rope(&self, max_pos: usize) -> bool {
        matches!(&self.rope.scaling, Some(RopeScaling::LongRope(l)) if max_pos + 1 > l.original_max_position_embeddings)
    }
}
