//! Text above bordered columns: a preference pair's prompt over its chosen and rejected
//! replies (Data tab), a prompt over two or three models' replies (Chat tab, with a remote
//! column).

use crate::tui::theme::Theme;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

/// One column: its title, the title's style, and its lines.
pub struct Column<'a> {
    pub title: String,
    pub style: Style,
    pub lines: Vec<Line<'a>>,
}

/// Rows `lines` take when wrapped at `width` (character wrap: word wrap can take a few more,
/// so the columns below may start a row late, never overlap).
pub fn wrapped_rows(lines: &[Line], width: u16) -> u16 {
    let w = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(w))
        .sum::<usize>()
        .min(usize::from(u16::MAX)) as u16
}

/// Draws `head` at the top of `area` (at most half of it when the columns need room), then
/// the columns side by side, of equal width, in what is left.
pub fn draw(f: &mut Frame, area: Rect, head: Vec<Line>, cols: Vec<Column>, theme: &Theme) {
    let want = wrapped_rows(&head, area.width);
    let most = (area.height / 2).max(area.height.saturating_sub(8));
    let [top, bottom] =
        Layout::vertical([Constraint::Length(want.min(most)), Constraint::Min(3)]).areas(area);
    f.render_widget(Paragraph::new(head).wrap(Wrap { trim: false }), top);
    let n = cols.len().max(1) as u32;
    let areas = Layout::horizontal((0..n).map(|_| Constraint::Ratio(1, n))).split(bottom);
    for (c, a) in cols.into_iter().zip(areas.iter().copied()) {
        f.render_widget(
            Paragraph::new(c.lines).wrap(Wrap { trim: false }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(ratatui::text::Span::styled(c.title, c.style))
                    .border_style(theme.border),
            ),
            a,
        );
    }
}
