//! Where tunelab keeps its files: the platform's config, data and state folders (from
//! `directories`), or everything under `$TUNELAB_HOME` when that is set (tests, portable installs).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config: PathBuf,
    pub data: PathBuf,
    pub state: PathBuf,
    pub cache: PathBuf,
}

impl Paths {
    pub fn resolve() -> Paths {
        if let Some(home) = std::env::var_os("TUNELAB_HOME").filter(|h| !h.is_empty()) {
            let home = PathBuf::from(home);
            return Paths {
                config: home.join("config"),
                data: home.join("data"),
                state: home.join("state"),
                cache: home.join("cache"),
            };
        }
        match directories::ProjectDirs::from("", "", "tunelab") {
            Some(d) => Paths {
                config: d.config_dir().to_path_buf(),
                data: d.data_dir().to_path_buf(),
                state: d
                    .state_dir()
                    .unwrap_or_else(|| d.data_local_dir())
                    .to_path_buf(),
                cache: d.cache_dir().to_path_buf(),
            },
            None => {
                let base = std::env::temp_dir().join("tunelab");
                Paths {
                    config: base.join("config"),
                    data: base.join("data"),
                    state: base.join("state"),
                    cache: base.join("cache"),
                }
            }
        }
    }

    /// The log file; logs never go to stdout, which belongs to command output and the TUI.
    pub fn log_file(&self) -> PathBuf {
        self.state.join("tunelab.log")
    }
}

/// The Hugging Face hub cache: `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (models and
/// datasets alike, as huggingface_hub lays it out).
pub fn hf_hub_cache() -> PathBuf {
    if let Some(home) = std::env::var_os("HF_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join("hub");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/huggingface/hub")
}

/// Whether `HF_HUB_OFFLINE` asks for the cache only.
pub fn hf_hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
}

/// Whether `s` has the shape of a Hugging Face repository id (`org/name`: two parts of
/// letters, digits, `-`, `_` and `.`), for models and datasets alike.
pub fn is_repo_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// The first executable file called `name` in `dirs` (the folders of `PATH`, in order).
pub fn find_on_path(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

/// Whether `p` is a file someone may execute.
pub fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The folders of this process's `PATH`, in order.
pub fn search_path() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}
