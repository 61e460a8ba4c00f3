//! `tunelab eval score` (issue #28: being written).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ScoreArgs {}

pub fn run(_a: ScoreArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("tunelab eval score is not built yet")
}
