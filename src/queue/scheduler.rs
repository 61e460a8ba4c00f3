//! The scheduler: one detached process per data folder (`tunelab queue scheduler`, started
//! on demand by [`ensure`]) that starts the next waiting run when its devices are free,
//! keeps launched runs' devices taken until they end, and exits when the queue is empty.
//! It holds `scheduler.lock` for its whole life, so two never run; the kernel releases the
//! lock when it dies, so after kill -9 or a reboot the next one simply takes over: waiting
//! runs are still waiting, a launched run still training is left alone, one whose trainer
//! died is taken off the queue and shows as `dead` (resume it with `tunelab train --resume`
//! or `tunelab queue add --resume`).

use super::devices::{gpu_count, slot_of, Need, Slot};
use super::entry::{same_dir, Entry, Launch, Queue};
use super::error::QueueError;
use super::plan::plan;
use super::store::{open_lock, QueueFiles};
use crate::model::DeviceSpec;
use crate::runs::{RunDir, RunState, Status};
use std::collections::BTreeSet;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// The scheduler's lock, held while it lives.
#[derive(Debug)]
pub struct SchedulerLock {
    _file: File,
}

impl SchedulerLock {
    /// Takes the lock and writes this process's pid into it; `None` when another scheduler
    /// holds it. Retries for about a second, as [`holder`] holds it for an instant when it
    /// looks.
    pub fn acquire(files: &QueueFiles) -> Result<Option<SchedulerLock>, QueueError> {
        let dir = files.dir();
        std::fs::create_dir_all(&dir).map_err(|e| QueueError::io(&dir, e))?;
        let path = files.scheduler_lock();
        let mut f = open_lock(&path)?;
        for _ in 0..20 {
            match f.try_lock() {
                Ok(()) => {
                    let pid = format!("{}\n", std::process::id());
                    f.set_len(0)
                        .and_then(|_| f.rewind())
                        .and_then(|_| f.write_all(pid.as_bytes()))
                        .and_then(|_| f.flush())
                        .map_err(|e| QueueError::io(&path, e))?;
                    return Ok(Some(SchedulerLock { _file: f }));
                }
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(50)),
                Err(TryLockError::Error(e)) => return Err(QueueError::io(&path, e)),
            }
        }
        Ok(None)
    }
}

