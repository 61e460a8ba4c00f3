//! Train tab: the attached run's loss chart (train, EMA-smoothed, eval), learning rate,
//! grad norm, tokens/s, ETA, a memory gauge with history (GPU through NVML, else RAM and the
//! trainer's RSS), DPO reward metrics when present, and the event log. It only reads the run
//! directory, so closing the TUI never touches the run.

use crate::runs::{read_events, RunDir, RunState, Status};
use crate::tui::theme::Theme;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Chart, Dataset, Gauge, GraphType, Paragraph, Sparkline,
};
use ratatui::Frame;
use serde_json::Value;
use std::collections::VecDeque;

/// The live view of one run, fed incrementally from events.jsonl.
pub struct RunView {
    pub run: RunDir,
    offset: u64,
    pub train: Vec<(f64, f64)>,
    pub ema: Vec<(f64, f64)>,
    pub eval: Vec<(f64, f64)>,
    pub last: Option<Value>,
    pub start: Option<Value>,
    pub status: Option<Status>,
    pub log: VecDeque<String>,
    pub rewards: Option<Value>,
}

const EMA: f64 = 0.9;

impl RunView {
    pub fn new(run: RunDir) -> Self {
        let mut v = RunView {
            run,
            offset: 0,
            train: Vec::new(),
            ema: Vec::new(),
            eval: Vec::new(),
            last: None,
            start: None,
            status: None,
            log: VecDeque::new(),
            rewards: None,
        };
        v.poll();
        v
    }

    pub fn id(&self) -> String {
        self.run
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Reads new events and the status; true when anything changed.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        if let Ok((events, next)) = read_events(&self.run.events_path(), self.offset) {
            self.offset = next;
            for e in events {
                changed = true;
                self.add(e);
            }
        }
        let status = self.run.read_status().ok();
        if status != self.status {
            self.status = status;
            changed = true;
        }
        changed
    }

