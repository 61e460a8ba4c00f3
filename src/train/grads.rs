//! Gradients of the trainable parameters, accumulated over micro-batches (and, under
//! activation checkpointing, over layers) before one optimizer step.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Anything that holds a gradient per variable: candle's `GradStore`, or [`Grads`].
pub trait GradSource {
    fn grad(&self, var: &Var) -> Option<Tensor>;
}

impl GradSource for GradStore {
    fn grad(&self, var: &Var) -> Option<Tensor> {
        self.get(var).cloned()
    }
}

/// One slot per trainable variable, in a fixed order.
#[derive(Debug, Clone)]
pub struct Grads {
    vars: Vec<Var>,
    sums: Vec<Option<Tensor>>,
}

impl Grads {
    pub fn new(vars: Vec<Var>) -> Self {
        let sums = vec![None; vars.len()];
        Grads { vars, sums }
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Adds what `store` holds for each variable.
    pub fn accumulate(&mut self, store: &GradStore) -> Result<()> {
        for (v, sum) in self.vars.iter().zip(self.sums.iter_mut()) {
            if let Some(g) = store.get(v) {
                *sum = Some(match sum.take() {
                    Some(s) => (s + g)?,
                    None => g.clone(),
                });
            }
        }
        Ok(())
    }

    /// Adds `g` to the gradient of `var` (ignored when `var` is not trainable here).
    pub fn add(&mut self, var: &Var, g: Tensor) -> Result<()> {
        if let Some(i) = self.vars.iter().position(|v| v.id() == var.id()) {
            self.sums[i] = Some(match self.sums[i].take() {
                Some(s) => (s + g)?,
                None => g,
            });
        }
        Ok(())
    }

    /// Global L2 norm over every gradient.
    pub fn norm(&self) -> Result<f64> {
        let mut sq = 0f64;
        for g in self.sums.iter().flatten() {
            sq += g
                .to_dtype(candle_core::DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        Ok(sq.sqrt())
    }

    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in self.sums.iter_mut() {
            if let Some(t) = g.take() {
                *g = Some((t * factor)?);
            }
        }
        Ok(())
    }

    /// Clips to `max_norm` (0 turns clipping off) as torch's `clip_grad_norm_`; returns the
    /// norm before clipping.
    pub fn clip(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.norm()?;
        if max_norm > 0.0 && norm > max_norm {
            self.scale(max_norm / (norm + 1e-6))?;
        }
        Ok(norm)
    }

    pub fn clear(&mut self) {
        self.sums.iter_mut().for_each(|g| *g = None);
    }
}

impl GradSource for Grads {
    fn grad(&self, var: &Var) -> Option<Tensor> {
        self.vars
            .iter()
            .position(|v| v.id() == var.id())
            .and_then(|i| self.sums[i].clone())
    }
}
