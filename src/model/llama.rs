//! One decoder for Llama, Qwen2 and Mistral (they differ in config switches only). Every op
//! has a backward: frozen projections go through `ops::frozen_linear`, and norms, RoPE and
//! softmax through the spliced fused kernels of `ops`.

use super::config::{Activation, ModelConfig, Rope};
use super::family::Modules;
use super::weights::Weights;
use super::ModelError;
use crate::lora::{LoraConfig, LoraPair, LoraSwitch};
use crate::ops;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, IndexOp, Result, Tensor, Var, D};
use std::path::Path;
use std::sync::Arc;

/// A frozen weight [out, in]: dense, or quantized (a GGUF base, kept quantized in memory).
#[derive(Debug, Clone)]
pub enum Weight {
    Dense(Tensor),
    Quantized(Arc<QTensor>),
    /// NormalFloat4 (QLoRA's type), dequantized on its own device for each use.
    Nf4(Arc<super::nf4::Nf4Tensor>),
}

impl From<super::stored::Stored> for Weight {
    fn from(s: super::stored::Stored) -> Self {
        match s {
            super::stored::Stored::Ggml(q) => Weight::Quantized(q),
            super::stored::Stored::Nf4(q) => Weight::Nf4(q),
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
        }
    }

    /// The weight as a dense matrix in `dtype`: the tensor itself, or a quantized weight
    /// dequantized for this use only (the model keeps it quantized), so the hand-written
    /// backward works on any base without a full-precision copy of the model.
    pub fn matrix(&self, dtype: DType) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => t.to_dtype(dtype),
            Weight::Quantized(q) => q.dequantize(&q.device())?.to_dtype(dtype),
            Weight::Nf4(q) => q.dequantize(dtype),
        }
    }

    /// `x · Wᵀ` with a gradient for `x` only.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Weight::Dense(w) => ops::frozen_linear(x, w),
            Weight::Quantized(q) => ops::quantized_linear(x, q),
            Weight::Nf4(q) => ops::frozen_linear(x, &q.dequantize(x.dtype())?),
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
struct Ctx {
    lora_on: bool,
    dropout_seed: Option<u64>,
    /// The layer being computed; dropout masks are a pure function of (seed, layer, module)
    /// so a layer recomputed under activation checkpointing draws the same mask.
    layer: usize,
}

impl Linear {
    fn forward(&self, x: &Tensor, ctx: &Ctx, module: u64) -> Result<Tensor> {
        let mut y = self.weight.apply(x)?;
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
}

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

/// RoPE on the first `rotary_dim` dimensions of each head ([b, h, t, d]); the rest pass
/// through (Phi-4-mini's partial rotary).
pub fn rope_partial(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    rotary_dim: usize,
    rope: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if rotary_dim == d {
        return rope(x, cos, sin);
    }
    let rot = rope(&x.narrow(D::Minus1, 0, rotary_dim)?.contiguous()?, cos, sin)?;
    Tensor::cat(
        &[&rot, &x.narrow(D::Minus1, rotary_dim, d - rotary_dim)?],
        D::Minus1,
    )?
    .contiguous()
}

/// `cap · tanh(x / cap)` (Gemma 2's soft-capping of attention scores and logits).
pub fn softcap(x: &Tensor, cap: Option<f64>) -> Result<Tensor> {
    match cap {
        None => Ok(x.clone()),
        Some(c) => (x / c)?.tanh()? * c,
    }
}

/// The MLP's gate activation, differentiable (autograd path).
pub fn activate(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        Activation::Silu => crate::ops::silu(x),
        Activation::GeluTanh => crate::ops::gelu_tanh(x),
    }
}

pub use super::kv_cache::KvCache;
use super::kv_cache::{Attention, LayerCache, DIRECT_MAX_QUERIES};

/// Inputs beside the token ids.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// [b, t] positions; packed sequences restart at 0 for every example, which also
    /// separates their attention. Default: 0..t per row.
    pub position_ids: Option<Vec<Vec<u32>>>,
    /// [b, t] 1 for real tokens, 0 for padding. Default: all real.
    pub attention_mask: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub embed: Tensor,
    pub layers: Vec<Block>,
    pub norm: Tensor,
    pub lm_head: Weight,
    pub device: Device,
    pub dtype: DType,
    pub lora: Option<LoraConfig>,
    pub switch: LoraSwitch,
}

