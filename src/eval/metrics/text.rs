//! Python's `str.split()` and `str.rstrip()` without arguments: every reference
//! implementation splits on Python's whitespace, which is Rust's plus the four ASCII
//! separators U+001C..U+001F.

/// Python's `str.isspace()` for one character.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: runs of whitespace separate, no empty pieces.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `s.rstrip()`.
pub(crate) fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// Python's `" ".join(s.split())`.
pub(crate) fn py_squeeze(s: &str) -> String {
    py_split(s).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_the_ascii_separators() {
        assert_eq!(
            py_split("a\u{1f}b\u{a0}c\u{3000}d  ").collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            py_split("a\u{200b}b").count(),
            1,
            "zero-width space is no space"
        );
        assert_eq!(py_rstrip("x \u{1c}\n"), "x");
        assert_eq!(py_squeeze("  a \t b "), "a b");
    }
}
