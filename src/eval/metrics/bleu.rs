//! Corpus BLEU as `sacrebleu.corpus_bleu` computes it with its defaults: the `13a`
//! tokenizer (mteval-v13a, what WMT reports), n-grams up to 4 counted over the whole
//! corpus, the brevity penalty, and `exp` smoothing. One reference per prediction.

use super::text::{py_rstrip, py_split, py_squeeze};
use std::collections::HashMap;

const MAX_ORDER: usize = 4;

/// The characters 13a's first rule pads with spaces (ASCII punctuation and symbols but
/// `'`, `,`, `-` and `.`, which the later rules treat by context; and space itself).
fn padded_symbol(c: char) -> bool {
    matches!(c, ' '..='&' | '('..='+' | '/' | ':'..='@' | '['..='`' | '{'..='~')
}

/// One `re.sub` of a two-character pattern `(A)(B)`, as Python scans: leftmost match,
/// then on after it, never overlapping.
fn sub_pairs(
    chars: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    write: impl Fn(&mut Vec<char>, char, char),
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            write(&mut out, chars[i], chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu's `13a` tokenization of one segment (after its `rstrip()`), tokens joined by
/// single spaces.
pub fn tokenize_13a(segment: &str) -> String {
    let mut line = py_rstrip(segment)
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 2);
    chars.push(' ');
    for c in line.chars() {
        if padded_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    chars.push(' ');
    let digit = |c: char| c.is_ascii_digit();
    let period_comma = |c: char| c == '.' || c == ',';
    // ([^0-9])([\.,]) → "\1 \2 "
    let chars = sub_pairs(
        &chars,
        |c| !digit(c),
        period_comma,
        |o, a, b| o.extend([a, ' ', b, ' ']),
    );
    // ([\.,])([^0-9]) → " \1 \2"
    let chars = sub_pairs(
        &chars,
        period_comma,
        |c| !digit(c),
        |o, a, b| o.extend([' ', a, ' ', b]),
    );
    // ([0-9])(-) → "\1 \2 "
    let chars = sub_pairs(
        &chars,
        digit,
        |c| c == '-',
        |o, a, b| o.extend([a, ' ', b, ' ']),
    );
    py_squeeze(&chars.into_iter().collect::<String>())
}

/// All n-grams of orders 1..=4 with their counts.
fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for g in tokens.windows(n) {
            *counts.entry(g).or_default() += 1;
        }
    }
    counts
}

/// A segment's sufficient statistics: lengths, and matched and total n-grams per order.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    sys_len: usize,
    ref_len: usize,
    correct: [usize; MAX_ORDER],
    total: [usize; MAX_ORDER],
}

fn segment_stats(prediction: &str, reference: &str) -> Stats {
    let (hyp, reference) = (tokenize_13a(prediction), tokenize_13a(reference));
    let hyp: Vec<&str> = py_split(&hyp).collect();
    let refs: Vec<&str> = py_split(&reference).collect();
    let ref_counts = ngram_counts(&refs);
    let mut s = Stats {
        sys_len: hyp.len(),
        ref_len: refs.len(),
        ..Stats::default()
    };
    for (g, count) in ngram_counts(&hyp) {
        let n = g.len() - 1;
        s.total[n] += count;
        if let Some(&r) = ref_counts.get(g) {
            s.correct[n] += count.min(r);
        }
    }
    s
}

/// sacrebleu's `my_log`: log, with 0 floored to a very low number instead of -inf.
fn floored_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// `BLEU.compute_bleu` with `smooth_method='exp'` and `effective_order=False`.
fn bleu_from_stats(s: &Stats) -> f64 {
    let bp = if s.sys_len < s.ref_len {
        if s.sys_len > 0 {
            (1.0 - s.ref_len as f64 / s.sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    if s.correct.iter().all(|&c| c == 0) {
        return 0.0;
    }
    let mut precisions = [0.0f64; MAX_ORDER];
    let mut smooth = 1.0f64;
    for ((p, &correct), &total) in precisions.iter_mut().zip(&s.correct).zip(&s.total) {
        if total == 0 {
            break;
        }
        *p = if correct == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total as f64)
        } else {
            100.0 * correct as f64 / total as f64
        };
    }
    let log_sum: f64 = precisions.iter().map(|&p| floored_log(p)).sum();
    bp * (log_sum / MAX_ORDER as f64).exp()
}

/// Corpus BLEU on sacrebleu's 0..100 scale: n-gram matches and lengths are summed over
/// all pairs before the precisions are taken, so it is not a mean of sentence scores.
/// Pairs up to the shorter list (as sacrebleu's `zip`); no pairs gives 0.
pub fn corpus_bleu(predictions: &[&str], references: &[&str]) -> f64 {
    let mut sum = Stats::default();
    for (p, r) in predictions.iter().zip(references) {
        let s = segment_stats(p, r);
        sum.sys_len += s.sys_len;
        sum.ref_len += s.ref_len;
        for n in 0..MAX_ORDER {
            sum.correct[n] += s.correct[n];
            sum.total[n] += s.total[n];
        }
    }
    bleu_from_stats(&sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a() {
        assert_eq!(tokenize_13a("Hello, world!"), "Hello , world !");
        assert_eq!(
            tokenize_13a("It costs $3.50, or 1,000."),
            "It costs $ 3.50 , or 1,000 ."
        );
        assert_eq!(
            tokenize_13a("state-of-the-art 1990-2000"),
            "state-of-the-art 1990 - 2000"
        );
        assert_eq!(
            tokenize_13a("a&amp;lt;b &quot;x&quot; don't"),
            "a < b \" x \" don't"
        );
        assert_eq!(tokenize_13a("e.g. x..y"), "e . g . x . . y");
        assert_eq!(tokenize_13a("  \n "), "");
    }

    #[test]
    fn bleu_by_hand() {
        // Identical 4-token segments: every precision 100, no penalty.
        assert!((corpus_bleu(&["a b c d"], &["a b c d"]) - 100.0).abs() < 1e-9);
        // Hypothesis "a b c d" vs reference "a b c e": 3/4, 2/3, 1/2, then 0/1 smoothed to
        // 100/(2·1); same length.
        let expect = ((75.0f64).ln() + (200.0f64 / 3.0).ln() + 50.0f64.ln() + 50.0f64.ln()) / 4.0;
        assert!((corpus_bleu(&["a b c d"], &["a b c e"]) - expect.exp()).abs() < 1e-9);
        // Shorter hypothesis: brevity penalty exp(1 - 4/2), no 3- or 4-grams → floored.
        assert!(corpus_bleu(&["a b"], &["a b c d"]) < 1e-9);
        assert_eq!(corpus_bleu(&[], &[]), 0.0);
        assert_eq!(corpus_bleu(&[""], &[""]), 0.0);
    }
}
