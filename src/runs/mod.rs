//! The run directory: the contract between the trainer process and whoever watches it (TUI,
//! `tunelab runs watch`). The trainer writes `status.json` atomically and appends to
//! `events.jsonl`; readers only read, and tolerate a half-written last line.

use crate::data::writer::write_atomic;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Running,
    Stopping,
    Stopped,
    Done,
    Failed,
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
    pub fn append_event(&self, event: &Value) -> std::io::Result<()> {
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
/// writer is mid-append) is left for the next call; the returned offset points at it.
pub fn read_events(path: &Path, offset: u64) -> std::io::Result<(Vec<Value>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let events = buf[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    Ok((events, offset + complete as u64))
}

/// Where runs live by default: `runs/` in the workspace (the data folder).
pub fn runs_root(data_dir: &Path) -> PathBuf {
    data_dir.join("runs")
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

/// Summarizes one run from its status and events.
pub fn summarize(run: &RunDir) -> RunSummary {
    let status = run.read_status().ok();
    let (events, _) = read_events(&run.events_path(), 0).unwrap_or_default();
    let mut last_loss = None;
    let mut best = None::<f64>;
    for e in &events {
        match e.get("type").and_then(Value::as_str) {
            Some("train") => last_loss = e.get("loss").and_then(Value::as_f64),
            Some("eval") => {
                if let Some(l) = e.get("eval_loss").and_then(Value::as_f64) {
                    best = Some(best.map_or(l, |b| b.min(l)));
                }
            }
            _ => {}
        }
    }
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
        error: status.and_then(|s| s.error),
    }
}

/// Every run under `root`, newest first.
pub fn list(root: &Path) -> Vec<RunSummary> {
    let mut out: Vec<RunSummary> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("status.json").is_file())
        .map(|e| summarize(&RunDir::new(e.path())))
        .collect();
    out.sort_by(|a, b| b.started.total_cmp(&a.started));
    out
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
    // SAFETY: kill with a pid from status.json and a valid signal number.
    if unsafe { libc::kill(pid as i32, libc::SIGTERM) } != 0 {
        return Err(format!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(pid)
}

impl RunState {
    /// The run will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Stopped | RunState::Done | RunState::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn torn_last_lines_wait_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run.append_event(&json!({"step": 1, "loss": 2.5})).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(run.events_path())
            .unwrap();
        f.write_all(b"{\"step\": 2, \"lo").unwrap();
        let (events, offset) = read_events(&run.events_path(), 0).unwrap();
        assert_eq!(events, vec![json!({"step": 1, "loss": 2.5})]);
        f.write_all(b"ss\": 2.1}\n").unwrap();
        let (more, end) = read_events(&run.events_path(), offset).unwrap();
        assert_eq!(more, vec![json!({"step": 2, "loss": 2.1})]);
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
            error: None,
            started: 1.0,
            updated: 2.0,
        };
        run.write_status(&s).unwrap();
        assert_eq!(run.read_status().unwrap(), s);
        let text = std::fs::read_to_string(run.status_path()).unwrap();
        assert!(text.contains("\"state\": \"running\""), "{text}");
    }
}
