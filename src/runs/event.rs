//! What a trainer says about its run, one JSON line per event in `events.jsonl`. The enum
//! is the only place events are built and parsed: the trainer writes them, the TUI, the CLI
//! and `runs` read them. The JSON is `{"type": "train", ...fields, "time": unix_seconds}`,
//! the same lines older tunelab versions wrote, so older run folders still load.
//!
//! Objective-specific numbers (DPO's `rewards/*`, KTO's `kl`) travel in `metrics`, flattened
//! into the same object under the names TRL uses.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// One event with the time it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    #[serde(flatten)]
    pub kind: EventKind,
    /// Unix seconds; 0 when an event carries none.
    #[serde(default)]
    pub time: f64,
}

/// Objective metrics by name; a non-finite value is written as `null` and read back as NaN.
pub type Metrics = BTreeMap<String, f64>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Start(Start),
    Train(Train),
    Eval(Eval),
    /// Progress through a long stretch of work between steps (loading, an evaluation, the
    /// sample replies, a checkpoint), so a watched run never looks frozen.
    Phase(Phase),
    Checkpoint {
        step: u64,
        path: String,
    },
    CheckpointSkipped {
        path: String,
        reason: String,
    },
    Resume {
        from_step: u64,
        checkpoint: Option<String>,
    },
    /// A greedy reply to one of the run's sample prompts, at an evaluation; or one of GRPO's
    /// sampled completions at a step, with its rewards (each function's and the weighted
    /// `reward`) and advantage.
    Sample {
        step: u64,
        prompt: String,
        reply: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        rewards: BTreeMap<String, f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        advantage: Option<f64>,
    },
    /// Something went wrong that does not stop the run (an experiment tracker that cannot
    /// be reached): said once, and the run goes on.
    Warning {
        step: u64,
        message: String,
    },
    Stopped {
        step: u64,
    },
    /// A sweep's median pruner stopped the run at an evaluation: `metric` was `value`, worse
    /// than the `median` of `compared` completed runs of the sweep at the same step.
    Pruned {
        step: u64,
        metric: String,
        #[serde(deserialize_with = "nan_if_null")]
        value: f64,
        median: f64,
        compared: usize,
    },
    Failed {
        step: u64,
        error: String,
    },
    Done {
        step: u64,
        adapter: String,
        best_eval_loss: Option<f64>,
    },
    /// A type this version does not know (written by a newer tunelab): kept, not shown.
    #[serde(other)]
    Unknown,
}

/// The run's shape, once per (re)start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Start {
    pub step: u64,
    pub total_steps: u64,
    pub trainable_params: u64,
    pub train_sequences: u64,
    pub eval_examples: u64,
    pub dropped_examples: u64,
    /// Examples (pairs) cut to fit the length limits.
    #[serde(skip_serializing_if = "is_zero")]
    pub truncated_examples: u64,
    pub micro_batches_per_epoch: u64,
    pub warmup_steps: u64,
    pub device: String,
    pub dtype: String,
    pub name: Option<String>,
    /// `sft`, `dpo` or `kto` (absent in runs written before DPO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Records with tool calls or definitions, the policy that applied to them, and how
    /// many it left out.
    #[serde(skip_serializing_if = "is_zero")]
    pub tool_records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_format: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub tool_records_dropped: u64,
    /// KTO: the rated completions that train, by label.
    #[serde(skip_serializing_if = "is_zero")]
    pub desirable: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub undesirable: u64,
    /// SFT on rated data: the undesirable completions left out.
    #[serde(skip_serializing_if = "is_zero")]
    pub undesirable_skipped: u64,
    /// QLoRA: how the base was quantized (types, bits per weight, fallbacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Resident bytes of the frozen base.
    #[serde(skip_serializing_if = "is_zero")]
    pub base_bytes: u64,
    /// Which step implementation the run takes (`dense` or `quantized`), so its speed is
    /// no mystery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<String>,
    /// The engine that trains, when it is not tunelab's own (`TRL 1.16.0 · 8 GPUs · ZeRO-3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// One optimizer step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Train {
    pub step: u64,
    pub total_steps: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    pub lr: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    pub tokens: u64,
    pub tokens_per_s: f64,
    pub epoch: f64,
    /// Seconds of training so far, across resumes.
    pub elapsed: f64,
    /// Seconds left at the current pace.
    pub eta: f64,
    /// The trainer's resident memory in bytes.
    pub rss: Option<u64>,
    /// GPU memory in use (NVML), bytes, summed over the GPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_mem: Option<u64>,
    /// GPU utilisation in percent (NVML), the first GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_util: Option<u32>,
    /// Every local GPU's reading (NVML) when the run spans several (an engine run): one
    /// gauge each in the Train tab.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<crate::telemetry::GpuMemory>,
    #[serde(flatten, deserialize_with = "metrics_nan_if_null")]
    pub metrics: Metrics,
}

