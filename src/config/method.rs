//! The training method (`train.method`) and each method's own settings (`dpo:`, `kto:`),
//! with what the CLI, the workbench and the exports ask about a method: the data it trains
//! on, the rows an item takes, its summary, the adapter it starts from, the fields it reads.
//! Code outside `config` and `train` asks these rather than matching on [`Method`]; what
//! differs per method and per tool (the scaleout mappings) matches on [`MethodConfig`], the
//! method with its settings, so a new method is a compile error wherever it needs a decision.

use super::{GrpoSection, PrefLoss, RunConfig};
use crate::data::Kind;
use crate::template::TrainOn;
use serde::{Deserialize, Serialize};

/// What the trainer optimizes.
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
pub enum Method {
    /// Supervised fine-tuning: cross-entropy on the trained tokens.
    #[default]
    Sft,
    /// Preference training on pairs: DPO and its variants (`dpo.loss`).
    Dpo,
    /// Preference training on completions rated one at a time (KTO).
    Kto,
    /// Reinforcement learning from reward functions over sampled groups (GRPO).
    Grpo,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("method", s)
    }
}

/// Fields of the shared sections only preference training (DPO, KTO) reads.
const PREFERENCE_ONLY: &[&str] = &["data.max_prompt_len"];
/// Fields preference training ignores (completions are always trained, never packed).
const SFT_ONLY: &[&str] = &["data.train_on", "data.packing", "data.train_undesirable"];

/// What `tunelab bench train` times for a method, on random tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchItems {
    /// Rows of `--seq` tokens, every token trained.
    Rows,
    /// Pairs: a prompt and two completions, each row `--seq` tokens.
    Pairs,
}

impl Method {
    /// Whether the method learns from preferences (pairs or rated completions) against a
    /// reference, rather than imitating.
    pub fn is_preference(self) -> bool {
        matches!(self, Method::Dpo | Method::Kto)
    }

    /// The config section that holds the method's own settings (`dpo`, `kto`); SFT's are
    /// fields of `data`.
    pub fn section(self) -> Option<&'static str> {
        match self {
            Method::Sft => None,
            Method::Dpo => Some("dpo"),
            Method::Kto => Some("kto"),
            Method::Grpo => Some("grpo"),
        }
    }

    /// The field naming the adapter the method starts from (`dpo.init_adapter`); `None`
    /// when it always starts from a fresh one.
    pub fn init_adapter_field(self) -> Option<&'static str> {
        match self {
            Method::Sft => None,
            Method::Dpo => Some("dpo.init_adapter"),
            Method::Kto => Some("kto.init_adapter"),
            Method::Grpo => Some("grpo.init_adapter"),
        }
    }

    /// Rows one item puts through the model with a graph (what memory grows with): a pair
    /// is its chosen and its rejected row; KTO's KL rows go through without a graph, before
    /// the rows that train.
    pub fn rows_per_item(self) -> usize {
        match self {
            Method::Sft | Method::Kto | Method::Grpo => 1,
            Method::Dpo => 2,
        }
    }

    /// The method to switch to for data of `kind` when this one cannot use it well: rated
    /// completions → kto, pairs → dpo (kto also trains on pairs, each side rated on its
    /// own), conversations and text → sft; `None` when this one fits.
    pub fn switch_for(self, kind: Kind) -> Option<Method> {
        let fits = match kind {
            Kind::Unpaired => self == Method::Kto,
            Kind::Preference => self.is_preference(),
            // GRPO samples its own completions from any conversation's prompt.
            Kind::Sft => matches!(self, Method::Sft | Method::Grpo),
            Kind::Text => self == Method::Sft,
        };
        if fits {
            return None;
        }
        Some(match kind {
            Kind::Unpaired => Method::Kto,
            Kind::Preference => Method::Dpo,
            Kind::Sft | Kind::Text => Method::Sft,
        })
    }

    /// What the method learns from, as the workbench says when it switches to it.
    pub fn learns_from(self) -> &'static str {
        match self {
            Method::Kto => "completions rated one at a time: KTO learns from both labels (sft would train only the desirable ones)",
            Method::Dpo => "preference pairs (kto also trains on them)",
            Method::Sft => "conversations to imitate",
            Method::Grpo => "prompts: GRPO samples completions and scores them with reward functions",
        }
    }

    /// Why the method cannot train on data of `kind`, as the trainer refuses it; `None`
    /// when it can.
    pub fn refusal(self, kind: Kind) -> Option<&'static str> {
        match (self, kind) {
            (Method::Sft, Kind::Preference) => {
                Some("train.method sft needs conversations or text (dpo trains on pairs)")
            }
            (Method::Dpo, k) if k != Kind::Preference => {
                Some("train.method dpo needs preference pairs")
            }
            (Method::Kto, Kind::Text) => {
                Some("train.method kto needs rated completions or preference pairs")
            }
            (Method::Grpo, k) if k != Kind::Sft => {
                Some("train.method grpo needs prompts: conversations (or prompt/answer records)")
            }
            _ => None,
        }
    }

    /// What `tunelab bench train` builds for the method; `None` when it is not benchmarked.
    pub fn bench_items(self) -> Option<BenchItems> {
        match self {
            Method::Sft => Some(BenchItems::Rows),
            Method::Dpo => Some(BenchItems::Pairs),
            Method::Kto | Method::Grpo => None,
        }
    }
}

