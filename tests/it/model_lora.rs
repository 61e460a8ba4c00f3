//! init-tiny, LoRA bookkeeping, and PEFT adapter files written and read back.

use crate::common;

use candle_core::{DType, Device, Tensor};
use tunelab::lora::LoraConfig;
use tunelab::model::decoder::row;
use tunelab::model::peft;
use tunelab::model::tiny::{init_tiny, TinySpec};
use tunelab::model::{Arch, Batch, Model};
use tunelab::template::{Encoder, TemplateChoice, TextTokenizer, TrainOn};

#[test]
fn init_tiny_writes_a_loadable_model_with_tokenizer_and_template() {
    for arch in [Arch::Llama, Arch::Qwen2] {
        let dir = tempfile::tempdir().unwrap();
        init_tiny(
            dir.path(),
            &TinySpec {
                arch,
                ..TinySpec::default()
            },
        )
        .unwrap();
        let model = Model::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(model.config.arch, arch);
        assert_eq!(model.config.qkv_bias, arch == Arch::Qwen2);
        let tok = TextTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.inner.get_vocab_size(true), model.config.vocab_size);
        let enc = Encoder::new(tok, &TemplateChoice::Model, TrainOn::Assistant).unwrap();
        let rendered = enc
            .render(
                &[serde_json::json!({"role": "user", "content": "What is RAM?"})],
                None,
                true,
            )
            .unwrap();
        assert_eq!(
            rendered,
            "<|im_start|>user\nWhat is RAM?<|im_end|>\n<|im_start|>assistant\n"
        );
        let ids = enc.tokenizer.encode(&rendered, false).unwrap().ids;
        assert_eq!(ids[0], enc.tokenizer.token_to_id("<|im_start|>").unwrap());
        let input = Tensor::new(vec![ids.clone()], &Device::Cpu).unwrap();
        let logits = model.forward(&input, &Batch::default(), None).unwrap();
        assert_eq!(logits.dims(), &[1, ids.len(), model.config.vocab_size]);
        // Random init with the same seed is reproducible.
        let again = tempfile::tempdir().unwrap();
        init_tiny(
            again.path(),
            &TinySpec {
                arch,
                ..TinySpec::default()
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("model.safetensors")).unwrap(),
            std::fs::read(again.path().join("model.safetensors")).unwrap()
        );
    }
}

#[test]
fn a_fresh_adapter_changes_nothing_and_counts_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    init_tiny(dir.path(), &TinySpec::default()).unwrap();
    let mut model = Model::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let input = Tensor::new(&[[3u32, 9, 27, 81]], &Device::Cpu).unwrap();
    let before = model.forward(&input, &Batch::default(), None).unwrap();
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.1,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
        use_rslora: false,
    };
    model.add_lora(&cfg, 7).unwrap();
    // hidden 64, 4 heads (head_dim 16), 2 kv heads: q is 64→64, v is 64→32; r(in + out) each, 2 layers.
    assert_eq!(
        model.trainable_parameters(),
        2 * (4 * (64 + 64) + 4 * (64 + 32))
    );
    let after = model.forward(&input, &Batch::default(), None).unwrap();
    assert_eq!(
        row(&before, 0, 3).unwrap(),
        row(&after, 0, 3).unwrap(),
        "B = 0: the adapter starts as a no-op"
    );
    // Dropout in training mode still leaves a zero-B adapter a no-op, and gradients reach every variable.
    let logits = model.forward(&input, &Batch::default(), Some(1)).unwrap();
    let (loss, _) =
        tunelab::model::decoder::causal_lm_loss(&logits, &[vec![3, 9, 27, 81]]).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in model.lora_vars() {
        let g = grads
            .get(&var)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let norm: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
        if name.contains("lora_B") {
            assert!(norm > 0.0, "{name}: B must get a nonzero gradient");
        }
    }
}

