//! Draws the whole screen: tab bar, the active tab, the key-hint line, and the help overlay
//! or command palette on top.

use super::action::Action;
use super::app::{palette_matches, App, Overlay};
use super::effect::Level;
use super::tabs::Tab;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};
use ratatui::Frame;

pub fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    f.render_widget(Block::default().style(app.theme.background), area);
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_tabs(f, top, app);
    app.draw_tab(f, body);
    draw_status(f, bottom, app);
    match &app.overlay {
        Overlay::Help { scroll } => draw_help(f, area, app, *scroll),
        Overlay::Palette { query, selected } => {
            draw_palette(f, area, app, &query.display(), query.value(), *selected)
        }
        Overlay::None => {}
    }
}

fn draw_tabs(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let mut spans = vec![Span::styled(
        " tunelab ",
        t.accent.add_modifier(Modifier::BOLD),
    )];
    for (i, tab) in Tab::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, tab.title());
        spans.push(if *tab == app.tab {
            Span::styled(
                format!("[{}]", label.trim()),
                t.title.add_modifier(Modifier::BOLD | Modifier::REVERSED),
            )
        } else {
            Span::styled(label, t.muted)
        });
    }
    let run = app
        .train
        .view
        .as_ref()
        .map(|v| {
            let st = v.status.as_ref().map_or("…".into(), |s| {
                format!("{:?} · step {}/{}", s.state, s.step, s.total_steps).to_lowercase()
            });
            format!("run {} · {st} ", v.id())
        })
        .unwrap_or_default();
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let pad = (area.width as usize).saturating_sub(used + run.chars().count());
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::styled(run, t.info));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The key hints of a tab, from the keymap.
fn hints(app: &App) -> Vec<(String, &'static str)> {
    let actions: &[Action] = match app.tab {
        Tab::Data => &[
            Action::Down,
            Action::Right,
            Action::Search,
            Action::TokenView,
            Action::Validation,
            Action::Convert,
        ],
        Tab::Adapter => &[
            Action::Edit,
            Action::LoadPreset,
            Action::SavePreset,
            Action::StartRun,
        ],
        Tab::Train => &[Action::StartRun, Action::StopRun, Action::AttachNext],
        Tab::Chat => &[
            Action::Compose,
            Action::ToggleAdapter,
            Action::SideBySide,
            Action::PickAdapter,
            Action::SaveExchange,
        ],
        Tab::Runs => &[
            Action::Enter,
            Action::Mark,
            Action::Compare,
            Action::OpenInChat,
            Action::StopRun,
        ],
    };
    let short = |a: Action| match a {
        Action::Down => "record",
        Action::Right => "file",
        Action::Search => "search",
        Action::TokenView => "tokens",
        Action::Validation => "errors",
        Action::Convert => "convert",
        Action::Edit => "edit",
        Action::LoadPreset => "preset",
        Action::SavePreset => "save",
        Action::StartRun => "start run",
        Action::StopRun => "stop",
        Action::AttachNext => "attach",
        Action::Compose => "write",
        Action::ToggleAdapter => "adapter on/off",
        Action::SideBySide => "side by side",
        Action::PickAdapter => "adapter",
        Action::SaveExchange => "save",
        Action::Enter => "watch",
        Action::Mark => "mark",
        Action::Compare => "compare",
        Action::OpenInChat => "chat",
        _ => "",
    };
    let mut out: Vec<(String, &'static str)> = actions
        .iter()
        .filter_map(|a| app.keymap.keys_for(app.tab, *a).map(|k| (k, short(*a))))
        .collect();
    out.push(("?".into(), "help"));
    out.push((":".into(), "palette"));
    out.push(("q".into(), "quit"));
    out
}

fn draw_status(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    if let Some(prompt) = app.prompt() {
        f.render_widget(Paragraph::new(prompt).style(t.foreground), area);
        return;
    }
    if let Some((level, msg)) = &app.message {
        let style = match level {
            Level::Info => t.info,
            Level::Warning => t.warning,
            Level::Error => t.error,
        };
        f.render_widget(Paragraph::new(format!(" {msg}")).style(style), area);
        return;
    }
    let mut spans = Vec::new();
    for (k, what) in hints(app) {
        spans.push(Span::styled(
            format!(" {k} "),
            t.accent.add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled(format!("{what} "), t.muted));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_help(f: &mut Frame, area: Rect, app: &App, scroll: u16) {
    let r = centered(area, 76, area.height.saturating_sub(2));
    f.render_widget(Clear, r);
    let rows: Vec<Row> = app
        .keymap
        .rows()
        .into_iter()
        .filter(|(scope, _, _)| scope == "global" || scope == app.tab.scope())
        .skip(scroll as usize)
        .map(|(scope, keys, a)| Row::new(vec![scope, keys, a.describe().to_string()]))
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(18),
                Constraint::Min(20),
            ],
        )
        .header(
            Row::new(vec!["where", "keys", "action"])
                .style(app.theme.title.add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" help · j/k scroll · any other key closes ")
                .border_style(app.theme.accent),
        ),
        r,
    );
}

fn draw_palette(f: &mut Frame, area: Rect, app: &App, shown: &str, query: &str, selected: usize) {
    let matches = palette_matches(query);
    let h = (matches.len() as u16 + 3)
        .min(area.height.saturating_sub(2))
        .max(4);
    let r = centered(area, 60, h);
    f.render_widget(Clear, r);
    let mut lines = vec![Line::from(vec![
        Span::styled(":", app.theme.accent),
        Span::raw(shown.to_string()),
    ])];
    for (i, a) in matches.iter().enumerate() {
        let keys = app.keymap.keys_for(app.tab, *a).unwrap_or_default();
        let style = if i == selected.min(matches.len().saturating_sub(1)) {
            app.theme.selection
        } else {
            app.theme.foreground
        };
        lines.push(Line::styled(
            format!("{:<18} {:<36} {keys}", a.name(), a.describe()),
            style,
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" command palette ")
                .border_style(app.theme.accent),
        ),
        r,
    );
}
