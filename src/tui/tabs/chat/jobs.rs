//! The Chat tab's work off the UI thread: listing the runs' adapters, reading a pinned
//! model's identity, loading the chat model, appending an exchange. Each runs on a worker
//! and its result comes back as a [`Msg`].

use super::state::{Listing, Msg, Slot};
use crate::infer::ChatModel;
use crate::model::base::BaseId;
use crate::runs::{adapters, RunDir};
use crate::tui::effect::Effect;
use std::path::{Path, PathBuf};

/// Lists every run's adapters under `runs_root` (for the picker of `slot`, when given).
pub fn list(runs_root: PathBuf, slot: Option<Slot>) -> Effect<Msg> {
    Effect::spawn(move || {
        let list = adapters::list(&runs_root);
        let bases = adapters::base_ids(&list);
        Msg::Adapters(
            Listing {
                adapters: list,
                bases,
            },
            slot,
        )
    })
}

/// Reads the identity of a model pinned with `M`.
pub fn pin(spec: String) -> Effect<Msg> {
    Effect::spawn(move || Msg::Pinned(BaseId::read(&spec)))
}

/// An adapter to load: its folder as listed, its run, and whether the slot follows the
/// run (then the run's newest at load time wins).
pub type Wanted = Option<(PathBuf, Option<PathBuf>, bool)>;

/// The folder to load for `want`: a followed run's newest adapter now; a picked one as
/// listed, or its run's newest when it is gone.
fn present(want: &Wanted) -> Option<PathBuf> {
    let (dir, run, follows) = want.as_ref()?;
    let newest = || {
        run.as_ref()
            .and_then(|r| adapters::newest(&RunDir::new(r)))
            .map(|a| a.dir)
    };
    if *follows {
        return newest().or_else(|| Some(dir.clone()));
    }
    if dir.join("adapter_config.json").is_file() {
        return Some(dir.clone());
    }
    newest().or_else(|| Some(dir.clone()))
}

/// Loads the chat model after checking that it fits in free memory.
pub fn load(spec: String, a: Wanted, b: Wanted, training_active: bool) -> Effect<Msg> {
    Effect::spawn(move || {
        Msg::Loaded(load_checked(
            &spec,
            present(&a).as_deref(),
            present(&b).as_deref(),
            training_active,
        ))
    })
}

fn load_checked(
    spec: &str,
    adapter: Option<&Path>,
    second: Option<&Path>,
    training_active: bool,
) -> Result<ChatModel, String> {
    let need = crate::model::ModelConfig::from_file(&Path::new(spec).join("config.json"))
        .ok()
        .map(|c| c.parameter_count() as u64 * 4);
    if let (Some(need), Some((_, avail))) = (need, crate::telemetry::system_memory()) {
        if need > avail {
            return Err(format!(
                "will not fit: the model needs about {} and {} is free{}",
                crate::units::bytes(need),
                crate::units::bytes(avail),
                if training_active {
                    " while a run trains"
                } else {
                    ""
                }
            ));
        }
    }
    let mut m = ChatModel::load(spec, adapter, "model")?;
    m.set_second(second)?;
    Ok(m)
}

/// Files an exchange can be appended to.
pub fn save_targets(root: PathBuf, default: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || Msg::SaveTargets(crate::workspace::exchange_targets(&root, &default)))
}

/// Appends one JSON line to `path` (creating its folder).
pub fn append(path: PathBuf, obj: serde_json::Map<String, serde_json::Value>) -> Effect<Msg> {
    Effect::spawn(move || Msg::Saved(append_line(&path, &obj)))
}

fn append_line(
    path: &Path,
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<PathBuf, String> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{}", serde_json::Value::Object(obj.clone()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}
