//! `tunelab eval generate` (issue #28: being written).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GenerateArgs {}

pub fn run(_a: GenerateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("tunelab eval generate is not built yet")
}
