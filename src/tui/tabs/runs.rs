//! Runs tab: every run with its state, steps, last and best eval loss and duration; details
//! of the selected one; two marked runs' loss curves compared; open in Chat. The list comes
//! from the watcher (status.json only); details are read on a worker.

use super::{Component, Ctx};
use crate::runs::details::RunDetails;
use crate::runs::{RunDir, RunSummary};
use crate::tui::action::Action;
use crate::tui::effect::Effect;
use crate::tui::run_view::RunView;
use crate::tui::theme::Theme;
use crate::tui::widgets::loss_chart;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use std::path::PathBuf;

/// Background results for this tab.
pub enum Msg {
    Details(PathBuf, Box<RunDetails>),
    /// An export or plot finished: what it wrote, or why it failed.
    Exported(Result<String, String>),
}

/// What the Runs tab exports from a run, into `<run>/export/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Merged,
    Gguf,
    Lora,
}

/// Exports `dir` as `kind` into `<run>/export/`; worker threads only (a merge of a real
/// model takes a while, so the tab says it started and reports when it ends).
fn export_job(dir: PathBuf, kind: ExportKind, runs_root: PathBuf) -> Effect<Msg> {
    let out = dir.join("export");
    let what = match kind {
        ExportKind::Merged => "a merged folder",
        ExportKind::Gguf => "a q8_0 GGUF",
        ExportKind::Lora => "a LoRA GGUF",
    };
    let start = Effect::info(format!("exporting {what} into {} …", out.display()));
    let job = Effect::spawn(move || {
        let req = crate::export::Request {
            source: Some(dir.display().to_string()),
            model: None,
            merge: kind == ExportKind::Merged,
            gguf: kind == ExportKind::Gguf,
            gguf_lora: kind == ExportKind::Lora,
            dtype: None,
            as_trained: false,
            quant: crate::export::gguf::GgufQuant::Q8_0,
            max_shard_bytes: crate::export::hf::DEFAULT_SHARD_BYTES,
            output: match kind {
                ExportKind::Merged => out.join("merged"),
                _ => out,
            },
        };
        let result = crate::export::export(&req, &runs_root, &mut |_| {})
            .map(|r| {
                let files: Vec<String> = r
                    .written
                    .iter()
                    .map(|(_, p)| p.display().to_string())
                    .collect();
                let mut line = format!("exported {}", files.join(", "));
                for w in &r.warnings {
                    line.push_str(&format!(" (warning: {w})"));
                }
                line
            })
            .map_err(|e| format!("export failed: {e}"));
        Msg::Exported(result)
    });
    Effect::Batch(vec![start, job])
}

/// Plots `dirs` into the first run's `export/curves.svg`; worker threads only.
fn plot_job(dirs: Vec<PathBuf>) -> Effect<Msg> {
    Effect::spawn(move || {
        let out = dirs[0].join("export").join("curves.svg");
        let runs: Vec<RunDir> = dirs.iter().map(RunDir::new).collect();
        let result = crate::runs::plot::plot(&runs, &out, &Default::default())
            .map(|_| format!("plotted {}", out.display()))
            .map_err(|e| format!("plot failed: {e}"));
        Msg::Exported(result)
    })
}

pub struct RunsTab {
    pub selected: usize,
    /// Marked runs, by folder.
    pub marked: Vec<PathBuf>,
    pub compare: Option<(RunView, RunView)>,
    pub details: Option<(PathBuf, RunDetails)>,
    details_loading: Option<PathBuf>,
}

