//! One process run to completion under a time limit, without a shell: its input written
//! from a thread of its own (a child that fills its output pipe before reading all of its
//! input must not deadlock us), its output and error read fully on two more, and the whole
//! process group killed when the limit passes, so a script's own children (a `sleep`, a
//! Python worker) die with it instead of holding its pipes open.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A process that ended by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug)]
pub enum Failure {
    /// It could not be started (or a thread to feed it could not).
    Start(std::io::Error),
    /// Waiting for it failed.
    Wait(std::io::Error),
    /// It ran past the limit and was killed; `exited`: it had ended, but something it started
    /// kept its output open.
    TimedOut { exited: bool },
}

/// Runs `program args…` in `dir` with `input` on its standard input.
pub fn run(
    program: &Path,
    args: &[String],
    dir: &Path,
    input: Vec<u8>,
    limit: Duration,
) -> Result<Finished, Failure> {
    let deadline = Instant::now() + limit;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .spawn()
        .map_err(Failure::Start)?;
    let started = feed_and_drain(&mut child, input);
    let (out_rx, err_rx) = match started {
        Ok(rx) => rx,
        Err(e) => {
            kill(&mut child);
            return Err(Failure::Start(e));
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                kill(&mut child);
                return Err(Failure::TimedOut { exited: false });
            }
            Err(e) => {
                kill(&mut child);
                return Err(Failure::Wait(e));
            }
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let stdout = out_rx.recv_timeout(left);
    let left = deadline.saturating_duration_since(Instant::now());
    let stderr = err_rx.recv_timeout(left);
    match (stdout, stderr) {
        (Ok(stdout), Ok(stderr)) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        _ => {
            kill_group(child.id());
            Err(Failure::TimedOut { exited: true })
        }
    }
}

/// Starts the threads that write `input` and read the output and error streams; the
/// readers hand their bytes back through the channels.
#[allow(clippy::type_complexity)]
fn feed_and_drain(
    child: &mut Child,
    input: Vec<u8>,
) -> std::io::Result<(mpsc::Receiver<Vec<u8>>, mpsc::Receiver<Vec<u8>>)> {
    let missing = || std::io::Error::other("a standard stream was not piped");
    let mut stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    std::thread::Builder::new()
        .name("tunelab-reward-stdin".into())
        .spawn(move || {
            no_sigpipe_here();
            // A child that exits without reading everything closes the pipe: its exit
            // status and output say what went wrong, not this write.
            if let Err(e) = stdin.write_all(&input) {
                tracing::debug!(error = %e, "reward command stopped reading its input");
            }
        })?;
    Ok((drain(stdout, "stdout")?, drain(stderr, "stderr")?))
}

fn drain(
    mut from: impl Read + Send + 'static,
    what: &str,
) -> std::io::Result<mpsc::Receiver<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("tunelab-reward-{what}"))
        .spawn(move || {
            let mut buf = Vec::new();
            let _ = from.read_to_end(&mut buf);
            let _ = tx.send(buf);
        })?;
    Ok(rx)
}

/// A write to a closed pipe on this thread returns `EPIPE` instead of raising SIGPIPE, even
/// in a process that restored SIGPIPE's default (the CLI does, for its own output).
fn no_sigpipe_here() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

fn kill(child: &mut Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL to the process group `pid` leads (it was started as its own group).
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
