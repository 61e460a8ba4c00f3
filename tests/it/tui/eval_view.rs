//! The Runs tab's Eval view: a tiny run trained with `eval.tasks` (a multiple-choice file and
//! a persona regex on the held-out answers) is opened in tmux; `v` shows its own report from
//! its events, `r` scores the base against its adapter on a worker, and the table and the
//! answers carry the numbers `tunelab runs compare` prints for the same run. Without an
//! adapter, `r` says why on the status line.

use super::{app, home, render, settle, Tmux};
use crate::common;
use std::path::Path;
use std::time::{Duration, Instant};
use tunelab::runs::RunDir;
use tunelab::tui::action::Action;
use tunelab::tui::effect::Level;
use tunelab::tui::tabs::Tab;

const RUN: &str = "evaltiny-20260101-000000";

/// Six questions the tiny model may or may not know: the numbers only need to be real.
const MC: &str = r#"{"question": "What is the capital of France?", "choices": ["Paris", "Berlin", "Madrid", "London"], "answer": 0}
{"question": "What is 2 + 2?", "choices": ["3", "4", "5", "22"], "answer": 1}
{"question": "Which animal barks?", "choices": ["cat", "cow", "dog", "fish"], "answer": 2}
{"question": "What color is the sky on a clear day?", "choices": ["green", "red", "yellow", "blue"], "answer": 3}
{"question": "How many legs does a spider have?", "choices": ["eight", "six", "four", "ten"], "answer": 0}
{"question": "What do bees make?", "choices": ["milk", "honey", "silk", "wax paper"], "answer": 1}
"#;

/// Trains the demo's tiny model 60 steps on the persona data with `eval.tasks`, into
/// `data/runs/RUN`.
fn trained_run(home: &Path) -> RunDir {
    let data = home.join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    let mc = home.join("mc.jsonl");
    std::fs::write(&mc, MC).unwrap();
    let demo = data.join("demo");
    let config = format!(
        r#"name: evaltiny
model:
  path: {model}
data:
  train: {train}
  eval_split: 0.1
  max_seq_len: 256
  train_on: assistant
lora:
  r: 16
  alpha: 32
  dropout: 0.0
  target_modules: [all-linear]
train:
  method: sft
  max_steps: 60
  lr: 0.01
  scheduler: cosine
  warmup: 5
  batch_size: 8
  save_every: 30
  eval_every: 30
  dtype: f32
  device: cpu
eval:
  tasks:
    - bench: {mc}
    - generate: held_out
      max_new_tokens: 16
      regex: {{pirate: "(?i)\\barr"}}
"#,
        model = demo.join("tiny-model").display(),
        train = demo.join("persona.jsonl").display(),
        mc = mc.display(),
    );
    let cfg = home.join("evaltiny.yaml");
    std::fs::write(&cfg, config).unwrap();
    let run = RunDir::new(data.join("runs").join(RUN));
    common::ok(
        home,
        &[
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.root.to_str().unwrap(),
        ],
    );
    run
}

/// The screen row that starts (inside the border) with `key` and a space.
fn row<'a>(screen: &'a str, key: &str) -> Option<&'a str> {
    screen
        .lines()
        .map(|l| l.trim_start_matches('│'))
        .find(|l| l.starts_with(&format!("{key} ")))
}

/// The numbers of a table row after its key: base, adapter value, delta, interval.
fn numbers(line: &str) -> Vec<f64> {
    line.split(|c: char| c.is_whitespace() || "[],Δ│".contains(c))
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// `tunelab runs compare RUN --json`: the CLI's (base, adapter value, delta) for `key`.
fn cli_row(rows: &[serde_json::Value], key: &str) -> (f64, f64, f64) {
    let r = rows
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("{key} in {rows:?}"));
    let cell = &r["adapters"][0];
    (
        r["base"]["value"].as_f64().unwrap(),
        cell["value"].as_f64().unwrap(),
        cell["delta"].as_f64().unwrap(),
    )
}

