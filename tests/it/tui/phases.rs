//! A watched run never looks frozen (#34): while the trainer evaluates before its first
//! step, the Train tab shows the phase with its progress under the step gauge, and the step
//! total from the start event.

use super::{home, Tmux};
use crate::common;

#[test]
fn the_train_tab_shows_a_long_evaluation_as_it_runs() {
    let h = home();
    common::ok(h.path(), &["demo"]);
    let data = h.path().join("long.jsonl");
    let lines: Vec<String> = (0..1600)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Tell me fact number {i} about the sea, in detail please.")},
                {"role": "assistant", "content": format!("Fact {i}: the sea is wide and deep and salty, and it moves with the moon and the wind all day long.")}
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let cfg = h.path().join("long.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: long\nmodel: {{path: {}}}\ndata: {{train: {}, eval_split: 0.45, eval_max: 700, max_seq_len: 128}}\n\
             train: {{max_steps: 7, batch_size: 1, eval_every: 7, save_every: 0}}\nsamples: {{count: 0}}\n",
            h.path().join("data/demo/tiny-model").display(),
            data.display()
        ),
    )
    .unwrap();
    let cmd = format!(
        "TUNELAB_HOME={} TERM=xterm-256color {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab")
    );
    let Some(t) = Tmux::start("phases", &cmd) else {
        return;
    };
    t.wait("the workbench", 60, &|s| s.contains("1 Data"));
    common::ok(h.path(), &["train", cfg.to_str().unwrap(), "--detach"]);
    t.keys("Escape");
    t.keys("5");
    t.wait("the run in the Runs tab", 60, &|s| s.contains("long-"));
    t.keys("Enter");
    let s = t.wait("the evaluation phase in the Train tab", 120, &|s| {
        s.contains("[3 Train]") && s.contains("eval ") && s.contains("/700 examples")
    });
    assert!(
        s.contains("step 0/7"),
        "the step total before the first step:\n{s}"
    );
    assert!(!s.contains("NaN"), "no NaN before the first loss:\n{s}");
    t.wait("the run to finish", 600, &|s| {
        s.lines().next().is_some_and(|l| l.contains("· done ·"))
    });
    // The progress box (the top rows) no longer shows the phase; the event log keeps its line.
    let done = t.screen();
    let top: Vec<&str> = done.lines().take(12).collect();
    assert!(
        !top.iter().any(|l| l.contains("/700 examples")),
        "a finished run shows no phase:\n{done}"
    );
    assert!(done.contains("phase  eval 0/700 examples"), "{done}");
}

/// The CLI's bars (#34): on a terminal `tunelab export` leaves a full bar per file it wrote
/// (its tensors counted), piped it writes its step lines alone, with no bar characters.
#[test]
fn cli_bars_draw_on_a_terminal_and_stay_out_of_pipes() {
    let h = home();
    let run = h.path().join("run");
    common::ok(
        h.path(),
        &[
            "train",
            "tiny-demo",
            "--set",
            "train.max_steps=2",
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let piped = h.path().join("piped");
    let (code, out, err) = common::run(
        &h,
        &[
            "export",
            run.to_str().unwrap(),
            "--gguf",
            "--gguf-lora",
            "-o",
            piped.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("writing ") && err.contains("model-f16.gguf"),
        "{err}"
    );
    for text in [&out, &err] {
        assert!(
            !text.contains('█') && !text.contains("tensors") && !text.contains('\u{1b}'),
            "no bar when piped:\n{text}"
        );
    }
    let cmd = format!(
        "TUNELAB_HOME={} TERM=xterm-256color {} export {} --gguf --gguf-lora -o {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab"),
        run.display(),
        h.path().join("tty").display()
    );
    let Some(t) = Tmux::start("cli-bars", &cmd) else {
        return;
    };
    let s = t.wait("the export to finish", 300, &|s| s.contains("EXITED="));
    assert!(s.contains("EXITED=0"), "{s}");
    let bar = |file: &str| {
        s.lines()
            .find(|l| l.contains(&format!("{file} tensors")))
            .unwrap_or_else(|| panic!("a bar for {file}:\n{s}"))
            .to_string()
    };
    // The tiny model's 2 layers: 28 LoRA tensors; 2 × 9 + 3 in the merged GGUF.
    let lora = bar("adapter.gguf");
    assert!(lora.contains("28/28") && lora.contains('█'), "{lora}");
    let model = bar("model-f16.gguf");
    assert!(model.contains("21/21") && model.contains('█'), "{model}");
}
