//! The launched tool as something to poll and stop: a process group on this machine
//! ([`LocalJob`]) or a SLURM job ([`super::slurm::SlurmJob`]).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a job ended: whether it succeeded (`None`: the launcher cannot say), and in words.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    pub ok: Option<bool>,
    pub what: String,
}

pub trait Job {
    /// `None` while it runs.
    fn poll(&mut self) -> Option<JobEnd>;
    /// Asks it to save and stop (SIGTERM to every process of it).
    fn stop(&mut self);
    /// Where it runs, for the log (`pid 1234`, `SLURM job 77`).
    fn describe(&self) -> String;
    /// A state to show while it waits to start (SLURM's `PENDING`).
    fn waiting(&self) -> Option<String> {
        None
    }
    /// The tool's last lines of output, for a failure's message.
    fn last_lines(&self) -> Vec<String>;
}

/// Lines of output kept for a failure's message.
const TAIL: usize = 40;
/// How long the rest of the process group may outlive the launcher before it is killed:
/// longer after a stop, which saves a checkpoint first.
const GRACE: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(600);

/// The tool as a process group of its own on this machine, its output appended to the
/// run's `train.log` as it comes and its last lines kept.
pub struct LocalJob {
    child: Child,
    pgid: i32,
    /// Where each Trainer process leaves its pid (`<host>-<pid>`).
    trainer_pids: PathBuf,
    exited: Option<(ExitStatus, Instant)>,
    stopping: Option<Instant>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl LocalJob {
    /// Starts `cmd` in a new process group, its stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path, trainer_pids: &Path) -> std::io::Result<LocalJob> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let out: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for pipe in out {
            copy_output(pipe, log.to_path_buf(), Arc::clone(&tail));
        }
        let pgid = child.id() as i32;
        Ok(LocalJob {
            child,
            pgid,
            trainer_pids: trainer_pids.to_path_buf(),
            exited: None,
            stopping: None,
            tail,
        })
    }

    fn group_alive(&self) -> bool {
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pgid), None).is_ok()
    }
}

/// Copies a pipe into `log` (appending) and the tail, on its own thread.
fn copy_output(mut pipe: Box<dyn Read + Send>, log: PathBuf, tail: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .ok();
        let mut buf = [0u8; 8192];
        let mut partial = String::new();
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(f) = file.as_mut() {
                let _ = f.write_all(&buf[..n]);
            }
            partial.push_str(&String::from_utf8_lossy(&buf[..n]));
            // Progress bars redraw with `\r`: each redraw is a line of its own here.
            while let Some(i) = partial.find(['\n', '\r']) {
                let line: String = partial.drain(..=i).collect();
                push_line(&tail, line.trim_end());
            }
        }
        push_line(&tail, partial.trim_end());
    });
}

fn push_line(tail: &Mutex<VecDeque<String>>, line: &str) {
    if line.trim().is_empty() {
        return;
    }
    if let Ok(mut t) = tail.lock() {
        if t.len() == TAIL {
            t.pop_front();
        }
        t.push_back(line.to_string());
    }
}

impl Job for LocalJob {
    fn poll(&mut self) -> Option<JobEnd> {
        if self.exited.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exited = Some((s, Instant::now()));
            }
        }
        let (status, at) = self.exited?;
        let grace = if self.stopping.is_some() {
            STOP_GRACE
        } else {
            GRACE
        };
        // The launcher is gone; its workers may still be saving.
        if self.group_alive() {
            if at.elapsed() < grace {
                return None;
            }
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        use std::os::unix::process::ExitStatusExt;
        let what = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended".to_string(),
        };
        Some(JobEnd {
            ok: Some(status.success()),
            what,
        })
    }

    fn stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
        }
        // The Trainer processes, each once; their launchers end when they do. Before any
        // Trainer exists there is nothing to save: the whole group goes.
        let trainers = trainers_in(&self.trainer_pids, self.pgid);
        if trainers.is_empty() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pgid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for pid in trainers {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }

    fn describe(&self) -> String {
        format!("pid {}, process group {}", self.child.id(), self.pgid)
    }

    fn last_lines(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The Trainer processes of this machine that left their pid in `dir` and are still in
/// process group `pgid` (a pid reused by another process is not signalled).
pub fn trainers_in(dir: &Path, pgid: i32) -> Vec<nix::unistd::Pid> {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{host}-");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid: i32 = name.strip_prefix(&prefix)?.parse().ok()?;
            let pid = nix::unistd::Pid::from_raw(pid);
            (nix::unistd::getpgid(Some(pid)).ok()?.as_raw() == pgid).then_some(pid)
        })
        .collect()
}

/// The last `n` lines of a file (the SLURM job's output in `train.log`).
pub fn file_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    use std::io::{Seek, SeekFrom};
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text
        .split(['\n', '\r'])
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}
