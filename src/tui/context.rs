//! What tabs may read of the app while they handle input or draw, and where the workbench
//! reads and writes.

use super::keymap::Keymap;
use super::theme::Theme;
use crate::runs::RunSummary;
use std::path::PathBuf;

/// Where the workbench reads and writes.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The data folder: datasets, demo/, runs/, presets/, configs/.
    pub data: PathBuf,
    /// The `tunelab` binary that detached runs are started with.
    pub exe: PathBuf,
}

impl Workspace {
    pub fn runs_root(&self) -> PathBuf {
        crate::runs::runs_root(&self.data)
    }
}

/// What every tab may read of the app while it handles input or draws.
pub struct Ctx<'a> {
    pub theme: &'a Theme,
    pub keymap: &'a Keymap,
    pub ws: &'a Workspace,
    /// The Adapter form's model, resolved against the workspace (the token view and Chat
    /// use it).
    pub model: &'a str,
    /// Every run, newest first (from the watcher).
    pub runs: &'a [RunSummary],
    /// A run the workbench watches is still training.
    pub training: bool,
}
