//! Train tab: the attached run's loss chart (train, EMA-smoothed, eval), learning rate,
//! grad norm, tokens/s, ETA, a memory gauge with history (GPU through NVML, else RAM and the
//! trainer's RSS), reward metrics when the objective reports them (a GRPO run's mean
//! rewards and completion lengths charted under the loss), sample replies or GRPO's latest
//! sampled completions coloured by how they stand in their group, and the event log. Everything comes from the background watcher, so closing the TUI never
//! touches the run and drawing never reads a file.

use super::{Component, Ctx};
use crate::runs::{RunDir, RunState};
use crate::telemetry::MemorySample;
use crate::tui::action::Action;
use crate::tui::effect::Effect;
use crate::tui::run_view::{group_mean, RunView, SecondMetric};
use crate::tui::theme::Theme;
use crate::tui::widgets::{line_chart, loss_chart, memory_gauge, YRange};
use crate::units::clock;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Sparkline};
use ratatui::Frame;
use std::collections::VecDeque;

/// Memory readings for the gauge: GPU (NVML) or system RAM, plus the trainer's RSS.
#[derive(Debug, Clone, Default)]
pub struct MemoryMonitor {
    pub label: String,
    pub used: u64,
    pub total: u64,
    pub history: VecDeque<u64>,
    pub trainer_rss: Option<u64>,
}

impl MemoryMonitor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, m: &MemorySample) {
        self.label = m.label.clone();
        self.used = m.used;
        self.total = m.total;
        self.trainer_rss = m.trainer_rss;
        self.history.push_back(m.used);
        while self.history.len() > 120 {
            self.history.pop_front();
        }
    }
}

pub struct TrainTab {
    pub view: Option<RunView>,
    pub memory: MemoryMonitor,
}

impl TrainTab {
    /// Watches `run` (the watcher is told by the app).
    pub fn attach(&mut self, run: RunDir) {
        self.view = Some(RunView::new(run));
    }

    /// The attached run is still going.
    pub fn training(&self) -> bool {
        self.view
            .as_ref()
            .and_then(|v| v.status.as_ref())
            .is_some_and(|s| !s.state.is_final())
    }
}

impl Component for TrainTab {
    type Msg = ();

    fn hints(&self) -> &'static [(Action, &'static str)] {
        &[
            (Action::StartRun, "start run"),
            (Action::StopRun, "stop"),
            (Action::AttachNext, "attach"),
        ]
    }

    fn handle(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<()>> {
        if a != Action::AttachNext {
            return None;
        }
        let runs = ctx.runs;
        if runs.is_empty() {
            return Some(Effect::warn("no runs to attach to"));
        }
        let cur = self.view.as_ref().map(|v| v.run.root.clone());
        let i = cur
            .and_then(|c| runs.iter().position(|r| r.dir == c))
            .map_or(0, |i| (i + 1) % runs.len());
        self.attach(RunDir::new(&runs[i].dir));
        Some(Effect::info(format!("attached to {}", runs[i].id)))
    }

    fn update(&mut self, _msg: (), _ctx: &Ctx) -> Option<Effect<()>> {
        None
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let hint = ctx
            .keymap
            .keys_for(super::Tab::Train, Action::StartRun)
            .unwrap_or_else(|| "r".into());
        draw(f, area, self, ctx.theme, &hint)
    }
}

/// Rows of the progress box: two more for a GRPO run's reward and length lines.
fn progress_height(v: &RunView) -> u16 {
    if v.is_grpo() {
        12
    } else {
        10
    }
}

/// A GRPO step in two lines: the mean reward, its spread and the groups that taught nothing
/// (every completion scored alike); the completions' lengths and the share cut off.
fn grpo_lines(last: Option<&crate::runs::event::Train>) -> Vec<Line<'static>> {
    let Some(t) = last else {
        return vec![Line::from("reward -")];
    };
    let m = |k: &str| t.metrics.get(k).copied().unwrap_or(f64::NAN);
    vec![
        Line::from(format!(
            "reward {:.3} ±{:.3} · {:.0}% flat groups",
            m("reward"),
            m("reward_std"),
            100.0 * m("frac_reward_zero_std")
        )),
        Line::from(format!(
            "length {:.1} ({:.0}–{:.0}) · {:.0}% cut off",
            m("completions/mean_length"),
            m("completions/min_length"),
            m("completions/max_length"),
            100.0 * m("completions/clipped_ratio")
        )),
    ]
}

