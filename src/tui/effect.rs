//! What a tab asks of the app: everything that crosses tabs (open a run, open an adapter in
//! Chat, start or stop a run, a message on the status line) and work for a background
//! thread whose result comes back to the tab as its own message `M`. Tabs return effects;
//! only the app applies them, so no tab reaches into another.

use super::tab::Tab;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// Work off the UI thread that ends in a message for the tab that asked.
pub type Job<M> = Box<dyn FnOnce() -> M + Send + 'static>;

/// Delivers messages to a tab from any thread (generation tokens as they are made); false
/// once nobody listens.
pub type Sink<M> = Arc<dyn Fn(M) -> bool + Send + Sync>;

pub enum Effect<M> {
    /// A message on the status line.
    Say(Level, String),
    Switch(Tab),
    /// Watch this run in the Train tab (and switch to it).
    Attach(PathBuf),
    /// Chat with this run: adapter A follows it (its newest adapter) and the model becomes
    /// the base it was trained on.
    OpenInChat(PathBuf),
    /// Start a detached run from the Adapter form.
    StartRun,
    /// Train on this dataset: the Adapter form's `data.train`.
    UseDataset(PathBuf),
    /// Ask a run's trainer to stop (it checkpoints first).
    StopRun(PathBuf),
    Quit,
    /// Work off the UI thread; its result comes back to the tab.
    Spawn(Job<M>),
    Batch(Vec<Effect<M>>),
}

impl<M> Effect<M> {
    pub fn info(text: impl Into<String>) -> Self {
        Effect::Say(Level::Info, text.into())
    }
    pub fn warn(text: impl Into<String>) -> Self {
        Effect::Say(Level::Warning, text.into())
    }
    pub fn error(text: impl Into<String>) -> Self {
        Effect::Say(Level::Error, text.into())
    }
    /// Runs `job` on a worker thread.
    pub fn spawn(job: impl FnOnce() -> M + Send + 'static) -> Self {
        Effect::Spawn(Box::new(job))
    }
}
