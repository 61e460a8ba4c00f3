//! KTO (Kahneman–Tversky Optimization) as an [`Objective`]: completions rated one at a time,
//! as TRL's `KTOTrainer` trains them. Each completion's implied reward is its policy/reference
//! log-ratio `r = π(y|x) − π_ref(y|x)` (sums over completion tokens); the reference point is
//! a KL estimate `z₀ = max(0, mean(π(y'|x) − π_ref(y'|x)))` over mismatched prompt/completion
//! pairs, with no gradient. A desirable completion costs `λ_D·(1 − σ(β(r − z₀)))`, an
//! undesirable one `λ_U·(1 − σ(β(z₀ − r)))`; the loss is the mean over completions.
//!
//! The loss enters the step as a per-token weight on the completion log-probs (∂loss/∂π), so
//! the hand-written backward and autograd serve it unchanged, as for DPO. Each example's KL
//! partner is fixed when the data is prepared ([`kl_partners`]: TRL's rotation within
//! blocks of `train.batch_size`, over a seeded shuffle), so the reference's log-probs, KL
//! rows included, can be precomputed. The policy scores the KL rows without dropout.

use super::error::TrainError;
use super::grads::Grads;
use super::method::{SamplePrompt, Setup, TrainingMethod};
use super::micro::StepArgs;
use super::objective::{EvalOut, MicroOut, Objective, Window};
use super::pref_loss::sigmoid;
use super::reference::{self, Precomputed, Reference, REFERENCE_FILE};
use crate::batch::rated::{encode_rated, kl_partners, Rated};
use crate::batch::{collate_rows, EncodeReport, MicroBatch};
use crate::config::KtoSection;
use crate::model::Model;
use crate::runs::event::Metrics;
use crate::runs::RunDir;
use candle_core::Result;
use std::path::Path;

/// The settings the loss reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KtoParams {
    pub beta: f64,
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
}

impl From<&KtoSection> for KtoParams {
    fn from(k: &KtoSection) -> Self {
        KtoParams {
            beta: k.beta,
            desirable_weight: k.desirable_weight,
            undesirable_weight: k.undesirable_weight,
        }
    }
}

/// What the loss makes of one rated completion.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RatedTerms {
    pub loss: f64,
    /// ∂loss/∂(policy sum).
    pub d_policy: f64,
    /// `β·r`.
    pub reward: f64,
}

/// One completion's loss, its derivative and reward, from its policy and reference sums
/// and the batch's KL reference point.
pub fn rated_terms(
    p: &KtoParams,
    policy: f64,
    reference: f64,
    desirable: bool,
    kl: f64,
) -> RatedTerms {
    let r = policy - reference;
    let (w, sign) = if desirable {
        (p.desirable_weight, 1.0)
    } else {
        (p.undesirable_weight, -1.0)
    };
    // desirable: z = β(r − kl); undesirable: z = β(kl − r); loss = w·(1 − σ(z)).
    let z = sign * p.beta * (r - kl);
    let s = sigmoid(z);
    RatedTerms {
        loss: w * (1.0 - s),
        d_policy: -w * s * (1.0 - s) * p.beta * sign,
        reward: p.beta * r,
    }
}

/// The KL reference point of a batch: the mean policy/reference log-ratio of its
/// mismatched pairs, clamped at 0; and the mean before the clamp.
pub fn kl_estimate(policy_kl: &[f64], reference_kl: &[f64]) -> (f64, f64) {
    let n = policy_kl.len().max(1) as f64;
    let raw = policy_kl
        .iter()
        .zip(reference_kl)
        .map(|(p, r)| p - r)
        .sum::<f64>()
        / n;
    (raw.max(0.0), raw)
}

