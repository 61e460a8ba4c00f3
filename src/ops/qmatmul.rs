//! `x · dequant(W)ᵀ` straight from a GGUF weight's blocks, with `x` kept in f32.
//!
//! Decode is memory-bound: a dense f32 copy of a Q4_1 model reads seven times the bytes the
//! blocks hold, and dequantizing per call touches them twice. candle's own quantized matmul
//! reads the blocks but quantizes the activations to 8 bits, which moves SmolLM2's logits
//! by ~0.1 and flips greedy answers. This kernel does neither: each block is unpacked in
//! registers and multiplied with the f32 activations, so the result is the dequantized
//! product up to f32 summation order (the parity tests hold unchanged).
//!
//! Formats: Q4_0, Q4_1 and Q8_0 (here), Q5_0, Q4_K and Q6_K (`ops::kquant`), which covers
//! the legacy GGUF types and llama-quantize's Q4_K_M mix. Written for x86-64 with AVX2, FMA
//! and F16C (checked at run time); elsewhere [`matmul`] answers `None` and callers keep the
//! dequantizing path.

#[cfg(target_arch = "x86_64")]
use super::kquant;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Elements per block of the legacy formats, and the width of the Σx chunks (a Q4_K
/// sub-block).
const QK: usize = 32;

/// The block formats with a kernel: llama.cpp's legacy types, which small GGUFs use, and
/// those a Q4_K_M file mixes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// f16 scale, 16 bytes of nibbles: `w = (q - 8)·d`.
    Q4_0,
    /// f16 scale and minimum, 16 bytes of nibbles: `w = q·d + m`.
    Q4_1,
    /// f16 scale, 32 signed bytes: `w = q·d`.
    Q8_0,
    /// f16 scale, 32 fifth bits, 16 bytes of nibbles: `w = (q - 16)·d`.
    Q5_0,
    /// 256-wide: f16 scale and min, 6-bit scales and mins per 32: `w = d·sc·q - dmin·m`.
    Q4K,
    /// 256-wide: 6-bit values, an i8 scale per 16, f16 scale: `w = d·sc·(q - 32)`.
    Q6K,
}

impl Format {
    pub(super) fn of(d: GgmlDType) -> Option<Self> {
        match d {
            GgmlDType::Q4_0 => Some(Format::Q4_0),
            GgmlDType::Q4_1 => Some(Format::Q4_1),
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            GgmlDType::Q5_0 => Some(Format::Q5_0),
            GgmlDType::Q4K => Some(Format::Q4K),
            GgmlDType::Q6K => Some(Format::Q6K),
            _ => None,
        }
    }

    pub(super) fn block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q8_0 => 34,
            Format::Q5_0 => 22,
            Format::Q4K => 144,
            Format::Q6K => 210,
        }
    }

    /// Bytes of one row of `k` values.
    fn row_bytes(self, k: usize) -> usize {
        k / self.block_len() * self.block_bytes()
    }

    /// Elements per block: 32, or 256 for the k-quants' super-blocks.
    pub(super) fn block_len(self) -> usize {
        match self {
            Format::Q4K | Format::Q6K => 256,
            Format::Q4_0 | Format::Q4_1 | Format::Q8_0 | Format::Q5_0 => QK,
        }
    }
}

/// The instruction set the kernels run with on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    /// No kernel: callers keep the dequantizing path.
    None,
    /// AVX2, FMA and F16C: eight lanes.
    Avx2,
    /// AVX-512F (with F16C): sixteen lanes, and a 4-bit block's values come from a
    /// 16-entry table in one permute (`avx512`).
    Avx512,
}

/// What this CPU runs, asked once.
pub(super) fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c");
            if avx2 && std::is_x86_feature_detected!("avx512f") {
                Isa::Avx512
            } else if avx2 {
                Isa::Avx2
            } else {
                Isa::None
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa::None
        }
    })
}

/// Whether this CPU runs the kernel.
fn cpu_has_kernel() -> bool {
    isa() != Isa::None
}

