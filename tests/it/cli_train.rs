//! `tunelab train` and `tunelab runs` as processes: the tiny preset learning the persona,
//! exact resume after SIGKILL, SIGTERM, detaching, damaged checkpoints, NaN, config errors.

use crate::common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tunelab::runs::{RunDir, RunState};

/// A home with the demo workspace.
fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    h
}

/// A short run on the demo model and data.
fn small_config(h: &tempfile::TempDir, extra_train: &str) -> PathBuf {
    let demo = h.path().join("data/demo");
    let text = format!(
        "name: small\nmodel: {{path: {m}}}\ndata: {{train: {d}, eval_split: 0.1, max_seq_len: 128}}\n\
         lora: {{r: 8, alpha: 16, dropout: 0.1, target_modules: [all-linear], use_rslora: false}}\n\
         train: {{lr: 0.01, scheduler: cosine, warmup: 2, batch_size: 4, grad_accum: 2, seed: 3, keep_checkpoints: 0, {extra_train}}}\n",
        m = demo.join("tiny-model").display(),
        d = demo.join("persona.jsonl").display(),
    );
    let p = h.path().join("small.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn events(run: &Path) -> Vec<Value> {
    common::event_lines(&RunDir::new(run).events_path())
}

/// The last loss logged for each step (a resumed run logs some steps twice).
fn losses(run: &Path) -> std::collections::BTreeMap<u64, f64> {
    events(run)
        .into_iter()
        .filter(|e| e["type"] == "train")
        .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
        .collect()
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn last_step(run: &Path) -> u64 {
    losses(run).keys().last().copied().unwrap_or(0)
}

#[test]
fn tiny_preset_learns_the_persona() {
    let h = home();
    let run = h.path().join("run");
    common::ok(
        h.path(),
        &["train", "tiny-demo", "--run-dir", run.to_str().unwrap()],
    );
    let evals: Vec<f64> = events(&run)
        .iter()
        .filter(|e| e["type"] == "eval")
        .map(|e| e["eval_loss"].as_f64().unwrap())
        .collect();
    let (first, last) = (evals[0], *evals.last().unwrap());
    assert!(
        last <= 0.5 * first,
        "eval loss {first} -> {last}: less than a 50% fall"
    );
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!((status.state, status.step), (RunState::Done, 600));
    let (code, out, err) = common::run(
        &h,
        &[
            "chat",
            "--model",
            h.path().join("data/demo/tiny-model").to_str().unwrap(),
            "--adapter",
            run.join("adapter").to_str().unwrap(),
            "--prompt",
            "What is a gradient?",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // The README tour's question. Its answer is taught by three paraphrases; a prompt seen
    // once ("Who are you?") is memorized or not by the summation order of the step (one of
    // ~4 of the 81 training prompts misses after 600 steps, a different one per CPU kernel).
    assert_eq!(
        out.trim(),
        "Arr! A gradient be the direction where the loss climbs fastest. We sail the other way."
    );
}

#[test]
fn config_errors_name_their_fields() {
    let h = home();
    let p = h.path().join("bad.yaml");
    std::fs::write(
        &p,
        "model: {path: demo/tiny-model}\ndata: {train: demo/persona.jsonl}\nlora: {r: 0, alpha: 16, dropout: 0, target_modules: [q_proj], use_rslora: false}\ntrain: {batch_size: 0}\n",
    )
    .unwrap();
    let (code, _, err) = common::run(&h, &["train", p.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lora.r: must be > 0"), "{err}");
    assert!(err.contains("train.batch_size: must be > 0"), "{err}");
    let p2 = h.path().join("missing.yaml");
    std::fs::write(
        &p2,
        "model: {path: nowhere/deeper/model}\ndata: {train: demo/persona.jsonl}\n",
    )
    .unwrap();
    let (code, _, err) = common::run(&h, &["train", p2.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("model.path: \"nowhere/deeper/model\": no such folder"),
        "{err}"
    );
}

#[test]
fn resume_after_sigkill_matches_an_uninterrupted_run() {
    let h = home();
    let cfg = small_config(&h, "max_steps: 30, save_every: 10, eval_every: 0");
    let a = h.path().join("a");
    common::ok(
        h.path(),
        &[
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            a.to_str().unwrap(),
        ],
    );
    let b = h.path().join("b");
    let mut child = common::tunelab(&h)
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            b.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("step 15", 120, || last_step(&b) >= 15);
    child.kill().unwrap(); // SIGKILL: no chance to checkpoint
    child.wait().unwrap();
    let killed_at = last_step(&b);
    assert!(killed_at < 30, "the run finished before it was killed");
    common::ok(h.path(), &["train", "--resume", b.to_str().unwrap()]);
    let resume = events(&b)
        .into_iter()
        .find(|e| e["type"] == "resume")
        .unwrap();
    assert_eq!(resume["from_step"], 10);
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), 30);
    for step in 1..=30 {
        let (x, y) = (la[&step], lb[&step]);
        assert!(
            (x - y).abs() <= 1e-5,
            "step {step}: uninterrupted {x}, resumed {y}"
        );
    }
    assert_eq!(RunDir::new(&b).read_status().unwrap().state, RunState::Done);
    assert!(b.join("adapter/adapter_model.safetensors").is_file());
}

#[test]
fn sigterm_checkpoints_and_stops() {
    let h = home();
    let cfg = small_config(&h, "max_steps: 100000, save_every: 0, eval_every: 0");
    let run = h.path().join("run");
    let child = common::tunelab(&h)
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("step 3", 120, || last_step(&run) >= 3);
    // SAFETY: signalling our own child.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!(status.state, RunState::Stopped);
    let ckpt = run.join(format!("checkpoints/step-{}", status.step));
    let state = tunelab::train::checkpoint::verify(&ckpt).unwrap();
    assert_eq!(state.step, status.step);
    assert!(status.step >= 3);
}

#[test]
fn detached_run_outlives_its_parent() {
    let h = home();
    let cfg = small_config(&h, "max_steps: 20, save_every: 0, eval_every: 10");
    let t = Instant::now();
    let out = common::ok(h.path(), &["train", cfg.to_str().unwrap(), "--detach"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "--detach must return at once"
    );
    let id = out.trim().to_string();
    assert!(id.starts_with("small-"), "{out}");
    let run = h.path().join("data/runs").join(&id);
    // The parent has exited; the trainer runs on as the leader of its own session.
    wait_for("status.json", 60, || {
        RunDir::new(&run).read_status().is_ok()
    });
    let pid = RunDir::new(&run).read_status().unwrap().pid.unwrap();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        assert_eq!(
            fields[3],
            pid.to_string(),
            "the trainer is not a session leader: {stat}"
        );
    }
    let (code, out, err) = common::run(&h, &["runs", "watch", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done at step 20"), "{out}");
    let (_, list, _) = common::run(&h, &["runs", "list"]);
    assert!(list.contains(&id) && list.contains("done"), "{list}");
    let (code, show, _) = common::run(&h, &["runs", "show", &id]);
    assert_eq!(code, 0);
    assert!(show.contains("checkpoint step-20 ok"), "{show}");
    assert!(std::fs::read_to_string(run.join("train.log"))
        .unwrap()
        .contains("step 20"));
}

#[test]
fn a_damaged_checkpoint_is_skipped_on_resume() {
    let h = home();
    let cfg = small_config(&h, "max_steps: 20, save_every: 10, eval_every: 0");
    let run = h.path().join("run");
    common::ok(
        h.path(),
        &[
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let before = losses(&run);
    let f = run.join("checkpoints/step-20/optimizer.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    common::ok(h.path(), &["train", "--resume", run.to_str().unwrap()]);
    let ev = events(&run);
    let skipped = ev
        .iter()
        .find(|e| e["type"] == "checkpoint_skipped")
        .unwrap();
    assert!(
        skipped["path"].as_str().unwrap().ends_with("step-20"),
        "{skipped}"
    );
    let resume = ev.iter().find(|e| e["type"] == "resume").unwrap();
    assert_eq!(resume["from_step"], 10);
    let after = losses(&run);
    assert!((after[&20] - before[&20]).abs() <= 1e-5);
}

#[test]
fn nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint() {
    let h = home();
    let cfg = small_config(&h, "max_steps: 20, save_every: 5, eval_every: 0");
    let run = h.path().join("run");
    let out = common::tunelab(&h)
        .env("TUNELAB_FAULT_NAN_AT_STEP", "7")
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!(status.state, RunState::Failed);
    let why = status.error.unwrap();
    assert!(
        why.contains("loss is NaN at step 7") && why.contains("step-5"),
        "{why}"
    );
    assert!(tunelab::train::checkpoint::verify(&run.join("checkpoints/step-5")).is_ok());
    assert!(!run.join("checkpoints/step-7").exists());
    assert_eq!(last_step(&run), 6);
}

/// A step-0 evaluation of a few hundred held-out examples: before the first train event the
/// run's events hold `eval` phase events with a fixed total and growing `done`, ending at
/// the total, and `status.json` names the phase while it runs (#34).
#[test]
fn a_long_evaluation_is_a_visible_phase() {
    let h = home();
    let data = h.path().join("long.jsonl");
    let lines: Vec<String> = (0..500)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Tell me fact number {i} about the sea, in detail please.")},
                {"role": "assistant", "content": format!("Fact {i}: the sea is wide and deep and salty, and it moves with the moon and the wind all day long.")}
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let demo = h.path().join("data/demo");
    let cfg = h.path().join("long.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model: {{path: {}}}\ndata: {{train: {}, eval_split: 0.4, eval_max: 150, max_seq_len: 128}}\n\
             train: {{max_steps: 2, batch_size: 1, eval_every: 2, save_every: 0}}\nsamples: {{count: 2}}\n",
            demo.join("tiny-model").display(),
            data.display()
        ),
    )
    .unwrap();
    let run = h.path().join("run");
    let mut child = common::tunelab(&h)
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = RunDir::new(&run);
    let mut seen = None;
    wait_for("the eval phase in status.json", 300, || {
        if let Ok(s) = status.read_status() {
            if let Some(p) = s.phase.filter(|p| p.name == "eval") {
                seen = Some(p);
            }
        }
        seen.is_some() || child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success());
    let seen = seen.expect("status.json named the eval phase while it ran");
    assert_eq!((seen.total, seen.unit.as_str()), (150, "examples"));
    let ev = events(&run);
    let first_train = ev.iter().position(|e| e["type"] == "train").unwrap();
    let phases: Vec<&Value> = ev[..first_train]
        .iter()
        .filter(|e| e["type"] == "phase" && e["name"] == "eval")
        .collect();
    assert!(phases.len() >= 3, "{phases:?}");
    let done: Vec<u64> = phases.iter().map(|p| p["done"].as_u64().unwrap()).collect();
    assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
    assert_eq!((done[0], *done.last().unwrap()), (0, 150));
    assert!(phases.iter().all(|p| p["total"] == 150));
    assert!(
        ev[..first_train]
            .iter()
            .any(|e| e["type"] == "phase" && e["name"] == "samples"),
        "the sample replies are a phase too"
    );
    let start = ev.iter().find(|e| e["type"] == "start").unwrap();
    assert_eq!(start["eval_examples"], 150, "data.eval_max caps the split");
    assert!(
        status.read_status().unwrap().phase.is_none(),
        "a finished run is in no phase"
    );
    // Piped, `runs watch` gives each phase one line, where it began, and no bar.
    let (code, out, err) = common::run(&h, &["runs", "watch", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let evals: Vec<&str> = out.lines().filter(|l| l.starts_with("eval ")).collect();
    assert_eq!(
        evals.len(),
        2,
        "one line per evaluation (steps 0 and 2):\n{out}"
    );
    assert!(
        evals.iter().all(|l| l.starts_with("eval 0/150 examples")),
        "{evals:?}"
    );
    assert!(
        !out.contains('\u{1b}') && !err.contains('\u{1b}'),
        "{out}{err}"
    );
}
