//! What the workbench knows about one run, built only from the events and status the
//! background watcher reads: the loss series (bounded, so a 100,000-step run draws as fast
//! as a short one), the latest train event, the start event, rewards when an objective
//! reports them (DPO's and KTO's margins, GRPO's mean rewards and completion lengths),
//! samples, GRPO's latest sampled completions, and the last lines of the event log.

use crate::runs::event::{Start, Train};
use crate::runs::{EventKind, RunDir, RunEvent, Status};
use crate::tui::theme::Theme;
use ratatui::style::Style;
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

/// Reward functions charted separately (a config rarely has more; the rest still count in
/// the mean reward).
const MAX_FUNCTIONS: usize = 8;
/// Sampled completions kept from the latest step.
const MAX_COMPLETIONS: usize = 32;

/// A GRPO run's metrics over steps: the mean reward, each reward function's mean, the mean
/// completion length, and the KL to the reference when β > 0.
#[derive(Debug, Clone, Default)]
pub struct GrpoSeries {
    pub reward: Points,
    /// `rewards/<name>/mean` by name, in the order first seen.
    pub functions: Vec<(String, Points)>,
    pub length: Points,
    pub kl: Points,
}

impl GrpoSeries {
    pub fn is_empty(&self) -> bool {
        self.reward.is_empty()
    }

    /// Adds one train event's metrics.
    fn add(&mut self, step: f64, m: &crate::runs::event::Metrics) {
        let put = |p: &mut Points, y: Option<&f64>| {
            if let Some(y) = y {
                p.cut_from(step);
                p.push(step, *y);
            }
        };
        put(&mut self.reward, m.get("reward"));
        put(&mut self.length, m.get("completions/mean_length"));
        put(&mut self.kl, m.get("kl"));
        for (key, y) in m {
            let Some(name) = key
                .strip_prefix("rewards/")
                .and_then(|k| k.strip_suffix("/mean"))
            else {
                continue;
            };
            let i = match self.functions.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None if self.functions.len() < MAX_FUNCTIONS => {
                    self.functions.push((name.to_string(), Points::default()));
                    self.functions.len() - 1
                }
                None => continue,
            };
            put(&mut self.functions[i].1, Some(y));
        }
    }
}

/// One of GRPO's sampled completions as the trainer logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub prompt: String,
    pub reply: String,
    /// The weighted reward (`reward`), NaN when the event has none.
    pub reward: f64,
    /// Each function's reward, by name.
    pub rewards: std::collections::BTreeMap<String, f64>,
    pub advantage: Option<f64>,
}

/// Where a completion stands against the others of its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Above its group (positive advantage): the update makes it likelier.
    Above,
    /// Below its group: the update makes it less likely.
    Below,
    /// Level with it (the whole group scored alike): no signal.
    Level,
}

impl Standing {
    /// A completion's standing: the sign of its advantage (what the trainer learns from),
    /// else its reward against `mean`, its prompt's logged completions' mean.
    pub fn of(reward: f64, advantage: Option<f64>, mean: f64) -> Standing {
        let d = advantage.unwrap_or(reward - mean);
        if d > 1e-9 {
            Standing::Above
        } else if d < -1e-9 {
            Standing::Below
        } else {
            Standing::Level
        }
    }

    /// Its style and mark: green above, red below, plain level (marks too, so the
    /// monochrome theme tells them apart).
    pub fn style(self, theme: &Theme) -> (Style, &'static str) {
        match self {
            Standing::Above => (theme.chosen, "▲"),
            Standing::Below => (theme.rejected, "▼"),
            Standing::Level => (theme.foreground, "·"),
        }
    }
}

impl Completion {
    /// Its standing in its group.
    pub fn standing(&self, mean: f64) -> Standing {
        Standing::of(self.reward, self.advantage, mean)
    }
}

/// The mean reward of `prompt`'s completions among `all`.
pub fn group_mean(all: &[Completion], prompt: &str) -> f64 {
    mean(all.iter().filter(|c| c.prompt == prompt).map(|c| c.reward))
}

