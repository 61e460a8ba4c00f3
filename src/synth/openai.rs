//! The OpenAI chat-completions shape (`POST {base}/chat/completions`), which OpenAI, vLLM,
//! llama.cpp's server, Ollama and `tunelab serve` all speak: the request body and the
//! reading of a response (with or without `usage`) or an error body.

use super::message::{ChatRequest, Reply, Stop, Usage};
use serde_json::{json, Map, Value};

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The model asked for when neither `--model` nor the server's `/models` names one.
pub const DEFAULT_MODEL: &str = "gpt-4.1-mini";
/// Sent as `Authorization: Bearer …` when set.
pub const KEY_VAR: &str = "OPENAI_API_KEY";

pub fn url(base: &str) -> String {
    format!("{}/chat/completions", base.trim_end_matches('/'))
}

pub fn models_url(base: &str) -> String {
    format!("{}/models", base.trim_end_matches('/'))
}

/// The request body: `model`, `messages` (the system text first), `max_tokens`,
/// `temperature` when set.
pub fn request_body(model: &str, req: &ChatRequest) -> Value {
    let mut messages = Vec::with_capacity(req.turns.len() + 1);
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for (who, text) in &req.turns {
        messages.push(json!({"role": who.as_str(), "content": text}));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    Value::Object(body)
}

/// A response body: the first choice's content (a string, or a list of text parts),
/// `finish_reason`, a `refusal`, and `usage` when the server sends it.
pub fn parse_response(body: &str) -> Result<Reply, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!("an error body: {}", error_message(e)));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("no `choices`")?;
    let message = choice.get("message").ok_or("no `choices[0].message`")?;
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err("`choices[0].message.content` is not text".into()),
    };
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .is_some_and(|r| !r.trim().is_empty());
    let stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(String::from);
    let stop = match stop_reason.as_deref() {
        _ if refusal => Stop::Refused,
        Some("stop") | Some("eos") | Some("stop_sequence") => Stop::Complete,
        Some("length") => Stop::Truncated,
        Some("content_filter") => Stop::Refused,
        _ => Stop::Other,
    };
    let usage = v.get("usage").map_or(Usage::default(), |u| Usage {
        input: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    });
    Ok(Reply {
        text,
        stop,
        stop_reason,
        usage,
    })
}

/// The message of an error object (`{"message", "type", "code"}`), or the body itself.
pub fn error_message(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        _ => match e.get("message").and_then(Value::as_str) {
            Some(m) => match e.get("code").and_then(Value::as_str) {
                Some(code) => format!("{code}: {m}"),
                None => m.to_string(),
            },
            None => e.to_string(),
        },
    }
}

/// The first model id a `GET {base}/models` answer lists.
pub fn first_model(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.get("data")?
        .as_array()?
        .iter()
        .find_map(|m| m.get("id").and_then(Value::as_str))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::message::Speaker;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/synth")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn the_request_body_is_the_chat_completions_shape() {
        let req = ChatRequest {
            system: Some("You are Captain Byte, a cheerful pirate who teaches Rust.".into()),
            turns: vec![(Speaker::User, "How do I borrow a vector mutably?".into())],
            max_tokens: 1024,
            temperature: Some(1.0),
        };
        let want: Value = serde_json::from_str(&fixture("openai_request.json")).unwrap();
        assert_eq!(request_body("gpt-4.1-mini", &req), want);
        assert_eq!(
            url("http://127.0.0.1:8000/v1/"),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
    }

    #[test]
    fn responses_read_with_and_without_usage() {
        let r = parse_response(&fixture("openai_response.json")).unwrap();
        assert_eq!(r.text, "Arr, matey! Borrow it with `&mut crew`.");
        assert_eq!(r.stop, Stop::Complete);
        assert_eq!(
            r.usage,
            Usage {
                input: 19,
                output: 10
            }
        );
        let local = parse_response(&fixture("openai_response_no_usage.json")).unwrap();
        assert_eq!(local.stop, Stop::Truncated);
        assert_eq!(local.usage, Usage::default());
        let refused = parse_response(
            r#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(refused.stop, Stop::Refused);
        assert!(parse_response(r#"{"choices": []}"#).is_err());
        assert!(parse_response("{\"choices\": [")
            .unwrap_err()
            .starts_with("not JSON"));
    }

    #[test]
    fn error_bodies_and_model_lists_read() {
        let v: Value = serde_json::from_str(&fixture("openai_error.json")).unwrap();
        let m = error_message(&v["error"]);
        assert!(
            m.starts_with("rate_limit_exceeded: Rate limit reached"),
            "{m}"
        );
        assert_eq!(
            first_model(r#"{"object":"list","data":[{"id":"qwen3-0.6b","object":"model"}]}"#)
                .as_deref(),
            Some("qwen3-0.6b")
        );
        assert_eq!(first_model(r#"{"data":[]}"#), None);
    }
}
