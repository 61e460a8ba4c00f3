//! GRPO's rewards: the shared cases (`tests/fixtures/rewards/cases.json`, which the Python
//! port a TRL export writes is checked on too), and the judge against a fake judge: a loopback
//! OpenAI-compatible server (the synth tests' `Server`) that scores by rule, so the
//! concurrency, the score parsing, the count of unreadable verdicts and a refused request can
//! be checked without the network.

use crate::common;
use crate::synth::{openai_ok, Answer, Server};
use serde_json::{json, Map, Value};
use std::path::Path;
use tunelab::config::{GrpoSection, RewardSpec};
use tunelab::reward::{answer::last_boxed, number::last_number, Rewards, Scored};

fn rewards(base: &str) -> Rewards {
    let yaml = format!(
        "rewards:\n  - judge: {{provider: openai, base_url: '{base}/v1', model: judge-model, rubric: 'Pirate speech.', concurrency: 3}}\n    weight: 0.5\n"
    );
    let s: GrpoSection = serde_yaml::from_str(&yaml).unwrap();
    Rewards::new(&s.rewards, s.reward_names(), Path::new(".")).unwrap()
}

fn batch<'a>(
    messages: &'a [Value],
    meta: &'a Map<String, Value>,
    completions: &'a [&'a str],
) -> Vec<Scored<'a>> {
    completions
        .iter()
        .map(|c| Scored {
            prompt: "Greet me.",
            messages,
            completion: c,
            completion_tokens: 4,
            reference: None,
            metadata: meta,
        })
        .collect()
}

#[test]
fn a_judge_scores_each_completion_and_counts_unreadable_verdicts() {
    let server = Server::start(|req, _| {
        let user = req.last_user();
        if user.contains("<reply>\nArr matey!\n</reply>") {
            openai_ok("9")
        } else if user.contains("<reply>\nHello.\n</reply>") {
            openai_ok("**2** - no pirate here")
        } else if user.contains("<reply>\nHmm.\n</reply>") {
            openai_ok("I cannot rate this.")
        } else if user.contains("<reply>\nNo!\n</reply>") {
            Answer::Http(
                401,
                vec![],
                json!({"error": {"message": "bad key"}}).to_string(),
            )
        } else {
            openai_ok("5")
        }
    });
    let r = rewards(&server.base);
    assert_eq!(
        (r.names(), r.weights()),
        (&["judge".to_string()][..], vec![0.5])
    );
    let messages = vec![json!({"role": "user", "content": "Greet me."})];
    let meta = Map::new();
    let completions = ["Arr matey!", "Hello.", "Hmm.", "Ahoy.", "Arr matey!"];
    let out = r.score(&batch(&messages, &meta, &completions)).unwrap();
    assert_eq!(out.len(), 1);
    let row = &out[0];
    assert_eq!((row[0], row[1], row[3], row[4]), (0.9, 0.2, 0.5, 0.9));
    assert!(row[2].is_nan(), "{row:?}");
    assert_eq!(r.take_unparsed(), vec![("judge".to_string(), 1)]);
    assert!(r.take_unparsed().is_empty(), "reading resets the count");
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    for s in &seen {
        assert_eq!(s.path, "/v1/chat/completions");
        assert_eq!(s.body["model"], "judge-model");
        assert_eq!(s.body["temperature"], 0.0);
        assert!(s.system().unwrap_or_default().contains("Pirate speech."));
    }
    // A refused request stops the batch with an error naming the reward, judge and line.
    let err = r
        .score(&batch(&messages, &meta, &["Arr.", "No!"]))
        .unwrap_err()
        .to_string();
    let want = format!(
        "reward `judge`: judge openai judge-model at {}/v1: line 2 of the batch: HTTP 401: bad key",
        server.base
    );
    assert_eq!(err, want);
}

/// The cases both reward implementations are checked on.
pub fn cases() -> Value {
    let p = common::fixture("rewards/cases.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn spec(v: &Value) -> RewardSpec {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("name");
    }
    serde_json::from_value(v).unwrap()
}

/// One reward of the fixture, built by its name.
fn built(fx: &Value, name: &str, dir: &Path) -> Rewards {
    let v = fx["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no reward {name} in the fixture"));
    Rewards::new(&[spec(v)], vec![name.to_string()], dir).unwrap()
}

