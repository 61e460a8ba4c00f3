//! A merged model as a GGUF file llama.cpp reads: the family's llama.cpp architecture and
//! metadata, llama.cpp's tensor names (`model::gguf::hf_to_gguf`, the table the reader uses),
//! q/k rows permuted to llama.cpp's rotary layout for the `llama` architecture, Gemma's norms
//! stored as `1 + w`, and the tokenizer and chat template in the metadata (copied from a GGUF
//! base, or built from a byte-level BPE `tokenizer.json`).

use super::{ExportError, Loaded, TensorProgress};
use crate::model::config::RopeScaling;
use crate::model::decoder::inverse_perm;
use crate::model::gguf::{hf_to_gguf, unpermute_rows, LLAMA3_SPLIT, QWEN2_SPLIT};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use std::path::Path;

/// The tensor types an export can write.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum GgufQuant {
    F32,
    #[default]
    F16,
    Q8_0,
    Q4_0,
    /// q4k where a row's width takes 256-wide blocks, llama.cpp's fallback elsewhere.
    Q4k,
}

impl std::str::FromStr for GgufQuant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("quant", s)
    }
}

impl GgufQuant {
    fn ggml(self) -> GgmlDType {
        match self {
            GgufQuant::F32 => GgmlDType::F32,
            GgufQuant::F16 => GgmlDType::F16,
            GgufQuant::Q8_0 => GgmlDType::Q8_0,
            GgufQuant::Q4_0 => GgmlDType::Q4_0,
            GgufQuant::Q4k => GgmlDType::Q4K,
        }
    }

    /// llama.cpp's `general.file_type`.
    fn file_type(self) -> u32 {
        match self {
            GgufQuant::F32 => 0,
            GgufQuant::F16 => 1,
            GgufQuant::Q4_0 => 2,
            GgufQuant::Q8_0 => 7,
            GgufQuant::Q4k => 15,
        }
    }

    /// The type a matrix of `cols` columns gets: the wanted one, llama.cpp's fallback, or
    /// f16 when no block fits.
    fn for_cols(self, cols: usize) -> GgmlDType {
        let want = self.ggml();
        if matches!(want, GgmlDType::F32 | GgmlDType::F16) {
            return want;
        }
        crate::model::quant::block_type(want, cols).unwrap_or(GgmlDType::F16)
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GgufReport {
    pub architecture: String,
    pub tensors: usize,
    pub bytes: u64,
    pub quant: GgufQuant,
    /// Matrices written in another type than asked, as `name: type`.
    pub fallbacks: Vec<String>,
}

type Meta = Vec<(String, Value)>;

/// The family's llama.cpp metadata for `loaded`'s config.
fn arch_metadata(loaded: &Loaded, name: &str) -> Meta {
    let c = &loaded.model.config;
    let f = c.family();
    let a = f.gguf_arch;
    let k = |s: &str| f.gguf_key(s);
    let u = |v: usize| Value::U32(v as u32);
    let fl = |v: f64| Value::F32(v as f32);
    let mut m: Meta = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(name.into())),
        (k("context_length"), u(c.max_position_embeddings)),
        (k("embedding_length"), u(c.hidden_size)),
        (k("block_count"), u(c.num_hidden_layers)),
        (k("feed_forward_length"), u(c.intermediate_size)),
        (k("attention.head_count"), u(c.num_attention_heads)),
        (k("attention.head_count_kv"), u(c.num_key_value_heads)),
        (k("attention.key_length"), u(c.head_dim)),
        (k("attention.value_length"), u(c.head_dim)),
        (k("attention.layer_norm_rms_epsilon"), fl(c.rms_norm_eps)),
        (k("rope.freq_base"), fl(c.rope.theta)),
        (k("rope.dimension_count"), u(c.rotary_dim)),
        (k("vocab_size"), u(c.vocab_size)),
    ];
    if let Some(w) = c.sliding_window {
        m.push((k("attention.sliding_window"), u(w)));
        m.push((
            k("attention.sliding_window_pattern"),
            Value::Array(c.sliding_layers.iter().map(|s| Value::Bool(*s)).collect()),
        ));
    }
    if let Some(cap) = c.attn_logit_softcapping {
        m.push((k("attn_logit_softcapping"), fl(cap)));
    }
    if let Some(cap) = c.final_logit_softcapping {
        m.push((k("final_logit_softcapping"), fl(cap)));
    }
    if f.query_pre_attn_scalar {
        m.push((k("attention.scale"), fl(c.attention_scale())));
    }
    if let Some(local) = &c.rope_local {
        m.push((k("rope.freq_base_swa"), fl(local.theta)));
    }
    match &c.rope.scaling {
        Some(RopeScaling::Linear { factor }) => {
            m.push((k("rope.scaling.type"), Value::String("linear".into())));
            m.push((k("rope.scaling.factor"), fl(*factor)));
        }
        Some(RopeScaling::LongRope(l)) => {
            m.push((
                k("rope.scaling.original_context_length"),
                u(l.original_max_position_embeddings),
            ));
            m.push((k("rope.scaling.attn_factor"), fl(l.attention_factor)));
        }
        _ => {}
    }
    m
}

