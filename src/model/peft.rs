//! Hugging Face PEFT adapter files: `adapter_config.json` plus `adapter_model.safetensors`
//! with names like `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`
//! (A is [r, in], B is [out, r]). Written so PEFT loads them unchanged; PEFT's own adapters
//! load here. Options tunelab cannot honour are refused by name.

use super::{Model, ModelError};
use crate::files::write_atomic;
use crate::lora::{LoraConfig, LoraPair};
use candle_core::{DType, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

fn adapter_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Adapter {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn misfit(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::AdapterMisfit {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads `adapter_config.json`; unknown keys are ignored, unsupported options refused.
pub fn read_config(dir: &Path) -> Result<LoraConfig, ModelError> {
    let path = dir.join("adapter_config.json");
    if !path.is_file() {
        let why = if dir.is_dir() {
            "no adapter_config.json in this folder; expected a PEFT adapter folder (a run's adapter/ or checkpoints/step-N)"
        } else {
            "no such folder; expected a PEFT adapter folder (a run's adapter/ or checkpoints/step-N)"
        };
        return Err(adapter_err(dir, why));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| adapter_err(&path, format!("invalid JSON: {e}")))?;
    let peft_type = v.get("peft_type").and_then(Value::as_str).unwrap_or("LORA");
    if peft_type != "LORA" {
        return Err(adapter_err(
            &path,
            format!("peft_type {peft_type:?} is not supported; expected LORA"),
        ));
    }
    if v.get("use_dora").and_then(Value::as_bool) == Some(true) {
        return Err(adapter_err(
            &path,
            "use_dora: DoRA adapters are not supported",
        ));
    }
    match v.get("bias").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(b) => {
            return Err(adapter_err(
                &path,
                format!("bias: {b:?} is not supported; expected \"none\""),
            ))
        }
    }
    if v.get("modules_to_save")
        .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(adapter_err(
            &path,
            "modules_to_save: fully trained extra modules are not supported",
        ));
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if v.get(key)
            .is_some_and(|m| m.as_object().is_some_and(|o| !o.is_empty()))
        {
            return Err(adapter_err(
                &path,
                format!("{key}: per-module ranks or alphas are not supported"),
            ));
        }
    }
    if v.get("fan_in_fan_out").and_then(Value::as_bool) == Some(true) {
        return Err(adapter_err(
            &path,
            "fan_in_fan_out: true is for GPT-2 style Conv1D layers; Llama-family models need false",
        ));
    }
    let r = v
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| adapter_err(&path, "r: missing; expected a positive integer"))?
        as usize;
    let alpha = v.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0);
    let targets = match v.get("target_modules") {
        Some(Value::String(s)) if s == "all-linear" => vec!["all-linear".to_string()],
        Some(Value::String(s)) => return Err(adapter_err(&path, format!("target_modules: a regular expression ({s:?}) is not supported; list the module names"))),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => return Err(adapter_err(&path, "target_modules: missing; expected a list of module names")),
    };
    Ok(LoraConfig {
        r,
        alpha,
        dropout: v.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
        target_modules: targets,
        use_rslora: v
            .get("use_rslora")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The adapter config PEFT writes for a causal LM.
pub fn config_json(cfg: &LoraConfig, base_model: &str, model: &Model) -> Value {
    let mut modules: Vec<String> = Vec::new();
    if let Some(block) = model.layers.first() {
        for (_, name, lin) in block.linears() {
            if lin.lora.is_some() {
                modules.push(name.to_string());
            }
        }
    }
    json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": cfg.r,
        "rank_pattern": {},
        "revision": null,
        "target_modules": modules,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": cfg.use_rslora,
    })
}

/// Writes `dir/adapter_config.json` and `dir/adapter_model.safetensors` (each atomically).
pub fn save(model: &Model, dir: &Path, base_model: &str) -> Result<(), ModelError> {
    let cfg = model
        .lora
        .clone()
        .ok_or_else(|| adapter_err(dir, "the model has no LoRA adapter to save"))?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in model.lora_vars() {
        tensors.insert(name, var.as_tensor().to_dtype(DType::F32)?.contiguous()?);
    }
    let tmp = dir.join(".adapter_model.safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, dir.join("adapter_model.safetensors"))
        .map_err(|e| ModelError::io(dir, e))?;
    let text =
        serde_json::to_string_pretty(&config_json(&cfg, base_model, model)).unwrap_or_default();
    let path = dir.join("adapter_config.json");
    write_atomic(&path, text.as_bytes()).map_err(|e| ModelError::io(&path, e))
}

/// Loads a PEFT adapter into `model`, replacing any adapter it had.
pub fn load(model: &mut Model, dir: &Path) -> Result<(), ModelError> {
    let cfg = read_config(dir)?;
    let path = dir.join("adapter_model.safetensors");
    if !path.is_file() {
        let bin = dir.join("adapter_model.bin");
        let why = if bin.is_file() {
            "only a pickle adapter_model.bin, which can execute code when loaded; save it as safetensors"
        } else {
            "missing"
        };
        return Err(adapter_err(&path, why));
    }
    let tensors = candle_core::safetensors::load(&path, &model.device)?;
    let scale = cfg.scale();
    let mut used = 0usize;
    for (i, block) in model.layers.iter_mut().enumerate() {
        for (group, name, lin) in block.linears_mut() {
            let p = format!("base_model.model.model.layers.{i}.{group}.{name}");
            let a = tensors
                .get(&format!("{p}.lora_A.weight"))
                .or_else(|| tensors.get(&format!("{p}.lora_A.default.weight")));
            let b = tensors
                .get(&format!("{p}.lora_B.weight"))
                .or_else(|| tensors.get(&format!("{p}.lora_B.default.weight")));
            lin.lora = match (a, b) {
                (Some(a), Some(b)) => {
                    let (out, inp) = lin.weight.dims()?;
                    if a.dims() != [cfg.r, inp] || b.dims() != [out, cfg.r] {
                        return Err(misfit(&path, format!(
                            "{p}: lora_A {:?} / lora_B {:?} do not fit the base layer [{out}, {inp}] with r = {}", a.dims(), b.dims(), cfg.r
                        )));
                    }
                    used += 2;
                    Some(LoraPair::from_tensors(a, b, scale, cfg.dropout)?)
                }
                (None, None) => None,
                _ => {
                    return Err(adapter_err(
                        &path,
                        format!("{p}: lora_A and lora_B must come together"),
                    ))
                }
            };
        }
    }
    if used == 0 {
        return Err(misfit(&path, "no LoRA tensor matches this model's layers"));
    }
    if used != tensors.len() {
        let extra: Vec<&String> = tensors
            .keys()
            .filter(|k| !k.contains(".layers."))
            .take(3)
            .collect();
        return Err(misfit(
            &path,
            format!(
                "{} tensors do not belong to this model's layers (e.g. {extra:?})",
                tensors.len() - used
            ),
        ));
    }
    model.lora = Some(cfg);
    Ok(())
}
