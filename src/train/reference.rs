//! The reference a preference objective measures the policy against, shared by DPO and KTO:
//! the base with the adapter bypassed (a fresh adapter), or a frozen copy of the adapter
//! training started from (`init_adapter`), swapped into the same LoRA parameters for its
//! forward so one base serves both. `precompute_ref` computes the reference's log-probs once
//! and keeps them in the run folder, keyed by a hash of the data and the reference.

use super::error::TrainError;
use crate::batch::MicroBatch;
use crate::config::RunConfig;
use crate::model::Model;
use crate::runs::RunDir;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// Where reference log-probs come from.
pub enum Reference {
    /// Reference-free losses (SimPO, ORPO) need none.
    None,
    /// The base alone: the adapter switched off.
    Bypass,
    /// The adapter training started from, by parameter name.
    Frozen(Vec<(String, Tensor)>),
}

impl Reference {
    /// The reference a preference run measures against (none when not `needed`, the bare
    /// base, or a frozen copy of the adapter it starts from) and its identity for the
    /// precomputed file's hash.
    pub fn for_run(
        cfg: &RunConfig,
        model: &Model,
        needed: bool,
    ) -> std::result::Result<(Reference, String), TrainError> {
        let (reference, id) = if !needed {
            (Reference::None, "none".to_string())
        } else if let Some(dir) = cfg.init_adapter() {
            let file = std::path::Path::new(dir).join("adapter_model.safetensors");
            let digest = super::checkpoint::digest(&file).map_err(|e| TrainError::io(&file, e))?;
            (
                Reference::frozen(model)?,
                format!("frozen:{}", digest.fnv1a64),
            )
        } else {
            (Reference::Bypass, "base".to_string())
        };
        Ok((
            reference,
            format!("{id}:{}:{}", cfg.model.path, cfg.train.dtype),
        ))
    }

    /// The frozen copy of `model`'s current LoRA parameters.
    pub fn frozen(model: &Model) -> Result<Self> {
        let saved = model
            .lora_vars()
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Reference::Frozen(saved))
    }

    /// Per-row (sum of completion log-probs, completion tokens) under the reference; zeros
    /// without one.
    pub fn row_logps(&self, model: &Model, mb: &MicroBatch) -> Result<Vec<(f64, usize)>> {
        match self {
            Reference::None => Ok(vec![(0.0, 0); mb.ids.len()]),
            _ => self.with(model, |m| crate::eval::row_logps(m, mb)),
        }
    }

    /// Runs `f` on `model` with the reference in place of the adapter (switched off, or the
    /// frozen copy swapped in), and puts the adapter back; without a reference, on the
    /// model as it is.
    pub fn with<R>(&self, model: &Model, f: impl FnOnce(&Model) -> Result<R>) -> Result<R> {
        match self {
            Reference::None => f(model),
            Reference::Bypass => {
                model.switch.set(false);
                let r = f(model);
                model.switch.set(true);
                r
            }
            Reference::Frozen(saved) => {
                let vars = model.lora_vars();
                let mut current = Vec::with_capacity(saved.len());
                for (name, frozen) in saved {
                    if let Some((_, v)) = vars.iter().find(|(n, _)| n == name) {
                        current.push((v.clone(), v.as_tensor().copy()?));
                        v.set(frozen)?;
                    }
                }
                let r = f(model);
                for (v, t) in current {
                    v.set(&t)?;
                }
                r
            }
        }
    }
}

/// Two reference log-prob sums per training and held-out item (chosen and rejected for a
/// pair; the completion and its KL partner for a rated completion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Precomputed {
    /// Identity of the data and the reference they were computed for.
    pub hash: String,
    pub train: Vec<(f64, f64)>,
    pub eval: Vec<(f64, f64)>,
}

/// The precomputed reference's file in a run folder.
pub const REFERENCE_FILE: &str = "reference_logps.json";

/// An FNV-1a hash over the reference's identity and the items' token ids.
pub fn hash_items<'a>(
    reference_id: &str,
    sets: impl IntoIterator<Item = Vec<Vec<&'a [u32]>>>,
) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut fnv = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    fnv(reference_id.as_bytes());
    for set in sets {
        fnv(&(set.len() as u64).to_le_bytes());
        for item in set {
            for ids in item {
                fnv(&(ids.len() as u64).to_le_bytes());
                for id in ids {
                    fnv(&id.to_le_bytes());
                }
            }
        }
    }
    format!("{h:016x}")
}

/// Reads the run folder's precomputed log-probs when their hash and sizes match, or
/// computes them (`compute(train, items)`, `batch_size` items at a time) and writes them
/// atomically; true when they were read back.
pub fn load_or_compute(
    run: &RunDir,
    hash: String,
    sizes: (usize, usize),
    batch_size: usize,
    mut compute: impl FnMut(bool, &[usize]) -> Result<Vec<(f64, f64)>>,
) -> Result<(Precomputed, bool)> {
    let path = run.root.join(REFERENCE_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(p) = serde_json::from_slice::<Precomputed>(&bytes) {
            if p.hash == hash && p.train.len() == sizes.0 && p.eval.len() == sizes.1 {
                return Ok((p, true));
            }
        }
    }
    let mut all = |train: bool, n: usize| -> Result<Vec<(f64, f64)>> {
        let items: Vec<usize> = (0..n).collect();
        let mut out = Vec::with_capacity(n);
        for chunk in items.chunks(batch_size.max(1)) {
            out.extend(compute(train, chunk)?);
        }
        Ok(out)
    };
    let p = Precomputed {
        hash,
        train: all(true, sizes.0)?,
        eval: all(false, sizes.1)?,
    };
    let text = serde_json::to_vec(&p).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    crate::files::write_atomic(&path, &text)
        .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
    Ok((p, false))
}
