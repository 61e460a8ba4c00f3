//! The progress bars of long commands: drawn on stderr only when it is a terminal, so pipes
//! and logs get the results alone.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar counting to `len`, labelled `what` (`answered`), or `None` when stderr is not a
/// terminal.
pub fn bar(len: u64, what: &str) -> Option<ProgressBar> {
    drawn(
        len,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        what,
    )
}

/// A count without a known end (`12,480 records`), or `None` when stderr is not a terminal.
pub fn counter(what: &str) -> Option<ProgressBar> {
    drawn(
        0,
        "{spinner} [{elapsed_precise}] {human_pos} {msg} ({per_sec})",
        what,
    )
}

/// A spinner carrying a line that changes (a run's phase), or `None` when stderr is not a
/// terminal.
pub fn status_line() -> Option<ProgressBar> {
    drawn(0, "{spinner} {msg}", "")
}

fn drawn(len: u64, template: &str, what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        b.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    }
    b.set_message(what.to_string());
    b.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(b)
}
