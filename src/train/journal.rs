//! Everything a run says goes through the journal: each event is appended to
//! `events.jsonl`, summarized into `train.log`, shown to the observer, and folded into
//! `status.json` (the latest loss and the best eval loss), which it rewrites atomically.

use super::error::TrainError;
use crate::runs::{EventKind, RunDir, RunEvent, RunState, Status};
use std::io::Write;

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
}

impl<'a> Journal<'a> {
    pub fn new(run: &'a RunDir, observer: &'a mut dyn Observer, status: Status) -> Self {
        Journal {
            run,
            observer,
            status,
        }
    }

    pub fn event(&mut self, kind: EventKind) -> Result<(), TrainError> {
        match &kind {
            EventKind::Train(t) if t.loss.is_finite() => self.status.last_loss = Some(t.loss),
            EventKind::Eval(e) if e.eval_loss.is_finite() => {
                let best = self.status.best_eval_loss;
                self.status.best_eval_loss = Some(best.map_or(e.eval_loss, |b| b.min(e.eval_loss)));
            }
            _ => {}
        }
        let event = RunEvent::now(kind);
        self.run
            .append_event(&event)
            .map_err(|e| TrainError::io(&self.run.events_path(), e))?;
        self.log(&event.kind.describe());
        self.observer.event(&event);
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
        self.status.updated = crate::units::unix_now();
        self.run
            .write_status(&self.status)
            .map_err(|e| TrainError::io(&self.run.status_path(), e))
    }
}
