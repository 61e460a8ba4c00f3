//! `tunelab serve` as a process, spoken to over real sockets: the demo model and a freshly
//! trained adapter answer exactly as `tunelab chat` does (JSON and streamed), requests queue,
//! a client that leaves frees its slot, errors are OpenAI-shaped, SIGTERM stops it, and
//! SmolLM2 knows the capital of France.

use crate::common;

mod guard;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A home with the demo workspace and an adapter trained for a few steps on it.
fn home_with_adapter() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let demo = h.path().join("data/demo");
    let cfg = h.path().join("small.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: small\nmodel: {{path: {m}}}\ndata: {{train: {d}, max_seq_len: 128}}\n\
             lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [all-linear], use_rslora: false}}\n\
             train: {{lr: 0.01, scheduler: constant, warmup: 0, batch_size: 4, max_steps: 20, seed: 3, keep_checkpoints: 0}}\n",
            m = demo.join("tiny-model").display(),
            d = demo.join("persona.jsonl").display(),
        ),
    )
    .unwrap();
    let run = h.path().join("pirate-run");
    common::ok(
        h.path(),
        &[
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    (h, demo.join("tiny-model"), run.join("adapter"))
}

/// A running `tunelab serve`; stopped (SIGTERM, then killed) when dropped.
struct Server {
    child: Child,
    addr: String,
    home: PathBuf,
}

impl Server {
    fn start(home: &tempfile::TempDir, args: &[&str]) -> Server {
        let mut child = common::tunelab(home)
            .arg("serve")
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tunelab serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let mut r = BufReader::new(stdout);
            let _ = r.read_line(&mut first);
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) if !l.is_empty() => l,
            _ => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("tunelab serve printed no address; stderr:\n{err}");
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .to_string();
        assert!(
            addr.starts_with("127.0.0.1:") || args.contains(&"--host"),
            "binds loopback by default: {addr}"
        );
        Server {
            child,
            addr,
            home: home.path().to_path_buf(),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = http(&self.addr, "GET", path, "");
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    fn post(&self, body: &Value) -> (u16, Value) {
        let (status, text) = http(
            &self.addr,
            "POST",
            "/v1/chat/completions",
            &body.to_string(),
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A streamed completion: the concatenated content, every `data:` payload, and the
    /// finish reason.
    fn stream(&self, body: &Value) -> (String, Vec<String>, String) {
        let (status, text) = http(
            &self.addr,
            "POST",
            "/v1/chat/completions",
            &body.to_string(),
        );
        assert_eq!(status, 200, "{text}");
        let data: Vec<String> = text
            .split("\n\n")
            .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_string))
            .collect();
        let (mut content, mut finish) = (String::new(), String::new());
        for d in data.iter().filter(|d| *d != "[DONE]") {
            let v: Value = serde_json::from_str(d).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk", "{d}");
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                content.push_str(c);
            }
            if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
        (content, data, finish)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("state/tunelab.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on its own connection: the status and the (de-chunked) body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a response head");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        },
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("a chunk size line");
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// `tunelab chat`'s greedy reply.
fn chat_cli(
    home: &tempfile::TempDir,
    model: &Path,
    adapter: Option<&Path>,
    prompt: &str,
    max: usize,
) -> String {
    let max = max.to_string();
    let mut args = vec![
        "chat",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        prompt,
        "--max-new-tokens",
        &max,
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter", a.to_str().unwrap()]);
    }
    let (code, out, err) = common::run(home, &args);
    assert_eq!(code, 0, "{err}");
    out.strip_suffix('\n').unwrap_or(&out).to_string()
}

fn ask(model: &str, prompt: &str, max: usize) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max,
    })
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
        .to_string()
}

