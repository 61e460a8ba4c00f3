//! The reward kinds the Adapter form adds to `grpo.rewards`, each from a template that
//! already validates: `answer` and `length` as they are, the others from one line the user
//! types (a pattern, marker words, a command line, a provider).

use crate::config::grpo::{
    AnswerReward, CommandReward, Compare, Extract, JudgeReward, LengthReward, PersonaReward,
};
use crate::config::{RewardKind, RewardSpec};
use std::str::FromStr;

/// One kind of reward the form can add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Regex,
    Answer,
    Length,
    Persona,
    Command,
    Judge,
}

impl Template {
    /// In the order the kind picker lists them (`config::grpo::REWARD_KINDS`).
    pub const ALL: [Template; 6] = [
        Template::Regex,
        Template::Answer,
        Template::Length,
        Template::Persona,
        Template::Command,
        Template::Judge,
    ];

    /// The kind's key in a reward entry.
    pub fn name(self) -> &'static str {
        match self {
            Template::Regex => "regex",
            Template::Answer => "answer",
            Template::Length => "length",
            Template::Persona => "persona",
            Template::Command => "command",
            Template::Judge => "judge",
        }
    }

    /// What the kind scores, as the picker says it (in 30 columns).
    pub fn help(self) -> &'static str {
        match self {
            Template::Regex => "the whole completion matches",
            Template::Answer => "\\boxed{} answer = reference",
            Template::Length => "1 within 1–256 tokens",
            Template::Persona => "share of marker words used",
            Template::Command => "a program scores each (JSONL)",
            Template::Judge => "an LLM scores 0–10",
        }
    }

    /// What the user types for the kind, and what the field starts with; `None` when the
    /// template is added as it is.
    pub fn text(self) -> Option<(&'static str, &'static str)> {
        match self {
            Template::Regex => Some(("pattern the whole completion must match", r"\s*\d+\s*")),
            Template::Persona => Some(("marker words, separated by commas", "arr, matey")),
            Template::Command => {
                Some(("program and arguments, separated by spaces (no shell)", ""))
            }
            Template::Judge => Some(("provider: anthropic or openai", "anthropic")),
            Template::Answer | Template::Length => None,
        }
    }

    /// The reward built from the template and `text` (ignored by kinds without text), or
    /// why the text cannot be one, naming the field at `at` (`grpo.rewards[2]`).
    pub fn build(self, text: &str, at: &str) -> Result<RewardSpec, String> {
        let t = text.trim();
        let spec = match self {
            Template::Regex => RewardSpec::of(RewardKind::Regex(t)),
            Template::Answer => RewardSpec::of(RewardKind::Answer(&AnswerReward {
                extract: Extract::Boxed,
                compare: Compare::Numeric,
                reference_regex: None,
                tolerance: 1e-6,
            })),
            Template::Length => {
                RewardSpec::of(RewardKind::Length(&LengthReward { min: 1, max: 256 }))
            }
            Template::Persona => RewardSpec::of(RewardKind::Persona(&PersonaReward {
                markers: t
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })),
            Template::Command => RewardSpec::of(RewardKind::Command(&CommandReward {
                run: t.split_whitespace().map(str::to_string).collect(),
                timeout_s: 60.0,
                workers: 4,
            })),
            Template::Judge => {
                // The config takes any text here; the run would refuse it only at its start.
                let provider = crate::synth::provider::Provider::from_str(t)
                    .map_err(|e| format!("{at}.judge.provider: {e}"))?;
                RewardSpec::of(RewardKind::Judge(&JudgeReward {
                    provider: provider.name().to_string(),
                    base_url: None,
                    model: None,
                    rubric: None,
                    max_tokens: 16,
                    concurrency: 4,
                }))
            }
        };
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::grpo::REWARD_KINDS;

    #[test]
    fn every_kind_has_a_template_that_validates() {
        let names: Vec<&str> = Template::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names, REWARD_KINDS);
        for t in Template::ALL {
            let text = match t {
                Template::Command => "python3 score.py",
                _ => t.text().map_or("", |(_, start)| start),
            };
            let r = t.build(text, "grpo.rewards[0]").unwrap();
            assert!(r.kind().is_some(), "{t:?}");
            let mut c = crate::config::RunConfig::minimal("m", "d");
            c.add_reward(r).unwrap_or_else(|e| panic!("{t:?}: {e}"));
        }
    }

    #[test]
    fn typed_text_is_read_and_bad_text_names_the_field() {
        let r = Template::Command
            .build(" ./score.py  --strict ", "grpo.rewards[1]")
            .unwrap();
        assert_eq!(r.command.unwrap().run, ["./score.py", "--strict"]);
        let r = Template::Persona
            .build("Arr, , matey ", "grpo.rewards[1]")
            .unwrap();
        assert_eq!(r.persona.unwrap().markers, ["Arr", "matey"]);
        assert_eq!(
            Template::Judge.build("claude", "grpo.rewards[1]").unwrap_err(),
            "grpo.rewards[1].judge.provider: unknown provider \"claude\"; expected anthropic or openai"
        );
        let mut c = crate::config::RunConfig::minimal("m", "d");
        let empty = Template::Command.build("", "grpo.rewards[0]").unwrap();
        assert!(c
            .add_reward(empty)
            .unwrap_err()
            .starts_with("grpo.rewards[0].command.run: "));
    }
}
