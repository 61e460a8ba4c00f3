//! Preference training: the DPO-family losses, reward metrics and LoRA gradients against a
//! torch fixture (tests/reference/make_dpo_fixture.py, TRL's formulas), through
//! `tunelab eval --dpo` and through the trainer's objective on both step paths; a fresh
//! adapter's first step; the demo pairs learned; DPO started from an SFT run; exact resume
//! after SIGKILL with a precomputed reference.

use crate::common;
use candle_core::{DType, Device};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tunelab::batch::pairs::Pair;
use tunelab::config::DpoSection;
use tunelab::model::Model;
use tunelab::runs::{RunDir, RunState};
use tunelab::train::dpo::{Dpo, Reference};
use tunelab::train::micro::StepArgs;
use tunelab::train::objective::Objective;
use tunelab::train::Grads;

fn fixture() -> Value {
    let p = common::fixture("dpo/expected.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn pairs(exp: &Value) -> Vec<Pair> {
    exp["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ids = |k: &str| -> Vec<u32> { serde_json::from_value(p[k].clone()).unwrap() };
            Pair {
                prompt: ids("prompt"),
                chosen: ids("chosen"),
                rejected: ids("rejected"),
                prompt_text: String::new(),
            }
        })
        .collect()
}

fn policy() -> Model {
    let dir = common::fixture("models/llama");
    let mut m = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
    tunelab::model::peft::load(&mut m, &dir.join("adapter")).unwrap();
    m
}

fn section(case: &Value) -> DpoSection {
    DpoSection {
        loss: case["loss_type"].as_str().unwrap().parse().unwrap(),
        beta: case["beta"].as_f64().unwrap(),
        label_smoothing: case["label_smoothing"].as_f64().unwrap(),
        simpo_gamma: case["simpo_gamma"].as_f64().unwrap(),
        rpo_alpha: case["rpo_alpha"].as_f64(),
        ..Default::default()
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-8)
}

