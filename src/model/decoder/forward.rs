//! The training forward: logits at every position, every op differentiable (frozen
//! projections through `ops::frozen_linear`, norms, RoPE and softmax through `ops`' fused
//! kernels), and the layer both forwards share.

use super::block::{split_last, Block};
use super::linear::{Ctx, Linear, Weight};
use super::tables::{Prepared, Tables};
use super::{Batch, Model};
use crate::model::config::Activation;
use crate::model::kv_cache::{Attention, LayerCache, DIRECT_MAX_QUERIES};
use crate::ops;
use candle_core::{DType, Result, Tensor, D};

/// RoPE on the first `rotary_dim` dimensions of each head ([b, h, t, d]); the rest pass
/// through (Phi-4-mini's partial rotary).
pub fn rope_partial(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    rotary_dim: usize,
    rope: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if rotary_dim == d {
        return rope(x, cos, sin);
    }
    let rot = rope(&x.narrow(D::Minus1, 0, rotary_dim)?.contiguous()?, cos, sin)?;
    Tensor::cat(
        &[&rot, &x.narrow(D::Minus1, rotary_dim, d - rotary_dim)?],
        D::Minus1,
    )?
    .contiguous()
}

/// `cap · tanh(x / cap)` (Gemma 2's soft-capping of attention scores and logits).
pub fn softcap(x: &Tensor, cap: Option<f64>) -> Result<Tensor> {
    match cap {
        None => Ok(x.clone()),
        Some(c) => (x / c)?.tanh()? * c,
    }
}

/// The MLP's gate activation, differentiable (autograd path).
pub fn activate(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::Silu => crate::ops::silu(x),
        Activation::GeluTanh => crate::ops::gelu_tanh(x),
    }
}

/// [b, kv, t, d] → [b, kv·n, t, d], each key/value head shared by `n` query heads.
pub fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, n, t, d))?
        .reshape((b, kv * n, t, d))
}

