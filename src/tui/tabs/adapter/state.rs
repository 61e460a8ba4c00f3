//! The Adapter tab's state: the run configuration the form edits, the field and module
//! picker under the cursor, the open finder, the model and dataset as workers found them,
//! and what follows from them without touching the disk (visible fields and reward rows,
//! the method a dataset needs, the trainable parameters and the memory estimate).

use super::rewards::Template;
use crate::config::{FieldKind, FieldSpec, Method, RunConfig, FIELDS, PRESETS};
use crate::lora::LoraConfig;
use crate::model::estimate;
use crate::model::ModelConfig;
use crate::telemetry::MemorySample;
use crate::tui::effect::Effect;
use crate::tui::widgets::{PickItem, Picker, TextInput};
use std::path::{Path, PathBuf};

/// The model behind the form's `model.path`, as a worker found it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `model.path` as written in the form.
    pub spec: String,
    /// Where it resolved to.
    pub resolved: String,
    pub config: Option<ModelConfig>,
    /// How fast earlier runs of this model evaluated, for the form's cost of an evaluation.
    pub eval_pace: Option<crate::runs::pace::EvalPace>,
}

/// Background results for this tab.
pub enum Msg {
    /// Boxed: a model's config is large beside the other messages.
    ModelInfo(Box<ModelInfo>),
    DataKind(DataKind),
    PresetSaved(Result<PathBuf, String>),
    /// Items for the open finder.
    Found(Finding, Vec<PickItem>),
}

/// What the finder picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// `model.path`: the workspace's models, the hub cache's, or a typed hub id.
    Model,
    /// `data.train`: the workspace's datasets, or a typed path.
    Dataset,
    /// `dpo.init_adapter` or `kto.init_adapter` (the field): the runs that wrote an
    /// adapter, or a typed path.
    Adapter(&'static str),
}

impl Finding {
    /// The field a pick fills in.
    pub fn field(self) -> &'static str {
        match self {
            Finding::Model => "model.path",
            Finding::Dataset => "data.train",
            Finding::Adapter(field) => field,
        }
    }
}

/// One row of the form: a field of the table, an entry of `grpo.rewards` (a list, so not a
/// field), or the row that adds one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FormRow {
    Field(&'static FieldSpec),
    Reward(usize),
    AddReward,
}

/// What the edit buffer changes when it is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EditOf {
    Field(&'static str),
    /// The weight of `grpo.rewards[i]`.
    Weight(usize),
    /// A new reward of this kind, from the typed text.
    NewReward(Template),
}

impl EditOf {
    /// Applies `text` to `config`, checked by the config's own validation; refused, it
    /// leaves `config` as it was.
    fn apply(self, config: &mut RunConfig, text: &str) -> Result<(), String> {
        match self {
            EditOf::Field(path) => config.set_field(path, text),
            EditOf::Weight(i) => config.set_reward_weight(i, text),
            EditOf::NewReward(t) => {
                let at = format!("grpo.rewards[{}]", config.grpo.rewards.len());
                config.add_reward(t.build(text, &at)?).map(|_| ())
            }
        }
    }
}

pub struct AdapterTab {
    pub config: RunConfig,
    /// The selected row of [`AdapterTab::rows`].
    pub selected: usize,
    /// The field being edited, and its live error.
    pub editing: Option<TextInput>,
    /// What the open edit buffer changes (meaningless while none is open).
    pub edit_of: EditOf,
    pub edit_error: Option<String>,
    /// The module picker (for lora.target_modules): cursor.
    pub modules: Option<usize>,
    /// The reward kind picker (adding to grpo.rewards): cursor into [`Template::ALL`].
    pub reward_kinds: Option<usize>,
    /// The model or dataset finder, while it is open.
    pub finder: Option<(Finding, Picker)>,
    pub preset: usize,
    /// Folder relative model and data paths resolve against (the workspace).
    pub base: PathBuf,
    /// The data folder, where presets' `demo/…` paths live.
    pub(super) data: PathBuf,
    /// (total, free) bytes of the memory the estimate is held against, and its name.
    pub budget: Option<(u64, u64, String)>,
    pub model_info: Option<ModelInfo>,
    pub(super) info_loading: Option<String>,
    /// What `data.train` holds (detected on a worker), for the method it needs.
    pub data_kind: Option<DataKind>,
    pub(super) kind_loading: Option<String>,
    /// The dataset the user just chose: when its kind arrives, `train.method` follows it.
    pub(super) fit_method_to: Option<String>,
    /// Finished runs when the model's info was read: one more finishing may have measured
    /// the model's evaluation pace, so the info is read again.
    pub(super) finished_runs: usize,
    /// The workspace's runs as last seen, for the model's evaluation pace.
    pub(super) known_runs: Vec<crate::runs::RunSummary>,
    /// The model's info is to be read again (a run finished since).
    pub(super) info_stale: bool,
}

