//! `tunelab serve`: an OpenAI-compatible server for a model and its adapters. The address is
//! the first line on stdout (`listening on http://HOST:PORT`), so scripts and tests can read
//! it when `--port 0` picks the port; requests are logged to the state folder's log.

use super::exit;
use clap::Args;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tunelab::serve::{AdapterSpec, Options, Registry, ServeSpec};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A model folder, a .gguf file, or a hub id (org/name).
    #[arg(long)]
    pub model: String,
    /// A PEFT adapter folder, served as its own model id: NAME=PATH, or PATH (the id is the
    /// folder's name; a run's adapter/ folder goes by the run's name). Repeatable; adapters
    /// share the base's weights.
    #[arg(long = "adapter", value_name = "[NAME=]PATH")]
    pub adapters: Vec<String>,
    /// The base's model id (default: a hub id as given, else the .gguf file's stem or the
    /// folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// The address to listen on; 0.0.0.0 listens on every interface.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Completions generated at once (each on its own thread, sharing the weights); more
    /// wait in the queue. One decode stream already uses every core: on 2 cores one slot
    /// gives 65 tok/s and two give 50 (scripts/bench_serve.py); more slots help on a GPU or
    /// a many-core CPU.
    #[arg(long, default_value_t = 1, value_parser = super::args::at_least_one)]
    pub parallel: usize,
    /// Completions that may wait for a generation slot; past that the server answers 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// max_tokens for requests that leave it out (the context still bounds it).
    #[arg(long, default_value_t = 1024, value_parser = super::args::at_least_one)]
    pub default_max_tokens: usize,
    /// Seconds running requests may go on after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
    /// The chat template: `model` (its own), a built-in (chatml, llama3, mistral, alpaca,
    /// qwen3, gemma, phi4, phi4-mini), or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// An extra chat-template argument, KEY=VALUE (`enable_thinking=false` for Qwen3's
    /// non-thinking mode); repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = super::args::template_kwarg)]
    pub template_kwargs: Vec<(String, serde_json::Value)>,
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let spec = ServeSpec {
        model: a.model.clone(),
        name: a.served_model_name.clone(),
        adapters: a.adapters.iter().map(|s| AdapterSpec::parse(s)).collect(),
        template: a.template.clone(),
        template_kwargs: a.template_kwargs.iter().cloned().collect(),
    };
    let started = std::time::Instant::now();
    let registry = match Registry::load(&spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    eprintln!(
        "loaded {} in {:.1}s",
        registry
            .models
            .iter()
            .map(|m| match &m.adapter {
                Some(p) => format!("{} (adapter {})", m.id, p.display()),
                None => m.id.clone(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    let opts = Options {
        host: a.host,
        port: a.port,
        parallel: a.parallel,
        queue: a.queue,
        default_max_tokens: a.default_max_tokens,
        grace: Duration::from_secs(a.grace),
        ..Options::default()
    };
    let served = tunelab::serve::run(registry, &opts, |addr| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    });
    match served {
        Ok(()) => Ok(ExitCode::from(exit::OK)),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(exit::UNUSABLE))
        }
    }
}
