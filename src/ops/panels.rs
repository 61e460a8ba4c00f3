//! A frozen dense f32 weight stored in gemm's microkernel panels, twice: once for the
//! forward's `x·Wᵀ` and once for the backward's `dy·W`, so neither product packs the weight.
//!
//! candle's `matmul` hands each call to gemm, which packs the weight into panels of `MR`
//! rows (64 on AVX-512) before multiplying, on one thread, every call: a LoRA step on a
//! frozen base repacks every projection twice per step, though the weight never changes.
//! Packed once here, a product is only gemm's own microkernel over the panels with the
//! activations read in place (a token's row is the microkernel's broadcast operand). At
//! SmolLM2's shape (256 tokens) the step's projection and head products took 711 ms against
//! 932 ms through `matmul` (BENCHMARKS.md). The cost is memory: the two layouts hold the
//! weight twice, so [`crate::model::Model::prefer_training_layout`] packs only where that
//! fits. Values are gemm's microkernel's sums: equal to `matmul`'s up to the order of
//! summation (within 1e-5 relative in the tests).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// gemm-f32's microkernel signature: `dst(m × n) = alpha·dst + beta·lhs·rhs` over `k`.
type Ukr = unsafe fn(
    usize,
    usize,
    usize,
    *mut f32,
    *const f32,
    *const f32,
    isize,
    isize,
    isize,
    isize,
    isize,
    f32,
    f32,
    u8,
    bool,
    bool,
    bool,
    *const f32,
);

/// The instruction set whose microkernels run the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 64-row panels (four 16-lane registers) by 6 columns.
    Avx512,
    /// 16-row panels (two 8-lane registers) by 6 columns.
    Fma,
}

#[cfg(target_arch = "x86_64")]
mod kernels {
    use super::Ukr;
    use gemm_f32::microkernel::avx512f::f32 as v4;
    use gemm_f32::microkernel::fma::f32 as v3;

    /// `[registers of rows − 1][columns − 1]`.
    pub const AVX512: [[Ukr; 6]; 4] = [
        [v4::x1x1, v4::x1x2, v4::x1x3, v4::x1x4, v4::x1x5, v4::x1x6],
        [v4::x2x1, v4::x2x2, v4::x2x3, v4::x2x4, v4::x2x5, v4::x2x6],
        [v4::x3x1, v4::x3x2, v4::x3x3, v4::x3x4, v4::x3x5, v4::x3x6],
        [v4::x4x1, v4::x4x2, v4::x4x3, v4::x4x4, v4::x4x5, v4::x4x6],
    ];
    pub const FMA: [[Ukr; 6]; 2] = [
        [v3::x1x1, v3::x1x2, v3::x1x3, v3::x1x4, v3::x1x5, v3::x1x6],
        [v3::x2x1, v3::x2x2, v3::x2x3, v3::x2x4, v3::x2x5, v3::x2x6],
    ];
}

impl Isa {
    /// What this CPU runs, once; `None` off x86-64 or without FMA (the products then stay
    /// candle's `matmul`).
    pub fn detect() -> Option<Isa> {
        static ISA: OnceLock<Option<Isa>> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    return Some(Isa::Avx512);
                }
                if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
                    return Some(Isa::Fma);
                }
            }
            None
        })
    }

    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Fma => 8,
        }
    }

    /// Rows per panel.
    fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 64,
            Isa::Fma => 16,
        }
    }

    /// The microkernel for `m ≤ mr` rows and `1 ≤ n ≤ NR` columns.
    fn kernel(self, m: usize, n: usize) -> Ukr {
        let regs = m.div_ceil(self.lanes()) - 1;
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => kernels::AVX512[regs][n - 1],
                Isa::Fma => kernels::FMA[regs][n - 1],
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (regs, n);
            unreachable!("Isa::detect is None off x86-64")
        }
    }
}

/// Columns per microkernel call (both kernel sets).
const NR: usize = 6;

