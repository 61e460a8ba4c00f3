//! The workbench: snapshots of every tab and overlay (TestBackend + insta, 80×24 and
//! 120×40, and the monochrome theme), app tests driven by actions alone, and an end-to-end
//! run of the real binary in tmux.

use crate::common;

mod chat_follows;
mod eval_view;
mod grpo;
mod hostile;
mod phases;
mod queue;
mod remote;
mod tour;

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use tunelab::config::Method;
use tunelab::runs::{RunDir, RunState, Status};
use tunelab::tui::action::Action;
use tunelab::tui::app::{App, AppOptions, Workspace};
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
        phase: None,
    })
    .unwrap();
}

fn app(home: &tempfile::TempDir, theme: &str, with_run: bool) -> App {
    let data = home.path().join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    if with_run {
        fake_run(&data);
    }
    let ws = Workspace::new(data, env!("CARGO_BIN_EXE_tunelab").into());
    // No telemetry: machine-specific readings are pinned so snapshots are the same
    // everywhere.
    let mut app = App::with_options(
        ws,
        Theme::builtin(theme, Depth::TrueColor).unwrap(),
        Keymap::load(None).unwrap(),
        AppOptions::default(),
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

/// Selects `run` in the Runs tab, once the watcher lists it, and opens it (Enter).
fn open_from_runs_tab(app: &mut App, run: &RunDir) {
    settle(app);
    app.handle(Action::TabRuns);
    let i = app
        .run_list
        .iter()
        .position(|r| r.dir == run.root)
        .expect("the watcher lists the run");
    for _ in 0..i {
        app.handle(Action::Down);
    }
    app.handle(Action::Enter);
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
    let r_row = a
        .adapter
        .visible()
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

/// `train.report_to` in the Adapter form: Enter cycles through the trackers' combinations,
/// and the field's help says how.
#[test]
fn the_form_cycles_the_trackers() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabAdapter);
    let row = a
        .adapter
        .visible()
        .iter()
        .position(|f| f.path == "train.report_to")
        .unwrap();
    for _ in 0..row {
        a.handle(Action::Down);
    }
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("Enter cycles through none, tensorboard"),
        "{screen}"
    );
    use tunelab::config::Tracker::{Mlflow, Tensorboard};
    let mut seen = Vec::new();
    for _ in 0..4 {
        a.handle(Action::Enter);
        seen.push(a.adapter.config.train.report_to.clone());
    }
    assert_eq!(
        seen,
        [
            vec![Tensorboard],
            vec![Mlflow],
            vec![Tensorboard, Mlflow],
            vec![]
        ]
    );
    a.handle(Action::Enter);
    assert!(render(&mut a, 120, 40, &h).contains("train.report_to                tensorboard"));
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
    // The events pane shows the newest lines, so check the latest step
    // (the run may be several steps on by the time the screen is drawn).
    let last = a
        .train
        .view
        .as_ref()
        .unwrap()
        .train
        .points
        .last()
        .unwrap()
        .0 as usize;
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains(&format!("train  step {last:>5}  loss")),
        "step {last}: {screen}"
    );
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
    // `W` goes through the workspace's SFT files (the demo's among them) to it.
    for _ in 0..10 {
        a.handle(Action::SaveTarget);
        settle(&mut a);
        if a.chat.save_path == mine {
            break;
        }
    }
    assert_eq!(a.chat.save_path, mine);
    assert_eq!(a.chat.save_format, tunelab::data::Format::Alpaca);
    // A training dataset of the workspace needs a second `w` the first time.
    a.handle(Action::SaveExchange);
    settle(&mut a);
    assert_eq!(std::fs::read_to_string(&mine).unwrap().lines().count(), 1);
    assert!(
        a.message
            .as_ref()
            .is_some_and(|(_, m)| m.contains("press w again")),
        "{:?}",
        a.message
    );
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

