//! A comparison ready to run: runs resolved to their newest adapters, the first run's
//! config giving the base and (unless tasks are given) its `eval.tasks`, the base loaded
//! and the tasks read. `tunelab runs compare` and the workbench's Eval view both build one
//! here, so they score the same sides on the same items. It lives in `train` because a
//! `generate: held_out` task needs the trainer's own held-out split.

use crate::config::eval_tasks::{self, EvalSection, HELD_OUT};
use crate::config::{ConfigError, ConfigIssue, RunConfig};
use crate::eval::compare::{self, CompareError, Comparison, Progress};
use crate::eval::tasks::{Tasks, TasksError};
use crate::infer::load::{Base, LoadError};
use crate::runs::RunDir;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("name at least one run")]
    NoRuns,
    #[error("{}: the run has no adapter yet (no checkpoint, no adapter/)", run.display())]
    NoAdapter { run: PathBuf },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "{} has no eval.tasks: add `eval.tasks` to its config (they run at each evaluation), \
         or give tasks: `tunelab runs compare RUN --task FILE` or `--generate FILE|held_out`",
        run.display()
    )]
    NoTasks { run: PathBuf },
    #[error("{0}")]
    Invalid(ConfigIssue),
    /// The base is loaded: an adapter trained on another model is refused by name before
    /// any side is scored.
    #[error("{run}: {why}", run = run.display())]
    WrongBase { run: PathBuf, why: String },
    #[error("{spec}: {source}")]
    Load {
        spec: String,
        #[source]
        source: LoadError,
    },
    #[error("the held-out split: {0}")]
    HeldOut(#[from] super::TrainError),
    #[error(transparent)]
    Tasks(#[from] TasksError),
}

/// What a comparison scores: the base, one adapter per run, the tasks.
pub struct Plan {
    pub base: Base,
    /// Each run's newest adapter (its final `adapter/`, else its newest checkpoint).
    pub adapters: Vec<PathBuf>,
    pub tasks: Tasks,
    /// The tasks as configured (the first run's `eval.tasks`, or those given).
    pub section: EvalSection,
}

impl Plan {
    /// Resolves `runs` (all trained on one model) and loads the base and the tasks:
    /// `given`, else the first run's `eval.tasks`. Reads files and loads a model: worker
    /// threads only in the workbench.
    pub fn prepare(runs: &[RunDir], given: Option<EvalSection>) -> Result<Plan, PlanError> {
        let first = runs.first().ok_or(PlanError::NoRuns)?;
        let mut adapters = Vec::with_capacity(runs.len());
        for run in runs {
            let adapter =
                crate::runs::adapters::newest(run).ok_or_else(|| PlanError::NoAdapter {
                    run: run.root.clone(),
                })?;
            adapters.push(adapter.dir);
        }
        let cfg = RunConfig::load(&first.config())?;
        let section = match given {
            Some(s) => s,
            None if cfg.eval.is_empty() => {
                return Err(PlanError::NoTasks {
                    run: first.root.clone(),
                })
            }
            None => cfg.eval.clone(),
        };
        if let Some(i) = eval_tasks::validate(&section).into_iter().next() {
            return Err(PlanError::Invalid(i));
        }
        let base = crate::infer::load::base(
            &cfg.model.path,
            &cfg.model.template,
            cfg.data.template_kwargs.clone(),
        )
        .map_err(|source| PlanError::Load {
            spec: cfg.model.path.clone(),
            source,
        })?;
        for (run, adapter) in runs.iter().zip(&adapters) {
            crate::model::base::check(adapter, &base.spec, &base.model.config).map_err(|why| {
                PlanError::WrongBase {
                    run: run.root.clone(),
                    why,
                }
            })?;
        }
        let held_out = if section
            .tasks
            .iter()
            .any(|t| t.generate.as_deref() == Some(HELD_OUT))
        {
            super::trainer::held_out_of(&cfg, &base.model, &base.encoder)?
        } else {
            Vec::new()
        };
        let tasks = Tasks::load(&section, &base.encoder, &held_out)?;
        Ok(Plan {
            base,
            adapters,
            tasks,
            section,
        })
    }

    /// The base and each adapter.
    pub fn sides(&self) -> usize {
        self.adapters.len() + 1
    }

    /// Scores every side; see [`compare::compare`].
    pub fn run(
        &self,
        progress: &mut dyn FnMut(Progress),
        stop: &AtomicBool,
    ) -> Result<Comparison, CompareError> {
        compare::compare(&self.base, &self.adapters, &self.tasks, progress, stop)
    }
}
