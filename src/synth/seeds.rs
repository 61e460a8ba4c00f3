//! What synthesis starts from: seeds (topics to write prompts about, or prompts to answer),
//! one per line or as JSON Lines with a `prompt` or `topic` field, and the persona or task
//! description, given inline or as `@file`.

use super::error::SynthError;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// How plain seed lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum SeedKind {
    /// JSON Lines say by their field; a plain line is a topic, unless it ends with `?`.
    #[default]
    Auto,
    /// Every seed is a topic: the model writes the prompts.
    Topic,
    /// Every seed is a prompt, answered as it is (later rounds ask for variations).
    Prompt,
}

impl std::str::FromStr for SeedKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("seed kind", s)
    }
}

/// One seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub text: String,
    /// A user prompt to answer as it is, rather than a topic to write prompts about.
    pub is_prompt: bool,
    /// Its line in the seed file (1-based), for messages.
    pub line: usize,
}

impl Seed {
    /// A stable short key for the seed's text: the first half of a record's `synth_id`.
    pub fn key(&self) -> String {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.text.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("{h:08x}")
    }
}

/// Reads the seeds in `path`: blank lines and `#` comments are skipped, repeated seeds kept
/// once.
pub fn read_seeds(path: &Path, kind: SeedKind) -> Result<Vec<Seed>, SynthError> {
    let text = std::fs::read_to_string(path).map_err(|e| SynthError::io(path, e))?;
    let seeds = parse_seeds(&text, kind)
        .map_err(|m| SynthError::Input(format!("{}: {m}", path.display())))?;
    if seeds.is_empty() {
        return Err(SynthError::Input(format!(
            "{}: no seeds; expected one topic or prompt per line, or JSON Lines with a \"prompt\" or \"topic\" field",
            path.display()
        )));
    }
    Ok(seeds)
}

pub fn parse_seeds(text: &str, kind: SeedKind) -> Result<Vec<Seed>, String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (text, is_prompt) = if line.starts_with('{') {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| format!("line {}: not a JSON object: {e}", i + 1))?;
            let field = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
            };
            match (field("prompt"), field("topic")) {
                (Some(p), _) => (p, true),
                (None, Some(t)) => (t, false),
                (None, None) => {
                    return Err(format!(
                        "line {}: expected a \"prompt\" or \"topic\" string field",
                        i + 1
                    ))
                }
            }
        } else {
            (line.to_string(), line.ends_with('?'))
        };
        let is_prompt = match kind {
            SeedKind::Auto => is_prompt,
            SeedKind::Topic => false,
            SeedKind::Prompt => true,
        };
        if seen.insert(text.clone()) {
            out.push(Seed {
                text,
                is_prompt,
                line: i + 1,
            });
        }
    }
    Ok(out)
}

/// The persona or task description: `@FILE` reads the file, anything else is the text.
pub fn persona(arg: &str) -> Result<String, SynthError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| SynthError::io(Path::new(path), e))?
        }
        None => arg.to_string(),
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(SynthError::Input(
            "the persona is empty; give the task description or persona inline or as @FILE".into(),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_topics_unless_questions_and_json_lines_say_which() {
        let text = "# comment\nborrowing\n\nWhat is a lifetime?\nborrowing\n{\"prompt\": \"Explain traits.\"}\n{\"topic\": \"async\"}\n";
        let s = parse_seeds(text, SeedKind::Auto).unwrap();
        let got: Vec<(&str, bool, usize)> = s
            .iter()
            .map(|s| (s.text.as_str(), s.is_prompt, s.line))
            .collect();
        assert_eq!(
            got,
            [
                ("borrowing", false, 2),
                ("What is a lifetime?", true, 4),
                ("Explain traits.", true, 6),
                ("async", false, 7)
            ]
        );
        assert!(parse_seeds(text, SeedKind::Prompt)
            .unwrap()
            .iter()
            .all(|s| s.is_prompt));
        assert!(parse_seeds("{\"text\": 1}", SeedKind::Auto)
            .unwrap_err()
            .contains("line 1"));
        assert_ne!(s[0].key(), s[1].key());
        assert_eq!(s[0].key().len(), 8);
    }
}
