//! exp, softmax, SiLU and GELU over f32 slices, written so the compiler vectorizes them (a
//! branch-free polynomial, eight lanes of accumulators, AVX2 + FMA when the CPU has them).
//! libm's scalar `expf` was 8% of the CPU SFT step's cycles, and candle's log-softmax,
//! sigmoid and SiLU each take several passes over memory. `exp` is within 2 ulp of the
//! true value over f32's range (the tests sweep it against f64); results below e^-87.3
//! flush to 0 and NaN stays NaN.

use rayon::prelude::*;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two (Cody–Waite), so `x - n ln 2` stays exact for the n that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this e^x is subnormal: flushed to 0.
const UNDER: f32 = -87.336_55;
/// Above this e^x overflows f32.
const OVER: f32 = 88.376_26;
/// 1.5 · 2^23: adding and subtracting it rounds to the nearest integer without a call.
const ROUND: f32 = 12_582_912.0;

/// e^x (see the module's note on accuracy). Selects and bit operations only, no branch or
/// float-to-int conversion, so loops over it vectorize.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Comparisons with NaN are false, so NaN flows through to the result.
    let c = if x < UNDER { UNDER } else { x };
    let c = if c > OVER { OVER } else { c };
    // n = round(c / ln 2), read off the mantissa of `c / ln 2 + 1.5·2^23` as an integer.
    let shifted = c * LOG2E + ROUND;
    let n = shifted - ROUND;
    let k = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let r = c - n * LN2_HI - n * LN2_LO;
    // Cephes' expf polynomial on [-ln2/2, ln2/2].
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(k.wrapping_add(127) << 23);
    let e = y * scale;
    let e = if x < UNDER { 0.0 } else { e };
    if x > OVER {
        f32::INFINITY
    } else {
        e
    }
}

/// Runs `body` compiled for AVX2 + FMA when the CPU has them, else for the baseline.
macro_rules! dispatch {
    ($name:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $body:block) => {
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features `wide` is compiled for were just detected.
                    return unsafe { wide($($arg),*) };
                }
            }
            fn narrow($($arg: $ty),*) -> $ret $body
            narrow($($arg),*)
        }
    };
}
pub(crate) use dispatch;

// `out[j] = Σ_i x[i]·a[j·k + i]` for `k = x.len()`: a row's dot products with the rows of a
// rank-r factor (LoRA's `x·Aᵀ`), sixteen lanes of accumulators.
dispatch!(dots, (x: &[f32], a: &[f32], out: &mut [f32]) -> (), {
    let k = x.len();
    for (j, o) in out.iter_mut().enumerate() {
        let row = &a[j * k..][..k];
        let mut lanes = [0f32; 16];
        let (xc, rc) = (x.chunks_exact(16), row.chunks_exact(16));
        let (xr, rr) = (xc.remainder(), rc.remainder());
        for (cx, cr) in xc.zip(rc) {
            for ((l, &p), &q) in lanes.iter_mut().zip(cx).zip(cr) {
                *l = p.mul_add(q, *l);
            }
        }
        let mut sum = lanes.iter().sum::<f32>();
        for (&p, &q) in xr.iter().zip(rr) {
            sum = p.mul_add(q, sum);
        }
        *o = sum;
    }
});

// `acc[j·k + i] += p[j]·q[i]` for `k = q.len()`: one row's outer product added to a
// rank-r gradient (LoRA's `duᵀ·x`).
dispatch!(outer_add, (p: &[f32], q: &[f32], acc: &mut [f32]) -> (), {
    let k = q.len();
    for (j, &pj) in p.iter().enumerate() {
        for (a, &b) in acc[j * k..][..k].iter_mut().zip(q) {
            *a = pj.mul_add(b, *a);
        }
    }
});

