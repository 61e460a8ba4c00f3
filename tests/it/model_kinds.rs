//! Every model command on every model kind: `model info`, `eval`, `chat`, `bench forward`,
//! `train` and the Adapter tab's config reader take an HF folder, a GGUF file and a hub id
//! (offline, from a cache laid out like the hub's) through one resolver
//! (`model::source::resolve`), and errors are one clean line.

use crate::common;
use std::path::Path;
use std::process::Command;

fn run(home: &Path, hf_home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .env("TUNELAB_HOME", home)
        .env("HF_HOME", hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_model_command_takes_every_model_kind() {
    let h = tempfile::tempdir().unwrap();
    let hf = h.path().join("hf");
    let (code, _, err) = run(h.path(), &hf, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let demo = h.path().join("data/demo");
    let folder = demo.join("tiny-model");
    // The same model as a hub-cache entry and as a GGUF file.
    let repo = hf.join("hub/models--acme--tiny");
    let snap = repo.join("snapshots/abc");
    std::fs::create_dir_all(&snap).unwrap();
    for f in std::fs::read_dir(&folder).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), snap.join(f.file_name())).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc").unwrap();
    let gguf = h.path().join("tiny.gguf");
    let (code, _, err) = run(
        h.path(),
        &hf,
        &[
            "export",
            "--model",
            folder.to_str().unwrap(),
            "--gguf",
            "--quant",
            "f32",
            "-o",
            gguf.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let data = demo.join("persona.jsonl");
    let kinds = [
        ("folder", folder.display().to_string()),
        ("gguf", gguf.display().to_string()),
        ("hub id", "acme/tiny".to_string()),
    ];
    let mut losses = Vec::new();
    for (kind, spec) in &kinds {
        let spec = spec.as_str();
        let (code, out, err) = run(h.path(), &hf, &["model", "info", spec, "--json"]);
        assert_eq!(code, 0, "model info {kind}: {err}");
        let info: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(info["architecture"], "LlamaForCausalLM", "{kind}");
        assert_eq!(info["layers"], 2, "{kind}");
        let cfg = tunelab::model::source::config(spec);
        // The Adapter tab reads the config through the same resolver (hub ids need HF_HOME,
        // which only the child processes have).
        if *kind != "hub id" {
            assert_eq!(cfg.unwrap().num_hidden_layers, 2, "{kind}");
        }
        let (code, out, err) = run(
            h.path(),
            &hf,
            &[
                "eval",
                "--model",
                spec,
                "--data",
                data.to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(code, 0, "eval {kind}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        losses.push(v["loss"].as_f64().unwrap());
        let (code, _, err) = run(
            h.path(),
            &hf,
            &[
                "chat",
                "--model",
                spec,
                "--prompt",
                "Hi",
                "--max-new-tokens",
                "2",
            ],
        );
        assert_eq!(code, 0, "chat {kind}: {err}");
        let (code, _, err) = run(
            h.path(),
            &hf,
            &[
                "bench", "forward", "--model", spec, "--batch", "1", "--seq", "16", "--iters", "1",
                "--json",
            ],
        );
        assert_eq!(code, 0, "bench {kind}: {err}");
        let cfg = h.path().join("k.yaml");
        std::fs::write(
            &cfg,
            format!(
                "name: kinds\nmodel: {{path: {spec}}}\ndata: {{train: {}, max_seq_len: 64}}\ntrain: {{max_steps: 1, batch_size: 2}}\n",
                data.display()
            ),
        )
        .unwrap();
        let run_dir = h.path().join(format!("run-{}", kind.replace(' ', "-")));
        let (code, _, err) = run(
            h.path(),
            &hf,
            &[
                "train",
                cfg.to_str().unwrap(),
                "--run-dir",
                run_dir.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "train {kind}: {err}");
    }
    // The same weights give the same loss whichever way they are named.
    for l in &losses[1..] {
        assert!((l - losses[0]).abs() < 1e-4 * losses[0], "{losses:?}");
    }
}

/// A missing or wrong spec gets one line: no empty `: :` segments, no backtrace.
#[test]
fn bad_model_specs_get_one_clean_line() {
    let h = tempfile::tempdir().unwrap();
    let notes = h.path().join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let nowhere = h.path().join("nowhere");
    let missing_gguf = h.path().join("gone.gguf");
    for spec in [&nowhere, &notes, &missing_gguf] {
        for args in [
            vec!["model", "info", spec.to_str().unwrap()],
            vec!["chat", "--model", spec.to_str().unwrap(), "--prompt", "x"],
        ] {
            let (code, _, err) = common::run_with_home(h.path(), &args);
            assert_eq!(code, 2, "{args:?}: {err}");
            let line = err.trim();
            assert_eq!(line.lines().count(), 1, "{args:?}: {err}");
            assert!(line.starts_with("error: "), "{err}");
            assert!(
                !line.contains(": :") && !line.contains("backtrace"),
                "{err}"
            );
            assert!(line.contains(spec.to_str().unwrap()), "{err}");
        }
    }
}
