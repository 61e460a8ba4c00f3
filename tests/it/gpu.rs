//! GPU checks (build with `--features cuda`; scripts/gpu-check.sh runs them on a GPU box):
//! the forward pass and three training steps on CUDA against transformers + torch, bf16
//! training that learns, and a whole run through the trainer on `cuda`.

use crate::common;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use tunelab::batch::MicroBatch;
use tunelab::model::{Batch, Model};
use tunelab::train::micro::StepArgs;
use tunelab::train::step::forward_backward;
use tunelab::train::{AdamW, AdamWConfig, Grads};

fn cuda() -> Device {
    Device::new_cuda(0).expect("a CUDA device (this test binary needs a GPU)")
}

fn fixture(dev: &Device) -> (Model, MicroBatch, Value, Value) {
    let dir = common::fixture("models/llama");
    let mut model = Model::load(&dir.join("model"), DType::F32, dev).unwrap();
    tunelab::model::peft::load(&mut model, &dir.join("adapter")).unwrap();
    let exp: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let train3: Value =
        serde_json::from_slice(&std::fs::read(dir.join("train3.json")).unwrap()).unwrap();
    let labels: Vec<Vec<i64>> = serde_json::from_value(exp["labels"].clone()).unwrap();
    let targets = labels
        .iter()
        .map(|l| l.iter().skip(1).filter(|x| **x >= 0).count())
        .sum();
    let mb = MicroBatch {
        ids: serde_json::from_value(exp["input_ids"].clone()).unwrap(),
        labels,
        batch: Batch {
            position_ids: None,
            attention_mask: Some(serde_json::from_value(exp["attention_mask"].clone()).unwrap()),
        },
        tokens: 0,
        targets,
    };
    (model, mb, exp, train3)
}

#[test]
fn cuda_logits_match_transformers() {
    let dev = cuda();
    let (model, mb, exp, _) = fixture(&dev);
    let ids = Tensor::new(mb.ids.clone(), &dev).unwrap();
    let logits = model.forward(&ids, &mb.batch, None).unwrap();
    let got: Vec<Vec<Vec<f32>>> = logits.to_dtype(DType::F32).unwrap().to_vec3().unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(exp["adapter_logits"].clone()).unwrap();
    let mask: Vec<Vec<u8>> = serde_json::from_value(exp["attention_mask"].clone()).unwrap();
    let mut worst = 0f32;
    for (b, row) in want.iter().enumerate() {
        for (t, w) in row.iter().enumerate() {
            if mask[b][t] == 0 {
                continue;
            }
            let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (x, y) in got[b][t].iter().zip(w) {
                worst = worst.max((x - y).abs() / scale);
            }
        }
    }
    assert!(worst < 1e-4, "max relative logit error {worst}");
}

#[test]
fn cuda_adamw_steps_match_torch() {
    let dev = cuda();
    for checkpointing in [false, true] {
        let (model, mb, _, want) = fixture(&dev);
        let vars = model.lora_vars();
        let mut opt = AdamW::new(
            vars.clone(),
            AdamWConfig {
                lr: want["lr"].as_f64().unwrap(),
                weight_decay: want["weight_decay"].as_f64().unwrap(),
                ..Default::default()
            },
        )
        .unwrap();
        let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
        let losses: Vec<f64> = serde_json::from_value(want["losses"].clone()).unwrap();
        for (step, want_loss) in losses.iter().take(3).enumerate() {
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
            assert!(
                (l.loss - want_loss).abs() / want_loss < 1e-4,
                "step {step}: {} vs {want_loss}",
                l.loss
            );
            grads.clip(1.0).unwrap();
            opt.step(&grads).unwrap();
            grads.clear();
        }
    }
}

