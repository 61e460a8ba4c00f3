//! Work off the UI thread. Two kinds: jobs (one thread each: load a dataset, list models,
//! start a run) that send one [`Update`] back, and the watcher, one long-lived thread that
//! tails the runs on screen, lists the runs from their `status.json`, and samples memory.
//! Updates reach the event loop through one channel and wake it at once; the UI thread
//! itself never opens a file.

use super::run_view::RunView;
use super::tabs::TabMsg;
use crate::runs::{RunDir, RunEvent, RunSummary, Status};
use crate::telemetry::MemorySample;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A piece of background work; its update is its result.
pub type Job = Box<dyn FnOnce() -> Update + Send + 'static>;

/// Everything that comes back from off the UI thread, addressed to whoever owns it.
pub enum Update {
    /// A tab's job or stream.
    Tab(TabMsg),
    /// A job that has nothing to report (the tour's marker was written).
    Done,
    /// New events of a watched run, for the view subscribed with `key`.
    RunEvents {
        key: u64,
        events: Vec<RunEvent>,
        status: Option<Status>,
    },
    /// A watched run's whole history so far, already built (a long run's first read is
    /// digested here, off the UI thread).
    RunView(Box<RunView>),
    /// Every run, from `status.json` alone.
    RunList(Vec<RunSummary>),
    /// The run queue, when it changed.
    Queue(Box<crate::queue::Overview>),
    /// A run queued by the workbench: its id, folder and place in the queue, or why not.
    RunQueued(Result<(String, PathBuf, usize), String>),
    Memory(MemorySample),
    /// A run started by the workbench: its id and folder, or why not.
    RunStarted(Result<(String, PathBuf), String>),
    /// A stop request was delivered (the pid), or why not.
    StopSent(Result<u32, String>),
    /// The watcher finished the cycle that answers [`WatchCmd::Ping`] `n`.
    Pong(u64),
}

/// What the watcher is asked to do.
pub enum WatchCmd {
    /// Tail these runs, each for the view subscribed with its key; `primary` is the view
    /// whose trainer's RSS the memory sample reports.
    Tail {
        runs: Vec<(u64, RunDir)>,
        primary: Option<u64>,
    },
    /// Do a whole cycle now, then answer with [`Update::Pong`].
    Ping(u64),
}

enum Envelope {
    /// The result of a job (the pending count goes down).
    Job(Update),
    /// A watcher or stream update.
    Stream(Update),
}

/// Sends stream updates (generation tokens) from any thread.
#[derive(Clone)]
pub struct Streamer(mpsc::UnboundedSender<Envelope>);

impl Streamer {
    pub fn send(&self, u: Update) -> bool {
        self.0.send(Envelope::Stream(u)).is_ok()
    }
}

pub struct Background {
    tx: mpsc::UnboundedSender<Envelope>,
    rx: mpsc::UnboundedReceiver<Envelope>,
    pending: usize,
    watch: std_mpsc::Sender<WatchCmd>,
    pings: u64,
    answered: u64,
    /// A tail command went out, or a job reported (it may have written a file the
    /// watcher reads, such as the queue), after the last ping: the ping does not cover it.
    tail_after_ping: bool,
}

impl Background {
    /// Starts the watcher over the runs under `roots` and the queue of `queue`;
    /// `telemetry` off leaves memory unsampled (tests and snapshots pin it).
    pub fn new(roots: Vec<PathBuf>, queue: crate::queue::QueueFiles, telemetry: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (wtx, wrx) = std_mpsc::channel();
        let out = tx.clone();
        std::thread::Builder::new()
            .name("tunelab-watch".into())
            .spawn(move || Watcher::new(roots, queue, telemetry, out).run(wrx))
            .ok();
        Background {
            tx,
            rx,
            pending: 0,
            watch: wtx,
            pings: 0,
            answered: 0,
            tail_after_ping: false,
        }
    }

    /// Runs `job` on its own thread.
    pub fn spawn(&mut self, job: Job) {
        self.pending += 1;
        let tx = self.tx.clone();
        let started = std::thread::Builder::new()
            .name("tunelab-job".into())
            .spawn(move || {
                let _ = tx.send(Envelope::Job(job()));
            });
        if started.is_err() {
            self.pending -= 1;
        }
    }

    pub fn streamer(&self) -> Streamer {
        Streamer(self.tx.clone())
    }

    pub fn watch(&mut self, cmd: WatchCmd) {
        if matches!(cmd, WatchCmd::Tail { .. }) {
            self.tail_after_ping = true;
        }
        let _ = self.watch.send(cmd);
    }

    /// Asks the watcher for a cycle now; [`Background::caught_up`] says when it answered.
    pub fn ping(&mut self) {
        self.pings += 1;
        self.tail_after_ping = false;
        let _ = self.watch.send(WatchCmd::Ping(self.pings));
    }

    /// No job is running and the watcher answered a ping sent after every tail command.
    pub fn caught_up(&mut self) -> bool {
        if self.tail_after_ping {
            self.ping();
        }
        self.pending == 0 && self.answered >= self.pings
    }

    fn open(&mut self, e: Envelope) -> Update {
        match e {
            Envelope::Job(u) => {
                self.pending = self.pending.saturating_sub(1);
                self.tail_after_ping = true;
                u
            }
            Envelope::Stream(u) => {
                if let Update::Pong(n) = u {
                    self.answered = self.answered.max(n);
                }
                u
            }
        }
    }

    /// The next update if one is waiting.
    pub fn try_next(&mut self) -> Option<Update> {
        let e = self.rx.try_recv().ok()?;
        Some(self.open(e))
    }

    /// Waits for the next update (the event loop selects on this).
    pub async fn next(&mut self) -> Option<Update> {
        let e = self.rx.recv().await?;
        Some(self.open(e))
    }
}

