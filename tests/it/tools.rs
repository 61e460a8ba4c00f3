//! Tool calls never vanish from the training text in silence: on the real glaive tool-call
//! set, a template without tool support fails with a message that names it, the record and
//! the count; `json` trains the calls as `<tool_call>` text and puts the definitions in the
//! system turn; `drop` counts what it leaves out; the built-in ChatML renders them itself.

use crate::common;
use crate::template_fixtures::trained_runs;
use tunelab::data::{Body, Dataset};
use tunelab::template::{
    Encoded, Encoder, Example, TemplateChoice, TemplateError, TextTokenizer, ToolFormat, TrainOn,
};

/// ChatML as it was before tool support: it never mentions tools.
const PLAIN_CHATML: &str = "{%- for message in messages %}\n    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}";

struct Setup {
    _home: tempfile::TempDir,
    model: std::path::PathBuf,
    plain: std::path::PathBuf,
    glaive: std::path::PathBuf,
}

fn setup(test: &str) -> Option<Setup> {
    let shared = common::shared_datasets(test)?;
    let home = tempfile::tempdir().unwrap();
    let model = home.path().join("tiny");
    tunelab::model::tiny::init_tiny(&model, &tunelab::model::tiny::TinySpec::default()).unwrap();
    let plain = home.path().join("plain-chatml.jinja");
    std::fs::write(&plain, PLAIN_CHATML).unwrap();
    Some(Setup {
        model,
        plain,
        glaive: shared.join("glaive_toolcall_en_demo.json"),
        _home: home,
    })
}

fn encoder(s: &Setup, template: &TemplateChoice, f: ToolFormat) -> Encoder {
    let tok = TextTokenizer::from_dir(&s.model).unwrap();
    Encoder::new(tok, template, TrainOn::Assistant)
        .unwrap()
        .with_tool_format(f)
}

/// The records of the glaive set, and how many carry tool calls or definitions.
fn glaive(s: &Setup) -> (Vec<tunelab::data::Record>, usize) {
    let ds = Dataset::open(&s.glaive, None).unwrap();
    let recs: Vec<_> = ds
        .items()
        .unwrap()
        .map(|i| i.unwrap().result.unwrap())
        .collect();
    let with = recs
        .iter()
        .filter(|r| match &r.body {
            Body::Conversation(c) => tunelab::template::tools::carries_tools(&c.messages, &c.tools),
            _ => false,
        })
        .count();
    (recs, with)
}

