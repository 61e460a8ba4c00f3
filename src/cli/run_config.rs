//! A run's config as the CLI reads it (a file or a preset, `--set`, checked, paths made
//! absolute) and where a new run's folder goes: shared by `train`, `queue add`, `sweep` and
//! `export-config`.

use std::path::{Path, PathBuf};
use tunelab::config::{RunConfig, PRESETS};
use tunelab::paths::Paths;
use tunelab::runs::{self, RunDir};

/// A config ready to train: CONFIG read (a file or a preset), `--set` applied, validated,
/// its relative paths made absolute. Errors name CONFIG and the field.
pub fn ready_config(spec: &str, sets: &[String], paths: &Paths) -> Result<RunConfig, String> {
    let (mut cfg, bases) = load_config(spec, paths)?;
    cfg.apply_sets(sets)?;
    let issues = cfg.validate();
    if !issues.is_empty() {
        let lines: Vec<String> = issues.iter().map(|i| format!("{spec}: {i}")).collect();
        return Err(lines.join("\nerror: "));
    }
    let base_refs: Vec<&Path> = bases.iter().map(PathBuf::as_path).collect();
    cfg.resolve_paths(&base_refs)
        .map_err(|e| format!("{spec}: {e}"))?;
    Ok(cfg)
}

/// A fresh run folder for `cfg`: `--run-dir`, else `<name>-<time>` in the project's runs
/// folder (inside a project) or the data folder's `runs/`.
pub fn new_run_dir(cfg: &RunConfig, run_dir: Option<&Path>, root: &Path) -> RunDir {
    match run_dir {
        Some(d) => RunDir::new(d),
        None => {
            let here = runs_folder(root);
            let name = cfg.name.clone().unwrap_or_else(|| "run".into());
            RunDir::new(here.join(runs::new_id(&name, &here)))
        }
    }
}

/// Where new runs go: the project's runs folder inside a project, else `root` (the data
/// folder's `runs/`).
pub fn runs_folder(root: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|d| tunelab::workspace::Project::detect(&d))
        .map_or_else(|| root.to_path_buf(), |p| p.runs)
}

/// Reads CONFIG (a file or a preset name) and the folders its relative paths resolve against.
pub fn load_config(spec: &str, paths: &Paths) -> Result<(RunConfig, Vec<PathBuf>), String> {
    let file = Path::new(spec);
    let cwd = std::env::current_dir().unwrap_or_default();
    let (cfg, mut bases) = if file.is_file() {
        let cfg = RunConfig::load(file).map_err(|e| e.to_string())?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        (
            cfg,
            vec![if dir.as_os_str().is_empty() {
                cwd.clone()
            } else {
                dir
            }],
        )
    } else if let Some((name, text)) = PRESETS.iter().find(|(n, _)| *n == spec) {
        let cfg = RunConfig::from_yaml(text, name).map_err(|e| e.to_string())?;
        (cfg, Vec::new())
    } else {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "{spec}: no such file, and no preset by that name (presets: {})",
            names.join(", ")
        ));
    };
    bases.push(cwd);
    bases.push(paths.data.clone());
    // Configs that name the demo workspace (the tiny-demo preset) create it on demand, as
    // the workbench does on its first start.
    let demo = tunelab::workspace::Demo::new(&paths.data);
    let names_demo = [cfg.model.path.as_str(), cfg.data.train.as_str()]
        .iter()
        .any(|p| p.starts_with("demo/"));
    if names_demo && !demo.exists() {
        demo.ensure()
            .map_err(|e| format!("creating the demo workspace: {e}"))?;
    }
    Ok((cfg, bases))
}
