//! GRPO's settings (`grpo:`), with TRL 1.16's `GRPOConfig` defaults, and the reward
//! functions a run scores its completions with (`grpo.rewards`). A reward is one entry that
//! sets exactly one kind (`regex`, `answer`, `length`, `persona`, `command`, `judge`) with
//! an optional `name` and `weight`, so a typo in a kind is an unknown field, not a reward
//! silently left out.

use serde::{Deserialize, Serialize};

/// How a group's rewards become advantages (TRL's `scale_rewards`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ScaleRewards {
    /// `(r − mean_group) / (std_group + 1e-4)`.
    #[default]
    Group,
    /// `(r − mean_group) / (std_batch + 1e-4)`.
    Batch,
    /// `r − mean_group` (Dr. GRPO).
    None,
}

/// How per-token losses are averaged (TRL's `loss_type`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum GrpoLoss {
    /// Each completion's token mean, then the mean over completions.
    Grpo,
    /// The token mean over the micro-batch.
    Bnpo,
    /// The token sum over completions × `max_completion_length`.
    DrGrpo,
    /// The token sum over every completion token of the generation batch (TRL's default).
    #[default]
    Dapo,
}

/// Where the importance ratio is taken (TRL's `importance_sampling_level`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ImportanceLevel {
    /// One ratio per token (GRPO).
    #[default]
    Token,
    /// One ratio per completion: the exponent of its mean token log-ratio (GSPO).
    Sequence,
}

impl std::str::FromStr for ScaleRewards {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("grpo.scale_rewards", s)
    }
}

impl std::str::FromStr for GrpoLoss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("grpo.loss_type", s)
    }
}

impl std::str::FromStr for ImportanceLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("grpo.importance_sampling_level", s)
    }
}

/// Group Relative Policy Optimization (`train.method: grpo`), with TRL 1.16's
/// `GRPOConfig` defaults. `train.batch_size` counts completions (TRL's
/// `per_device_train_batch_size`): a step generates `batch_size × grad_accum` of them,
/// `num_generations` per prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoSection {
    /// Completions sampled per prompt (the group).
    pub num_generations: usize,
    /// Tokens a completion may take; one that reaches it without a stop token is truncated.
    pub max_completion_length: usize,
    pub temperature: f64,
    /// Nucleus sampling (1 keeps every token).
    pub top_p: f64,
    /// Keep only the likeliest k tokens (0 keeps every token).
    pub top_k: usize,
    /// Weight of the KL penalty to the reference (0: no reference pass at all).
    pub beta: f64,
    /// The ratio is clipped to [1 − ε, 1 + ε_high].
    pub epsilon: f64,
    /// The upper clip (DAPO's clip-higher); empty: `epsilon`.
    pub epsilon_high: Option<f64>,
    /// Optimizer steps each generation batch is reused for (μ), with its old log-probs kept.
    pub num_iterations: usize,
    pub importance_sampling_level: ImportanceLevel,
    pub scale_rewards: ScaleRewards,
    pub loss_type: GrpoLoss,
    /// Truncated completions (no stop token) take no part in the loss.
    pub mask_truncated_completions: bool,
    /// Start from this adapter (an SFT run id, a run folder or a PEFT folder); the reference
    /// is then a frozen copy of it.
    pub init_adapter: Option<String>,
    /// Completions (with their rewards) written to the run's events at every step, from the
    /// step's first groups.
    pub log_completions: usize,
    /// What scores each completion; the reward is their weighted sum.
    pub rewards: Vec<RewardSpec>,
}

impl Default for GrpoSection {
    fn default() -> Self {
        GrpoSection {
            num_generations: 8,
            max_completion_length: 512,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            beta: 0.0,
            epsilon: 0.2,
            epsilon_high: None,
            num_iterations: 1,
            importance_sampling_level: ImportanceLevel::Token,
            scale_rewards: ScaleRewards::Group,
            loss_type: GrpoLoss::Dapo,
            mask_truncated_completions: false,
            init_adapter: None,
            log_completions: 4,
            rewards: Vec::new(),
        }
    }
}

impl GrpoSection {
    /// The upper clip bound's ε.
    pub fn epsilon_high(&self) -> f64 {
        self.epsilon_high.unwrap_or(self.epsilon)
    }

