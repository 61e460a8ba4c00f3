//! A hand-written backward for the decoder, used by the training step instead of candle's
//! autograd whenever the base is dense. Autograd starts every node's gradient as a zero
//! tensor and adds into it, and records a graph for every reshape; here each layer keeps
//! only the activations its backward needs and computes `dx` and the LoRA gradients
//! directly. The loss and LM head touch only the positions that have a target. Checked
//! against the autograd path (tests/it/train.rs), which is itself checked against torch.

use super::grads::Grads;
use super::micro::{Head, MicroLoss, StepArgs, TargetLogps};
use crate::batch::MicroBatch;
use crate::lora::module_seed;
use crate::model::config::Activation;
use crate::model::decoder::{
    repeat_kv, rope_partial, split_last, Block, Linear, Model, Prepared, Weight,
};
use crate::ops::bmm::{bmm, bmm_causal, Causal};
use crate::ops::dropout::Dropout;
use crate::ops::fastmath::Gate;
use crate::ops::lowrank;
use crate::ops::{
    rms_norm_backward, rms_norm_backward_add, rms_norm_forward, softmax_backward,
    softmax_backward_scaled,
};
use candle_core::{DType, Result, Tensor, D};
use rayon::prelude::*;

/// `dy` in the base product's order from `g` in the Hugging Face order `y_hf = y[.., perm]`.
fn unpermute(g: &Tensor, perm: &Tensor) -> Result<Tensor> {
    g.index_select(&crate::model::decoder::inverse_perm(perm)?, D::Minus1)
}

/// What a projection keeps for its backward.
struct LinSaved {
    x: Tensor,
    /// LoRA: `u = x_d Aᵀ`, and the dropout whose mask the backward draws again. The
    /// dropped-out f32 input `x_d` is not kept: the backward derives it from `x` again (one
    /// parallel pass), where keeping it cost an f32 copy of the input per adapted projection
    /// (three of one `x` for q, k and v).
    lora: Option<(Tensor, Option<Dropout>)>,
}

/// LoRA's input: `x` in f32, dropped out when training with dropout (the same bits on
/// every call, so the backward derives it again instead of keeping it).
fn lora_input(x: &Tensor, drop: Option<&Dropout>) -> Result<Tensor> {
    let xf = x.to_dtype(DType::F32)?;
    match drop {
        Some(d) => d.apply(&xf),
        None => Ok(xf),
    }
}

fn lin_forward(
    l: &Linear,
    x: &Tensor,
    lora_on: bool,
    seed: Option<u64>,
) -> Result<(Tensor, LinSaved)> {
    // LoRA's rank-r input `u = x_d Aᵀ` first: a packed base takes the delta in its own pass.
    let lora = match (&l.lora, lora_on) {
        (Some(p), true) => {
            let drop = seed.and_then(|s| Dropout::new(p.dropout, s));
            let xd = lora_input(x, drop.as_ref())?;
            // Detached views of the parameters: no autograd graph is recorded on this path.
            let u = crate::ops::lowrank::times_t(&xd, &p.a.as_tensor().detach())?;
            Some((p, u, drop))
        }
        _ => None,
    };
    let f32_in = x.dtype() == DType::F32;
    // Q4_0/Q4_1/Q8_0 blocks are multiplied as they are (no dequantized copy); the rest
    // dequantize for this product only.
    let (fast, fused) = match (&l.weight, &lora) {
        (Weight::Panels(w), Some((p, u, _))) if f32_in && l.out_perm.is_none() => {
            let b = p.b.as_tensor().detach();
            (Some(w.forward_lora(x, u, &b, p.scale)?), true)
        }
        (Weight::Panels(w), _) if f32_in => (Some(w.forward(x)?), false),
        (Weight::Quantized(q), _) => (crate::ops::qmatmul::matmul(x, q)?, false),
        (Weight::Packed(p), _) if f32_in => (Some(crate::ops::qpacked::matmul(x, p)?), false),
        _ => (None, false),
    };
    let mut y = match fast {
        Some(y) => y,
        None => x.broadcast_matmul(&l.weight.matrix(x.dtype())?.t()?)?,
    };
    if let Some(p) = &l.out_perm {
        y = y.index_select(p, D::Minus1)?;
    }
    if let Some(b) = &l.bias {
        y = y.broadcast_add(b)?;
    }
    let mut saved = LinSaved {
        x: x.clone(),
        lora: None,
    };
    if let Some((p, u, drop)) = lora {
        if !fused {
            // Scale the rank-r product, not the [N, out] one.
            let bm = p.b.as_tensor().detach();
            let delta = (&u * p.scale)?.broadcast_matmul(&bm.t()?)?;
            y = (y + delta.to_dtype(x.dtype())?)?;
        }
        saved.lora = Some((u, drop));
    }
    Ok((y, saved))
}