#[test]
fn serve_answers_as_chat_does() {
    let (h, model, adapter) = home_with_adapter();
    let s = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
        ],
    );
    let (status, health) = s.get("/health");
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");

    let (status, models) = s.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tiny-model", "pirate-run"], "{models}");
    assert_eq!(models["data"][1]["parent"], "tiny-model");
    assert_eq!(s.get("/v1/models/pirate-run").1["id"], "pirate-run");

    let prompt = "Who are you?";
    for (id, adapter) in [
        ("pirate-run", Some(adapter.as_path())),
        ("tiny-model", None),
    ] {
        let expected = chat_cli(&h, &model, adapter, prompt, 40);
        assert!(!expected.is_empty());
        let (status, r) = s.post(&ask(id, prompt, 40));
        assert_eq!(status, 200, "{r}");
        assert_eq!(
            content(&r),
            expected,
            "{id}: the server answers as tunelab chat"
        );
        assert_eq!(r["object"], "chat.completion");
        assert_eq!(r["model"], id);
        let usage = &r["usage"];
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{usage}");
        assert!(
            usage["completion_tokens"].as_u64().unwrap() <= 40,
            "{usage}"
        );
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["prompt_tokens"].as_u64().unwrap()
                    + usage["completion_tokens"].as_u64().unwrap()
            )
        );

        let mut body = ask(id, prompt, 40);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let (streamed, data, finish) = s.stream(&body);
        assert_eq!(streamed, expected, "{id}: the chunks make the same text");
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(finish, r["choices"][0]["finish_reason"].as_str().unwrap());
        let first: Value = serde_json::from_str(&data[0]).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        assert_eq!(usage_chunk["usage"], r["usage"], "{usage_chunk}");
    }
    // The two ids are different models (the adapter changes the answer).
    let base = content(&s.post(&ask("tiny-model", prompt, 40)).1);
    let tuned = content(&s.post(&ask("pirate-run", prompt, 40)).1);
    assert_ne!(base, tuned);

    // A stop string cuts the text (and is left out); max_tokens ends it with "length".
    let full = base.clone();
    let cut = full.chars().skip(3).collect::<String>();
    let stop_at: String = cut.chars().take(2).collect();
    let mut body = ask("tiny-model", prompt, 40);
    body["stop"] = json!([stop_at]);
    let stopped = s.post(&body).1;
    assert_eq!(content(&stopped), full[..full.find(&stop_at).unwrap()]);
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    let short = s.post(&ask("tiny-model", prompt, 3)).1;
    assert_eq!(short["choices"][0]["finish_reason"], "length");
    assert_eq!(short["usage"]["completion_tokens"], 3);

    let log = s.log();
    assert!(
        log.contains("\"POST /v1/chat/completions\" 200") && log.contains("\"GET /v1/models\" 200"),
        "access lines in the log:\n{log}"
    );
}

#[test]
fn concurrent_requests_queue_and_all_succeed() {
    let (h, model, adapter) = home_with_adapter();
    // One slot: three of the four wait in the queue.
    let s = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--parallel",
            "1",
        ],
    );
    let answers: Vec<(u16, Value)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    let id = if i % 2 == 0 {
                        "pirate-run"
                    } else {
                        "tiny-model"
                    };
                    let mut body = ask(id, "Who are you?", 60);
                    body["stream"] = json!(i >= 2);
                    if i >= 2 {
                        let (text, _, _) = s.stream(&body);
                        (200, json!({"choices": [{"message": {"content": text}}]}))
                    } else {
                        s.post(&body)
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, v) in &answers {
        assert_eq!(*status, 200, "{v}");
    }
    assert_eq!(
        content(&answers[0].1),
        content(&answers[2].1),
        "same adapter, same greedy text"
    );
    assert_eq!(content(&answers[1].1), content(&answers[3].1));
    assert_eq!(
        content(&answers[0].1),
        chat_cli(&h, &model, Some(&adapter), "Who are you?", 60)
    );
}

