//! The hook tunelab puts in front of an engine's Python (`hook.py`, as `sitecustomize.py`
//! first on `PYTHONPATH`), and the lines it writes: what the Hugging Face Trainer logged,
//! saved and finished, read back from byte offsets as they are appended.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The hook's source.
pub const SOURCE: &str = include_str!("hook.py");
/// The folder (in `engine/`) that holds it; first on the tool's `PYTHONPATH`.
pub const DIR: &str = "hook";
/// The file it appends to, in `engine/`.
pub const EVENTS: &str = "hook-events.jsonl";

/// Writes `engine/hook/sitecustomize.py`.
pub fn write(engine: &Path) -> std::io::Result<PathBuf> {
    let dir = engine.join(DIR);
    std::fs::create_dir_all(&dir)?;
    crate::files::write_atomic(&dir.join("sitecustomize.py"), SOURCE.as_bytes())?;
    Ok(dir)
}

/// One line of the hook's file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HookLine {
    /// `Trainer.train` began (at `step`, more than 0 when it resumed).
    Begin {
        step: u64,
        max_steps: u64,
        #[serde(default)]
        world_size: u64,
        #[serde(default)]
        output_dir: Option<String>,
        time: f64,
    },
    /// What the Trainer logged at `step` (train or eval metrics, or the final summary).
    Log {
        step: u64,
        #[serde(default)]
        max_steps: u64,
        logs: Map<String, Value>,
        time: f64,
    },
    /// A stop was asked for: the Trainer saves at the end of this step.
    Stopping { step: u64 },
    /// A checkpoint folder was written.
    Save { step: u64, dir: String },
    /// `Trainer.train` returned.
    End {
        step: u64,
        #[serde(default)]
        stopped: bool,
    },
}

/// Reads the hook's file from where it last stopped.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    offset: u64,
}

impl Follower {
    pub fn new(path: PathBuf) -> Self {
        Follower { path, offset: 0 }
    }

    /// Follows only what is appended from now on (a resume: the earlier launch's lines are
    /// in the run's events already).
    pub fn from_end(path: PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        Follower { path, offset }
    }

    /// The complete lines appended since the last call (a half-written last line waits);
    /// lines that do not parse are skipped.
    pub fn read(&mut self) -> Vec<HookLine> {
        match crate::runs::read_json_lines(&self.path, self.offset) {
            Ok((lines, offset)) => {
                self.offset = offset;
                lines
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_once_and_a_half_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(EVENTS);
        std::fs::write(
            &p,
            "{\"event\":\"begin\",\"step\":0,\"max_steps\":6,\"time\":1.0}\n{\"event\":\"log\",\"step\":1,\"logs\":{\"loss\":2.5},\"time\":2.0}\n{\"event\":\"sa",
        )
        .unwrap();
        let mut f = Follower::new(p.clone());
        let got = f.read();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], HookLine::Begin { max_steps: 6, .. }));
        match &got[1] {
            HookLine::Log { step: 1, logs, .. } => assert_eq!(logs["loss"], 2.5),
            other => panic!("{other:?}"),
        }
        assert!(f.read().is_empty());
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        file.write_all(b"ve\",\"step\":2,\"dir\":\"/o/checkpoint-2\"}\n")
            .unwrap();
        assert_eq!(
            f.read(),
            vec![HookLine::Save {
                step: 2,
                dir: "/o/checkpoint-2".into()
            }]
        );
    }
}
