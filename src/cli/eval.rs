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
    #[arg(long, default_value = "model")]
    pub template: String,
    #[arg(long, default_value = "assistant")]
    pub train_on: String,
    #[arg(long, default_value_t = 2048)]
    pub max_seq_len: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Print {"loss", "tokens", "perplexity", "examples"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
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
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
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
