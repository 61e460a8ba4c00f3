//! Generation with a KV cache, and hub ids through a Hugging Face cache laid out like the hub's.

use crate::common;

use candle_core::{DType, Device, Tensor};
use tunelab::infer::sampling::Sampling;
use tunelab::infer::{generate, GenEvent, StopReason};
use tunelab::model::decoder::{row, KvCache};
use tunelab::model::tiny::{init_tiny, TinySpec};
use tunelab::model::{Batch, Model};
use tunelab::template::TextTokenizer;

#[test]
fn cached_decoding_matches_the_full_forward() {
    let dir = tempfile::tempdir().unwrap();
    init_tiny(dir.path(), &TinySpec::default()).unwrap();
    let model = Model::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let ids = [3u32, 14, 15, 92, 65, 35];
    let full = model
        .forward(
            &Tensor::new(&[ids], &Device::Cpu).unwrap(),
            &Batch::default(),
            None,
        )
        .unwrap();
    let mut cache = KvCache::default();
    let first: Vec<f32> = model
        .forward_cached(&ids[..4], &mut cache)
        .unwrap()
        .to_vec1()
        .unwrap();
    let want = row(&full, 0, 3).unwrap();
    assert!(first.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    for (t, id) in ids.iter().enumerate().skip(4) {
        let step: Vec<f32> = model
            .forward_cached(&[*id], &mut cache)
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = row(&full, 0, t).unwrap();
        assert!(
            step.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5),
            "position {t}"
        );
    }
    assert_eq!(cache.len, 6);
}

#[test]
fn generation_streams_text_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    init_tiny(dir.path(), &TinySpec::default()).unwrap();
    let model = Model::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(dir.path()).unwrap();
    let prompt = tok
        .encode(
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            false,
        )
        .unwrap()
        .ids;
    let mut events = Vec::new();
    generate(
        &model,
        &tok,
        &prompt,
        Sampling {
            max_new_tokens: 5,
            ..Default::default()
        },
        |e| {
            events.push(e);
            true
        },
    );
    let Some(GenEvent::Done {
        tokens,
        reason,
        prompt_tokens,
        ..
    }) = events.last().cloned()
    else {
        panic!("{events:?}")
    };
    assert_eq!(prompt_tokens, prompt.len());
    assert!(tokens <= 5);
    if reason == StopReason::MaxTokens {
        assert_eq!(tokens, 5);
    }
    // The same seed and settings give the same text.
    let text = |seed| {
        let mut s = String::new();
        generate(
            &model,
            &tok,
            &prompt,
            Sampling {
                max_new_tokens: 8,
                temperature: 1.0,
                seed,
                ..Default::default()
            },
            |e| {
                if let GenEvent::Text(t) = e {
                    s.push_str(&t);
                }
                true
            },
        );
        s
    };
    assert_eq!(text(3), text(3));
}

/// Characters split across byte-level tokens wait until they are whole: the pieces join to
/// the full decode and none holds a replacement character.
#[test]
fn streamed_text_never_splits_a_character() {
    let dir = tempfile::tempdir().unwrap();
    init_tiny(dir.path(), &TinySpec::default()).unwrap();
    let tok = TextTokenizer::from_dir(dir.path()).unwrap();
    let text = "Arr, 日本語 and émojis 🦀🏴‍☠️ ahoy!";
    let ids = tok.encode(text, false).unwrap().ids;
    assert!(
        ids.len() > text.chars().count(),
        "the tiny byte-level tokenizer splits these characters"
    );
    let mut stream = tunelab::infer::stream::TokenStream::new(&tok);
    let mut pieces: Vec<String> = ids.iter().filter_map(|id| stream.push(*id)).collect();
    pieces.extend(stream.finish());
    assert!(pieces.len() > 3, "{pieces:?}");
    for p in &pieces {
        assert!(!p.contains('\u{FFFD}'), "{pieces:?}");
    }
    assert_eq!(pieces.concat(), tok.decode(&ids).unwrap());
    assert_eq!(pieces.concat(), text);
}

#[test]
fn hub_ids_resolve_from_a_local_cache_and_fail_clearly_offline() {
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().join("hf");
    let repo = hf_home.join("hub/models--tunelab--tiny");
    let snap = repo.join("snapshots/0123456789abcdef");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").unwrap();
    init_tiny(&snap, &TinySpec::default()).unwrap();
    let run = |id: &str| {
        common::tunelab(&home)
            .env("HF_HOME", &hf_home)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_TOKEN", "hf_secret_token_never_logged")
            .args([
                "chat",
                "--model",
                id,
                "--prompt",
                "hi",
                "--max-new-tokens",
                "3",
            ])
            .output()
            .unwrap()
    };
    let ok = run("tunelab/tiny");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = run("tunelab/absent");
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("tunelab/absent is not in the Hugging Face cache and HF_HUB_OFFLINE is set"),
        "{err}"
    );
    assert!(
        err.contains(&hf_home.join("hub").display().to_string()),
        "{err}"
    );
    // The token never reaches the log.
    let log = std::fs::read_to_string(home.path().join("state/tunelab.log")).unwrap_or_default();
    assert!(!log.contains("hf_secret_token_never_logged"));
}

