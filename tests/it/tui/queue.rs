//! The Runs tab's queue and overlay chart (#31): the queue above the runs, with what each
//! waiting run waits for, reordered and emptied with keys; a sweep's curves in one chart
//! with a legend keyed by the fields its runs differ in, the best starred. A snapshot from
//! fake runs, and the real binary in tmux over a real sweep and a queue that cannot start.

use super::{app, home, render, settle, Tmux};
use crate::queue::{wait_until, Home};
use serde_json::json;
use std::path::Path;
use tunelab::runs::{RunDir, RunState, Status};
use tunelab::tui::action::Action;
use tunelab::tui::tabs::Tab;

/// A finished fake sweep run: `loss` falls to `floor`, eval loss at steps 0, 10, 20.
fn sweep_run(data: &Path, k: usize, r: u32, lr: f64, floor: f64) -> RunDir {
    let sweep = "demo-sweep-20260101-000000";
    let run = RunDir::new(data.join(format!("runs/{sweep}-{k}")));
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::write(
        run.config(),
        format!("name: demo\nmodel: {{path: m}}\ndata: {{train: d}}\nlora: {{r: {r}}}\ntrain: {{lr: {lr}}}\n"),
    )
    .unwrap();
    for s in 0..=20u32 {
        let loss = floor + 6.0 * (-(s as f64) / 6.0).exp();
        if s > 0 {
            crate::common::append_event_line(
                &run,
                &json!({"type": "train", "step": s, "loss": loss, "lr": lr}),
            );
        }
        if s % 10 == 0 {
            crate::common::append_event_line(
                &run,
                &json!({"type": "eval", "step": s, "eval_loss": loss + 0.25, "bench/quiz/acc": 1.0 / (1.0 + loss)}),
            );
        }
    }
    let members: Vec<_> = (1..=3)
        .map(|i| data.join(format!("runs/{sweep}-{i}")))
        .collect();
    std::fs::write(
        run.root.join("sweep.json"),
        serde_json::to_vec(&json!({
            "sweep": sweep, "index": k, "point": {"lora.r": r, "train.lr": lr},
            "metric": "eval_loss", "direction": "minimize", "members": members,
        }))
        .unwrap(),
    )
    .unwrap();
    run.write_status(&Status {
        state: RunState::Done,
        pid: None,
        step: 20,
        total_steps: 20,
        started: 2000.0 + k as f64,
        updated: 2010.0 + k as f64,
        last_loss: Some(floor),
        best_eval_loss: Some(floor + 0.25),
        ..Status::starting(0.0)
    })
    .unwrap();
    run
}

/// A run waiting in the queue (written as `tunelab queue add` writes one).
fn queued_run(data: &Path, id: &str, added: f64) -> serde_json::Value {
    let run = RunDir::new(data.join("runs").join(id));
    std::fs::create_dir_all(&run.root).unwrap();
    std::fs::write(run.config(), "model: {path: m}\ndata: {train: d}\n").unwrap();
    run.write_status(&Status {
        state: RunState::Queued,
        pid: None,
        started: added,
        updated: added,
        ..Status::starting(0.0)
    })
    .unwrap();
    json!({"id": id, "dir": run.root, "device": "cpu", "gpus": 0, "added": added})
}

#[test]
fn snapshot_of_the_queue_and_a_sweep_overlay() {
    let h = home();
    let data = h.path().join("data");
    sweep_run(&data, 1, 4, 0.01, 1.0);
    sweep_run(&data, 2, 8, 0.01, 0.6);
    sweep_run(&data, 3, 8, 0.001, 2.0);
    let entries = vec![
        queued_run(&data, "next-20260101-000001", 3000.0),
        queued_run(&data, "later-20260101-000002", 3001.0),
    ];
    std::fs::create_dir_all(data.join("queue")).unwrap();
    std::fs::write(
        data.join("queue/queue.json"),
        serde_json::to_vec(&json!({"format": 1, "entries": entries})).unwrap(),
    )
    .unwrap();
    let mut a = app(&h, "dark", false);
    a.tab = Tab::Runs;
    settle(&mut a);
    assert_eq!(a.queue.rows.len(), 2);
    // The list: the two queued runs (newest first), then the sweep's.
    a.handle(Action::Down);
    a.handle(Action::Down);
    a.handle(Action::Down);
    a.handle(Action::OverlaySweep);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    insta::assert_snapshot!("runs_queue_overlay_120x40", screen);
    assert!(
        screen.contains("queue · 2 waiting · no scheduler"),
        "{screen}"
    );
    // The best of the sweep (the lowest eval loss: run 2) is starred, first in the legend.
    let legend: Vec<&str> = screen.lines().filter(|l| l.contains("lora.r=")).collect();
    assert!(legend[0].contains("★ lora.r=8 train.lr=0.01"), "{screen}");
    assert_eq!(legend.len(), 3, "{screen}");
    assert!(
        screen.contains("loss (EMA) · sweep demo-sweep-20260101-000000"),
        "{screen}"
    );
    // `m` cycles the metric: eval_loss after loss, then an eval task's number.
    a.handle(Action::NextMetric);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains(" eval_loss · sweep"), "{screen}");
    a.handle(Action::NextMetric);
    settle(&mut a);
    let screen = render(&mut a, 120, 40, &h);
    assert!(screen.contains(" bench/quiz/acc · sweep"), "{screen}");
    a.handle(Action::Back);
    assert!(a.runs.overlay.is_none());
    // K on the second waiting run moves it first; x takes it off the queue.
    for _ in 0..3 {
        a.handle(Action::Up);
    }
    a.handle(Action::QueueEarlier);
    settle(&mut a);
    let order: Vec<&str> = a.queue.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        order,
        ["later-20260101-000002", "next-20260101-000001"],
        "{:?}",
        a.message
    );
    a.handle(Action::StopRun);
    settle(&mut a);
    let order: Vec<&str> = a.queue.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(order, ["next-20260101-000001"]);
    assert!(!data.join("runs/later-20260101-000002").exists());
}

