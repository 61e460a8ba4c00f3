//! The workbench: the tabs, the overlays and the status line, and the one place that
//! applies [`Effect`]s and routes background [`Update`]s. Keys become actions through the
//! keymap (a tab whose text field has focus takes raw keys first); tests drive the app with
//! actions and keys alone, no terminal.

use super::action::Action;
use super::background::{Background, Update, WatchCmd};
use super::effect::{Effect, Level};
use super::keymap::Keymap;
use super::tabs::adapter::AdapterTab;
use super::tabs::chat::ChatTab;
use super::tabs::data::DataTab;
use super::tabs::runs::RunsTab;
use super::tabs::train::{MemoryMonitor, TrainTab};
use super::tabs::{Component, Ctx, Tab, TabMsg};
use super::theme::Theme;
use super::widgets::{InputEvent, TextInput};
use crate::runs::{RunDir, RunSummary};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::Frame;
use std::time::{Duration, Instant};

pub use super::context::Workspace;

pub enum Overlay {
    None,
    /// The one-screen tour of the first start.
    Tour,
    Help {
        scroll: u16,
    },
    Palette {
        query: TextInput,
        selected: usize,
    },
    /// Every message of this session in full, newest last.
    Messages {
        /// Rows scrolled up from the bottom.
        scroll: u16,
    },
}

/// Messages kept for the log (`!`).
const LOG_LEN: usize = 500;

/// One message on the status line, kept in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Local time, `HH:MM:SS`.
    pub time: String,
    pub level: Level,
    pub text: String,
}

/// How an app starts.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Sample GPU and RAM memory (off: snapshots pin the readings).
    pub telemetry: bool,
    /// Show the tour, and create this file when it is closed so it never shows again.
    pub tour: Option<std::path::PathBuf>,
}

pub struct App {
    pub tab: Tab,
    pub theme: Theme,
    pub keymap: Keymap,
    pub ws: Workspace,
    pub overlay: Overlay,
    pub message: Option<(Level, String)>,
    /// Every message so far, for the log overlay (`!`): the status line shows one at a
    /// time and cuts it at the screen's width.
    pub log: std::collections::VecDeque<LogLine>,
    pub quit: bool,
    pub data: DataTab,
    pub adapter: AdapterTab,
    pub train: TrainTab,
    pub chat: ChatTab,
    pub runs: RunsTab,
    /// Every run, newest first, as the watcher last listed them.
    pub run_list: Vec<RunSummary>,
    /// The run queue, as the watcher last read it.
    pub queue: crate::queue::Overview,
    bg: Background,
    /// The runs the watcher tails, as last sent.
    watched: Vec<(u64, RunDir)>,
    /// Attach the Train tab to the newest run once the first list arrives.
    auto_attach: bool,
    /// Written when the tour closes.
    tour_marker: Option<std::path::PathBuf>,
    last_slow_tick: Instant,
    /// Something changed since the last frame.
    pub dirty: bool,
}

/// The context tabs see: disjoint borrows of the app's fields, so a tab can be borrowed
/// mutably beside it.
macro_rules! ctx {
    ($app:ident, $model:expr, $training:expr) => {
        Ctx {
            theme: &$app.theme,
            keymap: &$app.keymap,
            ws: &$app.ws,
            model: $model,
            runs: &$app.run_list,
            queue: &$app.queue,
            training: $training,
            tool_format: $app.adapter.config.data.tool_format,
        }
    };
}

/// Calls `$method` on the tab in field `$field` with a context (`$variant`, its
/// [`TabMsg`], is there for [`for_tab!`]).
macro_rules! on {
    ($field:ident, $variant:ident, $app:ident, $method:ident ( $($arg:expr),* )) => {{
        let model = $app.adapter.model_path();
        let training = $app.train.training();
        $app.$field.$method($($arg,)* &ctx!($app, &model, training))
    }};
}

/// Expands `$then!(field, Variant, args…)` for the tab `$tab`: the app's one list of its
/// tabs, by field and [`TabMsg`] variant (the compiler makes it name every [`Tab`]).
macro_rules! for_tab {
    ($tab:expr, $then:ident!($($args:tt)*)) => {
        match $tab {
            Tab::Data => $then!(data, Data, $($args)*),
            Tab::Adapter => $then!(adapter, Adapter, $($args)*),
            Tab::Train => $then!(train, Train, $($args)*),
            Tab::Chat => $then!(chat, Chat, $($args)*),
            Tab::Runs => $then!(runs, Runs, $($args)*),
        }
    };
}

