//! `tunelab eval score` and `eval::metrics` against the reference implementations (SQuAD
//! v1.1's script, rouge-score 0.1.2, sacrebleu 2.6.0) on 200 seeded pairs made by
//! tests/reference/make_metrics_fixture.py, and its handling of unusable input.

use crate::common::{fixture, run};
use serde_json::Value;
use tunelab::eval::metrics::{self, Pair};

const TOL: f64 = 1e-6;

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("eval/metrics/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(what: &str, got: f64, want: &Value) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no number in expected.json"));
    assert!(
        (got - want).abs() <= TOL,
        "{what}: tunelab {got}, reference {want}"
    );
}

fn pairs() -> Vec<Pair> {
    metrics::read_predictions(&fixture("eval/metrics/pairs.jsonl")).unwrap()
}

#[test]
fn eval_score_json_matches_the_reference_implementations() {
    let home = tempfile::tempdir().unwrap();
    let file = fixture("eval/metrics/pairs.jsonl");
    let (code, out, err) = run(
        &home,
        &[
            "eval",
            "score",
            "--predictions",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON line: {out}");
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    let want = &expected()["corpus"];
    assert_eq!(got["n"], 200);
    assert_eq!(got["n"], want["n"]);
    for key in [
        "exact_match",
        "f1",
        "rouge1",
        "rouge2",
        "rougeL",
        "bleu",
        "chrf",
        "mean_length",
    ] {
        close(key, got[key].as_f64().unwrap_or(f64::NAN), &want[key]);
    }
    assert_eq!(got["regex"], serde_json::json!({}));
    // The fixture is not degenerate: every metric sits strictly inside its range.
    for key in ["exact_match", "f1", "rouge1", "rouge2", "rougeL"] {
        let v = got[key].as_f64().unwrap();
        assert!(v > 0.05 && v < 0.95, "{key} {v}");
    }
    for key in ["bleu", "chrf"] {
        let v = got[key].as_f64().unwrap();
        assert!(v > 5.0 && v < 95.0, "{key} {v}");
    }
}

#[test]
fn per_pair_metrics_match_the_reference_implementations() {
    let pairs = pairs();
    let want = expected();
    let want = want["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), want.len());
    for (i, (p, w)) in pairs.iter().zip(want).enumerate() {
        let (pred, reference) = (p.prediction.as_str(), p.reference.as_str());
        let at = |m: &str| format!("pair {} ({pred:?} vs {reference:?}) {m}", i + 1);
        close(
            &at("exact_match"),
            metrics::exact_match(pred, reference),
            &w["exact_match"],
        );
        close(&at("f1"), metrics::f1(pred, reference), &w["f1"]);
        close(
            &at("rouge1"),
            metrics::rouge_n(pred, reference, 1),
            &w["rouge1"],
        );
        close(
            &at("rouge2"),
            metrics::rouge_n(pred, reference, 2),
            &w["rouge2"],
        );
        close(
            &at("rougeL"),
            metrics::rouge_l(pred, reference),
            &w["rougeL"],
        );
    }
    // The library's `score` is what the command prints.
    let s = metrics::score(&pairs, &[]);
    let corpus = &expected()["corpus"];
    close("score().bleu", s.bleu, &corpus["bleu"]);
    close("score().chrf", s.chrf, &corpus["chrf"]);
    close("score().f1", s.f1, &corpus["f1"]);
    let preds: Vec<&str> = pairs.iter().map(|p| p.prediction.as_str()).collect();
    let refs: Vec<&str> = pairs.iter().map(|p| p.reference.as_str()).collect();
    close(
        "corpus_bleu",
        metrics::corpus_bleu(&preds, &refs),
        &corpus["bleu"],
    );
    close(
        "corpus_chrf",
        metrics::corpus_chrf(&preds, &refs),
        &corpus["chrf"],
    );
}

/// Writes `lines` as a predictions file and runs `eval score` on it with `extra` args.
fn score_lines(lines: &[&str], extra: &[&str]) -> (i32, String, String, String) {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("preds.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let path = file.to_str().unwrap().to_string();
    let mut args = vec!["eval", "score", "--predictions", path.as_str()];
    args.extend(extra);
    let (code, out, err) = run(&home, &args);
    (code, out, err, path)
}

#[test]
fn unusable_predictions_files_are_refused_with_file_line_and_field() {
    let good = r#"{"prediction": "a", "reference": "a"}"#;
    let cases: [(&[&str], &str); 4] = [
        (
            &[good, good, r#"{"prediction": "b"}"#],
            "line 3: no `reference` field; expected `reference` to be a string",
        ),
        (
            &[good, r#"{"prediction": 7, "reference": "b"}"#],
            "line 2: `prediction` is a number; expected a string",
        ),
        (&[good, good, "{not json"], "line 3: not valid JSON"),
        (
            &[r#"["a", "b"]"#],
            "line 1: found an array; expected a JSON object",
        ),
    ];
    for (lines, message) in cases {
        let (code, out, err, path) = score_lines(lines, &["--json"]);
        assert_eq!(code, 2, "{lines:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains(&format!("{path}: {message}")),
            "{lines:?}: {err}"
        );
    }
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        &home,
        &["eval", "score", "--predictions", "/no/such/preds.jsonl"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("/no/such/preds.jsonl: cannot read"), "{err}");
}

#[test]
fn regex_shares_and_the_text_table() {
    let lines = [
        r#"{"prediction": "Arr, matey!", "reference": "hello"}"#,
        r#"{"prediction": "ARR", "reference": "hello"}"#,
        r#"{"prediction": "a barrel of rum", "reference": "hello"}"#,
        r#"{"prediction": "hello", "reference": "hello"}"#,
        r#"{"prediction": "", "reference": "hello"}"#,
    ];
    let (code, out, err, _) = score_lines(
        &lines,
        &[
            "--regex",
            r"pirate=(?i)\barr\b",
            "--regex",
            "greet=^hello$",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["regex"]["pirate"], 0.4, "{out}");
    assert_eq!(got["regex"]["greet"], 0.2, "{out}");
    assert_eq!(got["exact_match"], 0.2);
    close(
        "mean_length",
        got["mean_length"].as_f64().unwrap(),
        &Value::from(1.6),
    );

    let (code, out, err, _) = score_lines(&lines, &["--regex", r"pirate=(?i)\barr\b"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["pairs", "5"]);
    assert_eq!(rows[1], ["exact_match", "0.2000"]);
    assert_eq!(rows.last().unwrap(), &["regex", "pirate", "0.4000"]);
    // Values are right-aligned in one column.
    let ends: std::collections::BTreeSet<usize> = out.lines().map(str::len).collect();
    assert_eq!(ends.len(), 1, "{out}");
}

#[test]
fn malformed_regexes_are_refused() {
    let lines = [r#"{"prediction": "a", "reference": "a"}"#];
    let (code, out, err, _) = score_lines(&lines, &["--regex", "no-equals-sign"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("expected NAME=PATTERN"), "{err}");
    let (code, _, err, _) = score_lines(&lines, &["--regex", "open=(unclosed"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("open: not a valid regular expression"),
        "{err}"
    );
    let (code, _, err, _) = score_lines(&lines, &["--regex", "x=a", "--regex", "x=b"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--regex x is given twice"), "{err}");
}

#[test]
fn an_empty_file_scores_zero() {
    let (code, out, err, _) = score_lines(&[], &["--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("has no pairs"), "{err}");
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["n"], 0);
    assert_eq!(got["bleu"], 0.0);
    assert_eq!(got["f1"], 0.0);
}
