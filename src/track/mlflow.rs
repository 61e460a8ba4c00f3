//! MLflow through its tracking server's REST API (`train.report_to: [mlflow]`): the run's
//! config as params and its scalars as metrics, logged by a thread of its own so an HTTP
//! round trip never lengthens a step.
//!
//! The server is `MLFLOW_TRACKING_URI` (http or https), the experiment
//! `MLFLOW_EXPERIMENT_NAME` or else the run's name; `MLFLOW_TRACKING_TOKEN` (a bearer
//! token) or `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic auth) are
//! sent as MLflow's own client sends them. The thread finds or creates the experiment
//! (`experiments/get-by-name`, `experiments/create`), creates the run (`runs/create`),
//! logs params and metrics with `runs/log-batch` (at most 100 params and 1,000 metrics a
//! request, the server's limits; metrics at most a second late) and ends the run with
//! `runs/update` (FINISHED, FAILED or KILLED). The run id is kept in the run folder
//! (`mlflow.json`), so a resumed run logs into the same MLflow run.
//!
//! A server that cannot be reached never fails the run: its first failure becomes one
//! warning, metrics wait and are retried with backoff, and after [`GIVE_UP_AFTER`] failed
//! tries in a row the thread gives up for the run (a second warning says so).

use crate::config::RunConfig;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Failed tries in a row before the thread stops trying (about three minutes of backoff).
pub const GIVE_UP_AFTER: u32 = 10;
/// Metrics are sent at most this long after they were logged.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The server's limits per `runs/log-batch`.
const MAX_PARAMS: usize = 100;
const MAX_METRICS: usize = 1000;
/// Metrics kept while the server is away; older ones are dropped past this.
const MAX_PENDING: usize = 100_000;
/// MLflow's longest param value (MLflow 2's `MAX_PARAM_VAL_LENGTH`).
const MAX_PARAM_LEN: usize = 6000;

/// Where and what to log, read from the environment and the run's config.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The tracking server's base URL, without a trailing slash.
    pub uri: String,
    pub experiment: String,
    pub run_name: String,
    /// The `Authorization` header, if any (never logged).
    pub auth: Option<String>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Where the MLflow run id is kept, and whether this is a resume that should log into
    /// the run it names.
    pub state_file: PathBuf,
    pub resume: bool,
    /// When the run began (ms since the epoch): the MLflow run's `start_time`, stamped
    /// here and not when the request goes out, which a busy or slow thread may send after
    /// the run has ended.
    pub start_ms: i64,
}

impl Settings {
    /// Settings for a run named `run_name` in folder `run_dir`, from `env` (the process
    /// environment in a run; a map in tests). An error says why MLflow cannot be used.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        cfg: &RunConfig,
        run_dir: &std::path::Path,
        resume: bool,
    ) -> Result<Settings, String> {
        let uri = env("MLFLOW_TRACKING_URI")
            .filter(|u| !u.trim().is_empty())
            .ok_or("MLFLOW_TRACKING_URI is not set; nothing is logged to MLflow")?;
        let uri = uri.trim().trim_end_matches('/').to_string();
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(format!(
                "MLFLOW_TRACKING_URI {uri:?}: tunelab logs to a tracking server (http:// or \
                 https://); nothing is logged to MLflow"
            ));
        }
        let run_name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tunelab".into());
        let experiment = env("MLFLOW_EXPERIMENT_NAME")
            .filter(|e| !e.trim().is_empty())
            .or_else(|| cfg.name.clone().filter(|n| !n.trim().is_empty()))
            .unwrap_or_else(|| "tunelab".into());
        let auth = match (
            env("MLFLOW_TRACKING_TOKEN"),
            env("MLFLOW_TRACKING_USERNAME"),
            env("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(t), _, _) if !t.is_empty() => Some(format!("Bearer {t}")),
            (_, Some(u), Some(p)) => {
                Some(format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
            }
            _ => None,
        };
        Ok(Settings {
            start_ms: (crate::units::unix_now() * 1000.0).round() as i64,
            uri,
            experiment,
            run_name,
            auth,
            params: params(cfg),
            tags: vec![
                ("mlflow.source.name".into(), "tunelab".into()),
                ("mlflow.source.type".into(), "LOCAL".into()),
                ("tunelab.run_dir".into(), run_dir.display().to_string()),
                ("tunelab.version".into(), env!("CARGO_PKG_VERSION").into()),
            ],
            state_file: run_dir.join("mlflow.json"),
            resume,
        })
    }
}

