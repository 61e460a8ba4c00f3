//! `tunelab data synth` against `tunelab serve`: the tiny demo model with a pirate adapter
//! on loopback writes 20 SFT records and 10 preference pairs (chosen from the adapter,
//! rejected from the bare base, both served by the same server); the files validate and a
//! rerun adds nothing.

use crate::common;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn synth_makes_sft_and_preference_data_from_tunelab_serve() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let demo = h.path().join("data/demo");
    let run = h.path().join("pirate");
    common::ok(
        h.path(),
        &[
            "train",
            "tiny-demo",
            "--set",
            "train.max_steps=60",
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let adapter = format!("pirate={}", run.join("adapter").display());
    let mut child = common::tunelab(&h)
        .args(["serve", "--port", "0", "--model"])
        .arg(demo.join("tiny-model"))
        .args(["--adapter", &adapter])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Serving(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut first = String::new();
        let _ = r.read_line(&mut first);
        let _ = tx.send(first);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let base_url = format!(
        "{}/v1",
        line.trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{line}"))
    );
    // Prompts from the persona set (a line ending in `?` is a prompt, answered as written).
    let seeds = h.path().join("prompts.txt");
    let prompts: Vec<String> = std::fs::read_to_string(demo.join("persona.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["messages"][0]["content"].as_str().map(str::to_string))
        .filter(|p| p.ends_with('?'))
        .fold(Vec::new(), |mut acc, p| {
            if !acc.contains(&p) {
                acc.push(p);
            }
            acc
        });
    assert!(prompts.len() >= 20);
    std::fs::write(&seeds, prompts[..20].join("\n") + "\n").unwrap();
    let synth = |kind: &str, n: &str, out: &std::path::Path| {
        let mut args = vec![
            "data",
            "synth",
            "--provider",
            "openai",
            "--base-url",
            &base_url,
            "--model",
            "pirate",
            "--kind",
            kind,
            "--seed-file",
            seeds.to_str().unwrap(),
            "--persona",
            "You are Captain Byte.",
            "-n",
            n,
            "-o",
            out.to_str().unwrap(),
            "--rpm",
            "0",
            "--concurrency",
            "2",
            "--json",
        ];
        if kind == "preference" {
            args.extend([
                "--rejected-base-url",
                &base_url,
                "--rejected-model",
                "tiny-model",
            ]);
        }
        common::run(&h, &args)
    };
    for (kind, n, file) in [
        ("sft", "20", "sft.jsonl"),
        ("preference", "10", "dpo.jsonl"),
    ] {
        let out = h.path().join(file);
        let (code, stdout, err) = synth(kind, n, &out);
        assert_eq!(code, 0, "{kind}: {stdout}{err}");
        assert_eq!(lines(&out), n.parse::<usize>().unwrap(), "{kind}: {stdout}");
        let (code, o, e) = common::run(&h, &["data", "validate", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{kind}: {o}{e}");
        // A rerun finds every record done and adds nothing.
        let (code, stdout, err) = synth(kind, n, &out);
        assert_eq!(code, 0, "{kind} rerun: {err}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["written"], 0, "{report}");
        assert_eq!(lines(&out), n.parse::<usize>().unwrap());
    }
    drop(server);
}
