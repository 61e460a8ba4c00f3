//! Scale-out: a tunelab run as the equivalent Axolotl, TRL or LLaMA-Factory experiment, and
//! a finished run of those tools brought back as a tunelab run.
//!
//! [`export`] writes, into one folder: the tool's config (`config.yml` for Axolotl,
//! `run.sh` with a `trl sft|dpo|kto|grpo` command line for TRL (and a GRPO run's rewards as
//! `tunelab_rewards.py`), `config.yaml` plus
//! `data/dataset_info.json` for LLaMA-Factory), the dataset converted by the data layer into
//! the layout that tool reads and split into `data/train.jsonl` and `data/test.jsonl` with
//! tunelab's own held-out split, an `accelerate` config (and DeepSpeed JSON) for N GPUs,
//! a copy of the tunelab config (`tunelab.yaml`) and a `README.txt` with the exact commands
//! and every field that did not map. Each tool's mapping is a pure function of the config
//! (`axolotl`, `trl`, `llamafactory`); `dataset` does the file work, `launch` the
//! distributed configs.
//!
//! [`import`] reads a Hugging Face Trainer output folder (a PEFT adapter and
//! `trainer_state.json`) and writes a run folder under the runs root, through the run
//! directory's own writers, so `tunelab runs list/show`, the Runs tab and Chat see it.

mod axolotl;
mod dataset;
pub mod import;
mod launch;
mod llamafactory;
mod masks;
mod trl;
mod trl_rewards;
mod yaml;

pub use import::{import, ImportOptions, Imported};

use crate::config::RunConfig;
use crate::data::{Dataset, Format, Kind};
use std::path::{Path, PathBuf};

/// The tool an experiment is exported to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum Tool {
    Axolotl,
    Trl,
    Llamafactory,
}

impl Tool {
    /// The tool's own spelling, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Axolotl => "Axolotl",
            Tool::Trl => "TRL",
            Tool::Llamafactory => "LLaMA-Factory",
        }
    }
}

impl std::str::FromStr for Tool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("--to", s)
    }
}

/// How the GPUs share the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharding {
    /// Data parallel only (one GPU, or DDP over several).
    #[default]
    None,
    /// DeepSpeed ZeRO stage 2 or 3.
    Zero(u8),
    /// PyTorch FSDP (version 2).
    Fsdp,
}

/// Where the exported run will train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// GPUs per node.
    pub gpus: usize,
    /// Machines; more than one reads its rank and rendezvous from `$NODE_RANK`,
    /// `$MASTER_ADDR` and `$MASTER_PORT` (the SLURM script sets them).
    pub nodes: usize,
    pub sharding: Sharding,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            gpus: 1,
            nodes: 1,
            sharding: Sharding::None,
        }
    }
}

impl Launch {
    /// Whether the run needs a distributed launcher (more than one process, or ZeRO/FSDP).
    pub fn distributed(&self) -> bool {
        self.world() > 1 || self.sharding != Sharding::None
    }

    /// Processes over all nodes, one per GPU.
    pub fn world(&self) -> usize {
        self.gpus.max(1) * self.nodes.max(1)
    }

    /// The launch of `gpus` per node over `nodes`, sharded as `sharding` asks.
    pub fn from_config(t: &crate::config::TrainSection) -> Launch {
        use crate::config::ShardingChoice as S;
        Launch {
            gpus: t.gpus.max(1),
            nodes: t.nodes.max(1),
            sharding: match t.sharding {
                S::None => Sharding::None,
                S::Zero2 => Sharding::Zero(2),
                S::Zero3 => Sharding::Zero(3),
                S::Fsdp => Sharding::Fsdp,
            },
        }
    }
}

/// What `export` is asked for.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub tool: Tool,
    pub launch: Launch,
    /// The base model to name instead of `model.path` (a hub id for the cluster, say).
    pub base_model: Option<String>,
}

/// One field of the tunelab config that the tool has no exact equivalent for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// The tunelab field (`dpo.label_smoothing`) or area (`data`).
    pub field: String,
    /// What happens instead.
    pub why: String,
}

