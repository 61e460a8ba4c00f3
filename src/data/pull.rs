//! `data pull`: a dataset repository's data files (Parquet, JSON Lines, JSON) through the
//! Hugging Face cache, copied into a folder. `HF_HOME` picks the cache (`$HF_HOME/hub`),
//! `HF_TOKEN` authenticates and is never logged or stored, `HF_HUB_OFFLINE=1` reads the
//! cache only; when the hub cannot be reached the cached snapshot is used, and said so.

use hf_hub::{Repo, RepoType};
use std::path::{Path, PathBuf};

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// `owner/name`.
    pub id: String,
    /// Only this split's files (`train`, `test`, …); `None` for every data file.
    pub split: Option<String>,
    /// A branch, tag or commit; `main` when `None`.
    pub revision: Option<String>,
    pub dest: PathBuf,
    /// Hard-link the cache's files instead of copying them (no second copy on disk, but an
    /// edit in place changes the cache).
    pub link: bool,
    /// Let hf-hub draw its download progress bars on stderr.
    pub progress: bool,
}

/// One file pulled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PulledFile {
    /// Its path in the repository.
    pub repo_path: String,
    /// Where it is now, under the destination.
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Pulled {
    pub id: String,
    /// The commit the files come from.
    pub commit: String,
    /// Read from the cache without asking the hub.
    pub offline: bool,
    /// Why the cache was used, when it was.
    pub note: Option<String>,
    pub files: Vec<PulledFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0:?} is not a dataset id; expected OWNER/NAME")]
    BadId(String),
    #[error("{id} is not in the Hugging Face cache ({cache}) and {why}")]
    NotCached {
        id: String,
        cache: PathBuf,
        why: String,
    },
    #[error("{id}: {message}")]
    Hub { id: String, message: String },
    #[error("{id}@{commit}: no {what} among its {total} files (a dataset's data files end in .parquet, .jsonl or .json)")]
    NoDataFiles {
        id: String,
        commit: String,
        what: String,
        total: usize,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files in a dataset repository that are metadata, not records.
const NOT_DATA: &[&str] = &["dataset_info.json", "dataset_infos.json", "state.json"];

fn is_data_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if path.split('/').any(|c| c.starts_with('.')) || NOT_DATA.contains(&name.as_str()) {
        return false;
    }
    [".parquet", ".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// True when `path` names `split`: a folder of that name, or a file named `split.ext`,
/// `split-…` or `split_…` (the hub's `data/train-00000-of-00001.parquet`).
fn in_split(path: &str, split: &str) -> bool {
    let comps: Vec<&str> = path.split('/').collect();
    let (name, dirs) = comps.split_last().expect("split yields one item");
    if dirs.iter().any(|d| d.eq_ignore_ascii_case(split)) {
        return true;
    }
    let name = name.to_ascii_lowercase();
    let split = split.to_ascii_lowercase();
    name.strip_prefix(&split)
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| matches!(c, '.' | '-' | '_'))
}

/// The data files of `files` to pull: those of `split`, or all. A repository whose files
/// name no split at all is one `train` split, as `datasets` reads it.
pub fn select(files: &[String], split: Option<&str>) -> Vec<String> {
    let data: Vec<&String> = files.iter().filter(|f| is_data_file(f)).collect();
    let mut out: Vec<String> = match split {
        None => data.iter().map(|s| s.to_string()).collect(),
        Some(split) => {
            let named: Vec<String> = data
                .iter()
                .filter(|f| in_split(f, split))
                .map(|s| s.to_string())
                .collect();
            let any_split = data.iter().any(|f| {
                ["train", "test", "validation", "valid", "dev", "eval"]
                    .iter()
                    .any(|s| in_split(f, s))
            });
            if named.is_empty() && !any_split && split.eq_ignore_ascii_case("train") {
                data.iter().map(|s| s.to_string()).collect()
            } else {
                named
            }
        }
    };
    out.sort();
    out
}

/// The cached snapshot of `repo`: its commit and its files (paths in the repository).
fn cached(cache: &Path, repo: &Repo) -> Option<(String, PathBuf, Vec<String>)> {
    let root = cache.join(repo.folder_name());
    let rev = repo.revision();
    let commit = match std::fs::read_to_string(root.join("refs").join(rev)) {
        Ok(c) => c.trim().to_string(),
        Err(_) if root.join("snapshots").join(rev).is_dir() => rev.to_string(),
        Err(_) => return None,
    };
    let snap = root.join("snapshots").join(&commit);
    if !snap.is_dir() {
        return None;
    }
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(&snap)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if e.file_type().is_file() {
            if let Ok(rel) = e.path().strip_prefix(&snap) {
                let parts: Vec<String> = rel
                    .iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect();
                files.push(parts.join("/"));
            }
        }
    }
    Some((commit, snap, files))
}