/// TRL's guidance for imbalanced labels: `λ_D·n_D / (λ_U·n_U)` should lie in [1, 4/3].
/// `None` when the weights are fine (or the labels balanced); otherwise the advice, with
/// the range for either weight (change one, not both).
pub fn weight_advice(desirable: usize, undesirable: usize, p: &KtoParams) -> Option<String> {
    let (nd, nu) = (desirable.max(1) as f64, undesirable.max(1) as f64);
    if desirable == undesirable {
        return None;
    }
    let d_range = (
        nu * p.undesirable_weight / nd,
        nu * p.undesirable_weight / nd * 4.0 / 3.0,
    );
    let u_range = (
        nd * p.desirable_weight / nu * 3.0 / 4.0,
        nd * p.desirable_weight / nu,
    );
    let d_ok = (d_range.0..=d_range.1).contains(&p.desirable_weight);
    let u_ok = (u_range.0..=u_range.1).contains(&p.undesirable_weight);
    if d_ok || u_ok {
        return None;
    }
    Some(format!(
        "{desirable} desirable and {undesirable} undesirable completions: KTO works best with \
         λ_D·n_D / (λ_U·n_U) between 1 and 4/3; set EITHER kto.desirable_weight in \
         [{:.2}, {:.2}] OR kto.undesirable_weight in [{:.2}, {:.2}]",
        d_range.0, d_range.1, u_range.0, u_range.1
    ))
}

pub struct Kto {
    pub train: Vec<Rated>,
    pub eval: Vec<Rated>,
    /// Each example's KL partner (the example whose completion it borrows).
    pub train_partner: Vec<usize>,
    pub eval_partner: Vec<usize>,
    pub pad_id: u32,
    pub params: KtoParams,
    pub reference: Reference,
    pub precompute: bool,
    /// What identifies the reference in the precomputed file's hash.
    pub reference_id: String,
    precomputed: Option<Precomputed>,
}

/// Per-label sums of a batch's rewards and log-probs, for TRL's metrics.
#[derive(Default)]
struct LabelSums {
    reward: [f64; 2],
    logp: [f64; 2],
    count: [usize; 2],
}

impl LabelSums {
    fn add(&mut self, desirable: bool, t: &RatedTerms, logp: f64) {
        let k = usize::from(!desirable);
        self.reward[k] += t.reward;
        self.logp[k] += logp;
        self.count[k] += 1;
    }

    /// Adds TRL's metrics as shares: per-label means over `per_label` completions (desirable,
    /// undesirable) of the window.
    fn into_metrics(self, m: &mut Metrics, per_label: [usize; 2]) {
        let mut add = |k: &str, v: f64| *m.entry(k.to_string()).or_default() += v;
        let names = [
            ("rewards/chosen", "logps/chosen"),
            ("rewards/rejected", "logps/rejected"),
        ];
        for (k, (reward, logp)) in names.iter().enumerate() {
            if per_label[k] > 0 {
                add(reward, self.reward[k] / per_label[k] as f64);
                add(logp, self.logp[k] / per_label[k] as f64);
            }
        }
        if per_label[0] > 0 && per_label[1] > 0 {
            add(
                "rewards/margins",
                self.reward[0] / per_label[0] as f64 - self.reward[1] / per_label[1] as f64,
            );
        }
    }
}

