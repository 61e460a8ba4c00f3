//! `tunelab runs`: list, show, watch and stop runs. Everything here only reads the run
//! directory (stop sends a signal to the trainer's pid from status.json).

use super::exit;
use clap::Subcommand;
use std::process::ExitCode;
use std::time::Duration;
use tunelab::paths::Paths;
use tunelab::runs::{self, read_events, EventKind, RunDir, RunEvent, RunState};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Every run in the workspace: state (`queued`, `running`, `done`, `pruned`, `dead`…),
    /// steps, last loss, best eval loss, duration.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One run: status, checkpoints and its latest events.
    Show {
        /// A run folder or id.
        run: String,
    },
    /// Follow a run's events live until it ends (reattach after a dropped connection); exit
    /// 0 when done, 3 when stopped, 1 when it failed.
    Watch {
        /// A run folder or id.
        run: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 0.5)]
        interval: f64,
    },
    /// Ask a run to stop: it writes a checkpoint and ends `stopped`.
    Stop {
        /// A run folder or id.
        run: String,
        /// Seconds to wait for it to finish stopping (0: do not wait).
        #[arg(long, default_value_t = 60.0)]
        wait: f64,
    },
    /// Loss curves (train, smoothed, eval, learning rate; DPO rewards) of runs as SVG or PNG.
    Plot(super::plot::PlotArgs),
    /// Runs' metrics for other tools: TensorBoard event files rebuilt from events.jsonl
    /// (every scalar of every train and eval event, at its step and time).
    Export {
        /// Write TensorBoard event files (into each run's tensorboard/ folder, or --out).
        #[arg(long, required = true)]
        tensorboard: bool,
        /// A folder to write into instead, one subfolder per run (`tensorboard --logdir
        /// DIR` then shows them side by side).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Run folders or ids.
        #[arg(required = true, value_name = "RUN")]
        runs: Vec<String>,
    },
    /// Bring a finished TRL / Axolotl / LLaMA-Factory run back as a tunelab run.
    Import(super::scaleout::ImportArgs),
    /// The base model against runs' adapters on the same tasks (their `eval.tasks`, or
    /// --task / --generate): each score, its difference from the base and its interval.
    /// (`runs diff` ranks runs by what they recorded instead.)
    Compare(super::compare::CompareArgs),
    /// Runs (or a sweep) side by side from what they recorded: the config fields in which
    /// they differ, each metric's final and best value, best first.
    Diff(super::diff::DiffArgs),
}

/// The run `spec` names (a folder or an id), or the exit code after saying there is none.
fn find(spec: &str) -> Result<RunDir, ExitCode> {
    runs::find(spec, &Paths::resolve().data).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::UNUSABLE)
    })
}

fn fmt_loss(l: Option<f64>) -> String {
    l.map_or("-".into(), |l| format!("{l:.4}"))
}

use tunelab::units::clock as fmt_duration;

pub fn run(cmd: RunsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RunsCommand::Plot(a) => super::plot::run(a),
        RunsCommand::Import(a) => super::scaleout::import(a),
        RunsCommand::Compare(a) => super::compare::run(a),
        // `--tensorboard` is required: the one format so far, named so others can join it.
        RunsCommand::Export { out, runs, .. } => export(out.as_deref(), &runs),
        RunsCommand::Diff(a) => super::diff::run(a),
        RunsCommand::List { json } => {
            let all = runs::list(&runs::runs_root(&Paths::resolve().data));
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::from(exit::OK));
            }
            if all.is_empty() {
                println!("no runs yet; start one with `tunelab train CONFIG`");
            } else {
                println!(
                    "{:<40} {:<9} {:>11} {:>9} {:>9} {:>9}",
                    "RUN", "STATE", "STEP", "LOSS", "BEST EVAL", "TIME"
                );
            }
            for r in all {
                // A live run between steps says what it is doing instead of its state.
                let state = match &r.phase {
                    Some(p) if p.total > 0 => format!("{} {}%", p.name, p.done * 100 / p.total),
                    Some(p) => p.name.clone(),
                    None => r.state_label(),
                };
                println!(
                    "{:<40} {:<9} {:>11} {:>9} {:>9} {:>9}",
                    r.id,
                    state,
                    format!("{}/{}", r.step, r.total_steps),
                    fmt_loss(r.last_loss),
                    fmt_loss(r.best_eval_loss),
                    fmt_duration(r.duration_s)
                );
            }
            Ok(ExitCode::from(exit::OK))
        }
        RunsCommand::Show { run } => {
            let run = match find(&run) {
                Ok(r) => r,
                Err(c) => return Ok(c),
            };
            let s = runs::summarize(&run);
            println!("run        {}", s.id);
            println!("folder     {}", s.dir.display());
            println!("state      {}", s.state_label());
            println!("step       {}/{}", s.step, s.total_steps);
            println!("last loss  {}", fmt_loss(s.last_loss));
            println!("best eval  {}", fmt_loss(s.best_eval_loss));
            println!("duration   {}", fmt_duration(s.duration_s));
            if let Some(p) = &s.phase {
                println!("phase      {}", p.line());
            }
            if let Some(e) = &s.error {
                println!("error      {e}");
            }
            for (step, dir) in tunelab::train::checkpoint::list(&run.checkpoints()) {
                let ok = match tunelab::train::checkpoint::verify(&dir) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("damaged: {e}"),
                };
                println!("checkpoint step-{step} {ok}");
            }
            if run.adapter().is_dir() {
                println!("adapter    {}", run.adapter().display());
            }
            let (events, _) = read_events(&run.events_path(), 0)?;
            print!("{}", task_report(&events));
            for e in events.iter().rev().take(5).rev() {
                println!("event      {}", serde_json::to_string(e)?);
            }
            Ok(ExitCode::from(exit::OK))
        }
        RunsCommand::Watch { run, interval } => {
            let run = match find(&run) {
                Ok(r) => r,
                Err(c) => return Ok(c),
            };
            watch(&run, interval)
        }
        RunsCommand::Stop { run, wait } => {
            let run = match find(&run) {
                Ok(r) => r,
                Err(c) => return Ok(c),
            };
            stop(&run, wait)
        }
    }
}

