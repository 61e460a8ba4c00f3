//! Batched products of many small matrices (attention's per-head products): the batch
//! split across the threads with one single-threaded gemm per matrix, and transposed
//! operands read through their strides instead of copied.
//!
//! candle's `matmul` runs a batch as one gemm call after another, each split across the
//! threads: for attention's `[b·heads]` products of `[t, d]` by `[d, t]` that is one
//! hand-off to the pool per head, and `kᵀ` must first be copied to contiguous memory. Here
//! each thread takes whole matrices, and a transposed operand is copied row-major inside
//! the task (gemm's order of summation depends on the strides): the values are those of
//! candle's `matmul` of contiguous operands, bit for bit.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `a · b` for `a` `[.., m, k]` and `b` `[.., k, n]` with the same batch dimensions (any
/// strides in the last two, e.g. a `.t()` view), differentiable; candle's `matmul` where
/// this does not apply (another dtype or device, broadcast batches).
pub fn bmm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match operands(a, b)? {
        Some((a, b)) => a.apply_op2(
            &b,
            Bmm {
                causal: Causal::Full,
            },
        ),
        None => a.matmul(&b.contiguous()?),
    }
}

/// `a` and `b` as [`Bmm`] takes them, batches that do not collapse into one stride copied;
/// `None` where candle's `matmul` must take the product (another dtype or device, broadcast
/// batches, an empty dimension).
fn operands(a: &Tensor, b: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
    let (da, db) = (a.dims(), b.dims());
    let r = da.len();
    let fits = a.dtype() == DType::F32
        && b.dtype() == DType::F32
        && a.device().is_cpu()
        && b.device().is_cpu()
        && r >= 3
        && db.len() == r
        && da[..r - 2] == db[..r - 2]
        && da[r - 1] == db[r - 2]
        && da.iter().chain(db).all(|&d| d > 0);
    if !fits {
        return Ok(None);
    }
    let collapsed = |t: &Tensor| -> Result<Tensor> {
        match Operand::of(t.layout(), usize::MAX) {
            Some(_) => Ok(t.clone()),
            None => t.contiguous(),
        }
    };
    Ok(Some((collapsed(a)?, collapsed(b)?)))
}

/// Which part of one of attention's square products a causal mask leaves to compute. Above
/// the diagonal every probability is exactly 0 (the mask's −1e9 underflows), and so is
/// every score gradient there; the backward's products skip those terms. By row blocks, so
/// about 40% of each product's multiply-adds are left out (more at long sequences).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causal {
    /// Every element: any product.
    Full,
    /// `out[i][j]` only for `j` up to `i`'s block, the rest written 0: `dO·Vᵀ`, whose upper
    /// triangle only ever meets a zero probability.
    LowerOut,
    /// `a` is zero above its diagonal, so row `i` sums `k ≤ i` (`dS·K`).
    LowerLhs,
    /// `a` is zero below its diagonal, so row `i` sums `k ≥ i` (`Pᵀ·dO`, `dSᵀ·Q`).
    UpperLhs,
}

/// [`bmm`] of one of attention's square products under a causal mask (see [`Causal`]), no
/// gradient. Falls back to the whole product where [`bmm`] would.
pub fn bmm_causal(a: &Tensor, b: &Tensor, causal: Causal) -> Result<Tensor> {
    let (da, db) = (a.dims(), b.dims());
    let r = da.len();
    let square = r >= 3
        && db.len() == r
        && match causal {
            Causal::Full => true,
            Causal::LowerOut => da[r - 2] == db[r - 1],
            Causal::LowerLhs | Causal::UpperLhs => da[r - 2] == da[r - 1],
        };
    match operands(a, b)? {
        Some((a, b)) if square => a.apply_op2_no_bwd(&b, &Bmm { causal }),
        _ => bmm(a, b),
    }
}

