//! `tunelab eval --grpo`: GRPO's loss on fixed groups of completions, without sampling. Each
//! line of the file is a group: `prompt` (messages, or a string as one user message),
//! `completions` (strings) and `rewards` (numbers, one per completion). The prompt is
//! rendered with the chat template and the generation prompt; a completion's ids are its
//! text's tokens with nothing appended. Prints the on-policy loss, the L2 norm of its LoRA
//! gradient, the KL term and the advantages.

use crate::cli::exit;
use clap::Args;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;
use tunelab::config::{GrpoLoss, GrpoSection, ImportanceLevel, ScaleRewards};
use tunelab::template::{Encoder, TemplateChoice, TrainOn};
use tunelab::train::grpo::{fixed_loss, FixedGroup};

/// GRPO's settings for `eval --grpo` (TRL's defaults).
#[derive(Debug, Args)]
pub struct GrpoArgs {
    /// With --grpo: grpo, bnpo, dr_grpo or dapo (how token losses are averaged).
    #[arg(long, default_value = "dapo")]
    pub loss_type: GrpoLoss,
    /// With --grpo: the ratio is clipped to [1 − ε, 1 + ε_high].
    #[arg(long, default_value_t = 0.2)]
    pub epsilon: f64,
    /// With --grpo: the upper clip's ε (default: --epsilon).
    #[arg(long)]
    pub epsilon_high: Option<f64>,
    /// With --grpo --loss-type dr_grpo: the length the token sum is divided by.
    #[arg(long, default_value_t = 512)]
    pub max_completion_length: usize,
    /// With --grpo: group, batch or none (how rewards become advantages).
    #[arg(long, default_value = "group")]
    pub scale_rewards: ScaleRewards,
    /// With --grpo: token, or sequence (GSPO).
    #[arg(long, default_value = "token")]
    pub importance_sampling_level: ImportanceLevel,
    /// With --grpo: log-probs are taken at this sampling temperature, as TRL takes them.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Take candle's autograd instead of the hand-written backward (the parity tests
    /// compare the two).
    #[arg(long, hide = true)]
    pub autograd: bool,
}

/// The groups of `path`, rendered and tokenized; an unusable line names its number and field.
fn read_groups(path: &Path, encoder: &Encoder) -> Result<Vec<FixedGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |field: &str, what: &str| format!("{}:{}: {field}: {what}", path.display(), i + 1);
        let v: Value =
            serde_json::from_str(line).map_err(|e| at("line", &format!("not JSON ({e})")))?;
        let messages: Vec<Value> = match &v["prompt"] {
            Value::String(s) => vec![json!({"role": "user", "content": s})],
            Value::Array(a) => a.clone(),
            _ => return Err(at("prompt", "expected a list of messages or a string")),
        };
        let text = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let prompt = encoder
            .generation_prompt_ids(&messages)
            .map_err(|e| at("prompt", &e.to_string()))?;
        let Some(completions) = v["completions"].as_array() else {
            return Err(at("completions", "expected a list of strings"));
        };
        let Some(rewards) = v["rewards"].as_array() else {
            return Err(at("rewards", "expected a list of numbers"));
        };
        if rewards.len() != completions.len() || completions.len() < 2 {
            return Err(at(
                "rewards",
                &format!(
                    "expected one number per completion and at least two completions ({} completions, {} rewards)",
                    completions.len(),
                    rewards.len()
                ),
            ));
        }
        let mut ids = Vec::new();
        for (k, c) in completions.iter().enumerate() {
            let s = c
                .as_str()
                .ok_or_else(|| at(&format!("completions[{k}]"), "expected a string"))?;
            let t = encoder
                .tokenizer
                .encode(s, false)
                .map_err(|e| at(&format!("completions[{k}]"), &e.to_string()))?;
            if t.ids.is_empty() {
                return Err(at(&format!("completions[{k}]"), "has no tokens"));
            }
            ids.push(t.ids);
        }
        let rewards = rewards
            .iter()
            .enumerate()
            .map(|(k, r)| {
                r.as_f64()
                    .ok_or_else(|| at(&format!("rewards[{k}]"), "expected a number"))
            })
            .collect::<Result<Vec<f64>, String>>()?;
        if let Some(first) = out.first() {
            let first: &FixedGroup = first;
            if first.completions.len() != ids.len() {
                return Err(at(
                    "completions",
                    &format!(
                        "every group needs the same number of completions (the first has {}, this one {})",
                        first.completions.len(),
                        ids.len()
                    ),
                ));
            }
        }
        out.push(FixedGroup {
            prompt,
            text,
            completions: ids,
            rewards,
        });
    }
    if out.is_empty() {
        return Err(format!("{}: no groups", path.display()));
    }
    Ok(out)
}