impl Model {
    /// Loads a model folder (config.json plus safetensors) onto `device` in `dtype`.
    pub fn load(
        dir: &Path,
        dtype: DType,
        device: &Device,
    ) -> std::result::Result<Self, ModelError> {
        Ok(Self::load_quantized(dir, dtype, device, super::Quantization::None.into())?.0)
    }

    /// [`Model::load`] with the seven projections of every layer quantized as `quant` asks
    /// (QLoRA's frozen base): each is read in f32 on the CPU, quantized and placed on
    /// `device`, so the dense model never exists in memory.
    pub fn load_quantized(
        dir: &Path,
        dtype: DType,
        device: &Device,
        plan: super::QuantPlan,
    ) -> std::result::Result<(Self, super::QuantReport), ModelError> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let w = Weights::open(dir)?;
        let get = |n: &str| w.get(n, dtype, device);
        let untied_head = !config.tie_word_embeddings && w.has("lm_head.weight");
        let family = config.family();
        let modules = family.modules();
        let mut names: Vec<String> = (0..config.num_hidden_layers)
            .flat_map(|i| {
                modules
                    .iter()
                    .map(move |(g, m)| format!("model.layers.{i}.{g}.{m}.weight"))
            })
            .collect();
        if plan.head && untied_head {
            names.push("lm_head.weight".into());
        }
        let (quantized, report) = super::quant::quantize_base(&w, &names, &plan, dtype, device)?;
        let matrix = |name: &str| -> std::result::Result<Weight, ModelError> {
            Ok(match quantized.get(name) {
                Some(q) => Weight::from(q.clone()),
                None => Weight::Dense(get(name)?),
            })
        };
        let linear = |prefix: &str, bias: bool| -> std::result::Result<Linear, ModelError> {
            Ok(Linear {
                weight: matrix(&format!("{prefix}.weight"))?,
                out_perm: None,
                bias: if bias {
                    Some(get(&format!("{prefix}.bias"))?)
                } else {
                    None
                },
                lora: None,
            })
        };
        // Gemma stores norm weights as `w` and scales by `1 + w`: folded in once here.
        let norm = |name: &str| -> std::result::Result<Tensor, ModelError> {
            if family.norm_plus_one {
                Ok(w.get(name, DType::F32, device)?
                    .affine(1.0, 1.0)?
                    .to_dtype(dtype)?)
            } else {
                get(name)
            }
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let b = config.qkv_bias;
            let mut projections = Vec::with_capacity(modules.len());
            for (g, m) in modules.iter() {
                let bias = b && *g == "self_attn" && *m != "o_proj";
                projections.push(linear(&format!("{p}.{g}.{m}"), bias)?);
            }
            let optional =
                |name: &str, on: bool| -> std::result::Result<Option<Tensor>, ModelError> {
                    Ok(if on {
                        Some(norm(&format!("{p}.{name}.weight"))?)
                    } else {
                        None
                    })
                };
            let sandwich = family.sandwich_norms;
            let (post_norm, attn_out_norm) = if sandwich {
                (
                    norm(&format!("{p}.pre_feedforward_layernorm.weight"))?,
                    optional("post_attention_layernorm", true)?,
                )
            } else {
                (norm(&format!("{p}.post_attention_layernorm.weight"))?, None)
            };
            layers.push(Block::assemble(
                projections,
                modules,
                norm(&format!("{p}.input_layernorm.weight"))?,
                post_norm,
                [
                    optional("self_attn.q_norm", family.qk_norm)?,
                    optional("self_attn.k_norm", family.qk_norm)?,
                    attn_out_norm,
                    optional("post_feedforward_layernorm", sandwich)?,
                ],
                config.sliding_layers.get(i).copied().unwrap_or(false),
            ));
        }
        let embed = get("model.embed_tokens.weight")?;
        let lm_head = if untied_head {
            matrix("lm_head.weight")?
        } else {
            Weight::Dense(embed.clone())
        };
        let model = Self::assemble(
            config,
            embed,
            layers,
            norm("model.norm.weight")?,
            lm_head,
            dtype,
            device,
        );
        let mut report = report;
        report.params = model.config.parameter_count() as u64;
        report.base_bytes = model.resident_bytes();
        Ok((model, report))
    }

    /// Quantizes the dense projections of a model already in memory (a random benchmark
    /// model; files load quantized with [`Model::load_quantized`] instead).
    pub fn quantize(&mut self, plan: super::QuantPlan) -> Result<super::QuantReport> {
        let quant = plan.quantization;
        let mut report = super::QuantReport {
            quantization: quant.to_string(),
            ..Default::default()
        };
        let (dtype, device) = (self.dtype, self.device.clone());
        for (i, b) in self.layers.iter_mut().enumerate() {
            for (group, name, l) in b.linears_mut() {
                if let Weight::Dense(t) = &l.weight {
                    let src = t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
                    let full = format!("model.layers.{i}.{group}.{name}.weight");
                    if let Some(q) = super::quant::quantize_matrix(
                        &full,
                        &src,
                        quant,
                        dtype,
                        &device,
                        &mut report,
                    )? {
                        l.weight = Weight::from(q);
                    }
                }
            }
        }
        report.params = self.config.parameter_count() as u64;
        report.base_bytes = self.resident_bytes();
        Ok(report)
    }

    /// Whether any frozen matrix is stored quantized (a GGUF base, or QLoRA).
    pub fn is_quantized(&self) -> bool {
        let q = |w: &Weight| !matches!(w, Weight::Dense(_));
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
        };
        let mut total = dense(&self.embed) + dense(&self.norm);
        let tied = matches!(&self.lm_head, Weight::Dense(t) if t.id() == self.embed.id());
        if !tied {
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

    pub fn assemble(
        config: ModelConfig,
        embed: Tensor,
        layers: Vec<Block>,
        norm: Tensor,
        lm_head: Weight,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Model {
            config,
            embed,
            layers,
            norm,
            lm_head,
            device: device.clone(),
            dtype,
            lora: None,
            switch: LoraSwitch::default(),
        }
    }

    /// The same frozen base without adapters and with its own switch. Tensors share their
    /// storage, so nothing is copied: a second adapter loaded into it (chat's A/B
    /// comparison) costs only its LoRA weights.
    pub fn bare_base(&self) -> Model {
        let mut m = self.clone();
        for b in &mut m.layers {
            for (_, _, l) in b.linears_mut() {
                l.lora = None;
            }
        }
        m.lora = None;
        m.switch = LoraSwitch::default();
        m
    }

    /// Folds every LoRA pair into its base weight (`W + s·B·A`) and removes the adapters; a
    /// quantized base is dequantized first. The logits do not change.
    pub fn merge_lora(&mut self) -> Result<()> {
        let (dtype, device) = (self.dtype, self.device.clone());
        for b in &mut self.layers {
            for (_, _, l) in b.linears_mut() {
                let Some(pair) = l.lora.take() else { continue };
                let base = match &l.weight {
                    Weight::Dense(w) => w.clone(),
                    Weight::Quantized(q) => q.dequantize(&device)?,
                    Weight::Nf4(q) => q.dequantize(DType::F32)?,
                };
                let mut delta = pair.merged_delta()?;
                if let Some(p) = &l.out_perm {
                    // The delta is in HF row order; the base rows are in the file's order.
                    delta = delta.index_select(&inverse_perm(p)?, 0)?;
                }
                l.weight = Weight::Dense((base.to_dtype(DType::F32)? + delta)?.to_dtype(dtype)?);
            }
        }
        self.lora = None;
        Ok(())
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
        let mut out = vec![("model.embed_tokens.weight".to_string(), f32(&self.embed)?)];
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
        let tied = matches!(&self.lm_head, Weight::Dense(t) if t.id() == self.embed.id())
            || self.config.tie_word_embeddings;
        if !tied {
            out.push((
                "lm_head.weight".to_string(),
                self.lm_head.matrix(DType::F32)?,
            ));
        }
        Ok(out)
    }

    /// Bytes the quantized weights would take once dequantized to the compute dtype.
    pub fn dense_bytes(&self) -> usize {
        let mut n = 0;
        for b in &self.layers {
            for (_, _, l) in b.linears() {
                if let (Weight::Quantized(_) | Weight::Nf4(_), Ok((o, i))) =
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
            });
        if !all_kernel && self.dense_bytes() < DENSIFY_BELOW {
            self.densify()?;
        }
        Ok(())
    }

    /// Dequantizes every quantized weight once (for inference when memory allows): generation
    /// then skips the per-call dequantization. Training keeps the quantized base.
    pub fn densify(&mut self) -> Result<()> {
        let dtype = self.dtype;
        for b in &mut self.layers {
            for (_, _, l) in b.linears_mut() {
                if !matches!(l.weight, Weight::Dense(_)) {
                    l.weight = Weight::Dense(l.weight.matrix(dtype)?);
                }
            }
        }
        if !matches!(self.lm_head, Weight::Dense(_)) {
            self.lm_head = Weight::Dense(self.lm_head.matrix(dtype)?);
        }
        Ok(())
    }

    /// Adds fresh LoRA pairs (A Kaiming-uniform from `seed`, B zero) to the targeted modules.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        let device = self.device.clone();
        let mut n = 0u64;
        for block in &mut self.layers {
            for (_, name, lin) in block.linears_mut() {
                if cfg.targets(name) {
                    let (out, inp) = lin.weight.dims()?;
                    lin.lora = Some(LoraPair::init(
                        inp,
                        out,
                        cfg,
                        seed.wrapping_add(n),
                        &device,
                    )?);
                }
                n += 1;
            }
        }
        self.lora = Some(cfg.clone());
        Ok(())
    }

    /// Every LoRA variable with its PEFT name (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`).
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (i, block) in self.layers.iter().enumerate() {
            for (group, name, lin) in block.linears() {
                if let Some(l) = &lin.lora {
                    let p = format!("base_model.model.model.layers.{i}.{group}.{name}");
                    out.push((format!("{p}.lora_A.weight"), l.a.clone()));
                    out.push((format!("{p}.lora_B.weight"), l.b.clone()));
                }
            }
        }
        out
    }

    /// Number of trainable (LoRA) parameters.
    pub fn trainable_parameters(&self) -> usize {
        self.lora_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

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

    fn tables(&self, positions: &[Vec<u32>], rope: &Rope, mask: Tensor) -> Result<Tables> {
        let (cos, sin) = self.rope_tables(positions, rope)?;
        Ok(Tables {
            nsin: sin.neg()?,
            cos,
            sin,
            mask,
        })
    }

    /// Whether any layer attends within a sliding window.
    fn has_sliding(&self) -> bool {
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

    /// Token embeddings [b, t, hidden], scaled by √hidden in Gemma (frozen: no gradient
    /// flows into them).
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let e = self
            .embed
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, t, self.config.hidden_size))?;
        self.scale_embedding(e)
    }

    fn scale_embedding(&self, e: Tensor) -> Result<Tensor> {
        if self.config.family().embed_scale {
            e * (self.config.hidden_size as f64).sqrt()
        } else {
            Ok(e)
        }
    }

    /// One decoder layer; `dropout_seed` enables LoRA dropout (training).
    pub fn layer(
        &self,
        i: usize,
        h: &Tensor,
        p: &Prepared,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let ctx = Ctx {
            lora_on: self.lora.is_some() && self.switch.is_on(),
            dropout_seed,
            layer: i,
        };
        let block = &self.layers[i];
        self.block_kv(block, h, p.for_block(block), &ctx, None)
    }

    /// Final norm and LM head: logits [b, t, vocab].
    pub fn head(&self, h: &Tensor) -> Result<Tensor> {
        let h = ops::rms_norm(h, &self.norm, self.config.rms_norm_eps)?;
        softcap(
            &self.lm_head.apply(&h)?,
            self.config.final_logit_softcapping,
        )
    }

    /// Logits [b, t, vocab] at every position. `dropout_seed` enables LoRA dropout.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        batch: &Batch,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let p = self.prepare(b, t, batch)?;
        let mut h = self.embed(input_ids)?;
        for i in 0..self.layers.len() {
            h = self.layer(i, &h, &p, dropout_seed)?;
        }
        self.head(&h)
    }

    /// Logits [vocab] of the last new token, with keys and values of earlier tokens from
    /// `cache` (inference: no dropout, and the cache holds no autograd graph).
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        ops::on_pool(|| self.cached_step(ids, cache))
    }

    /// [`Model::forward_cached`]'s work, on a pool thread.
    fn cached_step(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let t = ids.len();
        let start = cache.len;
        cache.ensure_layers(self.layers.len());
        let positions = vec![(start as u32..(start + t) as u32).collect::<Vec<u32>>()];
        let total = start + t;
        let mask = |window: Option<usize>| -> Result<Tensor> {
            let mut m = vec![0f32; t * total];
            for i in 0..t {
                let q = start + i;
                for j in 0..total {
                    if j > q || window.is_some_and(|w| q - j >= w) {
                        m[i * total + j] = -1e9;
                    }
                }
            }
            Tensor::from_vec(m, (1, 1, t, total), &self.device)?.to_dtype(self.dtype)
        };
        let c = &self.config;
        let p = Prepared {
            global: self.tables(&positions, &c.rope, mask(None)?)?,
            local: if self.has_sliding() {
                Some(self.tables(&positions, c.rope_of(true), mask(c.sliding_window)?)?)
            } else {
                None
            },
        };
        let input = Tensor::new(ids, &self.device)?;
        let mut h = self.scale_embedding(self.embed.index_select(&input, 0)?.unsqueeze(0)?)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let ctx = Ctx {
                lora_on: self.lora.is_some() && self.switch.is_on(),
                dropout_seed: None,
                layer: i,
            };
            let Some(slot) = cache.layer_mut(i) else {
                candle_core::bail!("kv cache: no layer {i}")
            };
            h = self
                .block_kv(layer, &h, p.for_block(layer), &ctx, Some((slot, start)))?
                .detach();
        }
        cache.len = total;
        self.head(&h.i((.., t - 1..t, ..))?)?
            .flatten_all()?
            .detach()
            .to_dtype(DType::F32)
    }

    /// Masked attention as candle ops: `q` `[b, heads, t, d]` over `k`, `v`
    /// `[b, kv_heads, t_all, d]`, returned as `[b, t, heads·d]`.
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, tables: &Tables) -> Result<Tensor> {
        let c = &self.config;
        let (b, nh, t, hd) = q.dims4()?;
        let rep = nh / c.num_key_value_heads;
        let (k, v) = (repeat_kv(k, rep)?, repeat_kv(v, rep)?);
        let scores = (q.matmul(&k.t()?.contiguous()?)? * c.attention_scale())?;
        let scores = softcap(&scores, c.attn_logit_softcapping)?.broadcast_add(&tables.mask)?;
        let probs = ops::softmax_last_dim(&scores)?;
        probs
            .matmul(&v.contiguous()?)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))
    }

    fn block_kv(
        &self,
        l: &Block,
        x: &Tensor,
        tables: &Tables,
        ctx: &Ctx,
        kv: Option<(&mut Option<LayerCache>, usize)>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let eps = c.rms_norm_eps;
        let hn = ops::rms_norm(x, &l.input_norm, eps)?;
        let heads = |y: &Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
        let outs = l
            .attn_in
            .iter()
            .enumerate()
            .map(|(j, lin)| lin.forward(&hn, ctx, j as u64))
            .collect::<Result<Vec<_>>>()?;
        let qkv = split_last(outs, &[nh * hd, nkv * hd, nkv * hd])?;
        let (mut q, mut k) = (heads(&qkv[0], nh)?, heads(&qkv[1], nkv)?);
        if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
            q = ops::rms_norm(&q, qn, eps)?;
            k = ops::rms_norm(&k, kn, eps)?;
        }
        let q = rope_partial(&q, &tables.cos, &tables.sin, c.rotary_dim, ops::rope)?;
        let k = rope_partial(&k, &tables.cos, &tables.sin, c.rotary_dim, ops::rope)?;
        let v = heads(&qkv[2], nkv)?;
        let attn = match kv {
            Some((slot, start)) => {
                let (k, v) = LayerCache::append(slot, &k.detach(), &v.detach(), start)?;
                match slot.as_ref() {
                    Some(cache) if cache.is_direct() && t <= DIRECT_MAX_QUERIES => {
                        let window = if l.sliding && self.has_sliding() {
                            c.sliding_window
                        } else {
                            None
                        };
                        let shape = Attention {
                            kv_heads: nkv,
                            scale: c.attention_scale() as f32,
                            softcap: c.attn_logit_softcapping.map(|x| x as f32),
                            window,
                        };
                        cache.attend(&q, start, &shape)?
                    }
                    _ => self.attention(&q, &k, &v, tables)?,
                }
            }
            None => self.attention(&q, &k, &v, tables)?,
        };
        let (o_ix, mlp_ix, down_ix) = l.module_index();
        let mut a = l.o.forward(&attn, ctx, o_ix)?;
        if let Some(n) = &l.attn_out_norm {
            a = ops::rms_norm(&a, n, eps)?;
        }
        let x = (x + a)?;
        let hn = ops::rms_norm(&x, &l.post_norm, eps)?;
        let outs = l
            .mlp_in
            .iter()
            .enumerate()
            .map(|(j, lin)| lin.forward(&hn, ctx, mlp_ix + j as u64))
            .collect::<Result<Vec<_>>>()?;
        let gu = split_last(outs, &[c.intermediate_size, c.intermediate_size])?;
        let act = (activate(&gu[0], c.activation)? * &gu[1])?;
        let mut m = l.down.forward(&act, ctx, down_ix)?;
        if let Some(n) = &l.mlp_out_norm {
            m = ops::rms_norm(&m, n, eps)?;
        }
        x + m
    }
}

