//! `tunelab eval bench`: a multiple-choice task scored by log-likelihood as
//! lm-evaluation-harness scores it, on the base and on each adapter, with the adapters'
//! differences from the base. The work is `tunelab::eval::choice`'s; this shell loads the
//! sides, draws a progress bar and prints.

use crate::cli::exit;
use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::eval::choice::{
    self, BenchOptions, BenchResult, ChoiceError, Specials, Task, TaskOptions,
};

/// The arguments, boxed: `EvalCommand`'s variants stay small (clippy's
/// `large_enum_variant`), however many options `bench` grows.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub args: Box<Bench>,
}

#[derive(Debug, Args)]
pub struct Bench {
    /// A model folder, a .gguf file, or a hub id (org/name).
    #[arg(long)]
    pub model: String,
    /// A PEFT adapter folder, scored beside the base (repeat to compare several).
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    /// The task: a JSON Lines, JSON or Parquet file (question/choices/answer, ARC's or
    /// HellaSwag's layout), a folder of split files, or a hub dataset (org/name, or
    /// org/name:config such as cais/mmlu:anatomy).
    #[arg(long)]
    pub task: String,
    /// Solved examples before each question (drawn as lm-eval draws them).
    #[arg(long, default_value_t = 0)]
    pub num_fewshot: usize,
    /// Score only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The few-shot sampler's seed (lm-eval's default, 1234).
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Items per forward pass (all of an item's choices go in one row).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// The items' split of a folder or hub dataset (default test, else validation, else
    /// train).
    #[arg(long)]
    pub split: Option<String>,
    /// The few-shot examples' split (default dev, else train, else validation, else the
    /// items themselves).
    #[arg(long)]
    pub fewshot_split: Option<String>,
    /// The prompt of every item, `{question}` standing for its question (or context);
    /// default `Question: {question}\nAnswer:` (`\n` is a newline).
    #[arg(long)]
    pub context_template: Option<String>,
    /// Between the prompt and each choice (`\n` is a newline).
    #[arg(long, default_value = " ")]
    pub delimiter: String,
    /// After each few-shot example (`\n` is a newline).
    #[arg(long, default_value = "\\n\\n")]
    pub fewshot_delimiter: String,
    /// Tokens the model sees at most (default its max_position_embeddings).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Force the tokenizer's special tokens (BOS) on or off, as lm-eval's `add_bos_token`
    /// model argument; default: what the tokenizer adds by itself (lm-eval's default).
    #[arg(long, value_name = "true|false")]
    pub add_bos_token: Option<bool>,
    /// Print JSON: one object for the base alone, {"task", "results": [...]} with
    /// adapters.
    #[arg(long)]
    pub json: bool,
    /// Write every item's log-likelihoods, predictions and answer here (JSON Lines).
    #[arg(long, value_name = "OUT")]
    pub per_item: Option<PathBuf>,
}

/// `\n`, `\t` and `\\` as the characters they name (a shell passes them literally).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut cs = s.chars();
    while let Some(c) = cs.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match cs.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// One scored side: the base (`adapter: None`) or an adapter.
struct Side {
    adapter: Option<PathBuf>,
    result: BenchResult,
}

impl Side {
    fn label(&self) -> String {
        match &self.adapter {
            None => "base".into(),
            Some(p) => p.display().to_string(),
        }
    }
}

pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let a = *a.args;
    let fail = |code: u8, e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(code))
    };
    let task_opts = TaskOptions {
        context_template: a.context_template.as_deref().map(unescape),
        split: a.split.clone(),
        fewshot_split: a.fewshot_split.clone(),
        fewshot: a.num_fewshot > 0,
    };
    let task = match choice::load_task(&a.task, &task_opts) {
        Ok(t) => t,
        Err(e) if e.is_data_problem() => return fail(exit::PROBLEMS, &e),
        Err(e) => return fail(exit::UNUSABLE, &e),
    };
    for note in &task.notes {
        eprintln!("{}: {note}", a.task);
    }
    let opts = BenchOptions {
        num_fewshot: a.num_fewshot,
        limit: a.limit,
        seed: a.seed,
        batch_size: a.batch_size.max(1),
        target_delimiter: unescape(&a.delimiter),
        fewshot_delimiter: unescape(&a.fewshot_delimiter),
        max_length: a.max_length,
        specials: match a.add_bos_token {
            None => Specials::Tokenizer,
            Some(true) => Specials::Add,
            Some(false) => Specials::Omit,
        },
    };
    let base = match tunelab::infer::load::base(&a.model, "model", Default::default()) {
        Ok(b) => b,
        Err(e) => return fail(exit::UNUSABLE, &e),
    };
    // Every adapter is loaded before anything is scored: a wrong one fails at once.
    let mut models = Vec::with_capacity(a.adapter.len());
    for path in &a.adapter {
        match base.with_adapter(path) {
            Ok(m) => models.push(m),
            Err(e) => return fail(exit::UNUSABLE, &e),
        }
    }
    let tok = &base.encoder.tokenizer;
    let mut sides = Vec::with_capacity(1 + models.len());
    let runs = std::iter::once((None, &base.model)).chain(
        a.adapter
            .iter()
            .zip(&models)
            .map(|(p, m)| (Some(p.clone()), m)),
    );
    for (adapter, model) in runs {
        let label = adapter
            .as_ref()
            .map_or_else(|| "base".to_string(), |p| p.display().to_string());
        let bar = crate::cli::progress::bar(0, &label);
        let scored = choice::score(model, tok, &task, &opts, |done, total| {
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        });
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        match scored {
            Ok(result) => sides.push(Side { adapter, result }),
            Err(ChoiceError::Compute(e)) => return Err(e).context(format!("scoring {label}")),
            Err(e) => return fail(exit::UNUSABLE, &e),
        }
    }
    if let Some(out) = &a.per_item {
        if let Err(e) = write_per_item(out, &sides) {
            return fail(exit::UNUSABLE, &format!("{}: {e}", out.display()));
        }
    }
    if a.json {
        println!("{}", as_json(&a.model, &task, &sides));
    } else {
        print_table(&task, &sides);
    }
    Ok(ExitCode::from(exit::OK))
}

