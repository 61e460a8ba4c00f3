//! A GGUF weight repacked for generation: 16 rows interleaved per block, so one decode
//! product runs with the rows in the vector lanes.
//!
//! In GGUF's own order a row's blocks follow each other, and a one-token product unpacks a
//! block, multiplies it with 32 activations and sums the lanes of every row at the end. Here
//! the 16 rows of a group sit side by side for each element of a block: element `j` of 16
//! rows is one load, its values come from a table (`vpermps`), one FMA with the broadcast
//! activation `x[j]` adds it to 16 row sums, and the block's scales (also side by side)
//! scale those 16 sums at once. No horizontal sums, no per-block tables, about half the
//! instructions per weight. The bytes are the blocks' own bytes, reordered (Q4_K's packed
//! 6-bit scales unpacked, +3%; Q6_K's 4 + 2 bits combined into whole 6-bit values, five
//! and a sixth of a value per 32-bit word, the file's size): the packed weight replaces the GGUF one
//! (`Weight::Packed`), and dequantizes to exactly candle's values.
//!
//! AVX-512F only (where the table permute takes 16 values); other CPUs keep
//! [`super::qmatmul`]'s row kernels. Q5_0 (a Q4_K_M file's fallback for widths that are
//! not a multiple of 256) is packed as Q8_0: its 4 + 1 bits combined into a signed byte per
//! value (+55% for those tensors; its product then costs Q8_0's).

use super::qmatmul::{isa, panel_products, untranspose, Format, Isa};
use candle_core::quantized::QTensor;
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Rows interleaved in a group: one AVX-512 register of f32.
const LANES: usize = 16;
/// Elements per block.
const QK: usize = 32;
/// Activation rows from which products dequantize a panel and use gemm (as
/// `qmatmul::WIDE_ROWS`).
const WIDE_ROWS: usize = 16;

/// A weight `[n, k]` in the interleaved layout: for each group of 16 rows and each block,
/// the 16 rows' f16 scales (and Q4_1's f16 minimums), then the quantized bytes with the 16
/// rows' byte `j` side by side.
#[derive(Debug)]
pub struct Packed {
    format: Format,
    n: usize,
    k: usize,
    data: Vec<u8>,
}

impl Packed {
    /// The packed copy of `q`, where this CPU has the kernel and the weight fits the layout
    /// (Q4_0, Q4_1, Q8_0, Q5_0, Q4_K or Q6_K, rows a multiple of 16); `None` otherwise.
    pub fn new(q: &QTensor) -> Result<Option<Packed>> {
        if isa() != Isa::Avx512 {
            return Ok(None);
        }
        Self::pack(q)
    }

    /// The interleaved layout of `q` whatever this CPU runs (the products need AVX-512F; the
    /// layout and its dequantization do not, so they are tested everywhere).
    fn pack(q: &QTensor) -> Result<Option<Packed>> {
        let Some(format) = Format::of(q.dtype()) else {
            return Ok(None);
        };
        let Ok((n, k)) = q.shape().dims2() else {
            return Ok(None);
        };
        // Q5_0's 4 + 1 bits are combined into Q8_0's layout (a signed byte per value).
        let source = format;
        let format = if source == Format::Q5_0 {
            Format::Q8_0
        } else {
            source
        };
        let Some(fields) = Fields::of(format) else {
            return Ok(None);
        };
        let len = format.block_len();
        if !q.device().is_cpu() || n % LANES != 0 || k % len != 0 {
            return Ok(None);
        }
        let src = q.data()?;
        let bb = source.block_bytes();
        let blocks = k / len;
        if src.len() != n * blocks * bb {
            candle_core::bail!(
                "packing a [{n}, {k}] {source:?} weight of {} bytes",
                src.len()
            );
        }
        let gbb = fields.group_block_bytes();
        let mut data = vec![0u8; n / LANES * blocks * gbb];
        // Groups in parallel: packing is a pass over the whole model at load time.
        data.par_chunks_mut(blocks * gbb)
            .enumerate()
            .for_each(|(g, group)| {
                let mut halves = Vec::new();
                let mut bytes: [Vec<u8>; LANES] = std::array::from_fn(|_| Vec::new());
                for (b, dst) in group.chunks_exact_mut(gbb).enumerate() {
                    let (head, plane) = dst.split_at_mut(fields.halves * 2 * LANES);
                    for (r, bytes) in bytes.iter_mut().enumerate() {
                        let block = &src[((g * LANES + r) * blocks + b) * bb..][..bb];
                        fields.split(source, block, &mut halves, bytes);
                        for (h, v) in halves.iter().enumerate() {
                            head[h * 2 * LANES + 2 * r..][..2].copy_from_slice(v);
                        }
                    }
                    // 16 bytes of the 16 rows at a time, in `byte_offset`'s order.
                    for (c, out) in plane.chunks_exact_mut(LANES * LANES).enumerate() {
                        let rows: [[u8; LANES]; LANES] = std::array::from_fn(|r| {
                            std::array::from_fn(|i| bytes[r][c * LANES + i])
                        });
                        let words = in_words(format, c * LANES);
                        out.copy_from_slice(&if words {
                            interleave_words(&rows)
                        } else {
                            transpose16(&rows)
                        });
                    }
                }
            });
        Ok(Some(Packed { format, n, k, data }))
    }

    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    pub fn storage_bytes(&self) -> usize {
        self.data.len()
    }