/// Whether [`matmul`] computes products with `w` (on this CPU, for f32 activations).
pub fn supports(w: &QTensor) -> bool {
    cpu_has_kernel()
        && w.device().is_cpu()
        && Format::of(w.dtype())
            .is_some_and(|f| w.shape().dims2().is_ok_and(|(_, k)| k % f.block_len() == 0))
}

/// `x · dequant(w)ᵀ` for f32 `x` of shape `[.., k]` against `w` `[n, k]`; `None` where no
/// kernel applies (another format, device or dtype), so the caller falls back.
pub fn matmul(x: &Tensor, w: &QTensor) -> Result<Option<Tensor>> {
    if !supports(w) || x.dtype() != DType::F32 || !x.device().is_cpu() {
        return Ok(None);
    }
    let Some(format) = Format::of(w.dtype()) else {
        return Ok(None);
    };
    let (n, k) = w.shape().dims2()?;
    let mut dims = x.dims().to_vec();
    if dims.last() != Some(&k) {
        candle_core::bail!(
            "quantized matmul: input {:?} against weight [{n}, {k}]",
            x.dims()
        );
    }
    let m = x.elem_count() / k;
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let data = blocks_of(w, format, n, k)?;
    let y = products(isa(), format, &data, &xs, m, n, k);
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Ok(Some(Tensor::from_vec(y, dims, x.device())?))
}

/// A weight's blocks, checked to be `n` rows of `k` values in `format`.
fn blocks_of(
    w: &QTensor,
    format: Format,
    n: usize,
    k: usize,
) -> Result<std::borrow::Cow<'_, [u8]>> {
    let data = w.data()?;
    if data.len() != n * format.row_bytes(k) {
        candle_core::bail!(
            "quantized weight: {} bytes for a [{n}, {k}] {format:?} weight",
            data.len()
        );
    }
    Ok(data)
}

/// `dequant(w)` as a dense f32 matrix in `dtype`: [`dequantize`] where a kernel applies,
/// else candle's.
pub fn dense(w: &QTensor, dtype: DType) -> Result<Tensor> {
    match dequantize(w)? {
        Some(m) => m.to_dtype(dtype),
        None => w.dequantize(&w.device())?.to_dtype(dtype),
    }
}

/// `dequant(w)` as a dense f32 `[n, k]` matrix: rows in parallel, each with the block
/// kernels' dequantization (candle's values bit for bit, vectorized); `None` where no kernel
/// applies. A GGUF's embedding at load and a quantized base's matrix in each backward take
/// this instead of candle's one-thread dequantization.
pub fn dequantize(w: &QTensor) -> Result<Option<Tensor>> {
    let n = w.shape().dims2()?.0;
    gather(w, n, |i| i)
}

/// Rows `ids` of `dequant(w)` as a dense f32 `[ids.len(), k]` matrix (an embedding lookup
/// from the blocks: only the rows asked for are dequantized); `None` where no kernel applies.
pub fn dequantize_rows(w: &QTensor, ids: &[u32]) -> Result<Option<Tensor>> {
    let n = w.shape().dims2()?.0;
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= n) {
        candle_core::bail!("row {bad} of a quantized matrix of {n} rows");
    }
    gather(w, ids.len(), |i| ids[i] as usize)
}

/// `count` rows, row `i` of the output being row `row(i)` of `w`, in parallel.
fn gather(
    w: &QTensor,
    count: usize,
    row: impl Fn(usize) -> usize + Sync,
) -> Result<Option<Tensor>> {
    if !supports(w) {
        return Ok(None);
    }
    let Some(format) = Format::of(w.dtype()) else {
        return Ok(None);
    };
    let (n, k) = w.shape().dims2()?;
    let data = blocks_of(w, format, n, k)?;
    let row_bytes = format.row_bytes(k);
    let isa = isa();
    let mut out = vec![0f32; count * k];
    let rows_per_task = count
        .div_ceil(rayon::current_num_threads().max(1) * 8)
        .max(1);
    out.par_chunks_mut(rows_per_task * k)
        .enumerate()
        .for_each(|(task, dst)| {
            for (i, out_row) in dst.chunks_exact_mut(k).enumerate() {
                let r = row(task * rows_per_task + i);
                dequantize_row(isa, format, &data[r * row_bytes..][..row_bytes], out_row);
            }
        });
    Ok(Some(Tensor::from_vec(out, (count, k), &w.device())?))
}

