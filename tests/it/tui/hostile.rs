//! Text from data and models cannot break the frame. A hostile string (tabs, carriage
//! returns, escape sequences, zero-width and bidi characters, combining marks, emoji
//! sequences, U+FFFD, wide characters, C1 controls) goes through every pane that shows such
//! text; each screen is then replayed as a terminal would draw it (ratatui skips the cells
//! under a wide grapheme; the terminal advances by each code point's `wcwidth`), and every
//! row must be exactly as wide as the screen with every border where the layout put it.

use super::{app, home, settle};
use crate::common;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use serde_json::json;
use tunelab::runs::{RunDir, RunState, Status};
use tunelab::tui::action::Action;
use tunelab::tui::app::App;
use tunelab::tui::effect::Level;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

const HOSTILE: &str = "Arr!\tTAB CR\rX ESC\u{1b}[31mred BEL\u{7} ZW\u{200B}SP \u{202E}bidi e\u{301} \u{301}lone sun\u{2600}\u{FE0F} sci\u{1F469}\u{200D}\u{1F52C} bad\u{FFFD} 漢字 c1\u{85} del\u{7f} end";

const BORDERS: &str = "│─┌┐└┘├┤┬┴┼";

/// Replays row `y` as a terminal draws it and checks its width and its borders; `what`
/// names the screen in the failure.
fn check_row(buf: &Buffer, y: u16, what: &str) {
    let w = buf.area.width;
    // Column on the terminal → the character drawn there.
    let mut term: Vec<Option<char>> = vec![None; usize::from(w) + 8];
    let mut col = 0usize;
    let mut x = 0u16;
    let mut row = String::new();
    while x < w {
        let sym = buf[(x, y)].symbol();
        row.push_str(sym);
        for c in sym.chars() {
            assert!(
                !c.is_control(),
                "{what}: row {y} sends the control character {c:?} to the terminal: {row:?}"
            );
            let cw = c.width().unwrap_or(0);
            if cw > 0 {
                if let Some(slot) = term.get_mut(col) {
                    *slot = Some(c);
                }
            }
            col += cw;
        }
        // ratatui's backend skips the cells a wide grapheme covers.
        x += (sym.width() as u16).max(1);
    }
    assert_eq!(
        col,
        usize::from(w),
        "{what}: row {y} is {col} columns on a terminal, the screen is {w}: {row:?}"
    );
    for bx in 0..w {
        let b = buf[(bx, y)].symbol();
        if b.chars().count() == 1 && BORDERS.contains(b) {
            let c = b.chars().next();
            assert_eq!(
                term[usize::from(bx)],
                c,
                "{what}: row {y}: the border at column {bx} moved: {row:?}"
            );
        }
    }
}

