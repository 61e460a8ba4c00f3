//! The editable fields of a run configuration: their YAML paths, help and kinds. The
//! Adapter form is generated from this table, and edits go through `set_field`, which
//! parses by kind, range-checks and validates the whole config before changing anything.

use super::{
    Engine, GrpoLoss, ImportanceLevel, Launcher, Method, PrefLoss, RewardSpec, RunConfig,
    ScaleRewards, Schedule, ShardingChoice, Tracker,
};
use crate::model::Dtype;
use crate::template::TrainOn;
use strum::VariantNames;

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
    /// Any of these choices, as a list (none, one or several); the form cycles through the
    /// combinations.
    Set(&'static [&'static str]),
    /// LoRA target modules: picked from the model's module names.
    Modules,
    /// An optional integer (empty for none).
    OptInt {
        min: i64,
    },
    /// An optional number (empty for none).
    OptFloat {
        min: f64,
        max: f64,
    },
    /// An adapter to start from: picked from the runs list.
    Adapter,
}

/// One editable field of a run configuration: its YAML path, help and kind. The TUI's
/// Adapter form is generated from this table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSpec {
    pub path: &'static str,
    pub help: &'static str,
    pub kind: FieldKind,
}

/// The quantizations the form cycles through.
const QUANTIZATIONS: &[&str] = &["none", "q8_0", "q4_0", "q4k", "nf4"];

