//! Widgets more than one tab draws: the text field every input uses, the fuzzy picker and
//! the loss chart.

pub mod chart;
pub mod picker;
pub mod text_input;

pub use chart::{loss_chart, Series};
pub use picker::{PickItem, Picked, Picker};
pub use text_input::{InputEvent, TextInput};
