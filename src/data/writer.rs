//! Atomic dataset output: records stream into a temporary file beside the target, which is
//! renamed over it only when everything was written. A failed or abandoned write leaves the
//! target untouched.

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

pub struct RecordWriter {
    dest: PathBuf,
    container: OutputContainer,
    out: BufWriter<NamedTempFile>,
    count: u64,
}

impl RecordWriter {
    pub fn create(dest: impl AsRef<Path>) -> Result<Self, DataError> {
        let dest = dest.as_ref().to_path_buf();
        let container = OutputContainer::from_path(&dest)?;
        if dest.is_dir() {
            return Err(DataError::IsDirectory { path: dest });
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".tunelab-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| DataError::io(&dir, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        if container == OutputContainer::JsonArray {
            out.write_all(b"[").map_err(|e| DataError::io(&dest, e))?;
        }
        Ok(RecordWriter {
            dest,
            container,
            out,
            count: 0,
        })
    }

    pub fn write(&mut self, record: &Map<String, Value>) -> Result<(), DataError> {
        let bytes = serde_json::to_vec(record).map_err(|e| DataError::io(&self.dest, e.into()))?;
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
        let io = |e| DataError::io(dest, e);
        self.out.write_all(sep).map_err(io)?;
        self.out.write_all(json).map_err(io)?;
        if self.container == OutputContainer::Jsonl {
            self.out.write_all(b"\n").map_err(io)?;
        }
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Closes the container, syncs, and renames the temporary file over the destination.
    pub fn finish(mut self) -> Result<u64, DataError> {
        let dest = self.dest.clone();
        if self.container == OutputContainer::JsonArray {
            let tail: &[u8] = if self.count == 0 { b"]\n" } else { b"\n]\n" };
            self.out
                .write_all(tail)
                .map_err(|e| DataError::io(&dest, e))?;
        }
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| DataError::io(&dest, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| DataError::io(&dest, e))?;
        tmp.persist(&dest)
            .map_err(|e| DataError::io(&dest, e.error))?;
        Ok(self.count)
    }
}

/// Temporary files are created private (0600); what we publish gets ordinary permissions.
fn publishable(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tunelab-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    publishable(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
