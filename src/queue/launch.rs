//! Starting a trainer the way `tunelab train --detach` does: `tunelab train` in a session of
//! its own (setsid), so closing the terminal or SSH never reaches it, with its output
//! appended to the run's `train.log`.

use super::entry::Entry;
use super::error::QueueError;
use crate::runs::RunDir;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Spawns `cmd` in a new session, stdin closed.
pub fn spawn_detached(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe; it detaches the child from the terminal's
    // session so a closing SSH connection (SIGHUP to the session) does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
}

/// Starts `e`'s trainer with `exe` (`tunelab train CONFIG --run-dir DIR`, or `--resume DIR`)
/// on the GPUs given (as `CUDA_VISIBLE_DEVICES`, so the run's `cuda` is the first of them).
pub fn start(exe: &Path, e: &Entry, gpus: &[usize]) -> Result<Child, QueueError> {
    let run = RunDir::new(&e.dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.log())
        .map_err(|err| QueueError::io(&run.log(), err))?;
    let err_log = log
        .try_clone()
        .map_err(|err| QueueError::io(&run.log(), err))?;
    let mut cmd = Command::new(exe);
    cmd.arg("train");
    if e.resume {
        cmd.arg("--resume").arg(&e.dir);
    } else {
        cmd.arg(run.config()).arg("--run-dir").arg(&e.dir);
    }
    if !gpus.is_empty() {
        let list: Vec<String> = gpus.iter().map(usize::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
    }
    cmd.stdout(log).stderr(err_log);
    spawn_detached(&mut cmd).map_err(|source| QueueError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })
}
