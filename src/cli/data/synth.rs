//! `data synth`: synthetic records from a strong model.

use super::input::parse_format;
use crate::cli::exit;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::Format;
use tunelab::synth::{Provider, SeedKind, SynthKind};

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The strong model's API: anthropic (the Messages API; key from ANTHROPIC_API_KEY) or
    /// openai (any OpenAI-compatible chat-completions server: OpenAI, vLLM, llama.cpp,
    /// Ollama, `tunelab serve`; OPENAI_API_KEY sent when set).
    #[arg(long)]
    pub provider: Provider,
    /// The API's base URL (default https://api.anthropic.com, or https://api.openai.com/v1;
    /// a local server: e.g. http://127.0.0.1:8000/v1).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The model (default claude-sonnet-4-5, or gpt-4.1-mini; with --base-url, the first
    /// model the server lists).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// sft (prompt and the persona's answer) or preference (the persona's answer chosen, a
    /// plain or base model's answer rejected).
    #[arg(long, default_value = "sft")]
    pub kind: SynthKind,
    /// Topics or prompts, one per line (a line ending in ? is a prompt), or JSON Lines with a
    /// "prompt" or "topic" field.
    #[arg(long, value_name = "FILE")]
    pub seed_file: PathBuf,
    /// How seed lines are read: auto, topic (the model writes the prompts) or prompt.
    #[arg(long, default_value = "auto")]
    pub seed_kind: SeedKind,
    /// The task description or persona the answers follow: the text, or @FILE.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub persona: String,
    /// Records the output holds at the end (those already there count); seeds are cycled,
    /// each round asking for a new prompt.
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub n: usize,
    /// The output, .jsonl (appended to, one record a line). Turned-away model output goes to
    /// OUT's name with .rejected.jsonl.
    #[arg(short = 'o', long, value_name = "OUT")]
    pub output: PathBuf,
    /// The output format (default openai for sft, preference — TRL's conversational
    /// prompt/chosen/rejected — for preference); any format of `tunelab data formats` that
    /// holds the kind.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Where rejected answers come from (default: the strong model asked for a plain answer;
    /// --rejected-base-url alone means openai, e.g. the base model through `tunelab serve`).
    #[arg(long)]
    pub rejected_provider: Option<Provider>,
    /// The rejected answers' API base URL (as --base-url).
    #[arg(long, value_name = "URL")]
    pub rejected_base_url: Option<String>,
    /// The model that writes the rejected answers (as --model).
    #[arg(long, value_name = "NAME")]
    pub rejected_model: Option<String>,
    /// Requests in flight at once (threads).
    #[arg(long, default_value_t = 4, value_name = "K")]
    pub concurrency: usize,
    /// Requests per minute over all threads; 0 for no limit.
    #[arg(long, default_value_t = 50)]
    pub rpm: u32,
    /// Seconds each request may take, connection to the end of the reply.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub timeout: f64,
    /// Tries per request (429, 5xx, timeouts are retried with backoff, honouring
    /// Retry-After) and per record (turned-away output is asked for again).
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    /// The token limit of each reply; replies cut off at it are turned away.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
    /// Sampling temperature (default: the provider's).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Put the persona into each record as its system message (by default the records have
    /// none, so the persona is learned rather than prompted).
    #[arg(long)]
    pub include_system: bool,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The first retry's backoff in milliseconds (doubles per retry, with jitter).
    #[arg(long, default_value_t = 1000, hide = true)]
    pub backoff_ms: u64,
}

