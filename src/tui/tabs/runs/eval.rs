//! The Runs tab's Eval view: did the fine-tune work, and what did it cost. It opens on what
//! the runs' own evaluations measured (their `eval.tasks` metrics before training and now,
//! read from their events: no compute), and on `r` scores the base against each run's
//! adapter on the first run's `eval.tasks` ([`Plan`], the same job as `tunelab runs
//! compare`) on a worker thread, its progress streamed back and a stop flag between the
//! two. Then the table of differences with their intervals, and the generation answers one
//! item at a time. Drawing is in [`super::eval_view`].

use super::Msg;
use crate::config::RunConfig;
use crate::eval::compare::{CompareError, Comparison, Progress};
use crate::runs::report::{task_lines, TaskLine};
use crate::runs::RunDir;
use crate::train::compare::Plan;
use crate::tui::action::Action;
use crate::tui::effect::{Effect, Sink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What one run's own evaluations measured, from its events and config.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run's folder name.
    pub id: String,
    pub lines: Vec<TaskLine>,
    /// Entries in its config's `eval.tasks` (0: it measures none).
    pub configured: usize,
}

impl RunReport {
    /// Reads `dir`'s events and config; worker threads only.
    pub fn read(dir: &Path) -> RunReport {
        let run = RunDir::new(dir);
        let (events, _) = crate::runs::read_events(&run.events_path(), 0).unwrap_or_default();
        RunReport {
            id: run_id(dir),
            lines: task_lines(&events),
            configured: RunConfig::load(&run.config()).map_or(0, |c| c.eval.tasks.len()),
        }
    }
}

fn run_id(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Why a comparison ended without a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Stopped,
    /// The whole message, for the status line and the log.
    Error(String),
}

/// What the view's jobs send back; the number tells views and runs apart (a closed view's
/// or a stopped run's late messages are dropped).
pub enum EvalMsg {
    Reports(u64, Vec<RunReport>),
    /// The base and the tasks are loaded: the sides, and the items each side scores.
    Ready(u64, usize, usize),
    Progress(u64, Progress),
    Finished(u64, Result<Box<Comparison>, Failure>),
}

/// One generation item across the sides, for browsing.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerItem {
    pub task: String,
    pub question: String,
    pub reference: String,
    /// Each side's label and answer, the base first.
    pub answers: Vec<(String, String)>,
}

/// The generation answers of `c`, one item per prompt with every side's answer (the sides
/// ran the same prompts in the same order).
pub fn answer_items(c: &Comparison) -> Vec<AnswerItem> {
    let Some((base, rest)) = c.sides.split_first() else {
        return Vec::new();
    };
    base.outcome
        .answers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut answers = vec![(base.label.clone(), b.prediction.clone())];
            for s in rest {
                let same = |a: &&crate::eval::tasks::Answered| {
                    a.task == b.task && a.question == b.question
                };
                let found = s
                    .outcome
                    .answers
                    .get(i)
                    .filter(same)
                    .or_else(|| s.outcome.answers.iter().find(same));
                answers.push((
                    s.label.clone(),
                    found.map(|a| a.prediction.clone()).unwrap_or_default(),
                ));
            }
            AnswerItem {
                task: b.task.clone(),
                question: b.question.clone(),
                reference: b.reference.clone(),
                answers,
            }
        })
        .collect()
}

/// Items done over all sides, from the per-task progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Sides, and items per side, once the plan is loaded.
    pub ready: Option<(usize, usize)>,
    pub last: Option<Progress>,
    /// Items finished before the current task.
    before: usize,
}

impl Tally {
    fn apply(&mut self, p: Progress) {
        let per_side = self.ready.map_or(0, |(_, n)| n);
        match &self.last {
            Some(l) if l.side == p.side && l.task == p.task => {}
            Some(l) if l.side == p.side => self.before += l.total,
            _ => self.before = p.side * per_side,
        }
        self.last = Some(p);
    }

    /// Items done and in all, over every side.
    pub fn overall(&self) -> (usize, usize) {
        let Some((sides, per_side)) = self.ready else {
            return (0, 0);
        };
        let total = sides * per_side;
        let done = self.before + self.last.as_ref().map_or(0, |p| p.done);
        (done.min(total), total)
    }
}

