//! GGUF files (llama.cpp): the base stays quantized and frozen, tensor names map to HF
//! modules, q/k outputs are put back into the HF rotary layout (llama.cpp permutes those rows
//! for Llama), and the tokenizer and chat template are rebuilt from the metadata.

use super::config::{Arch, LongRope, ModelConfig, Rope, RopeScaling};
use super::decoder::{Block, Linear, Model, Weight};
use super::family::every_nth_global;
use super::ModelError;
use crate::template::TextTokenizer;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

pub const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
pub const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn invalid(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A GGUF file, memory-mapped once: its header and every tensor are read from the map, so
/// a load is one `open` and page faults, not a `read` per metadata field (a 49k-entry
/// vocabulary took 250,000 of them) and an `open` per tensor.
fn map(path: &Path) -> Result<memmap2::Mmap, ModelError> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: the map is read-only and lives only for the load; a file changed under a
    // running load is read as it is, as `read` would.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))
}

/// The header (metadata and tensor infos) of a mapped GGUF file.
fn header_of(path: &Path, bytes: &[u8]) -> Result<Content, ModelError> {
    Content::read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| invalid(path, format!("not a readable GGUF file: {e}")))
}

/// A GGUF file's header: metadata and tensor infos.
fn header(path: &Path) -> Result<Content, ModelError> {
    header_of(path, &map(path)?)
}

struct Meta<'a> {
    path: &'a Path,
    md: &'a std::collections::HashMap<String, Value>,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value, ModelError> {
        self.md
            .get(key)
            .ok_or_else(|| invalid(self.path, format!("metadata {key}: missing")))
    }
    fn u(&self, key: &str) -> Result<usize, ModelError> {
        let v = self.get(key)?;
        v.to_u32()
            .map(|x| x as usize)
            .or_else(|_| v.to_u64().map(|x| x as usize))
            .map_err(|_| invalid(self.path, format!("metadata {key}: expected an integer")))
    }
    fn f(&self, key: &str) -> Option<f64> {
        self.md
            .get(key)
            .and_then(|v| v.to_f32().ok())
            .map(f64::from)
    }
    fn s(&self, key: &str) -> Option<String> {
        self.md.get(key).and_then(|v| v.to_string().ok()).cloned()
    }
}

/// llama.cpp's HF→GGUF row order for q/k: for head h, pair i and half c, GGUF row
/// h·d + 2i + c holds HF row h·d + c·d/2 + i. Returns, for every HF row, its GGUF row.
pub fn unpermute_rows(heads: usize, head_dim: usize) -> Vec<u32> {
    let half = head_dim / 2;
    (0..heads * head_dim)
        .map(|r| {
            let (h, w) = (r / head_dim, r % head_dim);
            let (c, i) = (w / half, w % half);
            (h * head_dim + 2 * i + c) as u32
        })
        .collect()
}

/// llama.cpp's name for a Hugging Face tensor of `family` (`model.layers.3.self_attn.q_proj.weight`
/// → `blk.3.attn_q.weight`): the table `load_model` reads by, for writers.
pub fn hf_to_gguf(family: &super::family::Family, hf: &str) -> Option<String> {
    let (stem, suffix) = hf.rsplit_once('.')?;
    let whole = |n: &str| Some(format!("{n}.{suffix}"));
    match stem {
        "model.embed_tokens" => return whole("token_embd"),
        "model.norm" => return whole("output_norm"),
        "lm_head" => return whole("output"),
        _ => {}
    }
    let rest = stem.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let name = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" if family.sandwich_norms => "post_attention_norm",
        "post_attention_layernorm" | "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.qkv_proj" => "attn_qkv",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" | "mlp.gate_up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{name}.{suffix}"))
}

/// A GGUF file's architecture name and parameter count, from its header alone.
pub fn summary(path: &Path) -> Result<(String, u64), ModelError> {
    let content = header(path)?;
    let m = Meta {
        path,
        md: &content.metadata,
    };
    let params = content
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() as u64)
        .sum();
    Ok((m.s("general.architecture").unwrap_or_default(), params))
}

/// Loads a GGUF model and its tokenizer.
pub fn load(path: &Path, device: &Device) -> Result<(Model, TextTokenizer), ModelError> {
    let (model, content) = load_model(path, device)?;
    let m = Meta {
        path,
        md: &content.metadata,
    };
    Ok((model, tokenizer(path, &m)?))
}

