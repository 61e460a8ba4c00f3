//! Chat tab: a model plus up to two adapters (a run's adapter or checkpoint) on one frozen
//! base, replies streamed from a generation thread, the adapter switchable, any two of base,
//! adapter A and adapter B side by side (SFT against SFT+DPO on one prompt), sampling
//! settings, a system prompt, and "save this exchange to a dataset". A remote
//! OpenAI-compatible endpoint can answer beside them as one more column.
//!
//! The model follows adapter A: it is the base A was trained on unless the user pinned one
//! with `M`, and then adapters of other bases are refused by name. A follows the run the
//! workbench watches (its newest checkpoint while it trains, its final adapter once done).
//! State is in [`state`], the work off the UI thread in [`jobs`], drawing in [`view`].

pub mod jobs;
pub mod pick;
pub mod remote;
pub mod state;
pub mod view;

pub use pick::Pick;
pub use state::{ChatTab, InputFor, Msg, Slot};

use super::{Component, Ctx};
use crate::infer::{GenEvent, Voice};
use crate::model::base::Fit;
use crate::runs::RunSummary;
use crate::tui::action::Action;
use crate::tui::effect::Effect;
use crate::tui::widgets::{InputEvent, PickItem, Picked, Picker, TextInput};
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;
use remote::Remote;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What of the run list decides which adapters exist: runs, their steps and states.
fn signature(runs: &[RunSummary]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in runs {
        (&r.id, r.step, r.state_label()).hash(&mut h);
    }
    h.finish()
}

/// The value of the "no adapter" item in the adapter picker.
const NONE_ITEM: &str = "\u{0}none";

impl ChatTab {
    /// Reads the adapter list (at start, and when runs change).
    pub fn start(&mut self, runs_root: &Path) -> Effect<Msg> {
        self.listing = true;
        jobs::list(runs_root.to_path_buf(), None)
    }

    /// The run list changed: list the adapters again (one listing at a time) when a run
    /// appeared, moved on or changed state, so a followed run's newest adapter is known.
    pub fn on_runs(
        &mut self,
        runs: &[RunSummary],
        active: Option<&Path>,
        runs_root: &Path,
    ) -> Option<Effect<Msg>> {
        let seen = signature(runs);
        let active = active.map(Path::to_path_buf);
        let moved = active != self.active_run;
        self.active_run = active;
        if moved && !self.chosen {
            self.adapter = self.default_pick();
        }
        if self.listing || (seen == self.runs_seen && !moved) {
            return None;
        }
        self.runs_seen = seen;
        Some(self.start(runs_root))
    }

    /// Follows `run` in adapter A (the Runs tab's `o`): the model becomes the run's base.
    pub fn follow_run(&mut self, run: PathBuf, runs_root: &Path) -> Effect<Msg> {
        self.adapter = Some(Pick::Follow(run));
        self.chosen = true;
        self.model_override = None;
        self.pinned_id = None;
        self.start(runs_root)
    }

    /// Sends a user message: loads the model first when needed (on a worker, after checking
    /// that it fits in free memory), then streams the reply (or both, side by side).
    pub fn send(
        &mut self,
        text: String,
        form_model: &str,
        training_active: bool,
    ) -> Option<Effect<Msg>> {
        if self.busy() {
            self.status = "still answering; wait for the reply".into();
            return None;
        }
        self.model_spec = self.model_for(form_model).0;
        let remote = self.ask_remote(&text);
        self.history.push(("user".into(), text));
        self.compare = None;
        if !self.needs_load() {
            self.start_replies();
            return remote;
        }
        let wanted = |slot| self.resolved(slot).map(|r| (r.dir, r.run, r.follows));
        let (a, b) = (wanted(Slot::A), wanted(Slot::B));
        self.loading = true;
        self.load_started = Some(std::time::Instant::now());
        self.status = format!("loading {}…", self.model_spec);
        let load = jobs::load(self.model_spec.clone(), a, b, training_active);
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

    fn on_gen(&mut self, id: u64, e: GenEvent) -> Option<Effect<Msg>> {
        let (current, target) = self.stream?;
        if current != id {
            return None;
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
                return Some(Effect::error(format!("chat: {e}")));
            }
        }
        None
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
        jobs::append(self.save_path.clone(), obj)
    }

