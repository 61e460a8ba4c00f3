//! ROUGE-N and ROUGE-L F-measures as Google's `rouge-score` package computes them with
//! `RougeScorer(use_stemmer=False)`, the implementation most papers and libraries report.

use std::collections::HashMap;

/// rouge-score's default tokenizer: lowercase (Unicode), then every run of characters
/// outside `[a-z0-9]` separates tokens. Non-ASCII letters vanish, so text without ASCII
/// letters or digits has no tokens.
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `scoring.fmeasure`: the harmonic mean, 0 when precision and recall are both 0.
fn fmeasure(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if n > 0 && tokens.len() >= n {
        for g in tokens.windows(n) {
            *counts.entry(g).or_default() += 1;
        }
    }
    counts
}

/// ROUGE-N F-measure (clipped n-gram overlap). A side without n-grams counts as one
/// n-gram for the division, so it scores 0 rather than NaN; `n` 0 scores 0.
pub fn rouge_n(prediction: &str, reference: &str, n: usize) -> f64 {
    let (pred, target) = (tokenize(prediction), tokenize(reference));
    let (p, t) = (ngrams(&pred, n), ngrams(&target, n));
    let overlap: usize = t
        .iter()
        .map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0)))
        .sum();
    let (p_total, t_total) = (p.values().sum::<usize>(), t.values().sum::<usize>());
    let precision = overlap as f64 / p_total.max(1) as f64;
    let recall = overlap as f64 / t_total.max(1) as f64;
    fmeasure(precision, recall)
}

/// The length of the longest common subsequence (one row of the table at a time).
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F-measure (longest common subsequence of tokens); 0 when either side has no
/// tokens.
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let (pred, target) = (tokenize(prediction), tokenize(reference));
    if pred.is_empty() || target.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&target, &pred) as f64;
    fmeasure(lcs / pred.len() as f64, lcs / target.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_keeps_ascii_alphanumerics_only() {
        assert_eq!(
            tokenize("Héllo, WORLD-42 日本 🙂"),
            ["h", "llo", "world", "42"]
        );
        // Lowercasing first: the Kelvin sign becomes an ASCII k, dotted İ an i.
        assert_eq!(tokenize("\u{212a}m \u{130}s"), ["km", "i", "s"]);
        assert!(tokenize("¿¡!").is_empty());
    }

    #[test]
    fn rouge_by_hand() {
        // rouge-score's docstring example (its scorer gives P .75 R .667 for ROUGE-1).
        let (p, r) = (
            "The quick brown dog jumps on the log.",
            "The quick brown fox jumps over the lazy dog",
        );
        // 8 and 9 tokens; the×2, quick, brown, dog, jumps in common.
        let f = 2.0 * (6.0 / 8.0) * (6.0 / 9.0) / (6.0 / 8.0 + 6.0 / 9.0);
        assert!((rouge_n(p, r, 1) - f).abs() < 1e-12);
        // Bigrams: "the quick" and "quick brown", of 7 and 8.
        let f2 = 2.0 * (2.0 / 7.0) * (2.0 / 8.0) / (2.0 / 7.0 + 2.0 / 8.0);
        assert!((rouge_n(p, r, 2) - f2).abs() < 1e-12);
        // LCS "the quick brown jumps the": 5 (dog comes before jumps in one, after in the
        // other).
        let fl = 2.0 * (5.0 / 8.0) * (5.0 / 9.0) / (5.0 / 8.0 + 5.0 / 9.0);
        assert!((rouge_l(p, r) - fl).abs() < 1e-12);
        assert_eq!(rouge_n("", "", 1), 0.0);
        assert_eq!(rouge_l("a", ""), 0.0);
        assert_eq!(rouge_n("one", "one", 2), 0.0, "no bigrams on either side");
        assert_eq!(rouge_l("a b c", "A, B; c!"), 1.0);
    }
}
