//! A hand-written backward for the decoder, used by the training step instead of candle's
//! autograd whenever the base is dense. Autograd starts every node's gradient as a zero
//! tensor and adds into it, and records a graph for every reshape; here each layer keeps
//! only the activations its backward needs and computes `dx` and the LoRA gradients
//! directly. The loss and LM head touch only the positions that have a target. Checked
//! against the autograd path (tests/it/train.rs), which is itself checked against torch.

use super::grads::Grads;
use super::micro::{Head, MicroLoss, StepArgs, TargetLogps};
use crate::batch::MicroBatch;
use crate::lora::{dropout_mask, module_seed};
use crate::model::llama::{repeat_kv, Block, Linear, Model, Prepared};
use crate::ops::{rms_norm_backward, rms_norm_forward, softmax_backward};
use candle_core::{DType, Result, Tensor, D};

/// `dy` in the base product's order from `g` in the Hugging Face order `y_hf = y[.., perm]`.
fn unpermute(g: &Tensor, perm: &Tensor) -> Result<Tensor> {
    g.index_select(&crate::model::llama::inverse_perm(perm)?, D::Minus1)
}

/// What a projection keeps for its backward.
struct LinSaved {
    x: Tensor,
    /// LoRA: the (dropped-out) f32 input, `u = x_d Aᵀ`, and the dropout mask.
    lora: Option<(Tensor, Tensor, Option<Tensor>)>,
}

fn lin_forward(
    l: &Linear,
    x: &Tensor,
    lora_on: bool,
    seed: Option<u64>,
) -> Result<(Tensor, LinSaved)> {
    let w = l.weight.matrix(x.dtype())?;
    let mut y = x.broadcast_matmul(&w.t()?)?;
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
    if let (Some(p), true) = (&l.lora, lora_on) {
        let xf = x.to_dtype(DType::F32)?;
        let (xd, mask) = match seed {
            Some(s) if p.dropout > 0.0 => {
                let m = dropout_mask(&xf, p.dropout, s)?;
                ((&xf * &m)?, Some(m))
            }
            _ => (xf, None),
        };
        // Detached views of the parameters: no autograd graph is recorded on this path.
        let (a, bm) = (p.a.as_tensor().detach(), p.b.as_tensor().detach());
        let u = xd.broadcast_matmul(&a.t()?)?;
        // Scale the rank-r product, not the [N, out] one.
        let delta = (&u * p.scale)?.broadcast_matmul(&bm.t()?)?;
        y = (y + delta.to_dtype(x.dtype())?)?;
        saved.lora = Some((xd, u, mask));
    }
    Ok((y, saved))
}

/// `dx` for upstream `g`; LoRA gradients go into `grads`.
fn lin_backward(l: &Linear, s: &LinSaved, g: &Tensor, grads: &mut Grads) -> Result<Tensor> {
    let w = l.weight.matrix(g.dtype())?;
    let g = g.contiguous()?;
    let mut dx = match &l.out_perm {
        Some(p) => unpermute(&g, p)?.contiguous()?.broadcast_matmul(&w)?,
        None => g.broadcast_matmul(&w)?,
    };
    if let (Some(p), Some((xd, u, mask))) = (&l.lora, &s.lora) {
        let (r, inp, out) = (u.dim(D::Minus1)?, xd.dim(D::Minus1)?, g.dim(D::Minus1)?);
        let gf = g.to_dtype(DType::F32)?.reshape(((), out))?;
        let u2 = u.reshape(((), r))?;
        let x2 = xd.reshape(((), inp))?;
        grads.add(&p.b, (gf.t()?.matmul(&u2)? * p.scale)?)?;
        let (a, bm) = (p.a.as_tensor().detach(), p.b.as_tensor().detach());
        let du = (gf.matmul(&bm)? * p.scale)?;
        grads.add(&p.a, du.t()?.matmul(&x2)?)?;
        let mut dxd = du.matmul(&a)?.reshape(s.x.shape())?;
        if let Some(m) = mask {
            dxd = (dxd * m)?;
        }
        dx = (dx + dxd.to_dtype(g.dtype())?)?;
    }
    Ok(dx)
}