/// A held-out evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Eval {
    pub step: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub eval_loss: f64,
    pub eval_tokens: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub perplexity: f64,
    #[serde(flatten, deserialize_with = "metrics_nan_if_null")]
    pub metrics: Metrics,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub(crate) fn metrics_nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<Metrics, D::Error> {
    // Unknown keys of any kind land here; only numbers (or null) are metrics.
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Number(n) => n.as_f64().map(|x| (k, x)),
            serde_json::Value::Null => Some((k, f64::NAN)),
            _ => None,
        })
        .collect())
}

/// Where a phase stands: `done` of `total` units (`total` 0 when unknown), and the seconds
/// since it began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub step: u64,
    /// `load model`, `tokenize data`, `load tasks`, `reference`, `eval`, `task <name>`,
    /// `samples`, `checkpoint`, `adapter`.
    pub name: String,
    pub done: u64,
    pub total: u64,
    /// What is counted (`examples`, `prompts`, `items`); empty for a phase without units.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    pub elapsed: f64,
}

impl Phase {
    /// `eval 40/100 examples · 3.2 s` (`load model · 1.5 s` without a total).
    pub fn line(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        if self.total == 0 {
            format!("{} · {:.1} s", self.name, self.elapsed)
        } else {
            format!(
                "{} {}/{}{unit} · {:.1} s",
                self.name, self.done, self.total, self.elapsed
            )
        }
    }

    /// Seconds left at the pace so far; `None` before any progress or without a total.
    pub fn eta(&self) -> Option<f64> {
        (self.done > 0 && self.total > self.done)
            .then(|| self.elapsed / self.done as f64 * (self.total - self.done) as f64)
    }
}

impl EventKind {
    /// The step the event belongs to, where it has one.
    pub fn step(&self) -> Option<u64> {
        match self {
            EventKind::Start(s) => Some(s.step),
            EventKind::Train(t) => Some(t.step),
            EventKind::Eval(e) => Some(e.step),
            EventKind::Phase(p) => Some(p.step),
            EventKind::Checkpoint { step, .. }
            | EventKind::Sample { step, .. }
            | EventKind::Warning { step, .. }
            | EventKind::Stopped { step }
            | EventKind::Pruned { step, .. }
            | EventKind::Failed { step, .. }
            | EventKind::Done { step, .. } => Some(*step),
            EventKind::Resume { from_step, .. } => Some(*from_step),
            EventKind::CheckpointSkipped { .. } | EventKind::Unknown => None,
        }
    }

