//! `tunelab eval generate`, `eval.tasks` in a run and `tunelab runs compare`, on the shared
//! persona fixture (the demo's tiny model and a 60-step `tiny-demo` adapter, whose preset
//! scores the demo's general-knowledge questions and the persona's "Arr" rate). Each number
//! is checked against another way of getting it: the answers against `tunelab chat`, the
//! scores against `eval score`, the run's step-0 and final task metrics against `eval bench`
//! and `runs compare` on the base and on the adapter.

use super::fixture;
use crate::common;
use serde_json::Value;
use std::path::Path;

/// The demo persona file's first records, as the prompts to answer.
fn persona_prompts(dir: &Path, n: usize) -> std::path::PathBuf {
    let f = fixture();
    let text = std::fs::read_to_string(f.home.join("data/demo/persona.jsonl")).unwrap();
    let path = dir.join("prompts.jsonl");
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn json(home: &Path, args: &[&str]) -> Value {
    serde_json::from_str(common::ok(home, args).trim()).unwrap()
}

fn close(a: &Value, b: &Value, key: &str) {
    let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
    assert!((x - y).abs() < 1e-9, "{key}: {x} vs {y}");
}

#[test]
fn generated_answers_are_chats_and_their_scores_are_eval_score() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let data = persona_prompts(dir.path(), 4);
    let out = dir.path().join("answers.jsonl");
    let model = f.model.to_str().unwrap();
    let scores = json(
        &f.home,
        &[
            "eval",
            "generate",
            "--model",
            model,
            "--adapter",
            f.adapter.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--max-new-tokens",
            "16",
            "--regex",
            r"pirate=(?i)\barr\b",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(!dir.path().join("answers.jsonl.partial").exists());
    // Each answer is what `tunelab chat` says to the same conversation; the reference is the
    // record's assistant turn.
    let records: Vec<Value> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (line, record) in lines.iter().zip(&records) {
        let msgs = record["messages"].as_array().unwrap();
        let user = msgs.iter().rev().find(|m| m["role"] == "user").unwrap();
        let mut args = vec![
            "chat",
            "--model",
            model,
            "--adapter",
            f.adapter.to_str().unwrap(),
            "--max-new-tokens",
            "16",
            "--prompt",
            user["content"].as_str().unwrap(),
        ];
        if let Some(s) = msgs.iter().find(|m| m["role"] == "system") {
            args.extend(["--system", s["content"].as_str().unwrap()]);
        }
        let said = common::ok(&f.home, &args);
        assert_eq!(line["prediction"].as_str().unwrap(), said.trim(), "{line}");
        assert_eq!(line["reference"], msgs.last().unwrap()["content"]);
        assert!(line["tokens"].as_u64().unwrap() <= 16);
    }
    // The adapter answers in persona; `eval score` on the written answers gives the same.
    assert_eq!(scores["n"], 4);
    assert_eq!(scores["regex"]["pirate"].as_f64(), Some(1.0), "{scores}");
    assert!(scores["tokens_per_second"].as_f64().unwrap() > 0.0);
    let rescored = json(
        &f.home,
        &[
            "eval",
            "score",
            "--predictions",
            out.to_str().unwrap(),
            "--regex",
            r"pirate=(?i)\barr\b",
            "--json",
        ],
    );
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
        close(&scores, &rescored, key);
    }
    // The base alone never speaks like the captain.
    let base = json(
        &f.home,
        &[
            "eval",
            "generate",
            "--model",
            model,
            "--data",
            data.to_str().unwrap(),
            "--max-new-tokens",
            "16",
            "--regex",
            r"pirate=(?i)\barr\b",
            "--json",
        ],
    );
    assert_eq!(base["regex"]["pirate"].as_f64(), Some(0.0), "{base}");
    assert!(base["rougeL"].as_f64().unwrap() < scores["rougeL"].as_f64().unwrap());
}

/// The run's eval events: (step, metrics) of each.
fn eval_events(run: &Path) -> Vec<(u64, Value)> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "eval")
        .map(|e| (e["step"].as_u64().unwrap(), e))
        .collect()
}

