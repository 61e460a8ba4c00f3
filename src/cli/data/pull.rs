//! `data pull`: a dataset from the Hugging Face Hub.

use crate::cli::exit;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::scan::{self};
use tunelab::data::Dataset;

use super::inspect::{inspect_json, print_inspect};

pub(super) fn pull(
    id: String,
    split: Option<String>,
    revision: Option<String>,
    output: PathBuf,
    link: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    use tunelab::data::pull::{self, PullRequest};
    let req = PullRequest {
        id,
        split,
        revision,
        dest: output,
        link,
        progress: !as_json && std::io::stderr().is_terminal(),
    };
    let pulled = match pull::pull(&req) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(exit::UNUSABLE));
        }
    };
    if let Some(note) = &pulled.note {
        eprintln!("offline: {note}");
    }
    let mut failed = false;
    let mut files = Vec::new();
    if !as_json {
        let short = &pulled.commit[..pulled.commit.len().min(12)];
        println!(
            "{}@{short}: {} file{} into {}",
            pulled.id,
            pulled.files.len(),
            if pulled.files.len() == 1 { "" } else { "s" },
            req.dest.display()
        );
    }
    for f in &pulled.files {
        let summary = Dataset::open(&f.path, None).and_then(|ds| {
            let s = scan::scan(&ds, 0)?;
            Ok((ds, s))
        });
        match (summary, as_json) {
            (Ok((ds, s)), true) => {
                files.push(json!({"repo_path": f.repo_path, "path": f.path, "bytes": f.bytes, "inspect": inspect_json(&ds, &s)}))
            }
            (Ok((ds, s)), false) => {
                println!();
                print_inspect(&ds, &s);
            }
            (Err(e), true) => {
                failed = true;
                files.push(json!({"repo_path": f.repo_path, "path": f.path, "bytes": f.bytes, "error": e.to_string()}));
            }
            (Err(e), false) => {
                failed = true;
                println!();
                println!("file      {} ({})", f.path.display(), f.repo_path);
                println!("error     {e}");
            }
        }
    }
    if as_json {
        let out = json!({
            "dataset": pulled.id,
            "commit": pulled.commit,
            "offline": pulled.offline,
            "note": pulled.note,
            "files": files,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::from(if failed {
        exit::PROBLEMS
    } else {
        exit::OK
    }))
}
