//! The training core: optimizer parity with torch, activation checkpointing, checkpoints.

use crate::common;

use candle_core::{DType, Device};
use serde_json::Value;
use tunelab::batch::MicroBatch;
use tunelab::model::{Batch, Model};
use tunelab::train::micro::StepArgs;
use tunelab::train::step::forward_backward;
use tunelab::train::{AdamW, AdamWConfig, GradSource, Grads};

fn fixture_model() -> (Model, MicroBatch, Value) {
    family_fixture("llama")
}

/// A model-core fixture (`tests/fixtures/models/NAME`) with its PEFT adapter loaded, its
/// batch, and its three-AdamW-step reference.
pub fn family_fixture(name: &str) -> (Model, MicroBatch, Value) {
    let dir = common::fixture(&format!("models/{name}"));
    let mut model = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
    tunelab::model::peft::load(&mut model, &dir.join("adapter")).unwrap();
    let exp: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(exp["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<u8>> = serde_json::from_value(exp["attention_mask"].clone()).unwrap();
    let labels: Vec<Vec<i64>> = serde_json::from_value(exp["labels"].clone()).unwrap();
    let targets = labels
        .iter()
        .map(|l| l.iter().skip(1).filter(|x| **x >= 0).count())
        .sum();
    let mb = MicroBatch {
        ids,
        labels,
        batch: Batch {
            position_ids: None,
            attention_mask: Some(mask),
        },
        tokens: 0,
        targets,
    };
    // Fixtures without an optimizer reference (qwen2, mistral) give null.
    let train3: Value = std::fs::read(dir.join("train3.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null);
    (model, mb, train3)
}

/// Every variable's gradient in `a` and `b` agrees within 1e-5 of its largest entry.
fn assert_grads_close(vars: &[candle_core::Var], a: &Grads, b: &Grads, what: &str) {
    for v in vars {
        let (x, y) = (
            a.grad(v)
                .unwrap_or_else(|| panic!("{what}: no gradient in the first")),
            b.grad(v)
                .unwrap_or_else(|| panic!("{what}: no gradient in the second")),
        );
        let (diff, scale) = (common::max_abs_diff(&x, &y), common::max_abs(&y));
        assert!(diff <= 1e-5 * scale.max(1e-3), "{what}: {diff} vs {scale}");
    }
}

/// Three AdamW steps (weight decay, clipping) give transformers + peft + torch's losses.
#[test]
fn three_adamw_steps_match_torch() {
    for name in [
        "llama",
        "qwen3",
        "gemma2",
        "gemma3",
        "phi3",
        "mistral_window",
    ] {
        three_adamw_steps(name);
    }
}

fn three_adamw_steps(name: &str) {
    for checkpointing in [false, true] {
        let (model, mb, want) = family_fixture(name);
        let vars = model.lora_vars();
        let mut opt = AdamW::new(
            vars.clone(),
            AdamWConfig {
                lr: want["lr"].as_f64().unwrap(),
                beta1: 0.9,
                beta2: 0.999,
                eps: want["eps"].as_f64().unwrap(),
                weight_decay: want["weight_decay"].as_f64().unwrap(),
            },
        )
        .unwrap();
        let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
        let losses: Vec<f64> = serde_json::from_value(want["losses"].clone()).unwrap();
        let norms: Vec<f64> = serde_json::from_value(want["grad_norms"].clone()).unwrap();
        for step in 0..3 {
            let l = forward_backward(
                &model,
                &mb,
                &StepArgs {
                    window_targets: mb.targets,
                    dropout_seed: None,
                    checkpointing,
                    autograd: false,
                    temperature: 1.0,
                },
                &mut grads,
            )
            .unwrap();
            let rel = (l.loss - losses[step]).abs() / losses[step];
            assert!(
                rel < 1e-4,
                "{name} checkpointing={checkpointing} step {step}: {} vs torch {}",
                l.loss,
                losses[step]
            );
            let norm = grads.clip(1.0).unwrap();
            assert!(
                (norm - norms[step]).abs() / norms[step] < 1e-3,
                "{name}: grad norm {norm} vs {}",
                norms[step]
            );
            opt.step(&grads).unwrap();
            grads.clear();
        }
        let l = forward_backward(
            &model,
            &mb,
            &StepArgs {
                window_targets: mb.targets,
                dropout_seed: None,
                checkpointing: false,
                autograd: false,
                temperature: 1.0,
            },
            &mut grads,
        )
        .unwrap();
        assert!(
            (l.loss - losses[3]).abs() / losses[3] < 1e-4,
            "{name} after 3 steps: {} vs {}",
            l.loss,
            losses[3]
        );
    }
}

/// Recomputing each layer in the backward gives the gradients of the plain backward.
#[test]
fn activation_checkpointing_gives_the_same_gradients() {
    let (model, mb, _) = fixture_model();
    let vars: Vec<_> = model.lora_vars().into_iter().map(|(_, v)| v).collect();
    let mut plain = Grads::new(vars.clone());
    let mut ckpt = Grads::new(vars.clone());
    let a = forward_backward(
        &model,
        &mb,
        &StepArgs {
            window_targets: mb.targets,
            dropout_seed: Some(3),
            checkpointing: false,
            autograd: false,
            temperature: 1.0,
        },
        &mut plain,
    )
    .unwrap();
    let b = forward_backward(
        &model,
        &mb,
        &StepArgs {
            window_targets: mb.targets,
            dropout_seed: Some(3),
            checkpointing: true,
            autograd: false,
            temperature: 1.0,
        },
        &mut ckpt,
    )
    .unwrap();
    assert!((a.loss - b.loss).abs() < 1e-6);
    assert_grads_close(&vars, &plain, &ckpt, "checkpointing");
}

/// Two micro-batches of one row each accumulate to the gradient of the two-row batch.
#[test]
fn gradient_accumulation_equals_the_full_batch() {
    let (model, mb, _) = fixture_model();
    let vars: Vec<_> = model.lora_vars().into_iter().map(|(_, v)| v).collect();
    let mut full = Grads::new(vars.clone());
    let whole = forward_backward(
        &model,
        &mb,
        &StepArgs {
            window_targets: mb.targets,
            dropout_seed: None,
            checkpointing: false,
            autograd: false,
            temperature: 1.0,
        },
        &mut full,
    )
    .unwrap();
    let mut acc = Grads::new(vars.clone());
    let mut sum = 0.0;
    for r in 0..2 {
        let row = MicroBatch {
            ids: vec![mb.ids[r].clone()],
            labels: vec![mb.labels[r].clone()],
            batch: Batch {
                position_ids: None,
                attention_mask: mb.batch.attention_mask.as_ref().map(|m| vec![m[r].clone()]),
            },
            tokens: 0,
            targets: 0,
        };
        sum += forward_backward(
            &model,
            &row,
            &StepArgs {
                window_targets: mb.targets,
                dropout_seed: None,
                checkpointing: false,
                autograd: false,
                temperature: 1.0,
            },
            &mut acc,
        )
        .unwrap()
        .loss;
    }
    assert!((sum - whole.loss).abs() < 1e-5, "{sum} vs {}", whole.loss);
    assert!((acc.norm().unwrap() - full.norm().unwrap()).abs() < 1e-5);
}

#[test]
fn checkpoints_verify_and_a_truncated_file_is_detected() {
    use tunelab::train::checkpoint::{latest_good, list, prune, save, verify, TrainerState};
    let (model, _, _) = fixture_model();
    let opt = AdamW::new(model.lora_vars(), AdamWConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut state = TrainerState {
        step: 10,
        micro: 10,
        epoch: 0.5,
        tokens_seen: 100,
        elapsed_s: 1.0,
        best_eval_loss: Some(2.0),
        seed: 1,
        total_steps: 30,
        files: Default::default(),
    };
    save(dir.path(), &model, "m", &opt, &state, None).unwrap();
    state.step = 20;
    let p20 = save(dir.path(), &model, "m", &opt, &state, None).unwrap();
    assert_eq!(verify(&p20).unwrap().step, 20);
    assert_eq!(list(dir.path()).len(), 2);
    // Truncate the newest adapter: it is skipped in favour of step 10.
    let f = p20.join("adapter_model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (good, skipped) = latest_good(dir.path());
    assert_eq!(good.unwrap().1.step, 10);
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].1.contains("adapter_model.safetensors"),
        "{}",
        skipped[0].1
    );
    // A half-written temporary folder is never listed, and pruning keeps the newest.
    std::fs::create_dir_all(dir.path().join(".tmp-step-30")).unwrap();
    assert_eq!(list(dir.path()).len(), 2);
    prune(dir.path(), 1).unwrap();
    let left: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
    assert_eq!(left, vec![20]);
    assert!(!dir.path().join(".tmp-step-30").exists());
}

/// A fixture architecture's f32 model with its PEFT adapter, every LoRA pair at `dropout`.
fn adapted_fixture(arch: &str, dropout: f64) -> Model {
    let dir = common::fixture(&format!("models/{arch}"));
    let mut model = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
    tunelab::model::peft::load(&mut model, &dir.join("adapter")).unwrap();
    for b in model.layers.iter_mut() {
        for (_, _, l) in b.linears_mut() {
            if let Some(l) = l.lora.as_mut() {
                l.dropout = dropout;
            }
        }
    }
    model
}

/// A base packed into microkernel panels for CPU training (`Model::pack_for_training`)
/// gives the plain base's loss and LoRA gradients on every fixture architecture, with
/// LoRA's term fused into the products (no dropout) and apart (dropout on).
#[test]
fn packed_base_trains_as_the_plain_one() {
    use tunelab::model::decoder::Weight;
    for arch in crate::model_parity::MODELS {
        for dropout in [0.0, 0.2] {
            let mut model = adapted_fixture(arch, dropout);
            let (_, mb, _) = fixture_model();
            let args = StepArgs {
                window_targets: 20,
                dropout_seed: Some(9),
                checkpointing: false,
                autograd: false,
                temperature: 1.0,
            };
            let vars: Vec<_> = model.lora_vars().into_iter().map(|(_, v)| v).collect();
            let mut plain = Grads::new(vars.clone());
            let lp = forward_backward(&model, &mb, &args, &mut plain).unwrap();
            let packed = model.pack_for_training(u64::MAX).unwrap();
            assert_eq!(packed, tunelab::ops::panels::Isa::detect().is_some());
            if packed {
                assert!(matches!(
                    model.layers[0].linears()[0].2.weight,
                    Weight::Panels(_)
                ));
            }
            let mut g = Grads::new(vars.clone());
            let lg = forward_backward(&model, &mb, &args, &mut g).unwrap();
            assert!(
                (lp.loss - lg.loss).abs() < 1e-6,
                "{arch} dropout {dropout}: loss {} vs {}",
                lp.loss,
                lg.loss
            );
            assert_eq!(lp.targets, lg.targets);
            assert_grads_close(
                &vars,
                &plain,
                &g,
                &format!("{arch} packed, dropout {dropout}"),
            );
        }
    }
    // Nothing is packed when the second copy does not fit.
    let dir = common::fixture("models/llama");
    let mut model = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
    assert!(!model.pack_for_training(1).unwrap());
    assert!(matches!(model.lm_head, Weight::Dense(_)));
}

/// The hand-written backward gives autograd's loss and LoRA gradients on every fixture
/// architecture (GQA + llama3 rope, Qwen2 bias + tied head, Mistral), with dropout on,
/// packed positions, padding and checkpointing.
#[test]
fn hand_written_backward_matches_autograd() {
    use tunelab::train::step::forward_backward;
    for arch in crate::model_parity::MODELS {
        let model = adapted_fixture(arch, 0.2);
        let (_, mut mb, _) = fixture_model();
        // Row 0 holds two packed examples (positions restart at 5).
        mb.batch.position_ids = Some(vec![vec![0, 1, 2, 3, 4, 0, 1, 2, 3], (0..9).collect()]);
        for checkpointing in [false, true] {
            let vars: Vec<_> = model.lora_vars().into_iter().map(|(_, v)| v).collect();
            let mut a = Grads::new(vars.clone());
            let mut b = Grads::new(vars.clone());
            let la = forward_backward(
                &model,
                &mb,
                &StepArgs {
                    window_targets: 20,
                    dropout_seed: Some(9),
                    checkpointing: false,
                    autograd: true,
                    temperature: 1.0,
                },
                &mut a,
            )
            .unwrap();
            let lb = forward_backward(
                &model,
                &mb,
                &StepArgs {
                    window_targets: 20,
                    dropout_seed: Some(9),
                    checkpointing,
                    autograd: false,
                    temperature: 1.0,
                },
                &mut b,
            )
            .unwrap();
            assert!(
                (la.loss - lb.loss).abs() < 1e-6,
                "{arch}: loss {} vs {}",
                la.loss,
                lb.loss
            );
            assert_eq!(la.targets, lb.targets);
            assert_grads_close(
                &vars,
                &a,
                &b,
                &format!("{arch} checkpointing={checkpointing}"),
            );
        }
    }
}