    /// Rows `rows` (group-aligned or not) as a dense `[len, k]` f32 matrix, exactly candle's
    /// dequantization of the original blocks.
    pub fn dequantize_rows(&self, rows: std::ops::Range<usize>) -> Result<Tensor> {
        if rows.end > self.n {
            candle_core::bail!("rows {rows:?} of a packed weight of {} rows", self.n);
        }
        self.gather(rows.len(), |i| rows.start + i)
    }

    /// Rows `ids` as a dense `[ids.len(), k]` f32 matrix (an embedding lookup).
    pub fn dequantize_ids(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.n) {
            candle_core::bail!("row {bad} of a packed weight of {} rows", self.n);
        }
        self.gather(ids.len(), |i| ids[i] as usize)
    }

    /// `count` rows, output row `i` being row `row(i)`.
    fn gather(&self, count: usize, row: impl Fn(usize) -> usize) -> Result<Tensor> {
        let (k, len_b, blocks) = (self.k, self.format.block_len(), self.blocks());
        let mut out = vec![0f32; count * k];
        for (i, dst) in out.chunks_exact_mut(k.max(1)).enumerate() {
            let (g, r) = (row(i) / LANES, row(i) % LANES);
            for b in 0..blocks {
                let gb = self.group_block(g, b);
                dequantize_lane(self.format, gb, r, &mut dst[b * len_b..][..len_b]);
            }
        }
        Tensor::from_vec(out, (count, k), &candle_core::Device::Cpu)
    }

    /// The whole weight as a dense `[n, k]` f32 matrix.
    pub fn dequantize(&self, dtype: DType) -> Result<Tensor> {
        self.dequantize_rows(0..self.n)?.to_dtype(dtype)
    }

    fn blocks(&self) -> usize {
        self.k / self.format.block_len()
    }

    fn group_block_bytes(&self) -> usize {
        Fields::of(self.format).map_or(0, |f| f.group_block_bytes())
    }

    fn group_block(&self, g: usize, b: usize) -> &[u8] {
        let gbb = self.group_block_bytes();
        &self.data[(g * self.blocks() + b) * gbb..][..gbb]
    }

    fn group(&self, g: usize) -> &[u8] {
        let gb = self.group_block_bytes() * self.blocks();
        &self.data[g * gb..][..gb]
    }
}

/// `out[16·j + i] = rows[i][j]`: 16 rows' bytes turned into 16 columns (SSE2's unpacks on
/// x86-64, four rounds of 16).
fn transpose16(rows: &[[u8; LANES]; LANES]) -> [u8; LANES * LANES] {
    let mut out = [0u8; LANES * LANES];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86-64; every load reads one 16-byte row of `rows` and every
    // store writes 16 bytes inside `out`.
    unsafe {
        use std::arch::x86_64::*;
        let r: [__m128i; 16] =
            std::array::from_fn(|i| _mm_loadu_si128(rows[i].as_ptr() as *const __m128i));
        // Pairs of rows interleaved by byte, then by 2, 4 and 8 bytes.
        let a: [__m128i; 16] = std::array::from_fn(|i| {
            let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm_unpacklo_epi8(x, y)
            } else {
                _mm_unpackhi_epi8(x, y)
            }
        });
        // b[4q + t]: rows 4q..4q+4, columns 4t..4t+4.
        let b: [__m128i; 16] = std::array::from_fn(|i| {
            let (q, t) = (i / 4, i % 4);
            let (x, y) = (a[4 * q + t / 2], a[4 * q + 2 + t / 2]);
            if t % 2 == 0 {
                _mm_unpacklo_epi16(x, y)
            } else {
                _mm_unpackhi_epi16(x, y)
            }
        });
        // c[8h + u]: rows 8h..8h+8, columns 2u, 2u + 1.
        let c: [__m128i; 16] = std::array::from_fn(|i| {
            let (h, u) = (i / 8, i % 8);
            let (x, y) = (b[8 * h + u / 2], b[8 * h + 4 + u / 2]);
            if u % 2 == 0 {
                _mm_unpacklo_epi32(x, y)
            } else {
                _mm_unpackhi_epi32(x, y)
            }
        });
        for j in 0..LANES {
            let (x, y) = (c[j / 2], c[8 + j / 2]);
            let col = if j % 2 == 0 {
                _mm_unpacklo_epi64(x, y)
            } else {
                _mm_unpackhi_epi64(x, y)
            };
            _mm_storeu_si128(out.as_mut_ptr().add(LANES * j) as *mut __m128i, col);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (i, row) in rows.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            out[LANES * j + i] = *v;
        }
    }
    out
}

/// 16 rows' 16 bytes of 4-bit values in the word-interleaved order: word `w` (bytes
/// `4w..4w+4`) of the 16 rows side by side, so one 64-byte load gives each lane eight
/// values of its row, and a shift picks one of them (no widening shuffle per element).
fn interleave_words(rows: &[[u8; LANES]; LANES]) -> [u8; LANES * LANES] {
    let mut out = [0u8; LANES * LANES];
    for (r, row) in rows.iter().enumerate() {
        for w in 0..LANES / 4 {
            out[(w * LANES + r) * 4..][..4].copy_from_slice(&row[4 * w..][..4]);
        }
    }
    out
}

/// Whether byte `j` of a block is a 4-bit value's byte (word-interleaved): all of Q4_0's
/// and Q4_1's, Q4_K's after its 8 scales and 8 mins.
fn in_words(format: Format, j: usize) -> bool {
    match format {
        Format::Q4_0 | Format::Q4_1 => true,
        Format::Q4K | Format::Q6K => j >= 16,
        _ => false,
    }
}

