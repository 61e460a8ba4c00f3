//! GRPO's arithmetic, as TRL 1.16's `GRPOTrainer` computes it: group-relative advantages
//! from rewards, and the clipped surrogate with the k3 KL penalty over one micro-batch, with
//! the derivative of the micro-batch's loss with respect to every completion token's
//! log-prob. The step turns those derivatives into gradients, so the hand-written backward
//! and autograd serve GRPO as they serve SFT and DPO.
//!
//! Per token, with ratio `c = exp(logp − old)` (per completion with GSPO's sequence level:
//! the exponent of the mean token log-ratio), clipped `c' = clamp(c, 1 − ε, 1 + ε_high)`,
//! and `kl = exp(ref − logp) − (ref − logp) − 1` (times `c`: TRL's bias correction):
//! `loss_t = −min(c·A, c'·A) + β·kl·c`, averaged as `loss_type` says.

use crate::config::{GrpoLoss, ImportanceLevel, ScaleRewards};

/// What the loss reads from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossParams {
    pub loss_type: GrpoLoss,
    pub beta: f64,
    pub epsilon_low: f64,
    pub epsilon_high: f64,
    pub level: ImportanceLevel,
    pub max_completion_length: usize,
}

impl From<&crate::config::GrpoSection> for LossParams {
    fn from(g: &crate::config::GrpoSection) -> Self {
        LossParams {
            loss_type: g.loss_type,
            beta: g.beta,
            epsilon_low: g.epsilon,
            epsilon_high: g.epsilon_high(),
            level: g.importance_sampling_level,
            max_completion_length: g.max_completion_length,
        }
    }
}

/// One completion's part of a micro-batch.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The policy's log-prob of each completion token, now.
    pub logp: &'a [f32],
    /// At sampling time, when the batch is reused (`num_iterations` > 1); `None`: the
    /// current values, detached (the ratio is 1).
    pub old: Option<&'a [f32]>,
    /// Under the reference; `None` when β is 0.
    pub reference: Option<&'a [f32]>,
    pub advantage: f64,
    /// False for a truncated completion under `mask_truncated_completions`: none of its
    /// tokens count.
    pub counted: bool,
}

impl Row<'_> {
    fn tokens(&self) -> usize {
        if self.counted {
            self.logp.len()
        } else {
            0
        }
    }
}

/// What the averaging divides by: the micro-batch's rows and counted tokens, the
/// accumulation window's micro-batches, and the whole generation batch's counted tokens
/// (DAPO's normalizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub accum: usize,
    pub batch_tokens: usize,
}

/// A micro-batch's loss, the derivative of it for each token (row-major, as the rows'
/// `logp`), and TRL's metrics of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MicroTerms {
    pub loss: f64,
    pub d_logp: Vec<f64>,
    /// Masked token mean of the (bias-corrected) KL; `None` when β is 0.
    pub kl: Option<f64>,
    pub clip_low: f64,
    pub clip_high: f64,
    pub clip_region: f64,
    /// The smallest per-completion share of low-clipped tokens; the largest of high-clipped.
    pub clip_low_min: f64,
    pub clip_high_max: f64,
}

/// Each row's ratio exponent per token (token level) or once (sequence level).
fn log_weights(p: &LossParams, r: &Row) -> Vec<f64> {
    let diff = |t: usize| match r.old {
        Some(o) => f64::from(r.logp[t]) - f64::from(o[t]),
        None => 0.0,
    };
    let n = r.logp.len();
    match p.level {
        ImportanceLevel::Token => (0..n).map(diff).collect(),
        ImportanceLevel::Sequence => {
            let len = (r.tokens() as f64).max(1.0);
            let s = if r.counted {
                (0..n).map(diff).sum::<f64>() / len
            } else {
                0.0
            };
            vec![s; n]
        }
    }
}

