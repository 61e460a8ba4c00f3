//! Export: a base plus adapter merged into a Hugging Face folder (`hf`), a GGUF file for
//! llama.cpp and Ollama (`gguf`, with an Ollama `Modelfile` from `modelfile`), or the adapter
//! alone as a llama.cpp LoRA GGUF (`lora_gguf`). `locate` finds what to export from a run, an
//! adapter folder or a bare model; `load` reads it.

pub mod gguf;
pub mod hf;
pub mod lora_gguf;
pub mod modelfile;

use crate::lora::LoraConfig;
use crate::model::{Model, ModelError, QuantPlan, Quantization};
use crate::template::TextTokenizer;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What to export could not be found or used; the message names it.
    #[error("{0}")]
    Invalid(String),
    #[error("compute: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ExportError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ExportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What an export starts from: a base model and, unless the base alone is exported, an
/// adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// A model folder, a .gguf file or a hub id.
    pub base: String,
    pub adapter: Option<PathBuf>,
    /// How the run stored its base while it trained (`model.quantization`), when it
    /// quantized a full-precision one.
    pub trained_on: Option<QuantPlan>,
}

/// Finds the base and adapter of `spec`: a run (folder or id: its adapter and the base its
/// config names), an adapter folder (the base its `base_model_name_or_path` names), or, with
/// `spec` absent, the base alone. `model` overrides the base either way.
pub fn locate(
    spec: Option<&str>,
    model: Option<&str>,
    runs_root: &Path,
) -> Result<Source, ExportError> {
    let Some(spec) = spec else {
        let base = model.ok_or_else(|| {
            ExportError::Invalid(
                "nothing to export: name a run, an adapter folder or --model".into(),
            )
        })?;
        return Ok(Source {
            base: base.to_string(),
            adapter: None,
            trained_on: None,
        });
    };
    let path = Path::new(spec);
    let (adapter, run_base, trained_on) = if path.join("adapter_config.json").is_file() {
        (path.to_path_buf(), None, None)
    } else if let Some(run) = crate::runs::resolve(spec, runs_root) {
        let adapter = run.adapter();
        if !adapter.join("adapter_config.json").is_file() {
            return Err(ExportError::Invalid(format!(
                "{}: the run has no adapter yet (it is written when the run ends or stops)",
                run.root.display()
            )));
        }
        let cfg = std::fs::read_to_string(run.config())
            .ok()
            .and_then(|t| crate::config::RunConfig::from_yaml(&t, "config.yaml").ok());
        let trained_on = cfg
            .as_ref()
            .map(|c| c.model.quant_plan())
            .filter(|p| p.quantization != Quantization::None);
        (adapter, cfg.map(|c| c.model.path), trained_on)
    } else {
        return Err(ExportError::Invalid(format!(
            "{spec}: neither an adapter folder (adapter_config.json) nor a run under {}",
            runs_root.display()
        )));
    };
    let base = match (model, run_base) {
        (Some(m), _) => m.to_string(),
        (None, Some(b)) => b,
        (None, None) => {
            let cfg_path = adapter.join("adapter_config.json");
            let text =
                std::fs::read_to_string(&cfg_path).map_err(|e| ExportError::io(&cfg_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                ExportError::Invalid(format!("{}: invalid JSON: {e}", cfg_path.display()))
            })?;
            v.get("base_model_name_or_path")
                .and_then(|b| b.as_str())
                .filter(|b| !b.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    ExportError::Invalid(format!(
                        "{}: base_model_name_or_path is empty; name the base with --model",
                        cfg_path.display()
                    ))
                })?
        }
    };
    Ok(Source {
        base,
        adapter: Some(adapter),
        trained_on,
    })
}

/// A base read for export, with its adapter attached (not merged).
pub struct Loaded {
    pub model: Model,
    pub tokenizer: TextTokenizer,
    /// The base's Hugging Face folder (config and tokenizer files are copied from it).
    pub base_dir: Option<PathBuf>,
    /// The base's GGUF file (its tokenizer metadata is copied from it).
    pub base_gguf: Option<PathBuf>,
    pub lora: Option<LoraConfig>,
    /// Whether the weights merged into are quantized ones, dequantized (a GGUF base, or
    /// `as_trained` on a QLoRA run): the merged folder then defaults to bf16.
    pub quantized: bool,
    /// Things the user should know (a quantized base dequantized, …).
    pub warnings: Vec<String>,
}

