//! GRPO in the workbench: the Adapter form's reward list (add by kind, reweigh, remove, each
//! edit validated with errors naming the entry), the method cycling through grpo and staying
//! there on conversation data, and a GRPO run (a synthetic events.jsonl) in the Train tab
//! (mean reward, each function's mean and the completion length under the loss; the latest
//! completions by standing) and in the Runs tab's details (one prompt's completions over the
//! steps).

use super::{app, home, key, render, settle};
use crate::common;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use std::path::Path;
use tunelab::config::Method;
use tunelab::runs::{RunDir, RunState, Status};
use tunelab::tui::action::Action;
use tunelab::tui::app::App;
use tunelab::tui::tabs::adapter::FormRow;
use tunelab::tui::tabs::Tab;

fn press(a: &mut App, code: KeyCode) {
    a.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// Moves the form's cursor to `row`.
fn go_to(a: &mut App, row: FormRow) {
    let i = a
        .adapter
        .rows()
        .iter()
        .position(|r| *r == row)
        .unwrap_or_else(|| panic!("{row:?} is in the form"));
    a.handle(Action::Top);
    for _ in 0..i {
        a.handle(Action::Down);
    }
    assert_eq!(a.adapter.row(), row);
}

/// Loads presets (`L`) until the form holds `name`.
fn load_preset(a: &mut App, name: &str) {
    for _ in 0..tunelab::config::PRESETS.len() {
        if a.adapter.config.name.as_deref() == Some(name) {
            return;
        }
        a.handle(Action::LoadPreset);
    }
    panic!("no preset {name}");
}

fn summaries(a: &App) -> Vec<String> {
    a.adapter
        .config
        .grpo
        .rewards
        .iter()
        .map(|r| r.summary())
        .collect()
}

#[test]
fn the_adapter_form_adds_reweighs_and_removes_grpo_rewards() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabAdapter);
    load_preset(&mut a, "tiny-demo-grpo");
    settle(&mut a);
    assert_eq!(
        summaries(&a),
        [
            r"correct: answer ^\D*?(\d+) numeric ×1",
            r"digit_first: regex \s*\d.* ×0.5"
        ]
    );
    // The weight: a bad number names the entry and changes nothing.
    go_to(&mut a, FormRow::Reward(1));
    a.handle(Action::Edit);
    for _ in 0..3 {
        press(&mut a, KeyCode::Backspace);
    }
    a.on_key(key('x'));
    assert_eq!(
        a.adapter.edit_error.as_deref(),
        Some("grpo.rewards[1].weight: expected a number")
    );
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.adapter.config.grpo.rewards[1].weight, 0.5);
    press(&mut a, KeyCode::Backspace);
    for c in "inf".chars() {
        a.on_key(key(c));
    }
    assert_eq!(
        a.adapter.edit_error.as_deref(),
        Some("grpo.rewards[1].weight: must be a finite number")
    );
    for _ in 0..3 {
        press(&mut a, KeyCode::Backspace);
    }
    a.on_key(key('2'));
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.adapter.config.grpo.rewards[1].weight, 2.0);
    a.handle(Action::Back); // the refused Enter's message
                            // `+` opens the kind picker; a length reward goes in as its template.
    a.on_key(key('+'));
    assert_eq!(a.adapter.reward_kinds, Some(0));
    a.handle(Action::Down);
    a.handle(Action::Down);
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("▸ length  1 within 1–256 tokens"),
        "{screen}"
    );
    insta::assert_snapshot!("adapter_grpo_kinds_120x40", screen);
    press(&mut a, KeyCode::Enter);
    assert_eq!(a.adapter.row(), FormRow::Reward(2));
    assert_eq!(summaries(&a)[2], "length 1–256 tokens ×1");
    // A regex starts from its template; a broken pattern names the new entry.
    a.on_key(key('+'));
    press(&mut a, KeyCode::Enter);
    assert_eq!(
        a.adapter.editing.as_ref().map(|b| b.value().to_string()),
        Some(r"\s*\d+\s*".into())
    );
    a.on_key(key('('));
    let err = a.adapter.edit_error.clone().unwrap_or_default();
    assert!(
        err.starts_with("grpo.rewards[3].regex: is not a regex"),
        "{err}"
    );
    press(&mut a, KeyCode::Esc);
    assert_eq!(a.adapter.config.grpo.rewards.len(), 3, "nothing added");
    // A judge needs a provider the run knows.
    a.on_key(key('+'));
    a.handle(Action::Bottom);
    press(&mut a, KeyCode::Enter);
    for _ in 0.."anthropic".len() {
        press(&mut a, KeyCode::Backspace);
    }
    for c in "claude".chars() {
        a.on_key(key(c));
    }
    let err = a.adapter.edit_error.clone().unwrap_or_default();
    assert!(
        err.starts_with("grpo.rewards[3].judge.provider: unknown provider"),
        "{err}"
    );
    press(&mut a, KeyCode::Esc);
    // A command line is typed.
    a.on_key(key('+'));
    for _ in 0..4 {
        a.handle(Action::Down);
    }
    press(&mut a, KeyCode::Enter);
    for c in "./score.py --strict".chars() {
        a.on_key(key(c));
    }
    assert_eq!(a.adapter.edit_error, None);
    press(&mut a, KeyCode::Enter);
    assert_eq!(summaries(&a)[3], "command ./score.py --strict ×1");
    go_to(&mut a, FormRow::Reward(1));
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("grpo.rewards[1]                digit_first: regex"),
        "{screen}"
    );
    assert!(
        screen.contains("logged as rewards/digit_first/mean"),
        "{screen}"
    );
    insta::assert_snapshot!("adapter_grpo_rewards_120x40", screen);
    // `-` removes the selected reward; the last one stays (a GRPO run needs one).
    for _ in 0..3 {
        a.on_key(key('-'));
    }
    assert_eq!(summaries(&a), [r"correct: answer ^\D*?(\d+) numeric ×1"]);
    go_to(&mut a, FormRow::Reward(0));
    a.on_key(key('-'));
    assert_eq!(a.adapter.config.grpo.rewards.len(), 1);
    let (_, msg) = a.message.clone().unwrap();
    assert_eq!(msg, "grpo.rewards: must name at least one reward function");
}

