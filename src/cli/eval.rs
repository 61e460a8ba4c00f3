//! `tunelab eval`: loss and perplexity of a model (and adapter) on a dataset.

use super::exit;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::Dataset;
use tunelab::template::{Encoder, TemplateChoice, TrainOn};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A model folder, a .gguf file, or a hub id (org/name).
    #[arg(long)]
    pub model: String,
    /// A PEFT adapter folder.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The dataset (any format tunelab reads).
    #[arg(long)]
    pub data: PathBuf,
    /// The chat template: `model` (its own), a built-in (chatml, llama3, mistral, alpaca,
    /// qwen3, gemma, phi4, phi4-mini), or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// Which tokens the loss counts: assistant, answers (assistant turns without their
    /// reasoning), last_assistant or all.
    #[arg(long, default_value = "assistant")]
    pub train_on: String,
    /// An extra chat-template argument, KEY=VALUE (`enable_thinking=false`); repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = super::args::template_kwarg)]
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
    #[arg(long, default_value_t = 1.0, value_parser = super::args::positive)]
    pub desirable_weight: f64,
    /// With --kto: the weight of the undesirable completions' losses (λ_U).
    #[arg(long, default_value_t = 1.0, value_parser = super::args::positive)]
    pub undesirable_weight: f64,
    /// Preference pairs: the DPO-family loss and reward metrics of the file, no training.
    #[arg(long)]
    pub dpo: bool,
    /// With --dpo or --kto: the reference's adapter (default: the base model alone).
    #[arg(long)]
    pub ref_adapter: Option<PathBuf>,
    /// With --dpo: sigmoid, ipo, hinge, simpo or orpo.
    #[arg(long, default_value = "sigmoid")]
    pub loss: tunelab::config::PrefLoss,
    /// With --dpo or --kto: β, how far the policy may move from the reference (λ for orpo).
    #[arg(long, default_value_t = 0.1, value_parser = super::args::positive)]
    pub beta: f64,
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

pub fn run(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    if a.ref_adapter.is_some() && !(a.dpo || a.kto) {
        return fail(&"--ref-adapter needs --dpo or --kto");
    }
    let train_on: TrainOn = match a.train_on.parse() {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let (mut model, tok) = match tunelab::model::source::load(&a.model, &candle_core::Device::Cpu) {
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
    if a.dpo {
        return preference(&a, model, encoder);
    }
    if a.kto {
        return rated(&a, model, encoder);
    }
    let ds = match Dataset::open(&a.data, None) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let r = match tunelab::eval::evaluate(&model, &encoder, &ds, a.max_seq_len, a.batch_size) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::PROBLEMS));
        }
    };
    if a.json {
        println!(
            "{}",
            json!({"loss": r.loss, "tokens": r.tokens, "perplexity": r.perplexity, "examples": r.examples})
        );
    } else {
        println!(
            "loss {:.6} · perplexity {:.3} · {} trained tokens in {} examples",
            r.loss, r.perplexity, r.tokens, r.examples
        );
    }
    Ok(ExitCode::from(exit::OK))
}

/// `eval --kto`: the rated completions' loss, KL point and metrics under the policy (model +
/// adapter) and the reference (the base, or the base + `--ref-adapter`). KL partners rotate
/// within blocks of `--batch-size` in file order, as TRL pairs them.
fn rated(a: &EvalArgs, model: tunelab::model::Model, encoder: Encoder) -> anyhow::Result<ExitCode> {
    use tunelab::batch::rated::encode_rated;
    use tunelab::train::kto::Kto;
    use tunelab::train::reference::Reference;
    let (examples, report) =
        match encode_rated(&a.data, "auto", &encoder, a.max_prompt_len, a.max_seq_len) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
        };
    let cfg = tunelab::config::KtoSection {
        beta: a.beta,
        desirable_weight: a.desirable_weight,
        undesirable_weight: a.undesirable_weight,
        ..Default::default()
    };
    let n = examples.len();
    let pad = encoder.tokenizer.pad_id();
    let batch = a.batch_size.max(1);
    let mut k = Kto::new(
        Vec::new(),
        examples,
        pad,
        &cfg,
        batch,
        None,
        Reference::Bypass,
        String::new(),
    );
    if let Some(ra) = &a.ref_adapter {
        let (mut r, _) = tunelab::model::source::load(&a.model, &candle_core::Device::Cpu)
            .map_err(anyhow::Error::msg)?;
        if let Err(e) = tunelab::model::peft::load(&mut r, ra) {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
        let items: Vec<usize> = (0..n).collect();
        let mut refs = Vec::with_capacity(n);
        for chunk in items.chunks(batch) {
            refs.extend(k.own_logps(&r, chunk)?);
        }
        k.set_eval_reference(refs);
    }
    let items: Vec<usize> = (0..n).collect();
    let out = k.evaluate_items(&model, &items, batch)?;
    let m = |key: &str| out.metrics.get(key).copied().unwrap_or(f64::NAN);
    if a.json {
        let mut v = json!({"loss": out.loss, "examples": n, "desirable": report.desirable,
            "undesirable": report.undesirable, "truncated": report.truncated, "dropped": report.dropped});
        for (key, x) in &out.metrics {
            v[key] = json!(x);
        }
        println!("{v}");
    } else {
        println!(
            "kto loss {:.6} over {n} completions ({} desirable, {} undesirable) · kl {:.4} · rewards chosen {:.4} rejected {:.4} margins {:.4} · logps chosen {:.3} rejected {:.3}",
            out.loss,
            report.desirable,
            report.undesirable,
            m("kl"),
            m("rewards/chosen"),
            m("rewards/rejected"),
            m("rewards/margins"),
            m("logps/chosen"),
            m("logps/rejected")
        );
    }
    Ok(ExitCode::from(exit::OK))
}

