//! The workbench against HTTP servers written in the synth tests (loopback, OpenAI-shaped
//! replies): the Data tab's Synthesize dialog writes records with live progress, reports
//! errors and stops on Esc; the Chat tab's remote column answers beside the local model
//! and shows an unreachable server's error in the column.

use super::{app, home, key, render, settle};
use crate::synth::{content, openai_ok, well_behaved, Server};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};
use tunelab::tui::action::Action;
use tunelab::tui::app::App;
use tunelab::tui::tabs::data::synth::{Field, Phase};
use tunelab::tui::tabs::Tab;

fn press(a: &mut App, code: KeyCode) {
    a.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn type_text(a: &mut App, text: &str) {
    for c in text.chars() {
        a.on_key(key(c));
    }
}

/// Empties the focused text field (ctrl-u deletes to the start; the cursor is at the end).
fn clear_field(a: &mut App) {
    a.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
}

/// Ticks the app until `done` holds, failing with `what` after a minute.
fn wait_for(a: &mut App, what: &str, done: impl Fn(&App) -> bool) {
    let t = Instant::now();
    while !done(a) {
        a.tick();
        assert!(t.elapsed() < Duration::from_secs(60), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The open dialog's form.
fn form(a: &mut App) -> &mut tunelab::tui::tabs::data::synth::Form {
    &mut a.data.synth.as_mut().expect("the dialog is open").form
}

fn dialog_done(a: &App) -> bool {
    a.data
        .synth
        .as_ref()
        .is_some_and(|d| matches!(d.phase, Phase::Done(_)))
}

const PROMPTS: [&str; 3] = [
    "What is a gradient?",
    "What is a loss?",
    "What is a learning rate?",
];

/// Typed into the form field by field, the dialog runs `data synth` against an
/// OpenAI-compatible server: three records in the file, 3/3 and the tokens in the report,
/// and the Data tab shows the new file.
#[test]
fn the_synthesize_dialog_writes_records_with_live_progress() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let server = Server::start(well_behaved());
    let root = h.path().join("data");
    std::fs::write(root.join("prompts.txt"), PROMPTS.join("\n") + "\n").unwrap();
    a.on_key(key('S'));
    assert!(a.data.synth.is_some(), "S opens the dialog");
    // provider: anthropic → openai
    a.on_key(key('l'));
    press(&mut a, KeyCode::Down);
    type_text(&mut a, &format!("{}/v1", server.base));
    press(&mut a, KeyCode::Down);
    type_text(&mut a, "test-model");
    press(&mut a, KeyCode::Down); // kind: sft
    press(&mut a, KeyCode::Down);
    type_text(&mut a, "prompts.txt");
    press(&mut a, KeyCode::Down);
    type_text(&mut a, "You are Captain Byte, a pirate.");
    press(&mut a, KeyCode::Down);
    clear_field(&mut a);
    type_text(&mut a, "3");
    press(&mut a, KeyCode::Down);
    clear_field(&mut a);
    type_text(&mut a, "pirate.jsonl");
    let form = render(&mut a, 120, 40, &h);
    assert!(form.contains("[openai]"), "{form}");
    assert!(form.contains("pirate.jsonl▏"), "{form}");
    press(&mut a, KeyCode::Enter);
    assert!(a.data.synth.as_ref().is_some_and(|d| d.running()));
    assert!(render(&mut a, 120, 40, &h).contains("synthesizing"));
    wait_for(&mut a, "the synthesis report", dialog_done);

    let out = root.join("pirate.jsonl");
    let d = a.data.synth.as_ref().unwrap();
    let Phase::Done(Ok(report)) = &d.phase else {
        panic!("no report: {}", render(&mut a, 120, 40, &h));
    };
    assert_eq!(report.output, out);
    assert_eq!(
        (
            report.records,
            report.written,
            report.failed,
            report.requests
        ),
        (3, 3, 0, 3)
    );
    assert_eq!(
        (d.progress.done, d.progress.target, d.progress.written),
        (3, 3, 3)
    );
    assert_eq!((report.tokens.input, report.tokens.output), (30, 15));
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("done: "), "{screen}");
    assert!(screen.contains("records   3/3"), "{screen}");
    assert!(screen.contains("tokens    30 in · 15 out"), "{screen}");

    // The file: one conversation per prompt, the persona's answer to it.
    let got: BTreeSet<(String, String)> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let m = &v["messages"];
            assert_eq!(
                (m[0]["role"].as_str(), m[1]["role"].as_str()),
                (Some("user"), Some("assistant"))
            );
            assert!(v["synth_id"].is_string(), "{v}");
            (
                m[0]["content"].as_str().unwrap().to_string(),
                m[1]["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = PROMPTS
        .iter()
        .map(|p| (p.to_string(), format!("Arr! Pirate answer to: {p}")))
        .collect();
    assert_eq!(got, want);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
    // Every request named the model and carried the persona.
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.path, "/v1/chat/completions");
        assert_eq!(s.body["model"], "test-model");
        assert!(s
            .system()
            .unwrap_or_default()
            .contains("You are Captain Byte, a pirate."));
    }

    // The Data tab lists and shows the new file once the dialog closes.
    settle(&mut a);
    press(&mut a, KeyCode::Enter);
    assert!(a.data.synth.is_none());
    let loaded = a.data.loaded.as_ref().expect("the output is shown");
    assert_eq!(
        (loaded.path.clone(), loaded.records.len()),
        (out.clone(), 3)
    );
    assert!(a.data.files.iter().any(|f| f.path == out));
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("pirate.jsonl · openai · record 1/3"),
        "{screen}"
    );
}

/// A bad seed file and a missing API key are messages in the dialog, and the form comes
/// back to fix them.
#[test]
fn the_synthesize_dialog_reports_bad_input() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::Synthesize);
    for (f, v) in [
        (Field::Provider, "openai"),
        (Field::BaseUrl, "http://127.0.0.1:9/v1"),
        (Field::SeedFile, "missing-topics.txt"),
        (Field::Persona, "a pirate"),
    ] {
        form(&mut a).set(f, v).unwrap();
    }
    press(&mut a, KeyCode::Enter);
    wait_for(&mut a, "the error", dialog_done);
    let Phase::Done(Err(e)) = &a.data.synth.as_ref().unwrap().phase else {
        panic!("no error: {}", render(&mut a, 120, 40, &h));
    };
    let missing = h.path().join("data/missing-topics.txt");
    assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("cannot synthesize: "), "{screen}");
    press(&mut a, KeyCode::Enter);
    assert!(matches!(
        a.data.synth.as_ref().unwrap().phase,
        Phase::Form { error: None }
    ));
    // A count that is not a number never starts a run.
    form(&mut a).set(Field::Count, "many").unwrap();
    press(&mut a, KeyCode::Enter);
    assert!(!a.data.synth.as_ref().unwrap().running());
    assert!(render(&mut a, 120, 40, &h).contains("count: \"many\" is not a number of records"));
    // Anthropic needs its key from the environment (checked when the CI shell has none).
    if std::env::var_os("ANTHROPIC_API_KEY").is_none() {
        std::fs::write(h.path().join("data/topics.txt"), "lifetimes\n").unwrap();
        form(&mut a).set(Field::Count, "2").unwrap();
        form(&mut a).set(Field::Provider, "anthropic").unwrap();
        form(&mut a).set(Field::BaseUrl, "").unwrap();
        form(&mut a).set(Field::SeedFile, "topics.txt").unwrap();
        press(&mut a, KeyCode::Enter);
        wait_for(&mut a, "the key error", dialog_done);
        let Phase::Done(Err(e)) = &a.data.synth.as_ref().unwrap().phase else {
            panic!("no error: {}", render(&mut a, 120, 40, &h));
        };
        assert!(e.starts_with("ANTHROPIC_API_KEY is not set"), "{e}");
        let screen = render(&mut a, 120, 40, &h);
        assert!(
            screen.contains("cannot synthesize: ANTHROPIC_API_KEY is not set"),
            "{screen}"
        );
    }
    // Esc closes the form.
    press(&mut a, KeyCode::Esc);
    press(&mut a, KeyCode::Esc);
    assert!(a.data.synth.is_none());
    assert_eq!(a.tab, Tab::Data);
}

