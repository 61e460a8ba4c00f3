//! `tunelab model init-tiny`: a small random model of any family in `model::family` with its
//! own trained BPE tokenizer and a ChatML template, written as an ordinary Hugging Face
//! folder. Tests and the demo workspace use it; it trains on a CPU in seconds. Each family's
//! distinctive switches are on (Gemma's soft-caps and sliding windows, q/k norms, fused
//! projections), so a tiny run exercises them.

use super::config::Arch;
use super::ModelError;
use crate::files::write_atomic;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

/// The shape of a tiny model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinySpec {
    pub arch: Arch,
    /// Target vocabulary size of the trained tokenizer.
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub seed: u64,
    /// More text for the tokenizer to learn merges from (documents separated by blank
    /// lines), so a domain's words become whole tokens.
    pub extra_corpus: String,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            arch: Arch::default(),
            vocab: 512,
            hidden: 64,
            intermediate: 128,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            seed: 0,
            extra_corpus: String::new(),
        }
    }
}

pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Text the tokenizer learns its merges from (documents separated by blank lines):
/// chat-shaped English plus the ChatML markers.
const CORPUS: &str = include_str!("tiny_corpus.txt");

/// The built-in ChatML template (with Hermes-style tool support).
const CHATML: &str = include_str!("../template/builtin/chatml.jinja");

fn train_tokenizer(dir: &Path, vocab: usize, extra: &str) -> Result<usize, ModelError> {
    let wrap = |e: tokenizers::Error| ModelError::Invalid {
        path: dir.to_path_buf(),
        message: format!("training the tokenizer: {e}"),
    };
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab)
        .min_frequency(1)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(specials)
        .build();
    let mut tk = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
    .with_post_processor(Some(ByteLevel::default().trim_offsets(false).into()))
    .with_decoder(Some(ByteLevel::default().into()))
    .build()
    .map_err(wrap)?;
    let lines: Vec<String> = CORPUS
        .split("\n\n")
        .chain(extra.split("\n\n"))
        .filter(|d| !d.trim().is_empty())
        .map(str::to_string)
        .collect();
    tk.train(&mut trainer, lines.into_iter()).map_err(wrap)?;
    let path = dir.join("tokenizer.json");
    tk.save(&path, false).map_err(wrap)?;
    Ok(tk.get_vocab_size(true))
}

