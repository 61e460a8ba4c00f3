//! The Data tab's work off the UI thread: listing the workspace's datasets, reading one for
//! paging, loading a model's tokenizer for the token view, converting a file. Each runs on
//! a worker and its result comes back as a [`Msg`].

use super::state::{Msg, MAX_RECORDS};
use crate::data::{Format, Preview};
use crate::template::Encoder;
use crate::tui::effect::Effect;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The workspace's dataset files with sizes.
pub fn scan(root: PathBuf, depth: usize) -> Effect<Msg> {
    Effect::spawn(move || Msg::Files(crate::workspace::dataset_files(&root, depth)))
}

/// Reads `path` for paging (up to [`MAX_RECORDS`] records).
pub fn load(path: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || {
        let result = Preview::read(&path, MAX_RECORDS).map_err(|e| e.to_string());
        Msg::Loaded { path, result }
    })
}

/// The token view's encoder: `model`'s tokenizer with its own chat template, training on
/// the assistant's turns.
pub fn encoder(model: String) -> Effect<Msg> {
    Effect::spawn(move || {
        let result = crate::model::source::load_tokenizer(Path::new(&model))
            .map_err(|e| e.to_string())
            .and_then(|tok| {
                Encoder::new(
                    tok,
                    &crate::template::TemplateChoice::Model,
                    crate::template::TrainOn::Assistant,
                )
                .map_err(|e| e.to_string())
            })
            .map(Arc::new);
        Msg::Encoder { model, result }
    })
}

/// Converts `path` (read as `from`) to `to` into `folder`.
pub fn convert(path: PathBuf, from: Format, to: Format, folder: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || {
        let result = crate::data::convert::convert_into(&path, from, to, &folder)
            .map(|(out, report)| {
                (
                    format!(
                        "wrote {} ({} records, {} skipped)",
                        out.display(),
                        report.written,
                        report.skipped
                    ),
                    out,
                )
            })
            .map_err(|e| e.to_string());
        Msg::Converted(result)
    })
}
