//! `tunelab eval judge`: an LLM compares two sides (the base model, or the base with an
//! adapter) on every prompt of a dataset, both orders, and the win rate of side A comes out.

use crate::cli::exit;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::eval::judge::{self, Event, JudgeError, Options, Outcome, Report, Side};
use tunelab::synth::{Endpoint, Policy, Provider};

/// `eval judge`'s flags, boxed: they are many, and `tunelab eval`'s subcommand enum (and
/// the top-level one) would otherwise be as large as this one variant.
#[derive(Debug, Args)]
pub struct JudgeArgs {
    #[command(flatten)]
    flags: Box<JudgeFlags>,
}

#[derive(Debug, Args)]
pub struct JudgeFlags {
    /// The model both sides run on: a folder, a .gguf file, or a hub id (org/name).
    #[arg(long)]
    pub model: String,
    /// Side A: `base` (the model alone) or a PEFT adapter folder (a run's `adapter` or
    /// `checkpoints/step-N`; an adapter folder named base is written ./base).
    #[arg(long = "a", value_name = "base|ADAPTER")]
    pub a: Side,
    /// Side B, as --a.
    #[arg(long = "b", value_name = "base|ADAPTER")]
    pub b: Side,
    /// The prompts (any dataset format tunelab reads): each record's messages up to its last
    /// user turn, system message included. Records with the same prompt are judged once.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// The judge's API: anthropic (the Messages API; key from ANTHROPIC_API_KEY) or openai
    /// (any OpenAI-compatible chat-completions server; OPENAI_API_KEY sent when set).
    #[arg(long, value_name = "PROVIDER")]
    pub judge_provider: Provider,
    /// The judge API's base URL (default https://api.anthropic.com, or
    /// https://api.openai.com/v1; a local server: e.g. http://127.0.0.1:8080/v1, no key
    /// needed).
    #[arg(long, value_name = "URL")]
    pub judge_base_url: Option<String>,
    /// The judge model (claude-sonnet-4-5, gpt-4.1, or the name a local server serves).
    #[arg(long, value_name = "NAME")]
    pub judge_model: String,
    /// What the judge weighs: the text, or @FILE (default: helpfulness and correctness, and
    /// the persona an adapter's run was trained on when its data has a system message).
    #[arg(long, value_name = "TEXT|@FILE")]
    pub rubric: Option<String>,
    /// The most tokens each side's answer may have.
    #[arg(long, default_value_t = 256, value_parser = crate::cli::args::at_least_one)]
    pub max_new_tokens: usize,
    /// The sides' sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = crate::cli::args::non_negative)]
    pub temperature: f64,
    /// The sides' sampling seed (with --temperature above 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Judge only the first N distinct prompts.
    #[arg(long, value_name = "N", value_parser = crate::cli::args::at_least_one)]
    pub limit: Option<usize>,
    /// The verdicts file (.jsonl): one line per item as it is judged (prompt, both answers,
    /// both verdicts with the judge's full reply, outcome). Rerun the same command to resume:
    /// items already in it are neither answered nor judged again.
    #[arg(short = 'o', long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The chat template: `model` (its own), a built-in (chatml, llama3, mistral, alpaca,
    /// qwen3, gemma, phi4, phi4-mini), or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// An extra chat-template argument, KEY=VALUE (`enable_thinking=false`); repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = crate::cli::args::template_kwarg)]
    pub template_kwargs: Vec<(String, serde_json::Value)>,
    /// Items judged at once (threads making requests; the answers are generated on one).
    #[arg(long, default_value_t = 4, value_name = "K", value_parser = crate::cli::args::at_least_one)]
    pub concurrency: usize,
    /// Judge requests per minute over all threads; 0 for no limit.
    #[arg(long, default_value_t = 50)]
    pub rpm: u32,
    /// Seconds each judge request may take, connection to the end of the reply.
    #[arg(long, default_value_t = 120.0, value_name = "SECS", value_parser = crate::cli::args::positive)]
    pub timeout: f64,
    /// Tries per judge request (429, 5xx, timeouts are retried with backoff, honouring
    /// Retry-After).
    #[arg(long, default_value_t = 5, value_parser = crate::cli::args::at_least_one)]
    pub attempts: usize,
    /// The token limit of each judge reply.
    #[arg(long, default_value_t = 1024, value_parser = crate::cli::args::at_least_one)]
    pub judge_max_tokens: usize,
    /// The judge's sampling temperature (0: its most likely verdict, as MT-Bench asks).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = crate::cli::args::non_negative)]
    pub judge_temperature: f64,
    /// The first retry's backoff in milliseconds (doubles per retry, with jitter).
    #[arg(long, default_value_t = 1000, hide = true)]
    pub backoff_ms: u64,
}