#[test]
fn bf16_training_learns_a_batch() {
    let dev = cuda();
    let cfg = tunelab::model::random::shape("bench-tiny").unwrap();
    let mut model = tunelab::model::random::random_model(&cfg, DType::BF16, &dev).unwrap();
    model
        .add_lora(
            &tunelab::lora::LoraConfig {
                r: 8,
                alpha: 16.0,
                dropout: 0.0,
                target_modules: vec!["all-linear".into()],
                use_rslora: false,
            },
            0,
        )
        .unwrap();
    let ids: Vec<Vec<u32>> = (0..4)
        .map(|b| (0..64).map(|t| ((b * 31 + t * 7) % 4096) as u32).collect())
        .collect();
    let labels: Vec<Vec<i64>> = ids
        .iter()
        .map(|r| r.iter().map(|&i| i64::from(i)).collect())
        .collect();
    let mb = MicroBatch {
        ids,
        labels,
        batch: Batch::default(),
        tokens: 256,
        targets: 4 * 63,
    };
    let vars = model.lora_vars();
    for (_, v) in &vars {
        assert_eq!(
            v.dtype(),
            DType::F32,
            "LoRA parameters stay f32 under bf16 compute"
        );
    }
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: 1e-2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..30 {
        let l = forward_backward(
            &model,
            &mb,
            &StepArgs {
                window_targets: mb.targets,
                dropout_seed: None,
                checkpointing: true,
                autograd: false,
                temperature: 1.0,
            },
            &mut grads,
        )
        .unwrap();
        first.get_or_insert(l.loss);
        last = l.loss;
        opt.step(&grads).unwrap();
        grads.clear();
    }
    let first = first.unwrap();
    assert!(last < 0.7 * first, "bf16 loss {first} -> {last}");
}

/// The trainer end to end on `cuda` in bf16 with activation checkpointing: the demo preset
/// learns (eval loss falls), checkpoints and the adapter are written.
#[test]
fn trainer_runs_the_demo_preset_on_cuda_in_bf16() {
    let home = tempfile::tempdir().unwrap();
    let demo = tunelab::workspace::Demo::new(home.path());
    demo.ensure().unwrap();
    let text = tunelab::config::PRESETS
        .iter()
        .find(|(n, _)| *n == "tiny-demo")
        .unwrap()
        .1;
    let mut cfg = tunelab::config::RunConfig::from_yaml(text, "tiny-demo").unwrap();
    cfg.model.path = demo.model().display().to_string();
    cfg.data.train = demo.sft().display().to_string();
    cfg.train.device = tunelab::model::DeviceSpec::Cuda(None);
    cfg.train.dtype = tunelab::model::Dtype::Bf16;
    cfg.train.gradient_checkpointing = true;
    cfg.train.max_steps = Some(200);
    let run = tunelab::runs::RunDir::new(home.path().join("run"));
    let stop = tunelab::train::Interrupter::new();
    let mut evals = Vec::new();
    let mut gpu_readings = 0;
    let mut obs = |e: &tunelab::runs::RunEvent| match &e.kind {
        tunelab::runs::EventKind::Eval(v) => evals.push(v.eval_loss),
        // The VRAM gauge: NVML memory and utilisation on every train event.
        tunelab::runs::EventKind::Train(t) => {
            if t.gpu_mem.is_some_and(|m| m > 0) && t.gpu_util.is_some() {
                gpu_readings += 1;
            }
        }
        _ => {}
    };
    let out = tunelab::train::train(&cfg, &run, false, &stop, &mut obs).unwrap();
    assert_eq!(out.state, tunelab::runs::RunState::Done, "{:?}", out.error);
    assert_eq!(
        gpu_readings, 200,
        "every train event carries NVML memory and utilisation"
    );
    let (first, last) = (evals[0], *evals.last().unwrap());
    assert!(last < 0.7 * first, "eval loss {first} -> {last}");
    assert!(run.adapter().join("adapter_model.safetensors").is_file());
}

/// NF4 on CUDA: the codes live on the device and are dequantized there (tensor ops, in
/// panels); the result carries the CPU loop's bits, for a matrix of several panels.
#[test]
fn nf4_dequantizes_on_the_device_to_the_cpu_bits() {
    use tunelab::model::nf4::Nf4Tensor;
    let dev = cuda();
    let t = Tensor::randn(0f32, 0.02, (1100, 4096), &Device::Cpu).unwrap();
    let on_cpu = Nf4Tensor::quantize(&t, &Device::Cpu).unwrap();
    let on_gpu = Nf4Tensor::quantize(&t, &dev).unwrap();
    assert_eq!(
        on_gpu.storage_size_in_bytes(),
        on_cpu.storage_size_in_bytes()
    );
    let want = on_cpu.dequantize(DType::F32).unwrap();
    let got = on_gpu.dequantize(DType::F32).unwrap();
    assert!(got.device().is_cuda());
    let got = got.to_device(&Device::Cpu).unwrap();
    let differ = (got - &want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(differ, 0.0, "CUDA and CPU NF4 dequantization differ");
    let bf16 = on_gpu.dequantize(DType::BF16).unwrap();
    assert_eq!(bf16.dtype(), DType::BF16);
    assert_eq!(bf16.dims(), &[1100, 4096]);
}
