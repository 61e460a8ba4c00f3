//! `tunelab eval generate`: answers every prompt of a dataset with a model (and adapter),
//! writes the answers beside their references, and scores them.

use crate::cli::exit;
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::eval::generate::{self, Answer};
use tunelab::eval::metrics::{self, NamedRegex, Pair};
use tunelab::infer::sampling::Sampling;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A model folder, a .gguf file, or a hub id (org/name).
    #[arg(long)]
    pub model: String,
    /// A PEFT adapter folder (refused if it was trained on another model).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The prompts and their references (any format tunelab reads): each record's
    /// conversation up to its last assistant turn is the prompt, that turn the reference.
    #[arg(long)]
    pub data: PathBuf,
    /// Write the answers here as JSON Lines (`prompt`, `prediction`, `reference`, …), for
    /// `tunelab eval score` or a closer look.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Answer at most this many prompts (the first ones).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Tokens per answer at most.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_tokens: u32,
    /// 0 is greedy (the default, so two runs answer alike).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling (with --temperature > 0).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// The sampling seed (with --temperature > 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The chat template: `model` (its own), a built-in name, or a .jinja file.
    #[arg(long, default_value = "model")]
    pub template: String,
    /// An extra chat-template argument, KEY=VALUE (`enable_thinking=false`); repeatable.
    #[arg(long = "template-kwarg", value_name = "KEY=VALUE", value_parser = crate::cli::args::template_kwarg)]
    pub template_kwargs: Vec<(String, serde_json::Value)>,
    /// Also report the share of answers matching PATTERN as NAME (a persona's marker:
    /// `pirate=(?i)\barr\b`); repeatable.
    #[arg(long = "regex", value_name = "NAME=PATTERN")]
    pub regexes: Vec<NamedRegex>,
    /// Print the scores as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    if !(0.0..=100.0).contains(&a.temperature) {
        return fail(&format!(
            "--temperature {}: expected a number from 0 (greedy) to 100",
            a.temperature
        ));
    }
    if a.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return fail(&"--top-p: expected a number in (0, 1]");
    }
    let prompts = match generate::prompts(&a.data, a.limit) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let kwargs = a.template_kwargs.iter().cloned().collect();
    let base = match tunelab::infer::load::base(&a.model, &a.template, kwargs) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let model = match &a.adapter {
        Some(ad) => match base.with_adapter(ad) {
            Ok(m) => m,
            Err(e) => return fail(&e),
        },
        None => base.model.bare_base(),
    };
    let mut sink = match &a.out {
        Some(path) => match PartialFile::create(path) {
            Ok(f) => Some(f),
            Err(e) => return fail(&e),
        },
        None => None,
    };
    let sampling = Sampling {
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        max_new_tokens: a.max_new_tokens as usize,
        ..Default::default()
    };
    let bar = crate::cli::progress::bar(prompts.items.len() as u64, "answered");
    let mut write_error = None;
    let answers = generate::answer_all(
        &model,
        &base.encoder,
        &a.data,
        &prompts.items,
        &sampling,
        |answer| {
            if let Some(b) = &bar {
                b.inc(1);
            }
            if let Some(f) = sink.as_mut() {
                if let Err(e) = f.line(answer) {
                    write_error = Some(e);
                    return false;
                }
            }
            true
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(e) = write_error {
        return fail(&e);
    }
    let answers = answers?;
    if let Some(f) = sink {
        if let Err(e) = f.finish() {
            return fail(&e);
        }
    }
    let pairs: Vec<Pair> = answers
        .iter()
        .map(|x| Pair {
            prediction: x.prediction.clone(),
            reference: x.reference.clone(),
        })
        .collect();
    let scores = metrics::score(&pairs, &a.regexes);
    let speed = generate::tokens_per_second(&answers);
    let cut = answers.iter().filter(|x| !x.stopped).count();
    if a.json {
        let mut v = serde_json::to_value(&scores)?;
        v["model"] = json!(a.model);
        v["adapter"] = json!(a.adapter);
        v["skipped"] = json!(prompts.skipped);
        v["cut_at_max_tokens"] = json!(cut);
        v["tokens_per_second"] = json!(speed);
        println!("{v}");
    } else {
        print!("{}", super::score::table(&scores));
        println!(
            "{} answers ({} cut at --max-new-tokens, {} records without a reference skipped) · {speed:.1} tokens/s",
            answers.len(),
            cut,
            prompts.skipped
        );
        if let Some(out) = &a.out {
            println!("answers in {}", out.display());
        }
    }
    Ok(ExitCode::from(exit::OK))
}

/// The answers file, written line by line into a temporary file beside its final name and
/// published over it when complete ([`tunelab::files`]), so an interrupted run never leaves
/// a half file where a whole one was.
struct PartialFile {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl PartialFile {
    fn create(path: &std::path::Path) -> anyhow::Result<Self> {
        let tmp = tunelab::files::temp_beside(path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(PartialFile {
            path: path.to_path_buf(),
            tmp,
        })
    }

    fn line(&mut self, answer: &Answer) -> anyhow::Result<()> {
        let text = serde_json::to_string(answer)?;
        writeln!(self.tmp.as_file_mut(), "{text}")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }

    fn finish(self) -> anyhow::Result<()> {
        tunelab::files::publish(self.tmp, &self.path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }
}
