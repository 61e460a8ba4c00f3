//! tunelab's chat-template rendering and tokenization against transformers' apply_chat_template
//! (fixtures from tests/reference/make_template_fixtures.py), and the loss masks per template
//! and policy.

use crate::common;

use serde_json::{json, Value};
use tunelab::data::problem::Issues;
use tunelab::data::{Body, Conversation, Format, Role};
use tunelab::template::{
    Encoder, Example, TemplateChoice, TemplateError, TextTokenizer, TrainOn, IGNORE,
};

const FAMILIES: &[&str] = &["llama3_1", "qwen2_5", "mistral_v0_3", "gemma", "phi3"];

fn load(family: &str) -> (Encoder, Value) {
    let dir = common::fixture(&format!("templates/{family}"));
    let tok = TextTokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("{family}: {e}"));
    let enc = Encoder::new(tok, &TemplateChoice::Model, TrainOn::Assistant).unwrap();
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    (enc, cases)
}

fn conversation(case: &Value) -> Conversation {
    let mut obj = serde_json::Map::new();
    obj.insert("messages".into(), case["messages"].clone());
    if let Some(t) = case.get("tools") {
        obj.insert("tools".into(), t.clone());
    }
    let mut issues = Issues::default();
    let rec = Format::Openai
        .read(&obj, &mut issues)
        .expect("fixture conversation");
    match rec.body {
        Body::Conversation(c) => c,
        _ => unreachable!(),
    }
}

#[test]
fn rendered_text_and_token_ids_match_transformers() {
    let mut compared = 0;
    for family in FAMILIES {
        let (enc, cases) = load(family);
        for case in cases["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let conv = conversation(case);
            let msgs: Vec<Value> = conv
                .messages
                .iter()
                .map(tunelab::template::encode::template_message)
                .collect();
            let tools = case.get("tools").cloned();
            let gen = case["add_generation_prompt"].as_bool().unwrap_or(false);
            let rendered = enc.render(&msgs, tools.as_ref(), gen);
            if let Some(err) = case.get("error").and_then(Value::as_str) {
                let got = rendered
                    .expect_err(&format!("{family}/{name} should raise"))
                    .to_string();
                assert!(
                    got.contains(err),
                    "{family}/{name}: {got} does not contain {err}"
                );
                compared += 1;
                continue;
            }
            let text = rendered.unwrap_or_else(|e| panic!("{family}/{name}: {e}"));
            assert_eq!(
                text,
                case["text"].as_str().unwrap(),
                "{family}/{name}: rendered text"
            );
            let ids = enc.tokenizer.encode(&text, false).unwrap().ids;
            let want: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
            assert_eq!(ids, want, "{family}/{name}: token ids");
            compared += 1;
        }
        let e = &cases["encode"];
        let plain = e["text"].as_str().unwrap();
        let with: Vec<u32> = serde_json::from_value(e["with_special_tokens"].clone()).unwrap();
        let without: Vec<u32> =
            serde_json::from_value(e["without_special_tokens"].clone()).unwrap();
        assert_eq!(
            enc.tokenizer.encode(plain, true).unwrap().ids,
            with,
            "{family}: add_special_tokens=True"
        );
        assert_eq!(
            enc.tokenizer.encode(plain, false).unwrap().ids,
            without,
            "{family}: add_special_tokens=False"
        );
    }
    assert_eq!(compared, 30);
}

/// The text each trained run of tokens covers, in order.
pub(crate) fn trained_runs(ex: &Example) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for (t, l) in ex.labels.iter().enumerate() {
        let (s, e) = ex.offsets[t];
        if *l != IGNORE {
            current = Some(match current {
                Some((a, _)) => (a, e),
                None => (s, e),
            });
        } else if let Some((a, b)) = current.take() {
            runs.push(ex.text[a..b].to_string());
        }
    }
    if let Some((a, b)) = current {
        runs.push(ex.text[a..b].to_string());
    }
    runs
}