impl Model {
    /// Token embeddings [b, t, hidden], scaled by √hidden in Gemma (frozen: no gradient
    /// flows into them).
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let e = match &self.embed {
            // On the ids' own device (a GPU's rows stay there).
            Weight::Dense(table) => table.index_select(&input_ids.flatten_all()?, 0)?,
            // A quantized table is read on the host, a row per id.
            table => {
                let ids = input_ids
                    .flatten_all()?
                    .to_dtype(DType::U32)?
                    .to_vec1::<u32>()?;
                table.lookup(&ids, self.dtype)?.to_device(&self.device)?
            }
        };
        let e = e.reshape((b, t, self.config.hidden_size))?;
        self.scale_embedding(e)
    }

    pub(super) fn scale_embedding(&self, e: Tensor) -> Result<Tensor> {
        if self.config.family().embed_scale {
            e * (self.config.hidden_size as f64).sqrt()
        } else {
            Ok(e)
        }
    }

    /// One decoder layer; `dropout_seed` enables LoRA dropout (training).
    pub fn layer(
        &self,
        i: usize,
        h: &Tensor,
        p: &Prepared,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let ctx = Ctx {
            lora_on: self.lora.is_some() && self.switch.is_on(),
            dropout_seed,
            layer: i,
        };
        let block = &self.layers[i];
        self.block_kv(block, h, p.for_block(block), &ctx, None)
    }

    /// Final norm and LM head: logits [b, t, vocab].
    pub fn head(&self, h: &Tensor) -> Result<Tensor> {
        let h = ops::rms_norm(h, &self.norm, self.config.rms_norm_eps)?;
        let logits = self.lm_head.apply(&h)?;
        softcap(&logits, self.config.final_logit_softcapping)
    }

    /// Logits [b, t, vocab] at every position. `dropout_seed` enables LoRA dropout.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        batch: &Batch,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let p = self.prepare(b, t, batch)?;
        let mut h = self.embed(input_ids)?;
        for i in 0..self.layers.len() {
            h = self.layer(i, &h, &p, dropout_seed)?;
        }
        self.head(&h)
    }

    /// Masked attention as candle ops: `q` `[b, heads, t, d]` over `k`, `v`
    /// `[b, kv_heads, t_all, d]`, returned as `[b, t, heads·d]`.
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, tables: &Tables) -> Result<Tensor> {
        let c = &self.config;
        let (b, nh, t, hd) = q.dims4()?;
        let rep = nh / c.num_key_value_heads;
        let (k, v) = (repeat_kv(k, rep)?, repeat_kv(v, rep)?);
        let scores = (ops::bmm::bmm(q, &k.t()?)? * c.attention_scale())?;
        let scores = softcap(&scores, c.attn_logit_softcapping)?.broadcast_add(&tables.mask)?;
        let probs = ops::softmax_last_dim(&scores)?;
        ops::bmm::bmm(&probs, &v)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))
    }

    pub(super) fn block_kv(
        &self,
        l: &Block,
        x: &Tensor,
        tables: &Tables,
        ctx: &Ctx,
        kv: Option<(&mut Option<LayerCache>, usize)>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let eps = c.rms_norm_eps;
        let hn = ops::rms_norm(x, &l.input_norm, eps)?;
        let heads = |y: &Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
        // Generation (a cache) records no gradient: the projections of one input may share
        // one parallel pass.
        let inference = kv.is_some();
        let project = |lins: &[Linear], x: &Tensor, first: u64| -> Result<Vec<Tensor>> {
            if inference {
                Linear::forward_group(lins, x, ctx, first)
            } else {
                lins.iter()
                    .enumerate()
                    .map(|(j, lin)| lin.forward(x, ctx, first + j as u64))
                    .collect()
            }
        };
        let outs = project(&l.attn_in, &hn, 0)?;
        let qkv = split_last(outs, &[nh * hd, nkv * hd, nkv * hd])?;
        let (mut q, mut k) = (heads(&qkv[0], nh)?, heads(&qkv[1], nkv)?);
        if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
            q = ops::rms_norm(&q, qn, eps)?;
            k = ops::rms_norm(&k, kn, eps)?;
        }
        let q = rope_partial(&q, &tables.cos, &tables.sin, c.rotary_dim, ops::rope)?;
        let k = rope_partial(&k, &tables.cos, &tables.sin, c.rotary_dim, ops::rope)?;
        let v = heads(&qkv[2], nkv)?;
        let attn = match kv {
            Some((slot, start)) => {
                let (k, v) = LayerCache::append(slot, &k.detach(), &v.detach(), start)?;
                match slot.as_ref() {
                    Some(cache) if cache.is_direct() && t <= DIRECT_MAX_QUERIES => {
                        let window = if l.sliding && self.has_sliding() {
                            c.sliding_window
                        } else {
                            None
                        };
                        let shape = Attention {
                            kv_heads: nkv,
                            scale: c.attention_scale() as f32,
                            softcap: c.attn_logit_softcapping.map(|x| x as f32),
                            window,
                        };
                        cache.attend(&q, start, &shape)?
                    }
                    _ => self.attention(&q, &k, &v, tables)?,
                }
            }
            None => self.attention(&q, &k, &v, tables)?,
        };
        let (o_ix, mlp_ix, down_ix) = l.module_index();
        let mut a = l.o.forward(&attn, ctx, o_ix)?;
        if let Some(n) = &l.attn_out_norm {
            a = ops::rms_norm(&a, n, eps)?;
        }
        let x = (x + a)?;
        let hn = ops::rms_norm(&x, &l.post_norm, eps)?;
        let outs = project(&l.mlp_in, &hn, mlp_ix)?;
        let gu = split_last(outs, &[c.intermediate_size, c.intermediate_size])?;
        let act = (activate(&gu[0], c.activation)? * &gu[1])?;
        let mut m = l.down.forward(&act, ctx, down_ix)?;
        if let Some(n) = &l.mlp_out_norm {
            m = ops::rms_norm(&m, n, eps)?;
        }
        x + m
    }
}
