//! LLaMA-Factory: the run as `config.yaml` for `llamafactory-cli train`, with the data in
//! `data/` described by `data/dataset_info.json` (ShareGPT conversations, ShareGPT pairs
//! with `ranking`, or `messages` with a `kto_tag`).

use super::{number, Plan, Precision, ScaleoutError, Shape, Sharding, ToolFiles, Unmapped};
use super::{Warmup, OUTPUT_DIR};
use crate::config::{MethodConfig, PrefLoss, RunConfig};
use crate::data::Kind;
use crate::template::{LengthPolicy, TrainOn};
use serde_json::{json, Map, Value};

/// The names the data is registered under in `dataset_info.json`.
pub const TRAIN_NAME: &str = "tunelab_train";
pub const EVAL_NAME: &str = "tunelab_eval";

/// The layout LLaMA-Factory's loader for the stage reads.
pub fn shape(cfg: &RunConfig, kind: Kind) -> Result<Shape, ScaleoutError> {
    Ok(match cfg.method_config() {
        MethodConfig::Sft(_) if kind == Kind::Text => Shape::Text,
        MethodConfig::Sft(_) => Shape::Sharegpt,
        MethodConfig::Dpo(_) => Shape::SharegptPreference,
        MethodConfig::Kto(_) => Shape::KtoMessages,
        MethodConfig::Grpo(_) => {
            return Err(super::grpo_unsupported("LLaMA-Factory has no GRPO stage"))
        }
    })
}

/// One `dataset_info.json` entry for `file`; optional columns only when the data has them.
fn entry(plan: &Plan, file: &str, keys: &std::collections::BTreeSet<String>) -> Value {
    let mut e = entry_all(plan, file);
    if let Some(Value::Object(cols)) = e.get_mut("columns") {
        cols.retain(|_, v| v.as_str().is_some_and(|k| keys.contains(k)));
    }
    e
}

fn entry_all(plan: &Plan, file: &str) -> Value {
    match plan.shape {
        Shape::Text => json!({"file_name": file, "columns": {"prompt": "text"}}),
        Shape::SharegptPreference => json!({
            "file_name": file,
            "formatting": "sharegpt",
            "ranking": true,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "system": "system", "tools": "tools"}
        }),
        Shape::KtoMessages => json!({
            "file_name": file,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "kto_tag": "label", "tools": "tools"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system", "observation_tag": "tool"}
        }),
        _ => json!({
            "file_name": file,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system", "tools": "tools"}
        }),
    }
}

/// LLaMA-Factory's template for a model it knows by name; `None` lets it parse the
/// tokenizer's own chat template.
pub fn template_name(model: &str, cfg: &RunConfig) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    let thinking_off = cfg.data.template_kwargs.get("enable_thinking") == Some(&json!(false));
    let known: &[(&str, &str)] = &[
        ("smollm2", "smollm2"),
        ("smollm", "smollm"),
        ("qwen3", "qwen3"),
        ("qwen2", "qwen"),
        ("llama-3", "llama3"),
        ("llama3", "llama3"),
        ("llama-2", "llama2"),
        ("mistral", "mistral"),
        ("gemma-3", "gemma3"),
        ("gemma3", "gemma3"),
        ("gemma-2", "gemma2"),
        ("gemma2", "gemma2"),
        ("phi-4-mini", "phi4_mini"),
        ("phi-4", "phi4"),
        ("phi-3", "phi"),
    ];
    let name = known.iter().find(|(k, _)| m.contains(k)).map(|(_, t)| *t)?;
    Some(match name {
        "qwen3" if thinking_off => "qwen3_nothink",
        // LLaMA-Factory's `gemma3` loads the image processor and stops on a model without
        // one; its `gemma` template writes the same text.
        "gemma3" if !gemma3_multimodal(model) => "gemma",
        name => name,
    })
}

