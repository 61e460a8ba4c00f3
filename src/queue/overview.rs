//! The queue as people read it: running runs, then waiting runs in order with what each
//! waits for, and the scheduler's pid. `tunelab queue list` prints it and the Runs tab
//! draws it (read on its watcher thread).

use super::devices::{gpu_count, Need};
use super::entry::Entry;
use super::error::QueueError;
use super::plan::{plan, why_waiting};
use super::scheduler::{busy, holder};
use super::store::QueueFiles;
use serde::Serialize;
use std::path::PathBuf;

/// One queued run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Its place among the waiting runs, from 1 (`None` once launched).
    pub position: Option<usize>,
    pub id: String,
    pub dir: PathBuf,
    /// `running` or `waiting`.
    pub state: &'static str,
    pub device: String,
    pub gpus: usize,
    pub sweep: Option<String>,
    pub resume: bool,
    pub added: f64,
    /// The trainer's pid, once launched.
    pub pid: Option<u32>,
    /// The GPUs it was handed (`CUDA_VISIBLE_DEVICES`).
    pub given_gpus: Vec<usize>,
    /// What a waiting run waits for (`waits for the CPU`, `starts now`).
    pub waits: Option<String>,
}

/// The whole queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overview {
    /// The scheduler's pid while one runs.
    pub scheduler: Option<u32>,
    pub log: PathBuf,
    pub rows: Vec<Row>,
}

impl Overview {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The waiting runs, in order.
    pub fn waiting(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.position.is_some())
    }
}

fn row(e: &Entry, position: Option<usize>, waits: Option<String>) -> Row {
    Row {
        position,
        id: e.id.clone(),
        dir: e.dir.clone(),
        state: if e.launched.is_some() {
            "running"
        } else {
            "waiting"
        },
        device: e.device.to_string(),
        gpus: e.gpus,
        sweep: e.sweep.clone(),
        resume: e.resume,
        added: e.added,
        pid: e.launched.as_ref().map(|l| l.pid),
        given_gpus: e
            .launched
            .as_ref()
            .map(|l| l.gpus.clone())
            .unwrap_or_default(),
        waits,
    }
}

/// Reads the queue, the scheduler's lock and the runs that hold devices.
pub fn overview(files: &QueueFiles) -> Result<Overview, QueueError> {
    let q = files.read()?;
    let scheduler = holder(files)?;
    let busy = busy(files, &q);
    let gpus = gpu_count();
    let waiting: Vec<(usize, Need)> = q
        .waiting()
        .enumerate()
        .map(|(i, e)| (i, Need::of(e.device, e.gpus)))
        .collect();
    let starting: Vec<usize> = plan(&waiting, &busy, gpus)
        .iter()
        .map(|s| s.index)
        .collect();
    let mut rows: Vec<Row> = q.launched().map(|e| row(e, None, None)).collect();
    for (i, e) in q.waiting().enumerate() {
        let waits = match (starting.contains(&i), scheduler) {
            (true, Some(_)) => "starts now".to_string(),
            (true, None) => "no scheduler runs: `tunelab queue start`".to_string(),
            (false, _) => why_waiting(Need::of(e.device, e.gpus), &busy, gpus),
        };
        rows.push(row(e, Some(i + 1), Some(waits)));
    }
    Ok(Overview {
        scheduler,
        log: files.log(),
        rows,
    })
}
