//! LoRA's dropout: which input elements a training forward drops. Each element's draw is a
//! counter-based hash of (seed, index), so a mask costs one parallel pass, is never stored
//! (the hand-written backward draws it again), and is the same on every path: autograd, the
//! hand-written step, a checkpointed layer recomputed.

use super::fastmath::{self, dispatch, Uninit};
use candle_core::{DType, Device, Result, Shape, Tensor};
use rayon::prelude::*;

/// Parallel pieces of a mask, in elements.
const PIECE: usize = 1 << 14;

/// Inverted dropout with probability `p` under one seed: element `i` is kept, and scaled by
/// `1/(1 − p)`, when its 32 drawn bits fall under `(1 − p)·2³²`. Indices are taken modulo
/// 2³² (a projection's input has far fewer elements).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    key: [u32; 2],
    threshold: u32,
    scale: f32,
}

/// SplitMix64's output function: spreads consecutive seeds (one per module and layer) over
/// unrelated keys.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Murmur3's 32-bit finalizer: every input bit reaches every output bit.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

impl Dropout {
    /// Dropout with probability `p` (validated to [0, 1) by the config) under `seed`; `None`
    /// when `p` is 0: nothing is dropped.
    pub fn new(p: f64, seed: u64) -> Option<Self> {
        if p.is_nan() || p <= 0.0 {
            return None;
        }
        let keep = (1.0 - p).max(0.0);
        let s = splitmix64(seed);
        Some(Dropout {
            key: [s as u32, (s >> 32) as u32],
            threshold: (keep * 4_294_967_296.0).round().min(u32::MAX as f64) as u32,
            scale: (1.0 / keep) as f32,
        })
    }

    /// What element `i` is multiplied by: `1/(1 − p)` or 0.
    #[inline(always)]
    pub fn factor(&self, i: u32) -> f32 {
        let bits = fmix32(fmix32(i ^ self.key[0]).wrapping_add(self.key[1]));
        if bits < self.threshold {
            self.scale
        } else {
            0.0
        }
    }

    /// The mask itself, shaped `shape`: what autograd's `x * mask` multiplies by.
    pub fn mask(&self, shape: &Shape, device: &Device, dtype: DType) -> Result<Tensor> {
        let n = shape.elem_count();
        // SAFETY: each piece of the output is written whole by `dropout_mask_piece`.
        let v = unsafe {
            fastmath::written(n, |y| {
                y.par_chunks_mut(PIECE)
                    .enumerate()
                    .for_each(|(p, y)| dropout_mask_piece(self, (p * PIECE) as u32, y))
            })
        };
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    /// `x ⊙ mask` with no gradient recorded (the hand-written step's forward): one parallel
    /// pass for f32 on the CPU, the same bits as the multiply by [`Dropout::mask`].
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let host = super::on_host(&[x], |s| {
            let x = s[0];
            // SAFETY: each piece of the output pairs with an equally long piece of `x`, and
            // the kernel writes one value per element.
            unsafe {
                fastmath::written(x.len(), |y| {
                    x.par_chunks(PIECE)
                        .zip(y.par_chunks_mut(PIECE))
                        .enumerate()
                        .for_each(|(p, (x, y))| dropout_piece(self, (p * PIECE) as u32, x, y))
                })
            }
        })?;
        match host {
            Some(v) => Tensor::from_vec(v, x.shape(), x.device()),
            None => x.detach() * self.mask(x.shape(), x.device(), x.dtype())?,
        }
    }

    /// `base + (du·a) ⊙ mask`: LoRA's input gradient through the dropped-out input joined to
    /// the base projection's, for `base` [.., in], `du` [n, r] and `a` [r, in]. On the CPU in
    /// f32 one pass per row, the rank-r product summed in registers and the mask drawn again.
    pub fn add_lowrank(&self, base: &Tensor, du: &Tensor, a: &Tensor) -> Result<Tensor> {
        let (r, inp) = a.dims2()?;
        let rows = base.elem_count() / inp.max(1);
        if du.dims2()? != (rows, r) || rows * inp != base.elem_count() {
            candle_core::bail!(
                "dropout's low-rank gradient: base {:?}, du {:?} and a {:?} do not fit",
                base.dims(),
                du.dims(),
                a.dims()
            );
        }
        let host = super::on_host(&[base, du, a], |s| {
            let (b, du, a) = (s[0], s[1], s[2]);
            // SAFETY: each output row pairs with a row of `base` and `du`, and the kernel
            // writes the whole row.
            unsafe {
                fastmath::written(b.len(), |out| {
                    b.par_chunks(inp)
                        .zip(du.par_chunks(r))
                        .zip(out.par_chunks_mut(inp))
                        .enumerate()
                        .for_each(|(row, ((b, du), out))| {
                            dropped_lowrank_row(self, (row * inp) as u32, b, du, a, out)
                        })
                })
            }
        })?;
        match host {
            Some(v) => Tensor::from_vec(v, base.shape(), base.device()),
            None => {
                let dxd = du.matmul(a)?.reshape(base.shape())?;
                let mask = self.mask(base.shape(), base.device(), DType::F32)?;
                base + (dxd * mask)?.to_dtype(base.dtype())?
            }
        }
    }
}

