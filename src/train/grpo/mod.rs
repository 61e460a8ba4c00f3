//! GRPO (Group Relative Policy Optimization) as a method, with TRL 1.16's `GRPOTrainer`
//! semantics: each step samples `num_generations` completions of its prompts with the
//! adapter as it is, scores them with the run's reward functions, and moves the policy
//! toward the completions that beat their group ([`loss`]). A generation batch serves
//! `num_iterations` optimizer steps, with its sampling-time log-probs kept for the ratio.
//!
//! `train.batch_size` counts completions, as TRL's `per_device_train_batch_size` does: a step
//! takes `batch_size × grad_accum` of them, `num_generations` per prompt, and its micro-batches
//! are slices of the generation batch. Like the other methods, the loss reaches the step only
//! as a weight per completion token, so both backward paths serve it.

pub mod loss;
pub mod rollout;

use super::error::TrainError;
use super::grads::Grads;
use super::method::{SamplePrompt, Setup, TrainingMethod};
use super::micro::{StepArgs, TargetLogps};
use super::objective::{EvalOut, MicroOut, Objective, StepPlan, Window};
use super::reference::Reference;
use crate::batch::prompts::{encode_prompts, Prompt};
use crate::batch::{EncodeReport, MicroBatch, Order};
use crate::config::GrpoSection;
use crate::model::Model;
use crate::reward::Rewards;
use crate::runs::event::Metrics;
use crate::template::TextTokenizer;
use loss::{micro_terms, MicroTerms, Row, Scale};
use rollout::{Completion, Rollout, Sampler};
use std::path::Path;
use std::time::Instant;

/// Why sampling or scoring a generation batch failed.
#[derive(Debug, thiserror::Error)]
pub enum GrpoError {
    #[error("compute: {0}")]
    Compute(#[from] candle_core::Error),
    #[error(transparent)]
    Reward(#[from] crate::reward::RewardError),
}

impl From<GrpoError> for TrainError {
    fn from(e: GrpoError) -> Self {
        match e {
            GrpoError::Compute(c) => TrainError::Candle(c),
            GrpoError::Reward(r) => TrainError::Reward(r),
        }
    }
}

pub struct Grpo {
    pub prompts: Vec<Prompt>,
    pub held_out: Vec<Prompt>,
    pub cfg: GrpoSection,
    pub tokenizer: TextTokenizer,
    pub rewards: Rewards,
    pub reference: Reference,
    pub seed: u64,
    /// Completions per micro-batch (`train.batch_size`).
    pub batch_size: usize,
    /// Prompts per generation batch.
    pub per_generation: usize,
    /// The generation batch in use.
    pub rollout: Option<Rollout>,
}

impl Grpo {
    /// `batch_size × grad_accum` completions a step, `num_generations` per prompt.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prompts: Vec<Prompt>,
        held_out: Vec<Prompt>,
        cfg: GrpoSection,
        tokenizer: TextTokenizer,
        rewards: Rewards,
        reference: Reference,
        train: &crate::config::TrainSection,
    ) -> Result<Self, TrainError> {
        let per_step = train.batch_size.max(1) * train.grad_accum.max(1);
        let per_generation = (per_step / cfg.num_generations.max(1)).max(1);
        if prompts.len() < per_generation {
            return Err(TrainError::Config(format!(
                "train.method grpo: the data has {} prompt{}; a step samples {per_generation} \
                 (train.batch_size × train.grad_accum / grpo.num_generations = {per_step} / {})",
                prompts.len(),
                if prompts.len() == 1 { "" } else { "s" },
                cfg.num_generations
            )));
        }
        Ok(Grpo {
            prompts,
            held_out,
            cfg,
            tokenizer,
            rewards,
            reference,
            seed: train.seed,
            batch_size: train.batch_size.max(1),
            per_generation,
            rollout: None,
        })
    }

    /// Full generation batches in an epoch (a last partial one is dropped, as TRL's
    /// sampler drops it).
    fn generations_per_epoch(&self) -> u64 {
        (self.prompts.len() / self.per_generation).max(1) as u64
    }

    /// The prompts of generation `g`: a seeded permutation per epoch, cut into full batches.
    pub fn generation_prompts(&self, g: u64) -> Vec<usize> {
        let order = Order {
            seed: self.seed,
            batch_size: self.per_generation,
            sequences: self.prompts.len(),
        };
        let per = self.generations_per_epoch();
        order.micro_batch(g / per * order.micro_per_epoch() + g % per)
    }

    /// Samples, scores and (for reuse and the KL term) scores the log-probs of generation `g`.
    fn roll_out(&self, model: &Model, g: u64) -> Result<Rollout, GrpoError> {
        let prompts = self.generation_prompts(g);
        let sampler = Sampler {
            cfg: &self.cfg,
            seed: self.seed,
            tokenizer: &self.tokenizer,
            rewards: &self.rewards,
        };
        let mut r = sampler.generate(model, &self.prompts, &prompts, g)?;
        let started = Instant::now();
        let batch = FixedBatch {
            prompts: &self.prompts,
            cfg: &self.cfg,
            pad_id: self.tokenizer.pad_id(),
        };
        let t = self.cfg.temperature;
        let reference = |mb: &MicroBatch| {
            self.reference
                .with(model, |m| crate::eval::token_logps(m, mb, t))
        };
        batch.score_logps(model, &reference, &mut r, self.batch_size)?;
        r.metrics
            .insert("timing/reference_s".into(), started.elapsed().as_secs_f64());
        Ok(r)
    }

    fn batch(&self) -> FixedBatch<'_> {
        FixedBatch {
            prompts: &self.prompts,
            cfg: &self.cfg,
            pad_id: self.tokenizer.pad_id(),
        }
    }
}

