//! `tunelab eval score`: the generation metrics of a predictions file, no model needed
//! (predictions from `eval generate`, another tool, or an API).

use crate::cli::{exit, render};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::eval::metrics::{read_predictions, score, NamedRegex, Scores};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// A JSON Lines file with `prediction` and `reference` strings on every line (what
    /// `eval generate` writes; other fields are ignored).
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// Also report the share of predictions this regular expression matches anywhere, as
    /// NAME=PATTERN (Rust regex syntax; `(?i)` ignores case); repeatable.
    #[arg(long = "regex", value_name = "NAME=PATTERN")]
    pub regexes: Vec<NamedRegex>,
    /// Print the scores as one JSON object on one line, for scripts.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ScoreArgs) -> anyhow::Result<ExitCode> {
    let mut names = std::collections::BTreeSet::new();
    if let Some(dup) = a.regexes.iter().find(|r| !names.insert(r.name.as_str())) {
        eprintln!(
            "error: --regex {} is given twice; names must differ",
            dup.name
        );
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    let pairs = match read_predictions(&a.predictions) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    if pairs.is_empty() {
        eprintln!(
            "warning: {} has no pairs; every score is 0",
            a.predictions.display()
        );
    }
    let s = score(&pairs, &a.regexes);
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!("{}", table(&s));
    }
    Ok(ExitCode::from(exit::OK))
}

/// Metric and value, aligned. Shares keep four decimals; BLEU and chrF two, as sacrebleu
/// prints them.
pub(super) fn table(s: &Scores) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("pairs".into(), s.n.to_string()),
        ("exact_match".into(), format!("{:.4}", s.exact_match)),
        ("f1".into(), format!("{:.4}", s.f1)),
        ("rouge1".into(), format!("{:.4}", s.rouge1)),
        ("rouge2".into(), format!("{:.4}", s.rouge2)),
        ("rougeL".into(), format!("{:.4}", s.rouge_l)),
        ("bleu".into(), format!("{:.2}", s.bleu)),
        ("chrf".into(), format!("{:.2}", s.chrf)),
        ("mean_length".into(), format!("{:.2}", s.mean_length)),
    ];
    rows.extend(
        s.regex
            .iter()
            .map(|(name, share)| (format!("regex {name}"), format!("{share:.4}"))),
    );
    let widths = [
        rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0),
        rows.iter().map(|r| r.1.len()).max().unwrap_or(0),
    ];
    let mut out = String::new();
    for (metric, value) in rows {
        out.push_str(&render::row(&[metric, value], &widths));
        out.push('\n');
    }
    out
}
