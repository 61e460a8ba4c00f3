//! The Runs tab's work off the UI thread: exports and plots of runs, and queue edits.

use super::Msg;
use crate::runs::RunDir;
use crate::tui::effect::{Effect, Sink};
use std::path::PathBuf;

/// What the Runs tab exports from a run, into `<run>/export/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Merged,
    Gguf,
    Lora,
}

/// Exports `dir` as `kind` into `<run>/export/`; worker threads only (a merge of a real
/// model takes a while, so the tab says it started, sends each step and tensor count
/// through `sink` as it goes (`writing model-q8_0.gguf 120/272 tensors`), and reports when
/// it ends).
pub fn export_job(
    dir: PathBuf,
    kind: ExportKind,
    runs_root: PathBuf,
    sink: Sink<Msg>,
) -> Effect<Msg> {
    let out = dir.join("export");
    let what = match kind {
        ExportKind::Merged => "a merged folder",
        ExportKind::Gguf => "a q8_0 GGUF",
        ExportKind::Lora => "a LoRA GGUF",
    };
    let start = Effect::info(format!("exporting {what} into {} …", out.display()));
    let job = Effect::spawn(move || {
        let req = crate::export::Request {
            source: Some(dir.display().to_string()),
            model: None,
            merge: kind == ExportKind::Merged,
            gguf: kind == ExportKind::Gguf,
            gguf_lora: kind == ExportKind::Lora,
            dtype: None,
            as_trained: false,
            quant: crate::export::gguf::GgufQuant::Q8_0,
            max_shard_bytes: crate::export::hf::DEFAULT_SHARD_BYTES,
            output: match kind {
                ExportKind::Merged => out.join("merged"),
                _ => out,
            },
        };
        let mut report = |p: crate::export::Progress| {
            sink(Msg::Exporting(p.to_string()));
        };
        let result = crate::export::export(&req, &runs_root, &mut report)
            .map(|r| {
                let files: Vec<String> = r
                    .written
                    .iter()
                    .map(|(_, p)| p.display().to_string())
                    .collect();
                let mut line = format!("exported {}", files.join(", "));
                for w in &r.warnings {
                    line.push_str(&format!(" (warning: {w})"));
                }
                line
            })
            .map_err(|e| format!("export failed: {e}"));
        Msg::Exported(result)
    });
    Effect::Batch(vec![start, job])
}

/// Plots `dirs` into the first run's `export/curves.svg`; worker threads only.
pub fn plot_job(dirs: Vec<PathBuf>) -> Effect<Msg> {
    Effect::spawn(move || {
        let out = dirs[0].join("export").join("curves.svg");
        let runs: Vec<RunDir> = dirs.iter().map(RunDir::new).collect();
        let result = crate::runs::plot::plot(&runs, &out, &Default::default())
            .map(|_| format!("plotted {}", out.display()))
            .map_err(|e| format!("plot failed: {e}"));
        Msg::Exported(result)
    })
}

/// Moves queued run `id` to place `to` among the waiting runs of `data`'s queue.
pub fn move_job(data: PathBuf, id: String, to: usize) -> Effect<Msg> {
    Effect::spawn(move || {
        let files = crate::queue::QueueFiles::new(data);
        Msg::Queue(
            files
                .update(|q| q.move_to(&id, to))
                .map(|()| format!("{id} is #{to} in the queue"))
                .map_err(|e| e.to_string()),
        )
    })
}

/// Takes waiting run `id` off `data`'s queue, and its never-started folder away.
pub fn dequeue_job(data: PathBuf, id: String) -> Effect<Msg> {
    Effect::spawn(move || {
        let files = crate::queue::QueueFiles::new(data);
        Msg::Queue(
            files
                .update(|q| q.remove(&id))
                .map(|e| {
                    crate::queue::submit::discard_queued_run(&RunDir::new(&e.dir));
                    format!("removed {id} from the queue")
                })
                .map_err(|e| e.to_string()),
        )
    })
}
