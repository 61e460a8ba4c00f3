//! Reading a judge's verdict and adding verdicts up. The judge ends its reply with `[[A]]`,
//! `[[B]]` or `[[C]]` (a tie), as MT-Bench's pairwise prompt asks; each item is judged
//! twice with the answers swapped, and a side wins only if it wins both times, so a judge
//! that favours a position (say, always the first answer) gives ties rather than wins. A
//! reply with no tag, or with two different ones, is an error: it is counted and kept, never
//! guessed, because picking one of several tags (MT-Bench takes the first it finds) would
//! turn the judge's confusion into a result.

use serde::{Deserialize, Serialize};

/// The tag a judge ended with, naming an answer by the position it was shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tag {
    /// `[[A]]`: the answer shown first is better.
    A,
    /// `[[B]]`: the answer shown second is better.
    B,
    /// `[[C]]`: a tie.
    C,
}

/// Which side a verdict (or an item) comes out for. `a` and `b` are the sides as the user
/// named them (`--a`, `--b`), whatever order the judge saw them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    A,
    B,
    Tie,
}

/// What one item comes to over both orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Side A won both orders.
    A,
    /// Side B won both orders.
    B,
    /// A tie in both orders, or the orders disagree (a position bias, or a coin toss).
    Tie,
    /// At least one reply had no verdict, or several different ones.
    Error,
}

/// Why a reply has no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// No `[[A]]`, `[[B]]` or `[[C]]` after the reasoning.
    NoTag,
    /// Different tags (listed in the order they first appear).
    Several(Vec<Tag>),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::NoTag => f.write_str("no [[A]], [[B]] or [[C]] in the judge's reply"),
            Unreadable::Several(tags) => {
                let names: Vec<String> = tags.iter().map(|t| format!("[[{t:?}]]")).collect();
                write!(
                    f,
                    "several verdicts in the judge's reply: {}",
                    names.join(", ")
                )
            }
        }
    }
}

/// The tag a reply ends with. Reasoning the judge wrapped in `<think>…</think>` (what
/// reasoning models served by llama.cpp or vLLM put in the content) is not its answer and
/// is left out; in the rest, the same tag may appear more than once (a judge restating its
/// verdict), different tags may not.
pub fn parse(reply: &str) -> Result<Tag, Unreadable> {
    let answer = strip_reasoning(reply);
    let mut found: Vec<Tag> = Vec::new();
    let mut rest: &str = &answer;
    while let Some(i) = rest.find("[[") {
        let after = &rest[i + 2..];
        let tag = match after.as_bytes() {
            [b'A', b']', b']', ..] => Some(Tag::A),
            [b'B', b']', b']', ..] => Some(Tag::B),
            [b'C', b']', b']', ..] => Some(Tag::C),
            _ => None,
        };
        if let Some(t) = tag {
            if !found.contains(&t) {
                found.push(t);
            }
        }
        rest = after;
    }
    match found.as_slice() {
        [] => Err(Unreadable::NoTag),
        [t] => Ok(*t),
        _ => Err(Unreadable::Several(found)),
    }
}

/// `reply` without `<think>…</think>` blocks (an unclosed one runs to the end: a reply cut
/// off while still reasoning has no answer).
fn strip_reasoning(reply: &str) -> std::borrow::Cow<'_, str> {
    if !reply.contains("<think>") {
        return reply.into();
    }
    let mut out = String::with_capacity(reply.len());
    let mut rest = reply;
    while let Some(i) = rest.find("<think>") {
        out.push_str(&rest[..i]);
        match rest[i..].find("</think>") {
            Some(j) => rest = &rest[i + j + "</think>".len()..],
            None => return out.into(),
        }
    }
    out.push_str(rest);
    out.into()
}

/// The side `tag` favours when side `first` was shown first.
pub fn pick(tag: Tag, a_first: bool) -> Pick {
    match (tag, a_first) {
        (Tag::C, _) => Pick::Tie,
        (Tag::A, true) | (Tag::B, false) => Pick::A,
        (Tag::B, true) | (Tag::A, false) => Pick::B,
    }
}

/// An item's outcome from its two verdicts (A shown first, then B shown first): a side
/// wins only if both pick it, any other pair of verdicts is a tie, and a missing verdict
/// makes the item an error.
pub fn combine(a_first: Option<Pick>, b_first: Option<Pick>) -> Outcome {
    match (a_first, b_first) {
        (Some(Pick::A), Some(Pick::A)) => Outcome::A,
        (Some(Pick::B), Some(Pick::B)) => Outcome::B,
        (Some(_), Some(_)) => Outcome::Tie,
        _ => Outcome::Error,
    }
}

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Outcomes added up, from side A's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Items side A won.
    pub wins: usize,
    /// Items side B won.
    pub losses: usize,
    pub ties: usize,
    /// Items without a verdict in one order or both: not in `n`.
    pub errors: usize,
}

