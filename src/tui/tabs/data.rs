//! Data tab: the workspace's dataset files, the detected format with its evidence, a pager
//! of records rendered by role, search, validation errors to jump to, a convert dialog, and
//! the token view (trained and masked tokens of the chat template) and the Synthesize
//! dialog. Files are listed, datasets read, tokenizers loaded and synthesis run on worker
//! threads.

use super::synth_dialog::{Finished, Reply, SynthDialog, SynthMsg};
use super::{Component, Ctx};
use crate::data::{Body, Dataset, Format, Message, Problem, Record};
use crate::template::{Encoded, Encoder, IGNORE};
use crate::tui::action::Action;
use crate::tui::effect::{Effect, Sink};
use crate::tui::theme::Theme;
use crate::tui::widgets::columns::{self, Column};
use crate::tui::widgets::{InputEvent, TextInput};
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

    /// Opens `path` (detects its format, reads up to [`MAX_RECORDS`]). Worker threads only.
    pub fn read(path: &Path) -> Result<Loaded, String> {
        let ds = Dataset::open(path, None).map_err(|e| e.to_string())?;
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
            path: path.to_path_buf(),
            format: ds.format,
            evidence: ds.evidence,
            records,
            complete,
        })
    }
}

/// A dataset file and its size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Background results for this tab.
pub enum Msg {
    Files(Vec<FileEntry>),
    Loaded {
        path: PathBuf,
        result: Result<Loaded, String>,
    },
    Encoder {
        model: String,
        result: Result<Arc<Encoder>, String>,
    },
    Converted(Result<(String, PathBuf), String>),
    /// Progress or the end of a synthesis run.
    Synth(SynthMsg),
}

pub struct DataTab {
    root: PathBuf,
    depth: usize,
    pub files: Vec<FileEntry>,
    pub file: usize,
    pub loaded: Option<Loaded>,
    /// The file being read.
    pub loading: Option<PathBuf>,
    pub error: Option<String>,
    pub record: usize,
    pub view: View,
    pub problem: usize,
    pub search: String,
    /// The search field while it has focus.
    pub search_input: Option<TextInput>,
    /// The file finder (`o`) while it is open.
    pub finder: Option<crate::tui::widgets::Picker>,
    /// The convert dialog: index into the compatible target formats.
    pub convert: Option<usize>,
    /// The token view's encoder, for one model path.
    pub encoder: Option<(String, Result<Arc<Encoder>, String>)>,
    encoder_loading: Option<String>,
    /// The Synthesize dialog (`S`) while it is open; it stays open while its run goes on.
    pub synth: Option<SynthDialog>,
    /// Delivers a synthesis run's progress to this tab from its worker threads.
    sink: Sink<Msg>,
}

/// The workspace's dataset files with sizes, as a job.
fn scan_job(root: PathBuf, depth: usize) -> Effect<Msg> {
    Effect::spawn(move || {
        let files = crate::workspace::datasets(&root, depth)
            .into_iter()
            .map(|path| FileEntry {
                bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                path,
            })
            .collect();
        Msg::Files(files)
    })
}

fn load_job(path: PathBuf) -> Effect<Msg> {
    Effect::spawn(move || {
        let result = Loaded::read(&path);
        Msg::Loaded { path, result }
    })
}

fn encoder_job(model: String) -> Effect<Msg> {
    Effect::spawn(move || {
        let result = crate::model::source::load_tokenizer(Path::new(&model))
            .map_err(|e| e.to_string())
            .and_then(|tok| {
                Encoder::new(
                    tok,
                    &crate::template::TemplateChoice::Model,
                    crate::template::TrainOn::Assistant,
                )
                .map_err(|e| e.to_string())
            })
            .map(Arc::new);
        Msg::Encoder { model, result }
    })
}

impl DataTab {
    /// The tab for the workspace at `root`, and the job that lists its files; `sink`
    /// carries a synthesis run's progress back.
    pub fn new(root: &Path, depth: usize, sink: Sink<Msg>) -> (Self, Effect<Msg>) {
        let t = DataTab {
            root: root.to_path_buf(),
            depth,
            files: Vec::new(),
            file: 0,
            loaded: None,
            loading: None,
            error: None,
            record: 0,
            view: View::Text,
            problem: 0,
            search: String::new(),
            search_input: None,
            finder: None,
            convert: None,
            encoder: None,
            encoder_loading: None,
            synth: None,
            sink,
        };
        (t, scan_job(root.to_path_buf(), depth))
    }

