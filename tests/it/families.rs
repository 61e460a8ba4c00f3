//! The newer families (Qwen3, Gemma 2, Gemma 3, Phi-3) and sliding windows beyond what the
//! shared parity tests check: the hand-written backward against torch's gradients, that
//! each distinctive feature really moves the logits (so the fixtures test it), and that
//! generation with a KV cache keeps the sliding windows.

use crate::common;
use crate::model_parity::MODELS;
use candle_core::{DType, Device, Tensor};
use tunelab::model::decoder::{row, KvCache};
use tunelab::model::{Batch, Model};
use tunelab::train::micro::StepArgs;
use tunelab::train::step::forward_backward;
use tunelab::train::Grads;

fn with_adapter(name: &str) -> Model {
    let dir = common::fixture(&format!("models/{name}"));
    let mut model = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
    tunelab::model::peft::load(&mut model, &dir.join("adapter")).unwrap();
    model
}

/// The hand-written backward (with and without activation checkpointing) gives torch's LoRA
/// gradients for every family, fused projections and soft-capping included.
#[test]
fn hand_written_backward_matches_torch_for_every_family() {
    for name in MODELS {
        let (model, mb, _) = crate::train::family_fixture(name);
        for checkpointing in [false, true] {
            let vars = model.lora_vars();
            let mut grads = Grads::new(vars.iter().map(|(_, v)| v.clone()).collect());
            forward_backward(
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
            common::assert_grads_match_fixture(
                &vars,
                &grads,
                &format!("models/{name}/grads.safetensors"),
                &format!("{name} checkpointing={checkpointing}"),
            );
        }
    }
}

/// Max relative difference of two logit tensors over the real tokens of the fixture batch.
fn worst(a: &Tensor, b: &Tensor) -> f64 {
    let mut w: f64 = 0.0;
    for (bi, len) in [(0, 9), (1, 6)] {
        for t in 0..len {
            for (x, y) in row(a, bi, t).unwrap().iter().zip(row(b, bi, t).unwrap()) {
                w = w.max(((x - y).abs() / y.abs().max(1e-2)) as f64);
            }
        }
    }
    w
}

/// Every switch the fixtures turn on changes the logits by far more than the 1e-4 parity
/// tolerance, so parity with transformers really covers it.
#[test]
fn each_family_feature_moves_the_logits() {
    type Tweak = fn(&mut Model);
    let cases: &[(&str, &str, Tweak)] = &[
        ("qwen3", "q/k norms", |m| {
            for b in &mut m.layers {
                b.q_norm = None;
                b.k_norm = None;
            }
        }),
        ("qwen3", "sliding window", |m| {
            m.config.sliding_window = None
        }),
        ("gemma2", "attention soft-cap", |m| {
            m.config.attn_logit_softcapping = None
        }),
        ("gemma2", "final soft-cap", |m| {
            m.config.final_logit_softcapping = None
        }),
        ("gemma2", "query_pre_attn_scalar", |m| {
            m.config.query_pre_attn_scalar = None
        }),
        ("gemma2", "sandwich norms", |m| {
            for b in &mut m.layers {
                b.attn_out_norm = None;
            }
        }),
        ("gemma2", "sliding window", |m| {
            m.config.sliding_window = None
        }),
        ("gemma3", "local RoPE base", |m| m.config.rope_local = None),
        ("gemma3", "sliding window", |m| {
            m.config.sliding_window = None
        }),
        ("gemma3", "embedding scale", |m| {
            m.config.arch = tunelab::model::Arch::Qwen3
        }),
        ("phi3", "LongRoPE long factors", |m| {
            if let Some(tunelab::model::config::RopeScaling::LongRope(l)) =
                &mut m.config.rope.scaling
            {
                l.long_factor = l.short_factor.clone();
            }
        }),
        ("phi3", "partial rotary", |m| {
            m.config.rotary_dim = 4;
            if let Some(tunelab::model::config::RopeScaling::LongRope(l)) =
                &mut m.config.rope.scaling
            {
                l.long_factor.truncate(2);
                l.short_factor.truncate(2);
            }
        }),
        ("mistral_window", "sliding window", |m| {
            m.config.sliding_window = None
        }),
    ];
    let ids = Tensor::new(
        vec![
            vec![5u32, 17, 42, 8, 91, 33, 60, 2, 77],
            vec![11, 4, 29, 64, 3, 50, 0, 0, 0],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let batch = Batch {
        position_ids: None,
        attention_mask: Some(vec![vec![1; 9], [vec![1; 6], vec![0; 3]].concat()]),
    };
    for (name, feature, tweak) in cases {
        let model = with_adapter(name);
        let want = model.forward(&ids, &batch, None).unwrap();
        let mut changed = model.clone();
        tweak(&mut changed);
        let got = changed.forward(&ids, &batch, None).unwrap();
        let w = worst(&got, &want);
        assert!(
            w > 1e-2,
            "{name}: turning off {feature} moved the logits only {w:e}"
        );
    }
}

/// Token-by-token generation with a KV cache gives the full forward's logits at every
/// position, so sliding windows (and Gemma 3's two RoPEs) hold in generation too. (Phi-3 is
/// left out: like transformers, a call picks LongRoPE's factors by its own largest position,
/// so a prompt shorter than the pretraining length is encoded with the short ones.)
#[test]
fn cached_generation_keeps_sliding_windows() {
    let ids = [5u32, 17, 42, 8, 91, 33, 60, 2, 77];
    for name in ["gemma2", "gemma3", "qwen3", "mistral_window"] {
        let model = with_adapter(name);
        let full = model
            .forward(
                &Tensor::new(&[ids], &Device::Cpu).unwrap(),
                &Batch::default(),
                None,
            )
            .unwrap();
        let mut cache = KvCache::default();
        // A prompt of three tokens, then one at a time.
        let mut got = vec![model.forward_cached(&ids[..3], &mut cache).unwrap()];
        for t in 3..ids.len() {
            got.push(model.forward_cached(&ids[t..t + 1], &mut cache).unwrap());
        }
        for (k, logits) in got.iter().enumerate() {
            let pos = if k == 0 { 2 } else { k + 2 };
            let want = row(&full, 0, pos).unwrap();
            let g = logits.to_vec1::<f32>().unwrap();
            let w = g
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1e-2))
                .fold(0f32, f32::max);
            assert!(
                w < 1e-4,
                "{name}: position {pos} differs by {w:e} with a cache"
            );
        }
    }
}

/// `tunelab train` runs on each new family's tiny model (its switches on: Gemma's soft-caps
/// and sliding windows, q/k norms, Phi-3's fused projections), the eval loss falls, and the
/// adapter it writes names the family's modules and chats.
#[test]
fn train_runs_and_learns_on_every_new_family() {
    let h = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run(&h, &["demo"]);
    assert_eq!(code, 0, "{err}");
    let demo = h.path().join("data/demo");
    for (arch, modules) in [
        ("qwen3", "q_proj"),
        ("gemma2", "gate_proj"),
        ("gemma3", "o_proj"),
        ("phi3", "qkv_proj"),
    ] {
        let model = h.path().join(format!("tiny-{arch}"));
        let (code, _, err) = common::run(
            &h,
            &[
                "model",
                "init-tiny",
                "--arch",
                arch,
                "-o",
                model.to_str().unwrap(),
                "--corpus",
                demo.join("persona.jsonl").to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{arch}: {err}");
        let cfg = h.path().join(format!("{arch}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "name: {arch}\nmodel: {{path: {m}}}\ndata: {{train: {d}, eval_split: 0.1, max_seq_len: 128}}\n\
                 lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [all-linear], use_rslora: false}}\n\
                 train: {{lr: 0.01, scheduler: constant, warmup: 0, batch_size: 8, grad_accum: 1, seed: 3, \
                 max_steps: 40, eval_every: 20, save_every: 40, keep_checkpoints: 1}}\n",
                m = model.display(),
                d = demo.join("persona.jsonl").display(),
            ),
        )
        .unwrap();
        let run = h.path().join(format!("run-{arch}"));
        let (code, _, err) = common::run(
            &h,
            &[
                "train",
                cfg.to_str().unwrap(),
                "--run-dir",
                run.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{arch}: {err}");
        let events = common::event_lines(&tunelab::runs::RunDir::new(&run).events_path());
        let evals: Vec<f64> = events
            .iter()
            .filter(|e| e["type"] == "eval")
            .map(|e| e["eval_loss"].as_f64().unwrap())
            .collect();
        assert!(evals.len() >= 2, "{arch}: {evals:?}");
        let (first, last) = (evals[0], *evals.last().unwrap());
        assert!(last < 0.8 * first, "{arch}: eval loss {first} -> {last}");
        let adapter: serde_json::Value = serde_json::from_slice(
            &std::fs::read(run.join("adapter/adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert!(
            adapter["target_modules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == modules),
            "{arch}: {adapter}"
        );
        let (code, out, err) = common::run(
            &h,
            &[
                "chat",
                "--model",
                model.to_str().unwrap(),
                "--adapter",
                run.join("adapter").to_str().unwrap(),
                "--prompt",
                "Who are you?",
                "--max-new-tokens",
                "8",
            ],
        );
        assert_eq!(code, 0, "{arch}: {err}");
        assert!(!out.trim().is_empty(), "{arch}: empty reply");
    }
}

/// GGUF files of each new family, written with llama.cpp's gguf-py as its converter does
/// (tests/reference/make_gguf_fixtures.py), load to the safetensors model's logits, with and
/// without the family's PEFT adapter.
#[test]
fn gguf_files_of_every_new_family_match_the_safetensors_model() {
    let ids = Tensor::new(
        vec![
            vec![5u32, 17, 42, 8, 91, 33, 60, 2, 77],
            vec![11, 4, 29, 64, 3, 50, 0, 0, 0],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let batch = Batch {
        position_ids: None,
        attention_mask: Some(vec![vec![1; 9], [vec![1; 6], vec![0; 3]].concat()]),
    };
    for name in ["qwen3", "gemma2", "gemma3", "phi3"] {
        let dir = common::fixture(&format!("models/{name}"));
        let (mut gguf, _) = tunelab::model::gguf::load_model(
            &common::fixture(&format!("gguf/{name}.gguf")),
            &Device::Cpu,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(gguf.config.arch.name(), name);
        let mut st = Model::load(&dir.join("model"), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            gguf.config.sliding_layers, st.config.sliding_layers,
            "{name}"
        );
        assert_eq!(gguf.config.rotary_dim, st.config.rotary_dim, "{name}");
        for adapter in [false, true] {
            if adapter {
                tunelab::model::peft::load(&mut st, &dir.join("adapter")).unwrap();
                tunelab::model::peft::load(&mut gguf, &dir.join("adapter")).unwrap();
            }
            let want = st.forward(&ids, &batch, None).unwrap();
            let got = gguf.forward(&ids, &batch, None).unwrap();
            let w = worst(&got, &want);
            assert!(
                w < 1e-4,
                "{name} adapter={adapter}: GGUF logits differ by {w:e}"
            );
        }
    }
}

/// A model folder without a chat template gets its family's (Qwen3's thinking template,
/// Phi-3's `<|user|>` one when the vocabulary has no `<|im_sep|>`), and the family's
/// end-of-turn tokens stop generation.
#[test]
fn a_folder_without_a_template_gets_its_familys() {
    let h = tempfile::tempdir().unwrap();
    for (arch, marker) in [("qwen3", "enable_thinking"), ("phi3", "Phi-4-mini")] {
        let dir = h.path().join(arch);
        let (code, _, err) = common::run(
            &h,
            &[
                "model",
                "init-tiny",
                "--arch",
                arch,
                "-o",
                dir.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{err}");
        let cfg_path = dir.join("tokenizer_config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg.as_object_mut().unwrap().remove("chat_template");
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        std::fs::remove_file(dir.join("generation_config.json")).unwrap();
        let tok = tunelab::model::source::load_tokenizer(&dir).unwrap();
        let template = tok.default_chat_template().unwrap_or_default();
        assert!(template.contains(marker), "{arch}: {template}");
        // <|im_end|> is the tiny tokenizer's eos; both families' <|endoftext|> joins it.
        let endoftext = tok.inner.token_to_id("<|endoftext|>").unwrap();
        assert!(
            tok.stop_ids.contains(&endoftext),
            "{arch}: {:?}",
            tok.stop_ids
        );
    }
}