    /// The reward names in order (each entry's `name`, or its kind, numbered when repeated).
    pub fn reward_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rewards {
            let base = r.name.clone().unwrap_or_else(|| {
                r.kind()
                    .map(|k| k.name().to_string())
                    .unwrap_or_else(|| "reward".into())
            });
            let mut name = base.clone();
            let mut n = 2;
            while out.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
            out.push(name);
        }
        out
    }

    /// Reports the section's problems to `bad` (path, message).
    pub fn issues(&self, bad: &mut impl FnMut(&str, &str)) {
        if self.num_generations < 2 {
            bad(
                "grpo.num_generations",
                "must be at least 2 (advantages compare completions of one prompt)",
            );
        }
        if self.max_completion_length == 0 {
            bad("grpo.max_completion_length", "must be at least 1");
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            bad("grpo.temperature", "must be > 0 (GRPO samples)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bad("grpo.top_p", "must be > 0 and at most 1");
        }
        if self.beta.is_nan() || self.beta < 0.0 {
            bad("grpo.beta", "must be >= 0 (0 turns the KL term off)");
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0) {
            bad("grpo.epsilon", "must be > 0 and < 1");
        }
        if self.epsilon_high.is_some_and(|e| e.is_nan() || e <= 0.0) {
            bad("grpo.epsilon_high", "must be > 0");
        }
        if self.num_iterations == 0 {
            bad("grpo.num_iterations", "must be at least 1");
        }
        for (i, r) in self.rewards.iter().enumerate() {
            r.issues(&format!("grpo.rewards[{i}]"), bad);
        }
    }
}

fn one() -> f64 {
    1.0
}

/// One reward function: exactly one kind, a weight, an optional name (metrics are logged as
/// `rewards/<name>/mean`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "one")]
    pub weight: f64,
    /// 1 when the whole completion (trimmed) matches this regular expression, else 0: a
    /// `<think>…</think><answer>…</answer>` format, say. `.` matches newlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerReward>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<LengthReward>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<PersonaReward>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandReward>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeReward>,
}

