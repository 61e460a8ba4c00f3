//! OpenAI chat (`messages[{role, content}]`, optional `tools`): the richest SFT format, and the
//! one every other converts into without loss.

use super::fields::{read_tools, req_array};
use super::messages::{read_openai, write_openai, write_openai_tools};
use super::Notes;
use crate::data::problem::Issues;
use crate::data::record::{Body, Conversation};
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["messages", "tools"];

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let tools = read_tools(obj.get("tools"), "tools", issues);
    let list = req_array(obj, "messages", issues)?;
    let before = issues.len();
    let messages = read_openai(list, "messages", issues);
    (issues.len() == before).then_some(Body::Conversation(Conversation {
        messages,
        tools,
        plain: false,
    }))
}

pub fn write(c: &Conversation, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    if c.plain {
        notes.note("plain prompt/completion strings became user and assistant messages (a chat template will apply)");
    }
    let mut out = Map::new();
    out.insert("messages".into(), write_openai(&c.messages));
    if !c.tools.is_empty() {
        out.insert("tools".into(), write_openai_tools(&c.tools));
    }
    Ok(out)
}