/// 64 bytes, the alignment the microkernels' panel loads need.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

/// The contraction is cut into blocks of this many so that a panel's block (64 × 512 f32,
/// 128 KiB) stays in L2 while the columns stream past it.
const KC: usize = 512;

/// An `m × k` matrix as panels of `mr` rows: panel `p` holds, for each `kk`, the `mr` values
/// `(p·mr + r, kk)` side by side (zero past row `m`).
pub struct PanelMatrix {
    data: Vec<Line>,
    m: usize,
    k: usize,
    isa: Isa,
}

impl PanelMatrix {
    fn alloc(m: usize, k: usize, isa: Isa) -> PanelMatrix {
        let floats = m.div_ceil(isa.mr()) * isa.mr() * k;
        PanelMatrix {
            data: vec![Line([0.0; 16]); floats.div_ceil(16)],
            m,
            k,
            isa,
        }
    }

    fn floats_mut(&mut self) -> &mut [f32] {
        let len = self.data.len() * 16;
        // SAFETY: `Line` is 16 f32 with no padding (repr(C), 64 bytes).
        unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast::<f32>(), len) }
    }

    fn floats(&self) -> &[f32] {
        // SAFETY: as in `floats_mut`.
        unsafe {
            std::slice::from_raw_parts(self.data.as_ptr().cast::<f32>(), self.data.len() * 16)
        }
    }

    /// An `m × k` matrix whose panels `fill(p, rows, panel)` writes in parallel (`rows` of
    /// the panel are real, the rest stay zero).
    fn filled(
        m: usize,
        k: usize,
        isa: Isa,
        fill: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) -> PanelMatrix {
        let mut pm = PanelMatrix::alloc(m, k, isa);
        let mr = isa.mr();
        if m > 0 && k > 0 {
            pm.floats_mut()
                .par_chunks_mut(mr * k)
                .enumerate()
                .for_each(|(p, panel)| fill(p, mr.min(m - p * mr), panel));
        }
        pm
    }

    /// The panels of row-major `src` (`m × k`): each panel transposes `mr` rows.
    fn of_rows(src: &[f32], m: usize, k: usize, isa: Isa) -> PanelMatrix {
        let mr = isa.mr();
        Self::filled(m, k, isa, |p, rows, panel| {
            for r in 0..rows {
                let row = &src[(p * mr + r) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * mr + r] = v;
                }
            }
        })
    }

    /// The panels of the transpose of row-major `src` (`k × m`): row `kk` of `src` gives each
    /// panel its `mr` values at `kk` as they lie.
    fn of_columns(src: &[f32], k: usize, m: usize, isa: Isa) -> PanelMatrix {
        let mr = isa.mr();
        Self::filled(m, k, isa, |p, rows, panel| {
            for kk in 0..k {
                panel[kk * mr..][..rows].copy_from_slice(&src[kk * m + p * mr..][..rows]);
            }
        })
    }

    /// Element `(i, kk)`.
    fn at(&self, i: usize, kk: usize) -> f32 {
        let mr = self.isa.mr();
        self.floats()[(i / mr) * mr * self.k + kk * mr + i % mr]
    }

    /// Rows `ids` as a row-major `ids.len() × k` matrix.
    fn rows(&self, ids: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * self.k);
        for &i in ids {
            out.extend((0..self.k).map(|kk| self.at(i, kk)));
        }
        out
    }

    /// `act · selfᵀ (+ scale · u · lowᵀ)`: `act` row-major `n × k` (a row per token), the
    /// result row-major `n × m`. The threads split (panel, column range) tasks; each task runs
    /// the microkernel over its columns a contraction block at a time, the panel's block
    /// staying in cache. A low-rank term (LoRA's) is one more block of the same sum: `low`
    /// (`m × r` panels) against `u` (`n × r`), added while the output tile is still in cache.
    fn product(&self, act: &[f32], n: usize, low: Option<&LowRank>) -> Vec<f32> {
        let (m, k, isa) = (self.m, self.k, self.isa);
        let (mr, nr) = (isa.mr(), NR);
        assert!(
            act.len() >= n * k,
            "panels: {} activations for {n} × {k}",
            act.len()
        );
        if let Some(l) = low {
            assert!(
                l.panels.m == m && l.panels.isa == isa && l.u.len() >= n * l.panels.k,
                "panels: a low-rank term of {} × {} for {n} × {m}",
                l.panels.m,
                l.panels.k
            );
        }
        if k == 0 {
            // No block runs, so nothing would write the output: the empty sum.
            return vec![0.0; n * m];
        }
        let mut out: Vec<f32> = Vec::with_capacity(n * m);
        if n == 0 || m == 0 {
            return out;
        }
        let panels = m.div_ceil(mr);
        let strips = n.div_ceil(nr);
        let threads = rayon::current_num_threads().max(1);
        let chunks = (4 * threads).div_ceil(panels).clamp(1, strips);
        let per = strips.div_ceil(chunks);
        let dst = SendPtr(out.as_mut_ptr());
        let lhs = SendPtr(self.floats().as_ptr().cast_mut());
        let rhs = SendPtr(act.as_ptr().cast_mut());
        let low = low.map(|l| {
            (
                SendPtr(l.panels.floats().as_ptr().cast_mut()),
                SendPtr(l.u.as_ptr().cast_mut()),
                l.panels.k,
                l.scale,
            )
        });
        (0..panels * chunks).into_par_iter().for_each(|task| {
            let (p, c) = (task / chunks, task % chunks);
            let rows = mr.min(m - p * mr);
            for kb in (0..k).step_by(KC) {
                let depth = KC.min(k - kb);
                for s in c * per..((c + 1) * per).min(strips) {
                    let cols = nr.min(n - s * nr);
                    let panel = lhs.at(p * mr * k + kb * mr);
                    // SAFETY: the panel block holds `mr × depth` floats at stride `mr` and is
                    // 64-byte aligned (`Line`s; offsets are multiples of `mr`, itself of 16
                    // floats); the activations hold `cols` rows of `k` from row `s·nr`; `dst` has room for `n × m`, and each (row, column) is
                    // written by exactly one task (its panel, its strip), first with
                    // `alpha_status` 0 (no read of the uninitialized value), then accumulated.
                    unsafe {
                        (isa.kernel(rows, cols))(
                            rows,
                            cols,
                            depth,
                            dst.at(s * nr * m + p * mr),
                            panel,
                            rhs.at(s * nr * k + kb),
                            m as isize,
                            1,
                            mr as isize,
                            1,
                            k as isize,
                            1.0,
                            1.0,
                            if kb == 0 { 0 } else { 1 },
                            false,
                            false,
                            false,
                            panel,
                        );
                    }
                    if let (Some((lp, u, r, scale)), true) = (low, kb + depth == k) {
                        let panel = lp.at(p * mr * r);
                        // SAFETY: as above for the `m × r` panels and the `n × r` factor; the
                        // tile was written by this task's first block, so it is accumulated.
                        unsafe {
                            (isa.kernel(rows, cols))(
                                rows,
                                cols,
                                r,
                                dst.at(s * nr * m + p * mr),
                                panel,
                                u.at(s * nr * r),
                                m as isize,
                                1,
                                mr as isize,
                                1,
                                r as isize,
                                1.0,
                                scale,
                                1,
                                false,
                                false,
                                false,
                                panel,
                            );
                        }
                    }
                }
            }
        });
        // SAFETY: the tasks above wrote every one of the `n × m` values.
        unsafe { out.set_len(n * m) };
        out
    }
}

