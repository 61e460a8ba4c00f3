//! Text from data and from models, made safe to draw. Every pane that shows a dataset's
//! records or tokens, a model's reply, a run's events or a server's message draws it
//! through [`clean`], so what reaches the terminal is printable, one line, and as wide as
//! the layout thinks it is.
//!
//! Terminals measure a line code point by code point (`wcwidth`); ratatui measures grapheme
//! clusters. The two disagree on emoji presentation sequences (`☀` + VS16), joined emoji
//! and lone combining marks, and a disagreement of one column shifts the rest of the row:
//! borders move and characters of an earlier frame are left behind. So [`clean`] keeps
//! only clusters both agree on: tabs become spaces, control and invisible format
//! characters become visible escapes, variation selectors are dropped, and a combining
//! mark with nothing to combine with gets a dotted circle to sit on.

use std::borrow::Cow;
use unicode_width::UnicodeWidthChar;

/// Columns between tab stops.
const TAB: usize = 4;

/// `s` as one drawable line: see the module's notes. Newlines are escaped too; split text
/// into lines first with [`lines`].
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut col = 0usize;
    let mut after_base = false;
    for c in s.chars() {
        if plain(c) {
            out.push(c);
            col += c.width().unwrap_or(0);
            after_base = true;
            continue;
        }
        match c {
            '\t' => {
                let n = TAB - col % TAB;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
                after_base = false;
            }
            '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' => {}
            c if c.is_control() => {
                let shown = escape(c);
                col += shown.chars().count();
                out.push_str(&shown);
                after_base = true;
            }
            c if invisible(c) => {
                let shown = format!("\\u{{{:04x}}}", c as u32);
                col += shown.len();
                out.push_str(&shown);
                after_base = true;
            }
            // A combining mark (width 0): on the character before it, or on a dotted circle.
            c => {
                if !after_base {
                    out.push('\u{25CC}');
                    col += 1;
                    after_base = true;
                }
                out.push(c);
            }
        }
    }
    Cow::Owned(out)
}

/// A character every terminal and ratatui draw alike, in one or two columns.
fn plain(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    !c.is_control() && !invisible(c) && c.width().is_some_and(|w| w > 0)
}

/// Zero-width characters that change how others render (joiners, bidi controls, byte
/// order marks, soft hyphens) rather than marks that sit on a letter.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// A control character as a visible escape: the C0 ones and DEL as their Unicode control
/// pictures (`␛`, `␍`), the C1 ones as `\u{85}`.
fn escape(c: char) -> String {
    match c as u32 {
        n @ 0..=0x1F => char::from_u32(0x2400 + n).map_or_else(String::new, String::from),
        0x7F => "\u{2421}".into(),
        n => format!("\\u{{{n:02x}}}"),
    }
}

/// `s` split into lines (`\n`, `\r\n`), each through [`clean`].
pub fn lines(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split('\n')
        .map(|l| clean(l.strip_suffix('\r').unwrap_or(l)).into_owned())
}

/// `s` on one drawable line: its lines joined by spaces (a sample reply, an error).
pub fn one_line(s: &str) -> String {
    lines(s).collect::<Vec<_>>().join(" ")
}

/// Columns `s` takes on a terminal (after [`clean`], ratatui agrees).
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// At most `max` columns of `s` (cleaned), with `…` at the end when cut.
pub fn truncate(s: &str, max: usize) -> String {
    let s = clean(s);
    if width(&s) <= max {
        return s.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// At most `max` columns of `s` (cleaned), cut in the middle when it must be, so both ends
/// stay visible: `alpaca_e…sharegpt.jsonl`. Names that differ only at the end (a converted
/// file beside its source, runs of one config) stay tellable apart, so the end gets two
/// thirds of the room.
pub fn middle(s: &str, max: usize) -> String {
    let s = clean(s);
    if width(&s) <= max {
        return s.into_owned();
    }
    if max < 3 {
        return truncate(&s, max);
    }
    let room = max - 1;
    let head_room = room.div_ceil(3);
    let tail_room = room - head_room;
    let mut head = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > head_room {
            break;
        }
        head.push(c);
        used += w;
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > tail_room {
            break;
        }
        tail.push(c);
        used += w;
    }
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_untouched() {
        assert!(matches!(clean("Arr! 漢字 ok"), Cow::Borrowed(_)));
    }

    #[test]
    fn hostile_text_becomes_visible_and_measurable() {
        assert_eq!(clean("a\tb"), "a   b");
        assert_eq!(clean("ab\tc"), "ab  c");
        assert_eq!(clean("x\ry"), "x\u{240D}y");
        assert_eq!(clean("\u{1b}[31m"), "\u{241B}[31m");
        assert_eq!(clean("del\u{7f}"), "del\u{2421}");
        assert_eq!(clean("c1\u{85}"), "c1\\u{85}");
        assert_eq!(clean("zw\u{200B}sp"), "zw\\u{200b}sp");
        assert_eq!(clean("\u{202E}bidi"), "\\u{202e}bidi");
        assert_eq!(clean("sun\u{2600}\u{FE0F}"), "sun\u{2600}");
        assert_eq!(clean("e\u{301}"), "e\u{301}");
        assert_eq!(clean("\u{301}lone"), "\u{25CC}\u{301}lone");
        assert_eq!(clean("\t\u{301}"), "    \u{25CC}\u{301}");
        assert_eq!(clean("bad \u{FFFD}"), "bad \u{FFFD}");
        assert_eq!(width(&clean("漢字\t")), 8);
        assert_eq!(width(&clean("e\u{301}")), 1);
    }

    #[test]
    fn lines_split_and_clean() {
        let l: Vec<String> = lines("one\r\ntwo\tx\n\u{7}").collect();
        assert_eq!(l, vec!["one", "two x", "\u{2407}"]);
    }

    #[test]
    fn truncation_counts_columns() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("漢字漢字", 5), "漢字…");
        assert_eq!(width(&truncate("漢字漢字", 5)), 5);
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn middle_keeps_both_ends() {
        let a = "alpaca_en_demo.json";
        let b = "alpaca_en_demo.sharegpt.jsonl";
        assert_eq!(middle(a, 30), a);
        // The example, on a wide pane.
        assert_eq!(middle(b, 23), "alpaca_e…sharegpt.jsonl");
        let (ma, mb) = (middle(a, 16), middle(b, 16));
        assert_eq!(mb, "alpac…egpt.jsonl");
        assert_ne!(ma, mb);
        assert!(ma.ends_with(".json") && mb.ends_with(".jsonl"));
        assert_eq!(width(&mb), 16);
        // Narrow panes: still an ellipsis in the middle and both ends.
        assert_eq!(middle(b, 5), "al…nl");
        assert_eq!(width(&middle(b, 5)), 5);
        assert_eq!(middle(b, 2), "a…");
        // Wide characters are measured in columns.
        let wide = "漢字漢字漢字.jsonl";
        assert_eq!(middle(wide, 12), "漢字….jsonl");
        assert!(width(&middle(wide, 9)) <= 9);
    }
}
