//! A merged model as an ordinary Hugging Face folder: safetensors in the chosen dtype
//! (sharded above a size limit, with `model.safetensors.index.json`), `config.json`, and the
//! base's generation and tokenizer files, so transformers, vLLM and tunelab load it.

use super::{ExportError, Loaded, TensorProgress};
use crate::files::write_atomic;
use candle_core::{DType, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// transformers' `save_pretrained` default shard size.
pub const DEFAULT_SHARD_BYTES: u64 = 5_000_000_000;

/// Files beside the weights that describe the tokenizer and generation, copied from the base.
const COPIED: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

/// What was written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HfReport {
    pub files: Vec<String>,
    pub tensors: usize,
    pub bytes: u64,
    pub shards: usize,
}

/// transformers' name for a dtype (`torch_dtype` in config.json).
pub fn torch_name(d: DType) -> &'static str {
    match d {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    }
}

/// Writes `loaded` (already merged) into `out` as a Hugging Face folder. `progress` hears
/// `(done, total)` as each tensor is converted into its shard; tensors are converted a shard
/// at a time, so only one shard's copies are held at once.
pub fn write(
    loaded: &Loaded,
    out: &Path,
    dtype: DType,
    max_shard_bytes: u64,
    progress: TensorProgress,
) -> Result<HfReport, ExportError> {
    std::fs::create_dir_all(out).map_err(|e| ExportError::io(out, e))?;
    let tensors = loaded.model.hf_tensors()?;
    let size = |t: &Tensor| (t.elem_count() * dtype.size_in_bytes()) as u64;
    // Shards in tensor order, each at most `max_shard_bytes` (a bigger tensor alone).
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut used = 0u64;
    for (i, (_, t)) in tensors.iter().enumerate() {
        let s = size(t);
        if used > 0 && used + s > max_shard_bytes {
            shards.push(Vec::new());
            used = 0;
        }
        used += s;
        if let Some(last) = shards.last_mut() {
            last.push(i);
        }
    }
    let n = shards.len();
    let mut files = Vec::new();
    let mut weight_map = serde_json::Map::new();
    let mut done = 0;
    progress(0, tensors.len());
    for (k, members) in shards.iter().enumerate() {
        let name = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        };
        let mut map: HashMap<String, Tensor> = HashMap::with_capacity(members.len());
        for &i in members {
            let (hf, t) = &tensors[i];
            map.insert(hf.clone(), t.to_dtype(dtype)?);
            weight_map.insert(hf.clone(), Value::String(name.clone()));
            done += 1;
            progress(done, tensors.len());
        }
        let path = out.join(&name);
        let tmp = out.join(format!(".{name}.tmp"));
        candle_core::safetensors::save(&map, &tmp)?;
        std::fs::rename(&tmp, &path).map_err(|e| ExportError::io(&path, e))?;
        files.push(name);
    }
    let total: u64 = tensors.iter().map(|(_, t)| size(t)).sum();
    if n > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let path = out.join("model.safetensors.index.json");
        write_atomic(&path, pretty(&index).as_bytes()).map_err(|e| ExportError::io(&path, e))?;
        files.push("model.safetensors.index.json".into());
    }
    // config.json: the base's own, with the new dtype; or one written from the config.
    let dtype_name = torch_name(dtype);
    let config = match loaded.base_dir.as_ref().map(|d| d.join("config.json")) {
        Some(p) if p.is_file() => {
            let text = std::fs::read_to_string(&p).map_err(|e| ExportError::io(&p, e))?;
            let mut v: Value = serde_json::from_str(&text)
                .map_err(|e| ExportError::Invalid(format!("{}: invalid JSON: {e}", p.display())))?;
            if let Some(o) = v.as_object_mut() {
                o.remove("quantization_config");
                o.insert("torch_dtype".into(), json!(dtype_name));
                if o.contains_key("dtype") {
                    o.insert("dtype".into(), json!(dtype_name));
                }
            }
            v
        }
        _ => loaded.model.config.to_hf_json(dtype_name),
    };
    let path = out.join("config.json");
    write_atomic(&path, pretty(&config).as_bytes()).map_err(|e| ExportError::io(&path, e))?;
    files.push("config.json".into());
    match &loaded.base_dir {
        Some(dir) => {
            for f in COPIED {
                let src = dir.join(f);
                if src.is_file() {
                    let bytes = std::fs::read(&src).map_err(|e| ExportError::io(&src, e))?;
                    let dst = out.join(f);
                    write_atomic(&dst, &bytes).map_err(|e| ExportError::io(&dst, e))?;
                    files.push((*f).to_string());
                }
            }
        }
        None => files.extend(write_tokenizer(loaded, out)?),
    }
    Ok(HfReport {
        files,
        tensors: tensors.len(),
        bytes: total,
        shards: n,
    })
}

/// A base without a folder (GGUF): tokenizer.json from the tokenizer in memory, and a
/// tokenizer_config.json and generation_config.json with its special tokens and template.
fn write_tokenizer(loaded: &Loaded, out: &Path) -> Result<Vec<String>, ExportError> {
    let tok = &loaded.tokenizer;
    let json_text = tok
        .inner
        .to_string(true)
        .map_err(|e| ExportError::Invalid(format!("cannot serialize the tokenizer: {e}")))?;
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), ExportError> {
        let p = out.join(name);
        write_atomic(&p, bytes).map_err(|e| ExportError::io(&p, e))?;
        written.push(name.to_string());
        Ok(())
    };
    put("tokenizer.json", json_text.as_bytes())?;
    let cfg = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "unk_token": tok.unk_token,
        "add_bos_token": tok.add_bos_token,
        "chat_template": tok.default_chat_template(),
    });
    put("tokenizer_config.json", pretty(&cfg).as_bytes())?;
    let eos: Vec<u32> = tok.stop_ids.iter().copied().collect();
    let bos = tok.bos_token.as_deref().and_then(|b| tok.token_to_id(b));
    put(
        "generation_config.json",
        pretty(&json!({"eos_token_id": eos, "bos_token_id": bos})).as_bytes(),
    )?;
    Ok(written)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}