/// Every family's PEFT fixture adapter, written by tunelab's writer, holds PEFT's tensors
/// under PEFT's names (Phi-3's fused `qkv_proj` and `gate_up_proj` included) and loads back
/// to the same logits. tests/reference/check_peft_roundtrip.py sets TUNELAB_KEEP_ADAPTER to
/// load these files in PEFT itself.
#[test]
fn saved_adapters_round_trip_in_peft_format() {
    for name in crate::model_parity::MODELS {
        let fixture = common::fixture(&format!("models/{name}"));
        let mut model = Model::load(&fixture.join("model"), DType::F32, &Device::Cpu).unwrap();
        peft::load(&mut model, &fixture.join("adapter")).unwrap();
        let input = Tensor::new(&[[5u32, 17, 42, 8, 91]], &Device::Cpu).unwrap();
        let want = model.forward(&input, &Batch::default(), None).unwrap();
        let out = tempfile::tempdir().unwrap();
        let base = format!("tests/fixtures/models/{name}/model");
        peft::save(&model, out.path(), &base).unwrap();
        if let Some(keep) = std::env::var_os("TUNELAB_KEEP_ADAPTER") {
            peft::save(&model, &std::path::Path::new(&keep).join(name), &base).unwrap();
        }
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["task_type"], "CAUSAL_LM");
        assert_eq!(cfg["r"], 4);
        assert_eq!(cfg["lora_alpha"], 8.0);
        let modules: Vec<String> = serde_json::from_value(cfg["target_modules"].clone()).unwrap();
        assert_eq!(modules, model.config.linear_modules(), "{name}");
        let saved = candle_core::safetensors::load(
            out.path().join("adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let original = candle_core::safetensors::load(
            fixture.join("adapter/adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(saved.len(), original.len(), "{name}");
        for (tensor, t) in &original {
            let s = saved
                .get(tensor)
                .unwrap_or_else(|| panic!("{name}: {tensor} missing from the saved adapter"));
            assert_eq!(s.dims(), t.dims(), "{tensor}");
            assert_eq!(common::max_abs_diff(s, t), 0.0, "{tensor}");
        }
        let mut fresh = Model::load(&fixture.join("model"), DType::F32, &Device::Cpu).unwrap();
        peft::load(&mut fresh, out.path()).unwrap();
        let got = fresh.forward(&input, &Batch::default(), None).unwrap();
        assert_eq!(
            row(&got, 0, 4).unwrap(),
            row(&want, 0, 4).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn unsupported_adapter_options_are_refused_by_name() {
    let fixture = common::fixture("models/llama");
    let base: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    for (key, value, expect) in [
        (
            "use_dora",
            serde_json::json!(true),
            "use_dora: DoRA adapters are not supported",
        ),
        (
            "bias",
            serde_json::json!("all"),
            "bias: \"all\" is not supported",
        ),
        (
            "modules_to_save",
            serde_json::json!(["lm_head"]),
            "modules_to_save",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = base.clone();
        cfg[key] = value;
        std::fs::write(dir.path().join("adapter_config.json"), cfg.to_string()).unwrap();
        std::fs::copy(
            fixture.join("adapter/adapter_model.safetensors"),
            dir.path().join("adapter_model.safetensors"),
        )
        .unwrap();
        let mut model = Model::load(&fixture.join("model"), DType::F32, &Device::Cpu).unwrap();
        let err = peft::load(&mut model, dir.path()).unwrap_err().to_string();
        assert!(err.contains(expect), "{key}: {err}");
        assert!(err.contains("adapter_config.json"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        std::fs::read(fixture.join("model/config.json")).unwrap(),
    )
    .unwrap();
    let err = Model::load(dir.path(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pickle .bin weights") && err.contains("refuses"),
        "{err}"
    );
}

#[test]
fn merging_an_adapter_keeps_the_logits() {
    for name in crate::model_parity::MODELS {
        let fixture = common::fixture(&format!("models/{name}"));
        let mut model = Model::load(&fixture.join("model"), DType::F32, &Device::Cpu).unwrap();
        peft::load(&mut model, &fixture.join("adapter")).unwrap();
        let input = Tensor::new(&[[5u32, 17, 42, 8, 91, 33]], &Device::Cpu).unwrap();
        let before = model.forward(&input, &Batch::default(), None).unwrap();
        model.merge_lora().unwrap();
        assert!(model.lora.is_none() && model.lora_vars().is_empty());
        let after = model.forward(&input, &Batch::default(), None).unwrap();
        for t in 0..6 {
            let (a, b) = (row(&before, 0, t).unwrap(), row(&after, 0, t).unwrap());
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{name} position {t}: {worst}");
        }
    }
}

#[test]
fn sharded_safetensors_load_like_a_single_file() {
    let dir = tempfile::tempdir().unwrap();
    init_tiny(dir.path(), &TinySpec::default()).unwrap();
    let single = Model::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let all =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let (a, b): (Vec<_>, Vec<_>) = names.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let shard: std::collections::HashMap<String, Tensor> = part
            .iter()
            .map(|(_, n)| ((**n).clone(), all[**n].to_dtype(DType::BF16).unwrap()))
            .collect();
        for n in shard.keys() {
            map.insert(n.clone(), serde_json::Value::String(file.into()));
        }
        candle_core::safetensors::save(&shard, dir.path().join(file)).unwrap();
    }
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let sharded = Model::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let input = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
    let (x, y) = (
        row(
            &single.forward(&input, &Batch::default(), None).unwrap(),
            0,
            2,
        )
        .unwrap(),
        row(
            &sharded.forward(&input, &Batch::default(), None).unwrap(),
            0,
            2,
        )
        .unwrap(),
    );
    // bf16 shards round the weights: close, not equal.
    let worst = x
        .iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.05 && worst > 0.0, "{worst}");
}
