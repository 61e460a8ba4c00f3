//! Checkpoints: `checkpoints/step-N/` holds the PEFT adapter, the optimizer state and
//! `trainer_state.json`, which records every file's size and hash. A checkpoint is written
//! into a temporary folder and renamed into place, so one either exists whole or not at
//! all; one damaged later (a truncated file) fails its hash check and is skipped.

use super::optim::AdamW;
use crate::files::write_atomic;
use crate::model::Model;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The objective's own state (GRPO's generation batch in reuse), when it has one.
pub const OBJECTIVE_FILE: &str = "objective_state.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub fnv1a64: String,
}

/// Where training stood; with the seed, this is everything a resumed run needs (the data
/// order and dropout masks are pure functions of the seed and these counters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: u64,
    /// Micro-batches consumed.
    pub micro: u64,
    pub epoch: f64,
    pub tokens_seen: u64,
    pub elapsed_s: f64,
    pub best_eval_loss: Option<f64>,
    pub seed: u64,
    pub total_steps: u64,
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Adapter(#[from] crate::model::ModelError),
    #[error("{}: {source}", path.display())]
    Optimizer {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// FNV-1a (64-bit) of a file, streamed.
pub fn digest(path: &Path) -> std::io::Result<FileDigest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        for b in &buf[..n] {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(FileDigest {
        bytes,
        fnv1a64: format!("{h:016x}"),
    })
}

pub fn step_dir(checkpoints: &Path, step: u64) -> PathBuf {
    checkpoints.join(format!("step-{step}"))
}

/// Writes checkpoint `state.step` under `checkpoints` (with the objective's own state, when
/// it has one) and returns its folder.
pub fn save(
    checkpoints: &Path,
    model: &Model,
    base_model: &str,
    optimizer: &AdamW,
    state: &TrainerState,
    objective: Option<&[u8]>,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(checkpoints).map_err(|e| io(checkpoints, e))?;
    let tmp = checkpoints.join(format!(".tmp-step-{}", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    crate::model::peft::save(model, &tmp, base_model)?;
    let opt_path = tmp.join(OPTIMIZER_FILE);
    optimizer
        .save(&opt_path)
        .map_err(|source| CheckpointError::Optimizer {
            path: opt_path.clone(),
            source,
        })?;
    let mut names = vec![
        "adapter_model.safetensors",
        "adapter_config.json",
        OPTIMIZER_FILE,
    ];
    if let Some(bytes) = objective {
        let p = tmp.join(OBJECTIVE_FILE);
        write_atomic(&p, bytes).map_err(|e| io(&p, e))?;
        names.push(OBJECTIVE_FILE);
    }
    let mut state = state.clone();
    state.files.clear();
    for name in names {
        let p = tmp.join(name);
        let f = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
        f.sync_all().map_err(|e| io(&p, e))?;
        state
            .files
            .insert(name.into(), digest(&p).map_err(|e| io(&p, e))?);
    }
    let text = serde_json::to_vec_pretty(&state).map_err(|e| io(&tmp, e.into()))?;
    let sp = tmp.join(STATE_FILE);
    write_atomic(&sp, &text).map_err(|e| io(&sp, e))?;
    let dest = step_dir(checkpoints, state.step);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| io(&dest, e))?;
    }
    std::fs::rename(&tmp, &dest).map_err(|e| io(&dest, e))?;
    Ok(dest)
}

/// Reads a checkpoint's state and checks every file it lists against its size and hash.
pub fn verify(dir: &Path) -> Result<TrainerState, CheckpointError> {
    let sp = dir.join(STATE_FILE);
    let bytes = std::fs::read(&sp).map_err(|e| io(&sp, e))?;
    let state: TrainerState =
        serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Invalid {
            path: sp.clone(),
            message: format!("unreadable trainer state: {e}"),
        })?;
    if state.files.is_empty() {
        return Err(CheckpointError::Invalid {
            path: sp,
            message: "lists no files".into(),
        });
    }
    for (name, want) in &state.files {
        let p = dir.join(name);
        let got = digest(&p).map_err(|e| io(&p, e))?;
        if &got != want {
            return Err(CheckpointError::Invalid {
                path: p,
                message: format!(
                    "{} bytes with hash {}, but the checkpoint recorded {} bytes with hash {}",
                    got.bytes, got.fnv1a64, want.bytes, want.fnv1a64
                ),
            });
        }
    }
    Ok(state)
}

/// Finished checkpoints (`step-N`), oldest first. Temporary folders are not listed.
pub fn list(checkpoints: &Path) -> Vec<(u64, PathBuf)> {
    crate::runs::adapters::checkpoint_dirs(checkpoints)
}

/// A usable checkpoint: its folder and state.
pub type Good = (PathBuf, TrainerState);
/// A checkpoint passed over: its folder and why.
pub type Skipped = (PathBuf, String);

/// The newest checkpoint that verifies, and the ones skipped on the way (with why).
pub fn latest_good(checkpoints: &Path) -> (Option<Good>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    for (_, dir) in list(checkpoints).into_iter().rev() {
        match verify(&dir) {
            Ok(state) => return (Some((dir, state)), skipped),
            Err(e) => skipped.push((dir, e.to_string())),
        }
    }
    (None, skipped)
}

/// Keeps the newest `keep` checkpoints (0 keeps all) and removes stale temporary folders.
pub fn prune(checkpoints: &Path, keep: usize) -> std::io::Result<()> {
    let all = list(checkpoints);
    if keep > 0 && all.len() > keep {
        for (_, dir) in &all[..all.len() - keep] {
            std::fs::remove_dir_all(dir)?;
        }
    }
    for e in std::fs::read_dir(checkpoints)?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-step-") {
            std::fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}