/// `dst = lhs · rhs` on this thread with gemm's f32 kernels: `dst` row-major `m × n`, each
/// operand a pointer and its (row, column) strides.
///
/// # Safety
/// `lhs` must address `m × k` live elements at its strides, `rhs` `k × n`, and `dst` hold
/// `m × n` (which need not be initialized: all are written, none read, zeros when `k` is 0).
pub(super) unsafe fn gemm_serial(
    dst: *mut f32,
    (m, n, k): (usize, usize, usize),
    lhs: (*const f32, (isize, isize)),
    rhs: (*const f32, (isize, isize)),
) {
    // SAFETY: as the caller vouches, with `dst`'s rows `n` apart.
    unsafe { gemm_rows(dst, n, (m, n, k), lhs, rhs) }
}

/// [`gemm_serial`] with `dst`'s rows `dst_rs` apart.
///
/// # Safety
/// As [`gemm_serial`], `dst` holding `m` rows of `n` at stride `dst_rs`.
unsafe fn gemm_rows(
    dst: *mut f32,
    dst_rs: usize,
    (m, n, k): (usize, usize, usize),
    (lhs, (lhs_rs, lhs_cs)): (*const f32, (isize, isize)),
    (rhs, (rhs_rs, rhs_cs)): (*const f32, (isize, isize)),
) {
    // SAFETY: the caller vouches for both operands; gemm writes `dst`'s `m × n` elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Rows per block of a causal product: 32, or an eighth of the matrix at long sequences.
fn causal_rows(m: usize) -> usize {
    (m / 8).max(32)
}

/// One matrix of a causal product (see [`Causal`]): `dst` row-major `m × n`, `pa` `m × k`,
/// `pb` `k × n`, both row-major.
fn causal_product(
    causal: Causal,
    dst: &mut [std::mem::MaybeUninit<f32>],
    (m, n, k): (usize, usize, usize),
    pa: &[f32],
    pb: &[f32],
) {
    let rb = causal_rows(m);
    for r0 in (0..m).step_by(rb) {
        let r1 = (r0 + rb).min(m);
        let rows = r1 - r0;
        let out = dst[r0 * n..].as_mut_ptr().cast::<f32>();
        let (ks, ke, cols) = match causal {
            Causal::LowerOut => (0, k, r1.min(n)),
            Causal::LowerLhs => (0, r1.min(k), n),
            Causal::UpperLhs => (r0.min(k), k, n),
            Causal::Full => (0, k, n),
        };
        // SAFETY: rows `r0..r1` of `pa` from column `ks` and rows `ks..ke` of `pb` are inside
        // the `m × k` and `k × n` slices; `out` is rows `r0..r1` of `dst`, of which gemm writes
        // the first `cols` columns (the rest are written below).
        unsafe {
            gemm_rows(
                out,
                n,
                (rows, cols, ke - ks),
                (pa[r0 * k + ks..].as_ptr(), (k as isize, 1)),
                (pb[ks * n..].as_ptr(), (n as isize, 1)),
            )
        };
        if cols < n {
            for row in dst[r0 * n..r1 * n].chunks_exact_mut(n) {
                for v in &mut row[cols..] {
                    v.write(0.0);
                }
            }
        }
    }
}

struct Bmm {
    causal: Causal,
}

impl CustomOp2 for Bmm {
    fn name(&self) -> &'static str {
        "tunelab-bmm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (xa, xb) = (s1.as_slice::<f32>()?, s2.as_slice::<f32>()?);
        let (da, db) = (l1.dims(), l2.dims());
        let r = da.len();
        let (m, k, n) = (da[r - 2], da[r - 1], db[r - 1]);
        let batch: usize = da[..r - 2].iter().product();
        let mut shape = da[..r - 1].to_vec();
        shape.push(n);
        let (Some(oa), Some(ob)) = (Operand::of(l1, xa.len()), Operand::of(l2, xb.len())) else {
            candle_core::bail!("bmm: operands {l1:?} and {l2:?} do not collapse to one batch");
        };
        let fill = |out: &mut [std::mem::MaybeUninit<f32>]| {
            out.par_chunks_mut((m * n).max(1))
                .enumerate()
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(ta, tb), (i, dst)| {
                        // Row-major operands, as candle's `matmul` of `.contiguous()` copies
                        // sees them: gemm then sums in the same order, so the values are the
                        // same.
                        let pa = oa.row_major(xa, i, m, k, ta);
                        let pb = ob.row_major(xb, i, k, n, tb);
                        if self.causal != Causal::Full {
                            return causal_product(self.causal, dst, (m, n, k), pa, pb);
                        }
                        // SAFETY: `pa` and `pb` are row-major `m × k` and `k × n` matrices
                        // inside their slices (`Operand::of` checked the bounds); `dst` holds
                        // `m × n`.
                        unsafe {
                            gemm_serial(
                                dst.as_mut_ptr().cast(),
                                (m, n, k),
                                (pa.as_ptr(), (k as isize, 1)),
                                (pb.as_ptr(), (n as isize, 1)),
                            )
                        }
                    },
                )
        };
        // SAFETY: every chunk is a whole `m × n` output, all of which gemm writes.
        let out = unsafe { super::fastmath::written(batch * m * n, fill) };
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(bmm(grad, &b.t()?)?), Some(bmm(&a.t()?, grad)?)))
    }
}

