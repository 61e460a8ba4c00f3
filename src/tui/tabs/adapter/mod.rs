//! Adapter tab: a form over the run configuration, generated from `config::FIELDS` (help
//! text, kinds, ranges), with GRPO's reward list (add, remove, reweigh). Edits are checked
//! as you type; the trainable-parameter count and the memory estimate follow the form live.
//! The model's config.json is read on a worker.
//!
//! State is in [`state`], the reward templates in [`rewards`], the work off the UI thread
//! in [`jobs`], drawing in [`view`].

pub mod jobs;
pub mod rewards;
pub mod state;
pub mod view;

pub use state::{AdapterTab, DataKind, EditOf, Finding, FormRow, ModelInfo, Msg};

use super::{Component, Ctx};
use crate::tui::action::Action;
use crate::tui::effect::Effect;
use crate::tui::widgets::{InputEvent, Picked, Picker};
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;
use std::path::Path;

impl AdapterTab {
    /// Trains on `path` from now on; the method follows what the file holds once the
    /// returned job has detected it.
    pub fn use_dataset(&mut self, path: &Path) -> Result<Option<Effect<Msg>>, String> {
        self.config
            .set_field("data.train", &path.display().to_string())?;
        self.fit_method_to = Some(self.config.data.train.clone());
        Ok(self.want_info())
    }

    /// Notes the workspace's runs; when one more has finished, the model's info (its
    /// evaluation pace) is read again.
    fn follow_runs(&mut self, runs: &[crate::runs::RunSummary]) {
        let finished = runs
            .iter()
            .filter(|r| r.state.is_some_and(|s| s.is_final()))
            .count();
        if finished != self.finished_runs || self.known_runs.len() != runs.len() {
            self.info_stale |= finished != self.finished_runs;
            self.finished_runs = finished;
            self.known_runs = runs.to_vec();
        }
    }

    /// Reads the model's config and the dataset's kind when they changed.
    fn want_info(&mut self) -> Option<Effect<Msg>> {
        and(self.want_config_json(), self.want_data_kind())
    }

    /// Reads the model's config.json unless it is read or being read.
    fn want_config_json(&mut self) -> Option<Effect<Msg>> {
        let spec = &self.config.model.path;
        if (!self.info_stale && self.model_info.as_ref().is_some_and(|i| i.spec == *spec))
            || self.info_loading.as_ref() == Some(spec)
        {
            return None;
        }
        self.info_stale = false;
        self.info_loading = Some(spec.clone());
        Some(jobs::model_info(
            spec.clone(),
            self.base.clone(),
            self.known_runs.clone(),
        ))
    }

    /// Detects what `data.train` holds unless it is known or being read.
    fn want_data_kind(&mut self) -> Option<Effect<Msg>> {
        let path = &self.config.data.train;
        if self.data_kind.as_ref().is_some_and(|k| k.path == *path)
            || self.kind_loading.as_ref() == Some(path)
        {
            return None;
        }
        self.kind_loading = Some(path.clone());
        Some(jobs::data_kind(
            path.clone(),
            self.base.clone(),
            self.data.clone(),
        ))
    }

    /// Saves the form as `<workspace>/presets/<name>.yaml`, on a worker.
    fn save_preset(&self) -> Effect<Msg> {
        jobs::save_preset(self.config.clone(), self.base.clone())
    }

    /// Opens the finder for `model.path`, `data.train` or an `init_adapter`.
    fn open_finder(&mut self, what: Finding, ctx: &Ctx) -> Effect<Msg> {
        let (title, hint) = match what {
            Finding::Adapter(_) => (
                "start from: runs with an adapter",
                "type to filter · Enter picks · a typed run id or PEFT folder is taken as it is · Esc",
            ),
            Finding::Model => (
                "model: workspace and Hugging Face cache",
                "type to filter · Enter picks · a typed org/name or path is taken as it is · Esc",
            ),
            Finding::Dataset => (
                "training dataset",
                "type to filter · Enter picks · a typed path is taken as it is · Esc",
            ),
        };
        self.finder = Some((what, Picker::loading(title, hint, true)));
        jobs::find(
            what,
            ctx.ws.clone(),
            self.config.train.dtype,
            ctx.runs.to_vec(),
        )
    }

    /// The finder Enter opens on the selected field, if any: the model, the dataset, or the
    /// method's `init_adapter`.
    fn finding(&self) -> Option<Finding> {
        let path = self.field()?.path;
        let adapter = self.config.train.method.init_adapter_field();
        [Finding::Model, Finding::Dataset]
            .into_iter()
            .chain(adapter.map(Finding::Adapter))
            .find(|w| w.field() == path)
    }

