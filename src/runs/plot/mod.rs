//! Runs' curves as a figure (`tunelab runs plot`): train loss raw and smoothed, eval loss,
//! learning rate, and the preference objectives' reward margin, accuracy (DPO) and KL (KTO)
//! when some run logged them; several runs share each panel, told apart by colour and the
//! legend. SVG or PNG by the output's extension, drawn without a display or system fonts
//! (the font is embedded) and written atomically. Reads events only; never prints.

mod figure;
mod font;
mod raster;
mod scene;
mod series;
mod svg;

pub use figure::{MAX_SIZE, MIN_SIZE, PALETTE};
pub use scene::{Anchor, Color, Group, Node, Scene};
pub use series::{Curve, Point, RunSeries, PREFERENCE};

use crate::files::write_atomic;
use crate::runs::{read_events, RunDir};
use std::path::{Path, PathBuf};

/// The figure's file type, from the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// `.svg` or `.png` (any case).
    pub fn from_path(path: &Path) -> Result<Format, PlotError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(PlotError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{}: cannot tell the figure's format from its extension; expected FILE.svg or FILE.png", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("run {run} has no train events to plot ({})", events.display())]
    NoTrainEvents { run: String, events: PathBuf },
    #[error("{}: cannot read the run's events: {source}", path.display())]
    ReadEvents {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write the figure: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no runs to plot")]
    NoRuns,
    #[error(
        "a figure of {width}x{height} pixels is out of range: from {}x{} to {max}x{max}",
        MIN_SIZE.0,
        MIN_SIZE.1,
        max = MAX_SIZE
    )]
    Size { width: u32, height: u32 },
}

/// How a figure looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub width: u32,
    pub height: u32,
    /// The EMA weight that smooths train values (0: none; TensorBoard's slider).
    pub smoothing: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 1200,
            height: 800,
            smoothing: 0.9,
        }
    }
}

/// What [`plot`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Plotted {
    pub path: PathBuf,
    pub format: Format,
    pub bytes: usize,
    /// The runs' names, in legend order.
    pub runs: Vec<String>,
}

/// The name a run goes by in the legend: its folder's name.
pub fn run_name(run: &RunDir) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    name(&run.root)
        .or_else(|| std::fs::canonicalize(&run.root).ok().and_then(|p| name(&p)))
        .unwrap_or_else(|| run.root.display().to_string())
}

/// A run's curves from its events; a run without a train step is an error naming it.
pub fn load(run: &RunDir, name: &str, smoothing: f64) -> Result<RunSeries, PlotError> {
    let path = run.events_path();
    let (events, _) = read_events(&path, 0).map_err(|source| PlotError::ReadEvents {
        path: path.clone(),
        source,
    })?;
    let s = RunSeries::from_events(name, &events, smoothing);
    if s.loss.train.is_empty() {
        return Err(PlotError::NoTrainEvents {
            run: name.to_string(),
            events: path,
        });
    }
    Ok(s)
}

/// The figure of `runs` as a scene (what SVG and PNG both draw).
pub fn scene(runs: &[RunSeries], opts: &Options) -> Result<Scene, PlotError> {
    if runs.is_empty() {
        return Err(PlotError::NoRuns);
    }
    let ok = |v: u32, min: u32| (min..=MAX_SIZE).contains(&v);
    if !ok(opts.width, MIN_SIZE.0) || !ok(opts.height, MIN_SIZE.1) {
        return Err(PlotError::Size {
            width: opts.width,
            height: opts.height,
        });
    }
    Ok(figure::figure(
        runs,
        opts.width,
        opts.height,
        opts.smoothing,
    ))
}

/// The figure of `runs` as the bytes of an SVG or PNG file.
pub fn render(runs: &[RunSeries], format: Format, opts: &Options) -> Result<Vec<u8>, PlotError> {
    let scene = scene(runs, opts)?;
    Ok(match format {
        Format::Svg => svg::render(&scene, font::FAMILY).into_bytes(),
        Format::Png => raster::encode_png(&raster::rasterize(&scene)),
    })
}

/// Plots `runs` into `out` (its extension picks SVG or PNG), replacing it atomically. Runs
/// that share a folder name are told apart as `name (2)`.
pub fn plot(runs: &[RunDir], out: &Path, opts: &Options) -> Result<Plotted, PlotError> {
    let format = Format::from_path(out)?;
    let mut series = Vec::with_capacity(runs.len());
    let mut names: Vec<String> = Vec::new();
    for run in runs {
        let base = run_name(run);
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base} ({n})");
            n += 1;
        }
        series.push(load(run, &name, opts.smoothing)?);
        names.push(name);
    }
    let bytes = render(&series, format, opts)?;
    write_atomic(out, &bytes).map_err(|source| PlotError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(Plotted {
        path: out.to_path_buf(),
        format,
        bytes: bytes.len(),
        runs: names,
    })
}
