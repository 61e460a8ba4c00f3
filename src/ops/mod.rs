//! Differentiable building blocks for training on candle.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` record no backward and silently
//! cut the gradient; a plain `matmul` with a frozen weight computes and keeps a weight
//! gradient nobody needs. Each op here runs the fast forward kernel on a detached input and
//! splices in an analytic backward (see [`with_grad`]). Every backward is checked against
//! finite differences in f64 (tests below).

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, DType, Layout, MetalStorage, Result, Shape, Tensor, D,
};
use rayon::prelude::*;
use std::sync::Arc;

pub mod bmm;
pub mod dropout;
pub mod fastmath;
#[cfg(target_arch = "x86_64")]
mod kquant;
pub mod lowrank;
pub mod panels;
pub mod qmatmul;
pub mod qpacked;

/// Runs `f` over a contiguous CPU f32 tensor's elements without copying them; `None` for
/// any other tensor (another dtype or device, a strided view), which the caller copies or
/// refuses. Large matrices (an 8B head: 2 GB) are read in place.
pub fn borrow_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<Option<R>> {
    borrow_f32s(&[t], |s| f(s[0]))
}

/// [`borrow_f32`] for several tensors at once: `None` unless every one is a contiguous CPU
/// f32 tensor.
pub fn borrow_f32s<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<Option<R>> {
    if ts.iter().any(|t| t.dtype() != DType::F32) {
        return Ok(None);
    }
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        let candle_core::Storage::Cpu(cpu) = &**storage else {
            return Ok(None);
        };
        let Some((from, to)) = layout.contiguous_offsets() else {
            return Ok(None);
        };
        slices.push(&cpu.as_slice::<f32>()?[from..to]);
    }
    f(&slices).map(Some)
}

/// Runs `f` on a rayon worker thread. Compute made of many small parallel ops (a decode
/// step, a training micro-batch) then shares the calling thread with the pool instead of
/// parking it and waking a worker for every op: measured, decode 54 → 71 tok/s and the
/// bench-tiny SFT step +20% on 2 cores. `f` must not block on work queued to the pool
/// from elsewhere.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::join(f, || ()).0
    }
}

type BwdFn = dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync;

/// An op whose forward is a precomputed `y` and whose backward is `bwd(x, y, dy)`.
struct Splice {
    name: &'static str,
    bwd: Arc<BwdFn>,
}

/// A strided copy into fresh storage (`try_clone` would ignore the layout).
fn copy_storage<S: BackendStorage>(s: &S, l: &Layout) -> Result<S>
where
    S::Device: BackendDevice<Storage = S>,
{
    // SAFETY: every element of the new buffer is written by `copy_strided_src` before use.
    let mut dst = unsafe { s.device().alloc_uninit(l.shape(), s.dtype())? };
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok(dst)
}

impl CustomOp2 for Splice {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((copy_storage(s2, l2)?, l2.shape().clone()))
    }
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        Ok((copy_storage(s2, l2)?, l2.shape().clone()))
    }
    fn metal_fwd(
        &self,
        _: &MetalStorage,
        _: &Layout,
        s2: &MetalStorage,
        l2: &Layout,
    ) -> Result<(MetalStorage, Shape)> {
        Ok((copy_storage(s2, l2)?, l2.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        _y: &Tensor,
        res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some((self.bwd)(x, res, g)?), None))
    }
}

/// Returns `y` (computed from `x` by any kernel) as a tensor whose gradient flows back to `x`
/// through `bwd(x, y, dy)`.
pub fn with_grad(
    name: &'static str,
    x: &Tensor,
    y: &Tensor,
    bwd: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !x.track_op() {
        // Nothing records a graph (inference, the hand-written backward): no splice, no copy.
        return Ok(y.clone());
    }
    x.apply_op2(
        &y.detach(),
        Splice {
            name,
            bwd: Arc::new(bwd),
        },
    )
}