/// `dx` for upstream `g`; LoRA gradients go into `grads`.
fn lin_backward(l: &Linear, s: &LinSaved, g: &Tensor, grads: &mut Grads) -> Result<Tensor> {
    lin_grads(l, s, g, grads, true)?
        .ok_or_else(|| candle_core::Error::Msg("a projection's dx was not computed".into()))
}

/// LoRA gradients into `grads`, and `dx` when `want_dx`: the first layer's input is the
/// frozen embedding's output, so nothing needs its gradient (the base product `g·W` and
/// LoRA's `du·A` are skipped there, as autograd skips inputs that require no gradient).
fn lin_grads(
    l: &Linear,
    s: &LinSaved,
    g: &Tensor,
    grads: &mut Grads,
    want_dx: bool,
) -> Result<Option<Tensor>> {
    let g = g.contiguous()?;
    // LoRA's gradients first; `du` (scaled) then joins the base's input gradient.
    let lora = match (&l.lora, &s.lora) {
        (Some(p), Some((u, drop))) => {
            let xd = lora_input(&s.x, drop.as_ref())?;
            let (r, inp, out) = (u.dim(D::Minus1)?, xd.dim(D::Minus1)?, g.dim(D::Minus1)?);
            let gf = g.to_dtype(DType::F32)?.reshape(((), out))?;
            let u2 = u.reshape(((), r))?;
            let x2 = xd.reshape(((), inp))?;
            // dB = s·gᵀu and dA = duᵀx with du = s·g·B, each one pass over g or x.
            grads.add(&p.b, (lowrank::t_times(&u2, &gf)?.t()? * p.scale)?)?;
            let du = (lowrank::times(&gf, &p.b.as_tensor().detach())? * p.scale)?;
            grads.add(&p.a, lowrank::t_times(&du, &x2)?)?;
            Some((p.a.as_tensor().detach(), du, *drop))
        }
        _ => None,
    };
    if !want_dx {
        return Ok(None);
    }
    let g = match &l.out_perm {
        Some(p) => unpermute(&g, p)?.contiguous()?,
        None => g,
    };
    let f32_in = g.dtype() == DType::F32;
    Ok(Some(match (&l.weight, lora) {
        // One pass: `g·W + du·A` (no dropout mask to apply to LoRA's part alone).
        (Weight::Panels(w), Some((a, du, None))) if f32_in => w.input_grad_lora(&g, &du, &a)?,
        (w, lora) => {
            let base = match w {
                Weight::Panels(w) if f32_in => w.input_grad(&g)?,
                w => g.broadcast_matmul(&w.matrix(g.dtype())?)?,
            };
            match lora {
                // `(du·A) ⊙ mask` added in one pass, the mask drawn again.
                Some((a, du, Some(d))) => d.add_lowrank(&base, &du, &a)?,
                Some((a, du, None)) => {
                    let dxd = du.matmul(&a)?.reshape(s.x.shape())?;
                    (base + dxd.to_dtype(g.dtype())?)?
                }
                None => base,
            }
        }
    }))
}

