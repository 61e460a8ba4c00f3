//! The real public datasets: detection, record counts, validation, and conversion to every
//! compatible format and back. Every loss a conversion causes must be reported in its notes.

use crate::common;

use serde_json::Value;
use tunelab::data::{Body, Dataset, Format, Notes, Record};

/// (file, format, records): what detection and counting must find.
const EXPECTED: &[(&str, Format, u64)] = &[
    ("alpaca_en_demo.json", Format::Alpaca, 999),
    ("identity.json", Format::Alpaca, 91),
    ("glaive_toolcall_en_demo.json", Format::Sharegpt, 300),
    ("dpo_en_demo.json", Format::SharegptPreference, 300),
    ("kto_en_demo.json", Format::Kto, 300),
    ("c4_demo.jsonl", Format::Text, 300),
    ("dolly_sample.jsonl", Format::Dolly, 7),
];

fn records(ds: &Dataset) -> Vec<Record> {
    ds.items()
        .expect("open")
        .map(|i| i.expect("container").result.expect("valid record"))
        .collect()
}

#[test]
fn real_datasets_are_detected_counted_and_valid() {
    let Some(dir) = common::shared_datasets("real_datasets_are_detected_counted_and_valid") else {
        return;
    };
    for (file, format, count) in EXPECTED {
        let ds = Dataset::open(dir.join(file), None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ds.format, *format, "{file}: {}", ds.evidence);
        let recs = records(&ds);
        assert_eq!(recs.len() as u64, *count, "{file}");
    }
}

#[test]
fn real_datasets_hold_the_expected_content() {
    let Some(dir) = common::shared_datasets("real_datasets_hold_the_expected_content") else {
        return;
    };
    // Glaive: the first function call is parsed into a structured tool call.
    let ds = Dataset::open(dir.join("glaive_toolcall_en_demo.json"), None).unwrap();
    let first = &records(&ds)[0];
    let Body::Conversation(c) = &first.body else {
        panic!("not a conversation")
    };
    let call = &c.messages[3].tool_calls[0];
    assert_eq!(call.name, "search_recipes");
    assert_eq!(call.arguments["ingredients"][1], "bell peppers");
    assert_eq!(c.tools[0]["name"], "search_recipes");
    // KTO: the boolean label rates the final assistant message.
    let ds = Dataset::open(dir.join("kto_en_demo.json"), None).unwrap();
    let labels: Vec<bool> = records(&ds)
        .iter()
        .map(|r| match &r.body {
            Body::Labeled(l) => {
                assert_eq!(l.completion().len(), 1);
                assert_eq!(l.completion()[0].role, tunelab::data::Role::Assistant);
                l.desirable
            }
            other => panic!("not a rated completion: {other:?}"),
        })
        .collect();
    assert_eq!(labels.iter().filter(|l| **l).count(), 150);
    // Dolly: context is the second part of the user turn, not a system prompt.
    let ds = Dataset::open(dir.join("dolly_sample.jsonl"), None).unwrap();
    let r = &records(&ds)[0];
    let Body::Conversation(c) = &r.body else {
        panic!()
    };
    assert_eq!(c.messages.len(), 2);
    assert_eq!(c.messages[0].parts.len(), 2);
    assert!(c.messages[0].parts[1].starts_with("Virgin Australia"));
    assert_eq!(r.meta["category"], "closed_qa");
    // DPO: 80 pairs carry a system prompt; every chosen reply is one assistant message.
    let ds = Dataset::open(dir.join("dpo_en_demo.json"), None).unwrap();
    let pairs = records(&ds);
    let with_system = pairs
        .iter()
        .filter(|r| matches!(&r.body, Body::Preference(p) if p.prompt[0].role == tunelab::data::Role::System))
        .count();
    assert_eq!(with_system, 80);
}

/// Notes that change nothing about the content when read back.
fn harmless(notes: &Notes) -> bool {
    notes
        .iter()
        .all(|(n, _)| n.contains("carried as a top-level key"))
}

