//! The tabs. Each owns its state and its input: it handles the actions the keymap gives it
//! (and raw keys while one of its text fields has focus), takes the background results
//! addressed to it, names its key hints and draws itself. What crosses tabs goes back to
//! the app as an [`Effect`](super::effect::Effect).
//!
//! A tab is listed in three places besides its own folder: [`Tab`] (its name, order and
//! keys section), [`TabMsg`] here (its background results), and the app (its field, how it
//! is built, and the one `for_tab!` list that routes to it); the compiler finds every
//! `match` that must name it.

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

/// A background result, addressed to the tab it belongs to.
pub enum TabMsg {
    Data(data::Msg),
    Adapter(adapter::Msg),
    /// The Train tab has no jobs of its own.
    Train(()),
    Chat(chat::Msg),
    Runs(runs::Msg),
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

    /// The actions the bottom line hints at, with a word for each (the keymap gives the
    /// keys; actions without a key are left out).
    fn hints(&self) -> &'static [(Action, &'static str)] {
        &[]
    }

    /// The bottom line while the tab takes text there (`/query▏`).
    fn prompt(&self) -> Option<String> {
        None
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx);
}
