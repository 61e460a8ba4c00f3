//! NormalFloat4 (the QLoRA paper's data type, as bitsandbytes stores it): each block of 64
//! weights is scaled by its absolute maximum and every weight becomes the nearest of 16
//! levels placed at the quantiles of a standard normal. The block scales are quantized
//! again ("double quantization"): their mean is subtracted and the rest stored as int8 with
//! one f32 scale per 256 blocks, so a weight costs 4 + 8/64 + 32/16384 ≈ 4.13 bits.
//! Dequantization runs on the CPU (in parallel over rows); on a GPU the dense matrix is then
//! copied over for each use (there is no CUDA kernel yet).

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
    /// Two 4-bit codes per byte, low nibble first, row-major.
    codes: Vec<u8>,
    /// Block absmax minus `mean`, as int8 times the second-level scale.
    scales_q: Vec<i8>,
    scales_scale: Vec<f32>,
    mean: f32,
    device: Device,
}

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

    /// Quantizes a 2-D tensor (any dtype, any device) for use on `device`.
    pub fn quantize(src: &Tensor, device: &Device) -> Result<Self> {
        let (rows, cols) = src.dims2()?;
        if !Self::fits(cols) {
            candle_core::bail!("nf4 needs a multiple of {BLOCK} inputs, got {cols}");
        }
        let data = src
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let blocks: Vec<(f32, Vec<u8>)> = data
            .par_chunks(BLOCK)
            .map(|b| {
                let absmax = b.iter().fold(0f32, |m, x| m.max(x.abs()));
                let inv = if absmax > 0.0 { 1.0 / absmax } else { 0.0 };
                let codes = b
                    .chunks(2)
                    .map(|p| nearest(p[0] * inv) | (nearest(p[1] * inv) << 4))
                    .collect();
                (absmax, codes)
            })
            .collect();
        let absmax: Vec<f32> = blocks.iter().map(|b| b.0).collect();
        let codes: Vec<u8> = blocks.into_iter().flat_map(|b| b.1).collect();
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
        Ok(Nf4Tensor {
            rows,
            cols,
            codes,
            scales_q,
            scales_scale,
            mean,
            device: device.clone(),
        })
    }

    /// The block scale of block `b`, as dequantization uses it.
    fn scale(&self, b: usize) -> f32 {
        self.mean + f32::from(self.scales_q[b]) * self.scales_scale[b / SCALE_BLOCK]
    }

    /// The dense matrix in `dtype` on the tensor's device.
    pub fn dequantize(&self, dtype: DType) -> Result<Tensor> {
        let per_row = self.cols / BLOCK;
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(r, row)| {
                for (k, block) in row.chunks_mut(BLOCK).enumerate() {
                    let b = r * per_row + k;
                    let s = self.scale(b);
                    let codes = &self.codes[b * BLOCK / 2..(b + 1) * BLOCK / 2];
                    for (pair, &c) in block.chunks_mut(2).zip(codes) {
                        pair[0] = LEVELS[usize::from(c & 15)] * s;
                        pair[1] = LEVELS[usize::from(c >> 4)] * s;
                    }
                }
            });
        Tensor::from_vec(out, (self.rows, self.cols), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(&self.device)
    }

    /// Bytes held: codes, int8 scales, their f32 scales and the mean.
    pub fn storage_size_in_bytes(&self) -> usize {
        self.codes.len() + self.scales_q.len() + 4 * self.scales_scale.len() + 4
    }

    pub fn device(&self) -> &Device {
        &self.device
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
        let back = q
            .dequantize(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
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
