//! The training loop as a type. A [`Trainer`] owns a run directory (`config.yaml`,
//! `status.json`, `events.jsonl`, `train.log`, `checkpoints/step-N/`, `adapter/` at the end),
//! the model with its LoRA parameters, the objective, the optimizer and the counters a
//! resume needs. [`train`] drives it: resume, steps until done or interrupted, finish.
//! Whoever watches the run reads only the files.

use super::checkpoint::{self, TrainerState};
use super::dpo::Dpo;
use super::error::TrainError;
use super::grads::Grads;
use super::grpo::Grpo;
use super::interrupt::Interrupter;
use super::journal::{Journal, Observer};
use super::kto::Kto;
use super::method::{self, Built, SamplePrompt, Setup};
use super::micro::StepArgs;
use super::objective::Objective;
use super::optim::{AdamW, AdamWConfig};
use super::schedule::Scheduler;
use super::sft::Sft;
use crate::batch::{self, Order};
use crate::config::{Method, RunConfig};
use crate::model::{source, Model};
use crate::ops;
use crate::runs::event::{Eval, Metrics, Start, Train};
use crate::runs::{EventKind, RunDir, RunState, Status};
use crate::sweep::prune::Verdict;
use crate::sweep::SweepMark;
use crate::telemetry;
use crate::template::{Encoder, TemplateChoice};
use std::path::Path;
use std::time::Instant;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    pub state: RunState,
    pub step: u64,
    pub total_steps: u64,
    pub error: Option<String>,
    pub last_eval_loss: Option<f64>,
}

/// What one call of [`Trainer::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// A step was taken and more remain.
    Continue,
    /// The last step was taken: call [`Trainer::finish`].
    Finished,
    /// The loss or the gradient norm stopped being finite; the run has ended `failed`.
    Diverged(String),
    /// The sweep's pruner stopped the run at this evaluation: call [`Trainer::prune`].
    Pruned(Verdict),
}

/// Everything a run needs that is derived from its config.
pub struct Prepared {
    pub model: Model,
    pub encoder: Encoder,
    pub objective: Box<dyn Objective>,
    /// What encoding left out (length, tool policy).
    pub report: batch::EncodeReport,
    pub samples: Vec<SamplePrompt>,
    /// `eval.tasks`, loaded: scored at every evaluation.
    pub tasks: crate::eval::tasks::Tasks,
    /// How the frozen base is stored (QLoRA).
    pub quant: crate::model::QuantReport,
}

/// Loads the model, adds LoRA (or the preference run's starting adapter), and prepares the
/// config's method: its data, sample prompts and objective.
pub fn prepare(cfg: &RunConfig) -> Result<Prepared, TrainError> {
    prepare_with(cfg, &mut |_| {})
}

/// [`prepare`], telling `stage` as each part begins: `load model` (resolving, loading,
/// quantizing or reading the quantized-base cache), `tokenize data` (reading, rendering and
/// tokenizing the records, packing), `load tasks` (`eval.tasks`), so a run's phase line
/// says which of them the minute goes to.
pub fn prepare_with(cfg: &RunConfig, stage: &mut dyn FnMut(&str)) -> Result<Prepared, TrainError> {
    stage("load model");
    let device = cfg.train.device.open()?;
    let (mut model, tokenizer, quant) = source::load_quantized(
        &cfg.model.path,
        &device,
        cfg.train.dtype.candle(),
        crate::model::QuantPlan {
            cache: Some(crate::paths::Paths::resolve().cache),
            ..cfg.model.quant_plan()
        },
    )?;
    model.prefer_training_layout()?;
    let init_adapter = cfg.init_adapter();
    match init_adapter {
        Some(dir) => crate::model::peft::load(&mut model, Path::new(dir))?,
        None => model.add_lora(&(&cfg.lora).into(), cfg.train.seed)?,
    }
    let encoder = Encoder::new(
        tokenizer,
        &TemplateChoice::parse(&cfg.model.template),
        cfg.data.train_on,
    )?
    .with_tool_format(cfg.data.tool_format)
    .with_template_kwargs(cfg.data.template_kwargs.clone());
    let setup = Setup {
        cfg,
        model: &model,
        encoder: &encoder,
    };
    stage("tokenize data");
    // The one place the method is chosen: everything after it is the method's own.
    let Built {
        objective,
        report,
        samples,
        held_out,
    } = match cfg.train.method {
        Method::Sft => method::build::<Sft>(&setup)?,
        Method::Dpo => method::build::<Dpo>(&setup)?,
        Method::Kto => method::build::<Kto>(&setup)?,
        Method::Grpo => method::build::<Grpo>(&setup)?,
    };
    let tasks = if cfg.eval.is_empty() {
        crate::eval::tasks::Tasks::default()
    } else {
        stage("load tasks");
        let references = held_out_references(&encoder, &held_out);
        crate::eval::tasks::Tasks::load(&cfg.eval, &encoder, &references).map_err(Box::new)?
    };
    Ok(Prepared {
        model,
        encoder,
        objective,
        report,
        samples,
        tasks,
        quant,
    })
}

