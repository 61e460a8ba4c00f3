//! The SFT loop. It owns a run directory: `config.yaml` (paths made absolute),
//! `status.json`, `events.jsonl`, `train.log`, `checkpoints/step-N/` and `adapter/` at the
//! end. Whoever watches the run reads only those files.

use super::checkpoint::{self, TrainerState};
use super::dataset::{self, collate, DatasetError, Schedule as DataOrder, Sequence};
use super::grads::Grads;
use super::optim::{AdamW, AdamWConfig};
use super::schedule::Scheduler;
use super::step::forward_backward;
use crate::config::RunConfig;
use crate::model::{source, Model, ModelError};
use crate::runs::{RunDir, RunState, Status};
use crate::telemetry;
use crate::template::{Encoder, TemplateChoice, TemplateError};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("template: {0}")]
    Template(#[from] TemplateError),
    #[error("compute: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    pub state: RunState,
    pub step: u64,
    pub total_steps: u64,
    pub error: Option<String>,
    pub last_eval_loss: Option<f64>,
}

/// Sees every event as it is written (the CLI's progress bar).
pub trait Observer {
    fn event(&mut self, event: &Value);
}

impl<F: FnMut(&Value)> Observer for F {
    fn event(&mut self, event: &Value) {
        self(event)
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes events, status and the human log of one run.
struct Journal<'a> {
    run: &'a RunDir,
    observer: &'a mut dyn Observer,
    status: Status,
}

impl Journal<'_> {
    fn event(&mut self, mut event: Value) -> Result<(), TrainError> {
        if let Value::Object(o) = &mut event {
            o.insert("time".into(), json!(now()));
        }
        self.run
            .append_event(&event)
            .map_err(|e| io_err(&self.run.events_path(), e))?;
        self.log(&summarize(&event));
        self.observer.event(&event);
        Ok(())
    }

    fn log(&self, line: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.log())
        {
            let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
            let _ = writeln!(f, "{stamp} {line}");
        }
    }

    fn status(
        &mut self,
        state: RunState,
        step: u64,
        error: Option<String>,
    ) -> Result<(), TrainError> {
        self.status.state = state;
        self.status.step = step;
        self.status.error = error;
        self.status.updated = now();
        self.run
            .write_status(&self.status)
            .map_err(|e| io_err(&self.run.status_path(), e))
    }
}

fn summarize(e: &Value) -> String {
    let f = |k: &str| e.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    match e.get("type").and_then(Value::as_str).unwrap_or("") {
        "train" => format!(
            "step {} loss {:.4} lr {:.3e} grad_norm {:.3} {:.0} tok/s",
            e["step"],
            f("loss"),
            f("lr"),
            f("grad_norm"),
            f("tokens_per_s")
        ),
        "eval" => format!("step {} eval_loss {:.4}", e["step"], f("eval_loss")),
        other => format!("{other} {e}"),
    }
}

