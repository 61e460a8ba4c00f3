//! `tunelab eval` (no subcommand): loss and perplexity of a model (and adapter) on a dataset,
//! or the DPO-family and KTO losses of preference data.

use crate::cli::exit;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::config::{DpoSection, KtoSection, MethodConfig, SftView};
use tunelab::template::{Encoder, TemplateChoice, TrainOn};
use tunelab::train::evaluate::{held_out, EvalData, HeldOut, HeldOutError, RefAdapter};

#[derive(Debug, Args)]
pub struct LossArgs {
    /// A model folder, a .gguf file, or a hub id (org/name).
    #[arg(long, required = true)]
    pub model: Option<String>,
    /// A PEFT adapter folder.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The dataset (any format tunelab reads).
    #[arg(long, required = true)]
    pub data: Option<PathBuf>,
    /// The chat template: `model` (its own), a built-in (chatml, llama3, mistral, alpaca,
    /// qwen3, gemma, phi4, phi4-mini), or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// Which tokens the loss counts: assistant, answers (assistant turns without their
    /// reasoning), last_assistant or all.
    #[arg(long, default_value = "assistant")]
    pub train_on: String,
    /// An extra chat-template argument, KEY=VALUE (`enable_thinking=false`); repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = crate::cli::args::template_kwarg)]
    pub template_kwargs: Vec<(String, serde_json::Value)>,
    /// Examples are cut to this many tokens.
    #[arg(long, default_value_t = 2048)]
    pub max_seq_len: usize,
    /// Examples per forward pass (with --kto, also the blocks KL partners rotate within).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Print {"loss", "tokens", "perplexity", "examples"} as JSON (with --dpo or --kto: the
    /// loss and TRL's reward metrics).
    #[arg(long)]
    pub json: bool,
    /// Rated completions (or pairs, unpaired): the KTO loss, KL point and reward metrics of
    /// the file, no training (`--beta`, `--desirable-weight`, `--undesirable-weight`).
    #[arg(long, conflicts_with = "dpo")]
    pub kto: bool,
    /// With --kto: the weight of the desirable completions' losses (λ_D).
    #[arg(long, default_value_t = 1.0, value_parser = crate::cli::args::positive)]
    pub desirable_weight: f64,
    /// With --kto: the weight of the undesirable completions' losses (λ_U).
    #[arg(long, default_value_t = 1.0, value_parser = crate::cli::args::positive)]
    pub undesirable_weight: f64,
    /// Preference pairs: the DPO-family loss and reward metrics of the file, no training.
    #[arg(long)]
    pub dpo: bool,
    /// With --dpo or --kto: the reference's adapter (default: the base model alone).
    #[arg(long)]
    pub ref_adapter: Option<PathBuf>,
    /// Fixed groups (`prompt` as messages, `completions` as strings, `rewards` as numbers):
    /// GRPO's on-policy loss, the L2 norm of its LoRA gradient, the KL term and the
    /// advantages, without sampling.
    #[arg(long, conflicts_with_all = ["dpo", "kto"])]
    pub grpo: bool,
    #[command(flatten)]
    pub grpo_args: super::grpo::GrpoArgs,
    /// With --dpo: sigmoid, ipo, hinge, simpo or orpo.
    #[arg(long, default_value = "sigmoid")]
    pub loss: tunelab::config::PrefLoss,
    /// With --dpo or --kto: β, how far the policy may move from the reference (λ for orpo;
    /// default 0.1). With --grpo: the KL penalty's weight (default 0: no reference pass).
    #[arg(long)]
    pub beta: Option<f64>,
    /// With --dpo: ε of the conservative loss (sigmoid and simpo).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// With --dpo --loss simpo: the target margin γ.
    #[arg(long, default_value_t = 0.5)]
    pub simpo_gamma: f64,
    /// With --dpo: add this times the SFT loss on the chosen replies (RPO).
    #[arg(long)]
    pub rpo_alpha: Option<f64>,
    /// With --dpo or --kto: prompts keep their last this many tokens.
    #[arg(long, default_value_t = 512)]
    pub max_prompt_len: usize,
}