/// The detected format and kind of a dataset path, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct DataKind {
    pub path: String,
    pub found: Result<(crate::data::Format, crate::data::Kind), String>,
    /// How many records the file holds (the held-out share of them is evaluated).
    pub records: Option<usize>,
}

/// The method a dataset of `kind` trains with, when `current` cannot use it: rated
/// completions → kto, pairs → dpo, conversations and text → sft.
fn method_for(kind: crate::data::Kind, current: Method) -> Option<Method> {
    current.switch_for(kind)
}

impl AdapterTab {
    /// The form for `ws`, starting from the tiny-demo preset.
    pub fn new(ws: &crate::tui::context::Workspace) -> Self {
        let config = PRESETS
            .iter()
            .find(|(n, _)| *n == "tiny-demo")
            .and_then(|(n, t)| RunConfig::from_yaml(t, n).ok())
            .expect("the tiny-demo preset parses");
        let mut t = AdapterTab {
            config,
            selected: 0,
            editing: None,
            edit_of: EditOf::Field("name"),
            edit_error: None,
            modules: None,
            reward_kinds: None,
            finder: None,
            preset: 0,
            base: ws.root.clone(),
            data: ws.data.clone(),
            budget: None,
            model_info: None,
            info_loading: None,
            data_kind: None,
            finished_runs: 0,
            known_runs: Vec::new(),
            info_stale: false,
            kind_loading: None,
            fit_method_to: None,
        };
        t.localize();
        t
    }

    /// Presets name the demo relative to the data folder; in a project they are made
    /// absolute so they still find it.
    pub(super) fn localize(&mut self) {
        if self.base == self.data {
            return;
        }
        let data = self.data.clone();
        let fix = |p: &mut String| {
            if p.starts_with("demo/") {
                *p = data.join(&*p).display().to_string();
            }
        };
        fix(&mut self.config.model.path);
        fix(&mut self.config.data.train);
    }

    /// Whether the form still trains on the demo's persona set.
    pub fn on_demo_data(&self) -> bool {
        self.config.data.train.ends_with("demo/persona.jsonl")
    }

    /// The memory the estimate is held against: the GPU, else system RAM.
    pub fn set_budget(&mut self, m: &MemorySample) {
        self.budget = Some((m.total, m.total.saturating_sub(m.used), m.device.clone()));
    }

