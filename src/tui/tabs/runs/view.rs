//! Draws the Runs tab's queue (when runs wait), its list, and below them the selected run's
//! details (a GRPO run's with how one prompt's completions and rewards changed) or the
//! overlay chart.

use super::RunsTab;
use crate::queue::Overview;
use crate::runs::details::CompletionHistory;
use crate::runs::RunSummary;
use crate::tui::context::Ctx;
use crate::tui::run_view::{mean, Standing};
use crate::tui::text::{one_line, truncate};
use crate::tui::theme::Theme;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

fn fmt(l: Option<f64>) -> String {
    l.map_or("-".into(), |l| format!("{l:.4}"))
}

/// At most six of `n` indices, spread from the first to the last.
fn spread(n: usize) -> Vec<usize> {
    if n <= 6 {
        (0..n).collect()
    } else {
        (0..6).map(|i| i * (n - 1) / 5).collect()
    }
}

/// How a GRPO run's most sampled prompt fared: six of its steps, each with its logged
/// completions' mean reward and the completions, best first, coloured against that mean,
/// as many as fit in `width`.
fn completion_lines(h: &CompletionHistory, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut l = vec![Line::styled(
        format!(
            "prompt  {} · sampled at {} step{}",
            truncate(&one_line(&h.prompt), 60),
            h.steps.len(),
            if h.steps.len() == 1 { "" } else { "s" }
        ),
        theme.user,
    )];
    for i in spread(h.steps.len()) {
        let (step, cs) = &h.steps[i];
        let m = mean(cs.iter().map(|c| c.reward));
        let head = format!("  step {step:>6}  mean {} │", reward(m));
        let mut room = width.saturating_sub(head.chars().count());
        let mut spans = vec![Span::raw(head)];
        let mut best: Vec<_> = cs.iter().collect();
        best.sort_by(|a, b| b.reward.total_cmp(&a.reward));
        for (k, c) in best.iter().enumerate() {
            let sep = if k == 0 { " " } else { " · " };
            let text = format!(
                "{sep}{} ({})",
                truncate(&one_line(&c.reply), 24),
                reward(c.reward)
            );
            let n = text.chars().count();
            if n > room {
                spans.push(Span::styled(format!(" +{}", best.len() - k), theme.muted));
                break;
            }
            room -= n;
            let (style, _) = Standing::of(c.reward, c.advantage, m).style(theme);
            spans.push(Span::styled(text, style));
        }
        l.push(Line::from(spans));
    }
    l
}

/// A reward with two decimals, `-` when there is none.
fn reward(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "-".into()
    }
}

/// The list's frame: its count on top, and an export in progress along the bottom
/// (`writing model-q8_0.gguf 120/272 tensors`), whichever run is selected.
fn list_block<'a>(t: &'a RunsTab, count: usize, theme: &Theme) -> Block<'a> {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" runs ({count}) "))
        .border_style(theme.border_focused);
    match &t.exporting {
        Some(line) => block.title_bottom(Line::styled(format!(" {} ", one_line(line)), theme.info)),
        None => block,
    }
}

/// The queue: running runs, then the waiting ones in order with what each waits for; the
/// selected run's line highlighted (K and J move it, x takes it off).
fn draw_queue(
    f: &mut Frame,
    area: Rect,
    queue: &Overview,
    selected: Option<&RunSummary>,
    theme: &Theme,
) {
    let waiting = queue.waiting().count();
    let scheduler = match queue.scheduler {
        Some(pid) => format!("scheduler pid {pid}"),
        None => "no scheduler: tunelab queue start".into(),
    };
    let title = format!(" queue · {waiting} waiting · {scheduler} · K/J reorder · x removes ");
    let id_width = usize::from(area.width.saturating_sub(2 + 5 + 10 + 10 + 2)).clamp(12, 60);
    let lines: Vec<Line> = queue
        .rows
        .iter()
        .map(|r| {
            let pos = r.position.map_or("▶".to_string(), |p| format!("#{p}"));
            let what = match r.pid {
                Some(pid) => format!("running · pid {pid}"),
                None => r.waits.clone().unwrap_or_default(),
            };
            let text = format!(
                "{pos:>4} {:<id_width$} {:<9} {}",
                crate::tui::text::middle(&r.id, id_width),
                r.device,
                one_line(&what)
            );
            let chosen = selected.is_some_and(|s| s.id == r.id);
            match (chosen, r.pid) {
                (true, _) => Line::styled(text, theme.selection),
                (false, Some(_)) => Line::styled(text, theme.info),
                (false, None) => Line::from(text),
            }
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .border_style(theme.border),
        ),
        area,
    );
}