/// The held-out prompts and replies of `cfg`'s run (split as its trainer splits them), as
/// references for `generate: held_out` tasks, for a model and encoder loaded elsewhere.
pub fn held_out_of(
    cfg: &RunConfig,
    model: &Model,
    encoder: &Encoder,
) -> Result<Vec<crate::eval::tasks::Tokenized>, TrainError> {
    let setup = Setup {
        cfg,
        model,
        encoder,
    };
    let prompts = match cfg.train.method {
        Method::Sft => method::held_out::<Sft>(&setup)?,
        Method::Dpo => method::held_out::<Dpo>(&setup)?,
        Method::Kto => method::held_out::<Kto>(&setup)?,
        Method::Grpo => method::held_out::<Grpo>(&setup)?,
    };
    Ok(held_out_references(encoder, &prompts))
}

/// The held-out prompts with their replies decoded (stop tokens left out), as references
/// for `generate: held_out` tasks.
fn held_out_references(
    encoder: &Encoder,
    held_out: &[SamplePrompt],
) -> Vec<crate::eval::tasks::Tokenized> {
    let tok = &encoder.tokenizer;
    held_out
        .iter()
        .filter(|p| !p.reply.is_empty())
        .map(|p| {
            let reply: Vec<u32> = p
                .reply
                .iter()
                .copied()
                .filter(|id| !tok.stop_ids.contains(id))
                .collect();
            crate::eval::tasks::Tokenized {
                question: p.text.clone(),
                ids: p.ids.clone(),
                reference: tok.decode(&reply).unwrap_or_default().trim().to_string(),
            }
        })
        .collect()
}

/// AdamW and the gradient accumulator over the model's LoRA parameters.
fn optimizer(model: &Model, cfg: &RunConfig) -> Result<(AdamW, Grads), TrainError> {
    let params = model.lora_vars();
    let grads = Grads::new(params.iter().map(|(_, v)| v.clone()).collect());
    let opt = AdamW::new(
        params,
        AdamWConfig {
            lr: cfg.train.lr,
            weight_decay: cfg.train.weight_decay,
            ..Default::default()
        },
    )?;
    Ok((opt, grads))
}

/// A test hook: `TUNELAB_FAULT_NAN_AT_STEP=N` turns step N's loss into NaN, to exercise the
/// failure path without a diverging model.
fn injected_nan(step: u64) -> bool {
    std::env::var("TUNELAB_FAULT_NAN_AT_STEP")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        == Some(step)
}

