//! TRL: the run as a `trl sft|dpo|kto|grpo` command line (TRL 1.16's CLI, which launches
//! itself through `accelerate`), in `run.sh`. The data is a local dataset folder (`data/`,
//! whose `train.jsonl` and `test.jsonl` `datasets` reads as the train and test splits). A
//! GRPO run's rewards go beside it as `tunelab_rewards.py` (`trl_rewards`), which
//! `--reward_funcs` imports from the folder. `tests/reference/check_trl_command.py` checks
//! every flag against `trl … --help`.

use super::trl_rewards::{self, RewardModule};
use super::{
    launch, number, Plan, Precision, ScaleoutError, Shape, ToolFiles, Unmapped, Warmup, OUTPUT_DIR,
};
use crate::config::{GrpoSection, MethodConfig, PrefLoss, RunConfig};
use crate::data::Kind;
use crate::template::TrainOn;

/// The layout TRL's trainer for the method reads.
pub fn shape(cfg: &RunConfig, kind: Kind) -> Result<Shape, ScaleoutError> {
    Ok(match cfg.method_config() {
        MethodConfig::Sft(_) if kind == Kind::Text => Shape::Text,
        // Every `train_on` through `{% generation %}` markers (`masks`), which fall back to
        // prompt-completion data when they cannot be made.
        MethodConfig::Sft(_) => Shape::Messages,
        MethodConfig::Dpo(dpo) => {
            if matches!(dpo.loss, PrefLoss::Simpo | PrefLoss::Orpo) {
                return Err(ScaleoutError::Unsupported(format!(
                    "dpo.loss {}: `trl dpo` (TRL 1.16) has no {} loss (it moved out of DPOTrainer); export to axolotl or llamafactory instead",
                    dpo.loss, dpo.loss
                )));
            }
            Shape::Preference
        }
        MethodConfig::Kto(_) => Shape::KtoPromptCompletion,
        MethodConfig::Grpo(g) => {
            // Refused before any file is written when no reward can be carried.
            trl_rewards::check(g)?;
            Shape::PromptOnly
        }
    })
}

