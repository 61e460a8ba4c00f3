//! Block kernels for Q5_0, Q4_K and Q6_K, the formats llama-quantize's Q4_K_M mix adds to
//! Q8_0: without them a Q4_K_M file would be densified for generation (`ops::qmatmul`'s
//! `supports`), reading ~6× the bytes per token.
//!
//! Same contract as the legacy kernels in `ops::qmatmul`: f32 activations, each block
//! unpacked in registers and reused across up to [`TILE`] activation rows, the result the
//! dequantized product up to f32 summation order. Offsets that are whole numbers on the
//! quantized value (Q5_0's −16, Q6_K's −32) are subtracted in the integer lanes before the
//! conversion: exact, one byte op per 32 weights shared by every activation row, and no Σx
//! needed. Q4_K's min is a float of its own (`dmin·m`), so it multiplies Σx per 32-wide
//! sub-block, which the caller computes once per call.
//!
//! Every fn needs AVX2, FMA and F16C (the caller checks) and trusts its lengths: `row` holds
//! `k / block_len` blocks, `xs` `out.len()` rows of `k`, `xsum` `out.len()` rows of `k / 32`.

use std::arch::x86_64::*;

/// Activation rows handled together: each unpacked block is reused this many times.
const TILE: usize = 4;
/// Elements per K-quant super-block.
const QK_K: usize = 256;
const Q5_0_BYTES: usize = 22;
const Q4K_BYTES: usize = 144;
const Q6K_BYTES: usize = 210;

/// Splits `out` into tiles of up to [`TILE`] rows and runs `tile` on each, with the tile
/// width a constant so its accumulators stay in registers (m = 1 is the decode step).
macro_rules! by_tiles {
    ($out:expr, |$j0:ident, $n:ident| $body:expr) => {{
        let m = $out.len();
        let mut $j0 = 0;
        while $j0 < m {
            match m - $j0 {
                1 => {
                    const $n: usize = 1;
                    $body
                }
                2 => {
                    const $n: usize = 2;
                    $body
                }
                3 => {
                    const $n: usize = 3;
                    $body
                }
                _ => {
                    const $n: usize = TILE;
                    $body
                }
            }
            $j0 += (m - $j0).min(TILE);
        }
    }};
}

/// `out[j] = Σ_i dequant(row)[i]·xs[j·k + i]` for a Q5_0 row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q5_0_row_products(row: &[u8], xs: &[f32], k: usize, out: &mut [f32]) {
    debug_assert!(row.len() >= k / 32 * Q5_0_BYTES && xs.len() >= out.len() * k);
    by_tiles!(out, |j0, T| q5_0_tile::<T>(row, xs, k, j0, out));
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_tile<const T: usize>(row: &[u8], xs: &[f32], k: usize, j0: usize, out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..k / 32 {
        let p = row.as_ptr().add(b * Q5_0_BYTES);
        let w = widen_i8(q5_0_values(p));
        let d = _mm256_set1_ps(half(p));
        for (t, acc) in acc.iter_mut().enumerate() {
            let x = xs.as_ptr().add((j0 + t) * k + b * 32);
            *acc = _mm256_fmadd_ps(d, dot32(&w, x), *acc);
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        *out.get_unchecked_mut(j0 + t) = hsum(*acc);
    }
}

/// One Q5_0 row as f32, bit for bit candle's dequantization (`(q − 16)·d`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q5_0_dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert!(out.len().is_multiple_of(32) && row.len() >= out.len() / 32 * Q5_0_BYTES);
    for (b, dst) in out.chunks_exact_mut(32).enumerate() {
        let p = row.as_ptr().add(b * Q5_0_BYTES);
        let d = _mm256_set1_ps(half(p));
        for (i, v) in widen_i8(q5_0_values(p)).iter().enumerate() {
            _mm256_storeu_ps(dst.as_mut_ptr().add(8 * i), _mm256_mul_ps(*v, d));
        }
    }
}

