//! Chat tab: a model plus up to two adapters (a run's adapter or checkpoint, or any PEFT
//! folder) on one frozen base, replies streamed from a generation thread, the adapter
//! switchable, any two of base, adapter A and adapter B side by side (SFT against SFT+DPO on
//! one prompt), sampling settings, a system prompt, and "save this exchange to a dataset". The
//! model loads, the lists of models, adapters and save targets are read, and exchanges are
//! saved on worker threads; tokens arrive through the background channel as they are made.
//! A remote OpenAI-compatible endpoint can answer beside them as one more column.

use super::chat_remote::{Remote, RemoteReply};
use super::{Component, Ctx};
use crate::infer::sampling::Sampling;
use crate::infer::{ChatModel, GenEvent, Voice};
use crate::tui::action::Action;
use crate::tui::effect::Effect;
use crate::tui::effect::Sink;
use crate::tui::theme::Theme;
use crate::tui::widgets::columns::{self, Column};
use crate::tui::widgets::{InputEvent, TextInput};
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What the text field is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFor {
    Message,
    System,
    /// The remote column's base URL, then its model name.
    RemoteUrl,
    RemoteModel,
}

/// Background results for this tab.
pub enum Msg {
    Loaded(Result<ChatModel, String>),
    /// A generation event of stream `id`.
    Gen(u64, GenEvent),
    /// Items for the model finder.
    Models(Vec<crate::tui::widgets::PickItem>),
    /// Every run's adapters; `advance` picks the next one for adapter A (or B).
    Adapters(Vec<(String, PathBuf)>, Option<Slot>),
    /// Files an exchange can be appended to; pick the one after the current.
    SaveTargets(Vec<(PathBuf, crate::data::Format)>),
    Saved(Result<PathBuf, String>),
    /// The remote column's reply to a prompt.
    Remote(RemoteReply),
}

/// Which adapter a pick is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

pub struct ChatTab {
    pub model_spec: String,
    /// A model picked here (`M`); otherwise the Adapter form's model is used.
    pub model_override: Option<String>,
    pub adapters: Vec<(String, PathBuf)>,
    /// Adapter A (the one single replies use) and adapter B, as indexes into `adapters`.
    pub adapter: Option<usize>,
    pub second: Option<usize>,
    pub adapter_on: bool,
    /// The two voices that answer side by side, or `None` for a single reply.
    pub pair: Option<(Voice, Voice)>,
    pub system: String,
    pub sampling: Sampling,
    /// (role, text) of the conversation so far.
    pub history: Vec<(String, String)>,
    /// Side-by-side replies to the last prompt, in the order of `pair`.
    pub compare: Option<(String, String)>,
    pub model: Option<ChatModel>,
    /// The text field and what it is for (the tab starts in the message field).
    pub input: Option<(InputFor, TextInput)>,
    /// The model finder, while it is open.
    pub finder: Option<crate::tui::widgets::Picker>,
    /// Training files the user agreed to append exchanges to.
    confirmed: std::collections::HashSet<PathBuf>,
    /// A save waiting for that agreement.
    confirm: Option<PathBuf>,
    loading: bool,
    /// The stream being received: its id and whose reply it is.
    stream: Option<(u64, Voice)>,
    next_stream_id: u64,
    queued: Vec<Voice>,
    pub status: String,
    /// Where "save exchange" appends, and in which format.
    pub save_path: PathBuf,
    pub save_format: crate::data::Format,
    default_save: PathBuf,
    /// Delivers generation events to this tab from the generation thread.
    sink: Sink<Msg>,
    /// The remote column (`R`), answering every prompt beside the local model.
    pub remote: Option<Remote>,
    /// The remote's base URL while its model name is asked for.
    remote_url: Option<String>,
    /// Columns added so far, to number the next one.
    remotes: u64,
}

