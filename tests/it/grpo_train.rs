//! GRPO runs end to end on the demo: the tiny preset raises its mean reward, a run killed
//! with SIGKILL and resumed draws the same completions and logs the same losses (a
//! generation batch in reuse travels in the checkpoint), and a reward command that crashes,
//! hangs or prints garbage fails the step with a message naming the command and the line.

use crate::common;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tunelab::runs::RunDir;

fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    h
}

fn events(run: &Path) -> Vec<Value> {
    common::event_lines(&RunDir::new(run).events_path())
}

fn of_type<'a>(ev: &'a [Value], t: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["type"] == t).collect()
}

/// A GRPO run on the demo sums with `extra` appended (YAML).
fn config(h: &tempfile::TempDir, extra: &str) -> PathBuf {
    let demo = h.path().join("data/demo");
    let text = format!(
        "name: g\nmodel: {{path: {m}}}\ndata: {{train: {d}, max_prompt_len: 64}}\n\
         lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [all-linear]}}\n{extra}",
        m = demo.join("tiny-model").display(),
        d = demo.join("sums.jsonl").display(),
    );
    let p = h.path().join("grpo.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// `tunelab train tiny-demo-grpo`: the mean reward of the last tenth of steps beats the
/// first tenth's by more than 0.1, with TRL's metric names on every train event and sampled
/// completions (with their rewards) in the events.
#[test]
fn tiny_demo_grpo_raises_the_mean_reward() {
    let h = home();
    let run = h.path().join("run");
    common::ok(
        h.path(),
        &[
            "train",
            "tiny-demo-grpo",
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let ev = events(&run);
    let train = of_type(&ev, "train");
    assert_eq!(train.len(), 150);
    for key in [
        "reward",
        "reward_std",
        "rewards/correct/mean",
        "rewards/digit_first/std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "clip_ratio/region_mean",
        "generation/tokens_per_s",
    ] {
        assert!(train[0].get(key).is_some(), "{key} missing: {}", train[0]);
    }
    let rewards: Vec<f64> = train
        .iter()
        .map(|e| e["reward"].as_f64().unwrap())
        .collect();
    let k = rewards.len() / 10;
    let (first, last) = (mean(&rewards[..k]), mean(&rewards[rewards.len() - k..]));
    assert!(last > first + 0.1, "mean reward {first:.3} → {last:.3}");
    let samples: Vec<&Value> = of_type(&ev, "sample")
        .into_iter()
        .filter(|s| s.get("rewards").is_some())
        .collect();
    assert_eq!(samples.len(), 150 * 4, "log_completions 4 a step");
    let s = samples.last().unwrap();
    assert!(
        s["rewards"]["reward"].is_number() && s["advantage"].is_number(),
        "{s}"
    );
    assert!(s["prompt"].as_str().unwrap().ends_with(" ="), "{s}");
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Per step: the loss, and the sampled completions in order (a resumed run logs some steps
/// twice; the last wins).
fn trace(run: &Path) -> std::collections::BTreeMap<u64, (f64, Vec<String>)> {
    let mut out = std::collections::BTreeMap::new();
    let mut pending: Vec<String> = Vec::new();
    for e in events(run) {
        if e["type"] == "sample" && e.get("rewards").is_some() {
            pending.push(e["reply"].as_str().unwrap().to_string());
        }
        if e["type"] == "train" {
            // Completions are written after their step's train event.
            pending.clear();
            out.insert(
                e["step"].as_u64().unwrap(),
                (e["loss"].as_f64().unwrap(), Vec::new()),
            );
        }
        if let Some((_, v)) = out.values_mut().last() {
            v.append(&mut pending);
        }
    }
    out
}

/// SIGKILL mid-run with each generation batch reused for two steps and a checkpoint in the
/// middle of one: `--resume` samples the same completions and logs the same losses as the
/// uninterrupted run.
#[test]
fn resume_after_sigkill_draws_the_same_completions() {
    let h = home();
    let cfg = config(
        &h,
        "train: {method: grpo, max_steps: 14, lr: 0.01, batch_size: 16, grad_accum: 2, seed: 5, save_every: 5, eval_every: 0}\n\
         grpo: {num_generations: 4, max_completion_length: 3, num_iterations: 2, beta: 0.04, log_completions: 8,\n\
           rewards: [{name: digit_first, regex: '\\s*\\d.*'}, {answer: {extract: '^\\D*?(\\d+)'}}]}\n",
    );
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
    wait_for("step 6", 300, || {
        trace(&b).keys().last().copied().unwrap_or(0) >= 6
    });
    child.kill().unwrap(); // SIGKILL: no chance to checkpoint
    child.wait().unwrap();
    assert!(
        trace(&b).len() < 14,
        "the run finished before it was killed"
    );
    common::ok(h.path(), &["train", "--resume", b.to_str().unwrap()]);
    let resume = of_type(&events(&b), "resume")[0].clone();
    let from = resume["from_step"].as_u64().unwrap();
    assert_eq!(from, 5, "the checkpoint sits inside a reused batch");
    let ckpt = b.join(format!("checkpoints/step-{from}/objective_state.json"));
    assert!(
        ckpt.is_file(),
        "{} holds the batch in reuse",
        ckpt.display()
    );
    let (ta, tb) = (trace(&a), trace(&b));
    assert_eq!(ta.len(), 14);
    for step in 1..=14 {
        let ((la, ca), (lb, cb)) = (&ta[&step], &tb[&step]);
        assert!((la - lb).abs() <= 1e-6, "step {step}: loss {la} vs {lb}");
        assert_eq!(ca, cb, "step {step}: completions");
    }
    // Steps that reuse a batch write no completions; the ones that sample do.
    assert_eq!(ta[&1].1.len(), 8);
    assert!(ta[&2].1.is_empty());
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A reward command that crashes, hangs or prints garbage fails the first step: the run
/// ends `failed`, the CLI exits non-zero, and the message names the command and the line.
#[test]
fn a_failing_reward_command_fails_the_step_and_says_where() {
    let h = home();
    let dir = h.path();
    let cases = [
        (
            script(dir, "crash.sh", "cat > /dev/null; echo 'KeyError: answer' >&2; exit 3"),
            "exited with status 3",
            "KeyError: answer",
        ),
        (
            script(dir, "hang.sh", "sleep 30"),
            "timed out after 1 s",
            "lines 1–8 of the batch",
        ),
        (
            script(
                dir,
                "garbage.sh",
                "while read -r l; do n=$((n+1)); if [ $n = 2 ]; then echo abc; else echo 1; fi; done",
            ),
            "line 2 of the batch: \"abc\" is not a number",
            "garbage.sh",
        ),
    ];
    for (i, (cmd, want, also)) in cases.iter().enumerate() {
        let cfg = config(
            &h,
            &format!(
                "train: {{method: grpo, max_steps: 3, batch_size: 8, grad_accum: 1, eval_every: 0}}\n\
                 grpo: {{num_generations: 4, max_completion_length: 2,\n\
                   rewards: [{{name: scored, command: {{run: [{}], timeout_s: 1, workers: 1}}}}]}}\n",
                cmd.display()
            ),
        );
        let run = dir.join(format!("run{i}"));
        let (code, _, err) = common::run(
            &h,
            &[
                "train",
                cfg.to_str().unwrap(),
                "--run-dir",
                run.to_str().unwrap(),
            ],
        );
        assert_ne!(code, 0, "{err}");
        for w in [*want, *also, "reward `scored`"] {
            assert!(err.contains(w), "case {i}: {w:?} not in {err}");
        }
        let failed = of_type(&events(&run), "failed")[0].clone();
        assert!(failed["error"].as_str().unwrap().contains(want), "{failed}");
        assert_eq!(
            RunDir::new(&run).read_status().unwrap().state,
            tunelab::runs::RunState::Failed
        );
        assert!(
            of_type(&events(&run), "train").is_empty(),
            "no step was taken"
        );
    }
}
