//! The model core against transformers + peft (fixtures from
//! tests/reference/make_model_fixtures.py): logits with and without a PEFT adapter, the HF
//! causal-LM loss, and LoRA gradients.

use crate::common;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use tunelab::model::decoder::{causal_lm_loss, row};
use tunelab::model::{Batch, Model};

/// Llama, Qwen2 and Mistral from make_model_fixtures.py; the newer families (and Mistral with
/// a sliding window) from make_family_fixtures.py.
pub const MODELS: &[&str] = &[
    "llama",
    "qwen2",
    "mistral",
    "qwen3",
    "gemma2",
    "gemma3",
    "phi3",
    "mistral_window",
];

struct Fixture {
    model: Model,
    expected: Value,
    ids: Tensor,
    batch: Batch,
    labels: Vec<Vec<i64>>,
}

fn load(name: &str) -> Fixture {
    let dir = common::fixture(&format!("models/{name}"));
    let model = Model::load(&dir.join("model"), DType::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(expected["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<u8>> = serde_json::from_value(expected["attention_mask"].clone()).unwrap();
    let labels: Vec<Vec<i64>> = serde_json::from_value(expected["labels"].clone()).unwrap();
    let ids = Tensor::new(ids, &Device::Cpu).unwrap();
    Fixture {
        model,
        expected,
        ids,
        batch: Batch {
            position_ids: None,
            attention_mask: Some(mask),
        },
        labels,
    }
}

/// Max relative error over every compared logit: |a - b| / max(|b|, 1e-2) (tiny logits are
/// compared absolutely).
fn compare_logits(name: &str, what: &str, logits: &Tensor, expected: &Value) {
    let mut worst: f64 = 0.0;
    let mut n = 0;
    for (b, rows) in expected.as_array().unwrap().iter().enumerate() {
        for (t, want) in rows.as_array().unwrap().iter().enumerate() {
            let got = row(logits, b, t).unwrap();
            for (g, w) in got.iter().zip(want.as_array().unwrap()) {
                let w = w.as_f64().unwrap();
                worst = worst.max((*g as f64 - w).abs() / w.abs().max(1e-2));
                n += 1;
            }
        }
    }
    assert!(n > 1000, "{name} {what}: only {n} logits compared");
    assert!(
        worst < 1e-4,
        "{name} {what}: max relative logit error {worst:e}"
    );
}

#[test]
fn base_logits_and_loss_match_transformers() {
    for name in MODELS {
        let f = load(name);
        let logits = f.model.forward(&f.ids, &f.batch, None).unwrap();
        compare_logits(name, "base", &logits, &f.expected["base_logits"]);
        let (loss, n) = causal_lm_loss(&logits, &f.labels).unwrap();
        assert_eq!(n, 11);
        let loss = loss.to_scalar::<f32>().unwrap() as f64;
        let want = f.expected["base_loss"].as_f64().unwrap();
        assert!(
            ((loss - want) / want).abs() < 1e-5,
            "{name}: loss {loss} vs {want}"
        );
    }
}

#[test]
fn peft_adapter_logits_loss_and_gradients_match() {
    for name in MODELS {
        let mut f = load(name);
        let dir = common::fixture(&format!("models/{name}"));
        tunelab::model::peft::load(&mut f.model, &dir.join("adapter"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let per_layer = f.model.layers[0].linears().len();
        assert_eq!(
            f.model.lora_vars().len(),
            2 * per_layer * f.model.layers.len(),
            "{name}"
        );
        let logits = f.model.forward(&f.ids, &f.batch, None).unwrap();
        compare_logits(name, "adapter", &logits, &f.expected["adapter_logits"]);
        let (loss, _) = causal_lm_loss(&logits, &f.labels).unwrap();
        let l = loss.to_scalar::<f32>().unwrap() as f64;
        let want = f.expected["adapter_loss"].as_f64().unwrap();
        assert!(
            ((l - want) / want).abs() < 1e-5,
            "{name}: adapter loss {l} vs {want}"
        );
        // Every LoRA variable receives a gradient, equal to torch's within 1e-3 relative.
        let grads = loss.backward().unwrap();
        let reference =
            candle_core::safetensors::load(dir.join("grads.safetensors"), &Device::Cpu).unwrap();
        for (pname, var) in f.model.lora_vars() {
            let g = grads
                .get(&var)
                .unwrap_or_else(|| panic!("{name}: {pname} got no gradient"));
            let r = reference
                .get(&pname)
                .unwrap_or_else(|| panic!("{name}: no reference for {pname}"));
            let (diff, scale) = (common::max_abs_diff(g, r), common::max_abs(r));
            assert!(
                diff / scale.max(1e-6) < 1e-3,
                "{name}: {pname}: gradient differs by {diff} (scale {scale})"
            );
        }
        // Switched off, the adapter disappears: base logits again.
        f.model.switch.set(false);
        let base = f.model.forward(&f.ids, &f.batch, None).unwrap();
        compare_logits(
            name,
            "adapter switched off",
            &base,
            &f.expected["base_logits"],
        );
    }
}

#[test]
fn packed_sequences_match_separate_forwards() {
    let f = load("llama");
    let a = Tensor::new(&[[5u32, 17, 42, 8]], &Device::Cpu).unwrap();
    let b = Tensor::new(&[[11u32, 4, 29]], &Device::Cpu).unwrap();
    let packed = Tensor::new(&[[5u32, 17, 42, 8, 11, 4, 29]], &Device::Cpu).unwrap();
    let batch = Batch {
        position_ids: Some(vec![vec![0, 1, 2, 3, 0, 1, 2]]),
        attention_mask: None,
    };
    let lp = f.model.forward(&packed, &batch, None).unwrap();
    let la = f.model.forward(&a, &Batch::default(), None).unwrap();
    let lb = f.model.forward(&b, &Batch::default(), None).unwrap();
    for t in 0..4 {
        let (x, y) = (row(&lp, 0, t).unwrap(), row(&la, 0, t).unwrap());
        assert!(
            x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 1e-5),
            "position {t}"
        );
    }
    for t in 0..3 {
        let (x, y) = (row(&lp, 0, 4 + t).unwrap(), row(&lb, 0, t).unwrap());
        assert!(
            x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 1e-5),
            "packed example 2, position {t}: attention leaked across the boundary"
        );
    }
}
