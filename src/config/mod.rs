//! Run configuration (YAML): model, data, LoRA and training. Only `model.path` and
//! `data.train` are required; every other field takes the default PEFT's `LoraConfig` and
//! TRL's `SFTConfig` use (`tunelab presets --show default` prints them all). Every field is
//! checked before anything starts, and each problem names its path (`lora.r: must be > 0`).
//! Presets in `presets/` are ordinary run configurations, embedded in the binary.

use crate::lora::LoraConfig;
use crate::model::{DeviceSpec, Dtype};
use crate::template::{LengthPolicy, TrainOn};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A human name for the run (the run id is derived from it).
    #[serde(default)]
    pub name: Option<String>,
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub lora: LoraSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub samples: SamplesSection,
    #[serde(default)]
    pub dpo: DpoSection,
    #[serde(default)]
    pub kto: KtoSection,
    #[serde(default)]
    pub grpo: GrpoSection,
    /// Tasks scored at every evaluation besides the loss (`eval.tasks`).
    #[serde(default, skip_serializing_if = "EvalSection::is_empty")]
    pub eval: EvalSection,
}

/// Greedy replies the trainer writes at every evaluation, so the run shows what the model
/// says, not only its loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplesSection {
    /// Prompts (user messages) to answer; empty: the first `count` held-out examples'.
    pub prompts: Vec<String>,
    /// How many held-out prompts to take when `prompts` is empty (0 turns samples off).
    pub count: usize,
    pub max_new_tokens: usize,
}

impl Default for SamplesSection {
    fn default() -> Self {
        SamplesSection {
            prompts: Vec::new(),
            count: 3,
            max_new_tokens: 48,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A folder, a .gguf file, or a hub id (org/name).
    pub path: String,
    /// `model` (its own), a built-in template name, or a .jinja file.
    #[serde(default = "default_template")]
    pub template: String,
    /// QLoRA: store the frozen base's projections quantized (`q8_0`, `q4_0`, `q4k`, `nf4`);
    /// `none` keeps `train.dtype`. A GGUF base keeps its own types.
    #[serde(default)]
    pub quantization: crate::model::Quantization,
    /// Quantize an untied output head too (it is the size of the embeddings: 1 GB of an
    /// 8B model in bf16); embeddings and norms always keep `train.dtype`.
    #[serde(default)]
    pub quantize_head: bool,
}

impl ModelSection {
    /// How the base is to be stored.
    pub fn quant_plan(&self) -> crate::model::QuantPlan {
        crate::model::QuantPlan {
            quantization: self.quantization,
            head: self.quantize_head,
            cache: None,
        }
    }
}

fn default_template() -> String {
    "model".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The training dataset (any format the data layer reads).
    pub train: String,
    /// `auto` or a format name.
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default)]
    pub eval: Option<String>,
    /// Fraction of the training file held out for evaluation when `eval` is not given.
    #[serde(default)]
    pub eval_split: f64,
    /// Each evaluation scores at most this many held-out examples (0: all of them), so a
    /// large split does not stall the run at every evaluation.
    #[serde(default = "default_eval_max")]
    pub eval_max: usize,
    #[serde(default = "default_seq")]
    pub max_seq_len: usize,
    /// Preference pairs: the prompt keeps its last this many tokens (TRL's
    /// `max_prompt_length`).
    #[serde(default = "default_prompt_len")]
    pub max_prompt_len: usize,
    #[serde(default)]
    pub train_on: TrainOn,
    #[serde(default)]
    pub length_policy: LengthPolicy,
    #[serde(default)]
    pub packing: bool,
    /// Tool calls and definitions a template cannot render: `template` (fail), `json`
    /// (Hermes `<tool_call>` text) or `drop` (leave the records out).
    #[serde(default)]
    pub tool_format: crate::template::ToolFormat,
    /// SFT on unpaired (KTO) data trains only the desirable completions; `true` trains the
    /// undesirable ones too, as if they were good answers.
    #[serde(default)]
    pub train_undesirable: bool,
    /// Extra arguments for the chat template, as `apply_chat_template(..., **kwargs)` passes
    /// them: `{enable_thinking: false}` for Qwen3's non-thinking mode, say.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub template_kwargs: serde_json::Map<String, serde_json::Value>,
}