/// `train.method` cycles through grpo; conversations keep a GRPO form on GRPO (it samples
/// from their prompts), and the rewards leave the form with the method.
#[test]
fn the_method_cycles_through_grpo_and_stays_on_conversations() {
    let h = home();
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabAdapter);
    let field = |a: &App| a.adapter.field().map(|f| f.path);
    go_to(
        &mut a,
        FormRow::Field(
            tunelab::config::FIELDS
                .iter()
                .find(|f| f.path == "train.method")
                .unwrap(),
        ),
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        a.handle(Action::Enter);
        seen.push(a.adapter.config.train.method);
    }
    assert_eq!(seen, [Method::Dpo, Method::Kto, Method::Grpo, Method::Sft]);
    assert_eq!(field(&a), Some("train.method"));
    assert!(!a.adapter.rows().contains(&FormRow::AddReward));
    a.on_key(key('+'));
    let (_, msg) = a.message.clone().unwrap();
    assert!(msg.contains("set train.method to grpo"), "{msg}");
    for _ in 0..3 {
        a.handle(Action::Enter);
    }
    assert_eq!(a.adapter.config.train.method, Method::Grpo);
    assert!(a.adapter.rows().contains(&FormRow::AddReward));
    // The GRPO preset trains on the demo's sums; the Data tab's `u` on the persona
    // conversations keeps it GRPO once the file's kind is known.
    load_preset(&mut a, "tiny-demo-grpo");
    settle(&mut a);
    a.handle(Action::TabData);
    let i = a
        .data
        .files
        .iter()
        .position(|f| f.path.ends_with("persona.jsonl"))
        .unwrap();
    for _ in a.data.file..i {
        a.handle(Action::Right);
    }
    settle(&mut a);
    a.handle(Action::UseDataset);
    settle(&mut a);
    assert!(a.adapter.config.data.train.ends_with("persona.jsonl"));
    let kind = a.adapter.data_kind.clone().unwrap();
    assert_eq!(kind.path, a.adapter.config.data.train);
    assert_eq!(kind.found.unwrap().1, tunelab::data::Kind::Sft);
    assert_eq!(a.adapter.config.train.method, Method::Grpo);
}

const PROMPTS: [&str; 3] = ["3 + 4 =", "2 + 7 =", "5 + 1 ="];