/// A matrix operand: where its data starts, the stride between batch matrices, and its
/// row and column strides.
#[derive(Clone, Copy)]
struct Operand {
    start: usize,
    batch_stride: usize,
    rs: usize,
    cs: usize,
}

impl Operand {
    /// `None` unless the batch dimensions collapse into one stride and every element lies
    /// inside `len`.
    fn of(layout: &Layout, len: usize) -> Option<Operand> {
        let dims = layout.dims();
        let strides = layout.stride();
        let r = dims.len();
        if r < 3 {
            return None;
        }
        for i in 0..r - 3 {
            if dims[i] > 1 && strides[i] != strides[i + 1] * dims[i + 1] {
                return None;
            }
        }
        let last = layout.start_offset()
            + dims
                .iter()
                .zip(strides)
                .map(|(d, s)| d.saturating_sub(1) * s)
                .sum::<usize>();
        if dims.contains(&0) || last >= len {
            return None;
        }
        Some(Operand {
            start: layout.start_offset(),
            batch_stride: strides[r - 3],
            rs: strides[r - 2],
            cs: strides[r - 1],
        })
    }

    /// Matrix `i` as a row-major `rows × cols` slice: in place when it is one, else copied
    /// into `buf` (a transposed view: `kᵀ`, `pᵀ`).
    fn row_major<'a>(
        &self,
        x: &'a [f32],
        i: usize,
        rows: usize,
        cols: usize,
        buf: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        let start = self.start + i * self.batch_stride;
        if self.cs == 1 && self.rs == cols {
            return &x[start..start + rows * cols];
        }
        buf.clear();
        buf.resize(rows * cols, 0.0);
        for (r, row) in buf.chunks_exact_mut(cols).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = x[start + r * self.rs + c * self.cs];
            }
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::tensor as t;
    use super::*;

    fn bits(x: &Tensor) -> Vec<u32> {
        x.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn equals_candle_bit_for_bit_with_transposed_operands() {
        let q = t(&[2, 3, 7, 5], 1);
        let k = t(&[2, 3, 7, 5], 2);
        let p = t(&[2, 3, 7, 7], 3);
        // qkᵀ, p·v, pᵀ·v, and a narrowed (offset) operand.
        let cases = [
            (q.clone(), k.t().unwrap()),
            (p.clone(), k.clone()),
            (p.t().unwrap(), q.clone()),
            (q.narrow(3, 1, 3).unwrap(), t(&[2, 3, 3, 4], 4)),
        ];
        let close = |got: &Tensor, want: &Tensor, what: &str| {
            assert_eq!(got.dims(), want.dims(), "{what}");
            let (g, w) = (bits(got), bits(want));
            for (i, (x, y)) in g.iter().zip(&w).enumerate() {
                let (x, y) = (f32::from_bits(*x), f32::from_bits(*y));
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "{what} [{i}]: {x} vs {y}"
                );
            }
        };
        for (i, (a, b)) in cases.iter().enumerate() {
            let want = a
                .contiguous()
                .unwrap()
                .matmul(&b.contiguous().unwrap())
                .unwrap();
            let got = bmm(a, b).unwrap();
            assert_eq!(got.dims(), want.dims(), "case {i}");
            assert_eq!(
                bits(&got),
                bits(&want),
                "case {i}: candle's values bit for bit"
            );
        }
        // Its gradients are the matmul's.
        let (va, vb) = (
            candle_core::Var::from_tensor(&q).unwrap(),
            candle_core::Var::from_tensor(&k).unwrap(),
        );
        let w = t(&[2, 3, 7, 7], 5);
        let loss = |y: Tensor| (y * &w).unwrap().sum_all().unwrap();
        let g1 = loss(bmm(va.as_tensor(), &vb.as_tensor().t().unwrap()).unwrap())
            .backward()
            .unwrap();
        let g2 = loss(va.as_tensor().matmul(&vb.as_tensor().t().unwrap()).unwrap())
            .backward()
            .unwrap();
        for v in [&va, &vb] {
            let (x, y) = (g1.get(v).unwrap(), g2.get(v).unwrap());
            close(x, y, "gradient");
        }
        // Mismatched inner dimensions are refused as candle refuses them.
        assert!(bmm(&q, &k).is_err());
    }

    /// The causal products against the whole ones on causal inputs (zero above the
    /// diagonal), at sizes with a partial row block and long enough for several blocks.
    #[test]
    fn causal_products_equal_the_whole_ones_on_causal_inputs() {
        for &(t_len, d) in &[(7usize, 5usize), (70, 16), (300, 8)] {
            let lower = |x: Tensor| {
                let m: Vec<f32> = (0..t_len * t_len)
                    .map(|i| if i % t_len <= i / t_len { 1.0 } else { 0.0 })
                    .collect();
                let m = Tensor::from_vec(m, (t_len, t_len), &candle_core::Device::Cpu).unwrap();
                x.broadcast_mul(&m).unwrap()
            };
            let p = lower(t(&[2, 3, t_len, t_len], 6));
            let (v, g) = (t(&[2, 3, t_len, d], 7), t(&[2, 3, t_len, d], 8));
            let close = |got: Tensor, want: Tensor, what: &str| {
                assert_eq!(got.dims(), want.dims(), "{what}");
                let d = super::super::testing::max_abs(&(got - &want).unwrap());
                assert!(
                    d <= 1e-5 * super::super::testing::max_abs(&want).max(1.0),
                    "{what}: {d}"
                );
            };
            // dO·Vᵀ: the lower triangle (and the diagonal blocks) as the whole product, zeros
            // above the blocks.
            let want = lower(bmm(&g, &v.t().unwrap()).unwrap());
            let got = lower(bmm_causal(&g, &v.t().unwrap(), Causal::LowerOut).unwrap());
            close(got, want, "lower output");
            let whole = bmm_causal(&g, &v.t().unwrap(), Causal::LowerOut).unwrap();
            let far = whole
                .narrow(2, 0, 1)
                .unwrap()
                .narrow(3, t_len - 1, 1)
                .unwrap();
            if t_len > causal_rows(t_len) {
                assert_eq!(
                    super::super::testing::max_abs(&far),
                    0.0,
                    "above the blocks"
                );
            }
            close(
                bmm_causal(&p, &v, Causal::LowerLhs).unwrap(),
                bmm(&p, &v).unwrap(),
                "lower lhs",
            );
            close(
                bmm_causal(&p.t().unwrap(), &g, Causal::UpperLhs).unwrap(),
                bmm(&p.t().unwrap(), &g).unwrap(),
                "upper lhs",
            );
        }
        // A product that is not square falls back to the whole one.
        let (a, b) = (t(&[1, 2, 3, 4], 9), t(&[1, 2, 4, 5], 10));
        assert_eq!(
            bits(&bmm_causal(&a, &b, Causal::LowerLhs).unwrap()),
            bits(&bmm(&a, &b).unwrap())
        );
    }
}
