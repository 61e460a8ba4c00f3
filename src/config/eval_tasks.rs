//! `eval.tasks`: what a run measures at each evaluation besides its loss. A multiple-choice
//! task (`bench:`) says whether the model still knows what it knew; a generation task
//! (`generate:`) whether its answers match references and carry a persona's markers. The
//! step-0 evaluation scores the base (a fresh adapter changes nothing yet), so every run
//! reports before and after.

use super::ConfigIssue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The run's extra evaluations (not written when empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    pub tasks: Vec<EvalTask>,
}

impl EvalSection {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// The run's held-out split as a generation task's prompts.
pub const HELD_OUT: &str = "held_out";

/// Names a generation task's metrics have (a regex must be named otherwise).
pub const GENERATE_METRICS: &[&str] = &[
    "exact_match",
    "f1",
    "rouge1",
    "rouge2",
    "rougeL",
    "bleu",
    "chrf",
    "mean_length",
];

/// One task: exactly one of `bench` and `generate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalTask {
    /// The metrics' middle name (`bench/<name>/acc`); default: the file's stem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A multiple-choice task file or hub id, scored by log-likelihood (acc, acc_norm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench: Option<String>,
    /// A dataset whose prompts are answered greedily and scored against its replies, or
    /// `held_out` for the run's own held-out split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate: Option<String>,
    /// Multiple-choice: worked examples before each question.
    #[serde(skip_serializing_if = "is_zero")]
    pub num_fewshot: usize,
    /// At most this many items (questions or prompts), the first ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Generation: tokens per answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// Generation: NAME → pattern; the share of answers matching each is a metric.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub regex: BTreeMap<String, String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a task measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Bench,
    Generate,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Bench => "bench",
            TaskKind::Generate => "generate",
        }
    }
}

impl EvalTask {
    /// Its kind and its file (or hub id, or `held_out`); `None` when not exactly one is set.
    pub fn source(&self) -> Option<(TaskKind, &str)> {
        match (&self.bench, &self.generate) {
            (Some(b), None) => Some((TaskKind::Bench, b.as_str())),
            (None, Some(g)) => Some((TaskKind::Generate, g.as_str())),
            _ => None,
        }
    }

    /// The name its metrics carry: `name`, else the file's stem (`held_out` as it is).
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let src = self.source().map(|(_, s)| s).unwrap_or("task");
        let stem = std::path::Path::new(src)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| src.to_string());
        // A hub id's last part.
        stem.rsplit('/').next().unwrap_or(&stem).to_string()
    }

    /// The metric key prefix: `bench/<name>` or `generate/<name>`.
    pub fn prefix(&self) -> String {
        let kind = self.source().map_or("task", |(k, _)| k.as_str());
        format!("{kind}/{}", self.display_name())
    }
}

/// Problems of `eval.tasks`, each naming its entry (`eval.tasks[1].regex.persona`).
pub fn validate(section: &EvalSection) -> Vec<ConfigIssue> {
    let mut out = Vec::new();
    let mut bad = |path: String, message: String| out.push(ConfigIssue { path, message });
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, t) in section.tasks.iter().enumerate() {
        let at = format!("eval.tasks[{i}]");
        let Some((kind, src)) = t.source() else {
            bad(
                at,
                "needs exactly one of `bench: FILE` (multiple choice) and `generate: FILE` \
                 (answers scored against references)"
                    .into(),
            );
            continue;
        };
        if src.trim().is_empty() {
            bad(format!("{at}.{}", kind.as_str()), "must name a file".into());
        }
        if let Some(n) = &t.name {
            if n.is_empty() || n.contains('/') || n.chars().any(char::is_whitespace) {
                bad(
                    format!("{at}.name"),
                    "must be a word without `/` or spaces (it names the metrics)".into(),
                );
            }
        }
        if let Some(first) = names.insert(t.prefix(), i) {
            bad(
                format!("{at}.name"),
                format!(
                    "{} is also eval.tasks[{first}]'s name; give one a `name:`",
                    t.prefix()
                ),
            );
        }
        if t.limit == Some(0) {
            bad(
                format!("{at}.limit"),
                "must be at least 1 (or absent for all)".into(),
            );
        }
        match kind {
            TaskKind::Bench => {
                for (field, set) in [
                    ("max_new_tokens", t.max_new_tokens.is_some()),
                    ("regex", !t.regex.is_empty()),
                ] {
                    if set {
                        bad(
                            format!("{at}.{field}"),
                            "applies to `generate:` tasks, not `bench:`".into(),
                        );
                    }
                }
            }
            TaskKind::Generate => {
                if t.num_fewshot > 0 {
                    bad(
                        format!("{at}.num_fewshot"),
                        "applies to `bench:` tasks, not `generate:`".into(),
                    );
                }
                if t.max_new_tokens == Some(0) {
                    bad(format!("{at}.max_new_tokens"), "must be at least 1".into());
                }
                for (name, pattern) in &t.regex {
                    let path = format!("{at}.regex.{name}");
                    if GENERATE_METRICS.contains(&name.as_str()) || name.contains('/') {
                        bad(
                            path.clone(),
                            "names a metric already (or has `/`); name the pattern otherwise"
                                .into(),
                        );
                    }
                    if let Err(e) = regex::Regex::new(pattern) {
                        bad(path, format!("not a regular expression: {e}"));
                    }
                }
            }
        }
    }
    out
}