/// A rank-`r` term added to a product: `scale · u · vᵀ` with `v` (`m × r`) in panels.
struct LowRank {
    panels: PanelMatrix,
    u: Vec<f32>,
    scale: f32,
}

/// A raw pointer handed to the pool's tasks, which write disjoint parts.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the tasks touch disjoint elements (see `PanelMatrix::product`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// A frozen `[out, in]` weight packed for both of the training step's products.
pub struct FrozenPanels {
    /// `W` by rows: `x·Wᵀ`.
    forward: PanelMatrix,
    /// `Wᵀ` by rows: `dy·W`.
    backward: PanelMatrix,
}

impl std::fmt::Debug for FrozenPanels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FrozenPanels({} × {}, {:?})",
            self.forward.m, self.forward.k, self.forward.isa
        )
    }
}

impl FrozenPanels {
    /// Packs a 2-D f32 CPU tensor; `None` where the CPU has no microkernel for it (the
    /// weight then stays a plain tensor).
    pub fn new(w: &Tensor) -> Result<Option<FrozenPanels>> {
        match Isa::detect() {
            Some(isa) => Self::with_isa(w, isa),
            None => Ok(None),
        }
    }

    /// As [`FrozenPanels::new`] with the given kernels (the tests run FMA's on an AVX-512 CPU).
    fn with_isa(w: &Tensor, isa: Isa) -> Result<Option<FrozenPanels>> {
        if w.dtype() != DType::F32 || !w.device().is_cpu() || w.rank() != 2 {
            return Ok(None);
        }
        let (out, inp) = w.dims2()?;
        if out == 0 || inp == 0 {
            return Ok(None);
        }
        // Read in place (a head is 113 MB at SmolLM2's shape).
        super::borrow_f32(&w.contiguous()?, |v| {
            Ok(FrozenPanels {
                forward: PanelMatrix::of_rows(v, out, inp, isa),
                backward: PanelMatrix::of_columns(v, out, inp, isa),
            })
        })
    }

