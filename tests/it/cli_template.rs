//! `tunelab data preview` and `tunelab data stats --model` end to end.

use crate::common;

use crate::common::run;
use serde_json::Value;

fn model(family: &str) -> String {
    common::fixture(&format!("templates/{family}"))
        .to_str()
        .unwrap()
        .to_string()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn preview_marks_trained_spans_without_color() {
    let home = tempfile::tempdir().unwrap();
    let f = write(&home, "d.jsonl", "{\"instruction\": \"What is the capital of France?\", \"input\": \"\", \"output\": \"Paris.\"}\n");
    let (code, out, err) = run(
        &home,
        &["data", "preview", &f, "--model", &model("qwen2_5")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("<|im_start|>assistant\n⟦Paris.<|im_end|>⟧\n"),
        "{out}"
    );
    assert!(
        out.contains("tokens, 4 trained") || out.contains("trained"),
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn preview_json_has_aligned_ids_and_labels() {
    let home = tempfile::tempdir().unwrap();
    let f = write(&home, "d.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}, {\"role\": \"assistant\", \"content\": \"Hello! How can I help?\"}]}\n");
    let (code, out, err) = run(
        &home,
        &[
            "data",
            "preview",
            &f,
            "--model",
            &model("llama3_1"),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let ids: Vec<i64> = serde_json::from_value(v["input_ids"].clone()).unwrap();
    let labels: Vec<i64> = serde_json::from_value(v["labels"].clone()).unwrap();
    assert_eq!(ids.len(), labels.len());
    let trained: Vec<usize> = (0..ids.len()).filter(|&i| labels[i] != -100).collect();
    assert_eq!(v["trained"], trained.len());
    for &i in &trained {
        assert_eq!(labels[i], ids[i], "labels are not shifted");
    }
    // The trained tokens are the contiguous tail: the reply and <|eot_id|>.
    assert_eq!(*trained.last().unwrap(), ids.len() - 1);
    assert!(trained.windows(2).all(|w| w[1] == w[0] + 1));
    // The ids are the fixture tokenizer's rendering of the same conversation (multi_turn prefix).
    let cases: Value = serde_json::from_slice(
        &std::fs::read(common::fixture("templates/llama3_1/cases.json")).unwrap(),
    )
    .unwrap();
    let eot = cases["cases"][1]["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        &eot[..ids.len()],
        &ids[..],
        "same ids as transformers for the same first turn"
    );
}

#[test]
fn stats_with_a_model_counts_tokens_and_truncation() {
    let home = tempfile::tempdir().unwrap();
    let long = "word ".repeat(300);
    let text = format!(
        "{{\"prompt\": \"a\", \"completion\": \"b\"}}\n{{\"prompt\": \"{long}\", \"completion\": \"c\"}}\n"
    );
    let f = write(&home, "pc.jsonl", &text);
    let (code, out, err) = run(
        &home,
        &[
            "data",
            "stats",
            &f,
            "--model",
            &model("qwen2_5"),
            "--max-seq-len",
            "64",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let t = &v["tokens"];
    assert_eq!(t["examples"], 2);
    assert_eq!(t["max_seq_len"], 64);
    // The long prompt pushes the completion past 64 tokens: truncation leaves nothing trained.
    assert_eq!(t["dropped"], 1);
    assert_eq!(t["truncated"], 0);
    assert!(t["per_example"]["max"].as_u64().unwrap() > 64);
    // Plain prompt/completion: completion + EOS trained.
    assert_eq!(t["trained_per_example"]["min"], 2);
    let (code, out, _) = run(
        &home,
        &[
            "data",
            "stats",
            &f,
            "--model",
            &model("qwen2_5"),
            "--max-seq-len",
            "64",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "> 64 tokens  1 examples would be truncated (1 left with no trained token, dropped)"
        ),
        "{out}"
    );
}

#[test]
fn template_problems_are_reported_per_record() {
    let home = tempfile::tempdir().unwrap();
    let f = write(&home, "s.jsonl", "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}]}\n");
    let (code, _, err) = run(&home, &["data", "preview", &f, "--model", &model("gemma")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("s.jsonl: line 1: chat template model, line 1: System role not supported"),
        "{err}"
    );
    // A built-in template instead of the model's own.
    let (code, out, err) = run(
        &home,
        &[
            "data",
            "preview",
            &f,
            "--model",
            &model("gemma"),
            "--template",
            "chatml",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("<|im_start|>system\nBe brief.<|im_end|>"),
        "{out}"
    );
    let (code, _, err) = run(
        &home,
        &[
            "data",
            "preview",
            &f,
            "--model",
            home.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no tokenizer.json in this folder"), "{err}");
}

/// A hostile chat template (issue #20: 10⁸ iterations writing 1,000 bytes each) in a model's
/// `tokenizer_config.json` fails `data preview` at once, naming the template and the budget,
/// instead of growing for gigabytes.
#[test]
fn a_template_that_writes_without_end_fails_fast() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let src = common::fixture("templates/qwen2_5");
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = dir.join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["chat_template"] = Value::String(
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}"
            .into(),
    );
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let f = write(
        &home,
        "d.jsonl",
        "{\"instruction\": \"Hi\", \"input\": \"\", \"output\": \"Hello.\"}\n",
    );
    let start = std::time::Instant::now();
    let (code, out, err) = run(
        &home,
        &["data", "preview", &f, "--model", dir.to_str().unwrap()],
    );
    let took = start.elapsed();
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("the rendered text passed"), "{err}");
    assert!(err.contains("line 1"), "the record is named: {err}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}
