//! tunelab's chat-template rendering and tokenization against transformers' apply_chat_template
//! (fixtures from tests/reference/make_template_fixtures.py), and the loss masks per template
//! and policy.

use crate::common;

use serde_json::{json, Map, Value};
use tunelab::data::problem::Issues;
use tunelab::data::{Body, Conversation, Format, Role};
use tunelab::template::{
    Encoder, Example, TemplateChoice, TemplateError, TextTokenizer, TrainOn, IGNORE,
};

const FAMILIES: &[&str] = &[
    "llama3_1",
    "qwen2_5",
    "mistral_v0_3",
    "gemma",
    "phi3",
    "qwen3",
    "gemma3",
    "phi4",
    "phi4_mini",
];

/// The template arguments a case passes beside its messages (`enable_thinking`).
fn kwargs(case: &Value) -> Map<String, Value> {
    let mut k = Map::new();
    if let Some(v) = case.get("enable_thinking") {
        k.insert("enable_thinking".into(), v.clone());
    }
    k
}

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
            let enc = enc.clone().with_template_kwargs(kwargs(case));
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
    // Five families with 6 cases; Qwen3 with 14 (reasoning, tool calls while thinking,
    // enable_thinking, inline <think>), Gemma 3, Phi-4 and Phi-4-mini with 13.
    assert_eq!(compared, 5 * 6 + 14 + 3 * 13);
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
        "gemma" | "gemma3" => format!("{}<end_of_turn>", content.trim()),
        "phi3" | "phi4_mini" => format!("{content}<|end|>"),
        "phi4" => format!("{content}<|im_end|>"),
        _ => unreachable!(),
    }
}

