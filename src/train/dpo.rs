//! Preference training as an [`Objective`]: DPO (sigmoid, IPO, hinge) against a reference,
//! and the reference-free SimPO and ORPO. A micro-batch of pairs is one batch of rows,
//! chosen rows then rejected rows, so both completions go through the model together; the
//! loss enters the step only as a per-token weight on the completion log-probs, so the
//! hand-written backward (and autograd, for quantized bases) serve it unchanged.
//!
//! The reference ([`Reference`]) is the base with the adapter bypassed, or a frozen copy of
//! `dpo.init_adapter`; `dpo.precompute_ref` computes its log-probs once into the run folder.

use super::error::TrainError;
use super::grads::Grads;
use super::method::{SamplePrompt, Setup, TrainingMethod};
use super::micro::StepArgs;
use super::objective::{EvalOut, MicroOut, Objective, Window};
use super::pref_loss::{pair_terms, PairLogps, PairTerms, PrefParams};
use crate::batch::pairs::{collate_pairs, encode_pairs, Pair};
use crate::batch::EncodeReport;
use crate::config::{DpoSection, PrefLoss};
use crate::model::Model;
use crate::runs::event::Metrics;
use crate::runs::RunDir;
use candle_core::Result;
use std::path::Path;

pub use super::reference::{Precomputed, Reference, REFERENCE_FILE};

pub struct Dpo {
    pub train: Vec<Pair>,
    pub eval: Vec<Pair>,
    pub pad_id: u32,
    pub params: PrefParams,
    pub rpo_alpha: Option<f64>,
    pub reference: Reference,
    pub precompute: bool,
    /// What identifies the reference in the precomputed file's hash.
    pub reference_id: String,
    precomputed: Option<Precomputed>,
}

impl Dpo {
    pub fn new(
        train: Vec<Pair>,
        eval: Vec<Pair>,
        pad_id: u32,
        cfg: &DpoSection,
        reference: Reference,
        reference_id: String,
    ) -> Self {
        Dpo {
            train,
            eval,
            pad_id,
            params: PrefParams {
                loss: cfg.loss,
                beta: cfg.beta,
                label_smoothing: cfg.label_smoothing,
                simpo_gamma: cfg.simpo_gamma,
            },
            rpo_alpha: cfg.rpo_alpha,
            reference,
            precompute: cfg.precompute_ref,
            reference_id,
            precomputed: None,
        }
    }

    /// The loss and metrics of `pairs` as a held-out set (nothing trained): against
    /// `reference` when the loss needs one, or the base alone (the adapter bypassed).
    pub fn held_out(
        pairs: Vec<Pair>,
        pad_id: u32,
        cfg: &DpoSection,
        model: &Model,
        reference: Option<&Model>,
        batch_size: usize,
    ) -> Result<EvalOut> {
        let n = pairs.len();
        let mut d = Dpo::new(
            Vec::new(),
            pairs,
            pad_id,
            cfg,
            Reference::Bypass,
            String::new(),
        );
        if cfg.loss.needs_reference() {
            let mut refs = Vec::with_capacity(n);
            for chunk in d.eval.chunks(batch_size.max(1)) {
                let chunk: Vec<&Pair> = chunk.iter().collect();
                match reference {
                    Some(r) => {
                        let sums = crate::eval::row_logps(r, &collate_pairs(&chunk, pad_id))?;
                        let k = chunk.len();
                        refs.extend((0..k).map(|i| (sums[i].0, sums[k + i].0)));
                    }
                    None => refs.extend(d.reference_logps(model, &chunk)?),
                }
            }
            d.set_eval_reference(refs);
        }
        let items: Vec<usize> = (0..n).collect();
        evaluate_pairs(&d, model, &items, batch_size)
    }

    /// Uses `refs` (chosen, rejected per held-out pair) as the reference log-probs, as
    /// `tunelab eval --dpo` does with a reference model of its own.
    pub fn set_eval_reference(&mut self, refs: Vec<(f64, f64)>) {
        self.precomputed = Some(Precomputed {
            hash: String::new(),
            train: Vec::new(),
            eval: refs,
        });
    }

    /// Whether the chosen tokens carry an SFT term (ORPO always, RPO when set).
    fn nll_weight(&self) -> f64 {
        match self.params.loss {
            PrefLoss::Orpo => 1.0,
            _ => self.rpo_alpha.unwrap_or(0.0),
        }
    }

    /// The data and reference identity the precomputed log-probs belong to.
    fn hash(&self) -> String {
        fn set(pairs: &[Pair]) -> Vec<Vec<&[u32]>> {
            pairs
                .iter()
                .map(|p| vec![&p.prompt[..], &p.chosen[..], &p.rejected[..]])
                .collect()
        }
        super::reference::hash_items(&self.reference_id, [set(&self.train), set(&self.eval)])
    }