/// `x · wᵀ` for a frozen weight `w` of shape [out, in]: the gradient reaches `x` only, so no
/// weight-sized gradient is ever computed or held.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let y = x.detach().broadcast_matmul(&w.t()?)?;
    let w = w.clone();
    with_grad("frozen-linear", x, &y, move |_x, _y, g| {
        g.contiguous()?.broadcast_matmul(&w)
    })
}

/// Whether `TUNELAB_QMATMUL` is set, read once: this sits in every quantized matmul.
fn approximate_qmatmul() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TUNELAB_QMATMUL").is_some())
}

/// `x · Wᵀ` for a frozen quantized base (QLoRA, GGUF): W stays quantized in memory and is
/// dequantized on the fly, forward and backward (`dx = dy · dequant(W)`); nothing weight-sized
/// is kept between calls.
pub fn quantized_linear(x: &Tensor, w: &Arc<QTensor>) -> Result<Tensor> {
    let xd = x.detach().contiguous()?;
    // candle's quantized kernels quantize the activations to 8 bits, which moves SmolLM2's
    // logits by ~0.1 and flips greedy answers; dequantizing per call is exact (the weights
    // stay quantized in memory). TUNELAB_QMATMUL=1 opts into the faster approximate kernel.
    let y = if let Some(y) = qmatmul::matmul(&xd, w)? {
        y
    } else if approximate_qmatmul() {
        let qm = QMatMul::from_arc(w.clone())?;
        candle_core::Module::forward(&qm, &xd)?
    } else {
        xd.broadcast_matmul(&w.dequantize(x.device())?.to_dtype(xd.dtype())?.t()?)?
    };
    let w = w.clone();
    with_grad("quantized-linear", x, &y, move |x, _y, g| {
        let dense = w.dequantize(x.device())?.to_dtype(g.dtype())?;
        g.contiguous()?.broadcast_matmul(&dense)
    })
}

/// `x · Wᵀ` for a GGUF weight packed for generation ([`qpacked`]), with the dense product as
/// its backward.
pub fn packed_linear(x: &Tensor, p: &Arc<qpacked::Packed>) -> Result<Tensor> {
    let xd = x.detach().contiguous()?;
    let y = qpacked::matmul(&xd, p)?.to_dtype(x.dtype())?;
    let p = p.clone();
    with_grad("packed-linear", x, &y, move |x, _y, g| {
        let dense = p.dequantize(g.dtype())?.to_device(x.device())?;
        g.contiguous()?.broadcast_matmul(&dense)
    })
}

/// `x · Wᵀ` for a frozen weight held in microkernel panels ([`panels`]), forward and
/// backward without packing; another dtype or device goes through the dense matrix.
pub fn panel_linear(x: &Tensor, p: &Arc<panels::FrozenPanels>) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        let w = p.dense()?.to_dtype(x.dtype())?.to_device(x.device())?;
        return frozen_linear(x, &w);
    }
    let y = p.forward(&x.detach())?;
    let p = p.clone();
    with_grad("panel-linear", x, &y, move |_x, _y, g| p.input_grad(g))
}

/// RMSNorm with a frozen weight: `x / sqrt(mean(x²) + eps) · alpha`, computed in f32.
pub fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    let xd = x.detach().contiguous()?;
    // The fused kernel has no f64 path; f64 (the finite-difference checks) uses the primitive one.
    let y = if x.dtype() == DType::F64 {
        candle_nn::ops::rms_norm_slow(&xd, alpha, eps as f32)?
    } else {
        candle_nn::ops::rms_norm(&xd, alpha, eps as f32)?
    };
    let alpha = alpha.clone();
    with_grad("rms-norm", x, &y, move |x, _y, g| {
        rms_norm_backward(x, &alpha, eps, g)
    })
}

/// The fused RMS norm forward alone (no gradient bookkeeping).
pub fn rms_norm_forward(x: &Tensor, alpha: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::ops::rms_norm(&x.contiguous()?, alpha, eps as f32)
}

/// `dx` of `y = x / rms(x) · alpha` for upstream `g` (computed in f32, or f64 for f64).
pub fn rms_norm_backward(x: &Tensor, alpha: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    if let Some(dx) = rms_norm_backward_host(x, alpha, eps, g, None)? {
        return Ok(dx);
    }
    rms_norm_backward_ops(x, alpha, eps, g)
}

