//! `tunelab data …`: inspect, validate, convert, stats, formats, synth and pull.

use super::exit;
use super::render;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::convert::{self, ConvertError, OnError};
use tunelab::data::scan::{self, Lengths};
use tunelab::data::{DataError, Dataset, Format, Kind};
use tunelab::synth::{Provider, SeedKind, SynthKind};
use tunelab::template::{
    fit_length, Encoded, Encoder, Fit, LengthPolicy, TemplateChoice, TemplateError, TrainOn,
};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Show the format, kind, counts, lengths and the first records.
    Inspect {
        #[command(flatten)]
        input: Input,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// How many records to show.
        #[arg(short = 'n', long, default_value_t = 3)]
        samples: usize,
    },
    /// Check every record; exit 0 when clean, 1 with problems, 2 when unreadable.
    Validate {
        #[command(flatten)]
        input: Input,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Print at most this many problems (all are counted).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Convert to another format (.json writes an array, .jsonl JSON Lines); exit 1 when a
    /// bad record stops it, 2 when the input is unreadable.
    Convert {
        #[command(flatten)]
        input: Input,
        /// The target format.
        #[arg(long, value_parser = parse_format)]
        to: Format,
        /// The output file; written atomically.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// `fail` writes nothing if any record is bad; `skip` leaves bad records out.
        #[arg(long, default_value = "fail", value_parser = parse_on_error)]
        on_error: OnError,
    },
    /// Per-field length distributions and duplicate records; with --model, token counts too.
    Stats {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        tokens: TokenArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show exactly which tokens a model trains on: the rendered chat template with trained
    /// spans highlighted (⟦marked⟧ when NO_COLOR is set or output is not a terminal).
    Preview {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        tokens: TokenArgs,
        /// How many records to show.
        #[arg(short = 'n', long, default_value_t = 3)]
        samples: usize,
        /// One JSON object per example (input_ids and labels, -100 where masked).
        #[arg(long)]
        json: bool,
    },
    /// List the supported formats and their record shapes.
    Formats,
    /// Write SFT records or preference pairs with a strong model (Anthropic or any
    /// OpenAI-compatible server) from seed topics or prompts and a persona. Appends to a
    /// .jsonl output and resumes where a killed run stopped; exit 0 when the output holds -n
    /// records, 1 when some could not be made, 2 when the input or the provider is unusable.
    Synth(SynthArgs),
    /// Download a Hugging Face dataset's data files (.parquet, .jsonl, .json) through the hub
    /// cache into a folder, then inspect them. Offline (HF_HUB_OFFLINE=1, or no network) it
    /// uses the cached snapshot.
    Pull {
        /// The dataset, OWNER/NAME.
        id: String,
        /// Only this split's files (train, test, validation, …); default every data file.
        #[arg(long)]
        split: Option<String>,
        /// A branch, tag or commit (default main).
        #[arg(long)]
        revision: Option<String>,
        /// The folder the files go into (their repository paths kept).
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Hard-link the cached files instead of copying them (an in-place edit then
        /// changes the cache too).
        #[arg(long)]
        link: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

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

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A model or tokenizer folder (tokenizer.json, tokenizer_config.json).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The chat template: `model` (its own), a built-in (chatml, llama3, mistral, alpaca, qwen3,
    /// gemma, phi4, phi4-mini), or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// Which tokens are trained: assistant, answers (assistant turns without their reasoning),
    /// last_assistant or all.
    #[arg(long, default_value = "assistant", value_parser = parse_train_on)]
    pub train_on: TrainOn,
    /// The sequence length to check examples against.
    #[arg(long, default_value_t = 2048)]
    pub max_seq_len: usize,
    /// What happens to longer examples: truncate or drop.
    #[arg(long, default_value = "truncate", value_parser = parse_length_policy)]
    pub length_policy: LengthPolicy,
    /// Preference pairs: prompts keep their last this many tokens (completions are cut to
    /// --max-seq-len), as `data.max_prompt_len` does in training.
    #[arg(long, default_value_t = 512)]
    pub max_prompt_len: usize,
    /// Tool calls and definitions the template cannot render: template (fail), json (as
    /// <tool_call> text) or drop (leave the records out).
    #[arg(long, default_value = "template")]
    pub tool_format: tunelab::template::ToolFormat,
    /// An extra chat-template argument, KEY=VALUE with VALUE as JSON or plain text
    /// (`enable_thinking=false`), as `data.template_kwargs` passes it; repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = super::args::template_kwarg)]
    pub template_kwargs: Vec<(String, serde_json::Value)>,
}

fn parse_train_on(s: &str) -> Result<TrainOn, String> {
    s.parse()
}

fn parse_length_policy(s: &str) -> Result<LengthPolicy, String> {
    s.parse()
}

impl TokenArgs {
    fn encoder(&self) -> Option<Result<Encoder, TemplateError>> {
        let model = self.model.as_ref()?;
        let tok = match tunelab::model::source::load_tokenizer(model) {
            Ok(t) => t,
            Err(e) => return Some(Err(TemplateError::NoTemplate(e.to_string()))),
        };
        Some(
            Encoder::new(tok, &TemplateChoice::parse(&self.template), self.train_on).map(|e| {
                e.with_tool_format(self.tool_format)
                    .with_template_kwargs(self.template_kwargs.iter().cloned().collect())
            }),
        )
    }
}

#[derive(Debug, Args)]
pub struct Input {
    /// A .json, .jsonl or .parquet dataset file.
    pub file: PathBuf,
    /// The format: `auto` detects it from the first records.
    #[arg(long, default_value = "auto", value_parser = parse_format_or_auto)]
    pub format: FormatChoice,
}

/// `auto`, or a named format.
#[derive(Debug, Clone, Copy)]
pub struct FormatChoice(pub Option<Format>);

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_format_or_auto(s: &str) -> Result<FormatChoice, String> {
    if s == "auto" {
        Ok(FormatChoice(None))
    } else {
        s.parse().map(|f| FormatChoice(Some(f)))
    }
}

fn parse_on_error(s: &str) -> Result<OnError, String> {
    s.parse()
}

pub fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Inspect {
            input,
            json,
            samples,
        } => inspect(&input, json, samples),
        DataCommand::Validate { input, json, limit } => validate(&input, json, limit),
        DataCommand::Convert {
            input,
            to,
            output,
            on_error,
        } => convert_cmd(&input, to, &output, on_error),
        DataCommand::Stats {
            input,
            tokens,
            json,
        } => stats(&input, &tokens, json),
        DataCommand::Preview {
            input,
            tokens,
            samples,
            json,
        } => preview(&input, &tokens, samples, json),
        DataCommand::Synth(args) => synth(args),
        DataCommand::Pull {
            id,
            split,
            revision,
            output,
            link,
            json,
        } => pull(id, split, revision, output, link, json),
        DataCommand::Formats => {
            for f in Format::all() {
                println!("{:<20} {:<11} {}", f.name(), f.kind().as_str(), f.shape());
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}

fn open(input: &Input) -> Result<Dataset, DataError> {
    Dataset::open(&input.file, input.format.0)
}

/// Prints a file-level error and returns the "unusable" exit code.
fn unusable(e: &DataError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(exit::UNUSABLE)
}

fn summary_json(l: &Lengths) -> Value {
    serde_json::to_value(l.summary()).unwrap_or(Value::Null)
}

fn inspect(input: &Input, as_json: bool, samples: usize) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let s = match scan::scan(&ds, samples) {
        Ok(s) => s,
        Err(e) => return Ok(unusable(&e)),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&inspect_json(&ds, &s))?);
    } else {
        print_inspect(&ds, &s);
    }
    Ok(ExitCode::from(exit::OK))
}

fn inspect_json(ds: &Dataset, s: &scan::Scan) -> Value {
    let roles: serde_json::Map<String, Value> = s
        .roles
        .iter()
        .map(|(r, n)| (r.as_str().to_string(), json!(n)))
        .collect();
    let mut out = json!({
        "file": ds.file.path,
        "container": ds.file.container.name(),
        "bytes": ds.file.bytes,
        "format": ds.format.name(),
        "evidence": ds.evidence,
        "kind": ds.kind().as_str(),
        "records": s.records,
        "valid": s.valid,
        "invalid": s.invalid,
        "roles": roles,
        "turns": summary_json(&s.turns),
        "chars": summary_json(&s.chars),
        "samples": s.samples.iter().map(|(loc, r)| json!({"location": loc.to_string(), "record": r.to_canonical_json()})).collect::<Vec<_>>(),
    });
    if ds.kind() == Kind::Unpaired {
        out["labels"] = json!({"desirable": s.desirable, "undesirable": s.undesirable});
    }
    out
}

fn print_inspect(ds: &Dataset, s: &scan::Scan) {
    println!(
        "file      {} ({}, {})",
        ds.file.path.display(),
        ds.file.container.name(),
        tunelab::units::bytes(ds.file.bytes)
    );
    println!("format    {}  ({})", ds.format, ds.evidence);
    println!("kind      {}", ds.kind());
    println!(
        "records   {} ({} valid, {} with problems)",
        s.records, s.valid, s.invalid
    );
    if ds.kind() == Kind::Unpaired {
        println!(
            "labels    {} desirable (true) · {} undesirable (false): train.method kto learns \
             from both; sft trains only the desirable ones",
            s.desirable, s.undesirable
        );
    }
    if !s.roles.is_empty() {
        let roles: Vec<String> = s.roles.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("roles     {}", roles.join(" · "));
    }
    if ds.kind() != Kind::Text {
        println!("turns     {}", render::lengths(&s.turns));
    }
    println!("chars     {}", render::lengths(&s.chars));
    if let Some(p) = s.problems.first() {
        println!("problems  first: {p}  (run `tunelab data validate` for all)");
    }
    for (loc, r) in &s.samples {
        println!();
        print!("{}", render::record(*loc, r, 400));
    }
}

fn validate(input: &Input, as_json: bool, limit: usize) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let path = ds.file.path.display().to_string();
    let mut records = 0u64;
    let mut bad = 0u64;
    let mut total = 0u64;
    let mut listed = Vec::new();
    let items = match ds.items() {
        Ok(i) => i,
        Err(e) => return Ok(unusable(&e)),
    };
    for item in items {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                // The container broke mid-way: report what was found, then the fatal error.
                for p in &listed {
                    eprintln!("{path}: {p}");
                }
                return Ok(unusable(&e));
            }
        };
        records += 1;
        if let Err(problems) = item.result {
            bad += 1;
            total += problems.len() as u64;
            for p in problems {
                if listed.len() < limit {
                    if !as_json {
                        println!("{path}: {p}");
                    }
                    listed.push(p);
                }
            }
        }
    }
    if as_json {
        let out = json!({
            "file": ds.file.path,
            "format": ds.format.name(),
            "kind": ds.kind().as_str(),
            "records": records,
            "invalid": bad,
            "problems_total": total,
            "problems": listed.iter().map(|p| json!({"location": p.location.to_string(), "field": p.field, "message": p.message})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if bad == 0 {
        println!("{path}: {records} records, all valid ({})", ds.format);
    } else {
        if total as usize > listed.len() {
            println!(
                "… {} more problems not shown (raise --limit)",
                total as usize - listed.len()
            );
        }
        println!(
            "{path}: {bad} of {records} records have problems ({total} problems, {})",
            ds.format
        );
    }
    Ok(ExitCode::from(if bad == 0 {
        exit::OK
    } else {
        exit::PROBLEMS
    }))
}

fn convert_cmd(
    input: &Input,
    to: Format,
    output: &std::path::Path,
    on_error: OnError,
) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let started = std::time::Instant::now();
    let report = match convert::convert(&ds, output, to, on_error) {
        Ok(r) => r,
        Err(ConvertError::Data(e)) => return Ok(unusable(&e)),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::PROBLEMS));
        }
    };
    let secs = started.elapsed().as_secs_f64();
    // A pair written as unpaired data becomes two records.
    let counts = if report.written > report.read {
        format!("{} records read, {} written", report.read, report.written)
    } else {
        format!("{} of {} records written", report.written, report.read)
    };
    eprintln!(
        "{} ({}) → {} ({}): {counts} in {:.2}s ({:.1} MB/s)",
        ds.file.path.display(),
        ds.format,
        output.display(),
        to,
        secs,
        ds.file.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    for (note, n) in report.notes.iter() {
        eprintln!("  note: {note} ({n} records)");
    }
    if report.skipped > 0 {
        eprintln!("  skipped {} records:", report.skipped);
        for p in &report.problems {
            eprintln!("    {}: {p}", ds.file.path.display());
        }
        if report.skipped as usize > report.problems.len() {
            eprintln!("    … and more");
        }
    }
    Ok(ExitCode::from(exit::OK))
}

