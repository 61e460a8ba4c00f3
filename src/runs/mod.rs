//! The run directory: the contract between the trainer process and whoever watches it (TUI,
//! `tunelab runs watch`). The trainer writes `status.json` atomically and appends
//! [`RunEvent`]s to `events.jsonl`; readers only read, and tolerate a half-written last line.
//! `status.json` alone answers what a list of runs shows, so listing never reads events.

pub mod adapters;
pub mod details;
pub mod event;
pub mod pace;
pub mod plot;
pub mod report;

pub use event::{EventKind, RunEvent};

use crate::files::write_atomic;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The `status.json` layout this version writes. 0: before the summary fields existed
/// (a list then reads the run's events once).
pub const STATUS_FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Running,
    Stopping,
    Stopped,
    Done,
    Failed,
    /// Stopped by a sweep's pruner: its metric was worse than the median of the sweep's
    /// completed runs at an evaluation (it has a checkpoint, so it can be resumed).
    Pruned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: RunState,
    pub pid: Option<u32>,
    pub step: u64,
    pub total_steps: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds.
    pub started: f64,
    pub updated: f64,
    /// The latest training loss.
    #[serde(default)]
    pub last_loss: Option<f64>,
    /// The lowest eval loss so far.
    #[serde(default)]
    pub best_eval_loss: Option<f64>,
    #[serde(default)]
    pub format: u32,
    /// The long stretch of work the run is in between steps, with its progress; `None`
    /// while it steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<event::Phase>,
}

impl Status {
    /// A fresh status for a run starting now in this process.
    pub fn starting(started: f64) -> Self {
        Status {
            state: RunState::Queued,
            pid: Some(std::process::id()),
            step: 0,
            total_steps: 0,
            error: None,
            started,
            updated: started,
            last_loss: None,
            best_eval_loss: None,
            format: STATUS_FORMAT,
            phase: None,
        }
    }
}

/// The files of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.yaml")
    }
    pub fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn events_path(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("train.log")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn adapter(&self) -> PathBuf {
        self.root.join("adapter")
    }
    /// An engine run's tool folder: its experiment, hook and output (`engine`).
    pub fn engine(&self) -> PathBuf {
        self.root.join("engine")
    }
    /// Whether the run has written its final adapter.
    pub fn has_adapter(&self) -> bool {
        self.adapter().join("adapter_config.json").is_file()
    }

    /// Writes `status.json` atomically, so a reader never sees half of it.
    pub fn write_status(&self, status: &Status) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
        write_atomic(&self.status_path(), &text)
    }

    pub fn read_status(&self) -> std::io::Result<Status> {
        let bytes = std::fs::read(self.status_path())?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", self.status_path().display()),
            )
        })
    }

    /// Appends one event as a JSON line.
    pub fn append_event(&self, event: &RunEvent) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.events_path())?;
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.flush()
    }
}

/// Reads complete event lines from byte `offset` on. A last line without its newline (the
/// writer is mid-append) is left for the next call; the returned offset points at it. Lines
/// that are not events are skipped.
pub fn read_events(path: &Path, offset: u64) -> std::io::Result<(Vec<RunEvent>, u64)> {
    read_json_lines(path, offset)
}