/// `res + dx` of [`rms_norm_backward`]: a residual's gradient joins the norm's in its pass.
pub fn rms_norm_backward_add(
    x: &Tensor,
    alpha: &Tensor,
    eps: f64,
    g: &Tensor,
    res: &Tensor,
) -> Result<Tensor> {
    if let Some(dx) = rms_norm_backward_host(x, alpha, eps, g, Some(res))? {
        return Ok(dx);
    }
    res + rms_norm_backward_ops(x, alpha, eps, g)?
}

/// [`rms_norm_backward`] as one parallel pass over rows ([`fastmath::rms_norm_backward`]) for
/// f32 on the CPU; `None` for anything else.
fn rms_norm_backward_host(
    x: &Tensor,
    alpha: &Tensor,
    eps: f64,
    g: &Tensor,
    res: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if x.dims() != g.dims() || res.is_some_and(|r| r.dims() != x.dims()) {
        return Ok(None);
    }
    if alpha.elem_count() != x.dim(D::Minus1)? {
        candle_core::bail!(
            "rms-norm backward: a weight of {} for rows of {}",
            alpha.elem_count(),
            x.dim(D::Minus1)?
        );
    }
    let mut ts = vec![x, alpha, g];
    ts.extend(res);
    on_host(&ts, |s| {
        let res: &[f32] = s.get(3).copied().unwrap_or(&[]);
        fastmath::rms_norm_backward(s[0], s[1], s[2], res, eps as f32)
    })?
    .map(|v| Tensor::from_vec(v, x.shape(), x.device()))
    .transpose()
}

/// [`rms_norm_backward`] by tensor ops (any dtype and device).
fn rms_norm_backward_ops(x: &Tensor, alpha: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)? as f64;
    let dt = x.dtype();
    let work = if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let x = x.to_dtype(work)?;
    let (g, a) = (g.to_dtype(work)?, alpha.to_dtype(work)?);
    let r = ((x.sqr()?.sum_keepdim(D::Minus1)? / d)? + eps)?
        .sqrt()?
        .recip()?;
    let ga = g.broadcast_mul(&a)?;
    let dot = (ga.mul(&x)?.sum_keepdim(D::Minus1)? / d)?;
    (ga.broadcast_mul(&r)? - x.broadcast_mul(&dot.broadcast_mul(&r.powf(3.0)?)?)?)?.to_dtype(dt)
}

/// Rotary embedding in the HF (rotate-half) layout. `x` is [b, heads, t, d]; `cos` and `sin`
/// are [t, d/2] or [b, t, d/2] (per-example positions). A rotation's backward is the rotation
/// by the negative angle.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, cos, sin)?;
    let (cos, nsin) = (cos.clone(), sin.neg()?);
    with_grad("rope", x, &y, move |_x, _y, g| {
        candle_nn::rotary_emb::rope(&g.contiguous()?, &cos, &nsin)
    })
}

/// Whether `x` takes the vectorized CPU paths of [`fastmath`]: f32 on the CPU.
fn host_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// `f` over the values of `ts` when every one is f32 on the CPU (a strided view is made
/// contiguous first); `None` otherwise, for the caller's tensor ops.
pub(crate) fn on_host<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Result<Option<R>> {
    if !ts.iter().all(|t| host_f32(t)) {
        return Ok(None);
    }
    let owned = ts
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Tensor> = owned.iter().collect();
    borrow_f32s(&refs, |s| Ok(f(s)))
}

/// Softmax over the last dimension, no gradient: [`fastmath::softmax_rows`] for f32 on the
/// CPU, candle's kernel elsewhere.
pub fn softmax_last_dim_plain(x: &Tensor) -> Result<Tensor> {
    if !host_f32(x) {
        return candle_nn::ops::softmax_last_dim(x);
    }
    let dims = x.dims().to_vec();
    let cols = dims.last().copied().unwrap_or(1);
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    fastmath::softmax_rows(&mut v, cols);
    Tensor::from_vec(v, dims, x.device())
}

