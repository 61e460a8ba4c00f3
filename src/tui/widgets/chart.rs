//! Line charts over steps: train, smoothed and eval loss of one run (Train tab) or of two
//! (Runs tab's comparison), and a preference run's reward margins and accuracy, with axes
//! that fit the points.

use crate::tui::theme::Theme;
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType};

/// One line of a chart: its legend name, points and style.
pub type Series<'a> = (String, &'a [(f64, f64)], Style);

/// How a chart's y axis is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YRange {
    /// To the points, never below 0 (losses).
    NonNegative,
    /// To the points, and always showing 0 (reward margins).
    WithZero,
    /// Fixed (accuracies: 0 to 1).
    Fixed(f64, f64),
}

/// Axis bounds with a little headroom.
fn bounds(points: &[&[(f64, f64)]], y: YRange) -> ([f64; 2], [f64; 2]) {
    let all = points
        .iter()
        .flat_map(|p| p.iter())
        .filter(|(_, y)| y.is_finite());
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::MAX, f64::MIN);
    for (x, y) in all {
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if y0 > y1 {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let yb = match y {
        YRange::NonNegative => [(y0 - pad).max(0.0), y1 + pad],
        YRange::WithZero => [y0.min(0.0) - pad, y1.max(0.0) + pad],
        YRange::Fixed(lo, hi) => [lo, hi],
    };
    ([0.0, x1], yb)
}

pub fn loss_chart<'a>(series: Vec<Series<'a>>, title: String, theme: &Theme) -> Chart<'a> {
    line_chart(series, title, YRange::NonNegative, theme)
}

/// Lines over steps, the y axis fitted as `y` says.
pub fn line_chart<'a>(
    series: Vec<Series<'a>>,
    title: String,
    y: YRange,
    theme: &Theme,
) -> Chart<'a> {
    let refs: Vec<&[(f64, f64)]> = series.iter().map(|(_, p, _)| *p).collect();
    let (xb, yb) = bounds(&refs, y);
    let datasets: Vec<Dataset> = series
        .into_iter()
        .map(|(name, pts, style)| {
            Dataset::default()
                .name(name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(style)
                .data(pts)
        })
        .collect();
    Chart::new(datasets)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .border_style(theme.border),
        )
        .x_axis(
            Axis::default()
                .title("step")
                .style(theme.muted)
                .bounds(xb)
                .labels(vec![
                    Span::raw("0"),
                    Span::raw(format!("{:.0}", xb[1] / 2.0)),
                    Span::raw(format!("{:.0}", xb[1])),
                ]),
        )
        .y_axis(Axis::default().style(theme.muted).bounds(yb).labels(vec![
            Span::raw(format!("{:.2}", yb[0])),
            Span::raw(format!("{:.2}", (yb[0] + yb[1]) / 2.0)),
            Span::raw(format!("{:.2}", yb[1])),
        ]))
}
