//! Draws the Data tab: the file list and the loaded file's stats on the left; on the right
//! the record pager (text, tokens or validation errors) under a title that says where it
//! is, and the convert dialog below it when it is open.

use super::records::{pair_columns, record_lines};
use super::state::{DataTab, View};
use super::tokens::token_lines;
use crate::data::{Preview, Problem, Record};
use crate::template::ToolFormat;
use crate::tui::text;
use crate::tui::theme::Theme;
use crate::tui::widgets::columns::{self, Column};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use std::path::Path;

/// The whole tab: `model` is the form's (the token view's tokenizer), `convert_to` where
/// the open convert dialog writes.
pub fn draw(
    f: &mut Frame,
    area: Rect,
    t: &DataTab,
    theme: &Theme,
    model: &str,
    tool_format: ToolFormat,
    convert_to: Option<&Path>,
) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(30), Constraint::Min(20)]).areas(area);
    let [files_area, stats_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(7)]).areas(left);
    draw_files(f, files_area, t, theme);
    draw_stats(f, stats_area, t, theme);
    draw_pager(f, right, t, theme, model, tool_format, convert_to);
}

/// The listed files with their sizes, the selected one marked.
fn draw_files(f: &mut Frame, area: Rect, t: &DataTab, theme: &Theme) {
    let items: Vec<ListItem> = t
        .files
        .iter()
        .map(|e| {
            let name = e
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = text::middle(&name, 16);
            let pad = 17usize.saturating_sub(text::width(&name));
            ListItem::new(format!(
                "{name}{}{:>9}",
                " ".repeat(pad),
                crate::units::bytes(e.bytes)
            ))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(t.file));
    f.render_stateful_widget(
        List::new(items)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" files ")
                    .border_style(theme.border),
            )
            .highlight_style(theme.selection)
            .highlight_symbol("▸ "),
        area,
        &mut state,
    );
}

/// The loaded file's format, kind, record and error counts and the detection's evidence.
fn draw_stats(f: &mut Frame, area: Rect, t: &DataTab, theme: &Theme) {
    let stats: Vec<Line> = match &t.loaded {
        Some(l) => {
            let bad = l.records.iter().filter(|(_, r)| r.is_err()).count();
            vec![
                Line::from(format!("format  {}", l.format)),
                Line::from(format!("kind    {:?}", l.format.kind()).to_lowercase()),
                Line::from(format!(
                    "records {}{}",
                    l.records.len(),
                    if l.complete { "" } else { "+" }
                )),
                Line::styled(
                    format!("errors  {bad}"),
                    if bad > 0 { theme.error } else { theme.success },
                ),
                Line::styled(text::truncate(&l.evidence, 26), theme.muted),
            ]
        }
        None if t.loading.is_some() => vec![Line::styled("reading…", theme.muted)],
        None => vec![Line::styled(
            t.error.clone().unwrap_or_else(|| "no dataset".into()),
            theme.error,
        )],
    };
    f.render_widget(
        Paragraph::new(stats).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" stats ")
                .border_style(theme.border),
        ),
        area,
    );
}

/// Why no records show: the file is being read, could not be, or there is none.
fn draw_nothing_loaded(f: &mut Frame, area: Rect, t: &DataTab) {
    let msg = match (&t.loading, &t.error) {
        (Some(p), _) => format!("reading {}…", p.display()),
        (None, Some(e)) => e.clone(),
        (None, None) => format!(
            "No dataset files in {}. Put .jsonl, .json or .parquet files there (or in data/), press o to open any file by its path, S to synthesize one with a strong model, or run `tunelab DIR` in a project folder.",
            t.root.display()
        ),
    };
    f.render_widget(
        Paragraph::new(msg)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" dataset ")),
        area,
    );
}

