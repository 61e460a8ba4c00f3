//! The median pruner, as Optuna's `MedianPruner` decides: a run reporting `value` at `step`
//! is pruned when at least `startup` of its sweep's runs have completed, some of them
//! reported the metric at that same step, and `value` is worse than the median of theirs
//! (NaN is always worse). Step 0 never prunes: it measures the base, the same for every
//! point. The trainer asks at each evaluation.

use super::mark::{MedianPruner, SweepMark};
use super::metric::{series, Direction};
use crate::runs::{read_events, RunDir, RunState};
use serde::Serialize;
use std::path::Path;

/// Why a run was pruned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub step: u64,
    pub metric: String,
    pub value: f64,
    pub median: f64,
    /// Completed runs whose value at `step` made the median.
    pub compared: usize,
}

impl Verdict {
    /// `eval_loss 7.41 is worse than the median 2.10 of 3 completed runs at step 20`.
    pub fn line(&self) -> String {
        format!(
            "{} {:.4} is worse than the median {:.4} of {} completed run{} at step {}",
            self.metric,
            self.value,
            self.median,
            self.compared,
            if self.compared == 1 { "" } else { "s" },
            self.step
        )
    }
}

/// The median of `xs` (not empty), the mean of the middle two for an even count.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The decision on plain numbers: `completed` holds each completed run's value at the step,
/// if it reported one.
pub fn decide(
    pruner: MedianPruner,
    direction: Direction,
    value: f64,
    completed: &[Option<f64>],
) -> Option<(f64, usize)> {
    if completed.len() < pruner.startup.max(1) {
        return None;
    }
    let at_step: Vec<f64> = completed
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if at_step.is_empty() {
        return None;
    }
    let n = at_step.len();
    let m = median(at_step);
    (value.is_nan() || direction.better(m, value)).then_some((m, n))
}

/// Whether the run at `own` (a member of `mark`'s sweep) should stop, reporting `value` at
/// `step`. Reads the other members' status and events; a member that cannot be read does
/// not count.
pub fn verdict(mark: &SweepMark, own: &Path, step: u64, value: f64) -> Option<Verdict> {
    let pruner = mark.prune?;
    if step == 0 {
        return None;
    }
    let same =
        |p: &Path| std::fs::canonicalize(p).ok() == std::fs::canonicalize(own).ok() || p == own;
    let completed: Vec<Option<f64>> = mark
        .members
        .iter()
        .filter(|m| !same(m))
        .map(RunDir::new)
        .filter(|r| r.read_status().is_ok_and(|s| s.state == RunState::Done))
        .map(|r| {
            let (events, _) = read_events(&r.events_path(), 0).unwrap_or_default();
            series(&events, &mark.metric)
                .into_iter()
                .find(|(s, _)| *s == step)
                .map(|(_, x)| x)
        })
        .collect();
    let (median, compared) = decide(pruner, mark.direction, value, &completed)?;
    Some(Verdict {
        step,
        metric: mark.metric.clone(),
        value,
        median,
        compared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: MedianPruner = MedianPruner { startup: 2 };

    #[test]
    fn worse_than_the_median_of_completed_runs_prunes() {
        let done = [Some(1.0), Some(3.0), Some(2.0)];
        assert_eq!(decide(P, Direction::Minimize, 2.5, &done), Some((2.0, 3)));
        assert_eq!(decide(P, Direction::Minimize, 2.0, &done), None);
        assert_eq!(decide(P, Direction::Maximize, 1.5, &done), Some((2.0, 3)));
        assert_eq!(decide(P, Direction::Maximize, 2.5, &done), None);
        // An even count takes the middle two's mean.
        assert_eq!(
            decide(P, Direction::Minimize, 2.6, &[Some(1.0), Some(4.0)]),
            Some((2.5, 2))
        );
        // NaN is always worse.
        assert!(decide(P, Direction::Minimize, f64::NAN, &done).is_some());
    }

    #[test]
    fn too_few_completed_runs_or_none_at_the_step_never_prune() {
        assert_eq!(decide(P, Direction::Minimize, 9.0, &[Some(1.0)]), None);
        assert_eq!(decide(P, Direction::Minimize, 9.0, &[None, None]), None);
        // Runs without the step still count as completed (Optuna's startup counts trials).
        assert_eq!(
            decide(P, Direction::Minimize, 9.0, &[None, Some(1.0)]),
            Some((1.0, 1))
        );
    }
}
