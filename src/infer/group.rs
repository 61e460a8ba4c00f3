//! A group of completions of one prompt (GRPO samples `num_generations` of each): the prompt
//! is prefilled once, its keys and values copied to one cache row per completion, and the
//! rows then decode as one batch, so each step reads the weights once for the whole group
//! instead of once per completion.

use super::sampling::{Sampler, Sampling};
use crate::model::decoder::KvCache;
use crate::model::Model;
use candle_core::{Result, Tensor};

/// One sampled completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sampled {
    /// The completion's ids, ending with its stop token when it stopped: TRL keeps the EOS
    /// in the completion, so the policy's loss also teaches it where to end.
    pub ids: Vec<u32>,
    /// Whether a stop token ended it; false when `max_new_tokens` cut it off.
    pub stopped: bool,
}

/// Samples one completion of `prompt` per seed, decoded as one batch. Row `i` has its own
/// [`Sampler`] seeded with `seeds[i]` (`cfg.seed` is not read) and its own repetition-penalty
/// context, so a completion is a pure function of the model, prompt, `cfg` and its seed,
/// whatever else is in the group: a resumed GRPO run draws the same completions again.
pub fn sample_group(
    model: &Model,
    prompt: &[u32],
    stop_ids: &[u32],
    cfg: &Sampling,
    seeds: &[u64],
) -> Result<Vec<Sampled>> {
    if seeds.is_empty() || cfg.max_new_tokens == 0 {
        return Ok(vec![Sampled::default(); seeds.len()]);
    }
    if prompt.is_empty() {
        candle_core::bail!("sample_group: the prompt is empty")
    }
    let mut rows: Vec<Row> = seeds.iter().map(|&s| Row::new(cfg, s, prompt)).collect();
    let mut cache = KvCache::default();
    let first = model.forward_cached(prompt, &mut cache)?;
    for row in &mut rows {
        row.sample(&first, stop_ids)?;
    }
    cache.repeat_rows(rows.len())?;
    while rows.iter().any(Row::active) {
        // A finished row is fed its last token again; its logits are not read.
        let last: Vec<u32> = rows.iter().map(Row::last).collect();
        let logits = model.forward_cached_rows(&last, &mut cache)?;
        for (i, row) in rows.iter_mut().enumerate() {
            if row.active() {
                row.sample(&logits.get(i)?, stop_ids)?;
            }
        }
    }
    Ok(rows.into_iter().map(Row::finish).collect())
}

/// One completion being sampled.
struct Row {
    sampler: Sampler,
    /// The prompt and the completion so far (what the repetition penalty sees).
    context: Vec<u32>,
    prompt_len: usize,
    stopped: bool,
}

impl Row {
    fn new(cfg: &Sampling, seed: u64, prompt: &[u32]) -> Self {
        Row {
            sampler: Sampler::new(Sampling {
                seed,
                ..cfg.clone()
            }),
            context: prompt.to_vec(),
            prompt_len: prompt.len(),
            stopped: false,
        }
    }

    /// Still sampling: not stopped, and under `max_new_tokens`.
    fn active(&self) -> bool {
        !self.stopped && self.context.len() - self.prompt_len < self.sampler.cfg.max_new_tokens
    }

    fn last(&self) -> u32 {
        self.context.last().copied().unwrap_or_default()
    }

    /// Samples the next token from `logits` (`[vocab]`) and records it.
    fn sample(&mut self, logits: &Tensor, stop_ids: &[u32]) -> Result<()> {
        let id = self.sampler.next(logits, &self.context)?;
        self.context.push(id);
        self.stopped = stop_ids.contains(&id);
        Ok(())
    }

