//! Where a user's work lives. A workspace is a project folder (the datasets of a project,
//! its runs in `<project>/.tunelab/runs`, an optional `tunelab.yaml`) or, without one, the
//! data folder with the built-in demo. Every run is also listed under `<data>/runs`, so the
//! global list shows them all.

mod demo;
mod place;

pub use crate::files::walk;

pub use demo::{demo_model_spec, Demo, PERSONA_DPO, PERSONA_SFT};
pub use place::Workspace;

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The optional workspace file at a project's root.
pub const WORKSPACE_FILE: &str = "tunelab.yaml";

/// Folders a dataset scan never enters.
const SKIP_DIRS: [&str; 5] = [".git", "target", "node_modules", "__pycache__", "runs"];

/// Model and metadata files that are JSON but not datasets.
const NOT_DATASETS: [&str; 9] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "adapter_config.json",
    "status.json",
    "trainer_state.json",
    "model.safetensors.index.json",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceFile {
    /// Where this workspace's runs go (relative to the project).
    #[serde(default)]
    runs: Option<PathBuf>,
}

/// A project folder opened as a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub root: PathBuf,
    /// Where its runs go: `<root>/.tunelab/runs` unless `tunelab.yaml` says otherwise.
    pub runs: PathBuf,
}

impl Project {
    /// Opens `root` (which must be a folder) as a workspace.
    pub fn open(root: &Path) -> Result<Project, String> {
        if !root.is_dir() {
            return Err(format!("{}: no such folder", root.display()));
        }
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let file = root.join(WORKSPACE_FILE);
        let cfg: WorkspaceFile = match std::fs::read_to_string(&file) {
            Ok(text) => {
                serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?
            }
            Err(_) => WorkspaceFile::default(),
        };
        let runs = match cfg.runs {
            Some(p) if p.is_absolute() => p,
            Some(p) => root.join(p),
            None => root.join(".tunelab/runs"),
        };
        Ok(Project { root, runs })
    }

    /// `dir` as a workspace when it looks like one: it has a `tunelab.yaml`, or dataset
    /// files at its top level or in a `data/` or `datasets/` folder.
    pub fn detect(dir: &Path) -> Option<Project> {
        let looks = dir.join(WORKSPACE_FILE).is_file()
            || !datasets(dir, 0).is_empty()
            || ["data", "datasets"]
                .iter()
                .any(|d| !datasets(&dir.join(d), 1).is_empty());
        looks.then(|| Project::open(dir).ok()).flatten()
    }
}

/// Whether `name` is a dataset file by its name.
pub fn is_dataset_name(name: &str) -> bool {
    [".json", ".jsonl", ".ndjson", ".parquet"]
        .iter()
        .any(|e| name.ends_with(e))
        && !NOT_DATASETS.contains(&name)
}

/// The file that marks the run queue's folder (`<data>/queue/`), whose `queue.json` is no
/// dataset.
const QUEUE_MARK: &str = "queue.lock";

/// Dataset files under `root`, `depth` folders deep, sorted; hidden folders, `.git`,
/// `target`, `node_modules`, `runs/`, the run queue's folder and model folders (those with
/// a `config.json`) are left out. At most `MAX_FILES`.
pub fn datasets(root: &Path, depth: usize) -> Vec<PathBuf> {
    const MAX_FILES: usize = 5000;
    let mut out = Vec::new();
    walk(root, depth, &mut |p, is_dir| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_dir {
            return !SKIP_DIRS.contains(&name.as_str())
                && !name.ends_with("-model")
                && !p.join("config.json").is_file()
                && !p.join(QUEUE_MARK).is_file()
                && out.len() < MAX_FILES;
        }
        if is_dataset_name(&name) && out.len() < MAX_FILES {
            out.push(p.to_path_buf());
        }
        false
    });
    out
}