/// One run in progress.
pub struct Trainer<'a> {
    cfg: &'a RunConfig,
    run: &'a RunDir,
    journal: Journal<'a>,
    model: Model,
    encoder: Encoder,
    objective: Box<dyn Objective>,
    report: batch::EncodeReport,
    samples: Vec<SamplePrompt>,
    tasks: crate::eval::tasks::Tasks,
    quant: crate::model::QuantReport,
    order: Order,
    sched: Scheduler,
    opt: AdamW,
    grads: Grads,
    state: TrainerState,
    /// Micro-batches per optimizer step.
    accum: u64,
    last_saved: u64,
    last_eval: Option<f64>,
    /// The latest evaluation's numbers, which the sweep's pruner judges.
    last_eval_event: Option<Eval>,
    /// The sweep this run belongs to (`sweep.json`), if any.
    sweep: Option<SweepMark>,
    /// GRPO steps in a row whose groups all scored flat (no learning signal).
    flat_rewards: crate::train::grpo::FlatRewards,
    gpus: Option<telemetry::Gpus>,
    session_start: Instant,
    elapsed_before: f64,
    start_step: u64,
}

impl<'a> Trainer<'a> {
    /// Loads everything the run needs; on failure the journal comes back to record it.
    fn new(
        cfg: &'a RunConfig,
        run: &'a RunDir,
        mut journal: Journal<'a>,
    ) -> Result<Self, Box<(TrainError, Journal<'a>)>> {
        // A failed phase write is not worth failing the run for; the next event retries.
        let prepared = prepare_with(cfg, &mut |name| {
            let _ = journal.phase(0, name, 0, 0, "");
        });
        // The load's temporary copies go back to the OS; the step's buffers are kept.
        crate::allocator::load_done();
        match prepared {
            Ok(parts) => Self::assemble(cfg, run, journal, parts),
            Err(e) => Err(Box::new((e, journal))),
        }
    }

    fn assemble(
        cfg: &'a RunConfig,
        run: &'a RunDir,
        journal: Journal<'a>,
        prepared: Prepared,
    ) -> Result<Self, Box<(TrainError, Journal<'a>)>> {
        let t = &cfg.train;
        let Prepared {
            model,
            encoder,
            objective,
            report,
            samples,
            tasks,
            quant,
        } = prepared;
        let order = Order {
            seed: t.seed,
            batch_size: t.batch_size,
            sequences: objective.train_items(),
        };
        let accum = t.grad_accum.max(1) as u64;
        let total = t.max_steps.unwrap_or_else(|| {
            ((t.epochs * order.micro_per_epoch() as f64) / accum as f64)
                .ceil()
                .max(1.0) as u64
        });
        let warmup = if t.warmup < 1.0 {
            (t.warmup * total as f64).ceil() as u64
        } else {
            t.warmup as u64
        };
        let (opt, grads) = match optimizer(&model, cfg) {
            Ok(o) => o,
            Err(e) => return Err(Box::new((e, journal))),
        };
        Ok(Trainer {
            cfg,
            run,
            journal,
            model,
            encoder,
            objective,
            report,
            samples,
            tasks,
            quant,
            order,
            sched: Scheduler {
                schedule: t.scheduler,
                peak_lr: t.lr,
                warmup_steps: warmup,
                total_steps: total,
            },
            opt,
            grads,
            state: TrainerState {
                step: 0,
                micro: 0,
                epoch: 0.0,
                tokens_seen: 0,
                elapsed_s: 0.0,
                best_eval_loss: None,
                seed: t.seed,
                total_steps: total,
                files: Default::default(),
            },
            accum,
            last_saved: 0,
            last_eval: None,
            last_eval_event: None,
            sweep: SweepMark::read(run),
            flat_rewards: Default::default(),
            gpus: telemetry::Gpus::open(),
            session_start: Instant::now(),
            elapsed_before: 0.0,
            start_step: 0,
        })
    }

    pub fn step_count(&self) -> u64 {
        self.state.step
    }

    pub fn total_steps(&self) -> u64 {
        self.sched.total_steps
    }

