//! NormalFloat4 (the QLoRA paper's data type, as bitsandbytes stores it): each block of 64
//! weights is scaled by its absolute maximum and every weight becomes the nearest of 16
//! levels placed at the quantiles of a standard normal. The block scales are quantized
//! again ("double quantization"): their mean is subtracted and the rest stored as int8 with
//! one f32 scale per 256 blocks, so a weight costs 4 + 8/64 + 32/16384 ≈ 4.13 bits.
//! On the CPU, dequantization is a loop in parallel over rows. On a GPU the codes and scales
//! live on the device and are dequantized there by tensor ops (the 16 levels gathered by
//! code, times the block scales), a few row panels at a time, so no dense copy crosses the
//! bus and no host round trip happens per use. Both give the same bits.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// The 16 NF4 levels (bitsandbytes' table).
pub const LEVELS: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// Weights per block.
pub const BLOCK: usize = 64;
/// Block scales per second-level block.
const SCALE_BLOCK: usize = 256;

/// A matrix in NF4 with double-quantized block scales.
#[derive(Debug, Clone)]
pub struct Nf4Tensor {
    pub rows: usize,
    pub cols: usize,
    storage: Storage,
    /// The mean of the block scales, added back to each.
    mean: f32,
    device: Device,
}

/// Where the packed matrix lives: host memory for the CPU loop, or device tensors for the
/// tensor-op path (the same bytes either way).
#[derive(Debug, Clone)]
enum Storage {
    Host {
        /// Two 4-bit codes per byte, low nibble first, row-major.
        codes: Vec<u8>,
        /// Block absmax minus `mean`, as int8 times the second-level scale.
        scales_q: Vec<i8>,
        scales_scale: Vec<f32>,
    },
    Device {
        /// The codes as a u8 vector.
        codes: Tensor,
        /// The int8 block scales plus 128, as u8 (candle has no i8).
        scales_q: Tensor,
        /// One f32 per 256 blocks.
        scales_scale: Tensor,
        /// [`LEVELS`] on the device.
        levels: Tensor,
    },
}

/// Weights per panel the device path dequantizes at once (its temporaries are about 16
/// bytes per weight, so 64 MiB here however large the matrix).
const PANEL: usize = 1 << 22;

fn nearest(x: f32) -> u8 {
    // The levels are sorted: the nearest is one of the two around x.
    let i = LEVELS.partition_point(|&l| l < x);
    if i == 0 {
        return 0;
    }
    if i == LEVELS.len() {
        return 15;
    }
    if (x - LEVELS[i - 1]).abs() <= (LEVELS[i] - x).abs() {
        (i - 1) as u8
    } else {
        i as u8
    }
}

impl Nf4Tensor {
    /// Whether a matrix with `cols` inputs can be stored (whole blocks per row).
    pub fn fits(cols: usize) -> bool {
        cols > 0 && cols.is_multiple_of(BLOCK)
    }

    /// Quantizes a 2-D tensor (any dtype, any device) for use on `device`: kept in host
    /// memory for the CPU, uploaded once for any other device.
    pub fn quantize(src: &Tensor, device: &Device) -> Result<Self> {
        Self::from_parts(Nf4Parts::quantize(src)?, device)
    }

    /// A matrix from its packed parts (a quantization, or a cache entry), checked for
    /// consistent sizes, placed on `device`.
    pub fn from_parts(p: Nf4Parts, device: &Device) -> Result<Self> {
        let n = p.rows * p.cols;
        let blocks = n / BLOCK;
        if !Self::fits(p.cols)
            || p.codes.len() != n / 2
            || p.scales_q.len() != blocks
            || p.scales_scale.len() != blocks.div_ceil(SCALE_BLOCK)
        {
            candle_core::bail!(
                "nf4 parts of {}x{}: {} code bytes, {} scales, {} scale scales do not fit",
                p.rows,
                p.cols,
                p.codes.len(),
                p.scales_q.len(),
                p.scales_scale.len()
            );
        }
        let q = Nf4Tensor {
            rows: p.rows,
            cols: p.cols,
            storage: Storage::Host {
                codes: p.codes,
                scales_q: p.scales_q,
                scales_scale: p.scales_scale,
            },
            mean: p.mean,
            device: device.clone(),
        };
        if device.is_cpu() {
            Ok(q)
        } else {
            q.into_device_storage(device)
        }
    }

