//! The frozen weights a projection can hold (dense, GGUF-quantized, NF4) and the projection
//! itself: its bias, its LoRA pair and GGUF's q/k row order.

use crate::lora::LoraPair;
use crate::model::nf4::Nf4Tensor;
use crate::model::stored::Stored;
use crate::ops;
use crate::ops::panels::FrozenPanels;
use crate::ops::qpacked::Packed;
use candle_core::quantized::QTensor;
use candle_core::{DType, Result, Tensor, D};
use std::sync::Arc;

/// A frozen weight [out, in]: dense, or quantized (a GGUF base, kept quantized in memory).
#[derive(Debug, Clone)]
pub enum Weight {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
    /// NormalFloat4 (QLoRA's type), dequantized on its own device for each use.
    Nf4(Arc<Nf4Tensor>),
    /// A GGUF weight repacked for generation ([`ops::qpacked`]): the same bytes, 16 rows
    /// interleaved, so a decode product runs with the rows in the vector lanes.
    Packed(Arc<Packed>),
    /// A dense f32 weight packed twice for the CPU training step ([`ops::panels`]): the
    /// forward's and the backward's products multiply it without repacking it each call.
    Panels(Arc<FrozenPanels>),
}

impl From<Stored> for Weight {
    fn from(s: Stored) -> Self {
        match s {
            Stored::Ggml(q) => Weight::Quantized(q),
            Stored::Nf4(q) => Weight::Nf4(q),
        }
    }
}

impl Weight {
    /// (out, in)
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Weight::Dense(t) => t.dims2(),
            Weight::Quantized(q) => q.shape().dims2(),
            Weight::Nf4(q) => Ok((q.rows, q.cols)),
            Weight::Packed(p) => Ok(p.dims()),
            Weight::Panels(p) => Ok(p.dims()),
        }
    }

    /// The weight as a dense matrix in `dtype`: the tensor itself, or a quantized weight
    /// dequantized for this use only (the model keeps it quantized), so the hand-written
    /// backward works on any base without a full-precision copy of the model.
    pub fn matrix(&self, dtype: DType) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => t.to_dtype(dtype),
            Weight::Quantized(q) => ops::qmatmul::dense(q, dtype),
            Weight::Nf4(q) => q.dequantize(dtype),
            Weight::Packed(p) => p.dequantize(dtype),
            Weight::Panels(p) => p.dense()?.to_dtype(dtype),
        }
    }

    /// Rows `rows` of the weight as a dense matrix in `dtype`: a panel of a quantized weight
    /// is dequantized alone (on the CPU), so a large quantized matrix (an 8B model's head:
    /// 2 GB in f32) can be used a panel at a time. Elsewhere the whole matrix is dequantized
    /// and narrowed.
    pub fn rows_matrix(&self, rows: std::ops::Range<usize>, dtype: DType) -> Result<Tensor> {
        let len = rows.end - rows.start;
        match self {
            Weight::Dense(t) => t.narrow(0, rows.start, len)?.to_dtype(dtype),
            Weight::Quantized(q) if q.device().is_cpu() => {
                let ids: Vec<u32> = (rows.start as u32..rows.end as u32).collect();
                if let Some(m) = ops::qmatmul::dequantize_rows(q, &ids)? {
                    return m.to_dtype(dtype);
                }
                let (_, k) = q.shape().dims2()?;
                let t = q.dtype();
                let row_bytes = k / t.block_size() * t.type_size();
                let data = q.data()?;
                let panel = candle_core::quantized::ggml_file::qtensor_from_ggml(
                    t,
                    &data[rows.start * row_bytes..rows.end * row_bytes],
                    vec![len, k],
                    &q.device(),
                )?;
                panel.dequantize(&q.device())?.to_dtype(dtype)
            }
            Weight::Quantized(_) => self.matrix(dtype)?.narrow(0, rows.start, len),
            Weight::Nf4(q) => q.dequantize_rows(rows, dtype),
            Weight::Packed(p) => p.dequantize_rows(rows)?.to_dtype(dtype),
            Weight::Panels(p) => p
                .rows(&rows.collect::<Vec<_>>(), &candle_core::Device::Cpu)?
                .to_dtype(dtype),
        }
    }

    /// Rows `ids` as a dense `[ids.len(), in]` matrix in `dtype`: an embedding lookup. A
    /// quantized table dequantizes only the rows asked for, so a GGUF's embedding needs no
    /// dense copy (Qwen3-0.6B's: 622 MB in f32).
    pub fn lookup(&self, ids: &[u32], dtype: DType) -> Result<Tensor> {
        let dense = |t: &Tensor| {
            let idx = Tensor::from_slice(ids, ids.len(), t.device())?;
            t.index_select(&idx, 0)?.to_dtype(dtype)
        };
        match self {
            Weight::Dense(t) => dense(t),
            Weight::Quantized(q) if q.device().is_cpu() => {
                match ops::qmatmul::dequantize_rows(q, ids)? {
                    Some(m) => m.to_dtype(dtype),
                    None => dense(&self.matrix(dtype)?),
                }
            }
            Weight::Packed(p) => p.dequantize_ids(ids)?.to_dtype(dtype),
            Weight::Panels(p) => {
                let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
                p.rows(&ids, &candle_core::Device::Cpu)?.to_dtype(dtype)
            }
            Weight::Quantized(_) | Weight::Nf4(_) => dense(&self.matrix(dtype)?),
        }
    }

    /// Whether `self` and `other` are one stored matrix (a tied embedding and head).
    pub fn same(&self, other: &Weight) -> bool {
        match (self, other) {
            (Weight::Dense(a), Weight::Dense(b)) => a.id() == b.id(),
            (Weight::Quantized(a), Weight::Quantized(b)) => Arc::ptr_eq(a, b),
            (Weight::Nf4(a), Weight::Nf4(b)) => Arc::ptr_eq(a, b),
            (Weight::Packed(a), Weight::Packed(b)) => Arc::ptr_eq(a, b),
            (Weight::Panels(a), Weight::Panels(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// `x · Wᵀ` with a gradient for `x` only.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Weight::Dense(w) => ops::frozen_linear(x, w),
            Weight::Quantized(q) => ops::quantized_linear(x, q),
            Weight::Nf4(q) => ops::frozen_linear(x, &q.dequantize(x.dtype())?),
            Weight::Packed(p) => ops::packed_linear(x, p),
            Weight::Panels(p) => ops::panel_linear(x, p),
        }
    }
}

/// The inverse of an index map: `inv[perm[j]] = j`, so `y[.., perm]` indexed by `inv` is `y`.
pub fn inverse_perm(perm: &Tensor) -> Result<Tensor> {
    let p = perm.to_vec1::<u32>()?;
    let mut inv = vec![0u32; p.len()];
    for (j, &k) in p.iter().enumerate() {
        inv[k as usize] = j as u32;
    }
    Tensor::new(inv, perm.device())
}

/// A frozen projection with an optional bias, an optional LoRA pair, and (for GGUF q/k
/// projections) the row order that restores the Hugging Face layout.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraPair>,
    /// Output index map applied to the base product: `y_hf = y[.., perm]`.
    pub out_perm: Option<Tensor>,
}

