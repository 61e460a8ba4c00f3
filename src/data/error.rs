//! Errors that stop work on a whole dataset file (one bad record is a [`Problem`](super::Problem) instead).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: no such file", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: is a directory; expected a dataset file (.json, .jsonl or .parquet)", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{}: unknown extension; expected .json, .jsonl (or .ndjson) or .parquet", path.display())]
    UnknownExtension { path: PathBuf },
    #[error("{}: the file is empty; expected {expected}", path.display())]
    Empty {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output that cannot be written (its folder missing, no permission, a full disk).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The container itself is broken (an unclosed array, a file that is not Parquet):
    /// reading cannot go on past `location`.
    #[error("{}: {location}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        location: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Detect { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
}

impl DataError {
    /// An error writing `path` (an output file), whatever its kind.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Write {
            path: path.into(),
            source,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => DataError::NotFound { path },
            _ => DataError::Io { path, source },
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
