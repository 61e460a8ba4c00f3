//! The workbench: snapshots of every tab and overlay (TestBackend + insta, 80×24 and
//! 120×40, and the monochrome theme), app tests driven by actions alone, and an end-to-end
//! run of the real binary in tmux.

use crate::common;

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use tunelab::runs::{RunDir, RunState, Status};
use tunelab::tui::action::Action;
use tunelab::tui::app::{App, Workspace};
use tunelab::tui::keymap::Keymap;
use tunelab::tui::tabs::Tab;
use tunelab::tui::theme::{Depth, Theme};

/// A home with a fixed-length name (paths in the screen keep their width).
fn home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tlhome")
        .rand_bytes(6)
        .tempdir()
        .unwrap()
}

/// A finished run with known events, status and no timestamps.
fn fake_run(data: &Path) {
    let run = RunDir::new(data.join("runs/persona-sft-20260101-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    let text = tunelab::config::PRESETS[0].1;
    std::fs::write(run.config(), text).unwrap();
    common::append_event_line(
        &run,
        &json!({"type": "start", "step": 0, "total_steps": 40, "trainable_params": 32768}),
    );
    for s in 1..=40u32 {
        let loss = 7.5 * (-(s as f64) / 12.0).exp() + 1.0;
        common::append_event_line(
            &run,
            &json!({"type": "train", "step": s, "loss": loss, "lr": 0.01, "grad_norm": 0.8,
            "tokens_per_s": 7000.0, "epoch": s as f64 / 10.0, "elapsed": s as f64 * 0.05, "eta": (40 - s) as f64 * 0.05}),
        );
        if s % 10 == 0 {
            common::append_event_line(
                &run,
                &json!({"type": "eval", "step": s, "eval_loss": loss + 0.3}),
            );
        }
    }
    run.write_status(&Status {
        state: RunState::Done,
        pid: None,
        step: 40,
        total_steps: 40,
        error: None,
        started: 1000.0,
        updated: 1062.0,
        // Written as an older tunelab did: the run list reads the losses from the events.
        last_loss: None,
        best_eval_loss: None,
        format: 0,
    })
    .unwrap();
}

fn app(home: &tempfile::TempDir, theme: &str, with_run: bool) -> App {
    let data = home.path().join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    if with_run {
        fake_run(&data);
    }
    let ws = Workspace {
        data,
        exe: env!("CARGO_BIN_EXE_tunelab").into(),
    };
    // No telemetry: machine-specific readings are pinned so snapshots are the same
    // everywhere.
    let mut app = App::with_telemetry(
        ws,
        Theme::builtin(theme, Depth::TrueColor).unwrap(),
        Keymap::load(None).unwrap(),
        false,
    );
    settle(&mut app);
    app.adapter.budget = Some((24 << 30, 20 << 30, "RAM (no GPU)".into()));
    let m = &mut app.train.memory;
    m.label = "RAM (no GPU)".into();
    m.used = 6 << 30;
    m.total = 24 << 30;
    m.trainer_rss = Some(1 << 28);
    m.history = (0..40)
        .map(|i| (5u64 << 30) + (i % 7) * (1 << 27))
        .collect();
    app
}

/// Lets background work (file lists, datasets, tokenizers, run events) arrive.
fn settle(app: &mut App) {
    assert!(
        app.settle(Duration::from_secs(60)),
        "the workbench's background work did not finish"
    );
}

fn render(app: &mut App, w: u16, h: u16, home: &tempfile::TempDir) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| tunelab::tui::ui::draw(f, app)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..h {
        for x in 0..w {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s.replace(&home.path().display().to_string(), "<home>")
}

#[test]
fn snapshots_of_every_tab_and_overlay() {
    let h = home();
    let mut a = app(&h, "dark", true);
    for (w, ht) in [(80u16, 24u16), (120, 40)] {
        for tab in Tab::ALL {
            a.tab = tab;
            insta::assert_snapshot!(
                format!("{}_{w}x{ht}", tab.scope()),
                render(&mut a, w, ht, &h)
            );
        }
        a.tab = Tab::Data;
        a.handle(Action::TokenView);
        settle(&mut a);
        insta::assert_snapshot!(format!("data_tokens_{w}x{ht}"), render(&mut a, w, ht, &h));
        a.handle(Action::TokenView);
        a.handle(Action::Help);
        insta::assert_snapshot!(format!("help_{w}x{ht}"), render(&mut a, w, ht, &h));
        a.handle(Action::Back);
        a.handle(Action::Palette);
        for c in "run".chars() {
            a.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        insta::assert_snapshot!(format!("palette_{w}x{ht}"), render(&mut a, w, ht, &h));
        a.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    }
}

#[test]
fn monochrome_theme_snapshot_has_no_colours() {
    let h = home();
    let mut a = app(&h, "mono", true);
    a.tab = Tab::Train;
    insta::assert_snapshot!("train_mono_120x40", render(&mut a, 120, 40, &h));
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    term.draw(|f| tunelab::tui::ui::draw(f, &mut a)).unwrap();
    let buf = term.backend().buffer().clone();
    for cell in buf.content() {
        for c in [cell.fg, cell.bg] {
            assert!(
                !matches!(
                    c,
                    ratatui::style::Color::Rgb(..) | ratatui::style::Color::Indexed(_)
                ),
                "mono drew {c:?} at {:?}",
                cell.symbol()
            );
        }
    }
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

#[test]
fn actions_switch_tabs() {
    let h = home();
    let mut a = app(&h, "dark", false);
    assert_eq!(a.tab, Tab::Data);
    a.handle(Action::NextTab);
    assert_eq!(a.tab, Tab::Adapter);
    a.handle(Action::TabRuns);
    assert_eq!(a.tab, Tab::Runs);
    a.handle(Action::NextTab);
    assert_eq!(a.tab, Tab::Data);
    a.handle(Action::PrevTab);
    assert_eq!(a.tab, Tab::Runs);
    a.on_key(key('3'));
    assert_eq!(a.tab, Tab::Train);
    a.on_key(key('q'));
    assert!(a.quit);
}

#[test]
fn an_invalid_field_shows_its_error_inline_and_changes_nothing() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabAdapter);
    let r_row = tunelab::config::FIELDS
        .iter()
        .position(|f| f.path == "lora.r")
        .unwrap();
    for _ in 0..r_row {
        a.handle(Action::Down);
    }
    a.handle(Action::Edit);
    a.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
    a.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
    a.on_key(key('x'));
    assert_eq!(
        a.adapter.edit_error.as_deref(),
        Some("lora.r: expected a whole number")
    );
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("✗ lora.r: expected a whole number"),
        "{screen}"
    );
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(a.adapter.config.lora.r, 16, "the bad value is not applied");
    a.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
    a.on_key(key('0'));
    assert_eq!(
        a.adapter.edit_error.as_deref(),
        Some("lora.r: must be between 1 and 1024")
    );
    a.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
    a.on_key(key('3'));
    a.on_key(key('2'));
    assert_eq!(a.adapter.edit_error, None);
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(a.adapter.config.lora.r, 32);
    settle(&mut a);
    assert!(
        render(&mut a, 120, 40, &h).contains("trainable  65536"),
        "the count follows the form"
    );
}

#[test]
fn starting_a_run_streams_its_events_into_the_train_tab() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.adapter.config.set_field("train.max_steps", "30").unwrap();
    a.adapter
        .config
        .set_field("train.eval_every", "10")
        .unwrap();
    a.handle(Action::TabAdapter);
    a.handle(Action::StartRun);
    settle(&mut a);
    assert_eq!(a.tab, Tab::Train, "{:?}", a.message);
    let t = Instant::now();
    loop {
        a.tick();
        let v = a.train.view.as_ref().unwrap();
        if v.train.len() >= 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no train events: {:?}",
            a.message
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("train  step     1  loss"), "{screen}");
    // The run is its own process: it finishes whatever the app does.
    let run = a.train.view.as_ref().unwrap().run.clone();
    drop(a);
    let t = Instant::now();
    while run.read_status().ok().map(|s| s.state) != Some(RunState::Done) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the run did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn chat_replies_stream_from_the_generation_thread() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabChat);
    a.chat.sampling.max_new_tokens = 24;
    a.handle(Action::Compose);
    for c in "Who are you?".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert!(a.chat.busy(), "loading or answering");
    let mut lengths = std::collections::BTreeSet::new();
    let t = Instant::now();
    while a.chat.busy() {
        a.tick();
        if let Some((role, text)) = a.chat.history.last() {
            if role == "assistant" {
                lengths.insert(text.len());
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no reply: {}",
            a.chat.status
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (role, reply) = a.chat.history.last().unwrap().clone();
    assert_eq!(role, "assistant");
    assert!(!reply.is_empty());
    assert!(
        lengths.len() >= 2,
        "the reply arrived in pieces: {lengths:?}"
    );
    assert!(a.chat.status.contains("tokens in"), "{}", a.chat.status);
    // The same greedy reply as `tunelab chat` gives.
    let model = h.path().join("data/demo/tiny-model");
    let (code, out, err) = common::run_with_home(
        h.path(),
        &[
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Who are you?",
            "--max-new-tokens",
            "24",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim_end_matches('\n'), reply);
    a.handle(Action::SaveExchange);
    settle(&mut a);
    let saved = std::fs::read_to_string(h.path().join("data/saved/chat-exchanges.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(saved.lines().next().unwrap()).unwrap();
    assert_eq!(rec["messages"][0]["content"], "Who are you?");
    assert_eq!(rec["messages"][1]["content"], reply.as_str());
    // Another target, in its own format: an Alpaca JSONL in the workspace.
    let mine = h.path().join("data/mine.jsonl");
    std::fs::write(
        &mine,
        "{\"instruction\": \"Hi\", \"input\": \"\", \"output\": \"Hello\"}\n",
    )
    .unwrap();
    a.handle(Action::SaveTarget);
    settle(&mut a);
    a.handle(Action::SaveTarget);
    settle(&mut a);
    assert_eq!(a.chat.save_path, mine);
    assert_eq!(a.chat.save_format, tunelab::data::Format::Alpaca);
    a.handle(Action::SaveExchange);
    settle(&mut a);
    let text = std::fs::read_to_string(&mine).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["instruction"], "Who are you?");
    assert_eq!(last["output"], reply.as_str());
    // The only model in the demo workspace is the form's: picking keeps it.
    a.handle(Action::PickModel);
    settle(&mut a);
    assert_eq!(a.chat.model_spec, a.adapter.model_path());
    assert!(a.chat.model_override.is_none());
    // Sampling settings cycle.
    a.handle(Action::TopP);
    a.handle(Action::TopK);
    a.handle(Action::MaxTokens);
    assert_eq!(
        (
            a.chat.sampling.top_p,
            a.chat.sampling.top_k,
            a.chat.sampling.max_new_tokens
        ),
        (Some(0.9), Some(20), 128)
    );
}

/// tmux: the real binary in a pane, keys sent, the screen read back.
fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn end_to_end_in_tmux() {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true requires tmux (.ci/run installs it)"
        );
        eprintln!("SKIPPED end_to_end_in_tmux: tmux is not installed");
        return;
    }
    let h = home();
    let sock = format!("tunelab-e2e-{}", std::process::id());
    let cmd = format!(
        "TUNELAB_HOME={} TERM=xterm-256color {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab")
    );
    let t = |args: &[&str]| {
        let mut v = vec!["-L", sock.as_str()];
        v.extend_from_slice(args);
        tmux(&v)
    };
    t(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]);
    let screen = || t(&["capture-pane", "-p", "-t", "e2e"]);
    let wait = |what: &str, secs: u64, cond: &dyn Fn(&str) -> bool| -> String {
        let start = Instant::now();
        loop {
            let s = screen();
            if cond(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the Data tab", 60, &|s| {
        s.contains("[1 Data]") && s.contains("persona.jsonl")
    });
    t(&["send-keys", "-t", "e2e", "2"]);
    wait("the Adapter tab", 10, &|s| {
        s.contains("[2 Adapter]") && s.contains("lora.r")
    });
    t(&["send-keys", "-t", "e2e", "Tab"]);
    wait("the Train tab", 10, &|s| s.contains("[3 Train]"));
    t(&["send-keys", "-t", "e2e", "r"]);
    let step_of = |s: &str| -> u64 {
        s.lines()
            .next()
            .and_then(|l| l.split("step ").nth(1))
            .and_then(|x| x.split('/').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let s = wait("3 steps on the loss chart", 120, &|s| {
        step_of(s) >= 3 && s.contains("loss")
    });
    assert!(s.contains("train  step     3"), "{s}");
    t(&["send-keys", "-t", "e2e", "q"]);
    let after = wait("the workbench to exit", 20, &|s| s.contains("EXITED="));
    assert!(after.contains("EXITED=0"), "{after}");
    assert!(
        !after.contains("[3 Train]"),
        "the alternate screen was left: {after}"
    );
    assert_eq!(
        t(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"]).trim(),
        "0",
        "alternate screen still on"
    );
    assert_eq!(
        t(&["display-message", "-p", "-t", "e2e", "#{cursor_flag}"]).trim(),
        "1",
        "cursor hidden"
    );
    // The run goes on without the UI and finishes on its own.
    let root = h.path().join("data/runs");
    let run = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let run = RunDir::new(run);
    let start = Instant::now();
    loop {
        let st = run.read_status().unwrap();
        if st.state == RunState::Done {
            assert_eq!(st.step, 600);
            break;
        }
        assert!(st.state == RunState::Running, "{st:?}");
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the run did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    t(&["kill-server"]);
}

/// A long run's history is read and digested off the UI thread, arrives as one bounded view,
/// and later events still follow it.
#[test]
fn a_long_run_arrives_bounded_and_keeps_following() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let run = RunDir::new(h.path().join("data/runs/long-20260101-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    let mut text = String::new();
    for s in 1..=20_000u32 {
        text.push_str(&format!(
            "{{\"type\":\"train\",\"step\":{s},\"total_steps\":30000,\"loss\":{},\"lr\":0.001,\"grad_norm\":1.0,\"time\":1.0}}\n",
            2.0 + 1.0 / s as f64
        ));
    }
    std::fs::write(run.events_path(), text).unwrap();
    run.write_status(&Status {
        state: RunState::Running,
        pid: None,
        step: 20_000,
        total_steps: 30_000,
        last_loss: Some(2.0),
        ..Status::starting(5.0)
    })
    .unwrap();
    settle(&mut a);
    a.handle(Action::TabRuns);
    let i = a
        .run_list
        .iter()
        .position(|r| r.dir == run.root)
        .expect("the watcher lists the run");
    for _ in 0..i {
        a.handle(Action::Down);
    }
    a.handle(Action::Enter);
    assert_eq!(a.tab, Tab::Train);
    settle(&mut a);
    let v = a.train.view.as_ref().unwrap();
    assert!(v.train.len() <= 4096 && v.train.len() >= 1024, "{}", v.train.len());
    assert_eq!(v.train.points[0].0, 1.0);
    assert_eq!(v.last.as_ref().unwrap().step, 20_000);
    assert_eq!(v.log.len(), 200, "only the last lines are kept");
    common::append_event_line(
        &run,
        &json!({"type": "train", "step": 20_001, "loss": 1.5, "lr": 0.001, "time": 1.0}),
    );
    settle(&mut a);
    let v = a.train.view.as_ref().unwrap();
    assert_eq!(v.last.as_ref().unwrap().step, 20_001);
    assert!(v.log.back().unwrap().contains("step 20001"), "{:?}", v.log.back());
}