    /// (out, in)
    pub fn dims(&self) -> (usize, usize) {
        (self.forward.m, self.forward.k)
    }

    /// Bytes held (both layouts).
    pub fn storage_bytes(&self) -> usize {
        (self.forward.data.len() + self.backward.data.len()) * std::mem::size_of::<Line>()
    }

    /// Rows `ids` of `W` as an f32 `[ids.len(), in]` tensor (an embedding lookup).
    pub fn rows(&self, ids: &[usize], device: &candle_core::Device) -> Result<Tensor> {
        Tensor::from_vec(self.forward.rows(ids), (ids.len(), self.forward.k), device)
    }

    /// `W` as a plain f32 `[out, in]` tensor.
    pub fn dense(&self) -> Result<Tensor> {
        let ids: Vec<usize> = (0..self.forward.m).collect();
        self.rows(&ids, &candle_core::Device::Cpu)
    }

    /// `x · Wᵀ` for f32 `x` `[.., in]` on the CPU.
    pub fn forward(self: &Arc<Self>, x: &Tensor) -> Result<Tensor> {
        self.apply(x, false, None)
    }

    /// `x · Wᵀ` for f32 `x` `[n, in]` on the CPU as a row-major host vector (`[n, out]`):
    /// the LM head's logits go straight into its softmax pass, with no tensor to copy out of.
    pub fn forward_host(&self, x: &Tensor) -> Result<Vec<f32>> {
        let pm = &self.forward;
        let x = x.contiguous()?;
        let (n, k) = x.dims2()?;
        if k != pm.k {
            candle_core::bail!(
                "frozen-panels: input [{n}, {k}] for a {} × {} matrix",
                pm.m,
                pm.k
            );
        }
        super::borrow_f32(&x, |v| Ok(pm.product(v, n, None)))?.ok_or_else(|| {
            candle_core::Error::Msg("frozen-panels: input not f32 on the CPU".into())
        })
    }

    /// `dy · W` for f32 `dy` `[.., out]` on the CPU.
    pub fn input_grad(self: &Arc<Self>, dy: &Tensor) -> Result<Tensor> {
        self.apply(dy, true, None)
    }

