//! `tunelab eval bench` against transformers (fixture from
//! tests/reference/make_choice_fixture.py: lm-eval's encoding and scoring rules on init-tiny
//! llama and qwen2 models, with and without a PEFT adapter, zero- and two-shot, and a
//! context cut from the left), the hub layouts (ARC from Parquet, HellaSwag), a hub id
//! read from a cache laid out like the hub's, and errors that name the file, the line and
//! the field.

use crate::common;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tunelab::eval::choice::{load_task, Layout, TaskOptions};

fn fixture(rel: &str) -> PathBuf {
    common::fixture(&format!("eval/choice/{rel}"))
}

fn init_tiny(home: &tempfile::TempDir, arch: &str) -> PathBuf {
    let model = home.path().join(arch);
    let (code, _, err) = common::run(
        home,
        &[
            "model",
            "init-tiny",
            "-o",
            model.to_str().unwrap(),
            "--arch",
            arch,
        ],
    );
    assert_eq!(code, 0, "{err}");
    model
}

/// The patch make_choice_fixture.py gives "llama-bos": a tokenizer that adds a BOS, as
/// Llama 3's and Gemma's do.
fn patch_bos(model: &Path) {
    let patch: Value =
        serde_json::from_slice(&std::fs::read(fixture("bos_tokenizer.json")).unwrap()).unwrap();
    let edit = |file: &str, f: &dyn Fn(&mut Value)| {
        let path = model.join(file);
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
    };
    edit("tokenizer.json", &|v| {
        v["post_processor"] = patch["post_processor"].clone()
    });
    edit("tokenizer_config.json", &|v| {
        for (k, x) in patch["tokenizer_config"].as_object().unwrap() {
            v[k] = x.clone();
        }
    });
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-4 * want.abs().max(1.0)
}

