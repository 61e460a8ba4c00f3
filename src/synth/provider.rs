//! Where requests go: a provider (Anthropic's Messages API or any OpenAI-compatible
//! chat-completions server), its base URL, the model and the API key from the environment.
//! The key is sent in a header and nowhere else: it has no `Debug` or `Display` of its own
//! value, and [`Endpoint::redact`] blanks it out of any text that leaves the process.

use super::message::{ChatRequest, Reply};
use super::{anthropic, openai};
use serde_json::Value;
use std::fmt;

/// A provider's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Provider {
    /// `POST {base}/v1/messages`, `x-api-key` from `ANTHROPIC_API_KEY`.
    Anthropic,
    /// `POST {base}/chat/completions`, `Authorization: Bearer $OPENAI_API_KEY` when set.
    Openai,
}

impl Provider {
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn key_var(self) -> &'static str {
        match self {
            Provider::Anthropic => anthropic::KEY_VAR,
            Provider::Openai => openai::KEY_VAR,
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Anthropic => anthropic::DEFAULT_BASE_URL,
            Provider::Openai => openai::DEFAULT_BASE_URL,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("provider", s)
    }
}

/// An API key read from the environment. Its value is only ever handed to a request header.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key in `var`, when set and not blank.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .map(ApiKey)
    }

    /// For tests and callers that hold a key some other way.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    fn value(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// One model behind one API.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub provider: Provider,
    pub base_url: String,
    /// `None` for an OpenAI-compatible server asks it (`GET /models`) before the first request.
    pub model: Option<String>,
    pub key: Option<ApiKey>,
}

impl Endpoint {
    /// The endpoint for `provider` with its key from the environment. Anthropic needs a key;
    /// OpenAI's own API does too, other OpenAI-compatible servers usually do not.
    pub fn from_env(
        provider: Provider,
        base_url: Option<String>,
        model: Option<String>,
    ) -> Result<Self, String> {
        let custom_base = base_url.is_some();
        let base_url = base_url
            .unwrap_or_else(|| provider.default_base_url().to_string())
            .trim_end_matches('/')
            .to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(format!(
                "{base_url:?} is not an http(s) URL; expected e.g. {}",
                provider.default_base_url()
            ));
        }
        let key = ApiKey::from_env(provider.key_var());
        let needs_key = match provider {
            Provider::Anthropic => true,
            Provider::Openai => base_url == openai::DEFAULT_BASE_URL,
        };
        if needs_key && key.is_none() {
            return Err(format!(
                "{} is not set: the {provider} API at {base_url} needs a key (export it in the environment; tunelab reads keys from nowhere else)",
                provider.key_var()
            ));
        }
        let model = model.or_else(|| match (provider, custom_base) {
            (Provider::Anthropic, _) => Some(anthropic::DEFAULT_MODEL.to_string()),
            (Provider::Openai, false) => Some(openai::DEFAULT_MODEL.to_string()),
            (Provider::Openai, true) => None,
        });
        Ok(Endpoint {
            provider,
            base_url,
            model,
            key,
        })
    }

    pub fn url(&self) -> String {
        match self.provider {
            Provider::Anthropic => anthropic::url(&self.base_url),
            Provider::Openai => openai::url(&self.base_url),
        }
    }

    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or(openai::DEFAULT_MODEL)
    }

    /// The request headers, the key among them: hand them to the request, log none of them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("content-type", "application/json".to_string())];
        match self.provider {
            Provider::Anthropic => {
                h.push(("anthropic-version", anthropic::VERSION.to_string()));
                if let Some(k) = &self.key {
                    h.push(("x-api-key", k.value().to_string()));
                }
            }
            Provider::Openai => {
                if let Some(k) = &self.key {
                    h.push(("authorization", format!("Bearer {}", k.value())));
                }
            }
        }
        h
    }

    /// The request body. OpenAI's own API takes the limit as `max_completion_tokens` (its
    /// reasoning models refuse `max_tokens`); compatible servers read `max_tokens`.
    pub fn body(&self, req: &ChatRequest) -> Value {
        match self.provider {
            Provider::Anthropic => anthropic::request_body(self.model_name(), req),
            Provider::Openai => {
                let mut body = openai::request_body(self.model_name(), req);
                if self.base_url == openai::DEFAULT_BASE_URL {
                    if let Some(obj) = body.as_object_mut() {
                        if let Some(n) = obj.remove("max_tokens") {
                            obj.insert("max_completion_tokens".into(), n);
                        }
                    }
                }
                body
            }
        }
    }

    pub fn parse(&self, body: &str) -> Result<Reply, String> {
        match self.provider {
            Provider::Anthropic => anthropic::parse_response(body),
            Provider::Openai => openai::parse_response(body),
        }
    }

    /// What an error response says: the API's message when the body is its error shape, else
    /// the start of the body.
    pub fn error_message(&self, body: &str) -> String {
        let msg = match serde_json::from_str::<Value>(body) {
            Ok(v) => match self.provider {
                Provider::Anthropic if v.get("error").is_some() => anthropic::error_message(&v),
                Provider::Openai if v.get("error").is_some() => openai::error_message(&v["error"]),
                _ => clip(body, 300),
            },
            Err(_) => clip(body, 300),
        };
        self.redact(&msg)
    }

    /// `text` with the key (if it appears at all) replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(k) if !k.value().is_empty() && text.contains(k.value()) => {
                text.replace(k.value(), "[redacted]")
            }
            _ => text.to_string(),
        }
    }

    /// `anthropic claude-sonnet-4-5 at https://api.anthropic.com`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {} at {}",
            self.provider,
            self.model.as_deref().unwrap_or("(the server's model)"),
            self.base_url
        )
    }
}

