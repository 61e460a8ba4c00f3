//! What can go wrong describing or reading a sweep: each error names the flag or file and
//! what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("--grid {spec:?}: {why} (expected PATH=V1,V2,…, e.g. lora.r=8,16)")]
    Grid { spec: String, why: String },
    #[error("--range {spec:?}: {why} (expected PATH=LO:HI or PATH=LO:HI:log, e.g. train.lr=1e-5:1e-3:log)")]
    Range { spec: String, why: String },
    #[error("a sweep needs --grid PATH=V1,V2,… or --random N with --range PATH=LO:HI")]
    Empty,
    #[error("{path} appears twice in the sweep; give each field once")]
    Repeated { path: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a sweep mark: {why}", path.display())]
    Mark { path: PathBuf, why: String },
}

impl SweepError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SweepError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