/// An element-wise activation's value and derivative for f32 on the CPU, from one
/// `fastmath` pass, as tensors shaped like `z`.
fn host_value_and_grad(z: &Tensor, kernel: fastmath::ValueAndGrad) -> Result<(Tensor, Tensor)> {
    let (y, d) = kernel(&z.flatten_all()?.to_vec1::<f32>()?);
    Ok((
        Tensor::from_vec(y, z.shape(), z.device())?,
        Tensor::from_vec(d, z.shape(), z.device())?,
    ))
}

/// An element-wise activation for f32 on the CPU, differentiable: the forward is the
/// `fastmath` kernel, the backward `dy · grad(x)` by tensor ops.
fn host_activation(
    x: &Tensor,
    name: &'static str,
    kernel: fn(&[f32], &mut [f32]),
    grad: fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let xd = x.detach();
    let mut y = vec![0f32; xd.elem_count()];
    kernel(&xd.flatten_all()?.to_vec1::<f32>()?, &mut y);
    let y = Tensor::from_vec(y, x.shape(), x.device())?;
    with_grad(name, x, &y, move |x, _y, g| g * grad(x)?)
}

/// silu'(z) = σ(z)(1 + z(1 − σ(z))), by tensor ops.
fn silu_grad(z: &Tensor) -> Result<Tensor> {
    let sig = candle_nn::ops::sigmoid(z)?;
    &sig * ((z * sig.affine(-1.0, 1.0)?)? + 1.0)?
}

/// SiLU and its derivative, no gradient: one vectorized pass for f32 on the CPU; elsewhere
/// candle's kernel for the value (the bits the autograd forward has) and tensor ops.
pub fn silu_and_grad(z: &Tensor) -> Result<(Tensor, Tensor)> {
    if !host_f32(z) {
        return Ok((candle_nn::ops::silu(z)?, silu_grad(z)?));
    }
    host_value_and_grad(z, fastmath::silu_and_grad)
}

/// SiLU `x σ(x)`, differentiable: the forward is [`silu_and_grad`]'s value (so the autograd
/// path, inference and the hand-written backward agree to the bit).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if !host_f32(x) {
        return candle_nn::ops::silu(x);
    }
    host_activation(x, "silu", fastmath::silu_into, silu_grad)
}

/// Log-softmax over the last dimension, differentiable (`dx = dy − softmax · Σ dy`): for
/// f32 on the CPU the log-normalizers come from [`fastmath::log_normalizers`], the bits the
/// hand-written head uses, so a reference model's log-probs equal the policy's; elsewhere
/// candle's kernel.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !host_f32(x) {
        return candle_nn::ops::log_softmax(x, D::Minus1);
    }
    let xd = x.detach();
    let dims = xd.dims().to_vec();
    let cols = dims.last().copied().unwrap_or(1);
    let mut v = xd.flatten_all()?.to_vec1::<f32>()?;
    let lse = fastmath::log_normalizers(&v, cols);
    for (row, l) in v.chunks_mut(cols.max(1)).zip(&lse) {
        for x in row {
            *x -= l;
        }
    }
    let y = Tensor::from_vec(v, dims, x.device())?;
    with_grad("log-softmax", x, &y, |_x, y, g| {
        g - y.exp()?.broadcast_mul(&g.sum_keepdim(D::Minus1)?)?
    })
}

/// The tanh-approximated GELU and its derivative, no gradient: one vectorized pass for f32
/// on the CPU, candle's ops elsewhere.
pub fn gelu_tanh_and_grad(z: &Tensor) -> Result<(Tensor, Tensor)> {
    if !host_f32(z) {
        return Ok((z.gelu()?, gelu_tanh_grad(z)?));
    }
    host_value_and_grad(z, fastmath::gelu_and_grad)
}

