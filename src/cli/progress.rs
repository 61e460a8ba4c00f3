//! The progress bar of long commands: drawn on stderr only when it is a terminal, so pipes
//! and logs get the results alone.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar counting to `len`, labelled `what` (`answered`), or `None` when stderr is not a
/// terminal.
pub fn bar(len: u64, what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        b.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    }
    b.set_message(what.to_string());
    Some(b)
}
