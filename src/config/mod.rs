//! Run configuration (YAML): model, data, LoRA and training. Every field is checked before
//! anything starts, and each problem names its path (`lora.r: must be > 0`). Presets in
//! `presets/` are ordinary run configurations, embedded in the binary.

use crate::lora::LoraConfig;
use crate::template::{LengthPolicy, TrainOn};
use crate::train::Schedule;
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A folder, a .gguf file, or a hub id (org/name).
    pub path: String,
    /// `model` (its own), a built-in template name, or a .jinja file.
    #[serde(default = "default_template")]
    pub template: String,
}

fn default_template() -> String {
    "model".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub train: String,
    /// `auto` or a format name.
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default)]
    pub eval: Option<String>,
    /// Fraction of the training file held out for evaluation when `eval` is not given.
    #[serde(default)]
    pub eval_split: f64,
    #[serde(default = "default_seq")]
    pub max_seq_len: usize,
    #[serde(default)]
    pub train_on: TrainOn,
    #[serde(default)]
    pub length_policy: LengthPolicy,
    #[serde(default)]
    pub packing: bool,
}

fn default_format() -> String {
    "auto".into()
}
fn default_seq() -> usize {
    2048
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// `sft` (DPO comes with its own issue).
    pub method: String,
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
    pub keep_checkpoints: usize,
    pub gradient_checkpointing: bool,
    /// `f32`, `bf16` or `f16` for compute; LoRA parameters stay f32.
    pub dtype: String,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            method: "sft".into(),
            epochs: 1.0,
            max_steps: None,
            lr: 2e-4,
            scheduler: Schedule::Cosine,
            warmup: 0.03,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            weight_decay: 0.0,
            seed: 42,
            save_every: 100,
            eval_every: 50,
            keep_checkpoints: 2,
            gradient_checkpointing: false,
            dtype: "f32".into(),
            device: "cpu".into(),
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
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {}", issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        file: String,
        issues: Vec<ConfigIssue>,
    },
}

impl RunConfig {
    /// Parses YAML; `file` names the source in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Self, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.into(),
            message: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Parse {
            file: file.clone(),
            message: e.to_string(),
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
        let known = crate::model::ModelConfig::linear_modules();
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
        if t.method != "sft" {
            bad(
                "train.method",
                "must be sft (dpo arrives with preference training)",
            );
        }
        if t.max_steps.is_none() && t.epochs <= 0.0 {
            bad("train.epochs", "must be > 0 (or set train.max_steps)");
        }
        if t.max_steps == Some(0) {
            bad("train.max_steps", "must be > 0");
        }
        if !(t.lr > 0.0 && t.lr < 1.0) {
            bad("train.lr", "must be > 0 and < 1");
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
        if !["f32", "bf16", "f16"].contains(&t.dtype.as_str()) {
            bad("train.dtype", "must be f32, bf16 or f16");
        }
        if !(t.device == "cpu"
            || t.device == "cuda"
            || t.device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok()))
        {
            bad("train.device", "must be cpu, cuda or cuda:N");
        }
        v
    }
}

/// What kind of value a form field holds (drives parsing and the editor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldKind {
    Text,
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    Choice(&'static [&'static str]),
    /// LoRA target modules: picked from the model's module names.
    Modules,
    /// An optional integer (empty for none).
    OptInt {
        min: i64,
    },
}