impl Kto {
    /// `batch_size` sets the blocks KL partners rotate within (TRL's per-device batch), in
    /// data order or, with `seed`, a seeded shuffle of it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        train: Vec<Rated>,
        eval: Vec<Rated>,
        pad_id: u32,
        cfg: &KtoSection,
        batch_size: usize,
        seed: Option<u64>,
        reference: Reference,
        reference_id: String,
    ) -> Self {
        Kto {
            train_partner: kl_partners(train.len(), batch_size, seed),
            eval_partner: kl_partners(eval.len(), batch_size, seed),
            train,
            eval,
            pad_id,
            params: cfg.into(),
            reference,
            precompute: cfg.precompute_ref,
            reference_id,
            precomputed: None,
        }
    }

    fn set(&self, train: bool) -> (&[Rated], &[usize]) {
        if train {
            (&self.train, &self.train_partner)
        } else {
            (&self.eval, &self.eval_partner)
        }
    }

    /// The rows of `items`: their own completions, then the KL rows (prompt with the
    /// partner's completion).
    fn rows(&self, train: bool, items: &[usize]) -> (MicroBatch, MicroBatch) {
        let (set, partner) = self.set(train);
        let own: Vec<(&[u32], &[u32])> = items
            .iter()
            .map(|&i| (&set[i].prompt[..], &set[i].completion[..]))
            .collect();
        let kl: Vec<(&[u32], &[u32])> = items
            .iter()
            .map(|&i| (&set[i].prompt[..], &set[partner[i]].completion[..]))
            .collect();
        (
            collate_rows(&own, self.pad_id),
            collate_rows(&kl, self.pad_id),
        )
    }

    /// Reference sums (completion, KL row) of `items`, precomputed or computed now.
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
        self.reference_logps(model, train, items)
    }

    /// The loss, KL point and metrics of `rated` as a held-out set (nothing trained): against
    /// `reference`, or the base alone (the adapter bypassed). KL partners rotate within
    /// blocks of `batch_size` in file order, as TRL pairs them.
    pub fn held_out(
        rated: Vec<Rated>,
        pad_id: u32,
        cfg: &KtoSection,
        model: &Model,
        reference: Option<&Model>,
        batch_size: usize,
    ) -> Result<EvalOut> {
        let n = rated.len();
        let batch = batch_size.max(1);
        let mut k = Kto::new(
            Vec::new(),
            rated,
            pad_id,
            cfg,
            batch,
            None,
            Reference::Bypass,
            String::new(),
        );
        let items: Vec<usize> = (0..n).collect();
        if let Some(r) = reference {
            let mut refs = Vec::with_capacity(n);
            for chunk in items.chunks(batch) {
                refs.extend(k.own_logps(r, chunk)?);
            }
            k.set_eval_reference(refs);
        }
        k.evaluate_items(model, &items, batch)
    }

    /// Uses `refs` (completion, KL row per held-out example) as the reference log-probs, as
    /// `tunelab eval --kto` does with a reference model of its own.
    pub fn set_eval_reference(&mut self, refs: Vec<(f64, f64)>) {
        self.precomputed = Some(Precomputed {
            hash: String::new(),
            train: Vec::new(),
            eval: refs,
        });
    }

    /// `model`'s own sums (completion, KL row) of held-out `items`, one forward: what a
    /// separate reference model contributes.
    pub fn own_logps(&self, model: &Model, items: &[usize]) -> Result<Vec<(f64, f64)>> {
        let (own, kl) = self.rows(false, items);
        let (a, b) = (
            crate::eval::row_logps(model, &own)?,
            crate::eval::row_logps(model, &kl)?,
        );
        Ok(a.iter().zip(&b).map(|(x, y)| (x.0, y.0)).collect())
    }

    /// Reference sums (completion, KL row) of `items`, computed now in one forward.
    pub fn reference_logps(
        &self,
        model: &Model,
        train: bool,
        items: &[usize],
    ) -> Result<Vec<(f64, f64)>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (set, partner) = self.set(train);
        let rows: Vec<(&[u32], &[u32])> = items
            .iter()
            .map(|&i| (&set[i].prompt[..], &set[i].completion[..]))
            .chain(
                items
                    .iter()
                    .map(|&i| (&set[i].prompt[..], &set[partner[i]].completion[..])),
            )
            .collect();
        let sums = self
            .reference
            .row_logps(model, &collate_rows(&rows, self.pad_id))?;
        let n = items.len();
        Ok((0..n).map(|i| (sums[i].0, sums[n + i].0)).collect())
    }

    /// The KL reference point of `items` (policy KL rows scored without a graph) and the
    /// unclamped mean.
    fn kl(&self, model: &Model, kl_rows: &MicroBatch, refs: &[(f64, f64)]) -> Result<(f64, f64)> {
        let policy: Vec<f64> = crate::eval::row_logps(model, kl_rows)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let reference: Vec<f64> = refs.iter().map(|r| r.1).collect();
        Ok(kl_estimate(&policy, &reference))
    }

    /// The data and reference identity the precomputed log-probs belong to.
    fn hash(&self) -> String {
        fn set<'a>(items: &'a [Rated], partner: &[usize]) -> Vec<Vec<&'a [u32]>> {
            items
                .iter()
                .zip(partner)
                .map(|(r, &k)| vec![&r.prompt[..], &r.completion[..], &items[k].completion[..]])
                .collect()
        }
        reference::hash_items(
            &self.reference_id,
            [
                set(&self.train, &self.train_partner),
                set(&self.eval, &self.eval_partner),
            ],
        )
    }

    /// Computes (or loads, when the hash matches) the reference log-probs of every
    /// example and KL row; true when they were read from the run folder.
    pub fn precompute(&mut self, model: &Model, run: &RunDir, batch_size: usize) -> Result<bool> {
        let sizes = (self.train.len(), self.eval.len());
        let (p, loaded) =
            reference::load_or_compute(run, self.hash(), sizes, batch_size, |train, items| {
                self.reference_logps(model, train, items)
            })?;
        self.precomputed = Some(p);
        Ok(loaded)
    }

    /// Desirable and undesirable completions among `items` of a set.
    fn per_label(&self, train: bool, items: &[usize]) -> [usize; 2] {
        let (set, _) = self.set(train);
        let d = items.iter().filter(|&&i| set[i].desirable).count();
        [d, items.len() - d]
    }

    /// Loss and metrics of held-out `items`, `batch_size` at a time (each batch its own KL
    /// estimate): the mean over completions; per-label means; `kl` the mean of the batches'.
    pub fn evaluate_items(
        &self,
        model: &Model,
        items: &[usize],
        batch_size: usize,
    ) -> Result<EvalOut> {
        let mut loss = 0.0;
        let mut sums = LabelSums::default();
        let mut kl_sum = 0.0;
        let units = items.len().max(1) as f64;
        for chunk in items.chunks(batch_size.max(1)) {
            let refs = self.reference_for(model, false, chunk)?;
            let (own, kl_rows) = self.rows(false, chunk);
            let (kl, _) = self.kl(model, &kl_rows, &refs)?;
            kl_sum += kl * chunk.len() as f64;
            let policy = crate::eval::row_logps(model, &own)?;
            for (k, &i) in chunk.iter().enumerate() {
                let d = self.eval[i].desirable;
                let t = rated_terms(&self.params, policy[k].0, refs[k].0, d, kl);
                loss += t.loss;
                sums.add(d, &t, policy[k].0);
            }
        }
        let mut metrics = Metrics::new();
        metrics.insert("kl".into(), kl_sum / units);
        sums.into_metrics(&mut metrics, self.per_label(false, items));
        Ok(EvalOut {
            loss: loss / units,
            count: items.len(),
            metrics,
        })
    }
}

