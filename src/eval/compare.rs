//! Base against adapters on the same tasks: the base is loaded once, each adapter shares
//! its tensors, every side runs the same [`Tasks`], and each adapter's number is shown
//! beside the base's with the difference and its 95% interval, so "the persona was won and
//! a fact was lost" is one table. `runs compare` prints it; the Runs tab's Eval view draws it.

use super::judge::verdict::{wilson, Z95};
use super::tasks::{Measure, Outcome, Tasks, TasksError};
use crate::infer::load::{Base, LoadError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{}: {source}", adapter.display())]
    Adapter {
        adapter: PathBuf,
        #[source]
        source: LoadError,
    },
    #[error(transparent)]
    Tasks(#[from] Box<TasksError>),
    #[error("stopped")]
    Stopped,
}

/// One side's scores: the base (no adapter) or an adapter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideResult {
    /// `base`, or the adapter's short name (its run and checkpoint).
    pub label: String,
    pub adapter: Option<PathBuf>,
    pub outcome: Outcome,
}

/// Every side's scores, the base first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub model: String,
    pub sides: Vec<SideResult>,
}

/// Where a comparison stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// 0 is the base, then each adapter.
    pub side: usize,
    pub sides: usize,
    pub task: String,
    pub done: usize,
    pub total: usize,
}

/// A short name for an adapter folder: `run/adapter` or `run/step-40`.
pub fn label(adapter: &Path) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let leaf = name(adapter);
    let parent = adapter.parent();
    match parent {
        Some(p) if name(p) == "checkpoints" => {
            let run = p.parent().map(name).unwrap_or_default();
            format!("{run}/{leaf}")
        }
        Some(p) if leaf == "adapter" => format!("{}/adapter", name(p)),
        _ => leaf,
    }
}

/// Runs `tasks` on `base` alone, then on each adapter. `stop` ends it with
/// [`CompareError::Stopped`] before the next task or generation prompt.
pub fn compare(
    base: &Base,
    adapters: &[PathBuf],
    tasks: &Tasks,
    progress: &mut dyn FnMut(Progress),
    stop: &AtomicBool,
) -> Result<Comparison, CompareError> {
    let sides = adapters.len() + 1;
    let mut out = Vec::with_capacity(sides);
    for side in 0..sides {
        let adapter = side.checked_sub(1).map(|i| adapters[i].clone());
        let model = match &adapter {
            None => base.model.bare_base(),
            Some(a) => base
                .with_adapter(a)
                .map_err(|source| CompareError::Adapter {
                    adapter: a.clone(),
                    source,
                })?,
        };
        let outcome = tasks
            .run_unless(
                &model,
                &base.encoder.tokenizer,
                &mut |p| {
                    progress(Progress {
                        side,
                        sides,
                        task: p.task.to_string(),
                        done: p.done,
                        total: p.total,
                    })
                },
                stop,
            )
            .map_err(|e| match e {
                TasksError::Stopped => CompareError::Stopped,
                e => CompareError::Tasks(Box::new(e)),
            })?;
        if stop.load(Ordering::Relaxed) {
            return Err(CompareError::Stopped);
        }
        out.push(SideResult {
            label: adapter.as_deref().map_or_else(|| "base".to_string(), label),
            adapter,
            outcome,
        });
    }
    Ok(Comparison {
        model: base.spec.clone(),
        sides: out,
    })
}

/// An adapter's number beside the base's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub value: f64,
    /// Adapter minus base.
    pub delta: f64,
    /// The 95% interval of `delta`, the two sides taken as independent samples: Newcombe's
    /// interval from the two Wilson intervals for a share of 0/1 items (accuracy, exact
    /// match, regex rates), ±1.96 combined standard errors for a mean (F1, ROUGE); `None`
    /// where a score has no standard error (BLEU, chrF, lengths).
    pub interval: Option<(f64, f64)>,
}

/// One metric across the sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    pub base: Option<Measure>,
    /// One per adapter, in order; `None` where the side lacks the metric.
    pub adapters: Vec<Option<Cell>>,
}

