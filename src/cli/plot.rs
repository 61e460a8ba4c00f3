//! `tunelab runs plot`: loss curves of one or more runs as an SVG or PNG file.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// Run folders or ids.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// The figure: FILE.svg or FILE.png.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(_a: PlotArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("runs plot: not built yet")
}