    /// The `type` name as written.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Start(_) => "start",
            EventKind::Train(_) => "train",
            EventKind::Eval(_) => "eval",
            EventKind::Checkpoint { .. } => "checkpoint",
            EventKind::CheckpointSkipped { .. } => "checkpoint_skipped",
            EventKind::Resume { .. } => "resume",
            EventKind::Sample { .. } => "sample",
            EventKind::Phase(_) => "phase",
            EventKind::Warning { .. } => "warning",
            EventKind::Stopped { .. } => "stopped",
            EventKind::Pruned { .. } => "pruned",
            EventKind::Failed { .. } => "failed",
            EventKind::Done { .. } => "done",
            EventKind::Unknown => "unknown",
        }
    }

    /// One human line: the train log, `tunelab runs watch` and the Train tab's event list.
    pub fn describe(&self) -> String {
        match self {
            EventKind::Train(t) => {
                let mut s = format!(
                    "step {}/{} loss {:.4} lr {:.2e} grad_norm {:.3} {:.0} tok/s eta {}",
                    t.step,
                    t.total_steps,
                    t.loss,
                    t.lr,
                    t.grad_norm,
                    t.tokens_per_s,
                    crate::units::clock(t.eta)
                );
                push_metrics(&mut s, &t.metrics);
                s
            }
            EventKind::Eval(e) => {
                let mut s = format!("step {} eval loss {:.4}", e.step, e.eval_loss);
                push_metrics(&mut s, &e.metrics);
                s
            }
            EventKind::Start(s) => {
                let mut line = format!(
                    "started: {} steps, {} trainable parameters, {} sequences",
                    s.total_steps, s.trainable_params, s.train_sequences
                );
                if s.tool_records > 0 {
                    line.push_str(&format!(
                        "; {} records with tool calls (tool format {}, {} left out)",
                        s.tool_records,
                        s.tool_format.as_deref().unwrap_or("template"),
                        s.tool_records_dropped
                    ));
                }
                line
            }
            EventKind::Checkpoint { path, .. } => format!("checkpoint {path}"),
            EventKind::CheckpointSkipped { path, reason } => {
                format!("skipped damaged checkpoint {path}: {reason}")
            }
            EventKind::Resume {
                from_step,
                checkpoint,
            } => match checkpoint {
                Some(c) => format!("resumed at step {from_step} from {c}"),
                None => "resumed from the start (no good checkpoint)".into(),
            },
            EventKind::Phase(p) => p.line(),
            EventKind::Sample {
                step,
                prompt,
                reply,
                rewards,
                ..
            } => match rewards.get("reward") {
                Some(r) => format!("step {step} completion {prompt:?} → {reply:?} reward {r:.3}"),
                None => format!("step {step} sample {prompt:?} → {reply:?}"),
            },
            EventKind::Warning { message, .. } => format!("warning: {message}"),
            EventKind::Stopped { step } => format!("stopped at step {step}"),
            EventKind::Pruned {
                step,
                metric,
                value,
                median,
                compared,
            } => format!(
                "pruned at step {step}: {metric} {value:.4} is worse than the median {median:.4} of {compared} completed run{}",
                if *compared == 1 { "" } else { "s" }
            ),
            EventKind::Failed { error, .. } => format!("failed: {error}"),
            EventKind::Done { step, .. } => format!("done at step {step}"),
            EventKind::Unknown => "an event this version does not know".into(),
        }
    }
}

fn push_metrics(s: &mut String, m: &Metrics) {
    for (k, v) in m {
        s.push_str(&format!(" {k} {v:.4}"));
    }
}

impl RunEvent {
    pub fn now(kind: EventKind) -> Self {
        RunEvent {
            kind,
            time: crate::units::unix_now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_keep_their_shape() {
        let e = RunEvent {
            kind: EventKind::Eval(Eval {
                step: 5,
                eval_loss: 2.5,
                eval_tokens: 10,
                perplexity: 2.5f64.exp(),
                metrics: Default::default(),
            }),
            time: 1.5,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"type\":\"eval\",\"step\":5,\"eval_loss\":2.5,\"eval_tokens\":10,\"perplexity\":{},\"time\":1.5}}",
                2.5f64.exp()
            )
        );
        assert_eq!(serde_json::from_str::<RunEvent>(&text).unwrap(), e);
    }

    #[test]
    fn metrics_travel_flat_and_nan_comes_back() {
        let mut t = Train {
            step: 3,
            loss: f64::NAN,
            ..Default::default()
        };
        t.metrics.insert("rewards/margins".into(), 0.25);
        let e = RunEvent {
            kind: EventKind::Train(t),
            time: 2.0,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["rewards/margins"], json!(0.25));
        assert_eq!(v["loss"], json!(null));
        let back: RunEvent = serde_json::from_value(v).unwrap();
        let EventKind::Train(t) = back.kind else {
            panic!("{back:?}")
        };
        assert!(t.loss.is_nan());
        assert_eq!(t.metrics.get("rewards/margins"), Some(&0.25));
        assert_eq!(t.metrics.len(), 1, "{:?}", t.metrics);
    }

    #[test]
    fn unknown_types_are_kept_as_unknown() {
        let e: RunEvent = serde_json::from_str(r#"{"type":"telemetry","x":1,"time":3.0}"#).unwrap();
        assert_eq!(e.kind, EventKind::Unknown);
        assert_eq!(e.time, 3.0);
    }
}
