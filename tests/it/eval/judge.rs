//! `tunelab eval judge` against fake judges: loopback OpenAI-compatible servers written here
//! (the synth tests' `Server`) that answer by rule, with the demo's tiny model as the sides,
//! alone and with a persona adapter from a short tiny training run. The adapter answers
//! every prompt "Arr! …" and the bare model never does, which lets a judge tell the sides
//! apart by their text without being told which is which. No test reaches the network.

use super::fixture;
use crate::common;
use crate::synth::{openai_ok, Answer, Seen, Server};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the adapter's answers start with, and the bare model's never contain.
const MARKER: &str = "Arr!";

/// A prompts file of user turns (one with a system message), in a fresh folder.
fn prompts_file(dir: &Path, prompts: &[&str]) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    let mut text = String::new();
    for (i, p) in prompts.iter().enumerate() {
        let mut messages = Vec::new();
        if i == 0 {
            messages.push(json!({"role": "system", "content": "Answer briefly."}));
        }
        messages.push(json!({"role": "user", "content": p}));
        messages.push(json!({"role": "assistant", "content": "reference"}));
        text.push_str(&json!({ "messages": messages }).to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `eval judge` arguments against `server`, sides `a` and `b` (`base` or a path).
fn args(server: &str, data: &Path, a: &str, b: &str, out: Option<&Path>) -> Vec<String> {
    let f = fixture();
    let mut v: Vec<String> = [
        "eval",
        "judge",
        "--model",
        f.model.to_str().unwrap(),
        "--a",
        a,
        "--b",
        b,
        "--data",
        data.to_str().unwrap(),
        "--judge-provider",
        "openai",
        "--judge-base-url",
        &format!("{server}/v1"),
        "--judge-model",
        "judge-model",
        "--max-new-tokens",
        "16",
        "--rpm",
        "0",
        "--backoff-ms",
        "20",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(o) = out {
        v.extend(["-o".to_string(), o.display().to_string()]);
    }
    v
}

/// Runs `tunelab ARGS` with no API keys in the environment: exit code, the JSON report (or
/// null), stdout and stderr together.
fn judge(args: &[String]) -> (i32, Value, String) {
    let out = tunelab(&fixture().home)
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        format!("{stdout}\n{stderr}"),
    )
}

/// `tunelab` with `home` as its home.
fn tunelab(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tunelab"));
    c.env("TUNELAB_HOME", home).env("NO_COLOR", "1");
    c
}

/// The user turn a verdict line judged.
fn prompt_of(line: &Value) -> String {
    line["prompt"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_else(|| panic!("{line}"))
        .to_string()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

/// The two answers a judge request shows, first (as A) and second (as B).
fn shown(req: &Seen) -> (String, String) {
    let user = req.last_user();
    let between = |start: &str, end: &str| {
        let from = user.find(start).unwrap_or_else(|| panic!("{user}")) + start.len();
        let to = user.find(end).unwrap_or_else(|| panic!("{user}"));
        user[from..to].trim().to_string()
    };
    (
        between("[Assistant A's answer]\n", "[End of assistant A's answer]"),
        between("[Assistant B's answer]\n", "[End of assistant B's answer]"),
    )
}

/// The user prompt a judge request shows.
fn asked(req: &Seen) -> String {
    let user = req.last_user();
    let from = user.find("[User prompt]\n").unwrap() + "[User prompt]\n".len();
    let to = user.find("\n\n[Assistant A's answer]").unwrap();
    user[from..to].to_string()
}

/// Wilson's 95% interval, written out again so the report's can be checked against it.
fn wilson(p: f64, n: f64) -> [f64; 2] {
    let z: f64 = 1.959_963_984_540_054;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z / d * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    [c - h, c + h]
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|x| (x - b).abs() < 1e-12)
}

/// `tunelab chat`'s greedy reply, as the side would give it.
fn chat(adapter: Option<&Path>, system: Option<&str>, prompt: &str) -> String {
    let f = fixture();
    let mut a = vec![
        "chat".to_string(),
        "--model".into(),
        f.model.display().to_string(),
        "--prompt".into(),
        prompt.into(),
        "--max-new-tokens".into(),
        "16".into(),
    ];
    if let Some(ad) = adapter {
        a.extend(["--adapter".into(), ad.display().to_string()]);
    }
    if let Some(s) = system {
        a.extend(["--system".into(), s.into()]);
    }
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    common::ok(&f.home, &refs).trim().to_string()
}

#[test]
fn a_judge_that_always_says_a_makes_every_item_a_tie() {
    let f = fixture();
    let server = Server::start(|_, _| openai_ok("Assistant A is clearly better.\n\n[[A]]"));
    let dir = tempfile::tempdir().unwrap();
    let data = prompts_file(
        dir.path(),
        &[
            "What is a gradient?",
            "Explain overfitting.",
            "What is the capital of France?",
            "What is a tensor?",
        ],
    );
    let out = dir.path().join("verdicts.jsonl");
    let adapter = f.adapter.to_str().unwrap();
    let (code, report, text) = judge(&args(&server.base, &data, adapter, "base", Some(&out)));
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["win_rate"], 0.5, "{report}");
    assert_eq!(
        (&report["wins"], &report["losses"], &report["ties"]),
        (&json!(0), &json!(0), &json!(4))
    );
    assert_eq!((&report["errors"], &report["n"]), (&json!(0), &json!(4)));
    assert_eq!(report["interval"], "wilson");
    let ci = wilson(0.5, 4.0);
    assert!(close(&report["ci95"][0], ci[0]) && close(&report["ci95"][1], ci[1]));
    assert_eq!(report["requests"], 8);
    // The run's persona is in the rubric; every request is the judge model's.
    assert_eq!(
        report["persona"],
        json!(["You are Captain Byte, a pirate robot."])
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 8);
    for s in &seen {
        assert_eq!(s.path, "/v1/chat/completions");
        assert_eq!(s.body["model"], "judge-model");
        assert_eq!(s.body["temperature"], 0.0);
        let system = s.system().unwrap();
        assert!(
            system.contains("The intended persona is: You are Captain Byte, a pirate robot."),
            "{system}"
        );
        assert!(system.contains("[[A]]") && system.contains("[[C]]"));
    }
    // Each item was shown both ways round.
    let mut orders: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for s in &seen {
        orders.entry(asked(s)).or_default().push(shown(s));
    }
    assert_eq!(orders.len(), 4);
    for (prompt, o) in &orders {
        assert_eq!(o.len(), 2, "{prompt}");
        assert_eq!((&o[0].0, &o[0].1), (&o[1].1, &o[1].0), "{prompt}: {o:?}");
    }
    // The file: one line per item, the answers the sides give in `tunelab chat`.
    let recs = lines(&out);
    assert_eq!(recs.len(), 4);
    let mut indices: Vec<u64> = recs.iter().map(|r| r["index"].as_u64().unwrap()).collect();
    indices.sort();
    assert_eq!(indices, [0, 1, 2, 3]);
    for r in &recs {
        assert_eq!(r["outcome"], "tie", "{r}");
        assert_eq!(r["b"], "base");
        assert_eq!(
            r["a"],
            f.adapter.canonicalize().unwrap().display().to_string()
        );
        assert_eq!(r["verdicts"][0]["first"], "a");
        assert_eq!(r["verdicts"][0]["tag"], "A");
        assert_eq!(r["verdicts"][0]["pick"], "a");
        assert_eq!(r["verdicts"][1]["first"], "b");
        assert_eq!(r["verdicts"][1]["pick"], "b");
        assert_eq!(
            r["verdicts"][1]["text"],
            "Assistant A is clearly better.\n\n[[A]]"
        );
        let a = r["answer_a"].as_str().unwrap();
        let b = r["answer_b"].as_str().unwrap();
        assert!(a.starts_with(MARKER), "the adapter's answer: {a:?}");
        assert!(!b.contains(MARKER), "the base's answer: {b:?}");
        let prompt = r["prompt"].as_array().unwrap();
        let user = prompt.last().unwrap()["content"].as_str().unwrap();
        if r["index"] == 0 {
            assert_eq!(
                prompt[0],
                json!({"role": "system", "content": "Answer briefly."})
            );
            assert_eq!(a, chat(Some(&f.adapter), Some("Answer briefly."), user));
            assert_eq!(b, chat(None, Some("Answer briefly."), user));
        } else {
            assert_eq!(prompt.len(), 1);
        }
        if r["index"] == 2 {
            assert_eq!(a, chat(Some(&f.adapter), None, user));
            assert_eq!(b, chat(None, None, user));
        }
    }
}

/// A judge that prefers the adapter's voice on gradients, the plain answer on overfitting,
/// and calls a tie elsewhere: it finds the marker in whichever position it is shown.
fn marker_judge() -> impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static {
    |req, _| {
        let (first, second) = shown(req);
        let prompt = asked(req);
        let want_marker = if prompt.contains("gradient") {
            Some(true)
        } else if prompt.contains("overfitting") {
            Some(false)
        } else {
            None
        };
        let tag = match want_marker {
            None => "C",
            Some(w) if first.contains(MARKER) == w && second.contains(MARKER) != w => "A",
            Some(w) if second.contains(MARKER) == w && first.contains(MARKER) != w => "B",
            Some(_) => {
                panic!("the sides gave answers the judge cannot tell apart: {first:?} / {second:?}")
            }
        };
        openai_ok(&format!(
            "Comparing the two answers on {prompt:?}.\n\n[[{tag}]]"
        ))
    }
}

#[test]
fn a_judge_that_prefers_a_marker_gives_the_expected_wins_either_way_round() {
    let f = fixture();
    let server = Server::start(marker_judge());
    let dir = tempfile::tempdir().unwrap();
    let data = prompts_file(
        dir.path(),
        &[
            "What is a gradient?",
            "Explain overfitting.",
            "Tell me what a gradient is.",
            "What is the capital of France?",
            "How do I spot overfitting?",
            "Why follow the gradient downhill?",
            "What is a tensor?",
        ],
    );
    let adapter = f.adapter.to_str().unwrap();
    // The adapter as A: it wins the 3 gradient items, loses the 2 overfitting ones.
    let out = dir.path().join("adapter-first.jsonl");
    let (code, r, text) = judge(&args(&server.base, &data, adapter, "base", Some(&out)));
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        (&r["wins"], &r["losses"], &r["ties"], &r["errors"], &r["n"]),
        (&json!(3), &json!(2), &json!(2), &json!(0), &json!(7)),
        "{r}"
    );
    assert!(close(&r["win_rate"], 4.0 / 7.0), "{r}");
    let ci = wilson(4.0 / 7.0, 7.0);
    assert!(
        close(&r["ci95"][0], ci[0]) && close(&r["ci95"][1], ci[1]),
        "{r}"
    );
    let by_index: HashMap<u64, String> = lines(&out)
        .iter()
        .map(|l| {
            (
                l["index"].as_u64().unwrap(),
                l["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: HashMap<u64, String> = [
        (0, "a"),
        (1, "b"),
        (2, "a"),
        (3, "tie"),
        (4, "b"),
        (5, "a"),
        (6, "tie"),
    ]
    .into_iter()
    .map(|(i, o)| (i, o.to_string()))
    .collect();
    assert_eq!(by_index, want);
    // The same sides the other way round: the counts mirror.
    let out = dir.path().join("base-first.jsonl");
    let (code, r, text) = judge(&args(&server.base, &data, "base", adapter, Some(&out)));
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        (&r["wins"], &r["losses"], &r["ties"], &r["n"]),
        (&json!(2), &json!(3), &json!(2), &json!(7)),
        "{r}"
    );
    assert!(close(&r["win_rate"], 3.0 / 7.0), "{r}");
    // Without --json: one short block.
    let plain: Vec<String> = args(&server.base, &data, "base", adapter, Some(&out))
        .into_iter()
        .filter(|a| a != "--json")
        .collect();
    let (code, _, text) = judge(&plain);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("win rate of A 0.429 (95% Wilson interval")
            && text.contains("over n = 7: 2 wins, 3 losses, 2 ties · 0 errors")
            && text.contains("7 of 7 items judged (0 now, 7 already there)"),
        "{text}"
    );
}

#[test]
fn unreadable_verdicts_are_errors_kept_in_the_file_and_failed_requests_are_asked_again() {
    // By prompt: no tag; two different tags; a verdict in the reasoning only; a proper one.
    let server = Server::start(|req, _| {
        let text = match asked(req).as_str() {
            "one" => "Both answers are gibberish, I refuse to pick.".to_string(),
            "two" => "If A is better: [[A]]. Final verdict: [[B]]".to_string(),
            "three" => "<think>[[A]] probably</think>I cannot tell.".to_string(),
            _ => "[[C]]".to_string(),
        };
        openai_ok(&text)
    });
    let dir = tempfile::tempdir().unwrap();
    let data = prompts_file(dir.path(), &["one", "two", "three", "four"]);
    let out = dir.path().join("v.jsonl");
    let (code, r, text) = judge(&args(&server.base, &data, "base", "base", Some(&out)));
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        (&r["errors"], &r["n"], &r["ties"], &r["judged"], &r["items"]),
        (&json!(3), &json!(1), &json!(1), &json!(4), &json!(4)),
        "{r}"
    );
    assert_eq!(r["win_rate"], 0.5);
    assert_eq!(r["requests"], 8, "an unreadable verdict is not asked again");
    let recs: HashMap<String, Value> = lines(&out)
        .into_iter()
        .map(|l| (prompt_of(&l), l))
        .collect();
    for p in ["one", "two", "three"] {
        let l = &recs[p];
        assert_eq!(l["outcome"], "error", "{l}");
        for v in l["verdicts"].as_array().unwrap() {
            assert_eq!(v["tag"], Value::Null, "{v}");
            assert_eq!(v["pick"], Value::Null);
            assert!(!v["text"].as_str().unwrap().is_empty());
        }
        // Base against base: both sides gave the same answer.
        assert_eq!(l["answer_a"], l["answer_b"]);
    }
    assert_eq!(
        recs["one"]["verdicts"][0]["text"],
        "Both answers are gibberish, I refuse to pick."
    );
    assert_eq!(
        recs["one"]["verdicts"][0]["error"],
        "no [[A]], [[B]] or [[C]] in the judge's reply"
    );
    assert_eq!(
        recs["two"]["verdicts"][1]["error"],
        "several verdicts in the judge's reply: [[A]], [[B]]"
    );
    assert_eq!(
        recs["three"]["verdicts"][0]["text"],
        "<think>[[A]] probably</think>I cannot tell."
    );
    assert_eq!(recs["four"]["outcome"], "tie");
    // A rerun asks nothing.
    let (code, r, text) = judge(&args(&server.base, &data, "base", "base", Some(&out)));
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        (&r["requests"], &r["resumed"], &r["errors"]),
        (&json!(0), &json!(4), &json!(3))
    );
    assert_eq!(server.seen().len(), 8);

    // Only garbage: nothing judged, no win rate, exit 1.
    let garbage = Server::start(|_, _| openai_ok("lorem ipsum"));
    let (code, r, text) = judge(&args(&garbage.base, &data, "base", "base", None));
    assert_eq!(code, 1, "{text}");
    assert_eq!((&r["errors"], &r["n"]), (&json!(4), &json!(0)));
    assert_eq!((&r["win_rate"], &r["ci95"]), (&Value::Null, &Value::Null));

    // A body that is not a chat completion is no verdict: the item is not written, the run
    // exits 1, and a rerun against a working judge asks about it (and only it).
    let broken = Server::start(|req, _| {
        if asked(req) == "two" {
            Answer::Http(200, vec![], "{\"choices\": [ oops".into())
        } else {
            openai_ok("[[A]]")
        }
    });
    let out = dir.path().join("broken.jsonl");
    let (code, r, text) = judge(&args(&broken.base, &data, "base", "base", Some(&out)));
    assert_eq!(code, 1, "{text}");
    assert_eq!((&r["failed"], &r["judged"]), (&json!(1), &json!(3)), "{r}");
    assert!(
        r["failures"][0]
            .as_str()
            .unwrap()
            .contains("malformed response"),
        "{r}"
    );
    assert_eq!(lines(&out).len(), 3);
    let fixed = Server::start(|_, _| openai_ok("[[B]]"));
    let (code, r, text) = judge(&args(&fixed.base, &data, "base", "base", Some(&out)));
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        (&r["written"], &r["resumed"], &r["n"]),
        (&json!(1), &json!(3), &json!(4))
    );
    let again: Vec<String> = fixed.seen().iter().map(asked).collect();
    assert_eq!(again, ["two", "two"]);
}