impl FieldSpec {
    /// Whether the field means anything under `config`'s method (the form hides the rest).
    pub fn applies(&self, config: &RunConfig) -> bool {
        match self.path {
            "model.quantize_head" => config.model.quantization != crate::model::Quantization::None,
            p => config.method_reads(p),
        }
    }
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
        path: "model.quantization",
        help: "QLoRA base: q8_0, q4_0, q4k (block kernels), nf4 (dequantized per use)",
        kind: FieldKind::Choice(QUANTIZATIONS),
    },
    FieldSpec {
        path: "model.quantize_head",
        help: "quantize an untied output head too",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "data.train",
        help: "training dataset file",
        kind: FieldKind::Text,
    },
    FieldSpec {
        path: "train.method",
        help: "sft (supervised), dpo (pairs), kto (rated replies) or grpo (rewards)",
        kind: FieldKind::Choice(Method::VARIANTS),
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
        path: "data.eval_max",
        help: "held-out examples each evaluation scores (0: all)",
        kind: FieldKind::Int {
            min: 0,
            max: 1_000_000,
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
        path: "data.max_prompt_len",
        help: "prompt tokens kept (from the end)",
        kind: FieldKind::Int {
            min: 1,
            max: 131072,
        },
    },
    FieldSpec {
        path: "dpo.loss",
        help: "preference loss (simpo, orpo: no reference)",
        kind: FieldKind::Choice(PrefLoss::VARIANTS),
    },
    FieldSpec {
        path: "dpo.beta",
        help: "β: how far from the reference (λ for orpo)",
        kind: FieldKind::Float {
            min: 1e-6,
            max: 1000.0,
        },
    },
    FieldSpec {
        path: "dpo.label_smoothing",
        help: "ε: share of pairs assumed mislabelled",
        kind: FieldKind::Float { min: 0.0, max: 0.5 },
    },
    FieldSpec {
        path: "dpo.simpo_gamma",
        help: "SimPO target margin γ",
        kind: FieldKind::Float {
            min: 0.0,
            max: 100.0,
        },
    },
    FieldSpec {
        path: "dpo.rpo_alpha",
        help: "adds α × SFT loss on chosen (empty: off)",
        kind: FieldKind::OptFloat {
            min: 0.0,
            max: 100.0,
        },
    },
    FieldSpec {
        path: "dpo.init_adapter",
        help: "start from this SFT run or adapter (empty: fresh)",
        kind: FieldKind::Adapter,
    },
    FieldSpec {
        path: "dpo.precompute_ref",
        help: "reference log-probs once, reused on resume",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "kto.beta",
        help: "β: how far from the reference",
        kind: FieldKind::Float {
            min: 1e-6,
            max: 1000.0,
        },
    },
    FieldSpec {
        path: "kto.desirable_weight",
        help: "λ_D: weight of desirable replies' loss",
        kind: FieldKind::Float {
            min: 1e-6,
            max: 1000.0,
        },
    },
    FieldSpec {
        path: "kto.undesirable_weight",
        help: "λ_U: aim for λ_D·n_D/(λ_U·n_U) in [1, 4/3]",
        kind: FieldKind::Float {
            min: 1e-6,
            max: 1000.0,
        },
    },
    FieldSpec {
        path: "kto.init_adapter",
        help: "start from this SFT run or adapter (empty: fresh)",
        kind: FieldKind::Adapter,
    },
    FieldSpec {
        path: "kto.precompute_ref",
        help: "reference log-probs once, reused on resume",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "grpo.num_generations",
        help: "completions sampled per prompt (the group)",
        kind: FieldKind::Int { min: 2, max: 1024 },
    },
    FieldSpec {
        path: "grpo.max_completion_length",
        help: "tokens a completion may take",
        kind: FieldKind::Int {
            min: 1,
            max: 131072,
        },
    },
    FieldSpec {
        path: "grpo.temperature",
        help: "sampling temperature (log-probs are taken at it)",
        kind: FieldKind::Float {
            min: 0.01,
            max: 10.0,
        },
    },
    FieldSpec {
        path: "grpo.top_p",
        help: "nucleus sampling (1: every token)",
        kind: FieldKind::Float {
            min: 0.01,
            max: 1.0,
        },
    },
    FieldSpec {
        path: "grpo.top_k",
        help: "keep the likeliest k tokens (0: every token)",
        kind: FieldKind::Int {
            min: 0,
            max: 1_000_000,
        },
    },
    FieldSpec {
        path: "grpo.beta",
        help: "KL penalty to the reference (0: no reference pass)",
        kind: FieldKind::Float {
            min: 0.0,
            max: 100.0,
        },
    },
    FieldSpec {
        path: "grpo.epsilon",
        help: "ratio clipped to [1 − ε, 1 + ε_high]",
        kind: FieldKind::Float {
            min: 1e-4,
            max: 0.99,
        },
    },
    FieldSpec {
        path: "grpo.epsilon_high",
        help: "upper clip ε (DAPO's clip-higher; empty: ε)",
        kind: FieldKind::OptFloat {
            min: 1e-4,
            max: 10.0,
        },
    },
    FieldSpec {
        path: "grpo.num_iterations",
        help: "steps each generation batch is reused for (μ)",
        kind: FieldKind::Int { min: 1, max: 64 },
    },
    FieldSpec {
        path: "grpo.loss_type",
        help: "how token losses average (dapo: over the batch's tokens)",
        kind: FieldKind::Choice(GrpoLoss::VARIANTS),
    },
    FieldSpec {
        path: "grpo.scale_rewards",
        help: "advantages divided by the group's std, the batch's, or none",
        kind: FieldKind::Choice(ScaleRewards::VARIANTS),
    },
    FieldSpec {
        path: "grpo.importance_sampling_level",
        help: "ratio per token, or per sequence (GSPO)",
        kind: FieldKind::Choice(ImportanceLevel::VARIANTS),
    },
    FieldSpec {
        path: "grpo.mask_truncated_completions",
        help: "completions cut at the length limit take no part",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "grpo.init_adapter",
        help: "start from this SFT run or adapter (empty: fresh)",
        kind: FieldKind::Adapter,
    },
    FieldSpec {
        path: "grpo.log_completions",
        help: "completions written to the run's events each step",
        kind: FieldKind::Int { min: 0, max: 1024 },
    },
    FieldSpec {
        path: "data.train_undesirable",
        help: "SFT on rated data: train label-false replies too",
        kind: FieldKind::Bool,
    },
    FieldSpec {
        path: "data.train_on",
        help: "which tokens are trained",
        kind: FieldKind::Choice(TrainOn::VARIANTS),
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
        help: "peak learning rate (0 trains nothing: a baseline)",
        kind: FieldKind::Float {
            min: 0.0,
            max: 0.999,
        },
    },
    FieldSpec {
        path: "train.scheduler",
        help: "learning-rate schedule after warm-up",
        kind: FieldKind::Choice(Schedule::VARIANTS),
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
        path: "train.eval_at_start",
        help: "evaluate the base before step 1 (before → after)",
        kind: FieldKind::Bool,
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
        kind: FieldKind::Choice(Dtype::VARIANTS),
    },
    FieldSpec {
        path: "train.device",
        help: "cpu, cuda or cuda:N",
        kind: FieldKind::Text,
    },
    FieldSpec {
        path: "train.report_to",
        help: "trackers: TensorBoard files in the run, an MLflow server (MLFLOW_TRACKING_URI)",
        kind: FieldKind::Set(Tracker::VARIANTS),
    },
    FieldSpec {
        path: "train.engine",
        help: "who trains: tunelab, or TRL/Axolotl/LLaMA-Factory launched and followed",
        kind: FieldKind::Choice(Engine::VARIANTS),
    },
    FieldSpec {
        path: "train.gpus",
        help: "GPUs per node for an engine run",
        kind: FieldKind::Int { min: 1, max: 64 },
    },
    FieldSpec {
        path: "train.sharding",
        help: "engine run: data parallel, DeepSpeed ZeRO-2/3 or FSDP",
        kind: FieldKind::Choice(ShardingChoice::VARIANTS),
    },
    FieldSpec {
        path: "train.python",
        help: "engine run: the venv's bin/python (empty: the active venv's, else python3)",
        kind: FieldKind::Text,
    },
    FieldSpec {
        path: "train.launcher",
        help: "engine run: on this machine, or a SLURM job",
        kind: FieldKind::Choice(Launcher::VARIANTS),
    },
    FieldSpec {
        path: "samples.count",
        help: "held-out prompts answered at each eval (0: none)",
        kind: FieldKind::Int { min: 0, max: 32 },
    },
];