    fn add(&mut self, e: Value) {
        let f = |k: &str| e.get(k).and_then(Value::as_f64);
        let step = f("step").unwrap_or(0.0);
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let stamp = e
            .get("time")
            .and_then(Value::as_f64)
            .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
            .map(|d| {
                d.with_timezone(&chrono::Local)
                    .format("%H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        let line = match kind.as_str() {
            "train" => {
                let loss = f("loss").unwrap_or(f64::NAN);
                // A resumed run repeats steps: keep the series increasing.
                while self.train.last().is_some_and(|(s, _)| *s >= step) {
                    self.train.pop();
                    self.ema.pop();
                }
                let smooth = self
                    .ema
                    .last()
                    .map_or(loss, |(_, p)| EMA * p + (1.0 - EMA) * loss);
                self.train.push((step, loss));
                self.ema.push((step, smooth));
                if e.get("rewards/chosen").is_some() {
                    self.rewards = Some(e.clone());
                }
                self.last = Some(e.clone());
                format!(
                    "{stamp}  train  step {step:>5}  loss {loss:.4}  lr {:.2e}",
                    f("lr").unwrap_or(0.0)
                )
            }
            "eval" => {
                let l = f("eval_loss").unwrap_or(f64::NAN);
                self.eval.retain(|(s, _)| *s < step);
                self.eval.push((step, l));
                format!("{stamp}  eval   step {step:>5}  loss {l:.4}")
            }
            "start" => {
                self.start = Some(e.clone());
                format!(
                    "{stamp}  start  {} steps, {} trainable",
                    e["total_steps"], e["trainable_params"]
                )
            }
            "checkpoint" => format!(
                "{stamp}  ckpt   {}",
                e["path"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("/")
            ),
            "failed" => format!("{stamp}  failed {}", e["error"].as_str().unwrap_or("")),
            other => format!("{stamp}  {other:<6} step {step}"),
        };
        self.log.push_back(line);
        while self.log.len() > 200 {
            self.log.pop_front();
        }
    }
}

/// Memory samples for the gauge: GPU (NVML) or system RAM, plus the trainer's RSS.
pub struct MemoryMonitor {
    gpus: Option<crate::telemetry::Gpus>,
    pub label: String,
    pub used: u64,
    pub total: u64,
    pub history: VecDeque<u64>,
    pub trainer_rss: Option<u64>,
}

impl MemoryMonitor {
    pub fn new() -> Self {
        let gpus = crate::telemetry::Gpus::open();
        let mut m = MemoryMonitor {
            gpus,
            label: String::new(),
            used: 0,
            total: 0,
            history: VecDeque::new(),
            trainer_rss: None,
        };
        m.sample(None);
        m
    }

    pub fn sample(&mut self, trainer: Option<u32>) {
        if let Some(g) = self
            .gpus
            .as_ref()
            .and_then(|g| g.memory().into_iter().next())
        {
            let util = g
                .utilization
                .map(|u| format!(" · {u}%"))
                .unwrap_or_default();
            let temp = g
                .temperature
                .map(|t| format!(" · {t}°C"))
                .unwrap_or_default();
            self.label = format!("GPU {} · {}{util}{temp}", g.index, g.name);
            self.used = g.used;
            self.total = g.total;
        } else if let Some((total, avail)) = crate::telemetry::system_memory() {
            self.label = "RAM (no GPU)".into();
            self.used = total.saturating_sub(avail);
            self.total = total;
        }
        self.trainer_rss = trainer.and_then(|p| crate::telemetry::rss_bytes(Some(p)));
        self.history.push_back(self.used);
        while self.history.len() > 120 {
            self.history.pop_front();
        }
    }
}

impl Default for MemoryMonitor {
    fn default() -> Self {
        Self::new()
    }
}

pub struct TrainTab {
    pub view: Option<RunView>,
    pub memory: MemoryMonitor,
}

use crate::units::clock;

fn gib(b: u64) -> String {
    crate::units::gib(b, 1)
}

/// One line of a chart: its legend name, points and style.
pub type Series<'a> = (String, &'a [(f64, f64)], ratatui::style::Style);

/// Axis bounds with a little headroom.
fn bounds(points: &[&[(f64, f64)]]) -> ([f64; 2], [f64; 2]) {
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
    ([0.0, x1], [(y0 - pad).max(0.0), y1 + pad])
}

pub fn loss_chart<'a>(series: Vec<Series<'a>>, title: String, theme: &Theme) -> Chart<'a> {
    let refs: Vec<&[(f64, f64)]> = series.iter().map(|(_, p, _)| *p).collect();
    let (xb, yb) = bounds(&refs);
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
                .border_style(theme.s("border")),
        )
        .x_axis(
            Axis::default()
                .title("step")
                .style(theme.s("muted"))
                .bounds(xb)
                .labels(vec![
                    Span::raw("0"),
                    Span::raw(format!("{:.0}", xb[1] / 2.0)),
                    Span::raw(format!("{:.0}", xb[1])),
                ]),
        )
        .y_axis(
            Axis::default()
                .style(theme.s("muted"))
                .bounds(yb)
                .labels(vec![
                    Span::raw(format!("{:.2}", yb[0])),
                    Span::raw(format!("{:.2}", (yb[0] + yb[1]) / 2.0)),
                    Span::raw(format!("{:.2}", yb[1])),
                ]),
        )
}

