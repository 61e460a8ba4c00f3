//! Which adapter a Chat slot holds, and how that resolves against the adapters the runs
//! have now. A slot follows a run (its newest adapter: a checkpoint while it trains, the
//! final one once it is done) or holds one adapter the user picked; a picked checkpoint
//! that has since been pruned falls back to its run's newest, with a message, so a load
//! never names a folder that is gone.

use crate::runs::adapters::RunAdapter;
use std::path::{Path, PathBuf};

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The run's newest adapter, whatever it is when the model loads.
    Follow(PathBuf),
    /// One adapter folder; `run` is the run it came from (where to fall back), if any.
    Exact {
        dir: PathBuf,
        run: Option<PathBuf>,
        label: String,
    },
}

/// A slot's adapter now: its folder and label, whose run it is, and the model it was
/// trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub dir: PathBuf,
    pub label: String,
    pub run: Option<PathBuf>,
    pub base: Option<String>,
    /// Following a run (the label then says which adapter it is now).
    pub follows: bool,
}

impl Resolved {
    fn of(a: &RunAdapter, follows: bool) -> Self {
        Resolved {
            dir: a.dir.clone(),
            label: a.label(),
            run: Some(a.run_dir.clone()),
            base: a.base.clone(),
            follows,
        }
    }
}

/// The result of resolving a pick against the current list.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Found(Resolved),
    /// A followed run with no adapter yet (or no longer listed).
    Nothing,
    /// The picked adapter is gone; its run's newest stands in, and the pick becomes
    /// following that run. The message says what happened.
    FellBack(Resolved, String),
}

impl Pick {
    /// The run this pick belongs to.
    pub fn run(&self) -> Option<&Path> {
        match self {
            Pick::Follow(r) => Some(r),
            Pick::Exact { run, .. } => run.as_deref(),
        }
    }

    /// Resolves against `list` (every run's adapters, each run's newest first).
    pub fn resolve(&self, list: &[RunAdapter]) -> Outcome {
        match self {
            Pick::Follow(run) => match list.iter().find(|a| a.run_dir == *run) {
                Some(a) => Outcome::Found(Resolved::of(a, true)),
                None => Outcome::Nothing,
            },
            Pick::Exact { dir, run, label } => {
                if let Some(a) = list.iter().find(|a| a.dir == *dir) {
                    return Outcome::Found(Resolved::of(a, false));
                }
                // Not a run's adapter (a folder opened by path): taken as it is.
                let Some(run) = run else {
                    return Outcome::Found(Resolved {
                        dir: dir.clone(),
                        label: label.clone(),
                        run: None,
                        base: None,
                        follows: false,
                    });
                };
                match list.iter().find(|a| a.run_dir == *run) {
                    Some(a) => Outcome::FellBack(
                        Resolved::of(a, true),
                        format!(
                            "{label} is gone (the run keeps only its newest checkpoints); using {}",
                            a.label()
                        ),
                    ),
                    None => Outcome::Nothing,
                }
            }
        }
    }
}

/// The pick for a chosen list entry: following its run when it is that run's newest (a
/// run still training moves on to its next checkpoint and then its final adapter; a
/// finished run's final adapter stays what it is), else that one adapter.
pub fn pick_entry(list: &[RunAdapter], i: usize) -> Option<Pick> {
    let a = list.get(i)?;
    let newest = list.iter().position(|b| b.run_dir == a.run_dir) == Some(i);
    Some(if newest {
        Pick::Follow(a.run_dir.clone())
    } else {
        Pick::Exact {
            dir: a.dir.clone(),
            run: Some(a.run_dir.clone()),
            label: a.label(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::adapters::Which;

    fn entry(run: &str, which: Which) -> RunAdapter {
        let run_dir = PathBuf::from(format!("/runs/{run}"));
        let dir = match which {
            Which::Final => run_dir.join("adapter"),
            Which::Checkpoint(s) => run_dir.join(format!("checkpoints/step-{s}")),
        };
        RunAdapter {
            run: run.into(),
            run_dir,
            dir,
            which,
            base: Some("/models/tiny".into()),
        }
    }

    #[test]
    fn following_a_run_moves_with_it() {
        let follow = Pick::Follow("/runs/r".into());
        assert_eq!(follow.resolve(&[]), Outcome::Nothing);
        let mid = vec![
            entry("r", Which::Checkpoint(200)),
            entry("r", Which::Checkpoint(100)),
        ];
        let Outcome::Found(r) = follow.resolve(&mid) else {
            panic!()
        };
        assert_eq!(r.label, "r/step-200");
        assert!(r.follows);
        let done = vec![
            entry("r", Which::Final),
            entry("r", Which::Checkpoint(600)),
            entry("r", Which::Checkpoint(500)),
        ];
        let Outcome::Found(r) = follow.resolve(&done) else {
            panic!()
        };
        assert_eq!(r.label, "r/adapter");
        assert_eq!(r.base.as_deref(), Some("/models/tiny"));
    }

    #[test]
    fn a_pruned_checkpoint_falls_back_to_its_runs_newest() {
        let early = vec![
            entry("r", Which::Checkpoint(200)),
            entry("r", Which::Checkpoint(100)),
        ];
        let pick = pick_entry(&early, 1).unwrap();
        assert!(matches!(pick, Pick::Exact { .. }));
        assert!(matches!(pick.resolve(&early), Outcome::Found(ref r) if r.label == "r/step-100"));
        let later = vec![
            entry("r", Which::Final),
            entry("r", Which::Checkpoint(600)),
            entry("r", Which::Checkpoint(500)),
        ];
        match pick.resolve(&later) {
            Outcome::FellBack(r, why) => {
                assert_eq!(r.label, "r/adapter");
                assert!(why.contains("r/step-100 is gone"), "{why}");
                assert!(why.contains("using r/adapter"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // The newest entry of a run is followed, not pinned.
        assert_eq!(pick_entry(&early, 0), Some(Pick::Follow("/runs/r".into())));
        // A folder opened by path stays as it is.
        let outside = Pick::Exact {
            dir: "/elsewhere/adapter".into(),
            run: None,
            label: "mine".into(),
        };
        assert!(
            matches!(outside.resolve(&later), Outcome::Found(ref r) if r.dir == Path::new("/elsewhere/adapter"))
        );
    }
}