fn check_screen(a: &mut App, what: &str) -> String {
    let (w, h) = (100, 32);
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| tunelab::tui::ui::draw(f, a)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..h {
        check_row(&buf, y, what);
        for x in 0..w {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

/// A run whose samples, events and error carry the hostile text.
fn hostile_run(data: &std::path::Path) {
    let run = RunDir::new(data.join("runs/hostile-20260101-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::write(run.config(), tunelab::config::PRESETS[0].1).unwrap();
    common::append_event_line(
        &run,
        &json!({"type": "start", "step": 0, "total_steps": 10, "trainable_params": 32768}),
    );
    for s in 1..=10u32 {
        common::append_event_line(
            &run,
            &json!({"type": "train", "step": s, "loss": 2.0, "lr": 0.01, "grad_norm": 0.8,
            "tokens_per_s": 7000.0, "epoch": 1.0, "elapsed": 1.0, "eta": 1.0}),
        );
    }
    common::append_event_line(
        &run,
        &json!({"type": "sample", "step": 10, "prompt": HOSTILE, "reply": HOSTILE}),
    );
    // An `eval.tasks` metric whose name carries the text: the Eval view's report.
    common::append_event_line(
        &run,
        &json!({"type": "eval", "step": 10, "eval_loss": 2.0, format!("generate/{HOSTILE}/pirate"): 0.5}),
    );
    common::append_event_line(
        &run,
        &json!({"type": "failed", "step": 10, "error": HOSTILE}),
    );
    run.write_status(&Status {
        state: RunState::Failed,
        pid: None,
        step: 10,
        total_steps: 10,
        error: Some(HOSTILE.into()),
        started: 1000.0,
        updated: 1010.0,
        last_loss: Some(2.0),
        best_eval_loss: None,
        format: 1,
        phase: None,
    })
    .unwrap();
}

/// The open Eval view as a finished comparison whose labels, keys, prompts and answers
/// are all the hostile text.
fn eval_done(a: &mut App) {
    use tunelab::eval::compare::{Comparison, SideResult};
    use tunelab::eval::tasks::{Answered, Measure, Outcome};
    use tunelab::tui::tabs::runs::eval::{answer_items, Phase};
    let side = |label: &str, value: f64| SideResult {
        label: label.into(),
        adapter: None,
        outcome: Outcome {
            measures: vec![Measure {
                key: format!("generate/{HOSTILE}/pirate"),
                value,
                stderr: Some(0.1),
                n: 1,
                proportion: false,
            }],
            answers: vec![Answered {
                task: format!("generate/{HOSTILE}"),
                question: HOSTILE.into(),
                prediction: HOSTILE.into(),
                reference: HOSTILE.into(),
            }],
        },
    };
    let c = Comparison {
        model: HOSTILE.into(),
        sides: vec![side("base", 0.0), side(HOSTILE, 1.0)],
    };
    let v = a.runs.eval.as_mut().expect("the Eval view is open");
    v.phase = Phase::Done {
        items: answer_items(&c),
        comparison: Box::new(c),
    };
}

#[test]
fn hostile_text_keeps_every_pane_inside_its_frame() {
    let h = home();
    let data = h.path().join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    hostile_run(&data);
    std::fs::write(
        data.join("hostile.jsonl"),
        format!(
            "{}\n",
            json!({"messages": [
                {"role": "system", "content": HOSTILE},
                {"role": "user", "content": HOSTILE},
                {"role": "assistant", "content": HOSTILE}
            ]})
        ),
    )
    .unwrap();
    let mut a = app(&h, "dark", false);
    settle(&mut a);
    // Data: the hostile file's record, then its tokens.
    a.handle(Action::TabData);
    for _ in 0..8 {
        if a.data
            .loaded
            .as_ref()
            .is_some_and(|l| l.path.ends_with("hostile.jsonl"))
        {
            break;
        }
        a.handle(Action::Right);
        settle(&mut a);
    }
    let screen = check_screen(&mut a, "Data records");
    assert!(
        screen.contains("Arr!    TAB"),
        "tabs become spaces:\n{screen}"
    );
    assert!(screen.contains("␛[31mred"), "ESC is shown:\n{screen}");
    a.handle(Action::TokenView);
    settle(&mut a);
    check_screen(&mut a, "Data tokens");
    // Train: samples and events of the hostile run.
    a.handle(Action::TabTrain);
    settle(&mut a);
    let screen = check_screen(&mut a, "Train");
    assert!(screen.contains("hostile-20260101"), "{screen}");
    // Runs: the run's details (sample, error).
    a.handle(Action::TabRuns);
    settle(&mut a);
    check_screen(&mut a, "Runs");
    // The Eval view: the run's report, then a comparison's table and answers.
    a.handle(Action::EvalView);
    settle(&mut a);
    let screen = check_screen(&mut a, "Eval report");
    assert!(screen.contains("generate/Arr!"), "{screen}");
    eval_done(&mut a);
    check_screen(&mut a, "Eval table");
    a.handle(Action::EvalAnswers);
    let screen = check_screen(&mut a, "Eval answers");
    assert!(screen.contains("answers 1/1"), "{screen}");
    a.handle(Action::Back);
    // Chat: a conversation, then the same reply side by side.
    a.handle(Action::TabChat);
    a.chat.history = vec![
        ("user".into(), HOSTILE.into()),
        ("assistant".into(), HOSTILE.into()),
    ];
    a.chat.status = format!("error: {HOSTILE}");
    check_screen(&mut a, "Chat");
    a.chat.pair = Some((tunelab::infer::Voice::Base, tunelab::infer::Voice::Adapter));
    a.chat.compare = Some((HOSTILE.into(), HOSTILE.into()));
    check_screen(&mut a, "Chat side by side");
    // The status line and the message log.
    a.apply::<()>(tunelab::tui::effect::Effect::Say(
        Level::Error,
        HOSTILE.into(),
    ));
    check_screen(&mut a, "status line");
    a.handle(Action::Messages);
    check_screen(&mut a, "message log");
    a.handle(Action::Back);
    // The synth dialog's progress, with a server's message.
    a.handle(Action::TabData);
    a.handle(Action::Synthesize);
    if let Some(d) = a.data.synth.as_mut() {
        d.progress.source = HOSTILE.into();
        d.progress.last = Some(HOSTILE.into());
        d.phase = tunelab::tui::tabs::data::synth::Phase::Running {
            id: 0,
            stop: Default::default(),
        };
    }
    check_screen(&mut a, "synth progress");
}

/// A message longer than the status line is cut there and says where to read it; the log
/// (`!`) shows it whole, wrapped, and `?` lists the key.
#[test]
fn long_messages_are_readable_in_full() {
    let h = home();
    let mut a = app(&h, "dark", false);
    let long = format!(
        "cannot load the model: adapter {}/runs/some-run-20260101-000000/checkpoints/step-100/adapter_config.json: No such file or directory (os error 2)",
        h.path().display()
    );
    a.apply::<()>(tunelab::tui::effect::Effect::Say(
        Level::Error,
        long.clone(),
    ));
    let screen = check_screen(&mut a, "status");
    let last = screen.lines().last().unwrap();
    assert!(last.contains("[!: full text]"), "{last}");
    a.handle(Action::Messages);
    let log = check_screen(&mut a, "log");
    // Wrapped over several rows, every character is there in order.
    let squeeze = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && !BORDERS.contains(*c))
            .collect()
    };
    assert!(
        squeeze(&log).contains(&squeeze(&long)),
        "the log does not hold the whole message:\n{log}"
    );
    a.handle(Action::Back);
    a.handle(Action::Help);
    let help = check_screen(&mut a, "help");
    assert!(help.contains("every message so far"), "{help}");
}