pub fn draw(f: &mut Frame, area: Rect, t: &TrainTab, theme: &Theme, hint: &str) {
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
    let title = format!(" loss · {} · {state} ", v.id());
    let chart = loss_chart(
        vec![
            ("train".into(), &v.train, theme.s("loss_train")),
            ("ema".into(), &v.ema, theme.s("loss_smoothed")),
            ("eval".into(), &v.eval, theme.s("loss_eval")),
        ],
        title,
        theme,
    );
    f.render_widget(chart, chart_area);
    let [prog, mem] = Layout::vertical([Constraint::Length(9), Constraint::Min(5)]).areas(side);
    let e = v.last.clone().unwrap_or(Value::Null);
    let num = |k: &str| e.get(k).and_then(Value::as_f64);
    let (step, total) = v
        .status
        .as_ref()
        .map_or((0, 0), |s| (s.step, s.total_steps));
    let ratio = if total > 0 {
        step as f64 / total as f64
    } else {
        0.0
    };
    let mut lines = vec![
        Line::from(format!(
            "step {step}/{total}  epoch {:.2}",
            num("epoch").unwrap_or(0.0)
        )),
        Line::from(format!(
            "{:.0} tok/s  ETA {}  elapsed {}",
            num("tokens_per_s").unwrap_or(0.0),
            clock(num("eta").unwrap_or(0.0)),
            clock(num("elapsed").unwrap_or(0.0))
        )),
        Line::from(format!(
            "lr {:.2e}  grad‖ {:.3}",
            num("lr").unwrap_or(0.0),
            num("grad_norm").unwrap_or(0.0)
        )),
        Line::from(format!(
            "loss {:.4}  eval {}",
            num("loss").unwrap_or(f64::NAN),
            v.eval.last().map_or("-".into(), |(_, l)| format!("{l:.4}"))
        )),
    ];
    if let Some(r) = &v.rewards {
        lines.push(Line::from(format!(
            "rewards chosen {:.3} rejected {:.3} acc {:.2}",
            r["rewards/chosen"].as_f64().unwrap_or(0.0),
            r["rewards/rejected"].as_f64().unwrap_or(0.0),
            r["rewards/accuracies"].as_f64().unwrap_or(0.0)
        )));
    }
    if let Some(err) = v.status.as_ref().and_then(|s| s.error.clone()) {
        lines.push(Line::styled(err, theme.s("error")));
    }
    let pblock = Block::default().borders(Borders::ALL).title(" progress ");
    let inner = pblock.inner(prog);
    f.render_widget(pblock, prog);
    let [g, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let gs = match v.status.as_ref().map(|s| s.state) {
        Some(RunState::Failed) => theme.s("gauge_high"),
        Some(RunState::Done) => theme.s("success"),
        _ => theme.s("accent"),
    };
    f.render_widget(
        Gauge::default()
            .ratio(ratio.clamp(0.0, 1.0))
            .gauge_style(gs),
        g,
    );
    f.render_widget(Paragraph::new(lines), rest);
    let m = &t.memory;
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
    let mr = m.used as f64 / m.total.max(1) as f64;
    let ms = if mr > 0.9 {
        "gauge_high"
    } else if mr > 0.7 {
        "gauge_warn"
    } else {
        "gauge_ok"
    };
    f.render_widget(
        Gauge::default()
            .ratio(mr.clamp(0.0, 1.0))
            .gauge_style(theme.s(ms))
            .label(format!("{}/{} GiB", gib(m.used), gib(m.total))),
        g,
    );
    f.render_widget(
        Paragraph::new(format!(
            "trainer RSS {}",
            m.trainer_rss
                .map_or("-".into(), |r| format!("{} GiB", gib(r)))
        ))
        .style(theme.s("muted")),
        txt,
    );
    let hist: Vec<u64> = m.history.iter().map(|u| u / (1 << 20)).collect();
    f.render_widget(
        Sparkline::default()
            .data(&hist)
            .max(m.total / (1 << 20))
            .style(theme.s("accent")),
        spark,
    );
    let log: Vec<Line> = v
        .log
        .iter()
        .rev()
        .take(bottom.height.saturating_sub(2) as usize)
        .rev()
        .map(|l| {
            Line::styled(
                l.clone(),
                if l.contains("failed") {
                    theme.s("error")
                } else {
                    theme.s("foreground")
                },
            )
        })
        .collect();
    f.render_widget(
        Paragraph::new(log).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" events ")
                .title_style(theme.s("title").add_modifier(Modifier::BOLD)),
        ),
        bottom,
    );
}
