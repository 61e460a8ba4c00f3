//! Hub ids (`org/name`) through the Hugging Face cache, with hf-hub. `HF_HOME` picks the
//! cache (`$HF_HOME/hub`), `HF_TOKEN` authenticates downloads and is never logged or stored,
//! and `HF_HUB_OFFLINE=1` reads the cache only, with a clear error when the model is missing.

use super::ModelError;
use hf_hub::{Cache, Repo};
use std::path::PathBuf;

/// Files a model folder needs; the weights are found through the index when sharded.
const FILES: &[&str] = &["config.json", "tokenizer.json", "tokenizer_config.json"];
const OPTIONAL: &[&str] = &[
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// The cached snapshot folder holding `id`'s `config.json`, without downloading anything
/// (`None` for a spec that is not a hub id, or not in the cache).
pub fn cached_snapshot(id: &str) -> Option<PathBuf> {
    if !crate::paths::is_repo_id(id) {
        return None;
    }
    let cache = Cache::new(crate::paths::hf_hub_cache());
    let config = cache.repo(Repo::model(id.to_string())).get("config.json")?;
    config.parent().map(|p| p.to_path_buf())
}

/// The snapshot folder holding `id`'s files, downloading what is missing unless offline.
pub fn resolve(id: &str) -> Result<PathBuf, ModelError> {
    let cache = Cache::new(crate::paths::hf_hub_cache());
    let repo = cache.repo(Repo::model(id.to_string()));
    let cached = |f: &str| repo.get(f);
    if let Some(config) = cached("config.json") {
        let weights_ok = cached("model.safetensors").is_some()
            || cached("model.safetensors.index.json").is_some();
        if weights_ok && FILES.iter().all(|f| cached(f).is_some()) {
            return config
                .parent()
                .map(|p| p.to_path_buf())
                .ok_or_else(|| ModelError::Invalid {
                    path: config.clone(),
                    message: "bad cache layout".into(),
                });
        }
    }
    if crate::paths::hf_hub_offline() {
        return Err(ModelError::Invalid {
            path: crate::paths::hf_hub_cache(),
            message: format!(
                "{id} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; download it where there is a network (huggingface-cli download {id}) and copy the cache, or unset HF_HUB_OFFLINE"
            ),
        });
    }
    download(id)
}

/// The snapshot folder holding `id`'s config and tokenizer files (and its chat template),
/// downloading only those unless offline: what reading a tokenizer and chat template needs,
/// without the weights (`export-config` checks a chat template this way).
pub fn resolve_tokenizer(id: &str) -> Result<PathBuf, ModelError> {
    let cache = Cache::new(crate::paths::hf_hub_cache());
    let repo = cache.repo(Repo::model(id.to_string()));
    if let Some(config) = repo.get("config.json") {
        if FILES.iter().all(|f| repo.get(f).is_some()) {
            if let Some(dir) = config.parent() {
                return Ok(dir.to_path_buf());
            }
        }
    }
    let fail = |message: String| ModelError::Invalid {
        path: crate::paths::hf_hub_cache(),
        message,
    };
    if crate::paths::hf_hub_offline() {
        return Err(fail(format!(
            "{id}'s tokenizer is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
        )));
    }
    let mut builder = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(crate::paths::hf_hub_cache())
        .with_progress(false);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder
        .build()
        .map_err(|e| fail(format!("cannot reach the Hugging Face hub: {e}")))?;
    let remote = api.model(id.to_string());
    let mut config = None;
    for f in FILES {
        let p = remote
            .get(f)
            .map_err(|e| fail(format!("{id}: cannot download {f}: {e}")))?;
        config.get_or_insert(p);
    }
    for f in OPTIONAL {
        let _ = remote.get(f);
    }
    config
        .as_deref()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| fail("bad cache layout".into()))
}

fn download(id: &str) -> Result<PathBuf, ModelError> {
    let fail = |message: String| ModelError::Invalid {
        path: crate::paths::hf_hub_cache(),
        message,
    };
    let mut builder = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(crate::paths::hf_hub_cache())
        .with_progress(true);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder
        .build()
        .map_err(|e| fail(format!("cannot reach the Hugging Face hub: {e}")))?;
    let repo = api.model(id.to_string());
    let get = |f: &str| {
        repo.get(f).map_err(|e| fail(format!("{id}: cannot download {f}: {e} (offline? set HF_HUB_OFFLINE=1 to use the cache only)")))
    };
    let config = get("config.json")?;
    for f in FILES.iter().skip(1) {
        get(f)?;
    }
    for f in OPTIONAL {
        let _ = repo.get(f);
    }
    if let Ok(index) = repo.get("model.safetensors.index.json") {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| fail(format!("{id}: bad index: {e}")))?;
        let mut shards: Vec<String> = v["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        shards.sort();
        shards.dedup();
        for s in shards {
            get(&s)?;
        }
    } else {
        get("model.safetensors")?;
    }
    config
        .parent()
        .map(|p| p.to_path_buf())
        .ok_or_else(|| fail("bad cache layout".into()))
}
