//! The numbers of a run's events as trackers name them. Every tracker charts the same
//! scalars under the same names, so TensorBoard, MLflow and a `wandb sync` of the
//! TensorBoard files agree with each other and with `events.jsonl`.
//!
//! The names are those transformers' trackers give a TRL run (its `rewrite_logs`): a train
//! event's fields under `train/` (`lr` as `train/learning_rate`), an eval event's under
//! `eval/` with the `eval_` prefix dropped (`eval_loss` is `eval/loss`), objective metrics
//! under their TRL names in the same place (`train/rewards/margins`). Memory and
//! utilisation go under `system/`. Values that are not finite (`null` in `events.jsonl`: an
//! evaluation without a held-out split has no loss) are left out.

use crate::runs::event::{Eval, Train};
use crate::runs::EventKind;

/// One chart point: the tag and its value.
pub type Scalar = (String, f64);

/// The scalars `event` carries, with the step they belong to; `None` for an event without
/// numbers to chart (start, phases, samples, checkpoints, the end).
pub fn scalars(event: &EventKind) -> Option<(u64, Vec<Scalar>)> {
    let out = match event {
        EventKind::Train(t) => (t.step, train(t)),
        EventKind::Eval(e) => (e.step, eval(e)),
        _ => return None,
    };
    Some(out)
}

fn train(t: &Train) -> Vec<Scalar> {
    let mut v = vec![
        ("train/loss".to_string(), t.loss),
        ("train/learning_rate".into(), t.lr),
        ("train/grad_norm".into(), t.grad_norm),
        ("train/tokens".into(), t.tokens as f64),
        ("train/tokens_per_s".into(), t.tokens_per_s),
        ("train/epoch".into(), t.epoch),
        ("train/elapsed".into(), t.elapsed),
        ("train/eta".into(), t.eta),
    ];
    if let Some(r) = t.rss {
        v.push(("system/rss".into(), r as f64));
    }
    if let Some(m) = t.gpu_mem {
        v.push(("system/gpu_mem".into(), m as f64));
    }
    if let Some(u) = t.gpu_util {
        v.push(("system/gpu_util".into(), u as f64));
    }
    v.extend(t.metrics.iter().map(|(k, x)| (format!("train/{k}"), *x)));
    finite(v)
}

fn eval(e: &Eval) -> Vec<Scalar> {
    let mut v = vec![
        ("eval/loss".to_string(), e.eval_loss),
        ("eval/tokens".into(), e.eval_tokens as f64),
        ("eval/perplexity".into(), e.perplexity),
    ];
    v.extend(e.metrics.iter().map(|(k, x)| {
        let k = k.strip_prefix("eval_").unwrap_or(k);
        (format!("eval/{k}"), *x)
    }));
    finite(v)
}

fn finite(v: Vec<Scalar>) -> Vec<Scalar> {
    v.into_iter().filter(|(_, x)| x.is_finite()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_transformers_and_skip_what_is_not_a_number() {
        let mut t = Train {
            step: 4,
            loss: 1.5,
            lr: 0.01,
            grad_norm: f64::NAN,
            tokens: 100,
            rss: Some(2048),
            ..Default::default()
        };
        t.metrics.insert("rewards/margins".into(), 0.25);
        let (step, s) = scalars(&EventKind::Train(t)).unwrap();
        assert_eq!(step, 4);
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("train/loss"), Some(1.5));
        assert_eq!(get("train/learning_rate"), Some(0.01));
        assert_eq!(get("train/grad_norm"), None, "NaN is left out");
        assert_eq!(get("train/tokens"), Some(100.0));
        assert_eq!(get("system/rss"), Some(2048.0));
        assert_eq!(get("system/gpu_mem"), None);
        assert_eq!(get("train/rewards/margins"), Some(0.25));
        let mut e = Eval {
            step: 10,
            eval_loss: 2.0,
            perplexity: 2f64.exp(),
            ..Default::default()
        };
        e.metrics.insert("eval_rewards/accuracies".into(), 0.5);
        e.metrics.insert("persona/exact_match".into(), 1.0);
        let (step, s) = scalars(&EventKind::Eval(e)).unwrap();
        assert_eq!(step, 10);
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "eval/loss",
                "eval/tokens",
                "eval/perplexity",
                "eval/rewards/accuracies",
                "eval/persona/exact_match"
            ]
        );
        assert_eq!(scalars(&EventKind::Stopped { step: 3 }), None);
    }
}
