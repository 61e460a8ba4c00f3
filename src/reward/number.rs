//! Numbers as answers write them: `1,234.50` (thousands separators), `$12`, `45%`, `-3`
//! (a `−` too), `.5`, `1.5e3`, and LaTeX fractions (`\frac{1}{2}`, `\dfrac`, `\tfrac`), so
//! `\boxed{\frac{1}{2}}` and `0.5` compare equal. A minus right after a letter or digit is a
//! hyphen (`3-5`, `x-2`), not a sign.

use regex::Regex;
use std::sync::LazyLock;

/// A plain number (commas only between groups of three digits).
const NUM: &str = r"[-−]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?";

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    let frac = format!(r"([-−]?)\\[dt]?frac\{{\s*({NUM})\s*\}}\{{\s*({NUM})\s*\}}");
    Regex::new(&format!("{frac}|({NUM})")).unwrap_or_else(|e| unreachable!("{e}"))
});

/// The last finite number in `text`, if any.
pub fn last_number(text: &str) -> Option<f64> {
    let mut last = None;
    for c in NUMBER.captures_iter(text) {
        let Some(whole) = c.get(0) else { continue };
        let signed = !text[..whole.start()]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
        let value = match (c.get(2), c.get(3), c.get(4)) {
            (Some(n), Some(d), _) => {
                let minus = c.get(1).is_some_and(|m| !m.as_str().is_empty()) && signed;
                let v = plain(n.as_str(), true)? / plain(d.as_str(), true)?;
                if minus {
                    -v
                } else {
                    v
                }
            }
            (_, _, Some(n)) => match plain(n.as_str(), signed) {
                Some(v) => v,
                None => continue,
            },
            _ => continue,
        };
        if value.is_finite() {
            last = Some(value);
        }
    }
    last
}

/// One number's text as a value; its sign ignored unless `signed`.
fn plain(text: &str, signed: bool) -> Option<f64> {
    let cleaned: String = text.replace(',', "").replace('−', "-");
    let v: f64 = cleaned.parse().ok()?;
    Some(if signed { v } else { v.abs() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_number_as_answers_write_it() {
        assert_eq!(last_number("She has 48 + 24 = 72 clips."), Some(72.0));
        assert_eq!(last_number("Total: $1,234.50"), Some(1234.5));
        assert_eq!(last_number("a rise of 12.5%"), Some(12.5));
        assert_eq!(last_number("The answer is -7."), Some(-7.0));
        assert_eq!(last_number("It fell to −3"), Some(-3.0));
        assert_eq!(last_number("pages 3-5"), Some(5.0));
        assert_eq!(last_number("x-2"), Some(2.0));
        assert_eq!(last_number(r"\frac{1}{2}"), Some(0.5));
        assert_eq!(last_number(r"x = -\dfrac{3}{4}"), Some(-0.75));
        assert_eq!(last_number("about 1.5e3 m"), Some(1500.0));
        assert_eq!(last_number("(3,4)"), Some(4.0));
        assert_eq!(last_number("1,000,000 and .5"), Some(0.5));
        assert_eq!(last_number(r"\frac{1}{0} then nothing"), None);
        assert_eq!(last_number("no digits here"), None);
    }
}