/// How often the watched runs are tailed, and how often the list and memory are read.
const TAIL_EVERY: Duration = Duration::from_millis(100);
const LIST_EVERY: Duration = Duration::from_secs(1);
/// A first read with more events than this arrives as a built view.
const DIGEST_ABOVE: usize = 512;

struct Tailed {
    run: RunDir,
    offset: u64,
    status: Option<Status>,
}

struct Watcher {
    roots: Vec<PathBuf>,
    queue: crate::queue::QueueFiles,
    last_queue: Option<crate::queue::Overview>,
    telemetry: bool,
    gpus: Option<crate::telemetry::Gpus>,
    out: mpsc::UnboundedSender<Envelope>,
    tails: HashMap<u64, Tailed>,
    primary: Option<u64>,
    last_list: Option<Vec<RunSummary>>,
    /// Losses of runs written before status.json carried them, by (folder, events size).
    legacy: HashMap<PathBuf, (u64, Option<f64>, Option<f64>)>,
}

impl Watcher {
    fn new(
        roots: Vec<PathBuf>,
        queue: crate::queue::QueueFiles,
        telemetry: bool,
        out: mpsc::UnboundedSender<Envelope>,
    ) -> Self {
        Watcher {
            roots,
            queue,
            last_queue: None,
            gpus: if telemetry {
                crate::telemetry::Gpus::open()
            } else {
                None
            },
            telemetry,
            out,
            tails: HashMap::new(),
            primary: None,
            last_list: None,
            legacy: HashMap::new(),
        }
    }

    fn send(&self, u: Update) -> bool {
        self.out.send(Envelope::Stream(u)).is_ok()
    }

    fn run(mut self, cmds: std_mpsc::Receiver<WatchCmd>) {
        let mut next_list = Instant::now();
        loop {
            let mut ping = None;
            match cmds.recv_timeout(TAIL_EVERY) {
                Ok(WatchCmd::Tail { runs, primary }) => {
                    let old = std::mem::take(&mut self.tails);
                    for (key, run) in runs {
                        let t = match old.get(&key) {
                            Some(t) if t.run == run => Tailed {
                                run,
                                offset: t.offset,
                                status: t.status.clone(),
                            },
                            _ => Tailed {
                                run,
                                offset: 0,
                                status: None,
                            },
                        };
                        self.tails.insert(key, t);
                    }
                    self.primary = primary;
                }
                Ok(WatchCmd::Ping(n)) => ping = Some(n),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if !self.tail() {
                return;
            }
            if ping.is_some() || Instant::now() >= next_list {
                next_list = Instant::now() + LIST_EVERY;
                if !self.list() {
                    return;
                }
            }
            if let Some(n) = ping {
                if !self.send(Update::Pong(n)) {
                    return;
                }
            }
        }
    }

    /// New events and status of every tailed run; false once the app is gone.
    fn tail(&mut self) -> bool {
        let mut updates = Vec::new();
        for (key, t) in &mut self.tails {
            let first = t.offset == 0;
            let (events, next) =
                crate::runs::read_events(&t.run.events_path(), t.offset).unwrap_or_default();
            if next >= t.offset {
                t.offset = next;
            }
            let status = t.run.read_status().ok();
            let changed = status != t.status;
            if changed {
                t.status = status.clone();
            }
            if first && events.len() > DIGEST_ABOVE {
                let mut view = RunView::with_key(*key, t.run.clone());
                view.feed(events, status);
                updates.push(Update::RunView(Box::new(view)));
            } else if !events.is_empty() || changed {
                updates.push(Update::RunEvents {
                    key: *key,
                    events,
                    status: if changed { status } else { None },
                });
            }
        }
        updates.into_iter().all(|u| self.send(u))
    }

    /// The run list and the queue (each sent when it changed) and a memory sample.
    fn list(&mut self) -> bool {
        // A queue file that cannot be read shows as empty; `tunelab queue list` names why.
        let queue = crate::queue::overview(&self.queue).unwrap_or_default();
        if self.last_queue.as_ref() != Some(&queue) {
            self.last_queue = Some(queue.clone());
            if !self.send(Update::Queue(Box::new(queue))) {
                return false;
            }
        }
        let legacy = &mut self.legacy;
        let runs =
            crate::runs::list_roots(&self.roots, &mut |run: &RunDir| legacy_losses(legacy, run));
        if self.last_list.as_ref() != Some(&runs) {
            self.last_list = Some(runs.clone());
            if !self.send(Update::RunList(runs)) {
                return false;
            }
        }
        if self.telemetry {
            let pid = self
                .primary
                .and_then(|k| self.tails.get(&k))
                .and_then(|t| t.status.as_ref())
                .filter(|s| !s.state.is_final())
                .and_then(|s| s.pid);
            if let Some(m) = MemorySample::read(self.gpus.as_ref(), pid) {
                return self.send(Update::Memory(m));
            }
        }
        true
    }
}

/// The losses of a run whose status.json predates them, read from its events once per
/// size of the events file.
fn legacy_losses(
    cache: &mut HashMap<PathBuf, (u64, Option<f64>, Option<f64>)>,
    run: &RunDir,
) -> crate::runs::Losses {
    let size = std::fs::metadata(run.events_path()).map_or(0, |m| m.len());
    if let Some((s, last, best)) = cache.get(&run.root) {
        if *s == size {
            return (*last, *best);
        }
    }
    let (events, _) = crate::runs::read_events(&run.events_path(), 0).unwrap_or_default();
    let (last, best) = crate::runs::loss_summary(&events);
    cache.insert(run.root.clone(), (size, last, best));
    (last, best)
}