#[test]
fn eval_tasks_are_scored_at_each_evaluation_from_the_base_on() {
    let f = fixture();
    let run = f.adapter.parent().unwrap();
    let evals = eval_events(run);
    let steps: Vec<u64> = evals.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        steps,
        [0, 50, 60],
        "tiny-demo evaluates every 50 steps and at the end"
    );
    for (_, e) in &evals {
        for key in [
            "bench/knowledge/acc",
            "bench/knowledge/acc_norm",
            "generate/persona/rougeL",
            "generate/persona/pirate",
        ] {
            assert!(e[key].is_f64(), "{key} missing from {e}");
        }
    }
    let (first, last) = (&evals[0].1, &evals[2].1);
    // Step 0 is the base: `eval bench` on the bare model gives the same accuracy, and on the
    // final adapter the last evaluation's.
    let task = f.home.join("data/demo/tasks/general_knowledge.jsonl");
    let bench = |adapter: Option<&Path>| {
        let mut a = vec![
            "eval",
            "bench",
            "--model",
            f.model.to_str().unwrap(),
            "--task",
            task.to_str().unwrap(),
            "--json",
        ];
        if let Some(ad) = adapter {
            a.extend(["--adapter", ad.to_str().unwrap()]);
        }
        let v = json(&f.home, &a);
        // One side: an object; with an adapter the adapter's result (the last).
        match v.get("results").and_then(Value::as_array) {
            Some(list) => list.last().unwrap().clone(),
            None => v,
        }
    };
    let base = bench(None);
    assert_eq!(
        base["acc"].as_f64(),
        first["bench/knowledge/acc"].as_f64(),
        "{base}"
    );
    assert_eq!(base["items"], 40);
    let tuned = bench(Some(&f.adapter));
    assert_eq!(
        tuned["acc"].as_f64(),
        last["bench/knowledge/acc"].as_f64(),
        "{tuned}"
    );
    // The persona was won: no "Arr" before training, every held-out answer after.
    assert_eq!(first["generate/persona/pirate"].as_f64(), Some(0.0));
    assert_eq!(last["generate/persona/pirate"].as_f64(), Some(1.0));
    // `runs show` reports before → after.
    let shown = common::ok(&f.home, &["runs", "show", run.to_str().unwrap()]);
    assert!(
        shown.contains("eval tasks step 0 (before training) → step 60"),
        "{shown}"
    );
    assert!(shown.contains("generate/persona/pirate"), "{shown}");
}

#[test]
fn runs_compare_scores_the_base_and_the_adapter_as_the_run_did() {
    let f = fixture();
    let run = f.adapter.parent().unwrap();
    let evals = eval_events(run);
    let (first, last) = (&evals[0].1, &evals[evals.len() - 1].1);
    let v = json(
        &f.home,
        &["runs", "compare", run.to_str().unwrap(), "--json"],
    );
    let sides = v["comparison"]["sides"].as_array().unwrap();
    assert_eq!(sides.len(), 2);
    assert_eq!(sides[0]["label"], "base");
    assert_eq!(sides[1]["label"], "pirate/adapter");
    let value = |side: &Value, key: &str| -> f64 {
        side["outcome"]["measures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == key)
            .and_then(|m| m["value"].as_f64())
            .unwrap_or_else(|| panic!("{key} not in {side}"))
    };
    for key in [
        "bench/knowledge/acc",
        "bench/knowledge/acc_norm",
        "generate/persona/pirate",
        "generate/persona/rougeL",
        "generate/persona/chrf",
    ] {
        let (b, a) = (value(&sides[0], key), value(&sides[1], key));
        assert!(
            (b - first[key].as_f64().unwrap()).abs() < 1e-6,
            "{key} base {b} vs {first}"
        );
        assert!(
            (a - last[key].as_f64().unwrap()).abs() < 1e-6,
            "{key} adapter {a} vs {last}"
        );
    }
    // The rows carry the difference and, where a standard error exists, its interval.
    let rows = v["rows"].as_array().unwrap();
    let pirate = rows
        .iter()
        .find(|r| r["key"] == "generate/persona/pirate")
        .unwrap();
    assert_eq!(pirate["adapters"][0]["delta"].as_f64(), Some(1.0));
    let bleu = rows
        .iter()
        .find(|r| r["key"] == "generate/persona/bleu")
        .unwrap();
    assert!(bleu["adapters"][0]["interval"].is_null());
    // Tasks given on the command line replace the run's; the text table names both sides.
    let text = common::ok(
        &f.home,
        &[
            "runs",
            "compare",
            run.to_str().unwrap(),
            "--generate",
            "held_out",
            "--regex",
            r"pirate=(?i)\barr\b",
            "--limit",
            "2",
            "--max-new-tokens",
            "8",
        ],
    );
    assert!(text.contains("generate/held_out/pirate"), "{text}");
    assert!(text.contains("pirate/adapter"), "{text}");
    assert!(!text.contains("bench/knowledge"), "{text}");
}

#[test]
fn bad_eval_tasks_and_inputs_are_named() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model: {{path: {}}}\ndata: {{train: {}}}\neval:\n  tasks:\n    - bench: a.jsonl\n      generate: b.jsonl\n    - generate: held_out\n      num_fewshot: 2\n      regex: {{bleu: x, ok: \"(\"}}\n",
            f.model.display(),
            f.home.join("data/demo/persona.jsonl").display()
        ),
    )
    .unwrap();
    let (code, _, err) = common::run_with_home(&f.home, &["train", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    for needle in [
        "eval.tasks[0]: needs exactly one of",
        "eval.tasks[1].num_fewshot",
        "eval.tasks[1].regex.bleu",
        "eval.tasks[1].regex.ok: not a regular expression",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    // A record without a reply (plain text) is skipped and counted; a file with none is
    // refused by name.
    let empty = dir.path().join("no_replies.jsonl");
    std::fs::write(
        &empty,
        "{\"text\": \"plain text has no reply to compare with\"}\n",
    )
    .unwrap();
    let (code, _, err) = common::run_with_home(
        &f.home,
        &[
            "eval",
            "generate",
            "--model",
            f.model.to_str().unwrap(),
            "--data",
            empty.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no_replies.jsonl") && err.contains("1 records without one"),
        "{err}"
    );
}
