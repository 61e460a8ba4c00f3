//! `tunelab export-config` and `tunelab runs import`: hand a run to Axolotl, TRL or
//! LLaMA-Factory, and bring their finished runs back.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ExportConfigArgs {
    /// A run folder or id, or a run config (YAML) or preset.
    pub run: String,
    #[arg(long)]
    pub to: String,
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The other tool's output folder (adapter plus trainer_state.json).
    pub dir: PathBuf,
}

pub fn export_config(_a: ExportConfigArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("export-config: not built yet")
}

pub fn import(_a: ImportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("runs import: not built yet")
}
