//! `tunelab export`: merged Hugging Face folders, GGUF files and LoRA GGUFs.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A run folder or id, or an adapter folder.
    pub source: String,
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(_a: ExportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("export: not built yet")
}
