//! Axolotl: the run as `config.yml` (Axolotl's input config, checked against its own
//! pydantic model by `tests/reference/check_axolotl_config.py`). SFT data is OpenAI
//! `messages` through the `chat_template` loader, preference pairs go through
//! `chat_template.default` (DPO, IPO, SimPO) or `chat_template.argilla` (ORPO), and rated
//! completions are rendered to text here, since Axolotl's KTO loaders take text.

use super::{launch, number, Plan, Precision, ScaleoutError, Shape, Sharding, ToolFiles, Unmapped};
use super::{Warmup, EVAL_FILE, OUTPUT_DIR, TRAIN_FILE};
use crate::config::{MethodConfig, PrefLoss, RunConfig};
use crate::data::Kind;
use crate::template::{LengthPolicy, TrainOn};
use serde_json::{json, Map, Value};

/// The layout Axolotl's loader for the method reads.
pub fn shape(cfg: &RunConfig, kind: Kind) -> Result<Shape, ScaleoutError> {
    Ok(match cfg.method_config() {
        MethodConfig::Sft(_) if kind == Kind::Text => Shape::Text,
        MethodConfig::Sft(s) if s.train_on == TrainOn::LastAssistant => Shape::LastTurnWeighted,
        MethodConfig::Sft(_) => Shape::Messages,
        MethodConfig::Dpo(dpo) if dpo.loss == PrefLoss::Orpo => Shape::OrpoConversations,
        MethodConfig::Dpo(_) => Shape::Preference,
        MethodConfig::Kto(_) => Shape::KtoRendered,
        MethodConfig::Grpo(_) => {
            return Err(super::grpo_unsupported(
                "Axolotl's GRPO (`rl: grpo`) imports its reward functions and dataset transforms from a Python module of its own layout, which this export does not write",
            ))
        }
    })
}

/// One `datasets` / `test_datasets` entry.
fn dataset(plan: &Plan, path: &str) -> Value {
    let mut d = Map::new();
    d.insert("path".into(), json!(path));
    match plan.shape {
        Shape::Text => {
            d.insert("ds_type".into(), json!("json"));
            d.insert("type".into(), json!("completion"));
            d.insert("field".into(), json!("text"));
        }
        Shape::Messages | Shape::LastTurnWeighted => {
            d.insert("ds_type".into(), json!("json"));
            d.insert("type".into(), json!("chat_template"));
            d.insert("field_messages".into(), json!("messages"));
            d.insert(
                "message_property_mappings".into(),
                json!({"role": "role", "content": "content"}),
            );
            d.insert("roles_to_train".into(), json!(["assistant"]));
            d.insert("train_on_eos".into(), json!("turn"));
            // Per-message weights (0 or 1) override the roles, as in tunelab.
            d.insert("message_field_training".into(), json!("weight"));
        }
        Shape::Preference => {
            d.insert("split".into(), json!("train"));
            d.insert("type".into(), json!("chat_template.default"));
            d.insert("field_messages".into(), json!("prompt"));
            d.insert("field_chosen".into(), json!("chosen"));
            d.insert("field_rejected".into(), json!("rejected"));
        }
        Shape::OrpoConversations => {
            d.insert("split".into(), json!("train"));
            d.insert("type".into(), json!("chat_template.argilla"));
        }
        // Already the prompt, completion and label KTOTrainer reads: no transform.
        _ => {
            d.insert("split".into(), json!("train"));
        }
    }
    Value::Object(d)
}

