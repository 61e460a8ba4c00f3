//! Chat tab: a model plus an adapter (a run's adapter or checkpoint, or any PEFT folder),
//! replies streamed from a generation thread, the adapter switchable, base and adapter side
//! by side, sampling settings, a system prompt, and "save this exchange to a dataset".

use crate::infer::sampling::Sampling;
use crate::infer::{ChatModel, GenEvent};
use crate::tui::theme::Theme;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Base,
    Adapter,
}

pub struct ChatTab {
    pub model_spec: String,
    /// A model picked here (`M`); otherwise the Adapter form's model is used.
    pub model_override: Option<String>,
    pub adapters: Vec<(String, PathBuf)>,
    pub adapter: Option<usize>,
    pub adapter_on: bool,
    pub side_by_side: bool,
    pub system: String,
    pub sampling: Sampling,
    /// (role, text) of the conversation so far.
    pub history: Vec<(String, String)>,
    /// Side-by-side replies to the last prompt: (base, adapter).
    pub compare: Option<(String, String)>,
    pub model: Option<ChatModel>,
    loading: Option<Receiver<Result<ChatModel, String>>>,
    stream: Option<(Target, Receiver<GenEvent>)>,
    queued: Vec<Target>,
    pub status: String,
    /// Where "save exchange" appends, and in which format.
    pub save_path: PathBuf,
    pub save_format: crate::data::Format,
}

/// SFT JSONL files in the workspace that exchanges can be appended to, with their formats;
/// `default` (OpenAI format) first.
pub fn save_targets(root: &Path, default: &Path) -> Vec<(PathBuf, crate::data::Format)> {
    let mut out = vec![(default.to_path_buf(), crate::data::Format::Openai)];
    for p in crate::tui::tabs::data::scan(root) {
        if p == default || p.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        if let Ok(ds) = crate::data::Dataset::open(&p, None) {
            if ds.kind() == crate::data::Kind::Sft {
                out.push((p, ds.format));
            }
        }
    }
    out
}

/// Models in the workspace to offer: folders with a `config.json` and a tokenizer, and
/// `.gguf` files, two levels deep.
pub fn find_models(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    crate::workspace::walk(root, 2, &mut |p, is_dir| {
        if is_dir && p.join("config.json").is_file() && p.join("tokenizer.json").is_file() {
            out.push(p.display().to_string());
            return false;
        }
        if !is_dir && p.extension().is_some_and(|e| e == "gguf") {
            out.push(p.display().to_string());
        }
        is_dir
    });
    out
}

/// Adapters to offer: every run's final adapter and checkpoints, newest run first.
pub fn find_adapters(runs_root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for r in crate::runs::list(runs_root) {
        let run = crate::runs::RunDir::new(&r.dir);
        if run.adapter().join("adapter_config.json").is_file() {
            out.push((format!("{}/adapter", r.id), run.adapter()));
        }
        for (step, dir) in crate::train::checkpoint::list(&run.checkpoints())
            .into_iter()
            .rev()
        {
            out.push((format!("{}/step-{step}", r.id), dir));
        }
    }
    out
}

impl ChatTab {
    pub fn new(model_spec: String, runs_root: &Path, save_path: PathBuf) -> Self {
        let adapters = find_adapters(runs_root);
        ChatTab {
            model_spec,
            model_override: None,
            adapter: if adapters.is_empty() { None } else { Some(0) },
            adapters,
            adapter_on: true,
            side_by_side: false,
            system: String::new(),
            sampling: Sampling {
                max_new_tokens: 128,
                ..Sampling::default()
            },
            history: Vec::new(),
            compare: None,
            model: None,
            loading: None,
            stream: None,
            queued: Vec::new(),
            status: String::new(),
            save_path,
            save_format: crate::data::Format::Openai,
        }
    }

    pub fn busy(&self) -> bool {
        self.loading.is_some() || self.stream.is_some()
    }

    pub fn adapter_path(&self) -> Option<&Path> {
        self.adapter
            .and_then(|i| self.adapters.get(i))
            .map(|(_, p)| p.as_path())
    }

    pub fn next_adapter(&mut self, runs_root: &Path) {
        self.adapters = find_adapters(runs_root);
        self.adapter = match (self.adapter, self.adapters.len()) {
            (_, 0) => None,
            (None, _) => Some(0),
            (Some(i), n) if i + 1 >= n => None,
            (Some(i), _) => Some(i + 1),
        };
    }

    /// Opens `dir` (a PEFT folder) as the adapter.
    pub fn use_adapter(&mut self, label: String, dir: PathBuf) {
        if let Some(i) = self.adapters.iter().position(|(_, p)| *p == dir) {
            self.adapter = Some(i);
        } else {
            self.adapters.insert(0, (label, dir));
            self.adapter = Some(0);
        }
    }

