//! Anthropic's Messages API (`POST {base}/v1/messages`): the request body and the reading of
//! a response or an error body. Pure mappings; the HTTP call is `synth::http`'s.

use super::message::{ChatRequest, Reply, Stop, Usage};
use serde_json::{json, Map, Value};

/// The API version header every request carries.
pub const VERSION: &str = "2023-06-01";
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// Where the key comes from; it is sent as `x-api-key`.
pub const KEY_VAR: &str = "ANTHROPIC_API_KEY";

pub fn url(base: &str) -> String {
    format!("{}/v1/messages", base.trim_end_matches('/'))
}

/// The request body: `model`, `max_tokens`, `system` (when there is one), `messages` with
/// string contents, `temperature` when set.
pub fn request_body(model: &str, req: &ChatRequest) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(system) = &req.system {
        body.insert("system".into(), json!(system));
    }
    let messages: Vec<Value> = req
        .turns
        .iter()
        .map(|(who, text)| json!({"role": who.as_str(), "content": text}))
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    Value::Object(body)
}

/// A response body: the text blocks joined (thinking and tool blocks are not the answer),
/// `stop_reason` and `usage`. `Err` says why the body is not a Messages response.
pub fn parse_response(body: &str) -> Result<Reply, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(format!("an error body: {}", error_message(&v)));
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("no `content` array")?;
    let text: Vec<&str> = content
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let stop_reason = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(String::from);
    let stop = match stop_reason.as_deref() {
        Some("end_turn") | Some("stop_sequence") => Stop::Complete,
        Some("max_tokens") | Some("model_context_window_exceeded") => Stop::Truncated,
        Some("refusal") => Stop::Refused,
        _ => Stop::Other,
    };
    let usage = v.get("usage").map_or(Usage::default(), |u| Usage {
        input: u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0),
        output: u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
    });
    Ok(Reply {
        text: text.concat(),
        stop,
        stop_reason,
        usage,
    })
}

/// The message of an error body, `{"type": "error", "error": {"type", "message"}}`:
/// "overloaded_error: Overloaded".
pub fn error_message(v: &Value) -> String {
    let e = v.get("error").unwrap_or(v);
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
    match e.get("message").and_then(Value::as_str) {
        Some(m) => format!("{kind}: {m}"),
        None => kind.to_string(),
    }
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
    fn the_request_body_is_the_recorded_messages_api_shape() {
        let req = ChatRequest {
            system: Some("You are Captain Byte, a cheerful pirate who teaches Rust.".into()),
            turns: vec![(Speaker::User, "How do I borrow a vector mutably?".into())],
            max_tokens: 1024,
            temperature: Some(1.0),
        };
        let body = request_body("claude-sonnet-4-5", &req);
        let want: Value = serde_json::from_str(&fixture("anthropic_request.json")).unwrap();
        assert_eq!(body, want);
        // Without a system text or a temperature, neither key is sent.
        let bare = request_body("m", &ChatRequest::user(None, "hi", 16));
        assert_eq!(
            bare,
            json!({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
        );
        assert_eq!(
            url("https://api.anthropic.com/"),
            "https://api.anthropic.com/v1/messages"
        );
    }

    #[test]
    fn a_recorded_response_gives_its_text_stop_reason_and_usage() {
        let r = parse_response(&fixture("anthropic_response.json")).unwrap();
        assert!(r.text.starts_with("Arr, matey!"), "{}", r.text);
        assert!(r.text.ends_with("the borrow checker be satisfied."));
        assert_eq!(r.stop, Stop::Complete);
        assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(
            r.usage,
            Usage {
                input: 31,
                output: 87
            }
        );
        let cut = parse_response(&fixture("anthropic_response_max_tokens.json")).unwrap();
        assert_eq!(cut.stop, Stop::Truncated);
        // Thinking blocks are not the answer.
        assert_eq!(cut.text, "Arr, a mutable borrow be");
        assert_eq!(cut.usage.output, 16);
    }

    #[test]
    fn an_overloaded_error_body_reads_as_its_type_and_message() {
        let text = fixture("anthropic_error_overloaded.json");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error_message(&v), "overloaded_error: Overloaded");
        let err = parse_response(&text).unwrap_err();
        assert!(err.contains("overloaded_error"), "{err}");
        assert!(parse_response("{\"content\": 3}").is_err());
        assert!(parse_response("<html>")
            .unwrap_err()
            .starts_with("not JSON"));
    }
}