/// The config as MLflow params: every leaf by its dotted path (`train.lr`), scalars as
/// YAML writes them, lists and sections as JSON.
pub fn params(cfg: &RunConfig) -> Vec<(String, String)> {
    fn walk(v: &serde_yaml::Value, prefix: &str, out: &mut Vec<(String, String)>) {
        use serde_yaml::Value as Y;
        match v {
            Y::Mapping(m) if !m.is_empty() => {
                for (k, v) in m {
                    let k = k.as_str().map(str::to_string).unwrap_or_else(|| {
                        serde_yaml::to_string(k)
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    });
                    let path = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &path, out);
                }
            }
            Y::String(s) => out.push((prefix.to_string(), s.clone())),
            Y::Null => out.push((prefix.to_string(), "null".into())),
            Y::Bool(_) | Y::Number(_) => out.push((
                prefix.to_string(),
                serde_yaml::to_string(v)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )),
            other => out.push((
                prefix.to_string(),
                serde_json::to_string(other).unwrap_or_default(),
            )),
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_yaml::to_value(cfg) {
        walk(&v, "", &mut out);
    }
    for (k, v) in &mut out {
        *k = clean_key(k);
        if v.len() > MAX_PARAM_LEN {
            let mut end = MAX_PARAM_LEN - 3;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v.truncate(end);
            v.push_str("...");
        }
    }
    out
}

/// A key MLflow accepts: letters, digits, `_ - . / : ` and spaces; anything else (a reward
/// function's name may hold anything) becomes `_`.
pub fn clean_key(k: &str) -> String {
    let k: String = k
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No absolute or parent paths (the file store refuses them).
    k.trim_start_matches('/').replace("..", "__")
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One metric point as MLflow takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub step: i64,
}

impl Metric {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "key": self.key,
            "value": self.value,
            "timestamp": self.timestamp,
            "step": self.step,
        })
    }
}

/// How the MLflow run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Finished,
    Failed,
    Killed,
}

impl End {
    fn status(self) -> &'static str {
        match self {
            End::Finished => "FINISHED",
            End::Failed => "FAILED",
            End::Killed => "KILLED",
        }
    }
}

enum Msg {
    Metrics(Vec<Metric>),
    End(End, i64),
}