pub fn run(a: LossArgs) -> anyhow::Result<ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    // Required by clap unless a subcommand is given, so both are here.
    let (Some(model_arg), Some(data_path)) = (a.model.as_deref(), a.data.as_deref()) else {
        return fail(&"--model and --data are required");
    };
    if a.ref_adapter.is_some() && !(a.dpo || a.kto || a.grpo) {
        return fail(&"--ref-adapter needs --dpo, --kto or --grpo");
    }
    if a.grpo {
        let common = super::grpo::Common {
            model: model_arg,
            adapter: a.adapter.as_deref(),
            ref_adapter: a.ref_adapter.as_deref(),
            template: &a.template,
            template_kwargs: &a.template_kwargs,
            data: data_path,
            beta: a.beta,
            json: a.json,
        };
        return super::grpo::run(&a.grpo_args, &common);
    }
    let beta = a.beta.unwrap_or(0.1);
    if beta.is_nan() || beta <= 0.0 {
        return fail(&"--beta must be > 0 with --dpo or --kto");
    }
    let train_on: TrainOn = match a.train_on.parse() {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let (mut model, tok) = match tunelab::model::source::load(model_arg, &candle_core::Device::Cpu)
    {
        Ok(m) => m,
        Err(e) => return fail(&e),
    };
    if let Some(ad) = &a.adapter {
        if let Err(e) = tunelab::model::peft::load(&mut model, ad) {
            return fail(&e);
        }
    }
    let encoder = match Encoder::new(tok, &TemplateChoice::parse(&a.template), train_on) {
        Ok(e) => e.with_template_kwargs(a.template_kwargs.iter().cloned().collect()),
        Err(e) => return fail(&e),
    };
    let dpo = DpoSection {
        loss: a.loss,
        label_smoothing: a.label_smoothing,
        simpo_gamma: a.simpo_gamma,
        rpo_alpha: a.rpo_alpha,
        beta,
        ..Default::default()
    };
    let kto = KtoSection {
        beta,
        desirable_weight: a.desirable_weight,
        undesirable_weight: a.undesirable_weight,
        ..Default::default()
    };
    let method = if a.dpo {
        MethodConfig::Dpo(&dpo)
    } else if a.kto {
        MethodConfig::Kto(&kto)
    } else {
        MethodConfig::Sft(SftView {
            train_on,
            packing: false,
            train_undesirable: false,
        })
    };
    let data = EvalData {
        path: data_path,
        max_seq_len: a.max_seq_len,
        max_prompt_len: a.max_prompt_len,
        batch_size: a.batch_size,
    };
    let reference = a.ref_adapter.as_deref().map(|adapter| RefAdapter {
        base: model_arg,
        adapter,
    });
    let r = match held_out(&model, &encoder, &data, method, reference) {
        Ok(r) => r,
        Err(HeldOutError::Compute(e)) => return Err(e.into()),
        Err(e @ HeldOutError::Eval(_)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::PROBLEMS));
        }
        Err(e) => return fail(&e),
    };
    print(method, &r, a.json);
    Ok(ExitCode::from(exit::OK))
}

/// The result as text or JSON: loss and perplexity (SFT); the loss, the counts and TRL's
/// metrics (DPO, KTO).
fn print(method: MethodConfig, r: &HeldOut, as_json: bool) {
    let m = |key: &str| r.metrics.get(key).copied().unwrap_or(f64::NAN);
    let with_metrics = |mut v: serde_json::Value| {
        for (key, x) in &r.metrics {
            v[key] = json!(x);
        }
        v
    };
    let (n, report) = (r.items, &r.report);
    match method {
        // `eval --grpo` prints its own result (it is not a held-out loss).
        MethodConfig::Grpo(_) => {}
        MethodConfig::Sft(_) if as_json => println!(
            "{}",
            json!({"loss": r.loss, "tokens": r.tokens, "perplexity": r.perplexity(), "examples": n})
        ),
        MethodConfig::Sft(_) => println!(
            "loss {:.6} · perplexity {:.3} · {} trained tokens in {n} examples",
            r.loss,
            r.perplexity(),
            r.tokens
        ),
        MethodConfig::Kto(_) if as_json => println!(
            "{}",
            with_metrics(json!({"loss": r.loss, "examples": n, "desirable": report.desirable,
                "undesirable": report.undesirable, "truncated": report.truncated, "dropped": report.dropped}))
        ),
        MethodConfig::Kto(_) => println!(
            "kto loss {:.6} over {n} completions ({} desirable, {} undesirable) · kl {:.4} · rewards chosen {:.4} rejected {:.4} margins {:.4} · logps chosen {:.3} rejected {:.3}",
            r.loss,
            report.desirable,
            report.undesirable,
            m("kl"),
            m("rewards/chosen"),
            m("rewards/rejected"),
            m("rewards/margins"),
            m("logps/chosen"),
            m("logps/rejected")
        ),
        MethodConfig::Dpo(_) if as_json => println!(
            "{}",
            with_metrics(json!({"loss": r.loss, "pairs": n,
                "truncated": report.truncated, "dropped": report.dropped}))
        ),
        MethodConfig::Dpo(dpo) => println!(
            "{} loss {:.6} over {n} pairs · rewards chosen {:.4} rejected {:.4} margins {:.4} accuracy {:.3} · logps chosen {:.3} rejected {:.3}",
            dpo.loss,
            r.loss,
            m("rewards/chosen"),
            m("rewards/rejected"),
            m("rewards/margins"),
            m("rewards/accuracies"),
            m("logps/chosen"),
            m("logps/rejected")
        ),
    }
}
