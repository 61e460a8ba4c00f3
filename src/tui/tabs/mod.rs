//! The five tabs. Each owns its state and its input: it handles the actions the keymap
//! gives it (and raw keys while one of its text fields has focus), takes the background
//! results addressed to it, and draws itself. What crosses tabs goes back to the app as an
//! [`Effect`](super::effect::Effect).

pub mod adapter;
pub mod chat;
pub mod data;
pub mod runs;
pub mod train;

use super::action::Action;
use super::app::Workspace;
use super::effect::Effect;
use super::keymap::Keymap;
use super::theme::Theme;
use crate::runs::RunSummary;
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Data,
    Adapter,
    Train,
    Chat,
    Runs,
}

impl Tab {
    pub const ALL: [Tab; 5] = [Tab::Data, Tab::Adapter, Tab::Train, Tab::Chat, Tab::Runs];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Adapter => "Adapter",
            Tab::Train => "Train",
            Tab::Chat => "Chat",
            Tab::Runs => "Runs",
        }
    }

    /// The keys.yaml section for this tab.
    pub fn scope(self) -> &'static str {
        match self {
            Tab::Data => "data",
            Tab::Adapter => "adapter",
            Tab::Train => "train",
            Tab::Chat => "chat",
            Tab::Runs => "runs",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
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

pub trait Component {
    /// Background results addressed to this tab.
    type Msg;

    /// Whether a text field of this tab has focus: then raw keys go to [`Component::key`]
    /// before the keymap sees them.
    fn editing(&self) -> bool {
        false
    }

    /// A raw key while [`Component::editing`].
    fn key(&mut self, _key: &KeyEvent, _ctx: &Ctx) -> Option<Effect> {
        None
    }

    /// An action from the keymap or the palette.
    fn handle(&mut self, action: Action, ctx: &Ctx) -> Option<Effect>;

    /// A background result.
    fn update(&mut self, msg: Self::Msg, ctx: &Ctx) -> Option<Effect>;

    /// About once a second: work that follows the clock or the rest of the app.
    fn tick(&mut self, _ctx: &Ctx) -> Option<Effect> {
        None
    }

    /// Esc: close this tab's dialogs.
    fn back(&mut self) {}

    /// The bottom line while the tab takes text there (`/query▏`).
    fn prompt(&self) -> Option<String> {
        None
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx);
}