/// Everything one layer keeps for its backward.
struct LayerSaved {
    x: Tensor,
    attn_in: Vec<LinSaved>,
    /// q and k per head before their norms, kept only when there are norms (Qwen3,
    /// Gemma 3), [b, h, t, d].
    q_pre: Option<Tensor>,
    k_pre: Option<Tensor>,
    qr: Tensor,
    kx: Tensor,
    vx: Tensor,
    probs: Tensor,
    /// `tanh(scores / cap)` when attention scores are soft-capped.
    capped: Option<Tensor>,
    o: LinSaved,
    /// The attention output before Gemma's post-attention norm (kept only for that norm).
    o_out: Option<Tensor>,
    x1: Tensor,
    mlp_in: Vec<LinSaved>,
    gate_out: Tensor,
    up_out: Tensor,
    down: LinSaved,
    /// The MLP output before Gemma's post-feed-forward norm (kept only for that norm).
    down_out: Option<Tensor>,
}

/// The forward of a projection group (`[q, k, v]` or fused `[qkv]`), split into `widths`.
fn group_forward(
    lins: &[Linear],
    x: &Tensor,
    on: bool,
    seed: impl Fn(u64) -> Option<u64>,
    first: u64,
    widths: &[usize],
) -> Result<(Vec<Tensor>, Vec<LinSaved>)> {
    let mut outs = Vec::with_capacity(lins.len());
    let mut saved = Vec::with_capacity(lins.len());
    for (j, l) in lins.iter().enumerate() {
        let (y, s) = lin_forward(l, x, on, seed(first + j as u64))?;
        outs.push(y);
        saved.push(s);
    }
    Ok((split_last(outs, widths)?, saved))
}

/// `dx` of a projection group from the gradients of its split outputs (`None` unless
/// `want_dx`; the LoRA gradients are always taken).
fn group_backward(
    lins: &[Linear],
    saved: &[LinSaved],
    grads_out: Vec<Tensor>,
    grads: &mut Grads,
    want_dx: bool,
) -> Result<Option<Tensor>> {
    let gs = if lins.len() == 1 && grads_out.len() > 1 {
        vec![Tensor::cat(&grads_out, D::Minus1)?]
    } else {
        grads_out
    };
    if lins.is_empty() {
        candle_core::bail!("a projection group is empty");
    }
    let mut dx: Option<Tensor> = None;
    for ((l, s), g) in lins.iter().zip(saved).zip(&gs) {
        if let Some(d) = lin_grads(l, s, g, grads, want_dx)? {
            dx = Some(match dx {
                Some(acc) => (acc + d)?,
                None => d,
            });
        }
    }
    Ok(dx)
}

/// The fused gated-MLP kernels' name for the activation. Their values have the bits of the
/// autograd forward's (`model::decoder::activate` uses the same kernels), so both paths give
/// identical outputs (DPO's first loss is exactly ln 2 only if policy and reference agree to
/// the bit).
fn gate_of(a: Activation) -> Gate {
    match a {
        Activation::Silu => Gate::Silu,
        Activation::GeluTanh => Gate::GeluTanh,
    }
}

fn norm_opt(x: &Tensor, w: &Option<Tensor>, eps: f64) -> Result<Tensor> {
    match w {
        Some(w) => rms_norm_forward(x, w, eps),
        None => Ok(x.clone()),
    }
}

/// `dx` of [`norm_opt`]: `x` is kept exactly when there is a norm.
fn norm_opt_backward(
    x: &Option<Tensor>,
    w: &Option<Tensor>,
    eps: f64,
    g: &Tensor,
) -> Result<Tensor> {
    match (x, w) {
        (Some(x), Some(w)) => rms_norm_backward(x, w, eps, g),
        _ => Ok(g.clone()),
    }
}

/// `x` when a norm follows it (its backward needs the input), else nothing.
fn keep_for(x: Tensor, w: &Option<Tensor>) -> Option<Tensor> {
    w.as_ref().map(|_| x)
}

