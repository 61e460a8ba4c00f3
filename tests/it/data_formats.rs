//! Each format's reader and writer on hand-written records, and their error messages.

use serde_json::{json, Map, Value};
use tunelab::data::problem::Issues;
use tunelab::data::{Body, Format, Notes, Record, Role};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

fn read(format: Format, v: Value) -> Record {
    let mut issues = Issues::default();
    let r = format.read(&obj(v), &mut issues);
    assert!(issues.is_empty(), "{issues:?}");
    r.expect("record")
}

fn problems(format: Format, v: Value) -> Vec<String> {
    let mut issues = Issues::default();
    let r = format.read(&obj(v), &mut issues);
    if let Some(r) = &r {
        tunelab::data::validate::check(r, &mut issues);
    }
    issues
        .into_problems(tunelab::data::Location::Line(7))
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

fn write(format: Format, r: &Record) -> (Value, Notes) {
    let mut notes = Notes::default();
    let v = format
        .write(r, &mut notes)
        .unwrap_or_else(|e| panic!("{format}: {e}"));
    (Value::Object(v), notes)
}

fn roles(r: &Record) -> Vec<Role> {
    r.messages().iter().map(|m| m.role).collect()
}

#[test]
fn alpaca_with_system_and_history() {
    let src = json!({"instruction": "And 3+3?", "input": "be brief", "output": "6", "system": "You add.", "history": [["1+1?", "2"]]});
    let r = read(Format::Alpaca, src.clone());
    assert_eq!(
        roles(&r),
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]
    );
    assert_eq!(r.messages()[3].text(), "And 3+3?\nbe brief");
    let (back, notes) = write(Format::Alpaca, &r);
    assert_eq!(back, src);
    assert!(notes.iter().any(|(n, _)| n.contains("history")));
    let (oa, _) = write(Format::Openai, &r);
    assert_eq!(
        oa["messages"][0],
        json!({"role": "system", "content": "You add."})
    );
    assert_eq!(
        oa["messages"][3]["content"],
        json!([{"type": "text", "text": "And 3+3?"}, {"type": "text", "text": "be brief"}])
    );
}

