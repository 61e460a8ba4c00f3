//! Data tab: the workspace's dataset files, the detected format with its evidence, a pager
//! of records rendered by role, search, validation errors to jump to, a convert dialog, and
//! the token view (trained and masked tokens of the chat template).

use crate::data::{Body, Dataset, Format, Message, Problem, Record};
use crate::template::{Encoded, Encoder, IGNORE};
use crate::tui::theme::Theme;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// At most this many records are held for paging (the stats cover them).
pub const MAX_RECORDS: usize = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Text,
    Tokens,
    Problems,
}

pub struct Loaded {
    pub path: PathBuf,
    pub format: Format,
    pub evidence: String,
    pub records: Vec<(String, Result<Record, Vec<Problem>>)>,
    pub complete: bool,
}

impl Loaded {
    pub fn problems(&self) -> Vec<(usize, &Problem)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(i, (_, r))| r.as_ref().err().map(|ps| (i, ps)))
            .flat_map(|(i, ps)| ps.iter().map(move |p| (i, p)))
            .collect()
    }
}

pub struct DataTab {
    pub files: Vec<PathBuf>,
    pub file: usize,
    pub loaded: Option<Loaded>,
    pub error: Option<String>,
    pub record: usize,
    pub view: View,
    pub problem: usize,
    pub search: String,
    /// The convert dialog: index into the compatible target formats.
    pub convert: Option<usize>,
    pub encoder: Option<(String, Result<Encoder, String>)>,
}

/// Model and metadata files that are JSON but not datasets.
const NOT_DATASETS: [&str; 8] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "adapter_config.json",
    "status.json",
    "trainer_state.json",
];

/// Dataset files under `root` (two levels deep, `runs/` and model folders left out), sorted.
pub fn scan(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    crate::workspace::walk(root, 2, &mut |p, is_dir| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_dir {
            return !name.ends_with("-model");
        }
        if [".json", ".jsonl", ".parquet"]
            .iter()
            .any(|e| name.ends_with(e))
            && !NOT_DATASETS.contains(&name.as_str())
        {
            out.push(p.to_path_buf());
        }
        false
    });
    out
}

impl DataTab {
    pub fn new(root: &Path) -> Self {
        let mut t = DataTab {
            files: scan(root),
            file: 0,
            loaded: None,
            error: None,
            record: 0,
            view: View::Text,
            problem: 0,
            search: String::new(),
            convert: None,
            encoder: None,
        };
        t.load();
        t
    }

    /// Opens the selected file (detects its format, reads up to [`MAX_RECORDS`]).
    pub fn load(&mut self) {
        self.loaded = None;
        self.error = None;
        self.record = 0;
        self.problem = 0;
        let Some(path) = self.files.get(self.file).cloned() else {
            return;
        };
        let result = (|| -> Result<Loaded, String> {
            let ds = Dataset::open(&path, None).map_err(|e| e.to_string())?;
            let mut records = Vec::new();
            let mut complete = true;
            for item in ds.items().map_err(|e| e.to_string())? {
                if records.len() == MAX_RECORDS {
                    complete = false;
                    break;
                }
                let item = item.map_err(|e| e.to_string())?;
                records.push((item.location.to_string(), item.result));
            }
            Ok(Loaded {
                path: path.clone(),
                format: ds.format,
                evidence: ds.evidence,
                records,
                complete,
            })
        })();
        match result {
            Ok(l) => self.loaded = Some(l),
            Err(e) => self.error = Some(e),
        }
    }

    pub fn select_file(&mut self, delta: isize) {
        if self.files.is_empty() {
            return;
        }
        let n = self.files.len() as isize;
        self.file = ((self.file as isize + delta).rem_euclid(n)) as usize;
        self.load();
    }

    pub fn move_record(&mut self, delta: isize) {
        if self.view == View::Problems {
            let n = self.loaded.as_ref().map_or(0, |l| l.problems().len());
            if n > 0 {
                self.problem = (self.problem as isize + delta).clamp(0, n as isize - 1) as usize;
            }
            return;
        }
        let n = self.loaded.as_ref().map_or(0, |l| l.records.len());
        if n > 0 {
            self.record = (self.record as isize + delta).clamp(0, n as isize - 1) as usize;
        }
    }

