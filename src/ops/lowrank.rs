//! LoRA's rank-r products on the CPU as single passes over the large operand.
//!
//! `x·Aᵀ`, `dy·B` (`[n, k]` by `[k, r]`) and `duᵀ·x`, `dyᵀ·u` (`[r, n]` by `[n, k]`) do 16
//! multiply-adds per element of the large operand at r = 8: memory-bound, but gemm runs them
//! as general products, with an 8-row tile (half of its 16 lanes idle), packing, and a
//! hand-off to the pool, 90–330 µs each at SmolLM2's shapes against the ~30 µs it takes
//! to read the operand. Here a row of `x` meets all `r` rows of the factor while it is in
//! L1 (`fastmath::dots`, `fastmath::outer_add`). Other dtypes and devices use `matmul`.

use super::fastmath;
use candle_core::{DType, Result, Tensor, D};
use rayon::prelude::*;

/// Rows per task of [`times_t`].
const ROWS: usize = 32;

/// Whether a tensor can be read as a host f32 slice here. Unoptimized builds (the test
/// profile) leave the products to gemm, which is optimized there: these loops are written
/// for the optimizer and run ~50× slower without it (the tests call them directly).
fn host_f32(t: &Tensor) -> bool {
    !cfg!(debug_assertions) && t.dtype() == DType::F32 && t.device().is_cpu()
}

/// A contiguous f32 CPU tensor's values.
fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `x · aᵀ` for `x` `[.., k]` and `a` `[r, k]`: `[.., r]`.
pub fn times_t(x: &Tensor, a: &Tensor) -> Result<Tensor> {
    if !host_f32(x) || !host_f32(a) {
        return x.broadcast_matmul(&a.t()?);
    }
    by_rows(x, a)
}

/// `x · w` for `x` `[.., k]` and `w` `[k, r]`: `[.., r]` (LoRA's `dy·B`; `w`'s transpose is
/// a view, and by eights the loops read `w` as it lies).
pub fn times(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    times_t(x, &w.t()?)
}

/// [`times_t`] by this module's loops.
fn by_rows(x: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (r, k) = a.dims2()?;
    if x.dim(D::Minus1)? != k {
        candle_core::bail!("lowrank: {:?} times the transpose of [{r}, {k}]", x.dims());
    }
    let eights = r % 8 == 0;
    // By eights the factor is read transposed (`k × r`): a row's sums stay in registers.
    let av = if eights {
        values(&a.t()?.contiguous()?)?
    } else {
        values(a)?
    };
    let x = x.contiguous()?;
    // The large operand is read in place.
    let Some(out) = super::borrow_f32(&x, |xv| {
        let n = xv.len() / k.max(1);
        let mut out = vec![0f32; n * r];
        if r > 0 && k > 0 {
            out.par_chunks_mut(ROWS * r)
                .zip(xv.par_chunks(ROWS * k))
                .for_each(|(o, xs)| {
                    if eights {
                        fastmath::times_factor8(xs, &av, k, o);
                        return;
                    }
                    for (orow, xrow) in o.chunks_exact_mut(r).zip(xs.chunks_exact(k)) {
                        fastmath::dots(xrow, &av, orow);
                    }
                });
        }
        Ok(out)
    })?
    else {
        return x.broadcast_matmul(&a.t()?);
    };
    let mut shape = x.dims().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = r;
    }
    Tensor::from_vec(out, shape, x.device())
}

/// `pᵀ · q` for `p` `[n, r]` and `q` `[n, k]`: `[r, k]`. Each thread sums its share of the
/// rows into its own `[r, k]`, and the shares are added in order (the same value for the
/// same number of threads).
pub fn t_times(p: &Tensor, q: &Tensor) -> Result<Tensor> {
    if !host_f32(p) || !host_f32(q) {
        return p.t()?.matmul(q);
    }
    by_shares(p, q)
}