/// Esc while a run goes on stops it: no request starts after it, the records written stay
/// whole in the file, and the report says it was stopped.
#[test]
fn esc_stops_a_synthesis_run_and_keeps_its_records() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let counter = AtomicUsize::new(0);
    let server = Server::start(move |req, _| {
        std::thread::sleep(Duration::from_millis(100));
        openai_ok(&content(req, &counter))
    });
    let root = h.path().join("data");
    std::fs::write(root.join("prompts.txt"), PROMPTS.join("\n") + "\n").unwrap();
    a.handle(Action::Synthesize);
    for (f, v) in [
        (Field::Provider, "openai"),
        (Field::BaseUrl, &format!("{}/v1", server.base)),
        (Field::Model, "test-model"),
        (Field::SeedFile, "prompts.txt"),
        (Field::Persona, "You are Captain Byte, a pirate."),
        (Field::Count, "40"),
        (Field::Output, "stopped.jsonl"),
    ] {
        form(&mut a).set(f, v).unwrap();
    }
    press(&mut a, KeyCode::Enter);
    wait_for(&mut a, "a first record", |a| {
        a.data
            .synth
            .as_ref()
            .is_some_and(|d| d.progress.written >= 1)
    });
    press(&mut a, KeyCode::Esc);
    assert!(a.data.synth.as_ref().unwrap().cancelling());
    let stopped_at = Instant::now();
    wait_for(&mut a, "the stopped run's report", dialog_done);
    assert!(
        stopped_at.elapsed() < Duration::from_secs(30),
        "stopping took {:?}",
        stopped_at.elapsed()
    );
    let Phase::Done(Ok(report)) = &a.data.synth.as_ref().unwrap().phase else {
        panic!("no report");
    };
    assert!(report.cancelled, "{report:?}");
    assert!(report.written >= 1 && report.written < 40, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    let text = std::fs::read_to_string(root.join("stopped.jsonl")).unwrap();
    assert_eq!(text.lines().count(), report.written);
    for l in text.lines() {
        serde_json::from_str::<Value>(l).unwrap();
    }
    // Nothing is asked for once the run has stopped.
    let asked = server.seen().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.seen().len(), asked);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("stopped: "), "{screen}");
}

