//! A record drawn by role: each message under its role's tag (tool calls as `data inspect`
//! shows them), a rated completion's label, a preference pair's replies as two columns.
//! Every text from the data goes through [`crate::tui::text`].

use crate::data::{Body, Message, Record};
use crate::tui::text;
use crate::tui::theme::Theme;
use crate::tui::widgets::columns::Column;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};

pub fn message_lines<'a>(m: &Message, theme: &Theme, label: Option<&str>, out: &mut Vec<Line<'a>>) {
    let role = m.role.as_str();
    let style = match m.role {
        crate::data::Role::User => theme.user,
        crate::data::Role::Assistant => theme.assistant,
        crate::data::Role::System => theme.system,
        crate::data::Role::Tool => theme.tool,
    };
    let tag = label.map_or_else(|| role.to_string(), |l| format!("{role} ({l})"));
    // Tool calls as `data inspect` shows them.
    let mut text = m.text();
    for c in &m.tool_calls {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("→ call {}({})", c.name, c.arguments));
    }
    // At least one space after the tag, however long (`assistant (chosen)`).
    let width = (tag.chars().count() + 1).max(12);
    for (i, line) in text::lines(&text).enumerate() {
        let head = if i == 0 {
            format!("{tag:<width$}")
        } else {
            " ".repeat(width)
        };
        out.push(Line::from(vec![
            Span::styled(head, style.add_modifier(Modifier::BOLD)),
            Span::styled(line, theme.foreground),
        ]));
    }
}

pub fn record_lines<'a>(rec: &Record, theme: &Theme) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    match &rec.body {
        Body::Conversation(c) => {
            if !c.tools.is_empty() {
                let names: Vec<String> = c
                    .tools
                    .iter()
                    .map(|t| {
                        t.get("name")
                            .and_then(|n| n.as_str())
                            .unwrap_or("?")
                            .to_string()
                    })
                    .collect();
                out.push(Line::from(vec![
                    Span::styled(
                        format!("{:<12}", "tools"),
                        theme.tool.add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(
                        text::clean(&names.join(", ")).into_owned(),
                        theme.foreground,
                    ),
                ]));
            }
            c.messages
                .iter()
                .for_each(|m| message_lines(m, theme, None, &mut out))
        }
        Body::Labeled(l) => {
            out.push(label_line(l.desirable, theme));
            l.prompt()
                .iter()
                .for_each(|m| message_lines(m, theme, None, &mut out));
            let tag = if l.desirable {
                "desirable"
            } else {
                "undesirable"
            };
            l.completion()
                .iter()
                .for_each(|m| message_lines(m, theme, Some(tag), &mut out));
        }
        // The replies go in two columns (see `pair_columns`).
        Body::Preference(p) => p
            .prompt
            .iter()
            .for_each(|m| message_lines(m, theme, None, &mut out)),
        Body::Text(t) => text::lines(t).for_each(|l| out.push(Line::styled(l, theme.foreground))),
    }
    out
}

/// A rated completion's label, and what each method does with it.
pub fn label_line<'a>(desirable: bool, theme: &Theme) -> Line<'a> {
    let (value, what, style) = if desirable {
        (
            "true",
            "desirable: SFT and KTO learn from this reply",
            theme.chosen,
        )
    } else {
        (
            "false",
            "undesirable: KTO moves away from it; SFT leaves it out",
            theme.rejected,
        )
    };
    Line::from(vec![
        Span::styled(
            format!("{:<12}", "label"),
            style.add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("{value} · {what}"), style),
    ])
}

/// A preference record's chosen and rejected replies, as two columns.
pub fn pair_columns<'a>(rec: &Record, theme: &Theme) -> Option<[Column<'a>; 2]> {
    let Body::Preference(p) = &rec.body else {
        return None;
    };
    let col = |msgs: &[Message], label: &str, style| {
        let mut lines = Vec::new();
        msgs.iter()
            .for_each(|m| message_lines(m, theme, None, &mut lines));
        Column {
            title: format!(" {label} "),
            style,
            lines,
        }
    };
    Some([
        col(&p.chosen, "chosen", theme.chosen),
        col(&p.rejected, "rejected", theme.rejected),
    ])
}