/// Whether a Gemma 3 model reads images: a local folder with a processor config, or a hub id
/// other than the text-only sizes (270M and 1B).
fn gemma3_multimodal(model: &str) -> bool {
    let dir = std::path::Path::new(model);
    if dir.is_dir() {
        return ["preprocessor_config.json", "processor_config.json"]
            .iter()
            .any(|f| dir.join(f).is_file());
    }
    let m = model.to_ascii_lowercase();
    !(m.contains("-1b") || m.contains("-270m"))
}

/// The whole `config.yaml` as a map, grouped as LLaMA-Factory's examples are.
pub fn config(plan: &Plan, unmapped: &mut Vec<Unmapped>) -> Map<String, Value> {
    let cfg = plan.cfg;
    let t = &cfg.train;
    let d = &cfg.data;
    let mut c = Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.into(), v);
    };
    // model
    put("model_name_or_path", json!(plan.model));
    if let Some(a) = &plan.init_adapter {
        // Training continues that adapter; the reference is the base with a frozen copy of
        // it, as in tunelab (reference-free losses need none).
        put("adapter_name_or_path", json!(a));
        let needs_ref = match cfg.method_config() {
            MethodConfig::Dpo(dpo) => dpo.loss.needs_reference(),
            _ => true,
        };
        if needs_ref {
            put("ref_model", json!(plan.model));
            put("ref_model_adapters", json!(a));
            if let Some(bits) = plan.quant_bits() {
                put("ref_model_quantization_bit", json!(bits));
            }
        }
    }
    if let Some(bits) = plan.quant_bits() {
        put("quantization_bit", json!(bits));
        put("quantization_method", json!("bnb"));
        if bits == 4 {
            put("quantization_type", json!("nf4"));
            put("double_quantization", json!(true));
        }
    }
    // method
    let stage = match (cfg.method_config(), plan.shape) {
        (MethodConfig::Sft(_), Shape::Text) => "pt",
        (MethodConfig::Sft(_), _) => "sft",
        (MethodConfig::Dpo(_), _) => "dpo",
        (MethodConfig::Kto(_), _) => "kto",
        // Refused by `shape`: LLaMA-Factory has no GRPO stage.
        (MethodConfig::Grpo(_), _) => "grpo",
    };
    put("stage", json!(stage));
    put("do_train", json!(true));
    put("finetuning_type", json!("lora"));
    put("lora_rank", json!(cfg.lora.r));
    let alpha = cfg.lora.alpha;
    if alpha.fract() != 0.0 {
        unmapped.push(Unmapped::new(
            "lora.alpha",
            format!("{alpha}: LLaMA-Factory's lora_alpha takes a whole number; rounded"),
        ));
    }
    put("lora_alpha", json!(alpha.round() as i64));
    put("lora_dropout", number(cfg.lora.dropout));
    put(
        "lora_target",
        json!(plan
            .lora_targets()
            .map_or("all".to_string(), |m| m.join(","))),
    );
    if cfg.lora.use_rslora {
        put("use_rslora", json!(true));
    }
    match cfg.method_config() {
        MethodConfig::Sft(_) | MethodConfig::Grpo(_) => {}
        MethodConfig::Dpo(dpo) => {
            put("pref_beta", number(dpo.beta));
            put("pref_loss", json!(dpo.loss.to_string()));
            if dpo.loss == PrefLoss::Simpo {
                put("simpo_gamma", number(dpo.simpo_gamma));
            }
            if dpo.label_smoothing > 0.0 {
                put("dpo_label_smoothing", number(dpo.label_smoothing));
            }
            if let Some(alpha) = dpo.rpo_alpha {
                // The SFT term on the chosen replies.
                put("pref_ftx", number(alpha));
            }
            if dpo.precompute_ref {
                unmapped.push(Unmapped::new(
                    "dpo.precompute_ref",
                    "LLaMA-Factory computes the reference log-probs during training",
                ));
            }
        }
        MethodConfig::Kto(kto) => {
            put("pref_beta", number(kto.beta));
            put("kto_chosen_weight", number(kto.desirable_weight));
            put("kto_rejected_weight", number(kto.undesirable_weight));
            if kto.precompute_ref {
                unmapped.push(Unmapped::new(
                    "kto.precompute_ref",
                    "LLaMA-Factory computes the reference log-probs during training",
                ));
            }
        }
    }
    if let Sharding::Zero(_) = plan.launch.sharding {
        put("deepspeed", json!(super::launch::DEEPSPEED));
    }
    // dataset
    put("dataset", json!(TRAIN_NAME));
    if plan.has_eval {
        put("eval_dataset", json!(EVAL_NAME));
    }
    put("dataset_dir", json!("data"));
    match template_name(&plan.model, cfg) {
        Some(name) => put("template", json!(name)),
        None => unmapped.push(Unmapped::new(
            "model.template",
            "LLaMA-Factory names its templates; no `template` is set, so it parses the tokenizer's chat template",
        )),
    }
    if plan.template_file.is_some() {
        unmapped.push(Unmapped::new(
            "model.template",
            "LLaMA-Factory takes a template name, not a Jinja file; chat_template.jinja holds the run's",
        ));
    }
    if let Some(v) = d
        .template_kwargs
        .get("enable_thinking")
        .and_then(Value::as_bool)
    {
        put("enable_thinking", json!(v));
    }
    if d.template_kwargs.keys().any(|k| k != "enable_thinking") {
        unmapped.push(Unmapped::new(
            "data.template_kwargs",
            "only enable_thinking has a LLaMA-Factory equivalent",
        ));
    }
    put("cutoff_len", json!(d.max_seq_len));
    if cfg.method_config().sft().is_some() && plan.shape != Shape::Text {
        put("packing", json!(d.packing));
        if d.packing {
            // Packing without attention across examples, as tunelab packs.
            put("neat_packing", json!(true));
            put("flash_attn", json!("fa2"));
        }
        match d.train_on {
            TrainOn::All => put("train_on_prompt", json!(true)),
            TrainOn::LastAssistant => put("mask_history", json!(true)),
            TrainOn::Assistant => {}
            TrainOn::Answers => unmapped.push(Unmapped::new(
                "data.train_on",
                "answers: LLaMA-Factory trains the assistant's reasoning too",
            )),
        }
    }
    if t.method.is_preference() {
        unmapped.push(Unmapped::new(
            "data.max_prompt_len",
            format!(
                "{}: LLaMA-Factory's cutoff_len {} bounds prompt and completion together",
                d.max_prompt_len, d.max_seq_len
            ),
        ));
    }
    if d.length_policy == LengthPolicy::Drop {
        unmapped.push(Unmapped::new(
            "data.length_policy",
            "drop: LLaMA-Factory truncates to cutoff_len",
        ));
    }
    // output
    put("output_dir", json!(OUTPUT_DIR));
    put("logging_steps", json!(1));
    put("save_steps", json!(t.save_every.max(1)));
    if t.keep_checkpoints > 0 {
        put("save_total_limit", json!(t.keep_checkpoints));
    }
    put("overwrite_output_dir", json!(true));
    put(
        "report_to",
        match t.report_to.is_empty() {
            true => json!("none"),
            false => json!(t
                .report_to
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()),
        },
    );
    // train
    put("per_device_train_batch_size", json!(plan.per_device_batch));
    put("gradient_accumulation_steps", json!(plan.grad_accum));
    put("learning_rate", number(t.lr));
    match t.max_steps {
        Some(s) => put("max_steps", json!(s)),
        None => put("num_train_epochs", number(t.epochs)),
    }
    put("lr_scheduler_type", json!(plan.scheduler()));
    match plan.warmup() {
        Warmup::Ratio(r) => put("warmup_ratio", number(r)),
        Warmup::Steps(s) => put("warmup_steps", json!(s)),
    }
    put("optim", json!("adamw_torch"));
    put("weight_decay", number(t.weight_decay));
    put("max_grad_norm", number(t.max_grad_norm));
    put("seed", json!(t.seed));
    match plan.precision() {
        Precision::Bf16 => put("bf16", json!(true)),
        Precision::Fp16 => put("fp16", json!(true)),
        Precision::Fp32 => {}
    }
    if !t.gradient_checkpointing || plan.fsdp_checkpointing() {
        put("disable_gradient_checkpointing", json!(true));
    }
    put("ddp_timeout", json!(180000000));
    // eval
    if plan.has_eval {
        put("per_device_eval_batch_size", json!(plan.per_device_batch));
        put("eval_strategy", json!("steps"));
        put("eval_steps", json!(t.eval_every.max(1)));
    }
    c
}