/// A GGUF file's model config from its metadata (and LongRoPE's two factor tensors), without
/// reading the weights: `model info` and the Adapter tab describe a GGUF this way.
pub fn config_of(path: &Path, content: &Content) -> Result<ModelConfig, ModelError> {
    let m = Meta {
        path,
        md: &content.metadata,
    };
    let arch_name = m.s("general.architecture").unwrap_or_default();
    let arch = Arch::from_gguf(&arch_name).ok_or_else(|| {
        invalid(
            path,
            format!(
                "metadata general.architecture: unsupported {arch_name:?}; expected one of {}",
                Arch::supported_gguf()
            ),
        )
    })?;
    let family = arch.family();
    let key = |k: &str| family.gguf_key(k);
    let heads = m.u(&key("attention.head_count"))?;
    let hidden = m.u(&key("embedding_length"))?;
    // Small tensors the config needs (LongRoPE's factors), read on the CPU.
    let dense = |name: &str| -> Result<Tensor, ModelError> {
        let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        let q =
            content
                .tensor(&mut f, name, &Device::Cpu)
                .map_err(|e| ModelError::MissingTensor {
                    name: name.into(),
                    message: e.to_string(),
                })?;
        Ok(q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?)
    };
    let has = |name: &str| content.tensor_infos.contains_key(name);
    let vocab = content
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|t| t.shape.dims().first().copied())
        .ok_or_else(|| ModelError::MissingTensor {
            name: "token_embd.weight".into(),
            message: "not in the file".into(),
        })?;
    let layers_n = m.u(&key("block_count"))?;
    // Phi-3's `rope.dimension_count` is the rotated part of a head; the head itself is
    // `attention.key_length` when present.
    let head_dim = m.u(&key("attention.key_length")).unwrap_or(hidden / heads);
    let mut config = ModelConfig::plain(
        arch,
        vocab,
        hidden,
        m.u(&key("feed_forward_length"))?,
        layers_n,
        heads,
        m.u(&key("attention.head_count_kv")).unwrap_or(heads),
        head_dim,
    );
    config.rms_norm_eps = m
        .f(&key("attention.layer_norm_rms_epsilon"))
        .unwrap_or(1e-5);
    config.rope.theta = m.f(&key("rope.freq_base")).unwrap_or(10_000.0);
    config.rotary_dim = m.u(&key("rope.dimension_count")).unwrap_or(head_dim);
    config.max_position_embeddings = m.u(&key("context_length")).unwrap_or(4096);
    config.tie_word_embeddings = !has("output.weight");
    config.qkv_bias = has("blk.0.attn_q.bias");
    config.torch_dtype = Some("gguf".into());
    config.attn_logit_softcapping = m.f(&key("attn_logit_softcapping"));
    config.final_logit_softcapping = m.f(&key("final_logit_softcapping"));
    config.sliding_window = m.u(&key("attention.sliding_window")).ok();
    // Which layers slide: the file's `attention.sliding_window_pattern` (one bool per layer,
    // or a period n: every n-th layer is global), else llama.cpp's fixed pattern of the
    // family.
    let pattern_key = key("attention.sliding_window_pattern");
    let pattern: Vec<bool> = match m.md.get(&pattern_key) {
        Some(v) => match v.to_vec() {
            Ok(items) => items
                .iter()
                .map(|x| x.to_bool())
                .collect::<Result<Vec<bool>, _>>()
                .ok()
                .filter(|p| p.len() == layers_n)
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!("metadata {pattern_key}: expected {layers_n} booleans"),
                    )
                })?,
            Err(_) => every_nth_global(m.u(&pattern_key)?, layers_n),
        },
        None => family.sliding.gguf_default(layers_n),
    };
    config.sliding_layers = pattern
        .into_iter()
        .map(|p| p && config.sliding_window.is_some())
        .collect();
    if m.s(&key("rope.scaling.type")).as_deref() == Some("linear") {
        if let Some(factor) = m.f(&key("rope.scaling.factor")) {
            config.rope.scaling = Some(RopeScaling::Linear { factor });
        }
    }
    if family.local_rope {
        config.rope_local = Some(Rope {
            theta: m.f(&key("rope.freq_base_swa")).unwrap_or(10_000.0),
            scaling: None,
        });
    }
    if family.query_pre_attn_scalar {
        // `attention.scale` when the file has it, else llama.cpp's 1/√head_dim.
        config.query_pre_attn_scalar = Some(match m.f(&key("attention.scale")) {
            Some(scale) if scale > 0.0 => 1.0 / (scale * scale),
            _ => head_dim as f64,
        });
    }
    if has("rope_factors_long.weight") && has("rope_factors_short.weight") {
        let factors = |n: &str| -> Result<Vec<f64>, ModelError> {
            Ok(dense(n)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect())
        };
        let original = m
            .u(&key("rope.scaling.original_context_length"))
            .unwrap_or(config.max_position_embeddings);
        let factor = config.max_position_embeddings as f64 / original as f64;
        config.rope.scaling = Some(RopeScaling::LongRope(LongRope {
            short_factor: factors("rope_factors_short.weight")?,
            long_factor: factors("rope_factors_long.weight")?,
            original_max_position_embeddings: original,
            attention_factor: m
                .f(&key("rope.scaling.attn_factor"))
                .unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / (original as f64).ln()).sqrt()
                }),
        }));
    }
    Ok(config)
}

