//! A mutation fuzzer for every reader of untrusted input, on stable Rust (issue #20).
//!
//! Each target takes bytes derived from a seed corpus (the shared datasets, the test
//! fixtures, presets, templates) by random mutations (bit flips, byte runs, deletions,
//! duplications, splices with another seed, truncations, interesting bytes) and feeds them
//! to a reader: the JSON-array scanner and JSONL reader with format detection and every
//! format reader, the Parquet row reader, the GGUF header and metadata reader, the
//! safetensors header reader, the PEFT `adapter_config.json` reader, the run-config YAML,
//! `events.jsonl` tailing, chat-template compiling and rendering, and `tunelab serve`'s
//! request side (a chat-completion body read and checked, then its messages rendered through
//! a chat template as a server would). A reader may return an
//! error; it must not panic. Panics are caught, their input saved under `fuzz-crashes/`.
//!
//!     cargo run --release --example fuzz -- [--seconds 30] [--target NAME] [--seed N]
//!
//! `scripts/fuzz.sh` runs every target for a fixed budget and prints the table recorded in
//! BENCHMARKS.md (RELIABILITY): executions, crashes, peak memory.

use rand::{Rng, SeedableRng};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Inputs are cut to this size: readers are fuzzed for structure, not throughput.
const MAX_INPUT: usize = 128 << 10;

struct Target {
    name: &'static str,
    /// Seed files: globs are not needed, a list of folders and extensions is.
    seeds: &'static [(&'static str, &'static [&'static str])],
    run: fn(&[u8], &Path),
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write the input");
    p
}

fn dataset(bytes: &[u8], dir: &Path, name: &str) {
    let p = write(dir, name, bytes);
    if let Ok(ds) = tunelab::data::Dataset::open(&p, None) {
        if let Ok(items) = ds.items() {
            for item in items.take(10_000) {
                if item.is_err() {
                    break;
                }
            }
        }
    }
}

const TARGETS: &[Target] = &[
    Target {
        name: "jsonl",
        seeds: &[
            ("../shared/datasets", &["jsonl"]),
            ("tests/fixtures/data", &["jsonl"]),
        ],
        run: |b, d| dataset(b, d, "in.jsonl"),
    },
    Target {
        name: "json-array",
        seeds: &[("../shared/datasets", &["json"])],
        run: |b, d| dataset(b, d, "in.json"),
    },
    Target {
        name: "parquet",
        seeds: &[("tests/fixtures/data", &["parquet"])],
        run: |b, d| dataset(b, d, "in.parquet"),
    },
    Target {
        name: "gguf",
        seeds: &[("tests/fixtures/gguf", &["gguf"])],
        run: |b, d| {
            let p = write(d, "in.gguf", b);
            if tunelab::model::gguf::read_config(&p).is_ok() {
                let _ = tunelab::model::gguf::load_model(&p, &candle_core::Device::Cpu);
            }
            let _ = tunelab::model::gguf::load_tokenizer(&p);
        },
    },
    Target {
        name: "safetensors",
        seeds: &[("tests/fixtures/models/llama/model", &["safetensors"])],
        run: |b, d| {
            let cfg =
                std::fs::read("tests/fixtures/models/llama/model/config.json").unwrap_or_default();
            write(d, "config.json", &cfg);
            write(d, "model.safetensors", b);
            let _ =
                tunelab::model::Model::load(d, candle_core::DType::F32, &candle_core::Device::Cpu);
        },
    },
    Target {
        name: "adapter-config",
        seeds: &[("tests/fixtures/models/llama/adapter", &["json"])],
        run: |b, d| {
            write(d, "adapter_config.json", b);
            let _ = tunelab::model::peft::read_config(d);
        },
    },
    Target {
        name: "run-config",
        seeds: &[("presets", &["yaml"])],
        run: |b, _| {
            let text = String::from_utf8_lossy(b);
            if let Ok(c) = tunelab::config::RunConfig::from_yaml(&text, "fuzz.yaml") {
                let _ = c.validate();
            }
        },
    },
    Target {
        name: "events",
        seeds: &[
            ("tests/fixtures/runs/v0-done", &["jsonl"]),
            ("tests/fixtures/runs/v0-resumed-failed", &["jsonl"]),
        ],
        run: |b, d| {
            let p = write(d, "events.jsonl", b);
            if let Ok((_, offset)) = tunelab::runs::read_events(&p, 0) {
                let _ = tunelab::runs::read_events(&p, offset / 2);
            }
        },
    },
    Target {
        name: "template",
        seeds: &[
            ("tests/reference/templates", &["jinja"]),
            ("src/template/builtin", &["jinja"]),
        ],
        run: |b, _| {
            let src = String::from_utf8_lossy(b);
            if let Ok(t) = tunelab::template::chat_template::ChatTemplate::compile("fuzz", &src) {
                let messages = [
                    serde_json::json!({"role": "system", "content": "Be brief."}),
                    serde_json::json!({"role": "user", "content": "Hi"}),
                    serde_json::json!({"role": "assistant", "content": "Hello", "reasoning_content": "think"}),
                ];
                let _ = t.render(&messages, None, true, &[]);
            }
        },
    },
    Target {
        name: "serve-request",
        seeds: &[("tests/fixtures/serve", &["json"])],
        run: |b, _| serve_request(b),
    },
];

