//! `tunelab runs diff`: runs side by side from what they recorded (no model is loaded): the
//! config fields in which they differ and each metric's final and best value, ranked by the
//! first metric. `runs compare` is the other comparison: it scores the base and the runs'
//! adapters on tasks now.

use super::exit;
use clap::Args;
use std::process::ExitCode;
use tunelab::paths::Paths;
use tunelab::runs::{self, RunDir};
use tunelab::sweep::board::{sweep_members, Board};
use tunelab::sweep::mark::value_text;
use tunelab::sweep::Direction;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Runs (folders or ids) to put side by side.
    #[arg(required_unless_present = "sweep", conflicts_with = "sweep")]
    pub runs: Vec<String>,
    /// Every run of this sweep (the id `tunelab sweep` printed).
    #[arg(long, value_name = "ID")]
    pub sweep: Option<String>,
    /// A metric to show (`eval_loss`, `perplexity`, `loss`, or any number on eval events);
    /// repeatable, the first ranks. Default: the sweep's metric, else eval_loss.
    #[arg(long, value_name = "NAME")]
    pub metric: Vec<String>,
    /// Rank lower first (the default for losses).
    #[arg(long, conflicts_with = "maximize")]
    pub minimize: bool,
    /// Rank higher first (the default for accuracies and rewards).
    #[arg(long)]
    pub maximize: bool,
    /// Print the rows as a JSON list (id, dir, state, fields, metrics, sweep).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let data = Paths::resolve().data;
    let runs: Vec<RunDir> = match &a.sweep {
        Some(id) => {
            let found = sweep_members(&runs::runs_root(&data), id);
            if found.is_empty() {
                eprintln!(
                    "error: no runs of sweep {id:?} under {}",
                    runs::runs_root(&data).display()
                );
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
            found
        }
        None => {
            let mut out = Vec::new();
            for spec in &a.runs {
                match runs::find(spec, &data) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(ExitCode::from(exit::UNUSABLE));
                    }
                }
            }
            out
        }
    };
    let mut metrics = a.metric.clone();
    if metrics.is_empty() {
        let first_mark = runs.iter().find_map(tunelab::sweep::SweepMark::read);
        if let Some(m) = first_mark {
            metrics.push(m.metric);
        }
    }
    let direction = if a.maximize {
        Some(Direction::Maximize)
    } else if a.minimize {
        Some(Direction::Minimize)
    } else {
        None
    };
    let board = Board::read(&runs, &metrics, direction);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&board.rows)?);
    } else {
        print!("{}", table(&board, a.sweep.as_deref()));
    }
    Ok(ExitCode::from(exit::OK))
}

fn num(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) => format!("{x:.4}"),
        None => "-".into(),
    }
}

/// The board as text: a header naming the ranking, then a row per run, best first.
fn table(b: &Board, sweep: Option<&str>) -> String {
    use std::fmt::Write;
    let mut head: Vec<String> = vec!["#".into(), "RUN".into(), "STATE".into()];
    head.extend(b.fields.iter().cloned());
    for m in &b.metrics {
        head.push(format!("{m} final"));
        head.push(format!("{m} best (step)"));
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (k, r) in b.rows.iter().enumerate() {
        let mut row = vec![(k + 1).to_string(), r.id.clone(), r.state.clone()];
        row.extend(r.fields.values().map(value_text));
        for m in &b.metrics {
            let o = r.metrics.get(m).copied().unwrap_or_default();
            row.push(num(o.last));
            row.push(match o.best_step {
                Some(s) => format!("{} ({s})", num(o.best)),
                None => num(o.best),
            });
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([head[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}ranked by {} ({}){}",
        sweep.map(|s| format!("sweep {s} · ")).unwrap_or_default(),
        b.metrics[0],
        format!("{:?}", b.direction).to_lowercase(),
        if b.fields.is_empty() {
            " · the configs do not differ"
        } else {
            ""
        }
    );
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(out, "{}", line(&head));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    out
}