/// Adds a micro-batch's loss metrics (TRL's names) as shares of `accum` micro-batches.
fn add_metrics(m: &mut Metrics, t: &MicroTerms, accum: usize) {
    let share = 1.0 / accum.max(1) as f64;
    let mut add = |k: &str, v: f64| *m.entry(k.to_string()).or_default() += v * share;
    if let Some(kl) = t.kl {
        add("kl", kl);
    }
    add("clip_ratio/low_mean", t.clip_low);
    add("clip_ratio/low_min", t.clip_low_min);
    add("clip_ratio/high_mean", t.clip_high);
    add("clip_ratio/high_max", t.clip_high_max);
    add("clip_ratio/region_mean", t.clip_region);
}

impl Objective for Grpo {
    /// Completion slots per epoch (prompts in full generation batches × generations ×
    /// iterations), so the trainer's step count is TRL's.
    fn train_items(&self) -> usize {
        self.generations_per_epoch() as usize
            * self.per_generation
            * self.cfg.num_generations
            * self.cfg.num_iterations.max(1)
    }

    /// None: GRPO has no held-out loss (its held-out prompts serve the samples and
    /// `generate: held_out` tasks).
    fn eval_items(&self) -> usize {
        0
    }

    fn window(&self, items: &[usize]) -> Window {
        let b = self.batch();
        let tokens = self.rollout.as_ref().map_or(0, |r| {
            items
                .iter()
                .filter_map(|&i| r.completions.get(i))
                .filter(|c| b.counted(c))
                .map(|c| c.ids.len())
                .sum()
        });
        Window {
            units: 1,
            tokens,
            desirable: 0,
        }
    }

    fn micro_step(
        &self,
        model: &Model,
        items: &[usize],
        window: Window,
        args: &StepArgs,
        grads: &mut Grads,
    ) -> candle_core::Result<MicroOut> {
        let Some(r) = self.rollout.as_ref() else {
            candle_core::bail!("grpo: a micro-batch before its generation batch")
        };
        self.batch()
            .micro_step(model, r, items, window.units, args, grads)
    }

    /// GRPO has no held-out loss: its evaluations are the run's `eval.tasks` and samples.
    fn evaluate(&self, _model: &Model, _batch_size: usize) -> candle_core::Result<Option<EvalOut>> {
        Ok(None)
    }

