//! The token view of one record: each token's text, trained tokens in one colour, masked
//! in another, decoded piece by piece (a character split across tokens shows with the
//! token that completes it).

use super::records::label_line;
use crate::data::Record;
use crate::template::{Encoded, Encoder, IGNORE};
use crate::tui::text;
use crate::tui::theme::Theme;
use crate::tui::widgets::columns::Column;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};

/// Appends a token's text to `lines` in `style`, a newline as `⏎` and a line break.
fn push_piece(lines: &mut Vec<Line<'_>>, text: &str, style: ratatui::style::Style) {
    let mut parts = text.split('\n').peekable();
    while let Some(p) = parts.next() {
        if !p.is_empty() {
            if let Some(last) = lines.last_mut() {
                let p = match parts.peek() {
                    Some(_) => p.strip_suffix('\r').unwrap_or(p),
                    None => p,
                };
                last.spans
                    .push(Span::styled(text::clean(p).into_owned(), style));
            }
        }
        if parts.peek().is_some() {
            if let Some(last) = lines.last_mut() {
                last.spans.push(Span::styled("⏎", style));
            }
            lines.push(Line::default());
        }
    }
}

/// Lines of `ids` decoded piece by piece (a character split across tokens shows with the
/// token that completes it), all in `style`.
fn id_lines<'a>(
    tok: &crate::template::TextTokenizer,
    ids: &[u32],
    style: ratatui::style::Style,
) -> Vec<Line<'a>> {
    let mut lines = vec![Line::default()];
    push_ids(&mut lines, tok, ids, style);
    lines
}

/// Appends `ids` decoded piece by piece to `lines`.
fn push_ids(
    lines: &mut Vec<Line<'_>>,
    tok: &crate::template::TextTokenizer,
    ids: &[u32],
    style: ratatui::style::Style,
) {
    let mut stream = crate::infer::stream::TokenStream::new(tok);
    for &id in ids {
        if let Some(piece) = stream.push(id) {
            push_piece(lines, &piece, style);
        }
    }
    if let Some(rest) = stream.finish() {
        push_piece(lines, &rest, style);
    }
}

/// What the token view shows of one record.
pub struct TokenView<'a> {
    pub lines: Vec<Line<'a>>,
    /// A preference pair's chosen and rejected completions, each trained in full.
    pub columns: Option<[Column<'a>; 2]>,
    pub tokens: usize,
    pub trained: usize,
}

/// Token view: each token's text, trained tokens in one colour, masked in another; a
/// preference pair's prompt (never trained) above its two completions.
pub fn token_lines<'a>(
    enc: &Encoder,
    rec: &Record,
    tool_format: crate::template::ToolFormat,
    theme: &Theme,
) -> Result<TokenView<'a>, String> {
    let trained_style = theme.trained_token.add_modifier(Modifier::BOLD);
    let ex = match enc
        .encode_with(rec, tool_format)
        .map_err(|e| e.to_string())?
    {
        Encoded::Skipped(_) => {
            return Ok(TokenView {
                lines: vec![Line::from(
                    "left out: the record carries tool calls and data.tool_format is drop",
                )],
                columns: None,
                tokens: 0,
                trained: 0,
            })
        }
        Encoded::Sft(ex) => ex,
        Encoded::Labeled(l) => {
            // The prompt (never trained), then the rated completion in its label's colour.
            let tok = &enc.tokenizer;
            let mut lines = vec![label_line(l.desirable, theme), Line::default()];
            push_ids(&mut lines, tok, &l.prompt_ids, theme.masked_token);
            let style = if l.desirable {
                theme.chosen
            } else {
                theme.rejected
            };
            push_ids(
                &mut lines,
                tok,
                &l.completion_ids,
                style.add_modifier(Modifier::BOLD),
            );
            return Ok(TokenView {
                lines,
                columns: None,
                tokens: l.prompt_ids.len() + l.completion_ids.len(),
                trained: l.completion_ids.len(),
            });
        }
        Encoded::Preference(p) => {
            let tok = &enc.tokenizer;
            let col = |ids: &[u32], label: &str, style| Column {
                title: format!(" {label} · {} tokens ", ids.len()),
                style,
                lines: id_lines(tok, ids, trained_style),
            };
            return Ok(TokenView {
                lines: id_lines(tok, &p.prompt_ids, theme.masked_token),
                columns: Some([
                    col(&p.chosen_ids, "chosen", theme.chosen),
                    col(&p.rejected_ids, "rejected", theme.rejected),
                ]),
                tokens: p.prompt_ids.len() + p.chosen_ids.len() + p.rejected_ids.len(),
                trained: p.chosen_ids.len() + p.rejected_ids.len(),
            });
        }
    };
    let mut lines = vec![Line::default()];
    for (i, (s, e)) in ex.offsets.iter().enumerate() {
        let trained = ex.labels.get(i).is_some_and(|l| *l != IGNORE);
        let style = if trained {
            trained_style
        } else {
            theme.masked_token
        };
        push_piece(&mut lines, ex.text.get(*s..*e).unwrap_or(""), style);
    }
    Ok(TokenView {
        lines,
        columns: None,
        tokens: ex.len(),
        trained: ex.trained(),
    })
}
