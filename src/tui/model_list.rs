//! Picker items for models and datasets, built on worker threads (the catalog reads every
//! candidate's config and sizes its files).

use super::widgets::PickItem;
use crate::model::catalog::{ModelEntry, Source};
use crate::units::bytes;
use crate::workspace::FileEntry;

/// One row per model: architecture, parameters, memory at `dtype_bytes` per parameter, size
/// on disk and where it is; unsupported ones say why.
pub fn model_items(entries: &[ModelEntry], dtype_bytes: f64, dtype: &str) -> Vec<PickItem> {
    entries
        .iter()
        .map(|e| {
            let source = match e.source {
                Source::Workspace => "workspace",
                Source::HubCache => "hub cache",
            };
            let detail = match &e.unsupported {
                Some(why) => format!("{source} · unsupported: {why}"),
                None => format!(
                    "{source} · {} · {} params · {} in {dtype} · {} on disk",
                    e.arch.as_deref().unwrap_or("?"),
                    e.params.map_or("?".into(), crate::units::count),
                    e.memory(dtype_bytes).map_or("?".into(), bytes),
                    bytes(e.disk_bytes),
                ),
            };
            PickItem {
                label: e.name.clone(),
                detail,
                value: e.spec.clone(),
                ok: e.unsupported.is_none(),
            }
        })
        .collect()
}

/// One row per dataset file, named relative to `root`, with its size.
pub fn dataset_items(root: &std::path::Path, files: &[FileEntry]) -> Vec<PickItem> {
    files
        .iter()
        .map(|f| PickItem {
            label: f
                .path
                .strip_prefix(root)
                .unwrap_or(&f.path)
                .display()
                .to_string(),
            detail: bytes(f.bytes),
            value: f.path.display().to_string(),
            ok: true,
        })
        .collect()
}