/// SFT JSONL files in the workspace that exchanges can be appended to, with their formats;
/// `default` (OpenAI format) first.
pub fn save_targets(root: &Path, default: &Path) -> Vec<(PathBuf, crate::data::Format)> {
    let mut out = vec![(default.to_path_buf(), crate::data::Format::Openai)];
    for p in crate::workspace::datasets(root, 6) {
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

fn adapters_job(runs_root: PathBuf, advance: Option<Slot>) -> Effect<Msg> {
    Effect::spawn(move || Msg::Adapters(find_adapters(&runs_root), advance))
}

impl ChatTab {
    pub fn new(model_spec: String, save_path: PathBuf, sink: Sink<Msg>) -> Self {
        ChatTab {
            model_spec,
            model_override: None,
            adapter: None,
            second: None,
            adapters: Vec::new(),
            adapter_on: true,
            pair: None,
            system: String::new(),
            sampling: Sampling {
                max_new_tokens: 128,
                ..Sampling::default()
            },
            history: Vec::new(),
            compare: None,
            model: None,
            input: Some((InputFor::Message, TextInput::default())),
            finder: None,
            confirmed: Default::default(),
            confirm: None,
            loading: false,
            stream: None,
            next_stream_id: 0,
            queued: Vec::new(),
            status: String::new(),
            default_save: save_path.clone(),
            save_path,
            save_format: crate::data::Format::Openai,
            sink,
            remote: None,
            remote_url: None,
            remotes: 0,
        }
    }

    /// Reads the adapter list (at start, and when runs appear).
    pub fn start(&mut self, runs_root: &Path) -> Effect<Msg> {
        adapters_job(runs_root.to_path_buf(), None)
    }

    pub fn busy(&self) -> bool {
        self.loading || self.stream.is_some() || self.remote.as_ref().is_some_and(Remote::busy)
    }

    pub fn adapter_path(&self) -> Option<&Path> {
        self.adapter
            .and_then(|i| self.adapters.get(i))
            .map(|(_, p)| p.as_path())
    }

    pub fn second_path(&self) -> Option<&Path> {
        self.second
            .and_then(|i| self.adapters.get(i))
            .map(|(_, p)| p.as_path())
    }

    /// What a voice is called in titles: `base`, or the adapter's run and step.
    pub fn voice_label(&self, v: Voice) -> String {
        let name = |i: Option<usize>| {
            i.and_then(|i| self.adapters.get(i))
                .map_or("none".to_string(), |(l, _)| l.clone())
        };
        match v {
            Voice::Base => "base".into(),
            Voice::Adapter => format!("A {}", name(self.adapter)),
            Voice::Second => format!("B {}", name(self.second)),
        }
    }

    /// The next side-by-side pairing: base|A, then base|B and A|B once B is picked, then
    /// single replies again.
    pub fn next_pair(&mut self) {
        let mut options = vec![None, Some((Voice::Base, Voice::Adapter))];
        if self.second.is_some() {
            options.push(Some((Voice::Base, Voice::Second)));
            options.push(Some((Voice::Adapter, Voice::Second)));
        }
        let i = options.iter().position(|o| *o == self.pair).unwrap_or(0);
        self.pair = options[(i + 1) % options.len()];
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
            Some(m) => {
                m.adapter.as_deref() != self.adapter_path()
                    || m.second_path() != self.second_path()
                    || m.spec != self.model_spec
            }
        }
    }

    /// Sends a user message: loads the model first when needed (on a worker, after checking
    /// that it fits in free memory), then streams the reply (or both, side by side).
    pub fn send(
        &mut self,
        text: String,
        model: &str,
        training_active: bool,
    ) -> Option<Effect<Msg>> {
        if self.busy() {
            self.status = "still answering; wait for the reply".into();
            return None;
        }
        self.model_spec = self
            .model_override
            .clone()
            .unwrap_or_else(|| model.to_string());
        let remote = self.ask_remote(&text);
        self.history.push(("user".into(), text));
        self.compare = None;
        if !self.needs_load() {
            self.start_replies();
            return remote;
        }
        let (spec, adapter, second) = (
            self.model_spec.clone(),
            self.adapter_path().map(Path::to_path_buf),
            self.second_path().map(Path::to_path_buf),
        );
        self.loading = true;
        self.status = format!("loading {}…", self.model_spec);
        let load = Effect::spawn(move || {
            Msg::Loaded(load_checked(
                &spec,
                adapter.as_deref(),
                second.as_deref(),
                training_active,
            ))
        });
        Some(Effect::Batch(remote.into_iter().chain([load]).collect()))
    }

    /// The remote column's request for `prompt`, on a worker, when there is a column.
    fn ask_remote(&mut self, prompt: &str) -> Option<Effect<Msg>> {
        let remote = self.remote.as_mut()?;
        let job = remote.ask(
            &self.system,
            prompt,
            self.sampling.max_new_tokens as u32,
            self.sampling.temperature,
        );
        Some(Effect::spawn(move || Msg::Remote(job())))
    }

    /// `R`: asks for a remote column's URL (then its model), or removes the column.
    fn toggle_remote(&mut self) -> Option<Effect<Msg>> {
        if self.remote.take().is_some() {
            return Some(Effect::info("remote column removed"));
        }
        let url = self
            .remote_url
            .take()
            .unwrap_or_else(|| "http://127.0.0.1:8000/v1".into());
        self.input = Some((InputFor::RemoteUrl, TextInput::new(url)));
        None
    }

    /// Who answers when replies are not side by side.
    pub fn single_voice(&self) -> Voice {
        if self.adapter_on && self.adapter.is_some() {
            Voice::Adapter
        } else {
            Voice::Base
        }
    }

    fn start_replies(&mut self) {
        self.queued = match self.pair {
            Some((l, r)) => {
                self.compare = Some((String::new(), String::new()));
                vec![l, r]
            }
            None => vec![self.single_voice()],
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
        self.next_stream_id += 1;
        let id = self.next_stream_id;
        let out = self.sink.clone();
        match model.reply_with(&self.messages(), target, self.sampling.clone(), move |e| {
            out(Msg::Gen(id, e))
        }) {
            Ok(()) => {
                if self.pair.is_none() {
                    self.history.push(("assistant".into(), String::new()));
                }
                self.stream = Some((id, target));
                self.status = format!("answering ({})…", self.voice_label(target));
            }
            Err(e) => self.status = format!("error: {e}"),
        }
    }

    fn on_gen(&mut self, id: u64, e: GenEvent) {
        let Some((current, target)) = self.stream else {
            return;
        };
        if current != id {
            return;
        }
        match e {
            GenEvent::Text(t) => match (&mut self.compare, self.pair) {
                (Some((l, _)), Some((first, _))) if first == target => l.push_str(&t),
                (Some((_, r)), Some(_)) => r.push_str(&t),
                _ => {
                    if let Some((_, last)) = self.history.last_mut() {
                        last.push_str(&t);
                    }
                }
            },
            GenEvent::Done {
                tokens, seconds, ..
            } => {
                self.status = format!(
                    "{tokens} tokens in {seconds:.2}s ({:.1} tok/s)",
                    tokens as f64 / seconds.max(1e-9)
                );
                self.stream = None;
                if self.queued.is_empty() {
                    if let Some((_, a)) = self.compare.clone() {
                        self.history.push(("assistant".into(), a));
                    }
                }
                self.next_stream();
            }
            GenEvent::Error(e) => {
                self.status = format!("error: {e}");
                self.stream = None;
            }
        }
    }

    /// The last exchange (system, user, assistant) as a record in the save target's format.
    fn exchange(&self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
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
        self.save_format.write(&record, &mut notes)
    }

    /// Appends the last exchange to the save target, on a worker. A training dataset of the
    /// workspace needs a second `w` the first time, so exchanges never slip into training
    /// data by accident.
    fn save_exchange(&mut self) -> Effect<Msg> {
        let obj = match self.exchange() {
            Ok(o) => o,
            Err(e) => return Effect::warn(e),
        };
        if self.save_path != self.default_save && !self.confirmed.contains(&self.save_path) {
            if self.confirm.as_ref() != Some(&self.save_path) {
                self.confirm = Some(self.save_path.clone());
                return Effect::warn(format!(
                    "{} is a training dataset: press w again to append this exchange to it",
                    self.save_path.display()
                ));
            }
            self.confirmed.insert(self.save_path.clone());
        }
        self.confirm = None;
        let path = self.save_path.clone();
        Effect::spawn(move || Msg::Saved(append_line(&path, &obj)))
    }

    fn act(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        if a != Action::SaveExchange {
            self.confirm = None;
        }
        match a {
            Action::Compose | Action::Enter => {
                self.input = Some((InputFor::Message, TextInput::default()))
            }
            Action::SystemPrompt => {
                self.input = Some((InputFor::System, TextInput::new(self.system.clone())))
            }
            Action::ToggleAdapter => self.adapter_on = !self.adapter_on,
            Action::SideBySide => self.next_pair(),
            Action::PickAdapter => return Some(adapters_job(ctx.ws.runs_root(), Some(Slot::A))),
            Action::PickSecondAdapter => {
                return Some(adapters_job(ctx.ws.runs_root(), Some(Slot::B)))
            }
            Action::PickModel => {
                self.finder = Some(crate::tui::widgets::Picker::loading(
                    "chat model: workspace and Hugging Face cache",
                    "type to filter · Enter picks · a typed org/name or path is taken as it is · Esc",
                    true,
                ));
                let ws = ctx.ws.clone();
                return Some(Effect::spawn(move || {
                    Msg::Models(crate::tui::model_list::model_items(
                        &ws.models(),
                        4.0,
                        "f32",
                    ))
                }));
            }
            Action::TemperatureUp => {
                self.sampling.temperature =
                    ((self.sampling.temperature + 0.1) * 10.0).round() / 10.0
            }
            Action::TemperatureDown => {
                self.sampling.temperature =
                    ((self.sampling.temperature - 0.1).max(0.0) * 10.0).round() / 10.0
            }
            Action::ClearChat => {
                self.history.clear();
                self.compare = None;
                if let Some(r) = self.remote.as_mut() {
                    r.clear();
                }
            }
            Action::RemoteColumn => return self.toggle_remote(),
            Action::TopP => {
                self.sampling.top_p = match self.sampling.top_p {
                    None => Some(0.9),
                    Some(p) if p < 0.925 => Some(0.95),
                    _ => None,
                }
            }
            Action::TopK => {
                self.sampling.top_k = match self.sampling.top_k {
                    None => Some(20),
                    Some(20) => Some(50),
                    _ => None,
                }
            }
            Action::MaxTokens => {
                self.sampling.max_new_tokens = match self.sampling.max_new_tokens {
                    n if n < 128 => 128,
                    n if n < 256 => 256,
                    n if n < 512 => 512,
                    _ => 64,
                }
            }
            Action::SaveTarget => {
                let (root, default) = (ctx.ws.root.clone(), self.default_save.clone());
                return Some(Effect::spawn(move || {
                    Msg::SaveTargets(save_targets(&root, &default))
                }));
            }
            Action::SaveExchange => return Some(self.save_exchange()),
            _ => {}
        }
        None
    }
}

/// Loads a chat model after checking that it fits in free memory; worker threads only.
fn load_checked(
    spec: &str,
    adapter: Option<&Path>,
    second: Option<&Path>,
    training_active: bool,
) -> Result<ChatModel, String> {
    let need = crate::model::ModelConfig::from_file(&Path::new(spec).join("config.json"))
        .ok()
        .map(|c| c.parameter_count() as u64 * 4);
    if let (Some(need), Some((_, avail))) = (need, crate::telemetry::system_memory()) {
        if need > avail {
            return Err(format!(
                "will not fit: the model needs about {} and {} is free{}",
                crate::units::bytes(need),
                crate::units::bytes(avail),
                if training_active {
                    " while a run trains"
                } else {
                    ""
                }
            ));
        }
    }
    let mut m = ChatModel::load(spec, adapter, "model")?;
    m.set_second(second)?;
    Ok(m)
}

/// Appends one JSON line to `path` (creating its folder); worker threads only.
fn append_line(
    path: &Path,
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<PathBuf, String> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{}", serde_json::Value::Object(obj.clone()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

impl Component for ChatTab {
    type Msg = Msg;

    fn editing(&self) -> bool {
        self.input.is_some() || self.finder.is_some()
    }

    fn key(&mut self, key: &KeyEvent, ctx: &Ctx) -> Option<Effect<Msg>> {
        if let Some(f) = self.finder.as_mut() {
            use crate::tui::widgets::Picked;
            match f.key(key) {
                Picked::Item(m) | Picked::Typed(m) => {
                    self.finder = None;
                    self.model_spec = m;
                    self.model_override =
                        (self.model_spec != ctx.model).then(|| self.model_spec.clone());
                    return Some(Effect::info(format!("chat model: {}", self.model_spec)));
                }
                Picked::Cancel => self.finder = None,
                Picked::Pending => {}
            }
            return None;
        }
        let (_, input) = self.input.as_mut()?;
        match input.handle(key) {
            InputEvent::Submit => {
                let (what, input) = self.input.take()?;
                let text = input.into_value();
                match what {
                    InputFor::Message if !text.trim().is_empty() => {
                        return self.send(text, ctx.model, ctx.training)
                    }
                    InputFor::Message => {}
                    InputFor::System => self.system = text,
                    InputFor::RemoteUrl => {
                        self.remote_url = Some(text.trim().to_string());
                        self.input = Some((InputFor::RemoteModel, TextInput::default()));
                    }
                    InputFor::RemoteModel => {
                        let url = self.remote_url.clone().unwrap_or_default();
                        self.remotes += 1;
                        return Some(match Remote::new(self.remotes, &url, &text) {
                            Ok(r) => {
                                let title = r.title();
                                self.remote = Some(r);
                                Effect::info(format!("{title} answers beside the local model"))
                            }
                            Err(e) => Effect::error(format!("remote column: {e}")),
                        });
                    }
                }
            }
            InputEvent::Cancel => self.input = None,
            _ => {}
        }
        None
    }

    fn handle(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        self.act(a, ctx)
    }

    fn update(&mut self, msg: Msg, _ctx: &Ctx) -> Option<Effect<Msg>> {
        match msg {
            Msg::Loaded(Ok(m)) => {
                self.model = Some(m);
                self.loading = false;
                self.status = "loaded".into();
                self.start_replies();
            }
            Msg::Loaded(Err(e)) => {
                self.loading = false;
                self.status = if e.starts_with("will not fit") {
                    e
                } else {
                    format!("cannot load the model: {e}")
                };
            }
            Msg::Gen(id, e) => self.on_gen(id, e),
            Msg::Models(items) => {
                if let Some(f) = self.finder.as_mut() {
                    f.set_items(items);
                }
            }
            Msg::Adapters(list, advance) => {
                let a = self.adapter_path().map(Path::to_path_buf);
                let b = self.second_path().map(Path::to_path_buf);
                self.adapters = list;
                let at = |c: Option<PathBuf>| {
                    c.and_then(|c| self.adapters.iter().position(|(_, p)| *p == c))
                };
                let (at_a, at_b) = (at(a), at(b));
                let n = self.adapters.len();
                // A starts on the newest adapter; B only when asked for. Advancing past the
                // last one leaves the slot empty.
                let next = |cur: Option<usize>, advance: bool, start: bool| match (cur, advance) {
                    _ if n == 0 => None,
                    (None, false) => start.then_some(0),
                    (None, true) => Some(0),
                    (Some(i), false) => Some(i),
                    (Some(i), true) => (i + 1 < n).then_some(i + 1),
                };
                self.adapter = next(at_a, advance == Some(Slot::A), true);
                self.second = next(at_b, advance == Some(Slot::B), false);
                // B compares against A: it skips A's adapter.
                if advance == Some(Slot::B) && self.second.is_some() && self.second == self.adapter
                {
                    self.second = next(self.second, true, false);
                }
                if self.second.is_none() && matches!(self.pair, Some((_, Voice::Second))) {
                    self.pair = Some((Voice::Base, Voice::Adapter));
                }
                if let Some(slot) = advance {
                    let (v, name) = match slot {
                        Slot::A => (Voice::Adapter, "adapter A"),
                        Slot::B => (Voice::Second, "adapter B"),
                    };
                    return Some(Effect::info(format!("{name}: {}", self.voice_label(v))));
                }
            }
            Msg::SaveTargets(targets) => {
                let i = targets
                    .iter()
                    .position(|(p, _)| *p == self.save_path)
                    .map_or(0, |i| (i + 1) % targets.len());
                (self.save_path, self.save_format) = targets[i].clone();
                return Some(Effect::info(format!(
                    "exchanges go to {} ({})",
                    self.save_path.display(),
                    self.save_format
                )));
            }
            Msg::Saved(Ok(p)) => return Some(Effect::info(format!("appended to {}", p.display()))),
            Msg::Saved(Err(e)) => return Some(Effect::warn(e)),
            Msg::Remote(r) => {
                if let Some(remote) = self.remote.as_mut() {
                    remote.receive(r);
                }
            }
        }
        None
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let input = self.input.as_ref().map(|(_, i)| i.display());
        draw(f, area, self, ctx.theme, input.as_deref());
        if let Some(finder) = &self.finder {
            finder.draw(f, area, ctx.theme);
        }
    }
}

fn voice_short(v: Voice) -> &'static str {
    match v {
        Voice::Base => "base",
        Voice::Adapter => "A",
        Voice::Second => "B",
    }
}

fn transcript<'a>(history: &[(String, String)], theme: &Theme) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    for (role, text) in history {
        let style = if role == "user" {
            theme.user
        } else {
            theme.assistant
        };
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

fn draw(f: &mut Frame, area: Rect, t: &ChatTab, theme: &Theme, input: Option<&str>) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(3),
        Constraint::Length(3),
    ])
    .areas(area);
    let mut adapters = vec![
        Span::raw("adapter "),
        Span::styled(t.voice_label(Voice::Adapter), theme.accent),
        Span::raw(format!(" [{}]", if t.adapter_on { "on" } else { "off" })),
    ];
    if t.second.is_some() {
        adapters.push(Span::raw("  "));
        adapters.push(Span::styled(t.voice_label(Voice::Second), theme.accent));
    }
    let info = vec![
        Line::from(vec![
            Span::raw("model   "),
            Span::styled(crate::units::truncate(&t.model_spec, 60), theme.accent),
        ]),
        Line::from(adapters),
        Line::from(format!(
            "{}  temp {:.1}  top-p {}  top-k {}  max {}",
            match t.pair {
                Some((l, r)) => format!("side by side: {} | {}", voice_short(l), voice_short(r)),
                None => "single".into(),
            },
            t.sampling.temperature,
            t.sampling.top_p.map_or("off".into(), |p| p.to_string()),
            t.sampling.top_k.map_or("off".into(), |k| k.to_string()),
            t.sampling.max_new_tokens
        )),
        Line::styled(
            format!(
                "saves to {} ({})",
                crate::units::truncate(&t.save_path.display().to_string(), 70),
                t.save_format
            ),
            theme.muted,
        ),
    ];
    f.render_widget(
        Paragraph::new(info).block(Block::default().borders(Borders::ALL).title(" chat ")),
        head,
    );
    // Replies side by side: a pair of local voices, and the remote column when there is one.
    let col = |text: &str, title: String, style, body| Column {
        title: format!(" {title} "),
        style,
        lines: text
            .split('\n')
            .map(|l| Line::styled(l.to_string(), body))
            .collect(),
    };
    let mut cols = Vec::new();
    match (&t.compare, t.pair) {
        (Some((left, right)), Some((lv, rv))) => {
            cols.push(col(
                left,
                t.voice_label(lv),
                theme.foreground,
                theme.foreground,
            ));
            cols.push(col(
                right,
                t.voice_label(rv),
                theme.accent,
                theme.foreground,
            ));
        }
        _ if t.remote.is_some() => {
            let reply = match t.history.last() {
                Some((role, text)) if role == "assistant" => text.as_str(),
                _ => "",
            };
            let v = t.single_voice();
            cols.push(col(
                reply,
                t.voice_label(v),
                theme.foreground,
                theme.foreground,
            ));
        }
        _ => {}
    }
    if let Some(r) = &t.remote {
        let text = r.last_text();
        let body = if text.starts_with("error: ") {
            theme.error
        } else {
            theme.foreground
        };
        cols.push(col(&text, r.title(), theme.info, body));
    }
    match cols.len() {
        2.. => {
            // The prompt above, the replies beside each other.
            let prompt = t
                .history
                .iter()
                .rev()
                .find(|(r, _)| r == "user")
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let head = if prompt.is_empty() {
                Vec::new()
            } else {
                vec![Line::from(vec![
                    Span::styled("user       ", theme.user.add_modifier(Modifier::BOLD)),
                    Span::raw(prompt),
                ])]
            };
            let block = Block::default()
                .borders(Borders::ALL)
                .title(" side by side ");
            let inner = block.inner(body);
            f.render_widget(block, body);
            columns::draw(f, inner, head, cols, theme);
        }
        _ => {
            let mut lines = transcript(&t.history, theme);
            if lines.is_empty() {
                let adapter = if t.adapters.is_empty() {
                    "No adapter yet: train one (2 for the form, then r); A picks one when runs have them."
                } else {
                    "A picks another adapter, B a second one; t turns A off; b puts two side by side (base | A, base | B, A | B)."
                };
                lines = vec![
                    Line::styled("Type a question and press Enter; Esc leaves the field (i comes back).", theme.muted),
                    Line::styled("The model is the Adapter form's; M finds another in the workspace or the Hugging Face cache.", theme.muted),
                    Line::styled(adapter, theme.muted),
                ];
            }
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
        Some(s) => (format!("› {s}"), theme.foreground),
        None => (
            if t.status.is_empty() {
                "i: write a message · t: adapter on/off · b: side by side · A/B: adapters"
                    .to_string()
            } else {
                t.status.clone()
            },
            theme.muted,
        ),
    };
    // The remote column's questions say what they ask for.
    let title = match t.input.as_ref().map(|(w, _)| *w) {
        Some(InputFor::RemoteUrl) => {
            " remote column: base URL of an OpenAI-compatible server (…/v1) · Enter · Esc "
        }
        Some(InputFor::RemoteModel) => {
            " remote column: model name (empty: the server's first) · Enter · Esc "
        }
        _ => "",
    };
    f.render_widget(
        Paragraph::new(text)
            .style(style)
            .block(Block::default().borders(Borders::ALL).title(title)),
        foot,
    );
}
