//! The queue as data: entries in order, each a run folder waiting for its devices or
//! launched (with the trainer's pid and the GPUs it was given). Pure operations only; the
//! file and its lock are in `store`.

use super::error::QueueError;
use crate::model::DeviceSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The queue file's layout this version writes.
pub const QUEUE_FORMAT: u32 = 1;

/// A launched entry: the trainer's pid, when, and the GPUs it was handed
/// (`CUDA_VISIBLE_DEVICES`), so the devices stay taken until the run ends, across
/// scheduler restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub pid: u32,
    /// Unix seconds.
    pub at: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<usize>,
}

/// One queued run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The run's id (its folder's name).
    pub id: String,
    /// The run folder (config.yaml and a `queued` status.json are already there).
    pub dir: PathBuf,
    /// Where the run trains, from its config.
    pub device: DeviceSpec,
    /// GPUs it needs (0 on the CPU).
    #[serde(default)]
    pub gpus: usize,
    /// Unix seconds.
    pub added: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<String>,
    /// Continue the run from its newest checkpoint (`tunelab train --resume`) rather than
    /// start it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched: Option<Launch>,
}

/// The queue file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub format: u32,
    pub entries: Vec<Entry>,
}

/// Whether `a` and `b` are the same folder (through links).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

impl Queue {
    /// The entries not launched yet, in the order they will start.
    pub fn waiting(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.launched.is_none())
    }

    /// The launched entries (their runs are training).
    pub fn launched(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.launched.is_some())
    }

    /// The entry `spec` names: an id or a run folder.
    pub fn find(&self, spec: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.id == spec).or_else(|| {
            self.entries
                .iter()
                .position(|e| same_dir(&e.dir, Path::new(spec)))
        })
    }

    /// An entry's place among the waiting ones, from 1.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.waiting().position(|e| e.id == id).map(|p| p + 1)
    }

    /// Appends `e` (refusing a run already queued).
    pub fn push(&mut self, e: Entry) -> Result<(), QueueError> {
        if self.entries.iter().any(|x| same_dir(&x.dir, &e.dir)) {
            return Err(QueueError::Duplicate { id: e.id });
        }
        self.format = QUEUE_FORMAT;
        self.entries.push(e);
        Ok(())
    }

    /// Takes a waiting entry out; a launched one is refused (stop its run instead).
    pub fn remove(&mut self, spec: &str) -> Result<Entry, QueueError> {
        let i = self.find(spec).ok_or_else(|| QueueError::NotQueued {
            spec: spec.to_string(),
        })?;
        if self.entries[i].launched.is_some() {
            return Err(QueueError::Running {
                id: self.entries[i].id.clone(),
            });
        }
        Ok(self.entries.remove(i))
    }

    /// Moves a waiting entry to position `to` (from 1) among the waiting ones.
    pub fn move_to(&mut self, spec: &str, to: usize) -> Result<(), QueueError> {
        let waiting = self.waiting().count();
        let i = self.find(spec).ok_or_else(|| QueueError::NotQueued {
            spec: spec.to_string(),
        })?;
        if self.entries[i].launched.is_some() {
            return Err(QueueError::Running {
                id: self.entries[i].id.clone(),
            });
        }
        if to == 0 || to > waiting {
            return Err(QueueError::Position { to, waiting });
        }
        let e = self.entries.remove(i);
        // Insert before the waiting entry now at position `to`, or after the last.
        let at = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, x)| x.launched.is_none())
            .nth(to - 1)
            .map_or(self.entries.len(), |(k, _)| k);
        self.entries.insert(at, e);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn entry(id: &str) -> Entry {
        Entry {
            id: id.into(),
            dir: PathBuf::from("/nonexistent/runs").join(id),
            device: DeviceSpec::Cpu,
            gpus: 0,
            added: 0.0,
            sweep: None,
            resume: false,
            launched: None,
        }
    }

    fn ids(q: &Queue) -> Vec<&str> {
        q.waiting().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn entries_move_among_the_waiting_and_launched_ones_stay() {
        let mut q = Queue::default();
        for id in ["a", "b", "c", "d"] {
            q.push(entry(id)).unwrap();
        }
        q.entries[0].launched = Some(Launch {
            pid: 1,
            at: 0.0,
            gpus: vec![],
        });
        assert_eq!(ids(&q), ["b", "c", "d"]);
        q.move_to("d", 1).unwrap();
        assert_eq!(ids(&q), ["d", "b", "c"]);
        q.move_to("d", 3).unwrap();
        assert_eq!(ids(&q), ["b", "c", "d"]);
        q.move_to("b", 2).unwrap();
        assert_eq!(ids(&q), ["c", "b", "d"]);
        assert_eq!(q.position("d"), Some(3));
        assert!(matches!(
            q.move_to("b", 4),
            Err(QueueError::Position { to: 4, waiting: 3 })
        ));
        assert!(matches!(q.move_to("a", 1), Err(QueueError::Running { .. })));
        assert!(matches!(q.remove("a"), Err(QueueError::Running { .. })));
        assert!(matches!(q.remove("zz"), Err(QueueError::NotQueued { .. })));
        assert_eq!(q.remove("b").unwrap().id, "b");
        assert_eq!(ids(&q), ["c", "d"]);
        assert!(matches!(
            q.push(entry("c")),
            Err(QueueError::Duplicate { .. })
        ));
    }
}
