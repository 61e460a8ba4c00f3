//! The OpenAI wire format: a chat-completion request read and checked field by field (an
//! error names the field, as `messages[1].content`), the response and stream-chunk bodies,
//! and errors shaped as the API's (`{"error": {"message", "type", "param", "code"}}`).
//! Plain data: no HTTP and no model here.

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// An error as the OpenAI API returns it, with its HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `server_error`, …
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about one field of the request.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        let message = message.into();
        ApiError {
            status: 400,
            message: if param.is_empty() {
                message
            } else {
                format!("{param}: {message}")
            },
            kind: "invalid_request_error",
            param: (!param.is_empty()).then_some(param),
            code: None,
        }
    }

    /// A 404 for a model id the server does not serve.
    pub fn unknown_model(id: &str, served: &[&str]) -> Self {
        ApiError {
            status: 404,
            message: format!(
                "The model `{id}` does not exist; this server has {}",
                served.join(", ")
            ),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 429: every slot is busy and the queue is full (sent with `Retry-After`).
    pub fn busy(queue: usize) -> Self {
        ApiError {
            status: 429,
            message: format!(
                "the server is busy: all generation slots are taken and {queue} requests are \
                 already queued; retry later"
            ),
            kind: "server_error",
            param: None,
            code: Some("server_busy"),
        }
    }

    /// 401: a missing or wrong API key (the message never repeats what was sent).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: 401,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 429: the key's requests-per-minute window is full (sent with `Retry-After`).
    pub fn rate_limited(per_minute: usize) -> Self {
        ApiError {
            status: 429,
            message: format!(
                "rate limit reached: at most {per_minute} requests per minute for this key (--requests-per-minute); retry after the time in Retry-After"
            ),
            kind: "requests",
            param: None,
            code: Some("rate_limit_exceeded"),
        }
    }

    /// 500 for a failure inside the server (generation, template rendering).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// A status with a plain message (an unknown route, a wrong method).
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: if status >= 500 {
                "server_error"
            } else {
                "invalid_request_error"
            },
            param: None,
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// A checked chat-completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// `None`: the base model.
    pub model: Option<String>,
    /// Messages as chat templates take them (`role`, `content` as one string, tool fields
    /// passed through).
    pub messages: Vec<Value>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub repetition_penalty: f64,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
}

/// The request as sent; unknown fields (`user`, `metadata`, …) are ignored, as the API does.
#[derive(Deserialize)]
struct Wire {
    model: Option<String>,
    messages: Vec<WireMessage>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    /// vLLM's extra sampling parameters.
    top_k: Option<i64>,
    repetition_penalty: Option<f64>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    stop: Option<Value>,
    seed: Option<i64>,
    n: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    logprobs: Option<bool>,
    tools: Option<Vec<Value>>,
    response_format: Option<ResponseFormat>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Reads a chat-completion request body.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid("", format!("the body is not valid JSON: {e}")).with_code("invalid_json")
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "",
            "the body must be a JSON object with `model` and `messages`",
        ));
    }
    let wire: Wire = serde_path_to_error::deserialize(&value).map_err(|e| {
        let mut param = e.path().to_string();
        let mut message = e.inner().to_string();
        // "missing field `messages`" is reported at the object holding it.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            param = if param == "." {
                field.to_string()
            } else {
                format!("{param}.{field}")
            };
            message = "required".into();
        }
        ApiError::invalid(if param == "." { String::new() } else { param }, message)
    })?;
    check(wire)
}

