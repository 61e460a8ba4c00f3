//! GRPO's reward functions: what scores each sampled completion. One [`Rewards`] is built
//! per run from `grpo.rewards` (regexes compiled, command programs found, judge endpoints
//! and keys read from the environment) and then scores batches: every function on every
//! completion, `out[f][i]`. The built-ins are pure and cheap; commands run as processes in
//! a pool, judges as concurrent requests. This runs on a trainer thread, not on an async
//! runtime: processes and requests get std threads of their own.
//!
//! - [`pattern`], [`answer`] (with [`number`]), [`length`], [`persona`]: the built-ins.
//! - [`command`] (over [`process`]): any executable speaking JSON Lines.
//! - [`judge`]: an LLM's 0–10 score.

pub mod answer;
pub mod command;
pub mod error;
pub mod judge;
pub mod length;
pub mod number;
pub mod pattern;
pub mod persona;
pub mod process;
pub mod scored;

pub use error::RewardError;
pub use scored::Scored;

use crate::config::grpo::{RewardKind, RewardSpec};
use std::path::Path;

/// One built reward function.
#[derive(Debug)]
enum Function {
    Pattern(pattern::Pattern),
    Answer(answer::Answer),
    Length(length::Length),
    Persona(persona::Persona),
    Command(command::Command),
    /// Boxed: its HTTP client is large beside the others.
    Judge(Box<judge::Judge>),
}

/// Every reward function of a run, in `grpo.rewards` order, with its name and weight.
#[derive(Debug)]
pub struct Rewards {
    names: Vec<String>,
    weights: Vec<f64>,
    functions: Vec<Function>,
}

impl Rewards {
    /// Builds `specs` under `names` (`GrpoSection::reward_names`, one per spec). Relative
    /// command programs resolve against `base_dir` (the run config's folder), where commands
    /// also run. Fails on the first reward that cannot be built: a bad regex, a program that
    /// is missing or not executable, a judge whose provider is unknown or whose API key is
    /// not in the environment (the error names the variable).
    pub fn new(
        specs: &[RewardSpec],
        names: Vec<String>,
        base_dir: &Path,
    ) -> Result<Rewards, RewardError> {
        if names.len() != specs.len() {
            return Err(RewardError::Setup {
                reward: "grpo.rewards".into(),
                message: format!("{} rewards but {} names", specs.len(), names.len()),
            });
        }
        let mut functions = Vec::with_capacity(specs.len());
        let mut weights = Vec::with_capacity(specs.len());
        for (spec, name) in specs.iter().zip(&names) {
            let setup = |message: String| RewardError::Setup {
                reward: name.clone(),
                message,
            };
            if !spec.weight.is_finite() {
                return Err(setup(format!(
                    "weight must be a finite number (it is {})",
                    spec.weight
                )));
            }
            let kind = spec.kind().ok_or_else(|| {
                setup(format!(
                    "must set exactly one of {}",
                    crate::config::grpo::REWARD_KINDS.join(", ")
                ))
            })?;
            let f = match kind {
                RewardKind::Regex(p) => pattern::Pattern::new(p)
                    .map(Function::Pattern)
                    .map_err(|m| setup(format!("regex {m}")))?,
                RewardKind::Answer(a) => answer::Answer::new(a)
                    .map(Function::Answer)
                    .map_err(setup)?,
                RewardKind::Length(l) => length::Length::new(l)
                    .map(Function::Length)
                    .map_err(setup)?,
                RewardKind::Persona(p) => persona::Persona::new(p)
                    .map(Function::Persona)
                    .map_err(setup)?,
                RewardKind::Command(c) => command::Command::new(c, base_dir)
                    .map(Function::Command)
                    .map_err(setup)?,
                RewardKind::Judge(j) => judge::Judge::new(j)
                    .map(|j| Function::Judge(Box::new(j)))
                    .map_err(setup)?,
            };
            functions.push(f);
            weights.push(spec.weight);
        }
        Ok(Rewards {
            names,
            weights,
            functions,
        })
    }

    /// The rewards' names, in order (metrics are `rewards/<name>/mean`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Each reward's weight, in order; a completion's reward is `Σ weight·score`.
    pub fn weights(&self) -> Vec<f64> {
        self.weights.clone()
    }