/// The pid of the scheduler running for `files`, `None` when none is.
pub fn holder(files: &QueueFiles) -> Result<Option<u32>, QueueError> {
    let path = files.scheduler_lock();
    if !path.exists() {
        return Ok(None);
    }
    let mut f = open_lock(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => {
            // It writes its pid just after locking: give it a moment.
            for _ in 0..40 {
                let mut text = String::new();
                f.rewind()
                    .and_then(|_| f.read_to_string(&mut text))
                    .map_err(|e| QueueError::io(&path, e))?;
                if let Ok(pid) = text.trim().parse() {
                    return Ok(Some(pid));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(Some(0))
        }
        Err(TryLockError::Error(e)) => Err(QueueError::io(&path, e)),
    }
}

/// Whether [`ensure`] found a scheduler or started one; the pid either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Running(u32),
    Started(u32),
}

/// Makes sure a scheduler runs for `files`: starts `exe queue scheduler` in a session of
/// its own (output in `scheduler.log`) unless one holds the lock. Two callers racing may
/// both start one; the lock lets one run.
pub fn ensure(files: &QueueFiles, exe: &Path) -> Result<Ensured, QueueError> {
    if let Some(pid) = holder(files)? {
        return Ok(Ensured::Running(pid));
    }
    let log_path = files.log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| QueueError::io(&log_path, e))?;
    let err_log = log.try_clone().map_err(|e| QueueError::io(&log_path, e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("queue")
        .arg("scheduler")
        .stdout(log)
        .stderr(err_log);
    let mut child =
        super::launch::spawn_detached(&mut cmd).map_err(|source| QueueError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
    let pid = child.id();
    // A long-lived caller (the workbench) reaps it when it exits.
    std::thread::spawn(move || child.wait());
    Ok(Ensured::Started(pid))
}

/// What became of a launched run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Its trainer is alive: its devices stay taken.
    Busy,
    /// It ended (done, stopped, failed, pruned).
    Ended(RunState),
    /// Its trainer is gone without a final state: the run shows as `dead`.
    Died,
    /// The trainer exited before it wrote the run's status (its config could not be used,
    /// or the machine went down at once).
    NeverStarted,
}

/// Decides a launched run's fate from its status and whether pids are alive.
pub fn fate(launch: &Launch, status: Option<&Status>, alive: &dyn Fn(u32) -> bool) -> Fate {
    match status {
        // The trainer has taken the run over: its status says the rest.
        Some(s) if s.pid == Some(launch.pid) => {
            if s.state.is_final() {
                Fate::Ended(s.state)
            } else if alive(launch.pid) {
                Fate::Busy
            } else {
                Fate::Died
            }
        }
        _ if alive(launch.pid) => Fate::Busy,
        _ => Fate::NeverStarted,
    }
}

/// A run's device from its `config.yaml` (the CPU when it says nothing or cannot be read).
fn device_of(run: &RunDir) -> DeviceSpec {
    std::fs::read_to_string(run.config())
        .ok()
        .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
        .and_then(|v| v.get("train")?.get("device")?.as_str()?.parse().ok())
        .unwrap_or_default()
}

/// The slots taken by runs training outside the queue (started by `tunelab train`, the
/// workbench's `r`, or launched entries a lost queue file forgot).
fn busy_outside(runs_root: &Path, queued: &[PathBuf]) -> BTreeSet<Slot> {
    std::fs::read_dir(runs_root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| RunDir::new(e.path()))
        .filter(|r| !queued.iter().any(|q| same_dir(q, &r.root)))
        .filter(|r| {
            r.read_status().is_ok_and(|s| {
                !s.state.is_final() && s.pid.is_some_and(crate::telemetry::process_alive)
            })
        })
        .map(|r| slot_of(device_of(&r)))
        .collect()
}

/// Every slot taken now: by runs training outside the queue and by `q`'s launched runs.
pub fn busy(files: &QueueFiles, q: &Queue) -> BTreeSet<Slot> {
    let dirs: Vec<PathBuf> = q.entries.iter().map(|e| e.dir.clone()).collect();
    let mut busy = busy_outside(&crate::runs::runs_root(&files.data), &dirs);
    busy.extend(q.launched().flat_map(slots_of));
    busy
}

/// The slots a launched entry holds.
fn slots_of(e: &Entry) -> Vec<Slot> {
    match (Need::of(e.device, e.gpus), &e.launched) {
        (Need::Cpu, _) => vec![Slot::Cpu],
        (Need::Gpu(k), _) => vec![Slot::Gpu(k)],
        (Need::AnyGpus(_), Some(l)) => l.gpus.iter().map(|k| Slot::Gpu(*k)).collect(),
        (Need::AnyGpus(_), None) => vec![],
    }
}

/// Marks a run that never started as failed, with why.
fn fail_run(e: &Entry, why: &str) {
    if e.resume {
        return;
    }
    let run = RunDir::new(&e.dir);
    if let Ok(mut s) = run.read_status() {
        s.state = RunState::Failed;
        s.error = Some(why.to_string());
        s.updated = crate::units::unix_now();
        let _ = run.write_status(&s);
    }
}

/// The scheduler's loop.
pub struct Scheduler {
    files: QueueFiles,
    exe: PathBuf,
    poll: Duration,
    gpu_count: usize,
    /// The trainers it started and has not reaped.
    children: Vec<Child>,
    lock: Option<SchedulerLock>,
}

/// How often the scheduler looks: `TUNELAB_QUEUE_POLL_MS`, else half a second.
fn poll_interval() -> Duration {
    Duration::from_millis(
        std::env::var("TUNELAB_QUEUE_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500),
    )
}

impl Scheduler {
    /// A scheduler for `files` holding `lock`, starting trainers with `exe`.
    pub fn new(files: QueueFiles, exe: PathBuf, lock: SchedulerLock) -> Self {
        Scheduler {
            files,
            exe,
            poll: poll_interval(),
            gpu_count: gpu_count(),
            children: Vec::new(),
            lock: Some(lock),
        }
    }

    /// Runs until the queue is empty, telling `log` what it does (a line per start and
    /// end). An unreadable queue file is reported and retried: the runs wait meanwhile.
    pub fn run(&mut self, log: &mut dyn FnMut(&str)) {
        let mut last_error = None;
        loop {
            match self.tick() {
                Ok((lines, idle)) => {
                    last_error = None;
                    lines.iter().for_each(|l| log(l));
                    if idle {
                        return;
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_ref() != Some(&text) {
                        log(&format!("error: {text}"));
                    }
                    last_error = Some(text);
                }
            }
            std::thread::sleep(self.poll);
        }
    }

    /// One look at the queue: launched runs that ended leave it, waiting runs whose devices
    /// are free start. Returns what happened and whether the queue is empty (the lock is
    /// then released, under the queue's own lock, so a run queued meanwhile finds no
    /// scheduler and starts one).
    pub fn tick(&mut self) -> Result<(Vec<String>, bool), QueueError> {
        // Reap finished trainers so their pids read as gone.
        self.children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        let (exe, gpu_count) = (self.exe.clone(), self.gpu_count);
        let (children, lock, files) = (&mut self.children, &mut self.lock, &self.files);
        files.update(|q| {
            let mut lines = Vec::new();
            settle_launched(q, &mut lines);
            adopt_taken_over(q);
            let busy = busy(files, q);
            let waiting: Vec<(usize, Need)> = q
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.launched.is_none())
                .map(|(i, e)| (i, Need::of(e.device, e.gpus)))
                .collect();
            let mut failed = Vec::new();
            for s in plan(&waiting, &busy, gpu_count) {
                let e = &mut q.entries[s.index];
                match super::launch::start(&exe, e, &s.gpus) {
                    Ok(child) => {
                        let on = if s.gpus.is_empty() {
                            e.device.to_string()
                        } else {
                            format!("CUDA_VISIBLE_DEVICES={:?}", s.gpus)
                        };
                        lines.push(format!("started {} on {on} (pid {})", e.id, child.id()));
                        e.launched = Some(Launch {
                            pid: child.id(),
                            at: crate::units::unix_now(),
                            gpus: s.gpus,
                        });
                        children.push(child);
                    }
                    Err(err) => {
                        lines.push(format!("could not start {}: {err}", e.id));
                        fail_run(e, &err.to_string());
                        failed.push(e.id.clone());
                    }
                }
            }
            q.entries.retain(|e| !failed.contains(&e.id));
            let idle = q.entries.is_empty();
            if idle {
                lock.take();
            }
            Ok((lines, idle))
        })
    }
}

/// Takes launched runs that ended, died or never started off the queue.
fn settle_launched(q: &mut Queue, lines: &mut Vec<String>) {
    q.entries.retain(|e| {
        let Some(l) = &e.launched else { return true };
        let status = RunDir::new(&e.dir).read_status().ok();
        match fate(l, status.as_ref(), &crate::telemetry::process_alive) {
            Fate::Busy => true,
            Fate::Ended(state) => {
                lines.push(format!(
                    "{} ended {}",
                    e.id,
                    format!("{state:?}").to_lowercase()
                ));
                false
            }
            Fate::Died => {
                lines.push(format!(
                    "{} died (pid {} gone); resume it with `tunelab queue add --resume {}`",
                    e.id, l.pid, e.id
                ));
                false
            }
            Fate::NeverStarted => {
                let why = format!(
                    "the trainer (pid {}) exited before the run started; see {}",
                    l.pid,
                    RunDir::new(&e.dir).log().display()
                );
                lines.push(format!("{}: {why}", e.id));
                fail_run(e, &why);
                false
            }
        }
    });
}

/// A waiting run whose trainer already wrote its status (the scheduler died between
/// starting it and recording that) is launched, not started again.
fn adopt_taken_over(q: &mut Queue) {
    for e in q
        .entries
        .iter_mut()
        .filter(|e| e.launched.is_none() && !e.resume)
    {
        if let Some(pid) = RunDir::new(&e.dir).read_status().ok().and_then(|s| s.pid) {
            e.launched = Some(Launch {
                pid,
                at: crate::units::unix_now(),
                gpus: Vec::new(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: RunState, pid: Option<u32>) -> Status {
        Status {
            state,
            pid,
            ..Status::starting(0.0)
        }
    }

    #[test]
    fn a_launched_run_is_busy_ended_dead_or_never_started() {
        let l = Launch {
            pid: 7,
            at: 0.0,
            gpus: vec![],
        };
        let alive = |p: u32| p == 7;
        let gone = |_: u32| false;
        let running = status(RunState::Running, Some(7));
        assert_eq!(fate(&l, Some(&running), &alive), Fate::Busy);
        assert_eq!(fate(&l, Some(&running), &gone), Fate::Died);
        let done = status(RunState::Done, Some(7));
        assert_eq!(fate(&l, Some(&done), &gone), Fate::Ended(RunState::Done));
        // Still the queue's own status (no pid), or a resumed run's old one: the trainer
        // has not written yet.
        let queued = status(RunState::Queued, None);
        assert_eq!(fate(&l, Some(&queued), &alive), Fate::Busy);
        assert_eq!(fate(&l, Some(&queued), &gone), Fate::NeverStarted);
        let old = status(RunState::Stopped, Some(3));
        assert_eq!(fate(&l, Some(&old), &alive), Fate::Busy);
        assert_eq!(fate(&l, None, &gone), Fate::NeverStarted);
    }

    #[test]
    fn one_scheduler_holds_the_lock_and_the_next_takes_it_over() {
        let dir = tempfile::tempdir().unwrap();
        let files = QueueFiles::new(dir.path());
        assert_eq!(holder(&files).unwrap(), None);
        let lock = SchedulerLock::acquire(&files).unwrap().unwrap();
        assert_eq!(holder(&files).unwrap(), Some(std::process::id()));
        assert!(SchedulerLock::acquire(&files).unwrap().is_none());
        drop(lock);
        // Another test of this process may be starting a child at this instant: until the
        // child's exec closes them, it holds copies of our descriptors, the lock's included
        // (flock belongs to the open file, not the process). Give it the moment `acquire`
        // gives a rival, then the lock must be free.
        let t = std::time::Instant::now();
        while holder(&files).unwrap().is_some() && t.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(holder(&files).unwrap(), None);
        assert!(SchedulerLock::acquire(&files).unwrap().is_some());
    }
}