/// The first element of Q6_K sub-block `sub` (16 values sharing a scale): candle's order,
/// `128h + 32u + 16i` for `sub = 8h + 2u + i`.
fn q6k_first(sub: usize) -> usize {
    128 * (sub / 8) + 32 * ((sub % 8) / 2) + 16 * (sub % 2)
}

/// A Q6_K sub-block's 16 six-bit values as three 32-bit words: values `5t..5t+5` at bits
/// `6i` of word `t`, and the sixteenth's bits `2t, 2t + 1` at bits 30 and 31 of word `t`. A
/// shift and a mask then put any of the first fifteen at the top of an f32's mantissa.
fn q6k_words(v: &[u8]) -> [u32; 3] {
    let mut w = [0u32; 3];
    for (j, q) in v.iter().take(15).enumerate() {
        w[j / 5] |= u32::from(*q & 63) << (6 * (j % 5));
    }
    for (t, word) in w.iter_mut().enumerate() {
        *word |= ((u32::from(v[15]) >> (2 * t)) & 3) << 30;
    }
    w
}

/// The 16 values of a sub-block from its three words ([`q6k_words`]).
fn q6k_values(w: [u32; 3]) -> [u8; 16] {
    let mut v = [0u8; 16];
    for (j, q) in v.iter_mut().take(15).enumerate() {
        *q = ((w[j / 5] >> (6 * (j % 5))) & 63) as u8;
    }
    v[15] = ((w[0] >> 30) | ((w[1] >> 30) << 2) | ((w[2] >> 30) << 4)) as u8;
    v
}

/// Where byte `j` of row `r`'s block lies in a group-block's byte plane: 4-bit values
/// word-interleaved ([`interleave_words`], by 16-byte chunks of the block), the other bytes
/// (8-bit values, the k-quants' scales) byte-interleaved.
fn byte_offset(format: Format, j: usize, r: usize) -> usize {
    if in_words(format, j) {
        let (chunk, i) = (j / LANES, j % LANES);
        chunk * LANES * LANES + (i / 4 * LANES + r) * 4 + i % 4
    } else {
        j * LANES + r
    }
}

/// How a block is stored in a group-block: its f16 fields (each kept as the 16 rows' values
/// side by side), then its bytes (byte `j` of the 16 rows side by side). Q4_K's 12 bytes of
/// packed 6-bit scales and mins are stored unpacked (8 scales, then 8 mins), so a kernel
/// loads 16 rows' scale with one load.
#[derive(Debug, Clone, Copy)]
struct Fields {
    halves: usize,
    bytes: usize,
}

impl Fields {
    fn of(format: Format) -> Option<Fields> {
        let (halves, bytes) = match format {
            Format::Q4_0 => (1, 16),
            Format::Q4_1 => (2, 16),
            Format::Q8_0 => (1, 32),
            // d, dmin; 8 scales, 8 mins, 128 bytes of nibbles.
            Format::Q4K => (2, 16 + 128),
            // d; 16 scales, then per sub-block of 16 values three 32-bit words (see
            // `q6k_words`): the file's 6 bits per value, each value whole in its word.
            Format::Q6K => (1, 16 + 16 * 12),
            // Packed as Q8_0.
            Format::Q5_0 => return None,
        };
        Some(Fields { halves, bytes })
    }

    fn group_block_bytes(self) -> usize {
        LANES * (2 * self.halves + self.bytes)
    }

    /// One row's block of `source` as (f16 fields, bytes) in the packed order.
    fn split(self, source: Format, block: &[u8], halves: &mut Vec<[u8; 2]>, bytes: &mut Vec<u8>) {
        halves.clear();
        bytes.clear();
        let half = |at: usize| [block[at], block[at + 1]];
        match source {
            Format::Q5_0 => {
                // d, qh (u32: the fifth bit of each value), 16 bytes of nibbles: the values
                // `q − 16` as candle computes them, stored as Q8_0's signed bytes.
                halves.push(half(0));
                let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                let qs = &block[6..22];
                let mut v = [0u8; 32];
                for j in 0..16 {
                    let h0 = (((qh >> j) << 4) & 0x10) as u8;
                    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                    v[j] = (((qs[j] & 0x0f) | h0) as i8 - 16) as u8;
                    v[j + 16] = (((qs[j] >> 4) | h1) as i8 - 16) as u8;
                }
                bytes.extend_from_slice(&v);
            }
            Format::Q4K => {
                halves.extend([half(0), half(2)]);
                let scales = &block[4..16];
                let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
                for j in 0..8 {
                    (sc[j], mn[j]) = scale_min_k4(j, scales);
                }
                bytes.extend_from_slice(&sc);
                bytes.extend_from_slice(&mn);
                bytes.extend_from_slice(&block[16..144]);
            }
            Format::Q6K => {
                // ggml's order: ql[128], qh[64], scales[16], d.
                halves.push(half(208));
                bytes.extend_from_slice(&block[192..208]);
                let (ql, qh) = (&block[..128], &block[128..192]);
                // The values `q` (0..64; the weight is `d·sc·(q − 32)`).
                let mut v = [0u8; 256];
                for h in 0..2 {
                    for l in 0..32 {
                        let (a, b, hb) = (ql[64 * h + l], ql[64 * h + l + 32], qh[32 * h + l]);
                        let q = [
                            (a & 0xf) | ((hb & 3) << 4),
                            (b & 0xf) | (((hb >> 2) & 3) << 4),
                            (a >> 4) | (((hb >> 4) & 3) << 4),
                            (b >> 4) | (((hb >> 6) & 3) << 4),
                        ];
                        for (u, q) in q.into_iter().enumerate() {
                            v[128 * h + l + 32 * u] = q;
                        }
                    }
                }
                for sub in 0..16 {
                    let first = q6k_first(sub);
                    for w in q6k_words(&v[first..first + 16]) {
                        bytes.extend_from_slice(&w.to_le_bytes());
                    }
                }
            }
            _ => {
                for h in 0..self.halves {
                    halves.push(half(2 * h));
                }
                bytes.extend_from_slice(&block[2 * self.halves..]);
            }
        }
    }
}

