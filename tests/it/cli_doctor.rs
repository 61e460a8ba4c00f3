//! `tunelab doctor` as a process: a Hugging Face cache laid out like the hub's, API keys in
//! the environment (reported by name, their values never printed), a llama.cpp tool on a
//! private PATH, and every section of the text report.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use tunelab::model::tiny::{init_tiny, TinySpec};

const ANTHROPIC: &str = "sk-secret-123";
const HF: &str = "hf_secret_token_456";

/// A home, an HF cache with one model, and a PATH folder holding a fake `llama-server` (and
/// a `llama-cli` that is not executable, so it does not count).
struct Machine {
    home: tempfile::TempDir,
    hf_home: std::path::PathBuf,
    bin: std::path::PathBuf,
}

fn machine() -> Machine {
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().join("hf");
    let repo = hf_home.join("hub/models--acme--tiny-chat");
    init_tiny(&repo.join("snapshots/abc123"), &TinySpec::default()).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, mode) in [("llama-server", 0o755), ("llama-cli", 0o644)] {
        let p = bin.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    Machine { home, hf_home, bin }
}

fn doctor(m: &Machine, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .env("TUNELAB_HOME", m.home.path())
        .env("NO_COLOR", "1")
        .env("HF_HOME", &m.hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env("PATH", &m.bin)
        .env_remove("VIRTUAL_ENV")
        .env("ANTHROPIC_API_KEY", ANTHROPIC)
        .env("HF_TOKEN", HF)
        .env_remove("OPENAI_API_KEY")
        .arg("doctor")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_secrets(text: &str) {
    for secret in ["sk-secret", ANTHROPIC, "hf_secret", HF] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
}

#[test]
fn doctor_json_lists_the_cache_keys_by_name_and_tools_on_path() {
    let m = machine();
    let (code, out, err) = doctor(&m, &["--json"]);
    assert_eq!(code, 0, "{err}");
    no_secrets(&out);
    no_secrets(&err);
    let r: Value = serde_json::from_str(&out).unwrap();

    assert_eq!(r["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["build"]["cuda_compiled"], cfg!(feature = "cuda"));
    assert!(r["build"]["cpu_cores"].as_u64().unwrap() >= 1);
    // No nvcc on this PATH: absent, or found only outside PATH.
    assert!(
        r["build"]["nvcc"].is_null() || r["build"]["nvcc"]["on_path"] == false,
        "{}",
        r["build"]
    );
    // Either GPUs are listed or the report says why none is.
    let gpus = r["gpu"]["devices"].as_array().unwrap();
    assert!(
        !gpus.is_empty() || r["gpu"]["why_none"].as_str().is_some_and(|w| !w.is_empty()),
        "{}",
        r["gpu"]
    );
    assert!(r["memory"]["total_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(
        r["folders"]["data"],
        m.home.path().join("data").display().to_string()
    );
    assert!(r["folders"]["data_disk_free_bytes"].as_u64().is_some());

    let hub = &r["hf_cache"];
    assert_eq!(hub["path"], m.hf_home.join("hub").display().to_string());
    assert_eq!(hub["exists"], true);
    assert_eq!(hub["offline"], true);
    let models = hub["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{hub}");
    assert_eq!(models[0]["id"], "acme/tiny-chat");
    assert_eq!(models[0]["arch"], "llama");
    assert_eq!(models[0]["supported"], true);
    assert!(models[0]["params"].as_u64().unwrap() > 0);

    let keys = r["api_keys"].as_object().unwrap();
    let names: Vec<&str> = keys.keys().map(String::as_str).collect();
    assert_eq!(names, ["ANTHROPIC_API_KEY", "HF_TOKEN", "OPENAI_API_KEY"]);
    assert_eq!(keys["ANTHROPIC_API_KEY"], true);
    assert_eq!(keys["HF_TOKEN"], true);
    assert_eq!(keys["OPENAI_API_KEY"], false);

    let tools = r["llama_cpp"].as_array().unwrap();
    let path_of = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} not reported"))["path"]
            .clone()
    };
    assert_eq!(
        path_of("llama-server"),
        m.bin.join("llama-server").display().to_string()
    );
    for missing in [
        "llama-cli",
        "llama-completion",
        "llama-quantize",
        "llama-bench",
    ] {
        assert!(path_of(missing).is_null(), "{missing}");
    }

    // Advice for what is missing, none for what is there.
    let advice: Vec<(String, String)> = r["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["section"].as_str().unwrap().to_string(),
                a["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let about = |section: &str, needle: &str| {
        advice
            .iter()
            .any(|(s, t)| s == section && t.contains(needle))
    };
    assert!(
        about(
            "api_keys",
            "OPENAI_API_KEY is not set: fine for local servers"
        ),
        "{advice:?}"
    );
    assert!(!about("api_keys", "ANTHROPIC_API_KEY"), "{advice:?}");
    assert!(!about("api_keys", "HF_TOKEN"), "{advice:?}");
    assert!(about("hf_cache", "HF_HUB_OFFLINE is set"), "{advice:?}");
    assert!(
        about(
            "llama_cpp",
            "not on PATH: llama-cli, llama-completion, llama-quantize, llama-bench;"
        ),
        "{advice:?}"
    );
    if !cfg!(feature = "cuda") {
        assert!(
            about("build", "cargo build --release --features cuda"),
            "{advice:?}"
        );
    }
}

#[test]
fn doctor_text_has_every_section_and_no_secret() {
    let m = machine();
    let (code, out, err) = doctor(&m, &[]);
    assert_eq!(code, 0, "{err}");
    no_secrets(&out);
    let headers: Vec<&str> = out
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .collect();
    assert_eq!(
        headers,
        [
            "build",
            "GPUs",
            "memory",
            "disk",
            "Hugging Face cache",
            "API keys (names only)",
            "llama.cpp tools on PATH",
            "engines (tunelab train --engine)"
        ],
        "{out}"
    );
    let line = |start: &str| {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?}:\n{out}"))
            .to_string()
    };
    assert!(line("tunelab ").contains(env!("CARGO_PKG_VERSION")));
    assert!(line("acme/tiny-chat").contains("llama"), "{out}");
    assert!(line("acme/tiny-chat").ends_with("supported"), "{out}");
    assert!(line("ANTHROPIC_API_KEY").contains(" set "), "{out}");
    assert!(line("OPENAI_API_KEY").contains("not set"), "{out}");
    assert!(line("llama-server").ends_with("bin/llama-server"), "{out}");
    assert!(line("llama-quantize").contains("not found"), "{out}");
    assert!(line("trl ").ends_with("no python3 on the PATH"), "{out}");
    assert!(
        line("data ").contains(&m.home.path().join("data").display().to_string()),
        "{out}"
    );
}

#[test]
fn doctor_bad_arguments_exit_2() {
    let m = machine();
    let (code, _, err) = doctor(&m, &["--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
}

/// The report reads an empty machine too: no cache, no keys, no tools.
#[test]
fn doctor_on_a_bare_machine_says_what_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .env("TUNELAB_HOME", home.path())
        .env("HF_HOME", home.path().join("no-hf"))
        .env("PATH", home.path().join("no-bin"))
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("HF_TOKEN")
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["hf_cache"]["exists"], false);
    assert_eq!(r["hf_cache"]["offline"], false);
    assert_eq!(r["hf_cache"]["models"], serde_json::json!([]));
    assert!(r["api_keys"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v == false));
    assert!(r["llama_cpp"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["path"].is_null()));
    let texts: Vec<&str> = r["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("no Hugging Face cache at")),
        "{texts:?}"
    );
    assert_eq!(
        texts.iter().filter(|t| t.contains("is not set")).count(),
        3,
        "{texts:?}"
    );
}

/// The engines section names what the active venv's Python has: the fake TRL 1.16.0 of the
/// engine tests, and no Axolotl or LLaMA-Factory, with the command that installs each.
#[test]
fn doctor_lists_the_engines_the_python_has() {
    let m = machine();
    let Some(python) = crate::common::python3("doctor engines") else {
        return;
    };
    let real = std::process::Command::new(&python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let real = std::path::PathBuf::from(String::from_utf8_lossy(&real.stdout).trim());
    let venv = crate::common::fixture("fake_engine");
    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .env("TUNELAB_HOME", m.home.path())
        .env("NO_COLOR", "1")
        .env("HF_HOME", &m.hf_home)
        .env("PATH", real.parent().unwrap())
        .env("VIRTUAL_ENV", &venv)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let engines = r["engines"].as_array().unwrap();
    let by = |n: &str| engines.iter().find(|e| e["name"] == n).unwrap().clone();
    assert_eq!(by("trl")["version"], "1.16.0", "{engines:?}");
    assert!(by("trl")["python"]
        .as_str()
        .unwrap()
        .ends_with("fake_engine/bin/python"));
    let axolotl = by("axolotl")["problem"].as_str().unwrap().to_string();
    assert!(
        axolotl.contains("Axolotl is not installed")
            && axolotl.contains("pip install 'axolotl==0.19.0'"),
        "{axolotl}"
    );
    assert!(by("llamafactory")["version"].is_null());
}
