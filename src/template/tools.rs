//! Tool calls and tool definitions in training data. A chat template without tool support
//! renders a tool-calling turn as an empty reply and drops the definitions, which teaches a
//! model to stop exactly where it should call a tool. So the encoder checks that the
//! template rendered them, and `data.tool_format` says what to do when it did not:
//! `template` fails with a clear message, `json` writes the calls into the assistant text
//! and the definitions into the system prompt in the Hermes/Qwen convention (`<tool_call>`
//! JSON, `<tools>` signatures, `<tool_response>` results), and `drop` leaves such records out
//! and counts them.

use crate::data::{Conversation, Message, PreferencePair, Role};
use crate::pyjson::dumps;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What happens to records whose tool calls or definitions the template cannot render.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ToolFormat {
    /// The template's own tool support; a template without it is an error.
    #[default]
    Template,
    /// Calls as `<tool_call>` JSON in the assistant text, definitions in the system prompt.
    Json,
    /// Records with tool calls or definitions are left out (and counted).
    Drop,
}

impl std::str::FromStr for ToolFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("tool_format", s)
    }
}

/// Whether messages (and definitions) carry anything tool-related.
pub fn carries_tools(messages: &[Message], tools: &[Value]) -> bool {
    !tools.is_empty() || messages.iter().any(|m| !m.tool_calls.is_empty())
}

/// Whether any message of `record` calls a tool, or the record defines tools.
pub fn record_carries_tools(record: &crate::data::Record) -> bool {
    use crate::data::Body;
    match &record.body {
        Body::Conversation(c) => carries_tools(&c.messages, &c.tools),
        Body::Labeled(l) => carries_tools(&l.conversation.messages, &l.conversation.tools),
        Body::Preference(p) => carries_tools(&p.prompt, &p.tools) || carries_tools(&p.chosen, &[]),
        Body::Text(_) => false,
    }
}

/// The conversation's tool calls and definitions, how many.
pub fn count_calls(messages: &[Message]) -> usize {
    messages.iter().map(|m| m.tool_calls.len()).sum()
}

/// The Hermes/Qwen2.5 block that introduces tool signatures in the system prompt.
pub fn tools_block(tools: &[Value]) -> String {
    let mut s = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for t in tools {
        s.push('\n');
        s.push_str(&dumps(&json!({"type": "function", "function": t})));
    }
    s.push_str("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    s
}

/// One call as Hermes writes it: `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`.
pub fn call_text(name: &str, arguments: &Value) -> String {
    format!(
        "<tool_call>\n{{\"name\": {}, \"arguments\": {}}}\n</tool_call>",
        dumps(&Value::String(name.to_string())),
        dumps(arguments)
    )
}

/// `messages` with every tool call written into its message's text, tool results as user
/// turns in `<tool_response>` tags, and (when there are definitions) a system prompt that
/// lists them. What remains needs no tool support from a template.
fn messages_as_text(messages: &[Message], tools: &[Value]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let block = tools_block(tools);
        match messages.first() {
            Some(m) if m.role == Role::System => {
                let mut sys = m.clone();
                let text = sys.text();
                sys.parts = vec![if text.is_empty() {
                    block
                } else {
                    format!("{text}\n\n{block}")
                }];
                out.push(sys);
            }
            _ => out.push(Message::new(Role::System, block)),
        }
    }
    let skip_first = !tools.is_empty() && messages.first().is_some_and(|m| m.role == Role::System);
    for m in messages.iter().skip(usize::from(skip_first)) {
        let mut m = m.clone();
        if !m.tool_calls.is_empty() {
            let mut text = m.text();
            for c in std::mem::take(&mut m.tool_calls) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&call_text(&c.name, &c.arguments));
            }
            m.parts = vec![text];
        }
        if m.role == Role::Tool {
            m.role = Role::User;
            m.parts = vec![format!("<tool_response>\n{}\n</tool_response>", m.text())];
            m.tool_call_id = None;
            m.name = None;
        }
        out.push(m);
    }
    out
}

/// A conversation whose tool calls and definitions are plain text (`data.tool_format: json`).
pub fn conversation_as_text(c: &Conversation) -> Conversation {
    Conversation {
        messages: messages_as_text(&c.messages, &c.tools),
        tools: Vec::new(),
        plain: c.plain,
    }
}

/// A preference pair whose tool calls and definitions are plain text.
pub fn pair_as_text(p: &PreferencePair) -> PreferencePair {
    PreferencePair {
        prompt: messages_as_text(&p.prompt, &p.tools),
        chosen: messages_as_text(&p.chosen, &[]),
        rejected: messages_as_text(&p.rejected, &[]),
        tools: Vec::new(),
        plain: p.plain,
    }
}

/// Message fields a template may ignore without an error, found by rendering without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    ToolCalls,
    ToolDefinitions,
    /// A `tool` message's `name`.
    ToolNames,
    SystemPrompt,
    /// Assistant messages' reasoning (`reasoning_content`): a template without reasoning
    /// support renders only the answers.
    Reasoning,
}

impl Ignored {
    pub fn describe(self) -> &'static str {
        match self {
            Ignored::ToolCalls => "tool calls",
            Ignored::ToolDefinitions => "tool definitions",
            Ignored::ToolNames => "tool message names",
            Ignored::SystemPrompt => "the system prompt",
            Ignored::Reasoning => "the reasoning (reasoning_content, <think>)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ToolCall;

    #[test]
    fn calls_and_definitions_become_hermes_text() {
        let mut call = Message::new(Role::Assistant, "");
        call.tool_calls = vec![ToolCall {
            id: None,
            name: "search_recipes".into(),
            arguments: json!({"ingredients": ["chicken", "rice"]}),
        }];
        let c = Conversation {
            messages: vec![
                Message::new(Role::User, "Find a recipe."),
                call,
                Message::new(Role::Tool, "{\"recipes\": []}"),
                Message::new(Role::Assistant, "None found."),
            ],
            tools: vec![json!({"name": "search_recipes", "parameters": {"type": "object"}})],
            plain: false,
        };
        let t = conversation_as_text(&c);
        assert!(t.tools.is_empty());
        assert_eq!(t.messages[0].role, Role::System);
        assert!(t.messages[0].text().starts_with("# Tools\n"));
        assert!(t.messages[0]
            .text()
            .contains("{\"type\": \"function\", \"function\": {\"name\": \"search_recipes\""));
        assert_eq!(
            t.messages[2].text(),
            "<tool_call>\n{\"name\": \"search_recipes\", \"arguments\": {\"ingredients\": [\"chicken\", \"rice\"]}}\n</tool_call>"
        );
        assert!(t.messages[2].tool_calls.is_empty());
        assert_eq!(t.messages[3].role, Role::User);
        assert_eq!(
            t.messages[3].text(),
            "<tool_response>\n{\"recipes\": []}\n</tool_response>"
        );
        assert!(!carries_tools(&t.messages, &t.tools));
    }
}