/// Two adapters on one base answer side by side: a DPO run and the SFT run it started
/// from, each column the same greedy reply `tunelab chat --adapter` gives.
#[test]
fn chat_compares_two_adapters_side_by_side() {
    let h = home();
    let runs = h.path().join("data/runs");
    let train = |args: &[&str]| {
        let (code, _, err) = common::run_with_home(h.path(), args);
        assert_eq!(code, 0, "{err}");
    };
    let sft = runs.join("sft-20260101-000000");
    let dpo = runs.join("dpo-20260101-000001");
    train(&[
        "train",
        "tiny-demo",
        "--set",
        "train.max_steps=30",
        "--run-dir",
        sft.to_str().unwrap(),
    ]);
    let init = format!("dpo.init_adapter={}", sft.display());
    train(&[
        "train",
        "tiny-demo-dpo",
        "--set",
        "train.max_steps=30",
        "--set",
        &init,
        "--run-dir",
        dpo.to_str().unwrap(),
    ]);
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabChat);
    a.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    settle(&mut a);
    a.chat.sampling.max_new_tokens = 16;
    let label = |a: &App, v| a.chat.voice_label(v);
    use tunelab::infer::Voice;
    // A and B from the adapter picker: type to filter, Enter picks.
    let pick = |a: &mut App, action, name: &str| {
        a.handle(action);
        settle(a);
        for c in name.chars() {
            a.on_key(key(c));
        }
        a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    };
    pick(&mut a, Action::PickAdapter, "dpo-20260101-000001/adapter");
    pick(
        &mut a,
        Action::PickSecondAdapter,
        "sft-20260101-000000/adapter",
    );
    assert_eq!(label(&a, Voice::Adapter), "A dpo-20260101-000001/adapter");
    assert_eq!(label(&a, Voice::Second), "B sft-20260101-000000/adapter");
    // b cycles: base | A, base | B, A | B.
    let mut pairs = Vec::new();
    for _ in 0..3 {
        a.handle(Action::SideBySide);
        pairs.push(a.chat.pair);
    }
    assert_eq!(
        pairs,
        [
            Some((Voice::Base, Voice::Adapter)),
            Some((Voice::Base, Voice::Second)),
            Some((Voice::Adapter, Voice::Second)),
        ]
    );
    a.handle(Action::Compose);
    for c in "What is a gradient?".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let t = Instant::now();
    while a.chat.busy() {
        a.tick();
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no reply: {}",
            a.chat.status
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (left, right) = a.chat.compare.clone().unwrap();
    let cli = |adapter: &Path| {
        let model = h.path().join("data/demo/tiny-model");
        let (code, out, err) = common::run_with_home(
            h.path(),
            &[
                "chat",
                "--model",
                model.to_str().unwrap(),
                "--adapter",
                adapter.to_str().unwrap(),
                "--prompt",
                "What is a gradient?",
                "--max-new-tokens",
                "16",
            ],
        );
        assert_eq!(code, 0, "{err}");
        out.trim_end_matches('\n').to_string()
    };
    assert_eq!(left, cli(&dpo.join("adapter")), "column A");
    assert_eq!(right, cli(&sft.join("adapter")), "column B");
    let screen = render(&mut a, 120, 40, &h);
    let row = screen
        .lines()
        .find(|l| l.contains("┌ A dpo-20260101-000001/adapter "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains("┌ B sft-20260101-000000/adapter "), "{screen}");
    assert!(screen.contains("side by side: A | B"), "{screen}");
}

/// The Chat tab starts in its message field: typed letters are text, not commands (`W`
/// would switch the save target, `A` the adapter); Esc leaves the field and keys are
/// commands again.
#[test]
fn chat_starts_in_the_message_field() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabChat);
    let before = (a.chat.save_path.clone(), a.chat.adapter.clone());
    for c in "What WAS that?".chars() {
        a.on_key(key(c));
    }
    settle(&mut a);
    assert_eq!((a.chat.save_path.clone(), a.chat.adapter.clone()), before);
    assert_eq!(
        a.chat.input.as_ref().map(|(_, i)| i.value().to_string()),
        Some("What WAS that?".to_string())
    );
    assert!(render(&mut a, 80, 24, &h).contains("› What WAS that?▏"));
    a.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert!(a.chat.input.is_none());
    a.on_key(key('+'));
    assert_eq!(a.chat.sampling.temperature, 0.1, "keys are commands again");
    a.on_key(key('i'));
    assert!(a.chat.input.is_some());
    // Tab still switches tabs from inside the field.
    a.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    assert_eq!(a.tab, Tab::Runs);
}