/// A Q5_0 block's 32 values `q − 16` as signed bytes, in element order.
#[inline(always)]
unsafe fn q5_0_values(p: *const u8) -> __m256i {
    let qh = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
    let qs = _mm_loadu_si128(p.add(6) as *const __m128i);
    let m4 = _mm_set1_epi8(0x0f);
    // Low nibbles are elements 0..16, high nibbles 16..32.
    let nibbles = _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16(qs, 4), m4),
        _mm_and_si128(qs, m4),
    );
    // Byte j ← byte j/8 of qh, then all ones where bit j%8 of it is set (llama.cpp's
    // `bytes_from_bits_32`): element j's fifth bit is bit j of qh.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let high = _mm256_cmpeq_epi8(
        _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe)),
        _mm256_set1_epi8(-1),
    );
    // Where the fifth bit is clear, q − 16 = q | 0xf0 in two's complement; where it is set,
    // q − 16 is the nibble itself.
    _mm256_or_si256(
        nibbles,
        _mm256_andnot_si256(high, _mm256_set1_epi8(0xf0u8 as i8)),
    )
}

/// `out[j] = Σ_i dequant(row)[i]·xs[j·k + i]` for a Q4_K row; `xsum[j·k/32 + c]` is the sum
/// of activation row `j`'s `c`-th 32 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4k_row_products(
    row: &[u8],
    xs: &[f32],
    xsum: &[f32],
    k: usize,
    out: &mut [f32],
) {
    debug_assert!(row.len() >= k / QK_K * Q4K_BYTES && xs.len() >= out.len() * k);
    debug_assert!(xsum.len() >= out.len() * (k / 32));
    by_tiles!(out, |j0, T| q4k_tile::<T>(row, xs, xsum, k, j0, out));
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_tile<const T: usize>(
    row: &[u8],
    xs: &[f32],
    xsum: &[f32],
    k: usize,
    j0: usize,
    out: &mut [f32],
) {
    let chunks = k / 32;
    let mut acc = [_mm256_setzero_ps(); T];
    // Σ over sub-blocks of dmin·m·Σx, eight sub-blocks a lane.
    let mut off = [_mm256_setzero_ps(); T];
    for s in 0..k / QK_K {
        let p = row.as_ptr().add(s * Q4K_BYTES);
        let (scales, mins) = q4k_scales(p);
        for (t, off) in off.iter_mut().enumerate() {
            let sums = _mm256_loadu_ps(xsum.as_ptr().add((j0 + t) * chunks + s * 8));
            *off = _mm256_fmadd_ps(mins, sums, *off);
        }
        let mut sc = [0f32; 8];
        _mm256_storeu_ps(sc.as_mut_ptr(), scales);
        for i in 0..4 {
            let (lo, hi) = q4k_values(p.add(16 + 32 * i));
            let (dl, dh) = (_mm256_set1_ps(sc[2 * i]), _mm256_set1_ps(sc[2 * i + 1]));
            for (t, acc) in acc.iter_mut().enumerate() {
                let x = xs.as_ptr().add((j0 + t) * k + s * QK_K + 64 * i);
                // Both sub-blocks join the accumulator in one add: half the dependency chain
                // a lone row (the decode step) would wait on.
                let pair =
                    _mm256_fmadd_ps(dh, dot32(&hi, x.add(32)), _mm256_mul_ps(dl, dot32(&lo, x)));
                *acc = _mm256_add_ps(*acc, pair);
            }
        }
    }
    for t in 0..T {
        *out.get_unchecked_mut(j0 + t) = hsum(acc[t]) - hsum(off[t]);
    }
}

/// One Q4_K row as f32, bit for bit candle's dequantization (`d·sc·q − dmin·m`, rounded
/// after the product as candle does, no fused multiply-add).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q4k_dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert!(out.len().is_multiple_of(QK_K) && row.len() >= out.len() / QK_K * Q4K_BYTES);
    for (s, dst) in out.chunks_exact_mut(QK_K).enumerate() {
        let p = row.as_ptr().add(s * Q4K_BYTES);
        let (scales, mins) = q4k_scales(p);
        let (mut sc, mut mn) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(sc.as_mut_ptr(), scales);
        _mm256_storeu_ps(mn.as_mut_ptr(), mins);
        for i in 0..4 {
            let (lo, hi) = q4k_values(p.add(16 + 32 * i));
            for (sub, vals) in [(2 * i, lo), (2 * i + 1, hi)] {
                let (d, m) = (_mm256_set1_ps(sc[sub]), _mm256_set1_ps(mn[sub]));
                for (j, v) in vals.iter().enumerate() {
                    let y = _mm256_sub_ps(_mm256_mul_ps(d, *v), m);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(32 * sub + 8 * j), y);
                }
            }
        }
    }
}