#[test]
fn sharegpt_tool_calls_and_observations() {
    let src = json!({
        "conversations": [
            {"from": "human", "value": "Weather in Oslo?"},
            {"from": "function_call", "value": "{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}"},
            {"from": "observation", "value": "{\"temp\": 3}"},
            {"from": "gpt", "value": "3 degrees."}
        ],
        "system": "Be helpful.",
        "tools": "[{\"name\": \"weather\", \"description\": \"Get weather\", \"parameters\": {}}]"
    });
    let r = read(Format::Sharegpt, src.clone());
    assert_eq!(
        roles(&r),
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    let call = &r.messages()[2].tool_calls[0];
    assert_eq!(
        (call.name.as_str(), &call.arguments),
        ("weather", &json!({"city": "Oslo"}))
    );
    let (back, _) = write(Format::Sharegpt, &r);
    assert_eq!(
        back, src,
        "byte-compatible with LLaMA-Factory's json.dumps spacing"
    );
    let (oa, _) = write(Format::Openai, &r);
    assert_eq!(oa["messages"][2]["content"], Value::Null);
    assert_eq!(
        oa["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(oa["tools"][0]["type"], "function");
    assert_eq!(oa["tools"][0]["function"]["name"], "weather");
    assert_eq!(read(Format::Openai, oa), r);
}

#[test]
fn openai_content_parts_weights_and_developer_role() {
    let r = read(
        Format::Openai,
        json!({"messages": [
            {"role": "developer", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c", "weight": 0}
        ]}),
    );
    assert_eq!(roles(&r), [Role::System, Role::User, Role::Assistant]);
    assert_eq!(r.messages()[1].text(), "a\nb");
    assert_eq!(r.messages()[2].weight, Some(0.0));
    let (sg, notes) = write(Format::Sharegpt, &r);
    assert_eq!(sg["conversations"][1]["loss_weight"], 0);
    assert!(notes.iter().any(|(n, _)| n.contains("joined")));
}

#[test]
fn dolly_context_goes_to_the_user_turn_and_category_is_kept() {
    let src = json!({"instruction": "Who?", "context": "Ada wrote it.", "response": "Ada.", "category": "closed_qa"});
    let r = read(Format::Dolly, src.clone());
    assert_eq!(roles(&r), [Role::User, Role::Assistant]);
    assert_eq!(r.messages()[0].parts, ["Who?", "Ada wrote it."]);
    assert_eq!(r.meta["category"], "closed_qa");
    assert_eq!(write(Format::Dolly, &r).0, src);
    let (alpaca, notes) = write(Format::Alpaca, &r);
    assert_eq!(
        alpaca,
        json!({"instruction": "Who?", "input": "Ada wrote it.", "output": "Ada.", "category": "closed_qa"})
    );
    assert!(notes
        .iter()
        .any(|(n, _)| n.contains("\"category\" carried")));
}

#[test]
fn flan_keeps_extra_columns() {
    let src = json!({"inputs": "Translate: chat", "targets": "cat", "task_name": "wmt", "template_type": "zs"});
    let r = read(Format::Flan, src.clone());
    assert_eq!(r.meta.len(), 2);
    assert_eq!(write(Format::Flan, &r).0, src);
}

#[test]
fn prompt_completion_strings_are_plain_and_lists_are_chat() {
    let plain = read(
        Format::PromptCompletion,
        json!({"prompt": "2+2=", "completion": "4"}),
    );
    let Body::Conversation(c) = &plain.body else {
        panic!()
    };
    assert!(c.plain);
    let chat = read(
        Format::PromptCompletion,
        json!({
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            "completion": [{"role": "assistant", "content": "a"}]
        }),
    );
    let Body::Conversation(c) = &chat.body else {
        panic!()
    };
    assert!(!c.plain);
    assert_eq!(c.messages.len(), 3);
    let (v, _) = write(Format::PromptCompletion, &chat);
    assert_eq!(
        v["completion"],
        json!([{"role": "assistant", "content": "a"}])
    );
    let p = problems(
        Format::PromptCompletion,
        json!({"prompt": "x", "completion": [{"role": "assistant", "content": "a"}]}),
    );
    assert_eq!(p, ["line 7: completion: prompt and completion must both be strings or both be message lists"]);
}

#[test]
fn text_records() {
    let r = read(Format::Text, json!({"text": "hello", "id": 4}));
    assert_eq!(r.body, Body::Text("hello".into()));
    assert_eq!(write(Format::Text, &r).0, json!({"text": "hello", "id": 4}));
}

#[test]
fn trl_preference_explicit_implicit_and_conversational() {
    let explicit = read(
        Format::Preference,
        json!({"prompt": "Sky?", "chosen": "Blue.", "rejected": "Green."}),
    );
    let Body::Preference(p) = &explicit.body else {
        panic!()
    };
    assert!(p.plain);
    assert_eq!(p.chosen[0].text(), "Blue.");
    let implicit = read(
        Format::Preference,
        json!({
            "chosen": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Green."}]
        }),
    );
    let Body::Preference(p) = &implicit.body else {
        panic!()
    };
    assert_eq!(
        (p.prompt.len(), p.chosen.len(), p.rejected.len()),
        (1, 1, 1)
    );
    assert_eq!(p.rejected[0].text(), "Green.");
    let (v, _) = write(Format::Preference, &implicit);
    assert_eq!(v["prompt"], json!([{"role": "user", "content": "Sky?"}]));
    // The same pair in LLaMA-Factory's two preference shapes and HH transcripts.
    let (sg, _) = write(Format::SharegptPreference, &implicit);
    assert_eq!(
        sg,
        json!({"conversations": [{"from": "human", "value": "Sky?"}], "chosen": {"from": "gpt", "value": "Blue."}, "rejected": {"from": "gpt", "value": "Green."}})
    );
    let (al, _) = write(Format::AlpacaPreference, &implicit);
    assert_eq!(
        al,
        json!({"instruction": "Sky?", "input": "", "chosen": "Blue.", "rejected": "Green."})
    );
    let (hh, _) = write(Format::HhRlhf, &implicit);
    assert_eq!(hh["chosen"], "\n\nHuman: Sky?\n\nAssistant: Blue.");
    assert_eq!(read(Format::HhRlhf, hh), implicit);
}

#[test]
fn errors_name_the_field_and_what_was_expected() {
    assert_eq!(
        problems(Format::Alpaca, json!({"instruction": "x"})),
        ["line 7: output: missing; expected a string"]
    );
    assert_eq!(
        problems(Format::Alpaca, json!({"instruction": 5, "output": "y"})),
        ["line 7: instruction: expected a string, found a number (5)"]
    );
    assert_eq!(
        problems(Format::Alpaca, json!({"instruction": "x", "output": "  "})),
        ["line 7: output: empty assistant message"]
    );
    assert_eq!(
        problems(Format::Sharegpt, json!({"conversations": [{"from": "bot", "value": "hi"}]})),
        ["line 7: conversations[0].from: unknown role \"bot\"; expected human, gpt, system, function_call, observation or tool"]
    );
    assert_eq!(
        problems(Format::Sharegpt, json!({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]})),
        ["line 7: conversations[2]: the conversation ends on a user message; expected it to end on the assistant"]
    );
    assert_eq!(
        problems(Format::Openai, json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, {"role": "assistant", "content": "x"}]})),
        ["line 7: messages[0].content[0].type: unsupported content part \"image_url\"; expected \"text\" (tunelab trains text-only models)"]
    );
    assert_eq!(
        problems(Format::Openai, json!({"messages": "hi"})),
        ["line 7: messages: expected an array, found a string"]
    );
    assert_eq!(
        problems(
            Format::SharegptPreference,
            json!({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": ""}, "rejected": {"from": "gpt", "value": "r"}})
        ),
        ["line 7: chosen: is empty; expected the reply"]
    );
    assert_eq!(
        problems(
            Format::Preference,
            json!({"prompt": "q", "chosen": "same", "rejected": "same"})
        ),
        ["line 7: rejected: is identical to chosen; the pair teaches nothing"]
    );
    assert_eq!(
        problems(Format::Alpaca, json!({"instruction": "x", "output": "y", "history": [["only one"]]})),
        ["line 7: history[0]: expected a [user, assistant] pair of strings, found an array of 1 items"]
    );
}

#[test]
fn writers_refuse_what_they_cannot_hold() {
    let multi = read(
        Format::Openai,
        json!({"messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}
        ]}),
    );
    let err = Format::Dolly
        .write(&multi, &mut Notes::default())
        .unwrap_err();
    assert_eq!(
        err,
        "dolly holds one exchange; this conversation has 2 user turns"
    );
    let text = read(Format::Text, json!({"text": "t"}));
    let err = Format::Alpaca
        .write(&text, &mut Notes::default())
        .unwrap_err();
    assert_eq!(err, "a text record cannot be written as alpaca (sft data)");
    let tools = read(
        Format::Sharegpt,
        json!({"conversations": [
            {"from": "human", "value": "q"},
            {"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {}}"},
            {"from": "observation", "value": "r"},
            {"from": "gpt", "value": "a"}
        ]}),
    );
    let err = Format::Alpaca
        .write(&tools, &mut Notes::default())
        .unwrap_err();
    assert_eq!(
        err,
        "alpaca cannot hold tool calls, tool messages or tool definitions"
    );
}

/// An assistant's reasoning: `reasoning_content` (or `reasoning`), or a leading
/// `<think>…</think>` block, which the message-list formats and the chat-rendered string
/// formats split off the answer the way Qwen3's template reads it.
#[test]
fn reasoning_is_read_from_its_field_or_a_leading_think_block() {
    let r = read(
        Format::Openai,
        json!({"messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "reasoning_content": "Two and two.", "content": "4"},
            {"role": "user", "content": "3+3?"},
            {"role": "assistant", "content": "<think>\nThree and three.\n</think>\n\n6"},
            {"role": "user", "content": "4+4?"},
            {"role": "assistant", "reasoning": "Four and four.", "content": "8"},
            {"role": "user", "content": "Why <think>?"},
            {"role": "assistant", "content": "Because <think>…</think> marks reasoning."}
        ]}),
    );
    let m = r.messages();
    assert_eq!(
        (m[1].reasoning.as_deref(), m[1].text().as_str()),
        (Some("Two and two."), "4")
    );
    assert_eq!(
        (m[3].reasoning.as_deref(), m[3].text().as_str()),
        (Some("Three and three."), "6")
    );
    assert_eq!(m[5].reasoning.as_deref(), Some("Four and four."));
    // Only a leading block is reasoning; user messages keep theirs.
    assert_eq!(m[6].text(), "Why <think>?");
    assert_eq!(m[7].reasoning, None);
    assert_eq!(m[7].text(), "Because <think>…</think> marks reasoning.");
    // An explicit field (even empty) leaves the content as it is.
    let r = read(
        Format::Openai,
        json!({"messages": [{"role": "user", "content": "q"},
            {"role": "assistant", "reasoning_content": null, "content": "<think>x</think>y"}]}),
    );
    assert_eq!(r.messages()[1].reasoning, None);
    assert_eq!(r.messages()[1].text(), "<think>x</think>y");
    // ShareGPT and alpaca carry it inline.
    let r = read(
        Format::Sharegpt,
        json!({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<think>hmm</think>a"}]}),
    );
    assert_eq!(
        (
            r.messages()[1].reasoning.as_deref(),
            r.messages()[1].text().as_str()
        ),
        (Some("hmm"), "a")
    );
    let r = read(
        Format::Alpaca,
        json!({"instruction": "q", "input": "", "output": "<think>\nhmm\n</think>\n\na"}),
    );
    assert_eq!(r.messages()[1].reasoning.as_deref(), Some("hmm"));
    // Plain prompt/completion strings are trained without a template: their text stays whole.
    let r = read(
        Format::PromptCompletion,
        json!({"prompt": "q", "completion": "<think>hmm</think>a"}),
    );
    assert_eq!(r.messages()[1].reasoning, None);
}

#[test]
fn reasoning_round_trips_through_every_writer() {
    let src = json!({"messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Two and two."}
    ]});
    let r = read(Format::Openai, src.clone());
    let (back, notes) = write(Format::Openai, &r);
    assert_eq!(back, src);
    assert!(notes.is_empty(), "{notes:?}");
    // Formats without a reasoning field write it inline, as Qwen3's template renders it, and
    // read it back.
    for format in [
        Format::Sharegpt,
        Format::Alpaca,
        Format::Dolly,
        Format::Flan,
    ] {
        let (v, _) = write(format, &r);
        let text = v.to_string();
        assert!(
            text.contains(r"<think>\nTwo and two.\n</think>\n\n4"),
            "{format}: {text}"
        );
        let again = read(format, v);
        assert_eq!(
            again.messages()[1].reasoning.as_deref(),
            Some("Two and two."),
            "{format}"
        );
        assert_eq!(again.messages()[1].text(), "4", "{format}");
    }
    // A single exchange with reasoning stays a message list in prompt-completion.
    let (v, _) = write(Format::PromptCompletion, &r);
    assert_eq!(v["completion"][0]["reasoning_content"], "Two and two.");
    assert_eq!(read(Format::PromptCompletion, v), r);
    // The canonical JSON shows it.
    assert_eq!(
        r.to_canonical_json()["messages"][1]["reasoning_content"],
        "Two and two."
    );
}

