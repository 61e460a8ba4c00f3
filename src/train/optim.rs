//! AdamW with f32 moments, as torch.optim.AdamW computes it (decoupled weight decay, bias
//! correction), with state that is saved and restored exactly so a resumed run continues
//! bit for bit. candle's own AdamW keeps its state private.

use super::grads::GradSource;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// torch's defaults, except weight decay 0 (torch uses 0.01; HF Trainer uses 0).
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One named parameter and its moments.
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    pub step: u64,
    slots: Vec<Slot>,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                let zeros = Tensor::zeros(var.shape(), DType::F32, var.device())?;
                Ok(Slot {
                    name,
                    m: zeros.clone(),
                    v: zeros,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            cfg,
            step: 0,
            slots,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// One update from `grads`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &impl GradSource) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for s in &mut self.slots {
            let Some(g) = grads.grad(&s.var) else {
                continue;
            };
            let g = g.to_dtype(DType::F32)?;
            s.m = ((&s.m * b1)? + (&g * (1.0 - b1))?)?;
            s.v = ((&s.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let p = s.var.as_tensor().to_dtype(DType::F32)?;
            let p = (p * (1.0 - self.cfg.lr * self.cfg.weight_decay))?;
            let denom = ((s.v.sqrt()? / bc2.sqrt())? + self.cfg.eps)?;
            let update = ((&s.m / denom)? * (self.cfg.lr / bc1))?;
            s.var.set(&(p - update)?.to_dtype(s.var.dtype())?)?;
        }
        Ok(())
    }

    /// Writes the moments and step (safetensors) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t: HashMap<String, Tensor> = HashMap::new();
        for s in &self.slots {
            t.insert(format!("{}.exp_avg", s.name), s.m.clone());
            t.insert(format!("{}.exp_avg_sq", s.name), s.v.clone());
        }
        t.insert(
            "step".into(),
            Tensor::new(&[self.step as f64], &Device::Cpu)?,
        );
        candle_core::safetensors::save(&t, path)
    }

    /// Restores what [`save`](Self::save) wrote; every parameter must be present.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(Device::Cpu);
        let t = candle_core::safetensors::load(path, &device)?;
        let get = |k: &str| {
            t.get(k).cloned().ok_or_else(|| {
                candle_core::Error::Msg(format!("{}: optimizer state has no {k}", path.display()))
            })
        };
        for s in &mut self.slots {
            s.m = get(&format!("{}.exp_avg", s.name))?;
            s.v = get(&format!("{}.exp_avg_sq", s.name))?;
        }
        self.step = get("step")?
            .to_vec1::<f64>()?
            .first()
            .copied()
            .unwrap_or(0.0) as u64;
        Ok(())
    }
}

/// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before
/// clipping (what the run log reports as grad_norm).
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            sq += g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * scale)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torch.optim.AdamW by hand for one scalar.
    fn reference(p0: f64, grads: &[f64], c: &AdamWConfig) -> f64 {
        let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
        for (i, g) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            p *= 1.0 - c.lr * c.weight_decay;
            m = c.beta1 * m + (1.0 - c.beta1) * g;
            v = c.beta2 * v + (1.0 - c.beta2) * g * g;
            let denom = (v.sqrt() / (1.0 - c.beta2.powi(t)).sqrt()) + c.eps;
            p -= c.lr / (1.0 - c.beta1.powi(t)) * m / denom;
        }
        p
    }

    #[test]
    fn matches_torch_adamw_and_resumes_exactly() {
        let cfg = AdamWConfig {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        };
        let x = Var::from_tensor(&Tensor::new(&[1.5f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], cfg.clone()).unwrap();
        let loss = |x: &Var| x.as_tensor().sqr().unwrap().sum_all().unwrap(); // grad 2x
        let mut gs = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            let vals: Vec<f32> = x.as_tensor().to_vec1().unwrap();
            gs[0].push(2.0 * vals[0] as f64);
            gs[1].push(2.0 * vals[1] as f64);
            opt.step(&loss(&x).backward().unwrap()).unwrap();
        }
        let got: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        assert!((got[0] as f64 - reference(1.5, &gs[0], &cfg)).abs() < 1e-6);
        assert!((got[1] as f64 - reference(-2.0, &gs[1], &cfg)).abs() < 1e-6);
        // Save, continue two steps; restore into a fresh optimizer from the same point: same result.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        opt.save(&path).unwrap();
        let snapshot = x.as_tensor().copy().unwrap();
        for _ in 0..2 {
            opt.step(&loss(&x).backward().unwrap()).unwrap();
        }
        let straight: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        let y = Var::from_tensor(&snapshot).unwrap();
        let mut resumed = AdamW::new(vec![("x".into(), y.clone())], cfg).unwrap();
        resumed.load(&path).unwrap();
        assert_eq!(resumed.step, 3);
        for _ in 0..2 {
            resumed.step(&loss(&y).backward().unwrap()).unwrap();
        }
        assert_eq!(y.as_tensor().to_vec1::<f32>().unwrap(), straight);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()).unwrap();
        let mut g = x
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .affine(0.5, 0.0)
            .unwrap()
            .backward()
            .unwrap(); // grad = x
        let norm = clip_grad_norm(std::slice::from_ref(&x), &mut g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let clipped: Vec<f32> = g.get(&x).unwrap().to_vec1().unwrap();
        assert!((clipped[0] - 0.6).abs() < 1e-5 && (clipped[1] - 0.8).abs() < 1e-5);
    }
}
