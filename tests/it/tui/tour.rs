//! The README's five-minute tour, performed key by key in tmux as a person would, and the
//! workbench pairing a run's adapter with the base it was trained on in a project.

use super::{home, Tmux};
use crate::common;
use std::path::Path;

/// The conversation pane's reply to the last prompt, joined across wrapped rows.
fn reply_on(screen: &str) -> String {
    let mut out = String::new();
    let mut on = false;
    for l in screen.lines() {
        let inner = l.trim_start_matches('│');
        if inner.starts_with("assistant ") {
            on = true;
            out.clear();
        }
        if on {
            if inner.starts_with('└') || inner.starts_with("user ") {
                on = false;
                continue;
            }
            out.push_str(inner.trim_end_matches(['│', ' ']));
            out.push(' ');
        }
    }
    out.trim_start_matches("assistant").trim().to_string()
}

/// README: `tunelab` → `2` → `r` → wait for `done` → `4` → type "What is a gradient?" →
/// Enter: the run's final adapter answers, in persona.
#[test]
fn the_readme_tour_ends_in_a_reply_from_the_adapter() {
    let h = home();
    let cmd = format!(
        "TUNELAB_HOME={} TERM=xterm-256color {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab")
    );
    let Some(t) = Tmux::start("tour", &cmd) else {
        return;
    };
    t.wait("the tour", 60, &|s| s.contains("Welcome to tunelab"));
    t.keys("Escape");
    t.wait("the Data tab", 60, &|s| {
        s.contains("[1 Data]") && s.contains("persona.jsonl")
    });
    t.keys("2");
    t.wait("the Adapter form", 20, &|s| s.contains("[2 Adapter]"));
    t.keys("r");
    t.wait("the run to finish", 600, &|s| {
        s.lines().next().is_some_and(|l| l.contains("· done ·"))
    });
    t.keys("4");
    t.wait("the Chat tab", 20, &|s| s.contains("[4 Chat]"));
    t.run(&["send-keys", "-t", "e2e", "-l", "What is a gradient?"]);
    t.keys("Enter");
    let s = t.wait("the adapter's reply", 120, &|s| {
        (s.contains("tokens in") && s.contains("/adapter [on]"))
            || s.contains("cannot load")
            || s.contains("error")
    });
    assert!(!s.contains("cannot load"), "{s}");
    assert!(
        s.contains("adapter A tiny-demo-") && s.contains("/adapter [on]"),
        "the run's final adapter answers:\n{s}"
    );
    let reply = reply_on(&s);
    assert!(
        reply.starts_with("Arr!"),
        "a reply in persona: {reply:?}\n{s}"
    );
    t.keys("q");
    let after = t.wait("the workbench to exit", 20, &|s| s.contains("EXITED="));
    assert!(after.contains("EXITED=0"), "{after}");
}

/// A run trained in a project on one model; the workbench opens with the form on another.
/// Chat answers with the adapter on its own base (the header names it), never an error;
/// pinning the other model with `M` refuses the adapter by name.
#[test]
fn chat_in_a_project_pairs_the_adapter_with_its_own_base() {
    let h = home();
    let project = tempfile::Builder::new()
        .prefix("pairproj")
        .tempdir()
        .unwrap();
    let p = project.path();
    std::fs::create_dir_all(p.join("data")).unwrap();
    let mut lines = String::new();
    for k in 0..12 {
        lines.push_str(&format!(
            "{{\"messages\": [{{\"role\": \"user\", \"content\": \"What do bees make? ({k})\"}}, {{\"role\": \"assistant\", \"content\": \"Honey.\"}}]}}\n"
        ));
    }
    std::fs::write(p.join("data/qa.jsonl"), lines).unwrap();
    let other = p.join("models/other-model");
    common::ok(
        h.path(),
        &[
            "model",
            "init-tiny",
            "-o",
            other.to_str().unwrap(),
            "--hidden",
            "32",
            "--seed",
            "7",
        ],
    );
    let run = p.join(".tunelab/runs/other-20260101-000000");
    let model = format!("model.path={}", other.display());
    let data = format!("data.train={}", p.join("data/qa.jsonl").display());
    common::ok(
        h.path(),
        &[
            "train",
            "tiny-demo",
            "--set",
            &model,
            "--set",
            &data,
            "--set",
            "train.max_steps=20",
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let cmd = format!(
        "cd /; TUNELAB_HOME={} TERM=xterm-256color {} {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab"),
        p.display()
    );
    let Some(t) = Tmux::start("pairing", &cmd) else {
        return;
    };
    t.wait("the tour", 60, &|s| s.contains("Welcome to tunelab"));
    t.keys("Escape");
    t.wait("the project's data", 60, &|s| s.contains("qa.jsonl"));
    t.keys("2");
    t.wait("the form on the demo model", 20, &|s| {
        s.contains("[2 Adapter]") && s.contains("tiny-model")
    });
    t.keys("4");
    t.wait("the Chat tab", 20, &|s| s.contains("[4 Chat]"));
    t.run(&["send-keys", "-t", "e2e", "-l", "What do bees make?"]);
    t.keys("Enter");
    let s = t.wait("a reply", 120, &|s| {
        s.contains("tokens in") || s.contains("cannot load") || s.contains("error")
    });
    assert!(!s.contains("cannot load") && !s.contains("error"), "{s}");
    assert!(s.contains("other-model (adapter A's base)"), "{s}");
    assert!(s.contains("adapter A other-20260101-000000/adapter"), "{s}");
    // Pin the demo model: the adapter is let go, both bases named.
    t.keys("Escape");
    t.keys("M");
    t.wait("the model finder", 20, &|s| {
        s.contains("chat model (pins it)")
    });
    t.run(&["send-keys", "-t", "e2e", "-l", "demo/tiny-model"]);
    t.keys("Enter");
    let s = t.wait("the adapter let go", 30, &|s| {
        s.contains("let go of adapter A")
    });
    assert!(s.contains("(pinned with M)"), "{s}");
    // Asking for it again is refused by name.
    t.keys("A");
    t.wait("the adapter picker", 20, &|s| {
        s.contains("other base: base other-model")
    });
    t.run(&["send-keys", "-t", "e2e", "-l", "other-2026"]);
    t.keys("Enter");
    let s = t.wait("the refusal", 20, &|s| s.contains("refused: adapter"));
    assert!(s.contains("adapter A none"), "{s}");
    t.keys("!");
    let log = t.wait("the message log", 20, &|s| s.contains(" messages "));
    let flat: String = log.split_whitespace().collect::<Vec<_>>().join("");
    assert!(
        flat.contains("wastrainedon")
            && flat.contains("other-model")
            && flat.contains("tiny-model"),
        "{log}"
    );
    t.keys("q");
    t.keys("q");
    t.wait("the workbench to exit", 20, &|s| s.contains("EXITED="));
    assert!(Path::new(&run)
        .join("adapter/adapter_config.json")
        .is_file());
}
