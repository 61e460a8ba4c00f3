//! `tunelab_rewards.py`: a GRPO run's rewards as the Python module `trl grpo` imports
//! (`--reward_funcs tunelab_rewards.<name>`). The module is tunelab's reward semantics ported
//! to Python once (`tunelab_rewards.py` beside this file: full-match regexes with `.` matching
//! newlines, `\boxed{}` and last-match extraction, numbers read as `reward::number` reads
//! them, lengths in completion tokens, persona shares, commands over the same JSON Lines
//! protocol with the same time limit and workers), followed by the run's own rewards.
//! `tests/reference/check_trl_rewards.py` runs it on the cases the Rust rewards are tested
//! on, so the two agree.
//!
//! An LLM judge is tunelab's own client (provider, rubric, prompt, 0–10 parsing, retries and
//! keys): it is left out and listed as unmapped, and a run whose every reward is a judge is
//! refused.

use super::{ScaleoutError, Unmapped};
use crate::config::grpo::{AnswerReward, CommandReward, Extract, GrpoSection, RewardKind};

/// The module's name, as `--reward_funcs` names it.
pub const MODULE: &str = "tunelab_rewards";
/// The file written beside `run.sh`.
pub const FILE: &str = "tunelab_rewards.py";

/// tunelab's reward semantics in Python; the run's rewards are appended.
const HELPERS: &str = include_str!("tunelab_rewards.py");

/// The module and how `run.sh` passes it.
#[derive(Debug, Clone)]
pub struct RewardModule {
    pub text: String,
    /// `tunelab_rewards.<attr>`, one per mapped reward, in `grpo.rewards` order.
    pub funcs: Vec<String>,
    /// Their weights, in the same order.
    pub weights: Vec<f64>,
    pub unmapped: Vec<Unmapped>,
}

/// One reward the module defines.
struct Mapped {
    /// The reward's name in tunelab (and in TRL's metrics).
    name: String,
    /// The attribute `--reward_funcs` names.
    attr: String,
    /// The Python expression that builds it.
    build: String,
    /// A comment line: what it scores.
    summary: String,
}

