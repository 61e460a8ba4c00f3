//! The launched tool as something to poll and stop: a process group on this machine
//! ([`LocalJob`]) or a SLURM job ([`super::slurm::SlurmJob`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
/// run's `train.log` by the tool itself (not through this process: a killed supervisor must
/// not break the tool's stdout while its trainer saves).
pub struct LocalJob {
    child: Child,
    pgid: i32,
    /// Where each Trainer process leaves its pid (`<host>-<pid>`).
    trainer_pids: PathBuf,
    log: PathBuf,
    exited: Option<(ExitStatus, Instant)>,
    stopping: Option<Instant>,
}

impl LocalJob {
    /// Starts `cmd` in a new process group, its stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path, trainer_pids: &Path) -> std::io::Result<LocalJob> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn()?;
        let pgid = child.id() as i32;
        Ok(LocalJob {
            child,
            pgid,
            trainer_pids: trainer_pids.to_path_buf(),
            log: log.to_path_buf(),
            exited: None,
            stopping: None,
        })
    }

    fn group_alive(&self) -> bool {
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pgid), None).is_ok()
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
        file_tail(&self.log, TAIL)
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