/// Everything one layer keeps for its backward.
struct LayerSaved {
    x: Tensor,
    q: LinSaved,
    k: LinSaved,
    v: LinSaved,
    qr: Tensor,
    kx: Tensor,
    vx: Tensor,
    probs: Tensor,
    o: LinSaved,
    x1: Tensor,
    gate: LinSaved,
    up: LinSaved,
    gate_out: Tensor,
    up_out: Tensor,
    down: LinSaved,
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
    let on = m.lora.is_some() && m.switch.is_on();
    let sd = |module: u64| seed.map(|s| module_seed(s, i, module));
    let (b, t, _) = x.dims3()?;
    let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    let h1 = rms_norm_forward(x, &l.input_norm, c.rms_norm_eps)?;
    let (q, qs) = lin_forward(&l.q, &h1, on, sd(0))?;
    let (k, ks) = lin_forward(&l.k, &h1, on, sd(1))?;
    let (v, vs) = lin_forward(&l.v, &h1, on, sd(2))?;
    let heads = |y: Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
    let qr = candle_nn::rotary_emb::rope(&heads(q, nh)?, &p.cos, &p.sin)?;
    let kr = candle_nn::rotary_emb::rope(&heads(k, nkv)?, &p.cos, &p.sin)?;
    let kx = repeat_kv(&kr, nh / nkv)?.contiguous()?;
    let vx = repeat_kv(&heads(v, nkv)?, nh / nkv)?.contiguous()?;
    let scale = 1.0 / (hd as f64).sqrt();
    let scores = (qr.matmul(&kx.t()?.contiguous()?)? * scale)?.broadcast_add(&p.mask)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let attn = probs
        .matmul(&vx)?
        .transpose(1, 2)?
        .reshape((b, t, nh * hd))?;
    let (o, os) = lin_forward(&l.o, &attn, on, sd(3))?;
    let x1 = (x + o)?;
    let h2 = rms_norm_forward(&x1, &l.post_norm, c.rms_norm_eps)?;
    let (gate_out, gs) = lin_forward(&l.gate, &h2, on, sd(4))?;
    let (up_out, us) = lin_forward(&l.up, &h2, on, sd(5))?;
    let act = (candle_nn::ops::silu(&gate_out)? * &up_out)?;
    let (down, ds) = lin_forward(&l.down, &act, on, sd(6))?;
    let y = (&x1 + down)?;
    Ok((
        y,
        LayerSaved {
            x: x.clone(),
            q: qs,
            k: ks,
            v: vs,
            qr,
            kx,
            vx,
            probs,
            o: os,
            x1,
            gate: gs,
            up: us,
            gate_out,
            up_out,
            down: ds,
        },
    ))
}

/// [b, kv·n, t, d] → [b, kv, t, d]: the gradient of `repeat_kv` sums the copies.
fn unrepeat(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    x.reshape((b, h / n, n, t, d))?.sum(2)
}