/// Reads the base in f32 on the CPU and attaches the adapter. A QLoRA run's base is read
/// at full precision unless `as_trained`, which quantizes it as the run did (from the
/// quantized-base cache when the run left an entry there).
pub fn load(src: &Source, as_trained: bool) -> Result<Loaded, ExportError> {
    let plan = match (&src.trained_on, as_trained) {
        (Some(p), true) => QuantPlan {
            cache: Some(crate::paths::Paths::resolve().cache),
            ..p.clone()
        },
        _ => QuantPlan::default(),
    };
    let (mut model, tokenizer, _) =
        crate::model::source::load_quantized(&src.base, &Device::Cpu, DType::F32, plan)?;
    let path = Path::new(&src.base);
    let gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let base_dir = if gguf {
        None
    } else if path.is_dir() {
        Some(path.to_path_buf())
    } else {
        crate::model::hub::resolve(&src.base).ok()
    };
    let mut warnings = Vec::new();
    let quantized = model.is_quantized();
    if quantized {
        let what = match (&src.trained_on, as_trained) {
            (Some(p), true) => format!("the {} base the run trained on", p.quantization),
            _ => "the quantized base".into(),
        };
        warnings.push(format!(
            "{}: {what} is dequantized for the export, and merging changes its numbers (the \
             merged weights leave the quantized grid; a merged folder is bf16 unless --dtype)",
            src.base
        ));
    } else if let Some(p) = &src.trained_on {
        warnings.push(format!(
            "{}: the run trained on a {} base; the adapter is merged into the full-precision \
             weights (as QLoRA merges usually are), so outputs differ slightly from the run's \
             evals; --as-trained merges into the dequantized {} weights the run saw",
            src.base, p.quantization, p.quantization
        ));
    }
    if let Some(a) = &src.adapter {
        crate::model::peft::load(&mut model, a)?;
    }
    let lora = model.lora.clone();
    Ok(Loaded {
        model,
        tokenizer,
        base_dir,
        base_gguf: gguf.then(|| path.to_path_buf()),
        lora,
        quantized,
        warnings,
    })
}

impl Loaded {
    /// The adapter folded into the base and every weight made dense (f32).
    pub fn merge(&mut self) -> Result<(), ExportError> {
        self.model.merge_lora()?;
        self.model.densify()?;
        Ok(())
    }
}

/// One export request: what to read and what to write (the CLI's flags, the Runs tab's keys).
#[derive(Debug, Clone)]
pub struct Request {
    /// A run or adapter folder; `None` converts `model` alone.
    pub source: Option<String>,
    pub model: Option<String>,
    pub merge: bool,
    pub gguf: bool,
    pub gguf_lora: bool,
    /// The merged folder's dtype; `None`: the base's (bf16 for a quantized one).
    pub dtype: Option<DType>,
    /// A QLoRA run's adapter merges into the dequantized quantized base it trained on,
    /// rather than into the full-precision base.
    pub as_trained: bool,
    pub quant: gguf::GgufQuant,
    pub max_shard_bytes: u64,
    /// A folder, or with one GGUF mode a `.gguf` file.
    pub output: PathBuf,
}

/// What an export wrote, by kind (`merge`, `gguf`, `gguf_lora`, `modelfile`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub written: Vec<(String, PathBuf)>,
    pub details: serde_json::Map<String, serde_json::Value>,
    pub warnings: Vec<String>,
}

/// The base's dtype from its config.json (`torch_dtype`), else f32.
fn base_dtype(base_dir: Option<&Path>) -> DType {
    let t = base_dir
        .and_then(|d| std::fs::read_to_string(d.join("config.json")).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("torch_dtype")
                .or_else(|| v.get("dtype"))
                .and_then(|x| x.as_str())
                .map(str::to_string)
        });
    match t.as_deref() {
        Some("bfloat16") => DType::BF16,
        Some("float16") => DType::F16,
        _ => DType::F32,
    }
}

/// Where an export stands, for a bar or a status line: the core only reports it, so the CLI
/// draws a bar per file on a terminal and the workbench a line, and neither waits in silence
/// while a large model's tensors are converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A step without a count: `loading <base>`, `merging the adapter`.
    Step(String),
    /// `done` of `total` tensors of `file` converted and written.
    Tensors {
        file: PathBuf,
        done: usize,
        total: usize,
    },
}

impl std::fmt::Display for Progress {
    /// `writing model-q8_0.gguf 120/272 tensors`: the file by name alone, as a status line
    /// has little room.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Step(s) => f.write_str(s),
            Progress::Tensors { file, done, total } => write!(
                f,
                "writing {} {done}/{total} tensors",
                file.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_else(|| file.to_string_lossy())
            ),
        }
    }
}

/// The writers' per-tensor callback, `(done, total)`.
pub type TensorProgress<'a> = &'a mut dyn FnMut(usize, usize);

/// `p` as a file beside it in `dir` names it (`./model-f16.gguf`).
fn relative(p: &Path, dir: &Path) -> String {
    match p.strip_prefix(dir) {
        Ok(r) => format!("./{}", r.display()),
        Err(_) => p.display().to_string(),
    }
}

/// A writer's `(done, total)` as [`Progress::Tensors`] of `file`.
fn tensors_of<'a>(
    file: &'a Path,
    progress: &'a mut dyn FnMut(Progress),
) -> impl FnMut(usize, usize) + 'a {
    move |done, total| {
        progress(Progress::Tensors {
            file: file.to_path_buf(),
            done,
            total,
        })
    }
}