/// Reads the complete JSON lines of an append-only file from byte `offset` on, as `T`: the
/// contract of `events.jsonl` (and of an engine run's hook file). A half-written last line
/// is left for the next call; lines that are not a `T` are skipped; a missing file is empty.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    offset: u64,
) -> std::io::Result<(Vec<T>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines = buf[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    Ok((lines, offset + complete as u64))
}

/// Where runs live by default: `runs/` in the workspace (the data folder).
pub fn runs_root(data_dir: &Path) -> PathBuf {
    data_dir.join("runs")
}

/// No run by that name.
#[derive(Debug, thiserror::Error)]
#[error("no run {spec:?} (neither a run folder nor an id under {})", root.display())]
pub struct NoSuchRun {
    pub spec: String,
    pub root: PathBuf,
}

/// The run `spec` names: a run folder, or an id under the data folder's `runs/` (every
/// run, a project's linked in).
pub fn find(spec: &str, data_dir: &Path) -> Result<RunDir, NoSuchRun> {
    let root = runs_root(data_dir);
    resolve(spec, &root).ok_or_else(|| NoSuchRun {
        spec: spec.to_string(),
        root,
    })
}

/// A run named by path, or by id under `root`.
pub fn resolve(spec: &str, root: &Path) -> Option<RunDir> {
    let p = Path::new(spec);
    if p.join("status.json").is_file() || p.join("config.yaml").is_file() {
        return Some(RunDir::new(p));
    }
    let under = root.join(spec);
    (under.join("status.json").is_file() || under.join("config.yaml").is_file())
        .then(|| RunDir::new(under))
}

/// A fresh run id: the config's name and the local time, made unique under `root`.
pub fn new_id(name: &str, root: &Path) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = format!("{}-{}", clean, chrono::Local::now().format("%Y%m%d-%H%M%S"));
    let mut id = base.clone();
    let mut n = 2;
    while root.join(&id).exists() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// What a list of runs shows about one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub dir: PathBuf,
    pub state: Option<RunState>,
    /// `running` in status.json but no such process: the trainer was killed.
    pub orphaned: bool,
    pub step: u64,
    pub total_steps: u64,
    pub last_loss: Option<f64>,
    pub best_eval_loss: Option<f64>,
    pub started: f64,
    pub duration_s: f64,
    pub error: Option<String>,
    /// What a live run is doing between steps (an evaluation, the samples), with progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<event::Phase>,
}

impl RunSummary {
    /// The state to show, `dead` when the trainer vanished mid-run.
    pub fn state_label(&self) -> String {
        match (self.state, self.orphaned) {
            (_, true) => "dead".into(),
            (Some(s), _) => format!("{s:?}").to_lowercase(),
            (None, _) => "unknown".into(),
        }
    }
}

/// The latest train loss and the best eval loss.
pub type Losses = (Option<f64>, Option<f64>);

/// The latest train loss and the best eval loss in `events` (finite values only).
pub fn loss_summary<'a>(events: impl IntoIterator<Item = &'a RunEvent>) -> Losses {
    let mut last_loss = None;
    let mut best = None::<f64>;
    for e in events {
        match &e.kind {
            EventKind::Train(t) if t.loss.is_finite() => last_loss = Some(t.loss),
            EventKind::Eval(v) if v.eval_loss.is_finite() => {
                best = Some(best.map_or(v.eval_loss, |b| b.min(v.eval_loss)))
            }
            _ => {}
        }
    }
    (last_loss, best)
}

/// Summarizes one run from its `status.json` (and, for runs written before the status
/// carried the losses, from its events).
pub fn summarize(run: &RunDir) -> RunSummary {
    summarize_with(run, &mut legacy_losses)
}

/// The losses of a run whose `status.json` predates them, from all of its events.
fn legacy_losses(run: &RunDir) -> Losses {
    let (events, _) = read_events(&run.events_path(), 0).unwrap_or_default();
    loss_summary(&events)
}

/// [`summarize`] with the reader for older runs' losses supplied (the workbench caches it).
pub fn summarize_with(run: &RunDir, legacy: &mut dyn FnMut(&RunDir) -> Losses) -> RunSummary {
    let status = run.read_status().ok();
    let (last_loss, best) = match &status {
        Some(s) if s.format >= 1 => (s.last_loss, s.best_eval_loss),
        _ => legacy(run),
    };
    let orphaned = status.as_ref().is_some_and(|s| {
        matches!(
            s.state,
            RunState::Running | RunState::Stopping | RunState::Queued
        ) && s.pid.is_some_and(|p| !crate::telemetry::process_alive(p))
    });
    RunSummary {
        id: run
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: run.root.clone(),
        state: status.as_ref().map(|s| s.state),
        orphaned,
        step: status.as_ref().map_or(0, |s| s.step),
        total_steps: status.as_ref().map_or(0, |s| s.total_steps),
        last_loss,
        best_eval_loss: best,
        started: status.as_ref().map_or(0.0, |s| s.started),
        duration_s: status.as_ref().map_or(0.0, |s| s.updated - s.started),
        phase: status
            .as_ref()
            .filter(|_| !orphaned)
            .and_then(|s| s.phase.clone()),
        error: status.and_then(|s| s.error),
    }
}