    /// Jumps to the record of the selected validation error.
    pub fn jump_to_problem(&mut self) {
        if let Some(l) = &self.loaded {
            if let Some((i, _)) = l.problems().get(self.problem) {
                self.record = *i;
                self.view = View::Text;
            }
        }
    }

    /// Moves to the next record (after the current) whose text contains the search string.
    pub fn search_next(&mut self) -> bool {
        let Some(l) = &self.loaded else { return false };
        let needle = self.search.to_lowercase();
        if needle.is_empty() {
            return false;
        }
        let n = l.records.len();
        for k in 1..=n {
            let i = (self.record + k) % n;
            if record_text(&l.records[i].1)
                .to_lowercase()
                .contains(&needle)
            {
                self.record = i;
                return true;
            }
        }
        false
    }

    /// Target formats the loaded data can be converted to.
    pub fn targets(&self) -> Vec<Format> {
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        Format::ALL
            .into_iter()
            .filter(|f| {
                *f != l.format && crate::data::convert::compatible(l.format.kind(), f.kind())
            })
            .collect()
    }

    /// Converts the loaded file to the dialog's format, next to the source; returns a report.
    pub fn run_convert(&mut self) -> Result<String, String> {
        let idx = self.convert.take().ok_or("no conversion chosen")?;
        let to = *self.targets().get(idx).ok_or("no such format")?;
        let l = self.loaded.as_ref().ok_or("no dataset loaded")?;
        let ds = Dataset::open(&l.path, Some(l.format)).map_err(|e| e.to_string())?;
        let stem = l
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = l.path.with_file_name(format!("{stem}.{}.jsonl", to.name()));
        let report =
            crate::data::convert::convert(&ds, &out, to, crate::data::convert::OnError::Skip)
                .map_err(|e| e.to_string())?;
        let msg = format!(
            "wrote {} ({} records, {} skipped)",
            out.display(),
            report.written,
            report.skipped
        );
        if !self.files.contains(&out) {
            self.files.push(out);
            self.files.sort();
        }
        Ok(msg)
    }

    /// The encoder for the token view, built once per model path.
    pub fn encoder_for(&mut self, model: &str) -> Result<&Encoder, String> {
        if self.encoder.as_ref().is_none_or(|(m, _)| m != model) {
            let enc = crate::model::source::load_tokenizer(Path::new(model))
                .map_err(|e| e.to_string())
                .and_then(|tok| {
                    Encoder::new(
                        tok,
                        &crate::template::TemplateChoice::Model,
                        crate::template::TrainOn::Assistant,
                    )
                    .map_err(|e| e.to_string())
                });
            self.encoder = Some((model.to_string(), enc));
        }
        match &self.encoder {
            Some((_, Ok(e))) => Ok(e),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err("no encoder".into()),
        }
    }
}

fn record_text(r: &Result<Record, Vec<Problem>>) -> String {
    match r {
        Ok(rec) => match &rec.body {
            Body::Conversation(c) => c
                .messages
                .iter()
                .map(Message::text)
                .collect::<Vec<_>>()
                .join("\n"),
            Body::Preference(p) => p
                .prompt
                .iter()
                .chain(&p.chosen)
                .chain(&p.rejected)
                .map(Message::text)
                .collect::<Vec<_>>()
                .join("\n"),
            Body::Text(t) => t.clone(),
        },
        Err(_) => String::new(),
    }
}

fn message_lines<'a>(m: &Message, theme: &Theme, label: Option<&str>, out: &mut Vec<Line<'a>>) {
    let role = m.role.as_str();
    let style = theme.s(match role {
        "user" => "user",
        "assistant" => "assistant",
        "system" => "system",
        _ => "tool",
    });
    let tag = label.map_or_else(|| role.to_string(), |l| format!("{role} ({l})"));
    let text = m.text();
    for (i, line) in text.split('\n').enumerate() {
        let head = if i == 0 {
            format!("{tag:<12}")
        } else {
            " ".repeat(12)
        };
        out.push(Line::from(vec![
            Span::styled(head, style.add_modifier(Modifier::BOLD)),
            Span::styled(line.to_string(), theme.s("foreground")),
        ]));
    }
}

