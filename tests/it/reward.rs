//! GRPO's judge reward against a fake judge: a loopback OpenAI-compatible server (the synth
//! tests' `Server`) that scores by rule, so the concurrency, the score parsing, the count of
//! unreadable verdicts and a refused request can be checked without the network.

use crate::synth::{openai_ok, Answer, Server};
use serde_json::{json, Map, Value};
use std::path::Path;
use tunelab::config::GrpoSection;
use tunelab::reward::{Rewards, Scored};

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
