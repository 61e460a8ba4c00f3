//! Semantic checks on canonical records: empty fields, turn order, how a conversation ends.
//! Type and shape errors are found earlier, by the format readers.

use super::problem::Issues;
use super::record::{Body, Message, Record, Role};

/// Where a message list must end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Assistant,
    User,
    Any,
}

/// Pushes every problem of `record` into `issues`.
pub fn check(record: &Record, issues: &mut Issues) {
    match &record.body {
        Body::Text(t) => {
            if t.trim().is_empty() {
                issues.push("text", "is empty");
            }
        }
        Body::Conversation(c) => {
            if c.messages.is_empty() {
                issues.push("", "the conversation has no messages");
                return;
            }
            check_empty(&c.messages, issues);
            // A prompt with no reply yet (no assistant turn at all) is a prompt-only record,
            // what GRPO samples replies to; a reply cut off after a later user turn is not.
            let prompt_only = c.messages.iter().all(|m| m.role != Role::Assistant)
                && c.messages.last().is_some_and(|m| m.role == Role::User);
            let end = if prompt_only {
                End::User
            } else {
                End::Assistant
            };
            check_turns(&c.messages, end, issues);
        }
        Body::Labeled(l) => {
            let c = &l.conversation;
            check_empty(&c.messages, issues);
            let (prompt, completion) = (l.prompt(), l.completion());
            if !c.plain {
                check_turns(prompt, End::User, issues);
            }
            match completion.first() {
                None => issues.push(
                    "",
                    "has no completion to rate; expected the last message to be the assistant's reply",
                ),
                Some(m) if m.role != Role::Assistant => issues.push(
                    m.source.0.clone(),
                    format!(
                        "the completion starts with a {} message; expected the assistant's reply",
                        m.role
                    ),
                ),
                Some(_) => check_turns_after(prompt, completion, issues),
            }
        }
        Body::Preference(p) => {
            check_empty(&p.prompt, issues);
            if !p.plain {
                check_turns(&p.prompt, End::User, issues);
            }
            for (name, side) in [("chosen", &p.chosen), ("rejected", &p.rejected)] {
                if side.is_empty() || side.iter().all(Message::is_empty) {
                    issues.push(name, "is empty; expected the reply");
                    continue;
                }
                if side[0].role != Role::Assistant {
                    issues.push(
                        side[0].source.0.clone(),
                        format!(
                            "{name} starts with a {} message; expected the assistant's reply",
                            side[0].role
                        ),
                    );
                }
                check_turns_after(&p.prompt, side, issues);
            }
            if !p.chosen.is_empty() && p.chosen == p.rejected {
                issues.push(
                    "rejected",
                    "is identical to chosen; the pair teaches nothing",
                );
            }
        }
    }
}

fn check_empty(messages: &[Message], issues: &mut Issues) {
    for m in messages {
        if m.is_empty() {
            issues.push(m.source.0.clone(), format!("empty {} message", m.role));
        }
    }
}

fn check_turns_after(prompt: &[Message], reply: &[Message], issues: &mut Issues) {
    if reply.len() > 1 {
        let all: Vec<Message> = prompt.iter().chain(reply.iter()).cloned().collect();
        let mut sub = Issues::default();
        check_turns(&all, End::Any, &mut sub);
        for p in sub.into_problems(super::problem::Location::Record(0)) {
            issues.push(p.field, p.message);
        }
    }
}

/// Roles must alternate: an optional system message first, then user and assistant in turn,
/// with tool results only after an assistant's tool call.
fn check_turns(messages: &[Message], end: End, issues: &mut Issues) {
    let mut prev: Option<&Message> = None;
    for (i, m) in messages.iter().enumerate() {
        let at = m.source.0.clone();
        match m.role {
            Role::System => {
                if i != 0 {
                    issues.push(at, "a system message must come first");
                }
            }
            Role::User => match prev {
                Some(p) if p.role == Role::User => {
                    issues.push(at, "two user messages in a row; expected an assistant reply between them")
                }
                Some(p) if p.role == Role::Assistant && !p.tool_calls.is_empty() => {
                    issues.push(at, "expected a tool result after the assistant's tool call, found a user message")
                }
                _ => {}
            },
            Role::Assistant => match prev {
                None => issues.push(at, "the conversation starts with the assistant; expected a user message first"),
                Some(p) if p.role == Role::System => {
                    issues.push(at, "the assistant speaks right after the system prompt; expected a user message first")
                }
                Some(p) if p.role == Role::Assistant => {
                    issues.push(at, "two assistant messages in a row; expected a user message between them")
                }
                _ => {}
            },
            Role::Tool => match prev {
                Some(p) if p.role == Role::Tool => {}
                Some(p) if p.role == Role::Assistant && !p.tool_calls.is_empty() => {}
                _ => issues.push(at, "a tool result must follow an assistant tool call"),
            },
        }
        prev = Some(m);
    }
    let Some(last) = messages.last() else { return };
    let at = last.source.0.clone();
    match end {
        End::Assistant if last.role != Role::Assistant => issues.push(
            at,
            format!(
                "the conversation ends on a {} message; expected it to end on the assistant",
                last.role
            ),
        ),
        End::Assistant if !last.tool_calls.is_empty() => issues.push(
            at,
            "the conversation ends on a tool call; expected a final assistant reply",
        ),
        End::User if last.role == Role::Assistant => issues.push(
            at,
            "the prompt ends on an assistant message; expected it to end on the user",
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::record::Conversation;

    fn conv(roles: &[Role]) -> Record {
        Record::conversation(Conversation {
            messages: roles
                .iter()
                .enumerate()
                .map(|(i, r)| Message::new(*r, "x").with_source(format!("messages[{i}]")))
                .collect(),
            ..Default::default()
        })
    }

    fn problems(r: &Record) -> Vec<String> {
        let mut issues = Issues::default();
        check(r, &mut issues);
        issues
            .into_problems(super::super::problem::Location::Line(1))
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_good_conversation_has_no_problems() {
        assert!(problems(&conv(&[
            Role::System,
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]))
        .is_empty());
    }

    #[test]
    fn non_alternating_and_bad_endings_are_reported_with_paths() {
        let p = problems(&conv(&[
            Role::User,
            Role::User,
            Role::Assistant,
            Role::Assistant,
        ]));
        assert_eq!(
            p,
            vec![
                "line 1: messages[1]: two user messages in a row; expected an assistant reply between them",
                "line 1: messages[3]: two assistant messages in a row; expected a user message between them",
            ]
        );
        let p = problems(&conv(&[Role::User, Role::Assistant, Role::User]));
        assert_eq!(
            p,
            vec!["line 1: messages[2]: the conversation ends on a user message; expected it to end on the assistant"]
        );
        // A prompt alone (GRPO's data) has no reply to end on.
        assert!(problems(&conv(&[Role::System, Role::User])).is_empty());
    }

    #[test]
    fn tool_messages_need_a_preceding_call() {
        let p = problems(&conv(&[Role::User, Role::Tool, Role::Assistant]));
        assert!(
            p[0].contains("messages[1]: a tool result must follow an assistant tool call"),
            "{p:?}"
        );
    }
}