    /// The adapter picker's items for `slot`: no adapter, then every run's adapters, newest
    /// run first (a run's newest follows the run). Adapters of another base than the model
    /// are marked; B offers only adapters of the model's base.
    fn adapter_items(&self, slot: Slot) -> Vec<PickItem> {
        let mut items = vec![PickItem {
            label: match slot {
                Slot::A => "none: the base model alone".into(),
                Slot::B => "none: no second adapter".into(),
            },
            detail: String::new(),
            value: NONE_ITEM.into(),
            ok: true,
        }];
        let a_dir = self.adapter_path();
        for (i, a) in self.adapters.iter().enumerate() {
            if slot == Slot::B && Some(&a.dir) == a_dir.as_ref() {
                continue;
            }
            let fit = self.fit(slot, a);
            if slot == Slot::B && fit.as_ref().is_some_and(Fit::differs) {
                continue;
            }
            let newest = self.adapters.iter().position(|b| b.run_dir == a.run_dir) == Some(i);
            let base = a
                .base
                .as_deref()
                .map(|b| {
                    let short = Path::new(b)
                        .file_name()
                        .map_or(b.to_string(), |n| n.to_string_lossy().into_owned());
                    format!("base {short}")
                })
                .unwrap_or_else(|| "base unknown".into());
            let (detail, ok) = match &fit {
                Some(Fit::Differs { .. }) => (format!("other base: {base}"), false),
                Some(Fit::SameShape { .. }) => (format!("{base} (same shape)"), true),
                _ if newest => (format!("{base} · follows the run"), true),
                _ => (base, true),
            };
            items.push(PickItem {
                label: a.label(),
                detail,
                value: i.to_string(),
                ok,
            });
        }
        items
    }

    /// Applies a pick from the adapter picker.
    fn choose(&mut self, slot: Slot, value: &str) -> Effect<Msg> {
        if value == NONE_ITEM {
            match slot {
                Slot::A => {
                    self.adapter = None;
                    self.chosen = true;
                }
                Slot::B => self.second = None,
            }
            if self.second.is_none() && matches!(self.pair, Some((_, Voice::Second))) {
                self.pair = Some((Voice::Base, Voice::Adapter));
            }
            return Effect::info(format!("adapter {slot:?}: none"));
        }
        let Some(i) = value.parse::<usize>().ok() else {
            return Effect::warn("no such adapter");
        };
        let Some(a) = self.adapters.get(i).cloned() else {
            return Effect::warn("no such adapter");
        };
        if let Some(why) = self
            .fit(slot, &a)
            .and_then(|f| f.refusal(&a.dir, &self.model_for("").0))
        {
            return Effect::warn(format!("refused: {why}; M pins another model"));
        }
        let pick = pick::pick_entry(&self.adapters, i);
        match slot {
            Slot::A => {
                self.adapter = pick;
                self.chosen = true;
            }
            Slot::B => self.second = pick,
        }
        let (v, name) = match slot {
            Slot::A => (Voice::Adapter, "adapter A"),
            Slot::B => (Voice::Second, "adapter B"),
        };
        Effect::info(format!("{name}: {}", self.voice_label(v)))
    }

    fn open_adapter_picker(&mut self, slot: Slot, ctx: &Ctx) -> Effect<Msg> {
        let title = match slot {
            Slot::A => "adapter A: the model follows its base unless pinned with M",
            Slot::B => "adapter B: adapters of the model's base",
        };
        self.adapter_finder = Some((
            slot,
            Picker::loading(
                title,
                "type to filter · Enter picks · Esc closes · marked: trained on another base",
                false,
            ),
        ));
        self.listing = true;
        jobs::list(ctx.ws.runs_root(), Some(slot))
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
            Action::PickAdapter => return Some(self.open_adapter_picker(Slot::A, ctx)),
            Action::PickSecondAdapter => return Some(self.open_adapter_picker(Slot::B, ctx)),
            Action::PickModel => {
                self.finder = Some(Picker::loading(
                    "chat model (pins it): workspace and Hugging Face cache",
                    "type to filter · Enter pins · a typed org/name or path is taken as it is · Esc",
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
                return Some(jobs::save_targets(
                    ctx.ws.root.clone(),
                    self.default_save.clone(),
                ))
            }
            Action::SaveExchange => return Some(self.save_exchange()),
            _ => {}
        }
        None
    }

    /// A key while the model finder is open.
    fn finder_key(&mut self, key: &KeyEvent, ctx: &Ctx) -> Option<Effect<Msg>> {
        let f = self.finder.as_mut()?;
        match f.key(key) {
            Picked::Item(m) | Picked::Typed(m) => {
                self.finder = None;
                if self.model_override.is_none() && m == self.model_for(ctx.model).0 {
                    // The model chat uses already, with nothing pinned: nothing changes.
                    return Some(Effect::info(format!("chat model: {m}")));
                }
                self.model_spec = m.clone();
                self.model_override = Some(m.clone());
                self.pinned_id = None;
                return Some(Effect::Batch(vec![
                    Effect::info(format!("chat model pinned: {m}")),
                    jobs::pin(m),
                ]));
            }
            Picked::Cancel => self.finder = None,
            Picked::Pending => {}
        }
        None
    }

    /// A key while the adapter picker is open.
    fn adapter_key(&mut self, key: &KeyEvent) -> Option<Effect<Msg>> {
        let (slot, f) = self.adapter_finder.as_mut()?;
        let slot = *slot;
        match f.key(key) {
            Picked::Item(v) | Picked::Typed(v) => {
                self.adapter_finder = None;
                Some(self.choose(slot, &v))
            }
            Picked::Cancel => {
                self.adapter_finder = None;
                None
            }
            Picked::Pending => None,
        }
    }

    /// Applies a new listing: picks settle, open pickers fill.
    fn listed(&mut self, listing: state::Listing, slot: Option<Slot>) -> Option<Effect<Msg>> {
        self.listing = false;
        self.adapters = listing.adapters;
        self.bases = listing.bases;
        let said = self.settle_picks();
        if let Some(slot) = slot {
            let items = self.adapter_items(slot);
            if let Some((s, f)) = self.adapter_finder.as_mut() {
                if *s == slot {
                    f.set_items(items);
                }
            }
        }
        (!said.is_empty()).then(|| Effect::warn(said.join("; ")))
    }
}

impl Component for ChatTab {
    /// While the model loads, the status line counts the seconds (a large model takes a
    /// while, and a still line looks stuck).
    fn tick(&mut self, _ctx: &Ctx) -> Option<Effect<Msg>> {
        if let (true, Some(t)) = (self.loading, self.load_started) {
            self.status = format!(
                "loading {}… {}",
                self.model_spec,
                crate::units::duration(t.elapsed().as_secs_f64())
            );
        }
        None
    }

