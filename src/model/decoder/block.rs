//! One decoder layer: its projections, fused or not, and its optional norms.

use super::linear::Linear;
use crate::model::family::Modules;
use candle_core::{Result, Tensor, D};

/// One decoder layer. The projections are listed as the family names them: Llama's seven
/// (`q, k, v, o, gate, up, down`), or Phi-3's four with `qkv_proj` and `gate_up_proj` fused,
/// whose outputs are split into q, k, v and gate, up.
#[derive(Debug, Clone)]
pub struct Block {
    pub input_norm: Tensor,
    /// `[q, k, v]`, or one fused `[qkv]`.
    pub attn_in: Vec<Linear>,
    pub o: Linear,
    /// The norm before the MLP (Llama's `post_attention_layernorm`, Gemma's
    /// `pre_feedforward_layernorm`).
    pub post_norm: Tensor,
    /// `[gate, up]`, or one fused `[gate_up]`.
    pub mlp_in: Vec<Linear>,
    pub down: Linear,
    /// Per-head norms of q and k before RoPE (Qwen3, Gemma 3).
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    /// Gemma's norm of the attention output before the residual add.
    pub attn_out_norm: Option<Tensor>,
    /// Gemma's norm of the MLP output before the residual add.
    pub mlp_out_norm: Option<Tensor>,
    /// Attends within the config's sliding window (and Gemma 3's local RoPE).
    pub sliding: bool,
    /// (group, module) of each projection, in `linears` order.
    pub modules: Modules,
}

impl Block {
    /// The projections with their HF (group, module) names; a module's index here seeds its
    /// dropout mask.
    pub fn linears(&self) -> Vec<(&'static str, &'static str, &Linear)> {
        let all = self
            .attn_in
            .iter()
            .chain([&self.o])
            .chain(self.mlp_in.iter())
            .chain([&self.down]);
        self.modules
            .iter()
            .zip(all)
            .map(|((g, m), l)| (*g, *m, l))
            .collect()
    }

    pub fn linears_mut(&mut self) -> Vec<(&'static str, &'static str, &mut Linear)> {
        let all = self
            .attn_in
            .iter_mut()
            .chain([&mut self.o])
            .chain(self.mlp_in.iter_mut())
            .chain([&mut self.down]);
        self.modules
            .iter()
            .zip(all)
            .map(|((g, m), l)| (*g, *m, l))
            .collect()
    }

    /// A layer from its projections in `modules` order (fused or not) and its norms:
    /// `[q_norm, k_norm, attn_out_norm, mlp_out_norm]`.
    pub fn assemble(
        projections: Vec<Linear>,
        modules: Modules,
        input_norm: Tensor,
        post_norm: Tensor,
        [q_norm, k_norm, attn_out_norm, mlp_out_norm]: [Option<Tensor>; 4],
        sliding: bool,
    ) -> Self {
        let fused = modules.len() == 4;
        let mut it = projections.into_iter();
        let mut take = |n: usize| -> Vec<Linear> { it.by_ref().take(n).collect() };
        let attn_in = take(if fused { 1 } else { 3 });
        let o = take(1).remove(0);
        let mlp_in = take(if fused { 1 } else { 2 });
        let down = take(1).remove(0);
        Block {
            input_norm,
            attn_in,
            o,
            post_norm,
            mlp_in,
            down,
            q_norm,
            k_norm,
            attn_out_norm,
            mlp_out_norm,
            sliding,
            modules,
        }
    }

    /// Dropout-seed index of `o_proj`, the first MLP projection and `down_proj`.
    pub fn module_index(&self) -> (u64, u64, u64) {
        let a = self.attn_in.len() as u64;
        (a, a + 1, a + 1 + self.mlp_in.len() as u64)
    }

    /// The norms every layer has and the optional ones, for byte counts.
    pub fn norms(&self) -> impl Iterator<Item = &Tensor> {
        [&self.input_norm, &self.post_norm]
            .into_iter()
            .chain(self.q_norm.iter())
            .chain(self.k_norm.iter())
            .chain(self.attn_out_norm.iter())
            .chain(self.mlp_out_norm.iter())
    }
}

/// Splits fused outputs: one tensor whose last dimension holds `widths` side by side, or
/// already one tensor per width.
pub fn split_last(outs: Vec<Tensor>, widths: &[usize]) -> Result<Vec<Tensor>> {
    if outs.len() == widths.len() {
        return Ok(outs);
    }
    let fused = &outs[0];
    let mut start = 0;
    let mut parts = Vec::with_capacity(widths.len());
    for &w in widths {
        parts.push(fused.narrow(D::Minus1, start, w)?);
        start += w;
    }
    Ok(parts)
}