/// Makes relative paths in `cfg` absolute: each is looked up against `bases` in order and
/// the first that exists wins; hub ids that exist nowhere locally are left alone.
pub fn resolve_paths(cfg: &mut RunConfig, bases: &[&Path]) -> Result<(), TrainError> {
    fn find(p: &str, bases: &[&Path]) -> Option<String> {
        let path = Path::new(p);
        if path.is_absolute() {
            return path.exists().then(|| p.to_string());
        }
        bases
            .iter()
            .map(|b| b.join(path))
            .find(|c| c.exists())
            .map(|c| std::path::absolute(&c).unwrap_or(c).display().to_string())
    }
    let tried = |p: &str| {
        bases
            .iter()
            .map(|b| b.join(p).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match find(&cfg.model.path, bases) {
        Some(p) => cfg.model.path = p,
        None if crate::model::hub::looks_like_repo_id(&cfg.model.path)
            && !Path::new(&cfg.model.path).is_absolute() => {}
        None => {
            return Err(TrainError::Config(format!(
                "model.path: {:?} does not exist (looked at {})",
                cfg.model.path,
                tried(&cfg.model.path)
            )))
        }
    }
    let data = |field: &str, v: &mut String| -> Result<(), TrainError> {
        match find(v, bases) {
            Some(p) => {
                *v = p;
                Ok(())
            }
            None => Err(TrainError::Config(format!(
                "{field}: {v:?} does not exist (looked at {})",
                tried(v)
            ))),
        }
    };
    data("data.train", &mut cfg.data.train)?;
    if let Some(e) = cfg.data.eval.as_mut() {
        data("data.eval", e)?;
    }
    Ok(())
}

/// Everything a run needs that is derived from its config.
pub struct Prepared {
    pub model: Model,
    pub encoder: Encoder,
    pub train: Vec<Sequence>,
    pub eval: Vec<Sequence>,
    pub dropped: usize,
}

/// Loads the model, adds LoRA, and encodes the data.
pub fn prepare(cfg: &RunConfig) -> Result<Prepared, TrainError> {
    let device = source::device(&cfg.train.device)?;
    let dtype = source::dtype(&cfg.train.dtype)?;
    let (mut model, tokenizer) = source::load_as(&cfg.model.path, &device, dtype)?;
    model.add_lora(&(&cfg.lora).into(), cfg.train.seed)?;
    let encoder = Encoder::new(
        tokenizer,
        &TemplateChoice::parse(&cfg.model.template),
        cfg.data.train_on,
    )?;
    let d = &cfg.data;
    let (examples, mut dropped) = dataset::encode_file(
        Path::new(&d.train),
        &d.format,
        &encoder,
        d.max_seq_len,
        d.length_policy,
    )?;
    let (train, eval) = match &d.eval {
        Some(path) => {
            let (eval, n) = dataset::encode_file(
                Path::new(path),
                &d.format,
                &encoder,
                d.max_seq_len,
                d.length_policy,
            )?;
            dropped += n;
            (examples, eval)
        }
        None => dataset::split(examples, d.eval_split, cfg.train.seed),
    };
    Ok(Prepared {
        model,
        encoder,
        train: dataset::sequences(train, d.packing, d.max_seq_len),
        eval: dataset::sequences(eval, false, d.max_seq_len),
        dropped,
    })
}

/// Mean loss over every target of `seqs` (no dropout, no graph kept).
pub fn eval_loss(
    model: &Model,
    seqs: &[Sequence],
    batch_size: usize,
    pad_id: u32,
) -> Result<(f64, usize), TrainError> {
    let (sum, n) = crate::eval::sequence_loss(model, seqs, batch_size, pad_id)?;
    Ok((if n == 0 { f64::NAN } else { sum / n as f64 }, n))
}

fn gpu_used(gpus: &Option<telemetry::Gpus>) -> Option<u64> {
    gpus.as_ref()
        .map(|g| g.memory().iter().map(|m| m.used).sum())
}

/// A test hook: `TUNELAB_FAULT_NAN_AT_STEP=N` turns step N's loss into NaN, to exercise the
/// failure path without a diverging model.
fn injected_nan(step: u64) -> bool {
    std::env::var("TUNELAB_FAULT_NAN_AT_STEP")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        == Some(step)
}

/// Trains `cfg` (paths already absolute) into `run`, resuming from its newest good
/// checkpoint when `resume`. `stop` is polled between steps: once set, a checkpoint is
/// written and the run ends `stopped`. Failures after setup (a NaN loss) end the run
/// `failed` and are reported in the outcome; setup errors are returned.
pub fn train(
    cfg: &RunConfig,
    run: &RunDir,
    resume: bool,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, TrainError> {
    std::fs::create_dir_all(&run.root).map_err(|e| io_err(&run.root, e))?;
    let started = now();
    let mut journal = Journal {
        run,
        observer,
        status: Status {
            state: RunState::Queued,
            pid: Some(std::process::id()),
            step: 0,
            total_steps: 0,
            error: None,
            started,
            updated: started,
        },
    };
    if !resume {
        let yaml = serde_yaml::to_string(cfg).map_err(|e| TrainError::Config(e.to_string()))?;
        crate::data::writer::write_atomic(&run.config(), yaml.as_bytes())
            .map_err(|e| io_err(&run.config(), e))?;
    } else if let Ok(old) = run.read_status() {
        journal.status.started = old.started;
    }
    journal.status(RunState::Running, 0, None)?;
    match run_loop(cfg, run, resume, stop, &mut journal) {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            let step = journal.status.step;
            let _ = journal.event(json!({"type": "failed", "step": step, "error": e.to_string()}));
            let _ = journal.status(RunState::Failed, step, Some(e.to_string()));
            Err(e)
        }
    }
}

fn run_loop(
    cfg: &RunConfig,
    run: &RunDir,
    resume: bool,
    stop: &AtomicBool,
    journal: &mut Journal,
) -> Result<TrainOutcome, TrainError> {
    let t = &cfg.train;
    let Prepared {
        mut model,
        encoder,
        train,
        eval,
        dropped,
    } = prepare(cfg)?;
    let pad = encoder.tokenizer.pad_id();
    let order = DataOrder {
        seed: t.seed,
        batch_size: t.batch_size,
        sequences: train.len(),
    };
    let ga = t.grad_accum.max(1) as u64;
    let total = t.max_steps.unwrap_or_else(|| {
        ((t.epochs * order.micro_per_epoch() as f64) / ga as f64)
            .ceil()
            .max(1.0) as u64
    });
    let warmup = if t.warmup < 1.0 {
        (t.warmup * total as f64).ceil() as u64
    } else {
        t.warmup as u64
    };
    let sched = Scheduler {
        schedule: t.scheduler,
        peak_lr: t.lr,
        warmup_steps: warmup,
        total_steps: total,
    };
    journal.status.total_steps = total;
    let mut state = TrainerState {
        step: 0,
        micro: 0,
        epoch: 0.0,
        tokens_seen: 0,
        elapsed_s: 0.0,
        best_eval_loss: None,
        seed: t.seed,
        total_steps: total,
        files: Default::default(),
    };
    if resume {
        let (found, skipped) = checkpoint::latest_good(&run.checkpoints());
        for (path, why) in skipped {
            journal.event(json!({"type": "checkpoint_skipped", "path": path.display().to_string(), "reason": why}))?;
        }
        if let Some((dir, s)) = found {
            crate::lora::peft::load(&mut model, &dir)?;
            state = s;
            state.total_steps = total;
            journal.event(json!({"type": "resume", "from_step": state.step, "checkpoint": dir.display().to_string()}))?;
        } else {
            journal.event(json!({"type": "resume", "from_step": 0, "checkpoint": null}))?;
        }
    }
    let params = model.lora_vars();
    let mut opt = AdamW::new(
        params.clone(),
        AdamWConfig {
            lr: t.lr,
            weight_decay: t.weight_decay,
            ..Default::default()
        },
    )?;
    if state.step > 0 {
        let dir = checkpoint::step_dir(&run.checkpoints(), state.step);
        let p = dir.join(checkpoint::OPTIMIZER_FILE);
        opt.load(&p).map_err(|e| io_err(&p, e))?;
    }
    let mut grads = Grads::new(params.iter().map(|(_, v)| v.clone()).collect());
    let gpus = telemetry::Gpus::open();
    journal.event(json!({
        "type": "start",
        "step": state.step,
        "total_steps": total,
        "trainable_params": model.trainable_parameters(),
        "train_sequences": train.len(),
        "eval_examples": eval.len(),
        "dropped_examples": dropped,
        "micro_batches_per_epoch": order.micro_per_epoch(),
        "warmup_steps": warmup,
        "device": t.device,
        "dtype": t.dtype,
        "name": cfg.name,
    }))?;
    let eval_batch = t.batch_size.max(1);
    let mut last_eval = None;
    let do_eval = |model: &Model,
                   step: u64,
                   journal: &mut Journal,
                   state: &mut TrainerState|
     -> Result<Option<f64>, TrainError> {
        if eval.is_empty() {
            return Ok(None);
        }
        let (loss, n) = eval_loss(model, &eval, eval_batch, pad)?;
        state.best_eval_loss = Some(state.best_eval_loss.map_or(loss, |b: f64| b.min(loss)));
        journal.event(json!({"type": "eval", "step": step, "eval_loss": loss, "eval_tokens": n, "perplexity": loss.exp()}))?;
        Ok(Some(loss))
    };
    if state.step == 0 && t.eval_every > 0 {
        last_eval = do_eval(&model, 0, journal, &mut state)?;
    }
    let session_start = Instant::now();
    let elapsed_before = state.elapsed_s;
    let start_step = state.step;
    let save = |model: &Model,
                opt: &AdamW,
                state: &TrainerState,
                journal: &mut Journal|
     -> Result<(), TrainError> {
        let dir = checkpoint::save(&run.checkpoints(), model, &cfg.model.path, opt, state)
            .map_err(|e| TrainError::Io {
                path: run.checkpoints().display().to_string(),
                message: e.to_string(),
            })?;
        checkpoint::prune(&run.checkpoints(), t.keep_checkpoints)
            .map_err(|e| io_err(&run.checkpoints(), e))?;
        journal.event(
            json!({"type": "checkpoint", "step": state.step, "path": dir.display().to_string()}),
        )
    };
    let mut last_saved = state.step;
    while state.step < total {
        if stop.load(Ordering::SeqCst) {
            journal.status(RunState::Stopping, state.step, None)?;
            if last_saved != state.step {
                save(&model, &opt, &state, journal)?;
            }
            journal.event(json!({"type": "stopped", "step": state.step}))?;
            journal.status(RunState::Stopped, state.step, None)?;
            return Ok(TrainOutcome {
                state: RunState::Stopped,
                step: state.step,
                total_steps: total,
                error: None,
                last_eval_loss: last_eval,
            });
        }
        let step_start = Instant::now();
        let micro: Vec<_> = (0..ga)
            .map(|k| {
                let idx = order.micro_batch(state.micro + k);
                let rows: Vec<&Sequence> = idx.iter().map(|&i| &train[i]).collect();
                collate(&rows, pad)
            })
            .collect();
        let window: usize = micro.iter().map(|m| m.targets).sum();
        let mut loss = 0f64;
        let mut tokens = 0usize;
        for (k, mb) in micro.iter().enumerate() {
            let seed = (model.lora.as_ref().is_some_and(|l| l.dropout > 0.0))
                .then(|| t.seed ^ (state.micro + k as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let ml = forward_backward(
                &model,
                mb,
                window,
                seed,
                t.gradient_checkpointing,
                &mut grads,
            )?;
            loss += ml.loss;
            tokens += mb.tokens;
        }
        let next = state.step + 1;
        if injected_nan(next) {
            loss = f64::NAN;
        }
        let norm = grads.clip(t.max_grad_norm)?;
        if !loss.is_finite() || !norm.is_finite() {
            let why = format!(
                "{} at step {next}; the last good checkpoint is step-{last_saved}",
                if loss.is_finite() {
                    format!("grad_norm is {norm}")
                } else {
                    format!("loss is {loss}")
                }
            );
            journal.event(json!({"type": "failed", "step": next, "error": why}))?;
            journal.status(RunState::Failed, state.step, Some(why.clone()))?;
            return Ok(TrainOutcome {
                state: RunState::Failed,
                step: state.step,
                total_steps: total,
                error: Some(why),
                last_eval_loss: last_eval,
            });
        }
        let lr = sched.lr(state.step);
        opt.set_lr(lr);
        opt.step(&grads)?;
        grads.clear();
        state.step = next;
        state.micro += ga;
        state.tokens_seen += tokens as u64;
        state.epoch = order.epoch(state.micro);
        let step_s = step_start.elapsed().as_secs_f64();
        let session = session_start.elapsed().as_secs_f64();
        state.elapsed_s = elapsed_before + session;
        let per_step = session / (state.step - start_step) as f64;
        let mut ev = json!({
            "type": "train",
            "step": state.step,
            "total_steps": total,
            "loss": loss,
            "lr": lr,
            "grad_norm": norm,
            "tokens": tokens,
            "tokens_per_s": tokens as f64 / step_s.max(1e-9),
            "epoch": state.epoch,
            "elapsed": state.elapsed_s,
            "eta": per_step * (total - state.step) as f64,
            "rss": telemetry::rss_bytes(None),
        });
        if let Some(used) = gpu_used(&gpus) {
            ev["gpu_mem"] = json!(used);
        }
        journal.event(ev)?;
        journal.status(RunState::Running, state.step, None)?;
        if t.eval_every > 0 && (state.step % t.eval_every == 0 || state.step == total) {
            last_eval = do_eval(&model, state.step, journal, &mut state)?;
        }
        if t.save_every > 0 && state.step % t.save_every == 0 && state.step != total {
            save(&model, &opt, &state, journal)?;
            last_saved = state.step;
        }
    }
    save(&model, &opt, &state, journal)?;
    let adapter = run.adapter();
    let tmp = run.root.join(".adapter.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    crate::lora::peft::save(&model, &tmp, &cfg.model.path)?;
    if adapter.exists() {
        std::fs::remove_dir_all(&adapter).map_err(|e| io_err(&adapter, e))?;
    }
    std::fs::rename(&tmp, &adapter).map_err(|e| io_err(&adapter, e))?;
    journal.event(json!({"type": "done", "step": state.step, "adapter": adapter.display().to_string(), "best_eval_loss": state.best_eval_loss}))?;
    journal.status(RunState::Done, state.step, None)?;
    Ok(TrainOutcome {
        state: RunState::Done,
        step: state.step,
        total_steps: total,
        error: None,
        last_eval_loss: last_eval,
    })
}