/// Pulls `req.id`'s data files into `req.dest`.
pub fn pull(req: &PullRequest) -> Result<Pulled, PullError> {
    if !crate::paths::is_repo_id(&req.id) {
        return Err(PullError::BadId(req.id.clone()));
    }
    let cache = crate::paths::hf_hub_cache();
    let revision = req.revision.clone().unwrap_or_else(|| "main".into());
    let repo = Repo::with_revision(req.id.clone(), RepoType::Dataset, revision.clone());
    let what = match &req.split {
        Some(s) => format!("data files of split {s:?}"),
        None => "data files".into(),
    };
    let from_cache = |why: String, note: Option<String>| -> Result<Pulled, PullError> {
        let Some((commit, snap, files)) = cached(&cache, &repo) else {
            return Err(PullError::NotCached {
                id: format!("{}@{revision}", req.id),
                cache: cache.clone(),
                why,
            });
        };
        let chosen = select(&files, req.split.as_deref());
        if chosen.is_empty() {
            return Err(PullError::NoDataFiles {
                id: req.id.clone(),
                commit,
                what: what.clone(),
                total: files.len(),
            });
        }
        let sources = chosen
            .iter()
            .map(|f| (f.clone(), snap.join(f)))
            .collect::<Vec<_>>();
        Ok(Pulled {
            id: req.id.clone(),
            files: place(&sources, &req.dest, req.link)?,
            commit,
            offline: true,
            note,
        })
    };
    if crate::paths::hf_hub_offline() {
        return from_cache(
            "HF_HUB_OFFLINE is set; download it where there is a network (huggingface-cli download --repo-type dataset …) and copy the cache, or unset HF_HUB_OFFLINE".into(),
            Some("HF_HUB_OFFLINE is set: using the cached snapshot".into()),
        );
    }
    let mut builder = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(cache.clone())
        .with_progress(req.progress);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let hub_error = |message: String| PullError::Hub {
        id: req.id.clone(),
        message,
    };
    let api = builder
        .build()
        .map_err(|e| hub_error(format!("cannot set up the hub client: {e}")))?;
    let remote = api.repo(repo.clone());
    let info = match remote.info() {
        Ok(i) => i,
        Err(e) => {
            let text = e.to_string();
            if let hf_hub::api::sync::ApiError::RequestError(r) = &e {
                if let ureq::Error::Status(status, _) = r.as_ref() {
                    return Err(hub_error(format!(
                        "the hub answered HTTP {status} for revision {revision} (a private or gated dataset needs HF_TOKEN; check the name)"
                    )));
                }
            }
            return from_cache(
                format!("the hub cannot be reached ({text})"),
                Some(format!(
                    "the hub cannot be reached ({text}): using the cached snapshot"
                )),
            );
        }
    };
    let files: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let chosen = select(&files, req.split.as_deref());
    if chosen.is_empty() {
        return Err(PullError::NoDataFiles {
            id: req.id.clone(),
            commit: info.sha.clone(),
            what,
            total: files.len(),
        });
    }
    let mut sources = Vec::new();
    for f in &chosen {
        let local = remote
            .get(f)
            .map_err(|e| hub_error(format!("cannot download {f}: {e}")))?;
        sources.push((f.clone(), local));
    }
    Ok(Pulled {
        id: req.id.clone(),
        files: place(&sources, &req.dest, req.link)?,
        commit: info.sha,
        offline: false,
        note: None,
    })
}

/// Copies (or hard-links) each cached file to `dest/<its repository path>`, replacing what
/// is there; a copy is written beside its target and renamed over it.
fn place(
    sources: &[(String, PathBuf)],
    dest: &Path,
    link: bool,
) -> Result<Vec<PulledFile>, PullError> {
    let mut out = Vec::new();
    for (repo_path, src) in sources {
        let target = repo_path
            .split('/')
            .fold(dest.to_path_buf(), |p, c| p.join(c));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // The snapshot holds links into `blobs/`: copy the blob itself.
        let blob = std::fs::canonicalize(src).map_err(io(src))?;
        let linked = link && {
            let _ = std::fs::remove_file(&target);
            std::fs::hard_link(&blob, &target).is_ok()
        };
        if !linked {
            let mut tmp = crate::files::temp_beside(&target).map_err(io(&target))?;
            let mut from = std::fs::File::open(&blob).map_err(io(&blob))?;
            std::io::copy(&mut from, tmp.as_file_mut()).map_err(io(&target))?;
            crate::files::publish(tmp, &target).map_err(io(&target))?;
        }
        let bytes = std::fs::metadata(&target).map_err(io(&target))?.len();
        out.push(PulledFile {
            repo_path: repo_path.clone(),
            path: target,
            bytes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn data_files_are_chosen_by_split_like_the_hub_names_them() {
        let files = v(&[
            ".gitattributes",
            "README.md",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
            "dataset_info.json",
            "training_notes.jsonl",
            "validation/part0.jsonl",
        ]);
        assert_eq!(
            select(&files, Some("train")),
            v(&[
                "data/train-00000-of-00002.parquet",
                "data/train-00001-of-00002.parquet"
            ])
        );
        assert_eq!(
            select(&files, Some("validation")),
            v(&["validation/part0.jsonl"])
        );
        assert_eq!(select(&files, None).len(), 5);
        // No split named anywhere: the files are the train split.
        let flat = v(&["persona.jsonl", "README.md"]);
        assert_eq!(select(&flat, Some("train")), v(&["persona.jsonl"]));
        assert!(select(&flat, Some("test")).is_empty());
        assert!(
            crate::paths::is_repo_id("acme/persona-chat")
                && !crate::paths::is_repo_id("acme")
                && !crate::paths::is_repo_id("a/b/c")
        );
    }
}