/// The method a run's logged metrics (TRL's names) show: GRPO logs a mean reward, KTO a KL
/// point (GRPO may too), DPO reward margins (KTO logs them too); anything else is SFT.
pub fn method_from_metrics(has: impl Fn(&str) -> bool) -> Method {
    if has("reward") || has("frac_reward_zero_std") {
        Method::Grpo
    } else if has("kl") || has("eval_kl") {
        Method::Kto
    } else if has("rewards/margins") || has("eval_rewards/margins") {
        Method::Dpo
    } else {
        Method::Sft
    }
}

/// SFT's settings: the `data` fields only SFT reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftView {
    pub train_on: TrainOn,
    pub packing: bool,
    /// Unpaired (KTO) data: train the undesirable completions too.
    pub train_undesirable: bool,
}

/// The run's method together with its own settings, borrowed from its configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MethodConfig<'a> {
    Sft(SftView),
    Dpo(&'a DpoSection),
    Kto(&'a KtoSection),
    Grpo(&'a GrpoSection),
}

impl<'a> MethodConfig<'a> {
    pub fn method(self) -> Method {
        match self {
            MethodConfig::Sft(_) => Method::Sft,
            MethodConfig::Dpo(_) => Method::Dpo,
            MethodConfig::Kto(_) => Method::Kto,
            MethodConfig::Grpo(_) => Method::Grpo,
        }
    }

    /// The adapter the method starts from (its `init_adapter`).
    pub fn init_adapter(self) -> Option<&'a str> {
        match self {
            MethodConfig::Sft(_) => None,
            MethodConfig::Dpo(d) => d.init_adapter.as_deref(),
            MethodConfig::Kto(k) => k.init_adapter.as_deref(),
            MethodConfig::Grpo(g) => g.init_adapter.as_deref(),
        }
    }

    /// The SFT settings, when the method is SFT.
    pub fn sft(self) -> Option<SftView> {
        match self {
            MethodConfig::Sft(s) => Some(s),
            _ => None,
        }
    }
}

impl RunConfig {
    /// The configured method with its own settings.
    pub fn method_config(&self) -> MethodConfig<'_> {
        match self.train.method {
            Method::Sft => MethodConfig::Sft(SftView {
                train_on: self.data.train_on,
                packing: self.data.packing,
                train_undesirable: self.data.train_undesirable,
            }),
            Method::Dpo => MethodConfig::Dpo(&self.dpo),
            Method::Kto => MethodConfig::Kto(&self.kto),
            Method::Grpo => MethodConfig::Grpo(&self.grpo),
        }
    }

    /// The adapter the method starts from (`dpo.init_adapter` or `kto.init_adapter`).
    pub fn init_adapter(&self) -> Option<&str> {
        self.method_config().init_adapter()
    }

    /// The method and its main settings in a few words (`dpo sigmoid β0.1`), as
    /// `tunelab presets` lists them.
    pub fn method_summary(&self) -> String {
        match self.method_config() {
            MethodConfig::Sft(_) => "sft".to_string(),
            MethodConfig::Dpo(d) => format!("dpo {} β{}", d.loss, d.beta),
            MethodConfig::Kto(k) => format!("kto β{}", k.beta),
            MethodConfig::Grpo(g) => format!(
                "grpo {} G{} {} reward{}",
                g.loss_type,
                g.num_generations,
                g.rewards.len(),
                if g.rewards.len() == 1 { "" } else { "s" }
            ),
        }
    }

    /// The method's loss and its weights (`sigmoid β0.1`, `kto β0.1 λD1 λU1`), as the
    /// workbench's Adapter tab shows them beside the adapter the run starts from.
    pub fn method_settings(&self) -> String {
        match self.method_config() {
            MethodConfig::Sft(_) => "sft".into(),
            MethodConfig::Dpo(d) => format!("{} β{}", d.loss, d.beta),
            MethodConfig::Kto(k) => format!(
                "kto β{} λD{} λU{}",
                k.beta, k.desirable_weight, k.undesirable_weight
            ),
            MethodConfig::Grpo(g) => format!(
                "grpo {} G{} β{} ε{}",
                g.loss_type, g.num_generations, g.beta, g.epsilon
            ),
        }
    }

    /// Whether the method reads the field at `path` (a field of no method's section is
    /// read by all).
    pub fn method_reads(&self, path: &str) -> bool {
        use strum::IntoEnumIterator;
        let section = path.split_once('.').map(|(s, _)| s);
        let own = self.train.method.section();
        if section.is_some_and(|s| Method::iter().any(|m| m.section() == Some(s)) && own != Some(s))
        {
            return false;
        }
        match self.method_config() {
            MethodConfig::Sft(_) => !PREFERENCE_ONLY.contains(&path),
            MethodConfig::Dpo(d) => match path {
                "dpo.simpo_gamma" => d.loss == PrefLoss::Simpo,
                "dpo.label_smoothing" => matches!(d.loss, PrefLoss::Sigmoid | PrefLoss::Simpo),
                "dpo.precompute_ref" => d.loss.needs_reference(),
                p => !SFT_ONLY.contains(&p),
            },
            MethodConfig::Kto(_) => !SFT_ONLY.contains(&path),
            // GRPO reads prompts: their length limit, not SFT's masks or packing.
            MethodConfig::Grpo(_) => !SFT_ONLY.contains(&path),
        }
    }

    /// Reports the problems of the methods' own sections to `bad` (path, message): each is
    /// checked whatever the method, so a switch of method finds them valid.
    pub(super) fn method_issues(&self, bad: &mut impl FnMut(&str, &str)) {
        let dpo = &self.dpo;
        if dpo.beta <= 0.0 {
            bad("dpo.beta", "must be > 0");
        }
        if !(0.0..0.5).contains(&dpo.label_smoothing) {
            bad("dpo.label_smoothing", "must be at least 0 and below 0.5");
        }
        if dpo.rpo_alpha.is_some_and(|a| a < 0.0) {
            bad("dpo.rpo_alpha", "must be >= 0");
        }
        let kto = &self.kto;
        if kto.beta <= 0.0 {
            bad("kto.beta", "must be > 0");
        }
        if kto.desirable_weight <= 0.0 {
            bad("kto.desirable_weight", "must be > 0");
        }
        if kto.undesirable_weight <= 0.0 {
            bad("kto.undesirable_weight", "must be > 0");
        }
        self.grpo.issues(bad);
        if self.train.method == Method::Grpo {
            let t = &self.train;
            let g = &self.grpo;
            if g.num_generations >= 2
                && !(t.batch_size * t.grad_accum).is_multiple_of(g.num_generations)
            {
                bad(
                    "train.batch_size",
                    &format!(
                        "× train.grad_accum ({} completions a step) must be a multiple of grpo.num_generations ({})",
                        t.batch_size * t.grad_accum,
                        g.num_generations
                    ),
                );
            }
            if g.rewards.is_empty() {
                bad("grpo.rewards", "must name at least one reward function");
            }
        }
    }
}

