//! What the workbench knows about one run, built only from the events and status the
//! background watcher reads: the loss series (bounded, so a 100,000-step run draws as fast
//! as a short one), the latest train event, the start event, rewards when an objective
//! reports them, samples, and the last lines of the event log.

use crate::runs::event::{Start, Train};
use crate::runs::{EventKind, RunDir, RunEvent, Status};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// Points a series keeps before halving its resolution.
const MAX_POINTS: usize = 4096;
/// Event log lines kept.
const LOG_LINES: usize = 200;
/// Smoothing of the EMA line.
const EMA: f64 = 0.9;

/// A series of (step, value) points that keeps at most [`MAX_POINTS`]: past that, every
/// other point is dropped and only every `stride`-th new point is kept.
#[derive(Debug, Clone, Default)]
pub struct Points {
    pub points: Vec<(f64, f64)>,
    stride: usize,
    seen: usize,
}

impl Points {
    pub fn push(&mut self, x: f64, y: f64) {
        let stride = self.stride.max(1);
        if self.seen.is_multiple_of(stride) {
            self.points.push((x, y));
            if self.points.len() > MAX_POINTS {
                let mut i = 0;
                self.points.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride = stride * 2;
            }
        }
        self.seen += 1;
    }

    /// Drops points at `x` and beyond (a resumed run repeats steps).
    pub fn cut_from(&mut self, x: f64) {
        while self.points.last().is_some_and(|(s, _)| *s >= x) {
            self.points.pop();
        }
    }

    pub fn last(&self) -> Option<&(f64, f64)> {
        self.points.last()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// What the second preference chart shows: DPO's reward accuracy, or KTO's KL reference
/// point (KTO has no pairs to be accurate on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecondMetric {
    #[default]
    Accuracy,
    Kl,
}

impl SecondMetric {
    pub fn title(self) -> &'static str {
        match self {
            SecondMetric::Accuracy => " reward accuracy ",
            SecondMetric::Kl => " KL reference point ",
        }
    }
}

/// A preference run's reward metrics over steps: the margin between chosen (desirable) and
/// rejected (undesirable) rewards, and the second metric, on train and eval events.
#[derive(Debug, Clone, Default)]
pub struct RewardSeries {
    pub margins: Points,
    pub second: Points,
    pub eval_margins: Points,
    pub eval_second: Points,
    pub second_metric: SecondMetric,
}

impl RewardSeries {
    pub fn is_empty(&self) -> bool {
        self.margins.is_empty()
            && self.eval_margins.is_empty()
            && self.second.is_empty()
            && self.eval_second.is_empty()
    }

    /// Adds the metrics of one event (train when `eval` is false); ignores other objectives.
    fn add(&mut self, step: f64, metrics: &crate::runs::event::Metrics, eval: bool) {
        let second = if let Some(a) = metrics.get("rewards/accuracies") {
            self.second_metric = SecondMetric::Accuracy;
            Some(*a)
        } else if let Some(k) = metrics.get("kl") {
            self.second_metric = SecondMetric::Kl;
            Some(*k)
        } else {
            None
        };
        let (margins, second_points) = if eval {
            (&mut self.eval_margins, &mut self.eval_second)
        } else {
            (&mut self.margins, &mut self.second)
        };
        for (p, y) in [
            (margins, metrics.get("rewards/margins").copied()),
            (second_points, second),
        ] {
            if let Some(y) = y {
                p.cut_from(step);
                p.push(step, y);
            }
        }
    }
}

static NEXT_VIEW: AtomicU64 = AtomicU64::new(1);

pub struct RunView {
    /// Which watch subscription feeds this view (a new view reads the run from the start).
    pub key: u64,
    pub run: RunDir,
    pub train: Points,
    pub ema: Points,
    pub eval: Points,
    ema_last: Option<f64>,
    pub last: Option<Train>,
    pub start: Option<Start>,
    pub status: Option<Status>,
    pub log: VecDeque<String>,
    /// The latest train event that carried reward metrics (preference objectives).
    pub rewards: Option<Train>,
    pub reward_series: RewardSeries,
    /// The latest greedy reply to each sample prompt: (step, prompt, reply).
    pub samples: Vec<(u64, String, String)>,
}

impl RunView {
    pub fn new(run: RunDir) -> Self {
        Self::with_key(NEXT_VIEW.fetch_add(1, Ordering::Relaxed), run)
    }

    /// A view for an existing subscription (the watcher builds a long run's first view).
    pub fn with_key(key: u64, run: RunDir) -> Self {
        RunView {
            key,
            run,
            train: Points::default(),
            ema: Points::default(),
            eval: Points::default(),
            ema_last: None,
            last: None,
            start: None,
            status: None,
            log: VecDeque::new(),
            rewards: None,
            reward_series: RewardSeries::default(),
            samples: Vec::new(),
        }
    }

