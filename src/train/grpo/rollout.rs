//! A generation batch: the step's prompts, `num_generations` completions of each sampled with
//! the adapter as it is (one batched decode per group), their rewards and advantages, and
//! the log-probs the loss compares against (at sampling time when the batch is reused, and
//! under the reference when β > 0). Each completion's sampler is seeded from the run's seed,
//! the generation's index, the group and the row, so a resumed run draws the same
//! completions; a batch still in reuse is kept whole in the checkpoint.

use super::loss::{advantages, nanmean, nanstd};
use crate::batch::prompts::Prompt;
use crate::batch::{collate_rows, MicroBatch};
use crate::config::GrpoSection;
use crate::infer::sampling::Sampling;
use crate::model::Model;
use crate::reward::{Rewards, Scored};
use crate::runs::event::Metrics;
use crate::template::TextTokenizer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// One sampled completion with what the loss and the events need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Index of its prompt in the training prompts.
    pub prompt: usize,
    /// Its tokens, the stop token included when it stopped.
    pub ids: Vec<u32>,
    /// Ended with a stop token (not cut at `max_completion_length`).
    pub stopped: bool,
    pub text: String,
    /// Each reward function's score (NaN: it could not score this one; `null` in JSON).
    #[serde(deserialize_with = "nans_if_null")]
    pub rewards: Vec<f64>,
    /// The weighted sum (NaN when no function scored it).
    #[serde(deserialize_with = "crate::runs::event::nan_if_null")]
    pub reward: f64,
    pub advantage: f64,
    /// Per-token log-probs at sampling time (only when the batch is reused).
    pub old: Option<Vec<f32>>,
    /// Per-token log-probs under the reference (only when β > 0).
    pub reference: Option<Vec<f32>>,
}

/// The completions of one generation, in group order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Which generation this is (`step / num_iterations`).
    pub generation: u64,
    pub completions: Vec<Completion>,
    /// The step's metrics from sampling and scoring (rewards, lengths, speed, timings).
    #[serde(deserialize_with = "crate::runs::event::metrics_nan_if_null")]
    pub metrics: Metrics,
}

/// JSON writes NaN as `null`; it reads back as NaN.
fn nans_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|x| x.unwrap_or(f64::NAN))
        .collect())
}

impl Rollout {
    /// Completion tokens the loss counts (DAPO's normalizer).
    pub fn counted_tokens(&self, mask_truncated: bool) -> usize {
        self.completions
            .iter()
            .filter(|c| c.stopped || !mask_truncated)
            .map(|c| c.ids.len())
            .sum()
    }
}

/// A mixed 64-bit value (SplitMix64's finalizer): seeds that differ in one input differ
/// everywhere.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sampling seed of row `row` of group `group` in generation `generation`.
pub fn row_seed(seed: u64, generation: u64, group: usize, row: usize) -> u64 {
    mix(mix(mix(seed ^ 0x4752_504F) ^ generation) ^ ((group as u64) << 20 | row as u64))
}

/// How completions are sampled.
pub fn sampling(g: &GrpoSection) -> Sampling {
    Sampling {
        temperature: g.temperature,
        top_k: (g.top_k > 0).then_some(g.top_k),
        top_p: (g.top_p < 1.0).then_some(g.top_p),
        repetition_penalty: 1.0,
        seed: 0,
        max_new_tokens: g.max_completion_length,
    }
}

/// What sampling needs beside the model.
pub struct Sampler<'a> {
    pub cfg: &'a GrpoSection,
    pub seed: u64,
    pub tokenizer: &'a TextTokenizer,
    pub rewards: &'a Rewards,
}

/// A completion's text for rewards and events: its tokens without the final stop token.
fn completion_text(tok: &TextTokenizer, ids: &[u32], stopped: bool) -> String {
    let body = if stopped && !ids.is_empty() {
        &ids[..ids.len() - 1]
    } else {
        ids
    };
    tok.decode(body).unwrap_or_default()
}

