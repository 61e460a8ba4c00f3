//! Runs tab: the run queue (reordered with keys) above every run with its state, steps,
//! last and best eval loss and duration; details of the selected one; the overlay chart
//! (marked runs' or a sweep's curves of any metric, the best highlighted); open in Chat;
//! the Eval view (base against the runs' adapters on their `eval.tasks`). The list and the
//! queue come from the watcher; details and curves are read on a worker.
//!
//! State and input are here, drawing in [`view`] (the overlay in [`overlay_view`]),
//! exports, plots and queue edits in [`jobs`], the overlay's data in [`overlay`], the Eval
//! view in [`eval`] (drawn by [`eval_view`]).

pub mod eval;
pub mod eval_view;
pub mod jobs;
pub mod overlay;
pub mod overlay_view;
pub mod view;

use super::{Component, Ctx};
use crate::runs::details::RunDetails;
use crate::runs::RunSummary;
use crate::tui::action::Action;
use crate::tui::effect::{Effect, Sink};
use eval::{EvalMsg, EvalView};
use jobs::ExportKind;
use overlay::{Overlay, Source};
use ratatui::layout::Rect;
use ratatui::Frame;
use std::path::PathBuf;

/// Background results for this tab.
pub enum Msg {
    Details(PathBuf, Box<RunDetails>),
    /// An export's step or tensor count (`writing model-q8_0.gguf 120/272 tensors`).
    Exporting(String),
    /// An export or plot finished: what it wrote, or why it failed.
    Exported(Result<String, String>),
    /// The Eval view's reports, progress and result.
    Eval(EvalMsg),
    /// The overlay's curves, read for `source` and `metric`.
    Overlay {
        source: Source,
        metric: Option<String>,
        result: Box<Result<overlay::Read, String>>,
    },
    /// A queue edit: what changed, or why not.
    Queue(Result<String, String>),
}

pub struct RunsTab {
    pub selected: usize,
    /// Marked runs, by folder.
    pub marked: Vec<PathBuf>,
    /// The overlay chart, over the details while open.
    pub overlay: Option<Overlay>,
    pub details: Option<(PathBuf, RunDetails)>,
    details_loading: Option<PathBuf>,
    /// The Eval view, over the list while open.
    pub eval: Option<EvalView>,
    /// The running export's latest step, under the list until it ends.
    pub exporting: Option<String>,
    /// Carries a comparison's progress back from its worker.
    sink: Sink<Msg>,
}

impl RunsTab {
    pub fn new(sink: Sink<Msg>) -> Self {
        RunsTab {
            selected: 0,
            marked: Vec::new(),
            overlay: None,
            details: None,
            details_loading: None,
            eval: None,
            exporting: None,
            sink,
        }
    }

