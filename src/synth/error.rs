//! Errors that stop synthesis before or outside any one record (a record's failure is
//! counted in the report instead).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The request cannot start: a missing or empty seed file, a bad persona, an output
    /// format that cannot hold the records, a missing API key.
    #[error("{0}")]
    Input(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SynthError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SynthError::Io {
            path: path.into(),
            source,
        }
    }
}
