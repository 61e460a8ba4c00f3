//! Engine runs (`tunelab train --engine trl`) against the fake TRL of
//! `tests/fixtures/fake_engine` (a `trl` command and a `transformers.Trainer` that train
//! nothing but log, save, resume and crash as the real ones do) and the fake SLURM commands
//! of `tests/fixtures/fake_slurm`: live events, stop and resume, a crash, the adapter at the
//! end (Chat loads it), the preflight, and the SLURM path.

use crate::common;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tunelab::runs::{RunDir, RunState};

/// The fake engine's interpreter.
fn fake_python() -> PathBuf {
    common::fixture("fake_engine/bin/python3")
}

fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    h
}

/// `tunelab ARGS` for an engine run: the fake's pace, and the fake SLURM commands on the
/// PATH with their state in the home.
fn tunelab(h: &tempfile::TempDir, step_seconds: f64) -> Command {
    let mut c = common::tunelab(h);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![common::fixture("fake_slurm")];
    paths.extend(std::env::split_paths(&path));
    c.env("PATH", std::env::join_paths(paths).unwrap())
        .env("FAKE_SLURM_DIR", h.path().join("slurm"))
        .env("FAKE_TRL_STEP_SECONDS", step_seconds.to_string())
        .env_remove("VIRTUAL_ENV");
    c
}

fn run_out(mut c: Command) -> (i32, String, String) {
    let out = c.output().expect("run tunelab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The engine flags for the demo preset on the fake TRL.
fn engine_args<'a>(python: &'a str, steps: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "tiny-demo",
        "--engine",
        "trl",
        "--python",
        python,
        "--set",
        steps,
    ];
    v.extend_from_slice(extra);
    v
}

fn detach(h: &tempfile::TempDir, args: &[&str], step_seconds: f64) -> PathBuf {
    let mut c = tunelab(h, step_seconds);
    c.args(args).arg("--detach");
    let (code, out, err) = run_out(c);
    assert_eq!(code, 0, "{err}");
    let id = out.trim();
    assert!(!id.is_empty(), "no run id: {err}");
    h.path().join("data/runs").join(id)
}

fn events(run: &Path) -> Vec<Value> {
    common::event_lines(&RunDir::new(run).events_path())
}

fn of_type<'a>(ev: &'a [Value], t: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["type"] == t).collect()
}

fn state(run: &Path) -> Option<RunState> {
    RunDir::new(run).read_status().ok().map(|s| s.state)
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

/// The fake Trainer's loss at `step` (`transformers/trainer.py`'s `loss_at`).
fn fake_loss(step: u64) -> f64 {
    let x = 2.0 * (-0.15 * step as f64).exp() + 0.5;
    (x * 1e6).round() / 1e6
}

#[test]
fn an_engine_run_streams_its_events_live_and_ends_with_the_tools_adapter() {
    let h = home();
    let py = fake_python();
    let py = py.to_str().unwrap();
    let args = engine_args(
        py,
        "train.max_steps=8",
        &["--set", "train.save_every=3", "--set", "train.eval_every=4"],
    );
    let run = detach(&h, &args, 0.35);
    let id = run.file_name().unwrap().to_str().unwrap().to_string();

    // `runs watch`, piped, prints the train events as they come, while the run is running.
    let mut watch = tunelab(&h, 0.0);
    watch
        .args(["runs", "watch", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = watch.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let run_for_reader = run.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        // Each step line, and the run's state when it was read.
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("step ") && line.contains("loss") {
                seen.push((line, state(&run_for_reader)));
            }
        }
        seen
    });
    wait_for("the run to end", 60, || {
        matches!(
            state(&run),
            Some(RunState::Done | RunState::Failed | RunState::Stopped)
        )
    });
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!(status.state, RunState::Done, "{:?}", status.error);
    assert!(child.wait().unwrap().success());
    let seen = reader.join().unwrap();
    let live = seen
        .iter()
        .filter(|(_, s)| *s == Some(RunState::Running))
        .count();
    assert!(
        live >= 2,
        "runs watch printed {live} step lines while the run was running: {seen:?}"
    );

    let ev = events(&run);
    let start = of_type(&ev, "start");
    assert_eq!(start.len(), 1);
    assert_eq!(start[0]["engine"], "TRL 1.16.0 · CPU");
    assert_eq!(start[0]["total_steps"], 8);
    // LoRA r16 on every linear layer of the demo's tiny model.
    assert!(start[0]["trainable_params"].as_u64().unwrap() > 0);
    let trains = of_type(&ev, "train");
    let steps: Vec<u64> = trains.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
    for t in &trains {
        let step = t["step"].as_u64().unwrap();
        assert_eq!(t["loss"].as_f64().unwrap(), fake_loss(step));
        assert_eq!(t["total_steps"], 8);
        // The Trainer's other metrics keep TRL's names.
        assert!(t["mean_token_accuracy"].as_f64().is_some());
    }
    assert_eq!(trains[1]["tokens"], 512, "num_tokens went 512 → 1024");
    let evals = of_type(&ev, "eval");
    let eval_steps: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(eval_steps, vec![4, 8]);
    assert_eq!(
        evals[1]["eval_loss"].as_f64().unwrap(),
        ((2.1 * (-0.12f64 * 8.0).exp() + 0.55) * 1e6).round() / 1e6
    );
    let ckpt: Vec<u64> = of_type(&ev, "checkpoint")
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(ckpt, vec![3, 6]);
    let done = ev.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["step"], 8);
    assert_eq!(status.total_steps, 8);
    assert_eq!(status.last_loss, Some(fake_loss(8)));

    // The tool's adapter is the run's, byte for byte.
    let adapter = run.join("adapter/adapter_model.safetensors");
    assert_eq!(
        std::fs::read(&adapter).unwrap(),
        std::fs::read(run.join("engine/output/adapter_model.safetensors")).unwrap()
    );
    // The tool's output is in train.log, as the Trainer prints it.
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("{'loss': 2.221416"), "{log}");
    // Chat offers the final adapter and the tool's checkpoints, as for a tunelab run.
    let labels: Vec<String> = tunelab::runs::adapters::of_run(&RunDir::new(&run))
        .iter()
        .map(|a| a.label())
        .collect();
    assert_eq!(
        labels,
        [
            format!("{id}/adapter"),
            format!("{id}/step-6"),
            format!("{id}/step-3")
        ]
    );
    // Chat loads it on the run's base model.
    let model = h.path().join("data/demo/tiny-model");
    let (code, out, err) = common::run(
        &h,
        &[
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            run.join("adapter").to_str().unwrap(),
            "--max-new-tokens",
            "4",
            "--temperature",
            "0",
            "--prompt",
            "Hi",
        ],
    );
    assert_eq!(code, 0, "chat with the engine run's adapter: {err}");
    assert!(!out.trim().is_empty(), "{err}");
}