/// Normal(0, std) from a seeded RNG (Box–Muller).
fn normal(rng: &mut rand::rngs::StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

/// Writes a tiny model folder: config.json, model.safetensors, tokenizer files.
pub fn init_tiny(dir: &Path, spec: &TinySpec) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let vocab = train_tokenizer(dir, spec.vocab, &spec.extra_corpus)?;
    let id = |t: &str| SPECIAL_TOKENS.iter().position(|s| *s == t).unwrap_or(0);
    let head_dim = spec.hidden / spec.heads;
    let family = spec.arch.family();
    let tied = family.tiny.tied;
    let mut config = json!({
        "architectures": [family.hf_class],
        "model_type": family.model_type,
        "vocab_size": vocab,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": head_dim,
        "hidden_act": family.activation.hf_name(),
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": tied,
        "attention_bias": family.qkv_bias,
        "bos_token_id": id("<|endoftext|>"),
        "eos_token_id": id("<|im_end|>"),
        // Phi-3's config default (32000) lies outside a tiny vocabulary.
        "pad_token_id": id("<|endoftext|>"),
        "torch_dtype": "float32",
    });
    if family.query_pre_attn_scalar {
        config["hidden_activation"] = json!(family.activation.hf_name());
        config["query_pre_attn_scalar"] = json!(head_dim);
    }
    if let Some(slides) = family.tiny.sliding {
        let layer_types: Vec<&str> = (0..spec.layers)
            .map(|i| {
                if slides(i, spec.layers) {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        config["sliding_window"] = json!(64);
        config["layer_types"] = json!(layer_types);
    }
    if let Some((attn, last)) = family.tiny.softcaps {
        config["attn_logit_softcapping"] = json!(attn);
        config["final_logit_softcapping"] = json!(last);
    }
    if family.local_rope {
        config["rope_parameters"] = json!({
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let rand_t = |rng: &mut rand::rngs::StdRng, shape: (usize, usize)| {
        Tensor::from_vec(normal(rng, shape.0 * shape.1, 0.02), shape, &dev)
    };
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &dev);
    let (h, i, q, kv) = (
        spec.hidden,
        spec.intermediate,
        spec.heads * head_dim,
        spec.kv_heads * head_dim,
    );
    // The output projection gets std 1/√hidden, as a trained head has: with the 0.02 of
    // the other weights, a frozen head caps every logit near ±1 and no adapter could make the
    // model confident, so a demo run could not show its loss falling.
    let head_std = 1.0 / (h as f32).sqrt();
    let head_t = |rng: &mut rand::rngs::StdRng| {
        Tensor::from_vec(normal(rng, vocab * h, head_std), (vocab, h), &dev)
    };
    t.insert(
        "model.embed_tokens.weight".into(),
        if tied {
            head_t(&mut rng)?
        } else {
            rand_t(&mut rng, (vocab, h))?
        },
    );
    // Gemma stores norm weights as `w` for a `1 + w` scale: zeros are the identity there.
    let norm = |n: usize| {
        if family.norm_plus_one {
            Tensor::zeros(n, candle_core::DType::F32, &dev)
        } else {
            ones(n)
        }
    };
    let shapes = super::config::ModelConfig::plain(
        spec.arch,
        vocab,
        h,
        i,
        spec.layers,
        spec.heads,
        spec.kv_heads,
        head_dim,
    )
    .projection_shapes();
    for l in 0..spec.layers {
        let p = format!("model.layers.{l}");
        for ((group, module), (_, inp, out)) in family.modules().iter().zip(&shapes) {
            t.insert(
                format!("{p}.{group}.{module}.weight"),
                rand_t(&mut rng, (*out, *inp))?,
            );
        }
        if family.qkv_bias {
            for (name, n) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                t.insert(
                    format!("{p}.self_attn.{name}.bias"),
                    Tensor::from_vec(normal(&mut rng, n, 0.02), n, &dev)?,
                );
            }
        }
        t.insert(format!("{p}.input_layernorm.weight"), norm(h)?);
        t.insert(format!("{p}.post_attention_layernorm.weight"), norm(h)?);
        if family.sandwich_norms {
            t.insert(format!("{p}.pre_feedforward_layernorm.weight"), norm(h)?);
            t.insert(format!("{p}.post_feedforward_layernorm.weight"), norm(h)?);
        }
        if family.qk_norm {
            t.insert(format!("{p}.self_attn.q_norm.weight"), norm(head_dim)?);
            t.insert(format!("{p}.self_attn.k_norm.weight"), norm(head_dim)?);
        }
    }
    t.insert("model.norm.weight".into(), norm(h)?);
    if !tied {
        t.insert("lm_head.weight".into(), head_t(&mut rng)?);
    }
    let tmp = dir.join(".model.safetensors.tmp");
    candle_core::safetensors::save(&t, &tmp)?;
    std::fs::rename(&tmp, dir.join("model.safetensors")).map_err(|e| ModelError::io(dir, e))?;
    let files = [
        ("config.json", config),
        (
            "generation_config.json",
            json!({"eos_token_id": [id("<|im_end|>"), id("<|endoftext|>")], "bos_token_id": id("<|endoftext|>")}),
        ),
        (
            "tokenizer_config.json",
            json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": null,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": null,
                "add_bos_token": false,
                "model_max_length": 2048,
                "chat_template": CHATML,
            }),
        ),
    ];
    for (name, value) in files {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value).unwrap_or_default() + "\n";
        write_atomic(&path, text.as_bytes()).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}
