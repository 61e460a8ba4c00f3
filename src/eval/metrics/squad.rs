//! Exact match and token F1 as the official SQuAD v1.1 evaluation script computes them
//! (`normalize_answer`, `exact_match_score`, `f1_score`), so numbers compare with papers.

use super::text::{py_split, py_squeeze};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Python's `string.punctuation`: the ASCII punctuation `remove_punc` drops.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A run of what Python 3's `\w` matches in a `str` pattern: letters, numbers, underscore.
/// `\b` in `\b(a|an|the)\b` sits at the edges of these runs (Rust's own `\w` also counts
/// combining marks, so it would differ on decomposed accents).
static WORD_RUN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"[\p{L}\p{N}_]+").expect("a constant pattern"));

/// SQuAD's `normalize_answer`: lowercase, drop ASCII punctuation, replace the words a, an
/// and the by a space, then collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: String = lower
        .chars()
        .filter(|c| !PUNCTUATION.contains(*c))
        .collect();
    // `re.sub(r'\b(a|an|the)\b', ' ', text)`: a match must fill a whole word-character run
    // (a boundary on both sides), so whole runs are compared.
    let mut no_articles = String::with_capacity(no_punc.len());
    let mut last = 0;
    for m in WORD_RUN.find_iter(&no_punc) {
        if matches!(m.as_str(), "a" | "an" | "the") {
            no_articles.push_str(&no_punc[last..m.start()]);
            no_articles.push(' ');
            last = m.end();
        }
    }
    no_articles.push_str(&no_punc[last..]);
    py_squeeze(&no_articles)
}

/// 1.0 when both normalize to the same string (two empty strings match), else 0.0.
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    f64::from(u8::from(
        normalize_answer(prediction) == normalize_answer(reference),
    ))
}

/// Token F1 of the normalized strings (bag-of-words overlap). As in the v1.1 script, no
/// common token gives 0 — also when both sides are empty (SQuAD v2's script says 1 there).
pub fn f1(prediction: &str, reference: &str) -> f64 {
    let (p, r) = (normalize_answer(prediction), normalize_answer(reference));
    let pred: Vec<&str> = py_split(&p).collect();
    let truth: Vec<&str> = py_split(&r).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &truth {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pred {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred.len() as f64;
    let recall = same as f64 / truth.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_follows_the_official_script() {
        assert_eq!(normalize_answer("The  Eiffel-Tower!"), "eiffeltower");
        assert_eq!(normalize_answer("an apple, a pear"), "apple pear");
        // Articles only as whole words; accented letters are word characters.
        assert_eq!(
            normalize_answer("Anthem théâtre the_a"),
            "anthem théâtre thea"
        );
        assert_eq!(normalize_answer("thé"), "thé");
        // A combining mark is no word character to Python: "the" before it is a word.
        assert_eq!(normalize_answer("the\u{301}"), "\u{301}");
        assert_eq!(normalize_answer("?!"), "");
    }

    #[test]
    fn exact_match_and_f1_by_hand() {
        assert_eq!(exact_match("The Cat.", "cat"), 1.0);
        assert_eq!(exact_match("cats", "cat"), 0.0);
        assert_eq!(exact_match("", "a the"), 1.0);
        // pred: [big, red, dog, dog], ref: [red, dog]: 2 common; p 0.5, r 1 → 2/3.
        assert!((f1("a big red dog dog", "the red dog") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(f1("", ""), 0.0);
        assert_eq!(f1("x", ""), 0.0);
        assert_eq!(f1("Paris", "paris."), 1.0);
    }
}
