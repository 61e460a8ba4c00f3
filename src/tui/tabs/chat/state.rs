//! The Chat tab's state: the conversation, the sampling settings, the model and the two
//! adapter slots, and what follows from them without touching the disk (which model a
//! reply comes from, how each adapter fits it, labels).

use super::pick::{Outcome, Pick, Resolved};
use super::remote::{Remote, RemoteReply};
use crate::infer::sampling::Sampling;
use crate::infer::{ChatModel, GenEvent, Voice};
use crate::model::base::{BaseId, Fit};
use crate::runs::adapters::RunAdapter;
use crate::tui::effect::Sink;
use crate::tui::widgets::{Picker, TextInput};
use std::collections::HashMap;
use std::path::PathBuf;

/// What the text field is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFor {
    Message,
    System,
    /// The remote column's base URL, then its model name.
    RemoteUrl,
    RemoteModel,
}

/// Which adapter slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

/// The runs' adapters as a worker listed them, with the identity of every base they name.
pub struct Listing {
    pub adapters: Vec<RunAdapter>,
    pub bases: HashMap<String, BaseId>,
}

/// Background results for this tab.
pub enum Msg {
    /// The model, with the adapters it actually carries (a followed run may have moved on
    /// between the request and the load).
    Loaded(Result<ChatModel, String>),
    /// A generation event of stream `id`.
    Gen(u64, GenEvent),
    /// Items for the model finder.
    Models(Vec<crate::tui::widgets::PickItem>),
    /// Every run's adapters, and the slot whose picker asked for them.
    Adapters(Listing, Option<Slot>),
    /// The identity of a model pinned with `M`.
    Pinned(BaseId),
    /// Files an exchange can be appended to; pick the one after the current.
    SaveTargets(Vec<(PathBuf, crate::data::Format)>),
    Saved(Result<PathBuf, String>),
    /// The remote column's reply to a prompt.
    Remote(RemoteReply),
}

/// Where the chat model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFrom {
    /// Pinned with `M`: adapters of other bases are refused.
    Pinned,
    /// The base adapter A was trained on.
    AdapterBase,
    /// The Adapter form's model (no adapter, or one whose base is unknown).
    Form,
}

pub struct ChatTab {
    /// The model replies come from (set when a message is sent; the header shows what the
    /// next one will use).
    pub model_spec: String,
    /// A model pinned with `M`; otherwise the model follows adapter A's base.
    pub model_override: Option<String>,
    /// The pinned model's identity, once read.
    pub pinned_id: Option<BaseId>,
    /// Every run's adapters, each run's newest first, as last listed.
    pub adapters: Vec<RunAdapter>,
    /// The identity of each base those adapters name.
    pub bases: HashMap<String, BaseId>,
    /// Adapter A (single replies use it) and adapter B.
    pub adapter: Option<Pick>,
    pub second: Option<Pick>,
    /// The user chose A (an adapter, or none); until then A follows the active run.
    pub chosen: bool,
    /// The run the workbench watches (the one `r` started): A follows it by default.
    pub active_run: Option<PathBuf>,
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
    pub finder: Option<Picker>,
    /// The adapter picker and the slot it picks for, while it is open.
    pub adapter_finder: Option<(Slot, Picker)>,
    /// Training files the user agreed to append exchanges to.
    pub(super) confirmed: std::collections::HashSet<PathBuf>,
    /// A save waiting for that agreement.
    pub(super) confirm: Option<PathBuf>,
    pub(super) loading: bool,
    /// When the model load began, for the seconds the status line counts while it loads.
    pub(super) load_started: Option<std::time::Instant>,
    /// The stream being received: its id and whose reply it is.
    pub(super) stream: Option<(u64, Voice)>,
    pub(super) next_stream_id: u64,
    pub(super) queued: Vec<Voice>,
    pub status: String,
    /// Where "save exchange" appends, and in which format.
    pub save_path: PathBuf,
    pub save_format: crate::data::Format,
    pub(super) default_save: PathBuf,
    /// Delivers generation events to this tab from the generation thread.
    pub(super) sink: Sink<Msg>,
    /// The remote column (`R`), answering every prompt beside the local model.
    pub remote: Option<Remote>,
    /// The remote's base URL while its model name is asked for.
    pub(super) remote_url: Option<String>,
    /// Columns added so far, to number the next one.
    pub(super) remotes: u64,
    /// An adapter listing is on its way; the run list it answers.
    pub(super) listing: bool,
    pub(super) runs_seen: u64,
}

impl ChatTab {
    pub fn new(model_spec: String, save_path: PathBuf, sink: Sink<Msg>) -> Self {
        ChatTab {
            model_spec,
            model_override: None,
            pinned_id: None,
            adapters: Vec::new(),
            bases: HashMap::new(),
            adapter: None,
            second: None,
            chosen: false,
            active_run: None,
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
            adapter_finder: None,
            confirmed: Default::default(),
            confirm: None,
            loading: false,
            load_started: None,
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
            listing: false,
            runs_seen: 0,
        }
    }

    pub fn busy(&self) -> bool {
        self.loading || self.stream.is_some() || self.remote.as_ref().is_some_and(Remote::busy)
    }