fn stats(input: &Input, tokens: &TokenArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let encoder = match tokens.encoder().transpose() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    let s = match scan::scan(&ds, 0) {
        Ok(s) => s,
        Err(e) => return Ok(unusable(&e)),
    };
    let token_stats = match &encoder {
        Some(enc) => {
            let limits = tunelab::template::Limits {
                max_seq_len: tokens.max_seq_len,
                max_prompt_len: tokens.max_prompt_len,
                policy: tokens.length_policy,
            };
            match tunelab::template::token_stats(&ds, enc, limits) {
                Ok(t) => Some(t),
                Err(e) => return Ok(unusable(&e)),
            }
        }
        None => None,
    };
    if as_json {
        let fields: serde_json::Map<String, Value> = s
            .fields
            .iter()
            .map(|(n, l)| (n.clone(), summary_json(l)))
            .collect();
        let out = json!({
            "file": ds.file.path,
            "format": ds.format.name(),
            "kind": ds.kind().as_str(),
            "records": s.records,
            "valid": s.valid,
            "invalid": s.invalid,
            "fields": fields,
            "turns": summary_json(&s.turns),
            "chars": summary_json(&s.chars),
            "duplicates": s.duplicates,
            "duplicate_examples": s.duplicate_examples.iter().map(|(d, f)| json!({"duplicate": d.to_string(), "first": f.to_string()})).collect::<Vec<_>>(),
            "tokens": token_stats.as_ref().map(|t| json!({
                "examples": t.examples,
                "errors": t.errors,
                "first_errors": t.first_errors.iter().map(|(l, m)| json!({"location": l.to_string(), "message": m})).collect::<Vec<_>>(),
                "per_example": summary_json(&t.tokens),
                "trained_per_example": summary_json(&t.trained),
                "max_seq_len": t.max_seq_len,
                "max_prompt_len": t.pairs.then_some(t.max_prompt_len),
                "truncated": t.truncated,
                "dropped": t.dropped,
                "tool_records": t.tool_records,
                "tool_format": t.tool_format.to_string(),
                "tool_skipped": t.tool_skipped,
                "tool_failed": t.tool_failed,
                "ignored": t.ignored,
                "seconds": t.seconds,
                "examples_per_s": t.examples_per_s(),
            })),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).context("serialising stats")?
        );
        return Ok(ExitCode::from(exit::OK));
    }
    println!(
        "{} · {} · {} records ({} valid)",
        ds.file.path.display(),
        ds.format,
        s.records,
        s.valid
    );
    println!();
    println!("characters per field");
    let widths = [22, 8, 8, 7, 7, 7, 7, 8];
    let head = ["field", "count", "mean", "min", "p50", "p90", "p99", "max"].map(String::from);
    println!("{}", render::row(&head, &widths));
    let mut all: Vec<(String, &Lengths)> = s.fields.iter().map(|(n, l)| (n.clone(), l)).collect();
    all.push(("record (all text)".into(), &s.chars));
    if ds.kind() != Kind::Text {
        println!();
    }
    for (name, l) in all {
        let sm = l.summary();
        let cells = [
            name,
            sm.count.to_string(),
            format!("{:.1}", sm.mean),
            sm.min.to_string(),
            sm.p50.to_string(),
            sm.p90.to_string(),
            sm.p99.to_string(),
            sm.max.to_string(),
        ];
        println!("{}", render::row(&cells, &widths));
    }
    if ds.kind() != Kind::Text {
        println!();
        println!("messages per record  {}", render::lengths(&s.turns));
    }
    println!();
    println!("record length histogram (characters)");
    let hist = s.chars.histogram(10);
    let peak = hist.iter().map(|b| b.2).max().unwrap_or(1).max(1);
    for (lo, hi, n) in hist {
        let bar = "█".repeat(((n as f64 / peak as f64) * 40.0).round() as usize);
        println!("  {lo:>7}–{hi:<7} {n:>7}  {bar}");
    }
    println!();
    if s.duplicates == 0 {
        println!("duplicates  none");
    } else {
        let ex: Vec<String> = s
            .duplicate_examples
            .iter()
            .take(5)
            .map(|(d, f)| format!("{d} = {f}"))
            .collect();
        println!(
            "duplicates  {} records repeat an earlier one ({})",
            s.duplicates,
            ex.join(", ")
        );
    }
    if let Some(t) = token_stats {
        print_token_stats(&t, tokens);
    }
    Ok(ExitCode::from(exit::OK))
}

