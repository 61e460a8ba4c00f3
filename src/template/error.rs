//! Errors of the tokenization layer.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("chat template {name}: {message}")]
    Compile { name: String, message: String },
    /// The template raised (`raise_exception`) or failed while rendering.
    #[error("chat template {name}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Render {
        name: String,
        line: Option<usize>,
        message: String,
    },
    #[error("{0}")]
    NoTemplate(String),
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// The record carries tool calls or definitions the template does not render.
    #[error("chat template {name} does not render {what}: this record's {calls} tool call(s) would train as an empty turn and its definitions would vanish; set data.tool_format: json (calls as <tool_call> JSON in the assistant turn, definitions in the system prompt) or drop (leave such records out), or use a template with tool support")]
    ToolsNotRendered {
        name: String,
        what: String,
        calls: usize,
    },
    /// Rendering the conversation turn by turn did not give prefixes of the whole rendering,
    /// so the trained spans cannot be found without guessing.
    #[error("chat template {name} is not prefix-stable at message {index} ({role}): rendering the conversation up to that message is not a prefix of the whole rendering, so the template moves or rewrites earlier turns (Mistral v0.3, for one, moves the system prompt into the last user turn); pick another template with --template or fix this one")]
    NotPrefixStable {
        name: String,
        index: usize,
        role: String,
    },
}