/// The combination after `current` (the form's text, `a, b`) of a [`FieldKind::Set`]'s
/// `options`, counting in binary with `options[i]` as bit `i`: none, the first, the second,
/// both, … and back to none.
pub fn next_subset(options: &[&str], current: &str) -> String {
    let n = options.len().min(16);
    let mask = current
        .split([',', ' '])
        .filter_map(|p| options.iter().position(|o| *o == p))
        .fold(0usize, |m, i| m | (1 << i));
    let next = (mask + 1) % (1 << n);
    (0..n)
        .filter(|i| next & (1 << i) != 0)
        .map(|i| options[i])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of a field a config leaves out of its YAML when it is the default (the engine
/// fields, so a tunelab run's config reads as it did before they existed).
fn unwritten_default(path: &str) -> String {
    match path {
        "train.engine" => Engine::default().to_string(),
        "train.gpus" | "train.nodes" => "1".into(),
        "train.sharding" => ShardingChoice::default().to_string(),
        "train.launcher" => Launcher::default().to_string(),
        _ => String::new(),
    }
}

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
                None => return unwritten_default(path),
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

    /// Applies `--set PATH=VALUE` overrides in order (`train` and `export-config` take
    /// them); each error names the override.
    pub fn apply_sets(&mut self, sets: &[String]) -> Result<(), String> {
        for kv in sets {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--set {kv:?}: expected PATH=VALUE, e.g. train.lr=1e-4"))?;
            self.set_path(k.trim(), v)
                .map_err(|e| format!("--set {kv}: {e}"))?;
        }
        Ok(())
    }

    /// Sets any field by its YAML path (`dpo.init_adapter`, `train.lr`) to `value`, read as
    /// YAML (so `3`, `true`, `null` and `[q_proj, v_proj]` keep their types); the config
    /// must still parse. `tunelab train --set` uses it.
    pub fn set_path(&mut self, path: &str, value: &str) -> Result<(), String> {
        use serde_yaml::Value as Y;
        let v: Y = serde_yaml::from_str(value).map_err(|e| format!("{path}: {e}"))?;
        let mut root = self.to_value();
        let keys: Vec<&str> = path.split('.').collect();
        let mut cur = &mut root;
        for k in &keys[..keys.len() - 1] {
            cur = step_into(cur, k).map_err(|e| format!("{path}: {e}"))?;
        }
        let last = keys[keys.len() - 1];
        match last.split_once('[') {
            // `rewards[1]=…` replaces one entry of a list.
            Some(_) => *step_into(cur, last).map_err(|e| format!("{path}: {e}"))? = v,
            None => {
                cur.as_mapping_mut()
                    .ok_or_else(|| format!("{path}: not a section"))?
                    .insert(Y::String(last.to_string()), v);
            }
        }
        let text = serde_yaml::to_string(&root).map_err(|e| e.to_string())?;
        *self = RunConfig::from_yaml(&text, "--set")
            .map_err(|e| e.to_string().trim_start_matches("--set: ").to_string())?;
        Ok(())
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
            FieldKind::Adapter if t.is_empty() => Y::Null,
            FieldKind::Adapter => Y::String(t.to_string()),
            FieldKind::Text => {
                if t.is_empty() && matches!(path, "name" | "train.python") {
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
            FieldKind::OptFloat { .. } if t.is_empty() => Y::Null,
            FieldKind::Float { min, max } | FieldKind::OptFloat { min, max } => {
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
            FieldKind::Set(options) => {
                let picked: Vec<&str> = t.split([',', ' ']).filter(|m| !m.is_empty()).collect();
                if let Some(bad) = picked.iter().find(|p| !options.contains(p)) {
                    return Err(format!(
                        "{path}: unknown {bad:?}; expected any of {}",
                        options.join(", ")
                    ));
                }
                Y::Sequence(picked.into_iter().map(|m| Y::String(m.into())).collect())
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

/// `grpo.rewards` is a list, not a field: the form adds, removes and reweighs its entries
/// through these, each checked by the same validation as `set_field`.
impl RunConfig {
    /// Appends `reward` to `grpo.rewards` unless the config then has a problem with it;
    /// returns its index.
    pub fn add_reward(&mut self, reward: RewardSpec) -> Result<usize, String> {
        let i = self.grpo.rewards.len();
        let mut next = self.clone();
        next.grpo.rewards.push(reward);
        self.take_if_valid(next, &format!("grpo.rewards[{i}]"))?;
        Ok(i)
    }

    /// Removes entry `i` of `grpo.rewards`; refused when it is the last (a GRPO run needs
    /// one).
    pub fn remove_reward(&mut self, i: usize) -> Result<(), String> {
        let mut next = self.clone();
        reward_at(&mut next, i)?;
        next.grpo.rewards.remove(i);
        // Only the list's own problem: a later entry's index moves.
        if let Some(issue) = next
            .validate()
            .into_iter()
            .find(|v| v.path == "grpo.rewards")
        {
            return Err(issue.to_string());
        }
        *self = next;
        Ok(())
    }

    /// Sets entry `i`'s weight from the form's text (any finite number: a negative weight
    /// is a penalty).
    pub fn set_reward_weight(&mut self, i: usize, text: &str) -> Result<(), String> {
        let at = format!("grpo.rewards[{i}].weight");
        let w: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{at}: expected a number"))?;
        let mut next = self.clone();
        reward_at(&mut next, i)?.weight = w;
        self.take_if_valid(next, &at)
    }

    /// Becomes `next` unless it has a problem at `path` or under it.
    fn take_if_valid(&mut self, next: RunConfig, path: &str) -> Result<(), String> {
        let under = |p: &str| {
            p == path
                || p.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        };
        if let Some(issue) = next.validate().into_iter().find(|i| under(&i.path)) {
            return Err(issue.to_string());
        }
        *self = next;
        Ok(())
    }
}

/// Entry `i` of `grpo.rewards`, or an error naming it.
fn reward_at(c: &mut RunConfig, i: usize) -> Result<&mut RewardSpec, String> {
    let n = c.grpo.rewards.len();
    c.grpo
        .rewards
        .get_mut(i)
        .ok_or_else(|| format!("grpo.rewards[{i}]: the list has {n} entries"))
}

/// The value under `key` of a section (created empty when missing), or with `name[i]` the
/// i-th entry of the list `name` (which must exist).
fn step_into<'v>(
    cur: &'v mut serde_yaml::Value,
    key: &str,
) -> Result<&'v mut serde_yaml::Value, String> {
    use serde_yaml::Value as Y;
    let (name, index) = match key.split_once('[') {
        Some((n, rest)) => {
            let i: usize = rest
                .strip_suffix(']')
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| format!("{key}: expected name[index]"))?;
            (n, Some(i))
        }
        None => (key, None),
    };
    let m = cur
        .as_mapping_mut()
        .ok_or_else(|| format!("{name} is not a section"))?;
    let entry = m
        .entry(Y::String(name.to_string()))
        .or_insert_with(|| Y::Mapping(Default::default()));
    match index {
        None => Ok(entry),
        Some(i) => {
            let list = entry
                .as_sequence_mut()
                .ok_or_else(|| format!("{name} is not a list"))?;
            let len = list.len();
            list.get_mut(i)
                .ok_or_else(|| format!("{name}[{i}]: the list has {len} entries"))
        }
    }
}