/// tmux: the real binary in a pane, keys sent, the screen read back.
struct Tmux {
    sock: String,
}

impl Tmux {
    /// Starts `cmd` in a 120×40 pane; `None` (and a note) where tmux is missing outside CI.
    fn start(test: &str, cmd: &str) -> Option<Tmux> {
        if std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true requires tmux (.ci/run installs it)"
            );
            eprintln!("SKIPPED {test}: tmux is not installed");
            return None;
        }
        let t = Tmux {
            sock: format!("tunelab-{test}-{}", std::process::id()),
        };
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "120",
            "-y",
            "40",
            cmd,
        ]);
        Some(t)
    }

    fn run(&self, args: &[&str]) -> String {
        let mut v = vec!["-L", self.sock.as_str()];
        v.extend_from_slice(args);
        let out = std::process::Command::new("tmux")
            .args(&v)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "e2e", keys]);
        // A key sent right after Escape arrives in the same read and the terminal takes
        // both for one key (Alt-5): leave a gap after it.
        if keys == "Escape" {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait(&self, what: &str, secs: u64, cond: &dyn Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The step on the first line of the screen (`run … · step N/M`).
fn step_of(s: &str) -> u64 {
    s.lines()
        .next()
        .and_then(|l| l.split("step ").nth(1))
        .and_then(|x| x.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn end_to_end_in_tmux() {
    let h = home();
    let cmd = format!(
        "TUNELAB_HOME={} TERM=xterm-256color {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab")
    );
    let Some(t) = Tmux::start("e2e", &cmd) else {
        return;
    };
    // The first start shows the tour; any key closes it for good.
    t.wait("the tour", 60, &|s| s.contains("Welcome to tunelab"));
    t.keys("Escape");
    t.wait("the Data tab", 60, &|s| {
        s.contains("[1 Data]") && s.contains("persona.jsonl") && !s.contains("Welcome")
    });
    // The marker is written on a worker: give it a moment.
    let marker = h.path().join("state/tour-seen");
    let since = std::time::Instant::now();
    while !marker.is_file() && since.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(marker.is_file());
    t.keys("2");
    t.wait("the Adapter tab", 10, &|s| {
        s.contains("[2 Adapter]") && s.contains("lora.r")
    });
    t.keys("Tab");
    t.wait("the Train tab", 10, &|s| s.contains("[3 Train]"));
    t.keys("r");
    let s = t.wait("3 steps on the loss chart", 120, &|s| {
        step_of(s) >= 3 && s.contains("loss")
    });
    // The events pane keeps the newest lines only: any train line will do.
    assert!(
        s.lines()
            .any(|l| l.contains("train  step ") && l.contains("  loss ")),
        "{s}"
    );
    assert!(s.contains("dense base, hand-written backward"), "{s}");
    t.keys("q");
    let after = t.wait("the workbench to exit", 20, &|s| s.contains("EXITED="));
    assert!(after.contains("EXITED=0"), "{after}");
    assert!(
        !after.contains("[3 Train]"),
        "the alternate screen was left: {after}"
    );
    assert_eq!(
        t.run(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"])
            .trim(),
        "0",
        "alternate screen still on"
    );
    assert_eq!(
        t.run(&["display-message", "-p", "-t", "e2e", "#{cursor_flag}"])
            .trim(),
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
}

/// A user's own project: `tunelab DIR` lists its JSONL, the form trains on it, the run
/// lives in the project's `.tunelab/runs` (and in the global list), and the Train tab shows
/// the model's greedy replies to held-out prompts.
#[test]
fn end_to_end_on_a_project_folder() {
    let h = home();
    let project = tempfile::Builder::new()
        .prefix("myproject")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(project.path().join("data")).unwrap();
    let mut lines = String::new();
    for (q, a) in [
        ("What is the capital of France?", "Paris, of course."),
        ("What is two plus two?", "Four."),
        ("Name a primary colour.", "Red."),
        ("What do bees make?", "Honey."),
        ("Which planet is red?", "Mars."),
    ] {
        for k in 0..8 {
            lines.push_str(
                &json!({"messages": [
                    {"role": "user", "content": format!("{q} ({k})")},
                    {"role": "assistant", "content": a}
                ]})
                .to_string(),
            );
            lines.push('\n');
        }
    }
    std::fs::write(project.path().join("data/qa.jsonl"), lines).unwrap();
    let cmd = format!(
        "cd /; TUNELAB_HOME={} TERM=xterm-256color {} {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab"),
        project.path().display()
    );
    let Some(t) = Tmux::start("project", &cmd) else {
        return;
    };
    t.wait("the tour", 60, &|s| s.contains("Welcome to tunelab"));
    t.keys("Escape");
    t.wait("the project's dataset", 60, &|s| {
        s.contains("[1 Data]") && s.contains("qa.jsonl") && s.contains("What is the capital")
    });
    t.keys("2");
    t.wait("the form on the project's data", 20, &|s| {
        s.contains("[2 Adapter]") && s.contains("data/qa.jsonl")
    });
    t.keys("r");
    let s = t.wait("a sample reply in the Train tab", 180, &|s| {
        s.contains("samples · step 50") && s.contains("→")
    });
    assert!(s.contains("[3 Train]"), "{s}");
    t.keys("q");
    t.wait("the workbench to exit", 20, &|s| s.contains("EXITED="));
    // The run is the project's, and the global list finds it too.
    let runs = project.path().join(".tunelab/runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .next()
        .expect("a run in the project")
        .path();
    let run = RunDir::new(run);
    let cfg = tunelab::config::RunConfig::load(&run.config()).unwrap();
    assert!(
        cfg.data.train.ends_with("data/qa.jsonl"),
        "{}",
        cfg.data.train
    );
    let linked = h
        .path()
        .join("data/runs")
        .join(run.root.file_name().unwrap());
    assert_eq!(
        std::fs::canonicalize(&linked).unwrap(),
        std::fs::canonicalize(&run.root).unwrap()
    );
    let (code, out, err) = common::run_with_home(h.path(), &["runs", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&run.root.file_name().unwrap().to_string_lossy().to_string()),
        "{out}"
    );
    let (events, _) = tunelab::runs::read_events(&run.events_path(), 0).unwrap();
    assert!(events.iter().any(
        |e| matches!(&e.kind, tunelab::runs::EventKind::Sample { reply, .. } if !reply.is_empty())
    ));
    let _ = tunelab::runs::request_stop(&run);
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
    open_from_runs_tab(&mut a, &run);
    assert_eq!(a.tab, Tab::Train);
    settle(&mut a);
    let v = a.train.view.as_ref().unwrap();
    assert!(
        v.train.len() <= 4096 && v.train.len() >= 1024,
        "{}",
        v.train.len()
    );
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
    assert!(
        v.log.back().unwrap().contains("step 20001"),
        "{:?}",
        v.log.back()
    );
}

/// The model finder lists a Hugging Face cache's models with their architecture and size,
/// says which cannot be used, and picks one by fuzzy search into the form.
#[test]
fn the_model_finder_lists_a_hub_cache_and_picks_into_the_form() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let cache = h.path().join("hf/hub");
    let repo = cache.join("models--acme--tiny-chat");
    tunelab::model::tiny::init_tiny(
        &repo.join("snapshots/abc"),
        &tunelab::model::tiny::TinySpec::default(),
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc").unwrap();
    let gpt = cache.join("models--acme--old-gpt/snapshots/x");
    std::fs::create_dir_all(&gpt).unwrap();
    std::fs::write(gpt.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    a.ws.hf_cache = cache;
    a.handle(Action::TabAdapter);
    a.handle(Action::Down); // model.path
    a.handle(Action::Enter);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("model: workspace and Hugging Face cache"),
        "{screen}"
    );
    assert!(
        screen.contains("acme/tiny-chat") && screen.contains("hub cache"),
        "{screen}"
    );
    assert!(
        screen.contains("tiny-model") && screen.contains("workspace"),
        "{screen}"
    );
    assert!(
        screen.contains("acme/old-gpt") && screen.contains("unsupported"),
        "{screen}"
    );
    for c in "tinychat".chars() {
        a.on_key(key(c));
    }
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    settle(&mut a);
    assert_eq!(a.adapter.config.model.path, "acme/tiny-chat");
    assert!(a.adapter.finder.is_none());
    // The estimate follows the picked model (its config.json in the cache).
    assert!(render(&mut a, 120, 40, &h).contains("trainable  "));
}

/// Rendering details: a preference record's roles keep a gap before their text, the tour
/// is one screen, and the Runs tab shows how a sample prompt's answer changed.
#[test]
fn preference_records_samples_and_the_tour_render() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::Right); // persona_dpo.jsonl
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    // The prompt, then the chosen and rejected replies side by side.
    assert!(
        screen.contains("user        What is a gradient?"),
        "{screen}"
    );
    let row = screen
        .lines()
        .find(|l| l.contains("┌ chosen "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains("┌ rejected "), "{screen}");
    let row = screen
        .lines()
        .find(|l| l.contains("Arr! A gradient be the"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains("It is a concept in machine"), "{screen}");
    // The token view: the prompt's tokens above both completions, each trained in full.
    a.handle(Action::TokenView);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    let row = screen
        .lines()
        .find(|l| l.contains("┌ chosen · "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains("┌ rejected · "), "{screen}");
    assert!(screen.contains("trained · "), "{screen}");
    insta::assert_snapshot!("data_pair_tokens_120x40", screen);
    a.handle(Action::TokenView);
    // A run whose events carry sample replies.
    let run = RunDir::new(h.path().join("data/runs/samples-20260101-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::write(run.config(), tunelab::config::PRESETS[0].1).unwrap();
    for (step, reply) in [
        (0, "zzz qq"),
        (50, "Arr, a gradient"),
        (100, "Arr! A gradient be the way up."),
    ] {
        common::append_event_line(
            &run,
            &json!({"type": "sample", "step": step, "prompt": "What is a gradient?", "reply": reply, "time": 1.0}),
        );
    }
    run.write_status(&Status {
        state: RunState::Done,
        step: 100,
        total_steps: 100,
        ..Status::starting(2000.0)
    })
    .unwrap();
    settle(&mut a);
    a.handle(Action::TabRuns);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("sample  What is a gradient?"), "{screen}");
    assert!(screen.contains("step      0 → zzz qq"), "{screen}");
    assert!(
        screen.contains("step    100 → Arr! A gradient be the way up."),
        "{screen}"
    );
    // The Train tab shows the latest reply to each prompt.
    a.handle(Action::Enter);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("samples · step 100"), "{screen}");
    assert!(
        screen.contains("→ Arr! A gradient be the way up."),
        "{screen}"
    );
    // The first start's tour, once.
    let h2 = home();
    let data = h2.path().join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    let marker = h2.path().join("state/tour-seen");
    let mut t = App::with_options(
        Workspace::new(data, env!("CARGO_BIN_EXE_tunelab").into()),
        Theme::builtin("dark", Depth::TrueColor).unwrap(),
        Keymap::load(None).unwrap(),
        AppOptions {
            telemetry: false,
            tour: Some(marker.clone()),
        },
    );
    settle(&mut t);
    insta::assert_snapshot!("tour_80x24", render(&mut t, 80, 24, &h2));
    t.on_key(key('x'));
    settle(&mut t);
    assert!(marker.is_file());
    assert!(!render(&mut t, 80, 24, &h2).contains("Welcome"));
    assert_eq!(t.tab, Tab::Data, "the key only closed the tour");
}

/// A glaive tool-calling record in the Data tab: its definitions and calls in the record
/// view (as `data inspect` shows them), the trained `<tool_call>` in the token view.
#[test]
fn tool_calls_show_in_the_data_tab() {
    let Some(shared) = common::shared_datasets("tool_calls_show_in_the_data_tab") else {
        return;
    };
    let h = home();
    let mut a = app(&h, "dark", false);
    std::fs::copy(
        shared.join("glaive_toolcall_en_demo.json"),
        h.path().join("data/glaive.json"),
    )
    .unwrap();
    // A fresh list of files: the app is made again over the same workspace.
    let mut a2 = app(&h, "dark", false);
    std::mem::swap(&mut a, &mut a2);
    drop(a2);
    let i = a
        .data
        .files
        .iter()
        .position(|f| f.path.ends_with("glaive.json"))
        .expect("glaive.json is listed");
    for _ in 0..i {
        a.handle(Action::Right);
    }
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("tools       search_recipes"), "{screen}");
    assert!(screen.contains("→ call search_recipes("), "{screen}");
    insta::assert_snapshot!("data_glaive_120x40", screen);
    a.handle(Action::TokenView);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("<tool_call>"), "{screen}");
    insta::assert_snapshot!("data_glaive_tokens_120x40", screen);
}

/// Rated replies (KTO data) in the Data tab: the label and what each method does with it,
/// the completion in its label's colour in the token view; `u` on the file switches the
/// form to `train.method: kto` and says why, and back to sft on conversations.
#[test]
fn rated_data_shows_its_label_and_the_form_follows_it() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let find = |a: &App, name: &str| {
        a.data
            .files
            .iter()
            .position(|f| f.path.ends_with(name))
            .unwrap_or_else(|| panic!("{name} is listed"))
    };
    let (kto, sft) = (find(&a, "persona_kto.jsonl"), find(&a, "persona.jsonl"));
    let walk = |a: &mut App, from: usize, to: usize| {
        for _ in from.min(to)..from.max(to) {
            a.handle(if to > from {
                Action::Right
            } else {
                Action::Left
            });
        }
        settle(a);
    };
    let here = a.data.file;
    walk(&mut a, here, kto);
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("label       true · desirable: SFT and KTO learn from this reply"),
        "{screen}"
    );
    assert!(screen.contains("assistant (desirable)"), "{screen}");
    insta::assert_snapshot!("data_kto_120x40", screen);
    // The second record is the same prompt's bland answer, rated down.
    a.handle(Action::Down);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("label       false · undesirable"),
        "{screen}"
    );
    a.handle(Action::TokenView);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("It is a concept in machine learning."),
        "{screen}"
    );
    a.handle(Action::TokenView);

    assert_eq!(a.adapter.config.train.method, Method::Sft);
    a.handle(Action::UseDataset);
    settle(&mut a);
    assert_eq!(a.adapter.config.train.method, Method::Kto);
    let status = a.message.clone().map(|(_, m)| m).unwrap_or_default();
    assert!(status.contains("train.method is now kto"), "{status}");
    a.tab = Tab::Adapter;
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("data       kto · unpaired"), "{screen}");
    assert!(screen.contains("method     kto β0.1"), "{screen}");
    assert!(screen.contains("kto.undesirable_weight"), "{screen}");
    a.tab = Tab::Data;
    walk(&mut a, kto, sft);
    a.handle(Action::UseDataset);
    settle(&mut a);
    assert_eq!(a.adapter.config.train.method, Method::Sft);
}