/// What `eval --grpo` shares with the other `eval` forms.
pub struct Common<'a> {
    pub model: &'a str,
    pub adapter: Option<&'a Path>,
    pub ref_adapter: Option<&'a Path>,
    pub template: &'a str,
    pub template_kwargs: &'a [(String, Value)],
    pub data: &'a Path,
    pub beta: Option<f64>,
    pub json: bool,
}

pub fn run(g: &GrpoArgs, a: &Common) -> anyhow::Result<ExitCode> {
    let (model_arg, data) = (a.model, a.data);
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    let cfg = GrpoSection {
        loss_type: g.loss_type,
        beta: a.beta.unwrap_or(0.0),
        epsilon: g.epsilon,
        epsilon_high: g.epsilon_high,
        max_completion_length: g.max_completion_length,
        scale_rewards: g.scale_rewards,
        importance_sampling_level: g.importance_sampling_level,
        temperature: g.temperature,
        ..Default::default()
    };
    let mut problems = Vec::new();
    cfg.issues(&mut |p: &str, m: &str| {
        if !p.starts_with("grpo.rewards") {
            problems.push(format!(
                "--{}: {m}",
                p.trim_start_matches("grpo.").replace('_', "-")
            ))
        }
    });
    if let Some(p) = problems.first() {
        return fail(p);
    }
    let (mut model, tok) = match tunelab::model::source::load(model_arg, &candle_core::Device::Cpu)
    {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    if let Some(ad) = a.adapter {
        if let Err(e) = tunelab::model::peft::load(&mut model, ad) {
            return fail(&e);
        }
    }
    let encoder = match Encoder::new(tok, &TemplateChoice::parse(a.template), TrainOn::Assistant) {
        Ok(e) => e.with_template_kwargs(a.template_kwargs.iter().cloned().collect()),
        Err(e) => return fail(&e),
    };
    let groups = match read_groups(data, &encoder) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    let reference = match a.ref_adapter {
        Some(adapter) if cfg.beta != 0.0 => {
            let r = tunelab::train::evaluate::RefAdapter {
                base: model_arg,
                adapter,
            };
            match r.load(&model) {
                Ok(m) => Some(m),
                Err(e) => return fail(&e),
            }
        }
        _ => None,
    };
    let pad = encoder.tokenizer.pad_id();
    let out = fixed_loss(&model, &groups, &cfg, reference.as_ref(), pad, g.autograd)?;
    let completions: usize = groups.iter().map(|g| g.completions.len()).sum();
    if a.json {
        let mut v = json!({
            "loss": out.loss,
            "grad_norm": out.grad_norm,
            "kl": out.kl,
            "advantages": out.advantages,
            "groups": groups.len(),
            "completions": completions,
        });
        for (k, x) in &out.metrics {
            if k != "kl" {
                v[k] = json!(x);
            }
        }
        println!("{v}");
    } else {
        println!(
            "grpo {} loss {:.6} · grad norm {:.6} · kl {} over {} groups of {} completions",
            cfg.loss_type,
            out.loss,
            out.grad_norm,
            out.kl.map_or("-".to_string(), |k| format!("{k:.6}")),
            groups.len(),
            completions / groups.len().max(1)
        );
        let adv: Vec<String> = out.advantages.iter().map(|a| format!("{a:.4}")).collect();
        println!("advantages {}", adv.join(" "));
    }
    Ok(ExitCode::from(exit::OK))
}