/// Carries out `req`: the LoRA GGUF first (merging consumes the adapter), then the merged
/// folder and GGUF, then an Ollama Modelfile beside the GGUF. `progress` hears each step and
/// each tensor written.
pub fn export(
    req: &Request,
    runs_root: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report, ExportError> {
    let modes = [req.merge, req.gguf, req.gguf_lora]
        .iter()
        .filter(|m| **m)
        .count();
    if modes == 0 {
        return Err(ExportError::Invalid(
            "choose what to export: --merge, --gguf and/or --gguf-lora".into(),
        ));
    }
    let single_file = modes == 1
        && !req.merge
        && req
            .output
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let dir = if single_file {
        req.output
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    } else {
        req.output.clone()
    };
    let src = locate(req.source.as_deref(), req.model.as_deref(), runs_root)?;
    if req.gguf_lora && src.adapter.is_none() {
        return Err(ExportError::Invalid(
            "--gguf-lora needs a run or an adapter folder".into(),
        ));
    }
    progress(Progress::Step(format!(
        "loading {}{}",
        src.base,
        src.adapter
            .as_ref()
            .map(|p| format!(" + {}", p.display()))
            .unwrap_or_default()
    )));
    if req.as_trained && src.trained_on.is_none() {
        return Err(ExportError::Invalid(format!(
            "--as-trained: {} did not train on a quantized base (its config has no \
             model.quantization)",
            req.source.as_deref().unwrap_or(&src.base)
        )));
    }
    let mut loaded = load(&src, req.as_trained)?;
    let mut report = Report {
        warnings: loaded.warnings.clone(),
        ..Default::default()
    };
    let name = req
        .source
        .as_deref()
        .or(req.model.as_deref())
        .map(|s| {
            Path::new(s.trim_end_matches('/'))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| s.to_string())
        })
        .unwrap_or_else(|| "model".into());
    let add = |report: &mut Report, kind: &str, path: PathBuf, detail: serde_json::Value| {
        report.written.push((kind.to_string(), path.clone()));
        report.details.insert(
            kind.into(),
            serde_json::json!({"path": path, "report": detail}),
        );
    };
    let mut lora_file = None;
    if req.gguf_lora {
        let path = if single_file {
            req.output.clone()
        } else {
            dir.join("adapter.gguf")
        };
        progress(Progress::Step(format!("writing {}", path.display())));
        let r = lora_gguf::write(&loaded, &path, &name, &mut tensors_of(&path, progress))?;
        add(&mut report, "gguf_lora", path.clone(), serde_json::json!(r));
        lora_file = Some(path);
    }
    if req.merge || req.gguf {
        progress(Progress::Step("merging the adapter".into()));
        loaded.merge()?;
    }
    if req.merge {
        let dtype = req.dtype.unwrap_or_else(|| {
            if loaded.quantized {
                DType::BF16
            } else {
                base_dtype(loaded.base_dir.as_deref())
            }
        });
        progress(Progress::Step(format!(
            "writing {} ({})",
            dir.display(),
            hf::torch_name(dtype)
        )));
        let r = hf::write(
            &loaded,
            &dir,
            dtype,
            req.max_shard_bytes,
            &mut tensors_of(&dir, progress),
        )?;
        add(&mut report, "merge", dir.clone(), serde_json::json!(r));
    }
    let mut gguf_file = None;
    if req.gguf {
        let path = if single_file {
            req.output.clone()
        } else {
            dir.join(format!("model-{}.gguf", req.quant))
        };
        progress(Progress::Step(format!(
            "writing {} ({})",
            path.display(),
            req.quant
        )));
        let r = gguf::write(
            &loaded,
            &path,
            req.quant,
            &name,
            &mut tensors_of(&path, progress),
        )?;
        for f in &r.fallbacks {
            report.warnings.push(format!(
                "{f} (the width takes no {} block, as llama.cpp falls back)",
                req.quant
            ));
        }
        add(&mut report, "gguf", path.clone(), serde_json::json!(r));
        gguf_file = Some(path);
    }
    // An Ollama Modelfile beside the GGUF: the merged file, or the base plus the adapter.
    let from = match (&gguf_file, &lora_file) {
        (Some(g), _) => Some((relative(g, &dir), None)),
        (None, Some(l)) => Some((
            std::fs::canonicalize(&src.base)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| src.base.clone()),
            Some(relative(l, &dir)),
        )),
        _ => None,
    };
    if let Some((from, adapter)) = from {
        let params = loaded
            .base_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("generation_config.json")).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .map(|v| modelfile::params_from_generation_config(&v))
            .unwrap_or_default();
        let text = modelfile::render(&loaded.tokenizer, &from, adapter.as_deref(), &params);
        let path = dir.join("Modelfile");
        crate::files::write_atomic(&path, text.as_bytes())
            .map_err(|e| ExportError::io(&path, e))?;
        add(&mut report, "modelfile", path, serde_json::Value::Null);
    }
    Ok(report)
}