/// Converts every record to every compatible format and back, in process, record by record.
/// Where neither direction reported a loss, the record must come back identical.
#[test]
fn every_conversion_round_trips_or_reports_its_loss() {
    let Some(dir) = common::shared_datasets("every_conversion_round_trips_or_reports_its_loss")
    else {
        return;
    };
    let mut checked = 0;
    let mut exact = 0;
    for (file, source, _) in EXPECTED {
        let ds = Dataset::open(dir.join(file), None).unwrap();
        let recs = records(&ds);
        for target in Format::all() {
            if target.kind() != source.kind() {
                continue;
            }
            let mut written = 0;
            for (i, rec) in recs.iter().enumerate() {
                let mut there = Notes::default();
                let Ok(obj) = target.write(rec, &mut there) else {
                    continue;
                };
                written += 1;
                let mut issues = tunelab::data::problem::Issues::default();
                let mid = target
                    .read(&obj, &mut issues)
                    .unwrap_or_else(|| panic!("{file} record {} as {target}: {issues:?}", i + 1));
                assert!(
                    issues.is_empty(),
                    "{file} record {} as {target}: {issues:?}",
                    i + 1
                );
                let mut back = Notes::default();
                let obj2 = source
                    .write(&mid, &mut back)
                    .unwrap_or_else(|e| panic!("{file} record {} {target} → {source}: {e}", i + 1));
                let again = source.read(&obj2, &mut issues).expect("read back");
                checked += 1;
                if harmless(&there) && harmless(&back) {
                    assert_eq!(
                        &again,
                        rec,
                        "{file} record {} via {target}: unreported loss",
                        i + 1
                    );
                    assert_eq!(
                        &mid,
                        rec,
                        "{file} record {} as {target}: unreported change",
                        i + 1
                    );
                    exact += 1;
                }
            }
            // Every compatible target holds at least some records of every real dataset, except
            // the tool-calling conversations in the single-exchange formats.
            if !(*file == "glaive_toolcall_en_demo.json"
                && matches!(target, Format::Dolly | Format::Flan))
            {
                assert!(written > 0, "{file}: nothing could be written as {target}");
            }
        }
    }
    // kto_en_demo.json round-trips through kto alone (rated data is its own kind).
    assert!(checked > 9_000, "{checked}");
    assert!(exact > 5_000, "{exact} of {checked} round trips were exact");
}

/// alpaca → openai → alpaca through the real CLI gives back the same records, byte for byte
/// once parsed.
#[test]
fn cli_alpaca_to_openai_and_back_is_identical() {
    let Some(dir) = common::shared_datasets("cli_alpaca_to_openai_and_back_is_identical") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let src = dir.join("alpaca_en_demo.json");
    let mid = home.path().join("mid.jsonl");
    let back = home.path().join("back.json");
    let (code, _, err) = common::run(
        &home,
        &[
            "data",
            "convert",
            src.to_str().unwrap(),
            "--to",
            "openai",
            "-o",
            mid.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("999 of 999 records written"), "{err}");
    let (code, _, err) = common::run(
        &home,
        &[
            "data",
            "convert",
            mid.to_str().unwrap(),
            "--to",
            "alpaca",
            "-o",
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let a: Value = serde_json::from_slice(&std::fs::read(&src).unwrap()).unwrap();
    let b: Value = serde_json::from_slice(&std::fs::read(&back).unwrap()).unwrap();
    assert_eq!(a, b);
    // Record 6 has an input: the input text stays a separate part in OpenAI form, so alpaca gets its `input` back.
    let line = std::fs::read_to_string(&mid)
        .unwrap()
        .lines()
        .nth(5)
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["messages"][0]["content"][1]["type"], "text");
}

#[test]
fn cli_reports_skipped_records_with_locations() {
    let Some(dir) = common::shared_datasets("cli_reports_skipped_records_with_locations") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let src = dir.join("dpo_en_demo.json");
    let out = home.path().join("hh.jsonl");
    let args = [
        "data",
        "convert",
        src.to_str().unwrap(),
        "--to",
        "hh-rlhf",
        "-o",
        out.to_str().unwrap(),
    ];
    let (code, _, err) = common::run(&home, &args);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("record 2: hh-rlhf has no system prompt"),
        "{err}"
    );
    assert!(!out.exists(), "fail mode must write nothing");
    let mut skip = args.to_vec();
    skip.extend(["--on-error", "skip"]);
    let (code, _, err) = common::run(&home, &skip);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("220 of 300 records written"), "{err}");
    assert!(err.contains("skipped 80 records"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 220);
    // Preference data also converts to SFT: the prompt plus the chosen reply.
    let sft = home.path().join("sft.json");
    let (code, _, err) = common::run(
        &home,
        &[
            "data",
            "convert",
            src.to_str().unwrap(),
            "--to",
            "openai",
            "-o",
            sft.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("rejected dropped"), "{err}");
}

#[test]
fn cli_inspect_json_and_stats_on_real_data() {
    let Some(dir) = common::shared_datasets("cli_inspect_json_and_stats_on_real_data") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let f = dir.join("glaive_toolcall_en_demo.json");
    let (code, out, err) = common::run(&home, &["data", "inspect", f.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["format"], "sharegpt");
    assert_eq!(v["kind"], "sft");
    assert_eq!(v["records"], 300);
    assert_eq!(v["roles"]["tool"], 211);
    assert_eq!(v["roles"]["user"], 746);
    let (code, out, _) = common::run(
        &home,
        &[
            "data",
            "stats",
            dir.join("alpaca_en_demo.json").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fields"]["instruction"]["count"], 999);
    assert_eq!(v["fields"]["input"]["count"], 999);
    assert_eq!(v["kind"], "sft");
    let (code, out, _) = common::run(
        &home,
        &["data", "stats", dir.join("identity.json").to_str().unwrap()],
    );
    assert_eq!(code, 0);
    assert!(out.contains("instruction"), "{out}");
}