/// The whole `config.yml` as a map, in Axolotl's documentation order.
pub fn config(plan: &Plan, unmapped: &mut Vec<Unmapped>) -> Map<String, Value> {
    let cfg = plan.cfg;
    let t = &cfg.train;
    let d = &cfg.data;
    let mut c = Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.into(), v);
    };
    put("base_model", json!(plan.model));
    match plan.quant_bits() {
        Some(8) => put("load_in_8bit", json!(true)),
        Some(_) => put("load_in_4bit", json!(true)),
        None => {}
    }
    match &plan.template_file {
        Some(f) => {
            put("chat_template", json!("jinja"));
            put("chat_template_jinja", json!(f));
        }
        None => put("chat_template", json!("tokenizer_default")),
    }
    if !d.template_kwargs.is_empty() {
        put(
            "chat_template_kwargs",
            Value::Object(d.template_kwargs.clone()),
        );
    }
    match cfg.method_config() {
        MethodConfig::Sft(_) | MethodConfig::Grpo(_) => {}
        MethodConfig::Dpo(_) => {
            let rl = match cfg.dpo.loss {
                PrefLoss::Simpo => "simpo",
                PrefLoss::Orpo => "orpo",
                PrefLoss::Sigmoid | PrefLoss::Hinge | PrefLoss::Ipo => "dpo",
            };
            put("rl", json!(rl));
            if cfg.dpo.loss == PrefLoss::Orpo {
                // Axolotl hands orpo_alpha to ORPOConfig's beta (λ).
                put("orpo_alpha", number(cfg.dpo.beta));
            } else {
                put("rl_beta", number(cfg.dpo.beta));
            }
            let base = match cfg.dpo.loss {
                PrefLoss::Hinge => Some("hinge"),
                PrefLoss::Ipo => Some("ipo"),
                PrefLoss::Sigmoid => Some("sigmoid"),
                _ => None,
            };
            match (base, cfg.dpo.rpo_alpha) {
                // RPO: the DPO loss plus α times the NLL of the chosen replies.
                (Some(b), Some(alpha)) => {
                    put("dpo_loss_type", json!([b, "sft"]));
                    put("dpo_loss_weights", json!([1, number(alpha)]));
                }
                (Some(b), None) if b != "sigmoid" => put("dpo_loss_type", json!([b])),
                (None, Some(_)) => unmapped.push(Unmapped::new(
                    "dpo.rpo_alpha",
                    format!(
                        "Axolotl adds the SFT term to the DPO losses only, not to {}",
                        cfg.dpo.loss
                    ),
                )),
                _ => {}
            }
            if cfg.dpo.loss == PrefLoss::Simpo {
                put("simpo_gamma", number(cfg.dpo.simpo_gamma));
            }
            if cfg.dpo.label_smoothing > 0.0 {
                put("dpo_label_smoothing", number(cfg.dpo.label_smoothing));
            }
            if cfg.dpo.precompute_ref {
                put("precompute_ref_log_probs", json!(true));
            }
            put("max_prompt_len", json!(d.max_prompt_len));
        }
        MethodConfig::Kto(_) => {
            put("rl", json!("kto"));
            put("rl_beta", number(cfg.kto.beta));
            put("kto_desirable_weight", number(cfg.kto.desirable_weight));
            put("kto_undesirable_weight", number(cfg.kto.undesirable_weight));
            // KTOTrainer needs the label and KL columns the collator would drop.
            put("remove_unused_columns", json!(false));
            if cfg.kto.precompute_ref {
                put("precompute_ref_log_probs", json!(true));
            }
            put("max_prompt_len", json!(d.max_prompt_len));
        }
    }
    put("datasets", json!([dataset(plan, TRAIN_FILE)]));
    if plan.has_eval {
        put("test_datasets", json!([dataset(plan, EVAL_FILE)]));
    }
    put("val_set_size", json!(0.0));
    put("dataset_prepared_path", json!("last_run_prepared"));
    put("output_dir", json!(format!("./{OUTPUT_DIR}")));
    put("sequence_len", json!(d.max_seq_len));
    put(
        "excess_length_strategy",
        json!(match d.length_policy {
            LengthPolicy::Truncate => "truncate",
            LengthPolicy::Drop => "drop",
        }),
    );
    if cfg.method_config().sft().is_some() {
        put("sample_packing", json!(d.packing));
        if d.packing {
            put("eval_sample_packing", json!(false));
            // Varlen attention keeps packed examples apart, as tunelab's packing does.
            put("attn_implementation", json!("flash_attention_2"));
        }
        put("train_on_inputs", json!(d.train_on == TrainOn::All));
        if d.train_on == TrainOn::Answers {
            unmapped.push(Unmapped::new(
                "data.train_on",
                "answers: Axolotl's roles_to_train trains the assistant's reasoning too",
            ));
        }
    }
    put(
        "adapter",
        json!(if plan.quant_bits() == Some(4) {
            "qlora"
        } else {
            "lora"
        }),
    );
    if let Some(a) = &plan.init_adapter {
        put("lora_model_dir", json!(a));
        unmapped.push(Unmapped::new(
            &format!("{}.init_adapter", t.method),
            "Axolotl continues training the adapter in init_adapter/, but its reference model is the base (adapter off), not a frozen copy of that adapter",
        ));
    }
    put("lora_r", json!(cfg.lora.r));
    put("lora_alpha", number(cfg.lora.alpha));
    put("lora_dropout", number(cfg.lora.dropout));
    match plan.lora_targets() {
        Some(m) => put("lora_target_modules", json!(m)),
        None => put("lora_target_linear", json!(true)),
    }
    if cfg.lora.use_rslora {
        put("peft_use_rslora", json!(true));
    }
    put("gradient_accumulation_steps", json!(plan.grad_accum));
    put("micro_batch_size", json!(plan.per_device_batch));
    match t.max_steps {
        Some(s) => put("max_steps", json!(s)),
        None => put("num_epochs", number(t.epochs)),
    }
    put("optimizer", json!("adamw_torch"));
    put("lr_scheduler", json!(plan.scheduler()));
    put("learning_rate", number(t.lr));
    match plan.warmup() {
        Warmup::Ratio(r) => put("warmup_ratio", number(r)),
        Warmup::Steps(s) => put("warmup_steps", json!(s)),
    }
    put("weight_decay", number(t.weight_decay));
    put("max_grad_norm", number(t.max_grad_norm));
    match plan.precision() {
        Precision::Bf16 => {
            put("bf16", json!(true));
            put("fp16", json!(false));
        }
        Precision::Fp16 => {
            put("bf16", json!(false));
            put("fp16", json!(true));
        }
        Precision::Fp32 => {
            put("bf16", json!(false));
            put("fp16", json!(false));
        }
    }
    put("tf32", json!(false));
    put(
        "gradient_checkpointing",
        json!(t.gradient_checkpointing && !plan.fsdp_checkpointing()),
    );
    put("logging_steps", json!(1));
    // `train.report_to`: Axolotl's switches for the same trackers (the server from
    // `MLFLOW_TRACKING_URI` in the environment).
    use crate::config::Tracker;
    if t.report_to.contains(&Tracker::Tensorboard) {
        put("use_tensorboard", json!(true));
    }
    if t.report_to.contains(&Tracker::Mlflow) {
        put("use_mlflow", json!(true));
    }
    if plan.has_eval {
        put("eval_steps", json!(t.eval_every.max(1)));
    }
    put("save_steps", json!(t.save_every.max(1)));
    if t.keep_checkpoints > 0 {
        put("save_total_limit", json!(t.keep_checkpoints));
    }
    put("seed", json!(t.seed));
    match plan.launch.sharding {
        Sharding::Zero(_) => put("deepspeed", json!(launch::DEEPSPEED)),
        Sharding::Fsdp => {
            put("fsdp_version", json!(2));
            let mut f = Map::new();
            f.insert("offload_params".into(), json!(false));
            // Rank-0-only loading deadlocks with bitsandbytes quantization under FSDP2.
            f.insert(
                "cpu_ram_efficient_loading".into(),
                json!(plan.quant_bits().is_none()),
            );
            f.insert("auto_wrap_policy".into(), json!("TRANSFORMER_BASED_WRAP"));
            if let Some(layer) = plan.decoder_layer() {
                f.insert("transformer_layer_cls_to_wrap".into(), json!(layer));
            }
            f.insert("state_dict_type".into(), json!("FULL_STATE_DICT"));
            f.insert("reshard_after_forward".into(), json!(true));
            f.insert(
                "activation_checkpointing".into(),
                json!(plan.fsdp_checkpointing()),
            );
            put("fsdp_config", Value::Object(f));
        }
        Sharding::None => {}
    }
    c
}

