//! A finished Hugging Face Trainer run (TRL, Axolotl, LLaMA-Factory) as a tunelab run: the
//! PEFT adapter (in the output folder, or its newest `checkpoint-N`) is copied into the run's
//! `adapter/`, `trainer_state.json`'s `log_history` becomes typed [`RunEvent`]s (train and
//! eval events with TRL's metric names, between a start and a done event), written with the
//! run directory's own writers, and `status.json` says `done`. The config is the one
//! `export-config` left beside the output (`tunelab.yaml`), or rebuilt from the adapter
//! (`base_model_name_or_path`, its LoRA shape) when that is all there is.

use super::ScaleoutError;
use crate::config::{Method, RunConfig};
use crate::runs::event::{Eval, Metrics, Start, Train};
use crate::runs::{EventKind, RunDir, RunEvent, RunState, Status, STATUS_FORMAT};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// What `import` is told besides the folder.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The run's name (its id is the name and the time); default: the config's name, or
    /// the folder's.
    pub name: Option<String>,
    /// The base model, when the adapter does not name one (or names one elsewhere).
    pub model: Option<String>,
}

/// What `import` wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    pub run: RunDir,
    pub id: String,
    /// The folders the adapter and the trainer state came from.
    pub adapter_from: PathBuf,
    pub state_from: PathBuf,
    pub steps: u64,
    pub train_events: usize,
    pub eval_events: usize,
    /// Where the run's `config.yaml` came from, or why there is none.
    pub config: Result<String, String>,
}