fn layer_forward(
    m: &Model,
    i: usize,
    x: &Tensor,
    p: &Prepared,
    seed: Option<u64>,
) -> Result<(Tensor, LayerSaved)> {
    let c = &m.config;
    let l: &Block = &m.layers[i];
    let tb = p.for_block(l);
    let on = m.lora.is_some() && m.switch.is_on();
    let sd = |module: u64| seed.map(|s| module_seed(s, i, module));
    let (b, t, _) = x.dims3()?;
    let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    let eps = c.rms_norm_eps;
    let h1 = rms_norm_forward(x, &l.input_norm, eps)?;
    let (qkv, attn_in) = group_forward(&l.attn_in, &h1, on, sd, 0, &[nh * hd, nkv * hd, nkv * hd])?;
    let heads = |y: &Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
    let (q_pre, k_pre) = (heads(&qkv[0], nh)?, heads(&qkv[1], nkv)?);
    let q = norm_opt(&q_pre, &l.q_norm, eps)?;
    let k = norm_opt(&k_pre, &l.k_norm, eps)?;
    let rope = candle_nn::rotary_emb::rope;
    let qr = rope_partial(&q, &tb.cos, &tb.sin, c.rotary_dim, rope)?;
    let kr = rope_partial(&k, &tb.cos, &tb.sin, c.rotary_dim, rope)?;
    let kx = repeat_kv(&kr, nh / nkv)?.contiguous()?;
    let vx = repeat_kv(&heads(&qkv[2], nkv)?, nh / nkv)?.contiguous()?;
    let raw = bmm(&qr, &kx.t()?)?;
    let (probs, capped) = match c.attn_logit_softcapping {
        Some(cap) => {
            let th = ((raw * c.attention_scale())? / cap)?.tanh()?;
            let scores = (&th * cap)?.broadcast_add(&tb.mask)?;
            (crate::ops::softmax_last_dim_plain(&scores)?, Some(th))
        }
        // Scale, mask and softmax in one pass.
        None => (
            crate::ops::attention_probs(&raw, c.attention_scale(), &tb.mask)?,
            None,
        ),
    };
    let attn = bmm(&probs, &vx)?
        .transpose(1, 2)?
        .reshape((b, t, nh * hd))?;
    let (o_ix, mlp_ix, down_ix) = l.module_index();
    let (o_out, os) = lin_forward(&l.o, &attn, on, sd(o_ix))?;
    let x1 = (x + norm_opt(&o_out, &l.attn_out_norm, eps)?)?;
    let o_out = keep_for(o_out, &l.attn_out_norm);
    let h2 = rms_norm_forward(&x1, &l.post_norm, eps)?;
    let inter = c.intermediate_size;
    let (gu, mlp_in) = group_forward(&l.mlp_in, &h2, on, sd, mlp_ix, &[inter, inter])?;
    let (gate_out, up_out) = (gu[0].contiguous()?, gu[1].contiguous()?);
    let act = crate::ops::gated(&gate_out, &up_out, gate_of(c.activation))?;
    let (down_out, ds) = lin_forward(&l.down, &act, on, sd(down_ix))?;
    let y = (&x1 + norm_opt(&down_out, &l.mlp_out_norm, eps)?)?;
    let down_out = keep_for(down_out, &l.mlp_out_norm);
    Ok((
        y,
        LayerSaved {
            x: x.clone(),
            attn_in,
            q_pre: keep_for(q_pre, &l.q_norm),
            k_pre: keep_for(k_pre, &l.k_norm),
            qr,
            kx,
            vx,
            probs,
            capped,
            o: os,
            o_out,
            x1,
            mlp_in,
            gate_out,
            up_out,
            down: ds,
            down_out,
        },
    ))
}

/// [b, kv·n, t, d] → [b, kv, t, d]: the gradient of `repeat_kv` sums the copies.
fn unrepeat(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    crate::ops::sum_groups(&x.reshape((b, h / n, n, t * d))?)?.reshape((b, h / n, t, d))
}