    /// The fields the form shows: those the method reads (and `data.train_undesirable`
    /// only for rated data).
    pub fn visible(&self) -> Vec<&'static FieldSpec> {
        let rated = self.data_kind.as_ref().is_some_and(|k| {
            k.path == self.config.data.train
                && matches!(k.found, Ok((_, crate::data::Kind::Unpaired)))
        });
        FIELDS
            .iter()
            .filter(|f| f.applies(&self.config))
            .filter(|f| rated || f.path != "data.train_undesirable")
            .collect()
    }

    /// The form's rows: the visible fields, and under GRPO its rewards after the `grpo.*`
    /// fields with a row to add one.
    pub fn rows(&self) -> Vec<FormRow> {
        let fields = self.visible();
        let mut rows: Vec<FormRow> = fields.iter().map(|f| FormRow::Field(f)).collect();
        if self.config.method_reads("grpo.rewards") {
            let at = fields
                .iter()
                .rposition(|f| f.path.starts_with("grpo."))
                .map_or(rows.len(), |i| i + 1);
            let rewards = (0..self.config.grpo.rewards.len()).map(FormRow::Reward);
            rows.splice(at..at, rewards.chain([FormRow::AddReward]));
        }
        rows
    }

    pub fn row(&self) -> FormRow {
        let rows = self.rows();
        rows[self.selected.min(rows.len() - 1)]
    }

    /// The selected field, when the selected row is one.
    pub fn field(&self) -> Option<&'static FieldSpec> {
        match self.row() {
            FormRow::Field(f) => Some(f),
            FormRow::Reward(_) | FormRow::AddReward => None,
        }
    }

    pub fn move_sel(&mut self, d: isize) {
        if let Some(p) = self.reward_kinds.as_mut() {
            *p = (*p as isize + d).clamp(0, Template::ALL.len() as isize - 1) as usize;
            return;
        }
        let n = self.module_names().len();
        if let Some(p) = self.modules.as_mut() {
            *p = (*p as isize + d).clamp(0, n as isize) as usize;
            return;
        }
        let n = self.rows().len() as isize;
        self.selected = (self.selected as isize + d).clamp(0, n - 1) as usize;
    }

    /// Selects `row` when the form shows it.
    fn select(&mut self, row: FormRow) {
        if let Some(i) = self.rows().iter().position(|r| *r == row) {
            self.selected = i;
        }
    }

    /// The model path resolved against the workspace (by the worker once it has looked).
    pub fn model_path(&self) -> String {
        if let Some(i) = self
            .model_info
            .as_ref()
            .filter(|i| i.spec == self.config.model.path)
        {
            return i.resolved.clone();
        }
        let p = Path::new(&self.config.model.path);
        if p.is_absolute() {
            self.config.model.path.clone()
        } else {
            self.base.join(p).display().to_string()
        }
    }

    /// The projections LoRA can target in the chosen model's family (Llama's seven until
    /// its config is read), by their HF names.
    pub fn module_names(&self) -> Vec<&'static str> {
        self.model_config().map_or_else(
            || crate::model::Arch::default().family().module_names(),
            ModelConfig::linear_modules,
        )
    }

    pub fn model_config(&self) -> Option<&ModelConfig> {
        self.model_info
            .as_ref()
            .filter(|i| i.spec == self.config.model.path)
            .and_then(|i| i.config.as_ref())
    }

    /// When the dataset the user chose needs another method, switches to it and says so.
    pub(super) fn fit_method(&mut self) -> Option<Effect<Msg>> {
        let k = self.data_kind.as_ref()?;
        if self.fit_method_to.as_ref() != Some(&k.path) {
            return None;
        }
        self.fit_method_to = None;
        let (format, kind) = k.found.clone().ok()?;
        let method = method_for(kind, self.config.train.method)?;
        self.config.set_field("train.method", method.into()).ok()?;
        let why = method.learns_from();
        Some(Effect::info(format!(
            "train.method is now {method}: {format} data holds {why}"
        )))
    }

    /// Starts editing the selected row: a field (booleans and choices cycle instead), a
    /// reward's weight, or picking the kind of a new reward.
    pub fn begin_edit(&mut self) {
        let f = match self.row() {
            FormRow::Field(f) => f,
            FormRow::Reward(i) => {
                let w = self.config.grpo.rewards[i].weight;
                self.edit_with(EditOf::Weight(i), w.to_string());
                return;
            }
            FormRow::AddReward => {
                self.reward_kinds = Some(0);
                return;
            }
        };
        match f.kind {
            FieldKind::Bool => {
                let v = self.config.get_field(f.path) != "true";
                let _ = self
                    .config
                    .set_field(f.path, if v { "true" } else { "false" });
            }
            FieldKind::Choice(opts) => {
                let cur = self.config.get_field(f.path);
                let i = opts
                    .iter()
                    .position(|o| *o == cur)
                    .map_or(0, |i| (i + 1) % opts.len());
                let _ = self.config.set_field(f.path, opts[i]);
            }
            FieldKind::Set(opts) => {
                let cur = self.config.get_field(f.path);
                let _ = self
                    .config
                    .set_field(f.path, &crate::config::next_subset(opts, &cur));
            }
            FieldKind::Modules => self.modules = Some(0),
            _ => self.edit_with(EditOf::Field(f.path), self.config.get_field(f.path)),
        }
    }

    /// Opens the edit buffer on `value` for `what`.
    fn edit_with(&mut self, what: EditOf, value: String) {
        self.editing = Some(TextInput::new(value));
        self.edit_of = what;
        self.edit_error = None;
    }

    /// Opens the reward kind picker (GRPO only).
    pub fn open_reward_kinds(&mut self) -> Result<(), String> {
        if !self.config.method_reads("grpo.rewards") {
            return Err(
                "grpo.rewards: rewards score GRPO's completions; set train.method to grpo first"
                    .into(),
            );
        }
        self.select(FormRow::AddReward);
        self.reward_kinds = Some(0);
        Ok(())
    }

    /// Takes the kind under the picker's cursor: a kind that needs text opens the edit
    /// buffer on its template; the others are added as they are.
    pub fn pick_reward_kind(&mut self) -> Result<(), String> {
        let Some(p) = self.reward_kinds.take() else {
            return Ok(());
        };
        let t = Template::ALL[p.min(Template::ALL.len() - 1)];
        match t.text() {
            Some((_, start)) => {
                self.edit_with(EditOf::NewReward(t), start.to_string());
                self.check_edit();
                Ok(())
            }
            None => {
                // Refused, it changes nothing (as every `apply`).
                EditOf::NewReward(t).apply(&mut self.config, "")?;
                self.select(FormRow::Reward(self.config.grpo.rewards.len() - 1));
                Ok(())
            }
        }
    }

    /// Removes the selected reward; what it did, or why not.
    pub fn remove_reward(&mut self) -> Result<String, String> {
        let FormRow::Reward(i) = self.row() else {
            return Err("select a reward (grpo.rewards[…]) to remove it".into());
        };
        let summary = self.config.grpo.rewards[i].summary();
        self.config.remove_reward(i)?;
        Ok(format!("removed grpo.rewards[{i}]: {summary}"))
    }

    /// Checks the edit buffer as typed: the error shows inline, nothing is applied yet.
    pub fn check_edit(&mut self) {
        if let Some(buf) = &self.editing {
            let mut probe = self.config.clone();
            self.edit_error = self.edit_of.apply(&mut probe, buf.value()).err();
        }
    }

    /// Applies the edit buffer; on error the buffer stays open with the message.
    pub fn commit_edit(&mut self) -> bool {
        let Some(buf) = self.editing.as_ref().map(|b| b.value().to_string()) else {
            return true;
        };
        match self.edit_of.apply(&mut self.config, &buf) {
            Ok(()) => {
                self.editing = None;
                self.edit_error = None;
                match self.edit_of {
                    EditOf::Field("data.train") => {
                        self.fit_method_to = Some(self.config.data.train.clone());
                    }
                    EditOf::NewReward(_) => {
                        self.select(FormRow::Reward(self.config.grpo.rewards.len() - 1))
                    }
                    _ => {}
                }
                true
            }
            Err(e) => {
                self.edit_error = Some(e);
                false
            }
        }
    }

    /// Toggles the module under the picker cursor (the last row is all-linear).
    pub fn toggle_module(&mut self) {
        let Some(i) = self.modules else { return };
        let mut mods = self.config.lora.target_modules.clone();
        let modules = self.module_names();
        if i == modules.len() {
            mods = if mods == ["all-linear"] {
                vec!["q_proj".into(), "v_proj".into()]
            } else {
                vec!["all-linear".into()]
            };
        } else {
            if mods == ["all-linear"] {
                mods = modules.iter().map(|m| m.to_string()).collect();
            }
            let m = modules[i].to_string();
            if let Some(k) = mods.iter().position(|x| *x == m) {
                mods.remove(k);
            } else {
                mods.push(m);
            }
            mods.sort_by_key(|m| modules.iter().position(|x| x == m));
        }
        let text = mods.join(" ");
        if let Err(e) = self.config.set_field("lora.target_modules", &text) {
            self.edit_error = Some(e);
        } else {
            self.edit_error = None;
        }
    }

    pub fn load_next_preset(&mut self) -> String {
        self.preset = (self.preset + 1) % PRESETS.len();
        let (name, text) = PRESETS[self.preset];
        match RunConfig::from_yaml(text, name) {
            Ok(c) => {
                self.config = c;
                self.localize();
                format!("loaded preset {name}")
            }
            Err(e) => e.to_string(),
        }
    }

    pub fn trainable(&self) -> Option<usize> {
        let lora: LoraConfig = (&self.config.lora).into();
        self.model_config()
            .map(|c| estimate::trainable_parameters(c, &lora))
    }

    pub fn memory(&self) -> Option<estimate::MemoryEstimate> {
        let c = self.model_config()?;
        let t = &self.config.train;
        let bytes = t.dtype.size() as u64;
        let engine = t.engine.is_external();
        let launch = crate::scaleout::Launch::from_config(t);
        // An engine run's GPU holds its own share of the batch.
        let batch = if engine {
            crate::scaleout::spread_batch(&self.config, launch.world()).0
        } else {
            t.batch_size
        };
        let rows = t.method.rows_per_item() * batch;
        let whole = estimate::memory(
            c,
            &(&self.config.lora).into(),
            estimate::training_weights(
                c,
                &self.config.model.quant_plan(),
                bytes,
                t.device == crate::model::DeviceSpec::Cpu && !engine,
            ),
            bytes,
            rows,
            self.config.data.max_seq_len,
            t.gradient_checkpointing,
            t.device == crate::model::DeviceSpec::Cpu,
        );
        if !engine {
            return Some(whole);
        }
        Some(estimate::per_gpu(
            &whole,
            launch.world(),
            t.sharding != crate::config::ShardingChoice::None,
            t.sharding.shards_parameters(),
        ))
    }

    /// How an engine run's GPUs share the estimate, said under it; `None` for tunelab's own.
    pub fn sharing(&self) -> Option<String> {
        use crate::config::ShardingChoice as S;
        let t = &self.config.train;
        if !t.engine.is_external() {
            return None;
        }
        let w = crate::scaleout::Launch::from_config(t).world();
        Some(match t.sharding {
            S::None if w == 1 => "per GPU: one GPU holds it all".into(),
            S::None => format!("per GPU: data parallel, each of {w} holds the model"),
            S::Zero2 => format!("per GPU: ZeRO-2, LoRA grads+moments ÷ {w}"),
            S::Zero3 => format!("per GPU: ZeRO-3, weights and LoRA ÷ {w}"),
            S::Fsdp => format!("per GPU: FSDP, weights and LoRA ÷ {w}"),
        })
    }
}