    /// Reference sums (chosen, rejected) of `pairs`, computed now.
    pub fn reference_logps(&self, model: &Model, pairs: &[&Pair]) -> Result<Vec<(f64, f64)>> {
        if pairs.is_empty() || matches!(self.reference, Reference::None) {
            return Ok(vec![(0.0, 0.0); pairs.len()]);
        }
        let mb = collate_pairs(pairs, self.pad_id);
        let rows = self.reference.row_logps(model, &mb)?;
        let n = pairs.len();
        Ok((0..n).map(|i| (rows[i].0, rows[n + i].0)).collect())
    }

    fn reference_for(
        &self,
        model: &Model,
        train: bool,
        items: &[usize],
    ) -> Result<Vec<(f64, f64)>> {
        if let Some(p) = &self.precomputed {
            let set = if train { &p.train } else { &p.eval };
            return Ok(items.iter().map(|&i| set[i]).collect());
        }
        let pairs = if train { &self.train } else { &self.eval };
        let refs: Vec<&Pair> = items.iter().map(|&i| &pairs[i]).collect();
        self.reference_logps(model, &refs)
    }

    /// Every pair's terms from the rows' sums: rows `0..n` chosen, `n..2n` rejected.
    fn terms(&self, sums: &[(f64, usize)], refs: &[(f64, f64)]) -> Vec<PairTerms> {
        let n = refs.len();
        (0..n)
            .map(|i| {
                pair_terms(
                    &self.params,
                    &PairLogps {
                        chosen: sums[i].0,
                        rejected: sums[n + i].0,
                        chosen_len: sums[i].1,
                        rejected_len: sums[n + i].1,
                        ref_chosen: refs[i].0,
                        ref_rejected: refs[i].1,
                    },
                )
            })
            .collect()
    }
}

/// Adds the pairs' metrics (TRL's names), each divided by `units`.
fn add_metrics(m: &mut Metrics, terms: &[PairTerms], units: f64, orpo: bool) {
    let mut add = |k: &str, v: f64| *m.entry(k.to_string()).or_default() += v / units;
    for t in terms {
        add("rewards/chosen", t.reward_chosen);
        add("rewards/rejected", t.reward_rejected);
        add("rewards/margins", t.reward_chosen - t.reward_rejected);
        add(
            "rewards/accuracies",
            if t.reward_chosen > t.reward_rejected {
                1.0
            } else {
                0.0
            },
        );
        add("logps/chosen", t.logp_chosen);
        add("logps/rejected", t.logp_rejected);
        if orpo {
            add("log_odds_ratio", t.log_odds_ratio);
            add("log_odds_chosen", t.log_odds_chosen);
        }
    }
}

impl Objective for Dpo {
    fn train_items(&self) -> usize {
        self.train.len()
    }

    fn eval_items(&self) -> usize {
        self.eval.len()
    }

    fn window(&self, items: &[usize]) -> Window {
        Window {
            units: items.len(),
            tokens: items.iter().map(|&i| self.train[i].chosen.len()).sum(),
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
    ) -> Result<MicroOut> {
        let refs = self.reference_for(model, true, items)?;
        let pairs: Vec<&Pair> = items.iter().map(|&i| &self.train[i]).collect();
        let mb = collate_pairs(&pairs, self.pad_id);
        let n = pairs.len();
        let units = window.units.max(1) as f64;
        let nll_w = self.nll_weight();
        let chosen_tokens = window.tokens.max(1) as f64;
        let mut metrics = Metrics::new();
        let orpo = self.params.loss == PrefLoss::Orpo;
        let mut head = |t: &super::micro::TargetLogps| -> Result<(f64, Vec<f32>)> {
            let sums = t.row_sums();
            let terms = self.terms(&sums, &refs);
            let mut loss: f64 = terms.iter().map(|x| x.loss).sum::<f64>() / units;
            let mut weights = Vec::with_capacity(t.logp.len());
            for (lp, &row) in t.logp.iter().zip(&t.row) {
                let (pair, chosen) = if row < n {
                    (row, true)
                } else {
                    (row - n, false)
                };
                let mut w = if chosen {
                    terms[pair].d_chosen
                } else {
                    terms[pair].d_rejected
                } / units;
                if chosen && nll_w > 0.0 {
                    w -= nll_w / chosen_tokens;
                    loss -= nll_w * f64::from(*lp) / chosen_tokens;
                }
                weights.push(w as f32);
            }
            add_metrics(&mut metrics, &terms, units, orpo);
            if nll_w > 0.0 {
                let nll: f64 = (0..n).map(|i| -sums[i].0).sum::<f64>() / chosen_tokens;
                *metrics.entry("nll_loss".into()).or_default() += nll;
            }
            Ok((loss, weights))
        };
        let step = super::step::forward_backward_with(model, &mb, args, grads, &mut head)?;
        Ok(MicroOut {
            loss: step.loss,
            tokens: mb.tokens,
            metrics,
        })
    }

    fn evaluate(&self, model: &Model, batch_size: usize) -> Result<Option<EvalOut>> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let items: Vec<usize> = (0..self.eval.len()).collect();
        evaluate_pairs(self, model, &items, batch_size).map(Some)
    }

