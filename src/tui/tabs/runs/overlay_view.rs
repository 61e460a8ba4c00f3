//! Draws the overlay: the runs' curves of one metric in one chart, and beside it the legend
//! keyed by the fields in which the runs differ, ranked, each with its best value, the best
//! run starred and drawn bold in the success colour.

use super::overlay::Overlay;
use crate::tui::text::{one_line, truncate};
use crate::tui::theme::Theme;
use crate::tui::widgets::chart::{line_chart, YRange};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

/// The colours runs take in rank order after the best.
fn palette(theme: &Theme) -> [Style; 8] {
    [
        theme.loss_train,
        theme.loss_eval,
        theme.accent,
        theme.user,
        theme.system,
        theme.tool,
        theme.warning,
        theme.muted,
    ]
}

fn value(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.4}"))
}

pub fn draw(f: &mut Frame, area: Rect, o: &Overlay, theme: &Theme) {
    let Some(c) = &o.curves else {
        f.render_widget(
            Paragraph::new("reading the runs' curves…")
                .block(Block::default().borders(Borders::ALL).title(" overlay ")),
            area,
        );
        return;
    };
    let legend_w = (area.width / 2).clamp(24, 56);
    let [chart_area, legend_area] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(legend_w)]).areas(area);
    let colours = palette(theme);
    let style_of = |k: usize| {
        if c.best == Some(k) {
            theme.success.add_modifier(Modifier::BOLD)
        } else {
            colours[k % colours.len()]
        }
    };
    // The best last, so it is drawn over the others.
    let mut order: Vec<usize> = (0..c.curves.len()).collect();
    order.sort_by_key(|k| c.best == Some(*k));
    let series = order
        .iter()
        .map(|&k| {
            (
                c.curves[k].label.clone(),
                c.curves[k].points.as_slice(),
                style_of(k),
            )
        })
        .collect();
    let negative = c.curves.iter().flat_map(|x| &x.points).any(|p| p.1 < 0.0);
    let title = format!(
        " {}{} · {} ",
        c.metric,
        if c.metric == "loss" { " (EMA)" } else { "" },
        o.title
    );
    let chart = line_chart(
        series,
        title,
        if negative {
            YRange::WithZero
        } else {
            YRange::NonNegative
        },
        theme,
    )
    .legend_position(None);
    f.render_widget(chart, chart_area);
    let room = usize::from(legend_w.saturating_sub(4));
    let mut lines = vec![Line::styled(
        format!("ranked by best {}", c.ranked_by),
        theme.muted,
    )];
    for (k, curve) in c.curves.iter().enumerate() {
        let star = if c.best == Some(k) { "★" } else { "■" };
        lines.push(Line::from(vec![
            Span::styled(format!("{star} "), style_of(k)),
            Span::styled(truncate(&one_line(&curve.label), room), style_of(k)),
        ]));
        lines.push(Line::styled(
            format!("  {} · best {}", curve.state, value(curve.best)),
            theme.muted,
        ));
    }
    if c.metrics.len() > 1 {
        lines.push(Line::styled(
            format!("m: next metric ({} recorded)", c.metrics.len()),
            theme.muted,
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" legend ")),
        legend_area,
    );
}
