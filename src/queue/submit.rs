//! Putting a run in the queue: its folder gets the config (paths already absolute) and a
//! `queued` status, so `tunelab runs list` and the workbench show it before it starts, and
//! an entry says what it waits for.

use super::devices::gpus_for;
use super::entry::Entry;
use super::error::QueueError;
use crate::config::RunConfig;
use crate::runs::{RunDir, RunState, Status};

/// Writes `cfg` and a `queued` status (no pid: nothing runs it yet) into `run`, and returns
/// its queue entry. `gpus` is `--gpus`; `sweep` the sweep it belongs to.
pub fn queued_run(
    cfg: &RunConfig,
    run: &RunDir,
    gpus: Option<usize>,
    sweep: Option<String>,
) -> Result<Entry, QueueError> {
    let gpus = gpus_for(cfg.train.device, gpus)?;
    std::fs::create_dir_all(&run.root).map_err(|e| QueueError::io(&run.root, e))?;
    let yaml = serde_yaml::to_string(cfg).map_err(|e| QueueError::Damaged {
        path: run.config(),
        why: e.to_string(),
    })?;
    crate::files::write_atomic(&run.config(), yaml.as_bytes())
        .map_err(|e| QueueError::io(&run.config(), e))?;
    let now = crate::units::unix_now();
    let status = Status {
        state: RunState::Queued,
        pid: None,
        ..Status::starting(now)
    };
    run.write_status(&status)
        .map_err(|e| QueueError::io(&run.status_path(), e))?;
    Ok(Entry {
        id: id_of(run),
        dir: run.root.clone(),
        device: cfg.train.device,
        gpus,
        added: now,
        sweep,
        resume: false,
        launched: None,
    })
}

/// An entry that continues `run` (stopped, pruned, failed or dead) from its newest
/// checkpoint; its config stays as it is.
pub fn resume_entry(run: &RunDir, gpus: Option<usize>) -> Result<Entry, QueueError> {
    let status = run
        .read_status()
        .map_err(|e| QueueError::io(&run.status_path(), e))?;
    let alive = status.pid.is_some_and(crate::telemetry::process_alive);
    let why = match status.state {
        RunState::Done => Some("it is done"),
        RunState::Queued if status.pid.is_none() => Some("it has not started (it is queued)"),
        s if !s.is_final() && alive => Some("its trainer is running"),
        _ => None,
    };
    if let Some(why) = why {
        return Err(QueueError::NotResumable {
            id: id_of(run),
            why: why.into(),
        });
    }
    let cfg = RunConfig::load(&run.config()).map_err(|e| QueueError::Damaged {
        path: run.config(),
        why: e.to_string(),
    })?;
    Ok(Entry {
        id: id_of(run),
        dir: run.root.clone(),
        device: cfg.train.device,
        gpus: gpus_for(cfg.train.device, gpus)?,
        added: crate::units::unix_now(),
        sweep: crate::sweep::SweepMark::read(run).map(|m| m.sweep),
        resume: true,
        launched: None,
    })
}

/// A run's id: its folder's name.
pub fn id_of(run: &RunDir) -> String {
    run.root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Takes a waiting run's folder away after `queue remove`: the files the queue wrote
/// (config, the `queued` status, a sweep mark, an empty log) and the folder if nothing else
/// is in it. A folder with anything more is left as it is.
pub fn discard_queued_run(run: &RunDir) {
    let never_started = run
        .read_status()
        .is_ok_and(|s| s.state == RunState::Queued && s.pid.is_none());
    if !never_started {
        return;
    }
    for f in [
        run.config(),
        run.status_path(),
        run.root.join(crate::sweep::mark::MARK_FILE),
    ] {
        let _ = std::fs::remove_file(f);
    }
    if std::fs::metadata(run.log()).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(run.log());
    }
    let _ = std::fs::remove_dir(&run.root);
}
