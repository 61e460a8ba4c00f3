//! The Data tab's Synthesize dialog: a form over `tunelab data synth`'s options, the run on
//! a worker thread (the UI thread only reads the form), its live progress from the core's
//! observer, Esc to stop it (what was written stays and resumes), and the final report.

use crate::synth::{
    self, Endpoint, Event, Observer, Options, Policy, Provider, Report, SeedKind, SynthKind, Tokens,
};
use crate::tui::effect::Sink;
use crate::tui::text::one_line as clean;
use crate::tui::theme::Theme;
use crate::tui::widgets::{InputEvent, TextInput};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The form's fields, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum Field {
    Provider,
    BaseUrl,
    Model,
    Kind,
    SeedFile,
    Persona,
    Count,
    Output,
}

impl Field {
    fn label(self) -> &'static str {
        match self {
            Field::Provider => "provider",
            Field::BaseUrl => "base URL",
            Field::Model => "model",
            Field::Kind => "kind",
            Field::SeedFile => "seed file",
            Field::Persona => "persona",
            Field::Count => "count",
            Field::Output => "output",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Field::Provider => "anthropic (ANTHROPIC_API_KEY) or any OpenAI-compatible server (OPENAI_API_KEY when set) · h/l or space",
            Field::BaseUrl => "empty: the provider's API; e.g. http://127.0.0.1:8000/v1 for `tunelab serve`, vLLM, llama.cpp, Ollama",
            Field::Model => "empty: the provider's default, or the server's first model",
            Field::Kind => "sft: a prompt and the persona's answer · preference: that answer chosen, a plain one rejected · h/l or space",
            Field::SeedFile => "topics or prompts, one per line (a line ending in ? is a prompt), or JSON Lines; relative to the workspace",
            Field::Persona => "the persona or task, as text or @FILE (relative to the workspace)",
            Field::Count => "records the output holds at the end (records already there count)",
            Field::Output => "a .jsonl file, appended to and resumed; relative to the workspace",
        }
    }

    fn all() -> Vec<Field> {
        use strum::IntoEnumIterator;
        Field::iter().collect()
    }

    fn is_choice(self) -> bool {
        matches!(self, Field::Provider | Field::Kind)
    }
}

/// What the form holds.
pub struct Form {
    pub provider: Provider,
    pub kind: SynthKind,
    pub base_url: TextInput,
    pub model: TextInput,
    pub seed_file: TextInput,
    pub persona: TextInput,
    pub count: TextInput,
    pub output: TextInput,
    pub focus: Field,
}

impl Default for Form {
    fn default() -> Self {
        Form {
            provider: Provider::Anthropic,
            kind: SynthKind::Sft,
            base_url: TextInput::default(),
            model: TextInput::default(),
            seed_file: TextInput::default(),
            persona: TextInput::default(),
            count: TextInput::new("20"),
            output: TextInput::new("synth.jsonl"),
            focus: Field::Provider,
        }
    }
}

impl Form {
    fn text(&self, f: Field) -> Option<&TextInput> {
        match f {
            Field::BaseUrl => Some(&self.base_url),
            Field::Model => Some(&self.model),
            Field::SeedFile => Some(&self.seed_file),
            Field::Persona => Some(&self.persona),
            Field::Count => Some(&self.count),
            Field::Output => Some(&self.output),
            Field::Provider | Field::Kind => None,
        }
    }

    fn input(&mut self, f: Field) -> Option<&mut TextInput> {
        match f {
            Field::BaseUrl => Some(&mut self.base_url),
            Field::Model => Some(&mut self.model),
            Field::SeedFile => Some(&mut self.seed_file),
            Field::Persona => Some(&mut self.persona),
            Field::Count => Some(&mut self.count),
            Field::Output => Some(&mut self.output),
            Field::Provider | Field::Kind => None,
        }
    }

    fn value(&self, f: Field) -> String {
        match f {
            Field::Provider => self.provider.name().to_string(),
            Field::Kind => <&str>::from(self.kind).to_string(),
            _ => self
                .text(f)
                .map(|t| t.value().to_string())
                .unwrap_or_default(),
        }
    }

    /// Sets a field from text (tests and the palette fill the form this way).
    pub fn set(&mut self, f: Field, value: &str) -> Result<(), String> {
        match f {
            Field::Provider => self.provider = value.parse()?,
            Field::Kind => self.kind = value.parse()?,
            _ => {
                if let Some(i) = self.input(f) {
                    *i = TextInput::new(value);
                }
            }
        }
        Ok(())
    }