#[test]
fn the_queue_and_a_sweep_overlay_in_tmux() {
    let h = Home::without_gpus();
    // Two real points on the CPU, trained to the end.
    let out = h.ok(&[
        "sweep",
        "tiny-demo",
        "--set",
        "train.max_steps=4",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.save_every=0",
        "--set",
        "eval.tasks=[]",
        "--set",
        "samples.count=0",
        "--grid",
        "lora.r=4,8",
    ]);
    let cpu = out[1..].to_vec();
    wait_until("the CPU sweep", 300, &mut || {
        cpu.iter().all(|id| h.state(id) == "done")
    });
    // Three runs on a GPU the machine does not have: they wait.
    let gpu = h.ok(&[
        "queue",
        "add",
        "tiny-demo",
        "tiny-demo",
        "tiny-demo",
        "--set",
        "train.device=cuda",
    ]);
    let cmd = format!(
        "TUNELAB_HOME={} TUNELAB_GPUS=0 TERM=xterm-256color {}; echo EXITED=$?; sleep 60",
        h.path().display(),
        env!("CARGO_BIN_EXE_tunelab")
    );
    let Some(t) = Tmux::start("queue", &cmd) else {
        return;
    };
    t.wait("the workbench", 60, &|s| s.contains("1 Data"));
    t.keys("Escape");
    t.keys("5");
    // Both panels drawn in the same frame (a frame can show the queue before the runs).
    let s = t.wait("the queue above the runs", 30, &|s| {
        s.contains("queue · 3 waiting")
            && s.contains("needs 1 GPUs; this machine has 0")
            && s.contains(" runs (")
    });
    let (queue_at, runs_at) = (
        s.lines()
            .position(|l| l.contains("queue · 3 waiting"))
            .unwrap(),
        s.lines().position(|l| l.contains(" runs (")).unwrap(),
    );
    assert!(queue_at < runs_at, "{s}");
    // The newest run is the last one queued (#3): K moves it to #2, x takes it off.
    t.keys("K");
    t.wait("the run moved up", 10, &|s| {
        s.lines()
            .any(|l| l.contains("#2") && l.contains(&gpu[2][gpu[2].len() - 10..]))
    });
    let order: Vec<String> = h.queue()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, [gpu[0].clone(), gpu[2].clone(), gpu[1].clone()]);
    t.keys("x");
    t.wait("the run off the queue", 10, &|s| {
        s.contains("queue · 2 waiting")
    });
    // The sweep's curves, keyed by the field its runs differ in, the best starred.
    t.keys("G");
    t.keys("s");
    let s = t.wait("the overlay", 30, &|s| s.contains("loss (EMA) · sweep"));
    assert!(s.contains("lora.r=4") && s.contains("lora.r=8"), "{s}");
    assert!(s.contains("★ lora.r="), "{s}");
    assert!(s.contains("ranked by best eval_loss"), "{s}");
    t.keys("m");
    t.wait("the eval loss drawn", 30, &|s| {
        s.contains(" eval_loss · sweep")
    });
    // Q on the Adapter form queues its run; the CPU is free, so the scheduler starts it.
    t.keys("Escape");
    t.keys("2");
    t.wait("the Adapter tab", 10, &|s| s.contains("[2 Adapter]"));
    t.keys("Q");
    let s = t.wait("the form queued", 30, &|s| s.contains("queued tiny-demo-"));
    assert!(s.contains("(#3)"), "{s}");
    let id = h.queue()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .find(|id| !gpu.contains(id))
        .expect("the form's run in the queue");
    wait_until("the form's run to start", 120, &mut || {
        h.state(&id) == "running"
    });
    h.ok(&["runs", "stop", &id, "--wait", "120"]);
    assert_eq!(h.state(&id), "stopped");
    t.keys("q");
    t.wait("the workbench to exit", 20, &|s| s.contains("EXITED="));
    for id in &[gpu[0].clone(), gpu[1].clone()] {
        h.ok(&["queue", "remove", id]);
    }
    wait_until("the scheduler to exit", 30, &mut || h.scheduler().is_none());
}