    /// Reads the selected file on a worker.
    fn load(&mut self) -> Option<Effect<Msg>> {
        self.record = 0;
        self.problem = 0;
        let path = self.files.get(self.file)?.path.clone();
        self.loading = Some(path.clone());
        Some(load_job(path))
    }

    /// Shows `path` (adding it to the list when it is not in the workspace).
    fn open_path(&mut self, path: PathBuf) -> Option<Effect<Msg>> {
        let i = match self.files.iter().position(|f| f.path == path) {
            Some(i) => i,
            None => {
                self.files.push(FileEntry {
                    path: path.clone(),
                    bytes: 0,
                });
                self.files.len() - 1
            }
        };
        self.file = i;
        self.view = View::Text;
        self.load()
    }

    pub fn select_file(&mut self, delta: isize) -> Option<Effect<Msg>> {
        if self.files.is_empty() {
            return None;
        }
        let n = self.files.len() as isize;
        self.file = ((self.file as isize + delta).rem_euclid(n)) as usize;
        self.load()
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
        Format::all()
            .filter(|f| {
                *f != l.format && crate::data::convert::compatible(l.format.kind(), f.kind())
            })
            .collect()
    }

    /// Converts the loaded file to the dialog's format on a worker: beside the source when
    /// it is in the workspace (`root`), else into the workspace's `outputs` folder.
    fn run_convert(&mut self, root: &Path, outputs: &Path) -> Result<Effect<Msg>, String> {
        let idx = self.convert.take().ok_or("no conversion chosen")?;
        let to = *self.targets().get(idx).ok_or("no such format")?;
        let l = self.loaded.as_ref().ok_or("no dataset loaded")?;
        let (path, format) = (l.path.clone(), l.format);
        let folder = convert_folder(&path, root, outputs);
        Ok(Effect::spawn(move || {
            let result = (|| {
                let ds = Dataset::open(&path, Some(format)).map_err(|e| e.to_string())?;
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                std::fs::create_dir_all(&folder)
                    .map_err(|e| format!("{}: {e}", folder.display()))?;
                let out = folder.join(format!("{stem}.{}.jsonl", to.name()));
                let report = crate::data::convert::convert(
                    &ds,
                    &out,
                    to,
                    crate::data::convert::OnError::Skip,
                )
                .map_err(|e| e.to_string())?;
                Ok((
                    format!(
                        "wrote {} ({} records, {} skipped)",
                        out.display(),
                        report.written,
                        report.skipped
                    ),
                    out,
                ))
            })();
            Msg::Converted(result)
        }))
    }

    /// Where a converted copy of the loaded file goes (for the dialog's hint).
    pub fn convert_target(&self, root: &Path, outputs: &Path) -> Option<PathBuf> {
        let l = self.loaded.as_ref()?;
        Some(convert_folder(&l.path, root, outputs))
    }

    /// A synthesis run ended: say how it went, list the files again and show the output.
    fn synth_finished(&mut self, done: Finished) -> Effect<Msg> {
        let say = if done.ok {
            Effect::info(done.summary)
        } else {
            Effect::warn(done.summary)
        };
        let mut effects = vec![say, scan_job(self.root.clone(), self.depth)];
        if let Some(path) = done.output {
            effects.extend(self.open_path(path));
        }
        Effect::Batch(effects)
    }

    /// The token view's encoder for `model`, once it is loaded.
    fn encoder_for(&self, model: &str) -> Option<&Result<Arc<Encoder>, String>> {
        self.encoder
            .as_ref()
            .filter(|(m, _)| m == model)
            .map(|(_, e)| e)
    }

    /// Loads the encoder for `model` unless it is loaded or loading.
    fn want_encoder(&mut self, model: &str) -> Option<Effect<Msg>> {
        if self.view != View::Tokens
            || self.encoder_for(model).is_some()
            || self.encoder_loading.as_deref() == Some(model)
        {
            return None;
        }
        self.encoder_loading = Some(model.to_string());
        Some(encoder_job(model.to_string()))
    }
}

impl Component for DataTab {
    type Msg = Msg;

    fn editing(&self) -> bool {
        self.search_input.is_some() || self.finder.is_some() || self.synth.is_some()
    }