/// The mean of the finite values; NaN when there are none.
pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|r| r.is_finite())
        .fold((0.0, 0usize), |(s, n), r| (s + r, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
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
    /// GRPO's reward and completion metrics.
    pub grpo: GrpoSeries,
    /// The latest greedy reply to each sample prompt: (step, prompt, reply).
    pub samples: Vec<(u64, String, String)>,
    /// GRPO's sampled completions of the latest step that logged any, with that step.
    pub completions: (u64, Vec<Completion>),
    /// The long stretch of work the run is in between steps (an evaluation, the samples);
    /// any other event ends it.
    pub phase: Option<crate::runs::event::Phase>,
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
            grpo: GrpoSeries::default(),
            samples: Vec::new(),
            completions: (0, Vec::new()),
            phase: None,
        }
    }

    /// Whether the run is GRPO's (by its start event, else by its metrics).
    pub fn is_grpo(&self) -> bool {
        let started = self.start.as_ref().and_then(|s| s.method.as_deref());
        started == Some("grpo") || (started.is_none() && !self.grpo.is_empty())
    }

    /// Keeps a sampled completion: a later step's replace the shown ones.
    fn add_completion(&mut self, step: u64, c: Completion) {
        let (at, all) = &mut self.completions;
        if *at != step || all.is_empty() {
            *at = step;
            all.clear();
        }
        if all.len() < MAX_COMPLETIONS {
            all.push(c);
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
        if !matches!(e.kind, EventKind::Phase(_)) {
            self.phase = None;
        }
        let line = match e.kind {
            // Progress, many times a phase: the log gets its beginning only.
            EventKind::Phase(p) => {
                let begins = p.done == 0 || self.phase.as_ref().is_none_or(|q| q.name != p.name);
                let line = format!("{stamp}  phase  {}", p.line());
                self.phase = Some(p);
                if !begins {
                    return;
                }
                line
            }
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
                if t.metrics.contains_key("rewards/chosen") {
                    self.rewards = Some(t.clone());
                }
                // GRPO logs a `kl` too: its metrics are its own, not a preference run's.
                let has = |k: &str| t.metrics.contains_key(k);
                let mut reward = String::new();
                if crate::config::method_from_metrics(has) == crate::config::Method::Grpo {
                    self.grpo.add(step, &t.metrics);
                    if let Some(r) = t.metrics.get("reward") {
                        // Before the lr: a narrow pane cuts the end of the line.
                        reward = format!("  reward {r:.3}");
                    }
                } else {
                    self.reward_series.add(step, &t.metrics, false);
                }
                let line = format!(
                    "{stamp}  train  step {:>5}  loss {:.4}{reward}  lr {:.2e}",
                    t.step, t.loss, t.lr
                );
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
            EventKind::Warning { message, .. } => {
                format!("{stamp}  warn   {}", crate::tui::text::one_line(&message))
            }
            // GRPO's sampled completions show in their own pane, not one log line each.
            EventKind::Sample {
                step,
                prompt,
                reply,
                rewards,
                advantage,
            } if !rewards.is_empty() || advantage.is_some() => {
                let reward = rewards.get("reward").copied().unwrap_or(f64::NAN);
                self.add_completion(
                    step,
                    Completion {
                        prompt,
                        reply,
                        reward,
                        rewards,
                        advantage,
                    },
                );
                return;
            }
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
    use serde_json::json;

    fn ev(v: serde_json::Value) -> RunEvent {
        serde_json::from_value(v).unwrap()
    }

    /// A GRPO run's `kl` is not KTO's KL point; its completions replace the previous
    /// step's and stay out of the greedy samples and the log; a resumed step is cut.
    #[test]
    fn grpo_metrics_and_completions_have_their_own_places() {
        let mut v = RunView::new(RunDir::new("/no/such/run"));
        let train = |step: u64, reward: f64| {
            ev(
                json!({"type": "train", "step": step, "loss": 0.0, "reward": reward,
                "frac_reward_zero_std": 0.5, "kl": 0.01, "rewards/correct/mean": reward,
                "rewards/format/mean": 1.0, "completions/mean_length": 3.0}),
            )
        };
        let sample = |step: u64, reply: &str, r: f64, adv: f64| {
            ev(
                json!({"type": "sample", "step": step, "prompt": "1 + 1 =", "reply": reply,
                "rewards": {"correct": r, "reward": r}, "advantage": adv}),
            )
        };
        v.feed(
            vec![
                train(1, 0.0),
                sample(1, "x", 0.0, 0.0),
                train(2, 0.5),
                sample(2, "2", 1.0, 1.0),
                sample(2, "y", 0.0, -1.0),
                ev(json!({"type": "sample", "step": 2, "prompt": "Hi", "reply": "hello"})),
                train(2, 0.7),
            ],
            None,
        );
        assert!(v.is_grpo());
        assert!(v.reward_series.is_empty(), "{:?}", v.reward_series);
        assert_eq!(v.grpo.reward.points, [(1.0, 0.0), (2.0, 0.7)]);
        assert_eq!(v.grpo.kl.len(), 2);
        let names: Vec<&str> = v.grpo.functions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["correct", "format"]);
        assert_eq!(v.completions.0, 2);
        let replies: Vec<&str> = v.completions.1.iter().map(|c| c.reply.as_str()).collect();
        assert_eq!(replies, ["2", "y"]);
        let mean = group_mean(&v.completions.1, "1 + 1 =");
        assert_eq!(mean, 0.5);
        let standings: Vec<Standing> = v.completions.1.iter().map(|c| c.standing(mean)).collect();
        assert_eq!(standings, [Standing::Above, Standing::Below]);
        assert_eq!(v.samples, [(2, "Hi".to_string(), "hello".to_string())]);
        assert!(v.log.iter().all(|l| !l.contains("1 + 1")), "{:?}", v.log);
        assert!(
            v.log.iter().any(|l| l.contains("reward 0.700  lr")),
            "{:?}",
            v.log
        );
    }

    #[test]
    fn without_an_advantage_a_completion_stands_against_its_prompts_mean() {
        assert_eq!(Standing::of(1.0, None, 0.5), Standing::Above);
        assert_eq!(Standing::of(0.0, None, 0.5), Standing::Below);
        assert_eq!(Standing::of(0.5, None, 0.5), Standing::Level);
        assert_eq!(Standing::of(1.0, Some(0.0), 0.5), Standing::Level);
        assert!(mean([f64::NAN].into_iter()).is_nan());
        assert_eq!(mean([1.0, f64::NAN, 3.0].into_iter()), 2.0);
    }

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