/// One editable field of a run configuration: its YAML path, help and kind. The TUI's
/// Adapter form is generated from this table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSpec {
    pub path: &'static str,
    pub help: &'static str,
    pub kind: FieldKind,
}

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        path: "name",
        help: "run name (the run id starts with it)",
        kind: FieldKind::Text,
    },
    FieldSpec {
        path: "model.path",
        help: "model folder, .gguf file or hub id",
        kind: FieldKind::Text,
    },
    FieldSpec {
        path: "data.train",
        help: "training dataset file",
        kind: FieldKind::Text,
    },
    FieldSpec {
        path: "data.eval_split",
        help: "fraction held out for eval loss",
        kind: FieldKind::Float {
            min: 0.0,
            max: 0.49,
        },
    },
    FieldSpec {
        path: "data.max_seq_len",
        help: "tokens per example (longer are truncated)",
        kind: FieldKind::Int {
            min: 16,
            max: 131072,
        },
    },
    FieldSpec {
        path: "data.train_on",
        help: "which tokens are trained",
        kind: FieldKind::Choice(&["assistant", "last_assistant", "all"]),
    },
    FieldSpec {
        path: "data.packing",
        help: "pack several examples per sequence",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "lora.r",
        help: "LoRA rank",
        kind: FieldKind::Int { min: 1, max: 1024 },
    },
    FieldSpec {
        path: "lora.alpha",
        help: "LoRA alpha (scale = alpha / r)",
        kind: FieldKind::Float {
            min: 0.0001,
            max: 4096.0,
        },
    },
    FieldSpec {
        path: "lora.dropout",
        help: "dropout on the LoRA input",
        kind: FieldKind::Float {
            min: 0.0,
            max: 0.99,
        },
    },
    FieldSpec {
        path: "lora.target_modules",
        help: "projections that get adapters",
        kind: FieldKind::Modules,
    },
    FieldSpec {
        path: "lora.use_rslora",
        help: "rank-stabilized scale alpha / sqrt(r)",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "train.max_steps",
        help: "optimizer steps (empty: use epochs)",
        kind: FieldKind::OptInt { min: 1 },
    },
    FieldSpec {
        path: "train.epochs",
        help: "passes over the data",
        kind: FieldKind::Float {
            min: 0.01,
            max: 1000.0,
        },
    },
    FieldSpec {
        path: "train.lr",
        help: "peak learning rate",
        kind: FieldKind::Float {
            min: 1e-9,
            max: 0.999,
        },
    },
    FieldSpec {
        path: "train.scheduler",
        help: "learning-rate schedule after warm-up",
        kind: FieldKind::Choice(&["constant", "linear", "cosine"]),
    },
    FieldSpec {
        path: "train.warmup",
        help: "warm-up steps, or a ratio below 1",
        kind: FieldKind::Float { min: 0.0, max: 1e9 },
    },
    FieldSpec {
        path: "train.batch_size",
        help: "sequences per micro-batch",
        kind: FieldKind::Int { min: 1, max: 4096 },
    },
    FieldSpec {
        path: "train.grad_accum",
        help: "micro-batches per optimizer step",
        kind: FieldKind::Int { min: 1, max: 4096 },
    },
    FieldSpec {
        path: "train.max_grad_norm",
        help: "clip gradients to this norm (0: off)",
        kind: FieldKind::Float { min: 0.0, max: 1e6 },
    },
    FieldSpec {
        path: "train.weight_decay",
        help: "AdamW weight decay",
        kind: FieldKind::Float {
            min: 0.0,
            max: 10.0,
        },
    },
    FieldSpec {
        path: "train.seed",
        help: "seed for data order, LoRA init and dropout",
        kind: FieldKind::Int {
            min: 0,
            max: i64::MAX,
        },
    },
    FieldSpec {
        path: "train.save_every",
        help: "checkpoint every N steps (0: only at the end)",
        kind: FieldKind::Int {
            min: 0,
            max: i64::MAX,
        },
    },
    FieldSpec {
        path: "train.eval_every",
        help: "eval loss every N steps (0: never)",
        kind: FieldKind::Int {
            min: 0,
            max: i64::MAX,
        },
    },
    FieldSpec {
        path: "train.keep_checkpoints",
        help: "checkpoints kept (0: all)",
        kind: FieldKind::Int { min: 0, max: 10000 },
    },
    FieldSpec {
        path: "train.gradient_checkpointing",
        help: "recompute layers in backward (less memory)",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "train.dtype",
        help: "compute dtype (LoRA stays f32)",
        kind: FieldKind::Choice(&["f32", "bf16", "f16"]),
    },
    FieldSpec {
        path: "train.device",
        help: "cpu, cuda or cuda:N",
        kind: FieldKind::Text,
    },
];

impl RunConfig {
    fn to_value(&self) -> serde_yaml::Value {
        serde_yaml::to_value(self).unwrap_or(serde_yaml::Value::Null)
    }