/// The formats of a model's projections and head (`packed` for `Weight::Packed`).
fn weight_formats(m: &tunelab::model::decoder::Model) -> Vec<String> {
    use tunelab::model::decoder::Weight;
    let mut all: Vec<String> = m
        .layers
        .iter()
        .flat_map(|b| b.linears().into_iter().map(|(_, _, l)| &l.weight))
        .chain([&m.lm_head])
        .map(|w| match w {
            Weight::Quantized(q) => format!("{:?}", q.dtype()),
            Weight::Dense(_) => "dense".to_string(),
            Weight::Nf4(_) => "nf4".to_string(),
            Weight::Packed(_) => "packed".to_string(),
            Weight::Panels(_) => "panels".to_string(),
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

/// A cached prefill of 20 tokens (the panel path) and 6 greedy decode steps of `kept` give
/// `dense`'s logits within 1e-4 of the largest.
fn decode_matches_dense(kept: &Model, dense: &Model) {
    let dev = Device::Cpu;
    let mut ids: Vec<u32> = (0..20).map(|i| (i * 37 + 11) % 300).collect();
    let mut cache = KvCache::default();
    let mut logits = kept.forward_cached(&ids, &mut cache).unwrap();
    loop {
        let got: Vec<f32> = logits.to_vec1().unwrap();
        let full = dense
            .forward(
                &Tensor::new(ids.as_slice(), &dev)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
                &Batch::default(),
                None,
            )
            .unwrap();
        let want = row(&full, 0, ids.len() - 1).unwrap();
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
        if ids.len() == 26 {
            break;
        }
        let next = got
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32);
        ids.push(next);
        logits = kept.forward_cached(&[next], &mut cache).unwrap();
    }
}

/// Whether this CPU runs the block kernels (AVX2, FMA, F16C) and the packed ones (AVX-512F).
fn kernels() -> (bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        let rows = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        (rows, rows && std::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (false, false)
    }
}

/// A Llama of hidden 320 (= 10·32, not a multiple of 256) and 2 layers, its base quantized
/// by `quantization`.
fn quantized_llama(quantization: tunelab::model::Quantization) -> Model {
    use tunelab::model::{random, QuantPlan};
    let cfg = serde_json::json!({
        "model_type": "llama", "vocab_size": 300, "hidden_size": 320,
        "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 5,
        "num_key_value_heads": 1, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 256, "tie_word_embeddings": false,
    });
    let plan = QuantPlan {
        quantization,
        head: true,
        cache: None,
    };
    random::random_model_quantized(&cfg, DType::F32, &Device::Cpu, plan)
        .unwrap()
        .0
}

/// A base in llama-quantize's Q4_K_M formats (Q5_0 where the input width is not a multiple
/// of 256, Q4_K and Q6_K where it is) stays quantized for generation, read by the block
/// kernels (`ops::qmatmul`, `ops::kquant`): a cached prefill (the dequantized-panel path)
/// and each decode step (blocks unpacked in registers) give the dense model's logits.
#[test]
fn k_quant_base_stays_quantized_and_decodes_as_the_dense_forward() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use std::sync::Arc;
    use tunelab::model::decoder::Weight;
    let dev = Device::Cpu;
    // The projections reading hidden 320 fall back from Q4_K to Q5_0, as SmolLM2's 576 do;
    // the MLP's down projection reads 512 and stays Q4_K.
    let mut kept = quantized_llama(tunelab::model::Quantization::Q4k);
    // llama-quantize gives some down projections Q6_K; this quantizer has no such plan.
    for (_, module, l) in kept.layers[1].linears_mut() {
        if module == "down_proj" {
            let w = Tensor::randn(0f32, 0.02, (320, 512), &dev).unwrap();
            l.weight = Weight::Quantized(Arc::new(QTensor::quantize(&w, GgmlDType::Q6K).unwrap()));
        }
    }
    assert_eq!(weight_formats(&kept), ["Q4K", "Q5_0", "Q6K"]);
    let mut dense = kept.clone();
    dense.densify().unwrap();
    kept.prepare_for_generation().unwrap();
    match kernels() {
        // AVX-512: every projection is repacked (`ops::qpacked`; Q5_0 as Q8_0); the head's
        // 300 rows are not a multiple of 16 and keep their Q5_0 blocks.
        (_, true) => assert_eq!(weight_formats(&kept), ["Q5_0", "packed"], "densified"),
        (true, false) => assert_eq!(weight_formats(&kept), ["Q4K", "Q5_0", "Q6K"], "densified"),
        // Without the kernel the base is densified, and the comparison below still holds.
        (false, _) => eprintln!("no AVX2/FMA/F16C: generation runs on a dense copy"),
    }
    decode_matches_dense(&kept, &dense);
}

/// A Q4_0 or Q8_0 base is repacked for generation where the CPU has AVX-512F (16 rows
/// interleaved, `ops::qpacked`): every projection (all have a multiple of 16 rows) is
/// packed, the head of 300 rows keeps its blocks, and prefill and decode give the dense
/// model's logits.
#[test]
fn packed_base_decodes_as_the_dense_forward() {
    use tunelab::model::Quantization;
    for (quantization, format) in [(Quantization::Q4_0, "Q4_0"), (Quantization::Q8_0, "Q8_0")] {
        let mut kept = quantized_llama(quantization);
        assert_eq!(weight_formats(&kept), [format]);
        let mut dense = kept.clone();
        dense.densify().unwrap();
        kept.prepare_for_generation().unwrap();
        match kernels() {
            (_, true) => assert_eq!(weight_formats(&kept), [format, "packed"]),
            (true, false) => assert_eq!(weight_formats(&kept), [format]),
            (false, _) => eprintln!("no AVX2/FMA/F16C: generation runs on a dense copy"),
        }
        decode_matches_dense(&kept, &dense);
    }
}
