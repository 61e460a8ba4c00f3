//! Draws the Chat tab: the header (model and where it comes from, the adapters, sampling,
//! where exchanges are saved), the conversation or the replies side by side, and the text
//! field or the status. Every reply, prompt and path goes through [`crate::tui::text`].

use super::state::{ChatTab, InputFor, ModelFrom, Slot};
use crate::infer::Voice;
use crate::tui::text;
use crate::tui::theme::Theme;
use crate::tui::widgets::columns::{self, Column};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

fn voice_short(v: Voice) -> &'static str {
    match v {
        Voice::Base => "base",
        Voice::Adapter => "A",
        Voice::Second => "B",
    }
}

fn transcript<'a>(history: &[(String, String)], theme: &Theme) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    for (role, text) in history {
        let style = if role == "user" {
            theme.user
        } else {
            theme.assistant
        };
        for (i, l) in text::lines(text).enumerate() {
            let head = if i == 0 {
                format!("{:<10} ", text::truncate(role, 10))
            } else {
                " ".repeat(11)
            };
            lines.push(Line::from(vec![
                Span::styled(head, style.add_modifier(Modifier::BOLD)),
                Span::raw(l),
            ]));
        }
    }
    lines
}

fn body_lines<'a>(s: &str, style: Style) -> Vec<Line<'a>> {
    text::lines(s).map(|l| Line::styled(l, style)).collect()
}

