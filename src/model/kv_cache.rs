//! The keys and values of tokens already seen, and attention of a few new tokens over them.
//!
//! Decode adds one token at a time: concatenating the cache each step copies it whole (and
//! asks the allocator for fresh zeroed pages), and running attention as candle ops costs a
//! dozen small dispatches and gemm calls per layer. The cache here grows by doubling and is
//! written in place; on the CPU in f32, attention of a few queries is computed straight
//! over the cache's memory, grouped-query heads included, without repeating keys. A cache
//! may hold several rows (a group of completions of one prompt, decoded as one batch), all
//! at the same position.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Queries per call up to which attention runs on the cache's memory; longer prompts go
/// through candle's matmuls, which win on wide products.
pub const DIRECT_MAX_QUERIES: usize = 8;

/// Keys and values of the tokens seen so far.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    /// Tokens held.
    pub len: usize,
}

impl KvCache {
    /// Sizes the cache for `n` layers (a fresh cache, or one made for another model).
    pub(crate) fn ensure_layers(&mut self, n: usize) {
        if self.layers.len() != n {
            self.layers = (0..n).map(|_| None).collect();
            self.len = 0;
        }
    }

    pub(crate) fn layer_mut(&mut self, i: usize) -> Option<&mut Option<LayerCache>> {
        self.layers.get_mut(i)
    }

    /// Rows (sequences) held: the batch dimension of the buffers, `None` while empty.
    pub fn rows(&self) -> Option<usize> {
        self.layers
            .iter()
            .flatten()
            .next()
            .and_then(|c| c.k.dim(0).ok())
    }

    /// Makes a one-row cache into `b` identical rows, so a prompt is prefilled once and a
    /// group of `b` completions of it then decodes as one batch.
    pub fn repeat_rows(&mut self, b: usize) -> Result<()> {
        if b == 0 {
            candle_core::bail!("kv cache: cannot repeat into 0 rows")
        }
        for c in self.layers.iter_mut().flatten() {
            let (rows, h, cap, d) = c.k.dims4()?;
            if rows != 1 {
                candle_core::bail!("kv cache: repeat_rows needs one row, it holds {rows}")
            }
            c.k = c.k.broadcast_as((b, h, cap, d))?.contiguous()?;
            c.v = c.v.broadcast_as((b, h, cap, d))?.contiguous()?;
        }
        Ok(())
    }
}

/// One layer's keys and values, `[rows, kv_heads, capacity, head_dim]`; positions past the
/// cache's length are unused.
#[derive(Debug)]
pub struct LayerCache {
    k: Tensor,
    v: Tensor,
}

impl LayerCache {
    /// Writes `k` and `v` (`[rows, kv_heads, t, head_dim]`) at position `start`, growing the
    /// buffers when full, and returns views of positions `0..start + t`.
    pub fn append(
        slot: &mut Option<Self>,
        k: &Tensor,
        v: &Tensor,
        start: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (b, h, t, d) = k.dims4()?;
        let need = start + t;
        let cap = match slot {
            Some(c) => c.k.dim(2)?,
            None => 0,
        };
        if need > cap {
            let grown = need.max(cap * 2).max(64);
            let nk = Tensor::zeros((b, h, grown, d), k.dtype(), k.device())?;
            let nv = Tensor::zeros((b, h, grown, d), v.dtype(), v.device())?;
            if let (Some(c), true) = (slot.as_ref(), start > 0) {
                nk.slice_set(&c.k.narrow(2, 0, start)?.contiguous()?, 2, 0)?;
                nv.slice_set(&c.v.narrow(2, 0, start)?.contiguous()?, 2, 0)?;
            }
            *slot = Some(LayerCache { k: nk, v: nv });
        }
        let Some(c) = slot.as_ref() else {
            candle_core::bail!("kv cache: no layer buffer")
        };
        c.k.slice_set(&k.contiguous()?, 2, start)?;
        c.v.slice_set(&v.contiguous()?, 2, start)?;
        Ok((c.k.narrow(2, 0, need)?, c.v.narrow(2, 0, need)?))
    }

    /// Whether [`LayerCache::attend`] can read this cache directly (CPU, f32).
    pub fn is_direct(&self) -> bool {
        self.k.device().is_cpu() && self.k.dtype() == DType::F32
    }

