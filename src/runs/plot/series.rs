//! A run's curves from its events: train loss (raw and EMA-smoothed), eval loss, learning
//! rate and the preference objectives' metrics. A resumed run rewrites the steps after its
//! checkpoint, so a step seen again replaces what followed it.

use crate::runs::{EventKind, RunEvent};
use std::collections::BTreeMap;

/// One point: (step, value).
pub type Point = (f64, f64);

/// The preference metrics a figure can show, by event field (TRL's names), with the title
/// of their panel and the id its SVG elements take. DPO writes margins and accuracies, KTO
/// margins and its KL reference point.
pub const PREFERENCE: &[(&str, &str, &str)] = &[
    ("rewards/margins", "reward margin", "margins"),
    ("rewards/accuracies", "reward accuracy", "accuracy"),
    ("kl", "KL", "kl"),
];

/// A quantity logged at train steps (raw and smoothed) and at evaluations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub train: Vec<Point>,
    /// The exponential moving average of `train`.
    pub smoothed: Vec<Point>,
    pub eval: Vec<Point>,
}

impl Curve {
    fn push_train(&mut self, step: f64, value: f64, weight: f64) {
        if !value.is_finite() {
            return;
        }
        let smooth = self
            .smoothed
            .last()
            .map_or(value, |p| weight * p.1 + (1.0 - weight) * value);
        self.train.push((step, value));
        self.smoothed.push((step, smooth));
    }

    fn push_eval(&mut self, step: f64, value: f64) {
        cut_from(&mut self.eval, step);
        if value.is_finite() {
            self.eval.push((step, value));
        }
    }

    /// Drops the train points at `step` and after.
    fn rewind(&mut self, step: f64) {
        cut_from(&mut self.train, step);
        cut_from(&mut self.smoothed, step);
    }

    fn rewind_evals_after(&mut self, step: f64) {
        self.eval.retain(|p| p.0 <= step);
    }

    pub fn is_empty(&self) -> bool {
        self.train.is_empty() && self.eval.is_empty()
    }
}

fn cut_from(points: &mut Vec<Point>, step: f64) {
    let keep = points.partition_point(|p| p.0 < step);
    points.truncate(keep);
}

/// What a figure draws of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSeries {
    /// The legend's name: the run folder's name.
    pub name: String,
    /// `sft`, `dpo` or `kto` from the start event (absent in older runs).
    pub method: Option<String>,
    pub loss: Curve,
    pub lr: Vec<Point>,
    /// The [`PREFERENCE`] metrics the run logged, by field name.
    pub metrics: BTreeMap<String, Curve>,
}

impl RunSeries {
    /// The curves of `events` in order, train values smoothed by an EMA of `weight`
    /// (0: none, TensorBoard's slider).
    pub fn from_events(name: &str, events: &[RunEvent], weight: f64) -> Self {
        let weight = if weight.is_finite() {
            weight.clamp(0.0, 0.999)
        } else {
            0.0
        };
        let mut s = RunSeries {
            name: name.to_string(),
            ..Default::default()
        };
        for e in events {
            match &e.kind {
                EventKind::Start(st) if st.method.is_some() => {
                    s.method.clone_from(&st.method);
                }
                EventKind::Resume { from_step, .. } => {
                    let step = *from_step as f64;
                    s.each_curve(|c| {
                        c.rewind(step + 0.5);
                        c.rewind_evals_after(step);
                    });
                    cut_from(&mut s.lr, step + 0.5);
                }
                EventKind::Train(t) => {
                    let step = t.step as f64;
                    if s.lr.last().is_some_and(|p| p.0 >= step)
                        || s.loss.train.last().is_some_and(|p| p.0 >= step)
                    {
                        s.each_curve(|c| c.rewind(step));
                        cut_from(&mut s.lr, step);
                    }
                    s.loss.push_train(step, t.loss, weight);
                    if t.lr.is_finite() {
                        s.lr.push((step, t.lr));
                    }
                    for (key, ..) in PREFERENCE {
                        if let Some(v) = t.metrics.get(*key) {
                            let c = s.metrics.entry(key.to_string()).or_default();
                            // A metric logged only at some steps rewinds with the rest.
                            if c.train.last().is_some_and(|p| p.0 >= step) {
                                c.rewind(step);
                            }
                            c.push_train(step, *v, weight);
                        }
                    }
                }
                EventKind::Eval(v) => {
                    let step = v.step as f64;
                    s.loss.push_eval(step, v.eval_loss);
                    for (key, ..) in PREFERENCE {
                        if let Some(x) = v.metrics.get(*key) {
                            s.metrics
                                .entry(key.to_string())
                                .or_default()
                                .push_eval(step, *x);
                        }
                    }
                }
                _ => {}
            }
        }
        s.metrics.retain(|_, c| !c.is_empty());
        s
    }