/// Evaluations stay seconds long on a CPU.
fn default_eval_max() -> usize {
    200
}

fn default_format() -> String {
    "auto".into()
}
/// TRL's `max_length`.
fn default_seq() -> usize {
    1024
}
/// TRL's `max_prompt_length`.
fn default_prompt_len() -> usize {
    512
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub target_modules: Vec<String>,
    pub use_rslora: bool,
}

impl Default for LoraSection {
    fn default() -> Self {
        let d = LoraConfig::default();
        LoraSection {
            r: d.r,
            alpha: d.alpha,
            dropout: d.dropout,
            target_modules: d.target_modules,
            use_rslora: d.use_rslora,
        }
    }
}

impl From<&LoraSection> for LoraConfig {
    fn from(s: &LoraSection) -> Self {
        LoraConfig {
            r: s.r,
            alpha: s.alpha,
            dropout: s.dropout,
            target_modules: s.target_modules.clone(),
            use_rslora: s.use_rslora,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub method: Method,
    pub epochs: f64,
    /// Overrides `epochs` when set.
    pub max_steps: Option<u64>,
    pub lr: f64,
    pub scheduler: Schedule,
    /// Warm-up in optimizer steps, or as a ratio of all steps when below 1.
    pub warmup: f64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub save_every: u64,
    pub eval_every: u64,
    /// Evaluate before the first step too (the base's numbers, for before → after).
    pub eval_at_start: bool,
    pub keep_checkpoints: usize,
    pub gradient_checkpointing: bool,
    /// Compute dtype; LoRA parameters stay f32.
    pub dtype: Dtype,
    pub device: DeviceSpec,
    /// Experiment trackers the run reports its metrics to as it goes (`tensorboard`,
    /// `mlflow`); empty: none. A tracker that fails never fails the run.
    pub report_to: Vec<Tracker>,
    /// Who trains: tunelab itself, or TRL, Axolotl or LLaMA-Factory launched and followed
    /// by tunelab (`engine::run`).
    #[serde(skip_serializing_if = "is_default")]
    pub engine: Engine,
    /// An engine run's GPUs per node (tunelab's own engine trains on one device).
    #[serde(skip_serializing_if = "is_one")]
    pub gpus: usize,
    /// An engine run's nodes (more than one: `launcher: slurm`).
    #[serde(skip_serializing_if = "is_one")]
    pub nodes: usize,
    #[serde(skip_serializing_if = "is_default")]
    pub sharding: ShardingChoice,
    #[serde(skip_serializing_if = "is_default")]
    pub launcher: Launcher,
    /// The Python interpreter that has the engine (a venv's `bin/python`); default: the
    /// active venv's, else `python3` on the PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Extra `#SBATCH` options for `launcher: slurm` (`--partition=gpu`, `--time=04:00:00`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slurm: Vec<String>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// TRL's `SFTConfig` defaults (learning rate 2e-5, 3 epochs, batch 8, a linear schedule
/// without warm-up, clipping at 1.0, seed 42, a checkpoint every 500 steps, all kept);
/// evaluation every 50 steps when there is an eval set; f32 on the CPU.
impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            method: Method::Sft,
            epochs: 3.0,
            max_steps: None,
            lr: 2e-5,
            scheduler: Schedule::Linear,
            warmup: 0.0,
            batch_size: 8,
            grad_accum: 1,
            max_grad_norm: 1.0,
            weight_decay: 0.0,
            seed: 42,
            save_every: 500,
            eval_every: 50,
            eval_at_start: true,
            keep_checkpoints: 0,
            gradient_checkpointing: false,
            dtype: Dtype::F32,
            device: DeviceSpec::Cpu,
            report_to: Vec::new(),
            engine: Engine::Tunelab,
            gpus: 1,
            nodes: 1,
            sharding: ShardingChoice::None,
            launcher: Launcher::Local,
            python: None,
            slurm: Vec::new(),
        }
    }
}

