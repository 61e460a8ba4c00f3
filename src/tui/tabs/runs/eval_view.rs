//! Draws the Eval view: the runs' own before-and-after report, the comparison's progress or
//! its table (each adapter's value, difference and interval, coloured where the interval
//! excludes 0), or one generation item with every side's answer. Every run id, label,
//! prompt and answer goes through [`crate::tui::text`].

use super::eval::{AnswerItem, EvalView, Phase, RunReport};
use crate::eval::compare::{Cell, Comparison};
use crate::tui::text;
use crate::tui::theme::Theme;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

/// Three decimals, two from 10 up (BLEU and chrF are 0–100).
fn num(x: f64) -> String {
    if x.abs() >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn signed(x: f64) -> String {
    if x.abs() >= 10.0 {
        format!("{x:+.2}")
    } else {
        format!("{x:+.3}")
    }
}

/// `value Δdelta [lo, hi]`, as the table shows an adapter's number.
pub fn cell_text(c: &Cell) -> String {
    let iv = c
        .interval
        .map(|(lo, hi)| format!(" [{}, {}]", signed(lo), signed(hi)))
        .unwrap_or_default();
    format!("{} Δ{}{iv}", num(c.value), signed(c.delta))
}

/// Green where the adapter is surely better, red where surely worse (the interval excludes
/// 0), plain where the difference may be noise or has no interval.
fn cell_style(c: &Cell, theme: &Theme) -> Style {
    match c.interval {
        Some((lo, _)) if lo > 0.0 => theme.success,
        Some((_, hi)) if hi < 0.0 => theme.error,
        _ => theme.foreground,
    }
}

fn pad(s: &str, w: usize) -> String {
    let n = text::width(s);
    format!("{s}{}", " ".repeat(w.saturating_sub(n)))
}

fn pad_left(s: &str, w: usize) -> String {
    let n = text::width(s);
    format!("{}{s}", " ".repeat(w.saturating_sub(n)))
}

fn heading(s: &str, theme: &Theme) -> Line<'static> {
    Line::styled(s.to_string(), theme.title.add_modifier(Modifier::BOLD))
}

fn report_lines(reports: Option<&[RunReport]>, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = vec![heading(
        "what each run's own evaluations measured (eval.tasks, from its events)",
        theme,
    )];
    let Some(reports) = reports else {
        out.push(Line::styled("reading the runs' events…", theme.muted));
        return out;
    };
    let key_w = reports
        .iter()
        .flat_map(|r| &r.lines)
        .map(|l| text::width(&text::clean(&l.key)))
        .max()
        .unwrap_or(0)
        .clamp(12, 48);
    for r in reports {
        let id = text::middle(&r.id, width.saturating_sub(30).max(12));
        let (Some(first), Some(_)) = (r.lines.first(), r.lines.last()) else {
            let why = if r.configured > 0 {
                format!(
                    "{id}: its {} eval.tasks have not been scored yet (they run at each evaluation)",
                    r.configured
                )
            } else {
                format!(
                    "{id}: no eval.tasks. Add `eval.tasks` to its config (bench: FILE, or \
                     generate: held_out with regex: {{NAME: PATTERN}}) to measure them at each \
                     evaluation, or compare now: `tunelab runs compare RUN --task FILE`"
                )
            };
            out.push(Line::styled(why, theme.warning));
            continue;
        };
        let first_step = first.first_step;
        let last_step = r.lines.iter().map(|l| l.last_step).max().unwrap_or(0);
        let before = if first_step == 0 {
            "step 0 (before training)".to_string()
        } else {
            format!("step {first_step}")
        };
        out.push(Line::from(vec![
            Span::styled(id, theme.accent),
            Span::styled(format!("  {before} → step {last_step}"), theme.muted),
        ]));
        for l in &r.lines {
            let delta = l.delta();
            let style = if delta == 0.0 {
                theme.foreground
            } else {
                theme.info
            };
            out.push(Line::from(vec![
                Span::raw(format!(
                    "  {} {:>9} → {:>9}  ",
                    pad(&text::truncate(&l.key, key_w), key_w),
                    num(l.first),
                    num(l.last)
                )),
                Span::styled(format!("Δ{}", signed(delta)), style),
            ]));
        }
    }
    out
}