    /// A slot's adapter now (a followed run's newest, a picked one, or a stand-in for a
    /// picked one that is gone).
    pub fn resolved(&self, slot: Slot) -> Option<Resolved> {
        let pick = match slot {
            Slot::A => self.adapter.as_ref(),
            Slot::B => self.second.as_ref(),
        }?;
        match pick.resolve(&self.adapters) {
            Outcome::Found(r) | Outcome::FellBack(r, _) => Some(r),
            Outcome::Nothing => None,
        }
    }

    pub fn adapter_path(&self) -> Option<PathBuf> {
        self.resolved(Slot::A).map(|r| r.dir)
    }

    pub fn second_path(&self) -> Option<PathBuf> {
        self.resolved(Slot::B).map(|r| r.dir)
    }

    /// The model the next reply comes from, and why: the pinned one, adapter A's base, or
    /// the Adapter form's model (`form`).
    pub fn model_for(&self, form: &str) -> (String, ModelFrom) {
        if let Some(m) = &self.model_override {
            return (m.clone(), ModelFrom::Pinned);
        }
        match self.resolved(Slot::A).and_then(|r| r.base) {
            Some(b) => (b, ModelFrom::AdapterBase),
            None => (form.to_string(), ModelFrom::Form),
        }
    }

    /// The identity of the model replies come from, when known without reading files.
    fn model_id(&self) -> Option<&BaseId> {
        match &self.model_override {
            Some(_) => self.pinned_id.as_ref(),
            None => self
                .resolved(Slot::A)
                .and_then(|r| r.base)
                .and_then(|b| self.bases.get(&b)),
        }
    }

    /// How `a` fits the model replies come from (for B), or the pinned model (for A; an
    /// unpinned model follows A, so every A fits). `None`: nothing to compare with yet.
    pub fn fit(&self, slot: Slot, a: &RunAdapter) -> Option<Fit> {
        let reference = match slot {
            Slot::A => self.model_override.as_ref().and(self.pinned_id.as_ref())?,
            Slot::B => self.model_id()?,
        };
        let trained = a.base.as_ref().and_then(|b| self.bases.get(b));
        Some(match trained {
            Some(t) => t.fit(reference),
            None => Fit::Unknown {
                trained_on: a.base.clone(),
            },
        })
    }

    /// What a voice is called in titles: `base`, or the adapter's run and step.
    pub fn voice_label(&self, v: Voice) -> String {
        let name = |s: Slot| {
            self.resolved(s)
                .map_or_else(|| "none".to_string(), |r| r.label)
        };
        match v {
            Voice::Base => "base".into(),
            Voice::Adapter => format!("A {}", name(Slot::A)),
            Voice::Second => format!("B {}", name(Slot::B)),
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

    /// Who answers when replies are not side by side.
    pub fn single_voice(&self) -> Voice {
        if self.adapter_on && self.adapter.is_some() {
            Voice::Adapter
        } else {
            Voice::Base
        }
    }

    /// Whether the loaded model is not the one the next reply needs.
    pub(super) fn needs_load(&self) -> bool {
        match &self.model {
            None => true,
            Some(m) => {
                m.adapter != self.adapter_path()
                    || m.second_path() != self.second_path().as_deref()
                    || m.spec != self.model_spec
            }
        }
    }

    /// Adapter A by default: the active run's newest adapter, else the newest run's, among
    /// those that fit a pinned model.
    pub(super) fn default_pick(&self) -> Option<Pick> {
        let fits = |a: &RunAdapter| !self.fit(Slot::A, a).is_some_and(|f| f.differs());
        let active = self.active_run.as_ref().and_then(|run| {
            self.adapters
                .iter()
                .find(|a| a.run_dir == *run)
                .filter(|a| fits(a))
        });
        active
            .or_else(|| self.adapters.iter().find(|a| fits(a)))
            .map(|a| Pick::Follow(a.run_dir.clone()))
    }

    /// After a new listing: A follows the active run unless the user chose, picks that are
    /// gone fall back to their run's newest, and adapters that do not fit a pinned model
    /// (or A's base, for B) are let go. Returns what the user should hear about.
    pub(super) fn settle_picks(&mut self) -> Vec<String> {
        let mut said = Vec::new();
        for slot in [Slot::A, Slot::B] {
            let pick = match slot {
                Slot::A => &mut self.adapter,
                Slot::B => &mut self.second,
            };
            if let Some(Outcome::FellBack(r, why)) =
                pick.as_ref().map(|p| p.resolve(&self.adapters))
            {
                if let Some(run) = r.run {
                    *pick = Some(Pick::Follow(run));
                }
                said.push(why);
            }
        }
        for slot in [Slot::A, Slot::B] {
            let Some(r) = self.resolved(slot) else {
                continue;
            };
            let entry = self.adapters.iter().find(|a| a.dir == r.dir).cloned();
            let refused = entry
                .and_then(|a| self.fit(slot, &a))
                .and_then(|f| f.refusal(&r.dir, &self.model_for("").0));
            if let Some(why) = refused {
                match slot {
                    Slot::A => self.adapter = None,
                    Slot::B => self.second = None,
                }
                said.push(format!("let go of adapter {slot:?}: {why}"));
            }
        }
        if !self.chosen {
            self.adapter = self.default_pick();
        }
        if self.second.is_none() && matches!(self.pair, Some((_, Voice::Second))) {
            self.pair = Some((Voice::Base, Voice::Adapter));
        }
        said
    }
}
