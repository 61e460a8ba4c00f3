//! Errors a person can read: each names the file once (no context added at two layers),
//! with a meaningful exit code; a model folder without a tokenizer is still a model.

use crate::common;
use std::path::Path;

/// The demo's tiny model copied without its tokenizer files (a `save_pretrained` of the
/// model alone, a checkpoint).
fn model_without_tokenizer(home: &Path) -> std::path::PathBuf {
    let data = home.join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    let src = data.join("demo/tiny-model");
    let dst = home.join("q_model");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

/// `path` appears at most once in `err`.
fn once(err: &str, path: &Path) {
    let p = path.display().to_string();
    assert!(
        err.matches(&p).count() <= 1,
        "{p} is named {} times:\n{err}",
        err.matches(&p).count()
    );
}

#[test]
fn model_info_needs_only_the_config_and_the_weights() {
    let h = tempfile::tempdir().unwrap();
    let m = model_without_tokenizer(h.path());
    let out = common::ok(h.path(), &["model", "info", m.to_str().unwrap()]);
    assert!(out.contains("architecture  LlamaForCausalLM"), "{out}");
    assert!(out.contains("lora targets"), "{out}");
    let out = common::ok(h.path(), &["model", "info", m.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layers"], 2);
}

#[test]
fn errors_name_each_file_once() {
    let h = tempfile::tempdir().unwrap();
    let m = model_without_tokenizer(h.path());
    let missing = h.path().join("nowhere");
    let data = h.path().join("data/demo/persona.jsonl");
    let cfg = h.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model:\n  path: {}\ndata:\n  train: {}\n",
            h.path().join("data/demo/tiny-model").display(),
            missing.join("train.jsonl").display()
        ),
    )
    .unwrap();
    let cases: Vec<(Vec<String>, Vec<&Path>, i32)> = vec![
        // Chat needs the tokenizer: one clear line naming the folder once.
        (
            vec![
                "chat".into(),
                "--model".into(),
                m.display().to_string(),
                "--prompt".into(),
                "hi".into(),
            ],
            vec![m.as_path()],
            2,
        ),
        (
            vec!["model".into(), "info".into(), missing.display().to_string()],
            vec![missing.as_path()],
            2,
        ),
        (
            vec!["train".into(), cfg.display().to_string()],
            vec![missing.as_path()],
            2,
        ),
        (
            vec![
                "data".into(),
                "validate".into(),
                missing.join("x.jsonl").display().to_string(),
            ],
            vec![missing.as_path()],
            2,
        ),
        (
            vec![
                "eval".into(),
                "--model".into(),
                m.display().to_string(),
                "--data".into(),
                data.display().to_string(),
            ],
            vec![m.as_path()],
            2,
        ),
        (
            vec![
                "export".into(),
                missing.display().to_string(),
                "--merge".into(),
            ],
            vec![missing.as_path()],
            2,
        ),
    ];
    for (args, paths, code) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, _, err) = common::run_with_home(h.path(), &args);
        assert_eq!(got, code, "tunelab {}: {err}", args.join(" "));
        assert!(
            err.starts_with("error: "),
            "tunelab {}: {err}",
            args.join(" ")
        );
        for p in paths {
            once(&err, p);
        }
    }
    // An output that cannot be written says so (not "no such file", which reads as the input).
    let out = missing.join("x.json");
    let (code, _, err) = common::run_with_home(
        h.path(),
        &[
            "data",
            "convert",
            data.to_str().unwrap(),
            "--to",
            "alpaca",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("cannot write {}", out.display())),
        "{err}"
    );
    assert!(
        !err.contains(".tunelab-"),
        "the temporary's name is noise: {err}"
    );
    // An adapter folder that is not one says what was expected.
    let tiny = h.path().join("data/demo/tiny-model");
    let (code, _, err) = common::run_with_home(
        h.path(),
        &[
            "chat",
            "--model",
            tiny.to_str().unwrap(),
            "--adapter",
            missing.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected a PEFT adapter folder"), "{err}");
    once(&err, &missing);
    // The missing tokenizer is named as what is missing.
    let (_, _, err) = common::run_with_home(
        h.path(),
        &["chat", "--model", m.to_str().unwrap(), "--prompt", "hi"],
    );
    assert!(err.contains("no tokenizer.json"), "{err}");
}
