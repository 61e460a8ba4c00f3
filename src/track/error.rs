//! What can go wrong writing or reading a tracker's files.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: super::tfrecord::RecordError,
    },
    #[error("{}: record {index}: {what}", path.display())]
    Decode {
        path: PathBuf,
        index: usize,
        what: String,
    },
    /// `runs export --tensorboard` on a run that is still writing its own files.
    #[error("{0}")]
    Live(String),
}

impl TrackError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrackError::Io {
            path: path.into(),
            source,
        }
    }
}