/// The record under the cursor as the view shows it, under a title that says where it is,
/// with the convert dialog below when it is open (or why there is no record).
fn draw_pager(
    f: &mut Frame,
    right: Rect,
    t: &DataTab,
    theme: &Theme,
    model: &str,
    tool_format: ToolFormat,
    convert_to: Option<&Path>,
) {
    let Some(l) = &t.loaded else {
        draw_nothing_loaded(f, right, t);
        return;
    };
    let view = match t.view {
        View::Text => "[text] tokens problems",
        View::Tokens => "text [tokens] problems",
        View::Problems => "text tokens [problems]",
    };
    let rest = format!(
        " · {} · record {}/{} · {view} ",
        l.format,
        t.record + 1,
        l.records.len()
    );
    // The file's path in the workspace first (cut in the middle only when it alone is
    // wider than the pane); the border cuts what does not fit after it.
    let shown = l.path.strip_prefix(&t.root).unwrap_or(&l.path);
    let room = usize::from(right.width.saturating_sub(4));
    let title = format!(
        " {}{rest}",
        text::middle(&shown.display().to_string(), room)
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .border_style(theme.border_focused);
    let (loc, rec) = match l.records.get(t.record) {
        Some(r) => (r.0.clone(), &r.1),
        None => {
            f.render_widget(Paragraph::new("empty dataset").block(block), right);
            return;
        }
    };
    let (lines, columns) = record_body(t, l, loc, rec, theme, model, tool_format);
    let mut body = right;
    if let Some(sel) = t.convert {
        let [main, dialog] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(5)]).areas(right);
        body = main;
        draw_convert(f, dialog, t, sel, theme, convert_to, right.width);
    }
    match columns {
        Some(cols) => {
            let inner = block.inner(body);
            f.render_widget(block, body);
            columns::draw(f, inner, lines, cols.into(), theme);
        }
        None => f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block),
            body,
        ),
    }
}

/// The pager's lines for record `rec` (at `loc`) in the tab's view, and a preference
/// pair's two columns when it has them.
fn record_body<'a>(
    t: &DataTab,
    l: &Preview,
    loc: String,
    rec: &Result<Record, Vec<Problem>>,
    theme: &Theme,
    model: &str,
    tool_format: ToolFormat,
) -> (Vec<Line<'a>>, Option<[Column<'a>; 2]>) {
    let mut lines: Vec<Line> = vec![Line::styled(loc, theme.muted)];
    let mut columns = None;
    match t.view {
        View::Problems => {
            let probs = l.problems();
            if probs.is_empty() {
                lines.push(Line::styled("no validation errors", theme.success));
            }
            for (k, (i, p)) in probs.iter().enumerate() {
                let field = if p.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", p.field)
                };
                let style = if k == t.problem {
                    theme.selection
                } else {
                    theme.error
                };
                lines.push(Line::styled(
                    text::clean(&format!("{} (#{}) {field}{}", p.location, i + 1, p.message))
                        .into_owned(),
                    style,
                ));
            }
        }
        View::Text => match rec {
            Ok(r) => {
                lines.extend(record_lines(r, theme));
                columns = pair_columns(r, theme);
            }
            Err(ps) => ps.iter().for_each(|p| {
                lines.push(Line::styled(
                    text::clean(&format!("{} {}: {}", p.location, p.field, p.message)).into_owned(),
                    theme.error,
                ))
            }),
        },
        View::Tokens => match (rec, t.encoder_for(model)) {
            (_, None) => lines.push(Line::styled(
                format!("loading the tokenizer of {model}…"),
                theme.muted,
            )),
            (Ok(r), Some(Ok(enc))) => match token_lines(enc, r, tool_format, theme) {
                Ok(v) => {
                    lines.push(Line::from(vec![
                        Span::styled("░masked░ ", theme.masked_token),
                        Span::styled("█trained█ ", theme.trained_token),
                        Span::styled(
                            format!(" {} tokens, {} trained · {model}", v.tokens, v.trained),
                            theme.muted,
                        ),
                    ]));
                    lines.extend(v.lines);
                    columns = v.columns;
                }
                Err(e) => lines.push(Line::styled(e, theme.error)),
            },
            (Err(_), _) => lines.push(Line::styled(
                "this record has problems (v lists them)",
                theme.error,
            )),
            (_, Some(Err(e))) => lines.push(Line::styled(
                format!("token view needs a tokenizer: {e}"),
                theme.error,
            )),
        },
    }
    (lines, columns)
}

/// The convert dialog: the formats the file converts to, the chosen one marked, and where
/// the copy goes (`width`: the pane's, which the path is cut to).
fn draw_convert(
    f: &mut Frame,
    area: Rect,
    t: &DataTab,
    sel: usize,
    theme: &Theme,
    convert_to: Option<&Path>,
    width: u16,
) {
    let targets = t.targets();
    let opts: Vec<Span> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            let s = if i == sel {
                theme.selection
            } else {
                theme.foreground
            };
            [Span::styled(format!(" {} ", f.name()), s), Span::raw(" ")]
        })
        .collect();
    f.render_widget(
        Paragraph::new(vec![
            Line::from(opts),
            Line::styled(
                format!(
                    "h/l choose · Enter writes <name>.<format>.jsonl into {} · Esc cancel",
                    text::middle(
                        &convert_to.map_or(String::new(), |p| p.display().to_string()),
                        usize::from(width).saturating_sub(58).max(12)
                    )
                ),
                theme.muted,
            ),
        ])
        .wrap(Wrap { trim: false })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" convert to ")
                .border_style(theme.accent),
        ),
        area,
    );
}