    fn needs_load(&self) -> bool {
        match &self.model {
            None => true,
            Some(m) => m.adapter.as_deref() != self.adapter_path() || m.spec != self.model_spec,
        }
    }

    /// Bytes the model takes in f32 (checked against free RAM before loading).
    fn estimate(&self) -> Option<u64> {
        let cfg =
            crate::model::ModelConfig::from_file(&Path::new(&self.model_spec).join("config.json"))
                .ok()?;
        Some(cfg.parameter_count() as u64 * 4)
    }

    /// Sends a user message: loads the model first when needed, then streams the reply (or
    /// both replies, side by side).
    pub fn send(&mut self, text: String, training_active: bool) {
        if self.busy() {
            self.status = "still answering; wait for the reply".into();
            return;
        }
        self.history.push(("user".into(), text));
        self.compare = None;
        if self.needs_load() {
            if let (Some(need), Some((_, avail))) =
                (self.estimate(), crate::telemetry::system_memory())
            {
                if need > avail {
                    self.status = format!(
                        "will not fit: the model needs about {:.1} GiB and {:.1} GiB is free{}",
                        need as f64 / (1u64 << 30) as f64,
                        avail as f64 / (1u64 << 30) as f64,
                        if training_active {
                            " while a run trains"
                        } else {
                            ""
                        }
                    );
                    return;
                }
            }
            let (spec, adapter) = (
                self.model_spec.clone(),
                self.adapter_path().map(Path::to_path_buf),
            );
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("tunelab-chat-load".into())
                .spawn(move || {
                    let _ = tx.send(ChatModel::load(&spec, adapter.as_deref(), "model"));
                })
                .ok();
            self.loading = Some(rx);
            self.status = format!("loading {}…", self.model_spec);
            return;
        }
        self.start_replies();
    }

    fn start_replies(&mut self) {
        self.queued = if self.side_by_side {
            self.compare = Some((String::new(), String::new()));
            vec![Target::Base, Target::Adapter]
        } else if self.adapter_on && self.adapter.is_some() {
            vec![Target::Adapter]
        } else {
            vec![Target::Base]
        };
        self.next_stream();
    }

    fn messages(&self) -> Vec<serde_json::Value> {
        let mut m = Vec::new();
        if !self.system.is_empty() {
            m.push(json!({"role": "system", "content": self.system}));
        }
        for (role, text) in &self.history {
            m.push(json!({"role": role, "content": text}));
        }
        m
    }

    fn next_stream(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let target = self.queued.remove(0);
        let Some(model) = &self.model else { return };
        match model.reply(
            &self.messages(),
            target == Target::Adapter,
            self.sampling.clone(),
        ) {
            Ok(rx) => {
                if !self.side_by_side {
                    self.history.push(("assistant".into(), String::new()));
                }
                self.stream = Some((target, rx));
                self.status = format!(
                    "answering ({})…",
                    if target == Target::Adapter {
                        "adapter"
                    } else {
                        "base"
                    }
                );
            }
            Err(e) => self.status = format!("error: {e}"),
        }
    }

    /// Drains the loader and the token stream; true when anything changed.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        if let Some(rx) = &self.loading {
            match rx.try_recv() {
                Ok(Ok(m)) => {
                    self.model = Some(m);
                    self.loading = None;
                    self.status = "loaded".into();
                    self.start_replies();
                    changed = true;
                }
                Ok(Err(e)) => {
                    self.loading = None;
                    self.status = format!("cannot load the model: {e}");
                    changed = true;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.loading = None,
            }
        }
        while let Some((target, rx)) = &self.stream {
            let target = *target;
            match rx.try_recv() {
                Ok(GenEvent::Text(t)) => {
                    changed = true;
                    match (&mut self.compare, target) {
                        (Some((b, _)), Target::Base) => b.push_str(&t),
                        (Some((_, a)), Target::Adapter) => a.push_str(&t),
                        (None, _) => {
                            if let Some((_, last)) = self.history.last_mut() {
                                last.push_str(&t);
                            }
                        }
                    }
                }
                Ok(GenEvent::Done {
                    tokens, seconds, ..
                }) => {
                    self.status = format!(
                        "{tokens} tokens in {seconds:.2}s ({:.1} tok/s)",
                        tokens as f64 / seconds.max(1e-9)
                    );
                    self.stream = None;
                    changed = true;
                    if self.queued.is_empty() {
                        if let Some((_, a)) = self.compare.clone() {
                            self.history.push(("assistant".into(), a));
                        }
                    }
                    self.next_stream();
                }
                Ok(GenEvent::Error(e)) => {
                    self.status = format!("error: {e}");
                    self.stream = None;
                    changed = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.stream = None;
                    break;
                }
            }
        }
        changed
    }

    /// Appends the last exchange (system, user, assistant) to the save target in its format.
    pub fn save_exchange(&self) -> Result<PathBuf, String> {
        use crate::data::{Body, Conversation, Message, Record, Role};
        let n = self.history.len();
        if n < 2 || self.history[n - 1].0 != "assistant" {
            return Err("no finished exchange to save".into());
        }
        let mut messages = Vec::new();
        if !self.system.is_empty() {
            messages.push(Message::new(Role::System, self.system.clone()));
        }
        messages.push(Message::new(Role::User, self.history[n - 2].1.clone()));
        messages.push(Message::new(Role::Assistant, self.history[n - 1].1.clone()));
        let record = Record {
            body: Body::Conversation(Conversation {
                messages,
                tools: Vec::new(),
                plain: false,
            }),
            meta: Default::default(),
        };
        let mut notes = crate::data::Notes::default();
        let obj = self.save_format.write(&record, &mut notes)?;
        if let Some(dir) = self.save_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.save_path)
            .map_err(|e| format!("{}: {e}", self.save_path.display()))?;
        writeln!(f, "{}", serde_json::Value::Object(obj)).map_err(|e| e.to_string())?;
        Ok(self.save_path.clone())
    }
}