/// [b, kv, t, d] → [b, kv·n, t, d], each key/value head shared by `n` query heads.
pub fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, n, t, d))?
        .reshape((b, kv * n, t, d))
}

/// The flat positions (`row · t + i`) that predict a target, and those targets: position i
/// predicts label i+1 (labels are not shifted); -100 is ignored.
pub fn target_positions(labels: &[Vec<i64>], b: usize, t: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (r, lab) in labels.iter().enumerate().take(b) {
        for i in 0..t.saturating_sub(1) {
            let y = lab.get(i + 1).copied().unwrap_or(-100);
            if y >= 0 {
                rows.push((r * t + i) as u32);
                targets.push(y as u32);
            }
        }
    }
    (rows, targets)
}

/// Mean cross-entropy over unmasked targets (labels -100 are ignored), the HF causal-LM
/// convention: position i predicts label i+1, averaged over every counted target in the batch.
pub fn causal_lm_loss(logits: &Tensor, labels: &[Vec<i64>]) -> Result<(Tensor, usize)> {
    let (b, t, v) = logits.dims3()?;
    let (rows, targets) = target_positions(labels, b, t);
    let n = rows.len();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, logits.device())?, 0));
    }
    let flat = logits.reshape((b * t, v))?;
    let picked = flat
        .index_select(&Tensor::new(rows, logits.device())?, 0)?
        .to_dtype(DType::F32)?;
    let logp = candle_nn::ops::log_softmax(&picked, D::Minus1)?;
    let tgt = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    let nll = logp.gather(&tgt, 1)?.neg()?;
    Ok((nll.sum_all()?.affine(1.0 / n as f64, 0.0)?, n))
}

/// The logits row of one position, for tests and tools.
pub fn row(logits: &Tensor, b: usize, t: usize) -> Result<Vec<f32>> {
    logits.i((b, t))?.to_dtype(DType::F32)?.to_vec1()
}