// `out[t·r + j] = Σ_i x[t·k + i]·at[i·r + j]` for `r` a multiple of 8: rows of `x` (`k`
// long) times a rank-r factor stored `k × r` (LoRA's `x·Aᵀ` with `at = Aᵀ`). Four rows share
// each eight-wide load of the factor and keep their sums in registers: no horizontal sums.
dispatch!(times_factor8_portable, (x: &[f32], at: &[f32], k: usize, out: &mut [f32]) -> (), {
    let r = at.len() / k.max(1);
    let rows = out.len() / r.max(1);
    let mut t = 0;
    while t < rows {
        let nt = (rows - t).min(4);
        for jb in (0..r).step_by(8) {
            let mut acc = [[0f32; 8]; 4];
            if nt == 4 {
                let xs = &x[t * k..(t + 4) * k];
                for (i, arow) in at.chunks_exact(r).enumerate() {
                    let w = &arow[jb..jb + 8];
                    for (u, a) in acc.iter_mut().enumerate() {
                        let xi = xs[u * k + i];
                        for (l, &wl) in a.iter_mut().zip(w) {
                            *l = xi.mul_add(wl, *l);
                        }
                    }
                }
            } else {
                for (i, arow) in at.chunks_exact(r).enumerate() {
                    let w = &arow[jb..jb + 8];
                    for (u, a) in acc.iter_mut().enumerate().take(nt) {
                        let xi = x[(t + u) * k + i];
                        for (l, &wl) in a.iter_mut().zip(w) {
                            *l = xi.mul_add(wl, *l);
                        }
                    }
                }
            }
            for (u, a) in acc.iter().enumerate().take(nt) {
                out[(t + u) * r + jb..][..8].copy_from_slice(a);
            }
        }
        t += nt;
    }
});

/// `out[t·r + j] = Σ_i x[t·k + i]·at[i·r + j]` for `r` a multiple of 8 (see
/// [`times_factor8_portable`], whose sums it equals bit for bit).
pub fn times_factor8(x: &[f32], at: &[f32], k: usize, out: &mut [f32]) {
    let r = at.len() / k.max(1);
    #[cfg(target_arch = "x86_64")]
    if r > 0
        && r.is_multiple_of(8)
        && x.len() / k.max(1) >= out.len() / r
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the features were just detected; `x` holds the rows `out` has room for
        // (checked above), `at` is `k × r`.
        let done = unsafe { times_factor8_rows8(x, at, k, r, out) };
        times_factor8_portable(&x[done * k..], at, k, &mut out[done * r..]);
        return;
    }
    times_factor8_portable(x, at, k, out)
}

/// [`times_factor8`]'s full blocks of eight rows with AVX2 + FMA: a block's eight sums of
/// one column group in eight registers, eight independent chains (the portable loop's four
/// rows left the FMA units waiting on latency: 58 → 97 GFLOP/s on one Zen 4 core at
/// SmolLM2's shapes). Returns the rows done.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `at` must hold `k × r` values, `x` the rows of `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn times_factor8_rows8(x: &[f32], at: &[f32], k: usize, r: usize, out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let rows = out.len() / r / 8 * 8;
    assert!(
        at.len() >= k * r && x.len() >= rows * k,
        "times_factor8: short operands"
    );
    let (ap, op) = (at.as_ptr(), out.as_mut_ptr());
    for t in (0..rows).step_by(8) {
        let xp = x.as_ptr().add(t * k);
        for jb in (0..r).step_by(8) {
            let mut acc = [_mm256_setzero_ps(); 8];
            for i in 0..k {
                let w = _mm256_loadu_ps(ap.add(i * r + jb));
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xp.add(u * k + i)), w, *a);
                }
            }
            for (u, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(op.add((t + u) * r + jb), *a);
            }
        }
    }
    rows
}

// `out[j·w + c] = Σ_t p[t·r + j]·q[t·k + c0 + c]` for `c < w` (`w` a multiple of 8, `r` of 8):
// a column strip of `pᵀ·q` (LoRA's `duᵀ·x`), an 8 × 8 block of sums in registers at a time.
dispatch!(t_times_strip8, (p: &[f32], q: &[f32], r: usize, k: usize, c0: usize, out: &mut [f32]) -> (), {
    let n = p.len() / r.max(1);
    let w = out.len() / r.max(1);
    for cb in (0..w).step_by(8) {
        for jb in (0..r).step_by(8) {
            let mut acc = [[0f32; 8]; 8];
            for t in 0..n {
                let qs = &q[t * k + c0 + cb..][..8];
                let ps = &p[t * r + jb..][..8];
                for (a, &pj) in acc.iter_mut().zip(ps) {
                    for (l, &ql) in a.iter_mut().zip(qs) {
                        *l = pj.mul_add(ql, *l);
                    }
                }
            }
            for (j, a) in acc.iter().enumerate() {
                out[(jb + j) * w + cb..][..8].copy_from_slice(a);
            }
        }
    }
});

