//! Corpus chrF as `sacrebleu.corpus_chrf` computes it with its defaults: character
//! n-grams of orders 1..6 (Unicode code points, whitespace removed), no word n-grams,
//! β = 2, statistics summed over the corpus, precision and recall averaged over the orders
//! both sides have (sacrebleu's "effective order", not eps smoothing).

use super::text::is_py_space;
use std::collections::HashMap;

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;

/// Hypothesis, reference and matched n-gram counts for each order.
type Stats = [[usize; 3]; CHAR_ORDER];

fn char_ngrams(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut counts = HashMap::new();
    for g in chars.windows(n) {
        *counts.entry(g).or_default() += 1;
    }
    counts
}

fn segment_stats(prediction: &str, reference: &str) -> Stats {
    let hyp: Vec<char> = prediction.chars().filter(|&c| !is_py_space(c)).collect();
    let refs: Vec<char> = reference.chars().filter(|&c| !is_py_space(c)).collect();
    let mut s = [[0usize; 3]; CHAR_ORDER];
    for (i, st) in s.iter_mut().enumerate() {
        let (h, r) = (char_ngrams(&hyp, i + 1), char_ngrams(&refs, i + 1));
        let hyp_count: usize = h.values().sum();
        let matched: usize = h
            .iter()
            .map(|(g, &c)| c.min(r.get(g).copied().unwrap_or(0)))
            .sum();
        // sacrebleu counts the hypothesis n-grams only when the reference has some.
        *st = [
            if r.is_empty() { 0 } else { hyp_count },
            r.values().sum(),
            matched,
        ];
    }
    s
}

/// `CHRF._compute_f_score` without eps smoothing, on the 0..100 scale.
fn f_score(stats: &Stats) -> f64 {
    let factor = BETA * BETA;
    let (mut avg_prec, mut avg_rec, mut effective) = (0.0f64, 0.0f64, 0usize);
    for &[n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective += 1;
        }
    }
    if effective == 0 {
        return 0.0;
    }
    avg_prec /= effective as f64;
    avg_rec /= effective as f64;
    if avg_prec + avg_rec == 0.0 {
        return 0.0;
    }
    100.0 * ((1.0 + factor) * avg_prec * avg_rec) / (factor * avg_prec + avg_rec)
}

/// Corpus chrF on sacrebleu's 0..100 scale: n-gram counts are summed over all pairs, then
/// one F-score is taken. Pairs up to the shorter list; no pairs gives 0.
pub fn corpus_chrf(predictions: &[&str], references: &[&str]) -> f64 {
    let mut sum = [[0usize; 3]; CHAR_ORDER];
    for (p, r) in predictions.iter().zip(references) {
        for (acc, s) in sum.iter_mut().zip(segment_stats(p, r)) {
            for k in 0..3 {
                acc[k] += s[k];
            }
        }
    }
    f_score(&sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrf_by_hand() {
        assert!((corpus_chrf(&["abc"], &["a b c"]) - 100.0).abs() < 1e-9);
        // "ab" vs "ac": 1-grams 1/2 both ways; 2-grams 0/1 both ways. Orders 3..6 have no
        // n-grams, so 2 effective orders: P = R = 0.25, F = 0.25.
        assert!((corpus_chrf(&["ab"], &["ac"]) - 25.0).abs() < 1e-9);
        assert_eq!(corpus_chrf(&[""], &["abc"]), 0.0);
        assert_eq!(corpus_chrf(&["abc"], &[""]), 0.0);
        assert_eq!(corpus_chrf(&[], &[]), 0.0);
    }
}
