//! Draws the Adapter tab: the form, and beside it what the model and the method make of
//! it, the memory estimate against the budget, and the selected field's help with the
//! module picker, the reward kind picker and the form's issues.

use super::rewards::Template;
use super::state::{AdapterTab, DataKind, EditOf, FormRow};
use crate::config::{FieldKind, FieldSpec, RunConfig, PRESETS};
use crate::lora::LoraConfig;
use crate::tui::text;
use crate::tui::theme::Theme;
use crate::tui::widgets::gauge;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use std::path::Path;

/// What `data.train` holds, as detected.
fn data_line(t: &AdapterTab) -> String {
    match t
        .data_kind
        .as_ref()
        .filter(|k| k.path == t.config.data.train)
    {
        Some(DataKind {
            found: Ok((format, kind)),
            ..
        }) => format!("data       {format} · {kind}"),
        Some(DataKind { found: Err(_), .. }) => "data       unreadable (see data.train)".into(),
        None => "data       …".into(),
    }
}

/// How many held-out examples each evaluation scores (`data.eval_split` of the records,
/// capped by `data.eval_max`) and, once a run of this model has evaluated, how long that
/// takes: the cost of `train.eval_every` seen before the run.
fn eval_line(t: &AdapterTab) -> String {
    let d = &t.config.data;
    // From the training records, split as the trainer splits them; unknown for an eval file.
    let held = match &d.eval {
        Some(_) => None,
        None => t
            .data_kind
            .as_ref()
            .filter(|k| k.path == d.train)
            .and_then(|k| k.records)
            .map(|n| {
                let n = crate::batch::held_out_count(n, d.eval_split);
                if d.eval_max > 0 {
                    n.min(d.eval_max)
                } else {
                    n
                }
            }),
    };
    let count = match (held, &d.eval, d.eval_max) {
        (Some(0), ..) => return "eval       none (data.eval_split 0)".into(),
        (Some(n), ..) => crate::units::count(n as u64),
        (None, Some(_), 0) => "the eval file's".into(),
        (None, Some(_), m) => format!("≤{} (eval file)", crate::units::count(m as u64)),
        (None, None, _) => "…".into(),
    };
    let pace = t
        .model_info
        .as_ref()
        .filter(|i| i.spec == t.config.model.path)
        .and_then(|i| i.eval_pace.as_ref());
    match (held, pace) {
        (Some(n), Some(p)) => format!(
            "eval       {count} ex · ≈{} each",
            crate::units::duration(n as f64 * p.secs_per_example)
        ),
        _ => format!("eval       {count} examples each"),
    }
}

/// What the run optimises: SFT, or the preference loss with its β and starting point.
fn method_line(c: &RunConfig) -> String {
    let from = || {
        c.init_adapter().map_or("fresh adapter".into(), |a| {
            // A run's adapter folder is named after the run.
            let p = Path::new(a.trim_end_matches('/'));
            let p = if p.ends_with("adapter") {
                p.parent().unwrap_or(p)
            } else {
                p
            };
            let name = p
                .file_name()
                .map_or(a.to_string(), |n| n.to_string_lossy().into_owned());
            format!("from {}", text::middle(&name, 16))
        })
    };
    match c.train.method.init_adapter_field() {
        Some(_) => format!("method     {} · {}", c.method_settings(), from()),
        None => format!("method     {}", c.method_settings()),
    }
}

fn gib(b: u64) -> String {
    format!("{} GiB", crate::units::gib(b, 2))
}

/// The whole tab: the form on the left, beside it the adapter, the memory estimate and the
/// selected field's help.
pub fn draw(f: &mut Frame, area: Rect, t: &AdapterTab, theme: &Theme) {
    let [form, side] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(44)]).areas(area);
    draw_form(f, form, t, theme);
    let [info, mem, help] = Layout::vertical([
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Min(4),
    ])
    .areas(side);
    draw_adapter(f, info, t, theme);
    draw_memory(f, mem, t, theme);
    draw_field(f, help, t, theme);
}

/// The visible rows and their values (the edit buffer in the selected one's place).
fn draw_form(f: &mut Frame, area: Rect, t: &AdapterTab, theme: &Theme) {
    let buffer = t.editing.as_ref().map(|b| b.display());
    let rows: Vec<Row> = t
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let editing = buffer.as_deref().filter(|_| i == t.selected);
            let (name, value) = form_row(t, row, editing);
            let style = if i == t.selected {
                theme.selection
            } else if row == FormRow::AddReward {
                theme.muted
            } else {
                theme.foreground
            };
            Row::new(vec![name, value]).style(style)
        })
        .collect();
    let mut state = TableState::default().with_selected(Some(t.selected));
    let title = format!(" run configuration · preset {} ", PRESETS[t.preset].0);
    f.render_stateful_widget(
        Table::new(rows, [Constraint::Length(30), Constraint::Min(10)]).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .border_style(theme.border_focused),
        ),
        area,
        &mut state,
    );
}

