//! `tunelab data …` end to end: containers, bad input, exit codes and atomic output.

use crate::common;

use crate::common::run;
use serde_json::Value;
use std::fs;

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn jsonl_with_bom_crlf_and_blank_lines() {
    let home = tempfile::tempdir().unwrap();
    let f = write(
        &home,
        "d.jsonl",
        b"\xEF\xBB\xBF{\"text\": \"a\"}\r\n\r\n{\"text\": \"b\"}\r\n\n",
    );
    let (code, out, err) = run(&home, &["data", "validate", &f]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 records, all valid (text)"), "{out}");
}

#[test]
fn truncated_line_wrong_type_and_bad_utf8_name_their_lines() {
    let home = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"instruction\": \"a\", \"output\": \"b\"}\n".to_vec();
    bytes.extend(b"{\"instruction\": \"a\", \"output\": 3}\n");
    bytes.extend(b"{\"instruction\": \"a\", \"out\n");
    bytes.extend(b"{\"instruction\": \"caf\xE9\", \"output\": \"b\"}\n");
    bytes.extend(b"[1, 2]\n");
    let f = write(&home, "bad.jsonl", &bytes);
    let (code, out, _) = run(&home, &["data", "validate", &f]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].ends_with("bad.jsonl: line 2: output: expected a string, found a number (3)"),
        "{out}"
    );
    assert!(
        lines[1].contains("bad.jsonl: line 3: truncated JSON"),
        "{out}"
    );
    assert!(
        lines[2]
            .contains("bad.jsonl: line 4: not valid UTF-8 (bad byte at offset 20 of the record)"),
        "{out}"
    );
    assert!(
        lines[3].contains("bad.jsonl: line 5: expected a JSON object, found an array of 2 items"),
        "{out}"
    );
    assert!(out.contains("4 of 5 records have problems"), "{out}");
    let (code, out, _) = run(&home, &["data", "validate", &f, "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["invalid"], 4);
    assert_eq!(v["problems"][0]["location"], "line 2");
    assert_eq!(v["problems"][0]["field"], "output");
}

#[test]
fn files_that_cannot_be_read_exit_2_with_one_line() {
    let home = tempfile::tempdir().unwrap();
    let empty = write(&home, "empty.jsonl", b"");
    let dir = home.path().to_str().unwrap().to_string();
    let missing = home.path().join("nope.jsonl");
    let csv = write(&home, "x.csv", b"a,b\n");
    let cut = write(&home, "cut.json", b"[{\"text\": \"a\"},\n {\"text\": \"b");
    let notpq = write(&home, "fake.parquet", b"PAR1 not really");
    let cases = [
        (
            empty.as_str(),
            "empty.jsonl: the file is empty; expected JSON records",
        ),
        (dir.as_str(), "is a directory; expected a dataset file"),
        (missing.to_str().unwrap(), "nope.jsonl: no such file"),
        (
            csv.as_str(),
            "x.csv: unknown extension; expected .json, .jsonl (or .ndjson) or .parquet",
        ),
        (
            cut.as_str(),
            "cut.json: record 2 (line 2): unexpected end of file inside the record",
        ),
        (
            notpq.as_str(),
            "fake.parquet: footer: not a readable Parquet file",
        ),
    ];
    for (file, expected) in cases {
        let (code, out, err) = run(&home, &["data", "validate", file]);
        assert_eq!(code, 2, "{file}: {out}{err}");
        assert!(err.contains(expected), "{file}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn ambiguous_and_unknown_formats_are_refused_with_candidates() {
    let home = tempfile::tempdir().unwrap();
    let amb = write(&home, "amb.jsonl", b"{\"messages\": [], \"text\": \"x\"}\n");
    let (code, _, err) = run(&home, &["data", "inspect", &amb]);
    assert_eq!(code, 2);
    assert!(
        err.contains("ambiguous format: the records fit openai and text; pass --format"),
        "{err}"
    );
    let (code, out, _) = run(
        &home,
        &["data", "inspect", &amb, "--format", "text", "--json"],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["format"],
        "text"
    );
    let (code, _, err) = run(&home, &["data", "inspect", &amb, "--format", "chatml"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown format \"chatml\""), "{err}");
}

#[test]
fn json_containers_array_object_and_jsonl_named_json() {
    let home = tempfile::tempdir().unwrap();
    let wrapped = write(
        &home,
        "w.json",
        br#"{"version": 1, "data": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}"#,
    );
    let lines = write(&home, "l.json", b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
    let single = write(
        &home,
        "s.json",
        br#"{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}"#,
    );
    for (f, n, container) in [
        (&wrapped, 3, "json (object holding an array)"),
        (&lines, 2, "jsonl"),
        (&single, 1, "json (object holding an array)"),
    ] {
        let (code, out, err) = run(&home, &["data", "inspect", f, "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["records"], n, "{f}");
        assert_eq!(v["container"], container, "{f}");
    }
}

#[test]
fn parquet_files_are_read_with_nested_columns() {
    let home = tempfile::tempdir().unwrap();
    let sg = common::fixture("data/sharegpt_small.parquet");
    let (code, out, err) = run(
        &home,
        &["data", "inspect", sg.to_str().unwrap(), "--json", "-n", "1"],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["format"], "sharegpt");
    assert_eq!(v["records"], 12);
    assert_eq!(v["roles"]["system"], 6);
    assert_eq!(v["samples"][0]["record"]["messages"][4]["content"], "0.");
    let al = common::fixture("data/alpaca_small.parquet");
    let out_file = home.path().join("al.jsonl");
    let (code, _, err) = run(
        &home,
        &[
            "data",
            "convert",
            al.to_str().unwrap(),
            "--to",
            "openai",
            "-o",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let text = fs::read_to_string(&out_file).unwrap();
    assert_eq!(text.lines().count(), 25);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["messages"][1]["content"], "0 + 1 = 1");
}

#[test]
fn failed_conversion_leaves_an_existing_output_untouched() {
    let home = tempfile::tempdir().unwrap();
    let f = write(
        &home,
        "in.jsonl",
        b"{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\"}\n",
    );
    let out = write(&home, "out.jsonl", b"precious\n");
    let (code, _, err) = run(
        &home,
        &["data", "convert", &f, "--to", "openai", "-o", &out],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("in.jsonl: line 2: output: missing; expected a string; nothing was written"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "precious\n");
    let leftovers: Vec<_> = fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
    let (code, _, err) = run(
        &home,
        &[
            "data",
            "convert",
            &f,
            "--to",
            "openai",
            "-o",
            &out,
            "--on-error",
            "skip",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 of 2 records written"), "{err}");
    assert!(err.contains("in.jsonl: line 2: output: missing"), "{err}");
}

#[test]
fn incompatible_kinds_and_bad_output_extensions() {
    let home = tempfile::tempdir().unwrap();
    let f = write(&home, "t.jsonl", b"{\"text\": \"a\"}\n");
    let o = home.path().join("o.jsonl");
    let (code, _, err) = run(
        &home,
        &[
            "data",
            "convert",
            &f,
            "--to",
            "alpaca",
            "-o",
            o.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot convert text (text data) to alpaca (sft data)"),
        "{err}"
    );
    let (code, _, err) = run(
        &home,
        &[
            "data",
            "convert",
            &f,
            "--to",
            "text",
            "-o",
            home.path().join("o.csv").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("unsupported output extension; expected .json or .jsonl"),
        "{err}"
    );
}

#[test]
fn stats_reports_duplicates_and_formats_lists_all() {
    let home = tempfile::tempdir().unwrap();
    let f = write(
        &home,
        "d.jsonl",
        b"{\"text\": \"same\"}\n{\"text\": \"other\"}\n{\"text\": \"same\"}\n",
    );
    let (code, out, _) = run(&home, &["data", "stats", &f, "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["duplicates"], 1);
    assert_eq!(
        v["duplicate_examples"][0],
        serde_json::json!({"duplicate": "line 3", "first": "line 1"})
    );
    assert_eq!(v["fields"]["text"]["max"], 5);
    let (code, out, _) = run(&home, &["data", "formats"]);
    assert_eq!(code, 0);
    for name in [
        "alpaca",
        "sharegpt",
        "openai",
        "dolly",
        "flan",
        "prompt-completion",
        "text",
        "preference",
        "sharegpt-preference",
        "alpaca-preference",
        "hh-rlhf",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} missing from {out}"
        );
    }
}