#[test]
fn an_engine_run_stops_with_a_checkpoint_and_resumes_from_it() {
    let h = home();
    let py = fake_python();
    let py = py.to_str().unwrap();
    let args = engine_args(
        py,
        "train.max_steps=30",
        &[
            "--set",
            "train.save_every=100",
            "--set",
            "train.eval_every=0",
        ],
    );
    // Saving takes longer than the 5 s the launcher gives its child after a SIGTERM: the
    // stop must reach the trainer alone.
    let mut c = tunelab(&h, 0.3);
    c.args(&args)
        .arg("--detach")
        .env("FAKE_TRL_SAVE_SECONDS", "6");
    let (code, out, err) = run_out(c);
    assert_eq!(code, 0, "{err}");
    let run = h.path().join("data/runs").join(out.trim());
    wait_for("three train events", 60, || {
        of_type(&events(&run), "train").len() >= 3
    });
    let (code, _, err) = common::run(&h, &["runs", "stop", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    wait_for("the run to stop", 60, || {
        state(&run) == Some(RunState::Stopped)
    });
    let stopped_at = RunDir::new(&run).read_status().unwrap().step;
    assert!((3..30).contains(&stopped_at), "{stopped_at}");
    // The Trainer saved at the step it stopped on (save_every is 100).
    let ckpt = run.join(format!("engine/output/checkpoint-{stopped_at}"));
    assert!(
        ckpt.join("trainer_state.json").is_file(),
        "{}",
        ckpt.display()
    );
    assert_eq!(events(&run).last().unwrap()["type"], "stopped");

    let mut c = tunelab(&h, 0.02);
    c.args(["train", "--resume", run.to_str().unwrap()]);
    let (code, _, err) = run_out(c);
    assert_eq!(code, 0, "{err}");
    let ev = events(&run);
    let resume = of_type(&ev, "resume");
    assert_eq!(resume.len(), 1);
    assert_eq!(resume[0]["from_step"], stopped_at);
    assert_eq!(resume[0]["checkpoint"], ckpt.to_str().unwrap());
    let after: Vec<u64> = ev
        .iter()
        .skip_while(|e| e["type"] != "resume")
        .filter(|e| e["type"] == "train")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(after, (stopped_at + 1..=30).collect::<Vec<_>>());
    // Time runs on across the resume.
    let trains = of_type(&ev, "train");
    let elapsed: Vec<f64> = trains
        .iter()
        .map(|e| e["elapsed"].as_f64().unwrap())
        .collect();
    assert!(elapsed.windows(2).all(|w| w[1] >= w[0]), "{elapsed:?}");
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!((status.state, status.step), (RunState::Done, 30));
    assert!(run.join("adapter/adapter_config.json").is_file());
}

/// A supervisor killed outright (kill -9): the tool's trainer notices, saves at its step and
/// stops, so nothing trains unobserved, and `--resume` continues from that checkpoint.
#[test]
fn a_killed_supervisor_leaves_a_checkpoint_to_resume_from() {
    let h = home();
    let py = fake_python();
    let py = py.to_str().unwrap();
    let args = engine_args(
        py,
        "train.max_steps=40",
        &[
            "--set",
            "train.save_every=100",
            "--set",
            "train.eval_every=0",
        ],
    );
    let run = detach(&h, &args, 0.2);
    wait_for("two train events", 60, || {
        of_type(&events(&run), "train").len() >= 2
    });
    let pid = RunDir::new(&run).read_status().unwrap().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let hook = run.join("engine/hook-events.jsonl");
    wait_for("the trainer to save and end", 60, || {
        std::fs::read_to_string(&hook).is_ok_and(|t| t.contains("\"stopped\": true"))
    });
    let text = std::fs::read_to_string(&hook).unwrap();
    let end: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "end")
        .unwrap();
    let step = end["step"].as_u64().unwrap();
    assert!(step > 0 && step < 40, "{step}");
    assert!(run
        .join(format!("engine/output/checkpoint-{step}"))
        .is_dir());
    let mut c = tunelab(&h, 0.01);
    c.args(["train", "--resume", run.to_str().unwrap()]);
    let (code, _, err) = run_out(c);
    assert_eq!(code, 0, "{err}");
    let resume = of_type(&events(&run), "resume")
        .first()
        .map(|e| e["from_step"].as_u64().unwrap());
    assert_eq!(resume, Some(step));
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!((status.state, status.step), (RunState::Done, 40));
}

#[test]
fn a_crashed_engine_run_fails_with_the_tools_last_lines() {
    let h = home();
    let py = fake_python();
    let py = py.to_str().unwrap();
    let mut c = tunelab(&h, 0.01);
    c.args(engine_args(py, "train.max_steps=6", &[]))
        .env("FAKE_TRL_CRASH_AT", "3");
    let (code, _, err) = run_out(c);
    assert_eq!(code, 1, "a failed run exits 1: {err}");
    assert!(err.contains("TRL exited with status 1"), "{err}");
    assert!(err.contains("RuntimeError: CUDA out of memory"), "{err}");
    let runs = h.path().join("data/runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("status.json").is_file())
        .unwrap();
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!(status.state, RunState::Failed);
    assert_eq!(status.step, 2);
    let error = status.error.unwrap();
    assert!(error.contains("CUDA out of memory"), "{error}");
    let ev = events(&run);
    assert_eq!(ev.last().unwrap()["type"], "failed");
    assert!(!run.join("adapter").exists());
}

#[test]
fn the_preflight_names_the_missing_tool_and_how_to_install_it() {
    let h = home();
    let Some(python) = common::python3("engine preflight") else {
        return;
    };
    let (code, out, err) = common::run(
        &h,
        &[
            "train",
            "tiny-demo",
            "--engine",
            "axolotl",
            "--python",
            python.to_str().unwrap(),
            "--detach",
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("Axolotl is not installed") && err.contains("pip install 'axolotl==0.19.0'"),
        "{err}"
    );
    // Nothing was started or left behind.
    assert!(out.is_empty());
    assert!(
        !h.path().join("data/runs").exists()
            || std::fs::read_dir(h.path().join("data/runs"))
                .unwrap()
                .next()
                .is_none()
    );
    // A version tunelab does not know is refused, naming the one it does.
    let (code, _, err) = common::run(
        &h,
        &[
            "train",
            "tiny-demo",
            "--engine",
            "trl",
            "--python",
            "/no/such/python",
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("/no/such/python: no such Python interpreter"),
        "{err}"
    );
    // tunelab's own engine trains on one device.
    let (code, _, err) = common::run(&h, &["train", "tiny-demo", "--gpus", "4"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("set train.engine to trl, axolotl or llamafactory"),
        "{err}"
    );
}

#[test]
fn a_slurm_engine_run_is_submitted_followed_stopped_and_resumed() {
    let h = home();
    let py = fake_python();
    let py = py.to_str().unwrap();
    let mut c = tunelab(&h, 0.3);
    c.args(engine_args(
        py,
        "train.max_steps=30",
        &[
            "--launcher",
            "slurm",
            "--set",
            "train.save_every=100",
            "--set",
            "train.eval_every=0",
            "--detach",
        ],
    ))
    .env("FAKE_SLURM_PENDING", "1.5");
    let (code, out, err) = run_out(c);
    assert_eq!(code, 0, "{err}");
    let run = h.path().join("data/runs").join(out.trim());
    wait_for("two train events", 60, || {
        of_type(&events(&run), "train").len() >= 2
    });
    let ev = events(&run);
    // While the job waited in the queue, the run said so.
    assert!(
        of_type(&ev, "phase")
            .iter()
            .any(|p| p["name"] == "SLURM job 4001 PENDING"),
        "{ev:?}"
    );
    assert_eq!(
        of_type(&ev, "start")[0]["engine"],
        "TRL 1.16.0 · CPU · SLURM"
    );
    let job: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("engine/job.json")).unwrap())
            .unwrap();
    assert_eq!(job["job"], "4001");
    assert_eq!(job["state"], "RUNNING");
    let submitted = std::fs::read_to_string(h.path().join("slurm/4001.script")).unwrap();
    assert!(submitted.contains("#SBATCH --nodes=1"), "{submitted}");
    assert!(submitted.contains(&format!(
        "#SBATCH --output={}",
        run.join("train.log").display()
    )));

    let (code, _, err) = common::run(&h, &["runs", "stop", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    wait_for("the run to stop", 60, || {
        state(&run) == Some(RunState::Stopped)
    });
    let scancel = std::fs::read_to_string(h.path().join("slurm/scancel.log")).unwrap();
    assert_eq!(scancel.trim(), "scancel --signal=TERM --batch 4001");
    let step = RunDir::new(&run).read_status().unwrap().step;
    assert!(run
        .join(format!("engine/output/checkpoint-{step}"))
        .is_dir());

    // The resume is a second job, from the checkpoint.
    let mut c = tunelab(&h, 0.02);
    c.args(["train", "--resume", run.to_str().unwrap()]);
    let (code, _, err) = run_out(c);
    assert_eq!(code, 0, "{err}");
    let resumed = std::fs::read_to_string(h.path().join("slurm/4002.script")).unwrap();
    assert!(
        resumed.contains(&format!(
            "TUNELAB_RESUME_FROM='{}",
            run.join("engine/output").display()
        )),
        "{resumed}"
    );
    let status = RunDir::new(&run).read_status().unwrap();
    assert_eq!((status.state, status.step), (RunState::Done, 30));
    // Its output reached train.log through the job's --output.
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("Resuming training from"), "{log}");
}

#[test]
fn a_multi_node_dry_run_prints_the_batch_script_and_launches_nothing() {
    let h = home();
    let py = fake_python();
    let py = py.to_str().unwrap();
    let mut c = tunelab(&h, 0.0);
    c.args(engine_args(
        py,
        "train.device=cuda",
        &[
            "--launcher",
            "slurm",
            "--nodes",
            "2",
            "--gpus",
            "4",
            "--zero",
            "3",
            "--set",
            "train.slurm=[--partition=gpu, --time=04:00:00]",
            "--dry-run",
        ],
    ));
    let (code, script, err) = run_out(c);
    assert_eq!(code, 0, "{err}");
    for want in [
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=04:00:00",
        "export MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"",
        "srun --kill-on-bad-exit=1 bash -c 'NODE_RANK=$SLURM_NODEID exec bash",
    ] {
        assert!(script.contains(want), "no {want:?} in:\n{script}");
    }
    assert!(!h.path().join("slurm").exists(), "nothing is submitted");
    let engine = err
        .split("the experiment is in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .map(PathBuf::from)
        .unwrap();
    // TRL's accelerate launch spans both nodes: 8 processes, ZeRO-3.
    let run_sh = std::fs::read_to_string(engine.join("run.sh")).unwrap();
    assert!(
        run_sh.contains("--num_machines 2 --num_processes 8 --machine_rank \"$NODE_RANK\" --main_process_ip \"$MASTER_ADDR\" --main_process_port \"$MASTER_PORT\""),
        "{run_sh}"
    );
    let acc = std::fs::read_to_string(engine.join("accelerate.yaml")).unwrap();
    assert!(
        acc.contains("num_machines: 2") && acc.contains("num_processes: 8"),
        "{acc}"
    );
    assert!(std::fs::read_to_string(engine.join("deepspeed.json"))
        .unwrap()
        .contains("\"stage\": 3"));
    assert!(engine.join("node.sh").is_file());
}