    /// Continues from the newest checkpoint that verifies (damaged ones are reported and
    /// skipped): LoRA weights, optimizer moments and counters.
    pub fn resume(&mut self) -> Result<(), TrainError> {
        let (found, skipped) = checkpoint::latest_good(&self.run.checkpoints());
        for (path, reason) in skipped {
            self.journal.event(EventKind::CheckpointSkipped {
                path: path.display().to_string(),
                reason,
            })?;
        }
        let Some((dir, s)) = found else {
            return self.journal.event(EventKind::Resume {
                from_step: 0,
                checkpoint: None,
            });
        };
        crate::model::peft::load(&mut self.model, &dir)?;
        // Loading replaces the LoRA parameters: the optimizer and gradients follow them.
        (self.opt, self.grads) = optimizer(&self.model, self.cfg)?;
        self.state = s;
        self.state.total_steps = self.sched.total_steps;
        if self.state.step > 0 {
            let p = dir.join(checkpoint::OPTIMIZER_FILE);
            self.opt
                .load(&p)
                .map_err(|source| checkpoint::CheckpointError::Optimizer { path: p, source })?;
        }
        let objective = dir.join(checkpoint::OBJECTIVE_FILE);
        if self.state.files.contains_key(checkpoint::OBJECTIVE_FILE) {
            let bytes = std::fs::read(&objective).map_err(|e| TrainError::io(&objective, e))?;
            self.objective.restore(&bytes)?;
        }
        self.last_saved = self.state.step;
        self.journal.status.best_eval_loss = self.state.best_eval_loss;
        self.journal.event(EventKind::Resume {
            from_step: self.state.step,
            checkpoint: Some(dir.display().to_string()),
        })
    }

    /// The start event, and the step-0 evaluation of a fresh run.
    fn begin(&mut self) -> Result<(), TrainError> {
        let t = &self.cfg.train;
        self.journal.status.total_steps = self.sched.total_steps;
        self.journal.event(EventKind::Start(Start {
            step: self.state.step,
            total_steps: self.sched.total_steps,
            trainable_params: self.model.trainable_parameters() as u64,
            train_sequences: self.objective.train_items() as u64,
            eval_examples: self.objective.eval_items() as u64,
            dropped_examples: self.report.dropped as u64,
            truncated_examples: self.report.truncated as u64,
            method: Some(t.method.to_string()),
            tool_records: self.report.tool_records as u64,
            tool_format: (self.report.tool_records > 0)
                .then(|| self.cfg.data.tool_format.to_string()),
            tool_records_dropped: self.report.tool_skipped as u64,
            desirable: self.report.desirable as u64,
            undesirable: self.report.undesirable as u64,
            undesirable_skipped: self.report.undesirable_skipped as u64,
            quantization: (self.quant.quantized_params > 0).then(|| self.quant.summary()),
            base_bytes: self.quant.base_bytes,
            micro_batches_per_epoch: self.order.micro_per_epoch(),
            warmup_steps: self.sched.warmup_steps,
            device: t.device.to_string(),
            dtype: t.dtype.to_string(),
            name: self.cfg.name.clone(),
            compute: Some(self.compute_path().into()),
            engine: None,
        }))?;
        let batch = t.batch_size.max(1);
        let precompute = match self.cfg.method_config() {
            crate::config::MethodConfig::Dpo(d) => d.precompute_ref,
            crate::config::MethodConfig::Kto(k) => k.precompute_ref,
            _ => false,
        };
        if precompute {
            self.journal.phase(self.state.step, "reference", 0, 0, "")?;
        }
        if let Some(line) = self.objective.prepare(&self.model, self.run, batch)? {
            self.journal.log(&line);
        }
        if self.state.step == 0 && t.eval_every > 0 && t.eval_at_start {
            self.evaluate()?;
        }
        self.session_start = Instant::now();
        self.elapsed_before = self.state.elapsed_s;
        self.start_step = self.state.step;
        Ok(())
    }

