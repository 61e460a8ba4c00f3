//! `tunelab serve` on a shared box: API keys on every route but `/health` (never logged), a
//! slow client dropped without holding anything, the queue and the rate window answering
//! 429 with `Retry-After`, limits that are clear errors, and a warning when it listens beyond
//! loopback without a key.

use super::{ask, home_with_adapter, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-0123456789";

/// One request with `headers` on its own connection: status, response headers (lower-case
/// names), body (de-chunked when chunked).
fn call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a response head");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        super::dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head, body)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::String(body.into()))
}

#[test]
fn keys_guard_every_route_but_health_and_are_never_logged() {
    let (h, model, _) = home_with_adapter();
    let s = Server::start(&h, &["--model", model.to_str().unwrap(), "--api-key", KEY]);
    let chat = ask("tiny-model", "Hi", 4).to_string();
    let auth = format!("Authorization: Bearer {KEY}");
    for (method, path, body) in [
        ("GET", "/v1/models", ""),
        ("POST", "/v1/chat/completions", chat.as_str()),
    ] {
        let (status, _, b) = call(&s.addr, method, path, &[], body);
        assert_eq!(status, 401, "{path}: {b}");
        let v = json_of(&b);
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let (status, _, b) = call(
            &s.addr,
            method,
            path,
            &["Authorization: Bearer sk-wrong-0123456789"],
            body,
        );
        assert_eq!(status, 401, "{path}: {b}");
        assert!(
            !b.contains("sk-wrong"),
            "the answer never echoes a key: {b}"
        );
        let (status, _, b) = call(&s.addr, method, path, &[&auth], body);
        assert_eq!(status, 200, "{path}: {b}");
    }
    let (status, _, b) = call(&s.addr, "GET", "/health", &[], "");
    assert_eq!(status, 200, "{b}");
    assert_eq!(json_of(&b)["auth"], true);
    let log = s.log();
    for word in ["key=missing", "key=wrong", "key=ok"] {
        assert!(log.contains(word), "{word} in the access log:\n{log}");
    }
    assert!(
        !log.contains(KEY) && !log.contains("sk-wrong"),
        "keys are never logged:\n{log}"
    );
}

#[test]
fn a_slow_client_is_dropped_while_others_are_served() {
    let (h, model, _) = home_with_adapter();
    let s = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--parallel",
            "1",
            "--header-timeout",
            "1",
            "--body-timeout",
            "1",
        ],
    );
    // Slow loris: half a request line and then nothing.
    let mut loris = TcpStream::connect(&s.addr).unwrap();
    loris
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Another client is served meanwhile.
    let (status, _, b) = call(
        &s.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &ask("tiny-model", "Hi", 4).to_string(),
    );
    assert_eq!(status, 200, "{b}");
    // The slow one is closed after the header timeout.
    loris
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 512];
    let n = loris.read(&mut buf).unwrap_or(0);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "held for {:?}",
        t.elapsed()
    );
    let said = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || said.contains(" 408 "),
        "closed or timed out: {said:?}"
    );
    // A body that never finishes gets 408 and frees its connection; no slot was taken.
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":",
    )
    .unwrap();
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.contains(" 408 ") && got.contains("request_timeout"),
        "{got}"
    );
    let (_, _, health) = call(&s.addr, "GET", "/health", &[], "");
    assert_eq!(json_of(&health)["running"], 0, "{health}");
}

#[test]
fn the_queue_and_the_rate_window_say_when_to_retry() {
    let (h, model, _) = home_with_adapter();
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
    // A long stream holds the only slot.
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
    while seen.matches("data: ").count() < 2 {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let (status, head, b) = call(
        &s.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &ask("tiny-model", "Hi", 4).to_string(),
    );
    assert_eq!(status, 429, "{b}");
    assert!(head.contains("retry-after: "), "{head}");
    assert_eq!(json_of(&b)["error"]["code"], "server_busy");
    drop(conn);
    drop(s);

    // Two requests a minute per key: the third waits, and is told how long.
    let s = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--api-key",
            KEY,
            "--requests-per-minute",
            "2",
        ],
    );
    let auth = format!("Authorization: Bearer {KEY}");
    for _ in 0..2 {
        assert_eq!(call(&s.addr, "GET", "/v1/models", &[&auth], "").0, 200);
    }
    let (status, head, b) = call(&s.addr, "GET", "/v1/models", &[&auth], "");
    assert_eq!(status, 429, "{b}");
    assert_eq!(json_of(&b)["error"]["code"], "rate_limit_exceeded");
    let wait: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{head}"));
    assert!((1..=60).contains(&wait), "{wait}");
    // /health is never limited.
    assert_eq!(call(&s.addr, "GET", "/health", &[], "").0, 200);
}

#[test]
fn limits_are_clear_errors_and_the_server_keeps_serving() {
    let (h, model, adapter) = home_with_adapter();
    let s = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            &format!("captain={}", adapter.display()),
            "--max-tokens-cap",
            "64",
            "--max-body-bytes",
            "2000",
        ],
    );
    let post = |body: &str| {
        let (status, _, b) = call(&s.addr, "POST", "/v1/chat/completions", &[], body);
        (status, json_of(&b))
    };
    let (status, v) = post(&ask("captain", "Hi", 65).to_string());
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "max_tokens");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cap of 64"),
        "{v}"
    );
    // Prompt and completion beyond the context: an error naming both, never a silent cut.
    let long = "word ".repeat(420);
    let (status, v) = post(&ask("captain", &long, 64).to_string());
    assert_eq!(status, 413, "the body cap comes first: {v}");
    let s2 = Server::start(
        &h,
        &[
            "--model",
            model.to_str().unwrap(),
            "--max-tokens-cap",
            "4096",
        ],
    );
    let (status, _, b) = call(
        &s2.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &ask("tiny-model", "Hi", 2048).to_string(),
    );
    let v = json_of(&b);
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context is 2048 tokens"),
        "{v}"
    );
    drop(s2);
    // Hostile values, each a 400 naming its field.
    for (body, field) in [
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "n": 1000000}),
            "n",
        ),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "top_p": -1}),
            "top_p",
        ),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "temperature": -0.5}),
            "temperature",
        ),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "top_k": -7}),
            "top_k",
        ),
        (
            json!({"model": "captain", "messages": [{"role": "user", "content": "x"}], "repetition_penalty": 0}),
            "repetition_penalty",
        ),
        (json!({"model": "captain", "messages": "x"}), "messages"),
    ] {
        let (status, v) = post(&body.to_string());
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
    }
    let (status, v) = post("{\"model\": \"captain\", \"temperature\": NaN}");
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!("invalid_json")),
        "{v}"
    );
    let (status, v) = post(&ask("no-such-adapter", "Hi", 4).to_string());
    assert_eq!(status, 404, "{v}");
    // And after all of it, a valid request is answered.
    let (status, v) = post(&ask("captain", "Hi", 8).to_string());
    assert_eq!(status, 200, "{v}");
}

#[test]
fn listening_beyond_loopback_without_a_key_says_so() {
    let (h, model, _) = home_with_adapter();
    let s = Server::start(
        &h,
        &["--model", model.to_str().unwrap(), "--host", "0.0.0.0"],
    );
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    let (status, _, b) = call(&format!("127.0.0.1:{port}"), "GET", "/health", &[], "");
    assert_eq!(status, 200, "{b}");
    let v = json_of(&b);
    assert_eq!(v["auth"], false, "{v}");
    assert!(
        v["warning"]
            .as_str()
            .is_some_and(|w| w.contains("--api-key")),
        "{v}"
    );
}