impl Objective for Kto {
    fn train_items(&self) -> usize {
        self.train.len()
    }

    fn eval_items(&self) -> usize {
        self.eval.len()
    }

    fn window(&self, items: &[usize]) -> Window {
        Window {
            units: items.len(),
            tokens: items.iter().map(|&i| self.train[i].completion.len()).sum(),
            desirable: items.iter().filter(|&&i| self.train[i].desirable).count(),
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
        let (mb, kl_rows) = self.rows(true, items);
        let (kl, _) = self.kl(model, &kl_rows, &refs)?;
        let units = window.units.max(1) as f64;
        let per_label = [window.desirable, window.units - window.desirable];
        let desirable: Vec<bool> = items.iter().map(|&i| self.train[i].desirable).collect();
        let mut metrics = Metrics::new();
        let mut head = |t: &super::micro::TargetLogps| -> Result<(f64, Vec<f32>)> {
            let sums = t.row_sums();
            let mut label_sums = LabelSums::default();
            let terms: Vec<RatedTerms> = (0..items.len())
                .map(|k| {
                    let t = rated_terms(&self.params, sums[k].0, refs[k].0, desirable[k], kl);
                    label_sums.add(desirable[k], &t, sums[k].0);
                    t
                })
                .collect();
            let loss = terms.iter().map(|x| x.loss).sum::<f64>() / units;
            let weights = t
                .row
                .iter()
                .map(|&row| (terms[row].d_policy / units) as f32)
                .collect();
            *metrics.entry("kl".into()).or_default() += kl * items.len() as f64 / units;
            label_sums.into_metrics(&mut metrics, per_label);
            Ok((loss, weights))
        };
        let step = super::step::forward_backward_with(model, &mb, args, grads, &mut head)?;
        Ok(MicroOut {
            loss: step.loss,
            tokens: mb.tokens + kl_rows.tokens,
            metrics,
        })
    }

    fn evaluate(&self, model: &Model, batch_size: usize) -> Result<Option<EvalOut>> {
        if self.eval.is_empty() {
            return Ok(None);
        }
        let items: Vec<usize> = (0..self.eval.len()).collect();
        self.evaluate_items(model, &items, batch_size).map(Some)
    }

    fn prepare(
        &mut self,
        model: &Model,
        run: &RunDir,
        batch_size: usize,
    ) -> Result<Option<String>> {
        let desirable = self.train.iter().filter(|r| r.desirable).count();
        let mut lines: Vec<String> =
            weight_advice(desirable, self.train.len() - desirable, &self.params)
                .into_iter()
                .collect();
        if self.precompute {
            lines.push(if self.precompute(model, run, batch_size)? {
                format!("reference log-probs read from {REFERENCE_FILE}")
            } else {
                format!("reference log-probs computed once into {REFERENCE_FILE}")
            });
        }
        Ok((!lines.is_empty()).then(|| lines.join("\n")))
    }
}

impl TrainingMethod for Kto {
    type Item = Rated;