    fn plan_step(
        &mut self,
        model: &Model,
        step: u64,
        accum: usize,
    ) -> Result<Option<StepPlan>, TrainError> {
        let g = step / self.cfg.num_iterations.max(1) as u64;
        let fresh = self.rollout.as_ref().map(|r| r.generation) != Some(g);
        if fresh {
            self.rollout = Some(self.roll_out(model, g)?);
        }
        let Some(r) = self.rollout.as_ref() else {
            return Err(TrainError::Config("grpo: no generation batch".into()));
        };
        let n = r.completions.len();
        let windows: Vec<Vec<usize>> = (0..accum.max(1))
            .map(|k| (k * self.batch_size..((k + 1) * self.batch_size).min(n)).collect())
            .filter(|w: &Vec<usize>| !w.is_empty())
            .collect();
        let samples = if fresh {
            rollout::samples(
                &self.prompts,
                r,
                self.rewards.names(),
                self.cfg.log_completions,
            )
        } else {
            Vec::new()
        };
        Ok(Some(StepPlan {
            windows,
            metrics: r.metrics.clone(),
            samples,
        }))
    }

    fn state(&self) -> Option<Vec<u8>> {
        // A batch used once needs nothing: the next step samples afresh from the seed.
        if self.cfg.num_iterations <= 1 {
            return None;
        }
        self.rollout
            .as_ref()
            .and_then(|r| serde_json::to_vec(r).ok())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), TrainError> {
        let r: Rollout = serde_json::from_slice(state).map_err(|e| {
            TrainError::Config(format!("the checkpoint's GRPO generation batch: {e}"))
        })?;
        self.rollout = Some(r);
        Ok(())
    }
}

impl TrainingMethod for Grpo {
    type Item = Prompt;

    fn encode(s: &Setup, path: &Path) -> Result<(Vec<Prompt>, EncodeReport), TrainError> {
        let d = &s.cfg.data;
        Ok(encode_prompts(
            path,
            &d.format,
            s.encoder,
            d.max_prompt_len,
        )?)
    }

    fn sample(item: &Prompt) -> Option<SamplePrompt> {
        Some(SamplePrompt {
            text: item.text.clone(),
            ids: item.ids.clone(),
            reply: item.reference_ids.clone(),
        })
    }

    fn build(s: &Setup, train: Vec<Prompt>, eval: Vec<Prompt>) -> Result<Self, TrainError> {
        let g = &s.cfg.grpo;
        let rewards = Rewards::new(&g.rewards, g.reward_names(), Path::new("."))?;
        let (reference, _) = Reference::for_run(s.cfg, s.model, g.beta != 0.0)?;
        Grpo::new(
            train,
            eval,
            g.clone(),
            s.encoder.tokenizer.clone(),
            rewards,
            reference,
            &s.cfg.train,
        )
    }
}

/// The reference's per-token log-probs of a micro-batch's rows.
pub type RefLogps<'a> = dyn Fn(&MicroBatch) -> candle_core::Result<Vec<Vec<f32>>> + 'a;

/// A generation batch's prompts with the settings its loss reads: what the step, the
/// parity tests and `tunelab eval --grpo` share.
pub struct FixedBatch<'a> {
    pub prompts: &'a [Prompt],
    pub cfg: &'a GrpoSection,
    pub pad_id: u32,
}

