//! Finding a task's items: one file (JSON Lines, JSON or Parquet), a folder of split files
//! (what `tunelab data pull` writes), or a dataset on the Hugging Face hub, `org/name` or
//! `org/name:config`, read through `data::pull` (the cache when the hub cannot be reached).
//!
//! Splits follow lm-evaluation-harness's tasks: the items are the `test` split, else
//! `validation`, else `train` (HellaSwag's test split has no labels, and its lm-eval task
//! scores `validation`); few-shot examples come from `dev` (MMLU), else `train` (ARC,
//! HellaSwag), else `validation`, never the items' own split while another exists. A single
//! file is its own few-shot pool (lm-eval's same-split rule: see `fewshot`).

use super::layout::{self, Layout};
use super::{ChoiceError, Item, Task};
use crate::data::pull::{self, PullError, PullRequest};
use crate::data::DatasetFile;
use std::path::{Path, PathBuf};

/// How to read a task.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Replaces every layout's prompt; `{question}` (or `{context}`) is the record's text.
    pub context_template: Option<String>,
    /// The items' split (folders and hub ids); default `test`, else `validation`, else
    /// `train`.
    pub split: Option<String>,
    /// The few-shot split; default `dev`, else `train`, else `validation`, else the items'.
    pub fewshot_split: Option<String>,
    /// Whether few-shot examples will be drawn: only then is their split read.
    pub fewshot: bool,
}

/// The splits items are taken from, in order of preference.
const ITEM_SPLITS: [&str; 3] = ["test", "validation", "train"];
/// The splits few-shot examples are taken from, in order of preference.
const FEWSHOT_SPLITS: [&str; 3] = ["dev", "train", "validation"];
/// Folder names that name a split, not a configuration.
const SPLIT_NAMES: [&str; 6] = ["train", "test", "validation", "valid", "dev", "eval"];

