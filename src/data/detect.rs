//! Format detection from the keys of the first records. It explains its choice, and refuses
//! ambiguity by naming the candidates.

use super::format::{hh_rlhf_transcript, Format};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// How many leading records detection looks at.
pub const SAMPLE: usize = 32;

/// The formats a single record's keys fit, most specific first.
pub fn candidates(obj: &Map<String, Value>) -> Vec<Format> {
    let has = |k: &str| obj.contains_key(k);
    let pair = has("chosen") && has("rejected");
    let mut out = Vec::new();
    let first_message_has = |list: &str, key: &str| {
        obj.get(list)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .is_some_and(|m| m.get(key).is_some())
    };
    // A `label` beside a rated reply is unpaired preference data (KTO); a non-boolean label
    // may be plain metadata, so it leaves the SFT reading open too.
    let rated = !pair && (has("messages") || (has("prompt") && has("completion")));
    let label = obj.get("label");
    if rated && label.is_some() {
        out.push(Format::Kto);
        if label.is_some_and(Value::is_boolean) {
            return out;
        }
    }
    if has("messages") && !pair {
        if first_message_has("messages", "from") {
            out.push(Format::Sharegpt);
        } else {
            out.push(Format::Openai);
        }
    }
    if has("conversations") {
        out.push(if pair {
            Format::SharegptPreference
        } else {
            Format::Sharegpt
        });
    }
    if has("instruction") && pair {
        out.push(Format::AlpacaPreference);
    }
    if has("instruction") && has("output") && !pair {
        out.push(Format::Alpaca);
    }
    if has("instruction") && has("response") {
        out.push(Format::Dolly);
    }
    if has("inputs") && has("targets") {
        out.push(Format::Flan);
    }
    if has("prompt") && has("completion") {
        out.push(Format::PromptCompletion);
    }
    if has("text") {
        out.push(Format::Text);
    }
    if pair && !has("conversations") && !has("instruction") {
        let transcript = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .is_some_and(hh_rlhf_transcript)
        };
        if !has("prompt") && transcript("chosen") && transcript("rejected") {
            out.push(Format::HhRlhf);
        } else {
            out.push(Format::Preference);
        }
    }
    out.dedup();
    out
}

/// The outcome of detection: the format and the evidence for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub format: Format,
    pub evidence: String,
}

/// Decides the format from sampled records (their locations only serve error messages).
pub fn detect<'a>(
    sample: impl IntoIterator<Item = (String, &'a Map<String, Value>)>,
) -> Result<Detection, String> {
    let mut agreed: Option<BTreeSet<Format>> = None;
    let mut seen = Vec::new();
    let mut unmatched: Vec<(String, Vec<String>)> = Vec::new();
    let mut total = 0usize;
    let mut matched = 0usize;
    let mut key_union: Vec<String> = Vec::new();
    for (loc, obj) in sample {
        total += 1;
        let c: BTreeSet<Format> = candidates(obj).into_iter().collect();
        if c.is_empty() {
            unmatched.push((loc, obj.keys().cloned().collect()));
            continue;
        }
        matched += 1;
        for k in obj.keys() {
            if !key_union.contains(k) {
                key_union.push(k.clone());
            }
        }
        seen.push((loc, c.clone()));
        agreed = Some(match agreed {
            None => c,
            Some(a) => a.intersection(&c).copied().collect(),
        });
    }
    if total == 0 {
        return Err("no records to detect the format from; pass --format".into());
    }
    let Some(agreed) = agreed else {
        let (loc, keys) = &unmatched[0];
        if is_multiple_choice(keys) {
            return Err(format!(
                "a multiple-choice task ({loc} has keys [{}]), not training data: score a model \
                 on it with `tunelab eval bench --task FILE`, or list it under `eval.tasks` as \
                 `bench: FILE`",
                keys.join(", ")
            ));
        }
        return Err(format!(
            "unrecognised format: {loc} has keys [{}]; expected the keys of one of: {}",
            keys.join(", "),
            expected_list()
        ));
    };
    match agreed.len() {
        1 => {
            let format = agreed.into_iter().next().unwrap_or(Format::Openai);
            let keys: Vec<&str> = format
                .keys()
                .iter()
                .copied()
                .filter(|k| key_union.iter().any(|u| u == k))
                .collect();
            Ok(Detection {
                format,
                evidence: format!(
                    "keys {} in {matched} of {total} sampled records",
                    keys.join(", ")
                ),
            })
        }
        0 => {
            let mut parts = Vec::new();
            let mut last: Option<&BTreeSet<Format>> = None;
            for (loc, c) in &seen {
                if last != Some(c) {
                    let names: Vec<&str> = c.iter().map(|f| f.name()).collect();
                    parts.push(format!("{loc} looks like {}", names.join(" or ")));
                    last = Some(c);
                }
                if parts.len() == 3 {
                    break;
                }
            }
            Err(format!(
                "records disagree on the format: {}; pass --format",
                parts.join(", ")
            ))
        }
        _ => {
            let names: Vec<&str> = agreed.iter().map(|f| f.name()).collect();
            Err(format!(
                "ambiguous format: the records fit {}; pass --format with one of them",
                names.join(" and ")
            ))
        }
    }
}