    fn toggle(&mut self) {
        match self.focus {
            Field::Provider => {
                self.provider = match self.provider {
                    Provider::Anthropic => Provider::Openai,
                    Provider::Openai => Provider::Anthropic,
                }
            }
            Field::Kind => {
                self.kind = match self.kind {
                    SynthKind::Sft => SynthKind::Preference,
                    SynthKind::Preference => SynthKind::Sft,
                }
            }
            _ => {}
        }
    }

    fn step(&mut self, delta: isize) {
        let all = Field::all();
        let i = all.iter().position(|f| *f == self.focus).unwrap_or(0) as isize;
        self.focus = all[(i + delta).rem_euclid(all.len() as isize) as usize];
    }

    /// The run this form asks for, with paths made absolute against `root`; no I/O.
    pub fn request(&self, root: &Path) -> Result<Request, String> {
        let text = |t: &TextInput| t.value().trim().to_string();
        let within = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                root.join(p)
            }
        };
        let n: usize = text(&self.count)
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("count: {:?} is not a number of records", text(&self.count)))?;
        let seed = text(&self.seed_file);
        if seed.is_empty() {
            return Err("seed file: give a file of topics or prompts, one per line".into());
        }
        let persona = text(&self.persona);
        let persona = match persona.strip_prefix('@') {
            Some(p) if !p.trim().is_empty() => format!("@{}", within(p.trim()).display()),
            _ if persona.is_empty() || persona == "@" => {
                return Err("persona: give the persona or task as text, or @FILE".into())
            }
            _ => persona,
        };
        let output = text(&self.output);
        if output.is_empty() {
            return Err("output: give a .jsonl file to write".into());
        }
        let optional = |t: &TextInput| Some(text(t)).filter(|s| !s.is_empty());
        Ok(Request {
            provider: self.provider,
            base_url: optional(&self.base_url),
            model: optional(&self.model),
            kind: self.kind,
            seed_file: within(&seed),
            persona,
            n,
            output: within(&output),
        })
    }
}

/// A synthesis run as the form describes it (paths absolute).
#[derive(Debug, Clone)]
pub struct Request {
    pub provider: Provider,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub kind: SynthKind,
    pub seed_file: PathBuf,
    /// Text, or `@` and an absolute path.
    pub persona: String,
    pub n: usize,
    pub output: PathBuf,
}

impl Request {
    /// The core's options, with `tunelab data synth`'s defaults for what the form leaves
    /// out. Reads the seed and persona files and the API key: worker threads only.
    fn options(self) -> Result<Options, String> {
        let strong = Endpoint::from_env(self.provider, self.base_url, self.model)?;
        let seeds =
            synth::read_seeds(&self.seed_file, SeedKind::Auto).map_err(|e| e.to_string())?;
        let persona = synth::persona(&self.persona).map_err(|e| e.to_string())?;
        Ok(Options {
            kind: self.kind,
            strong,
            rejected: None,
            seeds,
            persona,
            n: self.n,
            output: self.output,
            format: self.kind.default_format(),
            concurrency: 4,
            policy: Policy {
                timeout: Duration::from_secs(120),
                attempts: 5,
                backoff: Duration::from_secs(1),
                rpm: Some(50),
            },
            max_tokens: 1024,
            temperature: None,
            include_system: false,
        })
    }

    /// Runs synthesis to the end (or until `stop`), relaying progress as run `id` through
    /// `sink`. Worker threads only.
    pub fn run(self, id: u64, sink: Sink<SynthMsg>, stop: &AtomicBool) -> Result<Report, String> {
        let opts = self.options()?;
        let relay = Relay { id, sink };
        synth::synthesize_unless(&opts, &relay, stop).map_err(|e| e.to_string())
    }
}

/// Hands the core's events to the dialog, from the run's worker threads.
struct Relay {
    id: u64,
    sink: Sink<SynthMsg>,
}

impl Observer for Relay {
    fn event(&self, e: &Event) {
        (self.sink)(SynthMsg::Event(self.id, e.clone()));
    }

    fn usage(&self, total: Tokens) {
        (self.sink)(SynthMsg::Usage(self.id, total));
    }
}