fn table_lines(c: &Comparison, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let rows = c.rows();
    let key_w = rows
        .iter()
        .map(|r| text::width(&text::clean(&r.key)))
        .max()
        .unwrap_or(0)
        .clamp(6, 40);
    let base_w = 9;
    let labels: Vec<&str> = c.sides.iter().skip(1).map(|s| s.label.as_str()).collect();
    let texts: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|r| {
            r.adapters
                .iter()
                .map(|x| x.as_ref().map(cell_text))
                .collect()
        })
        .collect();
    // Each adapter's column: as wide as its widest cell or its label, up to 40 (a longer
    // label is cut in the middle here, and is in full above the table).
    let col_w: Vec<usize> = labels
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let cells = texts
                .iter()
                .filter_map(|t| t.get(k).cloned().flatten())
                .map(|t| text::width(&t))
                .max()
                .unwrap_or(1);
            cells.max(text::width(&text::clean(l)).min(40)).max(12)
        })
        .collect();
    let mut out = Vec::new();
    for (k, l) in labels.iter().enumerate() {
        out.push(Line::from(vec![
            Span::styled(format!("adapter {}  ", k + 1), theme.muted),
            Span::styled(
                text::middle(l, width.saturating_sub(12).max(12)),
                theme.accent,
            ),
        ]));
    }
    let mut header = vec![Span::styled(
        format!("{} {}", pad("METRIC", key_w), pad_left("base", base_w)),
        theme.title.add_modifier(Modifier::BOLD),
    )];
    for (k, l) in labels.iter().enumerate() {
        header.push(Span::styled(
            format!("  {}", pad(&text::middle(l, col_w[k]), col_w[k])),
            theme.title.add_modifier(Modifier::BOLD),
        ));
    }
    out.push(Line::from(header));
    for (row, cells) in rows.iter().zip(&texts) {
        let base = row.base.as_ref().map_or("-".to_string(), |b| num(b.value));
        let mut spans = vec![Span::raw(format!(
            "{} {}",
            pad(&text::truncate(&row.key, key_w), key_w),
            pad_left(&base, base_w)
        ))];
        for (k, (cell, t)) in row.adapters.iter().zip(cells).enumerate() {
            let (shown, style) = match (cell, t) {
                (Some(c), Some(t)) => (t.clone(), cell_style(c, theme)),
                _ => ("-".to_string(), theme.muted),
            };
            spans.push(Span::raw("  "));
            spans.push(Span::styled(pad(&shown, col_w[k]), style));
        }
        out.push(Line::from(spans));
    }
    out.push(Line::styled(
        "adapter − base, with its 95% interval: green or red where the interval excludes 0 \
         (BLEU, chrF and lengths have none)",
        theme.muted,
    ));
    out
}