/// The Runs tab exports the selected run (a q8_0 GGUF with its Modelfile, a LoRA GGUF) and
/// plots it, off the UI thread, and says what it wrote.
#[test]
fn the_runs_tab_exports_and_plots_a_run() {
    let h = home();
    let run = h.path().join("data/runs/sft-20260101-000000");
    common::ok(
        h.path(),
        &[
            "train",
            "tiny-demo",
            "--set",
            "train.max_steps=4",
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabRuns);
    settle(&mut a);
    for (action, file) in [
        (Action::ExportGguf, "model-q8_0.gguf"),
        (Action::ExportLora, "adapter.gguf"),
        (Action::PlotRuns, "curves.svg"),
    ] {
        a.handle(action);
        settle(&mut a);
        let path = run.join("export").join(file);
        assert!(path.is_file(), "{file}: {:?}", a.message);
        let (_, text) = a.message.clone().unwrap();
        assert!(text.contains(file), "{text}");
        assert_eq!(
            a.runs.exporting, None,
            "a finished export leaves no progress line"
        );
    }
    assert!(run.join("export/Modelfile").is_file());
    // While an export runs, its latest step or tensor count is under the list (#34).
    a.runs.exporting = Some("writing model-q8_0.gguf 120/272 tensors".into());
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("writing model-q8_0.gguf 120/272 tensors"),
        "{screen}"
    );
}

