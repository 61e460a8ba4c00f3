//! Message lists in their two common spellings: OpenAI (`role`/`content`) and ShareGPT (`from`/`value`).

use super::fields::{as_str, opt_weight};
use super::Notes;
use crate::data::problem::{describe, Issues};
use crate::data::record::{Message, Role, SourcePath, ToolCall};
use crate::pyjson::dumps as python_json;
use serde_json::{json, Map, Value};

// ---------- OpenAI ----------

fn openai_role(s: &str) -> Option<Role> {
    Some(match s {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        _ => return None,
    })
}

/// The keys a message's reasoning is read from: `reasoning_content` (DeepSeek's and vLLM's API,
/// what Qwen3's chat template reads), or `reasoning` (OpenRouter's, newer vLLM's).
pub const REASONING_KEYS: &[&str] = &["reasoning_content", "reasoning"];

/// A message's reasoning: the first of [`REASONING_KEYS`] present (`Some(None)` when it is
/// null or empty), or `None` when there is none of them. Only an assistant message may carry it.
fn read_reasoning(
    obj: &Map<String, Value>,
    mpath: &str,
    role: Option<Role>,
    issues: &mut Issues,
) -> Option<Option<String>> {
    let (key, v) = REASONING_KEYS
        .iter()
        .find_map(|k| obj.get(*k).map(|v| (*k, v)))?;
    let text = match v {
        Value::Null => return Some(None),
        Value::String(s) => s,
        other => {
            issues.push(
                format!("{mpath}.{key}"),
                format!(
                    "expected the reasoning as a string, found {}",
                    describe(other)
                ),
            );
            return Some(None);
        }
    };
    if text.trim().is_empty() {
        return Some(None);
    }
    match role {
        Some(Role::Assistant) | None => Some(Some(text.clone())),
        Some(r) => {
            issues.push(
                format!("{mpath}.{key}"),
                format!("only an assistant message carries reasoning; this is a {r} message"),
            );
            Some(None)
        }
    }
}