/// `config.yml` and the launch commands.
pub fn files(plan: &Plan) -> Result<ToolFiles, ScaleoutError> {
    let mut unmapped = Vec::new();
    let c = config(plan, &mut unmapped);
    let text = format!(
        "# {} as an Axolotl experiment, written by `tunelab export-config`.\n# Run from this folder: axolotl train config.yml\n{}",
        plan.cfg.name.as_deref().unwrap_or("run"),
        super::yaml::to_string(&Value::Object(c))
    );
    let launch = if let Some(multi) = super::launch::multinode_args(plan) {
        format!("axolotl train config.yml --launcher accelerate -- {multi}")
    } else if plan.launch.gpus > 1 {
        format!(
            "axolotl train config.yml --launcher accelerate -- --num_processes {}",
            plan.launch.gpus
        )
    } else {
        "axolotl train config.yml".into()
    };
    let mut commands = vec!["bash run.sh".to_string()];
    if plan.shape != Shape::Text && plan.cfg.method_config().sft().is_some() {
        commands.push(
            "axolotl preprocess config.yml   # optional: tokenize once, check the masks".into(),
        );
    }
    commands.push(launch.clone());
    Ok(ToolFiles {
        files: vec![
            ("config.yml".into(), text),
            super::run_script(plan, "an Axolotl experiment", &launch),
        ],
        commands,
        unmapped,
    })
}