fn transcript<'a>(history: &[(String, String)], theme: &Theme) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    for (role, text) in history {
        let style = theme.s(if role == "user" { "user" } else { "assistant" });
        for (i, l) in text.split('\n').enumerate() {
            let head = if i == 0 {
                format!("{role:<10} ")
            } else {
                " ".repeat(11)
            };
            lines.push(Line::from(vec![
                Span::styled(head, style.add_modifier(Modifier::BOLD)),
                Span::raw(l.to_string()),
            ]));
        }
    }
    lines
}

pub fn draw(f: &mut Frame, area: Rect, t: &ChatTab, theme: &Theme, input: Option<&str>) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(3),
        Constraint::Length(3),
    ])
    .areas(area);
    let adapter = t
        .adapter
        .and_then(|i| t.adapters.get(i))
        .map_or("none".to_string(), |(l, _)| l.clone());
    let info = vec![
        Line::from(vec![
            Span::raw("model   "),
            Span::styled(crate::units::truncate(&t.model_spec, 60), theme.s("accent")),
        ]),
        Line::from(vec![
            Span::raw("adapter "),
            Span::styled(adapter, theme.s("accent")),
            Span::raw(format!(
                "  [{}]  {}  temp {:.1}  top-p {}  top-k {}  max {}",
                if t.adapter_on { "on" } else { "off" },
                if t.side_by_side {
                    "side by side"
                } else {
                    "single"
                },
                t.sampling.temperature,
                t.sampling.top_p.map_or("off".into(), |p| p.to_string()),
                t.sampling.top_k.map_or("off".into(), |k| k.to_string()),
                t.sampling.max_new_tokens
            )),
        ]),
        Line::styled(
            format!(
                "saves to {} ({})",
                crate::units::truncate(&t.save_path.display().to_string(), 70),
                t.save_format
            ),
            theme.s("muted"),
        ),
    ];
    f.render_widget(
        Paragraph::new(info).block(Block::default().borders(Borders::ALL).title(" chat ")),
        head,
    );
    match &t.compare {
        Some((base, adapted)) => {
            let [l, r] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(body);
            let mut hist = transcript(&t.history[..t.history.len().saturating_sub(0)], theme);
            hist.truncate(hist.len());
            f.render_widget(
                Paragraph::new(base.clone())
                    .wrap(Wrap { trim: false })
                    .block(
                        Block::default()
                            .borders(Borders::ALL)
                            .title(" base ")
                            .border_style(theme.s("border")),
                    ),
                l,
            );
            f.render_widget(
                Paragraph::new(adapted.clone())
                    .wrap(Wrap { trim: false })
                    .block(
                        Block::default()
                            .borders(Borders::ALL)
                            .title(" adapter ")
                            .border_style(theme.s("border_focused")),
                    ),
                r,
            );
        }
        None => {
            let lines = transcript(&t.history, theme);
            let height = body.height.saturating_sub(2) as usize;
            let skip = lines.len().saturating_sub(height);
            f.render_widget(
                Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>())
                    .wrap(Wrap { trim: false })
                    .block(
                        Block::default()
                            .borders(Borders::ALL)
                            .title(if t.system.is_empty() {
                                " conversation ".to_string()
                            } else {
                                format!(
                                    " conversation · system: {} ",
                                    crate::units::truncate(&t.system, 40)
                                )
                            }),
                    ),
                body,
            );
        }
    }
    let (text, style) = match input {
        Some(s) => (format!("› {s}▏"), theme.s("foreground")),
        None => (
            if t.status.is_empty() {
                "i: write a message · t: adapter on/off · b: side by side · A: next adapter"
                    .to_string()
            } else {
                t.status.clone()
            },
            theme.s("muted"),
        ),
    };
    f.render_widget(
        Paragraph::new(text)
            .style(style)
            .block(Block::default().borders(Borders::ALL)),
        foot,
    );
}