/// The module for `grpo`'s rewards. `columns` are the data files' columns besides `prompt`
/// and `reference`: what a command reward hands its program as `metadata`.
pub fn module(
    grpo: &GrpoSection,
    run_name: &str,
    columns: &[String],
) -> Result<RewardModule, ScaleoutError> {
    let names = grpo.reward_names();
    let mut mapped: Vec<Mapped> = Vec::new();
    let mut weights = Vec::new();
    let mut unmapped = Vec::new();
    for (i, (spec, name)) in grpo.rewards.iter().zip(&names).enumerate() {
        let field = format!("grpo.rewards[{i}]");
        let Some(kind) = spec.kind() else {
            return Err(ScaleoutError::Unsupported(format!(
                "{field}: must set exactly one kind of reward"
            )));
        };
        match kind {
            RewardKind::Judge(j) => {
                unmapped.push(judge_note(&field, name, &j.provider));
                continue;
            }
            RewardKind::Command(c) => unmapped.extend(command_note(&field, name, c)),
            _ => {}
        }
        let Some(build) = build(kind, name, columns) else {
            continue;
        };
        let taken: Vec<&str> = mapped.iter().map(|m| m.attr.as_str()).collect();
        mapped.push(Mapped {
            name: name.clone(),
            attr: attribute(name, &taken),
            build,
            // The summary names the reward itself when the config named it.
            summary: comment(&match spec.name {
                Some(_) => spec.summary(),
                None => format!("{name}: {}", spec.summary()),
            }),
        });
        weights.push(spec.weight);
    }
    if mapped.is_empty() {
        return Err(only_judges());
    }
    if !unmapped.is_empty() {
        unmapped.push(Unmapped::new(
            "grpo.rewards",
            format!(
                "TRL's reward is the weighted sum of {} only",
                mapped
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(RewardModule {
        text: text(run_name, &mapped),
        funcs: mapped
            .iter()
            .map(|m| format!("{MODULE}.{}", m.attr))
            .collect(),
        weights,
        unmapped,
    })
}

/// Refuses a run none of whose rewards can be carried (every one an LLM judge), before the
/// export writes anything.
pub fn check(grpo: &GrpoSection) -> Result<(), ScaleoutError> {
    let carried = grpo
        .rewards
        .iter()
        .any(|r| !matches!(r.kind(), Some(RewardKind::Judge(_))));
    if carried {
        Ok(())
    } else {
        Err(only_judges())
    }
}

fn only_judges() -> ScaleoutError {
    ScaleoutError::Unsupported(
        "grpo.rewards: every reward is an LLM judge, which the TRL export cannot carry (the judge is tunelab's own client: its provider, rubric, prompt and score parsing); add a reward of another kind, or train with tunelab".into(),
    )
}

fn judge_note(field: &str, name: &str, provider: &str) -> Unmapped {
    Unmapped::new(
        field,
        format!(
            "judge `{name}` ({provider}): left out of tunelab_rewards.py; an LLM judge is tunelab's own client (provider, rubric, the prompt it is asked, reading the 0–10 score, retries, keys from the environment), which a Python function would only approximate"
        ),
    )
}

/// A command names files by absolute path (the config's relative ones were resolved): they
/// must be where TRL runs too.
fn command_note(field: &str, name: &str, c: &CommandReward) -> Option<Unmapped> {
    let absolute: Vec<&str> = c
        .run
        .iter()
        .filter(|a| std::path::Path::new(a.as_str()).is_absolute())
        .map(String::as_str)
        .collect();
    (!absolute.is_empty()).then(|| {
        Unmapped::new(
            field,
            format!(
                "command `{name}` runs as tunelab runs it, and names {}: copy {} to the same path{} where TRL runs, or edit tunelab_rewards.py",
                absolute.join(", "),
                if absolute.len() == 1 { "it" } else { "them" },
                if absolute.len() == 1 { "" } else { "s" },
            ),
        )
    })
}

/// The Python expression that builds reward `name`; `None` for a judge, which has none.
fn build(kind: RewardKind<'_>, name: &str, columns: &[String]) -> Option<String> {
    let n = py_str(name);
    Some(match kind {
        RewardKind::Regex(p) => format!("_Regex({n}, {})", py_str(p)),
        RewardKind::Answer(a) => answer(&n, a),
        RewardKind::Length(l) => format!("_Length({n}, {}, {})", l.min, l.max),
        RewardKind::Persona(p) => format!("_Persona({n}, {})", py_strs(&p.markers)),
        RewardKind::Command(c) => format!(
            "_Command({n}, run={}, timeout_s={:?}, workers={}, columns={})",
            py_strs(&c.run),
            c.timeout_s,
            c.workers,
            py_strs(columns)
        ),
        RewardKind::Judge(_) => return None,
    })
}

fn answer(name: &str, a: &AnswerReward) -> String {
    let extract = match &a.extract {
        Extract::Boxed => py_str("boxed"),
        Extract::Regex(p) => py_str(p),
    };
    let reference = a.reference_regex.as_deref().map_or("None".into(), py_str);
    let compare: &'static str = a.compare.into();
    format!(
        "_Answer({name}, extract={extract}, compare={}, reference_regex={reference}, tolerance={:?})",
        py_str(compare),
        a.tolerance
    )
}

/// A Python string literal: JSON's escapes are Python's.
fn py_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn py_strs(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| py_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// One comment line: control characters (a newline in a pattern) become spaces.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The attribute a reward is reached by: its name, unless `trl grpo` could not import it by
/// that name (a `.` splits the import path) or a helper's underscore name could shadow it.
/// The reward keeps its own name as `__name__`, so TRL's metrics carry tunelab's names.
fn attribute(name: &str, taken: &[&str]) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c == '.' { '_' } else { c })
        .collect();
    let base = if clean.is_empty() || clean.starts_with('_') {
        format!("reward{clean}")
    } else {
        clean
    };
    let mut attr = base.clone();
    let mut n = 2;
    while taken.contains(&attr.as_str()) {
        attr = format!("{base}_{n}");
        n += 1;
    }
    attr
}

/// The whole module: a header, the helpers, the run's rewards.
fn text(run_name: &str, mapped: &[Mapped]) -> String {
    let mut s = format!(
        r#""""The reward functions of the tunelab run {run}, for `trl grpo` (TRL 1.16).

Written by `tunelab export-config --to trl`; run.sh passes them as
`--reward_funcs {MODULE}.<name> …` with their `--reward_weights`. Each scores completions as
tunelab's reward of the same name does (tunelab's src/reward/), so the run trains on the
same rewards here as in tunelab. TRL calls each with the prompts, the completions, their
token ids and one list per dataset column (`reference`, and the record's own columns).
Nothing but the standard library is imported.
"""

"#,
        run = py_str(run_name)
    );
    s.push_str(HELPERS);
    s.push_str("\n\n# --- the run's rewards ---\n\n_REWARDS = {\n");
    for m in mapped {
        s.push_str(&format!("    # {}\n", m.summary));
        s.push_str(&format!("    {}: {},\n", py_str(&m.attr), m.build));
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> GrpoSection {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn every_kind_but_the_judge_becomes_a_python_reward() {
        let g = section(
            r#"rewards:
  - regex: '<think>.*?</think>\s*<answer>.*?</answer>'
  - answer: {extract: boxed, reference_regex: 'Answer: (.*)'}
    weight: 2
  - length: {min: 4, max: 40}
    name: short
  - persona: {markers: [arr, "it's"]}
  - command: {run: [python3, /abs/score.py], timeout_s: 5}
  - judge: {provider: openai}
    weight: 0.5
"#,
        );
        let m = module(&g, "demo", &["answer".into()]).unwrap();
        assert_eq!(
            m.funcs,
            [
                "tunelab_rewards.format",
                "tunelab_rewards.answer",
                "tunelab_rewards.short",
                "tunelab_rewards.persona",
                "tunelab_rewards.command"
            ]
        );
        assert_eq!(m.weights, vec![1.0, 2.0, 1.0, 1.0, 1.0]);
        assert!(m.text.contains(
            r#"    "format": _Regex("format", "<think>.*?</think>\\s*<answer>.*?</answer>"),"#
        ));
        assert!(m.text.contains(
            r#"    "answer": _Answer("answer", extract="boxed", compare="numeric", reference_regex="Answer: (.*)", tolerance=1e-6),"#
        ));
        assert!(m.text.contains(r#"    "short": _Length("short", 4, 40),"#));
        assert!(m
            .text
            .contains(r#"    "persona": _Persona("persona", ["arr", "it's"]),"#));
        assert!(m.text.contains(
            r#"    "command": _Command("command", run=["python3", "/abs/score.py"], timeout_s=5.0, workers=4, columns=["answer"]),"#
        ));
        assert!(!m.text.contains("judge"), "{}", m.text);
        let fields: Vec<&str> = m.unmapped.iter().map(|u| u.field.as_str()).collect();
        assert_eq!(
            fields,
            ["grpo.rewards[4]", "grpo.rewards[5]", "grpo.rewards"]
        );
        assert!(
            m.unmapped[0].why.contains("/abs/score.py"),
            "{:?}",
            m.unmapped
        );
        assert!(m.unmapped[1].why.starts_with("judge `judge` (openai)"));
    }

    #[test]
    fn only_judges_is_refused_and_odd_names_get_importable_attributes() {
        let g = section("rewards:\n  - judge: {provider: anthropic}\n");
        let e = module(&g, "x", &[]).unwrap_err().to_string();
        assert_eq!(e, check(&g).unwrap_err().to_string());
        assert!(
            e.starts_with("grpo.rewards: every reward is an LLM judge"),
            "{e}"
        );
        assert_eq!(attribute("a.b", &[]), "a_b");
        assert_eq!(attribute("_x", &[]), "reward_x");
        assert_eq!(attribute("a_b", &["a_b"]), "a_b_2");
        assert_eq!(attribute("format", &[]), "format");
        assert_eq!(comment("a\nb"), "a b");
        assert_eq!(py_str("a\"\\\n"), r#""a\"\\\n""#);
    }
}