    /// Attention of `q` (`[rows, heads, t, head_dim]`, positions `start..start + t` in every
    /// row) over the first `start + t` cached positions of the same row:
    /// `softmax(softcap(q·kᵀ·scale) + causal/window mask)·v`, returned as
    /// `[rows, t, heads·head_dim]`.
    pub fn attend(&self, q: &Tensor, start: usize, shape: &Attention) -> Result<Tensor> {
        let (rows, heads, t, d) = q.dims4()?;
        let (k_rows, kv_heads, cap, _) = self.k.dims4()?;
        if k_rows != rows || kv_heads != shape.kv_heads.max(1) {
            candle_core::bail!(
                "kv cache: {rows} rows for {} key heads over {k_rows} rows of {kv_heads}",
                shape.kv_heads
            )
        }
        let dims = Dims {
            rows,
            heads,
            t,
            d,
            cap,
            start,
        };
        let qv = q.flatten_all()?.to_vec1::<f32>()?;
        let out = with_f32(&self.k, |k| {
            with_f32(&self.v, |v| Ok(shape.compute(&qv, k, v, &dims)))
        })?;
        Tensor::from_vec(out, (rows, t, heads * d), q.device())
    }
}

/// Runs `f` over a contiguous CPU f32 tensor's elements without copying them.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    match crate::ops::borrow_f32(t, f)? {
        Some(r) => Ok(r),
        None => candle_core::bail!(
            "kv cache: direct attention needs a contiguous f32 buffer on the CPU"
        ),
    }
}

/// What attention a layer computes beyond `q`, `k` and `v`.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    pub kv_heads: usize,
    pub scale: f32,
    /// Gemma 2's `cap · tanh(s / cap)` on the scores.
    pub softcap: Option<f32>,
    /// A sliding window: each query sees only the last `window` positions (itself included).
    pub window: Option<usize>,
}

/// The shapes [`Attention::compute`] reads its flat buffers with.
struct Dims {
    rows: usize,
    heads: usize,
    /// Queries per row.
    t: usize,
    d: usize,
    /// Positions each cached row has room for.
    cap: usize,
    /// The first query's position.
    start: usize,
}

impl Attention {
    /// Every row's heads: `q` `[rows, heads, t, d]`, `k`/`v` `[rows, kv_heads, cap, d]`,
    /// returned as `[rows, t, heads·d]`.
    fn compute(&self, q: &[f32], k: &[f32], v: &[f32], s: &Dims) -> Vec<f32> {
        let (nh, t, d) = (s.heads, s.t, s.d);
        let kvh = self.kv_heads.max(1);
        let rep = (nh / kvh).max(1);
        let one = |job: usize| -> Vec<f32> {
            let (r, h) = (job / nh, job % nh);
            let at = (r * kvh + h / rep) * s.cap * d;
            let qs = &q[(r * nh + h) * t * d..][..t * d];
            self.head(qs, &k[at..], &v[at..], t, d, s.start)
        };
        // Parallel over rows and heads once the work outweighs waking the pool (2^15
        // multiply-adds: SmolLM2 from about 60 cached positions; measured, 400-token decodes
        // 150 → 179 tokens/s against the 2^18 it was).
        let jobs = s.rows * nh;
        let work = jobs * t * (s.start + t) * d;
        let per_head: Vec<Vec<f32>> = if work > 1 << 15 {
            (0..jobs).into_par_iter().map(one).collect()
        } else {
            (0..jobs).map(one).collect()
        };
        let mut out = vec![0f32; s.rows * t * nh * d];
        for (job, ho) in per_head.iter().enumerate() {
            let (r, h) = (job / nh, job % nh);
            for i in 0..t {
                out[((r * t + i) * nh + h) * d..][..d].copy_from_slice(&ho[i * d..][..d]);
            }
        }
        out
    }

    /// One head of one row: `t` queries at `start..` over keys `ks` and values `vs` (that
    /// head's buffers, position-major), `[t, d]`.
    fn head(
        &self,
        q: &[f32],
        ks: &[f32],
        vs: &[f32],
        t: usize,
        d: usize,
        start: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; t * d];
        let mut scores = Vec::with_capacity(start + t);
        for i in 0..t {
            let pos = start + i;
            let first = self.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let qi = &q[i * d..][..d];
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in first..=pos {
                let mut s = dot(qi, &ks[j * d..][..d]) * self.scale;
                if let Some(c) = self.softcap {
                    s = c * (s / c).tanh();
                }
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0f32;
            for s in &mut scores {
                *s = (*s - max).exp();
                sum += *s;
            }
            let o = &mut out[i * d..][..d];
            for (j, p) in (first..=pos).zip(&scores) {
                let w = p / sum;
                for (a, b) in o.iter_mut().zip(&vs[j * d..][..d]) {
                    *a += w * b;
                }
            }
        }
        out
    }
}