/// The loss of one micro-batch of `rows` and its derivatives.
pub fn micro_terms(p: &LossParams, rows: &[Row], scale: Scale) -> MicroTerms {
    let b = rows.len().max(1) as f64;
    let ga = scale.accum.max(1) as f64;
    let micro_tokens: usize = rows.iter().map(Row::tokens).sum();
    let mut out = MicroTerms::default();
    let (mut kl_sum, mut low, mut high, mut region) = (0.0, 0.0, 0.0, 0.0);
    let (mut low_min, mut high_max) = (f64::INFINITY, f64::NEG_INFINITY);
    // Sequence level: metrics count one value per completion (every row, as TRL's mean
    // over its `(B, 1)` ratios), not per token.
    let per_sequence = p.level == ImportanceLevel::Sequence;
    for r in rows {
        let n = r.logp.len();
        let len = r.tokens();
        // The weight of each counted token in the micro-batch's loss.
        let w = match p.loss_type {
            GrpoLoss::Grpo => 1.0 / ((len.max(1) as f64) * b * ga),
            GrpoLoss::Bnpo => 1.0 / ((micro_tokens.max(1) as f64) * ga),
            GrpoLoss::DrGrpo => 1.0 / (b * p.max_completion_length.max(1) as f64 * ga),
            GrpoLoss::Dapo => 1.0 / scale.batch_tokens.max(1) as f64,
        };
        let lw = log_weights(p, r);
        let a = r.advantage;
        let mut d_row = vec![0.0f64; n];
        // Sequence level: ∂loss/∂c summed over the row's tokens, spread afterwards.
        let mut d_coef_seq = 0.0;
        let (mut row_low, mut row_high) = (0.0, 0.0);
        for t in 0..n {
            let c = lw[t].exp();
            let c2 = c.clamp(1.0 - p.epsilon_low, 1.0 + p.epsilon_high);
            let unclipped = c * a <= c2 * a;
            let policy = -(c * a).min(c2 * a);
            let d_policy_dc = if unclipped { -a } else { 0.0 };
            let (kl, d_kl_dl) = match r.reference {
                Some(rf) if p.beta != 0.0 => {
                    let x = f64::from(rf[t]) - f64::from(r.logp[t]);
                    (x.exp() - x - 1.0, 1.0 - x.exp())
                }
                _ => (0.0, 0.0),
            };
            if !r.counted {
                continue;
            }
            out.loss += w * (policy + p.beta * kl * c);
            // ∂/∂c of the token's loss, and the KL's direct dependence on logp.
            let d_dc = d_policy_dc + p.beta * kl;
            let direct = w * p.beta * d_kl_dl * c;
            match p.level {
                ImportanceLevel::Token => d_row[t] = w * d_dc * c + direct,
                ImportanceLevel::Sequence => {
                    d_row[t] = direct;
                    d_coef_seq += w * d_dc;
                }
            }
            kl_sum += kl * c;
            let is_low = c < 1.0 - p.epsilon_low && a < 0.0;
            let is_high = c > 1.0 + p.epsilon_high && a > 0.0;
            row_low += f64::from(u8::from(is_low));
            row_high += f64::from(u8::from(is_high));
            if !per_sequence {
                low += f64::from(u8::from(is_low));
                high += f64::from(u8::from(is_high));
                region += f64::from(u8::from(is_low || is_high));
            }
        }
        if per_sequence && r.counted && n > 0 {
            let c = lw[0].exp();
            let d_s = d_coef_seq * c / (len.max(1) as f64);
            for d in d_row.iter_mut() {
                *d += d_s;
            }
        }
        if r.counted && n > 0 {
            let (sl, sh) = if per_sequence {
                // One ratio per completion: every token shares the verdict.
                (row_low / n as f64, row_high / n as f64)
            } else {
                (row_low / len as f64, row_high / len as f64)
            };
            if per_sequence {
                low += sl;
                high += sh;
                region += f64::from(u8::from(sl > 0.0 || sh > 0.0));
            }
            low_min = low_min.min(sl);
            high_max = high_max.max(sh);
        }
        out.d_logp.extend(d_row);
    }
    let count = if per_sequence {
        rows.len() as f64
    } else {
        micro_tokens as f64
    }
    .max(1.0);
    out.kl = (p.beta != 0.0).then(|| kl_sum / (micro_tokens.max(1) as f64));
    out.clip_low = low / count;
    out.clip_high = high / count;
    out.clip_region = region / count;
    out.clip_low_min = if low_min.is_finite() { low_min } else { 0.0 };
    out.clip_high_max = if high_max.is_finite() { high_max } else { 0.0 };
    out
}

