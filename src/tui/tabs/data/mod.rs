//! Data tab: the workspace's dataset files, the detected format with its evidence, a pager
//! of records rendered by role, search, validation errors to jump to, a convert dialog, and
//! the token view (trained and masked tokens of the chat template) and the Synthesize
//! dialog. Files are listed, datasets read, tokenizers loaded and synthesis run on worker
//! threads.
//!
//! State is in [`state`], the work off the UI thread in [`jobs`], drawing in [`view`] (a
//! record by role in [`records`], its tokens in [`tokens`]), the Synthesize dialog in
//! [`synth`].

pub mod jobs;
pub mod records;
pub mod state;
pub mod synth;
pub mod tokens;
pub mod view;

pub use state::{DataTab, FileEntry, Msg, View, MAX_RECORDS};

use super::{Component, Ctx};
use crate::tui::action::Action;
use crate::tui::effect::{Effect, Sink};
use crate::tui::widgets::{InputEvent, Picked, Picker, TextInput};
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use synth::{Finished, Reply, SynthDialog, SynthMsg};

impl DataTab {
    /// The tab for the workspace at `root`, and the job that lists its files; `sink`
    /// carries a synthesis run's progress back.
    pub fn new(root: &Path, depth: usize, sink: Sink<Msg>) -> (Self, Effect<Msg>) {
        (
            DataTab::empty(root, depth, sink),
            jobs::scan(root.to_path_buf(), depth),
        )
    }

    /// Reads the selected file on a worker.
    fn load(&mut self) -> Option<Effect<Msg>> {
        self.record = 0;
        self.problem = 0;
        let path = self.files.get(self.file)?.path.clone();
        self.loading = Some(path.clone());
        Some(jobs::load(path))
    }

    /// Shows `path` (adding it to the list when it is not in the workspace).
    fn open_path(&mut self, path: PathBuf) -> Option<Effect<Msg>> {
        let i = match self.files.iter().position(|f| f.path == path) {
            Some(i) => i,
            None => {
                self.files.push(FileEntry {
                    path: path.clone(),
                    bytes: 0,
                });
                self.files.len() - 1
            }
        };
        self.file = i;
        self.view = View::Text;
        self.load()
    }

    pub fn select_file(&mut self, delta: isize) -> Option<Effect<Msg>> {
        if self.files.is_empty() {
            return None;
        }
        let n = self.files.len() as isize;
        self.file = ((self.file as isize + delta).rem_euclid(n)) as usize;
        self.load()
    }

    /// Converts the loaded file to the dialog's format on a worker: beside the source when
    /// it is in the workspace (`root`), else into the workspace's `outputs` folder.
    fn run_convert(&mut self, root: &Path, outputs: &Path) -> Result<Effect<Msg>, String> {
        let idx = self.convert.take().ok_or("no conversion chosen")?;
        let to = *self.targets().get(idx).ok_or("no such format")?;
        let l = self.loaded.as_ref().ok_or("no dataset loaded")?;
        let folder = crate::workspace::convert_folder(&l.path, root, outputs);
        Ok(jobs::convert(l.path.clone(), l.format, to, folder))
    }

    /// A synthesis run ended: say how it went, list the files again and show the output.
    fn synth_finished(&mut self, done: Finished) -> Effect<Msg> {
        let say = if done.ok {
            Effect::info(done.summary)
        } else {
            Effect::warn(done.summary)
        };
        let mut effects = vec![say, jobs::scan(self.root.clone(), self.depth)];
        if let Some(path) = done.output {
            effects.extend(self.open_path(path));
        }
        Effect::Batch(effects)
    }

    /// Loads the encoder for `model` unless it is loaded or loading.
    fn want_encoder(&mut self, model: &str) -> Option<Effect<Msg>> {
        if self.view != View::Tokens
            || self.encoder_for(model).is_some()
            || self.encoder_loading.as_deref() == Some(model)
        {
            return None;
        }
        self.encoder_loading = Some(model.to_string());
        Some(jobs::encoder(model.to_string()))
    }
}

impl Component for DataTab {
    type Msg = Msg;

