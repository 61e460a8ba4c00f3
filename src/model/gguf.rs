//! GGUF files (llama.cpp): the base stays quantized and frozen, tensor names map to HF
//! modules, q/k outputs are put back into the HF rotary layout (llama.cpp permutes those rows
//! for Llama), and the tokenizer and chat template are rebuilt from the metadata.

use super::config::{Arch, ModelConfig};
use super::llama::{Block, Linear, Model, Weight};
use super::ModelError;
use crate::template::TextTokenizer;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn invalid(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
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

/// A GGUF file's architecture name and parameter count, from its header alone.
pub fn summary(path: &Path) -> Result<(String, u64), ModelError> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let content = Content::read(&mut file)
        .map_err(|e| invalid(path, format!("not a readable GGUF file: {e}")))?;
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

/// Loads a GGUF model (Llama/SmolLM/Mistral as `llama`, or `qwen2`) and its tokenizer.
pub fn load(path: &Path, device: &Device) -> Result<(Model, TextTokenizer), ModelError> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let content = Content::read(&mut file)
        .map_err(|e| invalid(path, format!("not a readable GGUF file: {e}")))?;
    let m = Meta {
        path,
        md: &content.metadata,
    };
    let arch_name = m.s("general.architecture").unwrap_or_default();
    let arch = match arch_name.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            return Err(invalid(
                path,
                format!(
                    "metadata general.architecture: unsupported {other:?}; expected llama or qwen2"
                ),
            ))
        }
    };
    let a = &arch_name;
    let heads = m.u(&format!("{a}.attention.head_count"))?;
    let hidden = m.u(&format!("{a}.embedding_length"))?;
    let tensor = |name: &str| -> Result<Arc<candle_core::quantized::QTensor>, ModelError> {
        let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        content
            .tensor(&mut f, name, device)
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
    let vocab = embed_q.shape().dims2()?.0;
    let config = ModelConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: m.u(&format!("{a}.feed_forward_length"))?,
        num_hidden_layers: m.u(&format!("{a}.block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: m
            .u(&format!("{a}.attention.head_count_kv"))
            .unwrap_or(heads),
        head_dim: m
            .u(&format!("{a}.rope.dimension_count"))
            .unwrap_or(hidden / heads),
        rms_norm_eps: m
            .f(&format!("{a}.attention.layer_norm_rms_epsilon"))
            .unwrap_or(1e-5),
        rope_theta: m.f(&format!("{a}.rope.freq_base")).unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: m.u(&format!("{a}.context_length")).unwrap_or(4096),
        tie_word_embeddings: !has("output.weight"),
        qkv_bias: has("blk.0.attn_q.bias"),
        torch_dtype: Some("gguf".into()),
    };
    let (hd, kvh) = (config.head_dim, config.num_key_value_heads);
    let perm = |n: usize| -> Result<Option<Tensor>, ModelError> {
        Ok(if arch == Arch::Llama {
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
        layers.push(Block {
            input_norm: dense(&format!("{b}.attn_norm.weight"))?,
            q: linear(&format!("{b}.attn_q"), q_perm.clone())?,
            k: linear(&format!("{b}.attn_k"), k_perm.clone())?,
            v: linear(&format!("{b}.attn_v"), None)?,
            o: linear(&format!("{b}.attn_output"), None)?,
            post_norm: dense(&format!("{b}.ffn_norm.weight"))?,
            gate: linear(&format!("{b}.ffn_gate"), None)?,
            up: linear(&format!("{b}.ffn_up"), None)?,
            down: linear(&format!("{b}.ffn_down"), None)?,
        });
    }
    let embed = embed_q.dequantize(device)?.to_dtype(DType::F32)?;
    // Tied: the dense embedding (already in memory for lookups) is the head, so no per-token
    // dequantization of the largest matrix.
    let lm_head = if has("output.weight") {
        Weight::Quantized(tensor("output.weight")?)
    } else {
        Weight::Dense(embed.clone())
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
    Ok((model, tokenizer(path, &m)?))
}

/// Only the tokenizer and chat template of a GGUF file (no weights are read).
pub fn load_tokenizer(path: &Path) -> Result<TextTokenizer, ModelError> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let content = Content::read(&mut file)
        .map_err(|e| invalid(path, format!("not a readable GGUF file: {e}")))?;
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
