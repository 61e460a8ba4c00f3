//! `tunelab data synth` against local servers written here (std `TcpListener` on a loopback
//! port, hand-written HTTP/1.1) that speak the OpenAI chat-completions or Anthropic Messages
//! shape and inject faults: 429 with `Retry-After`, 5xx, malformed bodies, silence, a kill
//! mid-run. No test reaches the network.

use crate::common;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    pub(crate) body: Value,
    at: Instant,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The system text: Anthropic's `system`, or an OpenAI system message.
    pub(crate) fn system(&self) -> Option<String> {
        if let Some(s) = self.body.get("system").and_then(Value::as_str) {
            return Some(s.to_string());
        }
        self.body["messages"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "system")
            .and_then(|m| m["content"].as_str().map(String::from))
    }

    pub(crate) fn last_user(&self) -> String {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// What the server does with one request.
pub(crate) enum Answer {
    /// A status, extra headers and a body.
    Http(u16, Vec<(&'static str, String)>, String),
    /// The same with a binary body.
    Bytes(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Reads the request and never answers.
    Silence,
}

/// A loopback HTTP/1.1 server (also the fake hub of `data_pull`).
pub(crate) struct Server {
    pub(crate) base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Serves each request with `handle(request, its 0-based index)`.
    pub(crate) fn start(handle: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, handle) = (seen.clone(), Arc::new(handle));
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (log, handle, count) = (log.clone(), handle.clone(), count.clone());
                std::thread::spawn(move || serve_one(stream, &log, &*handle, &count));
            }
        });
        Server { base, seen }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(
    stream: TcpStream,
    log: &Mutex<Vec<Seen>>,
    handle: &(dyn Fn(&Seen, usize) -> Answer + Send + Sync),
    count: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let req = Seen {
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(req.clone());
        count.fetch_add(1, Ordering::SeqCst)
    };
    match handle(&req, index) {
        Answer::Silence => std::thread::sleep(Duration::from_secs(30)),
        Answer::Http(status, extra, body) => respond(stream, status, extra, body.as_bytes()),
        Answer::Bytes(status, extra, body) => respond(stream, status, extra, &body),
    }
}

fn respond(mut out: TcpStream, status: u16, extra: Vec<(&'static str, String)>, body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
    let _ = out.flush();
}

/// A chat-completions success with `usage` (10 in, 5 out).
pub(crate) fn openai_ok(content: &str) -> Answer {
    let body = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    });
    Answer::Http(200, vec![], body.to_string())
}

/// What a well-behaved model answers: a JSON prompt when asked to write one (numbered from
/// `counter`, so each is new), else an answer naming the voice it was asked for.
pub(crate) fn content(req: &Seen, counter: &AtomicUsize) -> String {
    let system = req.system().unwrap_or_default();
    let user = req.last_user();
    if system.contains("realistic messages") {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let topic = user
            .strip_prefix("Topic: ")
            .and_then(|t| t.lines().next())
            .unwrap_or("the example");
        return json!({"prompt": format!("Question {n} about {topic}?")}).to_string();
    }
    if system.contains("generic assistant") {
        return format!("Plain answer to: {user}");
    }
    if system.is_empty() {
        return format!("Base answer to: {user}");
    }
    format!("Arr! Pirate answer to: {user}")
}

pub(crate) fn well_behaved() -> impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static {
    let counter = AtomicUsize::new(0);
    move |req, _| openai_ok(&content(req, &counter))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

/// The user prompt of an output line (openai messages or TRL conversational preference).
fn prompt_of(v: &Value) -> String {
    let msgs = v
        .get("messages")
        .or_else(|| v.get("prompt"))
        .and_then(Value::as_array)
        .unwrap();
    msgs.iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap()
        .to_string()
}

fn synth_args<'a>(base: &'a str, seeds: &'a Path, out: &'a Path, n: &'a str) -> Vec<String> {
    [
        "data",
        "synth",
        "--provider",
        "openai",
        "--base-url",
        base,
        "--model",
        "test-model",
        "--seed-file",
        seeds.to_str().unwrap(),
        "--persona",
        "You are Captain Byte, a cheerful pirate who teaches Rust.",
        "-n",
        n,
        "-o",
        out.to_str().unwrap(),
        "--backoff-ms",
        "50",
        "--rpm",
        "0",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(home: &tempfile::TempDir, args: &[String], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut c = common::tunelab(home);
    c.args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        format!("{stdout}\n{stderr}"),
    )
}

fn validates(home: &tempfile::TempDir, out: &Path) {
    let (code, stdout, stderr) = common::run(home, &["data", "validate", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

const KEY: &str = "sk-test-never-logged-0123456789";

#[test]
fn faults_are_retried_and_rejected_and_every_record_is_written_once() {
    let counter = AtomicUsize::new(0);
    let server = Server::start(move |req, i| {
        match i {
        0 => Answer::Http(
            429,
            vec![("retry-after", "1".into())],
            json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}).to_string(),
        ),
        1 => Answer::Http(500, vec![], "{\"error\": {\"message\": \"boom\"}}".into()),
        // A body that is not a chat completion, echoing the key (it must not reach any file).
        2 => Answer::Http(200, vec![], format!("{{\"choices\": [ oops {KEY}")),
        _ => openai_ok(&content(req, &counter)),
    }
    });
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("seeds.jsonl");
    write(
        &seeds,
        "{\"prompt\": \"How do I borrow a vector mutably?\"}\n{\"prompt\": \"What is a lifetime?\"}\n{\"prompt\": \"Why does my closure not compile?\"}\n",
    );
    let out = home.path().join("captain.jsonl");
    let mut args = synth_args(&format!("{}/v1", server.base), &seeds, &out, "3");
    args.extend(["--concurrency", "1", "--attempts", "4", "--timeout", "10"].map(String::from));
    let (code, report, text) = run(
        &home,
        &args,
        &[("OPENAI_API_KEY", KEY), ("TUNELAB_LOG", "trace")],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["written"], 3, "{report}");
    assert_eq!(report["records"], 3);
    assert_eq!(report["skipped"], 0);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["retries"], 2, "{report}");
    assert_eq!(report["request_errors"], 2);
    assert_eq!(report["rejected"], 1);
    assert_eq!(report["requests"], 6);
    assert_eq!(report["tokens"], json!({"input": 30, "output": 15}));
    // Retry-After: 1 was honoured.
    let seen = server.seen();
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950));
    for s in &seen {
        assert_eq!(s.path, "/v1/chat/completions");
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(s.body["model"], "test-model");
        assert_eq!(s.body["messages"][0]["role"], "system");
    }
    // Every record once, prompts as seeded, the persona's answers.
    let recs = lines(&out);
    assert_eq!(recs.len(), 3);
    let prompts: HashSet<String> = recs.iter().map(prompt_of).collect();
    assert_eq!(prompts.len(), 3);
    assert!(prompts.contains("What is a lifetime?"));
    for r in &recs {
        let msgs = r["messages"].as_array().unwrap();
        assert_eq!(
            msgs.len(),
            2,
            "no system message unless --include-system: {r}"
        );
        assert!(msgs[1]["content"].as_str().unwrap().starts_with("Arr!"));
        assert!(r["synth_id"].as_str().unwrap().ends_with(":0"));
    }
    // The malformed body went to the rejected log with its prompt, never to the output.
    let rejected = lines(&home.path().join("captain.rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["stage"], "answer");
    assert!(rejected[0]["reason"]
        .as_str()
        .unwrap()
        .contains("malformed response"));
    assert_eq!(rejected[0]["prompt"], "How do I borrow a vector mutably?");
    assert!(rejected[0]["output"]
        .as_str()
        .unwrap()
        .contains("[redacted]"));
    validates(&home, &out);
    // The key is in no file and no output.
    let log = std::fs::read_to_string(home.path().join("state/tunelab.log")).unwrap_or_default();
    assert!(log.contains("synth"), "the log has the run");
    for (what, s) in [
        ("output", std::fs::read_to_string(&out).unwrap()),
        (
            "rejected log",
            std::fs::read_to_string(home.path().join("captain.rejected.jsonl")).unwrap(),
        ),
        ("report and stderr", text),
        ("log", log),
    ] {
        assert!(!s.contains(KEY), "the key leaked into the {what}");
    }
}

#[test]
fn a_server_that_never_answers_hits_the_timeout_and_is_reported() {
    let server = Server::start(|_, _| Answer::Silence);
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("seeds.txt");
    write(&seeds, "What is ownership?\n");
    let out = home.path().join("out.jsonl");
    let mut args = synth_args(&format!("{}/v1", server.base), &seeds, &out, "1");
    args.extend(["--timeout", "1", "--attempts", "2"].map(String::from));
    let started = Instant::now();
    let (code, report, text) = run(&home, &args, &[]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(code, 1, "{text}");
    assert_eq!(report["timeouts"], 2, "{report}");
    assert_eq!(report["failed"], 1);
    assert_eq!(report["written"], 0);
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{report}"
    );
    assert_eq!(server.seen().len(), 2);
    assert!(lines(&out).is_empty());
    // Without --json the text report says so, and how to carry on.
    let args: Vec<String> = args.into_iter().filter(|a| a != "--json").collect();
    let (code, _, text) = run(&home, &args, &[]);
    assert_eq!(code, 1);
    assert!(text.contains("(2 timed out)"), "{text}");
    assert!(text.contains("run the same command again"), "{text}");
}

#[test]
fn a_killed_run_resumes_without_losing_or_duplicating_records() {
    let counter = AtomicUsize::new(0);
    let server = Server::start(move |req, _| {
        std::thread::sleep(Duration::from_millis(120));
        openai_ok(&content(req, &counter))
    });
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("topics.txt");
    write(&seeds, "borrowing\nlifetimes\n# a comment\ntraits\nasync\n");
    let out = home.path().join("resume.jsonl");
    let mut args = synth_args(&format!("{}/v1", server.base), &seeds, &out, "16");
    args.extend(["--concurrency", "3"].map(String::from));
    let mut child = common::tunelab(&home)
        .args(&args)
        .env_remove("OPENAI_API_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&out).len() < 4 {
        assert!(Instant::now() < deadline, "no records appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = lines(&out).len();
    assert!(before < 16, "the run finished before it was killed");
    let (code, report, text) = run(&home, &args, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["skipped"], before, "{report}");
    assert_eq!(report["written"], 16 - before);
    let recs = lines(&out);
    assert_eq!(recs.len(), 16);
    let ids: HashSet<&str> = recs
        .iter()
        .map(|r| r["synth_id"].as_str().unwrap())
        .collect();
    let prompts: HashSet<String> = recs.iter().map(prompt_of).collect();
    assert_eq!((ids.len(), prompts.len()), (16, 16));
    // Four topics, four rounds each.
    for round in 0..4 {
        assert_eq!(
            ids.iter()
                .filter(|i| i.ends_with(&format!(":{round}")))
                .count(),
            4,
            "{ids:?}"
        );
    }
    // Later rounds were told what each topic already has.
    let seen = server.seen();
    assert!(seen
        .iter()
        .any(|s| s.last_user().contains("Already written")));
    validates(&home, &out);
    // A third run has nothing to do.
    let (code, report, _) = run(&home, &args, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        (report["written"].as_u64(), report["skipped"].as_u64()),
        (Some(0), Some(16))
    );
    assert_eq!(report["requests"], 0);
}

#[test]
fn preference_pairs_take_the_rejected_side_from_a_second_server_or_a_plain_answer() {
    let strong = Server::start(well_behaved());
    let base = Server::start(well_behaved());
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("seeds.txt");
    write(&seeds, "What is a trait object?\nShadowing?\n");
    let out = home.path().join("pairs.jsonl");
    let mut args = synth_args(&format!("{}/v1", strong.base), &seeds, &out, "2");
    args.extend(
        [
            "--kind",
            "preference",
            "--rejected-base-url",
            &format!("{}/v1", base.base),
            "--rejected-model",
            "base",
            "--include-system",
        ]
        .map(String::from),
    );
    let (code, report, text) = run(&home, &args, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["format"], "preference");
    assert_eq!(report["kind"], "preference");
    let recs = lines(&out);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        // TRL's conversational shape, with the persona as the system message.
        assert_eq!(r["prompt"][0]["role"], "system");
        assert_eq!(r["prompt"][1]["role"], "user");
        let chosen = r["chosen"][0]["content"].as_str().unwrap();
        let rejected = r["rejected"][0]["content"].as_str().unwrap();
        assert!(chosen.starts_with("Arr!"), "{r}");
        assert!(rejected.starts_with("Base answer to:"), "{r}");
        assert_eq!(r["chosen"][0]["role"], "assistant");
    }
    // The base model got the bare prompt, under its own model name.
    for s in base.seen() {
        assert_eq!(s.body["model"], "base");
        assert!(s.system().is_none());
    }
    assert_eq!(strong.seen().len(), 2);
    validates(&home, &out);

    // Without a second provider the strong model writes a plain answer as the rejected one,
    // here as unpaired (KTO) data: two rated lines per pair.
    let out = home.path().join("kto.jsonl");
    let mut args = synth_args(&format!("{}/v1", strong.base), &seeds, &out, "2");
    args.extend(["--kind", "preference", "--format", "kto"].map(String::from));
    let (code, report, text) = run(&home, &args, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["records"], 2);
    let recs = lines(&out);
    assert_eq!(recs.len(), 4);
    let bad: Vec<&Value> = recs.iter().filter(|r| r["label"] == false).collect();
    assert_eq!(bad.len(), 2);
    for r in bad {
        let completion = r["completion"][0]["content"].as_str().unwrap();
        assert!(completion.starts_with("Plain answer to:"), "{r}");
    }
    validates(&home, &out);
    // Rerun: the pairs are done, counted once each.
    let (code, report, _) = run(&home, &args, &[]);
    assert_eq!((code, report["skipped"].as_u64()), (0, Some(2)));
}

#[test]
fn the_anthropic_provider_speaks_the_messages_api_and_retries_overloaded() {
    let counter = AtomicUsize::new(0);
    let server = Server::start(move |req, i| {
        if i == 0 {
            let body =
                std::fs::read_to_string(common::fixture("synth/anthropic_error_overloaded.json"))
                    .unwrap();
            return Answer::Http(529, vec![], body);
        }
        let text = content(req, &counter);
        let body = json!({
            "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 7, "output_tokens": 3},
        });
        Answer::Http(200, vec![], body.to_string())
    });
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("topics.txt");
    write(&seeds, "pattern matching\n");
    let persona = home.path().join("persona.md");
    write(
        &persona,
        "You are Captain Byte, a cheerful pirate who teaches Rust.\n",
    );
    let out = home.path().join("claude.jsonl");
    let args: Vec<String> = [
        "data",
        "synth",
        "--provider",
        "anthropic",
        "--base-url",
        &server.base,
        "--model",
        "claude-test",
        "--seed-file",
        seeds.to_str().unwrap(),
        "--persona",
        &format!("@{}", persona.display()),
        "-n",
        "2",
        "-o",
        out.to_str().unwrap(),
        "--backoff-ms",
        "20",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    let key = "sk-ant-test-secret-value";
    let (code, report, text) = run(&home, &args, &[("ANTHROPIC_API_KEY", key)]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["retries"], 1, "{report}");
    // Two records, a prompt and an answer each: 4 successes of 7 in, 3 out.
    assert_eq!(report["tokens"], json!({"input": 28, "output": 12}));
    for s in server.seen() {
        assert_eq!(s.path, "/v1/messages");
        assert_eq!(s.header("x-api-key"), Some(key));
        assert_eq!(s.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(s.body["model"], "claude-test");
        assert!(s.body["max_tokens"].as_u64().is_some());
        assert!(s.body["system"].as_str().is_some());
        assert!(s.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["role"] != "system"));
    }
    let recs = lines(&out);
    assert_eq!(recs.len(), 2);
    let prompts: HashSet<String> = recs.iter().map(prompt_of).collect();
    assert_eq!(prompts.len(), 2);
    assert!(prompts.iter().all(|p| p.contains("pattern matching")));
    assert!(!text.contains(key) && !std::fs::read_to_string(&out).unwrap().contains(key));
    validates(&home, &out);
}

#[test]
fn duplicate_prompts_are_dropped_and_refusals_rejected() {
    // Every prompt the model writes is the same one; answers are refusals every other time.
    let n = AtomicUsize::new(0);
    let server = Server::start(move |req, _| {
        let system = req.system().unwrap_or_default();
        if system.contains("realistic messages") {
            return openai_ok("```json\n{\"prompt\": \"Same question?\"}\n```");
        }
        if n.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            return openai_ok("I'm sorry, but I can't help with that.");
        }
        openai_ok("Arr! An answer.")
    });
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("topics.txt");
    write(&seeds, "closures\n");
    let out = home.path().join("dups.jsonl");
    let mut args = synth_args(&format!("{}/v1", server.base), &seeds, &out, "3");
    args.extend(["--concurrency", "1"].map(String::from));
    let (code, report, text) = run(&home, &args, &[]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(report["records"], 1, "{report}");
    assert!(report["duplicates"].as_u64().unwrap() >= 2, "{report}");
    assert!(report["rejected"].as_u64().unwrap() >= 1);
    let rejected = lines(&home.path().join("dups.rejected.jsonl"));
    assert!(rejected
        .iter()
        .all(|r| r["reason"] == "refusal-only reply" && r["prompt"] == "Same question?"));
    assert_eq!(lines(&out).len(), 1);
}

#[test]
fn unusable_inputs_and_refusing_providers_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("seeds.txt");
    write(&seeds, "ownership\n");
    let out = home.path().join("out.jsonl");
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let base = [
        "data",
        "synth",
        "--seed-file",
        seeds.to_str().unwrap(),
        "--persona",
        "p",
        "-n",
        "1",
    ];
    // Anthropic without a key.
    let mut args = s(&base);
    args.extend(s(&["--provider", "anthropic", "-o", out.to_str().unwrap()]));
    let (code, _, text) = run(&home, &args, &[]);
    assert_eq!(code, 2);
    assert!(text.contains("ANTHROPIC_API_KEY is not set"), "{text}");
    // A .json output cannot be appended to.
    let mut args = s(&base);
    args.extend(s(&[
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "-o",
    ]));
    args.push(home.path().join("out.json").display().to_string());
    let (code, _, text) = run(&home, &args, &[]);
    assert_eq!(code, 2);
    assert!(text.contains("must be .jsonl"), "{text}");
    // SFT records cannot be written as a preference format.
    let mut args = s(&base);
    args.extend(s(&[
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--format",
        "preference",
        "-o",
        out.to_str().unwrap(),
    ]));
    let (code, _, text) = run(&home, &args, &[]);
    assert_eq!(code, 2);
    assert!(text.contains("cannot hold"), "{text}");
    // An output holding other records is not appended to.
    let sft = home.path().join("sft.jsonl");
    write(
        &sft,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
    );
    let mut args = s(&base);
    args.extend(s(&[
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--kind",
        "preference",
        "-o",
        sft.to_str().unwrap(),
    ]));
    let (code, _, text) = run(&home, &args, &[]);
    assert_eq!(code, 2);
    assert!(
        text.contains("already holds records that are not preference records"),
        "{text}"
    );
    // A missing seed file.
    let (code, _, text) = run(
        &home,
        &s(&[
            "data",
            "synth",
            "--provider",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--seed-file",
            "/nonexistent/seeds.txt",
            "--persona",
            "p",
            "-n",
            "1",
            "-o",
            out.to_str().unwrap(),
        ]),
        &[],
    );
    assert_eq!(code, 2);
    assert!(text.contains("/nonexistent/seeds.txt"), "{text}");
    // A server that refuses the key stops the run at once.
    let server = Server::start(|_, _| {
        Answer::Http(
            401,
            vec![],
            json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
                .to_string(),
        )
    });
    let mut args = s(&base);
    args.extend(s(&[
        "--provider",
        "openai",
        "--base-url",
        &format!("{}/v1", server.base),
        "--model",
        "m",
        "-o",
        out.to_str().unwrap(),
    ]));
    let (code, _, text) = run(&home, &args, &[("OPENAI_API_KEY", KEY)]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("HTTP 401: invalid_api_key: Incorrect API key provided"),
        "{text}"
    );
    assert!(!text.contains(KEY));
    assert_eq!(server.seen().len(), 1, "a refused key is not retried");
}

#[test]
fn a_server_without_a_model_name_is_asked_for_its_models() {
    let counter = AtomicUsize::new(0);
    let server = Server::start(move |req, _| {
        if req.path.ends_with("/models") {
            return Answer::Http(
                200,
                vec![],
                json!({"object": "list", "data": [{"id": "served-base", "object": "model"}]})
                    .to_string(),
            );
        }
        let mut a = content(req, &counter);
        a.push_str(&format!(" [{}]", req.body["model"].as_str().unwrap_or("?")));
        // No usage field, as some servers send.
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": a}, "finish_reason": "stop"}]});
        Answer::Http(200, vec![], body.to_string())
    });
    let home = tempfile::tempdir().unwrap();
    let seeds = home.path().join("seeds.txt");
    write(&seeds, "What is a slice?\n");
    let out = home.path().join("out.jsonl");
    let args: Vec<String> = synth_args(&format!("{}/v1", server.base), &seeds, &out, "1")
        .into_iter()
        .filter(|a| a != "--model" && a != "test-model")
        .collect();
    let (code, report, text) = run(&home, &args, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["tokens"], json!({"input": 0, "output": 0}));
    let recs = lines(&out);
    assert!(recs[0]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .ends_with("[served-base]"));
    // No Authorization header without OPENAI_API_KEY.
    assert!(server
        .seen()
        .iter()
        .all(|s| s.header("authorization").is_none()));
}