/// Reads only a GGUF file's header and returns its model config.
pub fn read_config(path: &Path) -> Result<ModelConfig, ModelError> {
    let content = header(path)?;
    config_of(path, &content)
}

/// The weights of a GGUF file of any family in `model::family` (Mistral's files say
/// `llama`), kept quantized, with llama.cpp's names and metadata mapped to the HF layout.
pub fn load_model(path: &Path, device: &Device) -> Result<(Model, Content), ModelError> {
    let bytes = map(path)?;
    let content = header_of(path, &bytes)?;
    let config = config_of(path, &content)?;
    let family = config.family();
    let heads = config.num_attention_heads;
    let tensor = |name: &str| -> Result<Arc<candle_core::quantized::QTensor>, ModelError> {
        content
            .tensor(&mut std::io::Cursor::new(&bytes[..]), name, device)
            .map(Arc::new)
            .map_err(|e| ModelError::MissingTensor {
                name: name.into(),
                message: e.to_string(),
            })
    };
    let dense = |name: &str| -> Result<Tensor, ModelError> {
        Ok(tensor(name)?.dequantize(device)?.to_dtype(DType::F32)?)
    };
    let has = |name: &str| content.tensor_infos.contains_key(name);
    let embed_q = tensor("token_embd.weight")?;
    let (hd, kvh) = (config.head_dim, config.num_key_value_heads);
    // llama.cpp permutes q/k rows for the `llama` architecture only.
    let perm = |n: usize| -> Result<Option<Tensor>, ModelError> {
        Ok(if family.gguf_permuted_qk {
            Some(Tensor::new(unpermute_rows(n, hd), device)?)
        } else {
            None
        })
    };
    let (q_perm, k_perm) = (perm(heads)?, perm(kvh)?);
    let linear = |name: &str, p: Option<Tensor>| -> Result<Linear, ModelError> {
        let bias = if has(&format!("{name}.bias")) {
            let b = dense(&format!("{name}.bias"))?;
            // Biases of permuted rows follow their rows.
            Some(match &p {
                Some(idx) => b.index_select(idx, 0)?,
                None => b,
            })
        } else {
            None
        };
        Ok(Linear {
            weight: Weight::Quantized(tensor(&format!("{name}.weight"))?),
            bias,
            lora: None,
            out_perm: p,
        })
    };
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let b = format!("blk.{i}");
        // Phi-3's fused gate and up rows are llama.cpp's `ffn_up`.
        let projections = if family.fused {
            vec![
                linear(&format!("{b}.attn_qkv"), None)?,
                linear(&format!("{b}.attn_output"), None)?,
                linear(&format!("{b}.ffn_up"), None)?,
                linear(&format!("{b}.ffn_down"), None)?,
            ]
        } else {
            vec![
                linear(&format!("{b}.attn_q"), q_perm.clone())?,
                linear(&format!("{b}.attn_k"), k_perm.clone())?,
                linear(&format!("{b}.attn_v"), None)?,
                linear(&format!("{b}.attn_output"), None)?,
                linear(&format!("{b}.ffn_gate"), None)?,
                linear(&format!("{b}.ffn_up"), None)?,
                linear(&format!("{b}.ffn_down"), None)?,
            ]
        };
        // llama.cpp stores Gemma's norms already as `1 + w`.
        let optional = |name: &str, on: bool| -> Result<Option<Tensor>, ModelError> {
            Ok(if on {
                Some(dense(&format!("{b}.{name}.weight"))?)
            } else {
                None
            })
        };
        let sandwich = family.sandwich_norms;
        layers.push(Block::assemble(
            projections,
            family.modules(),
            dense(&format!("{b}.attn_norm.weight"))?,
            dense(&format!("{b}.ffn_norm.weight"))?,
            [
                optional("attn_q_norm", family.qk_norm)?,
                optional("attn_k_norm", family.qk_norm)?,
                optional("post_attention_norm", sandwich)?,
                optional("post_ffw_norm", sandwich)?,
            ],
            config.sliding_layers[i],
        ));
    }
    // The embedding stays in its blocks where a kernel reads them on the CPU (lookups
    // dequantize a row each; no dense copy: 113 MB for SmolLM2, 622 MB for Qwen3-0.6B in
    // f32); tied, it is the head itself.
    let embed = if device.is_cpu() && crate::ops::qmatmul::supports(&embed_q) {
        Weight::Quantized(embed_q)
    } else {
        Weight::Dense(crate::ops::qmatmul::dense(&embed_q, DType::F32)?)
    };
    let lm_head = if has("output.weight") {
        Weight::Quantized(tensor("output.weight")?)
    } else {
        embed.clone()
    };
    let model = Model::assemble(
        config,
        embed,
        layers,
        dense("output_norm.weight")?,
        lm_head,
        DType::F32,
        device,
    );
    Ok((model, content))
}