    fn hints(&self) -> &'static [(Action, &'static str)] {
        &[
            (Action::Down, "record"),
            (Action::Right, "file"),
            (Action::Search, "search"),
            (Action::TokenView, "tokens"),
            (Action::Validation, "errors"),
            (Action::Convert, "convert"),
            (Action::OpenFile, "open"),
        ]
    }

    fn editing(&self) -> bool {
        self.search_input.is_some() || self.finder.is_some() || self.synth.is_some()
    }

    fn key(&mut self, key: &KeyEvent, _ctx: &Ctx) -> Option<Effect<Msg>> {
        if let Some(dialog) = self.synth.as_mut() {
            let out = self.sink.clone();
            let sink: Sink<SynthMsg> = Arc::new(move |m| out(Msg::Synth(m)));
            return match dialog.key(key, &self.root, sink) {
                Reply::Nothing => None,
                Reply::Start(run) => Some(Effect::Batch(vec![
                    Effect::info("synthesizing…"),
                    Effect::spawn(move || Msg::Synth(run())),
                ])),
                Reply::Close => {
                    self.synth = None;
                    None
                }
            };
        }
        if let Some(f) = self.finder.as_mut() {
            let path = match f.key(key) {
                Picked::Item(v) => PathBuf::from(v),
                Picked::Typed(v) => {
                    let p = PathBuf::from(&v);
                    if p.is_absolute() {
                        p
                    } else {
                        self.root.join(p)
                    }
                }
                Picked::Cancel => {
                    self.finder = None;
                    return None;
                }
                Picked::Pending => return None,
            };
            self.finder = None;
            return self.open_path(path);
        }
        let input = self.search_input.as_mut()?;
        match input.handle(key) {
            InputEvent::Submit => {
                self.search = self.search_input.take().map(TextInput::into_value)?;
                if !self.search_next() {
                    return Some(Effect::warn(format!(
                        "no record contains {:?}",
                        self.search
                    )));
                }
            }
            InputEvent::Cancel => self.search_input = None,
            _ => {}
        }
        None
    }

    fn handle(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        let n = self.targets().len().max(1);
        if let Some(sel) = self.convert.as_mut() {
            match a {
                Action::Left | Action::Up => *sel = (*sel + n - 1) % n,
                Action::Right | Action::Down => *sel = (*sel + 1) % n,
                Action::Enter => {
                    return Some(match self.run_convert(&ctx.ws.root, &ctx.ws.outputs()) {
                        Ok(job) => Effect::Batch(vec![Effect::info("converting…"), job]),
                        Err(e) => Effect::error(e),
                    })
                }
                _ => {}
            }
            return None;
        }
        match a {
            Action::Down => self.move_record(1),
            Action::Up => self.move_record(-1),
            Action::PageDown => self.move_record(10),
            Action::PageUp => self.move_record(-10),
            Action::Top => self.move_record(-(1 << 30)),
            Action::Bottom => self.move_record(1 << 30),
            Action::Left => return self.select_file(-1),
            Action::Right => return self.select_file(1),
            Action::Enter if self.view == View::Problems => self.jump_to_problem(),
            Action::TokenView => {
                self.view = if self.view == View::Tokens {
                    View::Text
                } else {
                    View::Tokens
                };
                return self.want_encoder(ctx.model);
            }
            Action::Validation => {
                self.view = if self.view == View::Problems {
                    View::Text
                } else {
                    View::Problems
                }
            }
            Action::Search => self.search_input = Some(TextInput::default()),
            Action::OpenFile => {
                let mut f = Picker::loading(
                    "open a dataset",
                    "type to filter · Enter opens · a typed path (relative to the workspace, or absolute) opens any file · Esc",
                    true,
                );
                f.set_items(crate::tui::model_list::dataset_items(
                    &self.root,
                    &self.files,
                ));
                self.finder = Some(f);
            }
            Action::UseDataset => {
                let path = self.loaded.as_ref().map(|l| l.path.clone())?;
                return Some(Effect::UseDataset(path));
            }
            Action::SearchNext if !self.search_next() => return Some(Effect::warn("no match")),
            Action::Synthesize => {
                let output = if ctx.ws.is_project() {
                    "data/synth.jsonl"
                } else {
                    "synth.jsonl"
                };
                self.synth
                    .get_or_insert_with(|| SynthDialog::writing_to(output));
            }
            Action::Convert => {
                if self.targets().is_empty() {
                    return Some(Effect::warn("nothing to convert to"));
                }
                self.convert = Some(0);
            }
            _ => {}
        }
        None
    }

    fn update(&mut self, msg: Msg, ctx: &Ctx) -> Option<Effect<Msg>> {
        match msg {
            Msg::Files(files) => {
                let current = self.files.get(self.file).cloned();
                self.files = files;
                self.file = match current {
                    Some(c) => match self.files.iter().position(|f| f.path == c.path) {
                        Some(i) => i,
                        // A file opened from outside the workspace stays listed.
                        None if self.loaded.as_ref().is_some_and(|l| l.path == c.path) => {
                            self.files.push(c);
                            self.files.len() - 1
                        }
                        None => 0,
                    },
                    None => 0,
                };
                if self.loaded.is_none() && self.loading.is_none() {
                    return self.load();
                }
            }
            Msg::Loaded { path, result } => {
                if self.loading.as_ref() != Some(&path) {
                    return None;
                }
                self.loading = None;
                match result {
                    Ok(l) => {
                        self.loaded = Some(l);
                        self.error = None;
                    }
                    Err(e) => {
                        self.loaded = None;
                        self.error = Some(e);
                    }
                }
            }
            Msg::Encoder { model, result } => {
                if self.encoder_loading.as_deref() == Some(model.as_str()) {
                    self.encoder_loading = None;
                }
                self.encoder = Some((model, result));
                return self.want_encoder(ctx.model);
            }
            Msg::Synth(m) => {
                let finished = self.synth.as_mut().and_then(|d| d.receive(m))?;
                return Some(self.synth_finished(finished));
            }
            Msg::Converted(result) => {
                return Some(match result {
                    Ok((msg, _)) => Effect::Batch(vec![
                        Effect::info(msg),
                        jobs::scan(self.root.clone(), self.depth),
                    ]),
                    Err(e) => Effect::error(e),
                })
            }
        }
        None
    }

    fn tick(&mut self, ctx: &Ctx) -> Option<Effect<Msg>> {
        self.want_encoder(ctx.model)
    }

    fn back(&mut self) {
        self.convert = None;
    }

    fn prompt(&self) -> Option<String> {
        self.search_input
            .as_ref()
            .map(|i| format!("/{}", i.display()))
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let convert_to = self
            .convert
            .and_then(|_| self.convert_target(&ctx.ws.root, &ctx.ws.outputs()));
        view::draw(
            f,
            area,
            self,
            ctx.theme,
            ctx.model,
            ctx.tool_format,
            convert_to.as_deref(),
        );
        if let Some(finder) = &self.finder {
            finder.draw(f, area, ctx.theme);
        }
        if let Some(dialog) = &self.synth {
            dialog.draw(f, area, ctx.theme);
        }
    }
}