/// Where the comparison is.
pub enum Phase {
    /// Not run yet: `r` runs it.
    Idle,
    Running {
        id: u64,
        stop: Arc<AtomicBool>,
        tally: Tally,
    },
    Done {
        comparison: Box<Comparison>,
        items: Vec<AnswerItem>,
    },
    Stopped,
    Failed(String),
}

/// Numbers for jobs, unique in the process.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub struct EvalView {
    /// The runs compared, in the order marked; the first one's `eval.tasks` are scored.
    pub runs: Vec<PathBuf>,
    /// Their own reports, once read.
    pub reports: Option<Vec<RunReport>>,
    pub phase: Phase,
    /// Browsing the answers instead of the table.
    pub answers: bool,
    /// The answer item shown.
    pub item: usize,
    /// Rows the report and table are scrolled by.
    pub scroll: u16,
    id: u64,
}

impl EvalView {
    /// The view for `runs`, and the job that reads their reports.
    pub fn open(runs: Vec<PathBuf>) -> (EvalView, Effect<Msg>) {
        let id = next_id();
        let dirs = runs.clone();
        let job = Effect::spawn(move || {
            let reports = dirs.iter().map(|d| RunReport::read(d)).collect();
            Msg::Eval(EvalMsg::Reports(id, reports))
        });
        (
            EvalView {
                runs,
                reports: None,
                phase: Phase::Idle,
                answers: false,
                item: 0,
                scroll: 0,
                id,
            },
            job,
        )
    }

    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }

    pub fn stopping(&self) -> bool {
        matches!(&self.phase, Phase::Running { stop, .. } if stop.load(Ordering::Relaxed))
    }

    /// The answer items of a finished comparison.
    pub fn items(&self) -> &[AnswerItem] {
        match &self.phase {
            Phase::Done { items, .. } => items,
            _ => &[],
        }
    }

    /// Starts the comparison on a worker; `sink` carries its progress back.
    pub fn start(&mut self, sink: Sink<Msg>) -> Option<Effect<Msg>> {
        if self.running() {
            return Some(Effect::info("the comparison is running (x stops it)"));
        }
        let id = next_id();
        let stop = Arc::new(AtomicBool::new(false));
        self.phase = Phase::Running {
            id,
            stop: stop.clone(),
            tally: Tally::default(),
        };
        self.answers = false;
        let runs = self.runs.clone();
        Some(Effect::Batch(vec![
            Effect::info("comparing: loading the base model and the tasks…"),
            Effect::spawn(move || {
                let result = compare_job(&runs, id, &sink, &stop).map(Box::new);
                Msg::Eval(EvalMsg::Finished(id, result))
            }),
        ]))
    }

    /// Asks a running comparison to stop; it ends before its next task or answer.
    pub fn stop(&mut self) -> Option<Effect<Msg>> {
        match &self.phase {
            Phase::Running { stop, .. } => {
                stop.store(true, Ordering::Relaxed);
                Some(Effect::info("stopping the comparison…"))
            }
            _ => Some(Effect::info("no comparison is running")),
        }
    }

    /// Stops a running comparison without a word (the view is closing).
    pub fn close(&mut self) {
        if let Phase::Running { stop, .. } = &self.phase {
            stop.store(true, Ordering::Relaxed);
        }
    }

    /// An action while the view is open; `None` for actions it leaves to the tab.
    pub fn handle(&mut self, a: Action, sink: Sink<Msg>) -> Option<Effect<Msg>> {
        match a {
            Action::EvalRun | Action::Enter => return self.start(sink),
            Action::StopRun => return self.stop(),
            Action::EvalAnswers => {
                if self.items().is_empty() {
                    let why = match self.phase {
                        Phase::Done { .. } => "no answers: the tasks are multiple choice only",
                        _ => "no answers yet: r runs the comparison",
                    };
                    return Some(Effect::warn(why));
                }
                self.answers = !self.answers;
            }
            Action::Down => self.step(1),
            Action::Up => self.step(-1),
            Action::PageDown => self.step(10),
            Action::PageUp => self.step(-10),
            Action::Top => self.step(-(1 << 30)),
            Action::Bottom => self.step(1 << 30),
            _ => {}
        }
        None
    }

    /// Moves to another answer, or scrolls the report and table.
    fn step(&mut self, d: isize) {
        if self.answers {
            let n = self.items().len();
            self.item = (self.item as isize + d).clamp(0, n.saturating_sub(1) as isize) as usize;
        } else {
            self.scroll = (self.scroll as isize + d).clamp(0, u16::MAX as isize) as u16;
        }
    }

    /// A message from this view's jobs; an effect for the status line when the comparison
    /// ended.
    pub fn receive(&mut self, msg: EvalMsg) -> Option<Effect<Msg>> {
        match msg {
            EvalMsg::Reports(id, r) if id == self.id => self.reports = Some(r),
            EvalMsg::Ready(id, sides, items) => {
                if let Some(t) = self.tally_of(id) {
                    t.ready = Some((sides, items));
                }
            }
            EvalMsg::Progress(id, p) => {
                if let Some(t) = self.tally_of(id) {
                    t.apply(p);
                }
            }
            EvalMsg::Finished(id, result) if self.tally_of(id).is_some() => {
                return Some(self.finish(result));
            }
            _ => {}
        }
        None
    }

    fn tally_of(&mut self, id: u64) -> Option<&mut Tally> {
        match &mut self.phase {
            Phase::Running { id: i, tally, .. } if *i == id => Some(tally),
            _ => None,
        }
    }

    fn finish(&mut self, result: Result<Box<Comparison>, Failure>) -> Effect<Msg> {
        match result {
            Ok(c) => {
                let say = format!(
                    "compared the base and {} adapter(s) on {} metrics",
                    c.sides.len().saturating_sub(1),
                    c.rows().len()
                );
                self.item = 0;
                self.phase = Phase::Done {
                    items: answer_items(&c),
                    comparison: c,
                };
                Effect::info(say)
            }
            Err(Failure::Stopped) => {
                self.phase = Phase::Stopped;
                Effect::info("comparison stopped")
            }
            Err(Failure::Error(e)) => {
                self.phase = Phase::Failed(e.clone());
                Effect::error(format!("eval: {e}"))
            }
        }
    }
}