    fn key(&mut self, key: &KeyEvent, _ctx: &Ctx) -> Option<Effect<Msg>> {
        if let Some(dialog) = self.synth.as_mut() {
            let out = self.sink.clone();
            let sink: Sink<SynthMsg> = Arc::new(move |m| out(Msg::Synth(m)));
            return match dialog.key(key, &self.root, sink) {
                Reply::Nothing => None,
                Reply::Start(run) => Some(Effect::Batch(vec![
                    Effect::info("synthesizing…"),
                    Effect::spawn(move || Msg::Synth(run())),
                ])),
                Reply::Close => {
                    self.synth = None;
                    None
                }
            };
        }
        if let Some(f) = self.finder.as_mut() {
            use crate::tui::widgets::Picked;
            let path = match f.key(key) {
                Picked::Item(v) => PathBuf::from(v),
                Picked::Typed(v) => {
                    let p = PathBuf::from(&v);
                    if p.is_absolute() {
                        p
                    } else {
                        self.root.join(p)
                    }
                }
                Picked::Cancel => {
                    self.finder = None;
                    return None;
                }
                Picked::Pending => return None,
            };
            self.finder = None;
            return self.open_path(path);
        }
        let input = self.search_input.as_mut()?;
        match input.handle(key) {
            InputEvent::Submit => {
                self.search = self.search_input.take().map(TextInput::into_value)?;
                if !self.search_next() {
                    return Some(Effect::warn(format!(
                        "no record contains {:?}",
                        self.search
                    )));
                }
            }
            InputEvent::Cancel => self.search_input = None,
            _ => {}
        }
        None
    }

    fn handle(&mut self, a: Action, ctx: &Ctx) -> Option<Effect<Msg>> {
        let n = self.targets().len().max(1);
        if let Some(sel) = self.convert.as_mut() {
            match a {
                Action::Left | Action::Up => *sel = (*sel + n - 1) % n,
                Action::Right | Action::Down => *sel = (*sel + 1) % n,
                Action::Enter => {
                    return Some(match self.run_convert(&ctx.ws.root, &ctx.ws.outputs()) {
                        Ok(job) => Effect::Batch(vec![Effect::info("converting…"), job]),
                        Err(e) => Effect::error(e),
                    })
                }
                _ => {}
            }
            return None;
        }
        match a {
            Action::Down => self.move_record(1),
            Action::Up => self.move_record(-1),
            Action::PageDown => self.move_record(10),
            Action::PageUp => self.move_record(-10),
            Action::Top => self.move_record(-(1 << 30)),
            Action::Bottom => self.move_record(1 << 30),
            Action::Left => return self.select_file(-1),
            Action::Right => return self.select_file(1),
            Action::Enter if self.view == View::Problems => self.jump_to_problem(),
            Action::TokenView => {
                self.view = if self.view == View::Tokens {
                    View::Text
                } else {
                    View::Tokens
                };
                return self.want_encoder(ctx.model);
            }
            Action::Validation => {
                self.view = if self.view == View::Problems {
                    View::Text
                } else {
                    View::Problems
                }
            }
            Action::Search => self.search_input = Some(TextInput::default()),
            Action::OpenFile => {
                let mut f = crate::tui::widgets::Picker::loading(
                    "open a dataset",
                    "type to filter · Enter opens · a typed path (relative to the workspace, or absolute) opens any file · Esc",
                    true,
                );
                let files: Vec<(PathBuf, u64)> = self
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.bytes))
                    .collect();
                f.set_items(crate::tui::model_list::dataset_items(&self.root, &files));
                self.finder = Some(f);
            }
            Action::UseDataset => {
                let path = self.loaded.as_ref().map(|l| l.path.clone())?;
                return Some(Effect::UseDataset(path));
            }
            Action::SearchNext if !self.search_next() => return Some(Effect::warn("no match")),
            Action::Synthesize => {
                let output = if ctx.ws.is_project() {
                    "data/synth.jsonl"
                } else {
                    "synth.jsonl"
                };
                self.synth
                    .get_or_insert_with(|| SynthDialog::writing_to(output));
            }
            Action::Convert => {
                if self.targets().is_empty() {
                    return Some(Effect::warn("nothing to convert to"));
                }
                self.convert = Some(0);
            }
            _ => {}
        }
        None
    }

    fn update(&mut self, msg: Msg, ctx: &Ctx) -> Option<Effect<Msg>> {
        match msg {
            Msg::Files(files) => {
                let current = self.files.get(self.file).cloned();
                self.files = files;
                self.file = match current {
                    Some(c) => match self.files.iter().position(|f| f.path == c.path) {
                        Some(i) => i,
                        // A file opened from outside the workspace stays listed.
                        None if self.loaded.as_ref().is_some_and(|l| l.path == c.path) => {
                            self.files.push(c);
                            self.files.len() - 1
                        }
                        None => 0,
                    },
                    None => 0,
                };
                if self.loaded.is_none() && self.loading.is_none() {
                    return self.load();
                }
            }
            Msg::Loaded { path, result } => {
                if self.loading.as_ref() != Some(&path) {
                    return None;
                }
                self.loading = None;
                match result {
                    Ok(l) => {
                        self.loaded = Some(l);
                        self.error = None;
                    }
                    Err(e) => {
                        self.loaded = None;
                        self.error = Some(e);
                    }
                }
            }
            Msg::Encoder { model, result } => {
                if self.encoder_loading.as_deref() == Some(model.as_str()) {
                    self.encoder_loading = None;
                }
                self.encoder = Some((model, result));
                return self.want_encoder(ctx.model);
            }
            Msg::Synth(m) => {
                let finished = self.synth.as_mut().and_then(|d| d.receive(m))?;
                return Some(self.synth_finished(finished));
            }
            Msg::Converted(result) => {
                return Some(match result {
                    Ok((msg, _)) => Effect::Batch(vec![
                        Effect::info(msg),
                        scan_job(self.root.clone(), self.depth),
                    ]),
                    Err(e) => Effect::error(e),
                })
            }
        }
        None
    }

    fn tick(&mut self, ctx: &Ctx) -> Option<Effect<Msg>> {
        self.want_encoder(ctx.model)
    }

    fn back(&mut self) {
        self.convert = None;
    }

    fn prompt(&self) -> Option<String> {
        self.search_input
            .as_ref()
            .map(|i| format!("/{}", i.display()))
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx) {
        let convert_to = self
            .convert
            .and_then(|_| self.convert_target(&ctx.ws.root, &ctx.ws.outputs()));
        draw(
            f,
            area,
            self,
            ctx.theme,
            ctx.model,
            ctx.tool_format,
            convert_to.as_deref(),
        );
        if let Some(finder) = &self.finder {
            finder.draw(f, area, ctx.theme);
        }
        if let Some(dialog) = &self.synth {
            dialog.draw(f, area, ctx.theme);
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
            Body::Labeled(l) => l
                .conversation
                .messages
                .iter()
                .map(Message::text)
                .collect::<Vec<_>>()
                .join("\n"),
            Body::Text(t) => t.clone(),
        },
        Err(_) => String::new(),
    }
}