/// The first `max` characters of `s` (whitespace collapsed), with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut out: String = flat.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_the_key_and_nothing_else_shows_it() {
        let ep = Endpoint {
            provider: Provider::Anthropic,
            base_url: "https://api.anthropic.com".into(),
            model: Some("claude-sonnet-4-5".into()),
            key: Some(ApiKey::new("sk-ant-secret")),
        };
        let h = ep.headers();
        assert!(h.contains(&("x-api-key", "sk-ant-secret".into())));
        assert!(h.contains(&("anthropic-version", "2023-06-01".into())));
        assert!(!format!("{ep:?}").contains("sk-ant-secret"));
        assert!(!ep.describe().contains("sk-ant-secret"));
        assert_eq!(ep.redact("key sk-ant-secret here"), "key [redacted] here");
        assert_eq!(
            ep.error_message(r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key sk-ant-secret"}}"#),
            "authentication_error: invalid x-api-key [redacted]"
        );
        let oa = Endpoint {
            provider: Provider::Openai,
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: None,
            key: Some(ApiKey::new("sk-x")),
        };
        assert!(oa
            .headers()
            .contains(&("authorization", "Bearer sk-x".into())));
        assert_eq!(oa.url(), "http://127.0.0.1:8000/v1/chat/completions");
        let req = ChatRequest::user(None, "hi", 64);
        assert_eq!(oa.body(&req)["max_tokens"], 64);
        let official = Endpoint {
            base_url: openai::DEFAULT_BASE_URL.into(),
            ..oa.clone()
        };
        let body = official.body(&req);
        assert_eq!(body["max_completion_tokens"], 64);
        assert!(body.get("max_tokens").is_none());
    }

    #[test]
    fn names_parse_with_the_choices_listed() {
        assert_eq!("openai".parse::<Provider>(), Ok(Provider::Openai));
        assert_eq!(
            "claude".parse::<Provider>().unwrap_err(),
            "unknown provider \"claude\"; expected anthropic or openai"
        );
        assert_eq!(clip("a  b\nc", 10), "a b c");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