/// `x · dequant(w)ᵀ` for several weights of one input (`q, k, v` or `gate, up`), each
/// `[n_i, k]`: with few activation rows all their products run as one parallel pass (one
/// hand-off to the pool instead of one per weight, and the threads share the rows of all of
/// them); with many rows each weight takes [`matmul`]'s panel path. `None` where a weight has
/// no kernel.
pub fn matmul_group(x: &Tensor, ws: &[&QTensor]) -> Result<Option<Vec<Tensor>>> {
    if ws.is_empty() || x.dtype() != DType::F32 || !x.device().is_cpu() {
        return Ok(None);
    }
    let k = x.dim(candle_core::D::Minus1)?;
    let mut formats = Vec::with_capacity(ws.len());
    for w in ws {
        match Format::of(w.dtype()) {
            Some(f) if supports(w) && w.shape().dims2()?.1 == k => formats.push(f),
            _ => return Ok(None),
        }
    }
    let m = x.elem_count() / k;
    if m >= WIDE_ROWS {
        return ws.iter().map(|w| matmul(x, w)).collect();
    }
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let isa = isa();
    let xsum = block_sums(isa, &formats, &xs);
    let mut datas = Vec::with_capacity(ws.len());
    let mut outs: Vec<Vec<f32>> = Vec::with_capacity(ws.len());
    for (w, f) in ws.iter().zip(&formats) {
        let (n, _) = w.shape().dims2()?;
        datas.push(blocks_of(w, *f, n, k)?);
        outs.push(vec![0f32; n * m]);
    }
    let total: usize = ws.iter().map(|w| w.shape().dims()[0]).sum();
    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = total.div_ceil(threads * 4).clamp(8, 256);
    // (weight, first row, transposed output rows) for every task of every weight.
    let mut tasks = Vec::new();
    for (wi, out) in outs.iter_mut().enumerate() {
        for (t, chunk) in out.chunks_mut(rows_per_task * m).enumerate() {
            tasks.push((wi, t * rows_per_task, chunk));
        }
    }
    tasks.into_par_iter().for_each(|(wi, first, out)| {
        let format = formats[wi];
        let row_bytes = format.row_bytes(k);
        for (i, o) in out.chunks_exact_mut(m).enumerate() {
            let row = &datas[wi][(first + i) * row_bytes..][..row_bytes];
            row_products(isa, format, row, &xs, &xsum, k, o);
        }
    });
    let mut dims = x.dims().to_vec();
    outs.into_iter()
        .zip(ws)
        .map(|(yt, w)| {
            let n = w.shape().dims()[0];
            let y = untranspose(yt, m, n);
            if let Some(last) = dims.last_mut() {
                *last = n;
            }
            Tensor::from_vec(y, dims.clone(), x.device())
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// `y[m, n]` from its transpose `yt[n, m]` (no copy for one row).
pub(super) fn untranspose(yt: Vec<f32>, m: usize, n: usize) -> Vec<f32> {
    if m == 1 {
        return yt;
    }
    let mut y = vec![0f32; m * n];
    for (r, col) in yt.chunks_exact(m).enumerate() {
        for (j, v) in col.iter().enumerate() {
            y[j * n + r] = *v;
        }
    }
    y
}

/// Σx per 32 values where a kernel multiplies an offset with it (`m` of Q4_1 and `-8·d` of
/// Q4_0 in the AVX2 kernel, `dmin·m` of Q4_K); empty where none does.
fn block_sums(isa: Isa, formats: &[Format], xs: &[f32]) -> Vec<f32> {
    let offsets = |f: &Format| match f {
        Format::Q4K => true,
        Format::Q4_0 | Format::Q4_1 => isa == Isa::Avx2,
        Format::Q8_0 | Format::Q5_0 | Format::Q6K => false,
    };
    if formats.iter().any(offsets) {
        xs.chunks_exact(QK).map(|c| c.iter().sum()).collect()
    } else {
        Vec::new()
    }
}

/// Activation rows from which a panel of weight rows is dequantized once and multiplied
/// by gemm: below it, unpacking each block in registers for every few rows is cheaper.
const WIDE_ROWS: usize = 16;

/// `y[m, n]`: output rows are split across threads in chunks; each weight row is read once
/// per tile of activation rows, or (for many rows) dequantized once into a panel.
fn products(
    isa: Isa,
    format: Format,
    data: &[u8],
    xs: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    let row_bytes = format.row_bytes(k);
    let threads = rayon::current_num_threads().max(1);
    // Transposed output ([n, m]) so each task writes one contiguous span.
    let mut yt = vec![0f32; n * m];
    if m >= WIDE_ROWS {
        let rows_per_task = n.div_ceil(threads * 4).clamp(16, 64);
        yt.par_chunks_mut(rows_per_task * m)
            .enumerate()
            .for_each(|(task, out)| {
                let rows = out.len() / m;
                let first = task * rows_per_task;
                let mut panel = vec![0f32; rows * k];
                for (i, dst) in panel.chunks_exact_mut(k).enumerate() {
                    dequantize_row(
                        isa,
                        format,
                        &data[(first + i) * row_bytes..][..row_bytes],
                        dst,
                    );
                }
                // SAFETY: `panel` is `rows × k` row-major.
                unsafe { panel_products(panel.as_ptr(), (1, k as isize), xs, rows, m, k, out) }
            });
    } else {
        let xsum = block_sums(isa, &[format], xs);
        let rows_per_task = n.div_ceil(threads * 4).clamp(8, 256);
        yt.par_chunks_mut(rows_per_task * m)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * rows_per_task;
                for (i, o) in out.chunks_exact_mut(m).enumerate() {
                    let row = &data[(first + i) * row_bytes..][..row_bytes];
                    row_products(isa, format, row, xs, &xsum, k, o);
                }
            });
    }
    untranspose(yt, m, n)
}

/// `out[r, j] = Σ_k panel[r, k]·x[j, k]` for a dequantized panel of `rows` weight rows
/// whose element `(r, c)` is at `panel + r·strides.1 + c·strides.0`, on this thread (the
/// caller already splits the work).
///
/// # Safety
/// `panel` must hold the `rows × k` elements its strides address, live for the call.
pub(super) unsafe fn panel_products(
    panel: *const f32,
    strides: (isize, isize),
    xs: &[f32],
    rows: usize,
    m: usize,
    k: usize,
    out: &mut [f32],
) {
    debug_assert!(xs.len() >= m * k && out.len() >= rows * m);
    // SAFETY: the caller vouches for `panel`; `xs` is `m × k` row-major, read as the `k × m`
    // right operand, and `out` is `rows × m`.
    unsafe {
        super::bmm::gemm_serial(
            out.as_mut_ptr(),
            (rows, m, k),
            (panel, (strides.1, strides.0)),
            (xs.as_ptr(), (1, k as isize)),
        )
    }
}

/// One weight row as f32, exactly as candle's dequantization gives it.
fn dequantize_row(isa: Isa, format: Format, row: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as for `row_products`; `out` holds the row's `k` values.
        unsafe {
            match format {
                Format::Q5_0 => kquant::q5_0_dequantize_row(row, out),
                Format::Q4K => kquant::q4k_dequantize_row(row, out),
                Format::Q6K => kquant::q6k_dequantize_row(row, out),
                _ if isa == Isa::Avx512 => avx512::dequantize_row(format, row, out),
                _ => avx2::dequantize_row(format, row, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, format, row, out);
        unreachable!("the kernel is only admitted on x86-64")
    }
}

/// One weight row against every activation row: `out[j] = Σ_k dequant(row)[k]·x[j, k]`.
fn row_products(
    isa: Isa,
    format: Format,
    row: &[u8],
    xs: &[f32],
    xsum: &[f32],
    k: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `supports` admitted this weight only on a CPU with AVX2, FMA and F16C (and
        // `isa` saw AVX-512F before choosing it), and `products` sized `row`, `xs`, `xsum`
        // and `out` for `k`-wide rows.
        unsafe {
            match format {
                Format::Q5_0 => kquant::q5_0_row_products(row, xs, k, out),
                Format::Q4K => kquant::q4k_row_products(row, xs, xsum, k, out),
                Format::Q6K => kquant::q6k_row_products(row, xs, k, out),
                _ if isa == Isa::Avx512 => avx512::row_products(format, row, xs, k, out),
                _ => avx2::row_products(format, row, xs, xsum, k, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, format, row, xs, xsum, k, out);
        unreachable!("the kernel is only admitted on x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::kquant::{dot32, half, hsum};
    use super::{Format, QK};
    use std::arch::x86_64::*;

    /// Activation rows handled together: each unpacked block is reused this many times.
    const TILE: usize = 4;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row_products(
        format: Format,
        row: &[u8],
        xs: &[f32],
        xsum: &[f32],
        k: usize,
        out: &mut [f32],
    ) {
        let blocks = k / QK;
        let bb = format.block_bytes();
        let m = out.len();
        let mut j0 = 0;
        while j0 < m {
            let tile = (m - j0).min(TILE);
            let mut acc = [_mm256_setzero_ps(); TILE];
            let mut offset = [0f32; TILE];
            for b in 0..blocks {
                let p = row.as_ptr().add(b * bb);
                let (w, d, off) = unpack(format, p);
                let dv = _mm256_set1_ps(d);
                for t in 0..tile {
                    let x = xs.as_ptr().add((j0 + t) * k + b * QK);
                    acc[t] = _mm256_fmadd_ps(dv, dot32(&w, x), acc[t]);
                    if format != Format::Q8_0 {
                        offset[t] += off * *xsum.get_unchecked((j0 + t) * blocks + b);
                    }
                }
            }
            for t in 0..tile {
                *out.get_unchecked_mut(j0 + t) = hsum(acc[t]) + offset[t];
            }
            j0 += tile;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dequantize_row(format: Format, row: &[u8], out: &mut [f32]) {
        let bb = format.block_bytes();
        for (b, dst) in out.chunks_exact_mut(QK).enumerate() {
            let (w, d, off) = unpack(format, row.as_ptr().add(b * bb));
            let (dv, ov, eight) = (_mm256_set1_ps(d), _mm256_set1_ps(off), _mm256_set1_ps(8.0));
            for (i, &v) in w.iter().enumerate() {
                // candle's own arithmetic, so the values agree to the bit, the sign of a zero
                // included (an FMA's `q·d - 8d` is +0 where `(q - 8)·d` is -0).
                let y = match format {
                    Format::Q4_0 => _mm256_mul_ps(_mm256_sub_ps(v, eight), dv),
                    Format::Q4_1 => _mm256_add_ps(_mm256_mul_ps(v, dv), ov),
                    _ => _mm256_mul_ps(v, dv),
                };
                _mm256_storeu_ps(dst.as_mut_ptr().add(8 * i), y);
            }
        }
    }

    /// A block's 32 quantized values as f32 (in element order), its scale, and the offset
    /// that multiplies Σx (`m` for Q4_1, `-8·d` for Q4_0, 0 for Q8_0).
    #[inline(always)]
    unsafe fn unpack(format: Format, p: *const u8) -> ([__m256; 4], f32, f32) {
        let d = half(p);
        let widen = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
        match format {
            Format::Q4_0 | Format::Q4_1 => {
                let (off, qs) = if format == Format::Q4_1 {
                    (half(p.add(2)), p.add(4))
                } else {
                    (-8.0 * d, p.add(2))
                };
                let bytes = _mm_loadu_si128(qs as *const __m128i);
                let mask = _mm_set1_epi8(0x0f);
                // Low nibbles are elements 0..16, high nibbles 16..32.
                let lo = _mm_and_si128(bytes, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
                (
                    [
                        widen(lo),
                        widen(_mm_srli_si128(lo, 8)),
                        widen(hi),
                        widen(_mm_srli_si128(hi, 8)),
                    ],
                    d,
                    off,
                )
            }
            Format::Q8_0 => {
                let q = p.add(2);
                let s = |i: usize| {
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                        q.add(8 * i) as *const __m128i
                    )))
                };
                ([s(0), s(1), s(2), s(3)], d, 0.0)
            }
            Format::Q5_0 | Format::Q4K | Format::Q6K => unreachable!("ops::kquant's formats"),
        }
    }
}

/// Sixteen lanes. A 4-bit block's 16 possible values are built once per block as a table
/// (`q·d + m` for Q4_1, `(q − 8)·d` for Q4_0: candle's own dequantization, so the
/// products use exactly the dequantized weights) and each nibble picks its value with one
/// `vpermps`, which reads only an index's low four bits, so the low nibbles need no mask.
/// That replaces the AVX2 path's mask, widen and convert per eight values and its per-block
/// Σx offset term.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::kquant::half;
    use super::{Format, QK};
    use std::arch::x86_64::*;

    /// Activation rows handled together: each block's values are reused this many times.
    const TILE: usize = 4;

    /// A block's 32 dequantized values, elements 0..16 and 16..32.
    #[inline(always)]
    unsafe fn values(format: Format, p: *const u8) -> (__m512, __m512) {
        let d = _mm512_set1_ps(half(p));
        match format {
            Format::Q4_0 | Format::Q4_1 => {
                let iota = _mm512_setr_ps(
                    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                    15.0,
                );
                let (table, qs) = if format == Format::Q4_1 {
                    let m = _mm512_set1_ps(half(p.add(2)));
                    (_mm512_add_ps(_mm512_mul_ps(iota, d), m), p.add(4))
                } else {
                    let centred = _mm512_sub_ps(iota, _mm512_set1_ps(8.0));
                    (_mm512_mul_ps(centred, d), p.add(2))
                };
                // Each byte in its own 32-bit lane: the low nibble is the lane's low four
                // bits (all vpermps reads), the high nibble four bits up.
                let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(qs as *const __m128i));
                (
                    _mm512_permutexvar_ps(bytes, table),
                    _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table),
                )
            }
            Format::Q8_0 => {
                let q = p.add(2);
                let half16 = |i: usize| {
                    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                        q.add(16 * i) as *const __m128i
                    )))
                };
                (_mm512_mul_ps(half16(0), d), _mm512_mul_ps(half16(1), d))
            }
            Format::Q5_0 | Format::Q4K | Format::Q6K => unreachable!("ops::kquant's formats"),
        }
    }

    #[target_feature(enable = "avx512f,f16c")]
    pub(super) unsafe fn row_products(
        format: Format,
        row: &[u8],
        xs: &[f32],
        k: usize,
        out: &mut [f32],
    ) {
        let blocks = k / QK;
        let bb = format.block_bytes();
        let m = out.len();
        if m == 1 {
            // One token: two blocks per step into four accumulators, so the FMAs do not
            // wait on each other.
            let x = xs.as_ptr();
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut b = 0;
            while b + 2 <= blocks {
                let (w0, w1) = values(format, row.as_ptr().add(b * bb));
                let (w2, w3) = values(format, row.as_ptr().add((b + 1) * bb));
                let xb = x.add(b * QK);
                acc[0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xb), acc[0]);
                acc[1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb.add(16)), acc[1]);
                acc[2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xb.add(32)), acc[2]);
                acc[3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xb.add(48)), acc[3]);
                b += 2;
            }
            if b < blocks {
                let (w0, w1) = values(format, row.as_ptr().add(b * bb));
                let xb = x.add(b * QK);
                acc[0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xb), acc[0]);
                acc[1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb.add(16)), acc[1]);
            }
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            *out.get_unchecked_mut(0) = _mm512_reduce_add_ps(sum);
            return;
        }
        let mut j0 = 0;
        while j0 < m {
            let tile = (m - j0).min(TILE);
            let mut lo = [_mm512_setzero_ps(); TILE];
            let mut hi = [_mm512_setzero_ps(); TILE];
            for b in 0..blocks {
                let (w0, w1) = values(format, row.as_ptr().add(b * bb));
                for t in 0..tile {
                    let x = xs.as_ptr().add((j0 + t) * k + b * QK);
                    lo[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), lo[t]);
                    hi[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x.add(16)), hi[t]);
                }
            }
            for t in 0..tile {
                *out.get_unchecked_mut(j0 + t) = _mm512_reduce_add_ps(_mm512_add_ps(lo[t], hi[t]));
            }
            j0 += tile;
        }
    }

    #[target_feature(enable = "avx512f,f16c")]
    pub(super) unsafe fn dequantize_row(format: Format, row: &[u8], out: &mut [f32]) {
        let bb = format.block_bytes();
        for (b, dst) in out.chunks_exact_mut(QK).enumerate() {
            let (w0, w1) = values(format, row.as_ptr().add(b * bb));
            _mm512_storeu_ps(dst.as_mut_ptr(), w0);
            _mm512_storeu_ps(dst.as_mut_ptr().add(16), w1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "x86_64")]
    use crate::ops::kquant::tests as kt;
    use candle_core::Device;

    fn weight(n: usize, k: usize, dtype: GgmlDType) -> (QTensor, Tensor) {
        let vals: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.4) * 0.3)
            .collect();
        let w = Tensor::from_vec(vals, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        (q, dense)
    }

    fn input(dims: &[usize]) -> Tensor {
        let count: usize = dims.iter().product();
        let vals: Vec<f32> = (0..count)
            .map(|i| ((i * 4481 % 997) as f32 / 997.0 - 0.5) * 2.0)
            .collect();
        Tensor::from_vec(vals, dims, &Device::Cpu).unwrap()
    }

    /// The instruction sets this CPU can run: both kernels are checked where both run.
    fn isas() -> Vec<Isa> {
        match isa() {
            Isa::None => vec![],
            Isa::Avx2 => vec![Isa::Avx2],
            Isa::Avx512 => vec![Isa::Avx2, Isa::Avx512],
        }
    }

    #[test]
    fn products_equal_the_dequantized_matmul_for_each_format_and_row_count() {
        if !cpu_has_kernel() {
            assert!(
                std::env::var_os("CI").is_none() || !cfg!(target_arch = "x86_64"),
                "CI's x86-64 machine must run the AVX2 kernel"
            );
            eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
            return;
        }
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            // Row counts around the task split and the activation tile; odd and even block
            // counts (the one-row path takes two blocks per step).
            for (n, k, rows) in [
                (40, 96, vec![1, 1, 96]),
                (576, 96, vec![1, 5, 96]),
                (7, 96, vec![3, 2, 96]),
                (33, 64, vec![1, 1, 64]),
                (9, 128, vec![1, 6, 128]),
            ] {
                let (q, dense) = weight(n, k, dtype);
                let x = input(&rows);
                let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
                let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let scale = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                let format = Format::of(dtype).unwrap();
                let data = q.data().unwrap();
                let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let m = xs.len() / k;
                for isa in isas() {
                    let g = products(isa, format, &data, &xs, m, n, k);
                    assert_eq!(g.len(), w.len());
                    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale,
                            "{isa:?} {dtype:?} n={n} {rows:?} [{i}]: {a} vs {b}"
                        );
                    }
                }
                let got = matmul(&x, &q).unwrap().expect("kernel applies");
                assert_eq!(got.dims(), want.dims());
            }
        }
    }

    #[test]
    fn a_group_equals_each_product_alone() {
        if !cpu_has_kernel() {
            assert!(std::env::var_os("CI").is_none() || !cfg!(target_arch = "x86_64"));
            eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
            return;
        }
        // Legacy formats, and the k-quants with Q5_0 (a Q4_K_M file's mix).
        for (k, dtypes) in [
            (96, [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4_0]),
            (256, [GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q5_0]),
        ] {
            let ws: Vec<QTensor> = [40, 7, 300]
                .into_iter()
                .zip(dtypes)
                .map(|(n, d)| weight(n, k, d).0)
                .collect();
            let refs: Vec<&QTensor> = ws.iter().collect();
            for rows in [vec![1, 1, k], vec![3, k], vec![20, k]] {
                let x = input(&rows);
                let got = matmul_group(&x, &refs).unwrap().expect("kernels apply");
                assert_eq!(got.len(), 3);
                for (g, w) in got.iter().zip(&ws) {
                    let want = matmul(&x, w).unwrap().unwrap();
                    assert_eq!(g.dims(), want.dims());
                    let diff = (g - &want).unwrap().abs().unwrap().max_all().unwrap();
                    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{rows:?}");
                }
            }
        }
        // One weight without a kernel: the caller keeps its own path.
        let other = weight(8, 256, GgmlDType::Q5K).0;
        let x = input(&[1, 256]);
        let mixed = [&other, &other];
        assert!(matmul_group(&x, &mixed).unwrap().is_none());
    }

    /// Both paths (unpacked per block below 16 rows, dequantized panels and gemm from 16)
    /// against candle's dequantized matmul, around the activation tile (4), the task split
    /// and the block sizes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn products_equal_the_dequantized_matmul_for_each_k_quant_format() {
        if !kt::kernel_runs() {
            return;
        }
        for dtype in kt::FORMATS {
            for &k in kt::widths(dtype) {
                for n in [7, 40, 300] {
                    let (q, dense) = kt::varied(n, k, dtype);
                    assert!(supports(&q), "{dtype:?} [{n}, {k}]");
                    for m in [1, 2, 3, 5, 15, 96] {
                        let x = kt::input(m, k);
                        let got = matmul(&x, &q).unwrap().expect("kernel applies");
                        let want = x.matmul(&dense.t().unwrap()).unwrap();
                        assert_eq!(got.dims(), want.dims());
                        let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                        let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                        let scale = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                            assert!(
                                (a - b).abs() <= 1e-5 * scale,
                                "{dtype:?} m={m} n={n} k={k} [{i}]: {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dequantized_matrices_equal_candles_bit_for_bit() {
        if !cpu_has_kernel() {
            assert!(std::env::var_os("CI").is_none() || !cfg!(target_arch = "x86_64"));
            eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
            return;
        }
        for (dtype, k) in [
            (GgmlDType::Q4_0, 96),
            (GgmlDType::Q4_1, 96),
            (GgmlDType::Q8_0, 96),
            (GgmlDType::Q5_0, 96),
            (GgmlDType::Q4K, 512),
            (GgmlDType::Q6K, 256),
        ] {
            let (q, dense) = weight(37, k, dtype);
            let got = dequantize(&q).unwrap().expect("kernel applies");
            let (g, w) = (
                got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                dense.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert_eq!(g.len(), w.len());
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{dtype:?} [{i}]: {a} vs {b}");
            }
        }
        assert!(dequantize(&weight(8, 256, GgmlDType::Q5K).0)
            .unwrap()
            .is_none());
    }

    #[test]
    fn other_formats_and_dtypes_fall_back() {
        let (q, _) = weight(8, 256, GgmlDType::Q5K);
        assert!(matmul(&input(&[1, 256]), &q).unwrap().is_none());
        let (q, _) = weight(8, 64, GgmlDType::Q8_0);
        let x = input(&[1, 64]).to_dtype(DType::F64).unwrap();
        assert!(matmul(&x, &q).unwrap().is_none());
    }
}