    type Msg = Msg;

    fn hints(&self) -> &'static [(Action, &'static str)] {
        &[
            (Action::Compose, "write"),
            (Action::ToggleAdapter, "adapter on/off"),
            (Action::SideBySide, "side by side"),
            (Action::PickAdapter, "adapter"),
            (Action::PickSecondAdapter, "adapter B"),
            (Action::SaveExchange, "save"),
        ]
    }

    fn editing(&self) -> bool {
        self.input.is_some() || self.finder.is_some() || self.adapter_finder.is_some()
    }

    fn key(&mut self, key: &KeyEvent, ctx: &Ctx) -> Option<Effect<Msg>> {
        if self.finder.is_some() {
            return self.finder_key(key, ctx);
        }
        if self.adapter_finder.is_some() {
            return self.adapter_key(key);
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

    fn update(&mut self, msg: Msg, ctx: &Ctx) -> Option<Effect<Msg>> {
        match msg {
            Msg::Loaded(Ok(m)) => {
                // A followed run moved on since the list was read: read it again, so the
                // header names the adapter that answers.
                let stale = m.adapter != self.adapter_path() && !self.listing;
                self.model = Some(m);
                self.loading = false;
                self.status = "loaded".into();
                self.start_replies();
                if stale {
                    return Some(self.start(&ctx.ws.runs_root()));
                }
            }
            Msg::Loaded(Err(e)) => {
                self.loading = false;
                // The prompt that could not be answered stays in the field.
                if let Some((role, text)) = self.history.last() {
                    if role == "user" && self.input.is_none() {
                        self.input = Some((InputFor::Message, TextInput::new(text.clone())));
                        self.history.pop();
                    }
                }
                self.status = if e.starts_with("will not fit") {
                    e
                } else {
                    format!("cannot load the model: {e}")
                };
                return Some(Effect::error(self.status.clone()));
            }
            Msg::Gen(id, e) => return self.on_gen(id, e),
            Msg::Models(items) => {
                if let Some(f) = self.finder.as_mut() {
                    f.set_items(items);
                }
            }
            Msg::Adapters(listing, slot) => {
                let said = self.listed(listing, slot);
                // The runs moved on while the list was read: read it again.
                if signature(ctx.runs) != self.runs_seen {
                    self.runs_seen = signature(ctx.runs);
                    let again = self.start(&ctx.ws.runs_root());
                    return Some(match said {
                        Some(e) => Effect::Batch(vec![e, again]),
                        None => again,
                    });
                }
                return said;
            }
            Msg::Pinned(id) => {
                if self.model_override.as_deref() == Some(id.spec.as_str()) {
                    self.pinned_id = Some(id);
                    let said = self.settle_picks();
                    if !said.is_empty() {
                        return Some(Effect::warn(said.join("; ")));
                    }
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
        view::draw(f, area, self, ctx.theme, input.as_deref(), ctx.model);
        if let Some(finder) = &self.finder {
            finder.draw(f, area, ctx.theme);
        }
        if let Some((_, finder)) = &self.adapter_finder {
            finder.draw(f, area, ctx.theme);
        }
    }
}
