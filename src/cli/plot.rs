//! `tunelab runs plot`: loss curves of one or more runs as an SVG or PNG file.

use super::exit;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::runs::plot;

#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// Run folders or ids.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// The figure: FILE.svg or FILE.png.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The figure's width in pixels.
    #[arg(long, default_value_t = plot::Options::default().width)]
    pub width: u32,
    /// The figure's height in pixels.
    #[arg(long, default_value_t = plot::Options::default().height)]
    pub height: u32,
    /// The EMA weight that smooths the train curves, from 0 (none) to below 1.
    #[arg(long, default_value_t = plot::Options::default().smoothing)]
    pub smoothing: f64,
}

pub fn run(a: PlotArgs) -> anyhow::Result<ExitCode> {
    // The output's type first: a typo costs nothing.
    if let Err(e) = plot::Format::from_path(&a.output) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    if !(0.0..1.0).contains(&a.smoothing) {
        eprintln!(
            "error: --smoothing {} is not an EMA weight from 0 to below 1",
            a.smoothing
        );
        return Ok(ExitCode::from(exit::UNUSABLE));
    }
    let data = tunelab::paths::Paths::resolve().data;
    let mut dirs = Vec::with_capacity(a.runs.len());
    for spec in &a.runs {
        match tunelab::runs::find(spec, &data) {
            Ok(d) => dirs.push(d),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit::UNUSABLE));
            }
        }
    }
    let opts = plot::Options {
        width: a.width,
        height: a.height,
        smoothing: a.smoothing,
    };
    match plot::plot(&dirs, &a.output, &opts) {
        Ok(p) => {
            println!("{}", p.path.display());
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(exit::UNUSABLE))
        }
    }
}
