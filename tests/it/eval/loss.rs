//! `tunelab eval` against transformers on init-tiny models (fixture from
//! tests/reference/make_eval_fixture.py).

use crate::common;

use serde_json::Value;

#[test]
fn eval_loss_matches_transformers_on_tiny_models() {
    let Some(dir) = common::shared_datasets("eval_loss_matches_transformers_on_tiny_models") else {
        return;
    };
    let expected: Value =
        serde_json::from_slice(&std::fs::read(common::fixture("eval/identity_tiny.json")).unwrap())
            .unwrap();
    let home = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2"] {
        let model = home.path().join(arch);
        let (code, _, err) = common::run(
            &home,
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
        let (code, out, err) = common::run(
            &home,
            &[
                "eval",
                "--model",
                model.to_str().unwrap(),
                "--data",
                dir.join("identity.json").to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let got: Value = serde_json::from_str(&out).unwrap();
        let want = &expected[arch];
        assert_eq!(got["tokens"], want["tokens"], "{arch}");
        let (l, w) = (
            got["loss"].as_f64().unwrap(),
            want["loss"].as_f64().unwrap(),
        );
        assert!(
            ((l - w) / w).abs() < 1e-4,
            "{arch}: tunelab {l} vs transformers {w}"
        );
        assert!((got["perplexity"].as_f64().unwrap() - l.exp()).abs() < 1e-9);
    }
}

#[test]
fn model_info_and_bad_models_are_reported() {
    let home = tempfile::tempdir().unwrap();
    let model = home.path().join("m");
    let (code, _, err) = common::run(
        &home,
        &[
            "model",
            "init-tiny",
            "-o",
            model.to_str().unwrap(),
            "--arch",
            "qwen2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = common::run(&home, &["model", "info", model.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["architecture"], "Qwen2ForCausalLM");
    assert_eq!(v["tie_word_embeddings"], true);
    assert_eq!(v["kv_heads"], 2);
    std::fs::write(
        model.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    let (code, _, err) = common::run(&home, &["model", "info", model.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("config.json: architectures: unsupported architecture \"GPT2LMHeadModel\""),
        "{err}"
    );
}

/// `train::evaluate::held_out` is what `tunelab eval` prints, for every method: the
/// workbench gets the same numbers from the library.
#[test]
fn held_out_is_what_eval_prints_for_every_method() {
    use tunelab::config::{DpoSection, KtoSection, MethodConfig, SftView};
    use tunelab::template::{Encoder, TemplateChoice, TrainOn};
    use tunelab::train::evaluate::{held_out, EvalData};
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let demo = h.path().join("data/demo");
    let model_dir = demo.join("tiny-model");
    let (model, tok) =
        tunelab::model::source::load(model_dir.to_str().unwrap(), &candle_core::Device::Cpu)
            .unwrap();
    let encoder = Encoder::new(tok, &TemplateChoice::parse("model"), TrainOn::Assistant).unwrap();
    let (dpo, kto) = (DpoSection::default(), KtoSection::default());
    let sft = MethodConfig::Sft(SftView {
        train_on: TrainOn::Assistant,
        packing: false,
        train_undesirable: false,
    });
    for (flag, file, method, count) in [
        (None, "persona.jsonl", sft, "examples"),
        (
            Some("--dpo"),
            "persona_dpo.jsonl",
            MethodConfig::Dpo(&dpo),
            "pairs",
        ),
        (
            Some("--kto"),
            "persona_kto.jsonl",
            MethodConfig::Kto(&kto),
            "examples",
        ),
    ] {
        let data = demo.join(file);
        let mut args = vec!["eval", "--json", "--model", model_dir.to_str().unwrap()];
        args.extend(["--data", data.to_str().unwrap()]);
        args.extend(flag);
        let (code, out, err) = common::run(&h, &args);
        assert_eq!(code, 0, "{file}: {err}");
        let cli: Value = serde_json::from_str(out.trim()).unwrap();
        let eval_data = EvalData {
            path: &data,
            max_seq_len: 2048,
            max_prompt_len: 512,
            batch_size: 8,
        };
        let r = held_out(&model, &encoder, &eval_data, method, None).unwrap();
        assert!(r.items > 0, "{file}");
        assert_eq!(cli[count], r.items, "{file}");
        if flag.is_none() {
            assert_eq!(cli["tokens"], r.tokens, "{file}");
        }
        assert!(
            (cli["loss"].as_f64().unwrap() - r.loss).abs() < 1e-12,
            "{file}: {cli}"
        );
        for (k, v) in &r.metrics {
            assert!((cli[k].as_f64().unwrap() - v).abs() < 1e-12, "{file}: {k}");
        }
    }
}