/// `runs export --tensorboard`: every run named, each on its line; a run that cannot be
/// exported is said and the rest still are.
fn export(out: Option<&std::path::Path>, specs: &[String]) -> anyhow::Result<ExitCode> {
    let mut code = exit::OK;
    for spec in specs {
        let run = match find(spec) {
            Ok(r) => r,
            Err(c) => return Ok(c),
        };
        match tunelab::track::export_tensorboard(&run, out) {
            Ok(x) => println!(
                "{}: {} scalars in {} events → {}",
                run.root.file_name().unwrap_or_default().to_string_lossy(),
                x.scalars,
                x.records,
                x.path.display()
            ),
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::PROBLEMS;
            }
        }
    }
    Ok(ExitCode::from(code))
}

fn print_event(e: &RunEvent) {
    if !matches!(
        e.kind,
        EventKind::CheckpointSkipped { .. }
            | EventKind::Resume { .. }
            | EventKind::Unknown
            | EventKind::Phase(_)
    ) {
        println!("{}", e.kind.describe());
    }
}

/// What `runs watch` shows of the events: each as a line, and the phase in progress as a
/// live line on a terminal (piped, a phase gets one line when it begins, as the trainer
/// writes a few phase events a second).
struct Watcher {
    live: Option<indicatif::ProgressBar>,
    /// The phase last seen, `(step, name)`, so a pipe hears each phase once.
    phase: Option<(u64, String)>,
}

impl Watcher {
    fn new() -> Self {
        Watcher {
            live: super::progress::status_line(),
            phase: None,
        }
    }

    fn show(&mut self, e: &RunEvent) {
        if let EventKind::Phase(p) = &e.kind {
            let key = (p.step, p.name.clone());
            let begins = self.phase.as_ref() != Some(&key);
            self.phase = Some(key);
            match &self.live {
                Some(b) => b.set_message(match p.eta() {
                    Some(eta) => format!("{} · eta {eta:.0}s", p.line()),
                    None => p.line(),
                }),
                None if begins => println!("{}", p.line()),
                None => {}
            }
            return;
        }
        // Anything else ends the phase on screen (a train event: the trainer is stepping).
        if matches!(e.kind, EventKind::Train(_) | EventKind::Eval(_)) {
            self.phase = None;
            if let Some(b) = &self.live {
                b.set_message(String::new());
            }
        }
        match &self.live {
            Some(b) => b.suspend(|| print_event(e)),
            None => print_event(e),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.live {
            b.finish_and_clear();
        }
    }
}

fn watch(run: &RunDir, interval: f64) -> anyhow::Result<ExitCode> {
    let mut offset = 0;
    let mut shown = Watcher::new();
    loop {
        let (events, next) = read_events(&run.events_path(), offset)?;
        offset = next;
        events.iter().for_each(|e| shown.show(e));
        let s = runs::summarize(run);
        if s.orphaned {
            shown.finish();
            println!("the trainer (pid gone) ended without a final state; resume with `tunelab train --resume {}`", s.id);
            return Ok(ExitCode::from(exit::PROBLEMS));
        }
        match s.state {
            Some(st) if st.is_final() => {
                // Events written between the last read and the final status.
                let (events, _) = read_events(&run.events_path(), offset)?;
                events.iter().for_each(|e| shown.show(e));
                shown.finish();
                return Ok(ExitCode::from(match st {
                    RunState::Done | RunState::Pruned => exit::OK,
                    RunState::Stopped => exit::STOPPED,
                    _ => exit::PROBLEMS,
                }));
            }
            _ => std::thread::sleep(Duration::from_secs_f64(interval.max(0.05))),
        }
    }
}

fn stop(run: &RunDir, wait: f64) -> anyhow::Result<ExitCode> {
    if let Ok(s) = run.read_status() {
        if s.state.is_final() {
            println!("already {:?}", s.state);
            return Ok(ExitCode::from(exit::OK));
        }
        if s.state == RunState::Queued && s.pid.is_none() {
            let id = runs::summarize(run).id;
            eprintln!("error: {id} waits in the queue and has not started; take it off with `tunelab queue remove {id}`");
            return Ok(ExitCode::from(exit::PROBLEMS));
        }
    }
    if let Err(e) = runs::request_stop(run) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(exit::PROBLEMS));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(wait.max(0.0));
    while std::time::Instant::now() < deadline {
        if run.read_status().is_ok_and(|s| s.state.is_final()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = run.read_status()?;
    println!("{:?} at step {}", s.state, s.step);
    Ok(ExitCode::from(exit::OK))
}

/// The run's `eval.tasks` at its first evaluation (the base) and its latest, with the
/// change: the judge-free report of what the fine-tune won and what it cost.
fn task_report(events: &[RunEvent]) -> String {
    use std::fmt::Write;
    let lines = runs::report::task_lines(events);
    let Some(first) = lines.first() else {
        return String::new();
    };
    let mut out = format!(
        "eval tasks step {} (before training) → step {}\n",
        first.first_step, first.last_step
    );
    for l in &lines {
        let _ = writeln!(
            out,
            "  {:<40} {:>8.3} → {:>8.3}  ({:+.3})",
            l.key,
            l.first,
            l.last,
            l.delta()
        );
    }
    out
}