fn print_token_stats(t: &tunelab::template::TokenStats, tokens: &TokenArgs) {
    println!();
    println!(
        "tokens ({} examples encoded in {:.2}s, {:.0} examples/s)",
        t.examples,
        t.seconds,
        t.examples_per_s()
    );
    println!("  per example   {}", render::lengths(&t.tokens));
    println!("  trained       {}", render::lengths(&t.trained));
    if t.pairs {
        println!(
            "  > {} tokens  {} pairs would be truncated (prompt kept to its last {} tokens, completions cut), {} dropped (no room for a completion)",
            t.max_seq_len, t.truncated, t.max_prompt_len, t.dropped
        );
    } else {
        let verb = match tokens.length_policy {
            LengthPolicy::Truncate => "truncated",
            LengthPolicy::Drop => "dropped",
        };
        let note = if t.dropped > 0 && tokens.length_policy == LengthPolicy::Truncate {
            format!(" ({} left with no trained token, dropped)", t.dropped)
        } else {
            String::new()
        };
        println!(
            "  > {} tokens  {} examples would be {verb}{note}",
            t.max_seq_len,
            t.truncated + t.dropped
        );
    }
    println!("  token histogram");
    let hist = t.tokens.histogram(10);
    let peak = hist.iter().map(|b| b.2).max().unwrap_or(1).max(1);
    for (lo, hi, n) in hist {
        let bar = "█".repeat(((n as f64 / peak as f64) * 40.0).round() as usize);
        println!("    {lo:>7}–{hi:<7} {n:>7}  {bar}");
    }
    if t.tool_records > 0 {
        let fate = match t.tool_format {
            tunelab::template::ToolFormat::Template if t.tool_failed > 0 => format!(
                "the chat template does not render them: {} fail under tool format template (--tool-format json writes them as <tool_call> text, drop leaves them out)",
                t.tool_failed
            ),
            tunelab::template::ToolFormat::Template => "the chat template renders them".into(),
            tunelab::template::ToolFormat::Json => "tool format json: written as <tool_call> text".into(),
            tunelab::template::ToolFormat::Drop => format!("tool format drop: {} left out", t.tool_skipped),
        };
        println!(
            "  tools         {} records carry tool calls or definitions; {fate}",
            t.tool_records
        );
    }
    for (field, n) in &t.ignored {
        println!("  warning       the chat template leaves out {field} in {n} records");
    }
    if t.errors > 0 {
        println!("  {} records could not be encoded; first:", t.errors);
        for (l, m) in &t.first_errors {
            println!("    {l}: {m}");
        }
    }
}