/// A row's name and value; `editing` is the edit buffer when the row is being edited.
fn form_row(t: &AdapterTab, row: FormRow, editing: Option<&str>) -> (String, String) {
    match row {
        FormRow::Field(fs) => (
            fs.path.to_string(),
            editing.map_or_else(|| t.config.get_field(fs.path), str::to_string),
        ),
        FormRow::Reward(i) => {
            let r = &t.config.grpo.rewards[i];
            let value = match editing {
                Some(buf) => format!("weight {buf}"),
                None => text::one_line(&r.summary()),
            };
            (format!("grpo.rewards[{i}]"), value)
        }
        FormRow::AddReward => {
            let value = match (editing, t.edit_of) {
                (Some(buf), EditOf::NewReward(k)) => format!("{} {buf}", k.name()),
                _ => "+ add a reward".into(),
            };
            ("grpo.rewards".into(), value)
        }
    }
}

/// What the form trains: the model, the trainable parameters, LoRA, the data and method.
fn draw_adapter(f: &mut Frame, area: Rect, t: &AdapterTab, theme: &Theme) {
    let trainable = t.trainable();
    let total = t.model_config().map(|c| c.parameter_count());
    let info_lines = vec![
        Line::from(vec![
            Span::raw("model      "),
            Span::styled(text::middle(&t.config.model.path, 30), theme.accent),
        ]),
        Line::from(format!(
            "trainable  {}",
            trainable.map_or("? (no config.json)".into(), |n| format!(
                "{n} ({:.3}% of {})",
                100.0 * n as f64 / total.unwrap_or(1).max(1) as f64,
                total.unwrap_or(0)
            ))
        )),
        Line::from(format!(
            "LoRA       r{} α{} · scale {:.3}",
            t.config.lora.r,
            t.config.lora.alpha,
            LoraConfig::from(&t.config.lora).scale()
        )),
        Line::from(format!(
            "modules    {}",
            t.config.lora.target_modules.join(",")
        )),
        Line::from(data_line(t)),
        Line::from(eval_line(t)),
        Line::from(method_line(&t.config)),
        Line::from(format!(
            "train      {} · lr {} · bs {}×{}",
            t.config.train.dtype,
            t.config.train.lr,
            t.config.train.batch_size,
            t.config.train.grad_accum
        )),
    ];
    f.render_widget(
        Paragraph::new(info_lines).block(Block::default().borders(Borders::ALL).title(" adapter ")),
        area,
    );
}

/// The memory estimate, each part and the whole against the budget, with the gauge.
fn draw_memory(f: &mut Frame, mem: Rect, t: &AdapterTab, theme: &Theme) {
    let mem_block = Block::default()
        .borders(Borders::ALL)
        .title(" memory estimate ");
    match (t.memory(), &t.budget) {
        (Some(m), Some((total, free, name))) => {
            let inner = mem_block.inner(mem);
            f.render_widget(mem_block, mem);
            let [lines_area, gauge_area] =
                Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
            let fits = m.total <= *free;
            let verdict = if fits {
                Span::styled(
                    format!("fits: {} of {} free", gib(m.total), gib(*free)),
                    theme.success,
                )
            } else {
                Span::styled(
                    format!("does not fit: {} > {} free", gib(m.total), gib(*free)),
                    theme.error,
                )
            };
            let mut lines = vec![
                Line::from(format!("weights    {}", gib(m.weights))),
                Line::from(format!("LoRA state {}", gib(m.lora_state))),
                Line::from(format!("activ.     {}", gib(m.activations))),
                // On the host, the process's own runtime shares the line (the panel is short).
                Line::from(if m.runtime > 0 {
                    format!("logits     {} · runtime {}", gib(m.logits), gib(m.runtime))
                } else {
                    format!("logits     {}", gib(m.logits))
                }),
                Line::from(verdict),
            ];
            if let Some(s) = t.sharing() {
                lines.push(Line::styled(s, theme.muted));
            }
            lines.push(Line::styled(name.clone(), theme.muted));
            f.render_widget(Paragraph::new(lines), lines_area);
            let ratio = gauge::usage(m.total, *total);
            f.render_widget(
                gauge::memory_gauge(m.total, *total, theme)
                    .label(format!("{:.0}% of {}", ratio * 100.0, gib(*total))),
                gauge_area,
            );
        }
        _ => f.render_widget(
            Paragraph::new(
                "no estimate yet: the model has no readable config.json. Enter on model.path finds one.",
            )
            .wrap(Wrap { trim: true })
            .block(mem_block),
            mem,
        ),
    }
}

