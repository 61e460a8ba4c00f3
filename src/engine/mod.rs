//! Engine runs: a tunelab run trained by TRL, Axolotl or LLaMA-Factory across GPUs and nodes,
//! launched and followed by tunelab so it is a run like any other.
//!
//! `tunelab train` (detached as usual) is the supervisor. It writes the exported experiment
//! into the run's `engine/` folder (`scaleout::export`), checks the interpreter has the tool
//! at a version tunelab knows (`preflight`), puts a hook in front of the tool's Python
//! (`hook`: a Trainer callback that appends what the Trainer logs, saves and finishes to a
//! file, turns SIGTERM into save-and-stop, and resumes from a checkpoint tunelab names),
//! and launches the tool's own command as a process group of its own (`job::LocalJob`) or as
//! a SLURM batch job (`slurm`). While it runs, each line the hook writes becomes a
//! [`RunEvent`](crate::runs::RunEvent) through the run's journal (train and eval events with
//! TRL's metric names, as `runs import` maps them, plus NVML readings of every local GPU);
//! SIGTERM to the supervisor (`runs stop`, the workbench's `x`) is passed on to the tool;
//! when the tool ends, its adapter is brought into the run's `adapter/`, or the run fails
//! with the tool's last lines.

pub mod hook;
pub mod job;
pub mod preflight;
pub mod slurm;

