//! Choosing the next token: greedy, or sampled with temperature, top-k, top-p and a seed
//! (candle-transformers' `LogitsProcessor`); repetition penalty as transformers applies it
//! (candle-transformers' `apply_repeat_penalty`). Nothing sorts the whole vocabulary.

use candle_core::{Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as Strategy};

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

impl Sampling {
    fn strategy(&self) -> Strategy {
        let temperature = self.temperature;
        if temperature <= 0.0 {
            return Strategy::ArgMax;
        }
        match (self.top_k, self.top_p) {
            (None, None) => Strategy::All { temperature },
            (Some(k), None) => Strategy::TopK {
                k: k.max(1),
                temperature,
            },
            (None, Some(p)) => Strategy::TopP { p, temperature },
            (Some(k), Some(p)) => Strategy::TopKThenTopP {
                k: k.max(1),
                p,
                temperature,
            },
        }
    }
}

pub struct Sampler {
    pub cfg: Sampling,
    processor: LogitsProcessor,
}

impl Sampler {
    pub fn new(cfg: Sampling) -> Self {
        let processor = LogitsProcessor::from_sampling(cfg.seed, cfg.strategy());
        Sampler { cfg, processor }
    }

    /// The next token from `logits` (one row, the vocabulary), given the tokens so far.
    pub fn next(&mut self, logits: &Tensor, context: &[u32]) -> Result<u32> {
        if self.cfg.repetition_penalty != 1.0 {
            let penalized = candle_transformers::utils::apply_repeat_penalty(
                logits,
                self.cfg.repetition_penalty as f32,
                context,
            )?;
            return self.processor.sample(&penalized);
        }
        self.processor.sample(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(l: &[f32]) -> Tensor {
        Tensor::new(l, &Device::Cpu).unwrap()
    }

    #[test]
    fn greedy_top_k_and_penalty() {
        let logits = t(&[1.0, 3.0, 2.0, -1.0]);
        let mut s = Sampler::new(Sampling::default());
        assert_eq!(s.next(&logits, &[]).unwrap(), 1);
        let mut s = Sampler::new(Sampling {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.next(&logits, &[1]).unwrap(), 2, "3.0 / 2 falls below 2.0");
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_k: Some(1),
            ..Default::default()
        });
        assert!((0..20).all(|_| s.next(&logits, &[]).unwrap() == 1));
    }

    #[test]
    fn sampling_is_seeded_and_follows_the_distribution() {
        let logits = t(&[0.0f32, (3.0f32).ln()]); // p = 0.25, 0.75
        let run = |seed| {
            let mut s = Sampler::new(Sampling {
                temperature: 1.0,
                seed,
                ..Default::default()
            });
            (0..4000)
                .map(|_| s.next(&logits, &[]).unwrap())
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
            (0..50).all(|_| s.next(&logits, &[]).unwrap() == 1),
            "top-p 0.5 keeps only the likelier token"
        );
    }
}
