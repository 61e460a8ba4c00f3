//! Several runs' curves of one metric for one chart (the Runs tab's overlay): each run's
//! points, labelled by the config fields in which the runs differ, and the best run by the
//! metric they are ranked by (the sweep's, else `eval_loss`), whatever metric is drawn.

use super::board::{legend, Board};
use super::mark::SweepMark;
use super::metric::{names, series, DEFAULT_METRIC};
use crate::runs::{read_events, RunDir};
use std::path::PathBuf;

/// One run's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub id: String,
    pub dir: PathBuf,
    /// `lora.r=8 train.lr=0.01` (the id when the configs do not differ).
    pub label: String,
    pub state: String,
    pub points: Vec<(f64, f64)>,
    /// The run's best value of the ranking metric.
    pub best: Option<f64>,
}

/// The chart's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    /// The metric drawn.
    pub metric: String,
    /// The metric runs are ranked by.
    pub ranked_by: String,
    /// Every metric the runs recorded (what the chart can switch to).
    pub metrics: Vec<String>,
    /// Ranked best first.
    pub curves: Vec<Curve>,
    /// Index of the best run in `curves` (the first, when it has the metric).
    pub best: Option<usize>,
}

impl Curves {
    /// Reads `runs` and draws `metric` (`loss` when `None`).
    pub fn read(runs: &[RunDir], metric: Option<&str>) -> Curves {
        let events: Vec<_> = runs
            .iter()
            .map(|r| read_events(&r.events_path(), 0).unwrap_or_default().0)
            .collect();
        let mut metrics: Vec<String> = Vec::new();
        for e in &events {
            for n in names(e) {
                if !metrics.contains(&n) {
                    metrics.push(n);
                }
            }
        }
        let ranked_by = runs
            .iter()
            .find_map(SweepMark::read)
            .map(|m| m.metric)
            .filter(|m| metrics.contains(m))
            .unwrap_or_else(|| {
                if metrics.iter().any(|m| m == DEFAULT_METRIC) || metrics.is_empty() {
                    DEFAULT_METRIC.to_string()
                } else {
                    "loss".to_string()
                }
            });
        let board = Board::read(runs, std::slice::from_ref(&ranked_by), None);
        let metric = metric.unwrap_or("loss").to_string();
        let curves: Vec<Curve> = board
            .rows
            .iter()
            .map(|row| {
                let k = runs.iter().position(|r| r.root == row.dir).unwrap_or(0);
                Curve {
                    id: row.id.clone(),
                    dir: row.dir.clone(),
                    label: legend(row),
                    state: row.state.clone(),
                    points: series(&events[k], &metric)
                        .into_iter()
                        .map(|(s, x)| (s as f64, x))
                        .filter(|(_, x)| x.is_finite())
                        .collect(),
                    best: row.metrics[&ranked_by].best,
                }
            })
            .collect();
        Curves {
            best: board.best().map(|_| 0),
            metric,
            ranked_by,
            metrics,
            curves,
        }
    }

    /// The metric after the drawn one, in `metrics`' order (wrapping).
    pub fn next_metric(&self) -> String {
        let i = self.metrics.iter().position(|m| *m == self.metric);
        match i {
            Some(i) => self.metrics[(i + 1) % self.metrics.len()].clone(),
            None => self
                .metrics
                .first()
                .cloned()
                .unwrap_or_else(|| "loss".into()),
        }
    }
}