use crate::config::{Engine, Launcher, RunConfig};
use crate::runs::event::{Eval, Start};
use crate::runs::{EventKind, RunDir, RunState, Status};
use crate::scaleout::{self, ExportOptions, Launch, Sharding, Tool};
use crate::train::journal::Journal;
use crate::train::{Interrupter, Observer, TrainError, TrainOutcome};
use hook::{Follower, HookLine};
use job::{Job, JobEnd, LocalJob};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where each Trainer process of a launch leaves its pid, in `engine/`.
pub const TRAINER_PIDS: &str = "trainer-pids";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The interpreter or the tool is missing or at a version tunelab does not know.
    #[error("{0}")]
    Preflight(String),
    /// The experiment could not be written.
    #[error("writing the experiment: {0}")]
    Export(#[from] scaleout::ScaleoutError),
    /// The tool could not be started or submitted.
    #[error("{0}")]
    Launch(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Run(#[from] TrainError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The tool `engine` names; `None` for tunelab's own.
pub fn tool(engine: Engine) -> Option<Tool> {
    match engine {
        Engine::Tunelab => None,
        Engine::Trl => Some(Tool::Trl),
        Engine::Axolotl => Some(Tool::Axolotl),
        Engine::Llamafactory => Some(Tool::Llamafactory),
    }
}

/// Everything a launch needs, local or SLURM.
#[derive(Debug, Clone)]
pub struct Launchable {
    pub tool: Tool,
    pub version: String,
    pub python: PathBuf,
    /// The interpreter's folder, first on the tool's `PATH` (its `trl`, `accelerate` …).
    pub bin_dir: PathBuf,
    pub engine_dir: PathBuf,
    pub hook_dir: PathBuf,
    pub hook_events: PathBuf,
    pub run_root: PathBuf,
    /// The run's `train.log`, where the tool's output goes.
    pub log: PathBuf,
    pub launch: Launch,
    pub launcher: Launcher,
    pub cpu: bool,
    /// Arguments for `run.sh` (CPU switches).
    pub args: Vec<String>,
    /// Environment for the tool besides `PATH` and `PYTHONPATH`.
    pub env: Vec<(String, String)>,
    pub name: String,
    pub slurm: Vec<String>,
    /// The checkpoint a resume starts from.
    pub resume_from: Option<PathBuf>,
}

impl Launchable {
    /// `TRL 1.16.0 · 8 GPUs · ZeRO-3` (the Train tab's header).
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.tool.label(), self.version);
        if self.cpu {
            s.push_str(" · CPU");
        } else {
            let w = self.launch.world();
            s.push_str(&format!(" · {w} GPU{}", if w == 1 { "" } else { "s" }));
        }
        if self.launch.nodes > 1 {
            s.push_str(&format!(" on {} nodes", self.launch.nodes));
        }
        match self.launch.sharding {
            Sharding::Zero(z) => s.push_str(&format!(" · ZeRO-{z}")),
            Sharding::Fsdp => s.push_str(" · FSDP"),
            Sharding::None => {}
        }
        if self.launcher == Launcher::Slurm {
            s.push_str(" · SLURM");
        }
        s
    }

    /// The local launch: `bash run.sh ARGS` in `engine/`, the interpreter's folder first on
    /// the PATH and the hook first on PYTHONPATH.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(self.engine_dir.join("run.sh"))
            .args(&self.args)
            .current_dir(&self.engine_dir);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bin_dir.clone()];
        paths.extend(std::env::split_paths(&path));
        if let Ok(p) = std::env::join_paths(paths) {
            cmd.env("PATH", p);
        }
        let mut py = vec![self.hook_dir.clone()];
        if let Some(old) = std::env::var_os("PYTHONPATH") {
            py.extend(std::env::split_paths(&old));
        }
        if let Ok(p) = std::env::join_paths(py) {
            cmd.env("PYTHONPATH", p);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The local launch as one shell line, for the log and `--dry-run`.
    pub fn command_line(&self) -> String {
        // Run by hand, there is no supervisor to watch.
        let env: String = self
            .env
            .iter()
            .filter(|(k, _)| k != "TUNELAB_SUPERVISOR_PID")
            .map(|(k, v)| format!("{k}={v} "))
            .collect();
        format!(
            "cd {} && PATH={}:$PATH PYTHONPATH={} {env}bash run.sh{}",
            self.engine_dir.display(),
            self.bin_dir.display(),
            self.hook_dir.display(),
            self.args
                .iter()
                .map(|a| format!(" {a}"))
                .collect::<String>()
        )
    }
}

/// Switches for a run on the CPU (the exports assume CUDA): TRL's `--use_cpu`, and Axolotl's
/// LoRA kernels off (they allocate on CUDA).
fn cpu_args(tool: Tool) -> Vec<String> {
    match tool {
        Tool::Trl => vec!["--use_cpu".into(), "true".into()],
        Tool::Axolotl => [
            "--no-lora-mlp-kernel",
            "--no-lora-qkv-kernel",
            "--no-lora-o-kernel",
            "--no-lora-embedding-kernel",
        ]
        .map(String::from)
        .to_vec(),
        Tool::Llamafactory => Vec::new(),
    }
}

/// The newest `checkpoint-N` of the tool's output that holds a trainer state, with its step.
pub fn newest_checkpoint(engine_dir: &Path) -> Option<(u64, PathBuf)> {
    scaleout::import::checkpoints(&engine_dir.join(scaleout::OUTPUT_DIR))
        .into_iter()
        .rev()
        .find(|(_, p)| p.join("trainer_state.json").is_file())
}

/// Checks the interpreter and the tool, writes the experiment (a resume keeps the one it
/// has) and the hook, and finds the checkpoint a resume starts from.
pub fn prepare(cfg: &RunConfig, run: &RunDir, resume: bool) -> Result<Launchable, EngineError> {
    let tool = tool(cfg.train.engine)
        .ok_or_else(|| EngineError::Launch("train.engine is tunelab: not an engine run".into()))?;
    let python = preflight::interpreter(cfg.train.python.as_deref())?;
    let version = preflight::check(&python, tool)?;
    let launch = Launch::from_config(&cfg.train);
    let engine_dir = std::path::absolute(run.engine()).map_err(io(&run.root))?;
    if !resume || !engine_dir.join(scaleout::CONFIG_COPY).is_file() {
        scaleout::export(
            cfg,
            &engine_dir,
            &ExportOptions {
                tool,
                launch,
                base_model: None,
            },
        )?;
    }
    let hook_dir = hook::write(&engine_dir).map_err(io(&engine_dir))?;
    let hook_events = engine_dir.join(hook::EVENTS);
    if !resume {
        let _ = std::fs::remove_file(&hook_events);
    }
    // This launch's trainers register afresh.
    let _ = std::fs::remove_dir_all(engine_dir.join(TRAINER_PIDS));
    let resume_from = if resume {
        newest_checkpoint(&engine_dir).map(|(_, p)| p)
    } else {
        None
    };
    let cpu = cfg.train.device == crate::model::DeviceSpec::Cpu;
    let mut env = vec![
        ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
        (
            "TUNELAB_ENGINE_EVENTS".to_string(),
            hook_events.display().to_string(),
        ),
        (
            "TUNELAB_TRAINER_PIDS".to_string(),
            engine_dir.join(TRAINER_PIDS).display().to_string(),
        ),
    ];
    // A local launch's trainers save and stop if this supervisor is killed (a SLURM job's
    // run on other machines, where the pid means nothing).
    if cfg.train.launcher == Launcher::Local {
        env.push((
            "TUNELAB_SUPERVISOR_PID".into(),
            std::process::id().to_string(),
        ));
    }
    if let Some(c) = &resume_from {
        env.push(("TUNELAB_RESUME_FROM".into(), c.display().to_string()));
    }
    if cpu {
        env.push(("CUDA_VISIBLE_DEVICES".into(), String::new()));
    }
    let bin_dir = python
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let run_root = std::path::absolute(&run.root).map_err(io(&run.root))?;
    Ok(Launchable {
        tool,
        version,
        python,
        bin_dir,
        hook_dir,
        hook_events,
        log: run_root.join("train.log"),
        run_root,
        engine_dir,
        launch,
        launcher: cfg.train.launcher,
        cpu,
        args: if cpu { cpu_args(tool) } else { Vec::new() },
        env,
        name: cfg.name.clone().unwrap_or_else(|| "run".into()),
        slurm: cfg.train.slurm.clone(),
        resume_from,
    })
}

/// What `--dry-run` prints: the SLURM script (written to `engine/job.sbatch`), or the local
/// command line. Nothing is launched.
pub fn dry_run(cfg: &RunConfig, run: &RunDir) -> Result<(String, Option<PathBuf>), EngineError> {
    let l = prepare(cfg, run, false)?;
    match l.launcher {
        Launcher::Slurm => {
            let path = write_slurm(&l)?;
            Ok((slurm::script(&l), Some(path)))
        }
        Launcher::Local => Ok((l.command_line() + "\n", None)),
    }
}

/// LoRA's trainable parameters on the model folder's shape (0 when it cannot be read).
fn trainable_params(cfg: &RunConfig) -> u64 {
    let path = Path::new(&cfg.model.path).join("config.json");
    crate::model::config::ModelConfig::from_file(&path)
        .map(|c| {
            crate::model::estimate::trainable_parameters(
                &c,
                &crate::lora::LoraConfig::from(&cfg.lora),
            ) as u64
        })
        .unwrap_or(0)
}

/// The lines of a JSONL file.
fn records(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|b| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count() as u64)
        .unwrap_or(0)
}

