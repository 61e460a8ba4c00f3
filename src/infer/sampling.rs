//! Choosing the next token: greedy, or sampled with temperature, top-k, top-p and a seed;
//! repetition penalty as transformers applies it.

use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// 1.0 means none; >1 discourages tokens already in the context.
    pub repetition_penalty: f64,
    pub seed: u64,
    pub max_new_tokens: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 0,
            max_new_tokens: 256,
        }
    }
}

pub struct Sampler {
    pub cfg: Sampling,
    rng: rand::rngs::StdRng,
}

impl Sampler {
    pub fn new(cfg: Sampling) -> Self {
        let rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        Sampler { cfg, rng }
    }

    /// The next token from `logits`, given the tokens so far.
    pub fn next(&mut self, logits: &[f32], context: &[u32]) -> u32 {
        let mut l: Vec<f32> = logits.to_vec();
        if self.cfg.repetition_penalty != 1.0 {
            let p = self.cfg.repetition_penalty as f32;
            let mut seen = context.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(x) = l.get_mut(t as usize) {
                    *x = if *x > 0.0 { *x / p } else { *x * p };
                }
            }
        }
        if self.cfg.temperature <= 0.0 {
            return argmax(&l);
        }
        let t = self.cfg.temperature as f32;
        let mut idx: Vec<usize> = (0..l.len()).collect();
        idx.sort_unstable_by(|a, b| l[*b].total_cmp(&l[*a]));
        if let Some(k) = self.cfg.top_k {
            idx.truncate(k.max(1));
        }
        let max = l[idx[0]];
        let mut probs: Vec<f64> = idx
            .iter()
            .map(|&i| f64::from(((l[i] - max) / t).exp()))
            .collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if let Some(top_p) = self.cfg.top_p {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (n, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= top_p {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
            let s: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= s);
        }
        let r: f64 = self.rng.random();
        let mut acc = 0.0;
        for (n, p) in probs.iter().enumerate() {
            acc += p;
            if r < acc {
                return idx[n] as u32;
            }
        }
        idx[probs.len() - 1] as u32
    }
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in l.iter().enumerate() {
        if *x > l[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_and_penalty() {
        let logits = [1.0, 3.0, 2.0, -1.0];
        let mut s = Sampler::new(Sampling::default());
        assert_eq!(s.next(&logits, &[]), 1);
        let mut s = Sampler::new(Sampling {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.next(&logits, &[1]), 2, "3.0 / 2 falls below 2.0");
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_k: Some(1),
            ..Default::default()
        });
        assert!((0..20).all(|_| s.next(&logits, &[]) == 1));
    }

    #[test]
    fn sampling_is_seeded_and_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let run = |seed| {
            let mut s = Sampler::new(Sampling {
                temperature: 1.0,
                seed,
                ..Default::default()
            });
            (0..4000)
                .map(|_| s.next(&logits, &[]))
                .collect::<Vec<u32>>()
        };
        assert_eq!(run(5), run(5));
        let ones = run(5).iter().filter(|t| **t == 1).count() as f64 / 4000.0;
        assert!((ones - 0.75).abs() < 0.03, "{ones}");
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: Some(0.5),
            ..Default::default()
        });
        assert!(
            (0..50).all(|_| s.next(&logits, &[]) == 1),
            "top-p 0.5 keeps only the likelier token"
        );
    }
}
