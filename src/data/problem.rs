//! Where a record sits in its file, and what is wrong with it.

use serde::Serialize;
use std::fmt;

/// A record's place in its file, 1-based: `line N` for JSON Lines, `record N` for JSON and Parquet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "unit", content = "n", rename_all = "lowercase")]
pub enum Location {
    Line(u64),
    Record(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Record(n) => write!(f, "record {n}"),
        }
    }
}

/// One thing wrong with one record: the field path and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub location: Location,
    /// A path such as `conversations[3].from`; empty when the whole record is at fault.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.field, self.message)
        }
    }
}

/// Collects the problems of the record being read, before its location is attached.
#[derive(Debug, Default)]
pub struct Issues {
    items: Vec<(String, String)>,
}

impl Issues {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.items.push((field.into(), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn into_problems(self, location: Location) -> Vec<Problem> {
        self.items
            .into_iter()
            .map(|(field, message)| Problem {
                location,
                field,
                message,
            })
            .collect()
    }
}

/// A short, one-line description of a JSON value's type for "found …" messages.
pub fn describe(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) if s.is_empty() => "an empty string".into(),
        Value::String(_) => "a string".into(),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".into(),
    }
}