impl RunsTab {
    pub fn new() -> Self {
        RunsTab {
            selected: 0,
            marked: Vec::new(),
            compare: None,
            details: None,
            details_loading: None,
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

    /// The views the watcher should feed.
    pub fn views_mut(&mut self) -> impl Iterator<Item = &mut RunView> {
        self.compare.as_mut().into_iter().flat_map(|(a, b)| [a, b])
    }
}

impl Default for RunsTab {
    fn default() -> Self {
        Self::new()
    }
}

/// Finds the adapter of `dir` (the final one, else the newest checkpoint) and the run's
/// model; worker threads only.
impl Component for RunsTab {
    type Msg = Msg;

    fn hints(&self) -> &'static [(Action, &'static str)] {
        &[
            (Action::Enter, "watch"),
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
        match a {
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
                return Some(export_job(s.dir.clone(), kind, root));
            }
            Action::PlotRuns => {
                let dirs = if self.marked.is_empty() {
                    vec![self.selected(runs)?.dir.clone()]
                } else {
                    self.marked.clone()
                };
                return Some(plot_job(dirs));
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
            Msg::Exported(Ok(text)) => Some(Effect::info(text)),
            Msg::Exported(Err(e)) => Some(Effect::error(e)),
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

    fn back(&mut self) {
        self.compare = None;
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        self.selected = self.selected.min(ctx.runs.len().saturating_sub(1));
        draw(f, area, self, ctx.runs, ctx.theme)
    }
}

fn fmt(l: Option<f64>) -> String {
    l.map_or("-".into(), |l| format!("{l:.4}"))
}

fn draw(f: &mut Frame, area: Rect, t: &RunsTab, runs: &[RunSummary], theme: &Theme) {
    let [list, detail] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Min(6)]).areas(area);
    // Run ids share their name and differ in the time at the end: cut them in the middle.
    let id_width = usize::from(list.width.saturating_sub(2 + 8 + 11 + 8 + 9 + 7 + 5 + 2)).max(12);
    let rows: Vec<Row> = runs
        .iter()
        .map(|r| {
            let mark = if t.marked.contains(&r.dir) {
                "●"
            } else {
                " "
            };
            let state_style = match r.state_label().as_str() {
                "done" => theme.success,
                "failed" | "dead" => theme.error,
                "running" => theme.info,
                _ => theme.warning,
            };
            Row::new(vec![
                Cell::from(format!(
                    "{mark} {}",
                    crate::tui::text::middle(&r.id, id_width)
                )),
                Cell::from(r.state_label()).style(state_style),
                Cell::from(format!("{}/{}", r.step, r.total_steps)),
                Cell::from(fmt(r.last_loss)),
                Cell::from(fmt(r.best_eval_loss)),
                Cell::from(format!("{:.0}s", r.duration_s)),
            ])
        })
        .collect();
    let mut state = TableState::default().with_selected(if runs.is_empty() {
        None
    } else {
        Some(t.selected)
    });
    f.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Min(24),
                Constraint::Length(8),
                Constraint::Length(11),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(7),
            ],
        )
        .header(
            Row::new(vec!["run", "state", "step", "loss", "best eval", "time"]).style(theme.title),
        )
        .row_highlight_style(theme.selection)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" runs ({}) ", runs.len()))
                .border_style(theme.border_focused),
        ),
        list,
        &mut state,
    );
    if let Some((a, b)) = &t.compare {
        let chart = loss_chart(
            vec![
                (format!("{} train", a.id()), &a.ema.points, theme.loss_train),
                (format!("{} eval", a.id()), &a.eval.points, theme.loss_train),
                (format!("{} train", b.id()), &b.ema.points, theme.loss_eval),
                (format!("{} eval", b.id()), &b.eval.points, theme.loss_eval),
            ],
            " compare (EMA train and eval loss) ".into(),
            theme,
        );
        f.render_widget(chart, detail);
        return;
    }
    use crate::tui::text::one_line as clean;
    let lines: Vec<Line> = match runs.get(t.selected) {
        None => vec![Line::from("No runs yet. Start one from the Adapter or Train tab (r), or `tunelab train tiny-demo`.")],
        Some(r) => {
            let details = t.details.as_ref().filter(|(d, _)| *d == r.dir).map(|(_, d)| d);
            let mut l = vec![Line::from(format!("folder  {}", clean(&r.dir.display().to_string())))];
            if let Some(c) = details.and_then(|d| d.config.as_ref()) {
                l.push(Line::from(format!("model   {}", clean(&c.model.path))));
                l.push(Line::from(format!("data    {}", clean(&c.data.train))));
                l.push(Line::from(format!("lora    r{} α{} {}", c.lora.r, c.lora.alpha, c.lora.target_modules.join(","))));
                l.push(Line::from(format!("train   lr {} {:?} bs {}×{} {} {}", c.train.lr, c.train.scheduler, c.train.batch_size, c.train.grad_accum, c.train.dtype, c.train.device).to_lowercase()));
            }
            let ckpts: Vec<String> = details.map(|d| d.checkpoints.iter().map(|s| format!("step-{s}")).collect()).unwrap_or_default();
            l.push(Line::from(format!("ckpts   {}", if ckpts.is_empty() { "-".into() } else { ckpts.join(" ") })));
            if let Some((prompt, replies)) = details.and_then(|d| d.samples.as_ref()) {
                l.push(Line::styled(format!("sample  {}", crate::tui::text::truncate(&clean(prompt), 70)), theme.user));
                // Six evaluations spread from the first to the last: how the answer changed.
                let n = replies.len();
                let picks: Vec<usize> = if n <= 6 { (0..n).collect() } else { (0..6).map(|i| i * (n - 1) / 5).collect() };
                for (step, reply) in picks.into_iter().map(|i| &replies[i]) {
                    l.push(Line::from(format!("  step {step:>6} → {}", crate::tui::text::truncate(&clean(reply), 90))));
                }
            }
            if details.is_some_and(|d| d.adapter) {
                l.push(Line::styled("adapter ready · o opens it in Chat", theme.success));
            }
            if let Some(e) = &r.error {
                l.push(Line::styled(clean(e), theme.error));
            }
            l
        }
    };
    // The selected run's full folder in the title; long errors wrap.
    let title = runs.get(t.selected).map_or(" details ".to_string(), |r| {
        let room = usize::from(detail.width.saturating_sub(14));
        format!(
            " details · {} ",
            crate::tui::text::middle(&r.dir.display().to_string(), room.max(10))
        )
    });
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        detail,
    );
}