impl FixedBatch<'_> {
    /// Whether a completion's tokens count in the loss.
    pub fn counted(&self, c: &Completion) -> bool {
        c.stopped || !self.cfg.mask_truncated_completions
    }

    /// The sampling-time log-probs (when the batch is reused) and the reference's (when
    /// β > 0), `batch_size` completions at a time, without dropout.
    pub fn score_logps(
        &self,
        model: &Model,
        reference: &RefLogps,
        r: &mut Rollout,
        batch_size: usize,
    ) -> candle_core::Result<()> {
        let reuse = self.cfg.num_iterations > 1;
        let kl = self.cfg.beta != 0.0;
        if !reuse && !kl {
            return Ok(());
        }
        let t = self.cfg.temperature;
        let all: Vec<usize> = (0..r.completions.len()).collect();
        for chunk in all.chunks(batch_size.max(1)) {
            let mb = rollout::rows(self.prompts, r, chunk, self.pad_id);
            let old = if reuse {
                Some(crate::eval::token_logps(model, &mb, t)?)
            } else {
                None
            };
            let refs = if kl { Some(reference(&mb)?) } else { None };
            for (k, &i) in chunk.iter().enumerate() {
                let c = &mut r.completions[i];
                c.old = old.as_ref().map(|o| o[k].clone());
                c.reference = refs.as_ref().map(|o| o[k].clone());
            }
        }
        Ok(())
    }

    /// The loss terms of `items` of `r` from their log-probs now.
    pub fn terms(&self, r: &Rollout, items: &[usize], t: &TargetLogps, accum: usize) -> MicroTerms {
        let mut per_row: Vec<Vec<f32>> = vec![Vec::new(); t.rows];
        for (lp, row) in t.logp.iter().zip(&t.row) {
            per_row[*row].push(*lp);
        }
        let rows: Vec<Row> = items
            .iter()
            .zip(&per_row)
            .map(|(&i, lp)| {
                let c = &r.completions[i];
                Row {
                    logp: lp,
                    old: c.old.as_deref(),
                    reference: c.reference.as_deref(),
                    advantage: c.advantage,
                    counted: self.counted(c),
                }
            })
            .collect();
        let scale = Scale {
            accum,
            batch_tokens: r.counted_tokens(self.cfg.mask_truncated_completions),
        };
        micro_terms(&(self.cfg).into(), &rows, scale)
    }

    /// Forward and backward of the micro-batch `items` of `r`, one of `accum`, into `grads`;
    /// the loss metrics come back as shares of the window.
    pub fn micro_step(
        &self,
        model: &Model,
        r: &Rollout,
        items: &[usize],
        accum: usize,
        args: &StepArgs,
        grads: &mut Grads,
    ) -> candle_core::Result<MicroOut> {
        let mb = rollout::rows(self.prompts, r, items, self.pad_id);
        let mut kept = None;
        let mut head = |t: &TargetLogps| {
            let terms = self.terms(r, items, t, accum);
            let w = terms.d_logp.iter().map(|d| *d as f32).collect();
            let loss = terms.loss;
            kept = Some(terms);
            Ok((loss, w))
        };
        let args = StepArgs {
            temperature: self.cfg.temperature,
            ..*args
        };
        let l = super::step::forward_backward_with(model, &mb, &args, grads, &mut head)?;
        let mut metrics = Metrics::new();
        if let Some(t) = kept {
            add_metrics(&mut metrics, &t, accum);
        }
        Ok(MicroOut {
            loss: l.loss,
            tokens: mb.tokens,
            metrics,
        })
    }
}

/// What `tunelab eval --grpo` reports of fixed groups: the on-policy loss, the L2 norm of
/// its LoRA gradient, the KL term and the advantages.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedOut {
    pub loss: f64,
    pub grad_norm: f64,
    pub kl: Option<f64>,
    pub advantages: Vec<f64>,
    pub metrics: Metrics,
}

/// The on-policy loss of fixed groups as one micro-batch (no sampling, no dropout), its
/// gradient's norm, and the KL to `reference` (a model of its own, or the base alone: the
/// adapter bypassed) when β > 0.
pub fn fixed_loss(
    model: &Model,
    groups: &[FixedGroup],
    cfg: &GrpoSection,
    reference: Option<&Model>,
    pad_id: u32,
    autograd: bool,
) -> candle_core::Result<FixedOut> {
    let t = cfg.temperature;
    let ref_logps = |mb: &MicroBatch| match reference {
        Some(m) => crate::eval::token_logps(m, mb, t),
        None => Reference::Bypass.with(model, |m| crate::eval::token_logps(m, mb, t)),
    };
    let (prompts, mut r) = fixed_rollout(groups, cfg);
    let batch = FixedBatch {
        prompts: &prompts,
        cfg: &GrpoSection {
            num_iterations: 1,
            ..cfg.clone()
        },
        pad_id,
    };
    let n = r.completions.len();
    batch.score_logps(model, &ref_logps, &mut r, n)?;
    let items: Vec<usize> = (0..n).collect();
    let mut grads = Grads::new(model.lora_vars().into_iter().map(|(_, v)| v).collect());
    let args = StepArgs {
        autograd,
        ..StepArgs::plain(n)
    };
    let out = batch.micro_step(model, &r, &items, 1, &args, &mut grads)?;
    Ok(FixedOut {
        loss: out.loss,
        grad_norm: grads.norm()?,
        kl: out.metrics.get("kl").copied(),
        advantages: r.completions.iter().map(|c| c.advantage).collect(),
        metrics: out.metrics,
    })
}