/// gelu'(z) = ½(1 + tanh u) + ½z(1 − tanh² u)·u', u = √(2/π)(z + 0.044715 z³), by tensor ops.
fn gelu_tanh_grad(z: &Tensor) -> Result<Tensor> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let th = ((z + (z.powf(3.0)? * 0.044715)?)? * c)?.tanh()?;
    let du = ((z.sqr()? * (3.0 * 0.044715))? + 1.0)? * c;
    let sech2 = th.sqr()?.affine(-1.0, 1.0)?;
    ((&th + 1.0)? * 0.5)? + ((z * 0.5)? * (sech2 * du?)?)?
}

/// The tanh-approximated GELU (Gemma's), differentiable: the forward is
/// [`gelu_tanh_and_grad`]'s value.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if !host_f32(x) {
        return x.gelu();
    }
    host_activation(x, "gelu", fastmath::gelu_into, gelu_tanh_grad)
}

/// Softmax over the last dimension: `dx = y · (dy − Σ dy·y)`.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let y = softmax_last_dim_plain(&x.detach().contiguous()?)?;
    with_grad("softmax", x, &y, |_x, y, g| softmax_backward(y, g))
}

/// `dx` of a last-dimension softmax with output `y` for upstream `g`.
pub fn softmax_backward(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    softmax_backward_scaled(y, g, 1.0)
}

/// [`softmax_backward`] times `scale` (attention's score scale), one parallel pass over rows
/// for f32 on the CPU.
pub fn softmax_backward_scaled(y: &Tensor, g: &Tensor, scale: f64) -> Result<Tensor> {
    if y.dims() == g.dims() {
        let cols = y.dim(D::Minus1)?;
        let dx = on_host(&[y, g], |s| {
            fastmath::softmax_backward(s[0], s[1], cols, scale as f32)
        })?;
        if let Some(dx) = dx {
            return Tensor::from_vec(dx, y.shape(), y.device());
        }
    }
    let dx = (y * g.broadcast_sub(&(g * y)?.sum_keepdim(D::Minus1)?)?)?;
    if scale == 1.0 {
        Ok(dx)
    } else {
        dx * scale
    }
}

/// Attention's probabilities `softmax(raw·scale + mask)` for scores `[b, heads, t, s]` and a
/// mask `[b or 1, 1, t, s]`: one parallel pass for f32 on the CPU, with the bits of the tensor
/// ops the inference path takes (scale, add, [`softmax_last_dim_plain`]).
pub fn attention_probs(raw: &Tensor, scale: f64, mask: &Tensor) -> Result<Tensor> {
    if let ([b, h, t, s], [mb, 1, mt, ms]) = (raw.dims(), mask.dims()) {
        if (*mb == *b || *mb == 1) && (*mt, *ms) == (*t, *s) {
            let (h, t, s) = (*h, *t, *s);
            let p = on_host(&[raw, mask], |v| {
                fastmath::masked_softmax(v[0], scale as f32, v[1], h, t, s)
            })?;
            if let Some(p) = p {
                return Tensor::from_vec(p, raw.shape(), raw.device());
            }
        }
    }
    softmax_last_dim_plain(&(raw * scale)?.broadcast_add(mask)?)
}

/// `x` `[.., n, len]` summed over its `n` axis: `[.., len]` (the gradient of a tensor repeated
/// `n` times, such as a key/value head shared by `n` query heads). For f32 on the CPU the
/// copies are added as contiguous runs; candle's reduction over a middle axis strides.
pub fn sum_groups(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let Some((&len, lead)) = dims.split_last() else {
        candle_core::bail!("sum_groups: a scalar");
    };
    let Some((&n, outer)) = lead.split_last() else {
        candle_core::bail!("sum_groups: {dims:?} has no axis to sum");
    };
    let mut shape = outer.to_vec();
    shape.push(len);
    if n > 0 {
        let groups: usize = outer.iter().product();
        let out = on_host(&[x], |v| {
            let mut out = vec![0f32; groups * len];
            out.par_chunks_mut(len.max(1))
                .zip(v[0].par_chunks((n * len).max(1)))
                .for_each(|(o, copies)| {
                    for c in copies.chunks_exact(len.max(1)) {
                        for (a, &b) in o.iter_mut().zip(c) {
                            *a += b;
                        }
                    }
                });
            out
        })?;
        if let Some(out) = out {
            return Tensor::from_vec(out, shape, x.device());
        }
    }
    x.sum(lead.len() - 1)
}

