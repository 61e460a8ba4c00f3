//! Chat pairs what fits: adapter A follows its run (a checkpoint while it trains, the final
//! adapter once done, the run's newest when a picked checkpoint is pruned), the model is the
//! base the adapter was trained on unless pinned with `M`, and adapters of another base are
//! refused by name (workbench, `tunelab chat`, `serve`).

use super::{app, home, key, render, settle};
use crate::common;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tunelab::infer::Voice;
use tunelab::runs::{RunDir, RunState};
use tunelab::tui::action::Action;
use tunelab::tui::app::App;

fn enter() -> KeyEvent {
    KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)
}

fn esc() -> KeyEvent {
    KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)
}

fn typed(a: &mut App, s: &str) {
    for c in s.chars() {
        a.on_key(key(c));
    }
}

/// Asks `prompt` in Chat and waits for the whole reply; the reply, or the status on error.
fn ask(a: &mut App, prompt: &str) -> Result<String, String> {
    a.handle(Action::TabChat);
    if a.chat.input.is_none() {
        a.handle(Action::Compose);
    }
    typed(a, prompt);
    a.on_key(enter());
    let t = Instant::now();
    while a.chat.busy() {
        a.tick();
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no reply: {}",
            a.chat.status
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    match a.chat.history.last() {
        Some((role, text)) if role == "assistant" => Ok(text.clone()),
        _ => Err(a.chat.status.clone()),
    }
}

/// Waits until the watcher has listed the runs again and Chat has read their adapters.
fn relist(a: &mut App, until: impl Fn(&App) -> bool) {
    let t = Instant::now();
    while !until(a) {
        settle(a);
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the adapter list did not follow: {:?}",
            a.chat
                .adapters
                .iter()
                .map(|x| x.label())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set_state(run: &RunDir, state: RunState, step: u64) {
    let mut st = run.read_status().unwrap();
    st.state = state;
    st.step = step;
    st.pid = None;
    run.write_status(&st).unwrap();
}

#[test]
fn chat_follows_its_run_and_never_loads_a_pruned_checkpoint() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let run = RunDir::new(h.path().join("data/runs/tiny-demo-20260101-000000"));
    common::ok(
        h.path(),
        &[
            "train",
            "tiny-demo",
            "--set",
            "train.max_steps=6",
            "--set",
            "train.save_every=2",
            "--set",
            "train.keep_checkpoints=3",
            "--run-dir",
            run.root.to_str().unwrap(),
        ],
    );
    // Put the run back to where it was at step 4: two checkpoints, no final adapter yet.
    let held = h.path().join("held");
    std::fs::create_dir_all(&held).unwrap();
    let step6 = run.checkpoints().join("step-6");
    std::fs::rename(&step6, held.join("step-6")).unwrap();
    std::fs::rename(run.adapter(), held.join("adapter")).unwrap();
    set_state(&run, RunState::Running, 4);
    relist(&mut a, |a| a.chat.adapters.len() == 2);
    assert_eq!(
        a.chat.voice_label(Voice::Adapter),
        "A tiny-demo-20260101-000000/step-4",
        "A follows the newest checkpoint while the run trains"
    );
    // Pick the older checkpoint by hand.
    a.handle(Action::TabChat);
    a.on_key(esc());
    a.handle(Action::PickAdapter);
    settle(&mut a);
    typed(&mut a, "step-2");
    a.on_key(enter());
    assert_eq!(
        a.chat.voice_label(Voice::Adapter),
        "A tiny-demo-20260101-000000/step-2"
    );
    // Training goes on: step 6 is saved, step 2 pruned (keep_checkpoints), the run ends.
    std::fs::rename(held.join("step-6"), &step6).unwrap();
    std::fs::remove_dir_all(run.checkpoints().join("step-2")).unwrap();
    std::fs::rename(held.join("adapter"), run.adapter()).unwrap();
    set_state(&run, RunState::Done, 6);
    relist(&mut a, |a| a.chat.adapters.len() == 3);
    assert_eq!(
        a.chat.voice_label(Voice::Adapter),
        "A tiny-demo-20260101-000000/adapter",
        "the pruned pick falls back to the run's newest"
    );
    let said = a
        .message
        .as_ref()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    assert!(
        said.contains("tiny-demo-20260101-000000/step-2 is gone")
            && said.contains("using tiny-demo-20260101-000000/adapter"),
        "{said}"
    );
    let reply = ask(&mut a, "What is a gradient?").expect("a reply from the adapter");
    assert!(!reply.is_empty());
    let loaded = a.chat.model.as_ref().unwrap();
    assert_eq!(loaded.adapter.as_deref(), Some(run.adapter().as_path()));
    // The same greedy reply as `tunelab chat` with the final adapter.
    let model = h.path().join("data/demo/tiny-model");
    let out = common::ok(
        h.path(),
        &[
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            run.adapter().to_str().unwrap(),
            "--prompt",
            "What is a gradient?",
            "--max-new-tokens",
            "128",
        ],
    );
    assert_eq!(out.trim_end_matches('\n'), reply);
}

/// A second tiny model of another shape, and a run trained on it.
fn other_base_run(home: &Path) -> (PathBuf, RunDir) {
    let other = home.join("data/other-model");
    common::ok(
        home,
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
    let run = RunDir::new(home.join("data/runs/other-20260101-000000"));
    let base = format!("model.path={}", other.display());
    common::ok(
        home,
        &[
            "train",
            "tiny-demo",
            "--set",
            &base,
            "--set",
            "train.max_steps=4",
            "--run-dir",
            run.root.to_str().unwrap(),
        ],
    );
    (other, run)
}

#[test]
fn chat_model_follows_its_adapter_and_refuses_other_bases() {
    let h = home();
    let (other, run) = other_base_run(h.path());
    let mut a = app(&h, "dark", false);
    let tiny = h.path().join("data/demo/tiny-model");
    assert_eq!(
        Path::new(&a.adapter.model_path()),
        tiny,
        "the form is on the demo model"
    );
    relist(&mut a, |a| !a.chat.adapters.is_empty());
    // The form says the demo model; the adapter says its own base, and wins.
    let reply = ask(&mut a, "Hi").expect("a reply, not a load error");
    assert!(!reply.is_empty());
    let loaded = a.chat.model.as_ref().unwrap();
    assert_eq!(loaded.spec, other.display().to_string());
    assert_eq!(loaded.adapter.as_deref(), Some(run.adapter().as_path()));
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("other-model (adapter A's base)"),
        "{screen}"
    );
    // Pinning the demo model lets the adapter go, naming both bases.
    a.on_key(esc());
    a.handle(Action::PickModel);
    settle(&mut a);
    typed(&mut a, "demo/tiny-model");
    a.on_key(enter());
    settle(&mut a);
    assert_eq!(
        a.chat.model_override.as_deref(),
        Some(tiny.to_str().unwrap())
    );
    assert!(a.chat.adapter.is_none(), "{:?}", a.chat.adapter);
    let said = a
        .message
        .as_ref()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    assert!(
        said.contains("other-model") && said.contains("tiny-model") && said.contains("trained on"),
        "{said}"
    );
    // Picking it again is refused by name; the picker marks it.
    a.handle(Action::PickAdapter);
    settle(&mut a);
    let marked = render(&mut a, 120, 40, &h);
    assert!(marked.contains("other base: base other-model"), "{marked}");
    typed(&mut a, "other-2026");
    a.on_key(enter());
    assert!(a.chat.adapter.is_none());
    let said = a
        .message
        .as_ref()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    assert!(said.starts_with("refused: adapter"), "{said}");
    assert!(
        said.contains("other-model") && said.contains("tiny-model"),
        "{said}"
    );
    // B offers only adapters of the pinned model's base: none here.
    a.handle(Action::PickSecondAdapter);
    settle(&mut a);
    let b = render(&mut a, 120, 40, &h);
    let items: Vec<&str> = b
        .lines()
        .skip_while(|l| !l.contains("adapter B: adapters of the model's base"))
        .take_while(|l| !l.contains("type to filter"))
        .collect();
    assert!(items.len() >= 2, "{b}");
    assert!(
        !items.iter().any(|l| l.contains("other-20260101-000000")),
        "{b}"
    );
    a.on_key(esc());
    // The base alone answers.
    let reply = ask(&mut a, "Hi").expect("the pinned base answers");
    assert!(!reply.is_empty());
    assert_eq!(a.chat.model.as_ref().unwrap().adapter, None);
}

#[test]
fn chat_and_serve_refuse_an_adapter_of_another_base() {
    let h = home();
    let (other, run) = other_base_run(h.path());
    let tiny = h.path().join("data/demo/tiny-model");
    let (code, _, err) = common::run_with_home(
        h.path(),
        &[
            "chat",
            "--model",
            tiny.to_str().unwrap(),
            "--adapter",
            run.adapter().to_str().unwrap(),
            "--prompt",
            "Hi",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("was trained on"), "{err}");
    assert!(err.contains(other.to_str().unwrap()), "{err}");
    assert!(err.contains(tiny.to_str().unwrap()), "{err}");
    assert!(
        err.contains("hidden 32") && err.contains("hidden 64"),
        "{err}"
    );
    let spec = tunelab::serve::models::ServeSpec {
        model: tiny.display().to_string(),
        adapters: vec![tunelab::serve::models::AdapterSpec::parse(
            run.adapter().to_str().unwrap(),
        )],
        template: "model".into(),
        ..Default::default()
    };
    let e = tunelab::serve::models::Registry::load(&spec)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("was trained on") && e.contains("other-model"),
        "{e}"
    );
    // On its own base it loads.
    let spec = tunelab::serve::models::ServeSpec {
        model: other.display().to_string(),
        ..spec
    };
    assert!(tunelab::serve::models::Registry::load(&spec).is_ok());
}

#[test]
fn a_project_keeps_its_own_files() {
    let h = home();
    let data = h.path().join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("data")).unwrap();
    std::fs::write(
        project.path().join("data/qa.jsonl"),
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}]}\n",
    )
    .unwrap();
    let p = tunelab::workspace::Project::open(project.path()).unwrap();
    let ws = tunelab::tui::app::Workspace::project(&p, data.clone(), "tunelab".into());
    assert_eq!(ws.outputs(), p.root.join("data"));
    let global = tunelab::tui::app::Workspace::new(data.clone(), "tunelab".into());
    assert_eq!(global.outputs(), data.join("saved"));
    let mut a = App::with_options(
        ws,
        tunelab::tui::theme::Theme::builtin("dark", tunelab::tui::theme::Depth::TrueColor).unwrap(),
        tunelab::tui::keymap::Keymap::load(None).unwrap(),
        Default::default(),
    );
    settle(&mut a);
    assert_eq!(a.chat.save_path, p.root.join("data/chat-exchanges.jsonl"));
    let screen = render(&mut a, 160, 40, &h);
    a.handle(Action::TabChat);
    let chat = render(&mut a, 160, 40, &h);
    assert!(
        chat.contains("data/chat-exchanges.jsonl (openai)"),
        "{chat}\n{screen}"
    );
    // The synth dialog writes into the project's data/.
    a.handle(Action::TabData);
    a.handle(Action::Synthesize);
    let synth = render(&mut a, 120, 40, &h);
    assert!(synth.contains("data/synth.jsonl"), "{synth}");
}