dispatch!(max_of, (v: &[f32]) -> f32, {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    let mut m = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for &x in chunks.remainder() {
        m = m.max(x);
    }
    m
});

dispatch!(exp_shifted_sum, (v: &mut [f32], shift: f32) -> f32, {
    // v ← e^(v − shift), then the sum in eight lanes: two simple loops vectorize where
    // one fused loop did not.
    for x in v.iter_mut() {
        *x = exp(*x - shift);
    }
    let mut lanes = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (s, x) in lanes.iter_mut().zip(c) {
            *s += *x;
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for x in chunks.remainder() {
        sum += *x;
    }
    sum
});

dispatch!(scale_in_place, (v: &mut [f32], s: f32) -> (), {
    for x in v.iter_mut() {
        *x *= s;
    }
});

/// σ(z), as both SiLU paths compute it.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

dispatch!(silu_and_grad_into, (z: &[f32], y: &mut [f32], d: &mut [f32]) -> (), {
    for ((&z, y), d) in z.iter().zip(y.iter_mut()).zip(d.iter_mut()) {
        let s = sigmoid(z);
        *y = z * s;
        *d = s * (1.0 + z * (1.0 - s));
    }
});

/// √(2/π), the tanh-approximated GELU's scale.
const GELU_C: f32 = 0.797_884_6;

/// tanh(x) as 1 − 2/(e^{2x} + 1): absolute error about 1e-7 (what GELU needs; relative
/// error grows near 0).
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Gemma's GELU `½z(1 + tanh u)`, u = √(2/π)(z + 0.044715 z³), and tanh u.
#[inline(always)]
fn gelu_parts(z: f32) -> (f32, f32) {
    let u = GELU_C * z * (1.0 + 0.044_715 * z * z);
    let t = tanh(u);
    (0.5 * z * (1.0 + t), t)
}

dispatch!(gelu_piece, (z: &[f32], y: &mut [f32]) -> (), {
    for (&z, y) in z.iter().zip(y.iter_mut()) {
        *y = gelu_parts(z).0;
    }
});

dispatch!(gelu_and_grad_into, (z: &[f32], y: &mut [f32], d: &mut [f32]) -> (), {
    // gelu'(z) = ½(1 + tanh u) + ½z(1 − tanh² u)·u', u' = √(2/π)(1 + 3·0.044715 z²)
    for ((&z, y), d) in z.iter().zip(y.iter_mut()).zip(d.iter_mut()) {
        let (g, t) = gelu_parts(z);
        *y = g;
        let du = GELU_C * (1.0 + 3.0 * 0.044_715 * z * z);
        *d = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du;
    }
});

dispatch!(silu_piece, (z: &[f32], y: &mut [f32]) -> (), {
    for (&z, y) in z.iter().zip(y.iter_mut()) {
        *y = z * sigmoid(z);
    }
});

/// An output element before its kernel writes it.
pub(crate) type Uninit = std::mem::MaybeUninit<f32>;

/// `n` values written by `fill`, which is handed them uninitialized: a buffer is not zeroed
/// only to be overwritten (zeroing the step's fresh outputs was ~2% of the CPU SFT step).
///
/// # Safety
/// `fill` must write every one of the `n` elements.
pub(crate) unsafe fn written(n: usize, fill: impl FnOnce(&mut [Uninit])) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller's `fill` wrote all `n` elements.
    unsafe { v.set_len(n) };
    v
}

// A gated MLP's forward `silu(g)·u`: the bits of [`silu_into`] followed by a multiply.
dispatch!(silu_mul_piece, (g: &[f32], u: &[f32], y: &mut [Uninit]) -> (), {
    for ((&z, &u), y) in g.iter().zip(u).zip(y.iter_mut()) {
        y.write(z * sigmoid(z) * u);
    }
});