/// Reads `[{role, content, reasoning_content?, tool_calls?, tool_call_id?, name?, weight?}, ...]`.
pub fn read_openai(list: &[Value], path: &str, issues: &mut Issues) -> Vec<Message> {
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let mpath = format!("{path}[{i}]");
        let Value::Object(obj) = m else {
            issues.push(
                &mpath,
                format!("expected a message object, found {}", describe(m)),
            );
            continue;
        };
        let role = match obj.get("role") {
            None => {
                issues.push(
                    format!("{mpath}.role"),
                    "missing; expected system, user, assistant or tool",
                );
                None
            }
            Some(Value::String(r)) => {
                let role = openai_role(r);
                if role.is_none() {
                    issues.push(
                        format!("{mpath}.role"),
                        format!("unknown role {r:?}; expected system, user, assistant or tool"),
                    );
                }
                role
            }
            Some(other) => {
                issues.push(
                    format!("{mpath}.role"),
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        };
        let tool_calls = read_openai_tool_calls(obj.get("tool_calls"), &mpath, issues);
        let parts = read_content(
            obj.get("content"),
            &format!("{mpath}.content"),
            !tool_calls.is_empty(),
            issues,
        );
        let weight = opt_weight(obj, &mpath, issues);
        let reasoning = read_reasoning(obj, &mpath, role, issues);
        let (Some(role), Some(parts)) = (role, parts) else {
            continue;
        };
        let mut m = Message {
            role,
            parts,
            tool_calls,
            tool_call_id: obj
                .get("tool_call_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: obj.get("name").and_then(Value::as_str).map(str::to_string),
            weight,
            reasoning: reasoning.clone().flatten(),
            source: SourcePath(mpath.clone()),
        };
        // A reasoning field, even an empty one, says where the reasoning is: the content is
        // then left as it is.
        if reasoning.is_none() {
            m = m.with_inline_reasoning();
        }
        out.push(m);
    }
    out
}

/// Content: a string, a list of `{type: "text", text}` parts, or null when the message only calls tools.
fn read_content(
    v: Option<&Value>,
    path: &str,
    has_calls: bool,
    issues: &mut Issues,
) -> Option<Vec<String>> {
    match v {
        None | Some(Value::Null) if has_calls => Some(vec![String::new()]),
        None => {
            issues.push(path, "missing; expected a string or a list of text parts");
            None
        }
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for (j, p) in items.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                match p {
                    Value::String(s) => parts.push(s.clone()),
                    Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                        Some("text") | None => match o.get("text") {
                            Some(Value::String(t)) => parts.push(t.clone()),
                            _ => issues.push(format!("{ppath}.text"), "missing; expected the part's text"),
                        },
                        Some(other) => issues.push(
                            format!("{ppath}.type"),
                            format!("unsupported content part {other:?}; expected \"text\" (tunelab trains text-only models)"),
                        ),
                    },
                    other => issues.push(&ppath, format!("expected a text part, found {}", describe(other))),
                }
            }
            if parts.is_empty() {
                parts.push(String::new());
            }
            Some(parts)
        }
        Some(other) => {
            issues.push(
                path,
                format!(
                    "expected a string or a list of text parts, found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

fn read_openai_tool_calls(v: Option<&Value>, mpath: &str, issues: &mut Issues) -> Vec<ToolCall> {
    let Some(v) = v else { return Vec::new() };
    let items = match v {
        Value::Null => return Vec::new(),
        Value::Array(a) => a,
        other => {
            issues.push(
                format!("{mpath}.tool_calls"),
                format!("expected an array, found {}", describe(other)),
            );
            return Vec::new();
        }
    };
    let mut calls = Vec::new();
    for (k, c) in items.iter().enumerate() {
        let cpath = format!("{mpath}.tool_calls[{k}]");
        let f = c.get("function").unwrap_or(c);
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            issues.push(
                format!("{cpath}.function.name"),
                "missing; expected the function's name",
            );
            continue;
        };
        calls.push(ToolCall {
            id: c.get("id").and_then(Value::as_str).map(str::to_string),
            name: name.to_string(),
            arguments: parse_arguments(f.get("arguments")),
        });
    }
    calls
}

/// Arguments arrive as a JSON string (OpenAI) or an object (LLaMA-Factory); keep the object when possible.
fn parse_arguments(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(other) => other.clone(),
    }
}

/// Writes messages as OpenAI message objects.
pub fn write_openai(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("role".into(), Value::String(m.role.as_str().into()));
                let content = if m.parts.len() > 1 {
                    Value::Array(
                        m.parts
                            .iter()
                            .map(|p| json!({"type": "text", "text": p}))
                            .collect(),
                    )
                } else if !m.tool_calls.is_empty() && m.text().is_empty() {
                    Value::Null
                } else {
                    Value::String(m.text())
                };
                o.insert("content".into(), content);
                m.insert_openai_extras(&mut o, true);
                if let Some(w) = m.weight {
                    o.insert("weight".into(), json_number(w));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// A weight as JSON, written as an integer when it is one (`1`, not `1.0`).
pub fn json_number(w: f32) -> Value {
    if w.fract() == 0.0 && w.abs() < 1e9 {
        Value::from(w as i64)
    } else {
        Value::from(f64::from(w))
    }
}

/// Tool definitions in OpenAI's wrapped form.
pub fn write_openai_tools(tools: &[Value]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| json!({"type": "function", "function": t}))
            .collect(),
    )
}

// ---------- ShareGPT ----------

/// The ShareGPT speaker of a message, and whether it is a function call.
fn sharegpt_role(s: &str) -> Option<(Role, bool)> {
    Some(match s {
        "human" | "user" => (Role::User, false),
        "gpt" | "assistant" | "chatgpt" | "model" => (Role::Assistant, false),
        "system" => (Role::System, false),
        "function_call" => (Role::Assistant, true),
        "observation" | "tool" | "function" => (Role::Tool, false),
        _ => return None,
    })
}

/// Reads one `{from, value}` message (or `{role, content}`, which LLaMA-Factory also accepts).
pub fn read_sharegpt_message(m: &Value, mpath: &str, issues: &mut Issues) -> Option<Message> {
    let Value::Object(obj) = m else {
        issues.push(
            mpath,
            format!(
                "expected a message object with \"from\" and \"value\", found {}",
                describe(m)
            ),
        );
        return None;
    };
    let (role_key, value_key) = if obj.contains_key("from") || !obj.contains_key("role") {
        ("from", "value")
    } else {
        ("role", "content")
    };
    let role = match obj.get(role_key) {
        None => {
            issues.push(
                format!("{mpath}.{role_key}"),
                "missing; expected human, gpt, system, function_call, observation or tool",
            );
            None
        }
        Some(Value::String(r)) => {
            let role = sharegpt_role(r);
            if role.is_none() {
                issues.push(
                    format!("{mpath}.{role_key}"),
                    format!("unknown role {r:?}; expected human, gpt, system, function_call, observation or tool"),
                );
            }
            role
        }
        Some(other) => {
            issues.push(
                format!("{mpath}.{role_key}"),
                format!("expected a string, found {}", describe(other)),
            );
            None
        }
    };
    let vpath = format!("{mpath}.{value_key}");
    let value = match obj.get(value_key) {
        None => {
            issues.push(&vpath, "missing; expected a string");
            None
        }
        Some(v) => as_str(v, &vpath, issues),
    };
    let weight = opt_weight(obj, mpath, issues);
    let ((role, is_call), value) = (role?, value?);
    let mut msg = Message::new(role, value).with_source(mpath);
    msg.weight = weight;
    if is_call {
        let text = msg.text();
        msg.tool_calls = parse_function_call(&text, &vpath, issues);
        msg.parts = vec![String::new()];
        return Some(msg);
    }
    Some(msg.with_inline_reasoning())
}

/// A `function_call` value: a JSON object `{name, arguments}`, or a list of them.
fn parse_function_call(text: &str, path: &str, issues: &mut Issues) -> Vec<ToolCall> {
    let parsed: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            issues.push(
                path,
                "expected a JSON object {\"name\": …, \"arguments\": …} in the function_call value",
            );
            return Vec::new();
        }
    };
    let items = match parsed {
        Value::Array(a) => a,
        v => vec![v],
    };
    let mut calls = Vec::new();
    for it in items {
        match it.get("name").and_then(Value::as_str) {
            Some(name) => calls.push(ToolCall {
                id: None,
                name: name.to_string(),
                arguments: parse_arguments(it.get("arguments")),
            }),
            None => issues.push(path, "expected a \"name\" in the function_call value"),
        }
    }
    calls
}