/// The Train tab while a run evaluates between steps (#34; the guide's capture): the step
/// gauge holds at the step, the phase gauge under it counts the examples with an ETA.
#[test]
fn the_train_tab_during_an_evaluation() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let run = RunDir::new(h.path().join("data/runs/persona-sft-20260102-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::write(run.config(), tunelab::config::PRESETS[0].1).unwrap();
    common::append_event_line(
        &run,
        &json!({"type": "start", "step": 0, "total_steps": 40, "trainable_params": 32768, "eval_examples": 150}),
    );
    for s in 1..=20u32 {
        let loss = 7.5 * (-(s as f64) / 12.0).exp() + 1.0;
        common::append_event_line(
            &run,
            &json!({"type": "train", "step": s, "loss": loss, "lr": 0.01, "grad_norm": 0.8,
            "tokens_per_s": 7000.0, "epoch": s as f64 / 10.0, "elapsed": s as f64 * 0.5, "eta": (40 - s) as f64 * 0.5}),
        );
        if s == 10 {
            common::append_event_line(
                &run,
                &json!({"type": "eval", "step": s, "eval_loss": loss + 0.3}),
            );
        }
    }
    let phase = tunelab::runs::event::Phase {
        step: 20,
        name: "eval".into(),
        done: 90,
        total: 150,
        unit: "examples".into(),
        elapsed: 6.3,
    };
    for done in [0, 30, 60, 90] {
        common::append_event_line(
            &run,
            &json!({"type": "phase", "step": 20, "name": "eval", "done": done, "total": 150,
            "unit": "examples", "elapsed": done as f64 * 0.07}),
        );
    }
    run.write_status(&Status {
        state: RunState::Running,
        pid: None,
        step: 20,
        total_steps: 40,
        last_loss: Some(2.4),
        phase: Some(phase),
        ..Status::starting(5.0)
    })
    .unwrap();
    open_from_runs_tab(&mut a, &run);
    settle(&mut a);
    assert_eq!(a.tab, Tab::Train);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("eval 90/150 examples"), "{screen}");
    insta::assert_snapshot!("train_phase_120x40", screen);
}