/// One group of fixed completions (`tunelab eval --grpo`, the parity tests): the prompt's
/// ids, each completion's ids (nothing appended) and reward.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedGroup {
    pub prompt: Vec<u32>,
    pub text: String,
    pub completions: Vec<Vec<u32>>,
    pub rewards: Vec<f64>,
}

/// A generation batch made of fixed groups, as if sampled: advantages from the rewards
/// (grouped by each group's size, which must be the same), every completion counted.
pub fn fixed_rollout(groups: &[FixedGroup], cfg: &GrpoSection) -> (Vec<Prompt>, Rollout) {
    let prompts: Vec<Prompt> = groups
        .iter()
        .map(|g| Prompt {
            ids: g.prompt.clone(),
            messages: Vec::new(),
            text: g.text.clone(),
            reference: None,
            reference_ids: Vec::new(),
            metadata: Default::default(),
        })
        .collect();
    let size = groups.first().map_or(1, |g| g.completions.len());
    let rewards: Vec<f64> = groups.iter().flat_map(|g| g.rewards.clone()).collect();
    let (adv, _) = loss::advantages(&rewards, size, cfg.scale_rewards);
    let mut completions = Vec::new();
    for (pi, g) in groups.iter().enumerate() {
        for (ids, r) in g.completions.iter().zip(&g.rewards) {
            completions.push(Completion {
                prompt: pi,
                ids: ids.clone(),
                stopped: true,
                text: String::new(),
                rewards: vec![*r],
                reward: *r,
                advantage: adv[completions.len()],
                old: None,
                reference: None,
            });
        }
    }
    (
        prompts,
        Rollout {
            generation: 0,
            completions,
            metrics: Metrics::new(),
        },
    )
}

/// Steps in a row in which every group's completions scored the same before a run says
/// so: GRPO learns only from differences within a group, and a model that never yet
/// produces what the rewards look for (a small one asked for a format) trains on nothing.
pub const FLAT_STEPS: u32 = 5;

/// Counts steps whose `frac_reward_zero_std` is 1 (every group flat); [`FlatRewards::observe`]
/// answers the warning once, at the [`FLAT_STEPS`]th in a row.
#[derive(Debug, Default)]
pub struct FlatRewards {
    streak: u32,
}

impl FlatRewards {
    /// Notes a train event's metrics; the warning when this step makes the streak.
    pub fn observe(&mut self, metrics: &crate::runs::event::Metrics) -> Option<String> {
        match metrics.get("frac_reward_zero_std") {
            Some(f) if *f >= 1.0 => self.streak += 1,
            _ => self.streak = 0,
        }
        (self.streak == FLAT_STEPS).then(|| {
            format!(
                "{FLAT_STEPS} steps in a row, every completion of each group scored the same, so \
                 nothing was learned (rewards/*/mean say what they scored): the model may never \
                 produce what the rewards look for yet. Give partial credit, raise \
                 grpo.temperature, or start from an SFT adapter on answers in the format \
                 (grpo.init_adapter)"
            )
        })
    }
}

#[cfg(test)]
mod flat_tests {
    use super::*;

    #[test]
    fn warns_once_after_five_flat_steps_in_a_row() {
        let mut f = FlatRewards::default();
        let flat = crate::runs::event::Metrics::from([("frac_reward_zero_std".into(), 1.0)]);
        let mixed = crate::runs::event::Metrics::from([("frac_reward_zero_std".into(), 0.5)]);
        for _ in 0..4 {
            assert_eq!(f.observe(&flat), None);
        }
        assert_eq!(
            f.observe(&mixed),
            None,
            "a step with signal restarts the count"
        );
        let said: Vec<bool> = (0..12).map(|_| f.observe(&flat).is_some()).collect();
        assert_eq!(said.iter().filter(|s| **s).count(), 1);
        assert!(said[4], "{said:?}");
        // SFT events have no such metric: never a warning.
        let mut sft = FlatRewards::default();
        assert!((0..10).all(|_| sft.observe(&Default::default()).is_none()));
    }
}
