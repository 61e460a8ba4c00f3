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
        })
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