    /// Which step implementation this model takes.
    fn compute_path(&self) -> &'static str {
        if self.model.is_quantized() {
            "quantized base, hand-written backward"
        } else {
            "dense base, hand-written backward"
        }
    }

    /// One optimizer step: the window's micro-batches forward and backward, clipping, the
    /// optimizer, the train event, and the evaluation and checkpoint when they are due.
    pub fn step(&mut self) -> Result<StepOutcome, TrainError> {
        let t = &self.cfg.train;
        let step_start = Instant::now();
        let plan = self
            .objective
            .plan_step(&self.model, self.state.step, self.accum as usize)?;
        let windows: Vec<Vec<usize>> = match &plan {
            Some(p) => p.windows.clone(),
            None => (0..self.accum)
                .map(|k| self.order.micro_batch(self.state.micro + k))
                .collect(),
        };
        let mut window = super::objective::Window::default();
        for w in &windows {
            window += self.objective.window(w);
        }
        let mut loss = 0f64;
        let mut tokens = 0usize;
        let (mut metrics, samples) = match plan {
            Some(p) => (p.metrics, p.samples),
            None => (Metrics::new(), Vec::new()),
        };
        let dropout = self.model.lora.as_ref().is_some_and(|l| l.dropout > 0.0);
        for (k, items) in windows.iter().enumerate() {
            let micro = self.state.micro + k as u64;
            let args = StepArgs {
                window_targets: window.units,
                dropout_seed: dropout.then(|| t.seed ^ micro.wrapping_mul(0xD1B5_4A32_D192_ED03)),
                checkpointing: t.gradient_checkpointing,
                autograd: false,
                temperature: 1.0,
            };
            let (objective, model, grads) = (&self.objective, &self.model, &mut self.grads);
            let out = ops::on_pool(|| objective.micro_step(model, items, window, &args, grads))?;
            loss += out.loss;
            tokens += out.tokens;
            for (name, v) in out.metrics {
                *metrics.entry(name).or_default() += v;
            }
        }
        let next = self.state.step + 1;
        if injected_nan(next) {
            loss = f64::NAN;
        }
        let grads = &mut self.grads;
        let norm = ops::on_pool(|| grads.clip(t.max_grad_norm))?;
        if !loss.is_finite() || !norm.is_finite() {
            let why = format!(
                "{} at step {next}; the last good checkpoint is step-{}",
                if loss.is_finite() {
                    format!("grad_norm is {norm}")
                } else {
                    format!("loss is {loss}")
                },
                self.last_saved
            );
            self.journal.event(EventKind::Failed {
                step: next,
                error: why.clone(),
            })?;
            self.journal
                .status(RunState::Failed, self.state.step, Some(why.clone()))?;
            return Ok(StepOutcome::Diverged(why));
        }
        let lr = self.sched.lr(self.state.step);
        self.opt.set_lr(lr);
        let (opt, grads) = (&mut self.opt, &self.grads);
        ops::on_pool(|| opt.step(grads))?;
        self.grads.clear();
        let s = &mut self.state;
        s.step = next;
        s.micro += self.accum;
        s.tokens_seen += tokens as u64;
        s.epoch = self.order.epoch(s.micro);
        let step_s = step_start.elapsed().as_secs_f64();
        let session = self.session_start.elapsed().as_secs_f64();
        s.elapsed_s = self.elapsed_before + session;
        let per_step = session / (s.step - self.start_step) as f64;
        let total = self.sched.total_steps;
        let gpu = self.gpus.as_ref().map(|g| g.memory());
        let event = Train {
            step: s.step,
            total_steps: total,
            loss,
            lr,
            grad_norm: norm,
            tokens: tokens as u64,
            tokens_per_s: tokens as f64 / step_s.max(1e-9),
            epoch: s.epoch,
            elapsed: s.elapsed_s,
            eta: per_step * (total - s.step) as f64,
            rss: telemetry::rss_bytes(None),
            gpu_mem: gpu.as_ref().map(|g| g.iter().map(|m| m.used).sum()),
            gpu_util: gpu
                .as_ref()
                .and_then(|g| g.first())
                .and_then(|m| m.utilization),
            gpus: Vec::new(),
            metrics,
        };
        let step = s.step;
        let flat = self.flat_rewards.observe(&event.metrics);
        self.journal.event(EventKind::Train(event))?;
        if let Some(message) = flat {
            self.journal.event(EventKind::Warning { step, message })?;
        }
        for c in samples {
            self.journal.event(EventKind::Sample {
                step,
                prompt: c.prompt,
                reply: c.completion,
                rewards: c.rewards,
                advantage: Some(c.advantage),
            })?;
        }
        self.journal.status(RunState::Running, step, None)?;
        if t.eval_every > 0 && (step.is_multiple_of(t.eval_every) || step == total) {
            self.evaluate()?;
            // The last step finishes instead: a run that got there keeps its adapter.
            if step < total {
                if let Some(v) = self.prune_verdict() {
                    return Ok(StepOutcome::Pruned(v));
                }
            }
        }
        if t.save_every > 0 && step.is_multiple_of(t.save_every) && step != total {
            self.checkpoint()?;
        }
        Ok(if step >= total {
            StepOutcome::Finished
        } else {
            StepOutcome::Continue
        })
    }

    /// Held-out loss and metrics now (no dropout) and the scores of `eval.tasks`, as an
    /// `eval` event, then a greedy reply to each sample prompt as `sample` events.
    pub fn evaluate(&mut self) -> Result<Option<f64>, TrainError> {
        let batch = self.cfg.train.batch_size.max(1);
        let step = self.state.step;
        let (objective, model, journal) = (&self.objective, &self.model, &mut self.journal);
        let total = objective.eval_items() as u64;
        // The phase's events are best effort inside the loop; a write error surfaces after.
        let mut failed = None;
        let out = if total > 0 {
            journal.phase(step, "eval", 0, total, "examples")?;
            objective.evaluate_with(model, batch, &mut |done| {
                if let Err(e) = journal.phase(step, "eval", done as u64, total, "examples") {
                    failed.get_or_insert(e);
                }
            })?
        } else {
            None
        };
        let tasks = if self.tasks.is_empty() {
            Metrics::new()
        } else {
            let tasks = &self.tasks;
            tasks
                .run(model, &self.encoder.tokenizer, &mut |p| {
                    let name = format!("task {}", p.task);
                    let r = journal.phase(step, &name, p.done as u64, p.total as u64, "items");
                    if let Err(e) = r {
                        failed.get_or_insert(e);
                    }
                })
                .map_err(Box::new)?
                .metrics()
        };
        if let Some(e) = failed {
            return Err(e);
        }
        self.journal.end_phase()?;
        self.write_samples()?;
        let step = self.state.step;
        let Some(out) = out else {
            // No held-out split: the tasks' scores still make an event (no loss).
            if !tasks.is_empty() {
                let e = Eval {
                    step,
                    eval_loss: f64::NAN,
                    eval_tokens: 0,
                    perplexity: f64::NAN,
                    metrics: tasks,
                };
                self.last_eval_event = Some(e.clone());
                self.journal.event(EventKind::Eval(e))?;
            }
            return Ok(None);
        };
        let best = self.state.best_eval_loss;
        self.state.best_eval_loss = Some(best.map_or(out.loss, |b: f64| b.min(out.loss)));
        let mut metrics = out.metrics;
        metrics.extend(tasks);
        let e = Eval {
            step,
            eval_loss: out.loss,
            eval_tokens: out.count as u64,
            perplexity: out.loss.exp(),
            metrics,
        };
        self.last_eval_event = Some(e.clone());
        self.journal.event(EventKind::Eval(e))?;
        self.last_eval = Some(out.loss);
        Ok(Some(out.loss))
    }

    /// Greedy replies to the sample prompts with the adapter as it is now.
    fn write_samples(&mut self) -> Result<(), TrainError> {
        let cfg = crate::infer::sampling::Sampling {
            max_new_tokens: self.cfg.samples.max_new_tokens,
            ..Default::default()
        };
        let step = self.state.step;
        let total = self.samples.len() as u64;
        let mut replies = Vec::with_capacity(self.samples.len());
        for (k, p) in self.samples.iter().enumerate() {
            self.journal
                .phase(step, "samples", k as u64, total, "prompts")?;
            let mut reply = String::new();
            let mut error = None;
            crate::infer::generate(
                &self.model,
                &self.encoder.tokenizer,
                &p.ids,
                cfg.clone(),
                |e| {
                    match e {
                        crate::infer::GenEvent::Text(t) => reply.push_str(&t),
                        crate::infer::GenEvent::Error(e) => error = Some(e),
                        crate::infer::GenEvent::Done { .. } => {}
                    }
                    true
                },
            );
            if let Some(e) = error {
                self.journal
                    .log(&format!("sample {:?} failed: {e}", p.text));
                continue;
            }
            replies.push((p.text.clone(), reply.trim().to_string()));
        }
        if total > 0 {
            self.journal
                .phase(step, "samples", total, total, "prompts")?;
        }
        for (prompt, reply) in replies {
            self.journal.event(EventKind::Sample {
                step,
                prompt,
                reply,
                rewards: Default::default(),
                advantage: None,
            })?;
        }
        self.journal.end_phase()
    }

    /// A whole checkpoint of the current step (temp folder, then rename), pruned to
    /// `keep_checkpoints`.
    pub fn checkpoint(&mut self) -> Result<(), TrainError> {
        self.journal
            .phase(self.state.step, "checkpoint", 0, 0, "")?;
        let dir = checkpoint::save(
            &self.run.checkpoints(),
            &self.model,
            &self.cfg.model.path,
            &self.opt,
            &self.state,
            self.objective.state().as_deref(),
        )?;
        checkpoint::prune(&self.run.checkpoints(), self.cfg.train.keep_checkpoints)
            .map_err(|e| TrainError::io(&self.run.checkpoints(), e))?;
        self.last_saved = self.state.step;
        self.journal.event(EventKind::Checkpoint {
            step: self.state.step,
            path: dir.display().to_string(),
        })
    }

    fn outcome(&self, state: RunState, error: Option<String>) -> TrainOutcome {
        TrainOutcome {
            state,
            step: self.state.step,
            total_steps: self.sched.total_steps,
            error,
            last_eval_loss: self.last_eval,
        }
    }

    /// Whether the sweep's pruner stops the run after the evaluation just made: its metric
    /// against the median of the sweep's completed runs at this step. A run in no sweep, or
    /// whose evaluation lacks the metric, is never pruned.
    fn prune_verdict(&self) -> Option<Verdict> {
        let mark = self.sweep.as_ref()?;
        let e = self.last_eval_event.as_ref()?;
        let value = crate::sweep::metric::eval_value(e, &mark.metric)?;
        crate::sweep::prune::verdict(mark, &self.run.root, e.step, value)
    }

    /// Ends a pruned run: a checkpoint (it can be resumed), the verdict, `pruned`.
    pub fn prune(mut self, v: Verdict) -> Result<TrainOutcome, TrainError> {
        let step = self.state.step;
        if self.last_saved != step {
            self.checkpoint()?;
        }
        self.journal.event(EventKind::Pruned {
            step,
            metric: v.metric.clone(),
            value: v.value,
            median: v.median,
            compared: v.compared,
        })?;
        self.journal.status(RunState::Pruned, step, None)?;
        Ok(self.outcome(RunState::Pruned, Some(v.line())))
    }

    /// Ends an interrupted run: a checkpoint unless the current step has one, `stopped`.
    pub fn stop(mut self) -> Result<TrainOutcome, TrainError> {
        let step = self.state.step;
        self.journal.status(RunState::Stopping, step, None)?;
        if self.last_saved != step {
            self.checkpoint()?;
        }
        self.journal.event(EventKind::Stopped { step })?;
        self.journal.status(RunState::Stopped, step, None)?;
        Ok(self.outcome(RunState::Stopped, None))
    }

    /// Ends a completed run: the last checkpoint, the adapter in `adapter/` (written aside
    /// and renamed into place), `done`.
    pub fn finish(mut self) -> Result<TrainOutcome, TrainError> {
        self.checkpoint()?;
        self.journal.phase(self.state.step, "adapter", 0, 0, "")?;
        let adapter = self.run.adapter();
        let tmp = self.run.root.join(".adapter.tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        }
        crate::model::peft::save(&self.model, &tmp, &self.cfg.model.path)?;
        if adapter.exists() {
            std::fs::remove_dir_all(&adapter).map_err(|e| TrainError::io(&adapter, e))?;
        }
        std::fs::rename(&tmp, &adapter).map_err(|e| TrainError::io(&adapter, e))?;
        let step = self.state.step;
        self.journal.event(EventKind::Done {
            step,
            adapter: adapter.display().to_string(),
            best_eval_loss: self.state.best_eval_loss,
        })?;
        self.journal.status(RunState::Done, step, None)?;
        Ok(self.outcome(RunState::Done, None))
    }
}

