//! What can go wrong with the queue; each error names the file, the run or the flag.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a queue file ({why}); fix it or move it aside (the runs it listed stay queued in their folders)", path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("no queued run {spec:?} (see `tunelab queue list`)")]
    NotQueued { spec: String },
    #[error("{id} is running; stop it with `tunelab runs stop {id}`")]
    Running { id: String },
    #[error("--to {to}: the queue has {waiting} waiting run{}; give a position from 1 to {waiting}", if *waiting == 1 { "" } else { "s" })]
    Position { to: usize, waiting: usize },
    #[error("--gpus {gpus}: the config trains on the CPU (train.device: cpu); set train.device: cuda to queue a GPU run")]
    GpusOnCpu { gpus: usize },
    #[error("--gpus {gpus}: train.device {device} names one GPU; use train.device: cuda to let the queue pick {gpus}")]
    GpusOnOrdinal { gpus: usize, device: String },
    #[error("--gpus must be at least 1")]
    NoGpus,
    #[error("{id} cannot be resumed: {why}")]
    NotResumable { id: String, why: String },
    #[error("{id} is already in the queue")]
    Duplicate { id: String },
    #[error("cannot start {exe}: {source}", exe = exe.display())]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl QueueError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        QueueError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