    fn selected<'a>(&self, runs: &'a [RunSummary]) -> Option<&'a RunSummary> {
        runs.get(self.selected.min(runs.len().saturating_sub(1)))
    }

    pub fn move_sel(&mut self, d: isize, n: usize) {
        if n > 0 {
            self.selected = (self.selected as isize + d).clamp(0, n as isize - 1) as usize;
        }
    }

    fn toggle_mark(&mut self, runs: &[RunSummary]) {
        let Some(r) = self.selected(runs) else { return };
        if let Some(k) = self.marked.iter().position(|m| *m == r.dir) {
            self.marked.remove(k);
        } else {
            self.marked.push(r.dir.clone());
        }
    }

    /// Opens the overlay on `source`.
    fn open_overlay(&mut self, source: Source) -> Option<Effect<Msg>> {
        let (o, job) = Overlay::open(source);
        self.overlay = Some(o);
        Some(job)
    }

    /// Overlays the marked runs (two or more), else the selected run's sweep (a run in no
    /// sweep: with the run before it).
    fn compare(&mut self, runs: &[RunSummary]) -> Option<Effect<Msg>> {
        if self.marked.len() >= 2 {
            return self.open_overlay(Source::Runs(self.marked.clone()));
        }
        let s = self.selected(runs)?.dir.clone();
        if s.join(crate::sweep::mark::MARK_FILE).is_file() {
            return self.open_overlay(Source::SweepOf(s));
        }
        if runs.len() < 2 {
            return Some(Effect::warn("mark two or more runs with space first"));
        }
        let i = self.selected.min(runs.len() - 1);
        let j = if i == 0 { 1 } else { i - 1 };
        self.open_overlay(Source::Runs(vec![runs[i].dir.clone(), runs[j].dir.clone()]))
    }

    /// The selected run when it waits in the queue, with its place.
    fn waiting<'a>(&self, ctx: &'a Ctx) -> Option<&'a crate::queue::overview::Row> {
        let s = self.selected(ctx.runs)?;
        ctx.queue
            .waiting()
            .find(|r| r.id == s.id || crate::queue::entry::same_dir(&r.dir, &s.dir))
    }

    /// Moves the selected waiting run `by` places (negative: earlier).
    fn move_queued(&mut self, by: isize, ctx: &Ctx) -> Option<Effect<Msg>> {
        let Some(row) = self.waiting(ctx) else {
            return Some(Effect::warn("the selected run is not waiting in the queue"));
        };
        let from = row.position? as isize;
        let to = from + by;
        let n = ctx.queue.waiting().count() as isize;
        if to < 1 || to > n {
            return Some(Effect::info(if by < 0 {
                format!("{} is already next", row.id)
            } else {
                format!("{} is already last", row.id)
            }));
        }
        Some(jobs::move_job(
            ctx.ws.data.clone(),
            row.id.clone(),
            to as usize,
        ))
    }

    /// Reads the selected run's details unless they are read or being read.
    fn want_details(&mut self, runs: &[RunSummary]) -> Option<Effect<Msg>> {
        let dir = self.selected(runs)?.dir.clone();
        if self.details.as_ref().is_some_and(|(d, _)| *d == dir)
            || self.details_loading.as_ref() == Some(&dir)
        {
            return None;
        }
        self.details_loading = Some(dir.clone());
        Some(Effect::spawn(move || {
            let d = RunDetails::read(&dir);
            Msg::Details(dir, Box::new(d))
        }))
    }

    /// Opens the Eval view on the marked runs, else the selected one.
    fn open_eval(&mut self, runs: &[RunSummary]) -> Option<Effect<Msg>> {
        let dirs = if self.marked.is_empty() {
            vec![self.selected(runs)?.dir.clone()]
        } else {
            self.marked.clone()
        };
        let (view, job) = EvalView::open(dirs);
        self.eval = Some(view);
        Some(job)
    }

    /// An action while the Eval view is open: its own, or closing it.
    fn eval_handle(&mut self, a: Action) -> Option<Effect<Msg>> {
        let view = self.eval.as_mut()?;
        if a == Action::EvalView {
            view.close();
            self.eval = None;
            return None;
        }
        view.handle(a, self.sink.clone())
    }
}

impl Component for RunsTab {
    type Msg = Msg;