/// What each family's template trains for an assistant message: its content as rendered plus
/// the end-of-turn token.
fn expected_turn(family: &str, content: &str) -> String {
    match family {
        "llama3_1" => format!("{}<|eot_id|>", content.trim()),
        "qwen2_5" => format!("{content}<|im_end|>"),
        "mistral_v0_3" => format!(" {}</s>", content.trim()),
        "gemma" => format!("{}<end_of_turn>", content.trim()),
        "phi3" => format!("{content}<|end|>"),
        _ => unreachable!(),
    }
}

#[test]
fn masks_train_exactly_the_assistant_turns_and_their_end_tokens() {
    let mut checked = 0;
    for family in FAMILIES {
        let (enc, cases) = load(family);
        for case in cases["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            if case.get("error").is_some() || case["add_generation_prompt"].as_bool() == Some(true)
            {
                continue;
            }
            let conv = conversation(case);
            let assistants: Vec<&tunelab::data::Message> = conv
                .messages
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .collect();
            for policy in [TrainOn::Assistant, TrainOn::LastAssistant, TrainOn::All] {
                let mut e = enc.clone();
                e.train_on = policy;
                let result = e.encode_conversation(&conv);
                if *family == "mistral_v0_3" && name.starts_with("system") && policy != TrainOn::All
                {
                    // Mistral v0.3's template moves the system prompt into the last user turn, and
                    // drops it when the conversation ends on the assistant: training text and
                    // inference text disagree, and tunelab refuses rather than guess.
                    assert!(
                        matches!(result, Err(TemplateError::NotPrefixStable { .. })),
                        "{family}/{name}: {result:?}"
                    );
                    continue;
                }
                let ex = result.unwrap_or_else(|err| panic!("{family}/{name}/{policy:?}: {err}"));
                let want_ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
                assert_eq!(ex.input_ids, want_ids, "{family}/{name}: ids");
                let runs = trained_runs(&ex);
                match policy {
                    TrainOn::All => assert_eq!(ex.trained(), ex.len(), "{family}/{name}"),
                    TrainOn::Assistant | TrainOn::LastAssistant => {
                        let which: Vec<&&tunelab::data::Message> = match policy {
                            TrainOn::Assistant => assistants.iter().collect(),
                            _ => assistants.last().into_iter().collect(),
                        };
                        assert_eq!(
                            runs.len(),
                            which.len(),
                            "{family}/{name}/{policy:?}: {runs:?}"
                        );
                        for (run, m) in runs.iter().zip(which) {
                            if m.tool_calls.is_empty() {
                                assert_eq!(
                                    run,
                                    &expected_turn(family, &m.text()),
                                    "{family}/{name}/{policy:?}"
                                );
                            } else {
                                // A tool-calling turn: the call as the template writes it, then the end token.
                                let end = expected_turn(family, "");
                                assert!(
                                    run.ends_with(end.trim_start()),
                                    "{family}/{name}: {run:?}"
                                );
                                if *family != "phi3" {
                                    assert!(
                                        run.contains("get_weather") && run.contains("Oslo"),
                                        "{family}/{name}: {run:?}"
                                    );
                                }
                            }
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 50, "{checked}");
}

#[test]
fn per_message_weights_override_the_policy() {
    let (enc, _) = load("qwen2_5");
    let mut issues = Issues::default();
    let rec = Format::Openai
        .read(
            json!({"messages": [
                {"role": "user", "content": "a"}, {"role": "assistant", "content": "first", "weight": 0},
                {"role": "user", "content": "b"}, {"role": "assistant", "content": "second"}
            ]})
            .as_object()
            .unwrap(),
            &mut issues,
        )
        .unwrap();
    let Body::Conversation(c) = rec.body else {
        unreachable!()
    };
    let ex = enc.encode_conversation(&c).unwrap();
    assert_eq!(trained_runs(&ex), ["second<|im_end|>"]);
}

#[test]
fn preference_pairs_split_exactly_at_the_prompt_boundary() {
    let (enc, _) = load("llama3_1");
    let mut issues = Issues::default();
    let rec = Format::Preference
        .read(
            json!({"prompt": [{"role": "user", "content": "Sky?"}],
                   "chosen": [{"role": "assistant", "content": "Blue."}],
                   "rejected": [{"role": "assistant", "content": "Green."}]})
            .as_object()
            .unwrap(),
            &mut issues,
        )
        .unwrap();
    let Body::Preference(p) = rec.body else {
        unreachable!()
    };
    let pe = enc.encode_preference(&p).unwrap();
    let tok = &enc.tokenizer;
    let prompt = tok.decode(&pe.prompt_ids).unwrap();
    assert!(
        prompt.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"),
        "{prompt:?}"
    );
    assert_eq!(tok.decode(&pe.chosen_ids).unwrap(), "Blue.<|eot_id|>");
    assert_eq!(tok.decode(&pe.rejected_ids).unwrap(), "Green.<|eot_id|>");
    // Prompt plus completion is exactly the full rendering's tokenization.
    let full = enc
        .render(
            &[
                json!({"role": "user", "content": "Sky?"}),
                json!({"role": "assistant", "content": "Blue."}),
            ],
            None,
            false,
        )
        .unwrap();
    let mut joined = pe.prompt_ids.clone();
    joined.extend(&pe.chosen_ids);
    assert_eq!(joined, tok.encode(&full, false).unwrap().ids);
}

#[test]
fn text_and_plain_completion_follow_trl() {
    let (enc, _) = load("llama3_1");
    let ex = enc.encode_text("Low rank adapters.").unwrap();
    let bos = enc.tokenizer.token_to_id("<|begin_of_text|>").unwrap();
    let eos = enc.tokenizer.eos_id().unwrap();
    assert_eq!(ex.input_ids.first(), Some(&bos));
    assert_eq!(ex.input_ids.last(), Some(&eos));
    assert_eq!(ex.trained(), ex.len());
    let mut issues = Issues::default();
    let rec = Format::PromptCompletion
        .read(
            json!({"prompt": "2+2=", "completion": " 4"})
                .as_object()
                .unwrap(),
            &mut issues,
        )
        .unwrap();
    let Body::Conversation(c) = rec.body else {
        unreachable!()
    };
    let ex = enc.encode_conversation(&c).unwrap();
    assert_eq!(ex.input_ids[0], bos);
    assert_eq!(trained_runs(&ex).concat(), " 4");
    assert_eq!(*ex.labels.last().unwrap(), i64::from(eos), "EOS is trained");
    assert_eq!(ex.labels[0], IGNORE);
}

#[test]
fn builtin_templates_mask_their_assistant_turns() {
    let (base, _) = load("qwen2_5");
    let mut issues = Issues::default();
    let rec = Format::Alpaca
        .read(
            json!({"instruction": "Add 2 and 2.", "input": "", "output": "4"})
                .as_object()
                .unwrap(),
            &mut issues,
        )
        .unwrap();
    let Body::Conversation(c) = rec.body else {
        unreachable!()
    };
    let enc = Encoder::new(
        base.tokenizer.clone(),
        &TemplateChoice::Builtin("chatml".into()),
        TrainOn::Assistant,
    )
    .unwrap();
    assert_eq!(
        trained_runs(&enc.encode_conversation(&c).unwrap()),
        ["4<|im_end|>"]
    );
    let enc = Encoder::new(
        base.tokenizer.clone(),
        &TemplateChoice::Builtin("alpaca".into()),
        TrainOn::Assistant,
    )
    .unwrap();
    let ex = enc.encode_conversation(&c).unwrap();
    assert!(
        ex.text
            .contains("### Instruction:\nAdd 2 and 2.\n\n### Response:\n4<|im_end|>"),
        "{}",
        ex.text
    );
    assert_eq!(trained_runs(&ex), ["4<|im_end|>"]);
}