/// A dot product with eight running sums, so the compiler keeps it in vector registers.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ramp(dims: (usize, usize, usize, usize), seed: usize) -> Tensor {
        let n = dims.0 * dims.1 * dims.2 * dims.3;
        let v: Vec<f32> = (0..n)
            .map(|i| (((i + seed) * 2654435761usize % 1009) as f32 / 1009.0 - 0.5) * 2.0)
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn appends_grow_past_the_capacity_and_keep_every_row() {
        let mut slot = None;
        let mut all: Vec<Tensor> = Vec::new();
        let mut len = 0;
        for (step, t) in [5usize, 60, 1, 1, 70].into_iter().enumerate() {
            let k = ramp((1, 2, t, 4), step * 100);
            let v = ramp((1, 2, t, 4), step * 100 + 7);
            let (kv, vv) = LayerCache::append(&mut slot, &k, &v, len).unwrap();
            all.push(k);
            len += t;
            let want = Tensor::cat(&all.iter().collect::<Vec<_>>(), 2).unwrap();
            assert_eq!(kv.dims(), &[1, 2, len, 4]);
            let diff = (kv - &want).unwrap().abs().unwrap().sum_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "step {step}");
            assert_eq!(vv.dim(2).unwrap(), len);
        }
        // 137 rows: the buffer doubled from 64 to 128, then grew to fit.
        assert!(slot.unwrap().k.dim(2).unwrap() >= 137);
    }

    /// A one-row cache repeated into three rows holds the same keys in each, and each row
    /// then grows on its own.
    #[test]
    fn repeated_rows_copy_the_prompt_and_grow_apart() {
        let mut cache = KvCache::default();
        cache.ensure_layers(1);
        let (k, v) = (ramp((1, 2, 5, 4), 1), ramp((1, 2, 5, 4), 2));
        let slot = cache.layer_mut(0).unwrap();
        LayerCache::append(slot, &k, &v, 0).unwrap();
        cache.len = 5;
        assert_eq!(cache.rows(), Some(1));
        cache.repeat_rows(3).unwrap();
        assert_eq!(cache.rows(), Some(3));
        assert!(
            cache.repeat_rows(2).is_err(),
            "only a one-row cache repeats"
        );
        let slot = cache.layer_mut(0).unwrap();
        let (k2, v2) = (ramp((3, 2, 70, 4), 3), ramp((3, 2, 70, 4), 4));
        let (kv, _) = LayerCache::append(slot, &k2, &v2, 5).unwrap();
        assert_eq!(kv.dims(), &[3, 2, 75, 4]);
        for r in 0..3 {
            let row = kv.get(r).unwrap();
            let head = row.narrow(1, 0, 5).unwrap().unsqueeze(0).unwrap();
            let tail = row.narrow(1, 5, 70).unwrap();
            let same = |a: &Tensor, b: &Tensor| {
                let d = (a - b).unwrap().abs().unwrap().sum_all().unwrap();
                d.to_scalar::<f32>().unwrap() == 0.0
            };
            assert!(same(&head, &k), "row {r}: the prompt's keys");
            assert!(same(&tail, &k2.get(r).unwrap()), "row {r}: its own keys");
        }
    }

    /// The direct path against the same attention written as tensor ops, two rows each over
    /// its own keys.
    #[test]
    fn direct_attention_equals_the_masked_softmax_with_groups_window_and_softcap() {
        let (b, nh, nkv, d, start, t) = (2, 6, 2, 8, 9, 3);
        let k = ramp((b, nkv, start + t, d), 1);
        let v = ramp((b, nkv, start + t, d), 2);
        let q = ramp((b, nh, t, d), 3);
        let mut slot = None;
        LayerCache::append(&mut slot, &k, &v, 0).unwrap();
        let cache = slot.unwrap();
        for (softcap, window) in [(None, None), (Some(0.7f32), Some(4usize))] {
            let shape = Attention {
                kv_heads: nkv,
                scale: 0.35,
                softcap,
                window,
            };
            let got = cache.attend(&q, start, &shape).unwrap();
            // Reference: repeat the key/value heads, full scores, mask, softmax.
            let rep = |x: &Tensor| {
                let (b, h, n, dd) = x.dims4().unwrap();
                x.unsqueeze(2)
                    .unwrap()
                    .broadcast_as((b, h, nh / nkv, n, dd))
                    .unwrap()
                    .reshape((b, nh, n, dd))
                    .unwrap()
            };
            let mut s = (q.matmul(&rep(&k).t().unwrap()).unwrap() * 0.35).unwrap();
            if let Some(c) = softcap {
                s = ((s / c as f64).unwrap().tanh().unwrap() * c as f64).unwrap();
            }
            let mut mask = vec![0f32; t * (start + t)];
            for i in 0..t {
                for j in 0..start + t {
                    let pos = start + i;
                    if j > pos || window.is_some_and(|w| pos - j >= w) {
                        mask[i * (start + t) + j] = f32::NEG_INFINITY;
                    }
                }
            }
            let mask = Tensor::from_vec(mask, (1, 1, t, start + t), &Device::Cpu).unwrap();
            let p = candle_nn::ops::softmax_last_dim(&s.broadcast_add(&mask).unwrap()).unwrap();
            let want = p
                .matmul(&rep(&v))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape((b, t, nh * d))
                .unwrap();
            let err = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(err < 1e-6, "{softcap:?} {window:?}: {err}");
        }
    }
}