/// One argument: a flag and its values (none for a bare switch).
type Arg = (&'static str, Vec<String>);

fn arg(flag: &'static str, value: impl ToString) -> Arg {
    (flag, vec![value.to_string()])
}

fn num(x: f64) -> String {
    number(x).to_string()
}

/// The `trl` arguments, in the order `trl … --help` lists their groups. `rewards` is a GRPO
/// run's reward module (`None` for the other methods).
pub fn args(plan: &Plan, rewards: Option<&RewardModule>, unmapped: &mut Vec<Unmapped>) -> Vec<Arg> {
    let cfg = plan.cfg;
    let t = &cfg.train;
    let mut a: Vec<Arg> = vec![
        arg("--dataset_name", "data"),
        arg("--dataset_train_split", "train"),
    ];
    if plan.has_eval {
        a.push(arg("--dataset_test_split", "test"));
    }
    a.push(arg("--output_dir", OUTPUT_DIR));
    a.push(arg("--per_device_train_batch_size", plan.per_device_batch));
    match t.max_steps {
        Some(s) => a.push(arg("--max_steps", s)),
        None => a.push(arg("--num_train_epochs", num(t.epochs))),
    }
    a.push(arg("--learning_rate", num(t.lr)));
    a.push(arg("--lr_scheduler_type", plan.scheduler()));
    match plan.warmup() {
        Warmup::Ratio(r) => a.push(arg("--warmup_steps", num(r))),
        Warmup::Steps(s) => a.push(arg("--warmup_steps", s)),
    }
    a.push(arg("--optim", "adamw_torch"));
    a.push(arg("--weight_decay", num(t.weight_decay)));
    a.push(arg("--gradient_accumulation_steps", plan.grad_accum));
    a.push(arg("--max_grad_norm", num(t.max_grad_norm)));
    match plan.precision() {
        Precision::Bf16 => a.push(arg("--bf16", "true")),
        Precision::Fp16 => {
            a.push(arg("--bf16", "false"));
            a.push(arg("--fp16", "true"));
        }
        // TRL 1.16 turns bf16 on unless told otherwise.
        Precision::Fp32 => a.push(arg("--bf16", "false")),
    }
    a.push(arg(
        "--gradient_checkpointing",
        t.gradient_checkpointing && !plan.fsdp_checkpointing(),
    ));
    a.push(arg("--logging_steps", 1));
    // The same trackers (transformers' names are tunelab's); their settings travel in the
    // environment (`MLFLOW_TRACKING_URI`).
    a.push(match t.report_to.is_empty() {
        true => arg("--report_to", "none"),
        false => (
            "--report_to",
            t.report_to.iter().map(|r| r.to_string()).collect(),
        ),
    });
    // `train.eval_every: 0` turns evaluation off in tunelab; the held-out file stays out of
    // training all the same.
    if plan.has_eval && t.eval_every > 0 {
        a.push(arg("--eval_strategy", "steps"));
        a.push(arg("--eval_steps", t.eval_every));
        a.push(arg("--per_device_eval_batch_size", eval_batch(plan)));
    }
    a.push(arg("--save_strategy", "steps"));
    a.push(arg("--save_steps", t.save_every.max(1)));
    if t.keep_checkpoints > 0 {
        a.push(arg("--save_total_limit", t.keep_checkpoints));
    }
    a.push(arg("--seed", t.seed));
    match cfg.method_config() {
        MethodConfig::Sft(_) => sft_args(plan, &mut a, unmapped),
        MethodConfig::Dpo(_) => dpo_args(plan, &mut a, unmapped),
        MethodConfig::Grpo(g) => {
            if let Some(r) = rewards {
                grpo_args(plan, g, r, &mut a, unmapped);
            }
        }
        MethodConfig::Kto(kto) => {
            a.push(arg("--max_length", cfg.data.max_seq_len));
            a.push(arg("--beta", num(kto.beta)));
            a.push(arg("--desirable_weight", num(kto.desirable_weight)));
            a.push(arg("--undesirable_weight", num(kto.undesirable_weight)));
            if kto.precompute_ref {
                a.push(arg("--precompute_ref_log_probs", "true"));
            }
            preference_unmapped(plan, "kto", unmapped);
        }
    }
    a.push(arg("--model_name_or_path", &plan.model));
    a.push(arg(
        "--dtype",
        match plan.precision() {
            Precision::Bf16 => "bfloat16",
            Precision::Fp16 => "float16",
            Precision::Fp32 => "float32",
        },
    ));
    a.push(arg("--use_peft", "true"));
    a.push(arg("--lora_r", cfg.lora.r));
    let alpha = cfg.lora.alpha;
    if alpha.fract() != 0.0 {
        unmapped.push(Unmapped::new(
            "lora.alpha",
            format!("{alpha}: TRL's --lora_alpha takes a whole number; rounded"),
        ));
    }
    a.push(arg("--lora_alpha", alpha.round() as i64));
    a.push(arg("--lora_dropout", num(cfg.lora.dropout)));
    match plan.lora_targets() {
        Some(t) => a.push(("--lora_target_modules", t.to_vec())),
        None => a.push(arg("--lora_target_modules", "all-linear")),
    }
    if cfg.lora.use_rslora {
        a.push(arg("--use_rslora", "true"));
    }
    match plan.quant_bits() {
        Some(4) => {
            a.push(arg("--load_in_4bit", "true"));
            a.push(arg("--bnb_4bit_quant_type", "nf4"));
            a.push(arg("--use_bnb_nested_quant", "true"));
            if matches!(
                plan.launch.sharding,
                super::Sharding::Zero(3) | super::Sharding::Fsdp
            ) {
                // Sharded QLoRA needs the 4-bit weights stored in the compute dtype.
                a.push(arg(
                    "--bnb_4bit_quant_storage",
                    match plan.precision() {
                        Precision::Fp16 => "float16",
                        Precision::Fp32 => "float32",
                        Precision::Bf16 => "bfloat16",
                    },
                ));
            }
        }
        Some(_) => a.push(arg("--load_in_8bit", "true")),
        None => {}
    }
    if plan.launch.distributed() {
        a.push(arg("--accelerate_config", launch::ACCELERATE));
    }
    a
}

fn sft_args(plan: &Plan, a: &mut Vec<Arg>, unmapped: &mut Vec<Unmapped>) {
    let d = &plan.cfg.data;
    a.push(arg("--max_length", d.max_seq_len));
    a.push(arg("--packing", d.packing));
    if d.packing {
        // Padding-free packing on FlashAttention keeps packed examples apart, as tunelab's.
        a.push(arg("--attn_implementation", "flash_attention_2"));
    }
    if d.length_policy == crate::template::LengthPolicy::Drop {
        unmapped.push(Unmapped::new(
            "data.length_policy",
            "drop: TRL truncates sequences longer than --max_length",
        ));
    }
    if let Some(f) = &plan.template_file {
        a.push(arg("--chat_template_path", f));
    }
    // The marked template has the template arguments fixed in it.
    if !d.template_kwargs.is_empty() && plan.marked.is_none() && plan.shape != Shape::Text {
        unmapped.push(Unmapped::new(
            "data.template_kwargs",
            "the `trl sft` command line has no chat template arguments; add a `chat_template_kwargs` column to the data or edit the template",
        ));
    }
    match (plan.shape, d.train_on) {
        (Shape::Text, _) => {}
        // The fallback (`masks`), which the export has noted.
        (Shape::PromptCompletion, _) => a.push(arg("--completion_only_loss", "true")),
        (_, TrainOn::All) => a.push(arg("--assistant_only_loss", "false")),
        (_, on) => {
            a.push(arg("--assistant_only_loss", "true"));
            if plan.marked.is_none() {
                let name: &'static str = on.into();
                unmapped.push(Unmapped::new(
                    "data.train_on",
                    format!("{name}: TRL's assistant-only loss needs {{% generation %}} markers in the chat template, and no marked template was written"),
                ));
            }
        }
    }
}

fn dpo_args(plan: &Plan, a: &mut Vec<Arg>, unmapped: &mut Vec<Unmapped>) {
    let cfg = plan.cfg;
    let dpo = &cfg.dpo;
    a.push(arg("--max_length", cfg.data.max_seq_len));
    let loss = match dpo.loss {
        PrefLoss::Ipo => "ipo",
        PrefLoss::Hinge => "hinge",
        _ => "sigmoid",
    };
    match dpo.rpo_alpha {
        // RPO is the DPO loss plus α times the NLL of the chosen replies: TRL's `sft` term.
        Some(alpha) => {
            a.push(("--loss_type", vec![loss.into(), "sft".into()]));
            a.push(("--loss_weights", vec!["1".into(), num(alpha)]));
        }
        None => a.push(arg("--loss_type", loss)),
    }
    a.push(arg("--beta", num(dpo.beta)));
    if dpo.precompute_ref {
        a.push(arg("--precompute_ref_log_probs", "true"));
    }
    if dpo.label_smoothing > 0.0 {
        unmapped.push(Unmapped::new(
            "dpo.label_smoothing",
            format!(
                "{}: TRL 1.16's sigmoid loss no longer reads label_smoothing (its `robust` loss is a different formula)",
                dpo.label_smoothing
            ),
        ));
    }
    preference_unmapped(plan, "dpo", unmapped);
}

fn preference_unmapped(plan: &Plan, section: &str, unmapped: &mut Vec<Unmapped>) {
    let cfg = plan.cfg;
    unmapped.push(Unmapped::new(
        "data.max_prompt_len",
        format!(
            "{}: TRL 1.16 has no separate prompt limit; --max_length {} bounds prompt and completion together",
            cfg.data.max_prompt_len, cfg.data.max_seq_len
        ),
    ));
    start_unmapped(plan, section, unmapped);
}

/// The starting adapter and the chat template, which `trl dpo|kto|grpo` cannot be given.
fn start_unmapped(plan: &Plan, section: &str, unmapped: &mut Vec<Unmapped>) {
    if plan.init_adapter.is_some() {
        unmapped.push(Unmapped::new(
            &format!("{section}.init_adapter"),
            "`trl` starts from a fresh adapter; the starting adapter is in init_adapter/ (merge it into the base, or load it with a script of your own)",
        ));
    }
    if plan.template_file.is_some() {
        unmapped.push(Unmapped::new(
            "model.template",
            format!("`trl {section}` takes the tokenizer's chat template; chat_template.jinja holds the run's (set it as the tokenizer's chat_template)"),
        ));
    }
}

/// A GRPO eval batch TRL accepts: all GPUs' eval batches together must hold whole groups of
/// `num_generations` (tunelab's batch, when it does).
fn eval_batch(plan: &Plan) -> usize {
    match plan.cfg.method_config() {
        MethodConfig::Grpo(g) => {
            let gpus = plan.launch.world();
            if (plan.per_device_batch * gpus).is_multiple_of(g.num_generations) {
                plan.per_device_batch
            } else {
                g.num_generations
            }
        }
        _ => plan.per_device_batch,
    }
}

/// GRPO: the rewards, sampling and the objective, flag for flag (`GrpoSection` has TRL
/// 1.16's `GRPOConfig` names and defaults).
fn grpo_args(
    plan: &Plan,
    g: &GrpoSection,
    rewards: &RewardModule,
    a: &mut Vec<Arg>,
    unmapped: &mut Vec<Unmapped>,
) {
    a.push(("--reward_funcs", rewards.funcs.clone()));
    a.push((
        "--reward_weights",
        rewards.weights.iter().map(|w| num(*w)).collect(),
    ));
    unmapped.extend(rewards.unmapped.iter().cloned());
    a.push(arg("--num_generations", g.num_generations));
    a.push(arg("--max_completion_length", g.max_completion_length));
    a.push(arg("--temperature", num(g.temperature)));
    a.push(arg("--top_p", num(g.top_p)));
    a.push(arg("--top_k", g.top_k));
    a.push(arg("--beta", num(g.beta)));
    a.push(arg("--epsilon", num(g.epsilon)));
    if let Some(high) = g.epsilon_high {
        a.push(arg("--epsilon_high", num(high)));
    }
    a.push(arg("--num_iterations", g.num_iterations));
    let level: &'static str = g.importance_sampling_level.into();
    a.push(arg("--importance_sampling_level", level));
    let scale: &'static str = g.scale_rewards.into();
    a.push(arg("--scale_rewards", scale));
    let loss: &'static str = g.loss_type.into();
    a.push(arg("--loss_type", loss));
    a.push(arg(
        "--mask_truncated_completions",
        g.mask_truncated_completions,
    ));
    a.push(arg("--log_completions", g.log_completions > 0));
    if g.log_completions > 0 {
        a.push(arg("--num_completions_to_print", g.log_completions));
        unmapped.push(Unmapped::new(
            "grpo.log_completions",
            format!(
                "{}: TRL prints that many completions with their rewards at each logging step (with `rich` installed) instead of writing them to the run's events; `tunelab runs import` brings none back",
                g.log_completions
            ),
        ));
    }
    let kwargs = &plan.cfg.data.template_kwargs;
    if !kwargs.is_empty() {
        a.push(arg(
            "--chat_template_kwargs",
            serde_json::Value::Object(kwargs.clone()),
        ));
    }
    grpo_unmapped(plan, unmapped);
}

fn grpo_unmapped(plan: &Plan, unmapped: &mut Vec<Unmapped>) {
    unmapped.push(Unmapped::new(
        "data.max_prompt_len",
        format!(
            "{}: TRL 1.16's GRPO does not truncate prompts (tunelab keeps each prompt's last {} tokens)",
            plan.cfg.data.max_prompt_len, plan.cfg.data.max_prompt_len
        ),
    ));
    if plan.train_keys.contains("tools") || plan.eval_keys.contains("tools") {
        unmapped.push(Unmapped::new(
            "data",
            "records with tools: TRL 1.16's GRPOTrainer renders prompts with the tools the trainer is given, not a column per record; the `tools` column reaches only the reward functions, and the prompts are rendered without it",
        ));
    }
    start_unmapped(plan, "grpo", unmapped);
}

/// The data's columns a command reward hands its program as `metadata`: every column but
/// the prompt and the reference.
fn metadata_columns(plan: &Plan) -> Vec<String> {
    plan.train_keys
        .union(&plan.eval_keys)
        .filter(|k| !matches!(k.as_str(), "prompt" | "reference"))
        .cloned()
        .collect()
}

/// Quotes a value for the shell when it needs it.
fn sh(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

/// `run.sh` and the launch command (and a GRPO run's `tunelab_rewards.py`).
pub fn files(plan: &Plan) -> Result<ToolFiles, ScaleoutError> {
    let mut unmapped = Vec::new();
    let rewards = match plan.cfg.method_config() {
        MethodConfig::Grpo(g) => Some(trl_rewards::module(
            g,
            plan.cfg.name.as_deref().unwrap_or("run"),
            &metadata_columns(plan),
        )?),
        _ => None,
    };
    let args = args(plan, rewards.as_ref(), &mut unmapped);
    let sub = match plan.cfg.method_config() {
        MethodConfig::Sft(_) => "sft",
        MethodConfig::Dpo(_) => "dpo",
        MethodConfig::Kto(_) => "kto",
        MethodConfig::Grpo(_) => "grpo",
    };
    let mut script = format!(
        "#!/usr/bin/env bash\n# {} as a TRL experiment (`trl {sub}`, TRL 1.16), written by `tunelab export-config`.\n# Runs from this folder; extra arguments go to `trl {sub}` (e.g. --use_cpu true for a CPU smoke test).\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\ntrl {sub} \\\n",
        plan.cfg.name.as_deref().unwrap_or("run")
    );
    let mut line = format!("trl {sub}");
    for (flag, values) in &args {
        let vals: Vec<String> = values.iter().map(|v| sh(v)).collect();
        script.push_str(&format!("    {flag} {} \\\n", vals.join(" ")));
        line.push_str(&format!(" {flag} {}", vals.join(" ")));
    }
    if let Some(multi) = super::launch::multinode_args(plan) {
        script.push_str(&format!("    {multi} \\\n"));
        line.push_str(&format!(" {multi}"));
    }
    script.push_str("    \"$@\"\n");
    let mut files = vec![("run.sh".into(), script)];
    if let Some(r) = rewards {
        files.push((trl_rewards::FILE.into(), r.text));
    }
    Ok(ToolFiles {
        files,
        commands: vec!["bash run.sh".into(), line],
        unmapped,
    })
}
