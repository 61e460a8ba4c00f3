//! What a server serves: one base model and its adapters, each under its own model id (as
//! vLLM lists LoRA modules). The base is loaded once, as `tunelab chat` loads it (dequantized
//! once when that stays small, the model's chat template or `--template`); every adapter is
//! a [`Model::bare_base`] of it with the adapter loaded, so its tensors are shared and an
//! adapter costs only its LoRA weights.

use crate::infer::load;
use crate::model::Model;
use crate::template::Encoder;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error("two models would be served as {0:?}; name one with NAME=PATH")]
    DuplicateId(String),
}

/// An adapter to serve: `PATH` or `NAME=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSpec {
    pub name: Option<String>,
    pub path: PathBuf,
}

impl AdapterSpec {
    /// `NAME=PATH` when the part before the first `=` holds no path separator, else a path.
    pub fn parse(arg: &str) -> Self {
        match arg.split_once('=') {
            Some((name, path)) if !name.is_empty() && !name.contains(['/', '\\']) => AdapterSpec {
                name: Some(name.to_string()),
                path: PathBuf::from(path),
            },
            _ => AdapterSpec {
                name: None,
                path: PathBuf::from(arg),
            },
        }
    }

    /// The model id: the given name, else the folder's name (a run's `adapter/` folder goes
    /// by the run folder's name).
    pub fn id(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let path = self
            .path
            .canonicalize()
            .unwrap_or_else(|_| self.path.clone());
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let run = path
            .parent()
            .filter(|_| path.file_name().is_some_and(|n| n == "adapter"))
            .filter(|r| r.join("status.json").is_file() || r.join("events.jsonl").is_file());
        run.and_then(name)
            .or_else(|| name(&path))
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct ServeSpec {
    /// A model folder, a `.gguf` file or a hub id.
    pub model: String,
    /// The base's model id; default: a hub id as given, else the file's stem or the folder's
    /// name.
    pub name: Option<String>,
    pub adapters: Vec<AdapterSpec>,
    /// `model`, a built-in template name, or a Jinja file.
    pub template: String,
    pub template_kwargs: Map<String, Value>,
}

impl ServeSpec {
    /// The base's model id.
    pub fn base_id(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let path = Path::new(&self.model);
        let is_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if is_gguf {
            if let Some(stem) = path.file_stem() {
                return stem.to_string_lossy().into_owned();
            }
        }
        if path.is_dir() {
            let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            if let Some(n) = path.file_name() {
                return n.to_string_lossy().into_owned();
            }
        }
        self.model.clone()
    }
}

/// One model id a client can ask for.
#[derive(Debug)]
pub struct Served {
    pub id: String,
    /// For an adapter: the base's id (`/v1/models` lists it as `parent`).
    pub parent: Option<String>,
    /// For an adapter: its folder.
    pub adapter: Option<PathBuf>,
    pub model: Arc<Model>,
}

/// The base and its adapters, with the one encoder they share.
#[derive(Debug)]
pub struct Registry {
    /// The base first, then the adapters in the order given.
    pub models: Vec<Served>,
    pub encoder: Arc<Encoder>,
    /// The base's context length (`max_position_embeddings`).
    pub context: usize,
    /// Unix seconds at load (`created` in `/v1/models`).
    pub created: u64,
}

impl Registry {
    /// Loads the base (CPU), then each adapter onto a shared-storage copy of it; an adapter
    /// trained on another model is refused, naming both bases.
    pub fn load(spec: &ServeSpec) -> Result<Registry, LoadError> {
        let base = load::base(&spec.model, &spec.template, spec.template_kwargs.clone())?;
        let base_id = spec.base_id();
        let mut models = Vec::with_capacity(1 + spec.adapters.len());
        for a in &spec.adapters {
            let m = base.with_adapter(&a.path)?;
            let id = a.id();
            if id == base_id || models.iter().any(|s: &Served| s.id == id) {
                return Err(LoadError::DuplicateId(id));
            }
            models.push(Served {
                id,
                parent: Some(base_id.clone()),
                adapter: Some(a.path.clone()),
                model: Arc::new(m),
            });
        }
        let context = base.model.config.max_position_embeddings;
        models.insert(
            0,
            Served {
                id: base_id,
                parent: None,
                adapter: None,
                model: Arc::new(base.model),
            },
        );
        Ok(Registry {
            models,
            encoder: Arc::new(base.encoder),
            context,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// The model a request names (`None`: the base).
    pub fn get(&self, id: Option<&str>) -> Option<&Served> {
        match id {
            None => self.models.first(),
            Some(id) => self.models.iter().find(|m| m.id == id),
        }
    }

    pub fn ids(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.id.as_str()).collect()
    }

    /// The `/v1/models` body.
    pub fn list_json(&self) -> Value {
        let data: Vec<Value> = self.models.iter().map(|m| self.model_json(m)).collect();
        serde_json::json!({"object": "list", "data": data})
    }

    /// One entry of `/v1/models` (vLLM's fields: `root` is the base, `parent` an adapter's
    /// base).
    pub fn model_json(&self, m: &Served) -> Value {
        let root = m.parent.clone().unwrap_or_else(|| m.id.clone());
        serde_json::json!({
            "id": m.id,
            "object": "model",
            "created": self.created,
            "owned_by": "tunelab",
            "root": root,
            "parent": m.parent,
            "max_model_len": self.context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_ids() {
        let a = AdapterSpec::parse("pirate=/x/run-3/adapter");
        assert_eq!(a.name.as_deref(), Some("pirate"));
        assert_eq!(a.path, PathBuf::from("/x/run-3/adapter"));
        assert_eq!(a.id(), "pirate");
        let a = AdapterSpec::parse("/x/a=b/my-adapter");
        assert_eq!(a.name, None);
        assert_eq!(a.id(), "my-adapter");
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run-7");
        std::fs::create_dir_all(run.join("adapter")).unwrap();
        std::fs::write(run.join("status.json"), "{}").unwrap();
        let a = AdapterSpec::parse(run.join("adapter").to_str().unwrap());
        assert_eq!(a.id(), "run-7", "a run's adapter goes by the run's name");
        std::fs::create_dir_all(dir.path().join("plain/adapter")).unwrap();
        let a = AdapterSpec::parse(dir.path().join("plain/adapter").to_str().unwrap());
        assert_eq!(a.id(), "adapter");
    }

    #[test]
    fn base_ids() {
        let spec = |m: &str| ServeSpec {
            model: m.into(),
            ..Default::default()
        };
        assert_eq!(spec("/m/SmolLM2.Q4_1.gguf").base_id(), "SmolLM2.Q4_1");
        assert_eq!(
            spec("HuggingFaceTB/SmolLM2-135M-Instruct").base_id(),
            "HuggingFaceTB/SmolLM2-135M-Instruct"
        );
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("tiny-model");
        std::fs::create_dir_all(&m).unwrap();
        assert_eq!(spec(m.to_str().unwrap()).base_id(), "tiny-model");
        let named = ServeSpec {
            name: Some("base".into()),
            ..spec("x")
        };
        assert_eq!(named.base_id(), "base");
    }
}