/// Q4_K's scale and min of sub-block `j` from its 12 packed bytes (ggml's
/// `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Row `r`'s values of one group-block (32, or 256 for the k-quants), as candle computes
/// them.
fn dequantize_lane(format: Format, gb: &[u8], r: usize, out: &mut [f32]) {
    let Some(fields) = Fields::of(format) else {
        return;
    };
    let half = |s: usize| {
        half::f16::from_le_bytes([gb[s * 2 * LANES + 2 * r], gb[s * 2 * LANES + 2 * r + 1]])
            .to_f32()
    };
    let q = |j: usize| gb[2 * fields.halves * LANES + byte_offset(format, j, r)];
    let d = half(0);
    match format {
        Format::Q4_1 => {
            let m = half(1);
            for j in 0..16 {
                out[j] = f32::from(q(j) & 0x0f) * d + m;
                out[j + 16] = f32::from(q(j) >> 4) * d + m;
            }
        }
        Format::Q4_0 => {
            for j in 0..16 {
                out[j] = f32::from(i16::from(q(j) & 0x0f) - 8) * d;
                out[j + 16] = f32::from(i16::from(q(j) >> 4) - 8) * d;
            }
        }
        Format::Q8_0 => {
            for (j, o) in out.iter_mut().enumerate().take(QK) {
                *o = f32::from(q(j) as i8) * d;
            }
        }
        Format::Q4K => {
            let min = half(1);
            for c in 0..4 {
                let (s0, s1) = (2 * c, 2 * c + 1);
                let (d1, m1) = (d * f32::from(q(s0)), min * f32::from(q(8 + s0)));
                let (d2, m2) = (d * f32::from(q(s1)), min * f32::from(q(8 + s1)));
                for i in 0..32 {
                    let byte = q(16 + 32 * c + i);
                    out[64 * c + i] = d1 * f32::from(byte & 0xf) - m1;
                    out[64 * c + 32 + i] = d2 * f32::from(byte >> 4) - m2;
                }
            }
        }
        Format::Q6K => {
            for sub in 0..16 {
                let word = |t: usize| {
                    let at = 16 + 12 * sub + 4 * t;
                    u32::from_le_bytes([q(at), q(at + 1), q(at + 2), q(at + 3)])
                };
                let values = q6k_values([word(0), word(1), word(2)]);
                let first = q6k_first(sub);
                // candle: d·sc, then ·(q − 32).
                let scale = d * f32::from(q(sub) as i8);
                for (j, v) in values.iter().enumerate() {
                    out[first + j] = scale * f32::from(*v as i8 - 32);
                }
            }
        }
        Format::Q5_0 => {}
    }
}

/// `x · dequant(p)ᵀ` for f32 `x` `[.., k]`.
pub fn matmul(x: &Tensor, p: &Packed) -> Result<Tensor> {
    Ok(matmul_group(x, &[p])?.remove(0))
}

/// `x · dequant(p_i)ᵀ` for several packed weights of one input, one parallel pass.
pub fn matmul_group(x: &Tensor, ps: &[&Packed]) -> Result<Vec<Tensor>> {
    let k = x.dim(candle_core::D::Minus1)?;
    for p in ps {
        if p.k != k {
            candle_core::bail!(
                "packed matmul: input {:?} against weight [{}, {}]",
                x.dims(),
                p.n,
                p.k
            );
        }
    }
    let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let m = xs.len() / k.max(1);
    let xsum: Vec<f32> = xs.chunks_exact(QK).map(|c| c.iter().sum()).collect();
    let xsum16: Vec<f32> = xs.chunks_exact(16).map(|c| c.iter().sum()).collect();
    let outs: Vec<Vec<f32>> = if m >= WIDE_ROWS {
        ps.iter().map(|p| wide_products(p, &xs, m)).collect()
    } else {
        // Transposed outputs ([n, m]): a task owns whole groups' rows.
        let mut yts: Vec<Vec<f32>> = ps.iter().map(|p| vec![0f32; p.n * m]).collect();
        let groups: usize = ps.iter().map(|p| p.n / LANES).sum();
        let threads = rayon::current_num_threads().max(1);
        let per_task = groups.div_ceil(threads * 4).clamp(2, 16);
        let mut tasks = Vec::new();
        for (wi, yt) in yts.iter_mut().enumerate() {
            for (t, chunk) in yt.chunks_mut(per_task * LANES * m).enumerate() {
                tasks.push((wi, t * per_task, chunk));
            }
        }
        tasks.into_par_iter().for_each(|(wi, first, out)| {
            let p = ps[wi];
            let mut sums = [0f32; LANES];
            for (i, rows) in out.chunks_exact_mut(LANES * m).enumerate() {
                let g = first + i;
                for j in 0..m {
                    group_products(
                        p,
                        g,
                        &xs[j * p.k..][..p.k],
                        Sums {
                            per32: &xsum[j * p.k / QK..],
                            per16: &xsum16[j * p.k / 16..],
                        },
                        &mut sums,
                    );
                    for (r, v) in sums.iter().enumerate() {
                        rows[r * m + j] = *v;
                    }
                }
            }
        });
        yts.into_iter()
            .zip(ps)
            .map(|(yt, p)| untranspose(yt, m, p.n))
            .collect()
    };
    let mut dims = x.dims().to_vec();
    outs.into_iter()
        .zip(ps)
        .map(|(y, p)| {
            if let Some(last) = dims.last_mut() {
                *last = p.n;
            }
            Tensor::from_vec(y, dims.clone(), x.device())
        })
        .collect()
}

