//! Experiment trackers: a run's numbers where a team already looks at them. The trainer's
//! journal hands every event it writes to [`Trackers`], so SFT, DPO, KTO and GRPO runs
//! report alike; `train.report_to` picks the trackers (`tensorboard`: event files in the
//! run's `tensorboard/` folder, `mlflow`: a tracking server's REST API).
//!
//! A tracker never fails a run: its first failure comes back as a warning (the journal
//! writes it as a `warning` event) and the run goes on without it (TensorBoard) or with it
//! retrying on its own thread (MLflow). `events.jsonl` stays the record; `tunelab runs
//! export --tensorboard` rebuilds a run's TensorBoard files from it at any time.

pub mod error;
pub mod mlflow;
pub mod scalars;
pub mod tensorboard;
pub mod tfrecord;

pub use error::TrackError;

use crate::config::{RunConfig, Tracker};
use crate::runs::{EventKind, RunDir, RunEvent};
use std::time::Duration;

/// How long the end of a run waits for MLflow to take its last metrics and status.
const MLFLOW_FINISH_WAIT: Duration = Duration::from_secs(30);

/// The trackers a run reports to.
#[derive(Default)]
pub struct Trackers {
    tensorboard: Option<tensorboard::EventFile>,
    mlflow: Option<mlflow::Mlflow>,
}

impl Trackers {
    /// No trackers: events stay in the run folder.
    pub fn none() -> Self {
        Trackers::default()
    }

    /// Starts the trackers `cfg.train.report_to` names for `run` (`resume`: a resumed run,
    /// which MLflow continues in the same MLflow run). The warnings say which could not
    /// start and why.
    pub fn start(cfg: &RunConfig, run: &RunDir, resume: bool) -> (Self, Vec<String>) {
        let mut t = Trackers::none();
        let mut warnings = Vec::new();
        for tracker in &cfg.train.report_to {
            match tracker {
                Tracker::Tensorboard => {
                    let dir = run.root.join(tensorboard::FOLDER);
                    match tensorboard::EventFile::create(&dir, crate::units::unix_now()) {
                        Ok(f) => t.tensorboard = Some(f),
                        Err(e) => warnings.push(format!("tensorboard: {e}; not writing events")),
                    }
                }
                Tracker::Mlflow => {
                    let env = |k: &str| std::env::var(k).ok();
                    let started = mlflow::Settings::from_env(&env, cfg, &run.root, resume)
                        .and_then(mlflow::Mlflow::start);
                    match started {
                        Ok(m) => t.mlflow = Some(m),
                        Err(e) => warnings.push(format!("mlflow: {e}")),
                    }
                }
            }
        }
        (t, warnings)
    }

    /// Hands `event` to every tracker. Returns warnings: a tracker's first failure (a
    /// TensorBoard file that cannot be written is given up; MLflow retries on its own).
    /// A run's last event (done, failed, stopped) ends them: MLflow sends what it holds and
    /// the run's status, waiting a bounded time.
    pub fn record(&mut self, event: &RunEvent) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(tb) = &mut self.tensorboard {
            if let Err(e) = tb.write(event) {
                warnings.push(format!(
                    "tensorboard: {e}; no more TensorBoard events for this run (`tunelab runs \
                     export --tensorboard` rebuilds them from events.jsonl)"
                ));
                self.tensorboard = None;
            }
        }
        if let Some(m) = &mut self.mlflow {
            if let Some((step, values)) = scalars::scalars(&event.kind) {
                if !values.is_empty() {
                    m.log(step, event.time, &values);
                }
            }
            let end = match event.kind {
                EventKind::Done { .. } => Some(mlflow::End::Finished),
                EventKind::Failed { .. } => Some(mlflow::End::Failed),
                EventKind::Stopped { .. } => Some(mlflow::End::Killed),
                _ => None,
            };
            match end {
                Some(end) => {
                    warnings.extend(m.finish(end, MLFLOW_FINISH_WAIT));
                    self.mlflow = None;
                }
                None => warnings.extend(m.notes()),
            }
        }
        warnings
    }
}

/// Writes `run`'s TensorBoard file from its `events.jsonl`: into `out/<run id>/` when `out`
/// is given, else into the run's own `tensorboard/` folder (replacing the files there,
/// which a live run would still be writing: that is refused).
pub fn export_tensorboard(
    run: &RunDir,
    out: Option<&std::path::Path>,
) -> Result<tensorboard::Exported, TrackError> {
    let dir = match out {
        Some(o) => o.join(run.root.file_name().unwrap_or(run.root.as_os_str())),
        None => {
            let s = crate::runs::summarize(run);
            if s.state.is_some_and(|st| !st.is_final()) && !s.orphaned {
                return Err(TrackError::Live(format!(
                    "{}: the run is still going and writing {}/; export into another folder \
                     with --out",
                    s.id,
                    tensorboard::FOLDER
                )));
            }
            run.root.join(tensorboard::FOLDER)
        }
    };
    let path = run.events_path();
    if !path.is_file() {
        return Err(TrackError::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no events"),
        ));
    }
    let (events, _) = crate::runs::read_events(&path, 0).map_err(|e| TrackError::io(&path, e))?;
    tensorboard::export(&events, &dir)
}