    fn each_curve(&mut self, mut f: impl FnMut(&mut Curve)) {
        f(&mut self.loss);
        self.metrics.values_mut().for_each(f);
    }

    /// The last step with a point.
    pub fn last_step(&self) -> f64 {
        let mut last = 0.0f64;
        for c in std::iter::once(&self.loss).chain(self.metrics.values()) {
            for p in c.train.last().into_iter().chain(c.eval.last()) {
                last = last.max(p.0);
            }
        }
        self.lr.last().map_or(last, |p| last.max(p.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::event::{Eval, Train};

    fn train(step: u64, loss: f64) -> RunEvent {
        RunEvent {
            kind: EventKind::Train(Train {
                step,
                loss,
                lr: step as f64 * 1e-4,
                ..Default::default()
            }),
            time: 0.0,
        }
    }

    fn eval(step: u64, loss: f64) -> RunEvent {
        RunEvent {
            kind: EventKind::Eval(Eval {
                step,
                eval_loss: loss,
                ..Default::default()
            }),
            time: 0.0,
        }
    }

    #[test]
    fn the_ema_starts_at_the_first_value() {
        let s = RunSeries::from_events("a", &[train(1, 4.0), train(2, 2.0)], 0.5);
        assert_eq!(s.loss.train, vec![(1.0, 4.0), (2.0, 2.0)]);
        assert_eq!(s.loss.smoothed, vec![(1.0, 4.0), (2.0, 3.0)]);
        assert_eq!(s.lr, vec![(1.0, 1e-4), (2.0, 2e-4)]);
        let none = RunSeries::from_events("a", &[train(1, 4.0), train(2, 2.0)], 0.0);
        assert_eq!(none.loss.smoothed, none.loss.train);
    }

    #[test]
    fn a_resume_rewrites_the_steps_after_its_checkpoint() {
        let events = vec![
            train(1, 5.0),
            train(2, 4.0),
            eval(2, 4.5),
            train(3, 3.0),
            eval(3, 3.5),
            RunEvent {
                kind: EventKind::Resume {
                    from_step: 2,
                    checkpoint: None,
                },
                time: 0.0,
            },
            train(3, 2.0),
            train(4, f64::NAN),
        ];
        let s = RunSeries::from_events("a", &events, 0.0);
        assert_eq!(s.loss.train, vec![(1.0, 5.0), (2.0, 4.0), (3.0, 2.0)]);
        assert_eq!(s.loss.eval, vec![(2.0, 4.5)]);
        assert_eq!(s.lr.len(), 4, "{:?}", s.lr);
        assert_eq!(s.last_step(), 4.0);
        // A train step seen again without a resume event (older writers) rewinds too.
        let s = RunSeries::from_events("a", &[train(1, 5.0), train(2, 4.0), train(2, 1.0)], 0.0);
        assert_eq!(s.loss.train, vec![(1.0, 5.0), (2.0, 1.0)]);
    }

    #[test]
    fn preference_metrics_are_kept_by_name() {
        let mut t = Train {
            step: 1,
            loss: 0.69,
            ..Default::default()
        };
        t.metrics.insert("rewards/margins".into(), 0.5);
        t.metrics.insert("logps/chosen".into(), -3.0);
        let mut v = Eval {
            step: 1,
            eval_loss: 0.6,
            ..Default::default()
        };
        v.metrics.insert("kl".into(), 0.1);
        let events = vec![
            RunEvent {
                kind: EventKind::Train(t),
                time: 0.0,
            },
            RunEvent {
                kind: EventKind::Eval(v),
                time: 0.0,
            },
        ];
        let s = RunSeries::from_events("a", &events, 0.9);
        assert_eq!(
            s.metrics.keys().collect::<Vec<_>>(),
            vec!["kl", "rewards/margins"]
        );
        assert_eq!(s.metrics["kl"].eval, vec![(1.0, 0.1)]);
        assert_eq!(s.metrics["rewards/margins"].train, vec![(1.0, 0.5)]);
    }
}
