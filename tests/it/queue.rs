//! The run queue (#31): queued tiny runs on the CPU run one at a time in queue order and
//! all finish; a scheduler killed mid-run hands over to the next one started, which leaves
//! the running trainer alone and goes on; a run whose trainer died shows `dead` and can be
//! queued again to resume; two schedulers never run at once.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A home for one test, and on drop the end of its scheduler (if a test fails midway).
pub struct Home {
    pub dir: tempfile::TempDir,
    /// `TUNELAB_GPUS` for every command: 0 keeps GPU runs waiting for ever.
    gpus: Option<&'static str>,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
            gpus: None,
        }
    }

    /// A home whose commands see no GPU: runs on `cuda` wait in the queue for ever.
    pub fn without_gpus() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
            gpus: Some("0"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    /// `tunelab ARGS` in this home (from an empty working folder of its own, so no project
    /// around the test's folder catches the runs), the scheduler looking every 100 ms.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let cwd = self.path().join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_tunelab"));
        c.env("TUNELAB_HOME", self.path())
            .env("TUNELAB_QUEUE_POLL_MS", "100")
            .env("NO_COLOR", "1")
            .current_dir(cwd)
            .args(args);
        if let Some(n) = self.gpus {
            c.env("TUNELAB_GPUS", n);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd(args).output().expect("run tunelab");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `tunelab ARGS`, failing on a non-zero exit; returns stdout's lines.
    pub fn ok(&self, args: &[&str]) -> Vec<String> {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "tunelab {}: {err}", args.join(" "));
        out.lines().map(str::to_string).collect()
    }

    pub fn status(&self, id: &str) -> Value {
        let p = self.data().join("runs").join(id).join("status.json");
        std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    pub fn state(&self, id: &str) -> String {
        self.status(id)["state"].as_str().unwrap_or("").to_string()
    }

    pub fn queue(&self) -> Value {
        serde_json::from_str(&self.ok(&["queue", "list", "--json"]).join("\n")).unwrap()
    }

    pub fn scheduler(&self) -> Option<u32> {
        tunelab::queue::holder(&tunelab::queue::QueueFiles::new(self.data())).unwrap()
    }

    /// The `type`s of a run's events.
    pub fn event_types(&self, id: &str) -> Vec<String> {
        crate::common::event_lines(&self.data().join("runs").join(id).join("events.jsonl"))
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(pid) = self.scheduler() {
            kill9(pid);
        }
    }
}

pub fn kill9(pid: u32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

pub fn wait_until(what: &str, secs: u64, cond: &mut dyn FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tiny CPU run of `steps` steps, no evaluation, no checkpoints but the last.
fn tiny(steps: u32) -> Vec<String> {
    [
        format!("train.max_steps={steps}"),
        "train.eval_every=0".into(),
        "train.save_every=0".into(),
    ]
    .iter()
    .flat_map(|s| ["--set".to_string(), s.clone()])
    .collect()
}

fn args<'a>(head: &[&'a str], rest: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(rest.iter().map(String::as_str))
        .collect()
}

/// Each run's (started, updated) from status.json, in the order given.
fn spans(h: &Home, ids: &[String]) -> Vec<(f64, f64)> {
    ids.iter()
        .map(|id| {
            let s = h.status(id);
            (
                s["started"].as_f64().unwrap(),
                s["updated"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn assert_one_at_a_time(h: &Home, ids: &[String]) {
    let s = spans(h, ids);
    for (k, w) in s.windows(2).enumerate() {
        assert!(
            w[0].1 <= w[1].0,
            "{} (ended {}) and {} (started {}) overlap",
            ids[k],
            w[0].1,
            ids[k + 1],
            w[1].0
        );
    }
}

#[test]
fn four_queued_runs_run_one_at_a_time_in_order() {
    let h = Home::new();
    let set = tiny(3);
    let ids = h.ok(&args(
        &[
            "queue",
            "add",
            "tiny-demo",
            "tiny-demo",
            "tiny-demo",
            "tiny-demo",
        ],
        &set,
    ));
    assert_eq!(ids.len(), 4, "{ids:?}");
    // Queued runs are runs already: their folders say `queued` until they start.
    let listed = h.ok(&["runs", "list", "--json"]).join("\n");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    wait_until("four runs done", 600, &mut || {
        ids.iter().all(|id| h.state(id) == "done")
    });
    assert_one_at_a_time(&h, &ids);
    for id in &ids {
        let s = h.status(id);
        assert_eq!(
            (s["step"].as_u64(), s["total_steps"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(
            h.event_types(id).iter().filter(|t| *t == "start").count(),
            1,
            "{id} started once"
        );
    }
    // With nothing left, the scheduler goes away.
    wait_until("the scheduler to exit", 30, &mut || h.scheduler().is_none());
    assert!(h.queue()["rows"].as_array().unwrap().is_empty());
    let log = std::fs::read_to_string(h.data().join("queue/scheduler.log")).unwrap();
    for id in &ids {
        assert!(log.contains(&format!("started {id} on cpu")), "{log}");
        assert!(log.contains(&format!("{id} ended done")), "{log}");
    }
}

#[test]
fn a_killed_scheduler_hands_over_and_a_dead_run_resumes_from_the_queue() {
    let h = Home::new();
    let long = tiny(60);
    let short = tiny(3);
    let first = h.ok(&args(&["queue", "add", "tiny-demo"], &long));
    let rest = h.ok(&args(&["queue", "add", "tiny-demo", "tiny-demo"], &short));
    let ids: Vec<String> = first.into_iter().chain(rest).collect();
    wait_until("the first run to step", 120, &mut || {
        h.status(&ids[0])["step"].as_u64().unwrap_or(0) >= 2
    });
    let old = h.scheduler().expect("a scheduler runs");
    kill9(old);
    wait_until("the lock to be free", 10, &mut || h.scheduler().is_none());
    // Nothing starts without a scheduler; the running trainer is not its child to lose.
    std::thread::sleep(Duration::from_millis(600));
    let log = || std::fs::read_to_string(h.data().join("queue/scheduler.log")).unwrap_or_default();
    assert_eq!(h.state(&ids[1]), "queued", "{}", log());
    assert!(matches!(h.state(&ids[0]).as_str(), "running" | "done"));
    let (code, _, err) = h.run(&["queue", "start"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("started the scheduler"), "{err}");
    wait_until("the new scheduler", 30, &mut || h.scheduler().is_some());
    let new = h.scheduler().unwrap();
    assert_ne!(new, old);
    wait_until("all three done", 600, &mut || {
        ids.iter().all(|id| h.state(id) == "done")
    });
    assert_one_at_a_time(&h, &ids);
    for id in &ids {
        let starts = h.event_types(id).iter().filter(|t| *t == "start").count();
        assert_eq!(starts, 1, "{id} was started {starts} times");
    }
    wait_until("the scheduler to exit", 30, &mut || h.scheduler().is_none());

    // A machine going down takes scheduler and trainer: the run shows `dead` and can be
    // queued again, from its checkpoint.
    let mut set = long.clone();
    set.extend(["--set".to_string(), "train.save_every=5".to_string()]);
    let id = h.ok(&args(&["queue", "add", "tiny-demo"], &set)).remove(0);
    wait_until("a checkpoint", 120, &mut || {
        h.data()
            .join("runs")
            .join(&id)
            .join("checkpoints/step-5")
            .is_dir()
    });
    let trainer = h.status(&id)["pid"].as_u64().unwrap() as u32;
    kill9(h.scheduler().unwrap());
    kill9(trainer);
    wait_until("the trainer to be gone", 10, &mut || {
        !Path::new(&format!("/proc/{trainer}")).exists()
            || std::fs::read_to_string(format!("/proc/{trainer}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    h.ok(&["queue", "start"]);
    wait_until("the dead run off the queue", 30, &mut || {
        h.queue()["rows"].as_array().unwrap().is_empty()
    });
    let runs: Value = serde_json::from_str(&h.ok(&["runs", "list", "--json"]).join("\n")).unwrap();
    let dead = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(dead["orphaned"], true, "{dead}");
    let (_, table, _) = h.run(&["runs", "list"]);
    assert!(
        table.lines().any(|l| l.contains(&id) && l.contains("dead")),
        "{table}"
    );
    let log = std::fs::read_to_string(h.data().join("queue/scheduler.log")).unwrap();
    assert!(log.contains(&format!("{id} died")), "{log}");
    let (code, _, err) = h.run(&["queue", "add", "--resume", &ids[0]]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot be resumed: it is done"), "{err}");
    h.ok(&["queue", "add", "--resume", &id]);
    wait_until("the resumed run done", 300, &mut || h.state(&id) == "done");
    let types = h.event_types(&id);
    assert!(types.contains(&"resume".to_string()), "{types:?}");
    let resumed = crate::common::event_lines(&h.data().join("runs").join(&id).join("events.jsonl"))
        .into_iter()
        .find(|e| e["type"] == "resume")
        .unwrap();
    assert!(resumed["from_step"].as_u64().unwrap() >= 5, "{resumed}");
}

#[test]
fn two_schedulers_never_run_at_once() {
    // Runs on a GPU this machine does not have (TUNELAB_GPUS=0) wait for ever: the queue
    // stays full while the schedulers compete.
    let h = Home::without_gpus();
    h.ok(&[
        "queue",
        "add",
        "tiny-demo",
        "tiny-demo",
        "--set",
        "train.device=cuda",
    ]);
    wait_until("the first scheduler", 10, &mut || h.scheduler().is_some());
    let first = h.scheduler().unwrap();
    let mut rivals: Vec<_> = (0..4)
        .map(|_| {
            h.cmd(&["queue", "scheduler"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in rivals.drain(..) {
        let out = r.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("another scheduler (pid {first})")),
            "{err}"
        );
    }
    assert_eq!(h.scheduler(), Some(first));
    let q = h.queue();
    let rows = q["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0]["waits"].as_str().unwrap().contains("has 0"),
        "{rows:?}"
    );
    // Emptied, the queue lets its scheduler go.
    for r in rows {
        h.ok(&["queue", "remove", r["id"].as_str().unwrap()]);
        assert!(!Path::new(r["dir"].as_str().unwrap()).exists());
    }
    wait_until("the scheduler to exit", 30, &mut || h.scheduler().is_none());
}

#[test]
fn queue_edits_reorder_and_refuse_mistakes() {
    let h = Home::without_gpus();
    let ids = h.ok(&[
        "queue",
        "add",
        "tiny-demo",
        "tiny-demo",
        "tiny-demo",
        "--set",
        "train.device=cuda",
    ]);
    let order = |h: &Home| -> Vec<String> {
        h.queue()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(order(&h), ids);
    h.ok(&["queue", "move", &ids[2], "--to", "1"]);
    assert_eq!(order(&h), [ids[2].clone(), ids[0].clone(), ids[1].clone()]);
    let (code, _, err) = h.run(&["queue", "move", &ids[0], "--to", "4"]);
    assert_eq!(code, 2);
    assert!(err.contains("give a position from 1 to 3"), "{err}");
    let (code, _, err) = h.run(&["queue", "remove", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no queued run \"nope\""), "{err}");
    let (code, _, err) = h.run(&["runs", "stop", &ids[0]]);
    assert_eq!(code, 1);
    assert!(err.contains("tunelab queue remove"), "{err}");
    let (code, _, err) = h.run(&["queue", "add", "tiny-demo", "--gpus", "2"]);
    assert_eq!(code, 2);
    assert!(err.contains("train.device: cpu"), "{err}");
    for id in &ids {
        h.ok(&["queue", "remove", id]);
    }
    wait_until("the scheduler to exit", 30, &mut || h.scheduler().is_none());
}