fn check(w: Wire) -> Result<ChatRequest, ApiError> {
    if w.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "at least one message is required",
        ));
    }
    let messages = w
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(n) = w.n.filter(|n| *n != 1) {
        return Err(ApiError::invalid(
            "n",
            format!("{n} choices asked for; only n = 1 is supported"),
        ));
    }
    for (name, v) in [
        ("presence_penalty", w.presence_penalty),
        ("frequency_penalty", w.frequency_penalty),
    ] {
        if v.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid(
                name,
                "not supported; use repetition_penalty (1 is none, above 1 discourages repeats)",
            ));
        }
    }
    if w.logprobs == Some(true) {
        return Err(ApiError::invalid(
            "logprobs",
            "log-probabilities are not supported",
        ));
    }
    if w.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::invalid(
            "tools",
            "function calling is not supported",
        ));
    }
    if let Some(f) = w.response_format.filter(|f| f.kind != "text") {
        return Err(ApiError::invalid(
            "response_format.type",
            format!("{:?} is not supported; only \"text\"", f.kind),
        ));
    }
    let temperature = w.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            format!("{temperature} is out of range; expected 0 to 2 (0 is greedy)"),
        ));
    }
    let top_p = match w.top_p {
        Some(p) if !(p > 0.0 && p <= 1.0) => {
            return Err(ApiError::invalid(
                "top_p",
                format!("{p} is out of range; expected above 0, at most 1"),
            ))
        }
        Some(p) if p < 1.0 => Some(p),
        _ => None,
    };
    let top_k = match w.top_k {
        None | Some(-1) | Some(0) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ApiError::invalid(
                "top_k",
                format!("{k}; expected at least 1 (or -1 for none)"),
            ))
        }
    };
    let repetition_penalty = w.repetition_penalty.unwrap_or(1.0);
    if repetition_penalty <= 0.0 || !repetition_penalty.is_finite() {
        return Err(ApiError::invalid(
            "repetition_penalty",
            format!("{repetition_penalty}; expected above 0 (1 is none)"),
        ));
    }
    let max_tokens = match (w.max_completion_tokens, w.max_tokens) {
        (Some(n), _) => Some(("max_completion_tokens", n)),
        (None, Some(n)) => Some(("max_tokens", n)),
        (None, None) => None,
    };
    let max_tokens = match max_tokens {
        Some((name, n)) if n < 1 => {
            return Err(ApiError::invalid(name, format!("{n}; expected at least 1")))
        }
        Some((_, n)) => Some(n as usize),
        None => None,
    };
    let stop = match w.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                Value::String(s) => Ok(s),
                other => Err(ApiError::invalid(
                    format!("stop[{i}]"),
                    format!("expected a string, got {other}"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(ApiError::invalid(
                "stop",
                format!("expected a string or a list of strings, got {other}"),
            ))
        }
    };
    Ok(ChatRequest {
        model: w.model,
        messages,
        stream: w.stream.unwrap_or(false),
        include_usage: w
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        max_tokens,
        stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
        seed: w.seed.map(|s| s as u64),
    })
}

/// One message as a chat template takes it: content parts joined into one string (text
/// parts only), `developer` read as `system`, other fields (`tool_calls`, `tool_call_id`,
/// `name`) kept.
fn message(i: usize, m: WireMessage) -> Result<Value, ApiError> {
    let role = match m.role.as_str() {
        "system" | "user" | "assistant" | "tool" => m.role.clone(),
        "developer" => "system".to_string(),
        other => {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                format!("{other:?}; expected system, developer, user, assistant or tool"),
            ))
        }
    };
    let content = match m.content {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                let at = format!("messages[{i}].content[{j}]");
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    (Some("text"), _) => {
                        return Err(ApiError::invalid(
                            format!("{at}.text"),
                            "a text part needs a string `text`",
                        ))
                    }
                    (Some(t), _) => {
                        return Err(ApiError::invalid(
                            format!("{at}.type"),
                            format!("{t:?}: only text parts are supported"),
                        ))
                    }
                    (None, _) => {
                        return Err(ApiError::invalid(
                            format!("{at}.type"),
                            "required (\"text\")",
                        ))
                    }
                }
            }
            texts.join("\n")
        }
        Some(other) => {
            return Err(ApiError::invalid(
                format!("messages[{i}].content"),
                format!("expected a string or a list of content parts, got {other}"),
            ))
        }
    };
    let mut o = Map::new();
    o.insert("role".into(), Value::String(role));
    o.insert("content".into(), Value::String(content));
    for (k, v) in m.rest {
        if !v.is_null() {
            o.insert(k, v);
        }
    }
    Ok(Value::Object(o))
}

/// Why a completion ended, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or a stop string.
    Stop,
    /// `max_tokens` (or the context) ran out.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Token counts of one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// What every body of one completion shares.
#[derive(Debug, Clone)]
pub struct Completion {
    /// `chatcmpl-…`
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
}