/// A phase as a gauge: `eval 40/150 examples · 3.2 s · ETA 9s` (a full bar without a total:
/// the work has no count, only its time).
fn phase_gauge(p: &crate::runs::event::Phase, theme: &Theme) -> Gauge<'static> {
    let ratio = if p.total > 0 {
        p.done as f64 / p.total as f64
    } else {
        0.0
    };
    let label = match p.eta() {
        Some(eta) => format!("{} · ETA {}", p.line(), crate::units::duration(eta)),
        None => p.line(),
    };
    Gauge::default()
        .ratio(ratio.clamp(0.0, 1.0))
        .label(crate::tui::text::one_line(&label))
        .gauge_style(theme.muted)
}

/// The machine's memory (the GPU through NVML, else RAM) with the trainer's RSS and a
/// history sparkline.
fn draw_machine_memory(f: &mut Frame, mem: Rect, m: &MemoryMonitor, theme: &Theme) {
    let mblock = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} ", m.label));
    let inner = mblock.inner(mem);
    f.render_widget(mblock, mem);
    let [g, txt, spark] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inner);
    f.render_widget(
        memory_gauge(m.used, m.total, theme).label(format!("{}/{} GiB", gib(m.used), gib(m.total))),
        g,
    );
    f.render_widget(
        Paragraph::new(format!(
            "trainer RSS {}",
            m.trainer_rss
                .map_or("-".into(), |r| format!("{} GiB", gib(r)))
        ))
        .style(theme.muted),
        txt,
    );
    let hist: Vec<u64> = m.history.iter().map(|u| u / (1 << 20)).collect();
    f.render_widget(
        Sparkline::default()
            .data(&hist)
            .max(m.total / (1 << 20))
            .style(theme.accent),
        spark,
    );
}

/// One gauge per GPU of an engine run, from its latest train event (NVML on this machine).
fn draw_gpu_gauges(f: &mut Frame, mem: Rect, gpus: &[crate::telemetry::GpuMemory], theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} GPUs ", gpus.len()));
    let inner = block.inner(mem);
    f.render_widget(block, mem);
    let rows = inner.height as usize;
    let shown = if gpus.len() > rows {
        rows.saturating_sub(1)
    } else {
        gpus.len()
    };
    for (i, g) in gpus.iter().take(shown).enumerate() {
        let area = Rect {
            y: inner.y + i as u16,
            height: 1,
            ..inner
        };
        let util = g
            .utilization
            .map(|u| format!(" · {u}%"))
            .unwrap_or_default();
        f.render_widget(
            memory_gauge(g.used, g.total, theme).label(format!(
                "GPU {} {}/{} GiB{util}",
                g.index,
                gib(g.used),
                gib(g.total)
            )),
            area,
        );
    }
    if shown < gpus.len() {
        let area = Rect {
            y: inner.y + shown as u16,
            height: 1,
            ..inner
        };
        f.render_widget(
            Paragraph::new(format!("+{} more", gpus.len() - shown)).style(theme.muted),
            area,
        );
    }
}

fn gib(b: u64) -> String {
    crate::units::gib(b, 1)
}

