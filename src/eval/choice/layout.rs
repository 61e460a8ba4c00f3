//! The record layouts a task file may have, detected from its first record, and how each
//! becomes an [`Item`]. The prompts are lm-evaluation-harness's for the same datasets, so a
//! pulled MMLU, ARC or HellaSwag file scores as lm-eval scores it:
//!
//! | layout    | fields                                        | context                          |
//! |-----------|-----------------------------------------------|----------------------------------|
//! | question  | `question`, `choices`, `answer` (MMLU)        | `Question: {question}\nAnswer:`  |
//! | context   | `context`, `choices`, `answer`                | the context as it is             |
//! | arc       | `question`, `choices.text`/`.label`, `answerKey` | `Question: {question}\nAnswer:` |
//! | hellaswag | `ctx` (or `activity_label`/`ctx_a`/`ctx_b`), `endings`, `label` | lm-eval's `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`, else `ctx` as it is |
//!
//! (`question` is lm-eval's `arc_*` and `mmlu_continuation` prompt; HellaSwag's endings go
//! through the same `preprocess`.) A context template replaces the prompt of every layout:
//! `{question}` (or `{context}`) stands for the record's question or context text.

use super::Item;
use serde_json::{Map, Value};

/// The question prompt of lm-eval's ARC and `mmlu_continuation` tasks.
pub const QUESTION_TEMPLATE: &str = "Question: {question}\nAnswer:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `question`, `choices` (strings), `answer` (an index): MMLU and tunelab's own files.
    Question,
    /// `context` (the prompt as it is), `choices`, `answer`.
    Context,
    /// ARC: `question`, `choices: {text, label}`, `answerKey` (one of the labels).
    Arc,
    /// HellaSwag: `ctx` (or its parts), `endings`, `label`.
    Hellaswag,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Question => "question",
            Layout::Context => "context",
            Layout::Arc => "arc",
            Layout::Hellaswag => "hellaswag",
        }
    }

    /// The fields that make the layout, for messages.
    pub fn fields(self) -> &'static str {
        match self {
            Layout::Question => "question/choices/answer",
            Layout::Context => "context/choices/answer",
            Layout::Arc => "question/choices.text/answerKey",
            Layout::Hellaswag => "ctx/endings/label",
        }
    }

    /// The layout of a record by the fields it has; `None` when none fits.
    pub fn detect(rec: &Map<String, Value>) -> Option<Layout> {
        let has = |k: &str| rec.contains_key(k);
        if has("endings") && has("label") && (has("ctx") || has("ctx_a")) {
            Some(Layout::Hellaswag)
        } else if has("answerKey") && has("choices") {
            Some(Layout::Arc)
        } else if has("choices") && has("answer") && has("question") {
            Some(Layout::Question)
        } else if has("choices") && has("answer") && has("context") {
            Some(Layout::Context)
        } else {
            None
        }
    }

    /// What the error for an undetected layout lists.
    pub fn expected() -> &'static str {
        "question (or context), choices (a list of strings) and answer (an index); or ARC's question/choices.text/answerKey; or HellaSwag's ctx/endings/label"
    }
}

/// What is wrong with a record: the field and what was expected.
pub type FieldError = (String, String);

fn describe(v: &Value) -> String {
    crate::data::problem::describe(v)
}

fn field<'a>(rec: &'a Map<String, Value>, key: &str) -> Result<&'a Value, FieldError> {
    rec.get(key)
        .ok_or_else(|| (key.to_string(), "missing".to_string()))
}