/// The Train tab watching an engine run (#30; the README's capture): the engine and its GPUs
/// in the chart's title, one memory gauge per GPU from the run's events.
#[test]
fn the_train_tab_watching_an_engine_run() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let run = RunDir::new(h.path().join("data/runs/llama-8b-trl-20260102-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::write(run.config(), tunelab::config::PRESETS[0].1).unwrap();
    common::append_event_line(
        &run,
        &json!({"type": "start", "step": 0, "total_steps": 600, "trainable_params": 41943040,
        "device": "cuda ×8", "engine": "TRL 1.16.0 · 8 GPUs · ZeRO-3"}),
    );
    let gpus = |s: u32| -> Vec<serde_json::Value> {
        (0..8u32)
            .map(|i| {
                json!({"index": i, "name": "NVIDIA H100 80GB HBM3",
                "used": (52u64 + u64::from(i % 3) + u64::from(s % 2)) << 30,
                "total": 80u64 << 30, "utilization": 91 + i % 7})
            })
            .collect()
    };
    for s in 1..=120u32 {
        let loss = 1.2 * (-(s as f64) / 80.0).exp() + 0.9;
        common::append_event_line(
            &run,
            &json!({"type": "train", "step": s, "total_steps": 600, "loss": loss, "lr": 1e-4,
            "grad_norm": 0.6, "tokens": 65536, "tokens_per_s": 41200.0, "epoch": s as f64 / 200.0,
            "elapsed": s as f64 * 1.6, "eta": (600 - s) as f64 * 1.6, "mean_token_accuracy": 0.61,
            "gpu_mem": 440u64 << 30, "gpu_util": 93, "gpus": gpus(s)}),
        );
        if s % 50 == 0 {
            common::append_event_line(
                &run,
                &json!({"type": "eval", "step": s, "eval_loss": loss + 0.05}),
            );
        }
    }
    run.write_status(&Status {
        state: RunState::Running,
        pid: None,
        step: 120,
        total_steps: 600,
        last_loss: Some(1.15),
        ..Status::starting(5.0)
    })
    .unwrap();
    open_from_runs_tab(&mut a, &run);
    settle(&mut a);
    assert_eq!(a.tab, Tab::Train);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("TRL 1.16.0 · 8 GPUs · ZeRO-3"), "{screen}");
    assert!(screen.contains(" 8 GPUs "), "{screen}");
    for i in 0..6 {
        assert!(screen.contains(&format!("GPU {i} ")), "GPU {i}: {screen}");
    }
    insta::assert_snapshot!("train_engine_120x40", screen);
}