/// A gated MLP's `act(gate)·up` in one parallel pass for f32 on the CPU, with the bits of
/// the activation followed by a multiply; tensor ops elsewhere.
pub fn gated(gate: &Tensor, up: &Tensor, kind: fastmath::Gate) -> Result<Tensor> {
    if gate.dims() == up.dims() {
        if let Some(y) = on_host(&[gate, up], |s| fastmath::gated(kind, s[0], s[1]))? {
            return Tensor::from_vec(y, gate.shape(), gate.device());
        }
    }
    activation_and_grad(gate, kind)?.0 * up
}

/// The backward of [`gated`] for upstream `dy`: `(d gate, d up)`.
pub fn gated_backward(
    gate: &Tensor,
    up: &Tensor,
    dy: &Tensor,
    kind: fastmath::Gate,
) -> Result<(Tensor, Tensor)> {
    if gate.dims() == up.dims() && gate.dims() == dy.dims() {
        let r = on_host(&[gate, up, dy], |s| {
            fastmath::gated_backward(kind, s[0], s[1], s[2])
        })?;
        if let Some((dg, du)) = r {
            return Ok((
                Tensor::from_vec(dg, gate.shape(), gate.device())?,
                Tensor::from_vec(du, gate.shape(), gate.device())?,
            ));
        }
    }
    let (act, dact) = activation_and_grad(gate, kind)?;
    Ok((((dy * up)? * dact)?, (dy * act)?))
}

/// A gated MLP's activation and its derivative at `z` (the value has the bits [`gated`]
/// multiplies).
fn activation_and_grad(z: &Tensor, kind: fastmath::Gate) -> Result<(Tensor, Tensor)> {
    match kind {
        fastmath::Gate::Silu => silu_and_grad(z),
        fastmath::Gate::GeluTanh => gelu_tanh_and_grad(z),
    }
}