/// Writes one message as `{from, value}`; a tool-calling assistant turn becomes `function_call`.
pub fn write_sharegpt_message(m: &Message, notes: &mut Notes) -> Value {
    let (from, value) = match m.role {
        Role::User => ("human", m.text()),
        Role::System => ("system", m.text()),
        Role::Tool => ("observation", m.text()),
        // ShareGPT has no reasoning field: it goes back in front of the reply as `<think>…</think>`.
        Role::Assistant if m.tool_calls.is_empty() => ("gpt", m.text_with_reasoning()),
        Role::Assistant => {
            if !m.text().trim().is_empty() {
                notes.note("assistant text beside a tool call dropped (ShareGPT's function_call turn holds only the call)");
            }
            if m.reasoning.is_some() {
                notes.note("reasoning of a tool-calling turn dropped (ShareGPT's function_call turn holds only the call)");
            }
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"name": c.name, "arguments": c.arguments}))
                .collect();
            let v = if calls.len() == 1 {
                calls[0].clone()
            } else {
                Value::Array(calls)
            };
            ("function_call", python_json(&v))
        }
    };
    if m.parts.len() > 1 {
        notes.note("text parts (such as alpaca's input) joined into one message with a newline");
    }
    if m.weight.is_some() {
        notes.note("per-message weight kept as \"loss_weight\"");
    }
    let mut o = Map::new();
    o.insert("from".into(), Value::String(from.into()));
    o.insert("value".into(), Value::String(value));
    if let Some(w) = m.weight {
        o.insert("loss_weight".into(), json_number(w));
    }
    Value::Object(o)
}