impl Unmapped {
    fn new(field: &str, why: impl Into<String>) -> Self {
        Unmapped {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// What `export` wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub dir: PathBuf,
    /// Files written, relative to `dir`.
    pub files: Vec<String>,
    /// The commands to launch the run, in `dir`.
    pub commands: Vec<String>,
    pub unmapped: Vec<Unmapped>,
    pub train_records: u64,
    pub eval_records: u64,
    /// What the dataset conversion could not carry exactly, with counts.
    pub data_notes: Vec<(String, u64)>,
    /// The `{% generation %}`-marked chat template written for TRL: how many records it was
    /// checked on, and whether that was all of them.
    pub marked: Option<(u64, bool)>,
    /// What the user should know before launching (a fallback the export chose).
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleoutError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A record the tool's layout cannot hold; nothing was published for that file.
    #[error("{}: {location}: {message}", path.display())]
    Record {
        path: PathBuf,
        location: String,
        message: String,
    },
    /// The config asks for something the tool cannot do.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Model(#[from] crate::model::ModelError),
    #[error("{0}")]
    Template(#[from] crate::template::TemplateError),
    /// `runs import`: the folder lacks what a finished run leaves.
    #[error("{}: {message}", path.display())]
    Import { path: PathBuf, message: String },
}

/// A tool without a GRPO mapping refuses the run, rather than exporting one that trains
/// something else; `why` says what the tool lacks, and the message where to go instead.
pub(crate) fn grpo_unsupported(why: &str) -> ScaleoutError {
    ScaleoutError::Unsupported(format!(
        "train.method grpo: {why}; export with --to trl (it writes the rewards as tunelab_rewards.py), or train with tunelab"
    ))
}

impl ScaleoutError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ScaleoutError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The dataset files, relative to the export folder.
pub const TRAIN_FILE: &str = "data/train.jsonl";
pub const EVAL_FILE: &str = "data/test.jsonl";
/// The chat template written beside the config.
pub const TEMPLATE_FILE: &str = crate::template::marked::FILE;
/// The tunelab config copied into the export folder; `runs import` reads it back.
pub const CONFIG_COPY: &str = "tunelab.yaml";
/// Where each tool is told to write its checkpoints and adapter, relative to the folder.
pub const OUTPUT_DIR: &str = "output";

/// The layout of the converted dataset, chosen by the tool for the method and `train_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// OpenAI `messages` (with `tools`, per-message `weight`).
    Messages,
    /// OpenAI `messages` with every assistant turn but the last weighted 0 (Axolotl's
    /// `message_field_training`), for `train_on: last_assistant`.
    LastTurnWeighted,
    /// TRL's conversational prompt-completion: the last assistant message is the completion.
    PromptCompletion,
    /// `{"text": …}`.
    Text,
    /// ShareGPT `conversations` (LLaMA-Factory).
    Sharegpt,
    /// TRL's `prompt`, `chosen`, `rejected`.
    Preference,
    /// Axolotl's ORPO layout: `chosen`/`rejected` as whole conversations, `system` apart.
    OrpoConversations,
    /// LLaMA-Factory's ShareGPT pairs.
    SharegptPreference,
    /// TRL's unpaired `prompt`, `completion`, `label` (message lists, or strings).
    KtoPromptCompletion,
    /// The prompt and completion rendered to text with the model's chat template (Axolotl's
    /// KTO loader takes text), plus `label`.
    KtoRendered,
    /// `messages` plus `label` (LLaMA-Factory's `kto_tag`).
    KtoMessages,
    /// TRL's conversational prompt-only layout for GRPO: `prompt` (the messages up to the
    /// last user turn, or a string for plain data), `reference` (what the rewards compare
    /// with), and the record's other columns, which TRL hands the reward functions.
    PromptOnly,
}

impl Shape {
    /// The data-layer format each record is written as before any reshaping.
    pub fn format(self) -> Format {
        match self {
            Shape::Messages
            | Shape::LastTurnWeighted
            | Shape::PromptCompletion
            | Shape::PromptOnly => Format::Openai,
            Shape::Text => Format::Text,
            Shape::Sharegpt => Format::Sharegpt,
            Shape::Preference | Shape::OrpoConversations => Format::Preference,
            Shape::SharegptPreference => Format::SharegptPreference,
            Shape::KtoPromptCompletion | Shape::KtoRendered | Shape::KtoMessages => Format::Kto,
        }
    }

    /// One line for the README.
    pub fn describe(self) -> &'static str {
        match self {
            Shape::Messages => "OpenAI messages JSONL ({\"messages\": [{role, content}], \"tools\"?})",
            Shape::LastTurnWeighted => "OpenAI messages JSONL; earlier assistant turns carry \"weight\": 0, the last \"weight\": 1",
            Shape::PromptCompletion => "conversational prompt-completion JSONL ({\"prompt\": [messages], \"completion\": [last assistant message]})",
            Shape::Text => "text JSONL ({\"text\": …})",
            Shape::Sharegpt => "ShareGPT JSONL ({\"conversations\": [{from, value}], \"system\"?, \"tools\"?})",
            Shape::Preference => "preference JSONL ({\"prompt\", \"chosen\", \"rejected\"}: message lists, or strings for plain data)",
            Shape::OrpoConversations => "ORPO JSONL ({\"system\"?, \"chosen\": [user, assistant], \"rejected\": [user, assistant]})",
            Shape::SharegptPreference => "ShareGPT preference JSONL ({\"conversations\", \"chosen\": {from, value}, \"rejected\": {from, value}})",
            Shape::KtoPromptCompletion => "unpaired JSONL ({\"prompt\", \"completion\", \"label\"})",
            Shape::KtoRendered => "unpaired JSONL with the prompt and completion rendered by the model's chat template ({\"prompt\": text, \"completion\": text, \"label\"})",
            Shape::KtoMessages => "unpaired JSONL ({\"messages\": [{role, content}], \"label\"})",
            Shape::PromptOnly => "conversational prompt-only JSONL ({\"prompt\": [messages up to the last user turn], \"reference\": the answer/solution column or the final assistant turn, the record's other columns})",
        }
    }
}

/// Everything a tool's mapping reads: the config, and what the export decided around it.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub cfg: &'a RunConfig,
    pub tool: Tool,
    /// The base model as the tool is to load it (a folder or a hub id).
    pub model: String,
    /// The kind of the training file.
    pub kind: Kind,
    pub shape: Shape,
    /// Whether a held-out file (`EVAL_FILE`) is written.
    pub has_eval: bool,
    /// The top-level keys of the records written to the train and the held-out file.
    pub train_keys: std::collections::BTreeSet<String>,
    pub eval_keys: std::collections::BTreeSet<String>,
    pub launch: Launch,
    /// Per-GPU batch and accumulation after spreading tunelab's batch over the GPUs.
    pub per_device_batch: usize,
    pub grad_accum: usize,
    /// A chat template file written beside the config (`chat_template.jinja`): the run's
    /// with `{% generation %}` markers (TRL's assistant-only loss), or the run's own when it
    /// is not the model's.
    pub template_file: Option<String>,
    /// Whether `template_file` is the marked template: the records it was checked on, and
    /// whether that was all of them.
    pub marked: Option<(u64, bool)>,
    /// The starting adapter copied beside the config (`init_adapter/`), for DPO/KTO.
    pub init_adapter: Option<String>,
}

