//! The preference losses, as TRL computes them, on one pair's numbers: the policy's and the
//! reference's summed log-probs of the chosen and rejected completions and their lengths.
//! Each gives the pair's loss, its derivatives with respect to the policy's two sums (the
//! step turns those into per-token weights) and the reward metrics TRL logs.
//!
//! With `Δ = (π⁺ − π⁻) − (ρ⁺ − ρ⁻)`:
//! - sigmoid: `−(1−ε)·log σ(βΔ) − ε·log σ(−βΔ)`; rewards `β(π − ρ)`;
//! - ipo: `(Δ̄ − 1/(2β))²` with length-averaged log-probs; rewards `β(π̄ − ρ̄)`;
//! - hinge: `max(0, 1 − βΔ)`;
//! - simpo: `−(1−ε)·log σ(z) − ε·log σ(−z)`, `z = β(π̄⁺ − π̄⁻) − γ`; rewards `β·π̄`;
//! - orpo: `−β·log σ(lo)`, `lo = (π̄⁺ − π̄⁻) − (log(1 − e^{π̄⁺}) − log(1 − e^{π̄⁻}))`, plus
//!   the SFT loss on the chosen tokens (added by the objective); rewards `β·π̄`.

use crate::config::PrefLoss;

/// The settings a loss reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefParams {
    pub loss: PrefLoss,
    pub beta: f64,
    pub label_smoothing: f64,
    pub simpo_gamma: f64,
}

/// One pair's log-probs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PairLogps {
    /// Policy sums over the chosen and rejected completion tokens.
    pub chosen: f64,
    pub rejected: f64,
    pub chosen_len: usize,
    pub rejected_len: usize,
    /// Reference sums (unused by the reference-free losses).
    pub ref_chosen: f64,
    pub ref_rejected: f64,
}

/// What a loss makes of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PairTerms {
    pub loss: f64,
    /// ∂loss/∂(policy sum) for the chosen and the rejected completion.
    pub d_chosen: f64,
    pub d_rejected: f64,
    pub reward_chosen: f64,
    pub reward_rejected: f64,
    /// The policy log-probs the loss used (sums, or averages for ipo/simpo/orpo).
    pub logp_chosen: f64,
    pub logp_rejected: f64,
    /// ORPO: `log σ(lo)` and `lo`.
    pub log_odds_ratio: f64,
    pub log_odds_chosen: f64,
}

