//! What synthesis asks the models, and how it judges what comes back: the request for a
//! user prompt (as JSON), the persona's answer, the plain answer a preference pair rejects,
//! and the checks that turn empty, refusal-only, cut-off or unparsable output away.

use super::message::{ChatRequest, Reply, Stop};
use super::seeds::Seed;
use serde_json::Value;

/// The system text for writing user prompts.
fn writer_system(persona: &str) -> String {
    format!(
        "You write realistic messages that users send to an AI assistant, for a dataset that \
         fine-tunes that assistant. The assistant's task or persona:\n<persona>\n{persona}\n\
         </persona>\nWrite only the user's message, never an answer to it."
    )
}

/// Asks for one user prompt from `seed` (a topic, or an example prompt for a later round),
/// steering away from the prompts in `avoid`.
pub fn prompt_request(
    persona: &str,
    seed: &Seed,
    round: usize,
    avoid: &[String],
    max_tokens: u32,
) -> ChatRequest {
    let mut user = if seed.is_prompt {
        format!(
            "Here is an example of a message a user sent:\n<example>\n{}\n</example>\n\n\
             Write one different message in the same spirit: the same subject area, a new \
             question or request.",
            seed.text
        )
    } else {
        format!(
            "Topic: {}\n\nWrite one message a user might send to the assistant about this topic.",
            seed.text
        )
    };
    user.push_str(
        " Make it specific and self-contained; vary its length, tone and phrasing \
         (this is variation ",
    );
    user.push_str(&(round + 1).to_string());
    user.push_str(").");
    let recent: Vec<&String> = avoid.iter().rev().take(12).collect();
    if !recent.is_empty() {
        user.push_str("\n\nAlready written (write something clearly different from each):");
        for p in recent.iter().rev() {
            user.push_str("\n- ");
            user.push_str(&super::provider::clip(p, 200));
        }
    }
    user.push_str(
        "\n\nReply with only a JSON object and nothing else: {\"prompt\": \"<the user's message>\"}",
    );
    ChatRequest::user(Some(writer_system(persona)), user, max_tokens)
}

/// The persona's answer to `prompt`: the persona as the system text.
pub fn answer_request(persona: &str, prompt: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest::user(Some(persona.to_string()), prompt, max_tokens)
}

/// The system text for a preference pair's rejected side when the strong model writes it.
pub const PLAIN_SYSTEM: &str = "You are a generic assistant. Answer the user's message plainly \
    and briefly, in a neutral voice, without any particular persona, style or personality.";

/// The rejected side from the strong model: a plain, generic answer.
pub fn plain_request(prompt: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest::user(Some(PLAIN_SYSTEM.to_string()), prompt, max_tokens)
}

/// The rejected side from a second model (typically the base being tuned): the prompt alone.
pub fn base_request(prompt: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest::user(None, prompt, max_tokens)
}

/// The user prompt in a prompt-writing reply: `{"prompt": "…"}`, also inside a code fence or
/// with words around it.
pub fn parse_prompt(text: &str) -> Result<String, String> {
    let start = text.find('{');
    let end = text.rfind('}');
    let (Some(s), Some(e)) = (start, end) else {
        return Err("unparsable: no JSON object in the reply".into());
    };
    if e < s {
        return Err("unparsable: no JSON object in the reply".into());
    }
    let v: Value = serde_json::from_str(&text[s..=e])
        .map_err(|err| format!("unparsable: the JSON object does not parse: {err}"))?;
    let prompt = v
        .get("prompt")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if prompt.is_empty() {
        return Err("unparsable: no \"prompt\" string in the JSON object".into());
    }
    Ok(prompt.to_string())
}

/// Openings of a reply that only refuses.
const REFUSALS: &[&str] = &[
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry, but",
    "i am sorry, but",
    "sorry, but i",
    "i'm unable to",
    "i am unable to",
    "i'm not able to",
    "i am not able to",
    "as an ai",
];

/// A short reply that opens with a refusal.
pub fn looks_like_refusal(text: &str) -> bool {
    let t = text.trim().to_lowercase().replace('’', "'");
    t.chars().count() < 300 && REFUSALS.iter().any(|r| t.starts_with(r))
}

/// Why `reply` cannot be a record's text, if it cannot. `strict` (prompts and chosen
/// answers) also turns away cut-off and refusal-only replies; a rejected answer only needs
/// text.
pub fn check(reply: &Reply, strict: bool) -> Result<(), String> {
    if reply.text.trim().is_empty() {
        return Err(match reply.stop {
            Stop::Refused => "refused (empty reply)".into(),
            _ => "empty reply".into(),
        });
    }
    if !strict {
        return Ok(());
    }
    match reply.stop {
        Stop::Refused => return Err("refused (the provider's stop reason)".into()),
        Stop::Truncated => {
            return Err(format!(
                "cut off at the token limit ({}); raise --max-tokens",
                reply.stop_reason.as_deref().unwrap_or("length")
            ))
        }
        Stop::Complete | Stop::Other => {}
    }
    if looks_like_refusal(&reply.text) {
        return Err("refusal-only reply".into());
    }
    Ok(())
}

/// A prompt as duplicates are judged: lowercase, whitespace collapsed, trailing punctuation
/// dropped.
pub fn normalize(prompt: &str) -> String {
    let flat = prompt
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    flat.trim_end_matches(|c: char| c.is_ascii_punctuation())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::message::Usage;

    fn reply(text: &str, stop: Stop) -> Reply {
        Reply {
            text: text.into(),
            stop,
            stop_reason: None,
            usage: Usage::default(),
        }
    }

    #[test]
    fn prompts_parse_from_json_with_or_without_a_fence() {
        assert_eq!(parse_prompt("{\"prompt\": \" Hi? \"}").unwrap(), "Hi?");
        assert_eq!(
            parse_prompt("```json\n{\"prompt\": \"Why {braces}?\"}\n```").unwrap(),
            "Why {braces}?"
        );
        assert!(parse_prompt("Sure! Here is a prompt: why?").is_err());
        assert!(parse_prompt("{\"prompt\": \"\"}").is_err());
        assert!(parse_prompt("{\"prompt\": ").is_err());
    }

    #[test]
    fn empty_refusal_and_cut_off_replies_are_turned_away() {
        assert!(check(&reply("  ", Stop::Complete), false).is_err());
        assert!(check(
            &reply("I'm sorry, but I can't help with that.", Stop::Complete),
            true
        )
        .unwrap_err()
        .contains("refusal"));
        assert!(check(
            &reply("I'm sorry, but I can't help with that.", Stop::Complete),
            false
        )
        .is_ok());
        assert!(check(&reply("Half an ans", Stop::Truncated), true).is_err());
        assert!(check(&reply("Half an ans", Stop::Truncated), false).is_ok());
        assert!(check(&reply("fine", Stop::Refused), true).is_err());
        assert!(check(
            &reply(
                "I can't stress this enough: ".repeat(20).as_str(),
                Stop::Complete
            ),
            true
        )
        .is_ok());
        assert_eq!(normalize("  What IS\n a lifetime?? "), "what is a lifetime");
    }

    #[test]
    fn later_rounds_list_what_to_avoid() {
        let seed = Seed {
            text: "borrowing".into(),
            is_prompt: false,
            line: 1,
        };
        let r = prompt_request("Captain Byte", &seed, 1, &["First?".into()], 256);
        let user = &r.turns[0].1;
        assert!(user.contains("Topic: borrowing") && user.contains("variation 2"));
        assert!(user.contains("- First?"));
        assert!(r.system.unwrap().contains("Captain Byte"));
    }
}