/// A Q4_K super-block's eight sub-block scales `d·sc` and mins `dmin·m`.
#[inline(always)]
unsafe fn q4k_scales(p: *const u8) -> (__m256, __m256) {
    let d = _mm256_set1_ps(half(p));
    let dmin = _mm256_set1_ps(half(p.add(2)));
    let word =
        |i: usize| u32::from_le_bytes([*p.add(4 + i), *p.add(5 + i), *p.add(6 + i), *p.add(7 + i)]);
    let (u0, u1, u2) = (word(0), word(4), word(8));
    // The 12 bytes pack eight 6-bit scales and eight 6-bit mins (ggml's
    // `get_scale_min_k4`): sub-blocks 0..4 in the low six bits of bytes 0..4 (scales) and
    // 4..8 (mins); sub-blocks 4..8 in the nibbles of bytes 8..12, their top two bits in
    // the top bits of bytes 0..8. Regrouped four at a time as llama.cpp does.
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let sc_lo = u0 & LOW6;
    let sc_hi = (u2 & LOW4) | (((u0 >> 6) & LOW2) << 4);
    let mn_lo = u1 & LOW6;
    let mn_hi = ((u2 >> 4) & LOW4) | (((u1 >> 6) & LOW2) << 4);
    let to_f32 = |lo: u32, hi: u32| {
        let bytes = _mm_cvtsi64_si128(((u64::from(hi) << 32) | u64::from(lo)) as i64);
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes))
    };
    (
        _mm256_mul_ps(d, to_f32(sc_lo, sc_hi)),
        _mm256_mul_ps(dmin, to_f32(mn_lo, mn_hi)),
    )
}

/// The two sub-blocks one 32-byte chunk of Q4_K nibbles holds, as f32: low nibbles are the
/// first sub-block's 32 values, high nibbles the second's.
#[inline(always)]
unsafe fn q4k_values(q: *const u8) -> ([__m256; 4], [__m256; 4]) {
    let m4 = _mm256_set1_epi32(0x0f);
    let mut lo = [_mm256_setzero_ps(); 4];
    let mut hi = [_mm256_setzero_ps(); 4];
    for j in 0..4 {
        // Eight bytes widened to 32-bit lanes, then split: no byte shuffles.
        let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(q.add(8 * j) as *const __m128i));
        lo[j] = _mm256_cvtepi32_ps(_mm256_and_si256(v, m4));
        hi[j] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
    }
    (lo, hi)
}

/// `out[j] = Σ_i dequant(row)[i]·xs[j·k + i]` for a Q6_K row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q6k_row_products(row: &[u8], xs: &[f32], k: usize, out: &mut [f32]) {
    debug_assert!(row.len() >= k / QK_K * Q6K_BYTES && xs.len() >= out.len() * k);
    by_tiles!(out, |j0, T| q6k_tile::<T>(row, xs, k, j0, out));
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_tile<const T: usize>(row: &[u8], xs: &[f32], k: usize, j0: usize, out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); T];
    for s in 0..k / QK_K {
        let p = row.as_ptr().add(s * Q6K_BYTES);
        let sc = q6k_scales(p);
        for part in 0..2 {
            for (g, group) in q6k_values(p, part).iter().enumerate() {
                let w = widen_i8(*group);
                // Sixteen-wide sub-blocks: this group's two, in element order.
                let sub = 8 * part + 2 * g;
                let (s0, s1) = (_mm256_set1_ps(sc[sub]), _mm256_set1_ps(sc[sub + 1]));
                for (t, acc) in acc.iter_mut().enumerate() {
                    let x = xs.as_ptr().add((j0 + t) * k + s * QK_K + 16 * sub);
                    let (first, second) = (dot16(w[0], w[1], x), dot16(w[2], w[3], x.add(16)));
                    // One add on the accumulator per two sub-blocks, as in Q4_K.
                    let pair = _mm256_fmadd_ps(s1, second, _mm256_mul_ps(s0, first));
                    *acc = _mm256_add_ps(*acc, pair);
                }
            }
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        *out.get_unchecked_mut(j0 + t) = hsum(*acc);
    }
}