// LoRA dropout's `x·m` for the elements numbered from `start` (`m`: [`Dropout::factor`]).
dispatch!(dropout_piece, (d: &Dropout, start: u32, x: &[f32], y: &mut [Uninit]) -> (), {
    for (j, (&x, y)) in x.iter().zip(y.iter_mut()).enumerate() {
        y.write(x * d.factor(start.wrapping_add(j as u32)));
    }
});

// LoRA dropout's mask for the elements numbered from `start`.
dispatch!(dropout_mask_piece, (d: &Dropout, start: u32, y: &mut [Uninit]) -> (), {
    for (j, y) in y.iter_mut().enumerate() {
        y.write(d.factor(start.wrapping_add(j as u32)));
    }
});

// One row of `base + (du·a) ⊙ m` for `du` a row of rank r and `a` [r, base.len()], the
// mask's elements numbered from `start`: the rank-r sums kept in a block of registers.
dispatch!(dropped_lowrank_row, (d: &Dropout, start: u32, base: &[f32], du: &[f32], a: &[f32], out: &mut [Uninit]) -> (), {
    const BLOCK: usize = 64;
    let k = base.len();
    let mut acc = [0f32; BLOCK];
    let mut j0 = 0;
    while j0 < k {
        let n = BLOCK.min(k - j0);
        let acc = &mut acc[..n];
        acc.fill(0.0);
        for (r, &c) in du.iter().enumerate() {
            for (s, &v) in acc.iter_mut().zip(&a[r * k + j0..][..n]) {
                *s = c.mul_add(v, *s);
            }
        }
        for (j, ((&b, &s), o)) in base[j0..j0 + n].iter().zip(acc.iter()).zip(out[j0..j0 + n].iter_mut()).enumerate() {
            o.write(b + s * d.factor(start.wrapping_add((j0 + j) as u32)));
        }
        j0 += n;
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{max_abs, tensor as input};

    #[test]
    fn keeps_the_expected_share_and_the_mean() {
        for (p, seed) in [(0.05, 1u64), (0.1, 7), (0.5, 42)] {
            let d = Dropout::new(p, seed).unwrap();
            let n = 1 << 20;
            let m = d.mask(&Shape::from(n), &Device::Cpu, DType::F32).unwrap();
            let v = m.to_vec1::<f32>().unwrap();
            let kept = v.iter().filter(|&&f| f > 0.0).count() as f64 / n as f64;
            // Binomial: the standard deviation of the share is √(p(1−p)/n) < 5e-4.
            assert!((kept - (1.0 - p)).abs() < 3e-3, "p {p}: kept {kept}");
            assert!(v.iter().all(|&f| f == 0.0 || f == (1.0 / (1.0 - p)) as f32));
            let mean = v.iter().map(|&f| f as f64).sum::<f64>() / n as f64;
            assert!((mean - 1.0).abs() < 1e-2, "p {p}: mean {mean}");
        }
        assert_eq!(Dropout::new(0.0, 3), None);
    }

    #[test]
    fn neighbouring_seeds_and_elements_draw_independently() {
        // Modules of one layer get consecutive seeds: their masks must not agree more often
        // than independent draws would ((1−p)² + p² for both kept or both dropped).
        let n = 1 << 18;
        let shape = Shape::from(n);
        let (a, b) = (
            Dropout::new(0.5, 100).unwrap(),
            Dropout::new(0.5, 101).unwrap(),
        );
        let ma = a
            .mask(&shape, &Device::Cpu, DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mb = b
            .mask(&shape, &Device::Cpu, DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let agree = ma.iter().zip(&mb).filter(|(x, y)| x == y).count() as f64 / n as f64;
        assert!(
            (agree - 0.5).abs() < 6e-3,
            "seeds 100, 101 agree on {agree}"
        );
        // Neighbouring elements of one mask: no pattern along a row.
        let same_next = ma.windows(2).filter(|w| w[0] == w[1]).count() as f64 / (n - 1) as f64;
        assert!(
            (same_next - 0.5).abs() < 6e-3,
            "neighbours agree on {same_next}"
        );
        // And the mask is a pure function of the seed.
        let again = a
            .mask(&shape, &Device::Cpu, DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(ma, again);
    }

    #[test]
    fn fused_passes_equal_the_tensor_ops() {
        let d = Dropout::new(0.1, 9).unwrap();
        let (rows, inp, r) = (37, 203, 8);
        let x = input(&[rows, inp], 1);
        let mask = d.mask(x.shape(), &Device::Cpu, DType::F32).unwrap();
        let plain = (&x * &mask).unwrap();
        let fused = d.apply(&x).unwrap();
        assert_eq!(
            fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "x ⊙ mask bit for bit"
        );
        let base = input(&[rows, inp], 2);
        let du = input(&[rows, r], 3);
        let a = input(&[r, inp], 4);
        let want = (&base + (du.matmul(&a).unwrap() * &mask).unwrap()).unwrap();
        let got = d.add_lowrank(&base, &du, &a).unwrap();
        // Eight products of values in [-1, 1] in another order, scaled by 1/0.9.
        assert!(max_abs(&(got - want).unwrap()) < 1e-5);
        // A misfit is refused with its shapes.
        let err = d
            .add_lowrank(&base, &input(&[rows, r + 1], 5), &a)
            .unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}