/// An engine run's memory estimate in the Adapter form is per GPU and says how the GPUs
/// share it (#30): ZeRO-3 over 8 divides the weights and LoRA's state, each GPU holds its
/// share of the batch.
#[test]
fn the_adapter_form_estimates_an_engine_run_per_gpu() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabAdapter);
    settle(&mut a);
    // On one GPU (a CPU run would also count the packed second copy of the base).
    a.adapter.config.set_field("train.device", "cuda").unwrap();
    let whole = a.adapter.memory().expect("the demo model has an estimate");
    assert!(a.adapter.sharing().is_none());
    for (k, v) in [
        ("train.engine", "trl"),
        ("train.gpus", "8"),
        ("train.sharding", "zero3"),
        ("train.batch_size", "8"),
        ("train.grad_accum", "1"),
    ] {
        a.adapter.config.set_field(k, v).unwrap();
    }
    let one_gpu = {
        let mut c = a.adapter.config.clone();
        c.set_field("train.batch_size", "1").unwrap();
        c.set_field("train.gpus", "1").unwrap();
        c.set_field("train.sharding", "none").unwrap();
        c.set_field("train.engine", "tunelab").unwrap();
        c
    };
    let per = a.adapter.memory().unwrap();
    assert_eq!(per.weights, whole.weights.div_ceil(8));
    // The batch of 8 over 8 GPUs: one sequence each, as a one-sequence run's activations.
    let saved = std::mem::replace(&mut a.adapter.config, one_gpu);
    let single = a.adapter.memory().unwrap();
    a.adapter.config = saved;
    assert_eq!(per.activations, single.activations);
    assert_eq!(per.lora_state, whole.lora_state.div_ceil(8));
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("per GPU: ZeRO-3, weights and LoRA ÷ 8"),
        "{screen}"
    );
}

