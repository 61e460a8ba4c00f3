//! TRL's preference format: `prompt`, `chosen`, `rejected`, each a string or a message list.
//! Without `prompt` (the implicit form) the prompt is the common prefix of chosen and rejected.

use super::fields::read_tools;
use super::messages::{write_openai, write_openai_tools};
use super::prompt_completion::{read_side, Side};
use super::Notes;
use crate::data::problem::Issues;
use crate::data::record::{Body, Message, PreferencePair, Role};
use serde_json::{Map, Value};

pub const KEYS: &[&str] = &["prompt", "chosen", "rejected", "tools"];

/// TRL's `extract_prompt` for strings: the longest common prefix, giving a separating space
/// back to the completions.
pub fn split_common_prefix(chosen: &str, rejected: &str) -> (String, String, String) {
    let mut idx = 0;
    let (c, r) = (chosen.as_bytes(), rejected.as_bytes());
    while idx < c.len() && idx < r.len() && c[idx] == r[idx] {
        idx += 1;
    }
    while !chosen.is_char_boundary(idx) {
        idx -= 1;
    }
    if idx < c.len().min(r.len()) && idx > 0 && c[idx - 1] == b' ' {
        idx -= 1;
    }
    (
        chosen[..idx].to_string(),
        chosen[idx..].to_string(),
        rejected[idx..].to_string(),
    )
}

pub fn read(obj: &Map<String, Value>, issues: &mut Issues) -> Option<Body> {
    let tools = read_tools(obj.get("tools"), "tools", issues);
    let prompt = match obj.get("prompt") {
        None | Some(Value::Null) => None,
        Some(_) => Some(read_side(obj, "prompt", issues)?),
    };
    let chosen = read_side(obj, "chosen", issues);
    let rejected = read_side(obj, "rejected", issues);
    let (chosen, rejected) = (chosen?, rejected?);
    let pair = match (prompt, chosen, rejected) {
        (Some(Side::Text(p)), Side::Text(c), Side::Text(r)) => PreferencePair {
            prompt: vec![Message::new(Role::User, p).with_source("prompt")],
            chosen: vec![Message::new(Role::Assistant, c).with_source("chosen")],
            rejected: vec![Message::new(Role::Assistant, r).with_source("rejected")],
            tools,
            plain: true,
        },
        (None, Side::Text(c), Side::Text(r)) => {
            let (p, c, r) = split_common_prefix(&c, &r);
            PreferencePair {
                prompt: vec![Message::new(Role::User, p).with_source("chosen")],
                chosen: vec![Message::new(Role::Assistant, c).with_source("chosen")],
                rejected: vec![Message::new(Role::Assistant, r).with_source("rejected")],
                tools,
                plain: true,
            }
        }
        (Some(Side::Messages(p)), Side::Messages(c), Side::Messages(r)) => PreferencePair {
            prompt: p,
            chosen: c,
            rejected: r,
            tools,
            plain: false,
        },
        (None, Side::Messages(c), Side::Messages(r)) => {
            let shared = c.iter().zip(r.iter()).take_while(|(a, b)| a == b).count();
            let shared = shared
                .min(c.len().saturating_sub(1))
                .min(r.len().saturating_sub(1));
            PreferencePair {
                prompt: c[..shared].to_vec(),
                chosen: c[shared..].to_vec(),
                rejected: r[shared..].to_vec(),
                tools,
                plain: false,
            }
        }
        _ => {
            issues.push(
                "chosen",
                "prompt, chosen and rejected must all be strings or all be message lists",
            );
            return None;
        }
    };
    Some(Body::Preference(pair))
}

pub fn write(p: &PreferencePair, notes: &mut Notes) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    if p.plain {
        let text = |m: &[Message], field: &str| match m {
            [one] => Ok(Value::String(one.text_with_reasoning())),
            _ => Err(format!(
                "plain preference data holds one string in {field}; found {} messages",
                m.len()
            )),
        };
        out.insert("prompt".into(), text(&p.prompt, "prompt")?);
        out.insert("chosen".into(), text(&p.chosen, "chosen")?);
        out.insert("rejected".into(), text(&p.rejected, "rejected")?);
    } else {
        out.insert("prompt".into(), write_openai(&p.prompt));
        out.insert("chosen".into(), write_openai(&p.chosen));
        out.insert("rejected".into(), write_openai(&p.rejected));
    }
    if !p.tools.is_empty() {
        notes.note("tool definitions written as \"tools\"");
        out.insert("tools".into(), write_openai_tools(&p.tools));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_prompt_is_the_common_prefix_like_trl() {
        let (p, c, r) = split_common_prefix("The sky is blue.", "The sky is green.");
        assert_eq!(
            (p.as_str(), c.as_str(), r.as_str()),
            ("The sky is", " blue.", " green.")
        );
    }

    #[test]
    fn common_prefix_stops_on_a_char_boundary() {
        let (p, c, r) = split_common_prefix("café", "cafè");
        assert_eq!(p, "caf");
        assert_eq!((c.as_str(), r.as_str()), ("é", "è"));
    }
}
