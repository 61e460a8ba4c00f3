//! Experiment trackers (#31): a run's TensorBoard files read back (by this crate's reader,
//! checksums and all, and by TensorBoard's own through tests/reference/check_tensorboard.py)
//! with exactly the steps, values and times of its `events.jsonl`; `runs export
//! --tensorboard` rebuilding them; MLflow's REST calls against a fake tracking server (the
//! experiment, the config as params, every metric, the final status, a resume into the same
//! MLflow run, a slow server that does not slow the steps) and a server that is down (one
//! warning, the run still `done`).
//!
//! The expected scalars are computed here from the JSON lines by the documented naming rule,
//! not by the code under test.

use crate::common;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tunelab::runs::{RunDir, RunState};
use tunelab::track::tensorboard;

/// A home with the demo workspace.
fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    h
}

/// A short SFT run on the demo model and data; `train` adds fields to its train section.
fn small_config(h: &tempfile::TempDir, train: &str) -> PathBuf {
    let demo = h.path().join("data/demo");
    let text = format!(
        "name: small\nmodel: {{path: {m}}}\ndata: {{train: {d}, eval_split: 0.1, max_seq_len: 128}}\n\
         lora: {{r: 8, alpha: 16, target_modules: [all-linear]}}\n\
         train: {{lr: 0.01, batch_size: 4, seed: 3, {train}}}\n",
        m = demo.join("tiny-model").display(),
        d = demo.join("persona.jsonl").display(),
    );
    let p = h.path().join("small.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// One chart point: step, value, unix seconds.
type Point = (i64, f64, f64);

/// Every scalar series of a run's events.jsonl, by tag: a train event's numbers under
/// `train/` (`lr` as `learning_rate`, memory under `system/`), an eval event's under `eval/`
/// without the `eval_` prefix, nulls left out, and what a resume repeats dropped.
fn expected(run: &Path) -> BTreeMap<String, Vec<Point>> {
    let mut out: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for e in common::event_lines(&RunDir::new(run).events_path()) {
        let kind = e["type"].as_str().unwrap_or_default().to_string();
        if kind == "resume" {
            let n = e["from_step"].as_i64().unwrap();
            out.values_mut().for_each(|p| p.retain(|(s, _, _)| *s <= n));
            continue;
        }
        if kind != "train" && kind != "eval" {
            continue;
        }
        let step = e["step"].as_i64().unwrap();
        let time = e["time"].as_f64().unwrap();
        for (k, v) in e.as_object().unwrap() {
            if ["type", "time", "step", "total_steps"].contains(&k.as_str()) {
                continue;
            }
            let Some(x) = v.as_f64() else { continue };
            let tag = match (kind.as_str(), k.as_str()) {
                ("train", "lr") => "train/learning_rate".to_string(),
                ("train", "rss" | "gpu_mem" | "gpu_util") => format!("system/{k}"),
                ("train", _) => format!("train/{k}"),
                _ => format!("eval/{}", k.strip_prefix("eval_").unwrap_or(k)),
            };
            out.entry(tag).or_default().push((step, x, time));
        }
    }
    out
}

/// Series as TensorBoard holds them: tag → (step, f32 value, wall time).
type Stored = BTreeMap<String, Vec<(i64, f32, f64)>>;

/// The scalar series of a folder's event files as this crate reads them back (every
/// record's checksums checked), and how many files there were.
fn read_back(dir: &Path) -> (Stored, usize) {
    let files = tensorboard::event_files(dir).unwrap();
    let mut out = Stored::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let events = tensorboard::read_file(f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        for e in events {
            if e.session_start {
                out.values_mut()
                    .for_each(|p| p.retain(|(s, _, _)| *s < e.step));
            }
            for (tag, v) in e.values {
                out.entry(tag).or_default().push((e.step, v, e.wall_time));
            }
        }
    }
    (out, files.len())
}

/// TensorBoard's files hold exactly the events' series (values as the f32 they store).
fn assert_tensorboard_matches(run: &Path, dir: &Path) {
    let want = expected(run);
    let (got, files) = read_back(dir);
    assert!(files >= 1, "no event files in {}", dir.display());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the tags"
    );
    for (tag, points) in &want {
        let as_f32: Vec<(i64, f32, f64)> =
            points.iter().map(|(s, v, t)| (*s, *v as f32, *t)).collect();
        assert_eq!(got[tag], as_f32, "{tag}");
    }
}

/// tests/reference/check_tensorboard.py: TensorBoard's own reader on the same files.
fn python_check(test: &str, run: &Path, logdir: &Path) {
    let Some(python) = common::python_with_tensorboard(test) else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/check_tensorboard.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(run)
        .arg(logdir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("OK:"),
        "check_tensorboard.py: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn train(h: &tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = common::tunelab(h)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .envs(env.iter().copied())
        .arg("train")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_run_writes_tensorboard_files_that_read_back_exactly() {
    let h = home();
    let cfg = small_config(&h, "max_steps: 12, eval_every: 6, report_to: [tensorboard]");
    let run = h.path().join("run");
    let (code, err) = train(
        &h,
        &[cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        RunDir::new(&run).read_status().unwrap().state,
        RunState::Done
    );
    let lines = common::event_lines(&RunDir::new(&run).events_path());
    assert!(
        lines.iter().all(|e| e["type"] != "warning"),
        "a tracker warned: {lines:?}"
    );
    let tb = run.join("tensorboard");
    assert_tensorboard_matches(&run, &tb);
    let (got, files) = read_back(&tb);
    assert_eq!(files, 1);
    let steps = |tag: &str| got[tag].iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(steps("train/loss"), (1..=12).collect::<Vec<_>>());
    assert_eq!(steps("eval/loss"), [0, 6, 12]);
    for tag in [
        "train/learning_rate",
        "train/grad_norm",
        "train/tokens_per_s",
        "eval/perplexity",
    ] {
        assert!(got.contains_key(tag), "{tag} in {:?}", got.keys());
    }
    // The first loss is the tiny model's: near ln(vocabulary), not a placeholder.
    let first = got["train/loss"][0].1;
    assert!(first > 1.0 && first < 20.0, "{first}");
    python_check("a_run_writes_tensorboard_files", &run, &tb);

    // The same files rebuilt from events.jsonl: elsewhere, and in place.
    let out = h.path().join("tb");
    let (code, stdout, err) = common::run(
        &h,
        &[
            "runs",
            "export",
            "--tensorboard",
            run.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.starts_with("run: ") && stdout.contains(" scalars in "),
        "{stdout}"
    );
    assert_tensorboard_matches(&run, &out.join("run"));
    assert_eq!(read_back(&out.join("run")).0, got);
    let (code, _, err) = common::run(
        &h,
        &["runs", "export", "--tensorboard", run.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let (again, files) = read_back(&tb);
    assert_eq!(
        (files, &again),
        (1, &got),
        "the export replaces the live file"
    );
    python_check("runs export --tensorboard", &run, &out.join("run"));

    let (code, _, err) = common::run(&h, &["runs", "export", run.to_str().unwrap()]);
    assert_eq!(code, 2, "--tensorboard is required: {err}");
}

/// DPO's TRL metrics travel like the loss: `train/rewards/margins`, `eval/rewards/accuracies`.
#[test]
fn preference_metrics_reach_tensorboard_under_trl_names() {
    let h = home();
    let run = h.path().join("dpo");
    let (code, err) = train(
        &h,
        &[
            "tiny-demo-dpo",
            "--set",
            "train.max_steps=4",
            "--set",
            "train.eval_every=2",
            "--set",
            "train.report_to=[tensorboard]",
            "--run-dir",
            run.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let tb = run.join("tensorboard");
    assert_tensorboard_matches(&run, &tb);
    let (got, _) = read_back(&tb);
    for tag in [
        "train/rewards/margins",
        "train/rewards/accuracies",
        "train/logps/chosen",
        "eval/rewards/margins",
    ] {
        assert!(got.contains_key(tag), "{tag} in {:?}", got.keys());
    }
    python_check("preference_metrics_reach_tensorboard", &run, &tb);
}

/// A request the fake server took: method, path with query, JSON body.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: Value,
}

/// A tracking server that answers MLflow's REST API from memory and keeps every request;
/// each answer waits `delay`.
struct FakeMlflow {
    uri: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeMlflow {
    fn start(delay: Duration) -> FakeMlflow {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let log = requests.clone();
        std::thread::spawn(move || {
            let mut experiments: Vec<String> = Vec::new();
            let mut runs = 0;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                std::thread::sleep(delay);
                let (status, body) = answer(&req, &mut experiments, &mut runs);
                log.lock().unwrap().push(req);
                let body = body.to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeMlflow { uri, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(conn: &mut std::net::TcpStream) -> Option<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Request { method, path, body })
}

fn answer(req: &Request, experiments: &mut Vec<String>, runs: &mut u32) -> (&'static str, Value) {
    let endpoint = req
        .path
        .strip_prefix("/api/2.0/mlflow/")
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default();
    match (req.method.as_str(), endpoint) {
        ("GET", "experiments/get-by-name") => {
            let name = req
                .path
                .split("experiment_name=")
                .nth(1)
                .unwrap_or_default();
            match experiments.iter().position(|e| e == name) {
                Some(i) => (
                    "200 OK",
                    json!({"experiment": {"experiment_id": (i + 7).to_string(), "name": name,
                                          "lifecycle_stage": "active"}}),
                ),
                None => (
                    "404 Not Found",
                    json!({"error_code": "RESOURCE_DOES_NOT_EXIST",
                           "message": format!("Could not find experiment with name '{name}'")}),
                ),
            }
        }
        ("POST", "experiments/create") => {
            experiments.push(req.body["name"].as_str().unwrap_or_default().to_string());
            (
                "200 OK",
                json!({"experiment_id": (experiments.len() + 6).to_string()}),
            )
        }
        ("POST", "runs/create") => {
            *runs += 1;
            (
                "200 OK",
                json!({"run": {"info": {"run_id": format!("run{runs}")}}}),
            )
        }
        ("POST", "runs/log-batch") => ("200 OK", json!({})),
        ("POST", "runs/update") => ("200 OK", json!({"run_info": {}})),
        _ => (
            "404 Not Found",
            json!({"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}),
        ),
    }
}

/// The requests to one endpoint.
fn to<'a>(reqs: &'a [Request], endpoint: &str) -> Vec<&'a Request> {
    reqs.iter()
        .filter(|r| r.path.split('?').next() == Some(&format!("/api/2.0/mlflow/{endpoint}")))
        .collect()
}

/// Every metric the server was sent, by key: (step, value, timestamp).
fn metrics_sent(reqs: &[Request], run_id: &str) -> BTreeMap<String, Vec<(i64, f64, i64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64, i64)>> = BTreeMap::new();
    for r in to(reqs, "runs/log-batch") {
        assert_eq!(r.body["run_id"], run_id);
        for m in r.body["metrics"].as_array().into_iter().flatten() {
            out.entry(m["key"].as_str().unwrap().to_string())
                .or_default()
                .push((
                    m["step"].as_i64().unwrap(),
                    m["value"].as_f64().unwrap(),
                    m["timestamp"].as_i64().unwrap(),
                ));
        }
    }
    out
}

fn params_sent(reqs: &[Request]) -> BTreeMap<String, String> {
    to(reqs, "runs/log-batch")
        .iter()
        .flat_map(|r| r.body["params"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                p["key"].as_str().unwrap().into(),
                p["value"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// What MLflow should have of a run: its events' series, values exact, times in ms.
fn expected_metrics(run: &Path) -> BTreeMap<String, Vec<(i64, f64, i64)>> {
    expected(run)
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .into_iter()
                .map(|(s, x, t)| (s, x, (t * 1000.0).round() as i64))
                .collect();
            (k, v)
        })
        .collect()
}

/// The experiment, the run, the config as params, every metric and FINISHED, against a
/// server that takes half a second per request, which the steps never wait for.
#[test]
fn mlflow_gets_the_config_every_metric_and_the_end() {
    let server = FakeMlflow::start(Duration::from_millis(500));
    let h = home();
    let cfg = small_config(&h, "max_steps: 16, eval_every: 8, report_to: [mlflow]");
    let run = h.path().join("run");
    let (code, err) = train(
        &h,
        &[cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()],
        &[
            ("MLFLOW_TRACKING_URI", &server.uri),
            ("MLFLOW_EXPERIMENT_NAME", "persona-exp"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines = common::event_lines(&RunDir::new(&run).events_path());
    assert!(
        lines.iter().all(|e| e["type"] != "warning"),
        "{:?}",
        lines
            .iter()
            .filter(|e| e["type"] == "warning")
            .collect::<Vec<_>>()
    );
    assert_eq!(lines.last().unwrap()["type"], "done");
    // 16 steps never waited for a server that needs 0.5 s a request.
    let times: Vec<f64> = lines
        .iter()
        .filter(|e| e["type"] == "train")
        .map(|e| e["time"].as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), 16);
    assert!(
        times[15] - times[0] < 4.0,
        "16 steps took {:.1} s: the steps waited for MLflow",
        times[15] - times[0]
    );

    let reqs = server.requests();
    let order: Vec<String> = reqs
        .iter()
        .map(|r| {
            r.path
                .trim_start_matches("/api/2.0/mlflow/")
                .split('?')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        &order[..4],
        [
            "experiments/get-by-name",
            "experiments/create",
            "runs/create",
            "runs/log-batch"
        ],
        "{order:?}"
    );
    assert_eq!(order.last().unwrap(), "runs/update", "{order:?}");
    assert!(
        reqs[0].path.ends_with("?experiment_name=persona-exp"),
        "{}",
        reqs[0].path
    );
    assert_eq!(reqs[1].body, json!({"name": "persona-exp"}));
    let create = &to(&reqs, "runs/create")[0].body;
    assert_eq!(create["experiment_id"], "7");
    assert_eq!(create["run_name"], "run");
    assert!(create["tags"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "mlflow.runName", "value": "run"})));
    let params = params_sent(&reqs);
    assert_eq!(params["train.lr"], "0.01");
    assert_eq!(params["lora.r"], "8");
    assert_eq!(params["train.max_steps"], "16");
    assert_eq!(params["lora.target_modules"], r#"["all-linear"]"#);
    assert_eq!(params["train.report_to"], r#"["mlflow"]"#);
    assert!(params.len() >= 40, "{} params", params.len());
    for r in to(&reqs, "runs/log-batch") {
        let n = r.body["metrics"].as_array().map_or(0, Vec::len);
        assert!(n <= 1000 && r.body["params"].as_array().map_or(0, Vec::len) <= 100);
    }
    // Batched: far fewer requests than the 16 steps and 3 evaluations.
    assert!(to(&reqs, "runs/log-batch").len() < 10, "{order:?}");
    let sent = metrics_sent(&reqs, "run1");
    assert_eq!(sent, expected_metrics(&run));
    assert_eq!(sent["train/loss"].len(), 16);
    assert_eq!(
        sent["eval/loss"].iter().map(|m| m.0).collect::<Vec<_>>(),
        [0, 8, 16]
    );
    let end = &reqs.last().unwrap().body;
    assert_eq!(end["run_id"], "run1");
    assert_eq!(end["status"], "FINISHED");
    assert!(end["end_time"].as_i64().unwrap() > create["start_time"].as_i64().unwrap());
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("mlflow.json")).unwrap()).unwrap();
    assert_eq!(kept["run_id"], "run1");
}

/// A run that fails ends its MLflow run FAILED; resumed, it logs into the same MLflow run
/// (RUNNING again, then FINISHED).
#[test]
fn a_resumed_run_logs_into_the_same_mlflow_run() {
    let server = FakeMlflow::start(Duration::ZERO);
    let h = home();
    let cfg = small_config(
        &h,
        "max_steps: 10, eval_every: 0, save_every: 4, report_to: [mlflow]",
    );
    let run = h.path().join("run");
    let env = [("MLFLOW_TRACKING_URI", server.uri.as_str())];
    let out = common::tunelab(&h)
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env("TUNELAB_FAULT_NAN_AT_STEP", "6")
        .envs(env)
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = server.requests();
    assert_eq!(
        reqs[1].body,
        json!({"name": "small"}),
        "the run's name is the experiment"
    );
    let end = &reqs.last().unwrap().body;
    assert_eq!(
        (end["run_id"].as_str(), end["status"].as_str()),
        (Some("run1"), Some("FAILED"))
    );
    let before = reqs.len();

    let (code, err) = train(&h, &["--resume", run.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{err}");
    let reqs = server.requests();
    let after = &reqs[before..];
    assert_eq!(
        after[0].body,
        json!({"run_id": "run1", "status": "RUNNING"}),
        "{:?}",
        after[0]
    );
    assert!(to(after, "runs/create").is_empty(), "no second MLflow run");
    assert_eq!(after.last().unwrap().body["status"], "FINISHED");
    // Steps 5 and 6 were logged twice (before the failure and after the resume from step 4);
    // MLflow keeps both, as it keeps any metric logged again at a step.
    let sent = metrics_sent(&reqs, "run1");
    let steps: Vec<i64> = sent["train/loss"].iter().map(|m| m.0).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]);
}

/// With the server down the run trains on, says so once, and ends `done` without waiting.
#[test]
fn mlflow_down_is_one_warning_and_the_run_is_done() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = home();
    let cfg = small_config(
        &h,
        "max_steps: 8, eval_every: 4, report_to: [mlflow, tensorboard]",
    );
    let run = h.path().join("run");
    let t = Instant::now();
    let uri = format!("http://127.0.0.1:{port}");
    let (code, err) = train(
        &h,
        &[cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()],
        &[("MLFLOW_TRACKING_URI", &uri)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert_eq!(
        RunDir::new(&run).read_status().unwrap().state,
        RunState::Done
    );
    let lines = common::event_lines(&RunDir::new(&run).events_path());
    let warnings: Vec<&Value> = lines.iter().filter(|e| e["type"] == "warning").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let msg = warnings[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("mlflow: experiments/get-by-name: ") && msg.contains("retried"),
        "{msg}"
    );
    assert_eq!(lines.last().unwrap()["type"], "done");
    assert!(err.contains("warning: mlflow:"), "the CLI says it: {err}");
    // TensorBoard, the other tracker, is not affected.
    assert_tensorboard_matches(&run, &run.join("tensorboard"));
    // MLFLOW_TRACKING_URI unset: one warning that says so.
    let run2 = h.path().join("run2");
    let (code, err) = train(
        &h,
        &[cfg.to_str().unwrap(), "--run-dir", run2.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let lines = common::event_lines(&RunDir::new(&run2).events_path());
    let warnings: Vec<&Value> = lines.iter().filter(|e| e["type"] == "warning").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]["message"]
        .as_str()
        .unwrap()
        .contains("MLFLOW_TRACKING_URI is not set"));
}

/// `export-config` carries `train.report_to` to each tool under its own name.
#[test]
fn export_config_carries_the_trackers() {
    let h = tempfile::tempdir().unwrap();
    let out = |tool: &str, sets: &[&str]| {
        let dir = h.path().join(format!("{tool}-{}", sets.join("-")));
        let mut args = vec![
            "export-config",
            "tiny-demo",
            "--to",
            tool,
            "-o",
            dir.to_str().unwrap(),
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        let (code, _, err) = common::run(&h, &args);
        assert_eq!(code, 0, "{err}");
        dir
    };
    let both = ["train.report_to=[tensorboard, mlflow]"];
    let run_sh = std::fs::read_to_string(out("trl", &both).join("run.sh")).unwrap();
    assert!(
        run_sh.contains("--report_to tensorboard mlflow"),
        "{run_sh}"
    );
    let run_sh = std::fs::read_to_string(out("trl", &[]).join("run.sh")).unwrap();
    assert!(run_sh.contains("--report_to none"), "{run_sh}");
    let yaml = |p: PathBuf| -> Value {
        serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let ax = yaml(out("axolotl", &both).join("config.yml"));
    assert_eq!(
        (&ax["use_tensorboard"], &ax["use_mlflow"]),
        (&json!(true), &json!(true))
    );
    let ax = yaml(out("axolotl", &[]).join("config.yml"));
    assert!(ax.get("use_tensorboard").is_none() && ax.get("use_mlflow").is_none());
    let lf = yaml(out("llamafactory", &both).join("config.yaml"));
    assert_eq!(lf["report_to"], json!(["tensorboard", "mlflow"]));
    let lf = yaml(out("llamafactory", &["train.report_to=[mlflow]"]).join("config.yaml"));
    assert_eq!(lf["report_to"], json!(["mlflow"]));
}
