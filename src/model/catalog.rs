//! The models a user can pick: model folders and GGUF files in the workspace and every
//! model in the local Hugging Face cache (`<cache>/models--org--name/snapshots/<rev>`), each
//! with its architecture, whether tunelab supports it, its parameter count and its size on
//! disk. The workbench's model picker lists these; a typed hub id is always accepted too.

use super::config::ModelConfig;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A folder or GGUF file in the workspace (or the demo).
    Workspace,
    /// A model in the Hugging Face cache, named by its hub id.
    HubCache,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// What `model.path` takes: a path, or `org/name` for a cached hub model.
    pub spec: String,
    /// Short name to show.
    pub name: String,
    pub source: Source,
    /// `llama`, `qwen2`, … as the config or GGUF names it.
    pub arch: Option<String>,
    /// Why tunelab cannot load it, if it cannot.
    pub unsupported: Option<String>,
    pub params: Option<u64>,
    pub disk_bytes: u64,
}

impl ModelEntry {
    /// Bytes the weights take in memory at `bytes_per_param`.
    pub fn memory(&self, bytes_per_param: f64) -> Option<u64> {
        self.params.map(|p| (p as f64 * bytes_per_param) as u64)
    }
}

fn folder_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// A model folder (config.json) described.
fn folder_entry(dir: &Path, spec: String, name: String, source: Source) -> ModelEntry {
    let cfg_path = dir.join("config.json");
    let raw_arch = std::fs::read(&cfg_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("model_type")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        });
    let (params, unsupported) = match ModelConfig::from_file(&cfg_path) {
        Ok(c) => (Some(c.parameter_count() as u64), None),
        Err(e) => (None, Some(format!("{}: {}", e.field, e.message))),
    };
    let unsupported = unsupported.or_else(|| {
        (!dir.join("tokenizer.json").is_file() && !dir.join("tokenizer_config.json").is_file())
            .then(|| "no tokenizer.json".to_string())
    });
    ModelEntry {
        spec,
        name,
        source,
        arch: raw_arch,
        unsupported,
        params,
        disk_bytes: folder_size(dir),
    }
}

fn gguf_entry(path: &Path) -> ModelEntry {
    let (arch, params, unsupported) = match super::gguf::summary(path) {
        Ok((a, p)) => {
            let ok = super::config::Arch::from_gguf(&a).is_some();
            let why = (!ok).then(|| {
                format!(
                    "GGUF architecture {a:?}; expected one of {}",
                    super::config::Arch::supported_gguf()
                )
            });
            (Some(a), Some(p), why)
        }
        Err(e) => (None, None, Some(e.to_string())),
    };
    ModelEntry {
        spec: path.display().to_string(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source: Source::Workspace,
        arch,
        unsupported,
        params,
        disk_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
    }
}

/// Model folders (with a `config.json`) and `.gguf` files under `root`, `depth` deep.
pub fn in_folder(root: &Path, depth: usize) -> Vec<ModelEntry> {
    let mut out = Vec::new();
    crate::files::walk(root, depth, &mut |p, is_dir| {
        if is_dir && p.join("config.json").is_file() {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(folder_entry(
                p,
                p.display().to_string(),
                name,
                Source::Workspace,
            ));
            return false;
        }
        if !is_dir
            && p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            out.push(gguf_entry(p));
        }
        is_dir
    });
    out
}

/// The snapshot a cached repo's `refs/main` points at, else its newest snapshot.
fn snapshot(repo: &Path) -> Option<PathBuf> {
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let s = repo.join("snapshots").join(rev.trim());
        if s.is_dir() {
            return Some(s);
        }
    }
    std::fs::read_dir(repo.join("snapshots"))
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// Every model in the Hugging Face cache at `cache` (`$HF_HOME/hub`), by hub id.
pub fn in_hub_cache(cache: &Path) -> Vec<ModelEntry> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut repos: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("models--"))
        })
        .collect();
    repos.sort();
    repos
        .into_iter()
        .filter_map(|repo| {
            let dir_name = repo.file_name()?.to_string_lossy().into_owned();
            let id = dir_name.strip_prefix("models--")?.replacen("--", "/", 1);
            let snap = snapshot(&repo)?;
            if !snap.join("config.json").is_file() {
                return None;
            }
            Some(folder_entry(&snap, id.clone(), id, Source::HubCache))
        })
        .collect()
}

/// The workspace's models (`roots`, a few folders deep), then the hub cache's.
pub fn list(roots: &[&Path], cache: &Path) -> Vec<ModelEntry> {
    let mut out: Vec<ModelEntry> = Vec::new();
    for r in roots {
        for e in in_folder(r, 3) {
            if !out.iter().any(|o| o.spec == e.spec) {
                out.push(e);
            }
        }
    }
    out.extend(in_hub_cache(cache));
    out
}
