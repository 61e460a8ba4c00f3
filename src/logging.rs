//! File logging through `tracing`. Logs go to the state folder, never to stdout or stderr,
//! so they cannot corrupt command output or the TUI. `TUNELAB_LOG` sets the filter.

use crate::paths::Paths;
use std::fs::OpenOptions;
use std::sync::Mutex;

/// Starts logging to `paths.log_file()`. A failure to open the log is not fatal: the command
/// runs without a log.
pub fn init(paths: &Paths) -> Option<std::path::PathBuf> {
    let path = paths.log_file();
    std::fs::create_dir_all(&paths.state).ok()?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TUNELAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init()
        .ok()?;
    Some(path)
}