/// Beside `source` when it is in the workspace at `root`, else `outputs`: a project keeps
/// its own files, even when the source is the global demo.
fn convert_folder(source: &Path, root: &Path, outputs: &Path) -> PathBuf {
    match source.parent() {
        Some(dir) if source.starts_with(root) => dir.to_path_buf(),
        _ => outputs.to_path_buf(),
    }
}

fn message_lines<'a>(m: &Message, theme: &Theme, label: Option<&str>, out: &mut Vec<Line<'a>>) {
    let role = m.role.as_str();
    let style = match m.role {
        crate::data::Role::User => theme.user,
        crate::data::Role::Assistant => theme.assistant,
        crate::data::Role::System => theme.system,
        crate::data::Role::Tool => theme.tool,
    };
    let tag = label.map_or_else(|| role.to_string(), |l| format!("{role} ({l})"));
    // Tool calls as `data inspect` shows them.
    let mut text = m.text();
    for c in &m.tool_calls {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("→ call {}({})", c.name, c.arguments));
    }
    // At least one space after the tag, however long (`assistant (chosen)`).
    let width = (tag.chars().count() + 1).max(12);
    for (i, line) in crate::tui::text::lines(&text).enumerate() {
        let head = if i == 0 {
            format!("{tag:<width$}")
        } else {
            " ".repeat(width)
        };
        out.push(Line::from(vec![
            Span::styled(head, style.add_modifier(Modifier::BOLD)),
            Span::styled(line, theme.foreground),
        ]));
    }
}

