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
enum Format {
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
    fn of(d: GgmlDType) -> Option<Self> {
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

    fn block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q8_0 => 34,
            Format::Q5_0 => 22,
            Format::Q4K => 144,
            Format::Q6K => 210,
        }
    }

    /// Elements per block.
    fn block_len(self) -> usize {
        match self {
            Format::Q4K | Format::Q6K => 256,
            Format::Q4_0 | Format::Q4_1 | Format::Q8_0 | Format::Q5_0 => QK,
        }
    }
}

/// Whether this CPU runs the kernel, asked once.
fn cpu_has_kernel() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
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
    let data = w.data()?;
    if data.len() != n * (k / format.block_len()) * format.block_bytes() {
        candle_core::bail!(
            "quantized matmul: {} bytes for a [{n}, {k}] {format:?} weight",
            data.len()
        );
    }
    let y = products(format, &data, &xs, m, n, k);
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Ok(Some(Tensor::from_vec(y, dims, x.device())?))
}

/// Activation rows from which a panel of weight rows is dequantized once and multiplied
/// by gemm: below it, unpacking each block in registers for every few rows is cheaper.
const WIDE_ROWS: usize = 16;

/// `y[m, n]`: output rows are split across threads in chunks; each weight row is read once
/// per tile of activation rows, or (for many rows) dequantized once into a panel.
fn products(format: Format, data: &[u8], xs: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let row_bytes = k / format.block_len() * format.block_bytes();
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
                    dequantize_row(format, &data[(first + i) * row_bytes..][..row_bytes], dst);
                }
                panel_products(&panel, xs, rows, m, k, out);
            });
    } else {
        // Σx per 32 values: the offset term (`m` of Q4_1, `-8·d` of Q4_0, `dmin·m` of Q4_K)
        // multiplies it.
        let xsum: Vec<f32> = xs.chunks_exact(QK).map(|c| c.iter().sum()).collect();
        let rows_per_task = n.div_ceil(threads * 4).clamp(8, 256);
        yt.par_chunks_mut(rows_per_task * m)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * rows_per_task;
                for (i, o) in out.chunks_exact_mut(m).enumerate() {
                    let row = &data[(first + i) * row_bytes..][..row_bytes];
                    row_products(format, row, xs, &xsum, k, o);
                }
            });
    }
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

/// `out[r, j] = Σ_k panel[r, k]·x[j, k]` for a dequantized panel of `rows` weight rows, on
/// this thread (the caller already splits the work).
fn panel_products(panel: &[f32], xs: &[f32], rows: usize, m: usize, k: usize, out: &mut [f32]) {
    // SAFETY: `panel` is `rows × k`, `xs` is `m × k` and `out` is `rows × m`, all row-major
    // and live for the call; gemm reads and writes only inside those bounds.
    unsafe {
        gemm::gemm(
            rows,
            m,
            k,
            out.as_mut_ptr(),
            1,
            m as isize,
            false,
            panel.as_ptr(),
            1,
            k as isize,
            xs.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// One weight row as f32, exactly as candle's dequantization gives it.
fn dequantize_row(format: Format, row: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as for `row_products`; `out` holds the row's `k` values.
        unsafe {
            match format {
                Format::Q5_0 => kquant::q5_0_dequantize_row(row, out),
                Format::Q4K => kquant::q4k_dequantize_row(row, out),
                Format::Q6K => kquant::q6k_dequantize_row(row, out),
                _ => avx2::dequantize_row(format, row, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (format, row, out);
        unreachable!("the kernel is only admitted on x86-64")
    }
}

/// One weight row against every activation row: `out[j] = Σ_k dequant(row)[k]·x[j, k]`.
fn row_products(format: Format, row: &[u8], xs: &[f32], xsum: &[f32], k: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `supports` admitted this weight only on a CPU with AVX2, FMA and F16C, and
        // `products` sized `row`, `xs`, `xsum` and `out` for `k`-wide rows.
        unsafe {
            match format {
                Format::Q5_0 => kquant::q5_0_row_products(row, xs, k, out),
                Format::Q4K => kquant::q4k_row_products(row, xs, xsum, k, out),
                Format::Q6K => kquant::q6k_row_products(row, xs, k, out),
                _ => avx2::row_products(format, row, xs, xsum, k, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (format, row, xs, xsum, k, out);
        unreachable!("the kernel is only admitted on x86-64")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
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
                    let lo = _mm256_fmadd_ps(
                        w[1],
                        _mm256_loadu_ps(x.add(8)),
                        _mm256_mul_ps(w[0], _mm256_loadu_ps(x)),
                    );
                    let hi = _mm256_fmadd_ps(
                        w[3],
                        _mm256_loadu_ps(x.add(24)),
                        _mm256_mul_ps(w[2], _mm256_loadu_ps(x.add(16))),
                    );
                    acc[t] = _mm256_fmadd_ps(dv, _mm256_add_ps(lo, hi), acc[t]);
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
            let (dv, ov) = (_mm256_set1_ps(d), _mm256_set1_ps(off));
            for (i, v) in w.iter().enumerate() {
                // Q8_0's offset is 0; Q4_0's `(q - 8)·d` is `q·d - 8d`.
                _mm256_storeu_ps(dst.as_mut_ptr().add(8 * i), _mm256_fmadd_ps(*v, dv, ov));
            }
        }
    }

    /// A block's 32 quantized values as f32 (in element order), its scale, and the offset
    /// that multiplies Σx (`m` for Q4_1, `-8·d` for Q4_0, 0 for Q8_0).
    #[inline(always)]
    unsafe fn unpack(format: Format, p: *const u8) -> ([__m256; 4], f32, f32) {
        let half = |q: *const u8| {
            let bits = u16::from_le_bytes([*q, *q.add(1)]);
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
        };
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

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            // Row counts around the task split and the activation tile.
            for (n, rows) in [
                (40, vec![1, 1, 96]),
                (576, vec![1, 5, 96]),
                (7, vec![3, 2, 96]),
            ] {
                let (q, dense) = weight(n, 96, dtype);
                let x = input(&rows);
                let got = matmul(&x, &q).unwrap().expect("kernel applies");
                let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
                assert_eq!(got.dims(), want.dims());
                let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let scale = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * scale,
                        "{dtype:?} n={n} {rows:?} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
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