/// A reward's kind, borrowed from its entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RewardKind<'a> {
    Regex(&'a str),
    Answer(&'a AnswerReward),
    Length(&'a LengthReward),
    Persona(&'a PersonaReward),
    Command(&'a CommandReward),
    Judge(&'a JudgeReward),
}

impl RewardKind<'_> {
    /// The kind's name (the reward's default name).
    pub fn name(&self) -> &'static str {
        match self {
            RewardKind::Regex(_) => "format",
            RewardKind::Answer(_) => "answer",
            RewardKind::Length(_) => "length",
            RewardKind::Persona(_) => "persona",
            RewardKind::Command(_) => "command",
            RewardKind::Judge(_) => "judge",
        }
    }
}

/// The kinds a reward entry may set.
pub const REWARD_KINDS: &[&str] = &["regex", "answer", "length", "persona", "command", "judge"];

impl RewardSpec {
    /// A reward of one kind with weight 1 and no name.
    pub fn of(kind: RewardKind<'_>) -> Self {
        let mut r = RewardSpec {
            name: None,
            weight: 1.0,
            regex: None,
            answer: None,
            length: None,
            persona: None,
            command: None,
            judge: None,
        };
        match kind {
            RewardKind::Regex(p) => r.regex = Some(p.to_string()),
            RewardKind::Answer(a) => r.answer = Some(a.clone()),
            RewardKind::Length(l) => r.length = Some(*l),
            RewardKind::Persona(p) => r.persona = Some(p.clone()),
            RewardKind::Command(c) => r.command = Some(c.clone()),
            RewardKind::Judge(j) => r.judge = Some(j.clone()),
        }
        r
    }

    /// The one kind this entry sets; `None` when it sets none or several.
    pub fn kind(&self) -> Option<RewardKind<'_>> {
        let kinds = self.kinds();
        (kinds.len() == 1).then(|| kinds[0])
    }

    fn kinds(&self) -> Vec<RewardKind<'_>> {
        let mut k = Vec::new();
        if let Some(p) = &self.regex {
            k.push(RewardKind::Regex(p));
        }
        if let Some(a) = &self.answer {
            k.push(RewardKind::Answer(a));
        }
        if let Some(l) = &self.length {
            k.push(RewardKind::Length(l));
        }
        if let Some(p) = &self.persona {
            k.push(RewardKind::Persona(p));
        }
        if let Some(c) = &self.command {
            k.push(RewardKind::Command(c));
        }
        if let Some(j) = &self.judge {
            k.push(RewardKind::Judge(j));
        }
        k
    }

    /// A one-line description (`answer numeric ×1`), as the form and `presets` list it.
    pub fn summary(&self) -> String {
        let what = match self.kind() {
            Some(RewardKind::Regex(p)) => format!("regex {p}"),
            Some(RewardKind::Answer(a)) => format!("answer {} {}", a.extract, a.compare),
            Some(RewardKind::Length(l)) => format!("length {}–{} tokens", l.min, l.max),
            Some(RewardKind::Persona(p)) => format!("persona {}", p.markers.join("/")),
            Some(RewardKind::Command(c)) => format!("command {}", c.run.join(" ")),
            Some(RewardKind::Judge(j)) => format!("judge {}", j.provider),
            None => "invalid".into(),
        };
        match &self.name {
            Some(n) => format!("{n}: {what} ×{}", self.weight),
            None => format!("{what} ×{}", self.weight),
        }
    }

    fn issues(&self, at: &str, bad: &mut impl FnMut(&str, &str)) {
        let kinds = self.kinds();
        if kinds.len() != 1 {
            bad(
                at,
                &format!(
                    "must set exactly one of {} (it sets {})",
                    REWARD_KINDS.join(", "),
                    kinds.len()
                ),
            );
            return;
        }
        if !self.weight.is_finite() {
            bad(&format!("{at}.weight"), "must be a finite number");
        }
        if self
            .name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.contains('/') || n.chars().any(char::is_whitespace))
        {
            bad(
                &format!("{at}.name"),
                "must be a word without spaces or slashes (it names a metric)",
            );
        }
        let regex = |field: &str, p: &str, bad: &mut dyn FnMut(&str, &str)| {
            if let Err(e) = regex::Regex::new(p) {
                bad(&format!("{at}.{field}"), &format!("is not a regex: {e}"));
            }
        };
        match kinds[0] {
            RewardKind::Regex(p) => regex("regex", p, bad),
            RewardKind::Answer(a) => {
                if let Extract::Regex(p) = &a.extract {
                    regex("answer.extract", p, bad);
                }
                if let Some(p) = &a.reference_regex {
                    regex("answer.reference_regex", p, bad);
                }
                if a.tolerance.is_nan() || a.tolerance < 0.0 {
                    bad(&format!("{at}.answer.tolerance"), "must be >= 0");
                }
            }
            RewardKind::Length(l) => {
                if l.min > l.max || l.max == 0 {
                    bad(
                        &format!("{at}.length"),
                        "needs 0 <= min <= max and max >= 1 (tokens)",
                    );
                }
            }
            RewardKind::Persona(p) => {
                if p.markers.iter().all(|m| m.trim().is_empty()) {
                    bad(
                        &format!("{at}.persona.markers"),
                        "must name at least one marker",
                    );
                }
            }
            RewardKind::Command(c) => {
                if c.run.first().is_none_or(|p| p.trim().is_empty()) {
                    bad(
                        &format!("{at}.command.run"),
                        "must name a program (and its arguments)",
                    );
                }
                if c.timeout_s <= 0.0 {
                    bad(&format!("{at}.command.timeout_s"), "must be > 0");
                }
                if c.workers == 0 {
                    bad(&format!("{at}.command.workers"), "must be at least 1");
                }
            }
            RewardKind::Judge(j) => {
                if j.max_tokens == 0 {
                    bad(&format!("{at}.judge.max_tokens"), "must be at least 1");
                }
                if j.concurrency == 0 {
                    bad(&format!("{at}.judge.concurrency"), "must be at least 1");
                }
            }
        }
    }
}

/// How the answer is read from a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extract {
    /// The content of the last `\boxed{…}` (nested braces kept).
    Boxed,
    /// The last match of this regex: its first group when it has one, else the whole match.
    /// `.` matches newlines (as in `regex`), so write `(.*?)` to stop at the first closing
    /// tag.
    Regex(String),
}

impl std::fmt::Display for Extract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Extract::Boxed => f.write_str("boxed"),
            Extract::Regex(p) => f.write_str(p),
        }
    }
}

impl Serialize for Extract {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Extract {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == "boxed" {
            Extract::Boxed
        } else {
            Extract::Regex(s)
        })
    }
}

/// How an extracted answer is compared with the reference.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Compare {
    /// Equal text after trimming.
    Exact,
    /// The last number of each (thousands commas, `$` and `%` ignored; `\frac{a}{b}` read
    /// as a/b) equal within `tolerance`.
    #[default]
    Numeric,
}

/// 1 when the completion's answer equals the reference (the record's final assistant
/// turn, or its `answer`/`solution` column), else 0. A completion with no answer to read
/// scores 0; a record with no reference (or one `reference_regex` does not match, or, for
/// a numeric comparison, one without a number) is an error naming the reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerReward {
    /// `boxed`, or a regex whose first group (or whole match) is the answer.
    pub extract: Extract,
    #[serde(default)]
    pub compare: Compare,
    /// Read the reference through this regex too (`#### (.*)` for GSM8K's solutions), as
    /// `extract` reads a completion; empty: the whole reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_regex: Option<String>,
    /// Relative tolerance of a numeric comparison.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    1e-6
}