/// The layouts `tunelab eval bench` reads (MMLU's, ARC's, HellaSwag's, its own): a file of
/// them is a benchmark, and saying so beats "unrecognised".
fn is_multiple_choice(keys: &[String]) -> bool {
    let has = |k: &str| keys.iter().any(|x| x == k);
    (has("choices") && (has("answer") || has("answerKey"))) || (has("endings") && has("label"))
}

fn expected_list() -> String {
    Format::all()
        .map(|f| format!("{} ({})", f.name(), f.keys().join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn one(v: Value) -> Result<Format, String> {
        let o = obj(v);
        detect([("record 1".to_string(), &o)]).map(|d| d.format)
    }

    #[test]
    fn multiple_choice_files_are_named_as_benchmarks() {
        for v in [
            json!({"question": "q", "choices": ["a", "b"], "answer": 0}),
            json!({"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "A"}),
            json!({"ctx": "c", "endings": ["a", "b"], "label": "1"}),
        ] {
            let e = one(v).unwrap_err();
            assert!(
                e.starts_with("a multiple-choice task (record 1 has keys [")
                    && e.contains("tunelab eval bench --task FILE"),
                "{e}"
            );
        }
        let e = one(json!({"foo": 1})).unwrap_err();
        assert!(e.starts_with("unrecognised format"), "{e}");
    }

    #[test]
    fn each_format_is_detected_from_its_keys() {
        assert_eq!(
            one(json!({"instruction": "a", "input": "", "output": "b"})),
            Ok(Format::Alpaca)
        );
        assert_eq!(
            one(json!({"conversations": [{"from": "human", "value": "x"}]})),
            Ok(Format::Sharegpt)
        );
        assert_eq!(
            one(json!({"messages": [{"role": "user", "content": "x"}]})),
            Ok(Format::Openai)
        );
        assert_eq!(
            one(json!({"messages": [{"role": "user", "content": "x"}], "label": true})),
            Ok(Format::Kto)
        );
        assert_eq!(
            one(json!({"prompt": "a", "completion": "b", "label": false})),
            Ok(Format::Kto)
        );
        assert_eq!(
            one(json!({"instruction": "a", "context": "", "response": "b", "category": "qa"})),
            Ok(Format::Dolly)
        );
        assert_eq!(
            one(json!({"inputs": "a", "targets": "b", "task_name": "t"})),
            Ok(Format::Flan)
        );
        assert_eq!(
            one(json!({"prompt": "a", "completion": "b"})),
            Ok(Format::PromptCompletion)
        );
        assert_eq!(one(json!({"text": "a"})), Ok(Format::Text));
        assert_eq!(
            one(json!({"prompt": "a", "chosen": "b", "rejected": "c"})),
            Ok(Format::Preference)
        );
        assert_eq!(
            one(json!({"chosen": "b", "rejected": "c"})),
            Ok(Format::Preference)
        );
        assert_eq!(
            one(json!({"conversations": [], "chosen": {}, "rejected": {}})),
            Ok(Format::SharegptPreference)
        );
        assert_eq!(
            one(json!({"instruction": "a", "chosen": "b", "rejected": "c"})),
            Ok(Format::AlpacaPreference)
        );
        assert_eq!(
            one(
                json!({"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: no"})
            ),
            Ok(Format::HhRlhf)
        );
    }

    #[test]
    fn ambiguity_lists_the_candidates() {
        let err = one(json!({"messages": [], "text": "x"})).unwrap_err();
        assert!(err.contains("openai and text"), "{err}");
        assert!(err.contains("--format"), "{err}");
    }

    #[test]
    fn a_label_that_is_not_boolean_is_ambiguous_alone_and_located_among_booleans() {
        let err = one(json!({"prompt": "a", "completion": "b", "label": "good"})).unwrap_err();
        assert!(err.contains("prompt-completion and kto"), "{err}");
        let a = obj(json!({"messages": [], "label": true}));
        let b = obj(json!({"messages": [], "label": 1}));
        let d = detect([("line 1".to_string(), &a), ("line 2".to_string(), &b)]);
        assert_eq!(d.map(|d| d.format), Ok(Format::Kto));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = one(json!({"question": "a", "answer": "b"})).unwrap_err();
        assert!(err.contains("[question, answer]"), "{err}");
        assert!(err.contains("alpaca (instruction, input, output"), "{err}");
    }

    #[test]
    fn disagreeing_records_are_refused() {
        let a = obj(json!({"instruction": "a", "output": "b"}));
        let b = obj(json!({"text": "x"}));
        let err = detect([("record 1".to_string(), &a), ("record 2".to_string(), &b)]).unwrap_err();
        assert!(err.contains("record 1 looks like alpaca"), "{err}");
        assert!(err.contains("record 2 looks like text"), "{err}");
    }
}