// A gated MLP's backward for `y = silu(g)·u` and upstream `dy`: `du = dy·silu(g)` and
// `dg = dy·u·silu'(g)`, in the order the tensor ops multiplied them.
dispatch!(silu_mul_backward_piece, (g: &[f32], u: &[f32], dy: &[f32], dg: &mut [Uninit], du: &mut [Uninit]) -> (), {
    for ((((&z, &u), &dy), dg), du) in g.iter().zip(u).zip(dy).zip(dg.iter_mut()).zip(du.iter_mut()) {
        let s = sigmoid(z);
        du.write(dy * (z * s));
        dg.write(dy * u * (s * (1.0 + z * (1.0 - s))));
    }
});

// `gelu(g)·u`, as [`silu_mul_piece`] for Gemma's activation.
dispatch!(gelu_mul_piece, (g: &[f32], u: &[f32], y: &mut [Uninit]) -> (), {
    for ((&z, &u), y) in g.iter().zip(u).zip(y.iter_mut()) {
        y.write(gelu_parts(z).0 * u);
    }
});

// The backward of `gelu(g)·u`, as [`silu_mul_backward_piece`].
dispatch!(gelu_mul_backward_piece, (g: &[f32], u: &[f32], dy: &[f32], dg: &mut [Uninit], du: &mut [Uninit]) -> (), {
    for ((((&z, &u), &dy), dg), du) in g.iter().zip(u).zip(dy).zip(dg.iter_mut()).zip(du.iter_mut()) {
        let (v, t) = gelu_parts(z);
        let dz = GELU_C * (1.0 + 3.0 * 0.044_715 * z * z);
        du.write(dy * v);
        dg.write(dy * u * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * dz));
    }
});

/// Which gated activation a fused MLP pass applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Silu,
    GeluTanh,
}

/// A gated MLP's activation `act(g)·u` in one parallel pass: the bits of the activation's
/// own kernel followed by a multiply, so inference and training agree.
pub fn gated(gate: Gate, g: &[f32], u: &[f32]) -> Vec<f32> {
    assert_eq!(g.len(), u.len(), "gated: gate and up differ in length");
    let kernel = match gate {
        Gate::Silu => silu_mul_piece,
        Gate::GeluTanh => gelu_mul_piece,
    };
    // SAFETY: the pieces of `y` pair with equally long pieces of `g` and `u`, and the kernel
    // writes one value per pair.
    unsafe {
        written(g.len(), |y| {
            g.par_chunks(PIECE)
                .zip(u.par_chunks(PIECE))
                .zip(y.par_chunks_mut(PIECE))
                .for_each(|((g, u), y)| kernel(g, u, y))
        })
    }
}

/// The backward of [`gated`] for upstream `dy`: `(dg, du)` in one parallel pass, the
/// activation recomputed from `g` instead of kept.
pub fn gated_backward(gate: Gate, g: &[f32], u: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = g.len();
    assert!(
        u.len() == n && dy.len() == n,
        "gated backward: inputs differ in length"
    );
    let kernel = match gate {
        Gate::Silu => silu_mul_backward_piece,
        Gate::GeluTanh => gelu_mul_backward_piece,
    };
    let mut du = Vec::new();
    // SAFETY: the pieces of `dg` and `du` pair with equally long pieces of the inputs, and
    // the kernel writes one value of each per element.
    let dg = unsafe {
        written(n, |dg| {
            du = written(n, |du| {
                g.par_chunks(PIECE)
                    .zip(u.par_chunks(PIECE))
                    .zip(dy.par_chunks(PIECE))
                    .zip(dg.par_chunks_mut(PIECE))
                    .zip(du.par_chunks_mut(PIECE))
                    .for_each(|((((g, u), dy), dg), du)| kernel(g, u, dy, dg, du))
            })
        })
    };
    (dg, du)
}

