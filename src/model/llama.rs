//! One decoder for Llama, Qwen2 and Mistral (they differ in config switches only). Every op
//! has a backward: frozen projections go through `ops::frozen_linear`, and norms, RoPE and
//! softmax through the spliced fused kernels of `ops`.

use super::config::ModelConfig;
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
    /// NormalFloat4 (QLoRA's type), dequantized on the CPU for each use.
    Nf4(Arc<super::nf4::Nf4Tensor>),
}

impl From<super::quant::Stored> for Weight {
    fn from(s: super::quant::Stored) -> Self {
        match s {
            super::quant::Stored::Ggml(q) => Weight::Quantized(q),
            super::quant::Stored::Nf4(q) => Weight::Nf4(q),
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

#[derive(Debug, Clone)]
pub struct Block {
    pub input_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub post_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Block {
    /// The seven projections' (group, module) names, in `linears` order.
    pub const MODULES: [(&'static str, &'static str); 7] = [
        ("self_attn", "q_proj"),
        ("self_attn", "k_proj"),
        ("self_attn", "v_proj"),
        ("self_attn", "o_proj"),
        ("mlp", "gate_proj"),
        ("mlp", "up_proj"),
        ("mlp", "down_proj"),
    ];

    /// The linear layers by their HF module names.
    pub fn linears_mut(&mut self) -> [(&'static str, &'static str, &mut Linear); 7] {
        [
            ("self_attn", "q_proj", &mut self.q),
            ("self_attn", "k_proj", &mut self.k),
            ("self_attn", "v_proj", &mut self.v),
            ("self_attn", "o_proj", &mut self.o),
            ("mlp", "gate_proj", &mut self.gate),
            ("mlp", "up_proj", &mut self.up),
            ("mlp", "down_proj", &mut self.down),
        ]
    }

    pub fn linears(&self) -> [(&'static str, &'static str, &Linear); 7] {
        [
            ("self_attn", "q_proj", &self.q),
            ("self_attn", "k_proj", &self.k),
            ("self_attn", "v_proj", &self.v),
            ("self_attn", "o_proj", &self.o),
            ("mlp", "gate_proj", &self.gate),
            ("mlp", "up_proj", &self.up),
            ("mlp", "down_proj", &self.down),
        ]
    }
}

/// Per-batch tables every layer shares.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub cos: Tensor,
    pub sin: Tensor,
    pub mask: Tensor,
}

/// Keys and values of the tokens seen so far, per layer ([1, kv_heads, len, head_dim]).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor, Tensor)>>,
    pub len: usize,
}

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
    inv_freq: Vec<f32>,
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
        let mut names: Vec<String> = (0..config.num_hidden_layers)
            .flat_map(|i| {
                Block::MODULES
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
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let b = config.qkv_bias;
            layers.push(Block {
                input_norm: get(&format!("{p}.input_layernorm.weight"))?,
                q: linear(&format!("{p}.self_attn.q_proj"), b)?,
                k: linear(&format!("{p}.self_attn.k_proj"), b)?,
                v: linear(&format!("{p}.self_attn.v_proj"), b)?,
                o: linear(&format!("{p}.self_attn.o_proj"), false)?,
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
                gate: linear(&format!("{p}.mlp.gate_proj"), false)?,
                up: linear(&format!("{p}.mlp.up_proj"), false)?,
                down: linear(&format!("{p}.mlp.down_proj"), false)?,
            });
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
            get("model.norm.weight")?,
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
            total += dense(&b.input_norm) + dense(&b.post_norm);
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
        let inv_freq = config.inv_freq().into_iter().map(|f| f as f32).collect();
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
            inv_freq,
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

    fn rope_tables(&self, positions: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let mut angles = Vec::with_capacity(b * t * half);
        for row in positions {
            for &p in row {
                angles.extend(self.inv_freq.iter().map(|f| p as f32 * f));
            }
        }
        let a = Tensor::from_vec(angles, (b, t, half), &self.device)?;
        Ok((
            a.cos()?.to_dtype(self.dtype)?,
            a.sin()?.to_dtype(self.dtype)?,
        ))
    }

    /// Additive mask [b, 1, t, t]: causal, within one packed example, and not onto padding.
    fn mask(&self, positions: &[Vec<u32>], attention: Option<&Vec<Vec<u8>>>) -> Result<Tensor> {
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let mut m = vec![0f32; b * t * t];
        for r in 0..b {
            let mut seg = vec![0u32; t];
            for i in 1..t {
                seg[i] = seg[i - 1] + u32::from(positions[r][i] == 0);
            }
            for i in 0..t {
                for j in 0..t {
                    let visible =
                        j <= i && seg[i] == seg[j] && attention.is_none_or(|a| a[r][j] != 0);
                    if !visible && i != j {
                        m[(r * t + i) * t + j] = -1e9;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, t, t), &self.device)?.to_dtype(self.dtype)
    }

    /// Rotary tables and the attention mask for one batch, shared by every layer.
    pub fn prepare(&self, b: usize, t: usize, batch: &Batch) -> Result<Prepared> {
        let positions = batch
            .position_ids
            .clone()
            .unwrap_or_else(|| vec![(0..t as u32).collect(); b]);
        let (cos, sin) = self.rope_tables(&positions)?;
        let mask = self.mask(&positions, batch.attention_mask.as_ref())?;
        Ok(Prepared { cos, sin, mask })
    }

    /// Token embeddings [b, t, hidden] (frozen: no gradient flows into them).
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        self.embed
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, t, self.config.hidden_size))
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
        self.block_kv(&self.layers[i], h, &p.cos, &p.sin, &p.mask, &ctx, None)
    }

    /// Final norm and LM head: logits [b, t, vocab].
    pub fn head(&self, h: &Tensor) -> Result<Tensor> {
        let h = ops::rms_norm(h, &self.norm, self.config.rms_norm_eps)?;
        self.lm_head.apply(&h)
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
        let t = ids.len();
        let start = cache.len;
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let positions = vec![(start as u32..(start + t) as u32).collect::<Vec<u32>>()];
        let (cos, sin) = self.rope_tables(&positions)?;
        let total = start + t;
        let mut m = vec![0f32; t * total];
        for i in 0..t {
            for j in (start + i + 1)..total {
                m[i * total + j] = -1e9;
            }
        }
        let mask = Tensor::from_vec(m, (1, 1, t, total), &self.device)?.to_dtype(self.dtype)?;
        let input = Tensor::new(ids, &self.device)?;
        let mut h = self.embed.index_select(&input, 0)?.unsqueeze(0)?;
        for (i, (layer, kv)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            let ctx = Ctx {
                lora_on: self.lora.is_some() && self.switch.is_on(),
                dropout_seed: None,
                layer: i,
            };
            h = self
                .block_kv(layer, &h, &cos, &sin, &mask, &ctx, Some(kv))?
                .detach();
        }
        cache.len = total;
        let h = ops::rms_norm(
            &h.i((.., t - 1..t, ..))?,
            &self.norm,
            self.config.rms_norm_eps,
        )?;
        self.lm_head
            .apply(&h)?
            .flatten_all()?
            .detach()
            .to_dtype(DType::F32)
    }

    #[allow(clippy::too_many_arguments)]
    fn block_kv(
        &self,
        l: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        ctx: &Ctx,
        kv: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let hn = ops::rms_norm(x, &l.input_norm, c.rms_norm_eps)?;
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
        let q = ops::rope(&heads(l.q.forward(&hn, ctx, 0)?, nh)?, cos, sin)?;
        let mut k = ops::rope(&heads(l.k.forward(&hn, ctx, 1)?, nkv)?, cos, sin)?;
        let mut v = heads(l.v.forward(&hn, ctx, 2)?, nkv)?;
        if let Some(slot) = kv {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k.detach()], 2)?;
                v = Tensor::cat(&[pv, &v.detach()], 2)?;
            }
            *slot = Some((k.detach(), v.detach()));
        }
        let (k, v) = (repeat_kv(&k, nh / nkv)?, repeat_kv(&v, nh / nkv)?);
        let scores =
            (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(mask)?;
        let probs = ops::softmax_last_dim(&scores)?;
        let attn = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        let x = (x + l.o.forward(&attn, ctx, 3)?)?;
        let hn = ops::rms_norm(&x, &l.post_norm, c.rms_norm_eps)?;
        let act =
            (candle_nn::ops::silu(&l.gate.forward(&hn, ctx, 4)?)? * l.up.forward(&hn, ctx, 5)?)?;
        x + l.down.forward(&act, ctx, 6)?
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
