//! `tunelab queue`: runs that start one after another as their devices free up (add, list,
//! remove, move, start), and the scheduler process itself (`queue scheduler`, hidden: it is
//! what `start` runs detached).

use super::exit;
use clap::Subcommand;
use std::process::ExitCode;
use tunelab::config::RunConfig;
use tunelab::paths::Paths;
use tunelab::queue::{self, submit, Ensured, Entry, QueueFiles};
use tunelab::runs::{self, RunDir};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Queue runs: each CONFIG (a file or preset) becomes a run folder in state `queued`;
    /// the scheduler starts them in order, one per device, and is started if none runs.
    Add {
        /// Run configurations (YAML) or preset names, queued in this order.
        #[arg(required_unless_present = "resume")]
        configs: Vec<String>,
        /// Override a field of every config: `--set train.lr=1e-4`.
        #[arg(long, value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// GPUs each run needs, for train.device cuda (default 1; handed over as
        /// CUDA_VISIBLE_DEVICES).
        #[arg(long, value_name = "N")]
        gpus: Option<usize>,
        /// Queue the resume of a stopped, pruned, failed or dead run (an id or folder);
        /// repeatable.
        #[arg(long, value_name = "RUN")]
        resume: Vec<String>,
    },
    /// The queue: running and waiting runs in order, what each waits for, and the
    /// scheduler's pid.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Take a waiting run off the queue (its never-started folder is removed).
    Remove {
        /// A queued run's id or folder.
        run: String,
    },
    /// Move a waiting run to another place in the queue.
    Move {
        /// A queued run's id or folder.
        run: String,
        /// The new position among the waiting runs, from 1 (the next to start).
        #[arg(long, value_name = "K")]
        to: usize,
    },
    /// Start the scheduler if none runs (after a reboot, or after it was killed).
    Start,
    /// Run the scheduler in this process until the queue is empty (what `start` runs,
    /// detached).
    #[command(hide = true)]
    Scheduler,
}

fn files() -> QueueFiles {
    QueueFiles::new(Paths::resolve().data)
}

fn fail(e: &dyn std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {e}");
    Ok(ExitCode::from(exit::UNUSABLE))
}

pub fn run(cmd: QueueCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        QueueCommand::Add {
            configs,
            set,
            gpus,
            resume,
        } => add(&configs, &set, gpus, &resume),
        QueueCommand::List { json } => list(json),
        QueueCommand::Remove { run } => match files().update(|q| q.remove(&run)) {
            Ok(e) => {
                submit::discard_queued_run(&RunDir::new(&e.dir));
                println!("removed {} from the queue", e.id);
                Ok(ExitCode::from(exit::OK))
            }
            Err(e) => fail(&e),
        },
        QueueCommand::Move { run, to } => match files().update(|q| q.move_to(&run, to)) {
            Ok(()) => list(false),
            Err(e) => fail(&e),
        },
        QueueCommand::Start => {
            let exe = std::env::current_exe()?;
            match queue::ensure(&files(), &exe) {
                Ok(e) => {
                    say_scheduler(e, &files());
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => fail(&e),
            }
        }
        QueueCommand::Scheduler => scheduler(),
    }
}

/// Runs the scheduler here; exit 1 when another one holds the lock.
fn scheduler() -> anyhow::Result<ExitCode> {
    let files = files();
    let Some(lock) = queue::SchedulerLock::acquire(&files)? else {
        let pid = queue::holder(&files)?.unwrap_or(0);
        eprintln!(
            "error: another scheduler (pid {pid}) holds {}; one runs per data folder",
            files.scheduler_lock().display()
        );
        return Ok(ExitCode::from(exit::PROBLEMS));
    };
    let exe = std::env::current_exe()?;
    let stamp = || chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
    println!("{} scheduler started (pid {})", stamp(), std::process::id());
    let mut s = queue::Scheduler::new(files, exe, lock);
    s.run(&mut |line| println!("{} {line}", stamp()));
    println!("{} the queue is empty; scheduler done", stamp());
    Ok(ExitCode::from(exit::OK))
}