/// SFT JSON Lines files under `root` that a chat exchange can be appended to, with their
/// formats; `default` (OpenAI format) first.
pub fn exchange_targets(root: &Path, default: &Path) -> Vec<(PathBuf, crate::data::Format)> {
    let mut out = vec![(default.to_path_buf(), crate::data::Format::Openai)];
    for p in datasets(root, 6) {
        if p == default || p.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        if let Ok(ds) = crate::data::Dataset::open(&p, None) {
            if ds.kind() == crate::data::Kind::Sft {
                out.push((p, ds.format));
            }
        }
    }
    out
}

/// A dataset file and its size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The [`datasets`] under `root` with their sizes.
pub fn dataset_files(root: &Path, depth: usize) -> Vec<FileEntry> {
    datasets(root, depth)
        .into_iter()
        .map(|path| FileEntry {
            bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
            path,
        })
        .collect()
}

/// Where a converted copy of `source` goes: beside it when it is in the workspace at
/// `root`, else `outputs`. A project keeps its own files, even when the source is the
/// global demo.
pub fn convert_folder(source: &Path, root: &Path, outputs: &Path) -> PathBuf {
    match source.parent() {
        Some(dir) if source.starts_with(root) => dir.to_path_buf(),
        _ => outputs.to_path_buf(),
    }
}

/// `path` as a file under the first of `bases` that holds it, else as given.
pub fn find_file(path: &Path, bases: &[&Path]) -> PathBuf {
    bases
        .iter()
        .map(|b| b.join(path))
        .find(|c| c.is_file())
        .unwrap_or_else(|| path.to_path_buf())
}

/// A model's `spec` resolved against the workspace at `base`: relative to it when it is
/// there, else as given (a hub id, an absolute path, or one relative to the current folder).
pub fn resolve_model(spec: &str, base: &Path) -> String {
    let p = Path::new(spec);
    if p.is_absolute() || p.exists() || !base.join(p).exists() {
        spec.to_string()
    } else {
        base.join(p).display().to_string()
    }
}

/// Saves `config` as `<root>/presets/<name>.yaml` (its `name`, else `custom`).
pub fn save_preset(root: &Path, config: &crate::config::RunConfig) -> Result<PathBuf, String> {
    let name = config.name.clone().unwrap_or_else(|| "custom".into());
    let path = root.join("presets").join(format!("{name}.yaml"));
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
    let yaml = serde_yaml::to_string(config).map_err(|e| e.to_string())?;
    crate::files::write_atomic(&path, yaml.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The runs of `runs` that wrote a PEFT adapter (`adapter/adapter_config.json`), in order.
pub fn runs_with_adapter(runs: &[crate::runs::RunSummary]) -> Vec<&crate::runs::RunSummary> {
    runs.iter()
        .filter(|r| crate::runs::RunDir::new(&r.dir).has_adapter())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_resolve_against_the_workspace_first() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("data")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("x.jsonl"), "{}\n").unwrap();
        std::fs::write(a.join("data/y.jsonl"), "{}\n{}\n").unwrap();
        assert_eq!(
            find_file(Path::new("x.jsonl"), &[&a, &b]),
            b.join("x.jsonl")
        );
        assert_eq!(
            find_file(Path::new("none.jsonl"), &[&a, &b]),
            PathBuf::from("none.jsonl")
        );
        let listed = dataset_files(&a, 2);
        assert_eq!(
            listed,
            vec![FileEntry {
                path: a.join("data/y.jsonl"),
                bytes: 6
            }]
        );
        // A copy goes beside a workspace file, else into the outputs.
        let out = dir.path().join("out");
        assert_eq!(
            convert_folder(&a.join("data/y.jsonl"), &a, &out),
            a.join("data")
        );
        assert_eq!(convert_folder(&b.join("x.jsonl"), &a, &out), out);
        // A model folder in the workspace resolves there; a hub id stays as it is.
        std::fs::create_dir_all(a.join("tiny-model")).unwrap();
        assert_eq!(
            resolve_model("tiny-model", &a),
            a.join("tiny-model").display().to_string()
        );
        assert_eq!(resolve_model("org/name", &a), "org/name");
    }
}