/// The tokenizer's metadata: a GGUF base's own, verbatim; else built from a byte-level BPE
/// tokenizer (llama.cpp's `gpt2` model) with the pre-tokenizer named as llama.cpp names it.
fn tokenizer_metadata(loaded: &Loaded) -> Result<Meta, ExportError> {
    if let Some(p) = &loaded.base_gguf {
        let mut f = std::fs::File::open(p).map_err(|e| ExportError::io(p, e))?;
        let content = gguf_file::Content::read(&mut f)
            .map_err(|e| ExportError::Invalid(format!("{}: {e}", p.display())))?;
        let mut m: Meta = content
            .metadata
            .into_iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(m);
    }
    let tok = &loaded.tokenizer;
    let spec: serde_json::Value = tok
        .inner
        .to_string(false)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .ok_or_else(|| ExportError::Invalid("cannot read the tokenizer's definition".into()))?;
    let model = &spec["model"];
    if model["type"] != "BPE" {
        return Err(ExportError::Invalid(format!(
            "GGUF export needs a byte-level BPE tokenizer (tokenizer.json model BPE); this one is {}",
            model["type"]
        )));
    }
    let pre = pre_tokenizer_name(&spec["pre_tokenizer"]).ok_or_else(|| {
        ExportError::Invalid(format!(
            "GGUF export: the tokenizer's pre-tokenizer {} has no llama.cpp name tunelab knows (llama-bpe, qwen2, smollm, gpt-2)",
            spec["pre_tokenizer"]
        ))
    })?;
    let n = tok.inner.get_vocab_size(true);
    let mut tokens = vec![String::new(); n];
    for (t, id) in tok.inner.get_vocab(true) {
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = t;
        }
    }
    // llama.cpp's token types: 1 normal, 3 control (special added tokens), 4 user-defined.
    let mut types = vec![1i32; n];
    if let Some(added) = spec["added_tokens"].as_array() {
        for a in added {
            if let Some(id) = a["id"].as_u64().map(|i| i as usize).filter(|i| *i < n) {
                types[id] = if a["special"].as_bool().unwrap_or(false) {
                    3
                } else {
                    4
                };
            }
        }
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| match m {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Array(p) => {
                        Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let mut m: Meta = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), strings(merges)),
        (
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(tok.add_bos_token),
        ),
    ];
    let id = |t: &Option<String>| t.as_deref().and_then(|t| tok.token_to_id(t));
    for (key, t) in [
        ("bos", &tok.bos_token),
        ("eos", &tok.eos_token),
        ("padding", &tok.pad_token),
        ("unknown", &tok.unk_token),
    ] {
        if let Some(i) = id(t) {
            m.push((format!("tokenizer.ggml.{key}_token_id"), Value::U32(i)));
        }
    }
    if let Some(t) = tok.default_chat_template() {
        m.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    Ok(m)
}

/// llama.cpp's name for a `tokenizer.json` pre-tokenizer (the inverse of what
/// `model::gguf` builds from `tokenizer.ggml.pre`).
pub fn pre_tokenizer_name(p: &serde_json::Value) -> Option<&'static str> {
    let kind = p["type"].as_str()?;
    if kind == "ByteLevel" {
        return Some("gpt-2");
    }
    let parts = p["pretokenizers"].as_array()?;
    let kinds: Vec<&str> = parts.iter().filter_map(|x| x["type"].as_str()).collect();
    match kinds.as_slice() {
        ["Digits", "ByteLevel"] => Some("smollm"),
        ["Split", "ByteLevel"] => match parts[0]["pattern"]["Regex"].as_str()? {
            r if r == LLAMA3_SPLIT => Some("llama-bpe"),
            r if r == QWEN2_SPLIT => Some("qwen2"),
            _ => None,
        },
        _ => None,
    }
}