    /// `x · Wᵀ + scale · u · Bᵀ`: a LoRA projection's forward in one pass, for `u = x·Aᵀ`
    /// (`[.., r]`) and `B` `[out, r]`.
    pub fn forward_lora(
        self: &Arc<Self>,
        x: &Tensor,
        u: &Tensor,
        b: &Tensor,
        scale: f64,
    ) -> Result<Tensor> {
        let (out, r) = b.dims2()?;
        let low = LowRank {
            panels: PanelMatrix::of_rows(&f32s(b)?, out, r, self.forward.isa),
            u: f32s(u)?,
            scale: scale as f32,
        };
        self.apply(x, false, Some(low))
    }

    /// `dy · W + du · A`: a LoRA projection's input gradient in one pass, for `du`
    /// (`[.., r]`, scaled) and `A` `[r, in]`.
    pub fn input_grad_lora(
        self: &Arc<Self>,
        dy: &Tensor,
        du: &Tensor,
        a: &Tensor,
    ) -> Result<Tensor> {
        let (r, inp) = a.dims2()?;
        let low = LowRank {
            panels: PanelMatrix::of_columns(&f32s(a)?, r, inp, self.backward.isa),
            u: f32s(du)?,
            scale: 1.0,
        };
        self.apply(dy, true, Some(low))
    }

    fn apply(self: &Arc<Self>, x: &Tensor, backward: bool, low: Option<LowRank>) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&Product {
            panels: self.clone(),
            backward,
            low,
        })
    }
}