    fn finish(mut self) -> Sampled {
        Sampled {
            ids: self.context.split_off(self.prompt_len),
            stopped: self.stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::stream::TokenStream;
    use crate::infer::{generate, GenEvent, StopReason};
    use crate::model::family::Arch;
    use crate::model::tiny::{init_tiny, TinySpec};
    use crate::template::TextTokenizer;

    /// A tiny model of `arch` with its tokenizer (Gemma 2's has soft-caps and windows).
    fn tiny(arch: Arch) -> (Model, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        init_tiny(
            dir.path(),
            &TinySpec {
                arch,
                ..Default::default()
            },
        )
        .unwrap();
        crate::model::source::load(&dir.path().to_string_lossy(), &candle_core::Device::Cpu)
            .unwrap()
    }

    const PROMPT: [u32; 5] = [5, 40, 77, 123, 9];

    fn cfg(temperature: f64, max_new_tokens: usize) -> Sampling {
        Sampling {
            temperature,
            max_new_tokens,
            ..Default::default()
        }
    }

    /// What `generate` says for `cfg`: its text, tokens and why it ended.
    fn generated(m: &Model, tok: &TextTokenizer, cfg: &Sampling) -> (String, usize, StopReason) {
        let (mut text, mut done) = (String::new(), None);
        generate(m, tok, &PROMPT, cfg.clone(), |e| {
            match e {
                GenEvent::Text(t) => text.push_str(&t),
                GenEvent::Done { tokens, reason, .. } => done = Some((tokens, reason)),
                GenEvent::Error(e) => panic!("{e}"),
            }
            true
        });
        let (tokens, reason) = done.unwrap();
        (text, tokens, reason)
    }

    /// A sampled completion as `generate` reports it: the text streamed as it streams it
    /// (without the stop token), its token count and why it ended.
    fn as_generated(tok: &TextTokenizer, s: &Sampled) -> (String, usize, StopReason) {
        let ids = &s.ids[..s.ids.len() - usize::from(s.stopped)];
        let mut stream = TokenStream::new(tok);
        let mut text: String = ids.iter().filter_map(|&id| stream.push(id)).collect();
        text.extend(stream.finish().filter(|r| !r.ends_with('\u{FFFD}')));
        let reason = if s.stopped {
            StopReason::Stop
        } else {
            StopReason::MaxTokens
        };
        (text, ids.len(), reason)
    }

    fn stops(tok: &TextTokenizer) -> Vec<u32> {
        tok.stop_ids.iter().copied().collect()
    }

    /// Greedy rows are `generate`'s greedy reply, cut off and (with a stop token it reaches)
    /// stopped.
    #[test]
    fn greedy_rows_equal_generate() {
        for arch in [Arch::Llama, Arch::Gemma2] {
            let (m, mut tok) = tiny(arch);
            let c = cfg(0.0, 24);
            tok.stop_ids.clear();
            let rows = sample_group(&m, &PROMPT, &[], &c, &[1, 2, 3]).unwrap();
            assert!(rows.iter().all(|r| *r == rows[0] && r.ids.len() == 24));
            assert_eq!(
                as_generated(&tok, &rows[0]),
                generated(&m, &tok, &c),
                "{arch:?}"
            );
            tok.stop_ids.insert(rows[0].ids[9]);
            let rows = sample_group(&m, &PROMPT, &stops(&tok), &c, &[1, 2]).unwrap();
            assert!(rows[0].stopped && rows[0].ids.len() <= 10, "{arch:?}");
            assert_eq!(
                as_generated(&tok, &rows[0]),
                generated(&m, &tok, &c),
                "{arch:?}"
            );
        }
    }

    /// At temperature 1 (with a repetition penalty) a row is `generate` with its seed: the
    /// same seed twice draws the same completion, another seed another one, and a row does
    /// not depend on the rest of its group.
    #[test]
    fn seeded_rows_equal_generate_with_their_seed() {
        let (m, tok) = tiny(Arch::Gemma2);
        let c = Sampling {
            repetition_penalty: 1.3,
            ..cfg(1.0, 16)
        };
        let seeds = [11, 12, 13, 11];
        let rows = sample_group(&m, &PROMPT, &stops(&tok), &c, &seeds).unwrap();
        assert_eq!(rows[0], rows[3]);
        assert!(rows[0] != rows[1] && rows[1] != rows[2] && rows[0] != rows[2]);
        for (row, seed) in rows.iter().zip(seeds) {
            let alone = Sampling { seed, ..c.clone() };
            assert_eq!(
                as_generated(&tok, row),
                generated(&m, &tok, &alone),
                "{seed}"
            );
        }
        let single = sample_group(&m, &PROMPT, &stops(&tok), &c, &[12]).unwrap();
        assert_eq!(single[0], rows[1]);
    }

    /// A row that draws a stop token ends with it and records nothing after; the others run
    /// to `max_new_tokens` unchanged, marked as cut off.
    #[test]
    fn stop_tokens_end_rows_and_stay_in_them() {
        let (m, _) = tiny(Arch::Llama);
        let c = cfg(1.0, 12);
        let seeds: Vec<u64> = (0..6).collect();
        let free = sample_group(&m, &PROMPT, &[], &c, &seeds).unwrap();
        assert!(free.iter().all(|r| !r.stopped && r.ids.len() == 12));
        let stop = free[0].ids[3];
        let rows = sample_group(&m, &PROMPT, &[stop], &c, &seeds).unwrap();
        assert!(rows[0].stopped && rows[0].ids.len() <= 4);
        for (row, free) in rows.iter().zip(&free) {
            let end = free.ids.iter().position(|&id| id == stop);
            assert_eq!(row.stopped, end.is_some());
            assert_eq!(row.ids, free.ids[..end.map_or(12, |e| e + 1)]);
        }
    }

    #[test]
    fn empty_groups_budgets_and_prompts() {
        let (m, _) = tiny(Arch::Llama);
        assert!(sample_group(&m, &PROMPT, &[], &cfg(0.0, 4), &[])
            .unwrap()
            .is_empty());
        let none = sample_group(&m, &PROMPT, &[], &cfg(0.0, 0), &[1, 2]).unwrap();
        assert_eq!(none, vec![Sampled::default(); 2]);
        assert!(sample_group(&m, &[], &[], &cfg(0.0, 4), &[1]).is_err());
    }
}