impl Tally {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::A => self.wins += 1,
            Outcome::B => self.losses += 1,
            Outcome::Tie => self.ties += 1,
            Outcome::Error => self.errors += 1,
        }
    }

    /// Items with a verdict: wins, losses and ties (errors are left out).
    pub fn n(&self) -> usize {
        self.wins + self.losses + self.ties
    }

    /// `(wins + ties/2) / n`: side A's share of the items judged, a tie counting half (as
    /// Chatbot Arena and AlpacaEval count them). `None` when nothing was judged.
    pub fn win_rate(&self) -> Option<f64> {
        let n = self.n();
        (n > 0).then(|| (self.wins as f64 + 0.5 * self.ties as f64) / n as f64)
    }

    /// A 95% Wilson score interval on [`Tally::win_rate`], reading it as a proportion of `n`
    /// trials (a tie as half a success). Wilson's interval stays inside [0, 1] and is sound
    /// for small `n` and rates near 0 or 1, where the normal approximation is not; with ties,
    /// whose scores vary less than a win or loss, it errs on the wide side. `None` when
    /// nothing was judged.
    pub fn interval(&self) -> Option<(f64, f64)> {
        let p = self.win_rate()?;
        Some(wilson(p, self.n() as f64, Z95))
    }
}

/// Wilson's score interval for a proportion `p` of `n` trials at `z` standard deviations.
pub fn wilson(p: f64, n: f64, z: f64) -> (f64, f64) {
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_from_the_answer_only_and_never_guessed() {
        assert_eq!(parse("A is more correct.\n\n[[A]]"), Ok(Tag::A));
        assert_eq!(parse("[[C]]"), Ok(Tag::C));
        // The same verdict twice is one verdict.
        assert_eq!(parse("Verdict: [[B]]. Again: [[B]]"), Ok(Tag::B));
        assert_eq!(parse("I cannot decide."), Err(Unreadable::NoTag));
        assert_eq!(parse("[A] or [[ B ]] or [[b]]"), Err(Unreadable::NoTag));
        assert_eq!(
            parse("Output [[A]] if A is better... final: [[B]]"),
            Err(Unreadable::Several(vec![Tag::A, Tag::B]))
        );
        // Reasoning is not the answer; an unclosed block has none.
        assert_eq!(
            parse("<think>maybe [[A]]? no, [[B]]</think>\nB is right. [[B]]"),
            Ok(Tag::B)
        );
        assert_eq!(parse("<think>[[A]] looks"), Err(Unreadable::NoTag));
        assert_eq!(
            Unreadable::Several(vec![Tag::A, Tag::C]).to_string(),
            "several verdicts in the judge's reply: [[A]], [[C]]"
        );
    }

    #[test]
    fn a_side_wins_only_if_it_wins_both_orders() {
        // A judge that always says [[A]] favours whatever is shown first: a tie.
        let o = combine(Some(pick(Tag::A, true)), Some(pick(Tag::A, false)));
        assert_eq!(o, Outcome::Tie);
        assert_eq!(
            combine(Some(pick(Tag::A, true)), Some(pick(Tag::B, false))),
            Outcome::A
        );
        assert_eq!(
            combine(Some(pick(Tag::B, true)), Some(pick(Tag::A, false))),
            Outcome::B
        );
        assert_eq!(
            combine(Some(pick(Tag::C, true)), Some(pick(Tag::B, false))),
            Outcome::Tie
        );
        assert_eq!(combine(None, Some(Pick::A)), Outcome::Error);
        assert_eq!(combine(Some(Pick::Tie), None), Outcome::Error);
    }

    #[test]
    fn win_rate_counts_ties_as_halves_and_leaves_errors_out() {
        let mut t = Tally::default();
        assert_eq!((t.win_rate(), t.interval()), (None, None));
        for o in [
            Outcome::A,
            Outcome::A,
            Outcome::Tie,
            Outcome::B,
            Outcome::Error,
        ] {
            t.add(o);
        }
        assert_eq!((t.wins, t.losses, t.ties, t.errors, t.n()), (2, 1, 1, 1, 4));
        assert_eq!(t.win_rate(), Some(0.625));
        // All ties: exactly one half, an interval symmetric about it.
        let ties = Tally {
            ties: 10,
            ..Default::default()
        };
        assert_eq!(ties.win_rate(), Some(0.5));
        let (lo, hi) = ties.interval().unwrap();
        assert!((lo + hi - 1.0).abs() < 1e-12 && lo < 0.5 && hi > 0.5);
    }

    #[test]
    fn wilson_matches_its_textbook_values() {
        // 8 of 10 (statsmodels' proportion_confint(8, 10, method="wilson")).
        let (lo, hi) = wilson(0.8, 10.0, Z95);
        assert!((lo - 0.490_162_471_4).abs() < 1e-9, "{lo}");
        assert!((hi - 0.943_317_848_5).abs() < 1e-9, "{hi}");
        // 0 of 5 and 5 of 5 stay in [0, 1].
        let (lo, hi) = wilson(0.0, 5.0, Z95);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.434_482_464_8).abs() < 1e-9, "{hi}");
        let (lo, hi) = wilson(1.0, 5.0, Z95);
        assert!((lo - 0.565_517_535_2).abs() < 1e-9 && hi == 1.0, "{lo}");
    }
}