/// Loads the plan and scores every side, relaying progress as run `id`; worker threads
/// only (it loads a model and runs it).
fn compare_job(
    runs: &[PathBuf],
    id: u64,
    sink: &Sink<Msg>,
    stop: &AtomicBool,
) -> Result<Comparison, Failure> {
    let dirs: Vec<RunDir> = runs.iter().map(RunDir::new).collect();
    let plan = Plan::prepare(&dirs, None).map_err(|e| Failure::Error(e.to_string()))?;
    if stop.load(Ordering::Relaxed) {
        return Err(Failure::Stopped);
    }
    let send = |m: EvalMsg| {
        // Nobody listens: the workbench is gone, so is the point of going on.
        if !sink(Msg::Eval(m)) {
            stop.store(true, Ordering::Relaxed);
        }
    };
    send(EvalMsg::Ready(id, plan.sides(), plan.tasks.total_items()));
    plan.run(&mut |p| send(EvalMsg::Progress(id, p)), stop)
        .map_err(|e| match e {
            CompareError::Stopped => Failure::Stopped,
            e => Failure::Error(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::compare::SideResult;
    use crate::eval::tasks::{Answered, Outcome};

    fn sink() -> Sink<Msg> {
        Arc::new(|_| true)
    }

    fn side(label: &str, answers: &[(&str, &str)]) -> SideResult {
        SideResult {
            label: label.into(),
            adapter: None,
            outcome: Outcome {
                measures: Vec::new(),
                answers: answers
                    .iter()
                    .map(|(q, p)| Answered {
                        task: "generate/held_out".into(),
                        question: q.to_string(),
                        prediction: p.to_string(),
                        reference: "Arr!".into(),
                    })
                    .collect(),
            },
        }
    }

    fn progress(side: usize, task: &str, done: usize, total: usize) -> Progress {
        Progress {
            side,
            sides: 2,
            task: task.into(),
            done,
            total,
        }
    }

    #[test]
    fn answers_line_up_by_prompt_across_sides() {
        let c = Comparison {
            model: "m".into(),
            sides: vec![
                side("base", &[("q1", "Paris"), ("q2", "Hello")]),
                // Out of order: found by its prompt.
                side("run/adapter", &[("q2", "Arr! Ahoy"), ("q1", "Arr! Paris")]),
            ],
        };
        let items = answer_items(&c);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].question, "q1");
        assert_eq!(
            items[0].answers,
            vec![
                ("base".to_string(), "Paris".to_string()),
                ("run/adapter".to_string(), "Arr! Paris".to_string())
            ]
        );
        assert_eq!(items[1].answers[1].1, "Arr! Ahoy");
    }

    #[test]
    fn the_tally_counts_items_over_tasks_and_sides() {
        let mut t = Tally {
            ready: Some((2, 50)),
            ..Tally::default()
        };
        t.apply(progress(0, "bench/k", 10, 40));
        assert_eq!(t.overall(), (10, 100));
        t.apply(progress(0, "bench/k", 40, 40));
        t.apply(progress(0, "generate/held_out", 3, 10));
        assert_eq!(t.overall(), (43, 100));
        t.apply(progress(1, "bench/k", 5, 40));
        assert_eq!(t.overall(), (55, 100));
    }

    #[test]
    fn a_run_ends_once_and_late_messages_are_dropped() {
        let (mut v, _) = EvalView::open(vec![PathBuf::from("/nowhere/run")]);
        assert!(
            v.handle(Action::EvalAnswers, sink()).is_some(),
            "nothing to browse yet"
        );
        assert!(!v.answers);
        let Some(Effect::Batch(_)) = v.handle(Action::EvalRun, sink()) else {
            panic!("r starts a job");
        };
        let Phase::Running { id, stop, .. } = &v.phase else {
            panic!("running");
        };
        let (id, stop) = (*id, stop.clone());
        // A second r while running starts nothing.
        assert!(matches!(
            v.handle(Action::Enter, sink()),
            Some(Effect::Say(..))
        ));
        v.receive(EvalMsg::Ready(id, 2, 10));
        v.receive(EvalMsg::Progress(
            id,
            progress(0, "generate/held_out", 4, 10),
        ));
        v.receive(EvalMsg::Progress(id + 1000, progress(1, "other", 9, 10)));
        let Phase::Running { tally, .. } = &v.phase else {
            panic!("running");
        };
        assert_eq!(tally.overall(), (4, 20));
        v.handle(Action::StopRun, sink());
        assert!(stop.load(Ordering::Relaxed) && v.stopping());
        assert!(v
            .receive(EvalMsg::Finished(id, Err(Failure::Stopped)))
            .is_some());
        assert!(matches!(v.phase, Phase::Stopped));
        // The stopped run's late result changes nothing.
        let late = Comparison {
            model: "m".into(),
            sides: vec![side("base", &[("q", "a")])],
        };
        assert!(v
            .receive(EvalMsg::Finished(id, Ok(Box::new(late.clone()))))
            .is_none());
        assert!(matches!(v.phase, Phase::Stopped));
        // Run again; it finishes with answers to browse.
        v.handle(Action::EvalRun, sink());
        let Phase::Running { id, .. } = &v.phase else {
            panic!("running");
        };
        let id = *id;
        v.receive(EvalMsg::Finished(id, Ok(Box::new(late))));
        assert_eq!(v.items().len(), 1);
        v.handle(Action::EvalAnswers, sink());
        assert!(v.answers);
        v.handle(Action::Down, sink());
        assert_eq!(v.item, 0, "one item: nowhere to go");
    }

    #[test]
    fn an_error_is_said_in_full() {
        let (mut v, _) = EvalView::open(vec![PathBuf::from("/nowhere/run")]);
        v.handle(Action::EvalRun, sink());
        let Phase::Running { id, .. } = &v.phase else {
            panic!("running");
        };
        let id = *id;
        let e = v.receive(EvalMsg::Finished(
            id,
            Err(Failure::Error(
                "/nowhere/run: the run has no adapter yet".into(),
            )),
        ));
        let Some(Effect::Say(crate::tui::effect::Level::Error, text)) = e else {
            panic!("an error");
        };
        assert!(
            text.contains("/nowhere/run: the run has no adapter yet"),
            "{text}"
        );
        assert!(matches!(v.phase, Phase::Failed(_)));
    }
}