fn side_json(model: &str, task: &Task, side: &Side, base: Option<&BenchResult>) -> Value {
    let r = &side.result;
    let mut v = json!({
        "task": task.name,
        "acc": r.acc,
        "acc_stderr": r.acc_stderr,
        "acc_norm": r.acc_norm,
        "acc_norm_stderr": r.acc_norm_stderr,
        "items": r.items,
        "num_fewshot": r.num_fewshot,
        "split": task.split,
        "fewshot_split": (r.num_fewshot > 0).then(|| task.fewshot_split.clone()).flatten(),
        "model": model,
        "adapter": side.adapter.as_ref().map(|p| p.display().to_string()),
    });
    if let (Some(b), Some(_)) = (base, &side.adapter) {
        v["delta"] = json!({"acc": r.acc - b.acc, "acc_norm": r.acc_norm - b.acc_norm});
    }
    v
}

/// One object for a single side; `{"task", "results": [base, adapters…]}` for several
/// (each adapter's with its `delta` from the base).
fn as_json(model: &str, task: &Task, sides: &[Side]) -> Value {
    let base = sides.first().map(|s| &s.result);
    let all: Vec<Value> = sides
        .iter()
        .map(|s| side_json(model, task, s, base))
        .collect();
    match <[Value; 1]>::try_from(all) {
        Ok([one]) => one,
        Err(all) => json!({"task": task.name, "results": all}),
    }
}

fn write_per_item(out: &std::path::Path, sides: &[Side]) -> std::io::Result<()> {
    let several = sides.len() > 1;
    let mut text = String::new();
    for side in sides {
        for s in &side.result.per_item {
            let mut v = json!({
                "index": s.index,
                "loglikelihoods": s.loglikelihoods,
                "pred": s.pred,
                "pred_norm": s.pred_norm,
                "answer": s.answer,
            });
            if several {
                v["adapter"] = json!(side.adapter.as_ref().map(|p| p.display().to_string()));
            }
            text.push_str(&v.to_string());
            text.push('\n');
        }
    }
    tunelab::files::write_atomic(out, text.as_bytes())
}

fn pm(x: f64, se: Option<f64>) -> String {
    match se {
        Some(s) => format!("{x:.4} ± {s:.4}"),
        None => format!("{x:.4}"),
    }
}

fn print_table(task: &Task, sides: &[Side]) {
    let Some(first) = sides.first() else { return };
    let r0 = &first.result;
    let split = task
        .split
        .as_deref()
        .map(|s| format!(" · split {s}"))
        .unwrap_or_default();
    let shots = match (&task.fewshot_split, task.fewshot_is_items) {
        (Some(s), false) if r0.num_fewshot > 0 => format!("{}-shot from {s}", r0.num_fewshot),
        _ => format!("{}-shot", r0.num_fewshot),
    };
    println!(
        "{} · {} items · {shots} · {} layout{split}",
        task.name,
        r0.items,
        task.layout.name()
    );
    let width = sides
        .iter()
        .map(|s| s.label().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let several = sides.len() > 1;
    if several {
        println!(
            "{:width$}  {:<16} {:>8}  {:<16} {:>8}",
            "side", "acc", "Δ acc", "acc_norm", "Δ norm"
        );
    } else {
        println!("{:width$}  {:<16}  acc_norm", "side", "acc");
    }
    for s in sides {
        let r = &s.result;
        if !several {
            println!(
                "{:width$}  {:<16}  {}",
                s.label(),
                pm(r.acc, r.acc_stderr),
                pm(r.acc_norm, r.acc_norm_stderr)
            );
            continue;
        }
        let delta = |x: f64, b: f64| {
            if s.adapter.is_some() {
                format!("{:+.4}", x - b)
            } else {
                String::new()
            }
        };
        let line = format!(
            "{:width$}  {:<16} {:>8}  {:<16} {:>8}",
            s.label(),
            pm(r.acc, r.acc_stderr),
            delta(r.acc, r0.acc),
            pm(r.acc_norm, r.acc_norm_stderr),
            delta(r.acc_norm, r0.acc_norm)
        );
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_name_their_characters() {
        assert_eq!(unescape("Q: {question}\\nA:"), "Q: {question}\nA:");
        assert_eq!(unescape("\\n\\n"), "\n\n");
        assert_eq!(unescape("a\\\\n\\x\\"), "a\\n\\x\\");
    }
}