impl Sampler<'_> {
    /// Samples and scores generation `generation` over `prompts` (indices into `all`).
    pub fn generate(
        &self,
        model: &Model,
        all: &[Prompt],
        prompts: &[usize],
        generation: u64,
    ) -> Result<Rollout, super::GrpoError> {
        let g = self.cfg.num_generations;
        let stop: Vec<u32> = self.tokenizer.stop_ids.iter().copied().collect();
        let sampling = sampling(self.cfg);
        let started = Instant::now();
        let mut completions = Vec::with_capacity(prompts.len() * g);
        for (group, &pi) in prompts.iter().enumerate() {
            let seeds: Vec<u64> = (0..g)
                .map(|r| row_seed(self.seed, generation, group, r))
                .collect();
            let rows =
                crate::infer::group::sample_group(model, &all[pi].ids, &stop, &sampling, &seeds)?;
            for s in rows {
                completions.push(Completion {
                    prompt: pi,
                    text: completion_text(self.tokenizer, &s.ids, s.stopped),
                    ids: s.ids,
                    stopped: s.stopped,
                    rewards: Vec::new(),
                    reward: f64::NAN,
                    advantage: 0.0,
                    old: None,
                    reference: None,
                });
            }
        }
        let generate_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let scored: Vec<Scored> = completions
            .iter()
            .map(|c| {
                let p = &all[c.prompt];
                Scored {
                    prompt: &p.text,
                    messages: &p.messages,
                    completion: &c.text,
                    completion_tokens: c.ids.len(),
                    reference: p.reference.as_deref(),
                    metadata: &p.metadata,
                }
            })
            .collect();
        let per_function = self.rewards.score(&scored)?;
        drop(scored);
        let reward_s = started.elapsed().as_secs_f64();
        let weights = self.rewards.weights();
        for (i, c) in completions.iter_mut().enumerate() {
            c.rewards = per_function.iter().map(|f| f[i]).collect();
            let scored: Vec<f64> = c
                .rewards
                .iter()
                .zip(&weights)
                .filter(|(r, _)| !r.is_nan())
                .map(|(r, w)| r * w)
                .collect();
            c.reward = if scored.is_empty() {
                f64::NAN
            } else {
                scored.iter().sum()
            };
        }
        let rewards: Vec<f64> = completions.iter().map(|c| c.reward).collect();
        let (adv, zero) = advantages(&rewards, g, self.cfg.scale_rewards);
        for (c, a) in completions.iter_mut().zip(&adv) {
            c.advantage = *a;
        }
        let mut metrics = self.metrics(&completions, &per_function, &zero);
        let tokens: usize = completions.iter().map(|c| c.ids.len()).sum();
        metrics.insert("timing/generate_s".into(), generate_s);
        metrics.insert("timing/reward_s".into(), reward_s);
        metrics.insert(
            "generation/tokens_per_s".into(),
            tokens as f64 / generate_s.max(1e-9),
        );
        Ok(Rollout {
            generation,
            completions,
            metrics,
        })
    }

    /// TRL's metrics of a scored generation batch.
    fn metrics(&self, c: &[Completion], per_function: &[Vec<f64>], zero: &[bool]) -> Metrics {
        let mut m = Metrics::new();
        let rewards: Vec<f64> = c.iter().map(|c| c.reward).collect();
        m.insert("reward".into(), nanmean(&rewards));
        m.insert("reward_std".into(), nanstd(&rewards));
        for (name, f) in self.rewards.names().iter().zip(per_function) {
            m.insert(format!("rewards/{name}/mean"), nanmean(f));
            m.insert(format!("rewards/{name}/std"), nanstd(f));
        }
        let n = c.len().max(1) as f64;
        m.insert(
            "frac_reward_zero_std".into(),
            zero.iter().filter(|z| **z).count() as f64 / n,
        );
        let lengths: Vec<f64> = c.iter().map(|c| c.ids.len() as f64).collect();
        m.insert("completions/mean_length".into(), nanmean(&lengths));
        let (min, max) = lengths
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        m.insert("completions/min_length".into(), min);
        m.insert("completions/max_length".into(), max);
        m.insert(
            "completions/clipped_ratio".into(),
            c.iter().filter(|c| !c.stopped).count() as f64 / n,
        );
        let terminated: Vec<f64> = c
            .iter()
            .filter(|c| c.stopped)
            .map(|c| c.ids.len() as f64)
            .collect();
        m.insert(
            "completions/mean_terminated_length".into(),
            if terminated.is_empty() {
                0.0
            } else {
                nanmean(&terminated)
            },
        );
        m
    }
}

/// The prompt + completion rows of `items` (indices into `rollout.completions`).
pub fn rows(all: &[Prompt], rollout: &Rollout, items: &[usize], pad_id: u32) -> MicroBatch {
    let rows: Vec<(&[u32], &[u32])> = items
        .iter()
        .map(|&i| {
            let c = &rollout.completions[i];
            (&all[c.prompt].ids[..], &c.ids[..])
        })
        .collect();
    collate_rows(&rows, pad_id)
}

/// The samples the events carry: the first `n` completions with their rewards.
pub fn samples(
    all: &[Prompt],
    rollout: &Rollout,
    names: &[String],
    n: usize,
) -> Vec<crate::train::objective::CompletionSample> {
    rollout
        .completions
        .iter()
        .take(n)
        .map(|c| {
            let mut rewards: BTreeMap<String, f64> = names
                .iter()
                .cloned()
                .zip(c.rewards.iter().copied())
                .filter(|(_, r)| !r.is_nan())
                .collect();
            if !c.reward.is_nan() {
                rewards.insert("reward".into(), c.reward);
            }
            crate::train::objective::CompletionSample {
                prompt: all[c.prompt].text.clone(),
                completion: c.text.clone(),
                rewards,
                advantage: c.advantage,
            }
        })
        .collect()
}