dispatch!(dot, (a: &[f32], b: &[f32]) -> f32, {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for ((l, &p), &q) in lanes.iter_mut().zip(x).zip(y) {
            *l = p.mul_add(q, *l);
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (&p, &q) in ar.iter().zip(br) {
        sum = p.mul_add(q, sum);
    }
    sum
});

// One row of a softmax's backward: `dx = (y·(dy − Σ dy·y))·scale`.
dispatch!(softmax_backward_row, (y: &[f32], dy: &[f32], scale: f32, dx: &mut [Uninit]) -> (), {
    let s = dot(y, dy);
    for ((o, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
        o.write(y * (g - s) * scale);
    }
});

/// A last-dimension softmax's backward for output `y` and upstream `dy` (rows of `cols`),
/// times `scale` (attention's score scale joins the pass). Rows run in parallel.
pub fn softmax_backward(y: &[f32], dy: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    assert_eq!(
        y.len(),
        dy.len(),
        "softmax backward: y and dy differ in length"
    );
    if cols == 0 || !y.len().is_multiple_of(cols) {
        return vec![0.0; y.len()];
    }
    // SAFETY: each row of `dx` pairs with a row of `y` and `dy` (whole rows: `cols` divides
    // the length), and the row kernel writes every element of it.
    unsafe {
        written(y.len(), |dx| {
            dx.par_chunks_mut(cols)
                .zip(y.par_chunks(cols).zip(dy.par_chunks(cols)))
                .for_each(|(dx, (y, dy))| softmax_backward_row(y, dy, scale, dx))
        })
    }
}

// One row of RMSNorm's backward, `y = x·r·α` with `r = 1/√(mean x² + eps)`:
// `dx = dy·α·r − x·r³·mean(dy·α·x)`, plus `res` (the residual's gradient) when given.
dispatch!(rms_norm_backward_row, (x: &[f32], alpha: &[f32], dy: &[f32], res: &[f32], eps: f32, dx: &mut [Uninit]) -> (), {
    let d = x.len() as f32;
    let r = 1.0 / (dot(x, x) / d + eps).sqrt();
    let mut lanes = [0f32; 8];
    let n8 = x.len() / 8 * 8;
    for i in (0..n8).step_by(8) {
        for (j, l) in lanes.iter_mut().enumerate() {
            *l = (dy[i + j] * alpha[i + j]).mul_add(x[i + j], *l);
        }
    }
    let mut m: f32 = lanes.iter().sum();
    for i in n8..x.len() {
        m = (dy[i] * alpha[i]).mul_add(x[i], m);
    }
    let c = m / d * r * r * r;
    if res.is_empty() {
        for (i, o) in dx.iter_mut().enumerate() {
            o.write(dy[i] * alpha[i] * r - x[i] * c);
        }
    } else {
        for (i, o) in dx.iter_mut().enumerate() {
            o.write(res[i] + (dy[i] * alpha[i] * r - x[i] * c));
        }
    }
});

/// RMSNorm's input gradient over rows of `alpha.len()` (see [`rms_norm_backward_row`]),
/// with `res` added when it is not empty. Rows run in parallel.
pub fn rms_norm_backward(x: &[f32], alpha: &[f32], dy: &[f32], res: &[f32], eps: f32) -> Vec<f32> {
    let cols = alpha.len();
    assert!(
        dy.len() == x.len() && (res.is_empty() || res.len() == x.len()),
        "rms-norm backward: inputs differ in length"
    );
    if cols == 0 || !x.len().is_multiple_of(cols) {
        return vec![0.0; x.len()];
    }
    let empty: &[f32] = &[];
    // SAFETY: every row of `dx` is a whole row (`cols` divides the length) that the row
    // kernel writes element by element.
    unsafe {
        written(x.len(), |dx| {
            dx.par_chunks_mut(cols).enumerate().for_each(|(i, o)| {
                let rows = i * cols..(i + 1) * cols;
                let r = if res.is_empty() {
                    empty
                } else {
                    &res[rows.clone()]
                };
                rms_norm_backward_row(&x[rows.clone()], alpha, &dy[rows], r, eps, o)
            })
        })
    }
}

// Attention scores `raw·scale + mask` into `y` (the bits of the tensor ops' affine and add).
dispatch!(scale_add_row, (raw: &[f32], scale: f32, mask: &[f32], y: &mut [Uninit]) -> (), {
    for ((o, &v), &m) in y.iter_mut().zip(raw).zip(mask) {
        o.write(v * scale + m);
    }
});

/// Attention's probabilities: softmax over rows of `cols` of `raw·scale + mask`, for scores
/// `[examples, heads, queries, cols]` and a mask `[examples or 1, queries, cols]`. One pass
/// per row with the bits of scaling, adding and [`softmax_rows`] as separate passes. Rows
/// run in parallel.
pub fn masked_softmax(
    raw: &[f32],
    scale: f32,
    mask: &[f32],
    heads: usize,
    queries: usize,
    cols: usize,
) -> Vec<f32> {
    let block = heads * queries * cols;
    if block == 0 || !raw.len().is_multiple_of(block) || !mask.len().is_multiple_of(queries * cols)
    {
        return vec![f32::NAN; raw.len()];
    }
    let mask_examples = mask.len() / (queries * cols);
    // SAFETY: `scale_add_row` writes every element of its (whole) row before the row is
    // read as initialized.
    unsafe {
        written(raw.len(), |y| {
            y.par_chunks_mut(cols)
                .zip(raw.par_chunks(cols))
                .enumerate()
                .for_each(|(i, (row, raw))| {
                    let e = if mask_examples == 1 {
                        0
                    } else {
                        i / (heads * queries)
                    };
                    let m = &mask[(e * queries + i % queries) * cols..][..cols];
                    scale_add_row(raw, scale, m, row);
                    softmax_row(&mut *(row as *mut [Uninit] as *mut [f32]));
                })
        })
    }
}

/// Softmax of each row of `x` (rows of `cols`, row-major) in place; returns each row's
/// log-normalizer `max + ln Σ e^(x − max)`, so a logit's log-prob is `x − lse`. A row with
/// NaN, or with no finite entry, gives NaN, as candle's softmax does. Rows run in parallel.
pub fn softmax_rows(x: &mut [f32], cols: usize) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    x.par_chunks_mut(cols).map(softmax_row).collect()
}

/// One row's softmax in place; returns its log-normalizer `max + ln Σ e^(x − max)`.
fn softmax_row(row: &mut [f32]) -> f32 {
    let m = max_of(row);
    let sum = exp_shifted_sum(row, m);
    scale_in_place(row, 1.0 / sum);
    m + sum.ln()
}

/// Each row's log-normalizer `max + ln Σ e^(x − max)` (rows of `cols`), leaving `x` as it
/// is: the same bits [`softmax_rows`] returns. Rows run in parallel.
pub fn log_normalizers(x: &[f32], cols: usize) -> Vec<f32> {
    if cols == 0 {
        return Vec::new();
    }
    x.par_chunks(cols)
        .map_init(Vec::new, |scratch, row| {
            scratch.clear();
            scratch.extend_from_slice(row);
            let m = max_of(row);
            m + exp_shifted_sum(scratch, m).ln()
        })
        .collect()
}

/// Parallel pieces of this many elements.
const PIECE: usize = 1 << 14;

/// Runs an element-wise slice kernel over `z` into `y`, in parallel pieces.
fn in_pieces(z: &[f32], y: &mut [f32], kernel: fn(&[f32], &mut [f32])) {
    z.par_chunks(PIECE)
        .zip(y.par_chunks_mut(PIECE))
        .for_each(|(z, y)| kernel(z, y));
}

/// An element-wise function's values and derivatives over a slice.
pub type ValueAndGrad = fn(&[f32]) -> (Vec<f32>, Vec<f32>);

/// Runs a value-and-derivative slice kernel over `z`, in parallel pieces.
fn in_pieces2(z: &[f32], kernel: fn(&[f32], &mut [f32], &mut [f32])) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0f32; z.len()];
    let mut d = vec![0f32; z.len()];
    z.par_chunks(PIECE)
        .zip(y.par_chunks_mut(PIECE))
        .zip(d.par_chunks_mut(PIECE))
        .for_each(|((z, y), d)| kernel(z, y, d));
    (y, d)
}