/// Only the tokenizer and chat template of a GGUF file (no weights are read).
pub fn load_tokenizer(path: &Path) -> Result<TextTokenizer, ModelError> {
    let content = header(path)?;
    tokenizer(
        path,
        &Meta {
            path,
            md: &content.metadata,
        },
    )
}

/// A `tokenizers` BPE tokenizer from GGUF's `tokenizer.ggml.*` metadata.
fn tokenizer(path: &Path, m: &Meta) -> Result<TextTokenizer, ModelError> {
    let kind = m.s("tokenizer.ggml.model").unwrap_or_default();
    if kind != "gpt2" {
        return Err(invalid(path, format!("metadata tokenizer.ggml.model: {kind:?} is not supported yet; expected gpt2 (byte-level BPE)")));
    }
    let strings = |key: &str| -> Result<Vec<String>, ModelError> {
        m.get(key)?
            .to_vec()
            .map_err(|_| invalid(path, format!("metadata {key}: expected an array")))?
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|_| invalid(path, format!("metadata {key}: expected strings")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i32> =
        m.md.get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().map(|x| x.to_i32().unwrap_or(1)).collect())
            .unwrap_or_default();
    let pre = m
        .s("tokenizer.ggml.pre")
        .unwrap_or_else(|| "default".into());
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    let pre_tokenizer = match pre.as_str() {
        "smollm" => json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama-bpe" | "llama3" | "smaug-bpe" => json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
        "gpt-2" | "gpt2" | "default" => byte_level(true),
        other => return Err(invalid(path, format!("metadata tokenizer.ggml.pre: pre-tokenizer {other:?} is not supported; expected smollm, llama-bpe, qwen2 or gpt-2"))),
    };
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    // Control (3) and user-defined (4) tokens are matched before the model, as HF's added tokens.
    let added: Vec<serde_json::Value> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(i, t)| json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": *t == 4, "special": *t == 3}))
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": byte_level(true),
        "decoder": byte_level(true),
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    let inner: tokenizers::Tokenizer = spec.to_string().parse().map_err(|e| {
        invalid(
            path,
            format!("cannot build the tokenizer from the metadata: {e}"),
        )
    })?;
    let token = |key: &str| m.u(key).ok().and_then(|i| tokens.get(i).cloned());
    let add_bos =
        m.md.get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
    Ok(TextTokenizer::from_parts(
        path.to_path_buf(),
        inner,
        [
            token("tokenizer.ggml.bos_token_id"),
            token("tokenizer.ggml.eos_token_id"),
            token("tokenizer.ggml.padding_token_id"),
            token("tokenizer.ggml.unknown_token_id"),
        ],
        add_bos,
        m.s("tokenizer.chat_template"),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: reshape(heads, 2, d/2, …).swapaxes(1, 2): GGUF row order for HF rows 0..8 (1 head, d 8).
        let hf: Vec<u32> = (0..8).collect();
        let gguf: Vec<u32> = vec![0, 4, 1, 5, 2, 6, 3, 7];
        let map = super::unpermute_rows(1, 8);
        let back: Vec<u32> = map.iter().map(|&g| gguf[g as usize]).collect();
        assert_eq!(back, hf);
    }
}