    fn encode(
        s: &Setup,
        path: &Path,
    ) -> std::result::Result<(Vec<Rated>, EncodeReport), TrainError> {
        super::method::encode_prompted(s, path, encode_rated)
    }

    /// Desirable completions' prompts only: the replies worth imitating.
    fn sample(r: &Rated) -> Option<SamplePrompt> {
        (!r.prompt_text.is_empty() && r.desirable).then(|| SamplePrompt {
            text: r.prompt_text.clone(),
            ids: r.prompt.clone(),
            reply: r.completion.clone(),
        })
    }

    /// KL partners rotate within blocks of `train.batch_size` over a shuffle seeded by the
    /// run's seed.
    fn build(
        s: &Setup,
        train: Vec<Rated>,
        eval: Vec<Rated>,
    ) -> std::result::Result<Self, TrainError> {
        let cfg = s.cfg;
        let (reference, id) = Reference::for_run(cfg, s.model, true)?;
        Ok(Kto::new(
            train,
            eval,
            s.encoder.tokenizer.pad_id(),
            &cfg.kto,
            cfg.train.batch_size,
            Some(cfg.train.seed),
            reference,
            id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> KtoParams {
        KtoParams {
            beta: 0.3,
            desirable_weight: 1.0,
            undesirable_weight: 1.5,
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for desirable in [true, false] {
            for kl in [0.0, 0.7] {
                let p = params();
                let t = rated_terms(&p, -7.3, -7.9, desirable, kl);
                let h = 1e-6;
                let f = |x: f64| rated_terms(&p, x, -7.9, desirable, kl).loss;
                let d = (f(-7.3 + h) - f(-7.3 - h)) / (2.0 * h);
                assert!(
                    (d - t.d_policy).abs() < 1e-8,
                    "{desirable} {kl}: {d} vs {}",
                    t.d_policy
                );
            }
        }
    }

    #[test]
    fn an_untrained_policy_costs_half_of_each_weight() {
        let p = params();
        let d = rated_terms(&p, -5.0, -5.0, true, 0.0);
        let u = rated_terms(&p, -5.0, -5.0, false, 0.0);
        assert!((d.loss - 0.5).abs() < 1e-12 && (u.loss - 0.75).abs() < 1e-12);
        assert_eq!((d.reward, u.reward), (0.0, 0.0));
    }

    #[test]
    fn imbalanced_labels_get_trl_weight_advice() {
        let p = KtoParams {
            beta: 0.1,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
        };
        assert_eq!(weight_advice(150, 150, &p), None);
        // 1·100 / (1·300) = 1/3: outside [1, 4/3].
        let advice = weight_advice(100, 300, &p).unwrap_or_default();
        assert!(
            advice.contains("kto.desirable_weight in [3.00, 4.00]"),
            "{advice}"
        );
        assert!(
            advice.contains("kto.undesirable_weight in [0.25, 0.33]"),
            "{advice}"
        );
        let fixed = KtoParams {
            desirable_weight: 3.5,
            ..p
        };
        assert_eq!(weight_advice(100, 300, &fixed), None);
    }

    #[test]
    fn the_kl_point_is_clamped_at_zero() {
        assert_eq!(kl_estimate(&[-3.0, -4.0], &[-2.0, -4.5]), (0.0, -0.25));
        assert_eq!(kl_estimate(&[-1.0, -4.0], &[-2.0, -4.5]), (0.75, 0.75));
    }
}
