//! The frozen base as stored: bytes resident and once dense, quantized or not, a dense copy
//! for generation, and every tensor under its Hugging Face name for export.

use super::linear::Weight;
use super::Model;
use crate::ops;
use candle_core::{DType, Result, Tensor};

impl Model {
    /// Whether any frozen matrix is stored quantized (a GGUF base, or QLoRA).
    pub fn is_quantized(&self) -> bool {
        let q = |w: &Weight| !matches!(w, Weight::Dense(_) | Weight::Panels(_));
        q(&self.lm_head)
            || self
                .layers
                .iter()
                .any(|b| b.linears().iter().any(|(_, _, l)| q(&l.weight)))
    }

    /// Bytes the frozen base occupies: quantized blocks as stored, dense tensors by dtype
    /// (a tied head is counted once).
    pub fn resident_bytes(&self) -> u64 {
        let dense = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        let weight = |w: &Weight| match w {
            Weight::Dense(t) => dense(t),
            Weight::Quantized(q) => q.storage_size_in_bytes() as u64,
            Weight::Nf4(q) => q.storage_size_in_bytes() as u64,
            Weight::Packed(p) => p.storage_bytes() as u64,
            Weight::Panels(p) => p.storage_bytes() as u64,
        };
        let mut total = weight(&self.embed) + dense(&self.norm);
        if !self.lm_head.same(&self.embed) {
            total += weight(&self.lm_head);
        }
        for b in &self.layers {
            total += b.norms().map(dense).sum::<u64>();
            for (_, _, l) in b.linears() {
                total += weight(&l.weight) + l.bias.as_ref().map_or(0, dense);
            }
        }
        total
    }

    /// Bytes the quantized weights would take once dequantized to the compute dtype.
    pub fn dense_bytes(&self) -> usize {
        let mut n = 0;
        for b in &self.layers {
            for (_, _, l) in b.linears() {
                if let (Weight::Quantized(_) | Weight::Nf4(_) | Weight::Packed(_), Ok((o, i))) =
                    (&l.weight, l.weight.dims())
                {
                    n += o * i * self.dtype.size_in_bytes();
                }
            }
        }
        n
    }

    /// For generation: keeps a quantized base whose formats all have a block kernel
    /// ([`ops::qmatmul`]); otherwise dequantizes it once when its dense copy stays under
    /// 2 GiB (decode is memory-bound and per-call dequantization dominates it), else keeps
    /// it quantized. `chat` and `serve` both load this way.
    pub fn prepare_for_generation(&mut self) -> Result<()> {
        const DENSIFY_BELOW: usize = 2 << 30;
        // Where every quantized weight has a block kernel, the blocks are read as they are:
        // fewer bytes per token than a dense copy, and no dequantization.
        let all_kernel = self
            .layers
            .iter()
            .flat_map(|b| b.linears().into_iter().map(|(_, _, l)| &l.weight))
            .chain(std::iter::once(&self.lm_head))
            .all(|w| match w {
                Weight::Dense(_) => true,
                Weight::Quantized(q) => ops::qmatmul::supports(q),
                Weight::Nf4(_) => false,
                Weight::Packed(_) | Weight::Panels(_) => true,
            });
        if !all_kernel && self.dense_bytes() < DENSIFY_BELOW {
            self.densify()?;
        }
        self.pack_for_decode()
    }

    /// Replaces each GGUF weight that has an interleaved kernel on this CPU by its packed
    /// form ([`ops::qpacked`]; the same bytes reordered, so memory does not grow, but for Q6_K's
    /// and Q5_0's values stored as bytes and Q4_K's scales unpacked), the tied
    /// head's decode copy included.
    fn pack_for_decode(&mut self) -> Result<()> {
        // A tied embedding is looked up from the packed head: one copy of the table.
        self.replace_weights(|w| match w {
            Weight::Quantized(q) => {
                Ok(ops::qpacked::Packed::new(q)?.map(|p| Weight::Packed(std::sync::Arc::new(p))))
            }
            _ => Ok(None),
        })
    }

    /// Replaces each projection's weight and the head by `f`'s answer where it gives one. A
    /// tied embedding follows the head, so the table stays one matrix.
    fn replace_weights(
        &mut self,
        mut f: impl FnMut(&Weight) -> Result<Option<Weight>>,
    ) -> Result<()> {
        for b in &mut self.layers {
            for (_, _, l) in b.linears_mut() {
                if let Some(w) = f(&l.weight)? {
                    l.weight = w;
                }
            }
        }
        let tied = self.lm_head.same(&self.embed);
        if let Some(w) = f(&self.lm_head)? {
            self.lm_head = w;
            if tied {
                self.embed = self.lm_head.clone();
            }
        }
        Ok(())
    }