fn record_lines<'a>(rec: &Record, theme: &Theme) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    match &rec.body {
        Body::Conversation(c) => c
            .messages
            .iter()
            .for_each(|m| message_lines(m, theme, None, &mut out)),
        Body::Preference(p) => {
            p.prompt
                .iter()
                .for_each(|m| message_lines(m, theme, None, &mut out));
            for m in &p.chosen {
                out.push(Line::styled("── chosen", theme.s("chosen")));
                message_lines(m, theme, Some("chosen"), &mut out);
            }
            for m in &p.rejected {
                out.push(Line::styled("── rejected", theme.s("rejected")));
                message_lines(m, theme, Some("rejected"), &mut out);
            }
        }
        Body::Text(t) => t
            .split('\n')
            .for_each(|l| out.push(Line::styled(l.to_string(), theme.s("foreground")))),
    }
    out
}

/// Token view lines: each token's text, trained tokens in one colour, masked in another.
pub fn token_lines<'a>(
    enc: &Encoder,
    rec: &Record,
    theme: &Theme,
) -> Result<(Vec<Line<'a>>, usize, usize), String> {
    let ex = match enc.encode(rec).map_err(|e| e.to_string())? {
        Encoded::Sft(ex) => ex,
        Encoded::Preference(p) => {
            return Ok((
                vec![Line::from(format!(
                    "preference pair: prompt {} tokens, chosen {}, rejected {}",
                    p.prompt_ids.len(),
                    p.chosen_ids.len(),
                    p.rejected_ids.len()
                ))],
                p.prompt_ids.len() + p.chosen_ids.len(),
                p.chosen_ids.len(),
            ))
        }
    };
    let mut lines = vec![Line::default()];
    for (i, (s, e)) in ex.offsets.iter().enumerate() {
        let trained = ex.labels.get(i).is_some_and(|l| *l != IGNORE);
        let style = if trained {
            theme.s("trained_token").add_modifier(Modifier::BOLD)
        } else {
            theme.s("masked_token")
        };
        let text = ex.text.get(*s..*e).unwrap_or("");
        let mut parts = text.split('\n').peekable();
        while let Some(p) = parts.next() {
            if !p.is_empty() {
                if let Some(last) = lines.last_mut() {
                    last.spans.push(Span::styled(p.to_string(), style));
                }
            }
            if parts.peek().is_some() {
                if let Some(last) = lines.last_mut() {
                    last.spans.push(Span::styled("⏎", style));
                }
                lines.push(Line::default());
            }
        }
    }
    Ok((lines, ex.len(), ex.trained()))
}

