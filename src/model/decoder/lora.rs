//! LoRA surgery on the one decoder: fresh pairs on the targeted modules, the bare base
//! beside an adapted model, merging into the base, and the pairs under their PEFT names.

use super::linear::{inverse_perm, Weight};
use super::Model;
use crate::lora::{LoraConfig, LoraPair, LoraSwitch};
use candle_core::{DType, Result, Var};

impl Model {
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
                    Weight::Packed(p) => p.dequantize(DType::F32)?,
                    Weight::Panels(p) => p.dense()?,
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
}
