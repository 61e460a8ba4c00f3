//! The answer reward: 1 when the completion's final answer equals the reference, else 0.
//! The answer is the last `\boxed{…}` (nested braces kept) or the last match of a regex,
//! because a model that reasons aloud states candidate answers before its final one. A
//! completion with no answer to read scores 0 (that is the model's fault); a record with no
//! reference to read is an error (that is the data's), never a silent 0.

use super::number::last_number;
use crate::config::grpo::{AnswerReward, Compare, Extract};
use regex::Regex;

#[derive(Debug, Clone)]
pub struct Answer {
    /// `None`: `\boxed{…}`.
    extract: Option<Regex>,
    compare: Compare,
    reference: Option<Regex>,
    tolerance: f64,
}

/// A regex compiled with `.` matching newlines (answers span lines; `(?-s)` undoes it).
fn compile(field: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("(?s){pattern}")).map_err(|e| format!("{field} is not a regex: {e}"))
}

impl Answer {
    pub fn new(spec: &AnswerReward) -> Result<Self, String> {
        if spec.tolerance.is_nan() || spec.tolerance < 0.0 {
            return Err(format!(
                "answer.tolerance must be >= 0 (it is {})",
                spec.tolerance
            ));
        }
        Ok(Answer {
            extract: match &spec.extract {
                Extract::Boxed => None,
                Extract::Regex(p) => Some(compile("answer.extract", p)?),
            },
            compare: spec.compare,
            reference: spec
                .reference_regex
                .as_deref()
                .map(|p| compile("answer.reference_regex", p))
                .transpose()?,
            tolerance: spec.tolerance,
        })
    }

    /// 1 or 0; `Err` says what is wrong with the reference (the caller names the reward and
    /// the line).
    pub fn score(&self, completion: &str, reference: Option<&str>) -> Result<f64, String> {
        let reference = reference.ok_or(
            "no reference to compare with (the record needs a final assistant turn or an answer/solution column)",
        )?;
        let expected = match &self.reference {
            Some(re) => last_match(re, reference).ok_or_else(|| {
                format!(
                    "the reference does not match reference_regex `{}`: {:?}",
                    re.as_str().trim_start_matches("(?s)"),
                    crate::synth::provider::clip(reference, 80)
                )
            })?,
            None => reference,
        };
        let got = match &self.extract {
            Some(re) => last_match(re, completion),
            None => last_boxed(completion),
        };
        let Some(got) = got else { return Ok(0.0) };
        let same = match self.compare {
            Compare::Exact => got.trim() == expected.trim(),
            Compare::Numeric => {
                let want = last_number(expected).ok_or_else(|| {
                    format!(
                        "the reference has no number to compare with: {:?}",
                        crate::synth::provider::clip(expected, 80)
                    )
                })?;
                last_number(got).is_some_and(|v| self.close(v, want))
            }
        };
        Ok(if same { 1.0 } else { 0.0 })
    }

    /// Equal within the relative tolerance.
    fn close(&self, a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= self.tolerance * a.abs().max(b.abs())
    }
}

/// The last match's first group, or the whole match when the regex has no group (or the
/// group took no part).
fn last_match<'t>(re: &Regex, text: &'t str) -> Option<&'t str> {
    let c = re.captures_iter(text).last()?;
    c.get(1).or_else(|| c.get(0)).map(|m| m.as_str())
}