/// Inputs and measures shared by the ops' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor};

    /// A deterministic f32 tensor on the CPU with values in [-1, 1] (xorshift of `seed`).
    pub fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The largest |element| of an f32 tensor.
    pub fn max_abs(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(values(n, seed), shape, &Device::Cpu).unwrap()
    }

    /// Compares the analytic gradient of `sum(f(x) · w)` with central differences.
    fn check(name: &str, shape: &[usize], f: impl Fn(&Tensor) -> Result<Tensor>) {
        let x0 = tensor(shape, 1);
        let x = Var::from_tensor(&x0).unwrap();
        let y = f(x.as_tensor()).unwrap();
        let w = tensor(y.dims(), 2);
        let loss = (&y * &w).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let analytic: Vec<f64> = grads
            .get(&x)
            .unwrap_or_else(|| panic!("{name}: no gradient"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for i in 0..base.len() {
            let eval = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                let t = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
                (f(&t).unwrap() * &w)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
            worst = worst.max((numeric - analytic[i]).abs());
        }
        assert!(worst < 1e-7, "{name}: max |analytic - numeric| = {worst:e}");
    }

    #[test]
    fn frozen_linear_backward_matches_finite_differences_and_keeps_no_weight_grad() {
        let w = tensor(&[5, 4], 3);
        check("frozen_linear", &[2, 3, 4], |x| frozen_linear(x, &w));
        let wv = Var::from_tensor(&w).unwrap();
        let x = Var::from_tensor(&tensor(&[3, 4], 4)).unwrap();
        let g = frozen_linear(x.as_tensor(), wv.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&wv).is_none(), "a frozen weight must get no gradient");
    }

    #[test]
    fn quantized_linear_backward_is_the_dequantized_weight() {
        // Q8_0 blocks hold 32 values: a [5, 64] weight quantizes exactly row by row.
        let w = tensor(&[5, 64], 9).to_dtype(DType::F32).unwrap();
        let q = Arc::new(QTensor::quantize(&w, candle_core::quantized::GgmlDType::Q8_0).unwrap());
        let dense = q.dequantize(&Device::Cpu).unwrap();
        let x0 = tensor(&[2, 3, 64], 10).to_dtype(DType::F32).unwrap();
        let (xq, xd) = (
            Var::from_tensor(&x0).unwrap(),
            Var::from_tensor(&x0).unwrap(),
        );
        let yq = quantized_linear(xq.as_tensor(), &q).unwrap();
        let yd = frozen_linear(xd.as_tensor(), &dense).unwrap();
        let fwd: f32 = (&yq - &yd)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(fwd < 1e-4, "forward {fwd}");
        let wts = tensor(&[2, 3, 5], 11).to_dtype(DType::F32).unwrap();
        let gq = (yq * &wts).unwrap().sum_all().unwrap().backward().unwrap();
        let gd = (yd * &wts).unwrap().sum_all().unwrap().backward().unwrap();
        let diff: f32 = (gq.get(&xq).unwrap() - gd.get(&xd).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5, "backward {diff}");
    }

    #[test]
    fn rms_norm_backward_matches_finite_differences() {
        let alpha = (tensor(&[6], 5) + 1.5).unwrap();
        check("rms_norm", &[2, 3, 6], |x| rms_norm(x, &alpha, 1e-5));
        // The fused f32 forward equals the primitive definition.
        let x = tensor(&[2, 6], 6).to_dtype(DType::F32).unwrap();
        let a32 = alpha.to_dtype(DType::F32).unwrap();
        let fast = rms_norm(&x, &a32, 1e-5).unwrap();
        let slow = candle_nn::ops::rms_norm_slow(&x, &a32, 1e-5).unwrap();
        let diff: f32 = (fast - slow)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn rope_backward_matches_finite_differences() {
        let cos = tensor(&[3, 2], 7).cos().unwrap();
        let sin = tensor(&[3, 2], 7).sin().unwrap();
        check("rope", &[1, 2, 3, 4], |x| rope(x, &cos, &sin));
        let cos_b = tensor(&[2, 3, 2], 8).cos().unwrap();
        let sin_b = tensor(&[2, 3, 2], 8).sin().unwrap();
        check("rope (per-example positions)", &[2, 2, 3, 4], |x| {
            rope(x, &cos_b, &sin_b)
        });
    }

    #[test]
    fn softmax_backward_matches_finite_differences() {
        check("softmax_last_dim", &[2, 3, 5], softmax_last_dim);
        check("log_softmax_last_dim", &[2, 3, 5], log_softmax_last_dim);
    }

    /// The f32 CPU paths (vectorized forward, spliced backward) against candle's own ops
    /// under autograd: values within 1e-6, gradients within 1e-5 of the largest.
    #[test]
    fn fast_f32_paths_match_candles_ops_and_gradients() {
        type Op = fn(&Tensor) -> Result<Tensor>;
        let pairs: [(&str, Op, Op); 4] = [
            ("log_softmax", log_softmax_last_dim, |x| {
                candle_nn::ops::log_softmax(x, D::Minus1)
            }),
            ("softmax", softmax_last_dim, |x| {
                // candle's fused softmax has no backward: its primitive form.
                let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
                e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
            }),
            ("silu", silu, candle_nn::ops::silu),
            ("gelu", gelu_tanh, |x| x.gelu()),
        ];
        for (name, ours, theirs) in pairs {
            let x0 = (tensor(&[3, 37], 11) * 6.0)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let w = tensor(&[3, 37], 12).to_dtype(DType::F32).unwrap();
            let run = |f: Op| {
                let x = Var::from_tensor(&x0).unwrap();
                let y = f(x.as_tensor()).unwrap();
                let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let dx = g.get(&x).unwrap().flatten_all().unwrap();
                (
                    y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    dx.to_vec1::<f32>().unwrap(),
                )
            };
            let ((ya, ga), (yb, gb)) = (run(ours), run(theirs));
            let worst = |a: &[f32], b: &[f32]| {
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale
            };
            assert!(worst(&ya, &yb) < 1e-6, "{name} values: {}", worst(&ya, &yb));
            assert!(
                worst(&ga, &gb) < 1e-5,
                "{name} gradients: {}",
                worst(&ga, &gb)
            );
        }
    }

    /// The fused f32 passes of the hand-written step against the tensor ops they replace:
    /// the forward ones to the bit (training and inference must agree), the backward ones
    /// within f32 rounding of the largest value.
    #[test]
    fn fused_f32_passes_match_the_tensor_ops() {
        use super::testing::{max_abs, tensor as t32};
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let d = max_abs(&(a - b).unwrap()) / max_abs(b).max(1e-12);
            assert!(d < 2e-6, "{what}: {d}");
        };
        let bits = |a: &Tensor| a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Gated MLP, 1000 elements (pieces, a ragged tail), both activations.
        let (g, u, dy) = (
            (t32(&[2, 500], 1) * 8.0).unwrap(),
            t32(&[2, 500], 2),
            t32(&[2, 500], 3),
        );
        for kind in [fastmath::Gate::Silu, fastmath::Gate::GeluTanh] {
            let (act, dact) = activation_and_grad(&g, kind).unwrap();
            let y = gated(&g, &u, kind).unwrap();
            assert_eq!(bits(&y), bits(&(&act * &u).unwrap()), "{kind:?} forward");
            let (dg, du) = gated_backward(&g, &u, &dy, kind).unwrap();
            let want_dg = ((&dy * &u).unwrap() * &dact).unwrap();
            assert_eq!(bits(&dg), bits(&want_dg), "{kind:?} d gate");
            assert_eq!(bits(&du), bits(&(&dy * &act).unwrap()), "{kind:?} d up");
        }
        // Attention: scale, mask and softmax, with a mask per example and one shared.
        let raw = (t32(&[2, 3, 5, 7], 4) * 9.0).unwrap();
        let mut m = vec![0f32; 2 * 5 * 7];
        for (i, v) in m.iter_mut().enumerate() {
            if (i % 7) > (i / 7) % 5 + i / 35 {
                *v = -1e9;
            }
        }
        let mask = Tensor::from_vec(m, (2, 1, 5, 7), &Device::Cpu).unwrap();
        for mask in [mask.clone(), mask.narrow(0, 1, 1).unwrap()] {
            let want =
                softmax_last_dim_plain(&(&raw * 0.125).unwrap().broadcast_add(&mask).unwrap())
                    .unwrap();
            let got = attention_probs(&raw, 0.125, &mask).unwrap();
            assert_eq!(bits(&got), bits(&want), "attention probabilities");
        }
        // Softmax backward with the score scale.
        let y = softmax_last_dim_plain(&raw).unwrap();
        let dp = t32(&[2, 3, 5, 7], 5);
        let want = ((&y * dp.broadcast_sub(&(&dp * &y).unwrap().sum_keepdim(D::Minus1).unwrap()))
            .unwrap()
            * 0.125)
            .unwrap();
        close(
            &softmax_backward_scaled(&y, &dp, 0.125).unwrap(),
            &want,
            "softmax backward",
        );
        // RMSNorm backward, rows of 37 (a ragged tail), with and without a residual.
        let x = (t32(&[3, 4, 37], 6) * 3.0).unwrap();
        let alpha = (t32(&[37], 7) + 1.5).unwrap();
        let g = t32(&[3, 4, 37], 8);
        let res = t32(&[3, 4, 37], 9);
        let want = rms_norm_backward_ops(&x, &alpha, 1e-5, &g).unwrap();
        close(
            &rms_norm_backward(&x, &alpha, 1e-5, &g).unwrap(),
            &want,
            "rms backward",
        );
        close(
            &rms_norm_backward_add(&x, &alpha, 1e-5, &g, &res).unwrap(),
            &(&res + &want).unwrap(),
            "rms backward + residual",
        );
        // A repeated head's gradient: the copies summed.
        let x = t32(&[2, 3, 4, 10], 10);
        close(
            &sum_groups(&x).unwrap(),
            &x.sum(2).unwrap(),
            "sum over copies",
        );
        assert_eq!(sum_groups(&x).unwrap().dims(), &[2, 3, 10]);
    }
}