/// Every run under `root`, newest first.
pub fn list(root: &Path) -> Vec<RunSummary> {
    list_with(root, &mut legacy_losses)
}

/// [`list`] with the reader for older runs' losses supplied.
pub fn list_with(root: &Path, legacy: &mut dyn FnMut(&RunDir) -> Losses) -> Vec<RunSummary> {
    let mut out: Vec<RunSummary> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("status.json").is_file())
        .map(|e| summarize_with(&RunDir::new(e.path()), legacy))
        .collect();
    out.sort_by(|a, b| b.started.total_cmp(&a.started));
    out
}

/// Every run under any of `roots` (a folder listed twice, or a run linked into another
/// root, counts once), newest first.
pub fn list_roots(roots: &[PathBuf], legacy: &mut dyn FnMut(&RunDir) -> Losses) -> Vec<RunSummary> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for root in roots {
        for r in list_with(root, legacy) {
            let real = std::fs::canonicalize(&r.dir).unwrap_or_else(|_| r.dir.clone());
            if seen.insert(real.clone()) {
                out.push(RunSummary { dir: real, ..r });
            }
        }
    }
    out.sort_by(|a, b| b.started.total_cmp(&a.started));
    out
}

/// Links `run` into `all` (the data folder's runs) under its id when it lives elsewhere (a
/// project's `.tunelab/runs`), so every list of runs finds it. Returns the link.
pub fn register(all: &Path, run: &RunDir) -> std::io::Result<Option<PathBuf>> {
    let real = std::fs::canonicalize(&run.root)?;
    std::fs::create_dir_all(all)?;
    let all_real = std::fs::canonicalize(all)?;
    if real.parent() == Some(all_real.as_path()) {
        return Ok(None);
    }
    let id = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let mut link = all.join(&id);
    let mut n = 2;
    while link.symlink_metadata().is_ok() {
        if std::fs::canonicalize(&link).ok().as_ref() == Some(&real) {
            return Ok(Some(link));
        }
        link = all.join(format!("{id}-{n}"));
        n += 1;
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(&real, &link)?;
    #[cfg(not(unix))]
    return Ok(None);
    #[cfg(unix)]
    Ok(Some(link))
}

/// Asks a run's trainer to stop (SIGTERM: it writes a checkpoint, then ends `stopped`).
/// Returns the pid signalled.
pub fn request_stop(run: &RunDir) -> Result<u32, String> {
    let status = run.read_status().map_err(|e| e.to_string())?;
    if status.state.is_final() {
        return Err(format!("the run is already {:?}", status.state).to_lowercase());
    }
    let pid = status
        .pid
        .filter(|p| crate::telemetry::process_alive(*p))
        .ok_or("the run's trainer is not running (pid gone)")?;
    use nix::sys::signal::{kill, Signal};
    kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM)
        .map_err(|e| format!("cannot signal pid {pid}: {e}"))?;
    Ok(pid)
}

impl RunState {
    /// The run will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Stopped | RunState::Done | RunState::Failed | RunState::Pruned
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(step: u64) -> RunEvent {
        RunEvent {
            kind: EventKind::Stopped { step },
            time: 1.0,
        }
    }

    #[test]
    fn torn_last_lines_wait_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run.append_event(&stopped(1)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(run.events_path())
            .unwrap();
        f.write_all(b"{\"type\": \"stopped\", \"st").unwrap();
        let (events, offset) = read_events(&run.events_path(), 0).unwrap();
        assert_eq!(events, vec![stopped(1)]);
        f.write_all(b"ep\": 2, \"time\": 1.0}\n").unwrap();
        let (more, end) = read_events(&run.events_path(), offset).unwrap();
        assert_eq!(more, vec![stopped(2)]);
        assert_eq!(end, std::fs::metadata(run.events_path()).unwrap().len());
    }

    #[test]
    fn status_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let s = Status {
            state: RunState::Running,
            pid: Some(42),
            step: 3,
            total_steps: 60,
            last_loss: Some(2.5),
            ..Status::starting(1.0)
        };
        run.write_status(&s).unwrap();
        assert_eq!(run.read_status().unwrap(), s);
        let text = std::fs::read_to_string(run.status_path()).unwrap();
        assert!(text.contains("\"state\": \"running\""), "{text}");
    }
}