/// 16 rows' products with one activation row.
/// Sums of an activation row's values by 32 (a legacy block, a Q4_K sub-block) and by 16
/// (a Q6_K sub-block), for the formats whose values carry an offset.
#[derive(Clone, Copy)]
struct Sums<'a> {
    per32: &'a [f32],
    per16: &'a [f32],
}

fn group_products(p: &Packed, g: usize, x: &[f32], xsum: Sums, out: &mut [f32; LANES]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `Packed::new` admitted the weight only where `isa` saw AVX-512F (and the
        // AVX2/FMA/F16C set); the group holds `k / 32` group-blocks, `x` holds `k` values and
        // `xsum` at least `k / 32` and `k / 16`.
        unsafe { avx512::group_products(p.format, p.group(g), x, xsum, p.blocks(), out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, g, x, xsum, out);
        unreachable!("packed weights exist only on x86-64")
    }
}

/// Many activation rows: each task dequantizes a panel of groups (transposed: the layout
/// gives 16 rows' element `j` together) and multiplies it with gemm.
fn wide_products(p: &Packed, xs: &[f32], m: usize) -> Vec<f32> {
    let (n, k) = (p.n, p.k);
    let threads = rayon::current_num_threads().max(1);
    let groups_per_task = (n / LANES).div_ceil(threads * 4).clamp(1, 4);
    let rows_per_task = groups_per_task * LANES;
    // yt [n, m]: each task its own rows.
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(rows_per_task * m)
        .enumerate()
        .for_each(|(task, yt)| {
            let rows = yt.len() / m;
            let g0 = task * groups_per_task;
            // panel_t [k, rows]: column r is weight row g0·16 + r.
            let mut panel_t = vec![0f32; k * rows];
            let len = p.format.block_len();
            for gi in 0..rows / LANES {
                for b in 0..k / len {
                    let gb = p.group_block(g0 + gi, b);
                    let first = b * len * rows + gi * LANES;
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: packed weights exist only where `isa` saw AVX-512F; element `j`
                    // of the block goes to `panel_t[first + j·rows ..][..16]`, inside the
                    // [k, rows] panel since `b·len + j < k` and `gi·16 + 16 ≤ rows`.
                    unsafe {
                        avx512::dequantize_group_block(p.format, gb, &mut panel_t[first..], rows)
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    {
                        let _ = (gb, first);
                        unreachable!("packed weights exist only on x86-64")
                    }
                }
            }
            // SAFETY: `panel_t` is [k, rows]: the panel [rows, k] has column stride `rows`
            // and row stride 1.
            unsafe { panel_products(panel_t.as_ptr(), (rows as isize, 1), xs, rows, m, k, yt) }
        });
    untranspose(yt, m, n)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{q6k_first, Fields, Format, LANES, QK};
    use std::arch::x86_64::*;

    /// 0, 1, …, 15: a nibble's value by `vpermps`.
    #[inline(always)]
    unsafe fn iota() -> __m512 {
        _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        )
    }

    /// 16 rows' byte `j` (at `p + 16·j`) widened to 32-bit lanes.
    #[inline(always)]
    unsafe fn bytes(p: *const u8, j: usize) -> __m512i {
        _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(j * LANES) as *const __m128i))
    }

    /// Word `w` of 16 rows' 4-bit values in the word-interleaved order (`super::interleave_words`):
    /// eight values per lane.
    #[inline(always)]
    unsafe fn words(p: *const u8, w: usize) -> __m512i {
        _mm512_loadu_si512(p.add(w * 4 * LANES) as *const _)
    }

    /// The three words of Q6_K sub-block `sub` (`super::q6k_words`) from the plane after
    /// the scales.
    #[inline(always)]
    unsafe fn q6k_sub_words(plane: *const u8, sub: usize) -> [__m512i; 3] {
        [
            words(plane, 3 * sub),
            words(plane, 3 * sub + 1),
            words(plane, 3 * sub + 2),
        ]
    }

    /// Nibble `t` of each lane in its low four bits (the bits above are left: `vpermps`
    /// reads only the low four).
    #[inline(always)]
    unsafe fn nibble(z: __m512i, t: usize) -> __m512i {
        match t {
            0 => z,
            1 => _mm512_srli_epi32(z, 4),
            2 => _mm512_srli_epi32(z, 8),
            3 => _mm512_srli_epi32(z, 12),
            4 => _mm512_srli_epi32(z, 16),
            5 => _mm512_srli_epi32(z, 20),
            6 => _mm512_srli_epi32(z, 24),
            _ => _mm512_srli_epi32(z, 28),
        }
    }

    /// Six-bit value `i` (0..5) of each lane's word at bits 0..6 (bits above left).
    #[inline(always)]
    unsafe fn six_bits(z: __m512i, i: usize) -> __m512i {
        match i {
            0 => z,
            1 => _mm512_srli_epi32(z, 6),
            2 => _mm512_srli_epi32(z, 12),
            3 => _mm512_srli_epi32(z, 18),
            _ => _mm512_srli_epi32(z, 24),
        }
    }

    /// Six-bit value `i` (0..5) of each lane's word at bits 17..23, the top of an f32's
    /// mantissa (bits elsewhere left).
    #[inline(always)]
    unsafe fn at_mantissa(z: __m512i, i: usize) -> __m512i {
        match i {
            0 => _mm512_slli_epi32(z, 17),
            1 => _mm512_slli_epi32(z, 11),
            2 => _mm512_slli_epi32(z, 5),
            3 => _mm512_srli_epi32(z, 1),
            _ => _mm512_srli_epi32(z, 7),
        }
    }

    /// A Q6_K sub-block's sixteenth value (two bits at the top of each of its three words).
    #[inline(always)]
    unsafe fn sixteenth(w: [__m512i; 3]) -> __m512i {
        let lo = _mm512_srli_epi32(w[0], 30);
        let mid = _mm512_slli_epi32(_mm512_srli_epi32(w[1], 30), 2);
        let hi = _mm512_slli_epi32(_mm512_srli_epi32(w[2], 30), 4);
        _mm512_or_si512(_mm512_or_si512(lo, mid), hi)
    }

    /// The element of a 32-value block (Q4_0, Q4_1) in nibble `t` of word `w`: byte
    /// `4w + t/2`, whose low nibble is element `4w + t/2` and high nibble `4w + t/2 + 16`.
    #[inline(always)]
    fn word_element(w: usize, t: usize) -> usize {
        4 * w + t / 2 + 16 * (t % 2)
    }

    /// 16 rows' unsigned byte `j` as f32.
    #[inline(always)]
    unsafe fn byte_values(p: *const u8, j: usize) -> __m512 {
        _mm512_cvtepi32_ps(bytes(p, j))
    }

    /// 16 rows' signed byte `j` as f32.
    #[inline(always)]
    unsafe fn signed_values(p: *const u8, j: usize) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
            p.add(j * LANES) as *const __m128i
        )))
    }

    /// 16 f16 values (one per row) as f32.
    #[inline(always)]
    unsafe fn halves(p: *const u8) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }

    /// A group-block's values, element `j` of the 16 rows at `out[j·stride..][..16]`: exactly
    /// candle's (`q·d + m`, `(q − 8)·d`, `q·d`: a multiply, then an add).
    #[target_feature(enable = "avx512f,f16c")]
    pub(super) unsafe fn dequantize_group_block(
        format: Format,
        gb: &[u8],
        out: &mut [f32],
        stride: usize,
    ) {
        debug_assert!(out.len() > LANES);
        let gb = gb.as_ptr();
        let d = halves(gb);
        let o = out.as_mut_ptr();
        match format {
            Format::Q4_0 | Format::Q4_1 => {
                let iota = _mm512_setr_ps(
                    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                    15.0,
                );
                let (table, m, q) = if format == Format::Q4_1 {
                    (iota, Some(halves(gb.add(2 * LANES))), gb.add(4 * LANES))
                } else {
                    (
                        _mm512_sub_ps(iota, _mm512_set1_ps(8.0)),
                        None,
                        gb.add(2 * LANES),
                    )
                };
                let value = |v: __m512| match m {
                    Some(m) => _mm512_add_ps(_mm512_mul_ps(v, d), m),
                    None => _mm512_mul_ps(v, d),
                };
                for w in 0..4 {
                    let z = words(q, w);
                    for t in 0..8 {
                        let v = _mm512_permutexvar_ps(nibble(z, t), table);
                        _mm512_storeu_ps(o.add(word_element(w, t) * stride), value(v));
                    }
                }
            }
            Format::Q8_0 => {
                let q = gb.add(2 * LANES);
                for j in 0..QK {
                    let w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                        q.add(j * LANES) as *const __m128i,
                    )));
                    _mm512_storeu_ps(o.add(j * stride), _mm512_mul_ps(w, d));
                }
            }
            Format::Q4K => {
                let table = iota();
                let dmin = halves(gb.add(2 * LANES));
                let by = gb.add(4 * LANES);
                let nibbles = by.add(16 * LANES);
                for c in 0..4 {
                    // candle: d·sc, min·m, then `d1·q − m1`; sub-block 2c in the low
                    // nibbles, 2c + 1 in the high ones.
                    let scales: [(__m512, __m512); 2] = std::array::from_fn(|h| {
                        let sub = 2 * c + h;
                        (
                            _mm512_mul_ps(d, byte_values(by, sub)),
                            _mm512_mul_ps(dmin, byte_values(by, 8 + sub)),
                        )
                    });
                    for w in 0..8 {
                        let z = words(nibbles, 8 * c + w);
                        for t in 0..8 {
                            let (d1, m1) = scales[t % 2];
                            let v = _mm512_permutexvar_ps(nibble(z, t), table);
                            let y = _mm512_sub_ps(_mm512_mul_ps(d1, v), m1);
                            let e = 64 * c + 32 * (t % 2) + 4 * w + t / 2;
                            _mm512_storeu_ps(o.add(e * stride), y);
                        }
                    }
                }
            }
            Format::Q6K => {
                let by = gb.add(2 * LANES);
                let low = _mm512_set1_epi32(63);
                let offset = _mm512_set1_epi32(32);
                for sub in 0..16 {
                    let ws = q6k_sub_words(by.add(16 * LANES), sub);
                    // candle: d·sc, then ·(q − 32).
                    let scale = _mm512_mul_ps(d, signed_values(by, sub));
                    let first = q6k_first(sub);
                    for j in 0..16 {
                        let v = if j < 15 {
                            _mm512_and_si512(six_bits(ws[j / 5], j % 5), low)
                        } else {
                            sixteenth(ws)
                        };
                        let q = _mm512_cvtepi32_ps(_mm512_sub_epi32(v, offset));
                        _mm512_storeu_ps(o.add((first + j) * stride), _mm512_mul_ps(scale, q));
                    }
                }
            }
            _ => unreachable!("Q5_0 is not packed"),
        }
    }

    /// `out[r] = Σ_i dequant(row r)[i]·x[i]` for the 16 rows of one group.
    #[target_feature(enable = "avx512f,f16c")]
    pub(super) unsafe fn group_products(
        format: Format,
        group: &[u8],
        x: &[f32],
        xsum: super::Sums,
        blocks: usize,
        out: &mut [f32; LANES],
    ) {
        let gbb = Fields::of(format).map_or(0, |f| f.group_block_bytes());
        let mut acc = _mm512_setzero_ps();
        let x = x.as_ptr();
        match format {
            Format::Q4_0 | Format::Q4_1 => {
                let iota = _mm512_setr_ps(
                    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0,
                    15.0,
                );
                let q4_1 = format == Format::Q4_1;
                // Q4_0's values are `q − 8`: the table says so, and no Σx term is needed.
                let table = if q4_1 {
                    iota
                } else {
                    _mm512_sub_ps(iota, _mm512_set1_ps(8.0))
                };
                let qoff = if q4_1 { 4 * LANES } else { 2 * LANES };
                for b in 0..blocks {
                    let gb = group.as_ptr().add(b * gbb);
                    let q = gb.add(qoff);
                    let xb = x.add(b * QK);
                    let mut s = [_mm512_setzero_ps(); 4];
                    for w in 0..4 {
                        let z = words(q, w);
                        for t in 0..8 {
                            // vpermps reads an index's low four bits: nibble t after a shift.
                            let v = _mm512_permutexvar_ps(nibble(z, t), table);
                            let xe = _mm512_set1_ps(*xb.add(word_element(w, t)));
                            s[t % 4] = _mm512_fmadd_ps(v, xe, s[t % 4]);
                        }
                    }
                    let sum = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
                    acc = _mm512_fmadd_ps(halves(gb), sum, acc);
                    if q4_1 {
                        let m = halves(gb.add(2 * LANES));
                        acc = _mm512_fmadd_ps(m, _mm512_set1_ps(*xsum.per32.get_unchecked(b)), acc);
                    }
                }
            }
            Format::Q8_0 => {
                for b in 0..blocks {
                    let gb = group.as_ptr().add(b * gbb);
                    let q = gb.add(2 * LANES);
                    let xb = x.add(b * QK);
                    let mut s = [_mm512_setzero_ps(); 4];
                    for j in (0..QK).step_by(4) {
                        for (u, su) in s.iter_mut().enumerate() {
                            let w = signed_values(q, j + u);
                            *su = _mm512_fmadd_ps(w, _mm512_set1_ps(*xb.add(j + u)), *su);
                        }
                    }
                    let sum = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
                    acc = _mm512_fmadd_ps(halves(gb), sum, acc);
                }
            }
            Format::Q4K => {
                let table = iota();
                for b in 0..blocks {
                    let gb = group.as_ptr().add(b * gbb);
                    let (d, dmin) = (halves(gb), halves(gb.add(2 * LANES)));
                    // Bytes: 8 scales, 8 mins, then 128 bytes of nibbles.
                    let by = gb.add(4 * LANES);
                    let xb = x.add(b * 256);
                    let nibbles = by.add(16 * LANES);
                    for c in 0..4 {
                        // Sub-block 2c in the low nibbles (even t), 2c + 1 in the high ones.
                        let mut s = [_mm512_setzero_ps(); 4];
                        for w in 0..8 {
                            let z = words(nibbles, 8 * c + w);
                            let xc = xb.add(64 * c + 4 * w);
                            for t in 0..8 {
                                let v = _mm512_permutexvar_ps(nibble(z, t), table);
                                let xe = _mm512_set1_ps(*xc.add(32 * (t % 2) + t / 2));
                                // s[0], s[2]: low nibbles; s[1], s[3]: high ones.
                                let a = (t % 2) + 2 * ((t / 2) % 2);
                                s[a] = _mm512_fmadd_ps(v, xe, s[a]);
                            }
                        }
                        for (h, sum) in [_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3])]
                            .into_iter()
                            .enumerate()
                        {
                            let sub = 2 * c + h;
                            let d1 = _mm512_mul_ps(d, byte_values(by, sub));
                            let m1 = _mm512_mul_ps(dmin, byte_values(by, 8 + sub));
                            let xs = _mm512_set1_ps(*xsum.per32.get_unchecked(b * 8 + sub));
                            acc = _mm512_fmadd_ps(d1, sum, acc);
                            acc = _mm512_fnmadd_ps(m1, xs, acc);
                        }
                    }
                }
            }
            Format::Q6K => {
                // Each value `q` becomes the f32 `1 + q/64` (its six bits at the top of the
                // mantissa, one shift and one ternary logic op), so Σ q·x = 64·Σ f·x − 64·Σ x,
                // and the weight's `q − 32` adds −32·Σ x: −96·Σ x in all.
                let mantissa = _mm512_set1_epi32(0x3F << 17);
                let one = _mm512_set1_epi32(0x3F80_0000);
                let as_float = |v: __m512i| {
                    _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xEA>(v, mantissa, one))
                };
                for b in 0..blocks {
                    let gb = group.as_ptr().add(b * gbb);
                    let d = halves(gb);
                    // Bytes: 16 scales, then three words per sub-block.
                    let by = gb.add(2 * LANES);
                    let plane = by.add(16 * LANES);
                    for sub in 0..16 {
                        let first = q6k_first(sub);
                        let xs = x.add(b * 256 + first);
                        let ws = q6k_sub_words(plane, sub);
                        let mut s = [_mm512_setzero_ps(); 4];
                        for (t, &w) in ws.iter().enumerate() {
                            for i in 0..5 {
                                let j = 5 * t + i;
                                let f = as_float(at_mantissa(w, i));
                                s[j % 4] = _mm512_fmadd_ps(f, _mm512_set1_ps(*xs.add(j)), s[j % 4]);
                            }
                        }
                        let f15 = _mm512_or_si512(_mm512_slli_epi32(sixteenth(ws), 17), one);
                        s[3] = _mm512_fmadd_ps(
                            _mm512_castsi512_ps(f15),
                            _mm512_set1_ps(*xs.add(15)),
                            s[3],
                        );
                        let sum =
                            _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
                        let xsum = *xsum.per16.get_unchecked((b * 256 + first) / 16);
                        let qsum =
                            _mm512_fmsub_ps(_mm512_set1_ps(64.0), sum, _mm512_set1_ps(96.0 * xsum));
                        let scale = _mm512_mul_ps(d, signed_values(by, sub));
                        acc = _mm512_fmadd_ps(scale, qsum, acc);
                    }
                }
            }
            _ => unreachable!("Q5_0 is not packed"),
        }
        _mm512_storeu_ps(out.as_mut_ptr(), acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::Device;

    fn weight(n: usize, k: usize, dtype: GgmlDType) -> QTensor {
        // Values whose size changes every 16 elements, so a wrong scale index shows.
        let vals: Vec<f32> = (0..n * k)
            .map(|i| {
                let big = if (i / 16) % 5 == 0 { 40.0 } else { 1.0 };
                ((i * 7919 % 1013) as f32 / 1013.0 - 0.4) * 0.3 * big
            })
            .collect();
        let w = Tensor::from_vec(vals, (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, dtype).unwrap()
    }

    fn input(rows: usize, k: usize) -> Tensor {
        let vals: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 4481 % 997) as f32 / 997.0 - 0.5) * 2.0)
            .collect();
        Tensor::from_vec(vals, (rows, k), &Device::Cpu).unwrap()
    }

    #[test]
    fn packed_products_and_values_equal_the_blocks() {
        // The layout and its values are checked on any CPU; the products where AVX-512F is.
        let kernel = isa() == Isa::Avx512;
        if !kernel {
            eprintln!("this CPU has no AVX-512F: the packed products are not checked here");
        }
        let legacy = [(16, 32), (48, 96), (320, 576)];
        let k_quants = [(16, 256), (48, 512), (320, 256)];
        for (dtype, shapes) in [
            (GgmlDType::Q4_0, legacy),
            (GgmlDType::Q4_1, legacy),
            (GgmlDType::Q8_0, legacy),
            (GgmlDType::Q5_0, legacy),
            (GgmlDType::Q4K, k_quants),
            (GgmlDType::Q6K, k_quants),
        ] {
            for (n, k) in shapes {
                let q = weight(n, k, dtype);
                let p = Packed::pack(&q).unwrap().expect("packable");
                let dense = q.dequantize(&Device::Cpu).unwrap();
                // The values, bit for bit.
                let got = p.dequantize(DType::F32).unwrap();
                let diff = (&got - &dense).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{dtype:?} {n}x{k}");
                // Rows that start and end inside groups.
                let (first, len) = (n / 4 + 1, n / 2);
                let rows = p.dequantize_rows(first..first + len).unwrap();
                let want = dense.narrow(0, first, len).unwrap();
                let diff = (&rows - &want).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
                // The products, at one row, a tile and the panel path.
                let rows_tried: &[usize] = if kernel { &[1, 3, 15, 16, 40] } else { &[] };
                for &m in rows_tried {
                    let x = input(m, k);
                    let want = x.matmul(&dense.t().unwrap()).unwrap();
                    let got = matmul(&x, &p).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let scale = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale,
                            "{dtype:?} {n}x{k} m={m} [{i}]: {a} vs {b}"
                        );
                    }
                }
            }
        }
        if !kernel {
            return;
        }
        // A group of weights equals each alone.
        let ws: Vec<Packed> = [
            (48, GgmlDType::Q4_1),
            (16, GgmlDType::Q8_0),
            (96, GgmlDType::Q4_0),
        ]
        .into_iter()
        .map(|(n, d)| Packed::new(&weight(n, 64, d)).unwrap().unwrap())
        .collect();
        let refs: Vec<&Packed> = ws.iter().collect();
        let x = input(2, 64);
        for (g, p) in matmul_group(&x, &refs).unwrap().iter().zip(&ws) {
            let alone = matmul(&x, p).unwrap();
            let diff = (g - &alone).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        }
    }

    #[test]
    fn sixteen_rows_become_sixteen_columns() {
        let rows: [[u8; LANES]; LANES] =
            std::array::from_fn(|i| std::array::from_fn(|j| (16 * i + j) as u8));
        let out = transpose16(&rows);
        for i in 0..LANES {
            for j in 0..LANES {
                assert_eq!(out[LANES * j + i], rows[i][j], "row {i} column {j}");
            }
        }
    }

    #[test]
    fn other_shapes_and_formats_are_not_packed() {
        assert!(Packed::new(&weight(8, 64, GgmlDType::Q4_1))
            .unwrap()
            .is_none());
        assert!(Packed::new(&weight(16, 256, GgmlDType::Q5K))
            .unwrap()
            .is_none());
        assert!(Packed::new(&weight(16, 64, GgmlDType::Q5_1))
            .unwrap()
            .is_none());
    }
}