/// The content of the last `\boxed{…}` whose braces close.
pub fn last_boxed(text: &str) -> Option<&str> {
    const OPEN: &str = "\\boxed{";
    let starts: Vec<usize> = text
        .match_indices(OPEN)
        .map(|(i, _)| i + OPEN.len())
        .collect();
    starts.into_iter().rev().find_map(|start| {
        let mut depth = 1usize;
        for (i, c) in text[start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&text[start..start + i]);
                    }
                }
                _ => {}
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(extract: Extract, compare: Compare, reference_regex: Option<&str>) -> Answer {
        Answer::new(&AnswerReward {
            extract,
            compare,
            reference_regex: reference_regex.map(String::from),
            tolerance: 1e-6,
        })
        .unwrap()
    }

    const GSM8K: &str = "<think>\nNatalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips altogether.\n</think>\n<answer>\n72\n</answer>";
    const SOLUTION: &str = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72";

    #[test]
    fn a_gsm8k_answer_against_its_solution() {
        let a = answer(
            Extract::Regex("<answer>(.*?)</answer>".into()),
            Compare::Numeric,
            Some("#### (.*)"),
        );
        assert_eq!(a.score(GSM8K, Some(SOLUTION)), Ok(1.0));
        let wrong = GSM8K.replace("\n72\n", "\n70\n");
        assert_eq!(a.score(&wrong, Some(SOLUTION)), Ok(0.0));
        // No answer tag at all: 0, not an error.
        assert_eq!(a.score("<think>72</think>", Some(SOLUTION)), Ok(0.0));
        // The last tag wins: a model that revises itself is scored on its final answer.
        let revised = "<answer>70</answer> wait, no. <answer>72</answer>";
        assert_eq!(a.score(revised, Some(SOLUTION)), Ok(1.0));
        // The whole match when the regex has no group.
        let whole = answer(Extract::Regex(r"-?\d+".into()), Compare::Exact, None);
        assert_eq!(whole.score("so 3 then -12", Some("-12")), Ok(1.0));
    }

    #[test]
    fn boxed_answers_keep_nested_braces() {
        assert_eq!(last_boxed(r"so \boxed{\frac{1}{2}}."), Some(r"\frac{1}{2}"));
        assert_eq!(last_boxed(r"\boxed{1} or \boxed{2}"), Some("2"));
        assert_eq!(last_boxed(r"\boxed{3} then \boxed{4"), Some("3"));
        assert_eq!(last_boxed("no box"), None);
        let exact = answer(Extract::Boxed, Compare::Exact, None);
        let c = r"Half of one is $\boxed{\frac{1}{2}}$.";
        assert_eq!(exact.score(c, Some(r" \frac{1}{2} ")), Ok(1.0));
        assert_eq!(exact.score(c, Some("0.5")), Ok(0.0));
        let numeric = answer(Extract::Boxed, Compare::Numeric, None);
        assert_eq!(numeric.score(c, Some("0.5")), Ok(1.0));
        assert_eq!(numeric.score("I think it is 0.5", Some("0.5")), Ok(0.0));
    }

    #[test]
    fn numbers_compare_as_amounts() {
        let n = answer(Extract::Boxed, Compare::Numeric, None);
        assert_eq!(n.score(r"\boxed{\$1,234.50}", Some("1234.5")), Ok(1.0));
        assert_eq!(
            n.score(r"The total is \boxed{1234.50}", Some("$1,234.50")),
            Ok(1.0)
        );
        assert_eq!(n.score(r"\boxed{-5}", Some("The answer is -5")), Ok(1.0));
        assert_eq!(n.score(r"\boxed{5}", Some("-5")), Ok(0.0));
        assert_eq!(n.score(r"\boxed{40\%}", Some("40")), Ok(1.0));
        assert_eq!(
            n.score(r"\boxed{0.30000000000000004}", Some("0.3")),
            Ok(1.0)
        );
        assert_eq!(n.score(r"\boxed{0.3001}", Some("0.3")), Ok(0.0));
        assert_eq!(n.score(r"\boxed{none}", Some("3")), Ok(0.0));
    }

    #[test]
    fn a_reference_that_cannot_be_read_is_an_error() {
        let a = answer(Extract::Boxed, Compare::Numeric, Some("#### (.*)"));
        let none = a.score(r"\boxed{72}", None).unwrap_err();
        assert!(none.starts_with("no reference"), "{none}");
        let unmatched = a.score(r"\boxed{72}", Some("72")).unwrap_err();
        assert!(
            unmatched.contains("does not match reference_regex `#### (.*)`"),
            "{unmatched}"
        );
        let plain = answer(Extract::Boxed, Compare::Numeric, None);
        let text = plain.score(r"\boxed{72}", Some("seventy-two")).unwrap_err();
        assert!(text.contains("no number"), "{text}");
        // Exact comparison reads any reference.
        let exact = answer(Extract::Boxed, Compare::Exact, None);
        assert_eq!(
            exact.score(r"\boxed{seventy-two}", Some("seventy-two")),
            Ok(1.0)
        );
    }
}
