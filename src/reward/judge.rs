//! Judge rewards: an LLM (Anthropic, or any OpenAI-compatible server) rates each completion
//! from 0 to 10 against a rubric, and the reward is that score divided by 10. Requests go
//! through synth's client (its timeout, retries with backoff and `Retry-After`, key
//! handling), `concurrency` at once. A reply without a readable score is NaN for that
//! completion and counted ([`Judge::take_unparsed`]), never guessed; a request that fails
//! for good stops scoring with an error naming the completion.

use super::error::RewardError;
use super::scored::{content_text, Scored};
use crate::config::grpo::JudgeReward;
use crate::synth::http::{CallError, Client, Policy};
use crate::synth::message::ChatRequest;
use crate::synth::provider::{clip, Endpoint, Provider};
use regex::Regex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

/// What a good completion is when the reward gives no rubric.
pub const DEFAULT_RUBRIC: &str =
    "The reply is helpful (it does what the user asked), correct (its facts and reasoning \
are right) and concise (no padding, no needless repetition).";

/// The judge's instructions; `{rubric}` is replaced by the rubric.
const SYSTEM: &str = "You grade one reply written by an AI assistant. Read the conversation \
and the reply, then rate the reply from 0 (worst) to 10 (best) by this rubric:\n\n{rubric}\n\n\
Answer with the score alone: one number from 0 to 10, nothing else.";

/// How judge requests are made: `tunelab eval judge`'s defaults, without a pace (the
/// reward's `concurrency` already bounds the requests in flight).
pub const POLICY: Policy = Policy {
    timeout: Duration::from_secs(120),
    attempts: 5,
    backoff: Duration::from_secs(1),
    rpm: None,
};

/// A worker's scores by batch index, or the first completion it failed on and why.
type WorkerResult = Result<Vec<(usize, f64)>, (usize, String)>;

pub struct Judge {
    /// As configured; an OpenAI-compatible server without a model is asked for its first
    /// one at the first batch, not at construction (building rewards stays offline).
    endpoint: Endpoint,
    resolved: OnceLock<Endpoint>,
    client: Client,
    rubric: String,
    max_tokens: u32,
    concurrency: usize,
    unparsed: AtomicUsize,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("endpoint", &self.endpoint.describe())
            .field("max_tokens", &self.max_tokens)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Judge {
    /// The judge of `spec`, its key from the provider's environment variable.
    pub fn new(spec: &JudgeReward) -> Result<Self, String> {
        let provider: Provider = spec.provider.parse().map_err(|e| format!("judge.{e}"))?;
        let endpoint = Endpoint::from_env(provider, spec.base_url.clone(), spec.model.clone())?;
        if spec.max_tokens == 0 {
            return Err("judge.max_tokens must be at least 1".into());
        }
        if spec.concurrency == 0 {
            return Err("judge.concurrency must be at least 1".into());
        }
        Ok(Judge::with_endpoint(endpoint, spec))
    }

    fn with_endpoint(endpoint: Endpoint, spec: &JudgeReward) -> Self {
        Judge {
            endpoint,
            resolved: OnceLock::new(),
            client: Client::new(POLICY),
            rubric: spec
                .rubric
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_RUBRIC.to_string()),
            max_tokens: spec.max_tokens.max(1),
            concurrency: spec.concurrency.max(1),
            unparsed: AtomicUsize::new(0),
        }
    }

    fn endpoint(&self) -> &Endpoint {
        self.resolved.get_or_init(|| {
            let mut ep = self.endpoint.clone();
            if ep.model.is_none() && ep.provider == Provider::Openai {
                ep.model = Some(
                    self.client
                        .first_model(&ep)
                        .unwrap_or_else(|| crate::synth::openai::DEFAULT_MODEL.to_string()),
                );
            }
            ep
        })
    }

    /// Replies without a readable score since the last call (and resets the count).
    pub fn take_unparsed(&self) -> usize {
        self.unparsed.swap(0, Ordering::Relaxed)
    }

    /// Each completion's score / 10, NaN where the reply had no score in 0–10.
    pub fn score(&self, reward: &str, batch: &[Scored]) -> Result<Vec<f64>, RewardError> {
        let ep = self.endpoint();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let workers = self.concurrency.min(batch.len());
        let parts: Vec<WorkerResult> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| s.spawn(|| self.worker(reward, ep, batch, &next, &stop)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err((0, "a judge thread panicked".to_string())))
                })
                .collect()
        });
        let mut out = vec![f64::NAN; batch.len()];
        let mut first_error: Option<(usize, String)> = None;
        for part in parts {
            match part {
                Ok(scores) => {
                    for (i, v) in scores {
                        out[i] = v;
                    }
                }
                Err((i, message)) => {
                    if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                        first_error = Some((i, message));
                    }
                }
            }
        }
        match first_error {
            Some((i, message)) => Err(RewardError::Judge {
                reward: reward.to_string(),
                judge: ep.describe(),
                line: i + 1,
                message,
            }),
            None => Ok(out),
        }
    }

    /// Takes completions off `next` until none are left or another worker failed.
    fn worker(
        &self,
        reward: &str,
        ep: &Endpoint,
        batch: &[Scored],
        next: &AtomicUsize,
        stop: &AtomicBool,
    ) -> WorkerResult {
        let mut out = Vec::new();
        let on_retry = |reason: &str, wait: Duration| {
            tracing::info!(reward, judge = %ep.describe(), %reason, wait_s = wait.as_secs_f64(), "retrying");
        };
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= batch.len() || stop.load(Ordering::Relaxed) {
                return Ok(out);
            }
            let req = request(&self.rubric, &batch[i], self.max_tokens);
            match self.client.chat_unless(ep, &req, &on_retry, stop) {
                Ok(reply) => {
                    let v = match parse_score(&reply.text) {
                        Some(score) => score / 10.0,
                        None => {
                            self.unparsed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                reward,
                                line = i + 1,
                                reply = %clip(&ep.redact(&reply.text), 120),
                                "the judge's reply has no score from 0 to 10"
                            );
                            f64::NAN
                        }
                    };
                    out.push((i, v));
                }
                Err(CallError::Cancelled) => return Ok(out),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err((i, ep.redact(&e.to_string())));
                }
            }
        }
    }
}

