//! The five tabs. Each owns its state and its input: it handles the actions the keymap
//! gives it (and raw keys while one of its text fields has focus), takes the background
//! results addressed to it, and draws itself. What crosses tabs goes back to the app as an
//! [`Effect`](super::effect::Effect).

pub mod adapter;
pub mod chat;
pub mod data;
pub mod runs;
pub mod train;

pub use super::context::Ctx;
pub use super::tab::Tab;

use super::action::Action;
use super::effect::Effect;
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::Frame;

pub trait Component {
    /// Background results addressed to this tab.
    type Msg;

    /// Whether a text field of this tab has focus: then raw keys go to [`Component::key`]
    /// before the keymap sees them.
    fn editing(&self) -> bool {
        false
    }

    /// A raw key while [`Component::editing`].
    fn key(&mut self, _key: &KeyEvent, _ctx: &Ctx) -> Option<Effect<Self::Msg>> {
        None
    }

    /// An action from the keymap or the palette.
    fn handle(&mut self, action: Action, ctx: &Ctx) -> Option<Effect<Self::Msg>>;

    /// A background result.
    fn update(&mut self, msg: Self::Msg, ctx: &Ctx) -> Option<Effect<Self::Msg>>;

    /// About once a second: work that follows the clock or the rest of the app.
    fn tick(&mut self, _ctx: &Ctx) -> Option<Effect<Self::Msg>> {
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