    /// The codes, when they sit in host memory (the CPU's storage).
    pub fn host_codes(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Host { codes, .. } => Some(codes),
            Storage::Device { .. } => None,
        }
    }

    /// [`Self::parts`] with empty codes: the small parts alone.
    pub fn parts_without_codes(&self) -> Result<Nf4Parts> {
        let (scales_q, scales_scale) = match &self.storage {
            Storage::Host {
                scales_q,
                scales_scale,
                ..
            } => (scales_q.clone(), scales_scale.clone()),
            Storage::Device {
                scales_q,
                scales_scale,
                ..
            } => (
                unshift(scales_q.to_vec1::<u8>()?),
                scales_scale.flatten_all()?.to_vec1::<f32>()?,
            ),
        };
        Ok(Nf4Parts {
            rows: self.rows,
            cols: self.cols,
            codes: Vec::new(),
            scales_q,
            scales_scale,
            mean: self.mean,
        })
    }

    /// The packed parts in host memory (read back from the device if they live there).
    pub fn parts(&self) -> Result<Nf4Parts> {
        let codes = match &self.storage {
            Storage::Host { codes, .. } => codes.clone(),
            Storage::Device { codes, .. } => codes.to_vec1::<u8>()?,
        };
        Ok(Nf4Parts {
            codes,
            ..self.parts_without_codes()?
        })
    }

    /// The packed bytes as tensors on `device`, dequantized there by tensor ops.
    fn into_device_storage(self, device: &Device) -> Result<Self> {
        let Storage::Host {
            codes,
            scales_q,
            scales_scale,
        } = self.storage
        else {
            return Ok(self);
        };
        let n = codes.len();
        // candle has no i8: the scales travel as u8 plus 128.
        let shifted: Vec<u8> = scales_q
            .iter()
            .map(|&q| (i16::from(q) + 128) as u8)
            .collect();
        let blocks = shifted.len();
        let groups = scales_scale.len();
        Ok(Nf4Tensor {
            storage: Storage::Device {
                codes: Tensor::from_vec(codes, n, device)?,
                scales_q: Tensor::from_vec(shifted, blocks, device)?,
                scales_scale: Tensor::from_vec(scales_scale, (groups, 1), device)?,
                levels: Tensor::new(&LEVELS, device)?,
            },
            device: device.clone(),
            ..self
        })
    }

    /// The dense matrix in `dtype` on the tensor's device.
    pub fn dequantize(&self, dtype: DType) -> Result<Tensor> {
        self.dequantize_rows(0..self.rows, dtype)
    }

    /// Rows `rows` of the dense matrix in `dtype` on the tensor's device: a panel of a large
    /// matrix without the whole of it.
    pub fn dequantize_rows(&self, rows: std::ops::Range<usize>, dtype: DType) -> Result<Tensor> {
        if rows.start > rows.end || rows.end > self.rows {
            candle_core::bail!("nf4: rows {rows:?} of a {}-row matrix", self.rows);
        }
        let first = rows.start;
        let n = rows.end - rows.start;
        match &self.storage {
            Storage::Host {
                codes,
                scales_q,
                scales_scale,
            } => {
                let per_row = self.cols / BLOCK;
                // The block scale as both paths compute it: product first, then the mean.
                let scale =
                    |b: usize| self.mean + f32::from(scales_q[b]) * scales_scale[b / SCALE_BLOCK];
                let mut out = vec![0f32; n * self.cols];
                out.par_chunks_mut(self.cols)
                    .enumerate()
                    .for_each(|(i, row)| {
                        let r = first + i;
                        for (k, block) in row.chunks_mut(BLOCK).enumerate() {
                            let b = r * per_row + k;
                            let s = scale(b);
                            let codes = &codes[b * BLOCK / 2..(b + 1) * BLOCK / 2];
                            for (pair, &c) in block.chunks_mut(2).zip(codes) {
                                pair[0] = LEVELS[usize::from(c & 15)] * s;
                                pair[1] = LEVELS[usize::from(c >> 4)] * s;
                            }
                        }
                    });
                Tensor::from_vec(out, (n, self.cols), &Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_device(&self.device)
            }
            Storage::Device {
                codes,
                scales_q,
                scales_scale,
                levels,
            } => self.dequantize_by_ops(codes, scales_q, scales_scale, levels, dtype, rows, PANEL),
        }
    }

    /// The device path: every block's scale at once, then panels of whole rows, each
    /// gathering its levels by code and scaling them by block.
    #[allow(clippy::too_many_arguments)] // the device storage's four parts, the rows, the panel
    fn dequantize_by_ops(
        &self,
        codes: &Tensor,
        scales_q: &Tensor,
        scales_scale: &Tensor,
        levels: &Tensor,
        dtype: DType,
        wanted: std::ops::Range<usize>,
        panel: usize,
    ) -> Result<Tensor> {
        let blocks = scales_q.dim(0)?;
        let groups = scales_scale.dim(0)?;
        let mut q = scales_q.to_dtype(DType::F32)?.affine(1.0, -128.0)?;
        if groups * SCALE_BLOCK > blocks {
            let pad = Tensor::zeros(groups * SCALE_BLOCK - blocks, DType::F32, &self.device)?;
            q = Tensor::cat(&[&q, &pad], 0)?;
        }
        let scales = q
            .reshape((groups, SCALE_BLOCK))?
            .broadcast_mul(scales_scale)?
            .affine(1.0, f64::from(self.mean))?
            .flatten_all()?
            .narrow(0, 0, blocks)?;
        let per_row = self.cols / BLOCK;
        let rows_per_panel = (panel / self.cols).max(1);
        let mut panels = Vec::with_capacity((wanted.end - wanted.start).div_ceil(rows_per_panel));
        let mut r0 = wanted.start;
        while r0 < wanted.end {
            let rows = rows_per_panel.min(wanted.end - r0);
            let c = codes
                .narrow(0, r0 * self.cols / 2, rows * self.cols / 2)?
                .to_dtype(DType::F32)?;
            let hi = c.affine(1.0 / 16.0, 0.0)?.floor()?;
            let lo = (&c - hi.affine(16.0, 0.0)?)?;
            let idx = Tensor::stack(&[&lo, &hi], 1)?
                .flatten_all()?
                .to_dtype(DType::U32)?;
            let s = scales
                .narrow(0, r0 * per_row, rows * per_row)?
                .unsqueeze(1)?;
            let panel = levels
                .index_select(&idx, 0)?
                .reshape((rows * per_row, BLOCK))?
                .broadcast_mul(&s)?
                .reshape((rows, self.cols))?
                .to_dtype(dtype)?;
            panels.push(panel);
            r0 += rows;
        }
        if panels.len() == 1 {
            return Ok(panels.remove(0));
        }
        Tensor::cat(&panels, 0)
    }

    /// Bytes held: codes, int8 scales, their f32 scales and the mean.
    pub fn storage_size_in_bytes(&self) -> usize {
        let (codes, scales, groups) = match &self.storage {
            Storage::Host {
                codes,
                scales_q,
                scales_scale,
            } => (codes.len(), scales_q.len(), scales_scale.len()),
            Storage::Device {
                codes,
                scales_q,
                scales_scale,
                ..
            } => (
                codes.elem_count(),
                scales_q.elem_count(),
                scales_scale.elem_count(),
            ),
        };
        codes + scales + 4 * groups + 4
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// The int8 scales back from their device form (u8 plus 128).
fn unshift(v: Vec<u8>) -> Vec<i8> {
    v.into_iter().map(|q| (i16::from(q) - 128) as i8).collect()
}

/// An NF4 matrix's packed contents, as the cache stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Parts {
    pub rows: usize,
    pub cols: usize,
    /// Two 4-bit codes per byte, low nibble first, row-major.
    pub codes: Vec<u8>,
    /// Block absmax minus `mean`, as int8 times the second-level scale.
    pub scales_q: Vec<i8>,
    /// One per 256 blocks.
    pub scales_scale: Vec<f32>,
    pub mean: f32,
}

impl Nf4Parts {
    /// NF4 codes and double-quantized scales of a 2-D tensor (any dtype, any device).
    pub fn quantize(src: &Tensor) -> Result<Self> {
        let (rows, cols) = src.dims2()?;
        if !Nf4Tensor::fits(cols) {
            candle_core::bail!("nf4 needs a multiple of {BLOCK} inputs, got {cols}");
        }
        // Read in place when it can be (an 8B head is 2 GB in f32: a copy, and a vector per
        // block, doubled the load's peak); each block writes its absmax and codes directly.
        let pack = |data: &[f32]| -> Result<(Vec<f32>, Vec<u8>)> {
            let mut absmax = vec![0f32; data.len() / BLOCK];
            let mut codes = vec![0u8; data.len() / 2];
            codes
                .par_chunks_mut(BLOCK / 2)
                .zip(absmax.par_iter_mut())
                .zip(data.par_chunks(BLOCK))
                .for_each(|((c, a), b)| {
                    let m = b.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let inv = if m > 0.0 { 1.0 / m } else { 0.0 };
                    for (dst, p) in c.iter_mut().zip(b.chunks(2)) {
                        *dst = nearest(p[0] * inv) | (nearest(p[1] * inv) << 4);
                    }
                    *a = m;
                });
            Ok((absmax, codes))
        };
        let (absmax, codes) = match crate::ops::borrow_f32(src, pack)? {
            Some(packed) => packed,
            None => pack(
                &src.to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            )?,
        };
        let mean = absmax.iter().map(|&a| f64::from(a)).sum::<f64>() / absmax.len().max(1) as f64;
        let mean = mean as f32;
        let mut scales_q = Vec::with_capacity(absmax.len());
        let mut scales_scale = Vec::with_capacity(absmax.len().div_ceil(SCALE_BLOCK));
        for group in absmax.chunks(SCALE_BLOCK) {
            let m = group.iter().fold(0f32, |m, a| m.max((a - mean).abs()));
            let s = if m > 0.0 { m / 127.0 } else { 1.0 };
            scales_scale.push(s);
            scales_q.extend(
                group
                    .iter()
                    .map(|a| ((a - mean) / s).round().clamp(-127.0, 127.0) as i8),
            );
        }
        Ok(Nf4Parts {
            rows,
            cols,
            codes,
            scales_q,
            scales_scale,
            mean,
        })
    }
}

/// Bytes an NF4 matrix of `rows` × `cols` holds (see [`Nf4Tensor::storage_size_in_bytes`]).
pub fn bytes(rows: usize, cols: usize) -> u64 {
    let n = rows * cols;
    let blocks = n / BLOCK;
    (n / 2 + blocks + 4 * blocks.div_ceil(SCALE_BLOCK) + 4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(t: Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn the_device_path_gives_the_cpu_loops_bits() {
        // The tensor-op path (what a GPU runs), here on the CPU, in panels of 3 rows and in
        // one; 9 blocks of scales pad to a second-level block, 96 fill 256 unevenly.
        for (rows, cols, panel) in [(3, 192, 1 << 22), (16, 384, 3 * 384), (7, 64, 64)] {
            let t = Tensor::randn(0f32, 0.05, (rows, cols), &Device::Cpu).unwrap();
            let host = Nf4Tensor::quantize(&t, &Device::Cpu).unwrap();
            let ops = Nf4Tensor::from_parts(Nf4Parts::quantize(&t).unwrap(), &Device::Cpu)
                .unwrap()
                .into_device_storage(&Device::Cpu)
                .unwrap();
            assert_eq!(ops.parts().unwrap(), host.parts().unwrap());
            assert!(matches!(ops.storage, Storage::Device { .. }));
            assert_eq!(ops.storage_size_in_bytes(), host.storage_size_in_bytes());
            let Storage::Device {
                codes,
                scales_q,
                scales_scale,
                levels,
            } = &ops.storage
            else {
                unreachable!()
            };
            let got = flat(
                ops.dequantize_by_ops(
                    codes,
                    scales_q,
                    scales_scale,
                    levels,
                    DType::F32,
                    0..rows,
                    panel,
                )
                .unwrap(),
            );
            let want = flat(host.dequantize(DType::F32).unwrap());
            // A panel of rows alone, on both paths, is that slice of the whole.
            let (a, b) = (1.min(rows - 1), rows);
            let slice = &want[a * cols..b * cols];
            assert_eq!(flat(host.dequantize_rows(a..b, DType::F32).unwrap()), slice);
            let part = ops
                .dequantize_by_ops(
                    codes,
                    scales_q,
                    scales_scale,
                    levels,
                    DType::F32,
                    a..b,
                    panel,
                )
                .unwrap();
            assert_eq!(flat(part), slice);
            assert_eq!(got.len(), rows * cols);
            let differ = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differ, 0, "{rows}x{cols}: {differ} weights differ");
            assert!(want.iter().any(|w| *w != 0.0));
        }
    }

    #[test]
    fn levels_round_trip_exactly_and_others_stay_within_the_block_step() {
        // A block holding every level times 2 (absmax 2) comes back exactly (the levels are
        // not symmetric, so negated levels would not); random values stay within half the
        // widest gap between levels of their block's scale.
        let mut v: Vec<f32> = LEVELS.iter().map(|l| l * 2.0).collect();
        v.extend(LEVELS.iter().map(|l| l * 2.0));
        v.extend(LEVELS.iter().rev().map(|l| l * 2.0));
        v.extend(LEVELS.iter().map(|l| l * 2.0));
        let t = Tensor::from_vec(v.clone(), (1, 64), &Device::Cpu).unwrap();
        let q = Nf4Tensor::quantize(&t, &Device::Cpu).unwrap();
        let back = flat(q.dequantize(DType::F32).unwrap());
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let t = Tensor::randn(0f32, 0.02, (8, 512), &Device::Cpu).unwrap();
        let q = Nf4Tensor::quantize(&t, &Device::Cpu).unwrap();
        let d = (q.dequantize(DType::F32).unwrap() - &t)
            .unwrap()
            .abs()
            .unwrap();
        let worst = d.max_all().unwrap().to_scalar::<f32>().unwrap();
        let absmax = t
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(worst <= absmax * 0.17, "{worst} vs absmax {absmax}");
        assert_eq!(q.storage_size_in_bytes() as u64, bytes(8, 512));
        let bits = bytes(4096, 4096) as f64 * 8.0 / (4096.0 * 4096.0);
        assert!(bits < 4.2, "{bits}");
    }
}
