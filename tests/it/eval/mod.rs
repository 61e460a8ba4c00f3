//! `tunelab eval`: loss (`loss`), multiple-choice benchmarks (`choice`), generation and its
//! metrics (`generate`, `metrics`) and the pairwise judge (`judge`).

mod choice;
mod generate;
mod judge;
mod loss;
mod metrics;

use crate::common;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The demo workspace, its tiny model and a persona adapter trained on it (`tiny-demo`, 60
/// steps, with the preset's `eval.tasks`), made once for every eval test.
pub(crate) struct Fixture {
    pub home: PathBuf,
    pub model: PathBuf,
    pub adapter: PathBuf,
}

pub(crate) fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Kept for the whole test binary (a static is never dropped), in the target folder
        // when there is one so `cargo clean` takes it; named by process, so each run sweeps
        // away the folders of test processes that have ended.
        let parent = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        sweep(&parent);
        let home = parent.join(format!("eval-judge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        common::ok(&home, &["demo"]);
        let run = home.join("runs/pirate");
        common::ok(
            &home,
            &[
                "train",
                "tiny-demo",
                "--set",
                "train.max_steps=60",
                "--run-dir",
                run.to_str().unwrap(),
            ],
        );
        Fixture {
            model: home.join("data/demo/tiny-model"),
            adapter: run.join("adapter"),
            home,
        }
    })
}

/// Removes the fixture folders of test processes that are gone (where `/proc` says so).
fn sweep(parent: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("eval-judge-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