/// [`t_times`] by this module's loops.
fn by_shares(p: &Tensor, q: &Tensor) -> Result<Tensor> {
    let (n, r) = p.dims2()?;
    let (nq, k) = q.dims2()?;
    if n != nq {
        candle_core::bail!("lowrank: the transpose of [{n}, {r}] times [{nq}, {k}]");
    }
    let pv = values(p)?;
    let q = q.contiguous()?;
    if r % 8 == 0 && r > 0 && k >= 8 {
        if let Some(out) = super::borrow_f32(&q, |qv| Ok(t_times_by_strips(&pv, qv, n, r, k)))? {
            return Tensor::from_vec(out, (r, k), p.device());
        }
    }
    let shares = rayon::current_num_threads().clamp(1, n.max(1));
    let per = n.div_ceil(shares).max(1);
    // The large operand is read in place.
    let Some(parts) = super::borrow_f32(&q, |qv| {
        Ok((0..shares)
            .into_par_iter()
            .map(|s| {
                let mut acc = vec![0f32; r * k];
                for t in s * per..((s + 1) * per).min(n) {
                    fastmath::outer_add(&pv[t * r..][..r], &qv[t * k..][..k], &mut acc);
                }
                acc
            })
            .collect::<Vec<Vec<f32>>>())
    })?
    else {
        return p.t()?.matmul(&q);
    };
    let mut parts = parts.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![0f32; r * k]);
    for part in parts {
        for (s, v) in sum.iter_mut().zip(part) {
            *s += v;
        }
    }
    Tensor::from_vec(sum, (r, k), p.device())
}

/// Columns per task of [`t_times_by_strips`].
const STRIP: usize = 64;

/// `pᵀ·q` for `r` a multiple of 8: the threads take column strips of the `[r, k]` result, each
/// summed over all `n` rows in order (the same value for any number of threads).
fn t_times_by_strips(pv: &[f32], qv: &[f32], n: usize, r: usize, k: usize) -> Vec<f32> {
    let full = k / 8 * 8;
    let starts: Vec<usize> = (0..full).step_by(STRIP).collect();
    let strips: Vec<(usize, usize, Vec<f32>)> = starts
        .into_par_iter()
        .map(|c0| {
            let w = STRIP.min(full - c0);
            let mut o = vec![0f32; r * w];
            fastmath::t_times_strip8(pv, qv, r, k, c0, &mut o);
            (c0, w, o)
        })
        .collect();
    let mut out = vec![0f32; r * k];
    for (c0, w, o) in strips {
        for j in 0..r {
            out[j * k + c0..][..w].copy_from_slice(&o[j * w..][..w]);
        }
    }
    for c in full..k {
        for j in 0..r {
            out[j * k + c] = (0..n).fold(0f32, |s, t| pv[t * r + j].mul_add(qv[t * k + c], s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::tensor;
    use super::*;

    /// `got` against `lhs · rhs` in f64, within f32's forward error bound for a sum of
    /// `k` products: `|got − exact| ≤ k·u·(|lhs|·|rhs|)` elementwise (u = 2⁻²⁴).
    fn within_rounding(got: &Tensor, lhs: &Tensor, rhs: &Tensor) {
        let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let (l, r) = (f(lhs), f(rhs));
        let exact = l.matmul(&r).unwrap();
        let bound = l.abs().unwrap().matmul(&r.abs().unwrap()).unwrap();
        assert_eq!(got.dims(), exact.dims());
        let k = lhs.dim(1).unwrap() as f64;
        let worst = ((f(got) - exact).unwrap().abs().unwrap() / (bound + 1e-30).unwrap())
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(worst <= k * 2f64.powi(-24), "{worst} > {k}·u");
    }

    /// Both products against the exact (f64) ones, with lengths that leave a remainder after
    /// the sixteen lanes and row counts that leave a partial task.
    #[test]
    fn rank_products_are_exact_up_to_f32_rounding() {
        for &(n, k, r) in &[
            (1, 1, 1),
            (37, 33, 8),
            (256, 576, 8),
            (70, 1000, 16),
            (9, 20, 5),
            (3, 7, 8),
        ] {
            let x = tensor(&[n, k], 1);
            let a = tensor(&[r, k], 2);
            let at = a.t().unwrap().contiguous().unwrap();
            within_rounding(&by_rows(&x, &a).unwrap(), &x, &at);
            let x3 = x.reshape((1, n, k)).unwrap();
            let u = by_rows(&x3, &a).unwrap();
            assert_eq!(u.dims(), &[1, n, r]);
            let p = tensor(&[n, r], 3);
            let pt = p.t().unwrap().contiguous().unwrap();
            within_rounding(&by_shares(&p, &x).unwrap(), &pt, &x);
        }
        let err = by_rows(&tensor(&[2, 5], 1), &tensor(&[8, 4], 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[2, 5] times the transpose of [8, 4]"),
            "{err}"
        );
    }
}