/// Writes `engine/job.sbatch` and `engine/node.sh`; returns the script's path.
fn write_slurm(l: &Launchable) -> Result<PathBuf, EngineError> {
    let node = l.engine_dir.join(slurm::NODE);
    crate::files::write_atomic(&node, slurm::NODE_SCRIPT.as_bytes()).map_err(io(&node))?;
    let path = l.engine_dir.join(slurm::SCRIPT);
    crate::files::write_atomic(&path, slurm::script(l).as_bytes()).map_err(io(&path))?;
    Ok(path)
}

/// Where a resumed run left off: its step and seconds of training.
fn prior(run: &RunDir) -> (u64, f64) {
    let (events, _) = crate::runs::read_events(&run.events_path(), 0).unwrap_or_default();
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::Train(t) => Some((t.step, t.elapsed)),
            _ => None,
        })
        .unwrap_or((0, 0.0))
}

/// How often the supervisor looks at the hook's file and the job.
const TICK: Duration = Duration::from_millis(200);

/// Runs `cfg` on its engine as the run in `run`, until the tool ends or `stop` is set (then
/// the tool is asked to save and stop). Events and `status.json` are written as for a
/// tunelab run.
pub fn run(
    cfg: &RunConfig,
    run: &RunDir,
    resume: bool,
    stop: &Interrupter,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, EngineError> {
    std::fs::create_dir_all(&run.root).map_err(io(&run.root))?;
    let mut status = Status::starting(crate::units::unix_now());
    if !resume {
        crate::files::write_atomic(&run.config(), cfg.to_yaml().as_bytes())
            .map_err(io(&run.config()))?;
    } else if let Ok(old) = run.read_status() {
        status.started = old.started;
    }
    let (prior_step, prior_elapsed) = if resume { prior(run) } else { (0, 0.0) };
    let mut journal = Journal::new(run, observer, status);
    journal.status(RunState::Running, prior_step, None)?;
    journal.start_trackers(cfg, resume)?;
    let engine_name = tool(cfg.train.engine).map_or("the engine", Tool::label);
    journal.phase(prior_step, &format!("prepare {engine_name}"), 0, 0, "")?;
    let launched = prepare(cfg, run, resume).and_then(|l| {
        let job: Box<dyn Job> = match l.launcher {
            Launcher::Local => Box::new(
                LocalJob::spawn(l.command(), &l.log, &l.engine_dir.join(TRAINER_PIDS)).map_err(
                    |e| EngineError::Launch(format!("starting {}: {e}", l.tool.label())),
                )?,
            ),
            Launcher::Slurm => {
                let path = write_slurm(&l)?;
                Box::new(slurm::SlurmJob::submit(&path, &l.engine_dir, &l.log)?)
            }
        };
        Ok((l, job))
    });
    let (l, mut job) = match launched {
        Ok(x) => x,
        Err(e) => {
            let msg = e.to_string();
            let _ = journal.event(EventKind::Failed {
                step: prior_step,
                error: msg.clone(),
            });
            let _ = journal.status(RunState::Failed, prior_step, Some(msg));
            return Err(e);
        }
    };
    journal.log(&format!(
        "launched {} ({}){}: {}",
        l.label(),
        job.describe(),
        l.resume_from
            .as_ref()
            .map(|c| format!(", resuming from {}", c.display()))
            .unwrap_or_default(),
        match l.launcher {
            Launcher::Local => l.command_line(),
            Launcher::Slurm => l.engine_dir.join(slurm::SCRIPT).display().to_string(),
        }
    ));

    let mut follow = Following {
        cfg,
        label: l.label(),
        resume_from: l.resume_from.clone(),
        prior_elapsed,
        step: prior_step,
        state: RunState::Running,
        // NVML reads this machine's GPUs: a SLURM job's are on other nodes.
        gpus: (l.launcher == Launcher::Local)
            .then(crate::telemetry::Gpus::open)
            .flatten(),
        trainable_params: trainable_params(cfg),
        train_records: records(&l.engine_dir.join(scaleout::TRAIN_FILE)),
        ..Following::default_for(cfg)
    };
    let mut hook = if resume {
        Follower::from_end(l.hook_events.clone())
    } else {
        Follower::new(l.hook_events.clone())
    };
    let began = Instant::now();
    let mut last_phase = Instant::now();
    let end: JobEnd = loop {
        for line in hook.read() {
            follow.apply(line, &mut journal)?;
        }
        if stop.should_stop() && follow.state != RunState::Stopping {
            job.stop();
            follow.state = RunState::Stopping;
            journal.log(&format!(
                "stop asked: {} saves a checkpoint at the end of its step, then ends",
                l.tool.label()
            ));
            journal.status(RunState::Stopping, follow.step, None)?;
        }
        if let Some(end) = job.poll() {
            for line in hook.read() {
                follow.apply(line, &mut journal)?;
            }
            break end;
        }
        if !follow.begun && last_phase.elapsed() >= Duration::from_secs(1) {
            last_phase = Instant::now();
            let name = job
                .waiting()
                .unwrap_or_else(|| format!("start {}", l.tool.label()));
            journal.phase(follow.step, &name, began.elapsed().as_secs(), 0, "s")?;
        }
        std::thread::sleep(TICK);
    };
    finish(&l, job.as_ref(), end, follow, &mut journal, run)
}

/// The run's end: stopped, done with the tool's adapter in `adapter/`, or failed with the
/// tool's last lines.
fn finish(
    l: &Launchable,
    job: &dyn Job,
    end: JobEnd,
    follow: Following,
    journal: &mut Journal,
    run: &RunDir,
) -> Result<TrainOutcome, EngineError> {
    let step = follow.step;
    let outcome = |state, error| TrainOutcome {
        state,
        step,
        total_steps: follow.total,
        error,
        last_eval_loss: follow.last_eval_loss,
    };
    if follow.state == RunState::Stopping {
        // What a resume will start from, said when it is not the step the run stopped at.
        let saved = newest_checkpoint(&l.engine_dir).map(|(s, _)| s);
        let note = match saved {
            Some(s) if s >= step => None,
            Some(s) => Some(format!(
                "{} did not save at step {step} before it ended; a resume starts from checkpoint-{s}",
                l.tool.label()
            )),
            None => Some(format!(
                "stopped before {} saved a checkpoint; a resume starts from the beginning",
                l.tool.label()
            )),
        };
        if let Some(n) = &note {
            journal.event(EventKind::Warning {
                step,
                message: n.clone(),
            })?;
        }
        journal.event(EventKind::Stopped { step })?;
        journal.status(RunState::Stopped, step, None)?;
        return Ok(outcome(RunState::Stopped, note));
    }
    let ok = end.ok.unwrap_or(follow.ended);
    let failure = if ok {
        let output = l.engine_dir.join(scaleout::OUTPUT_DIR);
        match scaleout::import::newest(&output, scaleout::import::is_adapter) {
            Some(dir) => {
                adopt_adapter(&dir, &run.adapter())?;
                journal.log(&format!("adapter from {}", dir.display()));
                let best = journal.status.best_eval_loss;
                journal.event(EventKind::Done {
                    step,
                    adapter: run.adapter().display().to_string(),
                    best_eval_loss: best,
                })?;
                journal.status(RunState::Done, step, None)?;
                return Ok(outcome(RunState::Done, None));
            }
            None => format!(
                "{} finished but left no PEFT adapter (adapter_config.json and adapter_model.safetensors) in {}",
                l.tool.label(),
                output.display()
            ),
        }
    } else {
        let lines = telling_lines(&job.last_lines());
        format!(
            "{} {}{}",
            l.tool.label(),
            end.what,
            if lines.is_empty() {
                String::new()
            } else {
                format!("; its last lines:\n{}", lines.join("\n"))
            }
        )
    };
    journal.event(EventKind::Failed {
        step,
        error: failure.clone(),
    })?;
    journal.status(RunState::Failed, step, Some(failure.clone()))?;
    Ok(outcome(RunState::Failed, Some(failure)))
}

/// The last dozen lines of output that are not progress-bar redraws.
fn telling_lines(lines: &[String]) -> Vec<String> {
    let bar = |l: &str| l.contains("%|") || l.contains("it/s]") || l.contains("s/it]");
    let kept: Vec<String> = lines
        .iter()
        .filter(|l| !bar(l))
        .map(|l| clip(l, 300))
        .collect();
    kept[kept.len().saturating_sub(12)..].to_vec()
}

/// `s` cut to `n` characters.
fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Copies the tool's adapter into the run's `adapter/`, each file atomically.
fn adopt_adapter(from: &Path, to: &Path) -> Result<(), EngineError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        let src = from.join(f);
        let bytes = std::fs::read(&src).map_err(io(&src))?;
        let dst = to.join(f);
        crate::files::write_atomic(&dst, &bytes).map_err(io(&dst))?;
    }
    Ok(())
}