    fn act(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        match a {
            Action::Enter | Action::Edit | Action::Toggle if self.reward_kinds.is_some() => {
                return self.pick_reward_kind().err().map(Effect::error);
            }
            Action::AddReward => return self.open_reward_kinds().err().map(Effect::warn),
            Action::RemoveReward => {
                return Some(match self.remove_reward() {
                    Ok(done) => Effect::info(done),
                    Err(e) => Effect::warn(e),
                })
            }
            Action::Enter if self.modules.is_none() => match self.finding() {
                Some(w) => return Some(self.open_finder(w, ctx)),
                None => self.begin_edit(),
            },
            Action::Down => self.move_sel(1),
            Action::Up => self.move_sel(-1),
            Action::Top => self.move_sel(-1000),
            Action::Bottom => self.move_sel(1000),
            Action::Enter | Action::Edit if self.modules.is_none() => self.begin_edit(),
            Action::Toggle | Action::Enter => {
                if self.modules.is_some() {
                    self.toggle_module();
                } else {
                    self.begin_edit();
                }
            }
            Action::LoadPreset => return Some(Effect::info(self.load_next_preset())),
            Action::SavePreset => return Some(self.save_preset()),
            _ => {}
        }
        None
    }
}

/// Both effects, when there are two.
fn and(a: Option<Effect<Msg>>, b: Option<Effect<Msg>>) -> Option<Effect<Msg>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Effect::Batch(vec![a, b])),
        (a, b) => a.or(b),
    }
}

impl Component for AdapterTab {
    type Msg = Msg;

    fn hints(&self) -> &'static [(Action, &'static str)] {
        if self.reward_kinds.is_some() {
            return &[
                (Action::Down, "kind"),
                (Action::Enter, "add"),
                (Action::Back, "cancel"),
            ];
        }
        match self.row() {
            FormRow::Reward(_) => {
                return &[
                    (Action::Edit, "weight"),
                    (Action::AddReward, "add reward"),
                    (Action::RemoveReward, "remove"),
                    (Action::StartRun, "start run"),
                ]
            }
            FormRow::AddReward => {
                return &[
                    (Action::Edit, "add reward"),
                    (Action::StartRun, "start run"),
                ]
            }
            FormRow::Field(_) => {}
        }
        &[
            (Action::Edit, "edit"),
            (Action::LoadPreset, "preset"),
            (Action::SavePreset, "save"),
            (Action::StartRun, "start run"),
            (Action::QueueRun, "queue"),
        ]
    }

    fn editing(&self) -> bool {
        self.editing.is_some() || self.finder.is_some()
    }

    fn key(&mut self, key: &KeyEvent, _ctx: &Ctx) -> Option<Effect<Msg>> {
        if let Some((what, finder)) = self.finder.as_mut() {
            let what = *what;
            let value = match finder.key(key) {
                Picked::Item(v) | Picked::Typed(v) => v,
                Picked::Cancel => {
                    self.finder = None;
                    return None;
                }
                Picked::Pending => return None,
            };
            self.finder = None;
            if let Err(e) = self.config.set_field(what.field(), &value) {
                self.edit_error = Some(e.clone());
                return Some(Effect::error(e));
            }
            self.edit_error = None;
            if what == Finding::Dataset {
                self.fit_method_to = Some(self.config.data.train.clone());
            }
            return self.want_info();
        }
        let input = self.editing.as_mut()?;
        match input.handle(key) {
            InputEvent::Submit => {
                if !self.commit_edit() {
                    return Some(Effect::error(self.edit_error.clone().unwrap_or_default()));
                }
                return self.want_info();
            }
            InputEvent::Cancel => {
                self.editing = None;
                self.edit_error = None;
            }
            InputEvent::Changed => self.check_edit(),
            InputEvent::Moved | InputEvent::Ignored => {}
        }
        None
    }

    fn handle(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        self.follow_runs(ctx.runs);
        let e = self.act(a, ctx);
        and(e, self.want_info())
    }

    fn update(&mut self, msg: Msg, _ctx: &Ctx) -> Option<Effect<Msg>> {
        match msg {
            Msg::ModelInfo(info) => {
                if self.info_loading.as_ref() == Some(&info.spec) {
                    self.info_loading = None;
                }
                self.model_info = Some(*info);
                self.want_info()
            }
            Msg::DataKind(k) => {
                if self.kind_loading.as_ref() == Some(&k.path) {
                    self.kind_loading = None;
                }
                self.data_kind = Some(k);
                and(self.fit_method(), self.want_info())
            }
            Msg::Found(what, items) => {
                if let Some((w, f)) = self.finder.as_mut() {
                    if *w == what {
                        f.set_items(items);
                    }
                }
                None
            }
            Msg::PresetSaved(Ok(p)) => Some(Effect::info(format!("saved {}", p.display()))),
            Msg::PresetSaved(Err(e)) => Some(Effect::error(e)),
        }
    }

    fn tick(&mut self, ctx: &Ctx) -> Option<Effect<Msg>> {
        self.follow_runs(ctx.runs);
        self.want_info()
    }

    fn back(&mut self) {
        self.modules = None;
        self.reward_kinds = None;
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        view::draw(f, area, self, ctx.theme);
        if let Some((_, finder)) = &self.finder {
            finder.draw(f, area, ctx.theme);
        }
    }
}