fn layer_backward(
    m: &Model,
    i: usize,
    s: &LayerSaved,
    gy: &Tensor,
    p: &Prepared,
    nsin: &Tensor,
    grads: &mut Grads,
) -> Result<Tensor> {
    let c = &m.config;
    let l = &m.layers[i];
    let (b, t, _) = s.x.dims3()?;
    let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    // MLP
    let d_act = lin_backward(&l.down, &s.down, gy, grads)?;
    let sig = candle_nn::ops::sigmoid(&s.gate_out)?;
    let silu = (&s.gate_out * &sig)?;
    let d_up = (&d_act * &silu)?;
    // silu'(z) = σ(z)(1 + z(1 − σ(z)))
    let dsilu = (&sig * ((&s.gate_out * sig.affine(-1.0, 1.0)?)? + 1.0)?)?;
    let d_gate = ((&d_act * &s.up_out)? * dsilu)?;
    let dh2 = (lin_backward(&l.gate, &s.gate, &d_gate, grads)?
        + lin_backward(&l.up, &s.up, &d_up, grads)?)?;
    let gx1 = (gy + rms_norm_backward(&s.x1, &l.post_norm, c.rms_norm_eps, &dh2)?)?;
    // Attention
    let d_attn = lin_backward(&l.o, &s.o, &gx1, grads)?;
    let d_o = d_attn
        .reshape((b, t, nh, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    let d_probs = d_o.matmul(&s.vx.t()?.contiguous()?)?;
    let d_vx = s.probs.t()?.contiguous()?.matmul(&d_o)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let d_scores = (softmax_backward(&s.probs, &d_probs)? * scale)?;
    let d_qr = d_scores.matmul(&s.kx)?;
    let d_kx = d_scores.t()?.contiguous()?.matmul(&s.qr)?;
    let n = nh / nkv;
    let d_kr = unrepeat(&d_kx, n)?;
    let d_v = unrepeat(&d_vx, n)?;
    let merge = |y: Tensor, heads: usize| y.transpose(1, 2)?.reshape((b, t, heads * hd));
    let d_q = merge(
        candle_nn::rotary_emb::rope(&d_qr.contiguous()?, &p.cos, nsin)?,
        nh,
    )?;
    let d_k = merge(
        candle_nn::rotary_emb::rope(&d_kr.contiguous()?, &p.cos, nsin)?,
        nkv,
    )?;
    let d_v = merge(d_v, nkv)?;
    let dh1 = ((lin_backward(&l.q, &s.q, &d_q, grads)? + lin_backward(&l.k, &s.k, &d_k, grads)?)?
        + lin_backward(&l.v, &s.v, &d_v, grads)?)?;
    gx1 + rms_norm_backward(&s.x, &l.input_norm, c.rms_norm_eps, &dh1)?
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
    head: &mut Head,
) -> Result<(f64, usize, Tensor)> {
    let (b, t, hidden) = h.dims3()?;
    let (rows, targets) = crate::model::llama::target_positions(labels, b, t);
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
    let w = m.lm_head.matrix(hn.dtype())?;
    let tgt_all = Tensor::new(targets, dev)?.unsqueeze(1)?;
    let chunk = crate::model::compute::head_chunk_rows(m.config.vocab_size);
    // Log-softmax of a chunk of rows (no underflow for confident models) and its targets.
    let log_probs = |start: usize, len: usize| -> Result<(Tensor, Tensor)> {
        let logits = hn
            .narrow(0, start, len)?
            .matmul(&w.t()?)?
            .to_dtype(DType::F32)?;
        Ok((
            candle_nn::ops::log_softmax(&logits, D::Minus1)?,
            tgt_all.narrow(0, start, len)?,
        ))
    };
    let starts: Vec<(usize, usize)> = (0..n)
        .step_by(chunk)
        .map(|s| (s, chunk.min(n - s)))
        .collect();
    let mut target_logp = Vec::with_capacity(n);
    let mut kept = None;
    for &(start, len) in &starts {
        let (logp, tgt) = log_probs(start, len)?;
        target_logp.extend(logp.gather(&tgt, 1)?.flatten_all()?.to_vec1::<f32>()?);
        if starts.len() == 1 {
            kept = Some((logp, tgt));
        }
    }
    let (loss, weights) = head(&TargetLogps {
        logp: target_logp,
        row: row_of,
        rows: b,
    })?;
    let mut d_hn_parts = Vec::with_capacity(starts.len());
    for &(start, len) in &starts {
        let (logp, tgt) = match kept.take() {
            Some(k) => k,
            None => log_probs(start, len)?,
        };
        let minus = Tensor::full(-1f32, (len, 1), dev)?;
        // (softmax - onehot) · (-w) per target row.
        let scale = Tensor::from_vec(
            weights[start..start + len]
                .iter()
                .map(|w| -w)
                .collect::<Vec<f32>>(),
            (len, 1),
            dev,
        )?;
        let d_logits = logp
            .exp()?
            .scatter_add(&tgt, &minus, 1)?
            .broadcast_mul(&scale)?
            .to_dtype(hn.dtype())?;
        d_hn_parts.push(d_logits.matmul(&w)?);
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
        ..
    } = *args;
    let ids = Tensor::new(mb.ids.clone(), &model.device)?;
    let (b, t) = ids.dims2()?;
    let p = model.prepare(b, t, &mb.batch)?;
    let nsin = p.sin.neg()?;
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
    let (loss, n, mut g) = head_backward(model, &h, &mb.labels, head)?;
    if n == 0 {
        return Ok(MicroLoss { loss, targets: 0 });
    }
    for i in (0..model.layers.len()).rev() {
        let s = match saved[i].take() {
            Some(s) => s,
            None => layer_forward(model, i, &inputs[i], &p, dropout_seed)?.1,
        };
        g = layer_backward(model, i, &s, &g, &p, &nsin, grads)?;
    }
    Ok(MicroLoss { loss, targets: n })
}