/// The logging thread's handle: metrics go in without waiting, warnings come out.
pub struct Mlflow {
    tx: Option<Sender<Msg>>,
    notes: Receiver<String>,
    done: Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mlflow {
    /// Starts the thread; it reaches the server on its own time.
    pub fn start(settings: Settings) -> Result<Mlflow, String> {
        let (tx, rx) = mpsc::channel();
        let (note_tx, notes) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("tunelab/", env!("CARGO_PKG_VERSION")))
            .build();
        let worker = Worker {
            s: settings,
            agent,
            notes: note_tx,
            experiment_id: None,
            run_id: None,
            params_sent: false,
            pending: VecDeque::new(),
            dropped: 0,
            failures: 0,
            warned: false,
            gave_up: false,
            retry_at: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("mlflow".into())
            .spawn(move || {
                worker.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start its thread: {e}"))?;
        Ok(Mlflow {
            tx: Some(tx),
            notes,
            done,
            thread: Some(thread),
        })
    }

    /// Queues `values` at `step` and `time` (unix seconds); never waits.
    pub fn log(&self, step: u64, time: f64, values: &[(String, f64)]) {
        let timestamp = (time * 1000.0).round() as i64;
        let batch = values
            .iter()
            .map(|(k, v)| Metric {
                key: clean_key(k),
                value: *v,
                timestamp,
                step: step as i64,
            })
            .collect();
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Metrics(batch));
        }
    }

    /// Warnings the thread has for the run since the last call.
    pub fn notes(&self) -> Vec<String> {
        self.notes.try_iter().collect()
    }

    /// Ends the MLflow run as `end`: what is queued is sent, then the status. Waits at most
    /// `wait` for the thread; returns its last warnings.
    pub fn finish(&mut self, end: End, wait: Duration) -> Vec<String> {
        if let Some(tx) = self.tx.take() {
            let ms = (crate::units::unix_now() * 1000.0).round() as i64;
            let _ = tx.send(Msg::End(end, ms));
            if self.done.recv_timeout(wait).is_ok() {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
        }
        self.notes()
    }
}

impl Drop for Mlflow {
    /// A run that ends without a final event (its process is going down) is KILLED.
    fn drop(&mut self) {
        self.finish(End::Killed, Duration::from_secs(2));
    }
}

struct Worker {
    s: Settings,
    agent: ureq::Agent,
    notes: Sender<String>,
    experiment_id: Option<String>,
    run_id: Option<String>,
    params_sent: bool,
    pending: VecDeque<Metric>,
    dropped: u64,
    failures: u32,
    warned: bool,
    gave_up: bool,
    retry_at: Instant,
}

/// Why one request failed, as the run's warning says it.
type Failure = String;

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut oldest: Option<Instant> = None;
        loop {
            let wait_until = if self.gave_up {
                None
            } else if self.run_id.is_none() || !self.params_sent {
                Some(self.retry_at)
            } else {
                oldest.map(|t| (t + FLUSH_EVERY).max(self.retry_at))
            };
            let msg = match wait_until {
                Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let end = match msg {
                Ok(Msg::Metrics(m)) => {
                    self.queue(m);
                    oldest.get_or_insert_with(Instant::now);
                    None
                }
                Ok(Msg::End(e, ms)) => Some((e, ms)),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    Some((End::Killed, (crate::units::unix_now() * 1000.0) as i64))
                }
            };
            if let Some(end) = end {
                if !self.gave_up {
                    self.attempt(Some(end));
                }
                return;
            }
            if self.gave_up || Instant::now() < self.retry_at {
                continue;
            }
            let due = self.run_id.is_none()
                || !self.params_sent
                || self.pending.len() >= MAX_METRICS
                || oldest.is_some_and(|t| t.elapsed() >= FLUSH_EVERY);
            if due {
                self.attempt(None);
                if self.pending.is_empty() {
                    oldest = None;
                }
            }
        }
    }