/// 1 when the completion's length in tokens lies in `[min, max]`; below, `len / min`;
/// above, `max / len`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthReward {
    #[serde(default)]
    pub min: usize,
    pub max: usize,
}

/// The share of `markers` (case-insensitive) the completion contains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaReward {
    pub markers: Vec<String>,
}

fn default_command_timeout() -> f64 {
    60.0
}
fn default_workers() -> usize {
    4
}

/// An executable that reads JSON Lines on stdin, one object per completion (`prompt`,
/// `messages`, `completion`, `completion_tokens`, `reference`, `metadata`), and writes
/// exactly one finite number per line on stdout. A batch is split into `workers` contiguous
/// chunks, one process each, run in the run config's folder; a non-zero exit, a timeout,
/// a missing, extra or unreadable line is an error, never a 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandReward {
    /// The program and its arguments (no shell): a path with a `/` is relative to the run
    /// config's folder, a bare name is looked up on `PATH`.
    pub run: Vec<String>,
    /// Seconds one process may take for its share of a batch.
    #[serde(default = "default_command_timeout")]
    pub timeout_s: f64,
    /// Processes a batch is split across.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_judge_max_tokens() -> u32 {
    16
}
fn default_judge_concurrency() -> usize {
    4
}

/// A score from 0 to 10 by an LLM (Anthropic or any OpenAI-compatible server), divided by
/// 10: the first number of its reply. A reply without one in 0–10 leaves that completion
/// unscored (NaN, counted), never 0. The judge sees the conversation, the completion and,
/// when the record has one, the reference as a guide. The key comes from the provider's
/// environment variable, never the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeReward {
    /// `anthropic` or `openai` (any OpenAI-compatible server).
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What a good completion is; empty: helpful, correct and concise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<String>,
    #[serde(default = "default_judge_max_tokens")]
    pub max_tokens: u32,
    /// Requests at once.
    #[serde(default = "default_judge_concurrency")]
    pub concurrency: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> GrpoSection {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn issues(s: &GrpoSection) -> Vec<String> {
        let mut v = Vec::new();
        s.issues(&mut |p: &str, m: &str| v.push(format!("{p}: {m}")));
        v
    }

    #[test]
    fn defaults_are_trls_and_rewards_name_themselves() {
        let s = section(
            "rewards:\n  - regex: '^<answer>.*</answer>$'\n  - answer: {extract: boxed}\n    weight: 2\n  - answer: {extract: '<answer>(.*)</answer>', compare: exact}\n",
        );
        assert_eq!(s.num_generations, 8);
        assert_eq!(s.loss_type, GrpoLoss::Dapo);
        assert_eq!(s.beta, 0.0);
        assert_eq!(s.epsilon_high(), 0.2);
        assert_eq!(s.reward_names(), ["format", "answer", "answer_2"]);
        assert_eq!(s.rewards[1].weight, 2.0);
        assert_eq!(
            s.rewards[1].answer.as_ref().unwrap().extract,
            Extract::Boxed
        );
        assert_eq!(
            s.rewards[2].answer.as_ref().unwrap().extract,
            Extract::Regex("<answer>(.*)</answer>".into())
        );
        assert!(issues(&s).is_empty(), "{:?}", issues(&s));
        let back: GrpoSection = serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_reward_sets_exactly_one_kind_and_typos_are_refused() {
        let s = section("rewards:\n  - {regex: 'a', length: {max: 3}}\n  - {weight: 2}\n");
        let v = issues(&s);
        assert!(
            v[0].starts_with("grpo.rewards[0]: must set exactly one of regex"),
            "{v:?}"
        );
        assert!(
            v[1].starts_with("grpo.rewards[1]: must set exactly one"),
            "{v:?}"
        );
        let err = serde_yaml::from_str::<GrpoSection>("rewards:\n  - {regx: 'a'}\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `regx`"), "{err}");
        let s = section("num_generations: 1\nrewards:\n  - {regex: '(', name: 'a b'}\n");
        let v = issues(&s);
        assert!(
            v.iter().any(|m| m.starts_with("grpo.num_generations")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|m| m.starts_with("grpo.rewards[0].name")),
            "{v:?}"
        );
        assert!(
            v.iter()
                .any(|m| m.starts_with("grpo.rewards[0].regex: is not a regex")),
            "{v:?}"
        );
    }
}