fn record_lines<'a>(rec: &Record, theme: &Theme) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    match &rec.body {
        Body::Conversation(c) => {
            if !c.tools.is_empty() {
                let names: Vec<String> = c
                    .tools
                    .iter()
                    .map(|t| {
                        t.get("name")
                            .and_then(|n| n.as_str())
                            .unwrap_or("?")
                            .to_string()
                    })
                    .collect();
                out.push(Line::from(vec![
                    Span::styled(
                        format!("{:<12}", "tools"),
                        theme.tool.add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(
                        crate::tui::text::clean(&names.join(", ")).into_owned(),
                        theme.foreground,
                    ),
                ]));
            }
            c.messages
                .iter()
                .for_each(|m| message_lines(m, theme, None, &mut out))
        }
        Body::Labeled(l) => {
            out.push(label_line(l.desirable, theme));
            l.prompt()
                .iter()
                .for_each(|m| message_lines(m, theme, None, &mut out));
            let tag = if l.desirable {
                "desirable"
            } else {
                "undesirable"
            };
            l.completion()
                .iter()
                .for_each(|m| message_lines(m, theme, Some(tag), &mut out));
        }
        // The replies go in two columns (see `pair_columns`).
        Body::Preference(p) => p
            .prompt
            .iter()
            .for_each(|m| message_lines(m, theme, None, &mut out)),
        Body::Text(t) => {
            crate::tui::text::lines(t).for_each(|l| out.push(Line::styled(l, theme.foreground)))
        }
    }
    out
}

/// A rated completion's label, and what each method does with it.
fn label_line<'a>(desirable: bool, theme: &Theme) -> Line<'a> {
    let (value, what, style) = if desirable {
        (
            "true",
            "desirable: SFT and KTO learn from this reply",
            theme.chosen,
        )
    } else {
        (
            "false",
            "undesirable: KTO moves away from it; SFT leaves it out",
            theme.rejected,
        )
    };
    Line::from(vec![
        Span::styled(
            format!("{:<12}", "label"),
            style.add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("{value} · {what}"), style),
    ])
}

/// A preference record's chosen and rejected replies, as two columns.
fn pair_columns<'a>(rec: &Record, theme: &Theme) -> Option<[Column<'a>; 2]> {
    let Body::Preference(p) = &rec.body else {
        return None;
    };
    let col = |msgs: &[Message], label: &str, style| {
        let mut lines = Vec::new();
        msgs.iter()
            .for_each(|m| message_lines(m, theme, None, &mut lines));
        Column {
            title: format!(" {label} "),
            style,
            lines,
        }
    };
    Some([
        col(&p.chosen, "chosen", theme.chosen),
        col(&p.rejected, "rejected", theme.rejected),
    ])
}