#[test]
fn a_template_without_tools_fails_and_says_how_many_records() {
    let Some(s) = setup("a_template_without_tools_fails_and_says_how_many_records") else {
        return;
    };
    let (recs, with) = glaive(&s);
    assert_eq!(
        (with, recs.len()),
        (191, 300),
        "records with tool calls or definitions"
    );
    let plain = TemplateChoice::File(s.plain.clone());
    let enc = encoder(&s, &plain, ToolFormat::Template);
    let err = enc.encode(&recs[0]).unwrap_err();
    assert!(
        matches!(&err, TemplateError::ToolsNotRendered { calls: 1, .. }),
        "{err}"
    );
    // Through `tunelab train`: the template, the record and the count.
    let h = tempfile::tempdir().unwrap();
    let cfg = h.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model: {{path: {}, template: {}}}\ndata: {{train: {}}}\ntrain: {{max_steps: 1}}\n",
            s.model.display(),
            s.plain.display(),
            s.glaive.display()
        ),
    )
    .unwrap();
    let (code, _, err) = common::run(&h, &["train", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "chat template plain-chatml.jinja does not render tool calls or tool definitions"
        ),
        "{err}"
    );
    assert!(err.contains("record 1"), "{err}");
    assert!(
        err.contains(&format!(
            "({with} records of this file carry tool calls or definitions)"
        )),
        "{err}"
    );
    assert!(err.contains("data.tool_format: json"), "{err}");
    // `data preview` and `data stats --model` say it before anything trains.
    let (code, out, _) = common::run(
        &h,
        &[
            "data",
            "preview",
            s.glaive.to_str().unwrap(),
            "--model",
            s.model.to_str().unwrap(),
            "--template",
            s.plain.to_str().unwrap(),
            "-n",
            "1",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "tools: {with} of {} records carry tool calls or definitions",
            recs.len()
        )) && out.contains("does NOT render them"),
        "{out}"
    );
    let (code, out, _) = common::run(
        &h,
        &[
            "data",
            "stats",
            s.glaive.to_str().unwrap(),
            "--model",
            s.model.to_str().unwrap(),
            "--template",
            s.plain.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tokens"]["tool_records"], with as u64);
    assert_eq!(v["tokens"]["tool_failed"], with as u64);
}

#[test]
fn json_trains_the_call_and_puts_the_definitions_in_the_system_turn() {
    let Some(s) = setup("json_trains_the_call_and_puts_the_definitions_in_the_system_turn") else {
        return;
    };
    let (recs, _) = glaive(&s);
    let enc = encoder(&s, &TemplateChoice::File(s.plain.clone()), ToolFormat::Json);
    let Encoded::Sft(ex) = enc.encode(&recs[0]).unwrap() else {
        panic!("an SFT example")
    };
    let runs = trained_runs(&ex);
    let call = "<tool_call>\n{\"name\": \"search_recipes\", \"arguments\": {\"ingredients\": [\"chicken\", \"bell peppers\", \"rice\"]}}\n</tool_call><|im_end|>";
    assert!(runs.iter().any(|r| r == call), "{runs:#?}");
    // The call is the assistant turn right after the user's ingredients.
    let at = ex.text.find(call).unwrap();
    assert!(ex.text[..at]
        .ends_with("I have chicken, bell peppers, and rice.<|im_end|>\n<|im_start|>assistant\n"));
    // The definitions are in the system turn, which is not trained.
    assert!(
        ex.text.starts_with("<|im_start|>system\n# Tools\n"),
        "{}",
        &ex.text[..200]
    );
    let sys_end = ex.text.find("<|im_end|>").unwrap();
    assert!(ex.text[..sys_end].contains("\"name\": \"search_recipes\""));
    assert!(runs.iter().all(|r| !r.contains("<tools>")));
    // The tool's result became a user turn in <tool_response> tags, not trained either.
    assert!(ex
        .text
        .contains("<|im_start|>user\n<tool_response>\n{\"recipes\""));
    assert!(runs.iter().all(|r| !r.contains("<tool_response>")));
    // The same text the built-in ChatML renders from the calls themselves.
    let native = encoder(
        &s,
        &TemplateChoice::Builtin("chatml".into()),
        ToolFormat::Template,
    );
    let Encoded::Sft(n) = native.encode(&recs[0]).unwrap() else {
        panic!()
    };
    assert_eq!(n.text, ex.text);
    assert_eq!(trained_runs(&n), runs);
}

#[test]
fn drop_leaves_tool_records_out_and_counts_them() {
    let Some(s) = setup("drop_leaves_tool_records_out_and_counts_them") else {
        return;
    };
    let (recs, with) = glaive(&s);
    let enc = encoder(&s, &TemplateChoice::File(s.plain.clone()), ToolFormat::Drop);
    assert!(matches!(enc.encode(&recs[0]).unwrap(), Encoded::Skipped(_)));
    let (examples, report) = tunelab::batch::encode_file(
        &s.glaive,
        "auto",
        &enc,
        4096,
        tunelab::template::LengthPolicy::Truncate,
        false,
    )
    .unwrap();
    assert_eq!(report.tool_records, with);
    assert_eq!(report.tool_skipped, with);
    assert_eq!(examples.len() + with + report.dropped, recs.len());
    let h = tempfile::tempdir().unwrap();
    let (code, out, _) = common::run(
        &h,
        &[
            "data",
            "stats",
            s.glaive.to_str().unwrap(),
            "--model",
            s.model.to_str().unwrap(),
            "--template",
            s.plain.to_str().unwrap(),
            "--tool-format",
            "drop",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{with} records carry tool calls or definitions; tool format drop: {with} left out"
        )),
        "{out}"
    );
}

/// The demo model's built-in ChatML renders tool calls itself: glaive trains as it is, and
/// the start event reports the records and the policy.
#[test]
fn the_builtin_chatml_trains_on_tool_calls() {
    let Some(s) = setup("the_builtin_chatml_trains_on_tool_calls") else {
        return;
    };
    let (recs, with) = glaive(&s);
    let enc = encoder(&s, &TemplateChoice::Model, ToolFormat::Template);
    let Encoded::Sft(ex): Encoded = enc.encode(&recs[0]).unwrap() else {
        panic!()
    };
    let ex: Example = ex;
    assert!(trained_runs(&ex)
        .iter()
        .any(|r| r.starts_with("<tool_call>\n{\"name\": \"search_recipes\"")));
    let h = tempfile::tempdir().unwrap();
    let cfg = h.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model: {{path: {}}}\ndata: {{train: {}, max_seq_len: 512}}\ntrain: {{max_steps: 1, batch_size: 2, eval_every: 0}}\n",
            s.model.display(),
            s.glaive.display()
        ),
    )
    .unwrap();
    let run = h.path().join("run");
    common::ok(
        h.path(),
        &[
            "train",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let start = common::event_lines(&run.join("events.jsonl"))
        .into_iter()
        .find(|e| e["type"] == "start")
        .unwrap();
    assert_eq!(start["tool_records"], with as u64);
    assert_eq!(start["tool_format"], "template");
}