    /// For training on the CPU. An f32 dense base is packed into microkernel panels
    /// ([`ops::panels`]) for both of the step's products when the CPU has the kernels and
    /// the second copy fits (at most half the memory available now): gemm then never
    /// repacks a weight, which was ~9% of SmolLM2's step, and small products such as
    /// `k`/`v` run at full speed. A tied embedding is looked up from the packed head.
    /// Otherwise, a dense frozen projection with more inputs than outputs (the MLP's down
    /// projection) is kept as a view of its transpose (the same `[out, in]` tensor, `Wᵀ` in
    /// memory), so that of the step's two products with it, the forward's `x·Wᵀ` (summing over
    /// `in`) reads a row-major operand and the backward's `dy·W` (over the shorter `out`) the
    /// transposed one. gemm packs a transposed operand slowly when the sum is long: SmolLM2's
    /// down projection forward took 4.9 ms through the view against 2.4 ms row-major
    /// (256 × 1,536 × 576), while the backward's view costs ~4% at 576. Same memory, same
    /// values up to gemm's order of summation.
    pub fn prefer_training_layout(&mut self) -> Result<()> {
        if !self.device.is_cpu() {
            return Ok(());
        }
        let available = crate::telemetry::system_memory().map_or(0, |(_, a)| a);
        if self.pack_for_training(available)? {
            return Ok(());
        }
        for b in &mut self.layers {
            for (_, _, l) in b.linears_mut() {
                if let Weight::Dense(t) = &l.weight {
                    let (out, inp) = t.dims2()?;
                    if inp > out && t.is_contiguous() {
                        l.weight = Weight::Dense(t.t()?.contiguous()?.t()?);
                    }
                }
            }
        }
        Ok(())
    }

    /// Packs every dense f32 projection and a dense head into [`ops::panels::FrozenPanels`]
    /// when the panels' extra copy takes at most half of `available` bytes; whether it did.
    pub fn pack_for_training(&mut self, available: u64) -> Result<bool> {
        let packable =
            |w: &Weight| matches!(w, Weight::Dense(t) if t.dtype() == DType::F32 && t.rank() == 2);
        if self.dtype != DType::F32 || ops::panels::Isa::detect().is_none() {
            return Ok(false);
        }
        let bytes = |w: &Weight| match w {
            Weight::Dense(t) if packable(w) => (t.elem_count() * 4) as u64,
            _ => 0,
        };
        let extra: u64 = self
            .layers
            .iter()
            .flat_map(|b| b.linears().into_iter().map(|(_, _, l)| bytes(&l.weight)))
            .sum::<u64>()
            + bytes(&self.lm_head);
        if extra == 0 || extra.saturating_mul(2) > available {
            return Ok(false);
        }
        self.replace_weights(|w| match w {
            Weight::Dense(t) if packable(w) => {
                Ok(ops::panels::FrozenPanels::new(t)?
                    .map(|p| Weight::Panels(std::sync::Arc::new(p))))
            }
            _ => Ok(None),
        })?;
        Ok(true)
    }

    /// Dequantizes every quantized weight once (for inference when memory allows): generation
    /// then skips the per-call dequantization. Training keeps the quantized base.
    pub fn densify(&mut self) -> Result<()> {
        let dtype = self.dtype;
        self.replace_weights(|w| match w {
            Weight::Dense(_) => Ok(None),
            w => Ok(Some(Weight::Dense(w.matrix(dtype)?))),
        })
    }

    /// Every tensor of the model under its Hugging Face name, in f32 and in the HF layout:
    /// quantized weights dequantized, GGUF's permuted q/k rows put back, Gemma's folded
    /// `1 + w` norms unfolded, a tied head left out. LoRA pairs are not included (merge
    /// first, or write the adapter with `peft::save`).
    pub fn hf_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let plus_one = self.config.family().norm_plus_one;
        let norm = |t: &Tensor| -> Result<Tensor> {
            let t = f32(t)?;
            if plus_one {
                t.affine(1.0, -1.0)
            } else {
                Ok(t)
            }
        };
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed.matrix(DType::F32)?,
        )];
        for (i, b) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let f = self.config.family();
            out.push((format!("{p}.input_layernorm.weight"), norm(&b.input_norm)?));
            if f.sandwich_norms {
                out.push((
                    format!("{p}.pre_feedforward_layernorm.weight"),
                    norm(&b.post_norm)?,
                ));
            } else {
                out.push((
                    format!("{p}.post_attention_layernorm.weight"),
                    norm(&b.post_norm)?,
                ));
            }
            let optional = [
                ("self_attn.q_norm", &b.q_norm),
                ("self_attn.k_norm", &b.k_norm),
                ("post_attention_layernorm", &b.attn_out_norm),
                ("post_feedforward_layernorm", &b.mlp_out_norm),
            ];
            for (name, t) in optional {
                if let Some(t) = t {
                    out.push((format!("{p}.{name}.weight"), norm(t)?));
                }
            }
            for (group, module, l) in b.linears() {
                let mut w = l.weight.matrix(DType::F32)?;
                if let Some(perm) = &l.out_perm {
                    w = w.index_select(perm, 0)?;
                }
                out.push((format!("{p}.{group}.{module}.weight"), w));
                if let Some(bias) = &l.bias {
                    out.push((format!("{p}.{group}.{module}.bias"), f32(bias)?));
                }
            }
        }
        out.push(("model.norm.weight".to_string(), norm(&self.norm)?));
        let tied = self.lm_head.same(&self.embed) || self.config.tie_word_embeddings;
        if !tied {
            out.push((
                "lm_head.weight".to_string(),
                self.lm_head.matrix(DType::F32)?,
            ));
        }
        Ok(out)
    }
}
