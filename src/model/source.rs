//! Where a model comes from: a Hugging Face folder, a GGUF file, or a hub id resolved
//! through the Hugging Face cache.

use super::{gguf, hub, Model, ModelError, QuantPlan, QuantReport, Quantization};
use crate::template::TextTokenizer;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

/// What a model spec names: every command (model info, eval, chat, bench, train, the
/// Adapter tab) goes through [`resolve`], so they accept the same specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A Hugging Face folder (config.json, safetensors, tokenizer), local or in the hub cache.
    Folder(PathBuf),
    Gguf(PathBuf),
}

/// Resolves `spec`: a model folder, a `.gguf` file, or a hub id (`org/name`) in the Hugging
/// Face cache.
pub fn resolve(spec: &str) -> Result<Resolved, ModelError> {
    let path = Path::new(spec);
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        if !path.is_file() {
            return Err(ModelError::Invalid {
                path: path.to_path_buf(),
                message: "no such GGUF file".into(),
            });
        }
        return Ok(Resolved::Gguf(path.to_path_buf()));
    }
    if path.is_dir() {
        return Ok(Resolved::Folder(path.to_path_buf()));
    }
    if path.is_file() {
        return Err(ModelError::Invalid {
            path: path.to_path_buf(),
            message: "a file that is not a .gguf; expected a model folder, a .gguf file or a hub id like org/name".into(),
        });
    }
    if crate::paths::is_repo_id(spec) {
        return Ok(Resolved::Folder(hub::resolve(spec)?));
    }
    Err(ModelError::Invalid {
        path: path.to_path_buf(),
        message: "no such folder or file; expected a model folder, a .gguf file or a hub id like org/name".into(),
    })
}

/// The model config of `spec` without reading its weights (a folder's config.json, a GGUF
/// file's metadata).
pub fn config(spec: &str) -> Result<super::ModelConfig, ModelError> {
    match resolve(spec)? {
        Resolved::Folder(dir) => Ok(super::ModelConfig::from_file(&dir.join("config.json"))?),
        Resolved::Gguf(path) => gguf::read_config(&path),
    }
}

/// As [`config`], but a hub id is read from the cache only: nothing is downloaded (for
/// checks that must stay quick, such as which base an adapter belongs to).
pub fn config_cached(spec: &str) -> Result<super::ModelConfig, ModelError> {
    if !Path::new(spec).exists() {
        if let Some(dir) = hub::cached_snapshot(spec) {
            return Ok(super::ModelConfig::from_file(&dir.join("config.json"))?);
        }
        if crate::paths::is_repo_id(spec) {
            return Err(ModelError::Invalid {
                path: PathBuf::from(spec),
                message: "not in the Hugging Face cache".into(),
            });
        }
    }
    config(spec)
}

/// Loads `spec` (a folder, a `.gguf` file, or `org/name`) with its tokenizer, in f32.
pub fn load(spec: &str, device: &Device) -> Result<(Model, TextTokenizer), ModelError> {
    load_as(spec, device, DType::F32)
}

/// As [`load`], with the frozen dense weights in `dtype` (a GGUF base stays quantized and
/// its other tensors f32).
pub fn load_as(
    spec: &str,
    device: &Device,
    dtype: DType,
) -> Result<(Model, TextTokenizer), ModelError> {
    load_quantized(spec, device, dtype, Quantization::None.into()).map(|(m, t, _)| (m, t))
}

/// As [`load_as`], with a safetensors base's projections quantized as `quant` asks (a GGUF
/// base keeps its own types; the report says what is resident either way).
pub fn load_quantized(
    spec: &str,
    device: &Device,
    dtype: DType,
    plan: QuantPlan,
) -> Result<(Model, TextTokenizer, QuantReport), ModelError> {
    let dir = match resolve(spec)? {
        Resolved::Gguf(path) => {
            let (model, tok) = gguf::load(&path, device)?;
            let report = gguf_report(&model);
            return Ok((model, tok, report));
        }
        Resolved::Folder(dir) => dir,
    };
    let (model, report) = Model::load_quantized(&dir, dtype, device, plan)?;
    let mut tok = TextTokenizer::from_dir(&dir)?;
    apply_family(&mut tok, model.config.arch);
    Ok((model, tok, report))
}

/// The weights of `spec` alone, as [`load_quantized`] reads them, without the tokenizer: a
/// folder holding only `config.json` and the weights (a model saved without its tokenizer,
/// a checkpoint) is enough.
pub fn load_weights(
    spec: &str,
    device: &Device,
    dtype: DType,
    plan: QuantPlan,
) -> Result<(Model, QuantReport), ModelError> {
    match resolve(spec)? {
        Resolved::Gguf(path) => {
            let (model, _) = gguf::load_model(&path, device)?;
            let report = gguf_report(&model);
            Ok((model, report))
        }
        Resolved::Folder(dir) => Model::load_quantized(&dir, dtype, device, plan),
    }
}

/// What a GGUF base holds (it keeps its own types).
fn gguf_report(model: &Model) -> QuantReport {
    QuantReport {
        quantization: "gguf".into(),
        params: model.config.parameter_count() as u64,
        base_bytes: model.resident_bytes(),
        ..Default::default()
    }
}

/// Only the tokenizer of `spec` (a folder, or a `.gguf` file).
pub fn load_tokenizer(spec: &Path) -> Result<TextTokenizer, ModelError> {
    let dir = match resolve(&spec.to_string_lossy())? {
        Resolved::Gguf(path) => return gguf::load_tokenizer(&path),
        Resolved::Folder(dir) => dir,
    };
    let mut tok = TextTokenizer::from_dir(&dir)?;
    if let Ok(c) = super::ModelConfig::from_file(&dir.join("config.json")) {
        apply_family(&mut tok, c.arch);
    }
    Ok(tok)
}

/// What the family knows and a model folder may lack: its end-of-turn tokens become stop
/// ids (when the vocabulary has them), and its chat template is used when the tokenizer
/// brings none (or its `template_without` one: Phi-3's family takes Phi-4's `<|im_sep|>`
/// layout when the vocabulary has that token, else Phi-3's and Phi-4-mini's `<|user|>` one).
pub fn apply_family(tok: &mut TextTokenizer, arch: super::Arch) {
    let family = arch.family();
    for t in family.stop_tokens {
        if let Some(id) = tok.inner.token_to_id(t) {
            tok.stop_ids.insert(id);
        }
    }
    if tok.chat_templates.is_empty() {
        let name = match family.template_without {
            Some((token, other)) if tok.inner.token_to_id(token).is_none() => other,
            _ => family.template,
        };
        if let Some((_, src)) = crate::template::chat_template::BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
        {
            tok.chat_templates
                .push(("default".to_string(), src.to_string()));
        }
    }
}
