//! What every layer of one batch shares: rotary tables and attention masks, full attention's
//! and the sliding-window layers'.

use super::block::Block;
use super::{Batch, Model};
use crate::model::config::Rope;
use candle_core::{Result, Tensor};

/// RoPE tables and the attention mask of one attention kind.
#[derive(Debug, Clone)]
pub struct Tables {
    pub cos: Tensor,
    pub sin: Tensor,
    /// `-sin`: the backward rotates by the opposite angle.
    pub nsin: Tensor,
    pub mask: Tensor,
}

/// Per-batch tables every layer shares: full attention's, and the sliding-window layers'
/// when the model has any.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub global: Tables,
    pub local: Option<Tables>,
}

impl Prepared {
    pub fn for_block(&self, b: &Block) -> &Tables {
        match (&self.local, b.sliding) {
            (Some(l), true) => l,
            _ => &self.global,
        }
    }
}

impl Model {
    /// cos and sin [b, t, rotary_dim / 2] of `rope` at `positions` (LongRoPE's factors and
    /// scale chosen by the largest position, as transformers does).
    fn rope_tables(&self, positions: &[Vec<u32>], rope: &Rope) -> Result<(Tensor, Tensor)> {
        let max = positions.iter().flatten().copied().max().unwrap_or(0) as usize;
        let (freqs, scale) = self
            .config
            .rope_frequencies(rope, self.config.wants_long_rope(max));
        let freqs: Vec<f32> = freqs.into_iter().map(|f| f as f32).collect();
        let half = freqs.len();
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let mut angles = Vec::with_capacity(b * t * half);
        for row in positions {
            for &p in row {
                angles.extend(freqs.iter().map(|f| p as f32 * f));
            }
        }
        let a = Tensor::from_vec(angles, (b, t, half), &self.device)?;
        let (cos, sin) = if scale == 1.0 {
            (a.cos()?, a.sin()?)
        } else {
            ((a.cos()? * scale)?, (a.sin()? * scale)?)
        };
        Ok((cos.to_dtype(self.dtype)?, sin.to_dtype(self.dtype)?))
    }

    /// Additive mask [b, 1, t, t]: causal, within one packed example, not onto padding, and
    /// within `window` tokens (a query sees itself and the `window - 1` before it).
    fn mask(
        &self,
        positions: &[Vec<u32>],
        attention: Option<&Vec<Vec<u8>>>,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let mut m = vec![0f32; b * t * t];
        for r in 0..b {
            let mut seg = vec![0u32; t];
            for i in 1..t {
                seg[i] = seg[i - 1] + u32::from(positions[r][i] == 0);
            }
            for i in 0..t {
                for j in 0..t {
                    let visible = j <= i
                        && seg[i] == seg[j]
                        && attention.is_none_or(|a| a[r][j] != 0)
                        && window.is_none_or(|w| i - j < w);
                    if !visible && i != j {
                        m[(r * t + i) * t + j] = -1e9;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, t, t), &self.device)?.to_dtype(self.dtype)
    }

    pub(super) fn tables(
        &self,
        positions: &[Vec<u32>],
        rope: &Rope,
        mask: Tensor,
    ) -> Result<Tables> {
        let (cos, sin) = self.rope_tables(positions, rope)?;
        Ok(Tables {
            nsin: sin.neg()?,
            cos,
            sin,
            mask,
        })
    }

    /// Whether any layer attends within a sliding window.
    pub(super) fn has_sliding(&self) -> bool {
        self.config.sliding_window.is_some() && self.layers.iter().any(|b| b.sliding)
    }

    /// Rotary tables and attention masks for one batch, shared by every layer.
    pub fn prepare(&self, b: usize, t: usize, batch: &Batch) -> Result<Prepared> {
        let positions = batch
            .position_ids
            .clone()
            .unwrap_or_else(|| vec![(0..t as u32).collect(); b]);
        let attention = batch.attention_mask.as_ref();
        let c = &self.config;
        let global = self.tables(&positions, &c.rope, self.mask(&positions, attention, None)?)?;
        let local = if self.has_sliding() {
            let mask = self.mask(&positions, attention, c.sliding_window)?;
            Some(self.tables(&positions, c.rope_of(true), mask)?)
        } else {
            None
        };
        Ok(Prepared { global, local })
    }
}