/// SiLU `z σ(z)` into `y` (the same bits as [`silu_and_grad`]'s value), in parallel.
pub fn silu_into(z: &[f32], y: &mut [f32]) {
    in_pieces(z, y, silu_piece)
}

/// SiLU `z σ(z)` and its derivative `σ(z)(1 + z(1 − σ(z)))` in one pass, in parallel.
pub fn silu_and_grad(z: &[f32]) -> (Vec<f32>, Vec<f32>) {
    in_pieces2(z, silu_and_grad_into)
}

/// The tanh-approximated GELU into `y` (the same bits as [`gelu_and_grad`]'s value).
pub fn gelu_into(z: &[f32], y: &mut [f32]) {
    in_pieces(z, y, gelu_piece)
}

/// The tanh-approximated GELU and its derivative in one pass, in parallel.
pub fn gelu_and_grad(z: &[f32]) -> (Vec<f32>, Vec<f32>) {
    in_pieces2(z, gelu_and_grad_into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.to_bits() + 1) - b32).abs() as f64;
        ((a as f64) - b).abs() / ulp.max(f64::MIN_POSITIVE)
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let e = ulps(exp(x), (x as f64).exp());
            worst = worst.max(e);
            x += 0.000_37;
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        // The dispatched slice paths give the scalar function's bits.
        let mut v: Vec<f32> = (0..1003).map(|i| (i as f32) * 0.05 - 40.0).collect();
        let want: Vec<f32> = v.iter().map(|&x| exp(x - 1.5)).collect();
        let sum = exp_shifted_sum(&mut v, 1.5);
        assert_eq!(v, want);
        let direct: f64 = want.iter().map(|&x| x as f64).sum();
        assert!(((sum as f64) - direct).abs() / direct < 1e-6);
    }

    #[test]
    fn softmax_rows_match_f64() {
        let cols = 517;
        let mut x: Vec<f32> = (0..3 * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 100.0) - 5.0)
            .collect();
        x[cols + 3] = 60.0; // a confident row
        let orig = x.clone();
        let lse = softmax_rows(&mut x, cols);
        for r in 0..3 {
            let row = &orig[r * cols..(r + 1) * cols];
            let m = row.iter().fold(f64::MIN, |a, &b| a.max(b as f64));
            let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            let want_lse = m + s.ln();
            assert!(
                (lse[r] as f64 - want_lse).abs() < 1e-5,
                "{} vs {want_lse}",
                lse[r]
            );
            for (c, &v) in row.iter().enumerate() {
                let p = (v as f64 - want_lse).exp();
                let got = x[r * cols + c] as f64;
                assert!(
                    (got - p).abs() <= 1e-6 * p.max(1e-30) + 1e-12,
                    "{got} vs {p}"
                );
            }
        }
        assert_eq!(log_normalizers(&orig, cols), lse);
        let mut nan = vec![0.0, f32::NAN, 1.0];
        assert!(softmax_rows(&mut nan, 3)[0].is_nan());
    }

    #[test]
    fn silu_and_its_grad_match_f64() {
        let z: Vec<f32> = (0..40_001).map(|i| (i as f32) * 0.0005 - 10.0).collect();
        let (y, d) = silu_and_grad(&z);
        let mut y2 = vec![0f32; z.len()];
        silu_into(&z, &mut y2);
        assert_eq!(y, y2);
        for ((&z, &y), &d) in z.iter().zip(&y).zip(&d) {
            let zz = z as f64;
            let s = 1.0 / (1.0 + (-zz).exp());
            assert!(
                (y as f64 - zz * s).abs() < 1e-6 * (1.0 + (zz * s).abs()),
                "{z}"
            );
            let dd = s * (1.0 + zz * (1.0 - s));
            assert!((d as f64 - dd).abs() < 1e-6 * (1.0 + dd.abs()), "{z}");
        }
    }

    #[test]
    fn gelu_and_its_grad_match_f64() {
        let z: Vec<f32> = (0..40_001).map(|i| (i as f32) * 0.0005 - 10.0).collect();
        let (y, d) = gelu_and_grad(&z);
        let mut y2 = vec![0f32; z.len()];
        gelu_into(&z, &mut y2);
        assert_eq!(y, y2);
        let c = (2.0 / std::f64::consts::PI).sqrt();
        for ((&z, &y), &d) in z.iter().zip(&y).zip(&d) {
            let zz = z as f64;
            let t = (c * (zz + 0.044715 * zz.powi(3))).tanh();
            let want = 0.5 * zz * (1.0 + t);
            assert!((y as f64 - want).abs() < 1e-6 * (1.0 + want.abs()), "{z}");
            let dd =
                0.5 * (1.0 + t) + 0.5 * zz * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * zz * zz);
            assert!(
                (d as f64 - dd).abs() < 2e-6 * (1.0 + dd.abs()),
                "{z}: {d} vs {dd}"
            );
        }
    }
}