fn log_sigmoid(x: f64) -> f64 {
    // log σ(x) = −log(1 + e^{−x}), stable on both sides.
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The conservative logistic loss `−(1−ε)·log σ(z) − ε·log σ(−z)` and its derivative in z.
fn smoothed_logistic(z: f64, eps: f64) -> (f64, f64) {
    let loss = -(1.0 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
    let d = -(1.0 - eps) * sigmoid(-z) + eps * sigmoid(z);
    (loss, d)
}

/// `log(1 − e^x)` for x < 0, without cancellation near 0.
fn log1m_exp(x: f64) -> f64 {
    (-x.exp_m1()).ln()
}

pub fn pair_terms(p: &PrefParams, x: &PairLogps) -> PairTerms {
    let b = p.beta;
    let lc = x.chosen_len.max(1) as f64;
    let lr = x.rejected_len.max(1) as f64;
    let mut t = PairTerms::default();
    match p.loss {
        PrefLoss::Sigmoid | PrefLoss::Hinge => {
            let delta = (x.chosen - x.rejected) - (x.ref_chosen - x.ref_rejected);
            let (loss, dz) = if p.loss == PrefLoss::Sigmoid {
                smoothed_logistic(b * delta, p.label_smoothing)
            } else if b * delta < 1.0 {
                (1.0 - b * delta, -1.0)
            } else {
                (0.0, 0.0)
            };
            t.loss = loss;
            t.d_chosen = dz * b;
            t.d_rejected = -dz * b;
            t.reward_chosen = b * (x.chosen - x.ref_chosen);
            t.reward_rejected = b * (x.rejected - x.ref_rejected);
            t.logp_chosen = x.chosen;
            t.logp_rejected = x.rejected;
        }
        PrefLoss::Ipo => {
            let (pc, pr) = (x.chosen / lc, x.rejected / lr);
            let (rc, rr) = (x.ref_chosen / lc, x.ref_rejected / lr);
            let d = (pc - pr) - (rc - rr) - 1.0 / (2.0 * b);
            t.loss = d * d;
            t.d_chosen = 2.0 * d / lc;
            t.d_rejected = -2.0 * d / lr;
            t.reward_chosen = b * (pc - rc);
            t.reward_rejected = b * (pr - rr);
            t.logp_chosen = pc;
            t.logp_rejected = pr;
        }
        PrefLoss::Simpo => {
            let (pc, pr) = (x.chosen / lc, x.rejected / lr);
            let (loss, dz) = smoothed_logistic(b * (pc - pr) - p.simpo_gamma, p.label_smoothing);
            t.loss = loss;
            t.d_chosen = dz * b / lc;
            t.d_rejected = -dz * b / lr;
            t.reward_chosen = b * pc;
            t.reward_rejected = b * pr;
            t.logp_chosen = pc;
            t.logp_rejected = pr;
        }
        PrefLoss::Orpo => {
            let (pc, pr) = (x.chosen / lc, x.rejected / lr);
            let lo = (pc - pr) - (log1m_exp(pc) - log1m_exp(pr));
            let ratio = log_sigmoid(lo);
            t.loss = -b * ratio;
            // d lo/d pc = 1/(1 − e^{pc}); d lo/d pr = −1/(1 − e^{pr}); d log σ/d lo = σ(−lo).
            let g = -b * sigmoid(-lo);
            t.d_chosen = g / (-pc.exp_m1()) / lc;
            t.d_rejected = -g / (-pr.exp_m1()) / lr;
            t.reward_chosen = b * pc;
            t.reward_rejected = b * pr;
            t.logp_chosen = pc;
            t.logp_rejected = pr;
            t.log_odds_ratio = ratio;
            t.log_odds_chosen = lo;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(loss: PrefLoss) -> PrefParams {
        PrefParams {
            loss,
            beta: 0.3,
            label_smoothing: 0.1,
            simpo_gamma: 0.5,
        }
    }

    /// Every loss's derivatives agree with central finite differences.
    #[test]
    fn derivatives_match_finite_differences() {
        let x = PairLogps {
            chosen: -7.3,
            rejected: -9.1,
            chosen_len: 4,
            rejected_len: 6,
            ref_chosen: -7.9,
            ref_rejected: -8.2,
        };
        for loss in [
            PrefLoss::Sigmoid,
            PrefLoss::Ipo,
            PrefLoss::Hinge,
            PrefLoss::Simpo,
            PrefLoss::Orpo,
        ] {
            let p = params(loss);
            let t = pair_terms(&p, &x);
            let h = 1e-6;
            let f = |c: f64, r: f64| {
                pair_terms(
                    &p,
                    &PairLogps {
                        chosen: c,
                        rejected: r,
                        ..x
                    },
                )
                .loss
            };
            let dc = (f(x.chosen + h, x.rejected) - f(x.chosen - h, x.rejected)) / (2.0 * h);
            let dr = (f(x.chosen, x.rejected + h) - f(x.chosen, x.rejected - h)) / (2.0 * h);
            assert!(
                (dc - t.d_chosen).abs() < 1e-6,
                "{loss:?}: {dc} vs {}",
                t.d_chosen
            );
            assert!(
                (dr - t.d_rejected).abs() < 1e-6,
                "{loss:?}: {dr} vs {}",
                t.d_rejected
            );
        }
    }

    #[test]
    fn an_untrained_policy_starts_at_ln_2() {
        let x = PairLogps {
            chosen: -5.0,
            rejected: -6.0,
            chosen_len: 3,
            rejected_len: 3,
            ref_chosen: -5.0,
            ref_rejected: -6.0,
        };
        let t = pair_terms(
            &PrefParams {
                label_smoothing: 0.0,
                ..params(PrefLoss::Sigmoid)
            },
            &x,
        );
        assert!((t.loss - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!((t.reward_chosen, t.reward_rejected), (0.0, 0.0));
    }
}