impl Plan<'_> {
    /// `train.dtype` as the tools' mixed-precision switch.
    pub fn precision(&self) -> Precision {
        match self.cfg.train.dtype {
            crate::model::Dtype::Bf16 => Precision::Bf16,
            crate::model::Dtype::F16 => Precision::Fp16,
            crate::model::Dtype::F32 => Precision::Fp32,
        }
    }

    /// Warm-up as the tools take it: a ratio when tunelab's is below 1, else steps.
    pub fn warmup(&self) -> Warmup {
        let w = self.cfg.train.warmup;
        if w > 0.0 && w < 1.0 {
            Warmup::Ratio(w)
        } else {
            Warmup::Steps(w.round() as u64)
        }
    }

    /// The HF scheduler name: tunelab's constant schedule warms up first, which HF calls
    /// `constant_with_warmup`.
    pub fn scheduler(&self) -> &'static str {
        use crate::config::Schedule;
        match self.cfg.train.scheduler {
            Schedule::Constant if self.cfg.train.warmup > 0.0 => "constant_with_warmup",
            Schedule::Constant => "constant",
            Schedule::Linear => "linear",
            Schedule::Cosine => "cosine",
        }
    }

    /// LoRA targets: `None` for all linear layers.
    pub fn lora_targets(&self) -> Option<&[String]> {
        let t = &self.cfg.lora.target_modules;
        (!t.iter().any(|m| m == "all-linear")).then_some(t.as_slice())
    }

    /// Whether FSDP does the activation checkpointing (the Trainer's own must then be off).
    pub fn fsdp_checkpointing(&self) -> bool {
        self.launch.sharding == Sharding::Fsdp && self.cfg.train.gradient_checkpointing
    }

    /// bitsandbytes bits for `model.quantization`: 4 (nf4, or the nearest to a 4-bit GGUF
    /// type), 8, or none.
    pub fn quant_bits(&self) -> Option<u8> {
        use crate::model::Quantization as Q;
        match self.cfg.model.quantization {
            Q::None => None,
            Q::Q8_0 => Some(8),
            Q::Q4_0 | Q::Q4k | Q::Nf4 => Some(4),
        }
    }

    /// The transformer block class to wrap for FSDP (`LlamaDecoderLayer`), when the model
    /// folder is local and names its architecture.
    pub fn decoder_layer(&self) -> Option<String> {
        let text = [&self.model, &self.cfg.model.path]
            .iter()
            .find_map(|m| std::fs::read_to_string(Path::new(m).join("config.json")).ok())?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let arch = v.get("architectures")?.get(0)?.as_str()?;
        let base = arch
            .strip_suffix("ForCausalLM")
            .or_else(|| arch.strip_suffix("ForConditionalGeneration"))?;
        Some(format!("{base}DecoderLayer"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Bf16,
    Fp16,
    Fp32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warmup {
    Ratio(f64),
    Steps(u64),
}

/// A tool's mapping: the files beside the data, the launch commands, and what did not map.
#[derive(Debug, Clone, Default)]
pub struct ToolFiles {
    /// (path relative to the export folder, contents).
    pub files: Vec<(String, String)>,
    pub commands: Vec<String>,
    pub unmapped: Vec<Unmapped>,
}

/// `run.sh`: the launch command, run from the export folder, extra arguments appended (a
/// tool's overrides, such as `--use_cpu true` for TRL). `what` names the experiment's kind
/// for the header comment.
pub(crate) fn run_script(plan: &Plan, what: &str, command: &str) -> (String, String) {
    let text = format!(
        "#!/usr/bin/env bash\n# {} as {what}, written by `tunelab export-config`.\n# Runs from this folder; extra arguments go to the command.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n{command} \"$@\"\n",
        plan.cfg.name.as_deref().unwrap_or("run")
    );
    ("run.sh".into(), text)
}

/// A number as YAML and the tools' argument parsers read it back: integers without a
/// fraction, others in plain decimal (no exponent, which PyYAML would read as a string).
pub fn number(x: f64) -> serde_json::Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        serde_json::Value::from(x as i64)
    } else {
        serde_json::Value::from(x)
    }
}

/// Writes the experiment for `opts.tool` into `dir` (created; an existing folder must be
/// empty or an earlier export). `cfg` has its paths resolved.
pub fn export(
    cfg: &RunConfig,
    dir: &Path,
    opts: &ExportOptions,
) -> Result<Exported, ScaleoutError> {
    check_folder(dir)?;
    let issues = cfg.validate();
    if let Some(i) = issues.first() {
        return Err(ScaleoutError::Unsupported(format!("the config: {i}")));
    }
    let model = opts
        .base_model
        .clone()
        .unwrap_or_else(|| cfg.model.path.clone());
    if model.to_ascii_lowercase().ends_with(".gguf") {
        return Err(ScaleoutError::Unsupported(format!(
            "model.path {model:?} is a GGUF file; {} trains from a Hugging Face model (a folder or a hub id): pass --base-model ORG/NAME",
            opts.tool.label()
        )));
    }
    let format = match cfg.data.format.as_str() {
        "auto" => None,
        f => Some(f.parse::<Format>().map_err(ScaleoutError::Unsupported)?),
    };
    let train = Dataset::open(&cfg.data.train, format)?;
    let kind = train.kind();
    check_kind(cfg, kind, &train.file.path)?;
    let mut shape = match opts.tool {
        Tool::Axolotl => axolotl::shape(cfg, kind),
        Tool::Trl => trl::shape(cfg, kind),
        Tool::Llamafactory => llamafactory::shape(cfg, kind),
    }?;
    let eval_source = match &cfg.data.eval {
        Some(p) => Some(Dataset::open(p, format)?),
        None => None,
    };
    let (per_device_batch, grad_accum, batch_note) = spread_batch(cfg, opts.launch.world());
    let mut unmapped = common_unmapped(cfg, opts.tool);
    unmapped.extend(batch_note);
    let mut warnings = Vec::new();

    // TRL's assistant-only loss: the run's template with `{% generation %}` markers, checked
    // on the data, or the completion-only fallback.
    let masks = (opts.tool == Tool::Trl && masks::needed(cfg, shape)).then(|| {
        let sets: Vec<&Dataset> = std::iter::once(&train)
            .chain(eval_source.as_ref())
            .collect();
        masks::plan(run_encoder(cfg).map_err(|e| e.to_string()), &sets)
    });
    let marked = match masks {
        Some(masks::Masks::Marked {
            source,
            checked,
            all,
        }) => Some(Marked {
            source,
            checked,
            all,
        }),
        Some(masks::Masks::Fallback { why }) => {
            shape = Shape::PromptCompletion;
            let note = masks::fallback_note(&why);
            warnings.push(note.clone());
            unmapped.push(Unmapped::new("data.train_on", note));
            None
        }
        None => None,
    };
    std::fs::create_dir_all(dir.join("data")).map_err(|e| ScaleoutError::io(dir, e))?;

    // The chat template: the marked one, or the run's when it is not the model's own.
    let template_file = match (&marked, cfg.model.template.as_str()) {
        (Some(m), _) => {
            write(dir, TEMPLATE_FILE, m.source.as_bytes())?;
            Some(TEMPLATE_FILE.to_string())
        }
        (None, "model") => None,
        (None, name) => {
            let source = match crate::template::chat_template::BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
            {
                Some((_, src)) => src.to_string(),
                None => std::fs::read_to_string(name)
                    .map_err(|e| ScaleoutError::io(Path::new(name), e))?,
            };
            write(dir, TEMPLATE_FILE, source.as_bytes())?;
            Some(TEMPLATE_FILE.to_string())
        }
    };
    let init_adapter = match cfg.init_adapter() {
        Some(a) => {
            copy_adapter(Path::new(a), &dir.join("init_adapter"))?;
            Some("init_adapter".to_string())
        }
        None => None,
    };

    let encoder = if shape == Shape::KtoRendered {
        Some(run_encoder(cfg)?)
    } else {
        None
    };
    let written = dataset::write(
        &train,
        eval_source.as_ref(),
        cfg.data.eval_split,
        cfg.train.seed,
        shape,
        encoder.as_ref(),
        &dir.join(TRAIN_FILE),
        &dir.join(EVAL_FILE),
    )?;
    let plan = Plan {
        cfg,
        tool: opts.tool,
        model,
        kind,
        shape,
        has_eval: written.eval > 0,
        train_keys: written.train_keys.clone(),
        eval_keys: written.eval_keys.clone(),
        launch: opts.launch,
        per_device_batch,
        grad_accum,
        template_file,
        marked: marked.as_ref().map(|m| (m.checked, m.all)),
        init_adapter,
    };
    let mut out = match opts.tool {
        Tool::Axolotl => axolotl::files(&plan),
        Tool::Trl => trl::files(&plan),
        Tool::Llamafactory => llamafactory::files(&plan),
    }?;
    if opts.launch.distributed() {
        out.files.extend(launch::files(&plan));
    }
    unmapped.append(&mut out.unmapped);
    out.files.push((CONFIG_COPY.into(), cfg.to_yaml()));
    let data_notes: Vec<(String, u64)> = written
        .notes
        .iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    out.files.push((
        "README.txt".into(),
        readme(&plan, &out.commands, &unmapped, &written, &data_notes),
    ));
    let mut files = vec![TRAIN_FILE.to_string()];
    if written.eval > 0 {
        files.push(EVAL_FILE.to_string());
    }
    if plan.template_file.is_some() {
        files.push(TEMPLATE_FILE.into());
    }
    if plan.init_adapter.is_some() {
        files.push("init_adapter/".into());
    }
    for (name, text) in &out.files {
        write(dir, name, text.as_bytes())?;
        #[cfg(unix)]
        if name.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| ScaleoutError::io(&p, e))?;
        }
        files.push(name.clone());
    }
    Ok(Exported {
        dir: dir.to_path_buf(),
        files,
        commands: out.commands,
        unmapped,
        train_records: written.train,
        eval_records: written.eval,
        data_notes,
        marked: plan.marked,
        warnings,
    })
}