fn draw(f: &mut Frame, area: Rect, t: &TrainTab, theme: &Theme, hint: &str) {
    let Some(v) = &t.view else {
        f.render_widget(
            Paragraph::new(vec![
                Line::from("No run attached."),
                Line::from(""),
                Line::from(format!("Press {hint} to start a run from the Adapter form (it runs detached: quitting never stops it),")),
                Line::from("or `a` to attach to an existing run."),
            ])
            .block(Block::default().borders(Borders::ALL).title(" train ")),
            area,
        );
        return;
    };
    let [top, bottom] = Layout::vertical([Constraint::Min(8), Constraint::Length(8)]).areas(area);
    let side_w = (top.width / 2).min(44);
    let [chart_area, side] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(side_w)]).areas(top);
    let state = v.status.as_ref().map_or("starting".to_string(), |s| {
        format!("{:?}", s.state).to_lowercase()
    });
    // An engine run names its engine and GPUs (`TRL 1.16.0 · 8 GPUs · ZeRO-3`).
    let title = match v.start.as_ref().and_then(|s| s.engine.as_deref()) {
        // The run's id is in the header line already.
        Some(e) => format!(" loss · {} · {state} ", crate::tui::text::one_line(e)),
        None => format!(" loss · {} · {state} ", v.id()),
    };
    if v.is_grpo() {
        draw_grpo_charts(f, chart_area, v, title, theme);
    } else {
        draw_charts(f, chart_area, v, title, theme);
    }
    let [prog, mem] =
        Layout::vertical([Constraint::Length(progress_height(v)), Constraint::Min(5)]).areas(side);
    let last = v.last.clone().unwrap_or_default();
    // Before the first step the start event already knows the total: never `0/0`.
    let (step, total) = v
        .status
        .as_ref()
        .map_or((0, 0), |s| (s.step, s.total_steps));
    let total = if total > 0 {
        total
    } else {
        v.start.as_ref().map_or(0, |s| s.total_steps)
    };
    let ratio = if total > 0 {
        step as f64 / total as f64
    } else {
        0.0
    };
    let mut lines = vec![
        Line::from(format!("step {step}/{total}  epoch {:.2}", last.epoch)),
        Line::from(format!(
            "{:.0} tok/s  ETA {}",
            last.tokens_per_s,
            clock(last.eta)
        )),
        Line::from(format!("elapsed {}", clock(last.elapsed))),
        Line::from(format!("lr {:.2e}  grad‖ {:.3}", last.lr, last.grad_norm)),
        Line::from(format!(
            "loss {}  eval {}",
            // `-` until the first step has a loss, not `NaN`.
            v.last
                .as_ref()
                .map_or("-".into(), |t| format!("{:.4}", t.loss)),
            v.eval.last().map_or("-".into(), |(_, l)| format!("{l:.4}"))
        )),
    ];
    if let Some(c) = v.start.as_ref().and_then(|s| s.compute.as_deref()) {
        lines.push(Line::styled(crate::tui::text::one_line(c), theme.muted));
    }
    if let Some(r) = &v.rewards {
        let m = |k: &str| r.metrics.get(k).copied().unwrap_or(0.0);
        lines.push(Line::from(format!(
            "rewards chosen {:.3} rejected {:.3} acc {:.2}",
            m("rewards/chosen"),
            m("rewards/rejected"),
            m("rewards/accuracies")
        )));
    }
    if v.is_grpo() {
        lines.extend(grpo_lines(v.last.as_ref()));
    }
    if let Some(err) = v.status.as_ref().and_then(|s| s.error.as_deref()) {
        lines.push(Line::styled(crate::tui::text::one_line(err), theme.error));
    }
    let pblock = Block::default().borders(Borders::ALL).title(" progress ");
    let inner = pblock.inner(prog);
    f.render_widget(pblock, prog);
    // Between steps (an evaluation, the samples, a checkpoint) a second gauge says what the
    // trainer is doing, with its progress and ETA: a busy run never looks frozen.
    let live = !matches!(
        v.status.as_ref().map(|s| s.state),
        Some(RunState::Done | RunState::Failed | RunState::Stopped)
    );
    let phase = v
        .phase
        .as_ref()
        .or(v.status.as_ref().and_then(|s| s.phase.as_ref()))
        .filter(|_| live);
    let [g, pg, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(phase.is_some())),
        Constraint::Min(1),
    ])
    .areas(inner);
    if let Some(p) = phase {
        f.render_widget(phase_gauge(p, theme), pg);
    }
    let gs = match v.status.as_ref().map(|s| s.state) {
        Some(RunState::Failed) => theme.gauge_high,
        Some(RunState::Done) => theme.success,
        _ => theme.accent,
    };
    f.render_widget(
        Gauge::default()
            .ratio(ratio.clamp(0.0, 1.0))
            .gauge_style(gs),
        g,
    );
    f.render_widget(
        Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }),
        rest,
    );
    // An engine run's events carry every local GPU: one gauge each.
    if let Some(gpus) = v.last.as_ref().map(|l| &l.gpus).filter(|g| !g.is_empty()) {
        draw_gpu_gauges(f, mem, gpus, theme);
    } else {
        draw_machine_memory(f, mem, &t.memory, theme);
    }
    let (log_area, samples_area) = if v.samples.is_empty() && v.completions.1.is_empty() {
        (bottom, None)
    } else {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(bottom);
        (l, Some(r))
    };
    if let Some(area) = samples_area {
        if v.completions.1.is_empty() {
            draw_samples(f, area, v, theme);
        } else {
            draw_completions(f, area, v, theme);
        }
    }
    let log: Vec<Line> = v
        .log
        .iter()
        .rev()
        .take(log_area.height.saturating_sub(2) as usize)
        .rev()
        .map(|l| {
            Line::styled(
                crate::tui::text::clean(l).into_owned(),
                if l.contains("failed") {
                    theme.error
                } else {
                    theme.foreground
                },
            )
        })
        .collect();
    f.render_widget(
        Paragraph::new(log).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" events ")
                .title_style(theme.title.add_modifier(Modifier::BOLD)),
        ),
        log_area,
    );
}