/// The view's job, in process: the stop flag (`x`, Esc) set at the first generated answer
/// ends the comparison there, not after the side.
fn stops_within_one_answer(run: &RunDir) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tunelab::eval::compare::CompareError;
    let plan = tunelab::train::compare::Plan::prepare(std::slice::from_ref(run), None).unwrap();
    assert_eq!(plan.sides(), 2);
    let stop = AtomicBool::new(false);
    let mut answers = 0;
    let r = plan.run(
        &mut |p| {
            if p.task.starts_with("generate/") {
                answers += 1;
                stop.store(true, Ordering::Relaxed);
            }
        },
        &stop,
    );
    assert!(matches!(r, Err(CompareError::Stopped)), "{r:?}");
    assert_eq!(answers, 1, "one answer after the stop, none more");
}

#[test]
fn the_eval_view_compares_base_and_adapter_in_tmux() {
    let h = home();
    let run = trained_run(h.path());
    // What the run's own evaluations logged: step 0 (the base) and step 60.
    let (events, _) = tunelab::runs::read_events(&run.events_path(), 0).unwrap();
    let lines = tunelab::runs::report::task_lines(&events);
    let logged = |key: &str| {
        lines
            .iter()
            .find(|l| l.key == key)
            .unwrap_or_else(|| panic!("{key} on the run's eval events: {lines:?}"))
            .clone()
    };
    let acc = logged("bench/mc/acc");
    let pirate = logged("generate/held_out/pirate");
    assert_eq!((acc.first_step, acc.last_step), (0, 60));
    // The same comparison from the CLI, for the numbers the view must show.
    let json: serde_json::Value =
        serde_json::from_str(&common::ok(h.path(), &["runs", "compare", RUN, "--json"])).unwrap();
    let rows = json["rows"].as_array().unwrap().clone();
    let cli_pirate = cli_row(&rows, "generate/held_out/pirate");
    let cli_acc = cli_row(&rows, "bench/mc/acc");
    stops_within_one_answer(&run);

    let cmd = format!(
        "TUNELAB_HOME={} TERM=xterm-256color {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab")
    );
    let Some(t) = Tmux::start("evalview", &cmd) else {
        return;
    };
    t.wait("the tour", 60, &|s| s.contains("Welcome to tunelab"));
    t.keys("Escape");
    t.wait("the Data tab", 60, &|s| s.contains("[1 Data]"));
    t.keys("5");
    t.wait("the run in the Runs tab", 30, &|s| {
        s.contains("[5 Runs]") && s.contains(RUN) && s.contains("v eval")
    });
    // The run is the only one, so it is selected.
    t.keys("v");
    let s = t.wait("the run's own report", 30, &|s| {
        row(s, "  generate/held_out/pirate").is_some()
    });
    assert!(s.contains("step 0 (before training) → step 60"), "{s}");
    let report = |key: &str, first: f64, last: f64| {
        let r = row(&s, &format!("  {key}")).unwrap_or_else(|| panic!("{key}:\n{s}"));
        assert!(
            r.contains(&format!("{first:.3} →")) && r.contains(&format!("{last:.3}")),
            "{key} from {first} to {last}: {r}"
        );
    };
    report("bench/mc/acc", acc.first, acc.last);
    report("generate/held_out/pirate", pirate.first, pirate.last);
    assert!(
        s.contains("r or Enter scores them"),
        "nothing runs before r:\n{s}"
    );

    t.keys("r");
    let s = t.wait("the comparison's table", 120, &|s| {
        s.contains("METRIC") || s.contains("cannot") || s.contains("error")
    });
    assert!(s.contains("METRIC") && s.contains("base"), "{s}");
    assert!(s.contains(&format!("adapter 1  {RUN}/adapter")), "{s}");
    let table = |key: &str| {
        let r = row(&s, key).unwrap_or_else(|| panic!("{key} in the table:\n{s}"));
        assert!(r.contains('Δ'), "{r}");
        numbers(r)
    };
    let p = table("generate/held_out/pirate");
    assert!(p.len() >= 3, "{p:?}");
    let (base, adapter, delta) = (p[0], p[1], p[2]);
    assert!(
        adapter > base,
        "the adapter speaks like a pirate more often than the base: {p:?}"
    );
    assert_eq!(base, 0.0, "the base never says Arr: {p:?}");
    assert!(delta > 0.0, "{p:?}");
    for (got, want) in [
        (base, cli_pirate.0),
        (adapter, cli_pirate.1),
        (delta, cli_pirate.2),
    ] {
        assert!(
            (got - want).abs() < 1e-3,
            "the view and `runs compare` agree on the pirate rate: {p:?} against {cli_pirate:?}"
        );
    }
    // The base is step 0 of the run's own evaluations: the same number.
    assert!(
        (base - pirate.first).abs() < 1e-3,
        "{p:?} against {pirate:?}"
    );
    let a = table("bench/mc/acc");
    assert!(
        (a[0] - cli_acc.0).abs() < 1e-3 && (a[1] - cli_acc.1).abs() < 1e-3,
        "{a:?} against {cli_acc:?}"
    );
    assert!(
        (a[0] - acc.first).abs() < 1e-3,
        "the base's accuracy is the run's step-0 accuracy: {a:?} against {acc:?}"
    );
    assert!(row(&s, "bench/mc/acc_norm").is_some(), "{s}");

    t.keys("a");
    let s = t.wait("the answers", 20, &|s| s.contains(" answers 1/"));
    assert!(s.contains("prompt") && s.contains("reference"), "{s}");
    let after_label = |label: &str| -> String {
        s.lines()
            .map(|l| l.trim_matches(['│', ' ']))
            .skip_while(|l| *l != label)
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    let answer = after_label(&format!("{RUN}/adapter"));
    assert!(
        answer.contains("Arr"),
        "the adapter's answer: {answer:?}\n{s}"
    );
    assert!(
        !after_label("base").contains("Arr"),
        "the base's answer:\n{s}"
    );
    t.keys("j");
    t.wait("the next answer", 20, &|s| s.contains(" answers 2/"));
    t.keys("Escape");
    t.wait("the runs list again", 20, &|s| {
        s.contains("runs (1)") && !s.contains(" answers ")
    });
    t.keys("q");
    let after = t.wait("the workbench to exit", 20, &|s| s.contains("EXITED="));
    assert!(after.contains("EXITED=0"), "{after}");
}

