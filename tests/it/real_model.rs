//! The real SmolLM2-135M-Instruct (Q4_1 GGUF) against transformers on the same dequantized
//! weights (fixture from tests/reference/make_eval_fixture.py).

use crate::common;

use serde_json::Value;
use tunelab::template::{Encoder, TemplateChoice, TrainOn};

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(common::fixture("eval/smollm2.json")).unwrap()).unwrap()
}

#[test]
fn gguf_tokenizer_and_template_match_transformers() {
    let Some(gguf) = common::smollm2_gguf("gguf_tokenizer_and_template_match_transformers") else {
        return;
    };
    let tok = tunelab::model::gguf::load_tokenizer(&gguf).unwrap();
    let enc = Encoder::new(tok, &TemplateChoice::Model, TrainOn::Assistant).unwrap();
    let text = enc
        .render(
            &[serde_json::json!({"role": "user", "content": "What is the capital of France?"})],
            None,
            true,
        )
        .unwrap();
    let ids = enc.tokenizer.encode(&text, false).unwrap().ids;
    let want: Vec<u32> = serde_json::from_value(expected()["prompt_ids"].clone()).unwrap();
    assert_eq!(ids, want);
}

#[test]
fn smollm2_answers_paris_greedily() {
    let Some(gguf) = common::smollm2_gguf("smollm2_answers_paris_greedily") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = common::run(
        &home,
        &[
            "chat",
            "--model",
            gguf.to_str().unwrap(),
            "--prompt",
            "What is the capital of France?",
            "--max-new-tokens",
            "12",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Paris"), "{out}");
    assert_eq!(
        out.trim_end(),
        expected()["greedy_reply"].as_str().unwrap(),
        "same greedy reply as transformers"
    );
}

#[test]
fn smollm2_eval_loss_matches_transformers() {
    let Some(gguf) = common::smollm2_gguf("smollm2_eval_loss_matches_transformers") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let data = common::fixture("data/eval_text.jsonl");
    let (code, out, err) = common::run(
        &home,
        &[
            "eval",
            "--model",
            gguf.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let want = expected();
    assert_eq!(got["tokens"], want["tokens"]);
    let (l, w) = (
        got["loss"].as_f64().unwrap(),
        want["loss"].as_f64().unwrap(),
    );
    assert!(
        ((l - w) / w).abs() < 1e-3,
        "tunelab {l} vs transformers {w}"
    );
}

/// The real GGUF base (Q4_1 blocks, q/k rows permuted into llama.cpp's order, a quantized
/// tied head) through the hand-written backward: the LoRA gradients of one micro-batch
/// equal autograd's within 1e-4 of the largest entry, with and without checkpointing.
#[test]
fn smollm2_gguf_backward_matches_autograd() {
    use tunelab::train::grads::GradSource;
    let Some(gguf) = common::smollm2_gguf("smollm2_gguf_backward_matches_autograd") else {
        return;
    };
    let (mut m, _) =
        tunelab::model::source::load(gguf.to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    assert!(m.is_quantized());
    let cfg = tunelab::lora::LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
    };
    m.add_lora(&cfg, 1).unwrap();
    for (name, v) in m.lora_vars() {
        if name.contains("lora_B") {
            let t = candle_core::Tensor::randn(0f32, 0.02, v.shape(), &candle_core::Device::Cpu)
                .unwrap();
            v.set(&t).unwrap();
        }
    }
    let ids: Vec<u32> = (0..20u32).map(|i| 100 + i * 97 % 4000).collect();
    let seq = tunelab::batch::Sequence {
        labels: ids.iter().map(|&i| i64::from(i)).collect(),
        position_ids: (0..ids.len() as u32).collect(),
        input_ids: ids,
    };
    let mb = tunelab::batch::collate(&[&seq], 0);
    let run = |autograd: bool, checkpointing: bool| {
        let vars: Vec<_> = m.lora_vars().into_iter().map(|(_, v)| v).collect();
        let mut g = tunelab::train::Grads::new(vars);
        let args = tunelab::train::micro::StepArgs {
            window_targets: mb.targets,
            dropout_seed: None,
            checkpointing,
            autograd,
            temperature: 1.0,
        };
        let l = tunelab::train::step::forward_backward(&m, &mb, &args, &mut g).unwrap();
        (l.loss, g)
    };
    let (la, ga) = run(true, false);
    for checkpointing in [false, true] {
        let (lm, gm) = run(false, checkpointing);
        assert!((la - lm).abs() <= 1e-5 * la.abs(), "loss {lm} vs {la}");
        for (name, v) in m.lora_vars() {
            let (a, b) = (ga.grad(&v).unwrap(), gm.grad(&v).unwrap());
            let (diff, scale) = (common::max_abs_diff(&b, &a), common::max_abs(&a));
            assert!(scale > 0.0, "{name}");
            assert!(
                diff <= 1e-4 * scale,
                "{name}: off by {diff} (scale {scale}, checkpointing {checkpointing})"
            );
        }
    }
}

/// The SmolLM2 DPO preset on the real model (its quantized base, hand-written backward),
/// as plain DPO (the preset's `rpo_alpha` off): a fresh adapter's first step is ln 2, and
/// the second step already moves.
#[test]
fn smollm2_dpo_preset_takes_real_steps() {
    let Some(gguf) = common::smollm2_gguf("smollm2_dpo_preset_takes_real_steps") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&home, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let data = home.path().join("data/demo/persona_dpo.jsonl");
    let run = home.path().join("run");
    let model = format!("model.path={}", gguf.display());
    let train = format!("data.train={}", data.display());
    common::ok(
        home.path(),
        &[
            "train",
            "smollm2-135m-dpo",
            "--set",
            &model,
            "--set",
            &train,
            "--set",
            "train.max_steps=2",
            "--set",
            "train.batch_size=2",
            "--set",
            "train.grad_accum=1",
            "--set",
            "train.eval_every=0",
            "--set",
            "lora.dropout=0.0",
            "--set",
            "samples.count=0",
            "--set",
            "train.warmup=0",
            "--set",
            "dpo.precompute_ref=false",
            "--set",
            "dpo.rpo_alpha=null",
            "--set",
            "data.max_seq_len=96",
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let losses: Vec<f64> = common::event_lines(&run.join("events.jsonl"))
        .into_iter()
        .filter(|e| e["type"] == "train")
        .map(|e| e["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 2);
    assert!(
        (losses[0] - std::f64::consts::LN_2).abs() < 1e-6,
        "{losses:?}"
    );
    assert!(
        losses[1].is_finite() && losses[1] != losses[0],
        "{losses:?}"
    );
    assert!(run.join("adapter/adapter_model.safetensors").is_file());
}

/// Eval loss of a passage through SmolLM2 requantized in each format, against its
/// dequantized Q4_1 weights as full precision (hidden 576: q4k falls back to q5_0 except
/// down_proj, whose 1536 inputs take q4k), within about twice the measured margins:
/// q8_0 8.5e-4, q4_0 0.112, q4k 0.040, nf4 0.167 relative (docs/src/qlora.md). Requantizing
/// weights that were already 4-bit compounds the error (most for nf4, whose levels sit at
/// normal quantiles, not on Q4_1's uniform grid), so these are upper bounds for a bf16
/// original.
#[test]
fn smollm2_requantized_eval_loss_stays_near_full_precision() {
    use tunelab::model::Quantization;
    let Some(gguf) =
        common::smollm2_gguf("smollm2_requantized_eval_loss_stays_near_full_precision")
    else {
        return;
    };
    let (mut dense, tok) =
        tunelab::model::source::load(gguf.to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
    dense.densify().unwrap();
    let text = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, \
                France. It is named after the engineer Gustave Eiffel, whose company designed \
                and built the tower from 1887 to 1889. Locally nicknamed the Iron Lady, it was \
                constructed as the centrepiece of the 1889 World's Fair.";
    let ids = tok.encode(text, true).unwrap().ids;
    let seq = tunelab::batch::Sequence {
        labels: ids.iter().map(|&i| i64::from(i)).collect(),
        position_ids: (0..ids.len() as u32).collect(),
        input_ids: ids,
    };
    let mb = tunelab::batch::collate(&[&seq], 0);
    let loss = |m: &tunelab::model::Model| {
        let rows = tunelab::eval::row_logps(m, &mb).unwrap();
        -rows[0].0 / rows[0].1 as f64
    };
    let full = loss(&dense);
    assert!(full < 3.0, "a real model knows this passage: {full}");
    for (q, margin) in [
        (Quantization::Q8_0, 2e-3),
        (Quantization::Q4_0, 2e-1),
        (Quantization::Q4k, 8e-2),
        (Quantization::Nf4, 3e-1),
    ] {
        let mut m = dense.clone();
        let report = m.quantize(q.into()).unwrap();
        assert!(report.quantized_params > 0);
        let l = loss(&m);
        let rel = (l - full).abs() / full;
        eprintln!("smollm2 {q}: eval loss {l:.5} vs {full:.5} ({rel:.2e} relative)");
        assert!(rel < margin, "{q}: {l} vs {full}: {rel:.2e} ≥ {margin:.0e}");
    }
}

/// Generation keeps the Q4_1/Q8_0 blocks and reads them with the block kernel
/// (`ops::qmatmul`): each cached decode step's logits equal the dequantized model's full
/// forward at that position, across the KV cache's first growth (64 rows).
#[test]
fn smollm2_block_kernel_decode_equals_the_dense_forward() {
    use tunelab::model::decoder::KvCache;
    let Some(gguf) = common::smollm2_gguf("smollm2_block_kernel_decode_equals_the_dense_forward")
    else {
        return;
    };
    let dev = candle_core::Device::Cpu;
    let (mut kept, tok) = tunelab::model::source::load(gguf.to_str().unwrap(), &dev).unwrap();
    let mut dense = kept.clone();
    dense.densify().unwrap();
    kept.prepare_for_generation().unwrap();
    assert!(
        kept.dense_bytes() > 0,
        "Q4_1 and Q8_0 have a block kernel: the base stays quantized"
    );
    // The tied head is its Q8_0 blocks (packed where the CPU has AVX-512), and the
    // embedding looks its rows up from the same table: no dense copy.
    assert!(kept.lm_head.same(&kept.embed));
    assert!(!matches!(
        kept.lm_head,
        tunelab::model::decoder::Weight::Dense(_)
    ));
    let mut ids = tok
        .encode("The Eiffel Tower is a wrought-iron lattice tower in", true)
        .unwrap()
        .ids;
    let mut cache = KvCache::default();
    let mut logits = kept.forward_cached(&ids, &mut cache).unwrap();
    while ids.len() < 66 {
        let v: Vec<f32> = logits.to_vec1().unwrap();
        let next = v
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        ids.push(next);
        logits = kept.forward_cached(&[next], &mut cache).unwrap();
        if ids.len() == 30 || ids.len() == 66 {
            let input = candle_core::Tensor::new(ids.as_slice(), &dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let full = dense
                .forward(&input, &tunelab::model::Batch::default(), None)
                .unwrap();
            let want: Vec<f32> = full
                .get(0)
                .unwrap()
                .get(ids.len() - 1)
                .unwrap()
                .to_vec1()
                .unwrap();
            let got: Vec<f32> = logits.to_vec1().unwrap();
            let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
            let err = got
                .iter()
                .zip(&want)
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(
                err <= 1e-4 * scale,
                "position {}: {err} against the largest logit {scale}",
                ids.len()
            );
        }
    }
}