/// The request that asks for one completion's score.
pub fn request(rubric: &str, s: &Scored, max_tokens: u32) -> ChatRequest {
    let conversation = if s.messages.is_empty() {
        format!("[user]\n{}", s.prompt)
    } else {
        s.messages
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("user");
                format!("[{role}]\n{}", content_text(m))
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let reference = match s.reference {
        Some(r) if !r.trim().is_empty() => format!(
            "A reference answer (a guide to what is correct; the reply need not match its wording):\n<reference>\n{r}\n</reference>\n\n"
        ),
        _ => String::new(),
    };
    let text = format!(
        "The conversation:\n<conversation>\n{conversation}\n</conversation>\n\n{reference}The reply to rate:\n<reply>\n{}\n</reply>\n\nScore (0-10):",
        s.completion
    );
    let mut req = ChatRequest::user(Some(SYSTEM.replace("{rubric}", rubric)), text, max_tokens);
    req.temperature = Some(0.0);
    req
}

/// The first number of a reply (after any `</think>`), when it lies in 0–10: `8`, `**7**`,
/// `Score: 6.5`, `9/10`. Anything else (no number, `11`, `-1`) is `None`.
pub fn parse_score(reply: &str) -> Option<f64> {
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"-?\d+(?:\.\d+)?").unwrap_or_else(|e| unreachable!("{e}")));
    let text = reply
        .rsplit_once("</think>")
        .map_or(reply, |(_, after)| after);
    let v: f64 = NUMBER.find(text)?.as_str().parse().ok()?;
    (0.0..=10.0).contains(&v).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    #[test]
    fn the_first_number_from_0_to_10_is_the_score() {
        assert_eq!(parse_score("8"), Some(8.0));
        assert_eq!(parse_score("**7**"), Some(7.0));
        assert_eq!(parse_score("Score: 6.5 — concise and right."), Some(6.5));
        assert_eq!(parse_score("9/10"), Some(9.0));
        assert_eq!(parse_score("10"), Some(10.0));
        assert_eq!(parse_score("0"), Some(0.0));
        assert_eq!(parse_score("<think>maybe 3, or 4</think>\n5"), Some(5.0));
        assert_eq!(parse_score("11"), None);
        assert_eq!(parse_score("-1"), None);
        assert_eq!(parse_score("I cannot rate this."), None);
        assert_eq!(parse_score(""), None);
    }

    #[test]
    fn the_request_shows_the_conversation_reference_and_reply() {
        let messages = vec![
            json!({"role": "system", "content": "You are a pirate."}),
            json!({"role": "user", "content": [{"type": "text", "text": "How many legs has a spider?"}]}),
        ];
        let metadata = Map::new();
        let s = Scored {
            prompt: "How many legs has a spider?",
            messages: &messages,
            completion: "Arr, eight!",
            completion_tokens: 4,
            reference: Some("8"),
            metadata: &metadata,
        };
        let req = request(DEFAULT_RUBRIC, &s, 16);
        let system = req.system.clone().unwrap_or_default();
        assert!(
            system.contains(DEFAULT_RUBRIC) && system.contains("from 0"),
            "{system}"
        );
        let text = &req.turns[0].1;
        assert!(
            text.contains("[system]\nYou are a pirate.\n\n[user]\nHow many legs has a spider?"),
            "{text}"
        );
        assert!(text.contains("<reference>\n8\n</reference>"), "{text}");
        assert!(text.contains("<reply>\nArr, eight!\n</reply>"), "{text}");
        assert_eq!((req.max_tokens, req.temperature), (16, Some(0.0)));
        // No messages: the prompt alone; no reference: no reference block.
        let bare = Scored {
            messages: &[] as &[Value],
            reference: None,
            ..s
        };
        let text = request("Be brief.", &bare, 16).turns[0].1.clone();
        assert!(
            text.contains("[user]\nHow many legs has a spider?") && !text.contains("<reference>")
        );
    }

    #[test]
    fn a_judge_needs_a_known_provider_and_its_key() {
        let spec = JudgeReward {
            provider: "claude".into(),
            base_url: None,
            model: None,
            rubric: None,
            max_tokens: 16,
            concurrency: 4,
        };
        let err = Judge::new(&spec).err().unwrap_or_default();
        assert!(err.contains("unknown provider \"claude\""), "{err}");
        // A local OpenAI-compatible server needs no key.
        let local = JudgeReward {
            provider: "openai".into(),
            base_url: Some("http://127.0.0.1:9/v1".into()),
            ..spec.clone()
        };
        assert!(Judge::new(&local).is_ok());
        if std::env::var_os("ANTHROPIC_API_KEY").is_none() {
            let anthropic = JudgeReward {
                provider: "anthropic".into(),
                ..spec
            };
            let err = Judge::new(&anthropic).err().unwrap_or_default();
            assert!(err.starts_with("ANTHROPIC_API_KEY is not set"), "{err}");
        }
    }
}