/// `eval --dpo`: the pairs' loss and metrics under the policy (model + adapter) and the
/// reference (the base, or the base + `--ref-adapter`).
fn preference(
    a: &EvalArgs,
    model: tunelab::model::Model,
    encoder: Encoder,
) -> anyhow::Result<ExitCode> {
    use tunelab::batch::pairs::{collate_pairs, encode_pairs, Pair};
    use tunelab::train::dpo::{evaluate_pairs, Dpo, Reference};
    let (pairs, report) =
        match encode_pairs(&a.data, "auto", &encoder, a.max_prompt_len, a.max_seq_len) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
        };
    let cfg = tunelab::config::DpoSection {
        loss: a.loss,
        beta: a.beta,
        label_smoothing: a.label_smoothing,
        simpo_gamma: a.simpo_gamma,
        rpo_alpha: a.rpo_alpha,
        ..Default::default()
    };
    let n = pairs.len();
    let pad = encoder.tokenizer.pad_id();
    let mut d = Dpo::new(
        Vec::new(),
        pairs,
        pad,
        &cfg,
        Reference::Bypass,
        String::new(),
    );
    if a.loss.needs_reference() {
        // The reference: its own model when it has an adapter, else the base alone.
        let refs = match &a.ref_adapter {
            Some(ra) => {
                let (mut r, _) = tunelab::model::source::load(&a.model, &candle_core::Device::Cpu)
                    .map_err(anyhow::Error::msg)?;
                if let Err(e) = tunelab::model::peft::load(&mut r, ra) {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(exit::UNUSABLE));
                }
                let mut out = Vec::with_capacity(n);
                for chunk in d.eval.chunks(a.batch_size.max(1)) {
                    let refs: Vec<&Pair> = chunk.iter().collect();
                    let sums = tunelab::eval::row_logps(&r, &collate_pairs(&refs, pad))?;
                    let k = refs.len();
                    out.extend((0..k).map(|i| (sums[i].0, sums[k + i].0)));
                }
                out
            }
            None => {
                let mut out = Vec::with_capacity(n);
                for chunk in d.eval.chunks(a.batch_size.max(1)) {
                    let refs: Vec<&Pair> = chunk.iter().collect();
                    out.extend(d.reference_logps(&model, &refs)?);
                }
                out
            }
        };
        d.set_eval_reference(refs);
    }
    let items: Vec<usize> = (0..n).collect();
    let out = evaluate_pairs(&d, &model, &items, a.batch_size)?;
    let m = |k: &str| out.metrics.get(k).copied().unwrap_or(f64::NAN);
    if a.json {
        let mut v = json!({"loss": out.loss, "pairs": n,
            "truncated": report.truncated, "dropped": report.dropped});
        for (k, x) in &out.metrics {
            v[k] = json!(x);
        }
        println!("{v}");
    } else {
        println!(
            "{} loss {:.6} over {n} pairs · rewards chosen {:.4} rejected {:.4} margins {:.4} accuracy {:.3} · logps chosen {:.3} rejected {:.3}",
            a.loss,
            out.loss,
            m("rewards/chosen"),
            m("rewards/rejected"),
            m("rewards/margins"),
            m("rewards/accuracies"),
            m("logps/chosen"),
            m("logps/rejected")
        );
    }
    Ok(ExitCode::from(exit::OK))
}
