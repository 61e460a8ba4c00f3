//! Adapter tab: a form over the run configuration, generated from `config::FIELDS` (help
//! text, kinds, ranges). Edits are checked as you type; the trainable-parameter count and
//! the memory estimate follow the form live. The model's config.json is read on a worker.

use super::{Component, Ctx};
use crate::config::{FieldKind, FieldSpec, Method, RunConfig, FIELDS, PRESETS};
use crate::lora::LoraConfig;
use crate::model::estimate;
use crate::model::ModelConfig;
use crate::telemetry::MemorySample;
use crate::tui::action::Action;
use crate::tui::context::Workspace;
use crate::tui::effect::Effect;
use crate::tui::model_list::{dataset_items, model_items};
use crate::tui::theme::Theme;
use crate::tui::widgets::{InputEvent, PickItem, Picked, Picker, TextInput};
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// The model behind the form's `model.path`, as a worker found it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `model.path` as written in the form.
    pub spec: String,
    /// Where it resolved to.
    pub resolved: String,
    pub config: Option<ModelConfig>,
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
    fn field(self) -> &'static str {
        match self {
            Finding::Model => "model.path",
            Finding::Dataset => "data.train",
            Finding::Adapter(field) => field,
        }
    }
}

/// The runs that can start a preference run: those with a PEFT adapter, newest first,
/// after a "fresh adapter" row. Reads each run's adapter folder; worker threads only.
fn adapter_items(runs: &[crate::runs::RunSummary]) -> Vec<PickItem> {
    let mut items = vec![PickItem {
        label: "(fresh adapter)".into(),
        detail: "start from the base model; the reference is the base".into(),
        value: String::new(),
        ok: true,
    }];
    for r in runs {
        let adapter = crate::runs::RunDir::new(&r.dir).adapter();
        if !adapter.join("adapter_config.json").is_file() {
            continue;
        }
        let loss = r
            .best_eval_loss
            .map(|l| format!("best eval {l:.4}"))
            .or(r.last_loss.map(|l| format!("loss {l:.4}")))
            .unwrap_or_default();
        items.push(PickItem {
            label: r.id.clone(),
            detail: format!("{} · step {} · {loss}", r.state_label(), r.step),
            value: r.dir.display().to_string(),
            ok: true,
        });
    }
    items
}

/// Finds models, datasets or adapters for the finder, on a worker.
pub fn find_job(
    what: Finding,
    ws: Workspace,
    dtype: crate::model::Dtype,
    runs: Vec<crate::runs::RunSummary>,
) -> Effect<Msg> {
    Effect::spawn(move || {
        let items = match what {
            Finding::Adapter(_) => adapter_items(&runs),
            Finding::Model => model_items(&ws.models(), dtype.size() as f64, &dtype.to_string()),
            Finding::Dataset => {
                let files: Vec<(PathBuf, u64)> =
                    crate::workspace::datasets(&ws.root, ws.scan_depth())
                        .into_iter()
                        .map(|p| {
                            let n = std::fs::metadata(&p).map_or(0, |m| m.len());
                            (p, n)
                        })
                        .collect();
                dataset_items(&ws.root, &files)
            }
        };
        Msg::Found(what, items)
    })
}

pub struct AdapterTab {
    pub config: RunConfig,
    pub selected: usize,
    /// The field being edited, and its live error.
    pub editing: Option<TextInput>,
    pub edit_error: Option<String>,
    /// The module picker (for lora.target_modules): cursor.
    pub modules: Option<usize>,
    /// The model or dataset finder, while it is open.
    pub finder: Option<(Finding, Picker)>,
    pub preset: usize,
    /// Folder relative model and data paths resolve against (the workspace).
    pub base: PathBuf,
    /// The data folder, where presets' `demo/…` paths live.
    data: PathBuf,
    /// (total, free) bytes of the memory the estimate is held against, and its name.
    pub budget: Option<(u64, u64, String)>,
    pub model_info: Option<ModelInfo>,
    info_loading: Option<String>,
    /// What `data.train` holds (detected on a worker), for the method it needs.
    pub data_kind: Option<DataKind>,
    kind_loading: Option<String>,
    /// The dataset the user just chose: when its kind arrives, `train.method` follows it.
    fit_method_to: Option<String>,
}