fn import_err(path: &Path, message: impl Into<String>) -> ScaleoutError {
    ScaleoutError::Import {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// `checkpoint-N` folders of `dir`, oldest first.
pub(crate) fn checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
    crate::runs::adapters::numbered_dirs(dir, "checkpoint-")
}

/// `dir` itself when `ok(dir)`, else its newest checkpoint that is.
pub(crate) fn newest(dir: &Path, ok: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if ok(dir) {
        return Some(dir.to_path_buf());
    }
    checkpoints(dir)
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .find(|p| ok(p))
}

pub(crate) fn is_adapter(d: &Path) -> bool {
    d.join("adapter_config.json").is_file() && d.join("adapter_model.safetensors").is_file()
}

/// Brings the finished run in `src` into `root` (the runs folder) as a new run.
pub fn import(src: &Path, root: &Path, opts: &ImportOptions) -> Result<Imported, ScaleoutError> {
    if !src.is_dir() {
        return Err(import_err(src, "no such folder"));
    }
    let state_dir = newest(src, |d| d.join("trainer_state.json").is_file()).ok_or_else(|| {
        import_err(
            src,
            "no trainer_state.json here or in a checkpoint-N folder: is this a Hugging Face Trainer output_dir (TRL, Axolotl, LLaMA-Factory)?",
        )
    })?;
    let adapter_dir = newest(src, is_adapter).ok_or_else(|| {
        let bin = newest(src, |d| d.join("adapter_model.bin").is_file());
        import_err(
            src,
            match bin {
                Some(d) => format!(
                    "{}: only a pickle adapter_model.bin, which can run code when loaded; save the adapter as safetensors",
                    d.display()
                ),
                None => "no PEFT adapter (adapter_config.json and adapter_model.safetensors) here or in a checkpoint-N folder".into(),
            },
        )
    })?;
    let lora = crate::model::peft::read_config(&adapter_dir)?;
    let state_path = state_dir.join("trainer_state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| ScaleoutError::Io {
        path: state_path.clone(),
        source: e,
    })?;
    let state: Value = serde_json::from_str(&text)
        .map_err(|e| import_err(&state_path, format!("invalid JSON: {e}")))?;
    let history = state
        .get("log_history")
        .and_then(Value::as_array)
        .ok_or_else(|| import_err(&state_path, "no log_history list"))?;
    let u = |k: &str| state.get(k).and_then(Value::as_u64).unwrap_or(0);
    let global_step = u("global_step");
    let max_steps = u("max_steps").max(global_step);

    // The config: export-config's copy beside the output, else rebuilt from the adapter.
    let base_model = opts.model.clone().or_else(|| {
        let v: Value = std::fs::read_to_string(adapter_dir.join("adapter_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())?;
        v.get("base_model_name_or_path")?
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    let copy = [src.join(super::CONFIG_COPY)]
        .into_iter()
        .chain(src.parent().map(|p| p.join(super::CONFIG_COPY)))
        .find(|p| p.is_file());
    let config: Result<(RunConfig, String), String> = match &copy {
        Some(p) => RunConfig::load(p)
            .map(|mut c| {
                if let Some(m) = &opts.model {
                    c.model.path = m.clone();
                }
                (c, format!("{} (export-config's copy)", p.display()))
            })
            .map_err(|e| e.to_string()),
        None => match &base_model {
            Some(m) => rebuilt(m, src, &lora, &state, history),
            None => Err(
                "the adapter names no base model (base_model_name_or_path) and there is no tunelab.yaml beside the output; pass --model"
                    .into(),
            ),
        },
    };
    let method = match &config {
        Ok((c, _)) => c.train.method,
        Err(_) => guess_method(history),
    };
    let name = opts
        .name
        .clone()
        .or_else(|| config.as_ref().ok().and_then(|(c, _)| c.name.clone()))
        .unwrap_or_else(|| folder_name(src));

    let mtime = std::fs::metadata(&state_path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(crate::units::unix_now, |d| d.as_secs_f64());
    let runtime = history
        .iter()
        .find_map(|e| e.get("train_runtime").and_then(Value::as_f64))
        .or_else(|| paced_runtime(src, global_step))
        .unwrap_or(0.0);
    let (end, start) = (mtime, mtime - runtime);
    let at = |step: u64| {
        if global_step == 0 {
            end
        } else {
            start + runtime * step as f64 / global_step as f64
        }
    };

    let mut events = vec![RunEvent {
        kind: EventKind::Start(Start {
            step: 0,
            total_steps: max_steps,
            device: "external".into(),
            name: Some(name.clone()),
            method: Some(method.to_string()),
            compute: Some(format!("imported from {}", src.display())),
            ..Default::default()
        }),
        time: start,
    }];
    let (mut trains, mut evals) = (0, 0);
    let mut last_tokens: Option<(u64, f64)> = None;
    for e in history {
        let Some(o) = e.as_object() else { continue };
        let Some(mut kind) = log_entry(o, max_steps) else {
            continue;
        };
        let step = match &mut kind {
            EventKind::Eval(ev) => {
                evals += 1;
                ev.step
            }
            EventKind::Train(t) => {
                trains += 1;
                let num_tokens = o.get("num_tokens").and_then(Value::as_f64);
                t.tokens = match (num_tokens, last_tokens) {
                    (Some(n), Some((s, prev))) if t.step > s => {
                        ((n - prev) / (t.step - s) as f64) as u64
                    }
                    (Some(n), None) if t.step > 0 => (n / t.step as f64) as u64,
                    _ => 0,
                };
                if let Some(n) = num_tokens {
                    last_tokens = Some((t.step, n));
                }
                t.elapsed = at(t.step) - start;
                t.eta = (runtime - t.elapsed).max(0.0);
                t.step
            }
            _ => continue,
        };
        events.push(RunEvent {
            kind,
            time: at(step),
        });
    }
    let (last_loss, best_eval_loss) = crate::runs::loss_summary(&events);

    std::fs::create_dir_all(root).map_err(|e| ScaleoutError::Io {
        path: root.to_path_buf(),
        source: e,
    })?;
    let id = crate::runs::new_id(&name, root);
    let run = RunDir::new(root.join(&id));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| ScaleoutError::Io { path: p, source: e }
    };
    std::fs::create_dir_all(run.adapter()).map_err(io(&run.adapter()))?;
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        let (from, to) = (adapter_dir.join(f), run.adapter().join(f));
        std::fs::copy(&from, &to).map_err(io(&from))?;
    }
    let config_note = match config {
        Ok((cfg, from)) => {
            crate::files::write_atomic(&run.config(), cfg.to_yaml().as_bytes())
                .map_err(io(&run.config()))?;
            Ok(from)
        }
        Err(why) => Err(why),
    };
    events.push(RunEvent {
        kind: EventKind::Done {
            step: global_step,
            adapter: run.adapter().display().to_string(),
            best_eval_loss,
        },
        time: end,
    });
    let mut log = format!(
        "imported from {} (trainer state {}, adapter {})\n",
        src.display(),
        state_path.display(),
        adapter_dir.display()
    );
    for e in &events {
        run.append_event(e).map_err(io(&run.events_path()))?;
        let stamp = chrono::DateTime::from_timestamp(e.time as i64, 0)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        log.push_str(&format!("{stamp} {}\n", e.kind.describe()));
    }
    crate::files::write_atomic(&run.log(), log.as_bytes()).map_err(io(&run.log()))?;
    crate::files::write_atomic(&run.root.join("trainer_state.json"), text.as_bytes())
        .map_err(io(&run.root))?;
    run.write_status(&Status {
        state: RunState::Done,
        pid: None,
        step: global_step,
        total_steps: max_steps,
        error: None,
        started: start,
        updated: end,
        last_loss,
        best_eval_loss,
        format: STATUS_FORMAT,
        phase: None,
    })
    .map_err(io(&run.status_path()))?;
    Ok(Imported {
        run,
        id,
        adapter_from: adapter_dir,
        state_from: state_dir,
        steps: global_step,
        train_events: trains,
        eval_events: evals,
        config: config_note,
    })
}

/// The run's length when the final summary (`train_runtime`) is missing, as it is when the
/// state comes from a checkpoint: the pace between the first and the last checkpoint's
/// `trainer_state.json`, over every step.
fn paced_runtime(src: &Path, global_step: u64) -> Option<f64> {
    let saved: Vec<(u64, f64)> = checkpoints(src)
        .into_iter()
        .filter_map(|(n, p)| {
            let t = std::fs::metadata(p.join("trainer_state.json"))
                .and_then(|m| m.modified())
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            Some((n, t.as_secs_f64()))
        })
        .collect();
    let (&(s0, t0), &(s1, t1)) = (saved.first()?, saved.last()?);
    (s1 > s0 && t1 > t0).then(|| (t1 - t0) / (s1 - s0) as f64 * global_step as f64)
}

/// One Hugging Face Trainer log entry (`log_history`'s, or what a callback's `on_log` sees
/// with the step added) as a train or eval event with TRL's metric names; `None` for the
/// entries that are neither (the final summary). Timings and token counts are left at zero
/// for the caller, which knows the clock.
pub fn log_entry(o: &Map<String, Value>, max_steps: u64) -> Option<EventKind> {
    let step = o.get("step").and_then(Value::as_u64)?;
    let f = |k: &str| o.get(k).and_then(Value::as_f64);
    if let Some(eval_loss) = f("eval_loss") {
        return Some(EventKind::Eval(Eval {
            step,
            eval_loss,
            eval_tokens: 0,
            perplexity: eval_loss.exp(),
            metrics: metrics(o, true),
        }));
    }
    let loss = f("loss")?;
    Some(EventKind::Train(Train {
        step,
        total_steps: max_steps,
        loss,
        lr: f("learning_rate").unwrap_or(0.0),
        grad_norm: f("grad_norm").unwrap_or(f64::NAN),
        tokens: 0,
        tokens_per_s: 0.0,
        epoch: f("epoch").unwrap_or(0.0),
        elapsed: 0.0,
        eta: 0.0,
        rss: None,
        gpu_mem: None,
        gpu_util: None,
        gpus: Vec::new(),
        metrics: metrics(o, false),
    }))
}

/// Keys of a log entry that are not objective metrics (the event has them as fields, or
/// they are timings).
fn bookkeeping(k: &str) -> bool {
    matches!(
        k,
        "loss"
            | "eval_loss"
            | "learning_rate"
            | "grad_norm"
            | "epoch"
            | "step"
            | "num_tokens"
            | "eval_num_tokens"
            | "num_input_tokens_seen"
            | "total_flos"
    ) || k.ends_with("_runtime")
        || k.ends_with("_per_second")
}

/// The entry's other numbers under TRL's names (an eval entry's without `eval_`).
fn metrics(o: &Map<String, Value>, eval: bool) -> Metrics {
    o.iter()
        .filter(|(k, _)| !bookkeeping(k))
        .filter_map(|(k, v)| {
            let name = if eval {
                k.strip_prefix("eval_").unwrap_or(k)
            } else {
                k
            };
            v.as_f64().map(|x| (name.to_string(), x))
        })
        .collect()
}

/// The method the logged metrics show (DPO logs reward margins, KTO a KL point too).
fn guess_method(history: &[Value]) -> Method {
    crate::config::method_from_metrics(|k| history.iter().any(|e| e.get(k).is_some()))
}

/// The output folder's name, or its parent's when it is a generic `output`.
fn folder_name(src: &Path) -> String {
    let abs = std::path::absolute(src).unwrap_or_else(|_| src.to_path_buf());
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
    };
    match name(&abs) {
        Some(n) if !matches!(n.as_str(), "output" | "outputs" | "out") => n,
        _ => abs
            .parent()
            .and_then(name)
            .unwrap_or_else(|| "imported".into()),
    }
}

/// A config rebuilt from what the output records: the base model, the adapter's LoRA shape,
/// the method the metrics show, the step count and batch size.
fn rebuilt(
    model: &str,
    src: &Path,
    lora: &crate::lora::LoraConfig,
    state: &Value,
    history: &[Value],
) -> Result<(RunConfig, String), String> {
    let mut cfg = RunConfig::minimal(
        model,
        &format!("(not recorded: imported from {})", src.display()),
    );
    cfg.name = Some(folder_name(src));
    cfg.lora.r = lora.r;
    cfg.lora.alpha = lora.alpha;
    cfg.lora.dropout = lora.dropout;
    cfg.lora.use_rslora = lora.use_rslora;
    let known = crate::model::ModelConfig::all_linear_modules();
    let mut targets: Vec<String> = Vec::new();
    for t in &lora.target_modules {
        let short = t.rsplit('.').next().unwrap_or(t);
        if (short == "all-linear" || known.contains(&short)) && !targets.iter().any(|x| x == short)
        {
            targets.push(short.to_string());
        }
    }
    if targets.is_empty() {
        targets.push("all-linear".into());
    }
    cfg.lora.target_modules = targets;
    cfg.train.method = guess_method(history);
    let u = |k: &str| state.get(k).and_then(Value::as_u64).filter(|n| *n > 0);
    cfg.train.max_steps = u("max_steps");
    if let Some(b) = u("train_batch_size") {
        cfg.train.batch_size = b as usize;
    }
    match cfg.validate().first() {
        Some(i) => Err(format!("the rebuilt config is invalid: {i}")),
        None => Ok((
            cfg,
            "rebuilt from the adapter (model, LoRA shape) and trainer_state.json".into(),
        )),
    }
}