/// The marked template an export writes, and the records it was checked on.
struct Marked {
    source: String,
    checked: u64,
    all: bool,
}

/// The run's encoder (its tokenizer, chat template, `train_on` and template arguments), from
/// `model.path` as tunelab trains from it: a folder, a GGUF file, or a hub id, whose
/// tokenizer files alone are read from (or fetched into) the hub cache.
fn run_encoder(cfg: &RunConfig) -> Result<crate::template::Encoder, ScaleoutError> {
    use crate::template::{Encoder, TemplateChoice};
    let spec = cfg.model.path.as_str();
    let local = Path::new(spec);
    let tok = if local.exists() || !crate::paths::is_repo_id(spec) {
        crate::model::source::load_tokenizer(local)?
    } else {
        crate::model::source::load_tokenizer(&crate::model::hub::resolve_tokenizer(spec)?)?
    };
    Ok(Encoder::new(
        tok,
        &TemplateChoice::parse(&cfg.model.template),
        cfg.data.train_on,
    )?
    .with_tool_format(cfg.data.tool_format)
    .with_template_kwargs(cfg.data.template_kwargs.clone()))
}

/// Refuses data the method cannot train on, as the trainer would.
fn check_kind(cfg: &RunConfig, kind: Kind, path: &Path) -> Result<(), ScaleoutError> {
    match cfg.train.method.refusal(kind) {
        Some(what) => Err(ScaleoutError::Unsupported(format!(
            "{}: holds {kind} data; {what}",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// What an export writes (besides the tool's own `output/`).
const GENERATED: &[&str] = &[
    "data",
    "init_adapter",
    TEMPLATE_FILE,
    "run.sh",
    trl_rewards::FILE,
    "config.yml",
    "config.yaml",
    "accelerate.yaml",
    "deepspeed.json",
    "README.txt",
    CONFIG_COPY,
];

/// Refuses a folder that holds other things than an earlier export.
fn check_folder(dir: &Path) -> Result<(), ScaleoutError> {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let empty = entries.next().is_none();
    if !empty && !dir.join(CONFIG_COPY).is_file() {
        return Err(ScaleoutError::Unsupported(format!(
            "{}: the folder exists and is not an earlier export (no {CONFIG_COPY}); choose a new or empty folder",
            dir.display()
        )));
    }
    // An earlier export: its files go (a launcher config the new one lacks would mislead);
    // the tool's output stays.
    for name in GENERATED {
        let p = dir.join(name);
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match gone {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ScaleoutError::io(&p, e))
            }
            _ => {}
        }
    }
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ScaleoutError> {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ScaleoutError::io(parent, e))?;
    }
    crate::files::write_atomic(&p, bytes).map_err(|e| ScaleoutError::io(&p, e))
}

/// Copies a PEFT adapter's two files.
fn copy_adapter(from: &Path, to: &Path) -> Result<(), ScaleoutError> {
    std::fs::create_dir_all(to).map_err(|e| ScaleoutError::io(to, e))?;
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        let src = from.join(f);
        let bytes = std::fs::read(&src).map_err(|e| ScaleoutError::io(&src, e))?;
        write(to, f, &bytes)?;
    }
    Ok(())
}

/// tunelab's batch (`batch_size × grad_accum`) spread over `gpus` so the global batch stays
/// the same: the accumulation is divided when it can be, else the per-GPU batch.
pub fn spread_batch(cfg: &RunConfig, gpus: usize) -> (usize, usize, Option<Unmapped>) {
    let (b, a) = (cfg.train.batch_size, cfg.train.grad_accum);
    let g = gpus.max(1);
    if g == 1 {
        return (b, a, None);
    }
    if a % g == 0 {
        (b, a / g, None)
    } else if b % g == 0 {
        (b / g, a, None)
    } else {
        (
            b,
            a,
            Some(Unmapped::new(
                "train.batch_size",
                format!(
                    "the global batch is {b} × {a} × {g} GPUs = {}, not tunelab's {} (neither the batch nor the accumulation divides by {g})",
                    b * a * g,
                    b * a
                ),
            )),
        )
    }
}

/// Fields no tool has: the same note whatever the target.
fn common_unmapped(cfg: &RunConfig, tool: Tool) -> Vec<Unmapped> {
    let tool = tool.label();
    let mut v = Vec::new();
    let d = RunConfig::minimal("m", "d");
    if cfg.samples.count > 0 || !cfg.samples.prompts.is_empty() {
        v.push(Unmapped::new(
            "samples",
            format!("{tool} writes no greedy sample replies at evaluations"),
        ));
    }
    if !cfg.eval.is_empty() {
        v.push(Unmapped::new(
            "eval.tasks",
            format!(
                "{tool} does not run tunelab's eval tasks; run `tunelab runs compare` on the imported run"
            ),
        ));
    }
    if cfg.data.tool_format != d.data.tool_format {
        v.push(Unmapped::new(
            "data.tool_format",
            format!(
                "{:?}: {tool} renders tool calls with the chat template as they are",
                cfg.data.tool_format
            ),
        ));
    }
    if cfg.data.train_undesirable {
        v.push(Unmapped::new(
            "data.train_undesirable",
            "undesirable (label false) completions are left out of SFT data, as the data layer converts it",
        ));
    }
    if cfg.model.quantize_head {
        v.push(Unmapped::new(
            "model.quantize_head",
            "bitsandbytes keeps the output head unquantized",
        ));
    }
    use crate::model::Quantization as Q;
    match cfg.model.quantization {
        Q::Q4_0 | Q::Q4k => v.push(Unmapped::new(
            "model.quantization",
            format!(
                "{}: GGUF block types are not a training option there; mapped to bitsandbytes 4-bit NF4 with double quantization (QLoRA)",
                cfg.model.quantization
            ),
        )),
        Q::Q8_0 => v.push(Unmapped::new(
            "model.quantization",
            "q8_0: mapped to bitsandbytes 8-bit (LLM.int8), the nearest 8-bit base",
        )),
        Q::None | Q::Nf4 => {}
    }
    if cfg.method_config().sft().is_some_and(|s| s.packing) {
        v.push(Unmapped::new(
            "data.packing",
            "mapped to packing on FlashAttention 2 (flash-attn must be installed), which keeps packed examples from attending to each other as tunelab's packing does",
        ));
    }
    if cfg.train.device == crate::model::DeviceSpec::Cpu {
        v.push(Unmapped::new(
            "train.device",
            "cpu: the export assumes CUDA GPUs",
        ));
    }
    v
}

/// The README written into the export folder.
fn readme(
    plan: &Plan,
    commands: &[String],
    unmapped: &[Unmapped],
    written: &dataset::Written,
    data_notes: &[(String, u64)],
) -> String {
    let cfg = plan.cfg;
    let mut s = String::new();
    let name = cfg.name.as_deref().unwrap_or("run");
    s.push_str(&format!(
        "{name}: the tunelab run as {} experiment (written by `tunelab export-config`).\n\n",
        match plan.tool {
            Tool::Axolotl => "an Axolotl",
            Tool::Trl => "a TRL",
            Tool::Llamafactory => "a LLaMA-Factory",
        }
    ));
    s.push_str("Launch (from this folder):\n\n");
    for c in commands {
        s.push_str(&format!("    {c}\n"));
    }
    s.push_str(&format!(
        "\nWhen it is done, bring it back:\n\n    tunelab runs import {OUTPUT_DIR}\n\n"
    ));
    s.push_str(&format!(
        "Model: {}\n",
        if Path::new(&plan.model).is_absolute() {
            format!(
                "{} (a local folder: copy it to the cluster at the same path, or export with --base-model ORG/NAME)",
                plan.model
            )
        } else {
            plan.model.clone()
        }
    ));
    s.push_str(&format!(
        "Data: {TRAIN_FILE} ({} records){}, {}.\n",
        written.train,
        if written.eval > 0 {
            format!(" and {EVAL_FILE} ({} records)", written.eval)
        } else {
            String::new()
        },
        plan.shape.describe()
    ));
    if let Some((checked, all)) = plan.marked {
        let policy: &'static str = cfg.data.train_on.into();
        s.push_str(&format!(
            "Chat template: {TEMPLATE_FILE} is the run's chat template with {{% generation %}} markers around exactly the tokens tunelab trains (train_on: {policy}), which TRL's assistant-only loss reads; checked token for token against tunelab's masks on {}. It renders the same text as the original, and asked for a generation prompt it is the original.\n",
            if all {
                format!("every record ({checked})")
            } else {
                format!("the first {checked} records")
            }
        ));
    }
    if cfg.data.eval.is_none() && written.eval > 0 {
        s.push_str(&format!(
            "The held-out records are tunelab's own split (data.eval_split {} with seed {}, over the records written).\n",
            cfg.data.eval_split, cfg.train.seed
        ));
    }
    let global = plan.per_device_batch * plan.grad_accum * plan.launch.world();
    // GRPO's batch counts sampled completions, a group of `num_generations` per prompt.
    let what = match cfg.method_config() {
        crate::config::MethodConfig::Grpo(g) => {
            format!("completions ({} per prompt)", g.num_generations)
        }
        _ => "sequences".to_string(),
    };
    s.push_str(&format!(
        "Batch: {} per GPU × {} accumulation × {} GPU(s) = {global} {what} per optimizer step (tunelab's run: {}).\n",
        plan.per_device_batch,
        plan.grad_accum,
        plan.launch.world(),
        cfg.train.batch_size * cfg.train.grad_accum
    ));
    match plan.launch.sharding {
        Sharding::Zero(stage) => s.push_str(&format!(
            "Distributed: DeepSpeed ZeRO-{stage} over {} GPU(s) (deepspeed.json, accelerate.yaml).\n",
            plan.launch.world()
        )),
        Sharding::Fsdp => s.push_str(&format!(
            "Distributed: FSDP2 over {} GPU(s) (accelerate.yaml).\n",
            plan.launch.world()
        )),
        Sharding::None if plan.launch.world() > 1 => s.push_str(&format!(
            "Distributed: data parallel over {} GPUs (accelerate.yaml).\n",
            plan.launch.world()
        )),
        Sharding::None => {}
    }
    if plan.launch.nodes > 1 {
        s.push_str(&format!(
            "Nodes: {} × {} GPUs; run.sh runs once per node with NODE_RANK, MASTER_ADDR and MASTER_PORT set (tunelab's SLURM script sets them).\n",
            plan.launch.nodes,
            plan.launch.gpus.max(1)
        ));
    }
    if !data_notes.is_empty() {
        s.push_str("\nWhat the data conversion changed:\n");
        for (k, n) in data_notes {
            s.push_str(&format!("  - {k} ({n} records)\n"));
        }
    }
    s.push_str("\nNot mapped exactly (no equivalent, or an equivalent with a difference):\n");
    if unmapped.is_empty() {
        s.push_str("  (nothing: every field has an equivalent)\n");
    }
    for u in unmapped {
        s.push_str(&format!("  - {}: {}\n", u.field, u.why));
    }
    s.push_str(&format!(
        "\n{CONFIG_COPY} is the tunelab config this was made from.\n"
    ));
    s
}
