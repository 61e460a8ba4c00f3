//! Before a launch: which Python has the engine, and whether its version is one tunelab's
//! mapping was written for. Each failure is one error naming the package and the command
//! that installs it.

use super::EngineError;
use crate::scaleout::Tool;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The versions each mapping was written and checked against: (tool, distribution name,
/// version prefix, the install command).
const KNOWN: &[(Tool, &str, &str, &str)] = &[
    (Tool::Trl, "trl", "1.16", "pip install 'trl==1.16.0' peft"),
    (
        Tool::Axolotl,
        "axolotl",
        "0.19",
        "pip install 'axolotl==0.19.0'",
    ),
    (
        Tool::Llamafactory,
        "llamafactory",
        "0.9",
        "pip install 'llamafactory==0.9.5'",
    ),
];

/// Lets a version tunelab does not know run anyway (its mapping may not fit).
pub const ANY_VERSION_ENV: &str = "TUNELAB_ENGINE_ANY_VERSION";

fn known(tool: Tool) -> (&'static str, &'static str, &'static str) {
    KNOWN
        .iter()
        .find(|k| k.0 == tool)
        .map(|k| (k.1, k.2, k.3))
        .unwrap_or(("", "", ""))
}

/// The interpreter: `python` when given (a venv's folder is taken as its `bin/python`), else
/// the active virtual environment's, else `python3` on the PATH.
pub fn interpreter(python: Option<&str>) -> Result<PathBuf, EngineError> {
    if let Some(p) = python {
        // A bare name (`python3.11`) is looked up on the PATH.
        if !p.contains('/') {
            if let Some(found) = crate::paths::find_on_path(p, &crate::paths::search_path()) {
                return Ok(found);
            }
        }
        let p = PathBuf::from(p);
        let p = if p.is_dir() {
            p.join("bin").join("python")
        } else {
            p
        };
        return if p.is_file() {
            Ok(std::path::absolute(&p).unwrap_or(p))
        } else {
            Err(EngineError::Preflight(format!(
                "{}: no such Python interpreter (train.python / --python names a venv's bin/python, or the venv folder)",
                p.display()
            )))
        };
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let p = Path::new(&venv).join("bin").join("python");
        if p.is_file() {
            return Ok(p);
        }
    }
    crate::paths::find_on_path("python3", &crate::paths::search_path()).ok_or_else(|| {
        EngineError::Preflight(
            "no python3 on the PATH; pass --python PATH (a venv's bin/python) or set train.python"
                .into(),
        )
    })
}

/// The installed version of `tool`'s package under `python`, or why there is none.
pub fn version(python: &Path, tool: Tool) -> Result<String, EngineError> {
    let (dist, _, install) = known(tool);
    let out = Command::new(python)
        .args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version({dist:?}))"),
        ])
        .env("PYTHONNOUSERSITE", "1")
        .output()
        .map_err(|e| EngineError::Preflight(format!("{}: cannot run it: {e}", python.display())))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || v.is_empty() {
        return Err(EngineError::Preflight(format!(
            "{} is not installed for {} (no `{dist}` package); install it with `{} -m {install}`, or pass --python with the venv that has it",
            tool.label(),
            python.display(),
            python.display(),
        )));
    }
    Ok(v)
}

/// Checks `python` has `tool` at a version tunelab knows; returns the version.
pub fn check(python: &Path, tool: Tool) -> Result<String, EngineError> {
    let v = version(python, tool)?;
    let (_, prefix, install) = known(tool);
    let fits = v == prefix || v.starts_with(&format!("{prefix}."));
    if !fits && std::env::var_os(ANY_VERSION_ENV).is_none() {
        return Err(EngineError::Preflight(format!(
            "{} {v} is installed for {}, but tunelab's mapping is for {prefix}.x; install it with `{} -m {install}` (or set {ANY_VERSION_ENV}=1 to try this version anyway)",
            tool.label(),
            python.display(),
            python.display(),
        )));
    }
    Ok(v)
}

/// What `tunelab doctor` says about each engine under `python`: its version, or why not.
pub fn survey(python: &Path) -> Vec<(Tool, Result<String, String>)> {
    use strum::IntoEnumIterator;
    Tool::iter()
        .map(|t| (t, check(python, t).map_err(|e| e.to_string())))
        .collect()
}