pub fn run(args: JudgeArgs) -> anyhow::Result<ExitCode> {
    let a = *args.flags;
    let unusable = |m: &dyn std::fmt::Display| {
        eprintln!("error: {m}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    let endpoint = match Endpoint::from_env(
        a.judge_provider,
        a.judge_base_url.clone(),
        Some(a.judge_model.clone()),
    ) {
        Ok(e) => e,
        Err(m) => return unusable(&m),
    };
    if a.judge_model.trim().is_empty() {
        return unusable(&"--judge-model is empty; name the model the judge API serves");
    }
    let rubric = match a.rubric.as_deref().map(read_rubric).transpose() {
        Ok(r) => r,
        Err(m) => return unusable(&m),
    };
    let opts = Options {
        model: a.model.clone(),
        template: a.template.clone(),
        template_kwargs: a.template_kwargs.iter().cloned().collect(),
        a: a.a.clone(),
        b: a.b.clone(),
        data: a.data.clone(),
        limit: a.limit,
        rubric,
        sampling: tunelab::infer::sampling::Sampling {
            temperature: a.temperature,
            seed: a.seed,
            max_new_tokens: a.max_new_tokens,
            ..Default::default()
        },
        judge: endpoint,
        policy: Policy {
            timeout: std::time::Duration::from_secs_f64(a.timeout),
            attempts: u32::try_from(a.attempts).unwrap_or(u32::MAX),
            backoff: std::time::Duration::from_millis(a.backoff_ms),
            rpm: (a.rpm > 0).then_some(a.rpm),
        },
        judge_max_tokens: u32::try_from(a.judge_max_tokens).unwrap_or(u32::MAX),
        judge_temperature: Some(a.judge_temperature),
        concurrency: a.concurrency,
        output: a.output.clone(),
    };
    let bar = crate::cli::progress::bar(0, "");
    let counts = std::sync::Mutex::new([0usize; 4]);
    let observer = |e: &Event| {
        let Some(b) = &bar else { return };
        match e {
            Event::Start {
                items, done, judge, ..
            } => {
                b.set_length(*items as u64);
                b.set_position(*done as u64);
                b.println(format!("judge: {judge}"));
                b.set_message("loading the model");
            }
            Event::Loaded => b.set_message("answering"),
            Event::Answered { .. } => {}
            Event::Judged { outcome, done, .. } => {
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                c[match outcome {
                    Outcome::A => 0,
                    Outcome::B => 1,
                    Outcome::Tie => 2,
                    Outcome::Error => 3,
                }] += 1;
                b.set_position(*done as u64);
                b.set_message(format!(
                    "this run: A {} · B {} · ties {} · errors {}",
                    c[0], c[1], c[2], c[3]
                ));
            }
            Event::Retry { reason, wait } => {
                b.set_message(format!("retrying in {:.1}s: {reason}", wait.as_secs_f64()))
            }
            Event::Failed { index, reason } => {
                b.println(format!("item {index} not judged: {reason}"))
            }
        }
    };
    let result = judge::judge(&opts, &observer);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(e @ JudgeError::Generate { .. }) => return Err(e.into()),
        Err(e) => return unusable(&e),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&report))?);
    } else {
        print_report(&report);
    }
    if let Some(why) = &report.stopped {
        eprintln!("error: stopped: {why}");
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    Ok(ExitCode::from(if report.complete() && report.n > 0 {
        exit::OK
    } else {
        exit::PROBLEMS
    }))
}

/// `--rubric`: the text, or `@FILE`'s.
fn read_rubric(arg: &str) -> Result<String, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("--rubric {path}: {e}"))?,
        None => arg.to_string(),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "--rubric is empty; give what the judge should weigh, inline or as @FILE".into(),
        );
    }
    Ok(text.to_string())
}

/// The report as one object: the result first, then what it was measured on and what the
/// run cost.
fn as_json(r: &Report) -> serde_json::Value {
    let mut v = json!({
        "win_rate": r.win_rate,
        "wins": r.wins,
        "losses": r.losses,
        "ties": r.ties,
        "errors": r.errors,
        "n": r.n,
        "ci95": r.ci95,
        "interval": r.interval,
    });
    if let (Some(obj), Ok(serde_json::Value::Object(rest))) =
        (v.as_object_mut(), serde_json::to_value(r))
    {
        for (k, x) in rest {
            obj.entry(k).or_insert(x);
        }
    }
    v
}

fn print_report(r: &Report) {
    println!("A: {}\nB: {}\njudge: {}", r.a, r.b, r.judge);
    if let Some(p) = r.persona.first() {
        println!("persona in the rubric: {p}");
    }
    match (r.win_rate, r.ci95) {
        (Some(w), Some([lo, hi])) => println!(
            "win rate of A {w:.3} (95% Wilson interval {lo:.3}–{hi:.3}) over n = {}: {} wins, {} losses, {} ties · {} errors",
            r.n, r.wins, r.losses, r.ties, r.errors
        ),
        _ => println!(
            "no item judged: {} errors (unreadable verdicts) · {} items",
            r.errors, r.items
        ),
    }
    let mut line = format!(
        "{} of {} items judged ({} now, {} already there)",
        r.judged, r.items, r.written, r.resumed
    );
    if let Some(out) = &r.output {
        line.push_str(&format!(" · verdicts in {}", out.display()));
    }
    println!("{line}");
    println!(
        "requests {} · retries {} · request errors {} · tokens {} in, {} out · {:.1}s",
        r.requests, r.retries, r.request_errors, r.tokens.input, r.tokens.output, r.seconds
    );
    if r.repaired_bytes > 0 {
        println!(
            "note: cut a torn last line ({} bytes) of the verdicts file before resuming",
            r.repaired_bytes
        );
    }
    for f in &r.failures {
        println!("error: {f}");
    }
    if !r.complete() && r.stopped.is_none() {
        let missing = r.items - r.judged.min(r.items);
        let how = if r.output.is_some() {
            "run the same command again to judge them (verdicts written are kept)"
        } else {
            "give -o FILE to keep verdicts between runs"
        };
        println!(
            "{missing} item{} not judged; {how}",
            if missing == 1 { "" } else { "s" }
        );
    }
}