/// One problem in a configuration: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {}", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        file: String,
        issues: Vec<ConfigIssue>,
    },
}

impl RunConfig {
    /// The smallest config: a model and a dataset, every other field at its default.
    pub fn minimal(model: &str, train: &str) -> Self {
        Self::from_yaml(
            &format!(
                "model: {{path: {}}}\ndata: {{train: {}}}\n",
                serde_json::to_string(model).unwrap_or_default(),
                serde_json::to_string(train).unwrap_or_default()
            ),
            "minimal",
        )
        .expect("a model and a dataset make a config")
    }

    /// The config as YAML with every field, defaults included.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Parses YAML; `file` names the source in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_yaml names the section; the path names the field in it.
            let inner = inner
                .split_once(": ")
                .filter(|(p, _)| path.starts_with(p) && !p.contains(' '))
                .map_or(inner.clone(), |(_, rest)| rest.to_string());
            ConfigError::Parse {
                file: file.into(),
                message: if path == "." {
                    inner
                } else {
                    format!("{path}: {inner}")
                },
            }
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let cfg = Self::from_yaml(&text, &file)?;
        let issues = cfg.validate();
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid { file, issues })
        }
    }

    /// Every problem, each with its field path.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut v = Vec::new();
        let mut bad = |path: &str, message: &str| {
            v.push(ConfigIssue {
                path: path.into(),
                message: message.into(),
            })
        };
        if self.model.path.trim().is_empty() {
            bad(
                "model.path",
                "must name a model folder, a .gguf file or a hub id",
            );
        }
        if self.data.train.trim().is_empty() {
            bad("data.train", "must name a dataset file");
        }
        if self.data.format != "auto" && self.data.format.parse::<crate::data::Format>().is_err() {
            bad(
                "data.format",
                "must be auto or a format name (see tunelab data formats)",
            );
        }
        if !(0.0..0.5).contains(&self.data.eval_split) {
            bad("data.eval_split", "must be at least 0 and below 0.5");
        }
        for k in self.data.template_kwargs.keys() {
            if crate::template::chat_template::RESERVED_KWARGS.contains(&k.as_str()) {
                bad(
                    &format!("data.template_kwargs.{k}"),
                    "is apply_chat_template's own argument, which tunelab sets; name another",
                );
            }
        }
        self.method_issues(&mut bad);
        if self.data.max_prompt_len == 0 {
            bad("data.max_prompt_len", "must be at least 1");
        }
        if self.samples.max_new_tokens == 0 {
            bad("samples.max_new_tokens", "must be at least 1");
        }
        if self.data.max_seq_len < 16 {
            bad("data.max_seq_len", "must be at least 16");
        }
        let l = &self.lora;
        if l.r == 0 {
            bad("lora.r", "must be > 0");
        }
        if l.alpha <= 0.0 {
            bad("lora.alpha", "must be > 0");
        }
        if !(0.0..1.0).contains(&l.dropout) {
            bad("lora.dropout", "must be at least 0 and below 1");
        }
        if l.target_modules.is_empty() {
            bad(
                "lora.target_modules",
                "must name at least one module (or all-linear)",
            );
        }
        let known = crate::model::ModelConfig::all_linear_modules();
        for (i, m) in l.target_modules.iter().enumerate() {
            if m != "all-linear" && !known.contains(&m.as_str()) {
                v.push(ConfigIssue {
                    path: format!("lora.target_modules[{i}]"),
                    message: format!(
                        "unknown module {m:?}; expected all-linear or one of {}",
                        known.join(", ")
                    ),
                });
            }
        }
        let t = &self.train;
        let mut bad = |path: &str, message: &str| {
            v.push(ConfigIssue {
                path: path.into(),
                message: message.into(),
            })
        };
        if t.max_steps.is_none() && t.epochs <= 0.0 {
            bad("train.epochs", "must be > 0 (or set train.max_steps)");
        }
        if t.max_steps == Some(0) {
            bad("train.max_steps", "must be > 0");
        }
        // 0 is allowed: a run that trains nothing is a sweep's baseline.
        if !(t.lr >= 0.0 && t.lr < 1.0) {
            bad("train.lr", "must be >= 0 and < 1");
        }
        if t.warmup < 0.0 {
            bad("train.warmup", "must be >= 0 (steps, or a ratio below 1)");
        }
        if t.batch_size == 0 {
            bad("train.batch_size", "must be > 0");
        }
        if t.grad_accum == 0 {
            bad("train.grad_accum", "must be > 0");
        }
        if t.max_grad_norm < 0.0 {
            bad("train.max_grad_norm", "must be >= 0 (0 turns clipping off)");
        }
        if t.weight_decay < 0.0 {
            bad("train.weight_decay", "must be >= 0");
        }
        for (i, tr) in t.report_to.iter().enumerate() {
            if t.report_to[..i].contains(tr) {
                bad(
                    &format!("train.report_to[{i}]"),
                    &format!("{tr} is listed twice"),
                );
            }
        }
        if t.gpus == 0 {
            bad("train.gpus", "must be at least 1");
        }
        if t.nodes == 0 {
            bad("train.nodes", "must be at least 1");
        }
        if !t.engine.is_external() {
            let one = "tunelab's own engine trains on one device; set train.engine to trl, axolotl or llamafactory to train across GPUs";
            if t.gpus > 1 {
                bad("train.gpus", one);
            }
            if t.nodes > 1 {
                bad("train.nodes", one);
            }
            if t.sharding != ShardingChoice::None {
                bad("train.sharding", one);
            }
            if t.launcher == Launcher::Slurm {
                bad(
                    "train.launcher",
                    "slurm launches an engine run; set train.engine to trl, axolotl or llamafactory",
                );
            }
        }
        if t.nodes > 1 && t.launcher != Launcher::Slurm {
            bad(
                "train.nodes",
                "more than one node needs launcher: slurm (a local launch starts on this machine only)",
            );
        }
        v.extend(eval_tasks::validate(&self.eval));
        v
    }
}