#[test]
fn bench_matches_transformers_with_lm_evals_rules() {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    let home = tempfile::tempdir().unwrap();
    let items = fixture("items.jsonl");
    let mut checked = 0;
    for arch in ["llama", "llama-bos", "qwen2"] {
        let family = arch.split('-').next().unwrap();
        let model = home.path().join(arch);
        let (code, _, err) = common::run(
            &home,
            &[
                "model",
                "init-tiny",
                "-o",
                model.to_str().unwrap(),
                "--arch",
                family,
            ],
        );
        assert_eq!(code, 0, "{err}");
        if arch == "llama-bos" {
            patch_bos(&model);
        }
        let adapter = fixture(&format!("adapter_{family}"));
        // One call scores the base and the adapter: the cases come in (base, adapter) pairs.
        let runs: Vec<(&Value, &Value)> = cases
            .iter()
            .filter(|c| c["arch"] == arch && c["adapter"] == false)
            .map(|base| {
                let tuned = cases
                    .iter()
                    .find(|c| {
                        c["arch"] == arch
                            && c["adapter"] == true
                            && c["num_fewshot"] == base["num_fewshot"]
                            && c["max_length"] == base["max_length"]
                    })
                    .unwrap();
                (base, tuned)
            })
            .collect();
        assert!(!runs.is_empty(), "{arch}: no cases in the fixture");
        for (base, tuned) in runs {
            let k = base["num_fewshot"].as_u64().unwrap().to_string();
            let per_item = home.path().join(format!("{arch}-{k}.jsonl"));
            let mut args = vec![
                "eval",
                "bench",
                "--model",
                model.to_str().unwrap(),
                "--adapter",
                adapter.to_str().unwrap(),
                "--task",
                items.to_str().unwrap(),
                "--num-fewshot",
                &k,
                "--batch-size",
                "5",
                "--json",
                "--per-item",
                per_item.to_str().unwrap(),
            ];
            let max_length = base["max_length"].as_u64().map(|m| m.to_string());
            if let Some(m) = &max_length {
                args.extend(["--max-length", m.as_str()]);
            }
            let (code, out, err) = common::run(&home, &args);
            assert_eq!(code, 0, "{arch} k={k}: {err}");
            let got: Value = serde_json::from_str(&out).unwrap();
            let results = got["results"].as_array().unwrap();
            assert_eq!(results.len(), 2);
            let lines: Vec<Value> = std::fs::read_to_string(&per_item)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            for (side, want) in [(0usize, base), (1, tuned)] {
                let what = format!("{arch} k={k} max_length={max_length:?} side {side}");
                let r = &results[side];
                for key in ["acc", "acc_norm"] {
                    assert_eq!(r[key].as_f64(), want[key].as_f64(), "{what}: {key}");
                }
                for key in ["acc_stderr", "acc_norm_stderr"] {
                    let (g, w) = (r[key].as_f64().unwrap(), want[key].as_f64().unwrap());
                    assert!((g - w).abs() < 1e-12, "{what}: {key} {g} vs {w}");
                }
                assert_eq!(r["items"], want["items"], "{what}");
                assert_eq!(r["adapter"].is_null(), side == 0, "{what}");
                let n = want["items"].as_u64().unwrap() as usize;
                let mine = &lines[side * n..(side + 1) * n];
                for (g, w) in mine.iter().zip(want["per_item"].as_array().unwrap()) {
                    for key in ["index", "pred", "pred_norm", "answer"] {
                        assert_eq!(g[key], w[key], "{what}: item {}: {key}", w["index"]);
                    }
                    assert_eq!(g["adapter"].is_null(), side == 0);
                    let (gl, wl) = (
                        g["loglikelihoods"].as_array().unwrap(),
                        w["loglikelihoods"].as_array().unwrap(),
                    );
                    assert_eq!(gl.len(), wl.len(), "{what}: item {}", w["index"]);
                    for (a, b) in gl.iter().zip(wl) {
                        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                        assert!(close(a, b), "{what}: item {}: {a} vs {b}", w["index"]);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 200, "{checked} log-likelihoods checked");
}

#[test]
fn arc_and_hellaswag_layouts_read_as_lm_eval_reads_them() {
    // ARC as the hub serves it: Parquet, `choices` a struct of lists, answerKey a letter or
    // a digit (tests/reference/make_choice_fixture.py writes the file).
    let arc = load_task(
        fixture("arc_tiny.parquet").to_str().unwrap(),
        &TaskOptions::default(),
    )
    .unwrap();
    assert_eq!(arc.layout, Layout::Arc);
    assert_eq!(arc.items.len(), 3);
    assert_eq!(
        arc.items[0].context,
        "Question: Which gas do plants take in?\nAnswer:"
    );
    assert_eq!(
        arc.items[0].choices,
        ["oxygen", "carbon dioxide", "helium", "neon"]
    );
    assert_eq!(arc.items[0].answer, 1);
    assert_eq!(arc.items[1].answer, 2, "answerKey \"3\" among labels 1-4");
    assert_eq!(arc.items[2].choices.len(), 5);
    assert_eq!(arc.items[2].answer, 4);

    let h = tempfile::tempdir().unwrap();
    let hs = h.path().join("hellaswag.jsonl");
    std::fs::write(
        &hs,
        concat!(
            r#"{"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.", "ctx_b": "THEN, the man", "ctx": "ignored when the parts are there", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "label": "3"}"#,
            "\n",
            r#"{"ctx": "A [title] cat sits.", "endings": [" It naps [step] now.", " It flies."], "label": 0}"#,
            "\n"
        ),
    )
    .unwrap();
    let t = load_task(hs.to_str().unwrap(), &TaskOptions::default()).unwrap();
    assert_eq!(t.layout, Layout::Hellaswag);
    // lm-eval's preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()).
    assert_eq!(
        t.items[0].context,
        "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then, the man"
    );
    assert_eq!(
        t.items[0].choices[3],
        ", the man continues removing the snow on his car."
    );
    assert_eq!(t.items[0].answer, 3);
    // Only `ctx`: used as it is, endings too.
    assert_eq!(t.items[1].context, "A [title] cat sits.");
    assert_eq!(t.items[1].choices[0], " It naps [step] now.");

    // MMLU's layout, and a template of the user's.
    let mmlu = h.path().join("mmlu.jsonl");
    std::fs::write(
        &mmlu,
        "{\"question\": \"2 + 2 =\", \"subject\": \"math\", \"choices\": [\"3\", \"4\"], \"answer\": 1}\n",
    )
    .unwrap();
    let opts = TaskOptions {
        context_template: Some("Q: {question}\nA:".into()),
        ..Default::default()
    };
    let t = load_task(mmlu.to_str().unwrap(), &opts).unwrap();
    assert_eq!(t.layout, Layout::Question);
    assert_eq!(t.items[0].context, "Q: 2 + 2 =\nA:");
    let t = load_task(mmlu.to_str().unwrap(), &TaskOptions::default()).unwrap();
    assert_eq!(t.items[0].context, "Question: 2 + 2 =\nAnswer:");
}

const COMMIT: &str = "0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5";

/// `$HF_HOME/hub/datasets--acme--quiz`, two configurations as ARC has them: ARC-Easy with a
/// Parquet test split (a link into `blobs/`, as the hub client writes it) and a train split,
/// ARC-Challenge with a test split only.
fn fake_hub(hf_home: &Path) {
    let repo = hf_home.join("hub/datasets--acme--quiz");
    let snap = repo.join("snapshots").join(COMMIT);
    for d in ["ARC-Easy", "ARC-Challenge"] {
        std::fs::create_dir_all(snap.join(d)).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::copy(fixture("arc_tiny.parquet"), repo.join("blobs/5e6f7a8b")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        "../../../blobs/5e6f7a8b",
        snap.join("ARC-Easy/test-00000-of-00001.parquet"),
    )
    .unwrap();
    #[cfg(not(unix))]
    std::fs::copy(
        repo.join("blobs/5e6f7a8b"),
        snap.join("ARC-Easy/test-00000-of-00001.parquet"),
    )
    .unwrap();
    let arc = |q: &str, key: &str| {
        format!(
            "{{\"id\": \"x\", \"question\": \"{q}\", \"choices\": {{\"text\": [\"yes\", \"no\"], \"label\": [\"A\", \"B\"]}}, \"answerKey\": \"{key}\"}}\n"
        )
    };
    std::fs::write(
        snap.join("ARC-Easy/train-00000-of-00001.jsonl"),
        format!("{}{}", arc("Is ice cold?", "A"), arc("Is fire cold?", "B")),
    )
    .unwrap();
    std::fs::write(
        snap.join("ARC-Challenge/test-00000-of-00001.jsonl"),
        arc("Is the sun a star?", "A"),
    )
    .unwrap();
    std::fs::write(snap.join("README.md"), "# quiz\n").unwrap();
}

fn bench_offline(home: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let out = common::tunelab(home)
        .env("HF_HOME", home.path().join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .args(["eval", "bench"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_hub_id_is_read_from_the_cache_with_its_splits() {
    let home = tempfile::tempdir().unwrap();
    fake_hub(&home.path().join("hf"));
    let model = init_tiny(&home, "llama");
    let m = model.to_str().unwrap();
    let (code, _, err) = bench_offline(&home, &["--model", m, "--task", "acme/quiz"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("several configurations (ARC-Challenge, ARC-Easy)")
            && err.contains("ID:CONFIG"),
        "{err}"
    );
    let (code, out, err) = bench_offline(
        &home,
        &[
            "--model",
            m,
            "--task",
            "acme/quiz:ARC-Easy",
            "--num-fewshot",
            "2",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("using the cached snapshot"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"], 3, "{v}");
    assert_eq!(v["num_fewshot"], 2);
    assert_eq!(v["task"], "acme/quiz:ARC-Easy");
    assert_eq!(
        (v["split"].as_str(), v["fewshot_split"].as_str()),
        (Some("test"), Some("train"))
    );
    let (code, out, err) = bench_offline(
        &home,
        &[
            "--model",
            m,
            "--task",
            "acme/quiz:ARC-Easy",
            "--num-fewshot",
            "1",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "acme/quiz:ARC-Easy · 3 items · 1-shot from train · arc layout · split test"
        ),
        "{out}"
    );
    // ARC-Challenge has no other split: its items are their own pool, so two shots need
    // three items.
    let (code, _, err) = bench_offline(
        &home,
        &[
            "--model",
            m,
            "--task",
            "acme/quiz:ARC-Challenge",
            "--num-fewshot",
            "2",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--num-fewshot 2 needs 3 examples"), "{err}");
    let (code, _, err) = bench_offline(&home, &["--model", m, "--task", "acme/quiz:ARC-Hard"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no configuration \"ARC-Hard\" (it has ARC-Challenge, ARC-Easy)"),
        "{err}"
    );
    let (code, _, err) = bench_offline(&home, &["--model", m, "--task", "acme/absent"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("acme/absent") && err.contains("not in the Hugging Face cache"),
        "{err}"
    );
}

#[test]
fn bad_task_files_name_the_file_the_line_and_the_field() {
    let home = tempfile::tempdir().unwrap();
    let model = init_tiny(&home, "qwen2");
    let m = model.to_str().unwrap();
    let good = r#"{"question": "q", "choices": ["a", "b"], "answer": 0}"#;
    for (name, body, code, want) in [
        (
            "choices.jsonl",
            format!("{good}\n{good}\n{{\"question\": \"q\", \"choices\": [\"a\", 4], \"answer\": 0}}\n"),
            1,
            "choices.jsonl: line 3: choices[1]: expected a string, found a number (4) (question/choices/answer layout)",
        ),
        (
            "answer.jsonl",
            format!("{good}\n{{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}}\n"),
            1,
            "answer.jsonl: line 2: answer: 2 is not the index of one of the 2 choices",
        ),
        (
            "missing.jsonl",
            format!("{good}\n{{\"question\": \"q\", \"answer\": 1}}\n"),
            1,
            "missing.jsonl: line 2: choices: missing",
        ),
        (
            "broken.jsonl",
            format!("{good}\n{{\"question\": \n"),
            1,
            "broken.jsonl: line 2:",
        ),
        (
            "chat.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n".to_string(),
            1,
            "chat.jsonl: line 1: not a multiple-choice record: expected question (or context), choices",
        ),
        (
            "arc.jsonl",
            r#"{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}"#
                .to_string(),
            1,
            "arc.jsonl: line 1: answerKey: \"E\" is not one of choices.label (A, B)",
        ),
        (
            "hs.jsonl",
            r#"{"ctx": "c", "endings": ["a", "b"], "label": ""}"#.to_string(),
            1,
            "hs.jsonl: line 1: label: empty: this split has no answers",
        ),
        ("empty.jsonl", "\n".to_string(), 2, "empty.jsonl: no items"),
    ] {
        let path = home.path().join(name);
        std::fs::write(&path, body).unwrap();
        let (got, _, err) = common::run(
            &home,
            &["eval", "bench", "--model", m, "--task", path.to_str().unwrap()],
        );
        assert_eq!(got, code, "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let (code, _, err) = common::run(
        &home,
        &[
            "eval",
            "bench",
            "--model",
            m,
            "--task",
            "no/such/file.jsonl",
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no such file or folder, and not a hub dataset id"),
        "{err}"
    );
    let ok = home.path().join("ok.jsonl");
    std::fs::write(&ok, format!("{good}\n{good}\n")).unwrap();
    let (code, _, err) = common::run(
        &home,
        &[
            "eval",
            "bench",
            "--model",
            m,
            "--task",
            ok.to_str().unwrap(),
            "--num-fewshot",
            "2",
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("--num-fewshot 2 needs 3 examples from the task's own items"),
        "{err}"
    );
    let (code, _, err) = common::run(
        &home,
        &[
            "eval",
            "bench",
            "--model",
            m,
            "--task",
            ok.to_str().unwrap(),
            "--adapter",
            home.path().join("nowhere").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nowhere"), "{err}");
}

/// The demo ships its general-knowledge task; the demo model scores it, text and JSON
/// agree, and the library gives the CLI's numbers.
#[test]
fn the_demo_task_scores_from_the_library_as_from_the_cli() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let demo = h.path().join("data/demo");
    let task_file = demo.join("tasks/general_knowledge.jsonl");
    let model = demo.join("tiny-model");
    let (code, out, err) = common::run(
        &h,
        &[
            "eval",
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--task",
            task_file.to_str().unwrap(),
            "--json",
            "--limit",
            "12",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli["items"], 12);
    assert!(cli["adapter"].is_null());
    let task = load_task(task_file.to_str().unwrap(), &TaskOptions::default()).unwrap();
    assert_eq!((task.items.len(), task.layout), (40, Layout::Question));
    let base =
        tunelab::infer::load::base(model.to_str().unwrap(), "model", Default::default()).unwrap();
    let opts = tunelab::eval::choice::BenchOptions {
        limit: Some(12),
        batch_size: 3,
        ..Default::default()
    };
    let mut calls = Vec::new();
    let r = tunelab::eval::choice::score(
        &base.model,
        &base.encoder.tokenizer,
        &task,
        &opts,
        |d, t| calls.push((d, t)),
    )
    .unwrap();
    assert_eq!(calls, [(0, 12), (3, 12), (6, 12), (9, 12), (12, 12)]);
    assert_eq!(cli["acc"].as_f64(), Some(r.acc));
    assert_eq!(cli["acc_norm"].as_f64(), Some(r.acc_norm));
    let (code, out, err) = common::run(
        &h,
        &[
            "eval",
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--task",
            task_file.to_str().unwrap(),
            "--limit",
            "12",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("general_knowledge · 12 items · 0-shot · question layout"),
        "{out}"
    );
    assert!(out.contains(&format!("{:.4} ± ", r.acc)), "{out}");
}