impl Completion {
    /// The non-streaming body.
    pub fn response(&self, text: &str, finish: Finish, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish.as_str(),
            }],
            "usage": usage.json(),
        })
    }

    /// A stream chunk: the first (`role`), one with text, or the last (`finish`).
    pub fn chunk(&self, delta: Value, finish: Option<Finish>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish.map(Finish::as_str),
            }],
        })
    }

    /// The usage chunk `stream_options.include_usage` asks for (no choices).
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage.json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ChatRequest, ApiError> {
        parse_chat(v.to_string().as_bytes())
    }

    #[test]
    fn a_full_request_reads_back() {
        let r = parse(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]},
            ],
            "temperature": 0.7, "top_p": 0.9, "max_tokens": 5, "max_completion_tokens": 7,
            "stop": "\n", "seed": -1, "user": "ignored", "presence_penalty": 0,
        }))
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("m"));
        assert!(r.stream && r.include_usage);
        assert_eq!(
            r.messages[0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(r.messages[1], json!({"role": "user", "content": "a\nb"}));
        assert_eq!(
            r.messages[2],
            json!({"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]})
        );
        assert_eq!((r.temperature, r.top_p), (0.7, Some(0.9)));
        assert_eq!(r.max_tokens, Some(7), "max_completion_tokens wins");
        assert_eq!(r.stop, vec!["\n".to_string()]);
        assert_eq!(r.seed, Some(u64::MAX));
    }

    #[test]
    fn defaults_follow_the_api() {
        let r = parse(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
        assert_eq!(r.model, None);
        assert!(!r.stream);
        assert_eq!((r.temperature, r.top_p, r.max_tokens), (1.0, None, None));
        assert!(r.stop.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let param = |v: Value| {
            let e = parse(v).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.body()["error"]["type"], "invalid_request_error");
            (e.param.unwrap_or_default(), e.message)
        };
        let m = |c: Value| json!({"messages": [{"role": "user", "content": "x"}, c]});
        assert_eq!(param(json!({"model": "m"})).0, "messages");
        assert_eq!(param(json!({"messages": "hi"})).0, "messages");
        assert_eq!(param(json!({"messages": []})).0, "messages");
        assert_eq!(param(m(json!({"content": "x"}))).0, "messages[1].role");
        assert_eq!(
            param(m(json!({"role": "robot", "content": "x"}))).0,
            "messages[1].role"
        );
        assert_eq!(
            param(m(json!({"role": "user", "content": 3}))).0,
            "messages[1].content"
        );
        assert_eq!(
            param(m(
                json!({"role": "user", "content": [{"type": "image_url"}]})
            ))
            .0,
            "messages[1].content[0].type"
        );
        let base = |k: &str, v: Value| {
            let mut o = json!({"messages": [{"role": "user", "content": "x"}]});
            o[k] = v;
            param(o)
        };
        assert_eq!(base("temperature", json!("hot")).0, "temperature");
        assert_eq!(base("temperature", json!(3)).0, "temperature");
        assert_eq!(base("top_p", json!(0)).0, "top_p");
        assert_eq!(base("max_tokens", json!(0)).0, "max_tokens");
        assert_eq!(base("max_tokens", json!(-4)).0, "max_tokens");
        assert_eq!(base("stop", json!(4)).0, "stop");
        assert_eq!(base("stop", json!(["a", 4])).0, "stop[1]");
        assert_eq!(base("n", json!(2)).0, "n");
        assert_eq!(base("stream", json!("yes")).0, "stream");
        assert_eq!(base("frequency_penalty", json!(0.5)).0, "frequency_penalty");
        let (p, msg) = base("model", json!(7));
        assert_eq!(p, "model");
        assert!(msg.starts_with("model: invalid type"), "{msg}");
        let e = parse_chat(b"{\"messages\": [").unwrap_err();
        assert_eq!((e.status, e.code), (400, Some("invalid_json")));
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert_eq!(parse_chat(b"[1]").unwrap_err().status, 400);
    }

    #[test]
    fn bodies_have_the_api_shape() {
        let c = Completion {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "m".into(),
        };
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let r = c.response("hi", Finish::Length, usage);
        assert_eq!(r["choices"][0]["message"]["content"], "hi");
        assert_eq!(r["choices"][0]["finish_reason"], "length");
        assert_eq!(r["usage"]["total_tokens"], 5);
        let k = c.chunk(json!({"content": "h"}), None);
        assert_eq!(k["object"], "chat.completion.chunk");
        assert_eq!(k["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(c.usage_chunk(usage)["choices"], json!([]));
        let e = ApiError::unknown_model("x", &["a", "b"]).body();
        assert_eq!(e["error"]["code"], "model_not_found");
        assert_eq!(e["error"]["param"], "model");
    }
}