/// A small f32 tensor's values in row-major order.
fn f32s(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// One of the two products as a candle op on a contiguous f32 CPU tensor.
struct Product {
    panels: Arc<FrozenPanels>,
    backward: bool,
    low: Option<LowRank>,
}

impl CustomOp1 for Product {
    fn name(&self) -> &'static str {
        "frozen-panels"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let pm = if self.backward {
            &self.panels.backward
        } else {
            &self.panels.forward
        };
        let dims = l.dims();
        let Some((&last, lead)) = dims.split_last() else {
            candle_core::bail!("frozen-panels: a scalar input");
        };
        if last != pm.k || !l.is_contiguous() {
            candle_core::bail!(
                "frozen-panels: input {dims:?} for a {} × {} matrix",
                pm.m,
                pm.k
            );
        }
        let n: usize = lead.iter().product();
        let x = &s.as_slice::<f32>()?[l.start_offset()..][..n * pm.k];
        let mut shape = lead.to_vec();
        shape.push(pm.m);
        if let Some(l) = &self.low {
            if l.u.len() != n * l.panels.k || l.panels.m != pm.m {
                candle_core::bail!(
                    "frozen-panels: a rank-{} term of {} values for {n} rows",
                    l.panels.k,
                    l.u.len()
                );
            }
        }
        Ok((
            CpuStorage::F32(pm.product(x, n, self.low.as_ref())),
            Shape::from(shape),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_abs, tensor};
    use super::*;
    use candle_core::Device;

    fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        max_abs(&(a - b).unwrap()) / max_abs(b).max(1e-12)
    }

    /// Both products against candle's `matmul`, at shapes with partial panels, partial
    /// column strips and more than one contraction block (k > 512), and the layouts'
    /// round trips (dense, rows) exactly.
    #[test]
    fn products_equal_matmul_at_ragged_shapes() {
        let Some(best) = Isa::detect() else {
            let w = tensor(&[5, 3], 1);
            assert!(
                FrozenPanels::new(&w).unwrap().is_none(),
                "no microkernel, no panels"
            );
            return;
        };
        // An AVX-512 CPU has FMA too: both kernel sets are checked there.
        let isas = if best == Isa::Avx512 {
            vec![best, Isa::Fma]
        } else {
            vec![best]
        };
        for isa in isas {
            for &(t, out, inp) in &[
                (1, 1, 1),
                (13, 70, 33),
                (7, 64, 64),
                (256, 192, 576),
                (37, 130, 1100),
                (6, 25, 700),
            ] {
                let w = tensor(&[out, inp], 7 + out as u64);
                let p = Arc::new(
                    FrozenPanels::with_isa(&w, isa)
                        .unwrap()
                        .expect("panels on this CPU"),
                );
                assert_eq!(p.dims(), (out, inp));
                assert_eq!(p.forward.isa, isa);
                let x = tensor(&[t, inp], 3);
                let y = p.forward(&x).unwrap();
                let want = x.matmul(&w.t().unwrap()).unwrap();
                assert_eq!(y.dims(), &[t, out]);
                let e = max_rel(&y, &want);
                assert!(e < 1e-5, "{isa:?} forward {t}×{inp}→{out}: {e}");
                let g = tensor(&[2, t, out], 5);
                let dx = p.input_grad(&g).unwrap();
                let want = g.broadcast_matmul(&w).unwrap();
                assert_eq!(dx.dims(), &[2, t, inp]);
                let e = max_rel(&dx, &want);
                assert!(e < 1e-5, "{isa:?} backward {t}×{out}→{inp}: {e}");
                let back = p.dense().unwrap();
                assert_eq!(
                    back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    w.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                );
                let r = p.rows(&[out - 1, 0], &Device::Cpu).unwrap();
                let want = Tensor::cat(
                    &[w.narrow(0, out - 1, 1).unwrap(), w.narrow(0, 0, 1).unwrap()],
                    0,
                )
                .unwrap();
                assert_eq!(
                    r.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                );
            }
        }
    }

    /// LoRA's term inside the product: `x·Wᵀ + s·u·Bᵀ` and `dy·W + du·A` against the
    /// separate products, at a partial panel and a partial strip.
    #[test]
    fn a_low_rank_term_joins_the_product() {
        if Isa::detect().is_none() {
            return assert!(FrozenPanels::new(&tensor(&[5, 3], 1)).unwrap().is_none());
        }
        let (t, out, inp, r) = (2 * 11, 70, 600, 8);
        let w = tensor(&[out, inp], 1);
        let p = Arc::new(FrozenPanels::new(&w).unwrap().unwrap());
        let (x, u, b) = (
            tensor(&[2, 11, inp], 2),
            tensor(&[2, 11, r], 3),
            tensor(&[out, r], 4),
        );
        let y = p.forward_lora(&x, &u, &b, 0.25).unwrap();
        let want = (x.broadcast_matmul(&w.t().unwrap()).unwrap()
            + (u.broadcast_matmul(&b.t().unwrap()).unwrap() * 0.25).unwrap())
        .unwrap();
        assert_eq!(y.dims(), &[2, 11, out]);
        let e = max_rel(&y, &want);
        assert!(e < 1e-5, "forward with LoRA: {e}");
        let (g, du, a) = (
            tensor(&[t, out], 5),
            tensor(&[t, r], 6),
            tensor(&[r, inp], 7),
        );
        let dx = p.input_grad_lora(&g, &du, &a).unwrap();
        let want = (g.matmul(&w).unwrap() + du.matmul(&a).unwrap()).unwrap();
        let e = max_rel(&dx, &want);
        assert!(e < 1e-5, "input gradient with LoRA: {e}");
        let short = p
            .forward_lora(&x, &tensor(&[3, r], 3), &b, 1.0)
            .unwrap_err()
            .to_string();
        assert!(
            short.contains("rank-8 term of 24 values for 22 rows"),
            "{short}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_pack() {
        let w = tensor(&[4, 4], 2).to_dtype(DType::BF16).unwrap();
        assert!(FrozenPanels::new(&w).unwrap().is_none());
        let x = tensor(&[4, 4], 2);
        if let Some(p) = FrozenPanels::new(&x).unwrap() {
            let err = Arc::new(p)
                .forward(&tensor(&[2, 5], 1))
                .unwrap_err()
                .to_string();
            assert!(err.contains("input [2, 5] for a 4 × 4 matrix"), "{err}");
        }
    }
}