    /// Scores every completion with every function: `out[f][i]`, one row per reward in
    /// order, one column per completion of `batch`. NaN means that function could not score
    /// that completion; only a judge produces it (a reply without a readable score), and
    /// [`Rewards::take_unparsed`] counts it. Every other failure is an error: nothing is
    /// scored 0 in place of an answer.
    pub fn score(&self, batch: &[Scored]) -> Result<Vec<Vec<f64>>, RewardError> {
        let mut out = Vec::with_capacity(self.functions.len());
        for (f, name) in self.functions.iter().zip(&self.names) {
            let row = match f {
                Function::Pattern(p) => batch.iter().map(|s| p.score(s.completion)).collect(),
                Function::Length(l) => batch.iter().map(|s| l.score(s.completion_tokens)).collect(),
                Function::Persona(p) => batch.iter().map(|s| p.score(s.completion)).collect(),
                Function::Answer(a) => batch
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        a.score(s.completion, s.reference).map_err(|message| {
                            RewardError::Reference {
                                reward: name.clone(),
                                line: i + 1,
                                message,
                            }
                        })
                    })
                    .collect::<Result<Vec<f64>, _>>()?,
                Function::Command(c) => c.score(name, batch)?,
                Function::Judge(j) => j.score(name, batch)?,
            };
            out.push(row);
        }
        Ok(out)
    }

    /// The judge replies without a readable score (NaN in [`Rewards::score`]'s output) since
    /// the last call, per judge reward that had any: `(name, count)`. Reading resets them,
    /// so a trainer that calls this after each step logs each step's own count.
    pub fn take_unparsed(&self) -> Vec<(String, usize)> {
        self.functions
            .iter()
            .zip(&self.names)
            .filter_map(|(f, name)| match f {
                Function::Judge(j) => Some((name.clone(), j.take_unparsed())),
                _ => None,
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::grpo::GrpoSection;
    use serde_json::{json, Map, Value};

    fn section(yaml: &str) -> GrpoSection {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn build(yaml: &str, dir: &Path) -> Result<Rewards, RewardError> {
        let s = section(yaml);
        Rewards::new(&s.rewards, s.reward_names(), dir)
    }

    fn scored<'a>(
        messages: &'a [Value],
        metadata: &'a Map<String, Value>,
        completion: &'a str,
        tokens: usize,
        reference: Option<&'a str>,
    ) -> Scored<'a> {
        Scored {
            prompt: "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
            messages,
            completion,
            completion_tokens: tokens,
            reference,
            metadata,
        }
    }

    #[test]
    fn rewards_can_move_to_and_be_shared_by_trainer_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Rewards>();
    }

    #[test]
    fn every_built_in_scores_a_gsm8k_batch() {
        let dir = tempfile::tempdir().unwrap();
        let r = build(
            r#"rewards:
  - regex: '<think>.*?</think>\s*<answer>.*?</answer>'
  - answer: {extract: '<answer>(.*?)</answer>', reference_regex: '#### (.*)'}
    weight: 2
  - length: {min: 4, max: 40}
    name: short
  - persona: {markers: [arr, matey]}
"#,
            dir.path(),
        )
        .unwrap();
        assert_eq!(r.names(), ["format", "answer", "short", "persona"]);
        assert_eq!(r.weights(), vec![1.0, 2.0, 1.0, 1.0]);
        let messages = vec![json!({"role": "user", "content": "How many clips?"})];
        let meta = Map::new();
        let solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72";
        let batch = [
            scored(
                &messages,
                &meta,
                "<think>\n48 + 24 = 72, arr\n</think>\n<answer>72</answer>",
                20,
                Some(solution),
            ),
            scored(
                &messages,
                &meta,
                "Arr matey, it be 70. <answer>70</answer>",
                80,
                Some(solution),
            ),
            scored(&messages, &meta, "I do not know.", 2, Some(solution)),
        ];
        let out = r.score(&batch).unwrap();
        assert_eq!(out[0], vec![1.0, 0.0, 0.0]);
        assert_eq!(out[1], vec![1.0, 0.0, 0.0]);
        assert_eq!(out[2], vec![1.0, 0.5, 0.5]);
        assert_eq!(out[3], vec![0.5, 1.0, 0.0]);
        assert!(r.take_unparsed().is_empty());
        assert_eq!(r.score(&[]).unwrap(), vec![Vec::<f64>::new(); 4]);
    }

    #[test]
    fn a_missing_reference_names_the_reward_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let r = build(
            "rewards:\n  - answer: {extract: boxed}\n    name: math\n",
            dir.path(),
        )
        .unwrap();
        let (messages, meta) = (Vec::new(), Map::new());
        let batch = [
            scored(&messages, &meta, r"\boxed{72}", 5, Some("72")),
            scored(&messages, &meta, r"\boxed{72}", 5, None),
        ];
        let err = r.score(&batch).unwrap_err().to_string();
        assert_eq!(
            err,
            "reward `math`: line 2 of the batch: no reference to compare with (the record needs a final assistant turn or an answer/solution column)"
        );
    }

    #[test]
    fn a_reward_that_cannot_be_built_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = |yaml: &str| {
            build(yaml, dir.path())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err("rewards:\n  - regex: '('\n");
        assert!(
            e.starts_with("reward `format`: regex is not a regex:"),
            "{e}"
        );
        let e = err("rewards:\n  - answer: {extract: '(x'}\n    name: ans\n");
        assert!(
            e.starts_with("reward `ans`: answer.extract is not a regex:"),
            "{e}"
        );
        let e = err("rewards:\n  - command: {run: [./nope.py]}\n");
        assert!(
            e.starts_with("reward `command`: command `./nope.py`: "),
            "{e}"
        );
        let e = err("rewards:\n  - {regex: a, length: {max: 3}}\n");
        assert!(
            e.starts_with("reward `reward`: must set exactly one of regex, answer"),
            "{e}"
        );
        let e = err("rewards:\n  - judge: {provider: openai, base_url: 'ftp://x'}\n");
        assert!(
            e.starts_with("reward `judge`: \"ftp://x\" is not an http(s) URL"),
            "{e}"
        );
        let s = section("rewards:\n  - regex: a\n");
        let e = Rewards::new(&s.rewards, vec![], dir.path())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("reward `grpo.rewards`: 1 rewards but 0 names")
        );
    }
}