/// The loss, and under it a preference run's reward margins and accuracy (DPO) or KL
/// (KTO).
fn draw_charts(f: &mut Frame, chart_area: Rect, v: &RunView, title: String, theme: &Theme) {
    let chart = loss_chart(
        vec![
            ("train".into(), &v.train.points, theme.loss_train),
            ("ema".into(), &v.ema.points, theme.loss_smoothed),
            ("eval".into(), &v.eval.points, theme.loss_eval),
        ],
        title,
        theme,
    );
    let r = &v.reward_series;
    if r.is_empty() {
        f.render_widget(chart, chart_area);
    } else {
        // A preference run: reward margins and accuracy (DPO) or KL (KTO) under the loss.
        let [loss_area, rewards_area] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(chart_area);
        f.render_widget(chart, loss_area);
        let [margins_area, acc_area] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(rewards_area);
        let margins = line_chart(
            vec![
                ("train".into(), &r.margins.points, theme.loss_train),
                ("eval".into(), &r.eval_margins.points, theme.loss_eval),
            ],
            " reward margins ".into(),
            YRange::WithZero,
            theme,
        );
        f.render_widget(margins, margins_area);
        let range = match r.second_metric {
            SecondMetric::Accuracy => YRange::Fixed(0.0, 1.0),
            SecondMetric::Kl => YRange::WithZero,
        };
        let accuracy = line_chart(
            vec![
                ("train".into(), &r.second.points, theme.loss_train),
                ("eval".into(), &r.eval_second.points, theme.loss_eval),
            ],
            r.second_metric.title().into(),
            range,
            theme,
        );
        f.render_widget(accuracy, acc_area);
    }
}

/// A GRPO run's loss (it may go below 0, and there is no eval loss), and under it the mean
/// reward with each reward function's mean, the mean completion length, and the KL to the
/// reference when β > 0.
fn draw_grpo_charts(f: &mut Frame, area: Rect, v: &RunView, title: String, theme: &Theme) {
    let [loss_area, under] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let loss = line_chart(
        vec![
            ("train".into(), &v.train.points, theme.loss_train),
            ("ema".into(), &v.ema.points, theme.loss_smoothed),
        ],
        title,
        YRange::WithZero,
        theme,
    );
    f.render_widget(loss, loss_area);
    let g = &v.grpo;
    let palette = [
        theme.loss_train,
        theme.loss_eval,
        theme.accent,
        theme.tool,
        theme.system,
        theme.info,
    ];
    let mut rewards = vec![(
        "mean".to_string(),
        &g.reward.points[..],
        theme.loss_smoothed,
    )];
    for (i, (name, p)) in g.functions.iter().enumerate() {
        let name = crate::tui::text::truncate(&crate::tui::text::one_line(name), 12);
        rewards.push((name, &p.points[..], palette[i % palette.len()]));
    }
    // A small chart hides its legend: the title names each line in its colour instead.
    let mut title = vec![Span::raw(" reward:")];
    for (name, _, style) in &rewards {
        title.push(Span::styled(format!(" {name}"), *style));
    }
    title.push(Span::raw(" "));
    let reward_chart = line_chart(rewards, String::new(), YRange::WithZero, theme).block(
        Block::default()
            .borders(Borders::ALL)
            .title(Line::from(title))
            .border_style(theme.border),
    );
    let mut charts = vec![reward_chart];
    charts.push(line_chart(
        vec![("mean".into(), &g.length.points, theme.loss_train)],
        " completion length (mean) ".into(),
        YRange::NonNegative,
        theme,
    ));
    if !g.kl.is_empty() {
        charts.push(line_chart(
            vec![("kl".into(), &g.kl.points, theme.loss_eval)],
            " KL to the reference ".into(),
            YRange::WithZero,
            theme,
        ));
    }
    let n = charts.len() as u32;
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, n); charts.len()]).split(under);
    for (chart, area) in charts.into_iter().zip(areas.iter()) {
        f.render_widget(chart, *area);
    }
}