/// What a run tells the dialog; the number tells runs apart (a stopped run's late events
/// never reach the next one's progress).
pub enum SynthMsg {
    Event(u64, Event),
    Usage(u64, Tokens),
    Finished(u64, Result<Report, String>),
}

/// The live counts of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub target: usize,
    /// Records in the output (those from earlier runs included).
    pub done: usize,
    pub written: usize,
    pub failed: usize,
    pub retries: usize,
    pub rejected: usize,
    pub duplicates: usize,
    pub tokens: Tokens,
    /// Who writes: provider, model and URL.
    pub source: String,
    /// The latest retry or failure, for the user to see why it is slow.
    pub last: Option<String>,
}

impl Progress {
    fn apply(&mut self, e: &Event) {
        match e {
            Event::Start {
                target,
                done,
                strong,
                ..
            } => {
                self.target = *target;
                self.done = *done;
                self.source = strong.clone();
            }
            Event::Written { done } => {
                self.done = *done;
                self.written += 1;
            }
            Event::Retry { reason, wait } => {
                self.retries += 1;
                self.last = Some(format!("retrying in {:.1}s: {reason}", wait.as_secs_f64()));
            }
            Event::Rejected { reason } => {
                self.rejected += 1;
                self.last = Some(format!("turned away: {reason}"));
            }
            Event::Duplicate { .. } => self.duplicates += 1,
            Event::Failed { reason } => {
                self.failed += 1;
                self.last = Some(format!("failed: {reason}"));
            }
        }
    }
}

/// Where the dialog is.
pub enum Phase {
    Form {
        error: Option<String>,
    },
    Running {
        id: u64,
        stop: Arc<AtomicBool>,
    },
    /// The report (boxed: it dwarfs the other phases), or why the run could not start.
    Done(Result<Box<Report>, String>),
}

/// What a key asks of the Data tab.
pub enum Reply {
    Nothing,
    /// Start this run on a worker; its result is the last message.
    Start(Box<dyn FnOnce() -> SynthMsg + Send + 'static>),
    /// Close the dialog.
    Close,
}

/// What a finished run asks of the Data tab.
pub struct Finished {
    /// A line for the status bar.
    pub summary: String,
    /// The output file, when it holds records: listed and opened.
    pub output: Option<PathBuf>,
    pub ok: bool,
}

pub struct SynthDialog {
    pub form: Form,
    pub phase: Phase,
    pub progress: Progress,
    next_id: u64,
}

impl Default for SynthDialog {
    fn default() -> Self {
        SynthDialog {
            form: Form::default(),
            phase: Phase::Form { error: None },
            progress: Progress::default(),
            next_id: 0,
        }
    }
}

impl SynthDialog {
    /// A dialog whose output defaults to `output` (relative to the workspace: a project
    /// writes into its own `data/`).
    pub fn writing_to(output: &str) -> Self {
        let mut d = SynthDialog::default();
        d.form.output = TextInput::new(output);
        d
    }
}

impl SynthDialog {
    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }

    /// Starts the form's run: checks the form here, everything else on the worker.
    pub fn start(&mut self, root: &Path, sink: Sink<SynthMsg>) -> Reply {
        if self.running() {
            return Reply::Nothing;
        }
        let req = match self.form.request(root) {
            Ok(r) => r,
            Err(e) => {
                self.phase = Phase::Form { error: Some(e) };
                return Reply::Nothing;
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        let stop = Arc::new(AtomicBool::new(false));
        self.progress = Progress {
            target: req.n,
            ..Progress::default()
        };
        self.phase = Phase::Running {
            id,
            stop: stop.clone(),
        };
        Reply::Start(Box::new(move || {
            SynthMsg::Finished(id, req.run(id, sink, &stop))
        }))
    }

    /// Asks the running run to stop; its report arrives as usual.
    pub fn cancel(&mut self) {
        if let Phase::Running { stop, .. } = &self.phase {
            stop.store(true, Ordering::Relaxed);
            self.progress.last = Some("stopping: requests under way finish first…".into());
        }
    }

    pub fn cancelling(&self) -> bool {
        matches!(&self.phase, Phase::Running { stop, .. } if stop.load(Ordering::Relaxed))
    }

    /// A key while the dialog is open.
    pub fn key(&mut self, key: &KeyEvent, root: &Path, sink: Sink<SynthMsg>) -> Reply {
        match &self.phase {
            Phase::Running { .. } => {
                if key.code == KeyCode::Esc {
                    self.cancel();
                }
                Reply::Nothing
            }
            Phase::Done(result) => match key.code {
                // An error goes back to the form to fix it; a report closes.
                KeyCode::Esc | KeyCode::Enter if result.is_err() => {
                    self.phase = Phase::Form { error: None };
                    Reply::Nothing
                }
                KeyCode::Esc | KeyCode::Enter => Reply::Close,
                _ => Reply::Nothing,
            },
            Phase::Form { .. } => self.form_key(key, root, sink),
        }
    }

    fn form_key(&mut self, key: &KeyEvent, root: &Path, sink: Sink<SynthMsg>) -> Reply {
        let focus = self.form.focus;
        match key.code {
            KeyCode::Esc => return Reply::Close,
            KeyCode::Enter => return self.start(root, sink),
            KeyCode::Up => self.form.step(-1),
            KeyCode::Down => self.form.step(1),
            KeyCode::Left | KeyCode::Right | KeyCode::Char(' ' | 'h' | 'l')
                if focus.is_choice() =>
            {
                self.form.toggle()
            }
            _ => {
                if let Some(input) = self.form.input(focus) {
                    if input.handle(key) == InputEvent::Changed {
                        self.phase = Phase::Form { error: None };
                    }
                }
            }
        }
        Reply::Nothing
    }

    /// A message from a run; `Some` when the run ended.
    pub fn receive(&mut self, msg: SynthMsg) -> Option<Finished> {
        let current = match &self.phase {
            Phase::Running { id, .. } => *id,
            _ => return None,
        };
        match msg {
            SynthMsg::Event(id, e) if id == current => self.progress.apply(&e),
            SynthMsg::Usage(id, t) if id == current => self.progress.tokens = t,
            SynthMsg::Finished(id, result) if id == current => {
                let finished = match &result {
                    Ok(r) => {
                        self.progress.done = r.records.min(r.target);
                        self.progress.tokens = r.tokens;
                        Finished {
                            summary: format!("synth: {}", r.headline()),
                            output: (r.records > 0).then(|| r.output.clone()),
                            ok: r.complete(),
                        }
                    }
                    Err(e) => Finished {
                        summary: format!("synth: {e}"),
                        output: None,
                        ok: false,
                    },
                };
                self.phase = Phase::Done(result.map(Box::new));
                return Some(finished);
            }
            _ => {}
        }
        None
    }

    pub fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme) {
        let w = area.width.saturating_sub(4).min(96);
        let h = area.height.saturating_sub(2).min(18);
        let r = Rect {
            x: area.x + (area.width.saturating_sub(w)) / 2,
            y: area.y + (area.height.saturating_sub(h)) / 2,
            width: w,
            height: h,
        };
        f.render_widget(Clear, r);
        let (title, lines) = match &self.phase {
            Phase::Form { error } => (" synthesize a dataset ", self.form_lines(error, theme)),
            Phase::Running { .. } => (" synthesizing ", self.progress_lines(theme)),
            Phase::Done(result) => (" synthesis report ", self.report_lines(result, theme)),
        };
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title)
                    .border_style(theme.accent),
            ),
            r,
        );
    }

    fn form_lines(&self, error: &Option<String>, theme: &Theme) -> Vec<Line<'static>> {
        let form = &self.form;
        let mut lines = Vec::new();
        for field in Field::all() {
            let focused = field == form.focus;
            let label = Span::styled(
                format!("{:<10} ", field.label()),
                if focused {
                    theme.selection
                } else {
                    theme.title.add_modifier(Modifier::BOLD)
                },
            );
            let value = if field.is_choice() {
                let choices: Vec<&str> = match field {
                    Field::Provider => vec!["anthropic", "openai"],
                    _ => vec!["sft", "preference"],
                };
                let current = form.value(field);
                let mut spans = Vec::new();
                for c in choices {
                    spans.push(if c == current {
                        Span::styled(format!("[{c}]"), theme.accent)
                    } else {
                        Span::styled(format!(" {c} "), theme.muted)
                    });
                    spans.push(Span::raw(" "));
                }
                spans
            } else {
                let v = form.value(field);
                let shown = match (focused, form.text(field)) {
                    (true, Some(i)) => i.display(),
                    _ => v.clone(),
                };
                if v.is_empty() && !focused {
                    vec![Span::styled(self.placeholder(field), theme.muted)]
                } else {
                    vec![Span::styled(shown, theme.foreground)]
                }
            };
            let mut spans = vec![label];
            spans.extend(value);
            lines.push(Line::from(spans));
        }
        lines.push(Line::default());
        lines.push(Line::styled(form.focus.help(), theme.muted));
        if let Some(e) = error {
            lines.push(Line::styled(clean(e), theme.error));
        }
        lines.push(Line::styled(
            "↑/↓ field · h/l choice · Enter start · Esc close",
            theme.info,
        ));
        lines
    }

    fn placeholder(&self, field: Field) -> String {
        let p = self.form.provider;
        match field {
            Field::BaseUrl => format!("({})", p.default_base_url()),
            Field::Model => match (p, self.form.base_url.value().trim().is_empty()) {
                (Provider::Anthropic, _) => format!("({})", synth::anthropic::DEFAULT_MODEL),
                (Provider::Openai, true) => format!("({})", synth::openai::DEFAULT_MODEL),
                (Provider::Openai, false) => "(the server's first model)".into(),
            },
            _ => "(required)".into(),
        }
    }

    fn counts(&self, theme: &Theme) -> Vec<Line<'static>> {
        let p = &self.progress;
        let width = 30usize;
        let filled = (p.done.min(p.target) * width)
            .checked_div(p.target)
            .unwrap_or(0);
        vec![
            Line::from(vec![
                Span::styled("records   ", theme.title.add_modifier(Modifier::BOLD)),
                Span::styled(
                    format!("{}/{}  ", p.done.min(p.target), p.target),
                    theme.foreground,
                ),
                Span::styled("█".repeat(filled), theme.success),
                Span::styled("░".repeat(width - filled), theme.muted),
            ]),
            Line::from(format!(
                "written {} · failed {} · retries {} · rejected {} · duplicates {}",
                p.written, p.failed, p.retries, p.rejected, p.duplicates
            )),
            Line::from(format!(
                "tokens    {} in · {} out",
                p.tokens.input, p.tokens.output
            )),
        ]
    }

    fn progress_lines(&self, theme: &Theme) -> Vec<Line<'static>> {
        let p = &self.progress;
        let mut lines = vec![Line::styled(
            if p.source.is_empty() {
                "starting…".to_string()
            } else {
                format!("from {}", clean(&p.source))
            },
            theme.muted,
        )];
        lines.push(Line::default());
        lines.extend(self.counts(theme));
        if let Some(last) = &p.last {
            lines.push(Line::styled(clean(last), theme.warning));
        }
        lines.push(Line::default());
        lines.push(Line::styled(
            if self.cancelling() {
                "stopping…"
            } else {
                "Esc stops (records written are kept; start again to resume)"
            },
            theme.info,
        ));
        lines
    }

    fn report_lines(
        &self,
        result: &Result<Box<Report>, String>,
        theme: &Theme,
    ) -> Vec<Line<'static>> {
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                return vec![
                    Line::styled(format!("cannot synthesize: {}", clean(e)), theme.error),
                    Line::default(),
                    Line::styled("Enter or Esc: back to the form", theme.info),
                ]
            }
        };
        let (what, style) = if r.cancelled {
            ("stopped", theme.warning)
        } else if r.stopped.is_some() {
            ("refused", theme.error)
        } else if r.complete() {
            ("done", theme.success)
        } else {
            ("incomplete", theme.warning)
        };
        let mut lines = vec![Line::styled(
            format!("{what}: {}", clean(&r.headline())),
            style,
        )];
        lines.push(Line::default());
        lines.extend(self.counts(theme));
        lines.push(Line::from(format!(
            "requests {} · request errors {} · {:.1}s",
            r.requests, r.request_errors, r.seconds
        )));
        if r.rejected > 0 {
            lines.push(Line::styled(
                format!("turned-away output logged to {}", r.rejected_log.display()),
                theme.muted,
            ));
        }
        if let Some(why) = &r.stopped {
            lines.push(Line::styled(
                format!("stopped: {}", clean(why)),
                theme.error,
            ));
        }
        for e in r.errors.iter().take(3) {
            lines.push(Line::styled(
                format!("error: {}", clean(&e.to_string())),
                theme.error,
            ));
        }
        lines.push(Line::default());
        lines.push(Line::styled(
            "Enter or Esc closes (the Data tab shows the file)",
            theme.info,
        ));
        lines
    }
}
