//! The adapters runs wrote: each run's final `adapter/` and its checkpoints, with the base
//! each was trained on. Chat offers them, follows a run to its newest one (a checkpoint while
//! it trains, the final adapter once it is done), and falls back to that when a picked
//! checkpoint has been pruned (`train.keep_checkpoints`), so it never loads a dead path.

use super::RunDir;
use crate::model::base;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which of a run's adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `adapter/`, written when the run ends or stops.
    Final,
    /// `checkpoints/step-N`.
    Checkpoint(u64),
}

/// One adapter a run wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAdapter {
    /// The run's id (its folder's name).
    pub run: String,
    pub run_dir: PathBuf,
    /// The PEFT folder.
    pub dir: PathBuf,
    pub which: Which,
    /// The model it was trained on: the run's `model.path`, else the adapter's
    /// `base_model_name_or_path`.
    pub base: Option<String>,
}

impl RunAdapter {
    /// `run/adapter` or `run/step-N`.
    pub fn label(&self) -> String {
        match self.which {
            Which::Final => format!("{}/adapter", self.run),
            Which::Checkpoint(s) => format!("{}/step-{s}", self.run),
        }
    }
}

/// The finished `step-N` folders under `checkpoints`, oldest first (temporary folders are
/// not listed).
pub fn checkpoint_dirs(checkpoints: &Path) -> Vec<(u64, PathBuf)> {
    numbered_dirs(checkpoints, "step-")
}

/// The folders of `dir` named `PREFIX` and a step (`step-40`, a Hugging Face Trainer's
/// `checkpoint-40`), oldest first.
pub fn numbered_dirs(dir: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix(prefix)?.parse().ok()?;
            e.path().is_dir().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// A run's checkpoints, oldest first: tunelab's `checkpoints/step-N`, and an engine run's
/// `engine/output/checkpoint-N` that hold a PEFT adapter.
pub fn run_checkpoints(run: &RunDir) -> Vec<(u64, PathBuf)> {
    let mut out = checkpoint_dirs(&run.checkpoints());
    out.extend(
        numbered_dirs(&run.engine().join("output"), "checkpoint-")
            .into_iter()
            .filter(|(_, p)| p.join("adapter_config.json").is_file()),
    );
    out.sort();
    out
}

/// The base a run trained on, from its `config.yaml` (`model.path`).
fn run_base(run: &RunDir) -> Option<String> {
    let text = std::fs::read_to_string(run.config()).ok()?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    v.get("model")?
        .get("path")?
        .as_str()
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// A run's adapters: the final one first, then its checkpoints, newest first.
pub fn of_run(run: &RunDir) -> Vec<RunAdapter> {
    let id = run
        .root
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut found: Vec<(PathBuf, Which)> = Vec::new();
    if run.has_adapter() {
        found.push((run.adapter(), Which::Final));
    }
    for (step, dir) in run_checkpoints(run).into_iter().rev() {
        if dir.join("adapter_config.json").is_file() {
            found.push((dir, Which::Checkpoint(step)));
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let from_run = run_base(run);
    found
        .into_iter()
        .map(|(dir, which)| RunAdapter {
            run: id.clone(),
            run_dir: run.root.clone(),
            base: from_run.clone().or_else(|| base::trained_on(&dir)),
            dir,
            which,
        })
        .collect()
}

/// The adapter Chat follows a run to: its final adapter once written, else its newest
/// checkpoint.
pub fn newest(run: &RunDir) -> Option<RunAdapter> {
    of_run(run).into_iter().next()
}

/// Every adapter of the runs under `root`, newest run first.
pub fn list(root: &Path) -> Vec<RunAdapter> {
    super::list(root)
        .iter()
        .flat_map(|r| of_run(&RunDir::new(&r.dir)))
        .collect()
}

/// The identity of each distinct base the adapters name (see [`base::BaseId`]), read
/// once per base: what the workbench compares a model with, without reading files itself.
pub fn base_ids(adapters: &[RunAdapter]) -> HashMap<String, base::BaseId> {
    let mut out = HashMap::new();
    for b in adapters.iter().filter_map(|a| a.base.as_deref()) {
        if !out.contains_key(b) {
            out.insert(b.to_string(), base::BaseId::read(b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(dir: &Path, base: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("adapter_config.json"),
            format!(r#"{{"base_model_name_or_path": "{base}"}}"#),
        )
        .unwrap();
    }

    #[test]
    fn a_run_offers_its_final_adapter_then_its_checkpoints() {
        let root = tempfile::tempdir().unwrap();
        let run = RunDir::new(root.path().join("r-1"));
        adapter(&run.checkpoints().join("step-100"), "org/base");
        adapter(&run.checkpoints().join("step-200"), "org/base");
        std::fs::create_dir_all(run.checkpoints().join(".tmp-step-300")).unwrap();
        let labels = |v: Vec<RunAdapter>| v.iter().map(RunAdapter::label).collect::<Vec<_>>();
        assert_eq!(labels(of_run(&run)), ["r-1/step-200", "r-1/step-100"]);
        assert_eq!(newest(&run).unwrap().which, Which::Checkpoint(200));
        assert_eq!(newest(&run).unwrap().base.as_deref(), Some("org/base"));
        adapter(&run.adapter(), "org/base");
        assert_eq!(
            labels(of_run(&run)),
            ["r-1/adapter", "r-1/step-200", "r-1/step-100"]
        );
        assert_eq!(newest(&run).unwrap().which, Which::Final);
        // The run's config names the base when it has one.
        std::fs::write(run.config(), "model:\n  path: /models/tiny\n").unwrap();
        assert_eq!(newest(&run).unwrap().base.as_deref(), Some("/models/tiny"));
        assert!(newest(&RunDir::new(root.path().join("none"))).is_none());
    }
}