/// The mean of the finite values (NaN when there are none).
pub fn nanmean(x: &[f64]) -> f64 {
    let v: Vec<f64> = x.iter().copied().filter(|v| !v.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// The sample standard deviation of the finite values (Bessel-corrected, as torch's); NaN
/// below two values.
pub fn nanstd(x: &[f64]) -> f64 {
    let v: Vec<f64> = x.iter().copied().filter(|v| !v.is_nan()).collect();
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Advantages of a generation batch's rewards (NaN: unscorable, advantage 0), groups of `g`
/// consecutive completions, and whether each completion's scale was zero (all of its
/// group alike: no signal).
pub fn advantages(rewards: &[f64], g: usize, scale: ScaleRewards) -> (Vec<f64>, Vec<bool>) {
    let g = g.max(1);
    let batch_std = nanstd(rewards);
    let mut adv = Vec::with_capacity(rewards.len());
    let mut zero = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(g) {
        let mean = nanmean(group);
        let std = match scale {
            ScaleRewards::Group | ScaleRewards::None => {
                if g > 1 {
                    nanstd(group)
                } else {
                    0.0
                }
            }
            ScaleRewards::Batch => batch_std,
        };
        for r in group {
            let mut a = r - mean;
            if scale != ScaleRewards::None {
                a /= std + 1e-4;
            }
            adv.push(if a.is_nan() { 0.0 } else { a });
            zero.push(is_close_to_zero(std));
        }
    }
    (adv, zero)
}

/// torch's `isclose(x, 0)` (atol 1e-8); NaN is not close.
fn is_close_to_zero(x: f64) -> bool {
    x.abs() <= 1e-8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(loss_type: GrpoLoss, beta: f64) -> LossParams {
        LossParams {
            loss_type,
            beta,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            level: ImportanceLevel::Token,
            max_completion_length: 8,
        }
    }

    #[test]
    fn advantages_are_group_relative_and_unscorable_ones_are_zero() {
        let r = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, f64::NAN];
        let (a, zero) = advantages(&r, 4, ScaleRewards::Group);
        let s = nanstd(&r[..4]);
        assert!((s - (1.0f64 / 3.0).sqrt()).abs() < 1e-12, "Bessel: {s}");
        assert!((a[0] - 0.5 / (s + 1e-4)).abs() < 1e-12);
        assert_eq!(&a[4..], &[0.0; 4], "a constant group has no signal");
        assert_eq!(zero, [false, false, false, false, true, true, true, true]);
        let (a, _) = advantages(&r, 4, ScaleRewards::None);
        assert_eq!(a[..4], [0.5, -0.5, -0.5, 0.5]);
    }

    /// The derivatives against central differences of the loss, for every loss type and
    /// both importance levels, with the ratio moved so that clipping happens.
    #[test]
    fn derivatives_match_finite_differences() {
        let logp = [[-1.0f32, -2.0, -0.5], [-0.7, -1.4, -3.0]];
        let old = [[-1.3f32, -1.7, -0.5], [-0.9, -1.0, -3.05]];
        let reference = [[-1.1f32, -2.2, -0.4], [-0.6, -1.5, -2.8]];
        let adv = [0.8, -1.1];
        for level in [ImportanceLevel::Token, ImportanceLevel::Sequence] {
            for lt in [
                GrpoLoss::Grpo,
                GrpoLoss::Bnpo,
                GrpoLoss::DrGrpo,
                GrpoLoss::Dapo,
            ] {
                let p = LossParams {
                    level,
                    ..params(lt, 0.04)
                };
                let scale = Scale {
                    accum: 2,
                    batch_tokens: 11,
                };
                let loss = |lp: &[[f32; 3]; 2]| {
                    let rows: Vec<Row> = (0..2)
                        .map(|i| Row {
                            logp: &lp[i],
                            old: Some(&old[i]),
                            reference: Some(&reference[i]),
                            advantage: adv[i],
                            counted: true,
                        })
                        .collect();
                    micro_terms(&p, &rows, scale)
                };
                let base = loss(&logp);
                for k in 0..6 {
                    let h = 1e-3f32;
                    let (mut up, mut down) = (logp, logp);
                    up[k / 3][k % 3] += h;
                    down[k / 3][k % 3] -= h;
                    let fd = (loss(&up).loss - loss(&down).loss) / (2.0 * f64::from(h));
                    assert!(
                        (fd - base.d_logp[k]).abs() < 2e-5,
                        "{level:?} {lt:?} token {k}: fd {fd} vs {}",
                        base.d_logp[k]
                    );
                }
            }
        }
    }

    #[test]
    fn on_policy_grpo_without_kl_is_minus_the_mean_advantage() {
        let logp = [[-1.0f32, -2.0], [-0.5, -0.1]];
        let rows: Vec<Row> = (0..2)
            .map(|i| Row {
                logp: &logp[i],
                old: None,
                reference: None,
                advantage: [1.5, -0.5][i],
                counted: true,
            })
            .collect();
        let t = micro_terms(
            &params(GrpoLoss::Grpo, 0.0),
            &rows,
            Scale {
                accum: 1,
                batch_tokens: 4,
            },
        );
        assert!((t.loss - -0.5).abs() < 1e-12, "{}", t.loss);
        assert_eq!(t.d_logp, [-0.375, -0.375, 0.125, 0.125]);
        assert_eq!(t.kl, None);
        assert_eq!(t.clip_region, 0.0);
    }
}
