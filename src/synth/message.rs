//! What synthesis sends a chat model and what it gets back, independent of the provider's
//! wire format: a system text and turns in, the reply's text, why it stopped and the tokens
//! it cost out.

use serde::Serialize;

/// Who speaks a turn of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Assistant,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        }
    }
}

/// One chat request: a system text (Anthropic's `system`, OpenAI's first message) and turns.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub system: Option<String>,
    pub turns: Vec<(Speaker, String)>,
    pub max_tokens: u32,
    /// `None` leaves the provider's default.
    pub temperature: Option<f64>,
}

impl ChatRequest {
    /// A single user turn, with an optional system text.
    pub fn user(system: Option<String>, text: impl Into<String>, max_tokens: u32) -> Self {
        ChatRequest {
            system,
            turns: vec![(Speaker::User, text.into())],
            max_tokens,
            temperature: None,
        }
    }
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The model finished (`end_turn`, `stop`, a stop sequence).
    Complete,
    /// Cut at the token limit (`max_tokens`, `length`).
    Truncated,
    /// The provider says the model refused (`refusal`, `content_filter`, a `refusal` field).
    Refused,
    /// A reason this code does not know, or none given.
    Other,
}

/// Tokens a reply cost, from the API's `usage` (zero when the server sends none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input += other.input;
        self.output += other.output;
    }
}

/// A model's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub stop: Stop,
    /// The provider's own stop reason, as sent.
    pub stop_reason: Option<String>,
    pub usage: Usage,
}