fn text<'a>(rec: &'a Map<String, Value>, key: &str) -> Result<&'a str, FieldError> {
    match field(rec, key)? {
        Value::String(s) => Ok(s),
        other => Err((
            key.to_string(),
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

/// A list of non-empty strings (an empty choice has no length to normalize by).
fn strings(v: &Value, name: &str, min: usize) -> Result<Vec<String>, FieldError> {
    let Value::Array(xs) = v else {
        return Err((
            name.to_string(),
            format!("expected a list of strings, found {}", describe(v)),
        ));
    };
    let mut out = Vec::with_capacity(xs.len());
    for (i, x) in xs.iter().enumerate() {
        match x {
            Value::String(s) if !s.is_empty() => out.push(s.clone()),
            Value::String(_) => {
                return Err((
                    format!("{name}[{i}]"),
                    "an empty string (acc_norm divides by a choice's length)".into(),
                ))
            }
            other => {
                return Err((
                    format!("{name}[{i}]"),
                    format!("expected a string, found {}", describe(other)),
                ))
            }
        }
    }
    if out.len() < min {
        return Err((
            name.to_string(),
            format!("expected at least {min} choices, found {}", out.len()),
        ));
    }
    Ok(out)
}

/// An index: a non-negative integer, a string of digits, or (for `answer`) one letter A–Z.
fn index(v: &Value, name: &str, letters: bool) -> Result<usize, FieldError> {
    let bad = || {
        let what = if letters {
            "an index (0, 1, …, a digit string or a letter A–Z)"
        } else {
            "an index (an integer or a digit string)"
        };
        (
            name.to_string(),
            format!("expected {what}, found {}", describe(v)),
        )
    };
    match v {
        Value::Number(n) => n.as_u64().map(|n| n as usize).ok_or_else(bad),
        Value::String(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse().map_err(|_| bad())
            } else if letters && t.len() == 1 && t.as_bytes()[0].is_ascii_uppercase() {
                Ok(usize::from(t.as_bytes()[0] - b'A'))
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn in_range(answer: usize, choices: &[String], name: &str) -> Result<usize, FieldError> {
    if answer < choices.len() {
        Ok(answer)
    } else {
        Err((
            name.to_string(),
            format!(
                "{answer} is not the index of one of the {} choices",
                choices.len()
            ),
        ))
    }
}

/// The prompt of a record's text through `template` (`{question}`, `{context}`).
fn apply(template: &str, text: &str) -> String {
    if template.contains("{question}") {
        template.replace("{question}", text)
    } else {
        template.replace("{context}", text)
    }
}

/// The item a record of `layout` holds; `template` replaces the layout's prompt.
pub fn item(
    layout: Layout,
    rec: &Map<String, Value>,
    template: Option<&str>,
) -> Result<Item, FieldError> {
    let prompt = |default: &str, text: &str| apply(template.unwrap_or(default), text);
    match layout {
        Layout::Question | Layout::Context => {
            let (key, default) = if layout == Layout::Question {
                ("question", QUESTION_TEMPLATE)
            } else {
                ("context", "{context}")
            };
            let q = text(rec, key)?;
            let choices = strings(field(rec, "choices")?, "choices", 2)?;
            let answer = in_range(
                index(field(rec, "answer")?, "answer", true)?,
                &choices,
                "answer",
            )?;
            Ok(Item {
                context: prompt(default, q),
                choices,
                answer,
            })
        }
        Layout::Arc => {
            let q = text(rec, "question")?;
            let Value::Object(c) = field(rec, "choices")? else {
                return Err((
                    "choices".into(),
                    format!(
                        "expected an object with text and label lists (ARC), found {}",
                        describe(field(rec, "choices")?)
                    ),
                ));
            };
            let texts = strings(
                c.get("text")
                    .ok_or_else(|| ("choices.text".to_string(), "missing".to_string()))?,
                "choices.text",
                2,
            )?;
            let labels: Vec<String> = match c.get("label") {
                Some(Value::Array(ls)) => ls
                    .iter()
                    .map(|l| match l {
                        Value::String(s) => s.trim().to_string(),
                        other => other.to_string(),
                    })
                    .collect(),
                Some(other) => {
                    return Err((
                        "choices.label".into(),
                        format!("expected a list of labels, found {}", describe(other)),
                    ))
                }
                None => return Err(("choices.label".into(), "missing".into())),
            };
            if labels.len() != texts.len() {
                return Err((
                    "choices.label".into(),
                    format!(
                        "{} labels for {} choices; expected one label per choice",
                        labels.len(),
                        texts.len()
                    ),
                ));
            }
            let key = match field(rec, "answerKey")? {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err((
                        "answerKey".into(),
                        format!(
                            "expected a label (A, B, … or 1, 2, …), found {}",
                            describe(other)
                        ),
                    ))
                }
            };
            let answer = labels.iter().position(|l| *l == key).ok_or_else(|| {
                (
                    "answerKey".to_string(),
                    format!(
                        "{key:?} is not one of choices.label ({})",
                        labels.join(", ")
                    ),
                )
            })?;
            Ok(Item {
                context: prompt(QUESTION_TEMPLATE, q),
                choices: texts,
                answer,
            })
        }
        Layout::Hellaswag => {
            let parts = (
                rec.get("activity_label").and_then(Value::as_str),
                rec.get("ctx_a").and_then(Value::as_str),
                rec.get("ctx_b").and_then(Value::as_str),
            );
            let (query, lm_eval) = match parts {
                (Some(a), Some(x), Some(y)) => (
                    hellaswag_preprocess(&format!("{a}: {x} {}", py_capitalize(y))),
                    true,
                ),
                _ => (text(rec, "ctx")?.to_string(), false),
            };
            let mut endings = strings(field(rec, "endings")?, "endings", 2)?;
            if lm_eval {
                endings = endings.iter().map(|e| hellaswag_preprocess(e)).collect();
                if let Some(i) = endings.iter().position(String::is_empty) {
                    return Err((
                        format!("endings[{i}]"),
                        "empty once HellaSwag's [bracketed] artifacts are removed".into(),
                    ));
                }
            }
            let label = field(rec, "label")?;
            if label.as_str().is_some_and(|s| s.trim().is_empty()) {
                return Err((
                    "label".into(),
                    "empty: this split has no answers (HellaSwag's test split has none; use --split validation)".into(),
                ));
            }
            let answer = in_range(index(label, "label", false)?, &endings, "label")?;
            Ok(Item {
                context: prompt("{context}", &query),
                choices: endings,
                answer,
            })
        }
    }
}

/// Python's `str.capitalize()`: the first character upper-cased, the rest lower-cased.
fn py_capitalize(s: &str) -> String {
    let mut cs = s.chars();
    match cs.next() {
        Some(first) => first
            .to_uppercase()
            .chain(cs.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// lm-eval's HellaSwag `preprocess`: strip, " [title]" → ". ", every `[…]` (on one line)
/// removed, double spaces made single (once, as `str.replace` does).
pub fn hellaswag_preprocess(text: &str) -> String {
    let t = super::encode::trim_py(text).replace(" [title]", ". ");
    // re.sub("\\[.*?\\]", "", t): the shortest bracketed run without a newline.
    let mut out = String::with_capacity(t.len());
    let mut rest = t.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']');
        let newline = after.find('\n');
        match close {
            Some(c) if newline.is_none_or(|n| n > c) => {
                out.push_str(&rest[..open]);
                rest = &after[c + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn hellaswag_text_is_cleaned_as_lm_eval_cleans_it() {
        assert_eq!(
            hellaswag_preprocess(
                "  Roof shingle removal: [header] How to [title] remove  it [step] "
            ),
            "Roof shingle removal: How to. remove it "
        );
        assert_eq!(hellaswag_preprocess("a [b [c] d]"), "a d]");
        assert_eq!(hellaswag_preprocess("a [b\nc] d"), "a [b\nc] d");
        assert_eq!(hellaswag_preprocess("[x] y [z"), " y [z");
        assert_eq!(py_capitalize("then, THE man"), "Then, the man");
    }

    #[test]
    fn layouts_are_detected_by_their_fields() {
        let q = obj(json!({"question": "q", "choices": ["a", "b"], "answer": 1}));
        assert_eq!(Layout::detect(&q), Some(Layout::Question));
        let c = obj(json!({"context": "q", "choices": ["a", "b"], "answer": "0"}));
        assert_eq!(Layout::detect(&c), Some(Layout::Context));
        let arc = obj(
            json!({"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"}),
        );
        assert_eq!(Layout::detect(&arc), Some(Layout::Arc));
        let it = item(Layout::Arc, &arc, None).unwrap();
        assert_eq!(
            (it.context.as_str(), it.answer),
            ("Question: q\nAnswer:", 1)
        );
        assert_eq!(Layout::detect(&obj(json!({"prompt": "x"}))), None);
        let e = item(
            Layout::Question,
            &obj(json!({"question": "q", "choices": ["a", "b"], "answer": 2})),
            None,
        )
        .unwrap_err();
        assert_eq!(e.0, "answer");
        let e = item(
            Layout::Question,
            &obj(json!({"question": 3, "choices": ["a", "b"], "answer": 0})),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            (
                "question".into(),
                "expected a string, found a number (3)".into()
            )
        );
    }
}