#[test]
fn a_client_that_leaves_frees_its_slot() {
    let (h, model, _) = home_with_adapter();
    // One slot, no queue: a wedged slot would refuse the next request with 429.
    let s = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--parallel",
            "1",
            "--queue",
            "0",
        ],
    );
    // The base model rambles to the end of its context when greedy.
    let mut body = ask("tiny-model", "Tell me a long story.", 2000);
    body["stream"] = json!(true);
    let body = body.to_string();
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while seen.matches("data: ").count() < 3 {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // While it streams, the only slot is taken and the queue holds none.
    let (status, busy) = s.post(&ask("tiny-model", "Hi", 4));
    assert_eq!(status, 429, "{busy}");
    assert_eq!(busy["error"]["code"], "server_busy", "{busy}");
    assert_eq!(busy["error"]["type"], "server_error");
    drop(conn);

    // The slot comes back well before 2,000 tokens could have been generated...
    let t = Instant::now();
    loop {
        let (_, health) = s.get("/health");
        if health["running"] == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the slot was never freed: {health}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and the next request completes.
    let (status, r) = s.post(&ask("tiny-model", "Hi", 8));
    assert_eq!(status, 200, "{r}");
    let log = s.log();
    let stopped = log
        .lines()
        .find_map(|l| l.split("generation stopped after about ").nth(1))
        .unwrap_or_else(|| panic!("no early stop in the log:\n{log}"));
    let tokens: usize = stopped.split(' ').next().unwrap().parse().unwrap();
    assert!(
        tokens < 1000,
        "generation went on for {tokens} tokens after the client left"
    );
    assert!(
        log.contains(" 499 "),
        "the access line says the client left:\n{log}"
    );
}

#[test]
fn errors_are_openai_shaped() {
    let (h, model, adapter) = home_with_adapter();
    let s = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            &format!("captain={}", adapter.display()),
        ],
    );
    let check = |status: u16, v: &Value, want: u16| {
        assert_eq!(status, want, "{v}");
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.as_object().unwrap().contains_key("code"), "{v}");
    };
    let (status, v) = s.post(&ask("no-such-model", "Hi", 4));
    check(status, &v, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("captain"),
        "names what is served: {v}"
    );
    assert_eq!(
        s.post(&ask("captain", "Hi", 4)).0,
        200,
        "NAME=PATH names the adapter"
    );

    let (status, text) = http(
        &s.addr,
        "POST",
        "/v1/chat/completions",
        "{\"model\": \"captain\", \"messages\": [",
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    check(status, &v, 400);
    assert_eq!(v["error"]["code"], "invalid_json");

    for (body, field) in [
        (json!({"model": "captain"}), "messages"),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "stop": 3}),
            "stop",
        ),
    ] {
        let (status, v) = s.post(&body);
        check(status, &v, 400);
        assert_eq!(v["error"]["param"], field, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(field),
            "{v}"
        );
    }
    let (status, v) = s.get("/v1/nothing");
    check(status, &v, 404);
    let (status, v) = s.get("/v1/models/nope");
    check(status, &v, 404);
    let (status, text) = http(&s.addr, "GET", "/v1/chat/completions", "");
    check(status, &serde_json::from_str(&text).unwrap(), 405);
}

#[test]
fn sigterm_stops_the_server() {
    let (h, model, _) = home_with_adapter();
    let mut s = Server::start(&h, &["--model", model.to_str().unwrap()]);
    assert_eq!(s.get("/health").0, 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(s.log().contains("SIGTERM"), "{}", s.log());
}

#[test]
fn smollm2_answers_the_capital_of_france() {
    let Some(gguf) = common::smollm2_gguf("smollm2_answers_the_capital_of_france") else {
        return;
    };
    let h = tempfile::tempdir().unwrap();
    let s = Server::start(&h, &["--model", gguf.to_str().unwrap()]);
    let (_, models) = s.get("/v1/models");
    let id = models["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "SmolLM2-135M-Instruct.Q4_1");
    let (status, r) = s.post(&ask(&id, "What is the capital of France?", 24));
    assert_eq!(status, 200, "{r}");
    assert!(content(&r).contains("Paris"), "{r}");
    let mut body = ask(&id, "What is the capital of France?", 24);
    body["stream"] = json!(true);
    let (streamed, data, _) = s.stream(&body);
    assert_eq!(streamed, content(&r));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}
