//! Runs tab: every run with its state, steps, last and best eval loss and duration; details
//! of the selected one; two marked runs' loss curves compared; open in Chat; the Eval view
//! (base against the runs' adapters on their `eval.tasks`). The list comes from the watcher
//! (status.json only); details are read on a worker.
//!
//! State and input are here, drawing in [`view`], exports and plots in [`jobs`], the Eval
//! view in [`eval`] (drawn by [`eval_view`]).

pub mod eval;
pub mod eval_view;
pub mod jobs;
pub mod view;

use super::{Component, Ctx};
use crate::runs::details::RunDetails;
use crate::runs::{RunDir, RunSummary};
use crate::tui::action::Action;
use crate::tui::effect::{Effect, Sink};
use crate::tui::run_view::RunView;
use eval::{EvalMsg, EvalView};
use jobs::ExportKind;
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
}

pub struct RunsTab {
    pub selected: usize,
    /// Marked runs, by folder.
    pub marked: Vec<PathBuf>,
    pub compare: Option<(RunView, RunView)>,
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
            compare: None,
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
            if self.marked.len() > 2 {
                self.marked.remove(0);
            }
        }
    }

    /// Compares the two marked runs (or the selected run with the previous one).
    fn compare(&mut self, runs: &[RunSummary]) -> Result<(), String> {
        let pair = match self.marked.as_slice() {
            [a, b] => (a.clone(), b.clone()),
            _ if runs.len() >= 2 => {
                let i = self.selected.min(runs.len() - 1);
                let j = if i == 0 { 1 } else { i - 1 };
                (runs[i].dir.clone(), runs[j].dir.clone())
            }
            _ => return Err("mark two runs with space first".into()),
        };
        self.compare = Some((
            RunView::new(RunDir::new(pair.0)),
            RunView::new(RunDir::new(pair.1)),
        ));
        Ok(())
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

    /// The views the watcher should feed.
    pub fn views_mut(&mut self) -> impl Iterator<Item = &mut RunView> {
        self.compare.as_mut().into_iter().flat_map(|(a, b)| [a, b])
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
        &[
            (Action::Enter, "watch"),
            (Action::EvalView, "eval"),
            (Action::Mark, "mark"),
            (Action::Compare, "compare"),
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
            Action::Mark => self.toggle_mark(runs),
            Action::Compare => {
                if let Err(e) = self.compare(runs) {
                    return Some(Effect::warn(e));
                }
            }
            Action::Enter => return self.selected(runs).map(|s| Effect::Attach(s.dir.clone())),
            Action::OpenInChat => {
                return self
                    .selected(runs)
                    .map(|s| Effect::OpenInChat(s.dir.clone()))
            }
            Action::StopRun => return self.selected(runs).map(|s| Effect::StopRun(s.dir.clone())),
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
        }
    }

    fn tick(&mut self, ctx: &Ctx) -> Option<Effect<Msg>> {
        // A finished run gains its adapter: read the details again when the list changes.
        if let (Some(s), Some((dir, d))) = (self.selected(ctx.runs), &self.details) {
            if s.dir == *dir && s.state.is_some_and(|st| st.is_final()) && !d.adapter {
                self.details = None;
            }
        }
        self.want_details(ctx.runs)
    }

    /// Esc closes the Eval view first (stopping its comparison), then the curves.
    fn back(&mut self) {
        match self.eval.take() {
            Some(mut v) => v.close(),
            None => self.compare = None,
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        self.selected = self.selected.min(ctx.runs.len().saturating_sub(1));
        match &mut self.eval {
            Some(v) => eval_view::draw(f, area, v, ctx.theme),
            None => view::draw(f, area, self, ctx.runs, ctx.theme),
        }
    }
}
