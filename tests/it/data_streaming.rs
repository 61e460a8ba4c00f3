//! Memory stays flat on huge files. Ignored by default (it writes and converts 1 GB); run with
//! `cargo test --release --test it data_streaming -- --ignored --nocapture` and record the result.

use std::io::Write;
use tunelab::data::convert::{convert, OnError};
use tunelab::data::{Dataset, Format};

/// Peak resident memory of this process so far, from /proc (Linux).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[test]
#[ignore = "writes and converts a 1 GB file; run by hand and record in BENCHMARKS.md"]
fn converting_a_1gb_jsonl_keeps_memory_under_100mb() {
    let dir =
        tempfile::tempdir_in(std::env::var("TUNELAB_BIG_DIR").unwrap_or_else(|_| "/tmp".into()))
            .unwrap();
    let src = dir.path().join("big.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
    let filler = "tokens flow through attention layers with rotary positions ".repeat(20);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < 1_050_000_000 {
        let line = format!(
            "{{\"instruction\": \"Question {i}: explain\", \"input\": \"{}\", \"output\": \"{filler}{i}\"}}\n",
            if i.is_multiple_of(3) { "with context" } else { "" }
        );
        f.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        i += 1;
    }
    f.flush().unwrap();
    drop(f);
    let before = peak_rss_mb();
    let ds = Dataset::open(&src, None).unwrap();
    assert_eq!(ds.format, Format::Alpaca);
    let out = dir.path().join("out.jsonl");
    let started = std::time::Instant::now();
    let report = convert(&ds, &out, Format::Openai, OnError::Fail, &mut |_| {}).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let peak = peak_rss_mb();
    eprintln!(
        "converted {:.2} GB ({} records) in {secs:.1}s: {:.0} MB/s; peak RSS {peak:.1} MB (before {before:.1} MB)",
        written as f64 / 1e9,
        report.written,
        written as f64 / 1e6 / secs
    );
    assert_eq!(report.written, i);
    assert!(peak < 100.0, "peak RSS {peak:.1} MB");
}
