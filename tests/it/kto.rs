//! Unpaired preference data and KTO: the `kto` format detected and counted on the real
//! LLaMA-Factory file and on TRL's shapes, conversions both ways, SFT that never trains an
//! undesirable reply unless told to, the KTO loss, KL estimate, rewards and LoRA gradients
//! against a torch fixture (tests/reference/make_kto_fixture.py, cross-checked with TRL's
//! `KTOTrainer`), and the demo's rated replies learned.

use crate::common;
use candle_core::{DType, Device};
use serde_json::Value;
use std::path::Path;
use tunelab::batch::rated::Rated;
use tunelab::config::KtoSection;
use tunelab::model::Model;
use tunelab::runs::RunDir;
use tunelab::train::kto::Kto;
use tunelab::train::micro::StepArgs;
use tunelab::train::objective::Objective;
use tunelab::train::reference::Reference;
use tunelab::train::Grads;

fn json_out(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `data inspect` on the real `kto_en_demo.json`: the kto format, 150 desirable and 150
/// undesirable completions.
#[test]
fn the_real_kto_demo_is_detected_with_its_label_counts() {
    let Some(dir) = common::shared_datasets("the_real_kto_demo_is_detected_with_its_label_counts")
    else {
        return;
    };
    let h = tempfile::tempdir().unwrap();
    let file = dir.join("kto_en_demo.json");
    let (code, out, err) = common::run(&h, &["data", "inspect", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json_out(&out);
    assert_eq!(v["format"], "kto");
    assert_eq!(v["kind"], "unpaired");
    assert_eq!(v["valid"], 300);
    assert_eq!(v["labels"]["desirable"], 150);
    assert_eq!(v["labels"]["undesirable"], 150);
    let (code, out, _) = common::run(&h, &["data", "inspect", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("150 desirable (true) · 150 undesirable (false)"),
        "{out}"
    );
}

/// TRL's unpaired shapes (strings and message lists) are read as kto; a label that is not a
/// boolean is a located error, and alone it makes detection ask for --format.
#[test]
fn trl_shaped_files_are_detected_and_bad_labels_located() {
    let h = tempfile::tempdir().unwrap();
    let file = h.path().join("trl.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"prompt": "Hi", "completion": "Hello!", "label": true}"#,
            r#"{"prompt": "Hi", "completion": "Go away.", "label": false}"#,
            r#"{"prompt": "2+2?", "completion": "5", "label": false}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let (code, out, err) = common::run(&h, &["data", "inspect", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json_out(&out);
    assert_eq!(v["format"], "kto");
    assert_eq!(v["labels"]["desirable"], 1);
    assert_eq!(v["labels"]["undesirable"], 2);
    assert_eq!(
        v["samples"][1]["record"]["completion"][0]["content"],
        "Go away."
    );
    assert_eq!(v["samples"][1]["record"]["label"], false);

    let conv = h.path().join("conv.jsonl");
    std::fs::write(
        &conv,
        r#"{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"}], "label": true}
{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "No"}], "label": 0}
"#,
    )
    .unwrap();
    let (code, out, _) = common::run(&h, &["data", "validate", conv.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "line 2: label: expected true (desirable) or false (undesirable), found a number"
        ),
        "{out}"
    );
    let alone = h.path().join("alone.jsonl");
    std::fs::write(
        &alone,
        r#"{"prompt": "a", "completion": "b", "label": "good"}"#,
    )
    .unwrap();
    let (code, _, err) = common::run(&h, &["data", "inspect", alone.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("prompt-completion and kto"), "{err}");
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// kto → openai keeps only the desirable replies and counts the others; pairs → kto gives
/// two rated completions each; SFT → kto rates every reply desirable.
#[test]
fn conversions_both_ways() {
    let Some(dir) = common::shared_datasets("conversions_both_ways") else {
        return;
    };
    let h = tempfile::tempdir().unwrap();
    let convert = |src: &Path, to: &str, out: &Path| {
        let (code, _, err) = common::run(
            &h,
            &[
                "data",
                "convert",
                src.to_str().unwrap(),
                "--to",
                to,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{err}");
        err
    };
    let sft = h.path().join("sft.jsonl");
    let err = convert(&dir.join("kto_en_demo.json"), "openai", &sft);
    assert!(err.contains("150 of 300 records written"), "{err}");
    assert!(
        err.contains("undesirable completion (label false) left out: SFT trains only the desirable ones (150 records)"),
        "{err}"
    );
    let written = lines(&sft);
    assert_eq!(written.len(), 150);
    assert!(written[0]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .starts_with("Ooh ooh ah ah!"));

    let kto = h.path().join("kto.jsonl");
    let err = convert(&dir.join("dpo_en_demo.json"), "kto", &kto);
    assert!(err.contains("300 records read, 600 written"), "{err}");
    let rated = lines(&kto);
    assert_eq!(rated.len(), 600);
    assert_eq!(rated[0]["label"], true);
    assert_eq!(rated[1]["label"], false);
    assert_eq!(rated[0]["prompt"], rated[1]["prompt"]);
    assert_ne!(rated[0]["completion"], rated[1]["completion"]);
    let (code, out, _) = common::run(&h, &["data", "inspect", kto.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json_out(&out)["labels"]["undesirable"], 300);

    let back = h.path().join("rated.jsonl");
    let err = convert(&sft, "kto", &back);
    assert!(
        err.contains("conversation written as a desirable completion (label true) (150 records)"),
        "{err}"
    );
    let rated = lines(&back);
    assert!(rated.iter().all(|r| r["label"] == true));
    // messages in, messages out: the LLaMA-Factory shape round-trips.
    assert_eq!(rated[0]["messages"], written[0]["messages"]);
}

/// A home with the demo workspace.
fn home() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    h
}

fn events(run: &Path) -> Vec<Value> {
    common::event_lines(&RunDir::new(run).events_path())
}

fn start(run: &Path) -> Value {
    events(run)
        .into_iter()
        .find(|e| e["type"] == "start")
        .unwrap()
}

fn train(h: &tempfile::TempDir, args: &[&str], run: &Path) -> String {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    all.extend(["--run-dir", run.to_str().unwrap()]);
    let (code, _, err) = common::run(h, &all);
    assert_eq!(code, 0, "{err}");
    err
}

/// SFT on rated data trains only the desirable replies and says how many it left out;
/// `data.train_undesirable` includes them, as asked.
#[test]
fn sft_on_rated_data_never_trains_undesirable_replies_silently() {
    let h = home();
    let kto = h.path().join("data/demo/persona_kto.jsonl");
    let data = format!("data.train={}", kto.display());
    let run = h.path().join("sft");
    let args = ["tiny-demo", "--set", &data, "--set", "train.max_steps=2"];
    train(&h, &args, &run);
    let s = start(&run);
    assert_eq!(s["undesirable_skipped"], 90, "{s}");
    assert_eq!(
        s["train_sequences"].as_u64().unwrap() + s["eval_examples"].as_u64().unwrap(),
        90
    );
    let all = h.path().join("sft-all");
    let mut args = args.to_vec();
    args.extend(["--set", "data.train_undesirable=true"]);
    train(&h, &args, &all);
    let s = start(&all);
    assert!(s.get("undesirable_skipped").is_none(), "{s}");
    assert_eq!(
        s["train_sequences"].as_u64().unwrap() + s["eval_examples"].as_u64().unwrap(),
        180
    );
    // KTO refuses plain SFT data with what it needs; DPO points rated data at KTO.
    let sft = h.path().join("data/demo/persona.jsonl");
    let data = format!("data.train={}", sft.display());
    let (code, _, err) = common::run(
        &h,
        &[
            "train",
            "tiny-demo-kto",
            "--set",
            &data,
            "--run-dir",
            h.path().join("x").to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("KTO (train.method: kto) needs completions rated one at a time"),
        "{err}"
    );
    let data = format!("data.train={}", kto.display());
    let (code, _, err) = common::run(
        &h,
        &[
            "train",
            "tiny-demo-dpo",
            "--set",
            &data,
            "--run-dir",
            h.path().join("y").to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("train with train.method: kto"), "{err}");
}

fn fixture() -> Value {
    let p = common::fixture("kto/expected.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn examples(exp: &Value) -> Vec<Rated> {
    exp["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Rated {
            prompt: serde_json::from_value(e["prompt"].clone()).unwrap(),
            completion: serde_json::from_value(e["completion"].clone()).unwrap(),
            desirable: e["label"].as_bool().unwrap(),
            prompt_text: String::new(),
        })
        .collect()
}

fn policy() -> Model {
    let dir = common::fixture("models/llama");
    let mut m = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
    tunelab::model::peft::load(&mut m, &dir.join("adapter")).unwrap();
    m
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-8)
}

/// A metric within 1e-5 relative; rewards and the KL point are differences of log-prob
/// sums near each other (f32 sums of about −10 whose difference may be 1e-3), so they are
/// held to 1e-5 relative to the sums they are differences of (times β for rewards).
fn metric_close(k: &str, got: f64, want: f64, beta: f64, logp_scale: f64) -> bool {
    let scale = match k {
        "kl" => logp_scale,
        k if k.starts_with("rewards/") => beta * logp_scale,
        _ => want.abs(),
    };
    (got - want).abs() <= 1e-5 * scale.max(want.abs()).max(1e-8)
}

/// One batch of the fixture's four rated completions (TRL's rotation for the KL rows):
/// reference log-probs, the loss, KL estimate and metrics within 1e-5 relative, held out and
/// in a training micro-batch on both step paths, and the LoRA gradients within 1e-4 of the
/// largest entry. The `kl_off` case checks the loss without its KL term.
#[test]
fn loss_kl_rewards_and_gradients_match_torch() {
    let exp = fixture();
    let xs = examples(&exp);
    let items: Vec<usize> = (0..xs.len()).collect();
    let cases = exp["cases"].as_object().unwrap();
    assert!(cases.len() >= 2);
    let mut checked = 0;
    for (name, case) in cases {
        let cfg = KtoSection {
            beta: case["beta"].as_f64().unwrap(),
            desirable_weight: case["desirable_weight"].as_f64().unwrap(),
            undesirable_weight: case["undesirable_weight"].as_f64().unwrap(),
            ..Default::default()
        };
        let want_loss = case["loss"].as_f64().unwrap();
        if case["kl_zero"].as_bool() == Some(true) {
            // No KL term: the same formulas with the reference point at 0.
            let p = (&cfg).into();
            let loss: f64 = (0..xs.len())
                .map(|i| {
                    let (pol, r) = (
                        exp["policy"]["logps"][i].as_f64().unwrap(),
                        exp["reference"]["logps"][i].as_f64().unwrap(),
                    );
                    tunelab::train::kto::rated_terms(&p, pol, r, xs[i].desirable, 0.0).loss
                })
                .sum::<f64>()
                / xs.len() as f64;
            assert!(
                close(loss, want_loss, 1e-9),
                "{name}: {loss} vs {want_loss}"
            );
            continue;
        }
        let model = policy();
        let kto = Kto::new(
            xs.clone(),
            xs.clone(),
            0,
            &cfg,
            xs.len(),
            None,
            Reference::Bypass,
            String::new(),
        );
        assert_eq!(kto.train_partner, vec![3, 0, 1, 2], "TRL's rotation");
        let refs = kto.reference_logps(&model, true, &items).unwrap();
        for (i, (r, r_kl)) in refs.iter().enumerate() {
            let want = exp["reference"]["logps"][i].as_f64().unwrap();
            let want_kl = exp["reference"]["kl_logps"][i].as_f64().unwrap();
            assert!(close(*r, want, 1e-5), "{r} vs {want}");
            assert!(close(*r_kl, want_kl, 1e-5), "{r_kl} vs {want_kl}");
        }
        let logp_scale = ["policy", "reference"]
            .iter()
            .flat_map(|w| {
                exp[w]["logps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .chain(exp[w]["kl_logps"].as_array().unwrap())
            })
            .map(|v| v.as_f64().unwrap().abs())
            .fold(0.0, f64::max);
        let out = kto.evaluate_items(&model, &items, xs.len()).unwrap();
        assert!(
            close(out.loss, want_loss, 1e-5),
            "{name}: {} vs {want_loss}",
            out.loss
        );
        assert!(
            case["kl"].as_f64().unwrap() > 0.0,
            "the fixture exercises the KL term"
        );
        for (k, v) in case["metrics"].as_object().unwrap() {
            let (got, want) = (
                out.metrics.get(k).copied().unwrap_or(f64::NAN),
                v.as_f64().unwrap(),
            );
            assert!(
                metric_close(k, got, want, cfg.beta, logp_scale),
                "{name}: {k} {got} vs {want}"
            );
        }
        for manual in [true, false] {
            let m = policy();
            let window = kto.window(&items);
            let args = StepArgs {
                window_targets: window.units,
                dropout_seed: None,
                checkpointing: !manual,
                autograd: !manual,
                temperature: 1.0,
            };
            let vars = m.lora_vars();
            let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
            let micro = kto
                .micro_step(&m, &items, window, &args, &mut grads)
                .unwrap();
            assert!(
                close(micro.loss, want_loss, 1e-5),
                "{name} (manual {manual}): {} vs {want_loss}",
                micro.loss
            );
            for (k, v) in case["metrics"].as_object().unwrap() {
                let got = micro.metrics.get(k).copied().unwrap_or(f64::NAN);
                assert!(
                    metric_close(k, got, v.as_f64().unwrap(), cfg.beta, logp_scale),
                    "{name}: train {k} {got} vs {v}"
                );
            }
            common::assert_grads_match_fixture(
                &vars,
                &grads,
                &format!("kto/grads_{name}.safetensors"),
                &format!("{name} (manual {manual})"),
            );
        }
        checked += 1;
    }
    assert!(checked >= 2);
}

/// The demo's rated persona replies: a fresh adapter starts with zero rewards and a loss of
/// ½ (λ·(1 − σ(0))), then the desirable/undesirable reward gap opens and the desirable
/// replies become likelier. With a precomputed reference every loss is the same.
#[test]
fn kto_on_the_demo_opens_the_reward_gap() {
    let h = home();
    let run = h.path().join("kto");
    train(&h, &["tiny-demo-kto", "--set", "train.max_steps=40"], &run);
    let s = start(&run);
    assert_eq!(s["method"], "kto");
    assert_eq!(
        (s["desirable"].as_u64(), s["undesirable"].as_u64()),
        (Some(90), Some(90))
    );
    let all = events(&run);
    let first = all.iter().find(|e| e["type"] == "train").unwrap();
    assert!(
        (first["loss"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "{first}"
    );
    assert_eq!(first["rewards/chosen"], 0.0);
    let evals: Vec<&Value> = all.iter().filter(|e| e["type"] == "eval").collect();
    let (a, b) = (evals[0], *evals.last().unwrap());
    assert_eq!(a["rewards/margins"], 0.0);
    assert!(b["rewards/margins"].as_f64().unwrap() > 2.0, "{b}");
    assert!(b["rewards/chosen"].as_f64().unwrap() > 0.0, "{b}");
    assert!(b["rewards/rejected"].as_f64().unwrap() < 0.0, "{b}");
    assert!(b["logps/chosen"].as_f64().unwrap() > a["logps/chosen"].as_f64().unwrap());
    assert!(b["eval_loss"].as_f64().unwrap() < 0.25, "{b}");
    assert!(b["kl"].as_f64().unwrap() >= 0.0);

    let pre = h.path().join("kto-pre");
    let log = train(
        &h,
        &[
            "tiny-demo-kto",
            "--set",
            "train.max_steps=40",
            "--set",
            "kto.precompute_ref=true",
        ],
        &pre,
    );
    assert!(pre.join("reference_logps.json").is_file(), "{log}");
    let losses = |run: &Path| -> Vec<f64> {
        events(run)
            .iter()
            .filter(|e| e["type"] == "train")
            .map(|e| e["loss"].as_f64().unwrap())
            .collect()
    };
    let (with, without) = (losses(&pre), losses(&run));
    assert_eq!(with.len(), 40);
    for (i, (x, y)) in with.iter().zip(&without).enumerate() {
        assert!((x - y).abs() < 1e-6, "step {}: {x} vs {y}", i + 1);
    }
}

/// Through `tunelab eval --kto` on the fixture's four rated completions (a word-level
/// tokenizer maps the fixture's ids 1:1; `--batch-size 4` gives TRL's rotation): every case's
/// loss and metrics equal torch's; with the reference adapter equal to the policy's, every
/// reward is 0 and the loss is each weight's half.
#[test]
fn eval_kto_matches_torch() {
    let exp = fixture();
    let h = tempfile::tempdir().unwrap();
    let model = common::fixture_model_with_ids_tokenizer(h.path());
    let words = |ids: &Value| -> String {
        ids.as_array()
            .unwrap()
            .iter()
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let lines: Vec<String> = exp["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::json!({"prompt": words(&e["prompt"]), "completion": words(&e["completion"]),
                "label": e["label"]})
            .to_string()
        })
        .collect();
    let data = h.path().join("rated.jsonl");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let adapter = common::fixture("models/llama/adapter");
    let base = [
        "eval",
        "--kto",
        "--template",
        "chatml",
        "--json",
        "--batch-size",
        "4",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let mut checked = 0;
    for (name, case) in exp["cases"].as_object().unwrap() {
        if case["kl_zero"].as_bool() == Some(true) {
            continue;
        }
        let f = |k: &str| case[k].as_f64().unwrap().to_string();
        let (beta, d, u) = (f("beta"), f("desirable_weight"), f("undesirable_weight"));
        let mut args = base.to_vec();
        args.extend([
            "--beta",
            &beta,
            "--desirable-weight",
            &d,
            "--undesirable-weight",
            &u,
        ]);
        let (code, out, err) = common::run(&h, &args);
        assert_eq!(code, 0, "{name}: {err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["examples"], 4);
        let (got, want) = (v["loss"].as_f64().unwrap(), case["loss"].as_f64().unwrap());
        assert!(close(got, want, 1e-5), "{name}: loss {got} vs {want}");
        let kl = v["kl"].as_f64().unwrap();
        assert!(
            (kl - case["kl"].as_f64().unwrap()).abs() < 1e-4,
            "{name}: kl {kl}"
        );
        checked += 1;
    }
    assert!(checked >= 3);
    let mut args = base.to_vec();
    args.extend(["--ref-adapter", adapter.to_str().unwrap()]);
    let (code, out, err) = common::run(&h, &args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rewards/margins"], 0.0, "{v}");
    assert_eq!(v["kl"], 0.0, "{v}");
    assert!((v["loss"].as_f64().unwrap() - 0.5).abs() < 1e-12, "{v}");
}