/// The merged model's tensors under llama.cpp's names and layout, in f32.
pub fn gguf_tensors(loaded: &Loaded) -> Result<Vec<(String, Tensor)>, ExportError> {
    let c = &loaded.model.config;
    let f = c.family();
    let permute = f.gguf_permuted_qk;
    let dev = Device::Cpu;
    let mut out = Vec::new();
    for (hf, t) in loaded.model.hf_tensors()? {
        let name = hf_to_gguf(f, &hf)
            .ok_or_else(|| ExportError::Invalid(format!("no llama.cpp name for tensor {hf}")))?;
        let mut t = t;
        if f.norm_plus_one && hf.ends_with("norm.weight") {
            t = t.affine(1.0, 1.0)?;
        }
        // llama.cpp's rotary layout for q/k rows (and their biases).
        if permute && (hf.contains(".q_proj.") || hf.contains(".k_proj.")) {
            let heads = if hf.contains(".q_proj.") {
                c.num_attention_heads
            } else {
                c.num_key_value_heads
            };
            let map = Tensor::new(unpermute_rows(heads, c.head_dim), &dev)?;
            t = t.index_select(&inverse_perm(&map)?, 0)?;
        }
        out.push((name, t));
    }
    match &c.rope.scaling {
        // Llama 3.1's scaling as per-frequency divisors, as llama.cpp's converter writes it.
        Some(RopeScaling::Llama3(_)) => {
            let scaled = c.inv_freq();
            let plain = c.unscaled_inv_freq();
            let factors: Vec<f32> = plain
                .iter()
                .zip(&scaled)
                .map(|(p, s)| (p / s) as f32)
                .collect();
            out.push(("rope_freqs.weight".into(), Tensor::new(factors, &dev)?));
        }
        Some(RopeScaling::LongRope(l)) => {
            let v = |x: &Vec<f64>| x.iter().map(|f| *f as f32).collect::<Vec<f32>>();
            out.push((
                "rope_factors_long.weight".into(),
                Tensor::new(v(&l.long_factor), &dev)?,
            ));
            out.push((
                "rope_factors_short.weight".into(),
                Tensor::new(v(&l.short_factor), &dev)?,
            ));
        }
        _ => {}
    }
    Ok(out)
}

/// Writes `loaded` (merged) as `path`. `progress` hears `(done, total)` as each tensor is
/// quantized (the slow part; the file is written in one go after).
pub fn write(
    loaded: &Loaded,
    path: &Path,
    quant: GgufQuant,
    name: &str,
    progress: TensorProgress,
) -> Result<GgufReport, ExportError> {
    let mut meta = arch_metadata(loaded, name);
    meta.push(("general.file_type".into(), Value::U32(quant.file_type())));
    meta.push(("general.quantization_version".into(), Value::U32(2)));
    meta.extend(tokenizer_metadata(loaded)?);
    let mut fallbacks = Vec::new();
    let tensors = gguf_tensors(loaded)?;
    let total = tensors.len();
    let mut qtensors = Vec::with_capacity(total);
    progress(0, total);
    for (name, t) in tensors {
        let ty = match t.dims() {
            [_, cols] => {
                let ty = quant.for_cols(*cols);
                if ty != quant.ggml() {
                    fallbacks.push(format!("{name}: {}", crate::model::quant::type_name(ty)));
                }
                ty
            }
            _ => GgmlDType::F32,
        };
        let t = if ty == GgmlDType::F32 {
            t.to_dtype(DType::F32)?
        } else {
            t
        };
        qtensors.push((name, QTensor::quantize(&t, ty)?));
        progress(qtensors.len(), total);
    }
    write_file(path, &meta, &qtensors)?;
    Ok(GgufReport {
        architecture: loaded.model.config.family().gguf_arch.into(),
        tensors: qtensors.len(),
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
        quant,
        fallbacks,
    })
}

/// Writes a GGUF file atomically (a temporary file beside it, then a rename).
pub fn write_file(
    path: &Path,
    meta: &[(String, Value)],
    tensors: &[(String, QTensor)],
) -> Result<(), ExportError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    }
    let tmp = path.with_extension("gguf.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| ExportError::io(&tmp, e))?;
    let mut w = std::io::BufWriter::new(file);
    let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut w, &m, &t)?;
    let file = w
        .into_inner()
        .map_err(|e| ExportError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(|e| ExportError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ExportError::io(path, e))?;
    Ok(())
}