/// Appends a token's text to `lines` in `style`, a newline as `⏎` and a line break.
fn push_piece(lines: &mut Vec<Line<'_>>, text: &str, style: ratatui::style::Style) {
    let mut parts = text.split('\n').peekable();
    while let Some(p) = parts.next() {
        if !p.is_empty() {
            if let Some(last) = lines.last_mut() {
                let p = match parts.peek() {
                    Some(_) => p.strip_suffix('\r').unwrap_or(p),
                    None => p,
                };
                last.spans
                    .push(Span::styled(crate::tui::text::clean(p).into_owned(), style));
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

/// Lines of `ids` decoded piece by piece (a character split across tokens shows with the
/// token that completes it), all in `style`.
fn id_lines<'a>(
    tok: &crate::template::TextTokenizer,
    ids: &[u32],
    style: ratatui::style::Style,
) -> Vec<Line<'a>> {
    let mut lines = vec![Line::default()];
    push_ids(&mut lines, tok, ids, style);
    lines
}

/// Appends `ids` decoded piece by piece to `lines`.
fn push_ids(
    lines: &mut Vec<Line<'_>>,
    tok: &crate::template::TextTokenizer,
    ids: &[u32],
    style: ratatui::style::Style,
) {
    let mut stream = crate::infer::stream::TokenStream::new(tok);
    for &id in ids {
        if let Some(piece) = stream.push(id) {
            push_piece(lines, &piece, style);
        }
    }
    if let Some(rest) = stream.finish() {
        push_piece(lines, &rest, style);
    }
}

/// What the token view shows of one record.
pub struct TokenView<'a> {
    pub lines: Vec<Line<'a>>,
    /// A preference pair's chosen and rejected completions, each trained in full.
    pub columns: Option<[Column<'a>; 2]>,
    pub tokens: usize,
    pub trained: usize,
}

/// Token view: each token's text, trained tokens in one colour, masked in another; a
/// preference pair's prompt (never trained) above its two completions.
pub fn token_lines<'a>(
    enc: &Encoder,
    rec: &Record,
    tool_format: crate::template::ToolFormat,
    theme: &Theme,
) -> Result<TokenView<'a>, String> {
    let trained_style = theme.trained_token.add_modifier(Modifier::BOLD);
    let ex = match enc
        .encode_with(rec, tool_format)
        .map_err(|e| e.to_string())?
    {
        Encoded::Skipped(_) => {
            return Ok(TokenView {
                lines: vec![Line::from(
                    "left out: the record carries tool calls and data.tool_format is drop",
                )],
                columns: None,
                tokens: 0,
                trained: 0,
            })
        }
        Encoded::Sft(ex) => ex,
        Encoded::Labeled(l) => {
            // The prompt (never trained), then the rated completion in its label's colour.
            let tok = &enc.tokenizer;
            let mut lines = vec![label_line(l.desirable, theme), Line::default()];
            push_ids(&mut lines, tok, &l.prompt_ids, theme.masked_token);
            let style = if l.desirable {
                theme.chosen
            } else {
                theme.rejected
            };
            push_ids(
                &mut lines,
                tok,
                &l.completion_ids,
                style.add_modifier(Modifier::BOLD),
            );
            return Ok(TokenView {
                lines,
                columns: None,
                tokens: l.prompt_ids.len() + l.completion_ids.len(),
                trained: l.completion_ids.len(),
            });
        }
        Encoded::Preference(p) => {
            let tok = &enc.tokenizer;
            let col = |ids: &[u32], label: &str, style| Column {
                title: format!(" {label} · {} tokens ", ids.len()),
                style,
                lines: id_lines(tok, ids, trained_style),
            };
            return Ok(TokenView {
                lines: id_lines(tok, &p.prompt_ids, theme.masked_token),
                columns: Some([
                    col(&p.chosen_ids, "chosen", theme.chosen),
                    col(&p.rejected_ids, "rejected", theme.rejected),
                ]),
                tokens: p.prompt_ids.len() + p.chosen_ids.len() + p.rejected_ids.len(),
                trained: p.chosen_ids.len() + p.rejected_ids.len(),
            });
        }
    };
    let mut lines = vec![Line::default()];
    for (i, (s, e)) in ex.offsets.iter().enumerate() {
        let trained = ex.labels.get(i).is_some_and(|l| *l != IGNORE);
        let style = if trained {
            trained_style
        } else {
            theme.masked_token
        };
        push_piece(&mut lines, ex.text.get(*s..*e).unwrap_or(""), style);
    }
    Ok(TokenView {
        lines,
        columns: None,
        tokens: ex.len(),
        trained: ex.trained(),
    })
}

