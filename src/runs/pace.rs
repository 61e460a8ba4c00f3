//! How long a model's evaluations took in earlier runs, so the Adapter form can say what
//! each evaluation of the next run will cost before it starts (issue #34: a user should
//! never meet a silent minute, and should see it coming).

use super::event::EventKind;
use super::{read_events, RunDir, RunSummary};

/// Seconds per held-out example, as measured by the newest run of the model that finished
/// an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPace {
    pub secs_per_example: f64,
    /// The run it was measured in.
    pub run: String,
}

/// How many of the newest runs are read: a workspace's older runs rarely use the model a
/// form is on, and each costs a read of its events.
const LOOK_BACK: usize = 12;

/// The pace of `model`'s evaluations (as `model.path` names it in a run's config), from
/// the longest `eval` phase of the newest run that has one.
pub fn eval_pace(runs: &[RunSummary], model: &str) -> Option<EvalPace> {
    let mut newest: Vec<&RunSummary> = runs.iter().collect();
    newest.sort_by(|a, b| b.started.total_cmp(&a.started));
    newest.into_iter().take(LOOK_BACK).find_map(|r| {
        let dir = RunDir::new(&r.dir);
        if config_model(&dir)? != model {
            return None;
        }
        let (events, _) = read_events(&dir.events_path(), 0).ok()?;
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Phase(p) if p.name == "eval" && p.done > 0 && p.elapsed > 0.0 => Some(p),
                _ => None,
            })
            .max_by_key(|p| p.done)
            .map(|p| EvalPace {
                secs_per_example: p.elapsed / p.done as f64,
                run: r.id.clone(),
            })
    })
}

/// `model.path` in a run's config copy.
fn config_model(dir: &RunDir) -> Option<String> {
    let text = std::fs::read_to_string(dir.config()).ok()?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    match &v["model"] {
        serde_yaml::Value::String(s) => Some(s.clone()),
        m => m["path"].as_str().map(str::to_string),
    }
}