    fn hints(&self) -> &'static [(Action, &'static str)] {
        if let Some(v) = &self.eval {
            return if v.answers {
                &[
                    (Action::Down, "next"),
                    (Action::Up, "previous"),
                    (Action::EvalAnswers, "table"),
                    (Action::Back, "back"),
                ]
            } else if v.running() {
                &[(Action::StopRun, "stop"), (Action::Back, "back")]
            } else {
                &[
                    (Action::EvalRun, "run"),
                    (Action::EvalAnswers, "answers"),
                    (Action::Down, "scroll"),
                    (Action::Back, "back"),
                ]
            };
        }
        if self.overlay.is_some() {
            return &[
                (Action::NextMetric, "metric"),
                (Action::Mark, "mark"),
                (Action::Compare, "overlay marked"),
                (Action::OverlaySweep, "sweep"),
                (Action::Back, "close"),
            ];
        }
        &[
            (Action::Enter, "watch"),
            (Action::EvalView, "eval"),
            (Action::Mark, "mark"),
            (Action::Compare, "overlay"),
            (Action::OpenInChat, "chat"),
            (Action::StopRun, "stop"),
            (Action::ExportGguf, "gguf"),
            (Action::PlotRuns, "plot"),
        ]
    }

    fn handle(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        let runs = ctx.runs;
        if self.eval.is_some() {
            return self.eval_handle(a);
        }
        match a {
            Action::EvalView | Action::EvalAnswers => return self.open_eval(runs),
            Action::EvalRun => {
                let read = self.open_eval(runs)?;
                let start = self.eval.as_mut()?.start(self.sink.clone());
                return Some(Effect::Batch(std::iter::once(read).chain(start).collect()));
            }
            Action::Down => self.move_sel(1, runs.len()),
            Action::Up => self.move_sel(-1, runs.len()),
            Action::Top => self.selected = 0,
            Action::Bottom => self.selected = runs.len().saturating_sub(1),
            Action::Mark => self.toggle_mark(runs),
            Action::Compare => return self.compare(runs),
            Action::OverlaySweep => {
                let s = self.selected(runs)?.dir.clone();
                return self.open_overlay(Source::SweepOf(s));
            }
            Action::NextMetric => return self.overlay.as_mut()?.next_metric(),
            Action::QueueEarlier => return self.move_queued(-1, ctx),
            Action::QueueLater => return self.move_queued(1, ctx),
            Action::Enter => return self.selected(runs).map(|s| Effect::Attach(s.dir.clone())),
            Action::OpenInChat => {
                return self
                    .selected(runs)
                    .map(|s| Effect::OpenInChat(s.dir.clone()))
            }
            Action::StopRun => {
                if let Some(row) = self.waiting(ctx) {
                    return Some(jobs::dequeue_job(ctx.ws.data.clone(), row.id.clone()));
                }
                return self.selected(runs).map(|s| Effect::StopRun(s.dir.clone()));
            }
            Action::ExportMerged | Action::ExportGguf | Action::ExportLora => {
                let s = self.selected(runs)?;
                let kind = match a {
                    Action::ExportMerged => ExportKind::Merged,
                    Action::ExportGguf => ExportKind::Gguf,
                    _ => ExportKind::Lora,
                };
                let root = s.dir.parent().map(PathBuf::from).unwrap_or_default();
                self.exporting = Some("starting".into());
                return Some(jobs::export_job(
                    s.dir.clone(),
                    kind,
                    root,
                    self.sink.clone(),
                ));
            }
            Action::PlotRuns => {
                let dirs = if self.marked.is_empty() {
                    vec![self.selected(runs)?.dir.clone()]
                } else {
                    self.marked.clone()
                };
                return Some(jobs::plot_job(dirs));
            }
            _ => {}
        }
        self.want_details(runs)
    }

    fn update(&mut self, msg: Msg, ctx: &Ctx) -> Option<Effect<Msg>> {
        match msg {
            Msg::Details(dir, d) => {
                if self.details_loading.as_ref() == Some(&dir) {
                    self.details_loading = None;
                }
                self.details = Some((dir, *d));
                self.want_details(ctx.runs)
            }
            Msg::Exporting(line) => {
                self.exporting = Some(line);
                None
            }
            Msg::Exported(result) => {
                self.exporting = None;
                Some(match result {
                    Ok(text) => Effect::info(text),
                    Err(e) => Effect::error(e),
                })
            }
            Msg::Eval(m) => self.eval.as_mut()?.receive(m),
            Msg::Overlay {
                source,
                metric,
                result,
            } => self.overlay.as_mut()?.receive(source, metric, *result),
            Msg::Queue(result) => Some(match result {
                Ok(text) => Effect::info(text),
                Err(e) => Effect::warn(e),
            }),
        }
    }

    fn tick(&mut self, ctx: &Ctx) -> Option<Effect<Msg>> {
        // A finished run gains its adapter: read the details again when the list changes.
        if let (Some(s), Some((dir, d))) = (self.selected(ctx.runs), &self.details) {
            if s.dir == *dir && s.state.is_some_and(|st| st.is_final()) && !d.adapter {
                self.details = None;
            }
        }
        if let Some(job) = self.overlay.as_mut().and_then(Overlay::refresh) {
            return Some(job);
        }
        self.want_details(ctx.runs)
    }

    /// Esc closes the Eval view first (stopping its comparison), then the overlay.
    fn back(&mut self) {
        match self.eval.take() {
            Some(mut v) => v.close(),
            None => self.overlay = None,
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        self.selected = self.selected.min(ctx.runs.len().saturating_sub(1));
        match &mut self.eval {
            Some(v) => eval_view::draw(f, area, v, ctx.theme),
            None => view::draw(f, area, self, ctx),
        }
    }
}
