//! `tunelab runs compare`: the base against runs' adapters on the same tasks (the runs'
//! `eval.tasks`, or tasks given here), one table with each difference and its interval.

use super::exit;
use clap::Args;
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use tunelab::config::eval_tasks::{EvalSection, EvalTask};
use tunelab::eval::compare::Comparison;
use tunelab::paths::Paths;
use tunelab::runs;
use tunelab::train::compare::Plan;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Runs (folders or ids), all trained on the same model; each is scored with its final
    /// adapter (its newest checkpoint while it trains).
    #[arg(required_unless_present = "sweep", conflicts_with = "sweep")]
    pub runs: Vec<String>,
    /// A sweep's runs ranked by its metric, from what they recorded (as `runs diff --sweep`):
    /// their differing config fields and each metric's final and best value.
    #[arg(long, value_name = "ID", conflicts_with_all = ["tasks", "generate"])]
    pub sweep: Option<String>,
    /// With --sweep: a metric to show; repeatable, the first ranks (default: the sweep's).
    #[arg(long, value_name = "NAME", requires = "sweep")]
    pub metric: Vec<String>,
    /// A multiple-choice task file or hub id to score (instead of the first run's
    /// `eval.tasks`); repeatable.
    #[arg(long = "task", value_name = "FILE|HUB_ID")]
    pub tasks: Vec<String>,
    /// A dataset to answer and score against its replies, or `held_out` for the first
    /// run's held-out split; repeatable.
    #[arg(long = "generate", value_name = "FILE|held_out")]
    pub generate: Vec<String>,
    /// With --generate: the share of answers matching PATTERN, as NAME; repeatable.
    #[arg(long = "regex", value_name = "NAME=PATTERN")]
    pub regexes: Vec<String>,
    /// At most this many items per task.
    #[arg(long)]
    pub limit: Option<usize>,
    /// With --task: worked examples before each question.
    #[arg(long, default_value_t = 0)]
    pub num_fewshot: usize,
    /// With --generate: tokens per answer.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Print the comparison (every side's scores and answers) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CompareArgs) -> anyhow::Result<ExitCode> {
    if let Some(sweep) = a.sweep {
        return super::diff::run(super::diff::DiffArgs {
            runs: Vec::new(),
            sweep: Some(sweep),
            metric: a.metric,
            minimize: false,
            maximize: false,
            json: a.json,
        });
    }
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(exit::UNUSABLE))
    };
    let data = Paths::resolve().data;
    let mut runs = Vec::with_capacity(a.runs.len());
    for spec in &a.runs {
        match runs::find(spec, &data) {
            Ok(r) => runs.push(r),
            Err(e) => return fail(&e),
        }
    }
    let given = match given_tasks(&a) {
        Ok(g) => g,
        Err(e) => return fail(&e),
    };
    let plan = match Plan::prepare(&runs, given) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let sides = plan.sides() as u64;
    let bar = super::progress::bar(plan.tasks.total_items() as u64 * sides, "items scored");
    let stop = AtomicBool::new(false);
    let mut last = (usize::MAX, String::new(), 0);
    let result = plan.run(
        &mut |p| {
            if let Some(b) = &bar {
                if (p.side, &p.task) != (last.0, &last.1) {
                    last = (p.side, p.task.clone(), 0);
                    b.set_message(format!("side {}/{} · {}", p.side + 1, p.sides, p.task));
                }
                b.inc((p.done - last.2) as u64);
                last.2 = p.done;
            }
        },
        &stop,
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let c = match result {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if a.json {
        println!("{}", json!({"comparison": c, "rows": c.rows()}));
    } else {
        print!("{}", table(&c));
    }
    Ok(ExitCode::from(exit::OK))
}

/// The tasks given as flags, if any.
fn given_tasks(a: &CompareArgs) -> anyhow::Result<Option<EvalSection>> {
    if a.tasks.is_empty() && a.generate.is_empty() {
        if !a.regexes.is_empty() {
            anyhow::bail!("--regex needs --generate");
        }
        return Ok(None);
    }
    let mut regex = std::collections::BTreeMap::new();
    for r in &a.regexes {
        let Some((name, pattern)) = r.split_once('=') else {
            anyhow::bail!("--regex {r:?}: expected NAME=PATTERN");
        };
        regex.insert(name.to_string(), pattern.to_string());
    }
    let mut tasks: Vec<EvalTask> = a
        .tasks
        .iter()
        .map(|t| EvalTask {
            bench: Some(t.clone()),
            num_fewshot: a.num_fewshot,
            limit: a.limit,
            ..Default::default()
        })
        .collect();
    tasks.extend(a.generate.iter().map(|g| EvalTask {
        generate: Some(g.clone()),
        limit: a.limit,
        max_new_tokens: a.max_new_tokens,
        regex: regex.clone(),
        ..Default::default()
    }));
    Ok(Some(EvalSection { tasks }))
}

/// The comparison as text: one row per metric, the base, then each adapter with its
/// difference and the difference's 95% interval.
pub fn table(c: &Comparison) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "model {}", c.model);
    let mut header = format!("{:<36} {:>9}", "METRIC", "base");
    for s in c.sides.iter().skip(1) {
        let _ = write!(header, "  {:>34}", tail(&s.label, 34));
    }
    let _ = writeln!(out, "{header}");
    for row in c.rows() {
        let Some(b) = &row.base else { continue };
        let mut line = format!("{:<36} {:>9}", row.key, num(b.value));
        for cell in &row.adapters {
            let text = match cell {
                Some(x) => {
                    let iv = x
                        .interval
                        .map(|(lo, hi)| format!(" [{}, {}]", signed(lo), signed(hi)))
                        .unwrap_or_default();
                    format!("{} {}{iv}", num(x.value), signed(x.delta))
                }
                None => "-".into(),
            };
            let _ = write!(line, "  {text:>34}");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "(adapter − base, with its 95% interval; BLEU, chrF and lengths have none)"
    );
    out
}

fn num(x: f64) -> String {
    if x.abs() >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn signed(x: f64) -> String {
    if x.abs() >= 10.0 {
        format!("{x:+.2}")
    } else {
        format!("{x:+.3}")
    }
}

/// The last `max` characters of `s`, marked with `…` when cut (a label's end tells runs
/// apart: `…persona/step-40`).
fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let rest: String = s.chars().skip(n + 1 - max).collect();
    format!("…{rest}")
}