/// The selected row's help (a field's kind, a reward, the kind picker), the module picker
/// when it is open, the edit's verdict and the form's first issues.
fn draw_field(f: &mut Frame, area: Rect, t: &AdapterTab, theme: &Theme) {
    let mut help_lines = match t.row() {
        FormRow::Field(fs) => field_help(fs, theme),
        FormRow::Reward(i) => reward_help(t, i, theme),
        FormRow::AddReward => add_reward_help(t, theme),
    };
    if let Some(p) = t.modules {
        let mods = &t.config.lora.target_modules;
        let all = mods.iter().any(|m| m == "all-linear");
        for (i, m) in t
            .module_names()
            .iter()
            .chain(["all-linear"].iter())
            .enumerate()
        {
            let on = all || mods.iter().any(|x| x == m);
            let line = format!(
                "{} [{}] {m}",
                if i == p { "▸" } else { " " },
                if on { "x" } else { " " }
            );
            help_lines.push(Line::styled(
                line,
                if i == p {
                    theme.selection
                } else {
                    theme.foreground
                },
            ));
        }
        help_lines.push(Line::styled("space toggles · Esc closes", theme.muted));
    }
    if let Some(e) = &t.edit_error {
        help_lines.push(Line::styled(format!("✗ {e}"), theme.error));
    } else if t.editing.is_some() {
        help_lines.push(Line::styled(
            "✓ valid · Enter applies · Esc cancels",
            theme.success,
        ));
    }
    let issues = t.config.validate();
    for i in issues.iter().take(3) {
        help_lines.push(Line::styled(format!("! {i}"), theme.warning));
    }
    f.render_widget(
        Paragraph::new(help_lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" field ")),
        area,
    );
}

/// A field's path, help and kind.
fn field_help(fs: &FieldSpec, theme: &Theme) -> Vec<Line<'static>> {
    let mut help_lines = vec![
        Line::styled(fs.path, theme.title.add_modifier(Modifier::BOLD)),
        Line::from(fs.help),
    ];
    match fs.kind {
        FieldKind::Int { min, max } => help_lines.push(Line::styled(
            format!("whole number {min}…{max}"),
            theme.muted,
        )),
        FieldKind::Float { min, max } => {
            help_lines.push(Line::styled(format!("number {min}…{max}"), theme.muted))
        }
        FieldKind::OptFloat { min, max } => help_lines.push(Line::styled(
            format!("number {min}…{max}, or empty for none"),
            theme.muted,
        )),
        FieldKind::Adapter => help_lines.push(Line::styled(
            "Enter picks a run with an adapter (or types a PEFT folder)",
            theme.muted,
        )),
        FieldKind::Choice(o) => help_lines.push(Line::styled(
            format!("Enter cycles: {}", o.join(" · ")),
            theme.muted,
        )),
        FieldKind::Set(o) => help_lines.push(Line::styled(
            format!("Enter cycles through none, {}", o.join(" · ")),
            theme.muted,
        )),
        FieldKind::Bool => help_lines.push(Line::styled("Enter toggles", theme.muted)),
        FieldKind::Modules => {
            help_lines.push(Line::styled("Enter opens the module picker", theme.muted))
        }
        _ => {}
    }
    help_lines
}

/// One reward: what it scores in full, the metric it logs, and the keys.
fn reward_help(t: &AdapterTab, i: usize, theme: &Theme) -> Vec<Line<'static>> {
    let g = &t.config.grpo;
    let name = g.reward_names().get(i).cloned().unwrap_or_default();
    vec![
        Line::styled(
            format!("grpo.rewards[{i}]"),
            theme.title.add_modifier(Modifier::BOLD),
        ),
        Line::from(text::one_line(&g.rewards[i].summary())),
        Line::styled(
            format!("logged as rewards/{}/mean", text::one_line(&name)),
            theme.muted,
        ),
        Line::styled(
            "Enter edits the weight (any number; negative: a penalty) · - removes · + adds",
            theme.muted,
        ),
    ]
}

/// The reward list's row: what a reward is, the kind picker when open, or what the typed
/// text of a new reward means.
fn add_reward_help(t: &AdapterTab, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = vec![
        Line::styled("grpo.rewards", theme.title.add_modifier(Modifier::BOLD)),
        Line::from("what scores each completion; the reward is the weighted sum"),
    ];
    if let (Some(_), EditOf::NewReward(k)) = (&t.editing, t.edit_of) {
        let what = k.text().map_or("", |(what, _)| what);
        lines.push(Line::styled(format!("{}: {what}", k.name()), theme.muted));
        return lines;
    }
    let Some(p) = t.reward_kinds else {
        lines.push(Line::styled("Enter (or +) picks a kind", theme.muted));
        return lines;
    };
    for (i, k) in Template::ALL.iter().enumerate() {
        let style = if i == p {
            theme.selection
        } else {
            theme.foreground
        };
        let mark = if i == p { "▸" } else { " " };
        lines.push(Line::styled(
            format!("{mark} {:<8}{}", k.name(), k.help()),
            style,
        ));
    }
    lines.push(Line::styled(
        "j/k moves · Enter adds · Esc closes",
        theme.muted,
    ));
    lines
}
