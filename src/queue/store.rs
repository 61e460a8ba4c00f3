//! The queue's files in `<data>/queue/`: `queue.json` (written atomically), `queue.lock`
//! (an exclusive `flock` held around every read-modify-write, so `queue add` and the
//! scheduler never lose each other's changes), `scheduler.lock` (held by the scheduler for
//! its whole life, with its pid inside; the kernel drops it when the process dies, even by
//! kill -9, so a stale lock cannot exist) and `scheduler.log`.

use super::entry::{Queue, QUEUE_FORMAT};
use super::error::QueueError;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The queue of one data folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFiles {
    /// The data folder (its `runs/` is where runs are listed).
    pub data: PathBuf,
}

impl QueueFiles {
    pub fn new(data: impl Into<PathBuf>) -> Self {
        QueueFiles { data: data.into() }
    }
    pub fn dir(&self) -> PathBuf {
        self.data.join("queue")
    }
    pub fn queue(&self) -> PathBuf {
        self.dir().join("queue.json")
    }
    fn edit_lock(&self) -> PathBuf {
        self.dir().join("queue.lock")
    }
    pub fn scheduler_lock(&self) -> PathBuf {
        self.dir().join("scheduler.lock")
    }
    pub fn log(&self) -> PathBuf {
        self.dir().join("scheduler.log")
    }

    /// The queue as last written (empty when there is none). Writes are atomic, so no lock
    /// is needed to read.
    pub fn read(&self) -> Result<Queue, QueueError> {
        read_queue(&self.queue())
    }

    /// Reads, changes and writes the queue under its lock; `change`'s error leaves the file
    /// as it was.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Queue) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| QueueError::io(&dir, e))?;
        let lock_path = self.edit_lock();
        let lock = open_lock(&lock_path)?;
        lock.lock().map_err(|e| QueueError::io(&lock_path, e))?;
        let mut q = self.read()?;
        let before = q.clone();
        let out = change(&mut q)?;
        if q != before {
            q.format = QUEUE_FORMAT;
            let text = serde_json::to_vec_pretty(&q).map_err(|e| QueueError::Damaged {
                path: self.queue(),
                why: e.to_string(),
            })?;
            crate::files::write_atomic(&self.queue(), &text)
                .map_err(|e| QueueError::io(&self.queue(), e))?;
        }
        drop(lock);
        Ok(out)
    }
}

/// Opens (creating) a lock file.
pub fn open_lock(path: &Path) -> Result<File, QueueError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| QueueError::io(path, e))
}

fn read_queue(path: &Path) -> Result<Queue, QueueError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| QueueError::Damaged {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Queue::default()),
        Err(e) => Err(QueueError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::entry::tests::entry;

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = QueueFiles::new(dir.path());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let f = files.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        f.update(|q| q.push(entry(&format!("r{t}-{i}")))).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(files.read().unwrap().entries.len(), 80);
    }

    #[test]
    fn a_damaged_file_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let files = QueueFiles::new(dir.path());
        std::fs::create_dir_all(files.dir()).unwrap();
        std::fs::write(files.queue(), b"{\"entries\": 3}").unwrap();
        let e = files.update(|_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("queue.json: not a queue file"), "{e}");
        assert_eq!(std::fs::read(files.queue()).unwrap(), b"{\"entries\": 3}");
    }
}
