//! What tabs may read of the app while they handle input or draw (where the workbench reads
//! and writes is the core's [`Workspace`]).

use super::keymap::Keymap;
use super::theme::Theme;
use crate::runs::RunSummary;

pub use crate::workspace::Workspace;

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
    /// The run queue (from the watcher).
    pub queue: &'a crate::queue::Overview,
    /// A run the workbench watches is still training.
    pub training: bool,
    /// The form's `data.tool_format`, which the token view follows.
    pub tool_format: crate::template::ToolFormat,
}