#[test]
fn misplaced_or_mistyped_reasoning_is_reported_with_its_path() {
    assert_eq!(
        problems(
            Format::Openai,
            json!({"messages": [{"role": "user", "content": "q", "reasoning_content": "no"}, {"role": "assistant", "content": "a"}]})
        ),
        ["line 7: messages[0].reasoning_content: only an assistant message carries reasoning; this is a user message"]
    );
    assert_eq!(
        problems(
            Format::Openai,
            json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning": {"effort": "high"}}]})
        ),
        ["line 7: messages[1].reasoning: expected the reasoning as a string, found an object"]
    );
    // Reasoning alone is not an empty message; nothing at all is.
    assert!(problems(
        Format::Openai,
        json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "reasoning_content": "r"}]})
    )
    .is_empty());
}

/// Parquet files found by the fuzzer (examples/fuzz.rs) on which the parquet crate panics
/// (an unwrap in the footer's thrift decoder, an index out of bounds and an assertion in row
/// decoding): each is one clean malformed-file error naming the file, exit 2, nothing on
/// stderr but that line.
#[test]
fn fuzzed_parquet_panics_are_malformed_file_errors() {
    let h = tempfile::tempdir().unwrap();
    for (name, location) in [
        ("footer-panic.parquet", "footer"),
        ("row-index-panic.parquet", "record"),
        ("row-assert-panic.parquet", "record"),
    ] {
        let path = crate::common::fixture(&format!("data/fuzz/{name}"));
        let (code, _, err) = crate::common::run(&h, &["data", "validate", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(
            err.contains(name) && err.contains(location),
            "{name}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}