/// Per-forward settings.
#[derive(Clone, Copy)]
pub(super) struct Ctx {
    pub lora_on: bool,
    pub dropout_seed: Option<u64>,
    /// The layer being computed; dropout masks are a pure function of (seed, layer, module)
    /// so a layer recomputed under activation checkpointing draws the same mask.
    pub layer: usize,
}

impl Linear {
    pub(super) fn forward(&self, x: &Tensor, ctx: &Ctx, module: u64) -> Result<Tensor> {
        let y = self.weight.apply(x)?;
        self.finish(y, x, ctx, module)
    }

    /// The base product `y` made into the projection's output: GGUF's row order, the bias,
    /// the LoRA delta.
    fn finish(&self, mut y: Tensor, x: &Tensor, ctx: &Ctx, module: u64) -> Result<Tensor> {
        if let Some(p) = &self.out_perm {
            y = y.index_select(p, D::Minus1)?;
        }
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let (Some(l), true) = (&self.lora, ctx.lora_on) {
            let seed = ctx
                .dropout_seed
                .map(|s| crate::lora::module_seed(s, ctx.layer, module));
            y = (y + l.delta(x, seed)?)?;
        }
        Ok(y)
    }

    /// The projections of one input (`q, k, v` or `gate, up`) for inference: where every
    /// base has a block kernel their products share one parallel pass, so a decode step
    /// hands the pool one task set instead of one per projection. No gradient is recorded.
    pub(super) fn forward_group(
        lins: &[Linear],
        x: &Tensor,
        ctx: &Ctx,
        first_module: u64,
    ) -> Result<Vec<Tensor>> {
        let quantized: Option<Vec<&QTensor>> = lins
            .iter()
            .map(|l| match &l.weight {
                Weight::Quantized(q) => Some(q.as_ref()),
                _ => None,
            })
            .collect();
        let packed: Option<Vec<&Packed>> = lins
            .iter()
            .map(|l| match &l.weight {
                Weight::Packed(p) => Some(p.as_ref()),
                _ => None,
            })
            .collect();
        let bases = match (quantized, packed) {
            (Some(qs), _) if lins.len() > 1 => ops::qmatmul::matmul_group(&x.detach(), &qs)?,
            (_, Some(ps)) if lins.len() > 1 && x.dtype() == DType::F32 => {
                Some(ops::qpacked::matmul_group(&x.detach(), &ps)?)
            }
            _ => None,
        };
        match bases {
            Some(ys) => lins
                .iter()
                .zip(ys)
                .enumerate()
                .map(|(j, (l, y))| l.finish(y, x, ctx, first_module + j as u64))
                .collect(),
            None => lins
                .iter()
                .enumerate()
                .map(|(j, l)| l.forward(x, ctx, first_module + j as u64))
                .collect(),
        }
    }
}