/// `config.yaml`, `data/dataset_info.json` and the launch commands.
pub fn files(plan: &Plan) -> Result<ToolFiles, ScaleoutError> {
    let mut unmapped = Vec::new();
    let c = config(plan, &mut unmapped);
    let text = format!(
        "# {} as a LLaMA-Factory experiment, written by `tunelab export-config`.\n# Run from this folder: llamafactory-cli train config.yaml\n{}",
        plan.cfg.name.as_deref().unwrap_or("run"),
        super::yaml::to_string(&Value::Object(c))
    );
    let mut info = Map::new();
    info.insert(
        TRAIN_NAME.into(),
        entry(plan, "train.jsonl", &plan.train_keys),
    );
    if plan.has_eval {
        info.insert(EVAL_NAME.into(), entry(plan, "test.jsonl", &plan.eval_keys));
    }
    let info = serde_json::to_string_pretty(&Value::Object(info)).unwrap_or_default() + "\n";
    let command = match plan.launch.sharding {
        Sharding::Fsdp => format!(
            "accelerate launch --config_file {}{} -m llamafactory.launcher config.yaml",
            super::launch::ACCELERATE,
            super::launch::multinode_args(plan)
                .map(|a| format!(" {a}"))
                .unwrap_or_default()
        ),
        _ if plan.launch.nodes > 1 => format!(
            "FORCE_TORCHRUN=1 NNODES={} NODE_RANK=\"$NODE_RANK\" MASTER_ADDR=\"$MASTER_ADDR\" MASTER_PORT=\"$MASTER_PORT\" NPROC_PER_NODE={} llamafactory-cli train config.yaml",
            plan.launch.nodes,
            plan.launch.gpus.max(1)
        ),
        _ if plan.launch.distributed() => format!(
            "FORCE_TORCHRUN=1 NNODES=1 NPROC_PER_NODE={} llamafactory-cli train config.yaml",
            plan.launch.gpus.max(1)
        ),
        _ => "llamafactory-cli train config.yaml".into(),
    };
    Ok(ToolFiles {
        files: vec![
            ("config.yaml".into(), text),
            ("data/dataset_info.json".into(), info),
            super::run_script(plan, "a LLaMA-Factory experiment", &command),
        ],
        commands: vec!["bash run.sh".into(), command],
        unmapped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_3_without_an_image_processor_takes_the_text_template() {
        let cfg = RunConfig::minimal("m", "d");
        assert_eq!(template_name("google/gemma-3-1b-it", &cfg), Some("gemma"));
        assert_eq!(template_name("google/gemma-3-4b-it", &cfg), Some("gemma3"));
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("tiny-gemma3");
        std::fs::create_dir_all(&folder).unwrap();
        let spec = folder.to_str().unwrap();
        assert_eq!(template_name(spec, &cfg), Some("gemma"));
        std::fs::write(folder.join("preprocessor_config.json"), "{}").unwrap();
        assert_eq!(template_name(spec, &cfg), Some("gemma3"));
    }
}
