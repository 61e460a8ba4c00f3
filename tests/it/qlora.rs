//! QLoRA's frozen base: projections quantized at load time (q8_0, q4_0, q4k, with llama.cpp's
//! fallbacks), the hand-written backward through them equal to a dense model holding
//! `dequant(quant(W))` and to autograd, the bytes `model info` reports, the eval loss each
//! format costs, and the tiny preset trained on a quantized base.

use crate::common;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tunelab::batch::{collate, Sequence};
use tunelab::lora::LoraConfig;
use tunelab::model::decoder::Weight;
use tunelab::model::{Model, Quantization};
use tunelab::train::grads::GradSource;
use tunelab::train::micro::StepArgs;
use tunelab::train::step::forward_backward;
use tunelab::train::Grads;

/// A random model whose widths every block type takes (hidden 256, intermediate 512).
fn wide_model(dir: &Path) -> PathBuf {
    let h = tempfile::tempdir().unwrap();
    let out = dir.join("m256");
    let (code, _, err) = common::run(
        &h,
        &[
            "model",
            "init-tiny",
            "-o",
            out.to_str().unwrap(),
            "--hidden",
            "256",
            "--layers",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    out
}

/// The same model with every quantized weight replaced by its dequantized matrix.
fn dequantized(m: &Model) -> Model {
    let mut d = m.clone();
    for b in &mut d.layers {
        for (_, _, l) in b.linears_mut() {
            if !matches!(l.weight, Weight::Dense(_)) {
                l.weight = Weight::Dense(l.weight.matrix(DType::F32).unwrap());
            }
        }
    }
    d
}

fn batch(vocab: u32) -> tunelab::batch::MicroBatch {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let rows: Vec<Sequence> = [12usize, 9]
        .iter()
        .map(|&n| {
            let ids: Vec<u32> = (0..n).map(|_| rng.random_range(3..vocab)).collect();
            Sequence {
                labels: ids.iter().map(|&i| i64::from(i)).collect(),
                position_ids: (0..n as u32).collect(),
                input_ids: ids,
            }
        })
        .collect();
    collate(&rows.iter().collect::<Vec<_>>(), 0)
}

/// LoRA on every projection with a nonzero B, so A's gradients are nonzero too.
fn with_lora(m: &mut Model) {
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
    };
    m.add_lora(&cfg, 3).unwrap();
    for (name, v) in m.lora_vars() {
        if name.contains("lora_B") {
            let t = Tensor::randn(0f32, 0.05, v.shape(), &Device::Cpu).unwrap();
            v.set(&t).unwrap();
        }
    }
}

fn grads(m: &Model, autograd: bool) -> (f64, Grads) {
    let mb = batch(m.config.vocab_size as u32);
    let vars: Vec<_> = m.lora_vars().into_iter().map(|(_, v)| v).collect();
    let mut g = Grads::new(vars);
    let args = StepArgs {
        window_targets: mb.targets,
        dropout_seed: None,
        checkpointing: false,
        autograd,
        temperature: 1.0,
    };
    let l = forward_backward(m, &mb, &args, &mut g).unwrap();
    (l.loss, g)
}

fn assert_same_grads(m: &Model, a: &Grads, b: &Grads, what: &str) {
    for (name, v) in m.lora_vars() {
        let (x, y) = (a.grad(&v).unwrap(), b.grad(&v).unwrap());
        let (diff, scale) = (common::max_abs_diff(&x, &y), common::max_abs(&y));
        assert!(scale > 0.0, "{what}: {name} has a zero gradient");
        assert!(
            diff <= 1e-4 * scale,
            "{what}: {name} off by {diff} (scale {scale})"
        );
    }
}

/// Through a q8_0, q4_0, q4k and nf4 base, the hand-written backward's LoRA gradients equal
/// a dense model holding `dequant(quant(W))` and autograd's through the quantized base.
#[test]
fn quantized_base_gradients_equal_the_dequantized_dense_model() {
    let h = tempfile::tempdir().unwrap();
    let dir = wide_model(h.path());
    for q in [
        Quantization::Q8_0,
        Quantization::Q4_0,
        Quantization::Q4k,
        Quantization::Nf4,
    ] {
        let (mut m, report) =
            Model::load_quantized(&dir, DType::F32, &Device::Cpu, q.into()).unwrap();
        assert!(report.fallbacks.is_empty(), "{q}: {:?}", report.fallbacks);
        assert!(m.is_quantized());
        with_lora(&mut m);
        let dense = dequantized(&m);
        assert!(!dense.is_quantized());
        let (lq, gq) = grads(&m, false);
        let (ld, gd) = grads(&dense, false);
        assert!((lq - ld).abs() <= 1e-5 * ld.abs(), "{q}: loss {lq} vs {ld}");
        assert_same_grads(&m, &gq, &gd, &format!("{q} vs dense"));
        let (la, ga) = grads(&m, true);
        assert!((lq - la).abs() <= 1e-5 * la.abs(), "{q}: loss {lq} vs {la}");
        assert_same_grads(&m, &gq, &ga, &format!("{q} vs autograd"));
    }
}

/// `model info --quantization` reports the base's bytes: 8.5 bits per weight for q8_0, 4.5
/// for q4_0 and q4k; the demo's 64-wide model makes q4k fall back to q5_0, named.
#[test]
fn model_info_reports_the_quantized_bytes_and_fallbacks() {
    let h = tempfile::tempdir().unwrap();
    let dir = wide_model(h.path());
    let info = |q: &str, dir: &Path| -> Value {
        let (code, out, err) = common::run(
            &h,
            &[
                "model",
                "info",
                dir.to_str().unwrap(),
                "--quantization",
                q,
                "--json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let none = info("none", &dir);
    assert_eq!(none["quantized_params"], 0);
    let params = none["params"].as_u64().unwrap();
    assert_eq!(none["base_bytes"].as_u64().unwrap(), params * 4, "f32");
    // 2 layers × (4·256² q,o… ): the seven projections of both layers.
    let projections = 2 * (256 * 256 * 2 + 256 * 128 * 2 + 3 * 256 * 512);
    for (q, bits) in [("q8_0", 8.5), ("q4_0", 4.5), ("q4k", 4.5), ("nf4", 4.2)] {
        let v = info(q, &dir);
        assert_eq!(v["quantized_params"], projections, "{q}");
        let got = v["bits_per_quantized_weight"].as_f64().unwrap();
        if q == "nf4" {
            // 4 + 8/64 + 32/16384 plus one f32 mean per matrix, with double quantization.
            assert!(got < bits && got > 4.12, "{q}: {got}");
        } else {
            assert_eq!(got, bits, "{q}");
        }
        let rest = (params - projections) * 4;
        let measured = v["base_bytes"].as_u64().unwrap();
        assert_eq!(
            measured,
            rest + v["quantized_bytes"].as_u64().unwrap(),
            "{q}"
        );
        // The Adapter tab's estimate predicts it exactly.
        let cfg = tunelab::model::ModelConfig::from_file(&dir.join("config.json")).unwrap();
        let quant: Quantization = q.parse().unwrap();
        assert_eq!(
            tunelab::model::estimate::base_bytes(&cfg, &quant.into(), 4),
            measured,
            "{q}"
        );
    }
    // `--quantize-head`: the untied 512 × 256 head joins the quantized matrices, and the
    // estimate follows.
    let (code, out, err) = common::run(
        &h,
        &[
            "model",
            "info",
            dir.to_str().unwrap(),
            "--quantization",
            "q4k",
            "--quantize-head",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["quantized_params"], projections + 512 * 256);
    let cfg = tunelab::model::ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let plan = tunelab::model::QuantPlan {
        quantization: Quantization::Q4k,
        head: true,
        cache: None,
    };
    assert_eq!(
        tunelab::model::estimate::base_bytes(&cfg, &plan, 4),
        v["base_bytes"].as_u64().unwrap()
    );
    let demo = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&demo, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let tiny = demo.path().join("data/demo/tiny-model");
    let v = info("q4k", &tiny);
    let f = v["fallbacks"].as_array().unwrap();
    assert_eq!(f.len(), 14, "every projection of the 64-wide model");
    assert_eq!(f[0]["used"], "q5_0");
    assert_eq!(f[0]["wanted"], "q4k");
    let cfg = tunelab::model::ModelConfig::from_file(&tiny.join("config.json")).unwrap();
    assert_eq!(
        tunelab::model::estimate::base_bytes(&cfg, &Quantization::Q4k.into(), 4),
        v["base_bytes"].as_u64().unwrap(),
        "fallbacks included"
    );
    let (code, out, _) = common::run(
        &h,
        &[
            "model",
            "info",
            tiny.to_str().unwrap(),
            "--quantization",
            "q4k",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("14 matrices fell back to q5_0"), "{out}");
    // nf4 takes the 64-wide model's widths (blocks of 64) without fallbacks.
    let v = info("nf4", &tiny);
    assert_eq!(v["fallbacks"].as_array().unwrap().len(), 0, "{v}");
}

/// Mean loss of a fixed batch through each quantized base of a 256-wide random model,
/// against full precision, within about twice the measured margins (q8_0 1.9e-4, q4_0
/// 7.0e-3, q4k 1.2e-3, nf4 5.2e-3 relative; docs/src/qlora.md).
#[test]
fn eval_loss_through_each_quantized_base_stays_near_full_precision() {
    let h = tempfile::tempdir().unwrap();
    let dir = wide_model(h.path());
    let mb = batch(512);
    let loss = |q: Quantization| {
        let (m, _) = Model::load_quantized(&dir, DType::F32, &Device::Cpu, q.into()).unwrap();
        tunelab::eval::row_logps(&m, &mb)
            .unwrap()
            .iter()
            .map(|(s, _)| -s)
            .sum::<f64>()
            / mb.targets as f64
    };
    let full = loss(Quantization::None);
    for (q, margin) in [
        (Quantization::Q8_0, 5e-4),
        (Quantization::Q4_0, 1.5e-2),
        (Quantization::Q4k, 5e-3),
        (Quantization::Nf4, 1e-2),
    ] {
        let l = loss(q);
        let rel = (l - full).abs() / full;
        eprintln!("{q}: eval loss {l:.6} vs {full:.6} ({rel:.2e} relative)");
        assert!(rel < margin, "{q}: {l} vs {full}: {rel:.2e} ≥ {margin:.0e}");
    }
}

/// The tiny preset (600 steps) on a q4_0 base (the demo model's widths take q4_0, not q4k)
/// trains on the hand-written backward and ends within 10% of the unquantized run's eval
/// loss.
#[test]
fn the_tiny_preset_trains_on_a_quantized_base() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let train = |q: &str| -> (Value, f64) {
        let run = h.path().join(format!("run-{q}"));
        let set = format!("model.quantization={q}");
        common::ok(
            h.path(),
            &[
                "train",
                "tiny-demo",
                "--set",
                &set,
                "--run-dir",
                run.to_str().unwrap(),
            ],
        );
        let events = common::event_lines(&tunelab::runs::RunDir::new(&run).events_path());
        let start = events
            .iter()
            .find(|e| e["type"] == "start")
            .unwrap()
            .clone();
        let last = events.iter().rev().find(|e| e["type"] == "eval").unwrap()["eval_loss"]
            .as_f64()
            .unwrap();
        (start, last)
    };
    let (dense_start, dense) = train("none");
    let (start, quant) = train("q4_0");
    assert_eq!(dense_start["compute"], "dense base, hand-written backward");
    assert_eq!(start["compute"], "quantized base, hand-written backward");
    let summary = start["quantization"].as_str().unwrap();
    assert!(summary.starts_with("q4_0:"), "{summary}");
    assert!(start["base_bytes"].as_u64().unwrap() < dense_start["base_bytes"].as_u64().unwrap());
    eprintln!("tiny-demo eval loss: dense {dense:.4}, q4_0 {quant:.4}");
    assert!(
        (quant - dense).abs() <= 0.1 * dense,
        "q4_0 eval loss {quant} vs dense {dense}"
    );
    // The adapter is an ordinary PEFT adapter on the original base.
    assert!(h
        .path()
        .join("run-q4_0/adapter/adapter_model.safetensors")
        .is_file());
}

/// The LM head in chunks of target rows (an 8B model's 2048 × 128,256 logits never exist
/// at once) trains exactly as in one pass: the same losses, step for step, for SFT and DPO.
#[test]
fn the_head_in_chunks_trains_as_in_one_pass() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let losses = |preset: &str, chunk: Option<&str>| -> Vec<f64> {
        let run = h
            .path()
            .join(format!("{preset}-{}", chunk.unwrap_or("all")));
        let mut c = common::tunelab(&h);
        c.args([
            "train",
            preset,
            "--set",
            "train.max_steps=6",
            "--run-dir",
            run.to_str().unwrap(),
        ]);
        if let Some(n) = chunk {
            c.env("TUNELAB_HEAD_CHUNK_ROWS", n);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        common::event_lines(&tunelab::runs::RunDir::new(&run).events_path())
            .iter()
            .filter(|e| e["type"] == "train")
            .map(|e| e["loss"].as_f64().unwrap())
            .collect()
    };
    for preset in ["tiny-demo", "tiny-demo-dpo"] {
        let (one, chunked) = (losses(preset, None), losses(preset, Some("7")));
        assert_eq!(one.len(), 6);
        for (a, b) in one.iter().zip(&chunked) {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "{preset}: {a} vs {b}");
        }
    }
}

/// The quantized base is written once into the cache (a GGUF for q4k, a safetensors file of
/// its parts for nf4) and read back on later loads (the same blocks); a truncated or
/// corrupted entry is detected, reported and rebuilt.
#[test]
fn quantized_bases_are_cached_and_damaged_entries_rebuilt() {
    for (name, quantization, ext) in [
        ("q4k", Quantization::Q4k, "gguf"),
        ("nf4", Quantization::Nf4, "safetensors"),
    ] {
        cached_and_rebuilt(name, quantization, ext);
    }
}

fn cached_and_rebuilt(name: &str, quantization: Quantization, ext: &str) {
    let h = tempfile::tempdir().unwrap();
    let dir = wide_model(h.path());
    let info = |extra: &[&str]| -> Value {
        let mut args = vec![
            "model",
            "info",
            dir.to_str().unwrap(),
            "--quantization",
            name,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = common::run(&h, &args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let first = info(&[]);
    assert_eq!(first["source"], "quantized now");
    let second = info(&[]);
    let source = second["source"].as_str().unwrap().to_string();
    assert!(source.starts_with("cache "), "{source}");
    assert_eq!(first["quantized_bytes"], second["quantized_bytes"]);
    assert_eq!(first["base_bytes"], second["base_bytes"]);
    let gguf = PathBuf::from(source.trim_start_matches("cache "));
    assert_eq!(gguf.extension().unwrap(), ext, "{source}");
    // The cached blocks are the ones quantizing gives.
    let plan = tunelab::model::QuantPlan {
        quantization,
        head: false,
        cache: Some(h.path().join("cache")),
    };
    let (cached, r) = Model::load_quantized(&dir, DType::F32, &Device::Cpu, plan).unwrap();
    assert!(r.source.starts_with("cache "), "{}", r.source);
    let (fresh, _) =
        Model::load_quantized(&dir, DType::F32, &Device::Cpu, quantization.into()).unwrap();
    for (a, b) in cached.layers.iter().zip(&fresh.layers) {
        for ((_, _, x), (_, _, y)) in a.linears().iter().zip(b.linears().iter()) {
            let (x, y) = (
                x.weight.matrix(DType::F32).unwrap(),
                y.weight.matrix(DType::F32).unwrap(),
            );
            assert_eq!(common::max_abs_diff(&x, &y), 0.0);
        }
    }
    // Truncated: detected by its size, rebuilt, then read again.
    let len = std::fs::metadata(&gguf).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&gguf)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let v = info(&[]);
    let s = v["source"].as_str().unwrap();
    assert!(
        s.contains("cache entry rebuilt") && s.contains("expected"),
        "{s}"
    );
    assert!(info(&[])["source"].as_str().unwrap().starts_with("cache "));
    // One flipped byte in the middle: the checksum catches it.
    let mut bytes = std::fs::read(&gguf).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&gguf, &bytes).unwrap();
    let v = info(&[]);
    assert!(
        v["source"].as_str().unwrap().contains("checksum mismatch"),
        "{v}"
    );
    // --no-cache quantizes and leaves the entry alone.
    assert_eq!(info(&["--no-cache"])["source"], "quantized now");
}
