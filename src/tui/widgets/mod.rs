//! Widgets more than one tab draws: the text field every input uses, the fuzzy picker, the
//! loss chart, two columns under a heading and the memory gauge.

pub mod chart;
pub mod columns;
pub mod gauge;
pub mod picker;
pub mod text_input;

pub use chart::{line_chart, loss_chart, Series, YRange};
pub use gauge::memory_gauge;
pub use picker::{PickItem, Picked, Picker};
pub use text_input::{InputEvent, TextInput};