impl Comparison {
    /// The table: one row per metric the base has, in the order measured.
    pub fn rows(&self) -> Vec<Row> {
        let Some((base, rest)) = self.sides.split_first() else {
            return Vec::new();
        };
        base.outcome
            .measures
            .iter()
            .map(|b| Row {
                key: b.key.clone(),
                base: Some(b.clone()),
                adapters: rest
                    .iter()
                    .map(|s| s.outcome.get(&b.key).map(|m| cell(b, m)))
                    .collect(),
            })
            .collect()
    }
}

/// `m` against the base's `b`.
pub fn cell(b: &Measure, m: &Measure) -> Cell {
    let delta = m.value - b.value;
    let interval = match (b.stderr, m.stderr) {
        _ if b.proportion && m.proportion && b.n > 0 && m.n > 0 => {
            Some(newcombe(b.value, b.n, m.value, m.n))
        }
        (Some(sb), Some(sm)) => {
            let half = 1.96 * (sb * sb + sm * sm).sqrt();
            Some((delta - half, delta + half))
        }
        _ => None,
    };
    Cell {
        value: m.value,
        delta,
        interval,
    }
}

/// Newcombe's hybrid score interval (his method 10) for the difference `p2 − p1` of two
/// independent shares, from their Wilson intervals.
pub fn newcombe(p1: f64, n1: usize, p2: f64, n2: usize) -> (f64, f64) {
    let (l1, u1) = wilson(p1, n1 as f64, Z95);
    let (l2, u2) = wilson(p2, n2 as f64, Z95);
    let d = p2 - p1;
    (
        d - ((p2 - l2).powi(2) + (u1 - p1).powi(2)).sqrt(),
        d + ((u2 - p2).powi(2) + (p1 - l1).powi(2)).sqrt(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str, value: f64, stderr: Option<f64>) -> Measure {
        Measure {
            key: key.into(),
            value,
            stderr,
            n: 40,
            proportion: false,
        }
    }

    #[test]
    fn shares_get_newcombes_interval_which_stays_open_at_0_and_1() {
        // Wilson for 0/5: (0, 0.4345); for 5/5: (0.5655, 1) (Newcombe 1998, table I style).
        let (lo, hi) = wilson(0.0, 5.0, Z95);
        assert!(lo == 0.0 && (hi - 0.434_482).abs() < 1e-5, "{lo} {hi}");
        // 0/5 → 5/5: d = 1, lower 1 − sqrt(0.4345² + 0.4345²) = 0.3856, upper 1.
        let (lo, hi) = newcombe(0.0, 5, 1.0, 5);
        assert!(
            (lo - 0.385_545).abs() < 1e-5 && (hi - 1.0).abs() < 1e-12,
            "{lo} {hi}"
        );
        // Newcombe's worked example 1 (56/70 against 48/80): d = 0.2, 95% [0.0524, 0.3339].
        let (lo, hi) = newcombe(48.0 / 80.0, 80, 56.0 / 70.0, 70);
        assert!(
            (lo - 0.0524).abs() < 1e-4 && (hi - 0.3339).abs() < 1e-4,
            "{lo} {hi}"
        );
        let share = |v: f64| Measure {
            proportion: true,
            n: 5,
            ..m("generate/p/pirate", v, Some(0.0))
        };
        let c = cell(&share(0.0), &share(1.0));
        assert!(c.interval.is_some_and(|(lo, _)| lo > 0.38 && lo < 0.39));
    }

    #[test]
    fn a_cell_is_the_difference_with_its_interval() {
        let c = cell(
            &m("bench/k/acc", 0.5, Some(0.03)),
            &m("bench/k/acc", 0.4, Some(0.04)),
        );
        assert!((c.delta + 0.1).abs() < 1e-12);
        let (lo, hi) = c.interval.unwrap();
        // 1.96 × sqrt(0.03² + 0.04²) = 1.96 × 0.05 = 0.098.
        assert!((lo + 0.198).abs() < 1e-12 && (hi + 0.002).abs() < 1e-12);
        assert_eq!(
            cell(&m("bleu", 10.0, None), &m("bleu", 12.0, None)).interval,
            None
        );
    }

    #[test]
    fn labels_name_the_run_and_the_checkpoint() {
        assert_eq!(
            label(Path::new("/r/runs/persona/adapter")),
            "persona/adapter"
        );
        assert_eq!(
            label(Path::new("/r/runs/persona/checkpoints/step-40")),
            "persona/step-40"
        );
        assert_eq!(label(Path::new("/x/my-lora")), "my-lora");
    }
}
