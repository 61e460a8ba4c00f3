//! `tunelab chat`: one reply to stdout, streamed as it is generated.

use super::exit;
use clap::Args;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use tunelab::infer::sampling::Sampling;
use tunelab::infer::{spawn, GenEvent};

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// A model folder, a .gguf file, or a hub id (org/name).
    #[arg(long)]
    pub model: String,
    /// A PEFT adapter folder.
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    /// The user's message (with --raw, the text to continue).
    #[arg(long)]
    pub prompt: String,
    /// A system message before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// The most tokens to generate (at least 1).
    #[arg(long, default_value_t = 256, value_parser = super::args::at_least_one)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = super::args::non_negative)]
    pub temperature: f64,
    /// Sample only from the K most likely tokens (at least 1).
    #[arg(long, value_name = "K", value_parser = super::args::at_least_one)]
    pub top_k: Option<usize>,
    /// Sample only from the most likely tokens whose probabilities add up to P (above 0, at
    /// most 1).
    #[arg(long, value_name = "P", allow_negative_numbers = true, value_parser = super::args::probability)]
    pub top_p: Option<f64>,
    /// Make tokens already in the text less likely (as transformers' repetition_penalty): 1
    /// is none; above 0.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::args::positive)]
    pub repetition_penalty: f64,
    /// The sampling seed: the same seed gives the same reply.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The chat template: `model` (its own), a built-in (chatml, llama3, mistral, alpaca,
    /// qwen3, gemma, phi4, phi4-mini), or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// An extra chat-template argument, KEY=VALUE (`enable_thinking=false` for Qwen3's
    /// non-thinking mode); repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = super::args::template_kwarg)]
    pub template_kwargs: Vec<(String, serde_json::Value)>,
    /// Print tokens/s to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Continue PROMPT as plain text: no chat template, no system prompt (a completion, as
    /// `llama-completion -p` does; the tokenizer adds BOS when its config says so).
    #[arg(long)]
    pub raw: bool,
}

pub fn run(a: ChatArgs) -> anyhow::Result<ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    let kwargs = a.template_kwargs.iter().cloned().collect();
    let mut base = match tunelab::infer::load::base(&a.model, &a.template, kwargs) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    if let Some(ad) = &a.adapter {
        if let Err(e) = base.attach(ad) {
            return fail(&e);
        }
    }
    let (model, encoder) = (base.model, base.encoder);
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(serde_json::json!({"role": "system", "content": s}));
    }
    messages.push(serde_json::json!({"role": "user", "content": a.prompt}));
    let ids = if a.raw {
        encoder.tokenizer.encode(&a.prompt, false).map(|e| e.ids)
    } else {
        encoder.generation_prompt_ids(&messages)
    };
    let mut ids = match ids {
        Ok(ids) => ids,
        Err(e) => return fail(&e),
    };
    let tok = &encoder.tokenizer;
    if let (true, true, Some(bos)) = (
        a.raw,
        tok.add_bos_token,
        tok.bos_token.as_deref().and_then(|b| tok.token_to_id(b)),
    ) {
        ids.insert(0, bos);
    }
    let cfg = Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        seed: a.seed,
        max_new_tokens: a.max_new_tokens,
    };
    let rx = spawn(Arc::new(model), Arc::new(encoder.tokenizer), ids, cfg);
    let mut out = std::io::stdout();
    for event in rx {
        match event {
            GenEvent::Text(t) => {
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
            }
            GenEvent::Done {
                tokens,
                seconds,
                prompt_tokens,
                ..
            } => {
                let _ = writeln!(out);
                let _ = out.flush();
                if a.stats {
                    eprintln!("{prompt_tokens} prompt tokens, {tokens} generated in {seconds:.2}s ({:.1} tokens/s)", tokens as f64 / seconds.max(1e-9));
                }
            }
            GenEvent::Error(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::PROBLEMS));
            }
        }
    }
    Ok(ExitCode::from(exit::OK))
}
