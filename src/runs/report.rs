//! What a run's `eval.tasks` measured before and after: the first evaluation (step 0, the
//! base: a fresh adapter changes nothing yet) against the latest, from its events alone.
//! `runs show`, the Runs tab's Eval view and the README's persona report read it.

use super::{EventKind, RunEvent};
use serde::Serialize;

/// One task metric at the run's first and latest evaluations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskLine {
    /// `bench/<task>/acc`, `generate/<task>/rougeL`, `generate/<task>/<regex>`.
    pub key: String,
    pub first_step: u64,
    pub first: f64,
    pub last_step: u64,
    pub last: f64,
}

impl TaskLine {
    pub fn delta(&self) -> f64 {
        self.last - self.first
    }
}

/// Whether a metric key comes from `eval.tasks` (not the loss's own metrics).
pub fn is_task_metric(key: &str) -> bool {
    key.starts_with("bench/") || key.starts_with("generate/")
}

/// The task metrics of `events`, first and latest value each, in the order first seen.
pub fn task_lines(events: &[RunEvent]) -> Vec<TaskLine> {
    let mut out: Vec<TaskLine> = Vec::new();
    for e in events {
        let EventKind::Eval(ev) = &e.kind else {
            continue;
        };
        for (key, &v) in ev.metrics.iter().filter(|(k, _)| is_task_metric(k)) {
            match out.iter_mut().find(|l| &l.key == key) {
                Some(l) => {
                    l.last = v;
                    l.last_step = ev.step;
                }
                None => out.push(TaskLine {
                    key: key.clone(),
                    first_step: ev.step,
                    first: v,
                    last_step: ev.step,
                    last: v,
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::event::Eval;

    fn eval(step: u64, pairs: &[(&str, f64)]) -> RunEvent {
        RunEvent {
            time: 0.0,
            kind: EventKind::Eval(Eval {
                step,
                eval_loss: 1.0,
                eval_tokens: 10,
                perplexity: 1.0f64.exp(),
                metrics: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            }),
        }
    }

    #[test]
    fn first_and_latest_values_of_task_metrics_only() {
        let events = [
            eval(
                0,
                &[
                    ("bench/k/acc", 0.6),
                    ("generate/p/pirate", 0.0),
                    ("rewards/margins", 1.0),
                ],
            ),
            eval(20, &[("bench/k/acc", 0.5), ("generate/p/pirate", 0.8)]),
            eval(40, &[("bench/k/acc", 0.45), ("generate/p/pirate", 1.0)]),
        ];
        let lines = task_lines(&events);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].key, "bench/k/acc");
        assert_eq!((lines[0].first_step, lines[0].last_step), (0, 40));
        assert!((lines[0].delta() + 0.15).abs() < 1e-12);
        assert_eq!((lines[1].first, lines[1].last), (0.0, 1.0));
    }
}