fn layer_backward(
    m: &Model,
    i: usize,
    s: &LayerSaved,
    gy: &Tensor,
    p: &Prepared,
    grads: &mut Grads,
    want_dx: bool,
) -> Result<Tensor> {
    let c = &m.config;
    let l = &m.layers[i];
    let tb = p.for_block(l);
    let (b, t, _) = s.x.dims3()?;
    let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    let eps = c.rms_norm_eps;
    // MLP
    let d_down = norm_opt_backward(&s.down_out, &l.mlp_out_norm, eps, gy)?;
    let d_act = lin_backward(&l.down, &s.down, &d_down, grads)?;
    let (d_gate, d_up) =
        crate::ops::gated_backward(&s.gate_out, &s.up_out, &d_act, gate_of(c.activation))?;
    let dh2 = group_backward(&l.mlp_in, &s.mlp_in, vec![d_gate, d_up], grads, true)?
        .ok_or_else(|| candle_core::Error::Msg("the MLP's input gradient is missing".into()))?;
    let gx1 = rms_norm_backward_add(&s.x1, &l.post_norm, eps, &dh2, gy)?;
    // Attention
    let d_o = norm_opt_backward(&s.o_out, &l.attn_out_norm, eps, &gx1)?;
    let d_attn = lin_backward(&l.o, &s.o, &d_o, grads)?;
    let d_o = d_attn
        .reshape((b, t, nh, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    // Causal scores: above the diagonal every probability, and so every score gradient, is
    // exactly 0, and the four products leave those terms out.
    let d_probs = bmm_causal(&d_o, &s.vx.t()?, Causal::LowerOut)?;
    let d_vx = bmm_causal(&s.probs.t()?, &d_o, Causal::UpperLhs)?;
    let d_scores = match &s.capped {
        // d/ds cap·tanh(s/cap) = 1 − tanh²
        Some(th) => {
            ((softmax_backward(&s.probs, &d_probs)? * th.sqr()?.affine(-1.0, 1.0)?)?
                * c.attention_scale())?
        }
        None => softmax_backward_scaled(&s.probs, &d_probs, c.attention_scale())?,
    };
    let d_qr = bmm_causal(&d_scores, &s.kx, Causal::LowerLhs)?;
    let d_kx = bmm_causal(&d_scores.t()?, &s.qr, Causal::UpperLhs)?;
    let n = nh / nkv;
    let d_kr = unrepeat(&d_kx, n)?;
    let d_v = unrepeat(&d_vx, n)?;
    let rope = candle_nn::rotary_emb::rope;
    let d_q = rope_partial(&d_qr.contiguous()?, &tb.cos, &tb.nsin, c.rotary_dim, rope)?;
    let d_k = rope_partial(&d_kr.contiguous()?, &tb.cos, &tb.nsin, c.rotary_dim, rope)?;
    let d_q = norm_opt_backward(&s.q_pre, &l.q_norm, eps, &d_q)?;
    let d_k = norm_opt_backward(&s.k_pre, &l.k_norm, eps, &d_k)?;
    let merge = |y: Tensor, heads: usize| y.transpose(1, 2)?.reshape((b, t, heads * hd));
    let dh1 = group_backward(
        &l.attn_in,
        &s.attn_in,
        vec![merge(d_q, nh)?, merge(d_k, nkv)?, merge(d_v, nkv)?],
        grads,
        want_dx,
    )?;
    match dh1 {
        Some(dh1) => rms_norm_backward_add(&s.x, &l.input_norm, eps, &dh1, &gx1),
        // The first layer: its input's gradient has no use, so only the residual's is
        // returned.
        None => Ok(gx1),
    }
}

/// One chunk of the head's rows: softmax over the vocabulary and the targets' log-probs.
/// f32 on the CPU takes one vectorized pass per row (`ops::fastmath::softmax_rows`), kept
/// as a host vector the gradient is then written into; elsewhere candle's log-softmax.
struct HeadChunk {
    probs: ChunkProbs,
    target_logp: Vec<f32>,
    /// The soft cap's derivative, when logits are capped.
    dcap: Option<Tensor>,
    device: candle_core::Device,
}

enum ChunkProbs {
    Host { probs: Vec<f32>, vocab: usize },
    Device(Tensor),
}

impl HeadChunk {
    fn new(logits: &Tensor, targets: &[u32], dcap: Option<Tensor>) -> Result<Self> {
        let device = logits.device().clone();
        let (rows, vocab) = logits.dims2()?;
        if device.is_cpu() {
            let logits = logits.flatten_all()?.to_vec1::<f32>()?;
            return Self::on_host(logits, vocab, targets, dcap, device);
        }
        let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let tgt = Tensor::new(targets, &device)?.unsqueeze(1)?;
        let target_logp = logp.gather(&tgt, 1)?.flatten_all()?.to_vec1::<f32>()?;
        debug_assert_eq!(target_logp.len(), rows);
        Ok(HeadChunk {
            probs: ChunkProbs::Device(logp.exp()?),
            target_logp,
            dcap,
            device,
        })
    }

    /// A chunk from host logits (rows of `vocab`), turned into probabilities in place.
    fn on_host(
        mut probs: Vec<f32>,
        vocab: usize,
        targets: &[u32],
        dcap: Option<Tensor>,
        device: candle_core::Device,
    ) -> Result<Self> {
        if probs.len() != targets.len() * vocab {
            candle_core::bail!(
                "head: {} logits for {} targets over {vocab} tokens",
                probs.len(),
                targets.len()
            );
        }
        let picked: Vec<f32> = targets
            .iter()
            .enumerate()
            .map(|(r, &t)| probs[r * vocab + t as usize])
            .collect();
        let lse = crate::ops::fastmath::softmax_rows(&mut probs, vocab);
        let target_logp = picked.iter().zip(&lse).map(|(x, l)| x - l).collect();
        Ok(HeadChunk {
            probs: ChunkProbs::Host { probs, vocab },
            target_logp,
            dcap,
            device,
        })
    }

    /// `d logits = (softmax − onehot) · (−w)` per row, for targets with derivatives `w`.
    fn d_logits(self, targets: &[u32], weights: &[f32]) -> Result<Tensor> {
        let rows = targets.len();
        let d = match self.probs {
            ChunkProbs::Host { mut probs, vocab } => {
                probs
                    .par_chunks_mut(vocab.max(1))
                    .zip(targets.par_iter().zip(weights))
                    .for_each(|(row, (&t, &w))| {
                        crate::ops::fastmath::scale_in_place(row, -w);
                        row[t as usize] += w;
                    });
                Tensor::from_vec(probs, (rows, vocab), &self.device)?
            }
            ChunkProbs::Device(p) => {
                let tgt = Tensor::new(targets, &self.device)?.unsqueeze(1)?;
                let minus = Tensor::full(-1f32, (rows, 1), &self.device)?;
                let scale: Vec<f32> = weights.iter().map(|w| -w).collect();
                let scale = Tensor::from_vec(scale, (rows, 1), &self.device)?;
                p.scatter_add(&tgt, &minus, 1)?.broadcast_mul(&scale)?
            }
        };
        match self.dcap {
            Some(c) => d * c,
            None => Ok(d),
        }
    }
}

/// Elements of a quantized head dequantized at once (16M f32: 64 MB).
const HEAD_PANEL_ELEMS: usize = 1 << 24;

/// The LM head's weight as the head's forward and backward use it: a dense matrix as it
/// is, a quantized one a panel of vocabulary rows at a time, so that a quantized head is
/// never dequantized whole (an 8B model's is 2 GB in f32, more than its quantized layers'
/// largest step-time copy by far).
enum HeadWeight<'a> {
    Dense(Tensor),
    /// A dense head packed for both products ([`crate::ops::panels`]).
    Frozen(&'a std::sync::Arc<crate::ops::panels::FrozenPanels>),
    Panels {
        weight: &'a Weight,
        dtype: DType,
        vocab: usize,
        rows: usize,
    },
}

impl<'a> HeadWeight<'a> {
    fn new(w: &'a Weight, dtype: DType) -> Result<Self> {
        Ok(match w {
            Weight::Dense(_) => HeadWeight::Dense(w.matrix(dtype)?),
            Weight::Panels(p) if dtype == DType::F32 => HeadWeight::Frozen(p),
            // A GGUF weight off the CPU cannot be sliced by rows: dequantized once, as before.
            Weight::Quantized(q) if !q.device().is_cpu() => HeadWeight::Dense(w.matrix(dtype)?),
            _ => {
                let (vocab, hidden) = w.dims()?;
                HeadWeight::Panels {
                    weight: w,
                    dtype,
                    vocab,
                    rows: (HEAD_PANEL_ELEMS / hidden.max(1)).clamp(1, vocab.max(1)),
                }
            }
        })
    }

    /// The vocabulary's row ranges, a panel each.
    fn panels(vocab: usize, rows: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        (0..vocab)
            .step_by(rows)
            .map(move |s| s..(s + rows).min(vocab))
    }

    /// `hn · Wᵀ`: the logits [n, vocab].
    fn logits(&self, hn: &Tensor) -> Result<Tensor> {
        match self {
            HeadWeight::Dense(w) => hn.matmul(&w.t()?),
            HeadWeight::Frozen(p) => p.forward(hn),
            HeadWeight::Panels {
                weight,
                dtype,
                vocab,
                rows,
            } => {
                let parts = Self::panels(*vocab, *rows)
                    .map(|r| hn.matmul(&weight.rows_matrix(r, *dtype)?.t()?))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&parts, 1)
            }
        }
    }

    /// `d_logits · W`: the gradient of the head's input [n, hidden].
    fn input_grad(&self, d_logits: &Tensor) -> Result<Tensor> {
        match self {
            HeadWeight::Dense(w) => d_logits.matmul(w),
            HeadWeight::Frozen(p) => p.input_grad(d_logits),
            HeadWeight::Panels {
                weight,
                dtype,
                vocab,
                rows,
            } => {
                let mut sum: Option<Tensor> = None;
                for r in Self::panels(*vocab, *rows) {
                    let part = d_logits
                        .narrow(1, r.start, r.end - r.start)?
                        .matmul(&weight.rows_matrix(r, *dtype)?)?;
                    sum = Some(match sum {
                        Some(s) => (s + part)?,
                        None => part,
                    });
                }
                sum.ok_or_else(|| candle_core::Error::Msg("the head has no rows".into()))
            }
        }
    }
}

/// The head over the targets of `labels` (shifted, as `causal_lm_loss`): the targets'
/// log-probs go to the objective's `head`, whose derivatives become `dh` for the last hidden
/// state (`d logits = -w (onehot - softmax)` for a target with derivative `w`). Target rows
/// are taken `model::compute::head_chunk_rows` at a time: a first pass gathers their log-probs for the
/// objective, a second recomputes each chunk's logits for its gradient (one pass when they
/// all fit).
fn head_backward(
    m: &Model,
    h: &Tensor,
    labels: &[Vec<i64>],
    temperature: f64,
    head: &mut Head,
) -> Result<(f64, usize, Tensor)> {
    let (b, t, hidden) = h.dims3()?;
    let (rows, targets) = crate::model::decoder::target_positions(labels, b, t);
    let n = rows.len();
    if n == 0 {
        return Ok((0.0, 0, h.zeros_like()?));
    }
    let dev = h.device();
    let row_of: Vec<usize> = rows.iter().map(|r| *r as usize / t).collect();
    let rows_t = Tensor::new(rows, dev)?;
    let flat = h.reshape((b * t, hidden))?;
    let picked = flat.index_select(&rows_t, 0)?;
    let hn = rms_norm_forward(&picked, &m.norm, m.config.rms_norm_eps)?;
    let w = HeadWeight::new(&m.lm_head, hn.dtype())?;
    let chunk = crate::model::compute::head_chunk_rows(m.config.vocab_size);
    let cap = m.config.final_logit_softcapping;
    // A chunk's softmax, its targets' log-probs (no underflow for confident models), and
    // with soft-capped logits the cap's derivative `1 − tanh²`.
    let chunk_probs = |start: usize, len: usize| -> Result<HeadChunk> {
        let tgt = &targets[start..start + len];
        if let (HeadWeight::Frozen(p), None, true) = (&w, cap, temperature == 1.0) {
            // The packed head's logits straight into the softmax pass.
            let logits = p.forward_host(&hn.narrow(0, start, len)?)?;
            return HeadChunk::on_host(logits, m.config.vocab_size, tgt, None, hn.device().clone());
        }
        let raw = w.logits(&hn.narrow(0, start, len)?)?.to_dtype(DType::F32)?;
        let (logits, dcap) = match cap {
            Some(c) => {
                let th = (raw / c)?.tanh()?;
                ((&th * c)?, Some(th.sqr()?.affine(-1.0, 1.0)?))
            }
            None => (raw, None),
        };
        // Log-probs at a temperature: of `logits / T`, whose derivative carries `1 / T`.
        let (logits, dcap) = if temperature == 1.0 {
            (logits, dcap)
        } else {
            let inv = 1.0 / temperature;
            let dcap = match dcap {
                Some(d) => d.affine(inv, 0.0)?,
                None => Tensor::full(inv as f32, logits.dims2()?, logits.device())?,
            };
            (logits.affine(inv, 0.0)?, Some(dcap))
        };
        HeadChunk::new(&logits, tgt, dcap)
    };
    let starts: Vec<(usize, usize)> = (0..n)
        .step_by(chunk)
        .map(|s| (s, chunk.min(n - s)))
        .collect();
    let mut target_logp = Vec::with_capacity(n);
    let mut kept = None;
    for &(start, len) in &starts {
        let c = chunk_probs(start, len)?;
        target_logp.extend_from_slice(&c.target_logp);
        if starts.len() == 1 {
            kept = Some(c);
        }
    }
    let (loss, weights) = head(&TargetLogps {
        logp: target_logp,
        row: row_of,
        rows: b,
    })?;
    let mut d_hn_parts = Vec::with_capacity(starts.len());
    for &(start, len) in &starts {
        let c = match kept.take() {
            Some(k) => k,
            None => chunk_probs(start, len)?,
        };
        let d_logits = c
            .d_logits(&targets[start..start + len], &weights[start..start + len])?
            .to_dtype(hn.dtype())?;
        d_hn_parts.push(w.input_grad(&d_logits)?);
    }
    let d_hn = Tensor::cat(&d_hn_parts, 0)?;
    let d_picked = rms_norm_backward(&picked, &m.norm, m.config.rms_norm_eps, &d_hn)?;
    let dh = flat
        .zeros_like()?
        .index_add(&rows_t, &d_picked, 0)?
        .reshape((b, t, hidden))?;
    Ok((loss, n, dh))
}

/// Forward and backward of one micro-batch without autograd, the objective's `head` turning
/// target log-probs into the loss and its derivatives. With `checkpointing`, only each
/// layer's input is kept and the layer is recomputed in the backward.
pub fn forward_backward_with(
    model: &Model,
    mb: &MicroBatch,
    args: &StepArgs,
    grads: &mut Grads,
    head: &mut Head,
) -> Result<MicroLoss> {
    let StepArgs {
        dropout_seed,
        checkpointing,
        temperature,
        ..
    } = *args;
    let ids = Tensor::new(mb.ids.clone(), &model.device)?;
    let (b, t) = ids.dims2()?;
    let p = model.prepare(b, t, &mb.batch)?;
    let mut h = model.embed(&ids)?;
    let mut saved: Vec<Option<LayerSaved>> = Vec::with_capacity(model.layers.len());
    let mut inputs: Vec<Tensor> = Vec::new();
    for i in 0..model.layers.len() {
        let (y, s) = layer_forward(model, i, &h, &p, dropout_seed)?;
        if checkpointing {
            inputs.push(h);
            saved.push(None);
        } else {
            saved.push(Some(s));
        }
        h = y;
    }
    let (loss, n, mut g) = head_backward(model, &h, &mb.labels, temperature, head)?;
    if n == 0 {
        return Ok(MicroLoss { loss, targets: 0 });
    }
    for i in (0..model.layers.len()).rev() {
        let s = match saved[i].take() {
            Some(s) => s,
            None => layer_forward(model, i, &inputs[i], &p, dropout_seed)?.1,
        };
        // Layer 0's input is the frozen embedding's output: no gradient is needed there.
        g = layer_backward(model, i, &s, &g, &p, grads, i > 0)?;
    }
    Ok(MicroLoss { loss, targets: n })
}
