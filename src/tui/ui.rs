//! Draws the whole screen: tab bar, the active tab, the key-hint line, and the help overlay
//! or command palette on top.

use super::action::Action;
use super::app::{palette_matches, App, Overlay};
use super::effect::Level;
use super::tabs::Tab;
use super::text;
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
        Overlay::Tour => draw_tour(f, area, app),
        Overlay::Help { scroll } => draw_help(f, area, app, *scroll),
        Overlay::Palette { query, selected } => {
            draw_palette(f, area, app, &query.display(), query.value(), *selected)
        }
        Overlay::Messages { scroll } => draw_messages(f, area, app, *scroll),
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
    // The run's id (cut in the middle: runs of one config differ in their time) and its
    // state fit in what the tab names leave, after at least one space.
    let used: usize = spans.iter().map(|s| text::width(&s.content)).sum();
    let room = (area.width as usize).saturating_sub(used + 1);
    let run = app
        .train
        .view
        .as_ref()
        .map(|v| {
            let st = v.status.as_ref().map_or(" · …".into(), |s| {
                format!(" · {:?} · step {}/{}", s.state, s.step, s.total_steps).to_lowercase()
            });
            let id_room = room.saturating_sub(4 + st.chars().count());
            if id_room >= 12 {
                format!("run {}{st}", text::middle(&v.id(), id_room))
            } else {
                text::middle(&format!("run {}", v.id()), room)
            }
        })
        .unwrap_or_default();
    let pad = (area.width as usize)
        .saturating_sub(used + text::width(&run))
        .max(1);
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::styled(run, t.info));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The key hints of the visible tab (its own, then the global ones), with keys from the
/// keymap.
fn hints(app: &App) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = app
        .hints()
        .iter()
        .filter_map(|(a, what)| app.keymap.keys_for(app.tab, *a).map(|k| (k, *what)))
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
        let style = level_style(t, *level);
        // A message wider than the line is cut, and says where to read it whole.
        let width = usize::from(area.width);
        let msg = text::clean(msg);
        let line = if text::width(&msg) < width {
            format!(" {msg}")
        } else {
            let more = match app.keymap.keys_for(app.tab, Action::Messages) {
                Some(k) => format!("  [{k}: full text]"),
                None => String::new(),
            };
            let room = width.saturating_sub(1 + text::width(&more));
            format!(" {}{more}", text::truncate(&msg, room))
        };
        f.render_widget(Paragraph::new(line).style(style), area);
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

fn level_style(t: &super::theme::Theme, level: Level) -> ratatui::style::Style {
    match level {
        Level::Info => t.info,
        Level::Warning => t.warning,
        Level::Error => t.error,
    }
}

/// The message log: every message of the session, wrapped to the overlay's width, newest
/// at the bottom; `scroll` rows up from there.
fn draw_messages(f: &mut Frame, area: Rect, app: &App, scroll: u16) {
    let t = &app.theme;
    let r = centered(
        area,
        area.width.saturating_sub(4).max(20),
        area.height.saturating_sub(2),
    );
    f.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" messages · j/k scroll · any other key closes ")
        .border_style(t.accent);
    let inner = block.inner(r);
    let width = usize::from(inner.width.max(1));
    let mut rows: Vec<Line> = Vec::new();
    if app.log.is_empty() {
        rows.push(Line::styled("No messages yet.", t.muted));
    }
    for m in &app.log {
        let head = format!("{}  ", m.time);
        let indent = " ".repeat(head.len());
        let body = text::clean(&m.text);
        for (i, piece) in wrap(&body, width.saturating_sub(head.len()).max(8))
            .into_iter()
            .enumerate()
        {
            let lead = if i == 0 { head.clone() } else { indent.clone() };
            rows.push(Line::from(vec![
                Span::styled(lead, t.muted),
                Span::styled(piece, level_style(t, m.level)),
            ]));
        }
    }
    let height = usize::from(inner.height);
    let end = rows.len().saturating_sub(usize::from(scroll));
    let start = end.saturating_sub(height);
    f.render_widget(block, r);
    f.render_widget(Paragraph::new(rows[start..end].to_vec()), inner);
}

/// `s` cut into pieces of at most `width` columns (at spaces where it can).
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let sep = usize::from(!line.is_empty());
        if text::width(&line) + sep + text::width(word) <= width {
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(word);
            continue;
        }
        if !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        // A word longer than the line is cut wherever it must be.
        let mut rest = word.to_string();
        while text::width(&rest) > width {
            let mut head = String::new();
            for c in rest.chars() {
                if text::width(&head) + text::width(&c.to_string()) > width {
                    break;
                }
                head.push(c);
            }
            if head.is_empty() {
                head.extend(rest.chars().next());
            }
            rest = rest[head.len()..].to_string();
            out.push(head);
        }
        line = rest;
    }
    out.push(line);
    out
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

/// The first start's one-screen tour.
fn draw_tour(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let tab = |n: usize, name: &str, what: &str| {
        Line::from(vec![
            Span::styled(
                format!(" {n} {name:<8}"),
                t.accent.add_modifier(Modifier::BOLD),
            ),
            Span::styled(what.to_string(), t.foreground),
        ])
    };
    let mut lines = vec![
        Line::styled(" Welcome to tunelab.", t.title.add_modifier(Modifier::BOLD)),
        Line::from(""),
    ];
    lines.extend(
        Tab::ALL
            .iter()
            .enumerate()
            .map(|(i, x)| tab(i + 1, x.title(), x.about())),
    );
    lines.extend([
        Line::from(""),
        Line::styled(
            " Runs train in their own process: quitting (q) never stops one.",
            t.foreground,
        ),
        Line::styled(
            " ? lists every key; : finds any action by name.",
            t.foreground,
        ),
        Line::from(""),
        Line::styled(
            format!(
                " Workspace {}",
                text::middle(&app.ws.root.display().to_string(), 60)
            ),
            t.muted,
        ),
        Line::styled(" `tunelab DIR` opens a project folder instead.", t.muted),
        Line::from(""),
        Line::styled(" Press any key to start.", t.info),
    ]);
    let r = centered(area, 78, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" tour ")
                .border_style(t.accent),
        ),
        r,
    );
}

fn draw_help(f: &mut Frame, area: Rect, app: &App, scroll: u16) {
    let r = centered(area, 76, area.height.saturating_sub(2));
    f.render_widget(Clear, r);
    // The visible tab's keys first: at 80×24 the global ones would push them off screen.
    let mut all = app.keymap.rows();
    all.retain(|(scope, _, _)| scope == "global" || scope == app.tab.scope());
    all.sort_by_key(|(scope, _, _)| scope == "global");
    let rows: Vec<Row> = all
        .into_iter()
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
