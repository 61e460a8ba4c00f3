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
