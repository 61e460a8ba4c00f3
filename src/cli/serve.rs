//! `tunelab serve`: an OpenAI-compatible server for a model and its adapters. The address is
//! the first line on stdout (`listening on http://HOST:PORT`), so scripts and tests can read
//! it when `--port 0` picks the port; requests are logged to the state folder's log.

use super::exit;
use clap::Args;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tunelab::serve::{AdapterSpec, Keys, Options, Registry, ServeSpec};

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
    /// The address to listen on. Beyond this machine (0.0.0.0 listens on every interface),
    /// give an API key: without one, anyone who can reach the port can use the model.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// An API key clients must send as `Authorization: Bearer KEY` on every route but
    /// /health; repeatable (at least 8 characters). Never logged.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// A file of API keys, one per line (blank lines and # comments skipped). The
    /// TUNELAB_API_KEY environment variable (comma-separated) adds more.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Requests per minute per key (per client address without keys); 0 is no limit. Past
    /// it: 429 with Retry-After.
    #[arg(long, default_value_t = 0)]
    pub requests_per_minute: usize,
    /// The most max_tokens a request may ask for (more is a 400).
    #[arg(long, default_value_t = 4096, value_parser = super::args::at_least_one)]
    pub max_tokens_cap: usize,
    /// The largest request body, in bytes (more is a 413).
    #[arg(long, default_value_t = 16 << 20, value_parser = super::args::at_least_one)]
    pub max_body_bytes: usize,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 256, value_parser = super::args::at_least_one)]
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers before it is closed (a slow
    /// client never holds a slot).
    #[arg(long, default_value_t = 10, value_parser = super::args::at_least_one)]
    pub header_timeout: usize,
    /// Seconds a request's body has to arrive (more is a 408).
    #[arg(long, default_value_t = 30, value_parser = super::args::at_least_one)]
    pub body_timeout: usize,
    /// 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Completions generated at once (each on its own thread, sharing the weights); more
    /// wait in the queue. One decode stream already uses every core: on 2 cores one slot
    /// gives 65 tok/s and two give 50 (scripts/bench_serve.py); more slots help on a GPU or
    /// a many-core CPU.
    #[arg(long, default_value_t = 1, value_parser = super::args::at_least_one)]
    pub parallel: usize,
    /// Completions that may wait for a generation slot; past that the server answers 429
    /// with Retry-After.
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
    let env = std::env::var("TUNELAB_API_KEY").ok();
    let keys = match Keys::gather(&a.api_keys, a.api_key_file.as_deref(), env.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
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
        max_tokens_cap: a.max_tokens_cap,
        grace: Duration::from_secs(a.grace),
        max_body_bytes: a.max_body_bytes,
        max_connections: a.max_connections,
        header_timeout: Duration::from_secs(a.header_timeout as u64),
        body_timeout: Duration::from_secs(a.body_timeout as u64),
        requests_per_minute: a.requests_per_minute,
        keys,
    };
    if opts.keys.is_empty() && opts.beyond_loopback() {
        eprintln!(
            "warning: listening on {} without an API key: anyone who can reach the port can use the model; start with --api-key (or TUNELAB_API_KEY)",
            opts.host
        );
    }
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
