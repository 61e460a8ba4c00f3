//! Plain text (`text`) for continued pre-training.

use super::fields::req_str;
use crate::data::problem::Issues;
use crate::data::record::Body;
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["text"];

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    req_str(obj, "text", issues).map(Body::Text)
}

pub fn write(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("text".into(), Value::String(text.to_string()));
    out
}
