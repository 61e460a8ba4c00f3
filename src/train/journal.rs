//! Everything a run says goes through the journal: each event is appended to
//! `events.jsonl`, summarized into `train.log`, shown to the observer, and folded into
//! `status.json` (the latest loss and the best eval loss), which it rewrites atomically.
//! It also hands each event to the run's experiment trackers (`train.report_to`), whose
//! failures become `warning` events and never the run's.

use super::error::TrainError;
use crate::runs::event::Phase;
use crate::runs::{EventKind, RunDir, RunEvent, RunState, Status};
use crate::track::Trackers;
use std::io::Write;
use std::time::{Duration, Instant};

/// Sees every event as it is written (the CLI's progress bar).
pub trait Observer {
    fn event(&mut self, event: &RunEvent);
}

impl<F: FnMut(&RunEvent)> Observer for F {
    fn event(&mut self, event: &RunEvent) {
        self(event)
    }
}

pub(crate) struct Journal<'a> {
    run: &'a RunDir,
    observer: &'a mut dyn Observer,
    pub status: Status,
    /// The phase in progress: its name, when it began and when its progress was last
    /// written.
    phase: Option<(String, Instant, Instant)>,
    trackers: Trackers,
}

/// Progress events of a phase are written at most this often (its first and last always).
const PHASE_EVERY: Duration = Duration::from_millis(250);

impl<'a> Journal<'a> {
    pub fn new(run: &'a RunDir, observer: &'a mut dyn Observer, status: Status) -> Self {
        Journal {
            run,
            observer,
            status,
            phase: None,
            trackers: Trackers::none(),
        }
    }

    /// Starts the experiment trackers `cfg` asks for; one that cannot start is a warning.
    pub fn start_trackers(
        &mut self,
        cfg: &crate::config::RunConfig,
        resume: bool,
    ) -> Result<(), TrainError> {
        let (trackers, warnings) = Trackers::start(cfg, self.run, resume);
        self.trackers = trackers;
        for w in warnings {
            self.write(&RunEvent::now(self.warning(w)))?;
        }
        Ok(())
    }

    fn warning(&self, message: String) -> EventKind {
        EventKind::Warning {
            step: self.status.step,
            message,
        }
    }

    /// Progress of phase `name` at `step`: `done` of `total` (0 when unknown) `unit`s. The
    /// first call (`done` 0) begins it; calls come as often as the work likes and are
    /// written (event and `status.json`) a few times a second, and always at `done ==
    /// total`. [`Journal::end_phase`] ends it.
    pub fn phase(
        &mut self,
        step: u64,
        name: &str,
        done: u64,
        total: u64,
        unit: &str,
    ) -> Result<(), TrainError> {
        let now = Instant::now();
        let fresh = done == 0 || self.phase.as_ref().is_none_or(|(n, _, _)| n != name);
        let (began, last) = match &self.phase {
            Some((_, began, last)) if !fresh => (*began, *last),
            _ => (now, now),
        };
        let last_one = total > 0 && done >= total;
        if !fresh && !last_one && now.duration_since(last) < PHASE_EVERY {
            return Ok(());
        }
        self.phase = Some((name.to_string(), began, now));
        let p = Phase {
            step,
            name: name.to_string(),
            done,
            total,
            unit: unit.to_string(),
            elapsed: now.duration_since(began).as_secs_f64(),
        };
        self.status.phase = Some(p.clone());
        self.event(EventKind::Phase(p))?;
        self.write_status()
    }

    /// The phase is over: `status.json` no longer names it.
    pub fn end_phase(&mut self) -> Result<(), TrainError> {
        self.phase = None;
        if self.status.phase.take().is_some() {
            self.write_status()?;
        }
        Ok(())
    }

    pub fn event(&mut self, kind: EventKind) -> Result<(), TrainError> {
        if !matches!(kind, EventKind::Phase(_)) {
            // Anything else the run says means the phase before it is over.
            self.phase = None;
            self.status.phase = None;
        }
        match &kind {
            EventKind::Train(t) if t.loss.is_finite() => self.status.last_loss = Some(t.loss),
            EventKind::Eval(e) if e.eval_loss.is_finite() => {
                let best = self.status.best_eval_loss;
                self.status.best_eval_loss = Some(best.map_or(e.eval_loss, |b| b.min(e.eval_loss)));
            }
            _ => {}
        }
        let event = RunEvent::now(kind);
        let warnings = self.trackers.record(&event);
        let last = matches!(
            event.kind,
            EventKind::Done { .. } | EventKind::Failed { .. } | EventKind::Stopped { .. }
        );
        // A run's last event stays its last line.
        if !last {
            self.write(&event)?;
        }
        for w in warnings {
            self.write(&RunEvent::now(self.warning(w)))?;
        }
        if last {
            self.write(&event)?;
        }
        Ok(())
    }

    /// Appends `event`, logs its line and shows it to the observer.
    fn write(&mut self, event: &RunEvent) -> Result<(), TrainError> {
        self.run
            .append_event(event)
            .map_err(|e| TrainError::io(&self.run.events_path(), e))?;
        self.log(&event.kind.describe());
        self.observer.event(event);
        Ok(())
    }

    /// A line in `train.log` only.
    pub fn log(&self, line: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.log())
        {
            let stamp = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
            let _ = writeln!(f, "{stamp} {line}");
        }
    }

    pub fn status(
        &mut self,
        state: RunState,
        step: u64,
        error: Option<String>,
    ) -> Result<(), TrainError> {
        self.status.state = state;
        self.status.step = step;
        self.status.error = error;
        self.write_status()
    }

    fn write_status(&mut self) -> Result<(), TrainError> {
        self.status.updated = crate::units::unix_now();
        self.run
            .write_status(&self.status)
            .map_err(|e| TrainError::io(&self.run.status_path(), e))
    }
}