pub fn draw(f: &mut Frame, area: Rect, t: &mut DataTab, theme: &Theme, model: &str) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(30), Constraint::Min(20)]).areas(area);
    let items: Vec<ListItem> = t
        .files
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            ListItem::new(format!(
                "{:<19}{:>7}",
                crate::units::truncate(&name, 18),
                crate::units::human_bytes(size)
            ))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(t.file));
    let [files_area, stats_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(7)]).areas(left);
    f.render_stateful_widget(
        List::new(items)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" files ")
                    .border_style(theme.s("border")),
            )
            .highlight_style(theme.s("selection"))
            .highlight_symbol("▸ "),
        files_area,
        &mut state,
    );
    let stats: Vec<Line> = match &t.loaded {
        Some(l) => {
            let bad = l.records.iter().filter(|(_, r)| r.is_err()).count();
            vec![
                Line::from(format!("format  {}", l.format)),
                Line::from(format!("kind    {:?}", l.format.kind()).to_lowercase()),
                Line::from(format!(
                    "records {}{}",
                    l.records.len(),
                    if l.complete { "" } else { "+" }
                )),
                Line::styled(
                    format!("errors  {bad}"),
                    if bad > 0 {
                        theme.s("error")
                    } else {
                        theme.s("success")
                    },
                ),
                Line::styled(crate::units::truncate(&l.evidence, 26), theme.s("muted")),
            ]
        }
        None => vec![Line::styled(
            t.error.clone().unwrap_or_else(|| "no dataset".into()),
            theme.s("error"),
        )],
    };
    f.render_widget(
        Paragraph::new(stats).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" stats ")
                .border_style(theme.s("border")),
        ),
        stats_area,
    );
    let Some(l) = &t.loaded else {
        let msg = t.error.clone().unwrap_or_else(|| "No dataset files in the workspace. Put .json, .jsonl or .parquet files in the data folder.".into());
        f.render_widget(
            Paragraph::new(msg)
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).title(" dataset ")),
            right,
        );
        return;
    };
    let name = l
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let view = match t.view {
        View::Text => "[text] tokens problems",
        View::Tokens => "text [tokens] problems",
        View::Problems => "text tokens [problems]",
    };
    let title = format!(
        " {name} · {} · record {}/{} · {view} ",
        l.format,
        t.record + 1,
        l.records.len()
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .border_style(theme.s("border_focused"));
    let (loc, rec) = match l.records.get(t.record) {
        Some(r) => (r.0.clone(), &r.1),
        None => {
            f.render_widget(Paragraph::new("empty dataset").block(block), right);
            return;
        }
    };
    let mut lines: Vec<Line> = vec![Line::styled(loc, theme.s("muted"))];
    match t.view {
        View::Problems => {
            let probs = l.problems();
            if probs.is_empty() {
                lines.push(Line::styled("no validation errors", theme.s("success")));
            }
            for (k, (i, p)) in probs.iter().enumerate() {
                let field = if p.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", p.field)
                };
                let style = if k == t.problem {
                    theme.s("selection")
                } else {
                    theme.s("error")
                };
                lines.push(Line::styled(
                    format!("{} (#{}) {field}{}", p.location, i + 1, p.message),
                    style,
                ));
            }
        }
        View::Text => match rec {
            Ok(r) => lines.extend(record_lines(r, theme)),
            Err(ps) => ps.iter().for_each(|p| {
                lines.push(Line::styled(
                    format!("{} {}: {}", p.location, p.field, p.message),
                    theme.s("error"),
                ))
            }),
        },
        View::Tokens => {
            let rec = rec.clone();
            match (rec, t.encoder_for(model)) {
                (Ok(r), Ok(enc)) => match token_lines(enc, &r, theme) {
                    Ok((tl, n, trained)) => {
                        lines.push(Line::from(vec![
                            Span::styled("░masked░ ", theme.s("masked_token")),
                            Span::styled("█trained█ ", theme.s("trained_token")),
                            Span::styled(
                                format!(" {n} tokens, {trained} trained · {model}"),
                                theme.s("muted"),
                            ),
                        ]));
                        lines.extend(tl);
                    }
                    Err(e) => lines.push(Line::styled(e, theme.s("error"))),
                },
                (Err(_), _) => lines.push(Line::styled(
                    "this record has problems (v lists them)",
                    theme.s("error"),
                )),
                (_, Err(e)) => lines.push(Line::styled(
                    format!("token view needs a tokenizer: {e}"),
                    theme.s("error"),
                )),
            }
        }
    }
    let mut body = right;
    if let Some(sel) = t.convert {
        let [main, dialog] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(5)]).areas(right);
        body = main;
        let targets = t.targets();
        let opts: Vec<Span> = targets
            .iter()
            .enumerate()
            .flat_map(|(i, f)| {
                let s = if i == sel {
                    theme.s("selection")
                } else {
                    theme.s("foreground")
                };
                [Span::styled(format!(" {} ", f.name()), s), Span::raw(" ")]
            })
            .collect();
        f.render_widget(
            Paragraph::new(vec![
                Line::from(opts),
                Line::styled(
                    "h/l choose · Enter convert (writes <name>.<format>.jsonl) · Esc cancel",
                    theme.s("muted"),
                ),
            ])
            .wrap(Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" convert to ")
                    .border_style(theme.s("accent")),
            ),
            dialog,
        );
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        body,
    );
}