    /// A field's value as the form shows it.
    pub fn get_field(&self, path: &str) -> String {
        let mut v = &self.to_value();
        for k in path.split('.') {
            match v.get(k) {
                Some(x) => v = x,
                None => return String::new(),
            }
        }
        match v {
            serde_yaml::Value::Null => String::new(),
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }

    /// Sets a field from the form's text: parsed by the field's kind, range-checked, and then
    /// the whole config is validated; errors name the field.
    pub fn set_field(&mut self, path: &str, text: &str) -> Result<(), String> {
        let spec = FIELDS
            .iter()
            .find(|f| f.path == path)
            .ok_or_else(|| format!("{path}: not an editable field"))?;
        let t = text.trim();
        use serde_yaml::Value as Y;
        let value = match spec.kind {
            FieldKind::Text => {
                if t.is_empty() && path == "name" {
                    Y::Null
                } else {
                    Y::String(t.to_string())
                }
            }
            FieldKind::Int { min, max } => {
                let n: i64 = t
                    .parse()
                    .map_err(|_| format!("{path}: expected a whole number"))?;
                if n < min || n > max {
                    return Err(format!("{path}: must be between {min} and {max}"));
                }
                Y::Number(n.into())
            }
            FieldKind::OptInt { min } => {
                if t.is_empty() {
                    Y::Null
                } else {
                    let n: i64 = t
                        .parse()
                        .map_err(|_| format!("{path}: expected a whole number or nothing"))?;
                    if n < min {
                        return Err(format!("{path}: must be at least {min}"));
                    }
                    Y::Number(n.into())
                }
            }
            FieldKind::Float { min, max } => {
                let x: f64 = t
                    .parse()
                    .map_err(|_| format!("{path}: expected a number"))?;
                if !(min..=max).contains(&x) {
                    return Err(format!("{path}: must be between {min} and {max}"));
                }
                Y::Number(x.into())
            }
            FieldKind::Bool => Y::Bool(match t {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => return Err(format!("{path}: expected true or false")),
            }),
            FieldKind::Choice(options) => {
                if !options.contains(&t) {
                    return Err(format!("{path}: expected one of {}", options.join(", ")));
                }
                Y::String(t.to_string())
            }
            FieldKind::Modules => Y::Sequence(
                t.split([',', ' '])
                    .filter(|m| !m.is_empty())
                    .map(|m| Y::String(m.to_string()))
                    .collect(),
            ),
        };
        let mut root = self.to_value();
        let mut cur = &mut root;
        let keys: Vec<&str> = path.split('.').collect();
        for k in &keys[..keys.len() - 1] {
            cur = cur
                .get_mut(*k)
                .ok_or_else(|| format!("{path}: no such section"))?;
        }
        if let Some(m) = cur.as_mapping_mut() {
            m.insert(Y::String(keys[keys.len() - 1].to_string()), value);
        }
        let next: RunConfig = serde_yaml::from_value(root).map_err(|e| format!("{path}: {e}"))?;
        if let Some(issue) = next
            .validate()
            .into_iter()
            .find(|i| i.path == path || i.path.starts_with(&format!("{path}[")))
        {
            return Err(issue.to_string());
        }
        *self = next;
        Ok(())
    }
}

/// The presets shipped in `presets/`, embedded: (name, YAML).
pub const PRESETS: &[(&str, &str)] = &[
    ("tiny-demo", include_str!("../../presets/tiny-demo.yaml")),
    (
        "smollm2-135m-persona",
        include_str!("../../presets/smollm2-135m-persona.yaml"),
    ),
    (
        "qwen2.5-0.5b-lora",
        include_str!("../../presets/qwen2.5-0.5b-lora.yaml"),
    ),
    (
        "llama-3.1-8b-lora",
        include_str!("../../presets/llama-3.1-8b-lora.yaml"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn problems_name_their_paths() {
        let text = "model: {path: m}\ndata: {train: d.jsonl, format: chatml}\nlora: {r: 0, alpha: 16, dropout: 1.5, target_modules: [q_proj, qkv], use_rslora: false}\ntrain: {lr: 3, device: tpu}\n";
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
            got.contains(&"train.lr: must be > 0 and < 1".to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&"train.device: must be cpu, cuda or cuda:N".to_string()),
            "{got:?}"
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
}