fn comparison_lines(v: &EvalView, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let first = v
        .reports
        .as_ref()
        .and_then(|r| r.first())
        .map(|r| r.id.clone())
        .or_else(|| {
            v.runs
                .first()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut out = vec![heading(
        &format!(
            "the base against each run's newest adapter, on {}'s eval.tasks",
            text::middle(&first, width.saturating_sub(60).max(12))
        ),
        theme,
    )];
    match &v.phase {
        Phase::Idle => out.push(Line::styled(
            "r or Enter scores them (on a worker: the workbench stays usable) · Esc back",
            theme.info,
        )),
        Phase::Running { tally, .. } => {
            match &tally.last {
                None => out.push(Line::styled(
                    "loading the base model and the tasks…",
                    theme.muted,
                )),
                Some(p) => {
                    let (done, total) = tally.overall();
                    let bar_w = 30usize;
                    let filled = (done * bar_w).checked_div(total).unwrap_or(0).min(bar_w);
                    out.push(Line::from(vec![
                        Span::styled(
                            format!(
                                "side {}/{} · {} {}/{}  ",
                                p.side + 1,
                                p.sides,
                                text::truncate(&p.task, 48),
                                p.done,
                                p.total
                            ),
                            theme.foreground,
                        ),
                        Span::styled("█".repeat(filled), theme.success),
                        Span::styled("░".repeat(bar_w - filled), theme.muted),
                        Span::styled(format!(" {done}/{total} items"), theme.muted),
                    ]));
                }
            }
            out.push(Line::styled(
                if v.stopping() {
                    "stopping…"
                } else {
                    "x stops · Esc stops and goes back to the runs"
                },
                theme.info,
            ));
        }
        Phase::Done { comparison, items } => {
            out.extend(table_lines(comparison, width, theme));
            out.push(Line::styled(
                if items.is_empty() {
                    "r scores again · Esc back".to_string()
                } else {
                    format!(
                        "a: the {} answers side by side · r scores again · Esc back",
                        items.len()
                    )
                },
                theme.info,
            ));
        }
        Phase::Stopped => out.push(Line::styled(
            "stopped · r scores again · Esc back",
            theme.warning,
        )),
        Phase::Failed(e) => {
            out.push(Line::styled(text::one_line(e), theme.error));
            out.push(Line::styled("r tries again · Esc back", theme.info));
        }
    }
    out
}

fn labelled(out: &mut Vec<Line<'static>>, label: &str, body: &str, style: Style, theme: &Theme) {
    out.push(Line::styled(
        label.to_string(),
        style.add_modifier(Modifier::BOLD),
    ));
    if body.trim().is_empty() {
        out.push(Line::styled("  (empty)", theme.muted));
        return;
    }
    for l in text::lines(body) {
        out.push(Line::styled(format!("  {l}"), style));
    }
}

fn answer_lines(item: &AnswerItem, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    labelled(&mut out, "prompt", &item.question, theme.user, theme);
    labelled(&mut out, "reference", &item.reference, theme.muted, theme);
    for (label, answer) in &item.answers {
        let label = text::middle(label, width.saturating_sub(2).max(12));
        labelled(&mut out, &label, answer, theme.assistant, theme);
    }
    out
}

/// Draws `v` over the tab; its scroll is kept within its lines.
pub fn draw(f: &mut Frame, area: Rect, v: &mut EvalView, theme: &Theme) {
    let width = usize::from(area.width.saturating_sub(2));
    let items = v.items();
    if let (true, Some(item)) = (v.answers, items.get(v.item)) {
        let title = format!(
            " answers {}/{} · {} · j/k moves · a: the table ",
            v.item + 1,
            items.len(),
            text::truncate(&item.task, 40)
        );
        f.render_widget(
            Paragraph::new(answer_lines(item, width, theme))
                .wrap(Wrap { trim: false })
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(title)
                        .border_style(theme.border_focused),
                ),
            area,
        );
        return;
    }
    let mut lines = report_lines(v.reports.as_deref(), width, theme);
    lines.push(Line::default());
    lines.extend(comparison_lines(v, width, theme));
    v.scroll = v
        .scroll
        .min(u16::try_from(lines.len().saturating_sub(1)).unwrap_or(u16::MAX));
    let title = format!(
        " eval · {} run{} ",
        v.runs.len(),
        if v.runs.len() == 1 { "" } else { "s" }
    );
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((v.scroll, 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title)
                    .border_style(theme.border_focused),
            ),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_reads_value_delta_and_interval() {
        let c = Cell {
            value: 1.0,
            delta: 0.9,
            interval: Some((0.7, 1.1)),
        };
        assert_eq!(cell_text(&c), "1.000 Δ+0.900 [+0.700, +1.100]");
        let t = Theme::builtin("dark", crate::tui::theme::Depth::TrueColor).unwrap();
        assert_eq!(cell_style(&c, &t), t.success);
        let worse = Cell {
            interval: Some((-0.4, -0.1)),
            ..c.clone()
        };
        assert_eq!(cell_style(&worse, &t), t.error);
        let noise = Cell {
            interval: Some((-0.1, 0.3)),
            ..c.clone()
        };
        assert_eq!(cell_style(&noise, &t), t.foreground);
        let bleu = Cell {
            value: 12.5,
            delta: 2.0,
            interval: None,
        };
        assert_eq!(cell_text(&bleu), "12.50 Δ+2.000");
        assert_eq!(cell_style(&bleu, &t), t.foreground);
    }
}