/// Per-sequence log-probs, then every case's loss, metrics and gradients, inside the
/// trainer's objective on the hand-written backward and on autograd.
#[test]
fn losses_metrics_and_gradients_match_torch() {
    let exp = fixture();
    let ps = pairs(&exp);
    let model = policy();
    // The policy's and the reference's per-sequence log-probs.
    let d = Dpo::new(
        ps.clone(),
        ps.clone(),
        0,
        &DpoSection::default(),
        Reference::Bypass,
        String::new(),
    );
    let refs: Vec<&Pair> = ps.iter().collect();
    let got_ref = d.reference_logps(&model, &refs).unwrap();
    let mb = tunelab::batch::pairs::collate_pairs(&refs, 0);
    let got_pol = tunelab::eval::row_logps(&model, &mb).unwrap();
    for i in 0..ps.len() {
        let want = |who: &str, side: &str| exp[who][side][i].as_f64().unwrap();
        assert!(close(got_ref[i].0, want("reference", "chosen"), 1e-5));
        assert!(close(got_ref[i].1, want("reference", "rejected"), 1e-5));
        assert!(
            close(got_pol[i].0, want("policy", "chosen"), 1e-5),
            "{} vs {}",
            got_pol[i].0,
            want("policy", "chosen")
        );
        assert!(close(
            got_pol[ps.len() + i].0,
            want("policy", "rejected"),
            1e-5
        ));
    }
    let cases = exp["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 7);
    for (name, case) in cases {
        let cfg = section(case);
        let reference = if cfg.loss.needs_reference() {
            Reference::Bypass
        } else {
            Reference::None
        };
        let d = Dpo::new(ps.clone(), ps.clone(), 0, &cfg, reference, String::new());
        // Held-out evaluation: loss and metrics.
        let out = d.evaluate(&model, 8).unwrap().unwrap();
        let want_loss = case["loss"].as_f64().unwrap();
        assert!(
            close(out.loss, want_loss, 1e-5),
            "{name}: loss {} vs {want_loss}",
            out.loss
        );
        for (k, v) in case["metrics"].as_object().unwrap() {
            let got = out.metrics.get(k).copied().unwrap_or(f64::NAN);
            let want = v.as_f64().unwrap();
            assert!(
                close(got, want, 1e-5) || (got - want).abs() < 1e-9,
                "{name}: {k} {got} vs {want}"
            );
        }
        // One training micro-batch of every pair: the same loss, and LoRA gradients.
        for manual in [true, false] {
            let m = policy();
            let items: Vec<usize> = (0..ps.len()).collect();
            let window = d.window(&items);
            let args = StepArgs {
                window_targets: window.units,
                dropout_seed: None,
                checkpointing: !manual,
                autograd: !manual,
                temperature: 1.0,
            };
            let vars = m.lora_vars();
            let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
            let micro = d.micro_step(&m, &items, window, &args, &mut grads).unwrap();
            assert!(
                close(micro.loss, want_loss, 1e-5),
                "{name} (manual {manual}): step loss {} vs {want_loss}",
                micro.loss
            );
            common::assert_grads_match_fixture(
                &vars,
                &grads,
                &format!("dpo/grads_{name}.safetensors"),
                &format!("{name} (manual {manual})"),
            );
        }
    }
}

/// Through `tunelab eval --dpo`: every case's loss and metrics equal torch's; with the
/// reference adapter equal to the policy's, the loss is ln 2 and the rewards are 0.
#[test]
fn eval_dpo_matches_torch_on_every_loss() {
    let exp = fixture();
    let h = tempfile::tempdir().unwrap();
    let model = common::fixture_model_with_ids_tokenizer(h.path());
    let words = |k: &str, p: &Value| -> String {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let lines: Vec<String> = exp["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            serde_json::json!({"prompt": words("prompt", p), "chosen": words("chosen", p),
                "rejected": words("rejected", p)})
            .to_string()
        })
        .collect();
    let data = h.path().join("pairs.jsonl");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let adapter = common::fixture("models/llama/adapter");
    let base = [
        "eval",
        "--dpo",
        "--template",
        "chatml",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    for (name, case) in exp["cases"].as_object().unwrap() {
        let cfg = section(case);
        let (beta, eps, gamma) = (
            cfg.beta.to_string(),
            cfg.label_smoothing.to_string(),
            cfg.simpo_gamma.to_string(),
        );
        let mut args = base.to_vec();
        args.extend([
            "--loss",
            case["loss_type"].as_str().unwrap(),
            "--beta",
            &beta,
        ]);
        args.extend(["--label-smoothing", &eps, "--simpo-gamma", &gamma]);
        let alpha = cfg.rpo_alpha.map(|a| a.to_string());
        if let Some(a) = &alpha {
            args.extend(["--rpo-alpha", a]);
        }
        let (code, out, err) = common::run(&h, &args);
        assert_eq!(code, 0, "{name}: {err}");
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["pairs"], 3, "{name}");
        let want = case["loss"].as_f64().unwrap();
        let got = v["loss"].as_f64().unwrap();
        assert!(close(got, want, 1e-5), "{name}: loss {got} vs {want}");
        for (k, w) in case["metrics"].as_object().unwrap() {
            let (got, w) = (v[k].as_f64().unwrap_or(f64::NAN), w.as_f64().unwrap());
            assert!(
                close(got, w, 1e-5) || (got - w).abs() < 1e-9,
                "{name}: {k} {got} vs {w}"
            );
        }
    }
    let mut args = base.to_vec();
    args.extend(["--ref-adapter", adapter.to_str().unwrap()]);
    let (code, out, err) = common::run(&h, &args);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        (v["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(v["rewards/margins"], 0.0, "{v}");
}

/// `tunelab eval --dpo` prints the fixture's numbers under the documented keys.
#[test]
fn eval_dpo_reports_the_loss_and_rewards() {
    let h = home();
    let demo = h.path().join("data/demo");
    let (code, out, err) = common::run(
        &h,
        &[
            "eval",
            "--dpo",
            "--model",
            demo.join("tiny-model").to_str().unwrap(),
            "--data",
            demo.join("persona_dpo.jsonl").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    // No adapter: the policy is the reference, so the loss is ln 2 and rewards are 0.
    assert!(
        (v["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-9,
        "{v}"
    );
    for k in [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
    ] {
        assert_eq!(v[k], 0.0, "{k}: {v}");
    }
    assert!(v["logps/chosen"].as_f64().unwrap() < 0.0);
    assert_eq!(v["pairs"], 90);
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

fn evals(run: &Path) -> Vec<Value> {
    events(run)
        .into_iter()
        .filter(|e| e["type"] == "eval")
        .collect()
}

fn train(h: &tempfile::TempDir, args: &[&str], run: &Path) {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    all.extend(["--run-dir", run.to_str().unwrap()]);
    let (code, _, err) = common::run(h, &all);
    assert_eq!(code, 0, "{err}");
}

/// The demo pairs from scratch: the first step of a fresh adapter is ln 2 with zero rewards,
/// then eval reward accuracy reaches 0.8 and the margins grow.
#[test]
fn the_demo_pairs_are_learned() {
    let h = home();
    let run = h.path().join("dpo");
    train(&h, &["tiny-demo-dpo", "--set", "train.max_steps=60"], &run);
    let first = events(&run)
        .into_iter()
        .find(|e| e["type"] == "train")
        .unwrap();
    assert!((first["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-9);
    for k in ["rewards/chosen", "rewards/rejected", "rewards/margins"] {
        assert_eq!(first[k], 0.0, "{k}");
    }
    let e = evals(&run);
    let (a, b) = (&e[0], e.last().unwrap());
    assert_eq!(a["rewards/margins"], 0.0);
    assert!(b["rewards/accuracies"].as_f64().unwrap() >= 0.8, "{b}");
    assert!(b["rewards/margins"].as_f64().unwrap() > 1.0, "{b}");
    assert!(
        b["eval_loss"].as_f64().unwrap() < 0.5 * std::f64::consts::LN_2,
        "{b}"
    );
    let start = events(&run)
        .into_iter()
        .find(|e| e["type"] == "start")
        .unwrap();
    assert_eq!(start["method"], "dpo");
    assert_eq!(start["train_sequences"], 81, "pairs");
}

/// DPO started from the tiny SFT run: the policy starts as the SFT adapter and the reference
/// is a frozen copy of it, so the first loss is ln 2 again, and the result is one adapter.
#[test]
fn dpo_starts_from_an_sft_run() {
    let h = home();
    let sft = h.path().join("sft");
    train(&h, &["tiny-demo", "--set", "train.max_steps=40"], &sft);
    let run = h.path().join("dpo");
    let init = format!("dpo.init_adapter={}", sft.display());
    train(
        &h,
        &[
            "tiny-demo-dpo",
            "--set",
            "train.max_steps=40",
            "--set",
            &init,
        ],
        &run,
    );
    let first = events(&run)
        .into_iter()
        .find(|e| e["type"] == "train")
        .unwrap();
    assert!((first["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-9);
    let e = evals(&run);
    assert!(e.last().unwrap()["rewards/accuracies"].as_f64().unwrap() >= 0.8);
    let cfg = tunelab::config::RunConfig::load(&RunDir::new(&run).config()).unwrap();
    assert_eq!(
        PathBuf::from(cfg.dpo.init_adapter.unwrap()),
        std::path::absolute(sft.join("adapter")).unwrap()
    );
    // The adapter is on the original base: PEFT's file names it.
    let ac: Value =
        serde_json::from_slice(&std::fs::read(run.join("adapter/adapter_config.json")).unwrap())
            .unwrap();
    assert!(ac["base_model_name_or_path"]
        .as_str()
        .unwrap()
        .ends_with("tiny-model"));
    // At step 0 the policy is the reference: no margin yet.
    assert_eq!(e[0]["step"], 0);
    assert_eq!(e[0]["rewards/margins"], 0.0, "{}", e[0]);
    // The policy moved away from the SFT adapter it started from, with the same shapes.
    let load = |d: &Path| {
        candle_core::safetensors::load(d.join("adapter/adapter_model.safetensors"), &Device::Cpu)
            .unwrap()
    };
    let (a, b) = (load(&sft), load(&run));
    assert_eq!(a.len(), b.len());
    let mut moved = 0f32;
    for (k, t) in &a {
        let u = &b[k];
        assert_eq!(t.dims(), u.dims(), "{k}");
        moved = moved.max(common::max_abs_diff(t, u));
    }
    assert!(moved > 1e-4, "the DPO adapter equals the SFT adapter");
}

/// SIGKILL mid-run, then `--resume`: every later loss equals the uninterrupted run, and the
/// precomputed reference is read back instead of computed again.
#[test]
fn resume_after_sigkill_is_exact_with_a_precomputed_reference() {
    let h = home();
    let args = [
        "tiny-demo-dpo",
        "--set",
        "train.max_steps=24",
        "--set",
        "train.save_every=8",
        "--set",
        "train.eval_every=0",
        "--set",
        "dpo.precompute_ref=true",
        "--set",
        "lora.dropout=0.1",
    ];
    let a = h.path().join("a");
    train(&h, &args, &a);
    assert!(a.join("reference_logps.json").is_file());
    let b = h.path().join("b");
    let mut all = vec!["train"];
    all.extend_from_slice(&args);
    all.extend(["--run-dir", b.to_str().unwrap()]);
    let mut child = common::tunelab(&h)
        .args(&all)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let last = |run: &Path| {
        events(run)
            .iter()
            .filter(|e| e["type"] == "train")
            .filter_map(|e| e["step"].as_u64())
            .max()
            .unwrap_or(0)
    };
    let t = Instant::now();
    while last(&b) < 12 {
        assert!(t.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(last(&b) < 24, "the run finished before it was killed");
    common::ok(h.path(), &["train", "--resume", b.to_str().unwrap()]);
    let losses = |run: &Path| -> std::collections::BTreeMap<u64, f64> {
        events(run)
            .into_iter()
            .filter(|e| e["type"] == "train")
            .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
            .collect()
    };
    let (la, lb) = (losses(&a), losses(&b));
    assert_eq!(la.len(), 24);
    for step in 1..=24 {
        assert!(
            (la[&step] - lb[&step]).abs() <= 1e-5,
            "step {step}: uninterrupted {}, resumed {}",
            la[&step],
            lb[&step]
        );
    }
    let log = std::fs::read_to_string(b.join("train.log")).unwrap();
    assert!(
        log.contains("reference log-probs read from reference_logps.json"),
        "{log}"
    );
    assert_eq!(RunDir::new(&b).read_status().unwrap().state, RunState::Done);
}

/// Pairs are cut as TRL cuts them (prompt kept from the end, completions cut), and
/// `data stats` counts the same truncated and dropped pairs as the run's start event.
#[test]
fn truncation_counts_agree_between_stats_and_the_run() {
    let h = home();
    let demo = h.path().join("data/demo");
    let data = demo.join("persona_dpo.jsonl");
    let model = demo.join("tiny-model");
    let stats = |seq: &str, prompt: &str| -> Value {
        let (code, out, err) = common::run(
            &h,
            &[
                "data",
                "stats",
                data.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--max-seq-len",
                seq,
                "--max-prompt-len",
                prompt,
                "--json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["tokens"].clone()
    };
    let t = stats("2048", "512");
    assert_eq!(
        (t["truncated"].as_u64(), t["dropped"].as_u64()),
        (Some(0), Some(0)),
        "{t}"
    );
    let t = stats("16", "6");
    assert_eq!(
        (t["truncated"].as_u64(), t["dropped"].as_u64()),
        (Some(90), Some(0)),
        "{t}"
    );
    // The longest chat-formatted prompts fill all 16 tokens: no room for a completion.
    let t = stats("16", "16");
    let (truncated, dropped) = (
        t["truncated"].as_u64().unwrap(),
        t["dropped"].as_u64().unwrap(),
    );
    assert_eq!((truncated, dropped), (87, 3), "{t}");
    let run = h.path().join("cut");
    train(
        &h,
        &[
            "tiny-demo-dpo",
            "--set",
            "train.max_steps=1",
            "--set",
            "data.max_seq_len=16",
            "--set",
            "data.max_prompt_len=16",
        ],
        &run,
    );
    let start = events(&run)
        .into_iter()
        .find(|e| e["type"] == "start")
        .unwrap();
    assert_eq!(
        start["truncated_examples"].as_u64(),
        Some(truncated),
        "{start}"
    );
    assert_eq!(start["dropped_examples"].as_u64(), Some(dropped), "{start}");
}