fn draw(
    f: &mut Frame,
    area: Rect,
    t: &DataTab,
    theme: &Theme,
    model: &str,
    tool_format: crate::template::ToolFormat,
    convert_to: Option<&Path>,
) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(30), Constraint::Min(20)]).areas(area);
    let items: Vec<ListItem> = t
        .files
        .iter()
        .map(|e| {
            let name = e
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = crate::tui::text::middle(&name, 16);
            let pad = 17usize.saturating_sub(crate::tui::text::width(&name));
            ListItem::new(format!(
                "{name}{}{:>9}",
                " ".repeat(pad),
                crate::units::bytes(e.bytes)
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
                    .border_style(theme.border),
            )
            .highlight_style(theme.selection)
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
                    if bad > 0 { theme.error } else { theme.success },
                ),
                Line::styled(crate::tui::text::truncate(&l.evidence, 26), theme.muted),
            ]
        }
        None if t.loading.is_some() => vec![Line::styled("reading…", theme.muted)],
        None => vec![Line::styled(
            t.error.clone().unwrap_or_else(|| "no dataset".into()),
            theme.error,
        )],
    };
    f.render_widget(
        Paragraph::new(stats).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" stats ")
                .border_style(theme.border),
        ),
        stats_area,
    );
    let Some(l) = &t.loaded else {
        let msg = match (&t.loading, &t.error) {
            (Some(p), _) => format!("reading {}…", p.display()),
            (None, Some(e)) => e.clone(),
            (None, None) => format!(
                "No dataset files in {}. Put .jsonl, .json or .parquet files there (or in data/), press o to open any file by its path, S to synthesize one with a strong model, or run `tunelab DIR` in a project folder.",
                t.root.display()
            ),
        };
        f.render_widget(
            Paragraph::new(msg)
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).title(" dataset ")),
            right,
        );
        return;
    };
    let view = match t.view {
        View::Text => "[text] tokens problems",
        View::Tokens => "text [tokens] problems",
        View::Problems => "text tokens [problems]",
    };
    let rest = format!(
        " · {} · record {}/{} · {view} ",
        l.format,
        t.record + 1,
        l.records.len()
    );
    // The file's path in the workspace first (cut in the middle only when it alone is
    // wider than the pane); the border cuts what does not fit after it.
    let shown = l.path.strip_prefix(&t.root).unwrap_or(&l.path);
    let room = usize::from(right.width.saturating_sub(4));
    let title = format!(
        " {}{rest}",
        crate::tui::text::middle(&shown.display().to_string(), room)
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .border_style(theme.border_focused);
    let (loc, rec) = match l.records.get(t.record) {
        Some(r) => (r.0.clone(), &r.1),
        None => {
            f.render_widget(Paragraph::new("empty dataset").block(block), right);
            return;
        }
    };
    let mut lines: Vec<Line> = vec![Line::styled(loc, theme.muted)];
    let mut columns = None;
    match t.view {
        View::Problems => {
            let probs = l.problems();
            if probs.is_empty() {
                lines.push(Line::styled("no validation errors", theme.success));
            }
            for (k, (i, p)) in probs.iter().enumerate() {
                let field = if p.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", p.field)
                };
                let style = if k == t.problem {
                    theme.selection
                } else {
                    theme.error
                };
                lines.push(Line::styled(
                    crate::tui::text::clean(&format!(
                        "{} (#{}) {field}{}",
                        p.location,
                        i + 1,
                        p.message
                    ))
                    .into_owned(),
                    style,
                ));
            }
        }
        View::Text => match rec {
            Ok(r) => {
                lines.extend(record_lines(r, theme));
                columns = pair_columns(r, theme);
            }
            Err(ps) => ps.iter().for_each(|p| {
                lines.push(Line::styled(
                    crate::tui::text::clean(&format!("{} {}: {}", p.location, p.field, p.message))
                        .into_owned(),
                    theme.error,
                ))
            }),
        },
        View::Tokens => match (rec, t.encoder_for(model)) {
            (_, None) => lines.push(Line::styled(
                format!("loading the tokenizer of {model}…"),
                theme.muted,
            )),
            (Ok(r), Some(Ok(enc))) => match token_lines(enc, r, tool_format, theme) {
                Ok(v) => {
                    lines.push(Line::from(vec![
                        Span::styled("░masked░ ", theme.masked_token),
                        Span::styled("█trained█ ", theme.trained_token),
                        Span::styled(
                            format!(" {} tokens, {} trained · {model}", v.tokens, v.trained),
                            theme.muted,
                        ),
                    ]));
                    lines.extend(v.lines);
                    columns = v.columns;
                }
                Err(e) => lines.push(Line::styled(e, theme.error)),
            },
            (Err(_), _) => lines.push(Line::styled(
                "this record has problems (v lists them)",
                theme.error,
            )),
            (_, Some(Err(e))) => lines.push(Line::styled(
                format!("token view needs a tokenizer: {e}"),
                theme.error,
            )),
        },
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
                    theme.selection
                } else {
                    theme.foreground
                };
                [Span::styled(format!(" {} ", f.name()), s), Span::raw(" ")]
            })
            .collect();
        f.render_widget(
            Paragraph::new(vec![
                Line::from(opts),
                Line::styled(
                    format!(
                        "h/l choose · Enter writes <name>.<format>.jsonl into {} · Esc cancel",
                        crate::tui::text::middle(
                            &convert_to.map_or(String::new(), |p| p.display().to_string()),
                            usize::from(right.width).saturating_sub(58).max(12)
                        )
                    ),
                    theme.muted,
                ),
            ])
            .wrap(Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" convert to ")
                    .border_style(theme.accent),
            ),
            dialog,
        );
    }
    match columns {
        Some(cols) => {
            let inner = block.inner(body);
            f.render_widget(block, body);
            columns::draw(f, inner, lines, cols.into(), theme);
        }
        None => f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block),
            body,
        ),
    }
}