/// Calls `$method` on the tab in field `$field` with a context and applies the effect it
/// returns; its jobs' results come back as `TabMsg::$variant`.
macro_rules! apply_on {
    ($field:ident, $variant:ident, $app:ident, $method:ident ( $($arg:expr),* )) => {{
        let e = on!($field, $variant, $app, $method($($arg),*));
        $app.apply_from(e, |m| Update::Tab(TabMsg::$variant(m)));
    }};
}

/// Calls `$method` on the tab in field `$field` without a context.
macro_rules! call_on {
    ($field:ident, $variant:ident, $app:ident, $method:ident ( $($arg:expr),* )) => {
        $app.$field.$method($($arg),*)
    };
}

impl App {
    pub fn new(ws: Workspace, theme: Theme, keymap: Keymap) -> App {
        Self::with_options(
            ws,
            theme,
            keymap,
            AppOptions {
                telemetry: true,
                tour: None,
            },
        )
    }

    pub fn with_options(ws: Workspace, theme: Theme, keymap: Keymap, opts: AppOptions) -> App {
        let mut bg = Background::new(
            vec![ws.all_runs(), ws.runs_root()],
            crate::queue::QueueFiles::new(&ws.data),
            opts.telemetry,
        );
        let adapter = AdapterTab::new(&ws);
        let streamer = bg.streamer();
        let (data, scan) = DataTab::new(
            &ws.root,
            ws.scan_depth(),
            std::sync::Arc::new(move |m| streamer.send(Update::Tab(TabMsg::Data(m)))),
        );
        let streamer = bg.streamer();
        let mut chat = ChatTab::new(
            adapter.model_path(),
            ws.outputs().join("chat-exchanges.jsonl"),
            std::sync::Arc::new(move |m| streamer.send(Update::Tab(TabMsg::Chat(m)))),
        );
        let list_adapters = chat.start(&ws.runs_root());
        let streamer = bg.streamer();
        let runs = RunsTab::new(std::sync::Arc::new(move |m| {
            streamer.send(Update::Tab(TabMsg::Runs(m)))
        }));
        bg.ping();
        let mut app = App {
            tab: Tab::Data,
            theme,
            keymap,
            data,
            chat,
            train: TrainTab {
                view: None,
                memory: MemoryMonitor::new(),
            },
            adapter,
            runs,
            run_list: Vec::new(),
            queue: Default::default(),
            bg,
            watched: Vec::new(),
            auto_attach: true,
            ws,
            overlay: if opts.tour.is_some() {
                Overlay::Tour
            } else {
                Overlay::None
            },
            tour_marker: opts.tour,
            message: None,
            log: Default::default(),
            quit: false,
            last_slow_tick: Instant::now(),
            dirty: true,
        };
        app.apply_from(Some(scan), |m| Update::Tab(TabMsg::Data(m)));
        app.apply_from(Some(list_adapters), |m| Update::Tab(TabMsg::Chat(m)));
        apply_on!(adapter, Adapter, app, tick());
        app
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        if self.log.len() == LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            time: chrono::Local::now().format("%H:%M:%S").to_string(),
            level,
            text: text.clone(),
        });
        self.message = Some((level, text));
    }

    /// A key from the terminal: the palette and a tab's focused text field take keys first,
    /// then the keymap.
    pub fn on_key(&mut self, key: KeyEvent) {
        self.dirty = true;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if matches!(self.overlay, Overlay::Tour) {
            self.close_tour();
            return;
        }
        if let Overlay::Palette { query, selected } = &mut self.overlay {
            match key.code {
                KeyCode::Up => *selected = selected.saturating_sub(1),
                KeyCode::Down => *selected += 1,
                _ => match query.handle(&key) {
                    InputEvent::Cancel => self.overlay = Overlay::None,
                    InputEvent::Submit => {
                        let matches = palette_matches(query.value());
                        if let Some(a) = matches.get(*selected).copied() {
                            self.overlay = Overlay::None;
                            self.handle(a);
                        }
                    }
                    InputEvent::Changed => *selected = 0,
                    _ => {}
                },
            }
            return;
        }
        // Tab and Shift-Tab switch tabs even while a text field has focus.
        if matches!(key.code, KeyCode::Tab | KeyCode::BackTab) {
            if let Some(a) = self.keymap.action(self.tab, &key) {
                self.handle(a);
                return;
            }
        }
        if matches!(self.overlay, Overlay::None) && self.tab_editing() {
            for_tab!(self.tab, apply_on!(self, key(&key)));
            self.sync_watch();
            return;
        }
        if let Some(a) = self.keymap.action(self.tab, &key) {
            self.handle(a);
        }
    }

    fn tab_editing(&self) -> bool {
        for_tab!(self.tab, call_on!(self, editing()))
    }

    /// Does one action.
    pub fn handle(&mut self, a: Action) {
        self.dirty = true;
        if matches!(self.overlay, Overlay::Tour) {
            self.close_tour();
            if a == Action::Quit {
                self.quit = true;
            }
            return;
        }
        if let Overlay::Help { scroll } = &mut self.overlay {
            match a {
                Action::Down => *scroll = scroll.saturating_add(1),
                Action::Up => *scroll = scroll.saturating_sub(1),
                Action::Quit => self.quit = true,
                _ => self.overlay = Overlay::None,
            }
            return;
        }
        if let Overlay::Messages { scroll } = &mut self.overlay {
            match a {
                Action::Up => *scroll = scroll.saturating_add(1),
                Action::Down => *scroll = scroll.saturating_sub(1),
                Action::PageUp => *scroll = scroll.saturating_add(10),
                Action::PageDown => *scroll = scroll.saturating_sub(10),
                Action::Quit => self.quit = true,
                _ => self.overlay = Overlay::None,
            }
            return;
        }
        match a {
            Action::Quit => self.quit = true,
            Action::Help => self.overlay = Overlay::Help { scroll: 0 },
            Action::Messages => self.overlay = Overlay::Messages { scroll: 0 },
            Action::Palette => {
                self.overlay = Overlay::Palette {
                    query: TextInput::default(),
                    selected: 0,
                }
            }
            Action::NextTab => self.tab = self.tab.next(),
            Action::PrevTab => self.tab = self.tab.prev(),
            // The visible tab's dialogs only: a comparison running in the Runs tab's Eval
            // view is not stopped by Esc on another tab.
            Action::Back => {
                self.overlay = Overlay::None;
                for_tab!(self.tab, call_on!(self, back()));
                self.message = None;
            }
            Action::StartRun => self.start_run(),
            Action::QueueRun => self.queue_run(),
            Action::StopRun if self.tab != Tab::Runs => match &self.train.view {
                Some(v) => self.stop_run(v.run.root.clone()),
                None => self.say(Level::Warning, "no run to stop"),
            },
            _ => match Tab::for_action(a) {
                Some(tab) => self.tab = tab,
                None => for_tab!(self.tab, apply_on!(self, handle(a))),
            },
        }
        self.sync_watch();
    }

    /// Carries out what a tab asked for; its jobs' results come back wrapped by `wrap`.
    fn apply_from<M: Send + 'static>(&mut self, e: Option<Effect<M>>, wrap: fn(M) -> Update) {
        let Some(e) = e else { return };
        match e {
            Effect::Spawn(job) => self.bg.spawn(Box::new(move || wrap(job()))),
            Effect::Batch(all) => all.into_iter().for_each(|e| self.apply_from(Some(e), wrap)),
            other => self.apply(other),
        }
    }

    /// Carries out an effect that crosses tabs (anything but a job).
    pub fn apply<M>(&mut self, e: Effect<M>) {
        self.dirty = true;
        match e {
            Effect::Say(level, text) => self.say(level, text),
            Effect::Switch(tab) => self.tab = tab,
            Effect::Attach(dir) => {
                self.train.attach(RunDir::new(dir));
                self.tab = Tab::Train;
            }
            Effect::OpenInChat(run) => {
                let e = self.chat.follow_run(run, &self.ws.runs_root());
                self.apply_from(Some(e), |m| Update::Tab(TabMsg::Chat(m)));
                self.tab = Tab::Chat;
            }
            Effect::StartRun => self.start_run(),
            Effect::UseDataset(path) => match self.adapter.use_dataset(&path) {
                Ok(job) => {
                    self.say(
                        Level::Info,
                        format!("the Adapter form trains on {} now", path.display()),
                    );
                    self.apply_from(job, |m| Update::Tab(TabMsg::Adapter(m)));
                }
                Err(e) => self.say(Level::Error, e),
            },
            Effect::StopRun(dir) => self.stop_run(dir),
            Effect::Quit => self.quit = true,
            Effect::Spawn(_) => {
                debug_assert!(false, "jobs go through apply_from");
            }
            Effect::Batch(all) => all.into_iter().for_each(|e| self.apply(e)),
        }
        self.sync_watch();
    }

    /// Closes the tour for good (its marker is written on a worker).
    fn close_tour(&mut self) {
        self.overlay = Overlay::None;
        if let Some(marker) = self.tour_marker.take() {
            self.bg.spawn(Box::new(move || {
                if let Some(dir) = marker.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = crate::files::write_atomic(&marker, b"seen\n");
                Update::Done
            }));
        }
    }

    /// Asks a run's trainer to stop, from a worker.
    fn stop_run(&mut self, dir: std::path::PathBuf) {
        self.bg.spawn(Box::new(move || {
            Update::StopSent(crate::runs::request_stop(&RunDir::new(dir)))
        }));
    }

    /// Validates the form's config, then (on a worker) resolves its paths, writes it to the
    /// workspace's configs folder and starts `tunelab train --detach` into its runs folder.
    fn start_run(&mut self) {
        let cfg = self.adapter.config.clone();
        if let Some(i) = cfg.validate().first() {
            self.say(Level::Error, format!("cannot start: {i}"));
            return;
        }
        let ws = self.ws.clone();
        self.say(Level::Info, "starting a run…");
        self.bg
            .spawn(Box::new(move || Update::RunStarted(ws.start_run(cfg))));
    }

    /// Validates the form's config, then (on a worker) puts it in the queue as a run of
    /// this workspace and makes sure the scheduler runs.
    fn queue_run(&mut self) {
        let cfg = self.adapter.config.clone();
        if let Some(i) = cfg.validate().first() {
            self.say(Level::Error, format!("cannot queue: {i}"));
            return;
        }
        let ws = self.ws.clone();
        self.bg
            .spawn(Box::new(move || Update::RunQueued(ws.queue_run(cfg))));
    }

    /// Routes one background result.
    pub fn apply_update(&mut self, u: Update) {
        self.dirty = true;
        let e: Option<Effect<()>> = match u {
            Update::Tab(m) => {
                self.on_msg(m);
                None
            }
            Update::RunEvents {
                key,
                events,
                status,
            } => {
                if let Some(v) = self.train.view.iter_mut().find(|v| v.key == key) {
                    v.feed(events, status);
                }
                None
            }
            Update::RunView(built) => {
                if let Some(v) = self.train.view.iter_mut().find(|v| v.key == built.key) {
                    *v = *built;
                }
                None
            }
            Update::RunList(list) => {
                self.run_list = list;
                if self.auto_attach && self.train.view.is_none() {
                    // The newest run that started: one waiting in the queue has nothing
                    // to show yet.
                    let started = self
                        .run_list
                        .iter()
                        .find(|r| r.state != Some(crate::runs::RunState::Queued));
                    if let Some(r) = started.or(self.run_list.first()) {
                        self.train.attach(RunDir::new(&r.dir));
                    }
                }
                self.auto_attach = false;
                // Runs gain checkpoints and adapters while the workbench is open; Chat
                // follows the watched run to its newest.
                let active = self.train.view.as_ref().map(|v| v.run.root.clone());
                let e = self
                    .chat
                    .on_runs(&self.run_list, active.as_deref(), &self.ws.runs_root());
                self.apply_from(e, |m| Update::Tab(TabMsg::Chat(m)));
                // The selected run's details follow the list.
                apply_on!(runs, Runs, self, tick());
                None
            }
            Update::Memory(m) => {
                self.train.memory.record(&m);
                self.adapter.set_budget(&m);
                None
            }
            Update::RunStarted(Ok((id, dir))) => {
                self.train.attach(RunDir::new(dir));
                // Chat follows the run just started, whatever was picked before.
                self.chat.chosen = false;
                self.tab = Tab::Train;
                Some(Effect::info(format!(
                    "started {id} (detached: it keeps going after you quit)"
                )))
            }
            Update::RunStarted(Err(e)) => Some(Effect::error(e)),
            Update::Queue(q) => {
                self.queue = *q;
                None
            }
            Update::RunQueued(Ok((id, _, position))) => Some(Effect::info(format!(
                "queued {id} (#{position}); it starts when its device is free · 5 Runs shows the queue"
            ))),
            Update::RunQueued(Err(e)) => Some(Effect::error(e)),
            Update::StopSent(Ok(pid)) => Some(Effect::info(format!(
                "asked pid {pid} to stop; it writes a checkpoint first"
            ))),
            Update::StopSent(Err(e)) => Some(Effect::warn(e)),
            Update::Pong(_) | Update::Done => None,
        };
        if let Some(e) = e {
            self.apply(e);
        }
        self.sync_watch();
    }

    /// Gives a tab its background result.
    fn on_msg(&mut self, m: TabMsg) {
        match m {
            TabMsg::Data(m) => {
                // In a project, the form trains on the project's first dataset until the
                // user picks another.
                if let super::tabs::data::Msg::Files(files) = &m {
                    if let Some(first) = files.first().filter(|_| self.ws.is_project()) {
                        if self.adapter.on_demo_data() {
                            if let Ok(job) = self.adapter.use_dataset(&first.path) {
                                self.apply_from(job, |m| Update::Tab(TabMsg::Adapter(m)));
                            }
                        }
                    }
                }
                apply_on!(data, Data, self, update(m));
            }
            TabMsg::Adapter(m) => apply_on!(adapter, Adapter, self, update(m)),
            TabMsg::Train(m) => apply_on!(train, Train, self, update(m)),
            TabMsg::Chat(m) => apply_on!(chat, Chat, self, update(m)),
            TabMsg::Runs(m) => apply_on!(runs, Runs, self, update(m)),
        }
    }

    /// Tells the watcher which run is on screen (the attached one).
    fn sync_watch(&mut self) {
        let runs: Vec<(u64, RunDir)> = self
            .train
            .view
            .iter()
            .map(|v| (v.key, v.run.clone()))
            .collect();
        if runs != self.watched {
            self.bg.watch(WatchCmd::Tail {
                runs: runs.clone(),
                primary: self.train.view.as_ref().map(|v| v.key),
            });
            self.watched = runs;
        }
    }

    /// Applies every waiting background result; once a second, lets the visible tab (and
    /// the Adapter form, which others read) follow up. Returns whether a redraw is needed.
    pub fn tick(&mut self) -> bool {
        while let Some(u) = self.bg.try_next() {
            self.apply_update(u);
        }
        if self.last_slow_tick.elapsed() >= Duration::from_secs(1) {
            self.last_slow_tick = Instant::now();
            for_tab!(self.tab, apply_on!(self, tick()));
            if self.tab != Tab::Adapter {
                apply_on!(adapter, Adapter, self, tick());
            }
            self.dirty |= self.tab == Tab::Train || (self.tab == Tab::Chat && self.chat.busy());
        }
        std::mem::take(&mut self.dirty)
    }

    /// Waits (at most `timeout`) until every background job has reported and the watcher
    /// has gone round once more, applying results as they come. Tests and benchmarks use
    /// it to see the app as a user would a moment later.
    pub fn settle(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.bg.ping();
        loop {
            while let Some(u) = self.bg.try_next() {
                self.apply_update(u);
            }
            if self.bg.caught_up() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The next background result (the event loop selects on this).
    pub async fn next_update(&mut self) -> Option<Update> {
        self.bg.next().await
    }

    /// Draws the visible tab into `area`.
    pub fn draw_tab(&mut self, f: &mut Frame, area: Rect) {
        for_tab!(self.tab, on!(self, draw(f, area)))
    }

    /// The visible tab's text field on the status line, if it uses one.
    pub fn prompt(&self) -> Option<String> {
        for_tab!(self.tab, call_on!(self, prompt()))
    }

    /// The visible tab's key hints.
    pub fn hints(&self) -> &'static [(Action, &'static str)] {
        for_tab!(self.tab, call_on!(self, hints()))
    }
}

/// Actions whose name or description contains `query`, for the palette.
pub fn palette_matches(query: &str) -> Vec<Action> {
    let q = query.to_lowercase();
    Action::all()
        .filter(|a| a.name().contains(&q) || a.describe().to_lowercase().contains(&q))
        .collect()
}
