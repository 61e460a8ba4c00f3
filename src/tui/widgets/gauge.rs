//! The memory gauge: how much of a memory is used (or would be), green below 70 %, amber
//! to 90 %, red above. The Adapter tab holds its estimate against the budget with it, the
//! Train tab the memory in use.

use crate::tui::theme::Theme;
use ratatui::style::Style;
use ratatui::widgets::Gauge;

/// Above this share of the memory the gauge warns.
const WARN: f64 = 0.7;
/// Above this share it is red.
const HIGH: f64 = 0.9;

/// The gauge's colour for `ratio` of the memory.
pub fn usage_style(ratio: f64, theme: &Theme) -> Style {
    if ratio > HIGH {
        theme.gauge_high
    } else if ratio > WARN {
        theme.gauge_warn
    } else {
        theme.gauge_ok
    }
}

/// `used` as a share of `total` bytes, at most 1.
pub fn usage(used: u64, total: u64) -> f64 {
    (used as f64 / total.max(1) as f64).clamp(0.0, 1.0)
}

/// `used` of `total` bytes as a gauge (full when over), in its colour; the caller labels it.
pub fn memory_gauge<'a>(used: u64, total: u64, theme: &Theme) -> Gauge<'a> {
    let ratio = usage(used, total);
    Gauge::default()
        .ratio(ratio)
        .gauge_style(usage_style(ratio, theme))
}
