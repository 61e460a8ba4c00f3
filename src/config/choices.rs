//! Named choices in a run configuration. Each is an enum whose YAML spelling is its
//! snake_case name; the form's choice lists come from the same names (`VARIANTS`).

use serde::{Deserialize, Serialize};

/// The learning-rate schedule after warm-up (`train::schedule` computes it).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Schedule {
    Constant,
    Linear,
    #[default]
    Cosine,
}

/// The preference loss (`dpo.loss`), with TRL's names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PrefLoss {
    /// DPO: `-log σ(βΔ)` (conservative with label smoothing).
    #[default]
    Sigmoid,
    /// IPO: `(Δ - 1/(2β))²` on length-averaged log-ratios.
    Ipo,
    /// `max(0, 1 - βΔ)`.
    Hinge,
    /// SimPO: length-normalised log-probs and a margin γ; no reference model.
    Simpo,
    /// ORPO: SFT loss on the chosen reply plus β times the odds-ratio term; no reference.
    Orpo,
}

impl PrefLoss {
    /// Whether the loss compares against a reference model.
    pub fn needs_reference(self) -> bool {
        !matches!(self, PrefLoss::Simpo | PrefLoss::Orpo)
    }
}

impl std::str::FromStr for PrefLoss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("dpo.loss", s)
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("scheduler", s)
    }
}

/// An experiment tracker a run reports to (`train.report_to`), with the names
/// transformers' `report_to` uses.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Tracker {
    /// TensorBoard event files in the run's `tensorboard/` folder.
    Tensorboard,
    /// An MLflow tracking server's REST API (`MLFLOW_TRACKING_URI`).
    Mlflow,
}

impl std::str::FromStr for Tracker {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("train.report_to", s)
    }
}

/// Who trains a run (`train.engine`): tunelab's own engine on one device, or one of the
/// tools tunelab launches (across GPUs and nodes) and follows as a tunelab run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Engine {
    #[default]
    Tunelab,
    Trl,
    Axolotl,
    Llamafactory,
}

impl Engine {
    pub fn is_external(self) -> bool {
        self != Engine::Tunelab
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("train.engine", s)
    }
}

/// How an engine run's GPUs share the model (`train.sharding`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ShardingChoice {
    /// Data parallel: every GPU holds the whole model.
    #[default]
    None,
    /// DeepSpeed ZeRO-2: optimizer state and gradients sharded.
    Zero2,
    /// DeepSpeed ZeRO-3: parameters sharded too.
    Zero3,
    /// PyTorch FSDP2: parameters, gradients and optimizer state sharded.
    Fsdp,
}

impl ShardingChoice {
    /// Whether the frozen base itself is split over the GPUs (what the memory estimate
    /// divides).
    pub fn shards_parameters(self) -> bool {
        matches!(self, ShardingChoice::Zero3 | ShardingChoice::Fsdp)
    }
}

impl std::str::FromStr for ShardingChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("train.sharding", s)
    }
}

/// Where an engine run's processes start (`train.launcher`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Launcher {
    /// On this machine, in the background.
    #[default]
    Local,
    /// As a SLURM batch job (`sbatch`), followed through the shared filesystem.
    Slurm,
}

impl std::str::FromStr for Launcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("train.launcher", s)
    }
}