fn preview(
    input: &Input,
    tokens: &TokenArgs,
    samples: usize,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(encoder) = tokens.encoder() else {
        eprintln!("error: preview needs --model DIR (a folder with tokenizer.json)");
        return Ok(ExitCode::from(exit::UNUSABLE));
    };
    let encoder = match encoder {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    let ds = match open(input) {
        Ok(d) => d,
        Err(e) => return Ok(unusable(&e)),
    };
    let items = match ds.items() {
        Ok(i) => i,
        Err(e) => return Ok(unusable(&e)),
    };
    let color = !as_json && super::tokens::use_color();
    let path = ds.file.path.display().to_string();
    if !as_json {
        match tunelab::template::tool_survey(&ds, &encoder) {
            Ok(t) => {
                if let Some(line) = t.describe(&encoder.template_name(), encoder.tool_format) {
                    println!("tools: {line}\n");
                }
            }
            Err(e) => return Ok(unusable(&e)),
        }
    }
    let mut shown = 0;
    let mut failed = false;
    for item in items {
        if shown >= samples {
            break;
        }
        let item = match item {
            Ok(i) => i,
            Err(e) => return Ok(unusable(&e)),
        };
        let record = match item.result {
            Ok(r) => r,
            Err(problems) => {
                for p in problems {
                    eprintln!("{path}: {p} (skipped)");
                }
                continue;
            }
        };
        shown += 1;
        let encoded = match encoder.encode(&record) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{path}: {}: {e}", item.location);
                failed = true;
                continue;
            }
        };
        match encoded {
            Encoded::Skipped(_) => {
                if as_json {
                    println!(
                        "{}",
                        json!({"location": item.location.to_string(), "skipped": "tool_format drop"})
                    );
                } else {
                    println!(
                        "── {} · left out: it carries tool calls (data.tool_format drop) ──\n",
                        item.location
                    );
                }
            }
            Encoded::Sft(mut ex) => {
                let full_len = ex.len();
                let fit = fit_length(&mut ex, tokens.max_seq_len, tokens.length_policy);
                if as_json {
                    let out = json!({"location": item.location.to_string(), "tokens": ex.len(), "trained": ex.trained(), "input_ids": ex.input_ids, "labels": ex.labels});
                    println!("{out}");
                    continue;
                }
                let fit_note = match fit {
                    Fit::Kept => String::new(),
                    Fit::Truncated => format!(" · truncated to {}", tokens.max_seq_len),
                    Fit::Dropped => format!(" · over {}: would be dropped", tokens.max_seq_len),
                };
                println!(
                    "── {} · {full_len} tokens, {} trained{fit_note} ──",
                    item.location,
                    ex.trained()
                );
                if let tunelab::data::Body::Conversation(c) = &record.body {
                    for i in encoder.dropped_messages(&c.messages, &ex.text) {
                        println!(
                            "warning: the template left out message {i} ({}): its text is not in the rendering",
                            c.messages[i].role
                        );
                    }
                }
                println!("{}", super::tokens::spans(&ex, color));
                println!();
            }
            Encoded::Preference(p) => {
                if as_json {
                    let out = json!({"location": item.location.to_string(), "prompt_ids": p.prompt_ids, "chosen_ids": p.chosen_ids, "rejected_ids": p.rejected_ids});
                    println!("{out}");
                    continue;
                }
                let tok = &encoder.tokenizer;
                println!(
                    "── {} · prompt {} tokens, chosen {}, rejected {} ──",
                    item.location,
                    p.prompt_ids.len(),
                    p.chosen_ids.len(),
                    p.rejected_ids.len()
                );
                let (open, close) = super::tokens::markers(color);
                println!(
                    "prompt    {}",
                    tok.decode(&p.prompt_ids).unwrap_or_default()
                );
                println!(
                    "chosen    {open}{}{close}",
                    tok.decode(&p.chosen_ids).unwrap_or_default()
                );
                println!(
                    "rejected  {open}{}{close}",
                    tok.decode(&p.rejected_ids).unwrap_or_default()
                );
                println!();
            }
            Encoded::Labeled(l) => {
                if as_json {
                    let out = json!({"location": item.location.to_string(), "label": l.desirable, "prompt_ids": l.prompt_ids, "completion_ids": l.completion_ids});
                    println!("{out}");
                    continue;
                }
                let tok = &encoder.tokenizer;
                println!(
                    "── {} · label {} · prompt {} tokens, completion {} ──",
                    item.location,
                    l.desirable,
                    l.prompt_ids.len(),
                    l.completion_ids.len()
                );
                let (open, close) = super::tokens::markers(color);
                println!(
                    "prompt      {}",
                    tok.decode(&l.prompt_ids).unwrap_or_default()
                );
                println!(
                    "completion  {open}{}{close}",
                    tok.decode(&l.completion_ids).unwrap_or_default()
                );
                println!();
            }
        }
    }
    Ok(ExitCode::from(if failed {
        exit::PROBLEMS
    } else {
        exit::OK
    }))
}

fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
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
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        ) {
            b.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
        }
        b
    });
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

fn print_synth_report(r: &tunelab::synth::Report) {
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

fn pull(
    id: String,
    split: Option<String>,
    revision: Option<String>,
    output: PathBuf,
    link: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    use tunelab::data::pull::{self, PullRequest};
    let req = PullRequest {
        id,
        split,
        revision,
        dest: output,
        link,
        progress: !as_json && std::io::stderr().is_terminal(),
    };
    let pulled = match pull::pull(&req) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    if let Some(note) = &pulled.note {
        eprintln!("offline: {note}");
    }
    let mut failed = false;
    let mut files = Vec::new();
    if !as_json {
        let short = &pulled.commit[..pulled.commit.len().min(12)];
        println!(
            "{}@{short}: {} file{} into {}",
            pulled.id,
            pulled.files.len(),
            if pulled.files.len() == 1 { "" } else { "s" },
            req.dest.display()
        );
    }
    for f in &pulled.files {
        let summary = Dataset::open(&f.path, None).and_then(|ds| {
            let s = scan::scan(&ds, 0)?;
            Ok((ds, s))
        });
        match (summary, as_json) {
            (Ok((ds, s)), true) => {
                files.push(json!({"repo_path": f.repo_path, "path": f.path, "bytes": f.bytes, "inspect": inspect_json(&ds, &s)}))
            }
            (Ok((ds, s)), false) => {
                println!();
                print_inspect(&ds, &s);
            }
            (Err(e), true) => {
                failed = true;
                files.push(json!({"repo_path": f.repo_path, "path": f.path, "bytes": f.bytes, "error": e.to_string()}));
            }
            (Err(e), false) => {
                failed = true;
                println!();
                println!("file      {} ({})", f.path.display(), f.repo_path);
                println!("error     {e}");
            }
        }
    }
    if as_json {
        let out = json!({
            "dataset": pulled.id,
            "commit": pulled.commit,
            "offline": pulled.offline,
            "note": pulled.note,
            "files": files,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::from(if failed {
        exit::PROBLEMS
    } else {
        exit::OK
    }))
}