/// `R` adds a column for an OpenAI-compatible server: its reply shows beside the local
/// model's, with the conversation so far sent along; an unreachable server's error shows in
/// the column; `R` removes it.
#[test]
fn the_chat_tab_answers_from_a_remote_column() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let server = Server::start(|req, _| {
        openai_ok(&format!(
            "Ahoy from the remote, {} turns",
            req.body["messages"].as_array().map_or(0, Vec::len)
        ))
    });
    a.handle(Action::TabChat);
    press(&mut a, KeyCode::Esc);
    a.chat.sampling.max_new_tokens = 8;
    a.on_key(key('R'));
    clear_field(&mut a);
    type_text(&mut a, &format!("{}/v1", server.base));
    assert!(render(&mut a, 120, 40, &h).contains("remote column: base URL"));
    press(&mut a, KeyCode::Enter);
    type_text(&mut a, "remote-model");
    press(&mut a, KeyCode::Enter);
    let remote = a.chat.remote.as_ref().expect("a remote column");
    assert_eq!(
        remote.title(),
        format!("remote remote-model · not streamed · {}/v1", server.base)
    );
    let ask = |a: &mut App, text: &str| {
        a.on_key(key('i'));
        type_text(a, text);
        press(a, KeyCode::Enter);
        wait_for(a, "the replies", |a| !a.chat.busy());
    };
    ask(&mut a, "Who are you?");
    let reply = |a: &App| {
        a.chat
            .remote
            .as_ref()
            .and_then(|r| r.turns.last())
            .and_then(|t| t.reply.clone())
    };
    assert_eq!(reply(&a), Some(Ok("Ahoy from the remote, 1 turns".into())));
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains("Ahoy from the remote, 1 turns"), "{screen}");
    assert!(screen.contains("┌ remote remote-model"), "{screen}");
    assert!(screen.contains("┌ base "), "{screen}");
    // The second prompt carries the first exchange.
    ask(&mut a, "And what do you teach?");
    assert_eq!(reply(&a), Some(Ok("Ahoy from the remote, 3 turns".into())));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].path, "/v1/chat/completions");
    assert_eq!(seen[1].body["model"], "remote-model");
    assert_eq!(seen[1].last_user(), "And what do you teach?");
    assert_eq!(seen[1].body["messages"][0]["content"], "Who are you?");
    assert_eq!(
        seen[1].body["messages"][1]["content"],
        "Ahoy from the remote, 1 turns"
    );

    // R removes the column; a server nobody listens on gives an error line in a new one.
    a.on_key(key('R'));
    assert!(a.chat.remote.is_none());
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    a.on_key(key('R'));
    clear_field(&mut a);
    type_text(&mut a, &format!("http://127.0.0.1:{closed}/v1"));
    press(&mut a, KeyCode::Enter);
    type_text(&mut a, "nobody");
    press(&mut a, KeyCode::Enter);
    ask(&mut a, "Anyone there?");
    let err = match reply(&a) {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(err.starts_with("gave up after 3 attempts"), "{err}");
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("error: gave up after 3 attempts"),
        "{screen}"
    );
    assert!(a.chat.history.last().is_some_and(|(r, _)| r == "assistant"));
}
