//! The Adapter tab's work off the UI thread: finding models, datasets and runs with an
//! adapter for the finder, reading the model's config.json, detecting what the training
//! dataset holds, saving the form as a preset. Each runs on a worker and its result comes
//! back as a [`Msg`].

use super::state::{DataKind, Finding, ModelInfo, Msg};
use crate::config::RunConfig;
use crate::runs::RunSummary;
use crate::tui::context::Workspace;
use crate::tui::effect::Effect;
use crate::tui::model_list::{dataset_items, model_items};
use crate::tui::widgets::PickItem;
use std::path::{Path, PathBuf};

/// The runs that can start a preference run: those with a PEFT adapter, newest first,
/// after a "fresh adapter" row. Reads each run's adapter folder; worker threads only.
fn adapter_items(runs: &[RunSummary]) -> Vec<PickItem> {
    let mut items = vec![PickItem {
        label: "(fresh adapter)".into(),
        detail: "start from the base model; the reference is the base".into(),
        value: String::new(),
        ok: true,
    }];
    for r in crate::workspace::runs_with_adapter(runs) {
        let loss = r
            .best_eval_loss
            .map(|l| format!("best eval {l:.4}"))
            .or(r.last_loss.map(|l| format!("loss {l:.4}")))
            .unwrap_or_default();
        items.push(PickItem {
            label: r.id.clone(),
            detail: format!("{} · step {} · {loss}", r.state_label(), r.step),
            value: r.dir.display().to_string(),
            ok: true,
        });
    }
    items
}

/// Finds models, datasets or adapters for the finder.
pub fn find(
    what: Finding,
    ws: Workspace,
    dtype: crate::model::Dtype,
    runs: Vec<RunSummary>,
) -> Effect<Msg> {
    Effect::spawn(move || {
        let items = match what {
            Finding::Adapter(_) => adapter_items(&runs),
            Finding::Model => model_items(&ws.models(), dtype.size() as f64, &dtype.to_string()),
            Finding::Dataset => dataset_items(
                &ws.root,
                &crate::workspace::dataset_files(&ws.root, ws.scan_depth()),
            ),
        };
        Msg::Found(what, items)
    })
}

/// Detects the format of `path` (relative to `base`, then `data`).
pub fn data_kind(path: String, base: PathBuf, data: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || {
        let resolved = crate::workspace::find_file(Path::new(&path), &[&base, &data]);
        let opened = crate::data::Dataset::open(&resolved, None);
        let records = opened
            .as_ref()
            .ok()
            .and_then(|d| d.file.records().ok())
            .map(|r| r.count());
        let found = opened
            .map(|d| (d.format, d.kind()))
            .map_err(|e| e.to_string());
        Msg::DataKind(DataKind {
            path,
            found,
            records,
        })
    })
}

/// Resolves `spec` against the workspace at `base` and reads its config.json, and how fast
/// the runs in `runs` evaluated it.
pub fn model_info(spec: String, base: PathBuf, runs: Vec<RunSummary>) -> Effect<Msg> {
    Effect::spawn(move || {
        let resolved = crate::workspace::resolve_model(&spec, &base);
        let config = crate::model::source::config(&resolved).ok();
        let eval_pace = crate::runs::pace::eval_pace(&runs, &spec);
        Msg::ModelInfo(Box::new(ModelInfo {
            spec,
            resolved,
            config,
            eval_pace,
        }))
    })
}

/// Saves `config` as a preset of the workspace at `base`.
pub fn save_preset(config: RunConfig, base: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || Msg::PresetSaved(crate::workspace::save_preset(&base, &config)))
}
