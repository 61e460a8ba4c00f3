//! Which base an adapter belongs to. An adapter's files name the model it was trained on
//! (`base_model_name_or_path`, which tunelab sets to the run's `model.path`); before an
//! adapter is put on a model, [`fit`] says whether that model is the one (the same spec),
//! one of the same shape (a GGUF of the same checkpoint, another precision), or a
//! different model, whose adapter must be refused by name instead of failing on a tensor.
//! Chat (CLI and workbench) and `serve` all ask here.

use super::{source, Arch, ModelConfig};
use std::path::{Path, PathBuf};

/// What must agree for an adapter's tensors to fit a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub arch: Arch,
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
}

impl Shape {
    pub fn of(c: &ModelConfig) -> Self {
        Shape {
            arch: c.arch,
            layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            vocab: c.vocab_size,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {} layers, hidden {}, vocab {}",
            self.arch.name(),
            self.layers,
            self.hidden,
            self.vocab
        )
    }
}

/// How an adapter's base relates to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// The model is the one the adapter names.
    Same,
    /// Another file of the same shape (a GGUF of the same checkpoint, another dtype): the
    /// adapter loads, and it answers as it would on its own base only if the weights match.
    SameShape { trained_on: String },
    /// A different model: the adapter cannot go on it.
    Differs {
        trained_on: String,
        trained: Shape,
        model: Shape,
    },
    /// The adapter names no base, or one that cannot be read here (a hub id not in the
    /// cache); loading checks the tensors' shapes.
    Unknown { trained_on: Option<String> },
}

impl Fit {
    pub fn differs(&self) -> bool {
        matches!(self, Fit::Differs { .. })
    }

    /// One line naming both bases, for a refused adapter.
    pub fn refusal(&self, adapter: &Path, model: &str) -> Option<String> {
        match self {
            Fit::Differs {
                trained_on,
                trained,
                model: shape,
            } => Some(format!(
                "adapter {} was trained on {trained_on} ({trained}), not on {model} ({shape})",
                adapter.display(),
            )),
            _ => None,
        }
    }
}

/// The base an adapter folder names (`base_model_name_or_path` in `adapter_config.json`).
pub fn trained_on(adapter: &Path) -> Option<String> {
    let text = std::fs::read_to_string(adapter.join("adapter_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("base_model_name_or_path")?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// What identifies a base: the spec as written, its files on this machine (canonical), and
/// its shape. Read once on a worker ([`BaseId::read`]); comparing two is then pure, so
/// the workbench can mark and refuse adapters without touching the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseId {
    pub spec: String,
    /// The folder or file the spec names here, canonicalized (a hub id: its cached
    /// snapshot), when it exists.
    pub local: Option<PathBuf>,
    /// Its shape, when its config could be read (never downloading).
    pub shape: Option<Shape>,
}

impl BaseId {
    /// Reads `spec`'s identity (cached per spec and modification time, so listing many
    /// runs of one base reads its config once).
    pub fn read(spec: &str) -> BaseId {
        use std::sync::{Mutex, OnceLock};
        type Cache =
            Mutex<std::collections::HashMap<String, (Option<std::time::SystemTime>, BaseId)>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let local = local(spec);
        let stamp = local
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok());
        let cache = CACHE.get_or_init(Default::default);
        if let Ok(c) = cache.lock() {
            if let Some((t, id)) = c.get(spec) {
                if *t == stamp && id.local == local {
                    return id.clone();
                }
            }
        }
        let id = BaseId {
            spec: spec.to_string(),
            shape: source::config_cached(spec).ok().map(|c| Shape::of(&c)),
            local,
        };
        if let Ok(mut c) = cache.lock() {
            c.insert(spec.to_string(), (stamp, id.clone()));
        }
        id
    }

    /// The identity of a model loaded from `spec` with config `c`.
    pub fn of_loaded(spec: &str, c: &ModelConfig) -> BaseId {
        BaseId {
            spec: spec.to_string(),
            local: local(spec),
            shape: Some(Shape::of(c)),
        }
    }

    /// Whether both name the same files: equal specs, or the same canonical path (a hub
    /// id and its cached snapshot folder, two spellings of one path).
    pub fn same(&self, other: &BaseId) -> bool {
        self.spec == other.spec || (self.local.is_some() && self.local == other.local)
    }

    /// How an adapter trained on `self` fits the model `model`.
    pub fn fit(&self, model: &BaseId) -> Fit {
        if self.same(model) {
            return Fit::Same;
        }
        match (self.shape, model.shape) {
            (Some(a), Some(b)) if a == b => Fit::SameShape {
                trained_on: self.spec.clone(),
            },
            (Some(trained), Some(model)) => Fit::Differs {
                trained_on: self.spec.clone(),
                trained,
                model,
            },
            _ => Fit::Unknown {
                trained_on: Some(self.spec.clone()),
            },
        }
    }
}

/// Whether two model specs name the same files (see [`BaseId::same`]).
pub fn same_spec(a: &str, b: &str) -> bool {
    a == b || matches!((local(a), local(b)), (Some(x), Some(y)) if x == y)
}

/// A spec's files on this machine, canonicalized, without downloading anything.
fn local(spec: &str) -> Option<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        return p.canonicalize().ok();
    }
    super::hub::cached_snapshot(spec).and_then(|d| d.canonicalize().ok())
}

/// How an adapter trained on `trained_on` fits the model `spec` whose config is `model`.
/// Reads at most the other base's config (never downloads).
pub fn fit(trained_on: Option<&str>, spec: &str, model: &ModelConfig) -> Fit {
    match trained_on {
        None => Fit::Unknown { trained_on: None },
        Some(base) => BaseId::read(base).fit(&BaseId::of_loaded(spec, model)),
    }
}

/// [`fit`] for an adapter folder on a loaded model; `Err` with one line naming both bases
/// when it belongs to another model.
pub fn check(adapter: &Path, spec: &str, model: &ModelConfig) -> Result<Fit, String> {
    let f = fit(trained_on(adapter).as_deref(), spec, model);
    match f.refusal(adapter, spec) {
        Some(why) => Err(why),
        None => Ok(f),
    }
}

/// Names a model's base in an error when an adapter's tensors do not fit it (an adapter
/// whose base could not be read beforehand).
pub fn explain_misfit(adapter: &Path, spec: &str, model: &ModelConfig, err: &str) -> String {
    match trained_on(adapter) {
        Some(base) => format!(
            "adapter {} was trained on {base}, and its tensors do not fit {spec} ({}): {err}",
            adapter.display(),
            Shape::of(model)
        ),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_compare_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m");
        std::fs::create_dir_all(&m).unwrap();
        let via = dir.path().join("m/../m");
        assert!(same_spec(m.to_str().unwrap(), via.to_str().unwrap()));
        assert!(same_spec("org/name", "org/name"));
        assert!(!same_spec(m.to_str().unwrap(), "org/other"));
    }

    #[test]
    fn adapters_name_their_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("adapter_config.json"),
            r#"{"base_model_name_or_path": " org/base ", "r": 8}"#,
        )
        .unwrap();
        assert_eq!(trained_on(dir.path()).as_deref(), Some("org/base"));
        std::fs::write(
            dir.path().join("adapter_config.json"),
            r#"{"base_model_name_or_path": ""}"#,
        )
        .unwrap();
        assert_eq!(trained_on(dir.path()), None);
    }
}
