//! `tunelab train`: one run (SFT, DPO, KTO or GRPO) in this process, with a progress bar,
//! detached into its own session with `--detach` so it survives the terminal, or put in the
//! run queue with `--queue`.

use super::exit;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::config::RunConfig;
use tunelab::paths::Paths;
use tunelab::runs::{self, EventKind, RunDir, RunEvent, RunState};
use tunelab::train::{trainer, Interrupter};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A run configuration (YAML), or the name of a built-in preset (`tunelab presets`).
    #[arg(required_unless_present = "resume")]
    pub config: Option<String>,
    /// The run directory (default: runs/<name>-<time> in the workspace).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Start in a new session with output in the run directory, print the run id, return.
    #[arg(long)]
    pub detach: bool,
    /// Continue RUN (an id or a folder) from its newest good checkpoint.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["config", "run_dir"])]
    pub resume: Option<String>,
    /// Override a field of the config: `--set dpo.init_adapter=RUN --set train.lr=1e-4`.
    #[arg(long, value_name = "PATH=VALUE", conflicts_with = "resume")]
    pub set: Vec<String>,
    /// Put the run in the queue instead of starting it: it starts when its device is free
    /// (`tunelab queue list`). With --resume, queues the resume.
    #[arg(long, conflicts_with = "detach")]
    pub queue: bool,
    /// With --queue and train.device cuda: the GPUs the run needs (default 1).
    #[arg(long, value_name = "N", requires = "queue")]
    pub gpus: Option<usize>,
}

pub fn run(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve();
    let root = runs::runs_root(&paths.data);
    let (cfg, run, resume) = if let Some(spec) = &a.resume {
        let Some(run) = runs::resolve(spec, &root) else {
            eprintln!(
                "error: no run {spec:?} (neither a run folder nor an id under {})",
                root.display()
            );
            return Ok(ExitCode::from(exit::UNUSABLE));
        };
        let cfg = match RunConfig::load(&run.config()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
        };
        (cfg, run, true)
    } else {
        let spec = a.config.as_deref().unwrap_or_default();
        let cfg = match super::run_config::ready_config(spec, &a.set, &paths) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
        };
        let run = super::run_config::new_run_dir(&cfg, a.run_dir.as_deref(), &root);
        (cfg, run, false)
    };
    if let Err(e) =
        std::fs::create_dir_all(&run.root).and_then(|_| runs::register(&root, &run).map(drop))
    {
        eprintln!("error: {}: {e}", run.root.display());
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    if a.queue {
        return super::queue::submit_one(&cfg, &run, resume, a.gpus);
    }
    if a.detach {
        return detach(&cfg, &run, resume);
    }
    foreground(&cfg, &run, resume)
}

/// Writes the config, then starts `tunelab train` again in a new session (setsid) with its
/// output appended to the run's train.log.
fn detach(cfg: &RunConfig, run: &RunDir, resume: bool) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&run.root)?;
    if !resume {
        let yaml = serde_yaml::to_string(cfg)?;
        tunelab::files::write_atomic(&run.config(), yaml.as_bytes())?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.log())?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("train");
    if resume {
        cmd.arg("--resume").arg(&run.root);
    } else {
        cmd.arg(run.config()).arg("--run-dir").arg(&run.root);
    }
    cmd.stdout(log.try_clone()?).stderr(log);
    let child = tunelab::queue::launch::spawn_detached(&mut cmd)?;
    let id = run
        .root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("{id}");
    eprintln!(
        "started run {id} (pid {}) in {}; follow it with `tunelab runs watch {id}`",
        child.id(),
        run.root.display()
    );
    Ok(ExitCode::from(exit::OK))
}

fn foreground(cfg: &RunConfig, run: &RunDir, resume: bool) -> anyhow::Result<ExitCode> {
    let stop = Interrupter::new();
    stop.on_signals(&[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    let bar = super::progress::bar(0, "");
    let mut observer = |e: &RunEvent| {
        let Some(b) = &bar else {
            // Piped: the bar's lines are left out, but a warning is still said.
            if let EventKind::Warning { .. } = e.kind {
                eprintln!("{}", e.kind.describe());
            }
            return;
        };
        match &e.kind {
            EventKind::Start(s) => {
                b.set_length(s.total_steps);
                b.set_position(s.step);
            }
            EventKind::Train(t) => {
                b.set_position(t.step);
                b.set_message(format!(
                    "loss {:.4} · lr {:.2e} · {:.0} tok/s · eta {:.0}s",
                    t.loss, t.lr, t.tokens_per_s, t.eta
                ));
            }
            EventKind::Phase(p) => b.set_message(match p.eta() {
                Some(eta) => format!("{} · eta {eta:.0}s", p.line()),
                None => p.line(),
            }),
            // GRPO's sampled completions stay in the events; greedy samples are shown.
            EventKind::Sample { rewards, .. } if !rewards.is_empty() => {}
            EventKind::Eval(_)
            | EventKind::CheckpointSkipped { .. }
            | EventKind::Sample { .. }
            | EventKind::Warning { .. } => b.println(e.kind.describe()),
            _ => {}
        }
    };
    let outcome = trainer::train(cfg, run, resume, &stop, &mut observer);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let id = run.root.display();
    match outcome {
        Ok(o) => {
            let eval = o
                .last_eval_loss
                .map(|l| format!(", eval loss {l:.4}"))
                .unwrap_or_default();
            match o.state {
                RunState::Done => {
                    eprintln!(
                        "done: {} steps{eval}; adapter in {}",
                        o.step,
                        run.adapter().display()
                    );
                    Ok(ExitCode::from(exit::OK))
                }
                RunState::Pruned => {
                    eprintln!(
                        "pruned at step {}/{}: {}; continue anyway with `tunelab train --resume {id}`",
                        o.step,
                        o.total_steps,
                        o.error.unwrap_or_default()
                    );
                    Ok(ExitCode::from(exit::OK))
                }
                RunState::Stopped => {
                    eprintln!("stopped at step {}/{} with a checkpoint; continue with `tunelab train --resume {id}`", o.step, o.total_steps);
                    Ok(ExitCode::from(exit::STOPPED))
                }
                _ => {
                    eprintln!("failed: {}", o.error.unwrap_or_default());
                    Ok(ExitCode::from(exit::PROBLEMS))
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(exit::UNUSABLE))
        }
    }
}