#[test]
fn a_killed_judge_resumes_without_asking_again() {
    let f = fixture();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let server = Server::start(move |req, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(150));
        let (first, _) = shown(req);
        openai_ok(if first.contains(MARKER) {
            "[[A]]"
        } else {
            "[[B]]"
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let prompts: Vec<String> = (0..10).map(|i| format!("Question number {i}?")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let data = prompts_file(dir.path(), &refs);
    let out = dir.path().join("resume.jsonl");
    let mut a = args(
        &server.base,
        &data,
        f.adapter.to_str().unwrap(),
        "base",
        Some(&out),
    );
    a.extend(["--concurrency".into(), "2".into()]);
    let mut child = tunelab(&f.home)
        .args(&a)
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(&out).len() < 3 {
        assert!(Instant::now() < deadline, "no verdicts appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Let a request the kill caught on the wire arrive before counting.
    std::thread::sleep(Duration::from_millis(300));
    let asked_before = count.load(Ordering::SeqCst);
    let before = std::fs::read(&out).unwrap();
    let kept = lines(&out);
    assert!(kept.len() < 10, "the run finished before it was killed");
    let done: HashSet<String> = kept.iter().map(prompt_of).collect();
    // As a crash of the machine could leave it: a torn last line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .unwrap()
        .write_all(b"{\"index\": 9, \"model\": \"")
        .unwrap();
    let (code, r, text) = judge(&a);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["resumed"], kept.len(), "{r}");
    assert_eq!(r["written"], 10 - kept.len());
    assert_eq!(r["repaired_bytes"], 23);
    assert_eq!(
        count.load(Ordering::SeqCst) - asked_before,
        2 * (10 - kept.len()),
        "the rerun asked about exactly the items not in the file"
    );
    for s in &server.seen()[asked_before..] {
        assert!(!done.contains(&asked(s)), "{} was asked again", asked(s));
    }
    // Every item once, the killed run's lines untouched, the adapter winning all.
    let recs = lines(&out);
    assert_eq!(recs.len(), 10);
    let indices: HashSet<u64> = recs.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, (0..10).collect());
    assert!(std::fs::read(&out).unwrap().starts_with(&before));
    assert!(recs.iter().all(|l| l["outcome"] == "a"));
    assert_eq!(
        (&r["wins"], &r["n"], &r["win_rate"]),
        (&json!(10), &json!(10), &json!(1.0))
    );
    // A third run has nothing to do.
    let (code, r, _) = judge(&a);
    assert_eq!(code, 0);
    assert_eq!((&r["requests"], &r["written"]), (&json!(0), &json!(0)));
}

#[test]
fn bad_inputs_exit_2_with_what_is_wrong() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let data = prompts_file(dir.path(), &["one", "two"]);
    let dead = "http://127.0.0.1:9";
    let base = args(dead, &data, "base", "base", None);
    let with = |from: &str, to: &str| -> Vec<String> {
        let mut v = base.clone();
        match v.iter().position(|a| a == from) {
            Some(i) => v[i + 1] = to.to_string(),
            None => v.extend([from.to_string(), to.to_string()]),
        }
        v
    };
    let expect = |args: Vec<String>, code: i32, says: &str| {
        let (c, _, text) = judge(&args);
        assert_eq!(c, code, "{says}: {text}");
        assert!(text.contains(says), "wanted {says:?} in: {text}");
    };
    expect(
        with("--judge-provider", "claude"),
        2,
        "unknown provider \"claude\"; expected anthropic or openai",
    );
    let mut no_model = base.clone();
    let i = no_model.iter().position(|a| a == "--judge-model").unwrap();
    no_model.drain(i..i + 2);
    expect(no_model, 2, "--judge-model <NAME>");
    let mut anthropic = with("--judge-provider", "anthropic");
    let i = anthropic
        .iter()
        .position(|a| a == "--judge-base-url")
        .unwrap();
    anthropic.drain(i..i + 2);
    expect(anthropic, 2, "ANTHROPIC_API_KEY is not set");
    expect(with("--judge-model", " "), 2, "--judge-model is empty");
    expect(
        with("--a", "no/such/adapter"),
        2,
        "--a no/such/adapter: not an adapter folder",
    );
    expect(
        with("--rubric", "@/no/such/rubric.txt"),
        2,
        "--rubric /no/such/rubric.txt",
    );
    expect(
        with("--data", "/no/such/prompts.jsonl"),
        2,
        "/no/such/prompts.jsonl",
    );
    let text = dir.path().join("text.jsonl");
    std::fs::write(&text, "{\"text\": \"plain\"}\n").unwrap();
    expect(
        with("--data", text.to_str().unwrap()),
        2,
        "no prompts to judge (1 records skipped",
    );
    let mut json_out = base.clone();
    json_out.extend(["-o".into(), dir.path().join("v.json").display().to_string()]);
    expect(json_out, 2, "the output must be .jsonl");
    // A verdicts file written for other sides is not continued.
    let judged = dir.path().join("judged.jsonl");
    let server = Server::start(|_, _| openai_ok("[[C]]"));
    let (code, _, text) = judge(&args(&server.base, &data, "base", "base", Some(&judged)));
    assert_eq!(code, 0, "{text}");
    expect(
        args(
            &server.base,
            &data,
            f.adapter.to_str().unwrap(),
            "base",
            Some(&judged),
        ),
        2,
        "judged.jsonl: line 1: field `a`: written with \"base\"",
    );
    // A judge that refuses the key stops the run at once, without retrying.
    let refusing = Server::start(|_, _| {
        Answer::Http(
            401,
            vec![],
            json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
                .to_string(),
        )
    });
    let mut one = args(&refusing.base, &data, "base", "base", None);
    one.extend(["--concurrency".into(), "1".into()]);
    expect(
        one,
        2,
        "stopped: HTTP 401: invalid_api_key: Incorrect API key provided",
    );
    assert_eq!(refusing.seen().len(), 1);
}
