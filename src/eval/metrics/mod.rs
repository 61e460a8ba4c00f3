//! Generation-quality metrics: a prediction scored against its reference. Each metric
//! follows one reference implementation to the digit, so numbers compare with papers and
//! with Python tooling (`tests/reference/make_metrics_fixture.py` checks all of them):
//!
//! - exact match and token F1: the official SQuAD v1.1 script ([`squad`]);
//! - ROUGE-1, ROUGE-2, ROUGE-L: Google's `rouge-score` 0.1.2, no stemming ([`rouge`]);
//! - BLEU and chrF: `sacrebleu` 2.x `corpus_bleu` and `corpus_chrf` defaults ([`bleu`],
//!   [`chrf`]).
//!
//! Per-pair metrics are averaged over pairs (0..1); BLEU and chrF are corpus statistics on
//! sacrebleu's 0..100 scale.

pub mod bleu;
pub mod chrf;
mod read;
pub mod rouge;
pub mod squad;
mod text;

pub use bleu::corpus_bleu;
pub use chrf::corpus_chrf;
pub use read::read_predictions;
pub use rouge::{rouge_l, rouge_n};
pub use squad::{exact_match, f1, normalize_answer};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A model's answer and the answer it should have given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub prediction: String,
    pub reference: String,
}

/// A regular expression whose share of matching predictions is reported under `name`
/// (a format check, a refusal phrase, a persona's catchword).
#[derive(Debug, Clone)]
pub struct NamedRegex {
    pub name: String,
    pub regex: regex::Regex,
}

impl std::str::FromStr for NamedRegex {
    type Err = MetricsError;

    /// `NAME=PATTERN`, split at the first `=` (the pattern may hold more).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, pattern) = s
            .split_once('=')
            .filter(|(name, _)| !name.trim().is_empty())
            .ok_or_else(|| MetricsError::RegexSpec {
                spec: s.to_string(),
            })?;
        let name = name.trim().to_string();
        let regex = regex::Regex::new(pattern).map_err(|source| MetricsError::RegexPattern {
            name: name.clone(),
            source,
        })?;
        Ok(NamedRegex { name, regex })
    }
}

/// Every metric over a set of pairs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scores {
    /// How many pairs were scored.
    pub n: usize,
    /// Mean SQuAD exact match, 0..1.
    pub exact_match: f64,
    /// Mean SQuAD token F1, 0..1.
    pub f1: f64,
    /// Mean ROUGE-1 F-measure, 0..1.
    pub rouge1: f64,
    /// Mean ROUGE-2 F-measure, 0..1.
    pub rouge2: f64,
    /// Mean ROUGE-L F-measure, 0..1.
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
    /// Corpus BLEU, 0..100.
    pub bleu: f64,
    /// Corpus chrF, 0..100.
    pub chrf: f64,
    /// Mean prediction length in whitespace-separated words.
    pub mean_length: f64,
    /// For each named regex, the share of predictions it matches somewhere, 0..1.
    pub regex: BTreeMap<String, f64>,
}

/// Scores every pair. No pairs gives `n` 0 and every metric 0 (the regexes too), never NaN.
/// A name given twice keeps the last regex's share.
pub fn score(pairs: &[Pair], regexes: &[NamedRegex]) -> Scores {
    let n = pairs.len();
    let mean = |f: &dyn Fn(&Pair) -> f64| {
        if n == 0 {
            0.0
        } else {
            pairs.iter().map(f).sum::<f64>() / n as f64
        }
    };
    let preds: Vec<&str> = pairs.iter().map(|p| p.prediction.as_str()).collect();
    let refs: Vec<&str> = pairs.iter().map(|p| p.reference.as_str()).collect();
    Scores {
        n,
        exact_match: mean(&|p| exact_match(&p.prediction, &p.reference)),
        f1: mean(&|p| f1(&p.prediction, &p.reference)),
        rouge1: mean(&|p| rouge_n(&p.prediction, &p.reference, 1)),
        rouge2: mean(&|p| rouge_n(&p.prediction, &p.reference, 2)),
        rouge_l: mean(&|p| rouge_l(&p.prediction, &p.reference)),
        bleu: corpus_bleu(&preds, &refs),
        chrf: corpus_chrf(&preds, &refs),
        mean_length: mean(&|p| text::py_split(&p.prediction).count() as f64),
        regex: regexes
            .iter()
            .map(|r| {
                let share = mean(&|p| f64::from(u8::from(r.regex.is_match(&p.prediction))));
                (r.name.clone(), share)
            })
            .collect(),
    }
}

/// Why a predictions file or a `--regex` could not be used. File errors name the file,
/// the line (from 1) and the field.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: line {line}: not UTF-8 text; expected one JSON object per line", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("{}: line {line}: not valid JSON ({message}); expected one JSON object per line with `prediction` and `reference` strings", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: line {line}: found {found}; expected a JSON object with `prediction` and `reference` strings", path.display())]
    NotObject {
        path: PathBuf,
        line: usize,
        found: &'static str,
    },
    #[error("{}: line {line}: no `{field}` field; expected `{field}` to be a string", path.display())]
    Missing {
        path: PathBuf,
        line: usize,
        field: &'static str,
    },
    #[error("{}: line {line}: `{field}` is {found}; expected a string", path.display())]
    NotString {
        path: PathBuf,
        line: usize,
        field: &'static str,
        found: &'static str,
    },
    #[error("expected NAME=PATTERN (a name, `=`, then a regular expression), found {spec:?}")]
    RegexSpec { spec: String },
    #[error("{name}: not a valid regular expression: {source}")]
    RegexPattern {
        name: String,
        #[source]
        source: regex::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(p: &str, r: &str) -> Pair {
        Pair {
            prediction: p.to_string(),
            reference: r.to_string(),
        }
    }

    #[test]
    fn no_pairs_scores_zero() {
        let re: NamedRegex = "x=x".parse().unwrap();
        let s = score(&[], &[re]);
        assert_eq!(s.n, 0);
        for v in [
            s.exact_match,
            s.f1,
            s.rouge1,
            s.rouge2,
            s.rouge_l,
            s.bleu,
            s.chrf,
        ] {
            assert_eq!(v, 0.0);
        }
        assert_eq!(s.mean_length, 0.0);
        assert_eq!(s.regex["x"], 0.0);
    }

    #[test]
    fn means_and_regex_shares() {
        let pairs = [
            pair("The cat sat", "the cat sat"),
            pair("Arr, matey", "hello"),
        ];
        let re: NamedRegex = r"pirate=(?i)\barr\b".parse().unwrap();
        let s = score(&pairs, &[re]);
        assert_eq!(s.n, 2);
        assert_eq!(s.exact_match, 0.5);
        assert_eq!(s.f1, 0.5);
        assert_eq!(s.rouge1, 0.5);
        assert_eq!(s.mean_length, 2.5);
        assert_eq!(s.regex["pirate"], 0.5);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["rougeL"], 0.5);
        assert!(json.get("rouge_l").is_none());
    }

    #[test]
    fn named_regex_parsing() {
        let r: NamedRegex = "eq=a=b".parse().unwrap();
        assert_eq!((r.name.as_str(), r.regex.as_str()), ("eq", "a=b"));
        let e = "nothing".parse::<NamedRegex>().unwrap_err().to_string();
        assert!(e.contains("expected NAME=PATTERN"), "{e}");
        assert!("=x".parse::<NamedRegex>().is_err());
        let e = "bad=(".parse::<NamedRegex>().unwrap_err().to_string();
        assert!(e.starts_with("bad: not a valid regular expression"), "{e}");
    }
}
