//! The workbench state and its one entry point for input: `handle(Action)`. Keys become
//! actions through the keymap; tests drive the app with actions alone, no terminal.

use super::action::Action;
use super::keymap::Keymap;
use super::tabs::adapter::AdapterTab;
use super::tabs::chat::ChatTab;
use super::tabs::data::{DataTab, View};
use super::tabs::runs::RunsTab;
use super::tabs::train::{MemoryMonitor, RunView, TrainTab};
use super::tabs::Tab;
use super::theme::Theme;
use crate::runs::RunDir;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the workbench reads and writes.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The data folder: datasets, demo/, runs/, presets/, configs/.
    pub data: PathBuf,
    /// The `tunelab` binary that detached runs are started with.
    pub exe: PathBuf,
}

impl Workspace {
    pub fn runs_root(&self) -> PathBuf {
        crate::runs::runs_root(&self.data)
    }
}

/// A text field being typed into, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFor {
    Search,
    Message,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help { scroll: u16 },
    Palette { query: String, selected: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

pub struct App {
    pub tab: Tab,
    pub theme: Theme,
    pub keymap: Keymap,
    pub ws: Workspace,
    pub overlay: Overlay,
    pub input: Option<(InputFor, String)>,
    pub message: Option<(Level, String)>,
    pub quit: bool,
    pub data: DataTab,
    pub adapter: AdapterTab,
    pub train: TrainTab,
    pub chat: ChatTab,
    pub runs: RunsTab,
    last_slow_tick: Instant,
    /// Something changed since the last frame.
    pub dirty: bool,
}

impl App {
    pub fn new(ws: Workspace, theme: Theme, keymap: Keymap) -> App {
        let adapter = AdapterTab::new(&ws.data);
        let model = adapter.model_path();
        let runs = RunsTab::new(&ws.runs_root());
        let view = runs.runs.first().map(|r| RunView::new(RunDir::new(&r.dir)));
        App {
            tab: Tab::Data,
            theme,
            keymap,
            data: DataTab::new(&ws.data),
            chat: ChatTab::new(
                model,
                &ws.runs_root(),
                ws.data.join("saved/chat-exchanges.jsonl"),
            ),
            train: TrainTab {
                view,
                memory: MemoryMonitor::new(),
            },
            adapter,
            runs,
            ws,
            overlay: Overlay::None,
            input: None,
            message: None,
            quit: false,
            last_slow_tick: Instant::now(),
            dirty: true,
        }
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        self.message = Some((level, text.into()));
    }

    /// A key from the terminal: text input and the palette take keys first, then the keymap.
    pub fn on_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if let Some((_, buf)) = self.input.as_mut() {
            match key.code {
                KeyCode::Enter => self.submit_input(),
                KeyCode::Esc => self.input = None,
                KeyCode::Backspace => {
                    buf.pop();
                }
                KeyCode::Char(c) => buf.push(c),
                _ => {}
            }
            return;
        }
        if self.tab == Tab::Adapter && self.adapter.editing.is_some() {
            match key.code {
                KeyCode::Enter if !self.adapter.commit_edit() => {
                    self.say(
                        Level::Error,
                        self.adapter.edit_error.clone().unwrap_or_default(),
                    );
                }
                KeyCode::Esc => {
                    self.adapter.editing = None;
                    self.adapter.edit_error = None;
                }
                KeyCode::Backspace => {
                    if let Some(b) = self.adapter.editing.as_mut() {
                        b.pop();
                    }
                    self.adapter.check_edit();
                }
                KeyCode::Char(c) => {
                    if let Some(b) = self.adapter.editing.as_mut() {
                        b.push(c);
                    }
                    self.adapter.check_edit();
                }
                _ => {}
            }
            return;
        }
        if let Overlay::Palette { query, selected } = &mut self.overlay {
            match key.code {
                KeyCode::Esc => self.overlay = Overlay::None,
                KeyCode::Enter => {
                    let matches = palette_matches(query);
                    if let Some(a) = matches.get(*selected).copied() {
                        self.overlay = Overlay::None;
                        self.handle(a);
                    }
                }
                KeyCode::Up => *selected = selected.saturating_sub(1),
                KeyCode::Down => *selected += 1,
                KeyCode::Backspace => {
                    query.pop();
                    *selected = 0;
                }
                KeyCode::Char(c) => {
                    query.push(c);
                    *selected = 0;
                }
                _ => {}
            }
            return;
        }
        if let Some(a) = self.keymap.action(self.tab, &key) {
            self.handle(a);
        }
    }

    fn submit_input(&mut self) {
        let Some((what, text)) = self.input.take() else {
            return;
        };
        match what {
            InputFor::Search => {
                self.data.search = text;
                if !self.data.search_next() {
                    self.say(
                        Level::Warning,
                        format!("no record contains {:?}", self.data.search),
                    );
                }
            }
            InputFor::Message => {
                if !text.trim().is_empty() {
                    let training = self.training_active();
                    self.chat.model_spec = self
                        .chat
                        .model_override
                        .clone()
                        .unwrap_or_else(|| self.adapter.model_path());
                    self.chat.send(text, training);
                }
            }
            InputFor::System => self.chat.system = text,
        }
    }

    fn training_active(&self) -> bool {
        self.train
            .view
            .as_ref()
            .and_then(|v| v.status.as_ref())
            .is_some_and(|s| !s.state.is_final())
    }

    /// Does one action.
    pub fn handle(&mut self, a: Action) {
        self.dirty = true;
        if let Overlay::Help { scroll } = &mut self.overlay {
            match a {
                Action::Down => *scroll = scroll.saturating_add(1),
                Action::Up => *scroll = scroll.saturating_sub(1),
                Action::Quit => self.quit = true,
                _ => self.overlay = Overlay::None,
            }
            return;
        }
        match a {
            Action::Quit => self.quit = true,
            Action::Help => self.overlay = Overlay::Help { scroll: 0 },
            Action::Palette => {
                self.overlay = Overlay::Palette {
                    query: String::new(),
                    selected: 0,
                }
            }
            Action::NextTab => self.tab = Tab::ALL[(self.tab.index() + 1) % 5],
            Action::PrevTab => self.tab = Tab::ALL[(self.tab.index() + 4) % 5],
            Action::TabData => self.tab = Tab::Data,
            Action::TabAdapter => self.tab = Tab::Adapter,
            Action::TabTrain => self.tab = Tab::Train,
            Action::TabChat => self.tab = Tab::Chat,
            Action::TabRuns => self.tab = Tab::Runs,
            Action::Back => {
                self.overlay = Overlay::None;
                self.adapter.picker = None;
                self.data.convert = None;
                self.runs.compare = None;
                self.message = None;
            }
            Action::StartRun => self.start_run(),
            Action::StopRun => self.stop_run(),
            _ => match self.tab {
                Tab::Data => self.data_action(a),
                Tab::Adapter => self.adapter_action(a),
                Tab::Train => self.train_action(a),
                Tab::Chat => self.chat_action(a),
                Tab::Runs => self.runs_action(a),
            },
        }
    }

    fn data_action(&mut self, a: Action) {
        let d = &mut self.data;
        let n = d.targets().len().max(1);
        if let Some(sel) = d.convert.as_mut() {
            match a {
                Action::Left | Action::Up => *sel = (*sel + n - 1) % n,
                Action::Right | Action::Down => *sel = (*sel + 1) % n,
                Action::Enter => match d.run_convert() {
                    Ok(m) => self.say(Level::Info, m),
                    Err(e) => self.say(Level::Error, e),
                },
                _ => {}
            }
            return;
        }
        match a {
            Action::Down => d.move_record(1),
            Action::Up => d.move_record(-1),
            Action::PageDown => d.move_record(10),
            Action::PageUp => d.move_record(-10),
            Action::Top => d.move_record(-(1 << 30)),
            Action::Bottom => d.move_record(1 << 30),
            Action::Left => d.select_file(-1),
            Action::Right => d.select_file(1),
            Action::Enter if d.view == View::Problems => d.jump_to_problem(),
            Action::TokenView => {
                d.view = if d.view == View::Tokens {
                    View::Text
                } else {
                    View::Tokens
                }
            }
            Action::Validation => {
                d.view = if d.view == View::Problems {
                    View::Text
                } else {
                    View::Problems
                }
            }
            Action::Search => self.input = Some((InputFor::Search, String::new())),
            Action::SearchNext if !d.search_next() => self.say(Level::Warning, "no match"),
            Action::Convert => {
                if d.targets().is_empty() {
                    self.say(Level::Warning, "nothing to convert to");
                } else {
                    d.convert = Some(0);
                }
            }
            _ => {}
        }
    }

    fn adapter_action(&mut self, a: Action) {
        let t = &mut self.adapter;
        match a {
            Action::Down => t.move_sel(1),
            Action::Up => t.move_sel(-1),
            Action::Top => t.move_sel(-1000),
            Action::Bottom => t.move_sel(1000),
            Action::Enter | Action::Edit if t.picker.is_none() => t.begin_edit(),
            Action::Toggle | Action::Enter => {
                if t.picker.is_some() {
                    t.toggle_module();
                } else {
                    t.begin_edit();
                }
            }
            Action::LoadPreset => {
                let m = t.load_next_preset();
                self.say(Level::Info, m);
            }
            Action::SavePreset => match t.save_preset() {
                Ok(p) => self.say(Level::Info, format!("saved {}", p.display())),
                Err(e) => self.say(Level::Error, e),
            },
            _ => {}
        }
    }

    fn train_action(&mut self, a: Action) {
        if a == Action::AttachNext {
            self.runs.refresh(&self.ws.runs_root());
            let cur = self.train.view.as_ref().map(|v| v.run.root.clone());
            let runs = &self.runs.runs;
            if runs.is_empty() {
                self.say(Level::Warning, "no runs to attach to");
                return;
            }
            let i = cur
                .and_then(|c| runs.iter().position(|r| r.dir == c))
                .map_or(0, |i| (i + 1) % runs.len());
            self.train.view = Some(RunView::new(RunDir::new(&runs[i].dir)));
            self.say(Level::Info, format!("attached to {}", runs[i].id));
        }
    }

    fn chat_action(&mut self, a: Action) {
        let c = &mut self.chat;
        match a {
            Action::Compose | Action::Enter => {
                self.input = Some((InputFor::Message, String::new()))
            }
            Action::SystemPrompt => self.input = Some((InputFor::System, c.system.clone())),
            Action::ToggleAdapter => c.adapter_on = !c.adapter_on,
            Action::SideBySide => c.side_by_side = !c.side_by_side,
            Action::PickAdapter => c.next_adapter(&self.ws.runs_root()),
            Action::PickModel => {
                let form = self.adapter.model_path();
                let mut models = vec![form.clone()];
                for m in super::tabs::chat::find_models(&self.ws.data) {
                    if !models.contains(&m) {
                        models.push(m);
                    }
                }
                let i = models
                    .iter()
                    .position(|m| *m == c.model_spec)
                    .map_or(0, |i| (i + 1) % models.len());
                c.model_spec = models[i].clone();
                c.model_override = (c.model_spec != form).then(|| c.model_spec.clone());
                let msg = format!("chat model: {}", c.model_spec);
                self.say(Level::Info, msg);
            }
            Action::TemperatureUp => {
                c.sampling.temperature = ((c.sampling.temperature + 0.1) * 10.0).round() / 10.0
            }
            Action::TemperatureDown => {
                c.sampling.temperature =
                    ((c.sampling.temperature - 0.1).max(0.0) * 10.0).round() / 10.0
            }
            Action::ClearChat => {
                c.history.clear();
                c.compare = None;
            }
            Action::TopP => {
                c.sampling.top_p = match c.sampling.top_p {
                    None => Some(0.9),
                    Some(p) if p < 0.925 => Some(0.95),
                    _ => None,
                }
            }
            Action::TopK => {
                c.sampling.top_k = match c.sampling.top_k {
                    None => Some(20),
                    Some(20) => Some(50),
                    _ => None,
                }
            }
            Action::MaxTokens => {
                c.sampling.max_new_tokens = match c.sampling.max_new_tokens {
                    n if n < 128 => 128,
                    n if n < 256 => 256,
                    n if n < 512 => 512,
                    _ => 64,
                }
            }
            Action::SaveTarget => {
                let default = self.ws.data.join("saved/chat-exchanges.jsonl");
                let targets = super::tabs::chat::save_targets(&self.ws.data, &default);
                let i = targets
                    .iter()
                    .position(|(p, _)| *p == c.save_path)
                    .map_or(0, |i| (i + 1) % targets.len());
                (c.save_path, c.save_format) = targets[i].clone();
                let msg = format!(
                    "exchanges go to {} ({})",
                    c.save_path.display(),
                    c.save_format
                );
                self.say(Level::Info, msg);
            }
            Action::SaveExchange => match c.save_exchange() {
                Ok(p) => self.say(Level::Info, format!("appended to {}", p.display())),
                Err(e) => self.say(Level::Warning, e),
            },
            _ => {}
        }
    }

    fn runs_action(&mut self, a: Action) {
        let r = &mut self.runs;
        match a {
            Action::Down => r.move_sel(1),
            Action::Up => r.move_sel(-1),
            Action::Mark => r.toggle_mark(),
            Action::Compare => {
                if let Err(e) = r.compare() {
                    self.say(Level::Warning, e);
                }
            }
            Action::Enter => {
                if let Some(s) = r.runs.get(r.selected) {
                    self.train.view = Some(RunView::new(RunDir::new(&s.dir)));
                    self.tab = Tab::Train;
                }
            }
            Action::OpenInChat => {
                let Some(s) = r.runs.get(r.selected) else {
                    return;
                };
                let run = RunDir::new(&s.dir);
                let dir = if run.adapter().is_dir() {
                    Some(run.adapter())
                } else {
                    crate::train::checkpoint::list(&run.checkpoints())
                        .last()
                        .map(|(_, d)| d.clone())
                };
                match dir {
                    Some(d) => {
                        let label = format!(
                            "{}/{}",
                            s.id,
                            d.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        );
                        if let Ok(cfg) = crate::config::RunConfig::load(&run.config()) {
                            self.chat.model_spec = cfg.model.path.clone();
                            self.chat.model_override = Some(cfg.model.path);
                        }
                        self.chat.use_adapter(label, d);
                        self.tab = Tab::Chat;
                    }
                    None => self.say(Level::Warning, "this run has no adapter or checkpoint yet"),
                }
            }
            _ => {}
        }
    }

    /// Writes the form's config to `<data>/configs/` and starts `tunelab train --detach`.
    pub fn start_run(&mut self) {
        let mut cfg = self.adapter.config.clone();
        let issues = cfg.validate();
        if let Some(i) = issues.first() {
            self.say(Level::Error, format!("cannot start: {i}"));
            return;
        }
        let base = self.ws.data.clone();
        if let Err(e) = crate::train::trainer::resolve_paths(&mut cfg, &[base.as_path()]) {
            self.say(Level::Error, format!("cannot start: {e}"));
            return;
        }
        let name = cfg.name.clone().unwrap_or_else(|| "run".into());
        let root = self.ws.runs_root();
        let id = crate::runs::new_id(&name, &root);
        let dir = root.join(&id);
        let cfg_path = self.ws.data.join("configs").join(format!("{id}.yaml"));
        let written = std::fs::create_dir_all(cfg_path.parent().unwrap_or(&self.ws.data))
            .map_err(|e| e.to_string())
            .and_then(|_| serde_yaml::to_string(&cfg).map_err(|e| e.to_string()))
            .and_then(|y| {
                crate::data::writer::write_atomic(&cfg_path, y.as_bytes())
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            self.say(
                Level::Error,
                format!("cannot write {}: {e}", cfg_path.display()),
            );
            return;
        }
        let out = std::process::Command::new(&self.ws.exe)
            .arg("train")
            .arg(&cfg_path)
            .arg("--run-dir")
            .arg(&dir)
            .arg("--detach")
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                self.train.view = Some(RunView::new(RunDir::new(&dir)));
                self.tab = Tab::Train;
                self.say(
                    Level::Info,
                    format!("started {id} (detached: it keeps going after you quit)"),
                );
            }
            Ok(o) => self.say(
                Level::Error,
                format!(
                    "tunelab train failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            ),
            Err(e) => self.say(
                Level::Error,
                format!("cannot start {}: {e}", self.ws.exe.display()),
            ),
        }
    }

    fn stop_run(&mut self) {
        let run = match self.tab {
            Tab::Runs => self
                .runs
                .runs
                .get(self.runs.selected)
                .map(|r| RunDir::new(&r.dir)),
            _ => self.train.view.as_ref().map(|v| v.run.clone()),
        };
        let Some(run) = run else {
            self.say(Level::Warning, "no run to stop");
            return;
        };
        match crate::runs::request_stop(&run) {
            Ok(pid) => self.say(
                Level::Info,
                format!("asked pid {pid} to stop; it writes a checkpoint first"),
            ),
            Err(e) => self.say(Level::Warning, e),
        }
    }

    /// Periodic work: new run events, generation output, memory samples, the run list.
    /// Returns whether a redraw is needed.
    pub fn tick(&mut self) -> bool {
        let mut changed = std::mem::take(&mut self.dirty);
        if let Some(v) = self.train.view.as_mut() {
            changed |= v.poll();
        }
        changed |= self.chat.poll();
        if self.last_slow_tick.elapsed() >= Duration::from_secs(1) {
            self.last_slow_tick = Instant::now();
            let pid = self
                .train
                .view
                .as_ref()
                .and_then(|v| v.status.as_ref())
                .filter(|s| !s.state.is_final())
                .and_then(|s| s.pid);
            self.train.memory.sample(pid);
            changed |= self.runs.refresh(&self.ws.runs_root());
            changed |= self.tab == Tab::Train;
            if self.tab == Tab::Chat && self.chat.adapters.is_empty() && !self.chat.busy() {
                self.chat.next_adapter(&self.ws.runs_root());
            }
        }
        changed
    }
}

/// Actions whose name or description contains `query`, for the palette.
pub fn palette_matches(query: &str) -> Vec<Action> {
    let q = query.to_lowercase();
    Action::ALL
        .into_iter()
        .filter(|a| a.name().contains(&q) || a.describe().to_lowercase().contains(&q))
        .collect()
}
