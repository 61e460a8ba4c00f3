//! Typed field access with precise problems, shared by every format reader.

use crate::data::problem::{describe, Issues};
use serde_json::{Map, Value};

/// A required string field.
pub fn req_str(obj: &Map<String, Value>, key: &str, issues: &mut Issues) -> Option<String> {
    match obj.get(key) {
        None => {
            issues.push(key, "missing; expected a string");
            None
        }
        Some(v) => as_str(v, key, issues),
    }
}

/// An optional string field: absent or null is `None`.
pub fn opt_str(obj: &Map<String, Value>, key: &str, issues: &mut Issues) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => as_str(v, key, issues),
    }
}

pub fn as_str(v: &Value, path: &str, issues: &mut Issues) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => {
            issues.push(
                path,
                format!("expected a string, found {}", describe(other)),
            );
            None
        }
    }
}

/// A required array field.
pub fn req_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    issues: &mut Issues,
) -> Option<&'a Vec<Value>> {
    match obj.get(key) {
        None => {
            issues.push(key, "missing; expected an array");
            None
        }
        Some(Value::Array(a)) => Some(a),
        Some(other) => {
            issues.push(key, format!("expected an array, found {}", describe(other)));
            None
        }
    }
}

/// An optional per-message loss weight (`weight`, or LLaMA-Factory's `loss_weight`).
pub fn opt_weight(obj: &Map<String, Value>, path: &str, issues: &mut Issues) -> Option<f32> {
    for key in ["weight", "loss_weight"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => match n.as_f64() {
                Some(w) if (0.0..=1000.0).contains(&w) => return Some(w as f32),
                _ => issues.push(
                    format!("{path}.{key}"),
                    format!("expected a weight between 0 and 1000, found {n}"),
                ),
            },
            Some(Value::Bool(b)) => return Some(if *b { 1.0 } else { 0.0 }),
            Some(other) => issues.push(
                format!("{path}.{key}"),
                format!("expected a number, found {}", describe(other)),
            ),
        }
    }
    None
}

/// The fields a format does not define, kept as metadata in source order.
pub fn extra_fields(obj: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    obj.iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Tool definitions: an array, or (LLaMA-Factory) a JSON string holding one. OpenAI's
/// `{"type": "function", "function": {...}}` wrappers are unwrapped to the function itself.
pub fn read_tools(v: Option<&Value>, path: &str, issues: &mut Issues) -> Vec<Value> {
    let parsed;
    let items = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::String(s)) if s.trim().is_empty() => return Vec::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => {
                parsed = a;
                &parsed
            }
            Ok(Value::Object(o)) => {
                parsed = vec![Value::Object(o)];
                &parsed
            }
            _ => {
                issues.push(
                    path,
                    "expected a JSON array of tool definitions (as a string or an array)",
                );
                return Vec::new();
            }
        },
        Some(Value::Array(a)) => a,
        Some(other) => {
            issues.push(
                path,
                format!(
                    "expected an array of tool definitions, found {}",
                    describe(other)
                ),
            );
            return Vec::new();
        }
    };
    let mut tools = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let inner = match t.get("function") {
            Some(f) if t.get("type").and_then(Value::as_str) == Some("function") => f,
            _ => t,
        };
        if inner.get("name").and_then(Value::as_str).is_none() {
            issues.push(
                format!("{path}[{i}]"),
                "expected a tool definition with a \"name\"",
            );
            continue;
        }
        tools.push(inner.clone());
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tools_from_a_string_and_openai_wrappers() {
        let mut issues = Issues::default();
        let s = Value::String(r#"[{"name": "a", "parameters": {}}]"#.into());
        assert_eq!(read_tools(Some(&s), "tools", &mut issues)[0]["name"], "a");
        let w = json!([{"type": "function", "function": {"name": "b"}}]);
        assert_eq!(
            read_tools(Some(&w), "tools", &mut issues)[0],
            json!({"name": "b"})
        );
        assert!(issues.is_empty());
        read_tools(Some(&json!(5)), "tools", &mut issues);
        assert_eq!(issues.len(), 1);
    }
}
