//! `sweep.json` in a run folder: which sweep the run belongs to, its point, what the sweep
//! ranks by, its pruner, and every member's folder, so the trainer can prune against its
//! siblings without knowing where the sweep came from, and a list of runs can group them.

use super::error::SweepError;
use super::metric::Direction;
use crate::runs::RunDir;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file name in a run folder.
pub const MARK_FILE: &str = "sweep.json";

/// Optuna's median pruner: at an evaluation after step 0, a run whose metric is worse than
/// the median of the sweep's completed runs at the same step stops, `pruned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MedianPruner {
    /// Completed runs needed before any run is pruned (Optuna's `n_startup_trials`).
    pub startup: usize,
}

/// A run's membership in a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepMark {
    /// The sweep's id (`tiny-demo-sweep-20261128-100339`).
    pub sweep: String,
    /// The run's place in the sweep, from 1.
    pub index: usize,
    /// The fields the sweep set for this run and their values.
    pub point: serde_json::Map<String, serde_json::Value>,
    /// What the sweep ranks (and prunes) by.
    pub metric: String,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<MedianPruner>,
    /// Every run of the sweep (this one included).
    pub members: Vec<PathBuf>,
}

impl SweepMark {
    fn path(run: &RunDir) -> PathBuf {
        run.root.join(MARK_FILE)
    }

    /// The run's mark; `None` when it is in no sweep (or the mark cannot be read: a run
    /// trains the same without one).
    pub fn read(run: &RunDir) -> Option<SweepMark> {
        Self::try_read(&Self::path(run)).ok().flatten()
    }

    /// The mark at `path`, `None` when there is none, an error naming the file when it is
    /// damaged.
    pub fn try_read(path: &Path) -> Result<Option<SweepMark>, SweepError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| SweepError::Mark {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SweepError::io(path, e)),
        }
    }

    /// Writes the mark into `run` atomically.
    pub fn write(&self, run: &RunDir) -> Result<(), SweepError> {
        let path = Self::path(run);
        let text = serde_json::to_vec_pretty(self).map_err(|e| SweepError::Mark {
            path: path.clone(),
            why: e.to_string(),
        })?;
        crate::files::write_atomic(&path, &text).map_err(|e| SweepError::io(&path, e))
    }

    /// The point as `path=value` pairs joined by spaces (`lora.r=8 train.lr=0.01`).
    pub fn label(&self) -> String {
        self.point
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value as a person writes it: strings bare, everything else as JSON.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A point's YAML text as a JSON value (`8` a number, `[q_proj]` a list, `cosine` a
/// string), as the config will hold it.
pub fn yaml_value(text: &str) -> serde_json::Value {
    serde_yaml::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_labels_its_point() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(SweepMark::read(&run), None);
        let mut point = serde_json::Map::new();
        point.insert("lora.r".into(), yaml_value("8"));
        point.insert("train.scheduler".into(), yaml_value("cosine"));
        let m = SweepMark {
            sweep: "s".into(),
            index: 1,
            point,
            metric: "eval_loss".into(),
            direction: Direction::Minimize,
            prune: Some(MedianPruner { startup: 2 }),
            members: vec![dir.path().to_path_buf()],
        };
        m.write(&run).unwrap();
        assert_eq!(SweepMark::read(&run), Some(m.clone()));
        assert_eq!(m.label(), "lora.r=8 train.scheduler=cosine");
        std::fs::write(dir.path().join(MARK_FILE), b"{").unwrap();
        let e = SweepMark::try_read(&dir.path().join(MARK_FILE)).unwrap_err();
        assert!(
            e.to_string().contains("sweep.json: not a sweep mark"),
            "{e}"
        );
    }
}