/// A request body as `tunelab serve` reads it, then its messages rendered.
#[cfg(feature = "serve")]
fn serve_request(b: &[u8]) {
    if let Ok(req) = tunelab::serve::openai::parse_chat(b) {
        for enc in serve_encoders() {
            let _ = tunelab::serve::generate::prompt_ids(enc, &req.messages);
        }
    }
}

/// Without the server there is no request side to fuzz.
#[cfg(not(feature = "serve"))]
fn serve_request(_: &[u8]) {}

/// Encoders a server renders client messages with: the demo model's ChatML and the built-in
/// Llama 3 template on its tokenizer (made once per process).
#[cfg(feature = "serve")]
fn serve_encoders() -> &'static [tunelab::template::Encoder] {
    static ENCODERS: std::sync::OnceLock<Vec<tunelab::template::Encoder>> =
        std::sync::OnceLock::new();
    ENCODERS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tunelab-fuzz-demo-{}", std::process::id()));
        let demo = tunelab::workspace::Demo::new(&dir);
        let Ok(_) = demo.ensure() else {
            return Vec::new();
        };
        let Ok(tok) = tunelab::model::source::load_tokenizer(&demo.model()) else {
            return Vec::new();
        };
        let encoders: Vec<_> = ["model", "llama3"]
            .iter()
            .filter_map(|t| {
                tunelab::template::Encoder::new(
                    tok.clone(),
                    &tunelab::template::TemplateChoice::parse(t),
                    tunelab::template::TrainOn::Assistant,
                )
                .ok()
            })
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "serve-request: rendering through {} templates",
            encoders.len()
        );
        encoders
    })
}

fn seeds(t: &Target) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (dir, exts) in t.seeds {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if exts.contains(&ext) {
                if let Ok(mut b) = std::fs::read(&p) {
                    b.truncate(MAX_INPUT);
                    out.push(b);
                }
            }
        }
    }
    if out.is_empty() {
        out.push(b"{}".to_vec());
    }
    out
}

const INTERESTING: &[u8] = b"\0\xff{}[]\":,\\\n\r 0-9eE.tfn\x7f\xc3\xa9";

fn mutate(rng: &mut rand::rngs::StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..8) {
        let len = b.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                let run: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                b.splice(i..i, run);
            }
            3 if len > 1 => {
                let i = rng.random_range(0..len);
                let j = (i + rng.random_range(1..64)).min(len);
                b.drain(i..j);
            }
            4 if len > 1 => {
                let i = rng.random_range(0..len);
                let j = (i + rng.random_range(1..256)).min(len);
                let chunk = b[i..j].to_vec();
                let at = rng.random_range(0..=b.len());
                b.splice(at..at, chunk);
            }
            5 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() && len > 0 {
                    let i = rng.random_range(0..len);
                    let j = rng.random_range(0..other.len());
                    b.truncate(i);
                    b.extend_from_slice(&other[j..]);
                }
            }
            6 if len > 0 => b.truncate(rng.random_range(0..len)),
            // Numbers at offsets: lengths and counts in binary headers.
            _ if len > 8 => {
                let i = rng.random_range(0..len - 8);
                let v: u64 = match rng.random_range(0..4) {
                    0 => u64::MAX,
                    1 => 0,
                    2 => 1 << rng.random_range(0..63),
                    _ => rng.random(),
                };
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    b.truncate(MAX_INPUT);
    b
}

/// Peak resident memory of this process (VmHWM), MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let seconds: f64 = arg("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let only = arg("--target");
    let seed: u64 = arg("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    // Panics are the findings: keep their messages short and off the default hook's path.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic: {info}");
    }));
    let crash_dir = PathBuf::from("fuzz-crashes");
    println!(
        "{:<16} {:>10} {:>8} {:>10} {:>12}",
        "target", "execs", "crashes", "execs/s", "peak MiB"
    );
    let mut total_crashes = 0;
    for t in TARGETS {
        if only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        let corpus = seeds(t);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let work = tempfile::tempdir().expect("a temporary folder");
        let start = Instant::now();
        let (mut execs, mut crashes) = (0u64, 0u64);
        // Every seed once, unmutated, then mutations until the budget is spent.
        let mut pending: Vec<Vec<u8>> = corpus.clone();
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            let input = pending.pop().unwrap_or_else(|| mutate(&mut rng, &corpus));
            let ok = std::panic::catch_unwind(AssertUnwindSafe(|| (t.run)(&input, work.path())));
            execs += 1;
            if ok.is_err() {
                crashes += 1;
                let _ = std::fs::create_dir_all(&crash_dir);
                let p = crash_dir.join(format!("{}-{execs}", t.name));
                let _ = std::fs::write(&p, &input);
                eprintln!("{}: crash saved to {}", t.name, p.display());
            }
        }
        total_crashes += crashes;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<16} {:>10} {:>8} {:>10.0} {:>12.0}",
            t.name,
            execs,
            crashes,
            execs as f64 / secs,
            peak_mib()
        );
    }
    std::process::exit(if total_crashes > 0 { 1 } else { 0 });
}
