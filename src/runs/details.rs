//! What a run's details show beyond its summary: its config, checkpoints, whether it wrote
//! its adapter, how the first sample prompt's greedy answer changed over the evaluations,
//! and for a GRPO run how one prompt's sampled completions and their rewards changed over
//! the steps. The Runs tab reads it on a worker.

use super::{EventKind, RunDir, RunEvent};
use crate::config::RunConfig;
use std::collections::HashMap;

/// What the details pane shows of a run beyond its summary.
#[derive(Debug, Clone)]
pub struct RunDetails {
    pub config: Option<RunConfig>,
    pub checkpoints: Vec<u64>,
    pub adapter: bool,
    /// The first sample prompt and its greedy reply at each evaluation: how the answer
    /// changed.
    pub samples: Option<(String, Vec<(u64, String)>)>,
    /// GRPO: the prompt sampled at the most steps, with its completions at each.
    pub completions: Option<CompletionHistory>,
}

/// One of GRPO's sampled completions with its weighted reward (NaN when the event has
/// none) and advantage.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub reply: String,
    pub reward: f64,
    pub advantage: Option<f64>,
}

/// How one prompt's completions and rewards changed: the steps it was sampled at, in
/// order, each with the completions the run logged.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionHistory {
    pub prompt: String,
    pub steps: Vec<(u64, Vec<Completion>)>,
}

impl CompletionHistory {
    /// The prompt that GRPO sampled at the most steps (the first seen among equals), so
    /// its history is the longest; `None` when no event carries rewards. A resumed run's
    /// repeated steps replace the ones they repeat.
    pub fn from_events(events: impl IntoIterator<Item = RunEvent>) -> Option<Self> {
        let mut all: Vec<(u64, String, Completion)> = Vec::new();
        for e in events {
            match e.kind {
                EventKind::Resume { from_step, .. } => all.retain(|(s, _, _)| *s <= from_step),
                EventKind::Sample {
                    step,
                    prompt,
                    reply,
                    rewards,
                    advantage,
                } if is_sampled(&rewards, advantage) => {
                    let reward = rewards.get("reward").copied().unwrap_or(f64::NAN);
                    all.push((
                        step,
                        prompt,
                        Completion {
                            reply,
                            reward,
                            advantage,
                        },
                    ));
                }
                _ => {}
            }
        }
        let prompt = most_sampled(&all)?;
        let mut steps: Vec<(u64, Vec<Completion>)> = Vec::new();
        for (step, p, c) in all {
            if p != prompt {
                continue;
            }
            match steps.last_mut() {
                Some((s, cs)) if *s == step => cs.push(c),
                _ => steps.push((step, vec![c])),
            }
        }
        Some(CompletionHistory { prompt, steps })
    }
}

/// A sample event is one of GRPO's completions when it carries rewards or an advantage;
/// the greedy replies written at evaluations carry neither.
fn is_sampled(rewards: &std::collections::BTreeMap<String, f64>, advantage: Option<f64>) -> bool {
    !rewards.is_empty() || advantage.is_some()
}

/// The prompt seen at the most distinct steps; ties go to the one seen first.
fn most_sampled(all: &[(u64, String, Completion)]) -> Option<String> {
    // prompt → (steps seen, last step, first index)
    let mut seen: HashMap<&str, (usize, u64, usize)> = HashMap::new();
    for (i, (step, prompt, _)) in all.iter().enumerate() {
        let e = seen.entry(prompt).or_insert((0, u64::MAX, i));
        if e.1 != *step {
            e.0 += 1;
            e.1 = *step;
        }
    }
    seen.into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .2.cmp(&a.1 .2)))
        .map(|(p, _)| p.to_string())
}

/// The first greedy sample prompt and its reply at each evaluation (GRPO's sampled
/// completions left out).
fn greedy_samples(events: &[RunEvent]) -> Option<(String, Vec<(u64, String)>)> {
    let mut samples: Option<(String, Vec<(u64, String)>)> = None;
    for e in events {
        if let EventKind::Sample {
            step,
            prompt,
            reply,
            rewards,
            advantage,
        } = &e.kind
        {
            if is_sampled(rewards, *advantage) {
                continue;
            }
            let s = samples.get_or_insert_with(|| (prompt.clone(), Vec::new()));
            if s.0 == *prompt {
                s.1.retain(|(st, _)| st < step);
                s.1.push((*step, reply.clone()));
            }
        }
    }
    samples
}

