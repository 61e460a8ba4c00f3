//! Errors that stop a judged run before or outside any one item (an item whose requests
//! failed is counted in the report instead, and judged on the next run).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The run cannot start: bad options, a data file without prompts, a missing key.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The model or an adapter cannot be loaded (an adapter of another base among them).
    #[error(transparent)]
    Load(#[from] crate::infer::load::LoadError),
    /// A record's prompt cannot be put through the chat template.
    #[error("{path}: {location}: the chat template cannot render the prompt: {message}")]
    Template {
        path: PathBuf,
        location: String,
        message: String,
    },
    /// A line of an existing verdicts file that this run cannot continue from.
    #[error("{}: line {line}: {message}", path.display())]
    Verdicts {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The decode loop failed (a compute error, not the data's fault).
    #[error("generating the answer to item {index}: {message}")]
    Generate { index: usize, message: String },
}

impl JudgeError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        JudgeError::Io {
            path: path.into(),
            source,
        }
    }
}
