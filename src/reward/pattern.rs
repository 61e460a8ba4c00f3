//! The format reward: 1 when the whole trimmed completion matches a regex, else 0. The
//! pattern is anchored at both ends and `.` matches newlines, because a format check is
//! about the completion's whole shape (`<think>…</think><answer>…</answer>` over several
//! lines), not about some substring of it.

use regex::Regex;

#[derive(Debug, Clone)]
pub struct Pattern(Regex);

impl Pattern {
    /// Compiles `pattern` as a full match with `.` matching newlines (a `(?-s)` in it turns
    /// that back off).
    pub fn new(pattern: &str) -> Result<Self, String> {
        // Compiled alone first: a pattern like `a)|(b` must not escape the anchoring group.
        Regex::new(pattern).map_err(|e| format!("is not a regex: {e}"))?;
        Regex::new(&format!(r"(?s)\A(?:{pattern})\z"))
            .map(Pattern)
            .map_err(|e| format!("cannot be anchored as a full match: {e}"))
    }

    pub fn score(&self, completion: &str) -> f64 {
        if self.0.is_match(completion.trim()) {
            1.0
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_trimmed_completion_must_match_across_lines() {
        let p = Pattern::new(r"<think>.*?</think>\s*<answer>.*?</answer>").unwrap();
        let good = "  <think>\nHalf of 48 is 24.\n48 + 24 = 72\n</think>\n<answer>72</answer>\n";
        assert_eq!(p.score(good), 1.0);
        assert_eq!(p.score("Sure! <think>x</think><answer>72</answer>"), 0.0);
        assert_eq!(
            p.score("<think>x</think><answer>72</answer> Hope that helps"),
            0.0
        );
        assert_eq!(p.score("<answer>72</answer>"), 0.0);
        // Anchors of the user's own are harmless; an alternation stays inside the group.
        let anchored = Pattern::new(r"^<answer>\d+</answer>$").unwrap();
        assert_eq!(anchored.score("<answer>72</answer>"), 1.0);
        let alt = Pattern::new("yes|no").unwrap();
        assert_eq!(alt.score("yes"), 1.0);
        assert_eq!(alt.score("yes and no"), 0.0);
        assert!(Pattern::new("a)|(b")
            .unwrap_err()
            .starts_with("is not a regex"));
    }
}
