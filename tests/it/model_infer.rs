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
