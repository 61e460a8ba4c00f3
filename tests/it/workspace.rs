//! A user's own project and first runs: workspace detection, the demo made on demand for
//! presets that name it, paths that are missing rather than hub ids, minimal configs, the
//! models a picker offers from a Hugging Face cache, and argument errors that say what is
//! allowed.

use crate::common;
use std::time::{Duration, Instant};
use tunelab::model::catalog::{self, Source};
use tunelab::model::tiny::{init_tiny, TinySpec};
use tunelab::runs::{RunDir, RunState};
use tunelab::workspace::Project;

#[test]
fn a_folder_is_a_project_when_it_holds_datasets_or_a_workspace_file() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(Project::detect(d.path()), None, "an empty folder is not");
    std::fs::create_dir_all(d.path().join("src")).unwrap();
    std::fs::write(d.path().join("src/notes.json"), "{}").unwrap();
    assert_eq!(
        Project::detect(d.path()),
        None,
        "datasets deep in src/ do not count"
    );
    std::fs::create_dir_all(d.path().join("data")).unwrap();
    std::fs::write(d.path().join("data/train.jsonl"), "{}\n").unwrap();
    let p = Project::detect(d.path()).expect("data/train.jsonl makes it a project");
    assert_eq!(p.runs, p.root.join(".tunelab/runs"));
    // tunelab.yaml alone makes one too, and may move the runs.
    let e = tempfile::tempdir().unwrap();
    std::fs::write(e.path().join("tunelab.yaml"), "runs: experiments\n").unwrap();
    let p = Project::detect(e.path()).unwrap();
    assert_eq!(p.runs, p.root.join("experiments"));
    std::fs::write(e.path().join("tunelab.yaml"), "runz: x\n").unwrap();
    assert!(Project::open(e.path())
        .unwrap_err()
        .contains("unknown field `runz`"));
    // The Data tab's scan skips .git, target, node_modules and model folders.
    for junk in [
        ".git/x.jsonl",
        "target/y.jsonl",
        "node_modules/z.json",
        "m/config.json",
    ] {
        let p = d.path().join(junk);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "{}").unwrap();
    }
    std::fs::write(d.path().join("m/a.jsonl"), "{}").unwrap();
    let found: Vec<String> = tunelab::workspace::datasets(d.path(), 6)
        .iter()
        .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(found, ["data/train.jsonl", "src/notes.json"]);
}