fn say_scheduler(e: Ensured, files: &QueueFiles) {
    match e {
        Ensured::Running(pid) => eprintln!("the scheduler (pid {pid}) runs the queue"),
        Ensured::Started(pid) => eprintln!(
            "started the scheduler (pid {pid}); its log: {}",
            files.log().display()
        ),
    }
}

/// Adds `entries` to the queue in order and makes sure a scheduler runs; prints each id.
pub fn enqueue(entries: Vec<Entry>) -> anyhow::Result<ExitCode> {
    let files = files();
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    if let Err(e) = files.update(|q| entries.into_iter().try_for_each(|e| q.push(e))) {
        return fail(&e);
    }
    for id in &ids {
        println!("{id}");
    }
    let q = files.read()?;
    let positions: Vec<String> = ids
        .iter()
        .filter_map(|id| q.position(id).map(|p| format!("{id} #{p}")))
        .collect();
    if !positions.is_empty() {
        eprintln!("queued {}", positions.join(", "));
    }
    match queue::ensure(&files, &std::env::current_exe()?) {
        Ok(e) => say_scheduler(e, &files),
        Err(e) => eprintln!("warning: {e}; start it with `tunelab queue start`"),
    }
    Ok(ExitCode::from(exit::OK))
}

/// `tunelab train --queue`: the run (already in its folder) goes into the queue.
pub fn submit_one(
    cfg: &RunConfig,
    run: &RunDir,
    resume: bool,
    gpus: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let entry = if resume {
        submit::resume_entry(run, gpus)
    } else {
        submit::queued_run(cfg, run, gpus, None)
    };
    match entry {
        Ok(e) => enqueue(vec![e]),
        Err(e) => fail(&e),
    }
}

fn add(
    configs: &[String],
    sets: &[String],
    gpus: Option<usize>,
    resume: &[String],
) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve();
    let root = runs::runs_root(&paths.data);
    // Every config is checked before anything is queued.
    let mut ready = Vec::new();
    for spec in configs {
        match super::run_config::ready_config(spec, sets, &paths) {
            Ok(c) => ready.push(c),
            Err(e) => return fail(&e),
        }
    }
    let mut entries = Vec::new();
    for spec in resume {
        let run = match runs::find(spec, &paths.data) {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        match submit::resume_entry(&run, gpus) {
            Ok(e) => entries.push(e),
            Err(e) => return fail(&e),
        }
    }
    for cfg in &ready {
        let run = super::run_config::new_run_dir(cfg, None, &root);
        let made = std::fs::create_dir_all(&run.root)
            .map_err(|e| e.to_string())
            .and_then(|_| runs::register(&root, &run).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: {e}", run.root.display()))
            .and_then(|_| submit::queued_run(cfg, &run, gpus, None).map_err(|e| e.to_string()));
        match made {
            Ok(e) => entries.push(e),
            Err(e) => return fail(&e),
        }
    }
    enqueue(entries)
}

fn list(as_json: bool) -> anyhow::Result<ExitCode> {
    let files = files();
    let view = match queue::overview(&files) {
        Ok(v) => v,
        Err(e) => return fail(&e),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::from(exit::OK));
    }
    if view.is_empty() {
        println!(
            "the queue is empty; add runs with `tunelab queue add CONFIG…` or `tunelab sweep`"
        );
    } else {
        println!(
            "{:>3}  {:<44} {:<8} {:<7} WAITS FOR",
            "#", "RUN", "STATE", "DEVICE"
        );
    }
    for r in &view.rows {
        let pos = r.position.map_or("-".to_string(), |p| p.to_string());
        let what = match (r.pid, &r.waits) {
            (Some(pid), _) => format!("pid {pid}"),
            (None, w) => w.clone().unwrap_or_default(),
        };
        let device = if r.gpus > 1 {
            format!("{}×{}", r.device, r.gpus)
        } else {
            r.device.clone()
        };
        println!("{pos:>3}  {:<44} {:<8} {device:<7} {what}", r.id, r.state);
    }
    match view.scheduler {
        Some(pid) => println!("scheduler: pid {pid} · log {}", view.log.display()),
        None if !view.is_empty() => {
            println!("scheduler: not running; start it with `tunelab queue start`")
        }
        None => {}
    }
    Ok(ExitCode::from(exit::OK))
}
