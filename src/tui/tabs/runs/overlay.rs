//! The Runs tab's overlay: several runs' curves of one metric in one chart (the marked runs,
//! or every run of a sweep), labelled by the config fields in which they differ, the best
//! run highlighted. The curves are read on a worker (`sweep::curves`), again every couple of
//! seconds while a run on it still trains.

use super::Msg;
use crate::runs::RunDir;
use crate::sweep::curves::Curves;
use crate::sweep::SweepMark;
use crate::tui::effect::Effect;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Smoothing of the train loss drawn (as the Train tab's EMA line): raw losses of several
/// runs on one chart are a tangle.
const EMA: f64 = 0.9;
/// How often the curves are read again while a run on the chart trains.
const REFRESH: Duration = Duration::from_secs(2);

/// Which runs the overlay shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// These runs.
    Runs(Vec<PathBuf>),
    /// Every run of this run's sweep.
    SweepOf(PathBuf),
}

/// What a read brought back.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    /// `sweep ID` or `3 runs`.
    pub title: String,
    pub curves: Curves,
}

pub struct Overlay {
    pub source: Source,
    /// The metric asked for (`None`: the train loss).
    pub metric: Option<String>,
    pub title: String,
    pub curves: Option<Curves>,
    reading: bool,
    read_at: Option<Instant>,
}

/// Reads what `source` names: its runs' curves of `metric`.
fn read(source: &Source, metric: Option<&str>) -> Result<Read, String> {
    let (title, runs) = match source {
        Source::Runs(dirs) => (
            format!("{} runs", dirs.len()),
            dirs.iter().map(RunDir::new).collect::<Vec<_>>(),
        ),
        Source::SweepOf(dir) => {
            let run = RunDir::new(dir);
            let mark = SweepMark::read(&run).ok_or_else(|| {
                format!(
                    "{} is in no sweep; mark runs with space and press c",
                    dir.display()
                )
            })?;
            let runs: Vec<RunDir> = mark.members.iter().map(RunDir::new).collect();
            (format!("sweep {}", mark.sweep), runs)
        }
    };
    let mut curves = Curves::read(&runs, metric);
    if curves.metric == "loss" {
        for c in &mut curves.curves {
            let mut ema = None::<f64>;
            for p in &mut c.points {
                let e = ema.map_or(p.1, |e| EMA * e + (1.0 - EMA) * p.1);
                ema = Some(e);
                p.1 = e;
            }
        }
    }
    Ok(Read { title, curves })
}

impl Overlay {
    /// An overlay of `source`, read on a worker (the returned job).
    pub fn open(source: Source) -> (Overlay, Effect<Msg>) {
        let mut o = Overlay {
            title: String::new(),
            source,
            metric: None,
            curves: None,
            reading: false,
            read_at: None,
        };
        let job = o.read_job();
        (o, job)
    }

    fn read_job(&mut self) -> Effect<Msg> {
        self.reading = true;
        self.read_at = Some(Instant::now());
        let (source, metric) = (self.source.clone(), self.metric.clone());
        Effect::spawn(move || {
            let result = read(&source, metric.as_deref());
            Msg::Overlay {
                source,
                metric,
                result: Box::new(result),
            }
        })
    }

    /// A read came back; a stale one (another source or metric) is dropped.
    pub fn receive(
        &mut self,
        source: Source,
        metric: Option<String>,
        result: Result<Read, String>,
    ) -> Option<Effect<Msg>> {
        if source != self.source || metric != self.metric {
            return None;
        }
        self.reading = false;
        match result {
            Ok(r) => {
                self.title = r.title;
                self.curves = Some(r.curves);
                None
            }
            Err(e) => Some(Effect::warn(e)),
        }
    }

    /// Draws the next metric the runs recorded.
    pub fn next_metric(&mut self) -> Option<Effect<Msg>> {
        let next = self.curves.as_ref()?.next_metric();
        self.metric = Some(next);
        Some(self.read_job())
    }

    /// Reads again when a run on the chart still trains and the last read is a while ago.
    pub fn refresh(&mut self) -> Option<Effect<Msg>> {
        let live = self.curves.as_ref().is_some_and(|c| {
            c.curves
                .iter()
                .any(|x| matches!(x.state.as_str(), "running" | "queued" | "stopping"))
        });
        let due = self.read_at.is_none_or(|t| t.elapsed() >= REFRESH);
        (live && due && !self.reading).then(|| self.read_job())
    }
}