    fn prepare(
        &mut self,
        model: &Model,
        run: &RunDir,
        batch_size: usize,
    ) -> Result<Option<String>> {
        if !self.precompute || !self.params.loss.needs_reference() {
            return Ok(None);
        }
        let loaded = precompute(self, model, run, batch_size)?;
        Ok(Some(if loaded {
            format!("reference log-probs read from {REFERENCE_FILE}")
        } else {
            format!("reference log-probs computed once into {REFERENCE_FILE}")
        }))
    }
}

impl TrainingMethod for Dpo {
    type Item = Pair;

    fn encode(
        s: &Setup,
        path: &Path,
    ) -> std::result::Result<(Vec<Pair>, EncodeReport), TrainError> {
        super::method::encode_prompted(s, path, encode_pairs)
    }

    fn sample(p: &Pair) -> Option<SamplePrompt> {
        (!p.prompt_text.is_empty()).then(|| SamplePrompt {
            text: p.prompt_text.clone(),
            ids: p.prompt.clone(),
            reply: p.chosen.clone(),
        })
    }

    fn build(
        s: &Setup,
        train: Vec<Pair>,
        eval: Vec<Pair>,
    ) -> std::result::Result<Self, TrainError> {
        let cfg = s.cfg;
        let (reference, id) = Reference::for_run(cfg, s.model, cfg.dpo.loss.needs_reference())?;
        let pad_id = s.encoder.tokenizer.pad_id();
        Ok(Dpo::new(train, eval, pad_id, &cfg.dpo, reference, id))
    }
}

/// Loss and metrics of held-out pairs `items` (no dropout, no graph): the mean over pairs,
/// plus the SFT term's mean over chosen tokens where the loss has one.
pub fn evaluate_pairs(
    d: &Dpo,
    model: &Model,
    items: &[usize],
    batch_size: usize,
) -> Result<EvalOut> {
    let mut loss_sum = 0.0;
    let mut nll_sum = 0.0;
    let mut chosen_tokens = 0usize;
    let mut metrics = Metrics::new();
    let units = items.len().max(1) as f64;
    for chunk in items.chunks(batch_size.max(1)) {
        let pairs: Vec<&Pair> = chunk.iter().map(|&i| &d.eval[i]).collect();
        let refs = d.reference_for(model, false, chunk)?;
        let mb = collate_pairs(&pairs, d.pad_id);
        let sums = crate::eval::row_logps(model, &mb)?;
        let terms = d.terms(&sums, &refs);
        loss_sum += terms.iter().map(|t| t.loss).sum::<f64>();
        add_metrics(&mut metrics, &terms, units, d.params.loss == PrefLoss::Orpo);
        let n = pairs.len();
        nll_sum -= (0..n).map(|i| sums[i].0).sum::<f64>();
        chosen_tokens += (0..n).map(|i| sums[i].1).sum::<usize>();
    }
    let mut loss = loss_sum / units;
    let nll_w = d.nll_weight();
    if nll_w > 0.0 {
        let nll = nll_sum / chosen_tokens.max(1) as f64;
        loss += nll_w * nll;
        metrics.insert("nll_loss".into(), nll);
    }
    Ok(EvalOut {
        loss,
        count: items.len(),
        metrics,
    })
}

/// Computes (or loads, when the hash matches) the reference log-probs of every pair; true
/// when they were loaded from the run folder.
pub fn precompute(d: &mut Dpo, model: &Model, run: &RunDir, batch_size: usize) -> Result<bool> {
    let sizes = (d.train.len(), d.eval.len());
    let (p, loaded) =
        super::reference::load_or_compute(run, d.hash(), sizes, batch_size, |train, items| {
            let set = if train { &d.train } else { &d.eval };
            let pairs: Vec<&Pair> = items.iter().map(|&i| &set[i]).collect();
            d.reference_logps(model, &pairs)
        })?;
    d.precomputed = Some(p);
    Ok(loaded)
}
