//! Widgets more than one tab draws: the text field every input uses, the fuzzy picker, the
//! loss chart and two columns under a heading.

pub mod chart;
pub mod columns;
pub mod picker;
pub mod text_input;

pub use chart::{line_chart, loss_chart, Series, YRange};
pub use picker::{PickItem, Picked, Picker};
pub use text_input::{InputEvent, TextInput};
