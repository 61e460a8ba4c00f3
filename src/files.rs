//! Files and folders. Writing so that a reader never sees half of a file: a temporary file
//! beside the target, synced, then renamed over it; a failed or abandoned write leaves the
//! target as it was. Everything that publishes a file (datasets, configs, status,
//! checkpoints, adapters) goes through here. And walking a folder tree in a stable order.

use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// The folder a temporary file for `path` goes into (the same file system as `path`).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new private temporary file beside `path`, to be [`publish`]ed over it.
pub fn temp_beside(path: &Path) -> std::io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".tunelab-")
        .suffix(".tmp")
        .tempfile_in(folder_of(path))
        // The caller names the file it writes; the temporary's random name (tempfile adds
        // `at path "…"`) is noise there.
        .map_err(|e| {
            let text = e.to_string();
            match text.rfind(" at path \"") {
                Some(i) => std::io::Error::new(e.kind(), text[..i].to_string()),
                None => e,
            }
        })
}

/// Gives `tmp` ordinary permissions (temporary files are created 0600), syncs it, and
/// renames it over `dest`.
pub fn publish(tmp: NamedTempFile, dest: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)?;
    publish(tmp, path)
}

/// Visits the folder tree under `root` in sorted order, `depth` folders deep, skipping hidden
/// entries and `runs/` (run folders are never a workspace's datasets or models). `visit(path, is_dir)` returns whether to descend into a folder.
pub fn walk(root: &Path, depth: usize, visit: &mut dyn FnMut(&Path, bool) -> bool) {
    let mut it = walkdir::WalkDir::new(root)
        .min_depth(1)
        .max_depth(depth + 1)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        let Ok(e) = entry else { continue };
        let is_dir = e.file_type().is_dir();
        let name = e.file_name().to_string_lossy();
        let skip = name.starts_with('.') || name == "runs";
        if (skip || !visit(e.path(), is_dir)) && is_dir {
            it.skip_current_dir();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_with_ordinary_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}

thread_local! {
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic inside it into an error message: for third-party decoders
/// (Parquet) that panic on hostile files instead of returning an error. Panic hooks that
/// check [`panic_is_contained`] stay quiet for these (no stderr line, no terminal restore).
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = CONTAINED.with(|c| c.replace(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    out.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the decoder failed".into())
    })
}

/// Whether the current thread is inside [`contain`] (its panic is handled as an error).
pub fn panic_is_contained() -> bool {
    CONTAINED.with(|c| c.get())
}