/// One Q6_K row as f32, bit for bit candle's dequantization (`(d·sc)·(q − 32)`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q6k_dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert!(out.len().is_multiple_of(QK_K) && row.len() >= out.len() / QK_K * Q6K_BYTES);
    for (s, dst) in out.chunks_exact_mut(QK_K).enumerate() {
        let p = row.as_ptr().add(s * Q6K_BYTES);
        let sc = q6k_scales(p);
        for part in 0..2 {
            for (g, group) in q6k_values(p, part).iter().enumerate() {
                for (j, v) in widen_i8(*group).iter().enumerate() {
                    let e = 128 * part + 32 * g + 8 * j;
                    let y = _mm256_mul_ps(_mm256_set1_ps(sc[e / 16]), *v);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(e), y);
                }
            }
        }
    }
}

/// A Q6_K super-block's sixteen sub-block scales `d·sc` (ql[128], qh[64], scales[16] as
/// i8, then the f16 `d`).
#[inline(always)]
unsafe fn q6k_scales(p: *const u8) -> [f32; 16] {
    let d = _mm256_set1_ps(half(p.add(208)));
    let eight = |at: usize| {
        let v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(at) as *const __m128i));
        _mm256_mul_ps(d, _mm256_cvtepi32_ps(v))
    };
    let mut sc = [0f32; 16];
    _mm256_storeu_ps(sc.as_mut_ptr(), eight(192));
    _mm256_storeu_ps(sc.as_mut_ptr().add(8), eight(200));
    sc
}

/// One half (128 values) of a Q6_K super-block as `q − 32` in signed bytes: four groups of
/// 32 in element order. Byte `l` of the half's 64 `ql` bytes gives elements `l` (low
/// nibble) and `l + 64` (high), byte `l + 32` elements `l + 32` and `l + 96`; byte `l` of
/// its 32 `qh` bytes holds their top two bits, two bits each in that order.
#[inline(always)]
unsafe fn q6k_values(p: *const u8, part: usize) -> [__m256i; 4] {
    let ql = p.add(64 * part);
    let a = _mm256_loadu_si256(ql as *const __m256i);
    let b = _mm256_loadu_si256(ql.add(32) as *const __m256i);
    let h = _mm256_loadu_si256(p.add(128 + 32 * part) as *const __m256i);
    let m4 = _mm256_set1_epi8(0x0f);
    let m30 = _mm256_set1_epi8(0x30);
    let bias = _mm256_set1_epi8(32);
    // 16-bit shifts move bits across bytes; the masks keep only each byte's own.
    let join = |low: __m256i, high: __m256i| {
        _mm256_sub_epi8(
            _mm256_or_si256(_mm256_and_si256(low, m4), _mm256_and_si256(high, m30)),
            bias,
        )
    };
    [
        join(a, _mm256_slli_epi16(h, 4)),
        join(b, _mm256_slli_epi16(h, 2)),
        join(_mm256_srli_epi16(a, 4), h),
        join(_mm256_srli_epi16(b, 4), _mm256_srli_epi16(h, 2)),
    ]
}

/// 32 signed bytes as four vectors of eight f32, in order.
#[inline(always)]
unsafe fn widen_i8(v: __m256i) -> [__m256; 4] {
    let lo = _mm256_castsi256_si128(v);
    let hi = _mm256_extracti128_si256(v, 1);
    let f = |b: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    [
        f(lo),
        f(_mm_srli_si128(lo, 8)),
        f(hi),
        f(_mm_srli_si128(hi, 8)),
    ]
}