/// Loads the task `spec` names: an existing file or folder, else a hub id (`org/name`,
/// optionally `:config`).
pub fn load_task(spec: &str, opts: &TaskOptions) -> Result<Task, ChoiceError> {
    let path = Path::new(spec);
    let template = opts.context_template.as_deref();
    if path.is_file() {
        if opts.split.is_some() || opts.fewshot_split.is_some() {
            return Err(ChoiceError::Options(format!(
                "{spec} is one file, with no splits to choose (a split is chosen in a folder or a hub dataset)"
            )));
        }
        let (layout, items) = read_items(path, template)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_string());
        return Ok(Task::from_items(name, layout, items).with_files(vec![path.to_path_buf()]));
    }
    if path.is_dir() {
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_string());
        let mut source = Source::Folder(path.to_path_buf());
        return from_splits(&mut source, &name, None, opts);
    }
    let (id, config) = match spec.split_once(':') {
        Some((id, c)) if !c.is_empty() => (id, Some(c)),
        _ => (spec, None),
    };
    if !crate::paths::is_repo_id(id) {
        return Err(ChoiceError::Spec(format!(
            "--task {spec}: no such file or folder, and not a hub dataset id (org/name or org/name:config)"
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix("tunelab-task-")
        .tempdir()
        .map_err(|e| ChoiceError::Spec(format!("a temporary folder for {spec}: {e}")))?;
    let mut source = Source::Hub {
        id: id.to_string(),
        dest: tmp.path().to_path_buf(),
        notes: Vec::new(),
    };
    let mut task = from_splits(&mut source, spec, config, opts)?;
    if let Source::Hub { notes, .. } = source {
        task.notes.extend(notes);
    }
    // The files were read; the temporary copies go with `tmp`.
    task.files.clear();
    Ok(task)
}

/// Where split files come from.
enum Source {
    Folder(PathBuf),
    Hub {
        id: String,
        dest: PathBuf,
        notes: Vec<String>,
    },
}

impl Source {
    /// The data files of `split`: (path in the dataset, path here), sorted.
    fn split_files(&mut self, split: &str) -> Result<Vec<(String, PathBuf)>, ChoiceError> {
        match self {
            Source::Folder(root) => {
                let mut all = Vec::new();
                for e in walkdir::WalkDir::new(&*root)
                    .follow_links(true)
                    .sort_by_file_name()
                    .into_iter()
                    .flatten()
                {
                    if !e.file_type().is_file() {
                        continue;
                    }
                    if let Ok(rel) = e.path().strip_prefix(&*root) {
                        let parts: Vec<String> = rel
                            .iter()
                            .map(|c| c.to_string_lossy().into_owned())
                            .collect();
                        all.push(parts.join("/"));
                    }
                }
                Ok(pull::select(&all, Some(split))
                    .into_iter()
                    .map(|rel| {
                        let here = rel.split('/').fold(root.clone(), |p, c| p.join(c));
                        (rel, here)
                    })
                    .collect())
            }
            Source::Hub { id, dest, notes } => {
                let req = PullRequest {
                    id: id.clone(),
                    split: Some(split.to_string()),
                    revision: None,
                    dest: dest.join(split),
                    link: true,
                    progress: false,
                };
                match pull::pull(&req) {
                    Ok(p) => {
                        if let Some(n) = p.note {
                            if !notes.contains(&n) {
                                notes.push(n);
                            }
                        }
                        Ok(p.files.into_iter().map(|f| (f.repo_path, f.path)).collect())
                    }
                    Err(PullError::NoDataFiles { .. }) => Ok(Vec::new()),
                    Err(e) => Err(ChoiceError::Pull(e)),
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Folder(p) => p.display().to_string(),
            Source::Hub { id, .. } => id.clone(),
        }
    }
}

/// The configuration a data file belongs to: its first folder that is neither `data` nor a
/// split's name (MMLU's `abstract_algebra/`, ARC's `ARC-Challenge/`).
fn config_of(repo_path: &str) -> Option<&str> {
    let comps: Vec<&str> = repo_path.split('/').collect();
    let (_, dirs) = comps.split_last()?;
    dirs.iter()
        .copied()
        .find(|d| *d != "data" && !SPLIT_NAMES.iter().any(|s| d.eq_ignore_ascii_case(s)))
}

/// `files` of one configuration: the one named, or the only one there is.
fn of_config(
    files: Vec<(String, PathBuf)>,
    config: Option<&str>,
    what: &str,
) -> Result<Vec<(String, PathBuf)>, ChoiceError> {
    let mut configs: Vec<&str> = files.iter().filter_map(|(r, _)| config_of(r)).collect();
    configs.sort_unstable();
    configs.dedup();
    match config {
        Some(c) => {
            let kept: Vec<(String, PathBuf)> = files
                .iter()
                .filter(|(r, _)| config_of(r) == Some(c))
                .cloned()
                .collect();
            if kept.is_empty() {
                return Err(ChoiceError::Spec(format!(
                    "{what}: no configuration {c:?} (it has {})",
                    if configs.is_empty() {
                        "none".to_string()
                    } else {
                        configs.join(", ")
                    }
                )));
            }
            Ok(kept)
        }
        None if configs.len() > 1 => Err(ChoiceError::Spec(format!(
            "{what} holds several configurations ({}); name one, as ID:CONFIG for a hub dataset or the subfolder for a folder",
            short_list(&configs)
        ))),
        None => Ok(files),
    }
}

fn short_list(xs: &[&str]) -> String {
    if xs.len() <= 8 {
        xs.join(", ")
    } else {
        format!("{}, … {} in all", xs[..8].join(", "), xs.len())
    }
}

/// The items of a folder or hub dataset, and the few-shot pool when asked for.
fn from_splits(
    source: &mut Source,
    name: &str,
    config: Option<&str>,
    opts: &TaskOptions,
) -> Result<Task, ChoiceError> {
    let what = source.describe();
    let template = opts.context_template.as_deref();
    let candidates: Vec<&str> = match &opts.split {
        Some(s) => vec![s.as_str()],
        None => ITEM_SPLITS.to_vec(),
    };
    let mut found = None;
    for split in &candidates {
        let files = source.split_files(split)?;
        if !files.is_empty() {
            found = Some((split.to_string(), of_config(files, config, &what)?));
            break;
        }
    }
    let Some((split, files)) = found else {
        return Err(ChoiceError::Spec(format!(
            "{what}: no data files for split {} (data files end in .parquet, .jsonl or .json)",
            candidates.join(" or ")
        )));
    };
    let (layout, items) = read_all(&files, template)?;
    let mut task = Task::from_items(name.to_string(), layout, items)
        .with_files(files.iter().map(|(_, p)| p.clone()).collect());
    task.split = Some(split.clone());
    if !opts.fewshot {
        return Ok(task);
    }
    let candidates: Vec<&str> = match &opts.fewshot_split {
        Some(s) => vec![s.as_str()],
        None => FEWSHOT_SPLITS
            .iter()
            .copied()
            .filter(|s| *s != split)
            .collect(),
    };
    for fs in candidates {
        if fs == split {
            break;
        }
        let mut files = source.split_files(fs)?;
        if let Some(c) = config {
            // Another configuration's split is no pool for this one.
            files.retain(|(r, _)| config_of(r) == Some(c));
        }
        if !files.is_empty() {
            let (_, pool) = read_all(&of_config(files, config, &what)?, template)?;
            task.fewshot = pool;
            task.fewshot_split = Some(fs.to_string());
            task.fewshot_is_items = false;
            return Ok(task);
        }
        if opts.fewshot_split.is_some() {
            return Err(ChoiceError::Spec(format!(
                "{what}: no data files for the few-shot split {fs:?}"
            )));
        }
    }
    // No other split: the items are their own pool.
    task.fewshot_split = Some(split);
    Ok(task)
}

/// The items of several files of one split, in order (the layout of the first).
fn read_all(
    files: &[(String, PathBuf)],
    template: Option<&str>,
) -> Result<(Layout, Vec<Item>), ChoiceError> {
    let mut layout = None;
    let mut items = Vec::new();
    for (_, path) in files {
        let (l, mut xs) = read_items(path, template)?;
        layout.get_or_insert(l);
        items.append(&mut xs);
    }
    Ok((layout.unwrap_or(Layout::Question), items))
}

/// The items of one file; its layout is detected from its first record.
pub fn read_items(path: &Path, template: Option<&str>) -> Result<(Layout, Vec<Item>), ChoiceError> {
    let file = DatasetFile::open(path)?;
    let mut layout = None;
    let mut items = Vec::new();
    for raw in file.records()? {
        let raw = raw?;
        let location = raw.location.to_string();
        let record_error = |field: String, message: String| ChoiceError::Record {
            file: path.to_path_buf(),
            location: location.clone(),
            field,
            message,
        };
        let rec = raw
            .value()
            .map_err(|message| record_error(String::new(), message))?;
        let l = match layout {
            Some(l) => l,
            None => {
                let found: Vec<&str> = rec.keys().map(String::as_str).collect();
                let l = Layout::detect(&rec).ok_or_else(|| {
                    record_error(
                        String::new(),
                        format!(
                            "not a multiple-choice record: expected {}; found the fields {}",
                            Layout::expected(),
                            if found.is_empty() {
                                "(none)".to_string()
                            } else {
                                found.join(", ")
                            }
                        ),
                    )
                })?;
                *layout.insert(l)
            }
        };
        let item = layout::item(l, &rec, template).map_err(|(field, message)| {
            record_error(field, format!("{message} ({} layout)", l.fields()))
        })?;
        items.push(item);
    }
    let Some(layout) = layout else {
        return Err(ChoiceError::File {
            file: path.to_path_buf(),
            message: "no items".into(),
        });
    };
    Ok((layout, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_named_by_their_folder() {
        assert_eq!(
            config_of("abstract_algebra/test-00000-of-00001.parquet"),
            Some("abstract_algebra")
        );
        assert_eq!(config_of("ARC-Easy/train-0.parquet"), Some("ARC-Easy"));
        assert_eq!(config_of("data/test-00000-of-00001.parquet"), None);
        assert_eq!(config_of("test/part0.jsonl"), None);
        assert_eq!(config_of("questions.jsonl"), None);
    }
}