/// The latest greedy reply to each sample prompt: what the model says now.
fn draw_samples(f: &mut Frame, area: Rect, v: &RunView, theme: &Theme) {
    let step = v.samples.iter().map(|(s, _, _)| *s).max().unwrap_or(0);
    let mut lines = Vec::new();
    use crate::tui::text::one_line;
    for (_, prompt, reply) in &v.samples {
        lines.push(Line::styled(
            one_line(prompt),
            theme.user.add_modifier(Modifier::BOLD),
        ));
        lines.push(Line::styled(
            format!("→ {}", one_line(reply)),
            theme.assistant,
        ));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" samples · step {step} "))
                    .title_style(theme.title.add_modifier(Modifier::BOLD)),
            ),
        area,
    );
}

/// GRPO's sampled completions of the latest step under their prompt, each with its reward,
/// coloured by how it stands in its group (its advantage's sign).
fn draw_completions(f: &mut Frame, area: Rect, v: &RunView, theme: &Theme) {
    use crate::tui::text::{one_line, truncate};
    let (step, all) = &v.completions;
    let room = usize::from(area.width.saturating_sub(2 + 9));
    let mut lines = Vec::new();
    let mut prompt: Option<&str> = None;
    for c in all {
        if prompt != Some(c.prompt.as_str()) {
            prompt = Some(&c.prompt);
            lines.push(Line::styled(
                truncate(&one_line(&c.prompt), room + 9),
                theme.user.add_modifier(Modifier::BOLD),
            ));
        }
        let (style, mark) = c.standing(group_mean(all, &c.prompt)).style(theme);
        let reward = if c.reward.is_finite() {
            format!("{:>5.2}", c.reward)
        } else {
            "    -".into()
        };
        // Each function's share after the reply, when the reply keeps 16 columns.
        let parts: Vec<String> = c
            .rewards
            .iter()
            .filter(|(k, _)| *k != "reward")
            .map(|(k, r)| format!("{} {r:.2}", one_line(k)))
            .collect();
        let parts = format!("  {}", parts.join(" · "));
        let width = crate::tui::text::width(&parts);
        let (reply_room, parts) = if room >= width + 16 {
            (room - width, parts)
        } else {
            (room, String::new())
        };
        let reply = truncate(&one_line(&c.reply), reply_room);
        let pad = " ".repeat(reply_room.saturating_sub(crate::tui::text::width(&reply)));
        lines.push(Line::from(vec![
            Span::styled(format!("{mark} {reward}  "), style),
            Span::styled(reply, style),
            Span::raw(pad),
            Span::styled(parts, theme.muted),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" completions · step {step} · reward "))
                .title_style(theme.title.add_modifier(Modifier::BOLD)),
        ),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{RunEvent, Status};
    use crate::tui::theme::Depth;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use serde_json::json;

    fn ev(v: serde_json::Value) -> RunEvent {
        serde_json::from_value(v).unwrap()
    }

    /// The screen a run shows before its first step: its start event and an evaluation of
    /// `eval.tasks` alone (no held-out split, so no loss) are in; `status.json` still says 0.
    #[test]
    fn before_the_first_step_the_total_is_known_and_nothing_says_nan() {
        let mut v = RunView::new(RunDir::new("/no/such/run"));
        v.feed(
            vec![
                ev(json!({"type": "start", "step": 0, "total_steps": 40, "trainable_params": 1})),
                ev(
                    json!({"type": "eval", "step": 0, "eval_loss": null, "eval_tokens": 0,
                    "perplexity": null, "bench/k/acc": 0.5}),
                ),
            ],
            Some(Status {
                state: RunState::Running,
                pid: None,
                step: 0,
                total_steps: 0,
                error: None,
                started: 0.0,
                updated: 0.0,
                last_loss: None,
                best_eval_loss: None,
                phase: None,
                format: crate::runs::STATUS_FORMAT,
            }),
        );
        assert!(
            v.eval.is_empty(),
            "an evaluation without a loss draws no point"
        );
        let t = TrainTab {
            view: Some(v),
            memory: MemoryMonitor::new(),
        };
        let theme = Theme::builtin("dark", Depth::TrueColor).unwrap();
        let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
        term.draw(|f| draw(f, f.area(), &t, &theme, "r")).unwrap();
        let buf = term.backend().buffer().clone();
        let text: String = (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    + "\n"
            })
            .collect();
        assert!(text.contains("step 0/40"), "{text}");
        assert!(text.contains("loss -  eval -"), "{text}");
        assert!(!text.contains("NaN"), "{text}");
        assert!(text.contains("eval   step     0  loss -"), "{text}");
    }
}