pub fn draw(f: &mut Frame, area: Rect, t: &RunsTab, ctx: &Ctx) {
    let (runs, theme) = (ctx.runs, ctx.theme);
    let area = if ctx.queue.is_empty() {
        area
    } else {
        let rows = (ctx.queue.rows.len() as u16 + 2)
            .min(area.height / 4)
            .max(3);
        let [queue, rest] =
            Layout::vertical([Constraint::Length(rows), Constraint::Min(6)]).areas(area);
        draw_queue(f, queue, ctx.queue, runs.get(t.selected), theme);
        rest
    };
    let [list, detail] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Min(6)]).areas(area);
    // Run ids share their name and differ in the time at the end: cut them in the middle.
    let id_width = usize::from(list.width.saturating_sub(2 + 8 + 11 + 8 + 9 + 7 + 5 + 2)).max(12);
    let rows: Vec<Row> = runs
        .iter()
        .map(|r| {
            let mark = if t.marked.contains(&r.dir) {
                "●"
            } else {
                " "
            };
            let state_style = match r.state_label().as_str() {
                "done" => theme.success,
                "failed" | "dead" => theme.error,
                "running" => theme.info,
                _ => theme.warning,
            };
            Row::new(vec![
                Cell::from(format!(
                    "{mark} {}",
                    crate::tui::text::middle(&r.id, id_width)
                )),
                Cell::from(r.state_label()).style(state_style),
                Cell::from(format!("{}/{}", r.step, r.total_steps)),
                Cell::from(fmt(r.last_loss)),
                Cell::from(fmt(r.best_eval_loss)),
                Cell::from(format!("{:.0}s", r.duration_s)),
            ])
        })
        .collect();
    let mut state = TableState::default().with_selected(if runs.is_empty() {
        None
    } else {
        Some(t.selected)
    });
    f.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Min(24),
                Constraint::Length(8),
                Constraint::Length(11),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(7),
            ],
        )
        .header(
            Row::new(vec!["run", "state", "step", "loss", "best eval", "time"]).style(theme.title),
        )
        .row_highlight_style(theme.selection)
        .block(list_block(t, runs.len(), theme)),
        list,
        &mut state,
    );
    if let Some(o) = &t.overlay {
        super::overlay_view::draw(f, detail, o, theme);
        return;
    }
    let clean = one_line;
    let lines: Vec<Line> = match runs.get(t.selected) {
        None => vec![Line::from("No runs yet. Start one from the Adapter or Train tab (r), or `tunelab train tiny-demo`.")],
        Some(r) => {
            let details = t.details.as_ref().filter(|(d, _)| *d == r.dir).map(|(_, d)| d);
            let mut l = vec![Line::from(format!("folder  {}", clean(&r.dir.display().to_string())))];
            if let Some(c) = details.and_then(|d| d.config.as_ref()) {
                l.push(Line::from(format!("model   {}", clean(&c.model.path))));
                l.push(Line::from(format!("data    {}", clean(&c.data.train))));
                l.push(Line::from(format!("lora    r{} α{} {}", c.lora.r, c.lora.alpha, c.lora.target_modules.join(","))));
                l.push(Line::from(format!("train   lr {} {:?} bs {}×{} {} {}", c.train.lr, c.train.scheduler, c.train.batch_size, c.train.grad_accum, c.train.dtype, c.train.device).to_lowercase()));
                if c.train.engine.is_external() {
                    let t = &c.train;
                    l.push(Line::from(format!(
                        "engine  {} · {} GPU(s){} · {} · {}",
                        t.engine,
                        t.gpus,
                        if t.nodes > 1 { format!(" × {} nodes", t.nodes) } else { String::new() },
                        t.sharding,
                        t.launcher
                    )));
                }
            }
            let ckpts: Vec<String> = details.map(|d| d.checkpoints.iter().map(|s| format!("step-{s}")).collect()).unwrap_or_default();
            l.push(Line::from(format!("ckpts   {}", if ckpts.is_empty() { "-".into() } else { ckpts.join(" ") })));
            if let Some((prompt, replies)) = details.and_then(|d| d.samples.as_ref()) {
                l.push(Line::styled(format!("sample  {}", truncate(&clean(prompt), 70)), theme.user));
                // Six evaluations spread from the first to the last: how the answer changed.
                for (step, reply) in spread(replies.len()).into_iter().map(|i| &replies[i]) {
                    l.push(Line::from(format!("  step {step:>6} → {}", truncate(&clean(reply), 90))));
                }
            }
            if let Some(h) = details.and_then(|d| d.completions.as_ref()) {
                l.extend(completion_lines(h, usize::from(detail.width.saturating_sub(2)), theme));
            }
            if details.is_some_and(|d| d.adapter) {
                l.push(Line::styled("adapter ready · o opens it in Chat · v evaluates it", theme.success));
            }
            if let Some(e) = &r.error {
                l.push(Line::styled(clean(e), theme.error));
            }
            l
        }
    };
    // The selected run's full folder in the title; long errors wrap.
    let title = runs.get(t.selected).map_or(" details ".to_string(), |r| {
        let room = usize::from(detail.width.saturating_sub(14));
        format!(
            " details · {} ",
            crate::tui::text::middle(&r.dir.display().to_string(), room.max(10))
        )
    });
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        detail,
    );
}