#[test]
fn a_preset_that_names_the_demo_creates_it_on_a_fresh_machine() {
    let h = tempfile::tempdir().unwrap();
    let out = common::ok(h.path(), &["train", "tiny-demo", "--detach"]);
    assert!(h.path().join("data/demo/tiny-model/config.json").is_file());
    let id = out.trim();
    let run = RunDir::new(h.path().join("data/runs").join(id));
    let start = Instant::now();
    while common::event_lines(&run.events_path())
        .iter()
        .all(|e| e["type"] != "train")
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no step: {}",
            std::fs::read_to_string(run.log()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, err) = common::run(&h, &["runs", "stop", id, "--wait", "30"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(run.read_status().unwrap().state, RunState::Stopped);
}

#[test]
fn a_missing_path_is_named_before_it_is_tried_as_a_hub_id() {
    let h = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.jsonl"), "{\"messages\": []}\n").unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    for (model, why) in [
        ("./models/mine", "a ./ path"),
        ("models/mine", "the first folder exists here"),
        ("a/b/c", "more than org/name"),
    ] {
        let cfg = dir.path().join("c.yaml");
        std::fs::write(
            &cfg,
            format!("model: {{path: {model}}}\ndata: {{train: d.jsonl}}\n"),
        )
        .unwrap();
        let (code, _, err) = common::run(&h, &["train", cfg.to_str().unwrap()]);
        assert_eq!(code, 2, "{why}: {err}");
        assert!(
            err.contains(&format!("model.path: \"{model}\": no such folder")),
            "{why}: {err}"
        );
        assert!(!err.contains("huggingface.co"), "{why}: {err}");
    }
}

#[test]
fn a_model_and_a_dataset_make_a_config() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("min.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model: {{path: {}}}\ndata: {{train: {}}}\ntrain: {{max_steps: 2}}\n",
            h.path().join("data/demo/tiny-model").display(),
            h.path().join("data/demo/persona.jsonl").display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    common::ok(
        h.path(),
        &[
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let saved = tunelab::config::RunConfig::load(&run.join("config.yaml")).unwrap();
    assert_eq!(
        (saved.lora.r, saved.lora.alpha),
        (8, 8.0),
        "PEFT's defaults"
    );
    assert_eq!(saved.train.lr, 2e-5, "TRL's default");
    // `presets --show` prints every field with its default.
    let (code, out, _) = common::run(&h, &["presets", "--show", "default"]);
    assert_eq!(code, 0);
    for key in [
        "max_seq_len: 1024",
        "target_modules:",
        "- q_proj",
        "use_rslora: false",
        "scheduler: linear",
        "lr: 0.00002",
        "max_new_tokens: 48",
    ] {
        assert!(out.contains(key), "{key} in\n{out}");
    }
    let (code, out, _) = common::run(&h, &["presets", "--show", "tiny-demo"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("weight_decay: 0.0") && out.contains("max_steps: 600"),
        "{out}"
    );
}

#[test]
fn arguments_out_of_range_say_what_is_allowed() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(
        &h,
        &[
            "chat",
            "--model",
            "m",
            "--prompt",
            "hi",
            "--temperature",
            "-1",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--temperature") && err.contains("must be at least 0 (got -1)"),
        "{err}"
    );
    let (code, _, err) = common::run(
        &h,
        &[
            "chat",
            "--model",
            "m",
            "--prompt",
            "hi",
            "--max-new-tokens",
            "0",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("must be at least 1 (got 0)"), "{err}");
    let (code, _, err) = common::run(
        &h,
        &["chat", "--model", "m", "--prompt", "hi", "--top-p", "1.5"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("above 0 and at most 1"), "{err}");
}

/// A truncated GGUF is one line of error, even with RUST_BACKTRACE set in the environment.
#[test]
fn user_errors_never_carry_backtraces() {
    let Some(gguf) = common::smollm2_gguf("user_errors_never_carry_backtraces") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(gguf).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let h = tempfile::tempdir().unwrap();
    let out = common::tunelab(&h)
        .env("RUST_BACKTRACE", "1")
        .args(["chat", "--model", cut.to_str().unwrap(), "--prompt", "hi"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("backtrace") && !err.contains(" at /"),
        "{err}"
    );
}

/// The picker's models: the workspace's folders and GGUF files and every model of a
/// Hugging Face cache, each with its architecture, size and whether it can be used.
#[test]
fn models_are_listed_from_the_workspace_and_a_hub_cache() {
    let ws = tempfile::tempdir().unwrap();
    init_tiny(&ws.path().join("my-model"), &TinySpec::default()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--acme--tiny-chat");
    let snap = repo.join("snapshots/abc123");
    init_tiny(&snap, &TinySpec::default()).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    // A model tunelab does not support: listed, with the reason.
    let other = cache.path().join("models--acme--old-gpt/snapshots/def456");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 64}"#,
    )
    .unwrap();
    // Not a model: a dataset repo in the same cache is left out.
    std::fs::create_dir_all(cache.path().join("datasets--acme--qa/snapshots/x")).unwrap();
    let list = catalog::list(&[ws.path()], cache.path());
    let names: Vec<(&str, Source)> = list.iter().map(|e| (e.name.as_str(), e.source)).collect();
    assert_eq!(
        names,
        [
            ("my-model", Source::Workspace),
            ("acme/old-gpt", Source::HubCache),
            ("acme/tiny-chat", Source::HubCache)
        ]
    );
    let tiny = &list[2];
    assert_eq!(tiny.spec, "acme/tiny-chat");
    assert_eq!(tiny.arch.as_deref(), Some("llama"));
    assert!(tiny.unsupported.is_none());
    let params = tiny.params.unwrap();
    let built =
        tunelab::model::Model::load(&snap, candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    assert_eq!(params, built.config.parameter_count() as u64);
    assert!(
        tiny.disk_bytes > params * 4,
        "the f32 weights and the tokenizer"
    );
    let gpt = &list[1];
    assert_eq!(gpt.arch.as_deref(), Some("gpt2"));
    assert!(
        gpt.unsupported
            .as_deref()
            .is_some_and(|w| w.contains("unsupported architecture \"GPT2LMHeadModel\"")),
        "{gpt:?}"
    );
}
