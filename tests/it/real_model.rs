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

/// The SmolLM2 DPO preset on the real model (its quantized base takes the autograd path):
/// a fresh adapter's first step is ln 2, and the second step already moves.
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
    let (code, _, err) = common::run(
        &home,
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
            "data.max_seq_len=96",
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
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
