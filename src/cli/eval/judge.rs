//! `tunelab eval judge` (issue #28: being written).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct JudgeArgs {}

pub fn run(_a: JudgeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("tunelab eval judge is not built yet")
}