pub(super) fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tunelab::synth::{self, Endpoint, Event, Options, Policy, SynthError};

    let input_error = |m: String| {
        eprintln!("error: {m}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    let strong = match Endpoint::from_env(a.provider, a.base_url.clone(), a.model.clone()) {
        Ok(e) => e,
        Err(m) => return input_error(m),
    };
    let rejected_wanted = a.rejected_provider.is_some()
        || a.rejected_base_url.is_some()
        || a.rejected_model.is_some();
    let rejected = if rejected_wanted {
        let provider = a
            .rejected_provider
            .unwrap_or(if a.rejected_base_url.is_some() {
                Provider::Openai
            } else {
                a.provider
            });
        match Endpoint::from_env(
            provider,
            a.rejected_base_url.clone(),
            a.rejected_model.clone(),
        ) {
            Ok(e) => Some(e),
            Err(m) => return input_error(format!("the rejected provider: {m}")),
        }
    } else {
        None
    };
    if !(a.timeout > 0.0 && a.timeout.is_finite()) {
        return input_error("--timeout must be a positive number of seconds".into());
    }
    let prepared = synth::read_seeds(&a.seed_file, a.seed_kind)
        .and_then(|seeds| synth::persona(&a.persona).map(|p| (seeds, p)));
    let (seeds, persona) = match prepared {
        Ok(x) => x,
        Err(e) => return input_error(e.to_string()),
    };
    let opts = Options {
        kind: a.kind,
        strong,
        rejected,
        seeds,
        persona,
        n: a.n,
        format: a.format.unwrap_or(a.kind.default_format()),
        output: a.output.clone(),
        concurrency: a.concurrency.max(1),
        policy: Policy {
            timeout: std::time::Duration::from_secs_f64(a.timeout),
            attempts: a.attempts.max(1),
            backoff: std::time::Duration::from_millis(a.backoff_ms),
            rpm: (a.rpm > 0).then_some(a.rpm),
        },
        max_tokens: a.max_tokens.max(1),
        temperature: a.temperature,
        include_system: a.include_system,
    };
    let bar = crate::cli::progress::bar(0, "");
    let (retries, rejects, failures) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let observer = |e: &Event| {
        let counters = || {
            format!(
                "retries {} · rejected {} · failed {}",
                retries.load(Ordering::Relaxed),
                rejects.load(Ordering::Relaxed),
                failures.load(Ordering::Relaxed)
            )
        };
        match e {
            Event::Start {
                target,
                done,
                strong,
                rejected,
            } => {
                let line = match rejected {
                    Some(r) => format!("synth: {strong}; rejected answers from {r}"),
                    None => format!("synth: {strong}"),
                };
                match &bar {
                    Some(b) => {
                        b.set_length(*target as u64);
                        b.set_position(*done as u64);
                        b.println(line);
                    }
                    None => eprintln!("{line}"),
                }
            }
            Event::Written { done } => {
                if let Some(b) = &bar {
                    b.set_position(*done as u64);
                }
            }
            Event::Retry { reason, wait } => {
                retries.fetch_add(1, Ordering::Relaxed);
                if let Some(b) = &bar {
                    b.set_message(format!(
                        "{} · retrying in {:.1}s: {reason}",
                        counters(),
                        wait.as_secs_f64()
                    ));
                }
            }
            Event::Rejected { .. } | Event::Duplicate { .. } => {
                if matches!(e, Event::Rejected { .. }) {
                    rejects.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(b) = &bar {
                    b.set_message(counters());
                }
            }
            Event::Failed { reason } => {
                let n = failures.fetch_add(1, Ordering::Relaxed);
                if n < 10 {
                    match &bar {
                        Some(b) => b.println(format!("failed: {reason}")),
                        None => eprintln!("failed: {reason}"),
                    }
                }
                if let Some(b) = &bar {
                    b.set_message(counters());
                }
            }
        }
    };
    let result = synth::synthesize(&opts, &observer);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(e @ SynthError::Input(_)) | Err(e @ SynthError::Io { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_synth_report(&report);
    }
    if let Some(why) = &report.stopped {
        eprintln!("error: stopped: {why}");
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    Ok(ExitCode::from(if report.complete() {
        exit::OK
    } else {
        exit::PROBLEMS
    }))
}

pub(super) fn print_synth_report(r: &tunelab::synth::Report) {
    println!("{}", r.headline());
    let mut line = format!(
        "requests {} · retries {} · request errors {}",
        r.requests, r.retries, r.request_errors
    );
    if r.timeouts > 0 {
        line.push_str(&format!(" ({} timed out)", r.timeouts));
    }
    line.push_str(&format!(
        " · failed {} · duplicates {} · rejected {}",
        r.failed, r.duplicates, r.rejected
    ));
    if r.rejected > 0 {
        line.push_str(&format!(" (logged to {})", r.rejected_log.display()));
    }
    println!("{line}");
    println!(
        "tokens {} in · {} out · {:.1}s",
        r.tokens.input, r.tokens.output, r.seconds
    );
    if r.repaired_bytes > 0 {
        println!(
            "note: cut a torn last line ({} bytes) before resuming",
            r.repaired_bytes
        );
    }
    for e in &r.errors {
        println!("error: {e}");
    }
    if !r.complete() && r.stopped.is_none() {
        let missing = r.target - r.records.min(r.target);
        println!(
            "{missing} record{} missing; run the same command again to make {} (records done are kept)",
            if missing == 1 { "" } else { "s" },
            if missing == 1 { "it" } else { "them" }
        );
    }
}