/// Trains `cfg` (paths already absolute) into `run`, resuming from its newest good
/// checkpoint when `resume`. `stop` is polled between steps: once set, a checkpoint is
/// written and the run ends `stopped`. Failures after setup (a NaN loss) end the run
/// `failed` and are reported in the outcome; setup errors are returned (and recorded).
pub fn train(
    cfg: &RunConfig,
    run: &RunDir,
    resume: bool,
    stop: &Interrupter,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome, TrainError> {
    std::fs::create_dir_all(&run.root).map_err(|e| TrainError::io(&run.root, e))?;
    let mut status = Status::starting(crate::units::unix_now());
    if !resume {
        let yaml = serde_yaml::to_string(cfg).map_err(|e| TrainError::Config(e.to_string()))?;
        crate::files::write_atomic(&run.config(), yaml.as_bytes())
            .map_err(|e| TrainError::io(&run.config(), e))?;
    } else if let Ok(old) = run.read_status() {
        status.started = old.started;
    }
    let mut journal = Journal::new(run, observer, status);
    journal.status(RunState::Running, 0, None)?;
    journal.start_trackers(cfg, resume)?;
    // Loading the model, tokenizing the data, quantizing: nothing to count yet, but the run
    // says which of them it is doing (`Trainer::new` names each).
    let mut trainer = match Trainer::new(cfg, run, journal) {
        Ok(t) => t,
        Err(failed) => {
            let (e, mut journal) = *failed;
            fail(&mut journal, &e);
            return Err(e);
        }
    };
    match drive(&mut trainer, resume, stop) {
        Ok(Drive::Finished) => trainer.finish(),
        Ok(Drive::Stopped) => trainer.stop(),
        Ok(Drive::Pruned(v)) => trainer.prune(v),
        Ok(Drive::Diverged(why)) => Ok(trainer.outcome(RunState::Failed, Some(why))),
        Err(e) => {
            fail(&mut trainer.journal, &e);
            Err(e)
        }
    }
}

enum Drive {
    Finished,
    Stopped,
    Pruned(Verdict),
    Diverged(String),
}

fn drive(t: &mut Trainer, resume: bool, stop: &Interrupter) -> Result<Drive, TrainError> {
    if resume {
        t.resume()?;
    }
    t.begin()?;
    loop {
        if t.step_count() >= t.total_steps() {
            return Ok(Drive::Finished);
        }
        if stop.should_stop() {
            return Ok(Drive::Stopped);
        }
        match t.step()? {
            StepOutcome::Continue => {}
            StepOutcome::Finished => return Ok(Drive::Finished),
            StepOutcome::Diverged(why) => return Ok(Drive::Diverged(why)),
            StepOutcome::Pruned(v) => return Ok(Drive::Pruned(v)),
        }
    }
}

/// Records a setup or I/O failure as the run's end.
fn fail(j: &mut Journal, e: &TrainError) {
    let step = j.status.step;
    let _ = j.event(EventKind::Failed {
        step,
        error: e.to_string(),
    });
    let _ = j.status(RunState::Failed, step, Some(e.to_string()));
}