impl RunDetails {
    /// Reads a run's config, checkpoints, sample replies and sampled completions.
    pub fn read(dir: &std::path::Path) -> Self {
        let run = RunDir::new(dir);
        let (events, _) = super::read_events(&run.events_path(), 0).unwrap_or_default();
        let samples = greedy_samples(&events);
        RunDetails {
            config: RunConfig::load(&run.config()).ok(),
            checkpoints: super::adapters::run_checkpoints(&run)
                .iter()
                .map(|(s, _)| *s)
                .collect(),
            adapter: run.has_adapter(),
            samples,
            completions: CompletionHistory::from_events(events),
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

    fn sampled(step: u64, prompt: &str, reply: &str, reward: f64) -> RunEvent {
        ev(
            json!({"type": "sample", "step": step, "prompt": prompt, "reply": reply,
            "rewards": {"correct": reward, "reward": reward}, "advantage": reward - 0.5}),
        )
    }

    fn greedy(step: u64, prompt: &str, reply: &str) -> RunEvent {
        ev(json!({"type": "sample", "step": step, "prompt": prompt, "reply": reply}))
    }

    fn replies(h: &CompletionHistory) -> Vec<(u64, Vec<&str>)> {
        h.steps
            .iter()
            .map(|(s, cs)| (*s, cs.iter().map(|c| c.reply.as_str()).collect()))
            .collect()
    }

    #[test]
    fn the_prompt_sampled_at_the_most_steps_is_followed() {
        // `1 + 1 =` has more completions (one step, four of them) but `2 + 2 =` recurs.
        let mut events = Vec::new();
        for r in ["a", "b", "c", "d"] {
            events.push(sampled(1, "1 + 1 =", r, 0.0));
        }
        events.push(sampled(2, "2 + 2 =", "x", 0.0));
        events.push(sampled(2, "2 + 2 =", "4", 1.0));
        events.push(greedy(2, "2 + 2 =", "greedy, not sampled"));
        events.push(sampled(3, "3 + 3 =", "6", 1.0));
        events.push(sampled(7, "2 + 2 =", "4", 1.0));
        let h = CompletionHistory::from_events(events).unwrap();
        assert_eq!(h.prompt, "2 + 2 =");
        assert_eq!(replies(&h), [(2, vec!["x", "4"]), (7, vec!["4"])]);
        assert_eq!(h.steps[0].1[1].reward, 1.0);
        assert_eq!(h.steps[0].1[1].advantage, Some(0.5));
    }

    #[test]
    fn ties_go_to_the_first_prompt_and_a_resume_replaces_repeated_steps() {
        let events = vec![
            sampled(1, "b", "early", 0.0),
            sampled(2, "a", "x", 0.0),
            sampled(3, "b", "lost", 0.0),
            ev(json!({"type": "resume", "from_step": 2, "checkpoint": "step-2"})),
            sampled(3, "b", "again", 1.0),
            sampled(4, "a", "y", 1.0),
        ];
        let h = CompletionHistory::from_events(events).unwrap();
        assert_eq!(h.prompt, "b");
        assert_eq!(replies(&h), [(1, vec!["early"]), (3, vec!["again"])]);
    }

    #[test]
    fn a_run_without_rewards_has_no_history_and_keeps_its_greedy_samples() {
        let events = vec![
            greedy(0, "What is a gradient?", "zzz"),
            greedy(50, "What is a gradient?", "Arr"),
            greedy(50, "Other?", "no"),
        ];
        assert_eq!(CompletionHistory::from_events(events.clone()), None);
        assert_eq!(
            greedy_samples(&events),
            Some((
                "What is a gradient?".into(),
                vec![(0, "zzz".into()), (50, "Arr".into())]
            ))
        );
        // A GRPO run's completions are not its greedy samples.
        assert_eq!(greedy_samples(&[sampled(1, "p", "r", 1.0)]), None);
    }

    #[test]
    fn a_completion_without_a_weighted_reward_reads_as_nan() {
        let e = ev(
            json!({"type": "sample", "step": 1, "prompt": "p", "reply": "r",
            "rewards": {"format": 1.0}}),
        );
        let h = CompletionHistory::from_events([e]).unwrap();
        assert!(h.steps[0].1[0].reward.is_nan());
        assert_eq!(h.steps[0].1[0].advantage, None);
    }
}
