//! What a tab asks of the app: everything that crosses tabs (open a run, open an adapter in
//! Chat, start or stop a run, a message on the status line) and work for a background
//! thread. Tabs return effects; only [`super::app::App`] applies them.

use super::background::Job;
use super::tabs::Tab;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

pub enum Effect {
    /// A message on the status line.
    Say(Level, String),
    Switch(Tab),
    /// Watch this run in the Train tab (and switch to it).
    Attach(PathBuf),
    /// Open an adapter in the Chat tab, with the model it was trained on when known.
    OpenInChat {
        model: Option<String>,
        label: String,
        adapter: PathBuf,
    },
    /// Start a detached run from the Adapter form.
    StartRun,
    /// Ask a run's trainer to stop (it checkpoints first).
    StopRun(PathBuf),
    Quit,
    /// Work off the UI thread; its result comes back as an update.
    Spawn(Job),
    Batch(Vec<Effect>),
}

impl Effect {
    pub fn info(text: impl Into<String>) -> Effect {
        Effect::Say(Level::Info, text.into())
    }
    pub fn warn(text: impl Into<String>) -> Effect {
        Effect::Say(Level::Warning, text.into())
    }
    pub fn error(text: impl Into<String>) -> Effect {
        Effect::Say(Level::Error, text.into())
    }
    /// Runs `job` on a worker thread.
    pub fn spawn(job: impl FnOnce() -> super::background::Update + Send + 'static) -> Effect {
        Effect::Spawn(Box::new(job))
    }
}
