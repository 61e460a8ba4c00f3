//! `tunelab eval bench` (issue #28: being written).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn run(_a: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("tunelab eval bench is not built yet")
}