/// The detected format and kind of a dataset path, or why it could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct DataKind {
    pub path: String,
    pub found: Result<(crate::data::Format, crate::data::Kind), String>,
}

/// Detects the format of `path` (relative to `base`, then `data`); worker threads only.
fn data_kind_job(path: String, base: PathBuf, data: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || {
        let p = Path::new(&path);
        let resolved = [base.join(p), data.join(p)]
            .into_iter()
            .find(|c| c.is_file())
            .unwrap_or_else(|| p.to_path_buf());
        let found = crate::data::Dataset::open(&resolved, None)
            .map(|d| (d.format, d.kind()))
            .map_err(|e| e.to_string());
        Msg::DataKind(DataKind { path, found })
    })
}

/// The method a dataset of `kind` trains with, when `current` cannot use it: rated
/// completions → kto, pairs → dpo, conversations and text → sft.
fn method_for(kind: crate::data::Kind, current: Method) -> Option<Method> {
    current.switch_for(kind)
}

/// Resolves `spec` against `base` and reads its config.json; worker threads only.
fn model_info_job(spec: String, base: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || {
        let p = Path::new(&spec);
        // Relative to the workspace when it is there; else as given (a hub id).
        let resolved = if p.is_absolute() || p.exists() || !base.join(p).exists() {
            spec.clone()
        } else {
            base.join(p).display().to_string()
        };
        let config = crate::model::source::config(&resolved).ok();
        Msg::ModelInfo(Box::new(ModelInfo {
            spec,
            resolved,
            config,
        }))
    })
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
            edit_error: None,
            modules: None,
            finder: None,
            preset: 0,
            base: ws.root.clone(),
            data: ws.data.clone(),
            budget: None,
            model_info: None,
            info_loading: None,
            data_kind: None,
            kind_loading: None,
            fit_method_to: None,
        };
        t.localize();
        t
    }

    /// Presets name the demo relative to the data folder; in a project they are made
    /// absolute so they still find it.
    fn localize(&mut self) {
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

    /// Trains on `path` from now on; the method follows what the file holds once the
    /// returned job has detected it.
    pub fn use_dataset(&mut self, path: &Path) -> Result<Option<Effect<Msg>>, String> {
        self.config
            .set_field("data.train", &path.display().to_string())?;
        self.fit_method_to = Some(self.config.data.train.clone());
        Ok(self.want_info())
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

    pub fn field(&self) -> &'static FieldSpec {
        let v = self.visible();
        v[self.selected.min(v.len() - 1)]
    }

    pub fn move_sel(&mut self, d: isize) {
        let n = self.module_names().len();
        if let Some(p) = self.modules.as_mut() {
            *p = (*p as isize + d).clamp(0, n as isize) as usize;
            return;
        }
        let n = self.visible().len() as isize;
        self.selected = (self.selected as isize + d).clamp(0, n - 1) as usize;
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
            || crate::model::Arch::Llama.family().module_names(),
            ModelConfig::linear_modules,
        )
    }

    pub fn model_config(&self) -> Option<&ModelConfig> {
        self.model_info
            .as_ref()
            .filter(|i| i.spec == self.config.model.path)
            .and_then(|i| i.config.as_ref())
    }

    /// Reads the model's config.json unless it is read or being read.
    /// Reads the model's config and the dataset's kind when they changed.
    fn want_info(&mut self) -> Option<Effect<Msg>> {
        and(self.want_config_json(), self.want_data_kind())
    }

    fn want_config_json(&mut self) -> Option<Effect<Msg>> {
        let spec = &self.config.model.path;
        if self.model_info.as_ref().is_some_and(|i| i.spec == *spec)
            || self.info_loading.as_ref() == Some(spec)
        {
            return None;
        }
        self.info_loading = Some(spec.clone());
        Some(model_info_job(spec.clone(), self.base.clone()))
    }

    fn want_data_kind(&mut self) -> Option<Effect<Msg>> {
        let path = &self.config.data.train;
        if self.data_kind.as_ref().is_some_and(|k| k.path == *path)
            || self.kind_loading.as_ref() == Some(path)
        {
            return None;
        }
        self.kind_loading = Some(path.clone());
        Some(data_kind_job(
            path.clone(),
            self.base.clone(),
            self.data.clone(),
        ))
    }

    /// When the dataset the user chose needs another method, switches to it and says so.
    fn fit_method(&mut self) -> Option<Effect<Msg>> {
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

    /// Starts editing the selected field (booleans and choices cycle instead).
    pub fn begin_edit(&mut self) {
        let f = self.field();
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
            FieldKind::Modules => self.modules = Some(0),
            _ => {
                self.editing = Some(TextInput::new(self.config.get_field(f.path)));
                self.edit_error = None;
            }
        }
    }

    /// Checks the edit buffer as typed: the error shows inline, nothing is applied yet.
    pub fn check_edit(&mut self) {
        if let Some(buf) = &self.editing {
            let mut probe = self.config.clone();
            self.edit_error = probe.set_field(self.field().path, buf.value()).err();
        }
    }

    /// Applies the edit buffer; on error the buffer stays open with the message.
    pub fn commit_edit(&mut self) -> bool {
        let Some(buf) = self.editing.as_ref().map(|b| b.value().to_string()) else {
            return true;
        };
        let path = self.field().path;
        match self.config.set_field(path, &buf) {
            Ok(()) => {
                self.editing = None;
                self.edit_error = None;
                if path == "data.train" {
                    self.fit_method_to = Some(self.config.data.train.clone());
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

    /// Saves the form as `<workspace>/presets/<name>.yaml`, on a worker.
    fn save_preset(&self) -> Effect<Msg> {
        let name = self.config.name.clone().unwrap_or_else(|| "custom".into());
        let path = self.base.join("presets").join(format!("{name}.yaml"));
        let config = self.config.clone();
        Effect::spawn(move || {
            let result = (|| {
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
                    .map_err(|e| e.to_string())?;
                let yaml = serde_yaml::to_string(&config).map_err(|e| e.to_string())?;
                crate::files::write_atomic(&path, yaml.as_bytes())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(path)
            })();
            Msg::PresetSaved(result)
        })
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
        let rows = t.method.rows_per_item() * t.batch_size;
        Some(estimate::memory(
            c,
            &(&self.config.lora).into(),
            estimate::base_bytes(c, &self.config.model.quant_plan(), bytes),
            bytes,
            rows,
            self.config.data.max_seq_len,
            t.gradient_checkpointing,
        ))
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
        find_job(
            what,
            ctx.ws.clone(),
            self.config.train.dtype,
            ctx.runs.to_vec(),
        )
    }

    fn act(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        let path = self.field().path;
        match a {
            Action::Enter if self.modules.is_none() => {
                let what = [
                    Finding::Model,
                    Finding::Dataset,
                    Finding::Adapter("dpo.init_adapter"),
                    Finding::Adapter("kto.init_adapter"),
                ]
                .into_iter()
                .find(|w| w.field() == path);
                match what {
                    Some(w) => return Some(self.open_finder(w, ctx)),
                    None => self.begin_edit(),
                }
            }
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

    fn tick(&mut self, _ctx: &Ctx) -> Option<Effect<Msg>> {
        self.want_info()
    }

    fn back(&mut self) {
        self.modules = None;
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        draw(f, area, self, ctx.theme);
        if let Some((_, finder)) = &self.finder {
            finder.draw(f, area, ctx.theme);
        }
    }
}

/// What `data.train` holds, as detected.
fn data_line(t: &AdapterTab) -> String {
    match t
        .data_kind
        .as_ref()
        .filter(|k| k.path == t.config.data.train)
    {
        Some(DataKind {
            found: Ok((format, kind)),
            ..
        }) => format!("data       {format} · {kind}"),
        Some(DataKind { found: Err(_), .. }) => "data       unreadable (see data.train)".into(),
        None => "data       …".into(),
    }
}

/// What the run optimises: SFT, or the preference loss with its β and starting point.
fn method_line(c: &RunConfig) -> String {
    let from = || {
        c.init_adapter().map_or("fresh adapter".into(), |a| {
            // A run's adapter folder is named after the run.
            let p = Path::new(a.trim_end_matches('/'));
            let p = if p.ends_with("adapter") {
                p.parent().unwrap_or(p)
            } else {
                p
            };
            let name = p
                .file_name()
                .map_or(a.to_string(), |n| n.to_string_lossy().into_owned());
            format!("from {}", crate::tui::text::middle(&name, 16))
        })
    };
    match c.train.method.init_adapter_field() {
        Some(_) => format!("method     {} · {}", c.method_settings(), from()),
        None => format!("method     {}", c.method_settings()),
    }
}

fn gib(b: u64) -> String {
    format!("{} GiB", crate::units::gib(b, 2))
}

fn draw(f: &mut Frame, area: Rect, t: &AdapterTab, theme: &Theme) {
    let [form, side] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(44)]).areas(area);
    let rows: Vec<Row> = t
        .visible()
        .into_iter()
        .enumerate()
        .map(|(i, fs)| {
            let mut value = t.config.get_field(fs.path);
            if i == t.selected {
                if let Some(buf) = &t.editing {
                    value = buf.display();
                }
            }
            let style = if i == t.selected {
                theme.selection
            } else {
                theme.foreground
            };
            Row::new(vec![fs.path.to_string(), value]).style(style)
        })
        .collect();
    let mut state = TableState::default().with_selected(Some(t.selected));
    let title = format!(" run configuration · preset {} ", PRESETS[t.preset].0);
    f.render_stateful_widget(
        Table::new(rows, [Constraint::Length(30), Constraint::Min(10)]).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .border_style(theme.border_focused),
        ),
        form,
        &mut state,
    );
    let [info, mem, help] = Layout::vertical([
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Min(4),
    ])
    .areas(side);
    let trainable = t.trainable();
    let total = t.model_config().map(|c| c.parameter_count());
    let info_lines = vec![
        Line::from(vec![
            Span::raw("model      "),
            Span::styled(
                crate::tui::text::middle(&t.config.model.path, 30),
                theme.accent,
            ),
        ]),
        Line::from(format!(
            "trainable  {}",
            trainable.map_or("? (no config.json)".into(), |n| format!(
                "{n} ({:.3}% of {})",
                100.0 * n as f64 / total.unwrap_or(1).max(1) as f64,
                total.unwrap_or(0)
            ))
        )),
        Line::from(format!(
            "LoRA       r{} α{} · scale {:.3}",
            t.config.lora.r,
            t.config.lora.alpha,
            LoraConfig::from(&t.config.lora).scale()
        )),
        Line::from(format!(
            "modules    {}",
            t.config.lora.target_modules.join(",")
        )),
        Line::from(data_line(t)),
        Line::from(method_line(&t.config)),
        Line::from(format!(
            "train      {} · lr {} · bs {}×{}",
            t.config.train.dtype,
            t.config.train.lr,
            t.config.train.batch_size,
            t.config.train.grad_accum
        )),
    ];
    f.render_widget(
        Paragraph::new(info_lines).block(Block::default().borders(Borders::ALL).title(" adapter ")),
        info,
    );
    let mem_block = Block::default()
        .borders(Borders::ALL)
        .title(" memory estimate ");
    match (t.memory(), &t.budget) {
        (Some(m), Some((total, free, name))) => {
            let inner = mem_block.inner(mem);
            f.render_widget(mem_block, mem);
            let [lines_area, gauge_area] =
                Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
            let fits = m.total <= *free;
            let verdict = if fits {
                Span::styled(
                    format!("fits: {} of {} free", gib(m.total), gib(*free)),
                    theme.success,
                )
            } else {
                Span::styled(
                    format!("does not fit: {} > {} free", gib(m.total), gib(*free)),
                    theme.error,
                )
            };
            f.render_widget(
                Paragraph::new(vec![
                    Line::from(format!("weights    {}", gib(m.weights))),
                    Line::from(format!("LoRA state {}", gib(m.lora_state))),
                    Line::from(format!("activ.     {}", gib(m.activations))),
                    Line::from(format!("logits     {}", gib(m.logits))),
                    Line::from(verdict),
                    Line::styled(name.clone(), theme.muted),
                ]),
                lines_area,
            );
            let ratio = (m.total as f64 / (*total).max(1) as f64).min(1.0);
            let style = if ratio > 0.9 {
                theme.gauge_high
            } else if ratio > 0.7 {
                theme.gauge_warn
            } else {
                theme.gauge_ok
            };
            f.render_widget(
                Gauge::default()
                    .ratio(ratio)
                    .gauge_style(style)
                    .label(format!("{:.0}% of {}", ratio * 100.0, gib(*total))),
                gauge_area,
            );
        }
        _ => f.render_widget(
            Paragraph::new(
                "no estimate yet: the model has no readable config.json. Enter on model.path finds one.",
            )
            .wrap(Wrap { trim: true })
            .block(mem_block),
            mem,
        ),
    }
    let fs = t.field();
    let mut help_lines = vec![
        Line::styled(fs.path, theme.title.add_modifier(Modifier::BOLD)),
        Line::from(fs.help),
    ];
    match fs.kind {
        FieldKind::Int { min, max } => help_lines.push(Line::styled(
            format!("whole number {min}…{max}"),
            theme.muted,
        )),
        FieldKind::Float { min, max } => {
            help_lines.push(Line::styled(format!("number {min}…{max}"), theme.muted))
        }
        FieldKind::OptFloat { min, max } => help_lines.push(Line::styled(
            format!("number {min}…{max}, or empty for none"),
            theme.muted,
        )),
        FieldKind::Adapter => help_lines.push(Line::styled(
            "Enter picks a run with an adapter (or types a PEFT folder)",
            theme.muted,
        )),
        FieldKind::Choice(o) => help_lines.push(Line::styled(
            format!("Enter cycles: {}", o.join(" · ")),
            theme.muted,
        )),
        FieldKind::Bool => help_lines.push(Line::styled("Enter toggles", theme.muted)),
        FieldKind::Modules => {
            help_lines.push(Line::styled("Enter opens the module picker", theme.muted))
        }
        _ => {}
    }
    if let Some(p) = t.modules {
        let mods = &t.config.lora.target_modules;
        let all = mods.iter().any(|m| m == "all-linear");
        for (i, m) in t
            .module_names()
            .iter()
            .chain(["all-linear"].iter())
            .enumerate()
        {
            let on = all || mods.iter().any(|x| x == m);
            let line = format!(
                "{} [{}] {m}",
                if i == p { "▸" } else { " " },
                if on { "x" } else { " " }
            );
            help_lines.push(Line::styled(
                line,
                if i == p {
                    theme.selection
                } else {
                    theme.foreground
                },
            ));
        }
        help_lines.push(Line::styled("space toggles · Esc closes", theme.muted));
    }
    if let Some(e) = &t.edit_error {
        help_lines.push(Line::styled(format!("✗ {e}"), theme.error));
    } else if t.editing.is_some() {
        help_lines.push(Line::styled(
            "✓ valid · Enter applies · Esc cancels",
            theme.success,
        ));
    }
    let issues = t.config.validate();
    for i in issues.iter().take(3) {
        help_lines.push(Line::styled(format!("! {i}"), theme.warning));
    }
    f.render_widget(
        Paragraph::new(help_lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" field ")),
        help,
    );
}