mod choices;
pub mod eval_tasks;
mod fields;
pub mod grpo;
mod method;
mod presets;
mod resolve;

pub use choices::{Engine, Launcher, PrefLoss, Schedule, ShardingChoice, Tracker};
pub use eval_tasks::{EvalSection, EvalTask};
pub use fields::{next_subset, FieldKind, FieldSpec, FIELDS};
pub use grpo::{GrpoLoss, GrpoSection, ImportanceLevel, RewardKind, RewardSpec, ScaleRewards};
pub use method::{
    method_from_metrics, BenchItems, DpoSection, KtoSection, Method, MethodConfig, SftView,
};
pub use presets::PRESETS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_fields_read_their_defaults_and_write_nothing_until_set() {
        let mut c = RunConfig::minimal("m", "d");
        assert_eq!(c.get_field("train.engine"), "tunelab");
        assert_eq!(c.get_field("train.gpus"), "1");
        assert_eq!(c.get_field("train.sharding"), "none");
        assert_eq!(c.get_field("train.launcher"), "local");
        assert!(!c.to_yaml().contains("engine"), "{}", c.to_yaml());
        c.set_field("train.engine", "trl").unwrap();
        c.set_field("train.gpus", "8").unwrap();
        c.set_field("train.sharding", "zero3").unwrap();
        c.set_field("train.python", "/venv/bin/python").unwrap();
        assert_eq!(c.train.python.as_deref(), Some("/venv/bin/python"));
        let back = RunConfig::from_yaml(&c.to_yaml(), "t").unwrap();
        assert_eq!(back.train.engine, Engine::Trl);
        assert_eq!(
            (back.train.gpus, back.train.sharding),
            (8, ShardingChoice::Zero3)
        );
        c.set_field("train.python", "").unwrap();
        assert_eq!(c.train.python, None);
        // Back on tunelab's own engine, the GPUs and sharding are problems the form lists
        // until they are one and none again.
        c.set_field("train.engine", "tunelab").unwrap();
        let paths: Vec<String> = c.validate().into_iter().map(|i| i.path).collect();
        assert_eq!(paths, ["train.gpus", "train.sharding"]);
        assert!(c.set_field("train.gpus", "4").is_err());
        c.set_field("train.gpus", "1").unwrap();
        c.set_field("train.sharding", "none").unwrap();
        assert!(c.validate().is_empty());
        // Several nodes need the SLURM launcher.
        c.set_path("train.nodes", "2").unwrap();
        assert!(c.validate().iter().any(|i| i.path == "train.nodes"));
    }
    use strum::VariantNames;

    #[test]
    fn every_preset_parses_and_validates() {
        for (name, text) in PRESETS {
            let cfg = RunConfig::from_yaml(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cfg.validate(), vec![], "{name}");
        }
    }

    #[test]
    fn form_fields_round_trip_and_refuse_bad_input() {
        let (_, text) = PRESETS[0];
        let mut cfg = RunConfig::from_yaml(text, "p").unwrap();
        for f in FIELDS {
            let v = cfg.get_field(f.path);
            cfg.set_field(f.path, &v)
                .unwrap_or_else(|e| panic!("{}: {v:?}: {e}", f.path));
        }
        assert_eq!(cfg, RunConfig::from_yaml(text, "p").unwrap());
        cfg.set_field("lora.r", "32").unwrap();
        assert_eq!(cfg.lora.r, 32);
        assert_eq!(
            cfg.set_field("lora.r", "0").unwrap_err(),
            "lora.r: must be between 1 and 1024"
        );
        assert_eq!(
            cfg.set_field("lora.r", "x").unwrap_err(),
            "lora.r: expected a whole number"
        );
        assert!(cfg
            .set_field("lora.target_modules", "q_proj, qkv")
            .unwrap_err()
            .starts_with("lora.target_modules[1]: unknown module"));
        cfg.set_field("lora.target_modules", "q_proj v_proj")
            .unwrap();
        assert_eq!(cfg.get_field("lora.target_modules"), "q_proj, v_proj");
        cfg.set_field("train.max_steps", "").unwrap();
        assert_eq!(cfg.train.max_steps, None);
        assert_eq!(cfg.lora.r, 32, "a refused edit changes nothing");
    }

    /// `grpo.rewards` is edited by entry: each edit is validated, its error names the
    /// entry, and a refused edit changes nothing.
    #[test]
    fn rewards_are_added_reweighed_and_removed_with_errors_naming_the_entry() {
        let text = PRESETS
            .iter()
            .find(|(n, _)| *n == "tiny-demo-grpo")
            .unwrap()
            .1;
        let mut cfg = RunConfig::from_yaml(text, "p").unwrap();
        let before = cfg.clone();
        assert_eq!(
            cfg.set_reward_weight(1, "x").unwrap_err(),
            "grpo.rewards[1].weight: expected a number"
        );
        assert_eq!(
            cfg.set_reward_weight(1, "NaN").unwrap_err(),
            "grpo.rewards[1].weight: must be a finite number"
        );
        assert_eq!(
            cfg.set_reward_weight(5, "1").unwrap_err(),
            "grpo.rewards[5]: the list has 2 entries"
        );
        assert_eq!(cfg, before);
        cfg.set_reward_weight(1, " -0.25 ").unwrap();
        assert_eq!(cfg.grpo.rewards[1].weight, -0.25);
        let bad = RewardSpec::of(RewardKind::Regex("("));
        assert!(cfg
            .add_reward(bad)
            .unwrap_err()
            .starts_with("grpo.rewards[2].regex: is not a regex"));
        let mut two = RewardSpec::of(RewardKind::Regex("a"));
        two.length = Some(grpo::LengthReward { min: 0, max: 3 });
        assert!(cfg
            .add_reward(two)
            .unwrap_err()
            .starts_with("grpo.rewards[2]: must set exactly one of regex"));
        assert_eq!(cfg.grpo.rewards.len(), 2);
        let i = cfg
            .add_reward(RewardSpec::of(RewardKind::Regex("\\d+")))
            .unwrap();
        assert_eq!(i, 2);
        assert_eq!(
            cfg.grpo.reward_names(),
            ["correct", "digit_first", "format"]
        );
        cfg.remove_reward(0).unwrap();
        cfg.remove_reward(0).unwrap();
        assert_eq!(
            cfg.remove_reward(0).unwrap_err(),
            "grpo.rewards: must name at least one reward function"
        );
        assert_eq!(
            cfg.remove_reward(3).unwrap_err(),
            "grpo.rewards[3]: the list has 1 entries"
        );
        assert_eq!(cfg.grpo.rewards.len(), 1);
    }

    /// Each method's own fields are in the form, named by its section, and the form shows
    /// them under that method only.
    #[test]
    fn each_method_owns_its_section() {
        use strum::IntoEnumIterator;
        for m in Method::iter() {
            if let Some(f) = m.init_adapter_field() {
                let spec = FIELDS.iter().find(|s| s.path == f).expect(f);
                assert_eq!(spec.kind, FieldKind::Adapter, "{f}");
                assert!(m.section().is_some_and(|s| f.starts_with(&format!("{s}."))));
            }
            let mut cfg = RunConfig::minimal("m", "d");
            cfg.train.method = m;
            assert_eq!(cfg.method_config().method(), m);
            for other in Method::iter().filter(|o| *o != m) {
                let Some(s) = other.section() else { continue };
                let theirs: Vec<&FieldSpec> = FIELDS
                    .iter()
                    .filter(|f| f.path.starts_with(&format!("{s}.")))
                    .collect();
                assert!(!theirs.is_empty(), "{s}");
                for f in theirs {
                    assert!(!f.applies(&cfg), "{m}: {}", f.path);
                }
            }
        }
    }

    /// The method data switches the workbench to trains on that data and stays.
    #[test]
    fn a_switch_of_method_lands_on_one_that_fits() {
        use crate::data::Kind;
        use strum::IntoEnumIterator;
        for m in Method::iter() {
            for kind in [Kind::Sft, Kind::Preference, Kind::Unpaired, Kind::Text] {
                if let Some(to) = m.switch_for(kind) {
                    assert_eq!(to.refusal(kind), None, "{m} → {to} on {kind}");
                    assert_eq!(to.switch_for(kind), None, "{to} on {kind}");
                }
                if m.refusal(kind).is_some() {
                    assert!(m.switch_for(kind).is_some(), "{m} on {kind}");
                }
            }
        }
    }

    #[test]
    fn a_model_and_a_dataset_are_enough() {
        let cfg = RunConfig::from_yaml("model: {path: m}\ndata: {train: d.jsonl}\n", "c").unwrap();
        assert_eq!(cfg.validate(), vec![]);
        assert_eq!(cfg, RunConfig::minimal("m", "d.jsonl"));
        // PEFT's LoraConfig and TRL's SFTConfig.
        assert_eq!(
            (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout),
            (8, 8.0, 0.0)
        );
        assert_eq!(cfg.lora.target_modules, ["q_proj", "v_proj"]);
        assert_eq!(
            (cfg.train.lr, cfg.train.epochs, cfg.train.batch_size),
            (2e-5, 3.0, 8)
        );
        assert_eq!(cfg.train.scheduler, Schedule::Linear);
        assert_eq!(cfg.data.max_seq_len, 1024);
        // A partial section keeps the rest of its defaults.
        let cfg = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d}\nlora: {r: 32}\ntrain: {lr: 0.001}\n",
            "c",
        )
        .unwrap();
        assert_eq!((cfg.lora.r, cfg.lora.alpha), (32, 8.0));
        assert_eq!((cfg.train.lr, cfg.train.epochs), (0.001, 3.0));
        // Every field is written back, so the full form round-trips.
        let full = cfg.to_yaml();
        for key in [
            "dropout:",
            "use_rslora:",
            "grad_accum:",
            "eval_split:",
            "packing:",
        ] {
            assert!(full.contains(key), "{key} in\n{full}");
        }
        assert_eq!(RunConfig::from_yaml(&full, "full").unwrap(), cfg);
    }

    #[test]
    fn problems_name_their_paths() {
        let text = "model: {path: m}\ndata: {train: d.jsonl, format: chatml}\nlora: {r: 0, alpha: 16, dropout: 1.5, target_modules: [q_proj, qkv], use_rslora: false}\ntrain: {lr: 3}\n";
        let cfg = RunConfig::from_yaml(text, "c.yaml").unwrap();
        let got: Vec<String> = cfg.validate().iter().map(|i| i.to_string()).collect();
        assert!(got.contains(&"lora.r: must be > 0".to_string()), "{got:?}");
        assert!(
            got.contains(&"lora.dropout: must be at least 0 and below 1".to_string()),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("lora.target_modules[1]: unknown module \"qkv\"")),
            "{got:?}"
        );
        assert!(
            got.contains(
                &"data.format: must be auto or a format name (see tunelab data formats)"
                    .to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.contains(&"train.lr: must be >= 0 and < 1".to_string()),
            "{got:?}"
        );
        let err = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d}\ntrain: {device: tpu}\n",
            "c.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("train.device") && err.contains("must be cpu, cuda or cuda:N"),
            "{err}"
        );
        let err = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d}\ntrain: {learning_rate: 1}\n",
            "c.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.yaml") && err.contains("unknown field `learning_rate`"),
            "{err}"
        );
    }

    /// `train.report_to` is a list of trackers: parsed, checked, cycled by the form.
    #[test]
    fn report_to_lists_trackers() {
        let cfg = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d}\ntrain: {report_to: [tensorboard, mlflow]}\n",
            "c",
        )
        .unwrap();
        assert_eq!(cfg.train.report_to, [Tracker::Tensorboard, Tracker::Mlflow]);
        assert_eq!(cfg.validate(), vec![]);
        assert_eq!(RunConfig::minimal("m", "d").train.report_to, []);
        let err = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d}\ntrain: {report_to: [wandb]}\n",
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("train.report_to[0]") && err.contains("`tensorboard`"),
            "{err}"
        );
        let twice = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d}\ntrain: {report_to: [mlflow, mlflow]}\n",
            "c",
        )
        .unwrap();
        assert_eq!(
            twice.validate()[0].to_string(),
            "train.report_to[1]: mlflow is listed twice"
        );
        let mut cfg = RunConfig::minimal("m", "d");
        let mut seen = Vec::new();
        for _ in 0..4 {
            let next = next_subset(Tracker::VARIANTS, &cfg.get_field("train.report_to"));
            cfg.set_field("train.report_to", &next).unwrap();
            seen.push(cfg.get_field("train.report_to"));
        }
        assert_eq!(seen, ["tensorboard", "mlflow", "tensorboard, mlflow", ""]);
        assert_eq!(
            cfg.set_field("train.report_to", "mlflow, neptune")
                .unwrap_err(),
            "train.report_to: unknown \"neptune\"; expected any of tensorboard, mlflow"
        );
        cfg.apply_sets(&["train.report_to=[mlflow]".into()])
            .unwrap();
        assert_eq!(cfg.train.report_to, [Tracker::Mlflow]);
    }

    #[test]
    fn template_kwargs_reach_the_template_and_keep_its_own_names() {
        let cfg = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d, template_kwargs: {enable_thinking: false}}\n",
            "c",
        )
        .unwrap();
        assert_eq!(cfg.validate(), vec![]);
        assert_eq!(
            cfg.data.template_kwargs.get("enable_thinking"),
            Some(&serde_json::Value::Bool(false))
        );
        let yaml = cfg.to_yaml();
        assert!(yaml.contains("enable_thinking: false"), "{yaml}");
        assert_eq!(RunConfig::from_yaml(&yaml, "back").unwrap(), cfg);
        // None set: nothing written, so configs without it read and write as before.
        let plain = RunConfig::minimal("m", "d.jsonl").to_yaml();
        assert!(!plain.contains("template_kwargs"), "{plain}");
        let cfg = RunConfig::from_yaml(
            "model: {path: m}\ndata: {train: d, template_kwargs: {add_generation_prompt: true}}\n",
            "c",
        )
        .unwrap();
        let got: Vec<String> = cfg.validate().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            got,
            ["data.template_kwargs.add_generation_prompt: is apply_chat_template's own argument, which tunelab sets; name another"]
        );
    }
}