/// The Adapter form says what each evaluation costs (#34): the held-out count from the
/// dataset's records, `data.eval_split` and `data.eval_max`, and, once a run of the same
/// model has evaluated, the time at that run's pace.
#[test]
fn the_adapter_form_prices_an_evaluation() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabAdapter);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    // persona.jsonl's 86 records: ceil(86 × 0.1) = 9 held out.
    assert!(screen.contains("eval       9 examples each"), "{screen}");
    let run = RunDir::new(h.path().join("data/runs/tiny-demo-20260103-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    let yaml = serde_yaml::to_string(&a.adapter.config).unwrap();
    std::fs::write(run.config(), yaml).unwrap();
    common::append_event_line(
        &run,
        &json!({"type": "start", "step": 0, "total_steps": 4, "trainable_params": 32768}),
    );
    for done in [0, 4, 8, 20] {
        common::append_event_line(
            &run,
            &json!({"type": "phase", "step": 0, "name": "eval", "done": done, "total": 20,
            "unit": "examples", "elapsed": done as f64 * 0.5}),
        );
    }
    run.write_status(&Status {
        state: RunState::Done,
        step: 4,
        total_steps: 4,
        ..Status::starting(5.0)
    })
    .unwrap();
    settle(&mut a);
    // The form looks at the runs on its once-a-second tick.
    std::thread::sleep(Duration::from_millis(1100));
    a.tick();
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    // 9 examples at 0.5 s each.
    assert!(screen.contains("eval       9 ex · ≈4.5 s each"), "{screen}");
    a.adapter.config.set_field("data.eval_max", "4").unwrap();
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("eval       4 ex · ≈2.0 s each"), "{screen}");
}
