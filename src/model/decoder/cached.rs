//! The cached forward (generation): keys and values of earlier tokens from a `KvCache`, the
//! same windows and soft-caps as training, no autograd graph.

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
        ops::on_pool(|| self.cached_step(ids, cache))
    }

    /// [`Model::forward_cached`]'s work, on a pool thread.
    fn cached_step(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let t = ids.len();
        let start = cache.len;
        cache.ensure_layers(self.layers.len());
        let positions = vec![(start as u32..(start + t) as u32).collect::<Vec<u32>>()];
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
        let p = Prepared {
            global: self.tables(&positions, &c.rope, mask(None)?)?,
            local: if self.has_sliding() {
                Some(self.tables(&positions, c.rope_of(true), mask(c.sliding_window)?)?)
            } else {
                None
            },
        };
        let input = Tensor::new(ids, &self.device)?;
        let mut h = self.scale_embedding(self.embed.index_select(&input, 0)?.unsqueeze(0)?)?;
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
        cache.len = total;
        self.head(&h.i((.., t - 1..t, ..))?)?
            .flatten_all()?
            .detach()
            .to_dtype(DType::F32)
    }
}
