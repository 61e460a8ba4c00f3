//! Relative paths in a run configuration, made absolute before a run starts, so the run's
//! own `config.yaml` names exactly what it used.

use super::{ConfigIssue, Method, RunConfig};
use std::path::Path;
use strum::IntoEnumIterator;

impl RunConfig {
    /// Makes relative paths absolute: each is looked up against `bases` in order and the
    /// first that exists wins; hub ids that exist nowhere locally are left alone.
    pub fn resolve_paths(&mut self, bases: &[&Path]) -> Result<(), ConfigIssue> {
        // An absolute path names the one place it was looked for: say so once.
        let missing = |field: &str, p: &str| ConfigIssue {
            path: field.into(),
            message: if Path::new(p).is_absolute() {
                format!("{p:?}: no such folder or file")
            } else {
                format!(
                    "{p:?}: no such folder or file (looked at {})",
                    tried(p, bases)
                )
            },
        };
        match find(&self.model.path, bases) {
            Some(p) => self.model.path = p,
            None if is_hub_id(&self.model.path, bases) => {}
            None => return Err(missing("model.path", &self.model.path)),
        }
        let data = |field: &str, v: &mut String| -> Result<(), ConfigIssue> {
            *v = find(v, bases).ok_or_else(|| missing(field, v))?;
            Ok(())
        };
        data("data.train", &mut self.data.train)?;
        if let Some(e) = self.data.eval.as_mut() {
            data("data.eval", e)?;
        }
        // Task files; a hub id found nowhere locally stays one, `held_out` is no file.
        for (i, t) in self.eval.tasks.iter_mut().enumerate() {
            for (kind, v) in [("bench", &mut t.bench), ("generate", &mut t.generate)] {
                let Some(v) = v.as_mut() else { continue };
                if v == super::eval_tasks::HELD_OUT {
                    continue;
                }
                match find(v, bases) {
                    Some(p) => *v = p,
                    None if kind == "bench" && is_hub_id(v, bases) => {}
                    None => return Err(missing(&format!("eval.tasks[{i}].{kind}"), v)),
                }
            }
        }
        // A reward command's program and arguments that name files (`score.py`,
        // `./rewards/check`) become absolute; bare program names (`python3`) stay for PATH.
        for (i, r) in self.grpo.rewards.iter_mut().enumerate() {
            let Some(c) = r.command.as_mut() else {
                continue;
            };
            for (k, arg) in c.run.iter_mut().enumerate() {
                if Path::new(arg.as_str()).is_absolute() || arg.starts_with('-') {
                    continue;
                }
                match find(arg, bases) {
                    Some(p) if Path::new(&p).is_file() => *arg = p,
                    _ if arg.contains('/') => {
                        return Err(missing(&format!("grpo.rewards[{i}].command.run[{k}]"), arg))
                    }
                    _ => {}
                }
            }
        }
        // Every method's adapter to start from (`dpo.init_adapter`, …), by its field.
        for field in Method::iter().filter_map(Method::init_adapter_field) {
            let given = self.get_field(field);
            if given.is_empty() {
                continue;
            }
            let folder = adapter_folder(field, &given, bases)?;
            let quoted = serde_yaml::to_string(&folder).unwrap_or_default();
            self.set_path(field, quoted.trim())
                .map_err(|message| ConfigIssue {
                    path: field.into(),
                    message,
                })?;
        }
        Ok(())
    }
}

/// A PEFT folder from a PEFT folder, a run folder (its `adapter/`) or a run id (under a
/// base's `runs/` or `.tunelab/runs/`).
fn adapter_folder(field: &str, spec: &str, bases: &[&Path]) -> Result<String, ConfigIssue> {
    let p = Path::new(spec);
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if p.is_absolute() {
        candidates.push(p.to_path_buf());
    }
    for b in bases {
        candidates.push(b.join(p));
        candidates.push(b.join("runs").join(p));
        candidates.push(b.join(".tunelab/runs").join(p));
    }
    for c in &candidates {
        for dir in [c.clone(), c.join("adapter")] {
            if dir.join("adapter_config.json").is_file() {
                return Ok(std::path::absolute(&dir)
                    .unwrap_or(dir)
                    .display()
                    .to_string());
            }
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for c in candidates {
        let c = c.display().to_string();
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    Err(ConfigIssue {
        path: field.into(),
        message: format!(
            "{spec:?}: no PEFT adapter folder, run folder with an adapter/, or run id (looked at {})",
            seen.join(", ")
        ),
    })
}

/// Whether a value that exists nowhere locally is a hub id (`org/name`) rather than a path
/// that is missing: `./x`, `a/b/c`, a file name, or `dir/name` where `dir` is a local folder
/// are paths.
fn is_hub_id(p: &str, bases: &[&Path]) -> bool {
    let path = Path::new(p);
    if path.is_absolute() || p.starts_with('.') || p.starts_with('~') {
        return false;
    }
    if !crate::paths::is_repo_id(p) {
        return false;
    }
    let first = p.split('/').next().unwrap_or_default();
    !bases.iter().any(|b| b.join(first).is_dir())
}

/// `p` itself when absolute, else the first base that holds it, made absolute.
fn find(p: &str, bases: &[&Path]) -> Option<String> {
    let path = Path::new(p);
    if path.is_absolute() {
        return path.exists().then(|| p.to_string());
    }
    bases
        .iter()
        .map(|b| b.join(path))
        .find(|c| c.exists())
        .map(|c| std::path::absolute(&c).unwrap_or(c).display().to_string())
}

/// The candidate paths, each once, for the error message.
fn tried(p: &str, bases: &[&Path]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for b in bases {
        let c = b.join(p).display().to_string();
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    seen.join(", ")
}