    pub fn id(&self) -> String {
        self.run
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// New events and the latest status from the watcher.
    pub fn feed(&mut self, events: Vec<RunEvent>, status: Option<Status>) {
        let skip_log = events.len().saturating_sub(LOG_LINES);
        for (i, e) in events.into_iter().enumerate() {
            self.add(e, i >= skip_log);
        }
        if status.is_some() {
            self.status = status;
        }
    }

    fn add(&mut self, e: RunEvent, log: bool) {
        let stamp = if e.time > 0.0 {
            chrono::DateTime::from_timestamp(e.time as i64, 0)
                .map(|d| {
                    d.with_timezone(&chrono::Local)
                        .format("%H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        let line = match e.kind {
            EventKind::Train(t) => {
                let step = t.step as f64;
                if self.train.last().is_some_and(|(s, _)| *s >= step) {
                    self.train.cut_from(step);
                    self.ema.cut_from(step);
                    self.ema_last = self.ema.last().map(|p| p.1);
                }
                let smooth = self
                    .ema_last
                    .map_or(t.loss, |p| EMA * p + (1.0 - EMA) * t.loss);
                self.ema_last = Some(smooth);
                self.train.push(step, t.loss);
                self.ema.push(step, smooth);
                let line = format!(
                    "{stamp}  train  step {:>5}  loss {:.4}  lr {:.2e}",
                    t.step, t.loss, t.lr
                );
                if t.metrics.contains_key("rewards/chosen") {
                    self.rewards = Some(t.clone());
                }
                self.reward_series.add(step, &t.metrics, false);
                self.last = Some(t);
                line
            }
            EventKind::Eval(v) => {
                let step = v.step as f64;
                self.eval.cut_from(step);
                // An evaluation of `eval.tasks` alone (no held-out split) has no loss.
                if v.eval_loss.is_finite() {
                    self.eval.push(step, v.eval_loss);
                }
                self.reward_series.add(step, &v.metrics, true);
                let loss = if v.eval_loss.is_finite() {
                    format!("{:.4}", v.eval_loss)
                } else {
                    "-".into()
                };
                let mut line = format!("{stamp}  eval   step {:>5}  loss {loss}", v.step);
                if let (Some(a), Some(m)) = (
                    v.metrics.get("rewards/accuracies"),
                    v.metrics.get("rewards/margins"),
                ) {
                    line.push_str(&format!("  reward acc {a:.2}  margin {m:.3}"));
                } else if let (Some(k), Some(m)) =
                    (v.metrics.get("kl"), v.metrics.get("rewards/margins"))
                {
                    line.push_str(&format!("  margin {m:.3}  kl {k:.3}"));
                }
                line
            }
            EventKind::Start(s) => {
                let mut line = format!(
                    "{stamp}  start  {} steps, {} trainable",
                    s.total_steps, s.trainable_params
                );
                if s.tool_records > 0 {
                    line.push_str(&format!(
                        ", {} tool-call records ({}, {} left out)",
                        s.tool_records,
                        s.tool_format.as_deref().unwrap_or("template"),
                        s.tool_records_dropped
                    ));
                }
                if s.desirable + s.undesirable > 0 {
                    line.push_str(&format!(
                        ", {} desirable / {} undesirable",
                        s.desirable, s.undesirable
                    ));
                }
                if s.undesirable_skipped > 0 {
                    line.push_str(&format!(
                        ", {} undesirable completions left out (SFT trains only label true)",
                        s.undesirable_skipped
                    ));
                }
                self.start = Some(s);
                line
            }
            EventKind::Checkpoint { path, .. } => {
                let tail: Vec<&str> = path.rsplit('/').take(2).collect();
                format!(
                    "{stamp}  ckpt   {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("/")
                )
            }
            EventKind::Failed { error, .. } => format!("{stamp}  failed {error}"),
            EventKind::Sample {
                step,
                prompt,
                reply,
                ..
            } => {
                let line = format!(
                    "{stamp}  sample {} → {}",
                    crate::tui::text::truncate(&crate::tui::text::one_line(&prompt), 30),
                    crate::tui::text::truncate(&crate::tui::text::one_line(&reply), 60)
                );
                match self.samples.iter_mut().find(|(_, p, _)| *p == prompt) {
                    Some(s) => *s = (step, prompt, reply),
                    None => self.samples.push((step, prompt, reply)),
                }
                line
            }
            other => format!(
                "{stamp}  {:<6} step {}",
                other.name(),
                other.step().unwrap_or(0)
            ),
        };
        if log {
            self.log.push_back(line);
            while self.log.len() > LOG_LINES {
                self.log.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_series_stay_bounded_and_keep_the_ends() {
        let mut p = Points::default();
        for i in 0..100_000 {
            p.push(i as f64, i as f64);
        }
        assert!(p.len() <= MAX_POINTS, "{}", p.len());
        assert!(p.len() > MAX_POINTS / 4);
        assert_eq!(p.points[0], (0.0, 0.0));
        assert!(p.last().unwrap().0 > 99_000.0);
    }
}