#[test]
fn masks_train_exactly_the_assistant_turns_and_their_end_tokens() {
    let mut checked = 0;
    // Qwen3's turns carry thinking blocks: `qwen3_masks_are_transformers_generation_masks`.
    for family in FAMILIES.iter().filter(|f| **f != "qwen3") {
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
            // Templates that render no reasoning train the same under `answers` as under
            // `assistant`.
            for policy in [
                TrainOn::Assistant,
                TrainOn::Answers,
                TrainOn::LastAssistant,
                TrainOn::All,
            ] {
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
                    TrainOn::Assistant | TrainOn::Answers | TrainOn::LastAssistant => {
                        let which: Vec<&&tunelab::data::Message> = match policy {
                            TrainOn::Assistant | TrainOn::Answers => assistants.iter().collect(),
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
                                // Phi-3 and Phi-4 render no tool calls: the turn is empty.
                                if !family.starts_with("phi") {
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
    assert!(checked >= 100, "{checked}");
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

/// The ids tunelab trains under `policy`, as a 0/1 mask over the tokens.
fn trained_mask(ex: &Example) -> Vec<u8> {
    ex.labels.iter().map(|l| u8::from(*l != IGNORE)).collect()
}

/// Qwen3's masks against transformers' own: the fixtures hold `return_assistant_tokens_mask`
/// from the real template with `{% generation %}` blocks added around each assistant turn
/// (`assistant`: thinking block included) or around its answer (`answers`: a rendered
/// reasoning block left out). Earlier turns lose their reasoning and last turns gain an empty
/// thinking block, and the masks follow. The one documented difference: with
/// `enable_thinking: false` the last turn's empty thinking block is in the generation prompt,
/// so tunelab keeps it out of the loss.
#[test]
fn qwen3_masks_are_transformers_generation_masks() {
    let (enc, cases) = load("qwen3");
    let mut compared = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let Some(masks) = case.get("assistant_masks") else {
            continue;
        };
        let conv = conversation(case);
        let want_ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        for (policy, key) in [
            (TrainOn::Assistant, "assistant"),
            (TrainOn::Answers, "answers"),
        ] {
            let mut e = enc.clone().with_template_kwargs(kwargs(case));
            e.train_on = policy;
            let ex = e
                .encode_conversation(&conv)
                .unwrap_or_else(|err| panic!("{name}/{key}: {err}"));
            assert_eq!(ex.input_ids, want_ids, "{name}: ids");
            let want: Vec<u8> = serde_json::from_value(masks[key].clone()).unwrap();
            let got = trained_mask(&ex);
            if case.get("enable_thinking") == Some(&json!(false)) {
                let runs = trained_runs(&ex);
                assert_eq!(
                    runs,
                    ["Hello! How can I help?<|im_end|>", "4<|im_end|>"],
                    "{name}/{key}"
                );
                // transformers' mask is tunelab's plus the empty thinking block's tokens.
                let extra: Vec<usize> = (0..want.len()).filter(|&t| want[t] != got[t]).collect();
                assert!(extra.iter().all(|&t| want[t] == 1), "{name}/{key}");
                let text: String = extra
                    .iter()
                    .map(|&t| &ex.text[ex.offsets[t].0..ex.offsets[t].1])
                    .collect();
                assert_eq!(text, "<think>\n\n</think>\n\n", "{name}/{key}");
            } else {
                assert_eq!(got, want, "{name}/{key}: {:?}", trained_runs(&ex));
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * 11, "cases with masks");
}

/// What the two policies train for Qwen3's thinking turns, spelled out.
#[test]
fn train_on_answers_leaves_the_reasoning_out_of_the_loss() {
    let (enc, cases) = load("qwen3");
    let case = |name: &str| {
        cases["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    let runs = |policy: TrainOn, name: &str| {
        let mut e = enc.clone();
        e.train_on = policy;
        trained_runs(&e.encode_conversation(&conversation(&case(name))).unwrap())
    };
    // The first turn's reasoning is dropped by the template (a later user query follows), the
    // last one's is rendered and trained.
    assert_eq!(
        runs(TrainOn::Assistant, "reasoning_multi_turn"),
        [
            "4<|im_end|>",
            "<think>\nFour times three is twelve.\n</think>\n\n12<|im_end|>"
        ]
    );
    assert_eq!(
        runs(TrainOn::Answers, "reasoning_multi_turn"),
        ["4<|im_end|>", "12<|im_end|>"]
    );
    assert_eq!(
        runs(TrainOn::LastAssistant, "reasoning_multi_turn"),
        ["<think>\nFour times three is twelve.\n</think>\n\n12<|im_end|>"]
    );
    // Inline <think> blocks read as reasoning train the same.
    assert_eq!(
        runs(TrainOn::Answers, "reasoning_inline"),
        runs(TrainOn::Answers, "reasoning_multi_turn")
    );
    // Thinking before a tool call: both turns follow the last user query and keep theirs.
    assert_eq!(
        runs(TrainOn::Answers, "reasoning_tool_chain"),
        [
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>",
            "Yes, it is raining in Oslo.<|im_end|>"
        ]
    );
    assert!(runs(TrainOn::Assistant, "reasoning_tool_chain")[0]
        .starts_with("<think>\nI need the weather in Oslo first.\n</think>\n\n<tool_call>"));
    // A last turn without reasoning gets Qwen3's empty thinking block, trained under both.
    for policy in [TrainOn::Assistant, TrainOn::Answers] {
        assert_eq!(
            runs(policy, "single_turn"),
            ["<think>\n\n</think>\n\nParis.<|im_end|>"]
        );
    }
}

/// `enable_thinking: false` reaches the template through the encoder's template arguments: the
/// generation prompt gets the empty thinking block, as transformers renders it.
#[test]
fn enable_thinking_is_passed_to_the_template() {
    let (enc, _) = load("qwen3");
    let msgs = [json!({"role": "user", "content": "2+2?"})];
    let plain = enc.render(&msgs, None, true).unwrap();
    assert!(plain.ends_with("<|im_start|>assistant\n"), "{plain:?}");
    let mut kw = Map::new();
    kw.insert("enable_thinking".into(), json!(false));
    let off = enc.clone().with_template_kwargs(kw);
    let text = off.render(&msgs, None, true).unwrap();
    assert!(
        text.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{text:?}"
    );
    // Reserved names stay apply_chat_template's own.
    let mut kw = Map::new();
    kw.insert("add_generation_prompt".into(), json!(false));
    let e = enc.clone().with_template_kwargs(kw);
    assert_eq!(e.render(&msgs, None, true).unwrap(), plain);
}

/// The built-in qwen3, gemma, phi4 and phi4-mini templates are the published ones: with the
/// fixture tokenizers they render every fixture case as the models' own templates do.
#[test]
fn builtin_family_templates_render_as_the_published_ones() {
    for (family, builtin) in [
        ("qwen3", "qwen3"),
        ("gemma3", "gemma"),
        ("phi4", "phi4"),
        ("phi4_mini", "phi4-mini"),
    ] {
        let (model, cases) = load(family);
        let b = Encoder::new(
            model.tokenizer.clone(),
            &TemplateChoice::parse(builtin),
            TrainOn::Assistant,
        )
        .unwrap();
        assert_eq!(b.template_name(), builtin);
        for case in cases["cases"].as_array().unwrap() {
            let conv = conversation(case);
            let msgs: Vec<Value> = conv
                .messages
                .iter()
                .map(tunelab::template::encode::template_message)
                .collect();
            let tools = case.get("tools").cloned();
            let gen = case["add_generation_prompt"].as_bool().unwrap_or(false);
            let b = b.clone().with_template_kwargs(kwargs(case));
            let got = b.render(&msgs, tools.as_ref(), gen);
            match case.get("text").and_then(Value::as_str) {
                Some(want) => assert_eq!(got.unwrap(), want, "{family}/{}", case["name"]),
                None => assert!(got.is_err(), "{family}/{}", case["name"]),
            }
        }
    }
}

/// A template that renders no reasoning is reported (the data survey warns), Qwen3's is not.
#[test]
fn templates_without_reasoning_support_are_reported() {
    use tunelab::template::Ignored;
    for (family, ignores) in [("qwen3", false), ("gemma3", true), ("phi4", true)] {
        let (enc, cases) = load(family);
        let case = cases["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "reasoning_single")
            .unwrap();
        let conv = conversation(case);
        let ex = enc.encode_conversation(&conv).unwrap();
        assert_eq!(
            enc.ignored(&conv, &ex.text).contains(&Ignored::Reasoning),
            ignores,
            "{family}"
        );
    }
}