/// Unpaired preference training (`train.method: kto`), with TRL's `KTOConfig` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KtoSection {
    /// β: how far the policy may move from the reference.
    pub beta: f64,
    /// Weight of the desirable completions' losses (λ_D).
    pub desirable_weight: f64,
    /// Weight of the undesirable completions' losses (λ_U). TRL advises
    /// `λ_D·n_D / (λ_U·n_U)` between 1 and 4/3; the run's log says when it is not.
    pub undesirable_weight: f64,
    /// Start from this adapter (an SFT run id, a run folder or a PEFT folder); the reference
    /// is then a frozen copy of it.
    pub init_adapter: Option<String>,
    /// Compute the reference log-probs once, keep them in the run folder, and reuse them on
    /// resume.
    pub precompute_ref: bool,
}

impl Default for KtoSection {
    fn default() -> Self {
        KtoSection {
            beta: 0.1,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
            init_adapter: None,
            precompute_ref: false,
        }
    }
}

/// Preference training (`train.method: dpo`), with TRL's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoSection {
    pub loss: PrefLoss,
    /// β: how far the policy may move from the reference (λ for ORPO).
    pub beta: f64,
    /// ε of the conservative DPO loss (sigmoid and simpo).
    pub label_smoothing: f64,
    /// SimPO's target margin γ.
    pub simpo_gamma: f64,
    /// Adds this times the SFT loss on the chosen replies (RPO).
    pub rpo_alpha: Option<f64>,
    /// Start from this adapter (an SFT run id, a run folder or a PEFT folder); the reference
    /// is then a frozen copy of it.
    pub init_adapter: Option<String>,
    /// Compute the reference log-probs once, keep them in the run folder, and reuse them on
    /// resume.
    pub precompute_ref: bool,
}

impl Default for DpoSection {
    fn default() -> Self {
        DpoSection {
            loss: PrefLoss::Sigmoid,
            beta: 0.1,
            label_smoothing: 0.0,
            simpo_gamma: 0.5,
            rpo_alpha: None,
            init_adapter: None,
            precompute_ref: false,
        }
    }
}