/// A finished 30-step GRPO run, as the trainer writes one: rewards rise, completions
/// shorten; `3 + 4 =` is the first group at every other step, so it recurs most.
fn grpo_run(data: &Path) -> RunDir {
    let run = RunDir::new(data.join("runs/sums-grpo-20260101-000000"));
    std::fs::create_dir_all(&run.root).unwrap();
    let preset = tunelab::config::PRESETS
        .iter()
        .find(|(n, _)| *n == "tiny-demo-grpo")
        .unwrap();
    std::fs::write(run.config(), preset.1).unwrap();
    let put = |e: serde_json::Value| common::append_event_line(&run, &e);
    put(
        json!({"type": "start", "step": 0, "total_steps": 30, "trainable_params": 32768,
        "method": "grpo", "compute": "dense base, hand-written backward"}),
    );
    for s in 1..=30u64 {
        let p = s as f64 / 30.0;
        let correct = (0.9 * p).min(1.0);
        let format = (0.3 + 0.7 * p).min(1.0);
        put(json!({"type": "train", "step": s, "total_steps": 30,
            "loss": 0.02 * ((s % 5) as f64 - 2.0), "lr": 0.01, "grad_norm": 0.4,
            "tokens_per_s": 3000.0, "epoch": p, "elapsed": s as f64 * 0.3,
            "eta": (30 - s) as f64 * 0.3,
            "reward": correct + 0.5 * format, "reward_std": 0.4 * (1.0 - p) + 0.05,
            "rewards/correct/mean": correct, "rewards/correct/std": 0.3,
            "rewards/format/mean": format, "rewards/format/std": 0.2,
            "frac_reward_zero_std": 0.8 - 0.5 * p,
            "completions/mean_length": 4.0 - 2.5 * p, "completions/min_length": 1.0,
            "completions/max_length": 4.0, "completions/clipped_ratio": 1.0 - p}));
        let prompt = if s % 2 == 0 {
            PROMPTS[0]
        } else {
            PROMPTS[1 + (s as usize / 2) % 2]
        };
        let right = (s / 8) as usize;
        let rewards: Vec<f64> = (0..4)
            .map(|k| {
                if k < right {
                    1.5
                } else if k == 3 {
                    0.5
                } else {
                    0.0
                }
            })
            .collect();
        let mean = rewards.iter().sum::<f64>() / 4.0;
        for (k, r) in rewards.iter().enumerate() {
            let reply = match *r {
                x if x > 1.0 => "7".to_string(),
                x if x > 0.0 => "12".to_string(),
                _ => format!("ic G{k} climbs"),
            };
            put(
                json!({"type": "sample", "step": s, "prompt": prompt, "reply": reply,
                "rewards": {"correct": if *r > 1.0 { 1.0 } else { 0.0 },
                    "format": if *r > 0.0 { 1.0 } else { 0.0 }, "reward": r},
                "advantage": r - mean}),
            );
        }
    }
    put(json!({"type": "done", "step": 30, "adapter": "adapter", "best_eval_loss": null}));
    run.write_status(&Status {
        state: RunState::Done,
        step: 30,
        total_steps: 30,
        ..Status::starting(3000.0)
    })
    .unwrap();
    run
}

#[test]
fn a_grpo_run_in_the_train_and_runs_tabs() {
    let h = home();
    let data = h.path().join("data");
    tunelab::workspace::Demo::new(&data).ensure().unwrap();
    grpo_run(&data);
    let mut a = app(&h, "dark", false);
    a.handle(Action::TabRuns);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(
        screen.contains("prompt  3 + 4 = · sampled at 15 steps"),
        "{screen}"
    );
    assert!(
        screen.contains("step     30  mean 1.25 │ 7 (1.50)"),
        "{screen}"
    );
    insta::assert_snapshot!("runs_grpo_120x40", screen);
    a.handle(Action::Enter);
    settle(&mut a);
    assert_eq!(a.tab, Tab::Train);
    let v = a.train.view.as_ref().unwrap();
    assert!(v.is_grpo());
    assert_eq!(v.grpo.reward.len(), 30);
    let names: Vec<&str> = v.grpo.functions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["correct", "format"]);
    assert_eq!(v.completions.0, 30);
    assert_eq!(v.completions.1.len(), 4);
    assert!(v.reward_series.is_empty(), "not a preference run");
    let screen = render(&mut a, 120, 40, &h);
    for want in [
        " reward: mean correct format ",
        " completion length (mean) ",
        "completions · step 30",
        "▲  1.50  7",
        "▼  0.50  12",
        "reward 1.400 ±0.050 · 30% flat groups",
        "train  step    29  loss 0.0400  reward 1.358  lr 1.00e-2",
    ] {
        assert!(screen.contains(want), "{want}: {screen}");
    }
    insta::assert_snapshot!("train_grpo_120x40", screen);
}
