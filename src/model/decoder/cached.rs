//! The cached forward (generation): keys and values of earlier tokens from a `KvCache`, the
//! same windows and soft-caps as training, no autograd graph. A cache of several rows
//! decodes a group of completions of one prompt as one batch: each step reads the weights
//! once for every row.

use super::linear::Ctx;
use super::tables::Prepared;
use super::Model;
use crate::model::kv_cache::KvCache;
use crate::ops;
use candle_core::{DType, IndexOp, Result, Tensor};

impl Model {
    /// Logits [vocab] of the last new token, with keys and values of earlier tokens from
    /// `cache` (inference: no dropout, and the cache holds no autograd graph).
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        ops::on_pool(|| self.cached_step(ids, 1, cache))?.flatten_all()
    }

    /// Logits `[b, vocab]` of one new token per row (`b = ids.len()`), each row over its own
    /// cached keys and values, every row at position `cache.len`: a group of completions of
    /// one prompt, decoded as one batch after [`KvCache::repeat_rows`].
    pub fn forward_cached_rows(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        ops::on_pool(|| self.cached_step(ids, ids.len(), cache))?.squeeze(1)
    }

    /// The cached forward of `rows` rows of `ids.len() / rows` new tokens each (`ids` row
    /// after row), on a pool thread's work: logits `[rows, 1, vocab]` of each row's last token.
    fn cached_step(&self, ids: &[u32], rows: usize, cache: &mut KvCache) -> Result<Tensor> {
        if rows == 0 || ids.is_empty() || !ids.len().is_multiple_of(rows) {
            candle_core::bail!("cached forward: {} ids for {rows} rows", ids.len())
        }
        cache.ensure_layers(self.layers.len());
        if let Some(held) = cache.rows().filter(|&r| r != rows) {
            candle_core::bail!("cached forward: {rows} rows over a cache of {held}")
        }
        let t = ids.len() / rows;
        let start = cache.len;
        let p = self.cached_tables(rows, start, t)?;
        let input = Tensor::from_slice(ids, (rows, t), &self.device)?;
        let mut h = self.embed(&input)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let ctx = Ctx {
                lora_on: self.lora.is_some() && self.switch.is_on(),
                dropout_seed: None,
                layer: i,
            };
            let Some(slot) = cache.layer_mut(i) else {
                candle_core::bail!("kv cache: no layer {i}")
            };
            h = self
                .block_kv(layer, &h, p.for_block(layer), &ctx, Some((slot, start)))?
                .detach();
        }
        cache.len = start + t;
        self.head(&h.i((.., t - 1..t, ..))?)?
            .detach()
            .to_dtype(DType::F32)
    }

    /// Rotary tables for `rows` rows at positions `start..start + t`, and masks
    /// `[1, 1, t, start + t]` that broadcast over the rows (they all share the positions).
    fn cached_tables(&self, rows: usize, start: usize, t: usize) -> Result<Prepared> {
        let positions = vec![(start as u32..(start + t) as u32).collect::<Vec<u32>>(); rows];
        let total = start + t;
        let mask = |window: Option<usize>| -> Result<Tensor> {
            let mut m = vec![0f32; t * total];
            for i in 0..t {
                let q = start + i;
                for j in 0..total {
                    if j > q || window.is_some_and(|w| q - j >= w) {
                        m[i * total + j] = -1e9;
                    }
                }
            }
            Tensor::from_vec(m, (1, 1, t, total), &self.device)?.to_dtype(self.dtype)
        };
        let c = &self.config;
        Ok(Prepared {
            global: self.tables(&positions, &c.rope, mask(None)?)?,
            local: if self.has_sliding() {
                Some(self.tables(&positions, c.rope_of(true), mask(c.sliding_window)?)?)
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kv_cache::DIRECT_MAX_QUERIES;
    use candle_core::Device;
    use std::path::Path;

    /// A family fixture (grouped-query heads; windows of 4 and soft-caps where the family
    /// has them) with its trained adapter on, so LoRA is in every projection it targets.
    fn fixture(name: &str) -> Model {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
        let mut m = Model::load(&dir.join(name).join("model"), DType::F32, &Device::Cpu).unwrap();
        crate::model::peft::load(&mut m, &dir.join(name).join("adapter")).unwrap();
        m
    }

    /// `max |a − b| / max |b|`.
    fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        let scalar = |t: Tensor| t.max_all().unwrap().to_scalar::<f32>().unwrap();
        let diff = scalar((a - b).unwrap().abs().unwrap());
        diff / scalar(b.abs().unwrap()).max(1e-12)
    }

    /// Row `r`'s token at decode step `s`: every row its own history.
    fn token(r: usize, s: usize) -> u32 {
        ((5 + 17 * r + 11 * s + r * s) % 96) as u32
    }

    const PROMPT: [u32; 6] = [3, 14, 15, 9, 2, 6];

    /// Each row of a batched decode step gives the logits that row's history gives alone,
    /// past the window of 4 and on every family with windows, soft-caps or local RoPE.
    #[test]
    fn rows_decode_as_each_row_alone() {
        let rows = 3;
        for name in [
            "llama",
            "mistral_window",
            "gemma2",
            "gemma3",
            "qwen3",
            "phi3",
        ] {
            let m = fixture(name);
            let mut alone: Vec<KvCache> = (0..rows).map(|_| KvCache::default()).collect();
            let mut group = KvCache::default();
            let first = m.forward_cached(&PROMPT, &mut group).unwrap();
            for c in &mut alone {
                let want = m.forward_cached(&PROMPT, c).unwrap();
                assert_eq!(rel_err(&first, &want), 0.0, "{name}: the prefill");
            }
            group.repeat_rows(rows).unwrap();
            for s in 0..10 {
                let ids: Vec<u32> = (0..rows).map(|r| token(r, s)).collect();
                let got = m.forward_cached_rows(&ids, &mut group).unwrap();
                assert_eq!(got.dims(), &[rows, m.config.vocab_size]);
                for (r, c) in alone.iter_mut().enumerate() {
                    let want = m.forward_cached(&ids[r..r + 1], c).unwrap();
                    let err = rel_err(&got.get(r).unwrap(), &want);
                    assert!(err < 1e-5, "{name} step {s} row {r}: {err}");
                }
            }
            assert_eq!(group.len, PROMPT.len() + 10);
        }
    }

    /// Rows of more new tokens than the direct path takes go through candle's attention,
    /// whose masks broadcast over the rows; the cache they leave decodes on directly.
    #[test]
    fn multi_token_rows_take_the_candle_path_and_agree() {
        let t = DIRECT_MAX_QUERIES + 2;
        for name in ["gemma2", "gemma3"] {
            let m = fixture(name);
            let rows: Vec<Vec<u32>> = (0..2)
                .map(|r| (0..t).map(|s| token(r, s)).collect())
                .collect();
            let mut group = KvCache::default();
            let got = m
                .cached_step(&rows.concat(), 2, &mut group)
                .unwrap()
                .squeeze(1)
                .unwrap();
            let next = m.forward_cached_rows(&[7, 8], &mut group).unwrap();
            for (r, ids) in rows.iter().enumerate() {
                let mut c = KvCache::default();
                let want = m.forward_cached(ids, &mut c).unwrap();
                let err = rel_err(&got.get(r).unwrap(), &want);
                assert!(err < 1e-5, "{name} row {r}: {err}");
                let want = m.forward_cached(&[7 + r as u32], &mut c).unwrap();
                let err = rel_err(&next.get(r).unwrap(), &want);
                assert!(err < 1e-5, "{name} row {r}, then one: {err}");
            }
        }
    }

    #[test]
    fn rows_refuse_a_cache_of_other_rows_and_empty_input() {
        let m = fixture("llama");
        let mut c = KvCache::default();
        m.forward_cached(&PROMPT, &mut c).unwrap();
        assert!(m.forward_cached_rows(&[1, 2], &mut c).is_err());
        assert!(m.forward_cached_rows(&[], &mut c).is_err());
        assert!(m.forward_cached(&[], &mut KvCache::default()).is_err());
        assert_eq!(
            m.forward_cached_rows(&[1], &mut c).unwrap().dims(),
            &[1, 96]
        );
    }
}
