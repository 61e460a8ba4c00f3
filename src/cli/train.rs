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
    /// GPUs: with --queue, the GPUs the run waits for (default 1); with --engine, the GPUs
    /// per node the tool trains on (train.gpus).
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,
    /// Train with TRL, Axolotl or LLaMA-Factory, launched and followed by tunelab
    /// (train.engine): trl, axolotl, llamafactory (or tunelab).
    #[arg(long, value_name = "ENGINE", conflicts_with = "resume")]
    pub engine: Option<String>,
    /// Nodes for an engine run (train.nodes; more than one needs --launcher slurm).
    #[arg(long, value_name = "M", conflicts_with = "resume")]
    pub nodes: Option<usize>,
    /// DeepSpeed ZeRO stage for an engine run (train.sharding zero2 or zero3).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["2", "3"]), conflicts_with_all = ["fsdp", "resume"])]
    pub zero: Option<String>,
    /// Shard an engine run with PyTorch FSDP (train.sharding fsdp).
    #[arg(long, conflicts_with = "resume")]
    pub fsdp: bool,
    /// The Python that has the engine: a venv's bin/python or its folder (train.python).
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    pub python: Option<String>,
    /// Where an engine run starts: local (this machine) or slurm (sbatch) (train.launcher).
    #[arg(long, value_name = "LAUNCHER", conflicts_with = "resume")]
    pub launcher: Option<String>,
    /// Write the engine run's folder and print its SLURM script (or local command) without
    /// launching it.
    #[arg(long, conflicts_with_all = ["resume", "queue", "detach"])]
    pub dry_run: bool,
}

impl TrainArgs {
    /// The engine flags as `--set` overrides, before the user's own (which win).
    fn engine_sets(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(e) = &self.engine {
            v.push(format!("train.engine={e}"));
        }
        let engine = self.engine.as_deref().is_some_and(|e| e != "tunelab");
        if let Some(g) = self.gpus.filter(|_| engine || !self.queue) {
            v.push(format!("train.gpus={g}"));
        }
        if let Some(n) = self.nodes {
            v.push(format!("train.nodes={n}"));
        }
        match (self.zero.as_deref(), self.fsdp) {
            (Some(z), _) => v.push(format!("train.sharding=zero{z}")),
            (None, true) => v.push("train.sharding=fsdp".into()),
            _ => {}
        }
        if let Some(p) = &self.python {
            // As a YAML string, whatever the path looks like.
            v.push(format!(
                "train.python={}",
                serde_json::to_string(p).unwrap_or_default()
            ));
        }
        if let Some(l) = &self.launcher {
            v.push(format!("train.launcher={l}"));
        }
        v
    }
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
        let mut sets = a.engine_sets();
        sets.extend(a.set.iter().cloned());
        let cfg = match super::run_config::ready_config(spec, &sets, &paths) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
        };
        let run = super::run_config::new_run_dir(&cfg, a.run_dir.as_deref(), &root);
        (cfg, run, false)
    };
    if a.dry_run {
        return dry_run(&cfg, &run);
    }
    // An engine run checks its interpreter here, so a missing tool is said at once, not in
    // a detached run's log.
    if let Some(tool) = tunelab::engine::tool(cfg.train.engine) {
        let checked = tunelab::engine::preflight::interpreter(cfg.train.python.as_deref())
            .and_then(|py| tunelab::engine::preflight::check(&py, tool));
        if let Err(e) = checked {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    }
    if let Err(e) =
        std::fs::create_dir_all(&run.root).and_then(|_| runs::register(&root, &run).map(drop))
    {
        eprintln!("error: {}: {e}", run.root.display());
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    if a.queue {
        let gpus = a
            .gpus
            .or(cfg.train.engine.is_external().then_some(cfg.train.gpus));
        return super::queue::submit_one(&cfg, &run, resume, gpus);
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

/// `--dry-run`: the engine run's folder is written and its launch printed; nothing starts.
fn dry_run(cfg: &RunConfig, run: &RunDir) -> anyhow::Result<ExitCode> {
    if !cfg.train.engine.is_external() {
        eprintln!(
            "error: --dry-run prints an engine run's launch; add --engine trl|axolotl|llamafactory"
        );
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    match tunelab::engine::dry_run(cfg, run) {
        Ok((text, script)) => {
            print!("{text}");
            eprintln!(
                "nothing launched; the experiment is in {}{}",
                run.engine().display(),
                script
                    .map(|p| format!(
                        " (submit it with `sbatch {}`, or run `tunelab train` without --dry-run)",
                        p.display()
                    ))
                    .unwrap_or_default()
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(exit::UNUSABLE))
        }
    }
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
    let outcome = if cfg.train.engine.is_external() {
        tunelab::engine::run(cfg, run, resume, &stop, &mut observer).map_err(anyhow::Error::from)
    } else {
        trainer::train(cfg, run, resume, &stop, &mut observer).map_err(anyhow::Error::from)
    };
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
                    match &o.error {
                        Some(note) => eprintln!("stopped at step {}/{}: {note}; continue with `tunelab train --resume {id}`", o.step, o.total_steps),
                        None => eprintln!("stopped at step {}/{} with a checkpoint; continue with `tunelab train --resume {id}`", o.step, o.total_steps),
                    }
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