/// What the supervisor knows of the tool's run, from the hook's lines.
struct Following<'a> {
    cfg: &'a RunConfig,
    label: String,
    resume_from: Option<PathBuf>,
    /// Seconds of training before this launch (a resume).
    prior_elapsed: f64,
    begun: bool,
    /// When and at which step `Trainer.train` began.
    began: Option<(f64, u64)>,
    step: u64,
    total: u64,
    /// The last `num_tokens` the Trainer logged, and when.
    last_tokens: Option<(f64, f64)>,
    last_eval_loss: Option<f64>,
    ended: bool,
    state: RunState,
    gpus: Option<crate::telemetry::Gpus>,
    /// What the start event reports: LoRA's parameters on the model's shape, and the
    /// records the tool trains on.
    trainable_params: u64,
    train_records: u64,
}

impl<'a> Following<'a> {
    fn default_for(cfg: &'a RunConfig) -> Self {
        Following {
            cfg,
            label: String::new(),
            resume_from: None,
            prior_elapsed: 0.0,
            begun: false,
            began: None,
            step: 0,
            total: 0,
            last_tokens: None,
            last_eval_loss: None,
            ended: false,
            state: RunState::Running,
            gpus: None,
            trainable_params: 0,
            train_records: 0,
        }
    }

    fn apply(&mut self, line: HookLine, journal: &mut Journal) -> Result<(), TrainError> {
        match line {
            HookLine::Begin {
                step,
                max_steps,
                world_size,
                time,
                ..
            } => {
                self.total = max_steps;
                journal.status.total_steps = max_steps;
                self.began = Some((time, step));
                if !self.begun {
                    self.begun = true;
                    let t = &self.cfg.train;
                    journal.event(EventKind::Start(Start {
                        step,
                        total_steps: max_steps,
                        device: match world_size {
                            0 | 1 => t.device.to_string(),
                            w => format!("{} ×{w}", t.device),
                        },
                        dtype: t.dtype.to_string(),
                        name: self.cfg.name.clone(),
                        method: Some(t.method.to_string()),
                        engine: Some(self.label.clone()),
                        trainable_params: self.trainable_params,
                        train_sequences: self.train_records,
                        ..Default::default()
                    }))?;
                    if step > 0 {
                        journal.event(EventKind::Resume {
                            from_step: step,
                            checkpoint: self.resume_from.as_ref().map(|p| p.display().to_string()),
                        })?;
                    }
                }
                self.step = step;
                journal.status(self.state, step, None)?;
            }
            HookLine::Log {
                step,
                max_steps,
                mut logs,
                time,
            } => {
                self.total = self.total.max(max_steps);
                logs.insert("step".into(), step.into());
                let num_tokens = logs.get("num_tokens").and_then(serde_json::Value::as_f64);
                match scaleout::import::log_entry(&logs, self.total) {
                    Some(EventKind::Train(mut t)) => {
                        let (t0, s0) = self.began.unwrap_or((time, 0));
                        let session = (time - t0).max(0.0);
                        t.elapsed = self.prior_elapsed + session;
                        if step > s0 {
                            t.eta = session / (step - s0) as f64
                                * self.total.saturating_sub(step) as f64;
                        }
                        // The first step of a fresh run counts from nothing at `Trainer.train`.
                        let before = self.last_tokens.or((s0 == 0).then_some((t0, 0.0)));
                        if let (Some(n), Some((tp, np))) = (num_tokens, before) {
                            t.tokens = (n - np).max(0.0) as u64;
                            t.tokens_per_s = (n - np).max(0.0) / (time - tp).max(1e-9);
                        }
                        if let Some(n) = num_tokens {
                            self.last_tokens = Some((time, n));
                        }
                        if let Some(g) = &self.gpus {
                            let m = g.memory();
                            if !m.is_empty() {
                                t.gpu_mem = Some(m.iter().map(|x| x.used).sum());
                                t.gpu_util = m.first().and_then(|x| x.utilization);
                                t.gpus = m;
                            }
                        }
                        self.step = step;
                        journal.event(EventKind::Train(t))?;
                        journal.status(self.state, step, None)?;
                    }
                    Some(EventKind::Eval(e)) => {
                        self.last_eval_loss = Some(e.eval_loss);
                        journal.event(EventKind::Eval(Eval { step, ..e }))?;
                    }
                    _ => {}
                }
            }
            HookLine::Save { step, dir } => {
                journal.event(EventKind::Checkpoint { step, path: dir })?;
            }
            HookLine::Stopping { step } => {
                journal.log(&format!("the Trainer saves and stops after step {step}"));
            }
            HookLine::End { step, .. } => {
                self.step = self.step.max(step);
                self.ended = true;
            }
        }
        Ok(())
    }
}