/// Scores `items` as one batch: the row, or the error's message.
fn outcome(r: &Rewards, batch: &[Scored]) -> Result<Vec<f64>, String> {
    r.score(batch)
        .map(|mut rows| rows.remove(0))
        .map_err(|e| e.to_string())
}

fn expected(case: &Value) -> Result<Vec<f64>, String> {
    match case.get("error") {
        Some(e) => Err(e.as_str().unwrap().to_string()),
        None => Ok(case["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()),
    }
}

#[test]
fn the_shared_cases_score_as_the_fixture_says() {
    let fx = cases();
    let dir = tempfile::tempdir().unwrap();
    let messages = fx["prompt"].as_array().unwrap().clone();
    let meta = Map::new();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["reward"].as_str().unwrap();
        let r = built(&fx, name, dir.path());
        let batch: Vec<Scored> = case["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| Scored {
                prompt: "Say a number.",
                messages: &messages,
                completion: it["completion"].as_str().unwrap(),
                completion_tokens: it["tokens"].as_u64().unwrap() as usize,
                reference: it["reference"].as_str(),
                metadata: &meta,
            })
            .collect();
        assert_eq!(outcome(&r, &batch), expected(case), "{case}");
    }
    for pair in fx["numbers"].as_array().unwrap() {
        let text = pair[0].as_str().unwrap();
        assert_eq!(last_number(text), pair[1].as_f64(), "{text}");
    }
    for pair in fx["boxed"].as_array().unwrap() {
        let text = pair[0].as_str().unwrap();
        assert_eq!(last_boxed(text), pair[1].as_str(), "{text}");
    }
    for bad in fx["invalid"].as_array().unwrap() {
        let e = Rewards::new(&[spec(bad)], vec!["bad".into()], dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("{bad} was accepted"));
        assert!(e.starts_with("reward `bad`: "), "{e}");
    }
}

/// An executable `#!/bin/sh` script `dir/NAME.sh`.
fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(format!("{name}.sh"));
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The command cases' batch: each completion answers "Say a number." (reference "42",
/// metadata `{"id": 7}`, 3 tokens).
fn said_42<'a>(
    messages: &'a [Value],
    meta: &'a Map<String, Value>,
    completions: &'a [Value],
) -> Vec<Scored<'a>> {
    completions
        .iter()
        .map(|c| Scored {
            prompt: "Say a number.",
            messages,
            completion: c.as_str().unwrap_or_default(),
            completion_tokens: 3,
            reference: Some("42"),
            metadata: meta,
        })
        .collect()
}

fn command(dir: &Path, name: &str, run: &[&str], timeout_s: f64, workers: u64) -> Rewards {
    let spec = spec(&json!({"command": {"run": run, "timeout_s": timeout_s, "workers": workers}}));
    Rewards::new(&[spec], vec![name.to_string()], dir).unwrap()
}

#[test]
fn the_shared_command_cases_score_and_fail_as_the_fixture_says() {
    let fx = cases();
    let dir = tempfile::tempdir().unwrap();
    let messages = fx["prompt"].as_array().unwrap().clone();
    let mut meta = Map::new();
    meta.insert("id".into(), json!(7));
    for c in fx["commands"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        script(dir.path(), name, c["script"].as_str().unwrap());
        let program = format!("./{name}.sh");
        let r = command(
            dir.path(),
            name,
            &[&program, "--flag"],
            c["timeout_s"].as_f64().unwrap(),
            c["workers"].as_u64().unwrap(),
        );
        let got = outcome(
            &r,
            &said_42(&messages, &meta, c["completions"].as_array().unwrap()),
        );
        assert_eq!(got, expected(c), "{name}");
    }
    // The program's stdin, byte for byte.
    let p = &fx["protocol"];
    script(dir.path(), "protocol", p["script"].as_str().unwrap());
    let r = command(dir.path(), "protocol", &["./protocol.sh"], 5.0, 1);
    let completions = p["completions"].as_array().unwrap();
    let got = outcome(&r, &said_42(&messages, &meta, completions)).unwrap();
    assert_eq!(got, vec![1.0; completions.len()]);
    let log = std::fs::read_to_string(dir.path().join("stdin.log")).unwrap();
    let want: Vec<&str> = p["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(log.lines().collect::<Vec<_>>(), want);
}