/// A run without an adapter and without `eval.tasks`: the view says how to add them, and
/// `r` puts the full reason on the status line (and in the log) without blocking.
#[test]
fn the_eval_view_says_why_it_cannot_compare() {
    let h = home();
    let mut a = app(&h, "dark", true);
    // The fixture's run copies a preset; this one has no `eval.tasks`.
    let cfg = h
        .path()
        .join("data/runs/persona-sft-20260101-000000/config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let without = text.split("\neval:\n").next().unwrap().to_string() + "\n";
    std::fs::write(&cfg, without).unwrap();
    a.handle(Action::TabRuns);
    settle(&mut a);
    a.handle(Action::EvalView);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("no eval.tasks"), "{screen}");
    assert!(
        screen.contains("tunelab runs compare RUN --task FILE"),
        "{screen}"
    );
    a.handle(Action::EvalRun);
    let t = Instant::now();
    while a.runs.eval.as_ref().is_some_and(|v| v.running()) {
        settle(&mut a);
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the comparison never ended"
        );
    }
    let Some((level, text)) = a.message.clone() else {
        panic!("no message");
    };
    assert_eq!(level, Level::Error, "{text}");
    assert!(
        text.contains("persona-sft-20260101-000000") && text.contains("has no adapter yet"),
        "{text}"
    );
    assert!(a.log.iter().any(|l| l.text == text));
    // Esc goes back to the list.
    a.handle(Action::Back);
    assert!(a.runs.eval.is_none());
    assert_eq!(a.tab, Tab::Runs);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("runs (1)"), "{screen}");
}
