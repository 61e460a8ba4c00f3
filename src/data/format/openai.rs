//! OpenAI chat (`messages[{role, content}]`, optional `tools`): the richest SFT format, and the
//! one every other converts into without loss.

use super::fields::{read_tools, req_array};
use super::messages::{read_openai, write_openai, write_openai_tools};
use super::Notes;
use crate::data::problem::Issues;
use crate::data::record::{Body, Conversation, Message};
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

/// Writes `c` as the compact JSON of [`write`]'s object straight into `out`, when it is a
/// conversation whose messages are role, text parts and reasoning only (no tools, tool calls,
/// tool call ids, names or weights) and not plain strings (which [`write`] notes). Returns
/// false, with `out` as it was, for any other.
pub fn write_plain(c: &Conversation, out: &mut Vec<u8>) -> bool {
    let simple = |m: &Message| {
        m.tool_calls.is_empty()
            && m.tool_call_id.is_none()
            && m.name.is_none()
            && m.weight.is_none()
    };
    if c.plain || !c.tools.is_empty() || !c.messages.iter().all(simple) {
        return false;
    }
    write_messages(&c.messages, out);
    true
}

/// `{"messages":[…]}` as [`write_openai`] and serde_json's compact writer give it.
fn write_messages(messages: &[Message], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"messages\":[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"role\":\"");
        out.extend_from_slice(m.role.as_str().as_bytes());
        out.extend_from_slice(b"\",\"content\":");
        match m.parts.as_slice() {
            [] => out.extend_from_slice(b"\"\""),
            [text] => write_str(out, text),
            parts => {
                out.push(b'[');
                for (j, p) in parts.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                    write_str(out, p);
                    out.push(b'}');
                }
                out.push(b']');
            }
        }
        if let Some(r) = &m.reasoning {
            out.extend_from_slice(b",\"reasoning_content\":");
            write_str(out, r);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Appends `s` as a JSON string, byte for byte as serde_json writes it (`\"`, `\\`, `\b`,
/// `\t`, `\n`, `\f`, `\r`, `\u00xx` for the other control characters, everything else as
/// it is), looking for the bytes to escape eight at a time.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `w` is zero (exact as a whole, which is all this asks).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let needs_escape = |w: u64| {
        w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
    };
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let (mut run, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if !needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0x00..=0x1f => b'u',
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run..i]);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
        i += 1;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    /// Every ASCII byte and some non-ASCII text, at every offset within a word, escapes as
    /// serde_json escapes it.
    #[test]
    fn strings_escape_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        cases.push(String::new());
        cases.push("é東京🙂\u{2028}\u{7f}\u{80}\u{ff}".into());
        let all: String = (0u8..0x80).map(char::from).collect();
        cases.push(all.clone());
        for pad in 0..17 {
            for c in ["\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "\u{7f}", " "] {
                cases.push(format!("{}{c}{}", "a".repeat(pad), "b".repeat(17 - pad)));
                cases.push(format!("{}{c}{c}é{all}", "é".repeat(pad)));
            }
        }
        for s in &cases {
            let mut out = Vec::new();
            super::write_str(&mut out, s);
            let expected = serde_json::to_vec(s).expect("serialize");
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected),
                "{s:?}"
            );
        }
    }
}
