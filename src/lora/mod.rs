//! LoRA: `y = W x + s · B A dropout(x)` with `s = alpha / r` (or `alpha / √r` with rsLoRA).
//! A is Kaiming-uniform and B is zero, so a fresh adapter leaves the model unchanged.
//! The PEFT file format lives beside the model (`model::peft`).

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What to adapt and how strongly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names (`q_proj`, …), or `all-linear` for every projection (lm_head excluded).
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub use_rslora: bool,
}

/// PEFT's `LoraConfig` defaults: r 8, alpha 8, no dropout, and the attention's query and
/// value projections (PEFT's default targets for Llama, Qwen2 and Mistral).
impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Whether the module named `name` (the last path component, e.g. `q_proj`) is adapted.
    pub fn targets(&self, name: &str) -> bool {
        self.target_modules
            .iter()
            .any(|t| t == name || (t == "all-linear" && name != "lm_head"))
    }
}

/// A run-time switch for every adapter of a model: off gives the base model (DPO's reference,
/// chat's A/B comparison) without copying weights.
#[derive(Debug, Clone)]
pub struct LoraSwitch(Arc<AtomicBool>);

impl Default for LoraSwitch {
    fn default() -> Self {
        LoraSwitch(Arc::new(AtomicBool::new(true)))
    }
}

impl LoraSwitch {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The trainable pair of one adapted linear layer.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// [r, in]
    pub a: Var,
    /// [out, r]
    pub b: Var,
    pub scale: f64,
    pub dropout: f64,
}

impl LoraPair {
    /// Kaiming-uniform A (as PEFT: bound = 1/√in) from a seeded RNG, zero B, in f32.
    pub fn init(
        in_dim: usize,
        out_dim: usize,
        cfg: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a: Vec<f32> = (0..cfg.r * in_dim)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (cfg.r, in_dim), device)?)?;
        let b = Var::zeros((out_dim, cfg.r), DType::F32, device)?;
        Ok(LoraPair {
            a,
            b,
            scale: cfg.scale(),
            dropout: cfg.dropout,
        })
    }

    pub fn from_tensors(a: &Tensor, b: &Tensor, scale: f64, dropout: f64) -> Result<Self> {
        Ok(LoraPair {
            a: Var::from_tensor(&a.to_dtype(DType::F32)?)?,
            b: Var::from_tensor(&b.to_dtype(DType::F32)?)?,
            scale,
            dropout,
        })
    }

    /// `s · B A dropout(x)` in the input's dtype; `dropout_seed` is set only in training.
    pub fn delta(&self, x: &Tensor, dropout_seed: Option<u64>) -> Result<Tensor> {
        let dt = x.dtype();
        let mut x = x.to_dtype(DType::F32)?;
        if let Some(seed) = dropout_seed {
            x = dropout(&x, self.dropout, seed)?;
        }
        let h = x.broadcast_matmul(&self.a.as_tensor().t()?)?;
        let y = h.broadcast_matmul(&self.b.as_tensor().t()?)?;
        (y * self.scale)?.to_dtype(dt)
    }

    /// `s · B A`, the dense update a merge adds to the base weight ([out, in]).
    pub fn merged_delta(&self) -> Result<Tensor> {
        self.b.as_tensor().matmul(self.a.as_tensor())? * self.scale
    }
}

/// Inverted dropout under `seed`, differentiable in `x` (the autograd path; the mask is
/// [`crate::ops::dropout::Dropout`]'s, the hand-written step's).
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    match crate::ops::dropout::Dropout::new(p, seed) {
        Some(d) => x * d.mask(x.shape(), x.device(), x.dtype())?,
        None => Ok(x.clone()),
    }
}

/// The dropout seed of module `module` (0–6, q to down) in layer `layer` for a forward with
/// `seed`: a pure function, so a recomputed layer draws the same mask.
pub fn module_seed(seed: u64, layer: usize, module: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(layer as u64 * 7 + module)
}