/// Σ w·x over 16 values (`w0`, `w1` against `x..x + 16`), lanewise.
#[inline(always)]
pub(super) unsafe fn dot16(w0: __m256, w1: __m256, x: *const f32) -> __m256 {
    _mm256_fmadd_ps(
        w1,
        _mm256_loadu_ps(x.add(8)),
        _mm256_mul_ps(w0, _mm256_loadu_ps(x)),
    )
}

/// Σ w·x over 32 values, in two independent chains.
#[inline(always)]
pub(super) unsafe fn dot32(w: &[__m256; 4], x: *const f32) -> __m256 {
    _mm256_add_ps(dot16(w[0], w[1], x), dot16(w[2], w[3], x.add(16)))
}

/// The little-endian f16 at `p`, widened.
#[inline(always)]
pub(super) unsafe fn half(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

#[inline(always)]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Test helpers, also used by `qmatmul`'s products test (which reaches these kernels through
/// its dispatch).
#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    pub(in crate::ops) const FORMATS: [GgmlDType; 3] =
        [GgmlDType::Q5_0, GgmlDType::Q4K, GgmlDType::Q6K];

    pub(in crate::ops) fn kernel_runs() -> bool {
        let on = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        if !on {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI's x86-64 machine must run the AVX2 kernel"
            );
            eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
        }
        on
    }

    /// `[n, k]` values whose magnitude and sign change from one 16-wide sub-block to the
    /// next (some 600× others; some sub-blocks all negative, so Q4_K's mins vary, others
    /// all positive), in patterns of 11 and 7 sub-blocks: a kernel that applies another
    /// sub-block's scale or min is off by far more than the tolerance.
    pub(in crate::ops) fn varied(n: usize, k: usize, dtype: GgmlDType) -> (QTensor, Tensor) {
        const AMP: [f32; 11] = [0.02, 1.5, 0.2, 6.0, 0.05, 3.0, 0.6, 0.01, 2.0, 0.3, 4.5];
        const SHIFT: [f32; 7] = [0.0, 1.0, -1.2, 0.4, -0.3, 2.0, -2.5];
        let vals: Vec<f32> = (0..n * k)
            .map(|i| {
                let sub = i % k / 16 + 3 * (i / k);
                let noise = (i * 7919 % 1013) as f32 / 1013.0 - 0.5;
                AMP[(sub * 5 + sub / 11) % 11] * (noise + SHIFT[sub % 7])
            })
            .collect();
        let w = Tensor::from_vec(vals, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        (q, dense)
    }

    pub(in crate::ops) fn input(m: usize, k: usize) -> Tensor {
        let vals: Vec<f32> = (0..m * k)
            .map(|i| ((i * 4481 % 997) as f32 / 997.0 - 0.5) * 2.0)
            .collect();
        Tensor::from_vec(vals, (m, k), &Device::Cpu).unwrap()
    }

    pub(in crate::ops) fn widths(dtype: GgmlDType) -> &'static [usize] {
        match dtype {
            GgmlDType::Q5_0 => &[96, 256, 512, 576],
            _ => &[256, 512],
        }
    }

    /// The panel path's rows are candle's dequantization to the bit.
    #[test]
    fn dequantized_rows_equal_candles_bit_for_bit() {
        if !kernel_runs() {
            return;
        }
        for dtype in FORMATS {
            let k = *widths(dtype).last().unwrap_or(&256);
            let (q, dense) = varied(5, k, dtype);
            let data = q.data().unwrap();
            let row_bytes = data.len() / 5;
            let want = dense.to_vec2::<f32>().unwrap();
            for (r, want) in want.iter().enumerate() {
                let mut got = vec![f32::NAN; k];
                let row = &data[r * row_bytes..][..row_bytes];
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above); `row` holds the
                // `k / block_len` blocks of one row and `got` its `k` values.
                unsafe {
                    match dtype {
                        GgmlDType::Q5_0 => q5_0_dequantize_row(row, &mut got),
                        GgmlDType::Q4K => q4k_dequantize_row(row, &mut got),
                        _ => q6k_dequantize_row(row, &mut got),
                    }
                }
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{dtype:?} row {r} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }
}
