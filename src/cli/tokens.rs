//! Token-level views for the CLI: the colour or marker rendering of trained and masked spans.

use std::io::IsTerminal;
use tunelab::template::{Example, IGNORE};

/// Colour when stdout is a terminal and NO_COLOR is unset; otherwise plain markers.
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

const TRAINED_ON: &str = "\x1b[1;32m";
const MASKED_ON: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";
/// Plain markers around trained text when there is no colour.
pub const OPEN: &str = "⟦";
pub const CLOSE: &str = "⟧";

/// The rendered text with trained spans highlighted (or wrapped in ⟦ ⟧).
pub fn spans(ex: &Example, color: bool) -> String {
    let mut out = String::new();
    let mut pos = 0usize;
    let mut trained_open = false;
    let text = &ex.text;
    let close = |out: &mut String, open: &mut bool| {
        if *open {
            out.push_str(if color { RESET } else { CLOSE });
            *open = false;
        }
    };
    for (t, label) in ex.labels.iter().enumerate() {
        let (s, e) = ex.offsets[t];
        if s < pos || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        let trained = *label != IGNORE;
        if trained && !trained_open {
            // Text before this token is masked.
            if s > pos {
                push_masked(&mut out, &text[pos..s], color);
            }
            out.push_str(if color { TRAINED_ON } else { OPEN });
            trained_open = true;
            out.push_str(&text[s..e]);
        } else if trained {
            out.push_str(&text[pos..e]);
        } else {
            close(&mut out, &mut trained_open);
            push_masked(&mut out, &text[pos..e], color);
        }
        pos = e;
    }
    close(&mut out, &mut trained_open);
    if pos < text.len() {
        push_masked(&mut out, &text[pos..], color);
    }
    out
}

fn push_masked(out: &mut String, s: &str, color: bool) {
    if s.is_empty() {
        return;
    }
    if color {
        out.push_str(MASKED_ON);
        out.push_str(s);
        out.push_str(RESET);
    } else {
        out.push_str(s);
    }
}

/// The (open, close) strings around trained text.
pub fn markers(color: bool) -> (&'static str, &'static str) {
    if color {
        (TRAINED_ON, RESET)
    } else {
        (OPEN, CLOSE)
    }
}
