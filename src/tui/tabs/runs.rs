//! Runs tab: every run with its state, steps, last and best eval loss and duration; details
//! of the selected one; two marked runs' loss curves compared; open in Chat.

use super::train::{loss_chart, RunView};
use crate::runs::{RunDir, RunSummary};
use crate::tui::theme::Theme;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

pub struct RunsTab {
    pub runs: Vec<RunSummary>,
    pub selected: usize,
    pub marked: Vec<usize>,
    pub compare: Option<(RunView, RunView)>,
}

impl RunsTab {
    pub fn new(root: &std::path::Path) -> Self {
        RunsTab {
            runs: crate::runs::list(root),
            selected: 0,
            marked: Vec::new(),
            compare: None,
        }
    }

    pub fn refresh(&mut self, root: &std::path::Path) -> bool {
        let runs = crate::runs::list(root);
        let changed = runs != self.runs;
        let id = self.runs.get(self.selected).map(|r| r.id.clone());
        self.runs = runs;
        if let Some(id) = id {
            if let Some(i) = self.runs.iter().position(|r| r.id == id) {
                self.selected = i;
            }
        }
        self.selected = self.selected.min(self.runs.len().saturating_sub(1));
        if let Some((a, b)) = &mut self.compare {
            a.poll();
            b.poll();
        }
        changed
    }

    pub fn move_sel(&mut self, d: isize) {
        if !self.runs.is_empty() {
            self.selected =
                (self.selected as isize + d).clamp(0, self.runs.len() as isize - 1) as usize;
        }
    }

    pub fn toggle_mark(&mut self) {
        if let Some(k) = self.marked.iter().position(|m| *m == self.selected) {
            self.marked.remove(k);
        } else {
            self.marked.push(self.selected);
            if self.marked.len() > 2 {
                self.marked.remove(0);
            }
        }
    }

    /// Compares the two marked runs (or the selected run with the previous one).
    pub fn compare(&mut self) -> Result<(), String> {
        let pair = match self.marked.as_slice() {
            [a, b] => (*a, *b),
            _ if self.runs.len() >= 2 => (
                self.selected,
                if self.selected == 0 {
                    1
                } else {
                    self.selected - 1
                },
            ),
            _ => return Err("mark two runs with space first".into()),
        };
        let a = self.runs.get(pair.0).ok_or("no such run")?;
        let b = self.runs.get(pair.1).ok_or("no such run")?;
        self.compare = Some((
            RunView::new(RunDir::new(&a.dir)),
            RunView::new(RunDir::new(&b.dir)),
        ));
        Ok(())
    }
}

fn fmt(l: Option<f64>) -> String {
    l.map_or("-".into(), |l| format!("{l:.4}"))
}

pub fn draw(f: &mut Frame, area: Rect, t: &RunsTab, theme: &Theme) {
    let [list, detail] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Min(6)]).areas(area);
    let rows: Vec<Row> = t
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mark = if t.marked.contains(&i) { "●" } else { " " };
            let state_style = match r.state_label().as_str() {
                "done" => theme.s("success"),
                "failed" | "dead" => theme.s("error"),
                "running" => theme.s("info"),
                _ => theme.s("warning"),
            };
            Row::new(vec![
                Cell::from(format!("{mark} {}", r.id)),
                Cell::from(r.state_label()).style(state_style),
                Cell::from(format!("{}/{}", r.step, r.total_steps)),
                Cell::from(fmt(r.last_loss)),
                Cell::from(fmt(r.best_eval_loss)),
                Cell::from(format!("{:.0}s", r.duration_s)),
            ])
        })
        .collect();
    let mut state = TableState::default().with_selected(if t.runs.is_empty() {
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
            Row::new(vec!["run", "state", "step", "loss", "best eval", "time"])
                .style(theme.s("title")),
        )
        .row_highlight_style(theme.s("selection"))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" runs ({}) ", t.runs.len()))
                .border_style(theme.s("border_focused")),
        ),
        list,
        &mut state,
    );
    if let Some((a, b)) = &t.compare {
        let chart = loss_chart(
            vec![
                (format!("{} train", a.id()), &a.ema, theme.s("loss_train")),
                (format!("{} eval", a.id()), &a.eval, theme.s("loss_train")),
                (format!("{} train", b.id()), &b.ema, theme.s("loss_eval")),
                (format!("{} eval", b.id()), &b.eval, theme.s("loss_eval")),
            ],
            " compare (EMA train and eval loss) ".into(),
            theme,
        );
        f.render_widget(chart, detail);
        return;
    }
    let lines: Vec<Line> = match t.runs.get(t.selected) {
        None => vec![Line::from("No runs yet. Start one from the Adapter or Train tab (r), or `tunelab train tiny-demo`.")],
        Some(r) => {
            let run = RunDir::new(&r.dir);
            let cfg = crate::config::RunConfig::load(&run.config()).ok();
            let mut l = vec![Line::from(format!("folder  {}", r.dir.display()))];
            if let Some(c) = cfg {
                l.push(Line::from(format!("model   {}", c.model.path)));
                l.push(Line::from(format!("data    {}", c.data.train)));
                l.push(Line::from(format!("lora    r{} α{} {}", c.lora.r, c.lora.alpha, c.lora.target_modules.join(","))));
                l.push(Line::from(format!("train   lr {} {:?} bs {}×{} {} {}", c.train.lr, c.train.scheduler, c.train.batch_size, c.train.grad_accum, c.train.dtype, c.train.device).to_lowercase()));
            }
            let ckpts: Vec<String> = crate::train::checkpoint::list(&run.checkpoints()).iter().map(|(s, _)| format!("step-{s}")).collect();
            l.push(Line::from(format!("ckpts   {}", if ckpts.is_empty() { "-".into() } else { ckpts.join(" ") })));
            if run.adapter().is_dir() {
                l.push(Line::styled("adapter ready · o opens it in Chat", theme.s("success")));
            }
            if let Some(e) = &r.error {
                l.push(Line::styled(e.clone(), theme.s("error")));
            }
            l
        }
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" details ")),
        detail,
    );
}