    fn queue(&mut self, m: Vec<Metric>) {
        if self.gave_up {
            return;
        }
        self.pending.extend(m);
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
            self.dropped += 1;
        }
    }

    /// Everything owed to the server, and the end when `end` is set; a failure is counted,
    /// said once, and retried later.
    fn attempt(&mut self, end: Option<(End, i64)>) {
        let result = self.send_all(end);
        let Err(why) = result else {
            self.failures = 0;
            return;
        };
        self.failures += 1;
        if !self.warned {
            self.warned = true;
            self.note(format!(
                "mlflow: {why}; the run goes on and MLflow is retried quietly"
            ));
        }
        if self.failures >= GIVE_UP_AFTER && end.is_none() {
            self.gave_up = true;
            let lost = self.pending.len() as u64 + self.dropped;
            self.pending.clear();
            self.note(format!(
                "mlflow: gave up after {GIVE_UP_AFTER} failed tries in a row ({why}); \
                 {lost} metric values were not logged"
            ));
        }
        let backoff = Duration::from_secs(1 << self.failures.min(5)).min(Duration::from_secs(30));
        self.retry_at = Instant::now() + backoff;
    }

    fn note(&self, s: String) {
        let _ = self.notes.send(s);
    }

    fn send_all(&mut self, end: Option<(End, i64)>) -> Result<(), Failure> {
        if self.run_id.is_none() {
            self.open_run()?;
        }
        let run_id = self.run_id.clone().unwrap_or_default();
        if !self.params_sent {
            for chunk in self.s.params.chunks(MAX_PARAMS) {
                let params: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                    .collect();
                self.post(
                    "runs/log-batch",
                    serde_json::json!({"run_id": run_id, "params": params}),
                )?;
            }
            self.params_sent = true;
        }
        while !self.pending.is_empty() {
            let n = self.pending.len().min(MAX_METRICS);
            let metrics: Vec<serde_json::Value> =
                self.pending.iter().take(n).map(Metric::json).collect();
            self.post(
                "runs/log-batch",
                serde_json::json!({"run_id": run_id, "metrics": metrics}),
            )?;
            self.pending.drain(..n);
        }
        if let Some((e, ms)) = end {
            self.post(
                "runs/update",
                serde_json::json!({"run_id": run_id, "status": e.status(), "end_time": ms}),
            )?;
        }
        Ok(())
    }

    /// The MLflow run this run logs into: the one a resumed run logged into before, or a
    /// new one in the experiment (created when missing).
    fn open_run(&mut self) -> Result<(), Failure> {
        if self.s.resume {
            if let Some(id) = self.kept_run_id() {
                let reopened = self.post(
                    "runs/update",
                    serde_json::json!({"run_id": id, "status": "RUNNING"}),
                );
                if reopened.is_ok() {
                    self.run_id = Some(id);
                    return Ok(());
                }
            }
        }
        let experiment_id = match self.experiment_id.clone() {
            Some(id) => id,
            None => {
                let id = self.experiment()?;
                self.experiment_id = Some(id.clone());
                id
            }
        };
        let tags: Vec<serde_json::Value> =
            std::iter::once(("mlflow.runName".to_string(), self.s.run_name.clone()))
                .chain(self.s.tags.iter().cloned())
                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                .collect();
        let r = self.post(
            "runs/create",
            serde_json::json!({
                "experiment_id": experiment_id,
                "run_name": self.s.run_name,
                "start_time": self.s.start_ms,
                "tags": tags,
            }),
        )?;
        let id = r["run"]["info"]["run_id"]
            .as_str()
            .ok_or("runs/create: the reply names no run_id")?
            .to_string();
        let kept = serde_json::json!({
            "tracking_uri": self.s.uri,
            "experiment_id": experiment_id,
            "run_id": id,
        });
        // Only a resume reads it back; a run that cannot write it logs all the same.
        let _ = crate::files::write_atomic(
            &self.s.state_file,
            serde_json::to_string_pretty(&kept)
                .unwrap_or_default()
                .as_bytes(),
        );
        self.run_id = Some(id);
        Ok(())
    }

    fn kept_run_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.s.state_file).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["tracking_uri"].as_str() == Some(self.s.uri.as_str()))
            .then(|| v["run_id"].as_str().map(str::to_string))
            .flatten()
    }

    /// The experiment's id, found by name or created.
    fn experiment(&self) -> Result<String, Failure> {
        let name = &self.s.experiment;
        match self.get_experiment(name)? {
            Some(id) => Ok(id),
            None => match self.post("experiments/create", serde_json::json!({"name": name})) {
                Ok(r) => r["experiment_id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "experiments/create: the reply names no experiment_id".into()),
                // Another run created it in the meantime.
                Err(e) if e.contains("RESOURCE_ALREADY_EXISTS") => self
                    .get_experiment(name)?
                    .ok_or_else(|| format!("experiment {name:?}: {e}")),
                Err(e) => Err(e),
            },
        }
    }

    fn get_experiment(&self, name: &str) -> Result<Option<String>, Failure> {
        let url = self.url("experiments/get-by-name");
        let req = self
            .auth(self.agent.get(&url))
            .query("experiment_name", name);
        match reply("experiments/get-by-name", req.call()) {
            Ok(v) => {
                let e = &v["experiment"];
                if e["lifecycle_stage"].as_str() == Some("deleted") {
                    return Err(format!(
                        "experiment {name:?} is deleted on the server; restore it or set \
                         MLFLOW_EXPERIMENT_NAME"
                    ));
                }
                Ok(e["experiment_id"].as_str().map(str::to_string))
            }
            Err(e) if e.contains("RESOURCE_DOES_NOT_EXIST") || e.contains("HTTP 404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn post(&self, endpoint: &str, body: serde_json::Value) -> Result<serde_json::Value, Failure> {
        let url = self.url(endpoint);
        let req = self
            .auth(self.agent.post(&url))
            .set("Content-Type", "application/json");
        reply(endpoint, req.send_string(&body.to_string()))
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.s.uri)
    }

    fn auth(&self, req: ureq::Request) -> ureq::Request {
        match &self.s.auth {
            Some(a) => req.set("Authorization", a),
            None => req,
        }
    }
}

/// A reply's JSON body, or what went wrong (the server's own error code and message when it
/// sent one).
fn reply(
    endpoint: &str,
    r: Result<ureq::Response, ureq::Error>,
) -> Result<serde_json::Value, Failure> {
    match r {
        Ok(resp) => {
            let text = resp
                .into_string()
                .map_err(|e| format!("{endpoint}: reading the reply: {e}"))?;
            if text.trim().is_empty() {
                return Ok(serde_json::Value::Null);
            }
            serde_json::from_str(&text)
                .map_err(|e| format!("{endpoint}: the reply is not JSON: {e}"))
        }
        Err(ureq::Error::Status(code, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let detail = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) if v["error_code"].is_string() => format!(
                    "{}: {}",
                    v["error_code"].as_str().unwrap_or_default(),
                    v["message"].as_str().unwrap_or_default()
                ),
                _ => text.chars().take(200).collect(),
            };
            Err(format!("{endpoint}: HTTP {code}: {}", detail.trim()))
        }
        Err(ureq::Error::Transport(t)) => Err(format!("{endpoint}: {t}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn settings_come_from_the_environment() {
        let cfg = RunConfig::minimal("m", "d");
        let dir = std::path::Path::new("/tmp/runs/small-20260101-000000");
        let vars: HashMap<&str, &str> = HashMap::from([
            ("MLFLOW_TRACKING_URI", "http://host:5000/"),
            ("MLFLOW_TRACKING_USERNAME", "ada"),
            ("MLFLOW_TRACKING_PASSWORD", "secret"),
        ]);
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let s = Settings::from_env(&env, &cfg, dir, false).unwrap();
        assert_eq!(s.uri, "http://host:5000");
        assert_eq!(s.experiment, "tunelab");
        assert_eq!(s.run_name, "small-20260101-000000");
        assert_eq!(s.auth.as_deref(), Some("Basic YWRhOnNlY3JldA=="));
        assert_eq!(s.state_file, dir.join("mlflow.json"));
        let p: HashMap<String, String> = s.params.into_iter().collect();
        assert_eq!(p["train.lr"], "0.00002");
        assert_eq!(p["lora.r"], "8");
        assert_eq!(p["lora.target_modules"], r#"["q_proj","v_proj"]"#);
        assert_eq!(p["name"], "null");
        assert_eq!(p["train.report_to"], "[]");
        let mut named = cfg.clone();
        named.name = Some("persona".into());
        assert_eq!(
            Settings::from_env(&env, &named, dir, false)
                .unwrap()
                .experiment,
            "persona"
        );
        let none = |_: &str| None;
        assert!(Settings::from_env(&none, &cfg, dir, false)
            .unwrap_err()
            .contains("MLFLOW_TRACKING_URI is not set"));
        let file = |k: &str| (k == "MLFLOW_TRACKING_URI").then(|| "file:./mlruns".to_string());
        assert!(Settings::from_env(&file, &cfg, dir, false)
            .unwrap_err()
            .contains("http:// or https://"));
    }

    #[test]
    fn keys_and_base64_are_what_mlflow_and_http_expect() {
        assert_eq!(
            clean_key("train/rewards/ok?/mean"),
            "train/rewards/ok_/mean"
        );
        assert_eq!(clean_key("/a/../b"), "a/__/b");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
