//! Dataset output: records stream into a temporary file beside the target, which is
//! published over it (`crate::files`) only when everything was written.

use super::error::DataError;
use serde_json::{Map, Value};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputContainer {
    /// A JSON array with one record per line.
    JsonArray,
    Jsonl,
}

impl OutputContainer {
    /// `.json` writes an array, `.jsonl`/`.ndjson` JSON Lines.
    pub fn from_path(path: &Path) -> Result<Self, DataError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Ok(OutputContainer::JsonArray),
            Some("jsonl") | Some("ndjson") => Ok(OutputContainer::Jsonl),
            _ => Err(DataError::Unsupported {
                path: path.to_path_buf(),
                message: "unsupported output extension; expected .json or .jsonl".into(),
            }),
        }
    }
}

/// Output bytes after which the data written so far starts going to disk in the background,
/// so that the sync before publishing finds little left to write.
const SYNC_EVERY: u64 = 16 << 20;

pub struct RecordWriter {
    dest: PathBuf,
    container: OutputContainer,
    out: BufWriter<NamedTempFile>,
    count: u64,
    /// Bytes written, and where the last background sync was asked for.
    bytes: u64,
    synced_at: u64,
    syncer: Option<Syncer>,
}

/// A thread that syncs the temporary file's data to disk when asked (a large output's
/// writeback overlaps the conversion instead of all waiting for the final sync). Its errors
/// are left to that final sync, which reports them.
struct Syncer {
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(file: &std::fs::File) -> Option<Syncer> {
        let file = file.try_clone().ok()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("tunelab-sync".into())
            .spawn(move || {
                for () in rx {
                    let _ = file.sync_data();
                }
            })
            .ok()?;
        Some(Syncer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Asks for a sync unless one is already waiting.
    fn kick(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl RecordWriter {
    pub fn create(dest: impl AsRef<Path>) -> Result<Self, DataError> {
        let dest = dest.as_ref().to_path_buf();
        let container = OutputContainer::from_path(&dest)?;
        if dest.is_dir() {
            return Err(DataError::IsDirectory { path: dest });
        }
        let tmp = crate::files::temp_beside(&dest).map_err(|e| DataError::write(&dest, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        if container == OutputContainer::JsonArray {
            out.write_all(b"[")
                .map_err(|e| DataError::write(&dest, e))?;
        }
        Ok(RecordWriter {
            dest,
            container,
            out,
            count: 0,
            bytes: 0,
            synced_at: 0,
            syncer: None,
        })
    }

    /// Counts `n` bytes written; every [`SYNC_EVERY`] bytes, the data handed to the kernel
    /// so far starts going to disk in the background.
    fn wrote(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.bytes - self.synced_at < SYNC_EVERY {
            return;
        }
        self.synced_at = self.bytes;
        if self.syncer.is_none() {
            self.syncer = Syncer::start(self.out.get_ref().as_file());
        }
        if let Some(s) = &self.syncer {
            s.kick();
        }
    }

    pub fn write(&mut self, record: &Map<String, Value>) -> Result<(), DataError> {
        let bytes =
            serde_json::to_vec(record).map_err(|e| DataError::write(&self.dest, e.into()))?;
        self.write_serialized(&bytes)
    }

    /// Writes one record already serialised as compact JSON (one line, no newline).
    pub fn write_serialized(&mut self, json: &[u8]) -> Result<(), DataError> {
        let sep: &[u8] = match (self.container, self.count) {
            (OutputContainer::JsonArray, 0) => b"\n",
            (OutputContainer::JsonArray, _) => b",\n",
            (OutputContainer::Jsonl, _) => b"",
        };
        let dest = &self.dest;
        let io = |e| DataError::write(dest, e);
        self.out.write_all(sep).map_err(io)?;
        self.out.write_all(json).map_err(io)?;
        if self.container == OutputContainer::Jsonl {
            self.out.write_all(b"\n").map_err(io)?;
        }
        self.count += 1;
        self.wrote(sep.len() + json.len() + 1);
        Ok(())
    }

    /// Writes records already serialised as compact JSON, each followed by `\n` (compact
    /// JSON holds no raw line end): what [`write_serialized`](Self::write_serialized) would
    /// write for each, in one go for JSON Lines.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<(), DataError> {
        if self.container == OutputContainer::Jsonl {
            let n = memchr::memchr_iter(b'\n', lines).count() as u64;
            let dest = &self.dest;
            let io = |e| DataError::write(dest, e);
            if lines.len() >= self.out.capacity() / 4 {
                // A large block goes to the file as it is, not copied through the buffer.
                self.out.flush().map_err(io)?;
                self.out.get_mut().write_all(lines).map_err(io)?;
            } else {
                self.out.write_all(lines).map_err(io)?;
            }
            self.count += n;
            self.wrote(lines.len());
            return Ok(());
        }
        for line in lines.split_inclusive(|b| *b == b'\n') {
            self.write_serialized(line.strip_suffix(b"\n").unwrap_or(line))?;
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Closes the container, syncs, and renames the temporary file over the destination.
    pub fn finish(mut self) -> Result<u64, DataError> {
        let dest = self.dest.clone();
        // Waits for a background sync under way; the final one is `publish`'s.
        self.syncer = None;
        if self.container == OutputContainer::JsonArray {
            let tail: &[u8] = if self.count == 0 { b"]\n" } else { b"\n]\n" };
            self.out
                .write_all(tail)
                .map_err(|e| DataError::write(&dest, e))?;
        }
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| DataError::write(&dest, e.into_error()))?;
        crate::files::publish(tmp, &dest).map_err(|e| DataError::write(&dest, e))?;
        Ok(self.count)
    }
}
