//! Widgets more than one tab draws: the text field every input uses and the loss chart.

pub mod chart;
pub mod text_input;

pub use chart::{loss_chart, Series};
pub use text_input::{InputEvent, TextInput};