/// The header's first two lines: the model and why it is the one, then the adapters.
fn header<'a>(t: &ChatTab, form_model: &str, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let (spec, from) = t.model_for(form_model);
    let why = match from {
        ModelFrom::Pinned => " (pinned with M)",
        ModelFrom::AdapterBase => " (adapter A's base)",
        ModelFrom::Form => " (the Adapter form's)",
    };
    let room = width.saturating_sub(8 + why.len()).max(10);
    let mut adapters = vec![Span::raw("adapter ")];
    match t.resolved(Slot::A) {
        Some(r) => {
            adapters.push(Span::styled(
                format!("A {}", text::middle(&r.label, 48)),
                theme.accent,
            ));
            adapters.push(Span::raw(format!(
                " [{}]",
                if t.adapter_on { "on" } else { "off" }
            )));
            if r.follows {
                adapters.push(Span::styled(" follows its run", theme.muted));
            }
        }
        None => adapters.push(Span::styled("A none", theme.muted)),
    }
    if let Some(r) = t.resolved(Slot::B) {
        adapters.push(Span::raw("  "));
        adapters.push(Span::styled(
            format!("B {}", text::middle(&r.label, 40)),
            theme.accent,
        ));
    }
    vec![
        Line::from(vec![
            Span::raw("model   "),
            Span::styled(text::middle(&spec, room), theme.accent),
            Span::styled(why, theme.muted),
        ]),
        Line::from(adapters),
    ]
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    t: &ChatTab,
    theme: &Theme,
    input: Option<&str>,
    form_model: &str,
) {
    let status = if t.status.is_empty() {
        "i: write a message · t: adapter on/off · b: side by side · A/B: adapters".to_string()
    } else {
        text::clean(&t.status).into_owned()
    };
    // A long status (an error) wraps in a taller footer rather than being cut.
    let inner = usize::from(area.width.saturating_sub(2)).max(1);
    let status_rows = if input.is_some() {
        1
    } else {
        text::width(&status).div_ceil(inner).clamp(1, 4) as u16
    };
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(3),
        Constraint::Length(status_rows + 2),
    ])
    .areas(area);
    let width = usize::from(head.width.saturating_sub(2));
    let mut info = header(t, form_model, theme, width);
    info.push(Line::from(format!(
        "{}  temp {:.1}  top-p {}  top-k {}  max {}",
        match t.pair {
            Some((l, r)) => format!("side by side: {} | {}", voice_short(l), voice_short(r)),
            None => "single".into(),
        },
        t.sampling.temperature,
        t.sampling.top_p.map_or("off".into(), |p| p.to_string()),
        t.sampling.top_k.map_or("off".into(), |k| k.to_string()),
        t.sampling.max_new_tokens
    )));
    let fmt = format!(" ({})", t.save_format);
    info.push(Line::styled(
        format!(
            "saves to {}{fmt}",
            text::middle(
                &t.save_path.display().to_string(),
                width.saturating_sub(9 + fmt.len()).max(10)
            )
        ),
        theme.muted,
    ));
    f.render_widget(
        Paragraph::new(info).block(Block::default().borders(Borders::ALL).title(" chat ")),
        head,
    );
    // Replies side by side: a pair of local voices, and the remote column when there is one.
    let col = |s: &str, title: String, style, body| Column {
        title: format!(" {} ", text::clean(&title)),
        style,
        lines: body_lines(s, body),
    };
    let mut cols = Vec::new();
    match (&t.compare, t.pair) {
        (Some((left, right)), Some((lv, rv))) => {
            cols.push(col(
                left,
                t.voice_label(lv),
                theme.foreground,
                theme.foreground,
            ));
            cols.push(col(
                right,
                t.voice_label(rv),
                theme.accent,
                theme.foreground,
            ));
        }
        _ if t.remote.is_some() => {
            let reply = match t.history.last() {
                Some((role, text)) if role == "assistant" => text.as_str(),
                _ => "",
            };
            let v = t.single_voice();
            cols.push(col(
                reply,
                t.voice_label(v),
                theme.foreground,
                theme.foreground,
            ));
        }
        _ => {}
    }
    if let Some(r) = &t.remote {
        let reply = r.last_text();
        let body = if reply.starts_with("error: ") {
            theme.error
        } else {
            theme.foreground
        };
        cols.push(col(&reply, r.title(), theme.info, body));
    }
    match cols.len() {
        2.. => {
            // The prompt above, the replies beside each other.
            let prompt = t
                .history
                .iter()
                .rev()
                .find(|(r, _)| r == "user")
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let head = if prompt.is_empty() {
                Vec::new()
            } else {
                vec![Line::from(vec![
                    Span::styled("user       ", theme.user.add_modifier(Modifier::BOLD)),
                    Span::raw(text::one_line(&prompt)),
                ])]
            };
            let block = Block::default()
                .borders(Borders::ALL)
                .title(" side by side ");
            let inner = block.inner(body);
            f.render_widget(block, body);
            columns::draw(f, inner, head, cols, theme);
        }
        _ => {
            let mut lines = transcript(&t.history, theme);
            if lines.is_empty() {
                let adapter = if t.adapters.is_empty() {
                    "No adapter yet: train one (2 for the form, then r); A picks one when runs have them."
                } else {
                    "A picks another adapter, B a second one; t turns A off; b puts two side by side (base | A, base | B, A | B)."
                };
                lines = vec![
                    Line::styled("Type a question and press Enter; Esc leaves the field (i comes back).", theme.muted),
                    Line::styled("The model is adapter A's base, else the Adapter form's; M pins another (workspace or Hugging Face cache).", theme.muted),
                    Line::styled(adapter, theme.muted),
                ];
            }
            let title = if t.system.is_empty() {
                " conversation ".to_string()
            } else {
                format!(" conversation · system: {} ", text::truncate(&t.system, 40))
            };
            let block = Block::default().borders(Borders::ALL).title(title);
            let inner = block.inner(body);
            // The newest lines at the bottom, counting the rows long lines wrap into.
            let rows = usize::from(inner.height);
            let w = usize::from(inner.width.max(1));
            let mut used = 0;
            let mut skip = lines.len();
            while skip > 0 {
                let h = lines[skip - 1].width().max(1).div_ceil(w);
                if used + h > rows {
                    break;
                }
                used += h;
                skip -= 1;
            }
            f.render_widget(
                Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>())
                    .wrap(Wrap { trim: false })
                    .block(block),
                body,
            );
        }
    }
    let (shown, style) = match input {
        Some(s) => (format!("› {s}"), theme.foreground),
        None if t.status.starts_with("error")
            || t.status.starts_with("cannot")
            || t.status.starts_with("will not fit") =>
        {
            (status, theme.error)
        }
        None => (status, theme.muted),
    };
    // The remote column's questions say what they ask for.
    let title = match t.input.as_ref().map(|(w, _)| *w) {
        Some(InputFor::RemoteUrl) => {
            " remote column: base URL of an OpenAI-compatible server (…/v1) · Enter · Esc "
        }
        Some(InputFor::RemoteModel) => {
            " remote column: model name (empty: the server's first) · Enter · Esc "
        }
        _ => "",
    };
    f.render_widget(
        Paragraph::new(shown)
            .style(style)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        foot,
    );
}
