//! A metric over a run: `loss` (the train loss) or any number on its `eval` events
//! (`eval_loss`, `perplexity`, an objective's `rewards/margins`, an eval task's
//! `knowledge/acc`), as `(step, value)` points; and which way is better.

use crate::runs::event::Eval;
use crate::runs::{EventKind, RunEvent};
use serde::{Deserialize, Serialize};

/// The metric sweeps and comparisons rank by unless told otherwise.
pub const DEFAULT_METRIC: &str = "eval_loss";

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Minimize,
    Maximize,
}

impl Direction {
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }

    /// The usual direction for a metric's name: accuracies, match rates, overlap scores
    /// and rewards go up; losses and everything else go down (`--maximize` says otherwise,
    /// e.g. for a regex rate).
    pub fn guess(metric: &str) -> Direction {
        let last = metric.rsplit('/').next().unwrap_or(metric);
        const UP: &[&str] = &[
            "acc",
            "acc_norm",
            "accuracy",
            "accuracies",
            "exact_match",
            "em",
            "f1",
            "rouge1",
            "rouge2",
            "rougeL",
            "rougeLsum",
            "bleu",
            "chrf",
            "reward",
            "margins",
            "win_rate",
        ];
        if UP.contains(&last) || metric.starts_with("rewards/") {
            Direction::Maximize
        } else {
            Direction::Minimize
        }
    }
}

/// The value of `metric` on one eval event, if it carries it (and it is finite or NaN as
/// written).
pub fn eval_value(e: &Eval, metric: &str) -> Option<f64> {
    match metric {
        "eval_loss" => Some(e.eval_loss),
        "perplexity" => Some(e.perplexity),
        other => e.metrics.get(other).copied(),
    }
}

/// `(step, value)` of `metric` over `events`: train events for `loss`, eval events for
/// anything else. A resumed run repeats steps: the later value replaces the earlier.
pub fn series(events: &[RunEvent], metric: &str) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, f64)> = Vec::new();
    for e in events {
        let point = match &e.kind {
            EventKind::Train(t) if metric == "loss" => Some((t.step, t.loss)),
            EventKind::Eval(v) if metric != "loss" => eval_value(v, metric).map(|x| (v.step, x)),
            _ => None,
        };
        if let Some((step, x)) = point {
            while out.last().is_some_and(|(s, _)| *s >= step) {
                out.pop();
            }
            out.push((step, x));
        }
    }
    out
}

/// Every metric name the events carry: `loss` when there are train events, `eval_loss`
/// when there are eval losses, then the eval events' other numbers, sorted.
pub fn names(events: &[RunEvent]) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    let mut train = false;
    for e in events {
        match &e.kind {
            EventKind::Train(_) => train = true,
            EventKind::Eval(v) => {
                if v.eval_loss.is_finite() {
                    set.insert("eval_loss".to_string());
                }
                set.extend(v.metrics.keys().cloned());
            }
            _ => {}
        }
    }
    let eval_loss = set.remove("eval_loss");
    train
        .then(|| "loss".to_string())
        .into_iter()
        .chain(eval_loss.then(|| "eval_loss".to_string()))
        .chain(set)
        .collect()
}

/// A metric's last value and its best, each with its step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Outcome {
    #[serde(rename = "final")]
    pub last: Option<f64>,
    pub final_step: Option<u64>,
    pub best: Option<f64>,
    pub best_step: Option<u64>,
}

impl Outcome {
    /// From a series; NaN values are never best.
    pub fn of(points: &[(u64, f64)], direction: Direction) -> Outcome {
        let mut o = Outcome {
            last: points.last().map(|p| p.1),
            final_step: points.last().map(|p| p.0),
            ..Outcome::default()
        };
        for &(step, x) in points.iter().filter(|p| p.1.is_finite()) {
            if o.best.is_none_or(|b| direction.better(x, b)) {
                o.best = Some(x);
                o.best_step = Some(step);
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(step: u64, loss: f64, acc: f64) -> RunEvent {
        RunEvent {
            kind: EventKind::Eval(Eval {
                step,
                eval_loss: loss,
                metrics: [("knowledge/acc".to_string(), acc)].into(),
                ..Default::default()
            }),
            time: 0.0,
        }
    }

    #[test]
    fn any_eval_number_is_a_metric_and_resumes_replace_steps() {
        let events = [eval(0, 3.0, 0.2), eval(10, 2.0, 0.5), eval(10, 1.5, 0.6)];
        assert_eq!(series(&events, "eval_loss"), [(0, 3.0), (10, 1.5)]);
        assert_eq!(series(&events, "knowledge/acc"), [(0, 0.2), (10, 0.6)]);
        assert!(series(&events, "nothing").is_empty());
        assert_eq!(names(&events), ["eval_loss", "knowledge/acc"]);
    }

    #[test]
    fn best_follows_the_direction_and_skips_nan() {
        let pts = [(0, 3.0), (5, f64::NAN), (10, 1.0), (15, 2.0)];
        let min = Outcome::of(&pts, Direction::Minimize);
        assert_eq!(
            (min.best, min.best_step, min.last),
            (Some(1.0), Some(10), Some(2.0))
        );
        let max = Outcome::of(&pts, Direction::Maximize);
        assert_eq!((max.best, max.best_step), (Some(3.0), Some(0)));
        assert_eq!(Direction::guess("knowledge/acc"), Direction::Maximize);
        assert_eq!(Direction::guess("eval_loss"), Direction::Minimize);
        assert_eq!(Direction::guess("persona/exact_match"), Direction::Maximize);
    }
}
