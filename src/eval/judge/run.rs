//! A judged run: both sides answer every prompt not judged yet (one generation thread,
//! greedy unless a temperature is set), and judge workers ask the judge about each item
//! twice, the answers swapped, appending each item's line the moment both verdicts are in.
//! Generation and requests overlap: while the judge reads one item the model answers the
//! next. Nothing here runs on an async runtime, so the workbench can call [`judge_unless`]
//! from a worker thread as the CLI does.

use super::error::JudgeError;
use super::output::{self, Appender, Expect, Verdict, VerdictLine, Which};
use super::prompt::{self, Item, PromptMessage};
use super::verdict::{self, Outcome, Pick, Tally};
use crate::infer::sampling::Sampling;
use crate::infer::GenEvent;
use crate::model::Model;
use crate::synth::http::{CallError, Client, Policy, Stats};
use crate::synth::provider::{Endpoint, Provider};
use crate::synth::Tokens;
use crate::template::TextTokenizer;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where one side's answers come from: the base model alone, or the base with a PEFT
/// adapter (which must have been trained on that base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Base,
    Adapter(PathBuf),
}

impl std::str::FromStr for Side {
    type Err = String;
    /// `base`, or an adapter folder (one named `base` is written `./base`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" => Err("expected base or an adapter folder".into()),
            "base" => Ok(Side::Base),
            p => Ok(Side::Adapter(PathBuf::from(p))),
        }
    }
}

impl Side {
    /// `base`, or the adapter's absolute folder: what the verdicts file records, so a rerun
    /// from another folder still matches.
    pub fn label(&self) -> String {
        match self {
            Side::Base => "base".into(),
            Side::Adapter(p) => absolute(p),
        }
    }
}

fn absolute(p: &Path) -> String {
    p.canonicalize()
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Everything a judged run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The model both sides run on: a folder, a `.gguf` file or a hub id.
    pub model: String,
    /// The chat template (`model`, a built-in name or a Jinja file) and its extra arguments.
    pub template: String,
    pub template_kwargs: Map<String, Value>,
    pub a: Side,
    pub b: Side,
    /// The prompts: any dataset the data layer reads.
    pub data: PathBuf,
    /// Judge only the first this many distinct prompts.
    pub limit: Option<usize>,
    /// The judge's rubric; `None`: helpfulness and correctness, and the persona an adapter's
    /// run trained on, when there is one.
    pub rubric: Option<String>,
    /// How the sides answer (greedy at temperature 0; `max_new_tokens` bounds each answer).
    pub sampling: Sampling,
    pub judge: Endpoint,
    pub policy: Policy,
    /// The token limit of each judge reply.
    pub judge_max_tokens: u32,
    /// `None` leaves the provider's default.
    pub judge_temperature: Option<f64>,
    /// Items being judged at once (threads making requests).
    pub concurrency: usize,
    /// The verdicts file (`.jsonl`, appended to and resumed from); `None` keeps the verdicts
    /// in memory only.
    pub output: Option<PathBuf>,
}

/// Something a watcher (the CLI's progress line, a workbench view) may show.
#[derive(Debug, Clone)]
pub enum Event {
    /// Work starts: `done` of `items` are already in the verdicts file.
    Start {
        items: usize,
        done: usize,
        judge: String,
        rubric: String,
    },
    /// The model (and adapters) are loaded; generation starts.
    Loaded,
    /// Both sides answered item `index`.
    Answered { index: usize },
    /// Item `index` was judged (and written); `done` of `items` now have a verdict line.
    Judged {
        index: usize,
        outcome: Outcome,
        done: usize,
        items: usize,
    },
    /// A request is retried after `wait`.
    Retry { reason: String, wait: Duration },
    /// Item `index` could not be judged (its requests failed); a rerun asks again.
    Failed { index: usize, reason: String },
}

/// Hears a run's events, from any of its threads.
pub trait Observer: Sync {
    fn event(&self, e: &Event);
}

impl<F: Fn(&Event) + Sync> Observer for F {
    fn event(&self, e: &Event) {
        self(e)
    }
}

/// The method [`Report::ci95`] is computed with.
pub const INTERVAL: &str = "wilson";

/// What a run came to, over every item of the run's data (and `--limit`) that has a line
/// in the verdicts file, earlier runs' included.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `(wins + ties/2) / n` for side A; `None` when nothing was judged.
    pub win_rate: Option<f64>,
    /// A 95% interval on `win_rate` ([`INTERVAL`]: Wilson's score interval, `n` trials, a
    /// tie counting half).
    pub ci95: Option<[f64; 2]>,
    pub interval: &'static str,
    /// Items side A won (both orders), lost (side B won both), tied (a tie or a
    /// disagreement between the orders).
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
    /// Items with an unreadable verdict in either order: kept in the file, not in `n`.
    pub errors: usize,
    /// Items judged: wins + losses + ties.
    pub n: usize,
    /// Prompts to judge (distinct, within `--limit`).
    pub items: usize,
    /// Of them, those with a verdict line: `n + errors`.
    pub judged: usize,
    /// Lines this run wrote.
    pub written: usize,
    /// Items already in the verdicts file when the run started.
    pub resumed: usize,
    /// Items whose requests failed for good this run (not written; a rerun asks again).
    pub failed: usize,
    /// Records of the data with no prompt (invalid, plain text, no user turn).
    pub skipped: usize,
    /// Records whose prompt an earlier record has.
    pub duplicates: usize,
    pub model: String,
    pub a: String,
    pub b: String,
    /// `provider model at url`.
    pub judge: String,
    pub rubric: String,
    /// The persona the rubric names, when an adapter's run gave one.
    pub persona: Vec<String>,
    pub output: Option<PathBuf>,
    pub requests: u64,
    pub retries: u64,
    pub request_errors: u64,
    pub timeouts: u64,
    pub tokens: Tokens,
    /// Bytes of a torn last line cut from the verdicts file before resuming.
    pub repaired_bytes: u64,
    /// The first distinct reasons items failed.
    pub failures: Vec<String>,
    /// Set when the judge refused the run (a bad key, model or URL): nothing more could
    /// succeed.
    pub stopped: Option<String>,
    /// The caller stopped the run; what was written is kept.
    pub cancelled: bool,
    pub seconds: f64,
}

impl Report {
    /// Every prompt has a verdict line.
    pub fn complete(&self) -> bool {
        self.judged >= self.items
    }
}

/// Checks what can be checked before reading anything large.
pub fn check(opts: &Options) -> Result<(), JudgeError> {
    if let Some(out) = &opts.output {
        let ext = out
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("jsonl") | Some("ndjson")) {
            return Err(JudgeError::Input(format!(
                "{}: eval judge appends one verdict per line as it goes, so the output must be .jsonl",
                out.display()
            )));
        }
        if out.is_dir() {
            return Err(JudgeError::Input(format!(
                "{}: is a directory",
                out.display()
            )));
        }
    }
    for (flag, side) in [("--a", &opts.a), ("--b", &opts.b)] {
        if let Side::Adapter(p) = side {
            if !p.join("adapter_config.json").is_file() {
                return Err(JudgeError::Input(format!(
                    "{flag} {}: not an adapter folder (no adapter_config.json); give `base` or a PEFT adapter folder",
                    p.display()
                )));
            }
        }
    }
    if opts.limit == Some(0) {
        return Err(JudgeError::Input("--limit must be at least 1".into()));
    }
    Ok(())
}

/// Runs the judge over every prompt of `opts.data` not judged yet.
pub fn judge(opts: &Options, observer: &dyn Observer) -> Result<Report, JudgeError> {
    judge_unless(opts, observer, &AtomicBool::new(false))
}

/// [`judge`] that a caller can stop from another thread by setting `stop`: generation ends
/// at the next token, no request starts, waits end early; the lines written are kept, so
/// the verdicts file resumes like any interrupted run.
pub fn judge_unless(
    opts: &Options,
    observer: &dyn Observer,
    stop: &AtomicBool,
) -> Result<Report, JudgeError> {
    let started = Instant::now();
    check(opts)?;
    let all = prompt::collect(&opts.data)?;
    let items: Vec<&Item> = all
        .items
        .iter()
        .take(opts.limit.unwrap_or(usize::MAX))
        .collect();
    if items.is_empty() {
        return Err(JudgeError::Input(format!(
            "{}: no prompts to judge ({} records skipped: a prompt is a record's messages up to its last user turn)",
            opts.data.display(),
            all.skipped
        )));
    }
    let client = Client::new(opts.policy);
    let mut judge_ep = opts.judge.clone();
    // An OpenAI-compatible server without a model name is asked for its first model.
    if judge_ep.model.is_none() && judge_ep.provider == Provider::Openai {
        judge_ep.model = Some(
            client
                .first_model(&judge_ep)
                .unwrap_or_else(|| crate::synth::openai::DEFAULT_MODEL.to_string()),
        );
    }
    let judge_model = judge_ep.model_name().to_string();
    let (model_label, a_label, b_label) = (
        if Path::new(&opts.model).exists() {
            absolute(Path::new(&opts.model))
        } else {
            opts.model.clone()
        },
        opts.a.label(),
        opts.b.label(),
    );
    let prompts: HashMap<usize, Vec<PromptMessage>> =
        all.items.iter().map(|i| (i.index, i.prompt())).collect();
    let existing = match &opts.output {
        Some(path) => output::read_existing(
            path,
            &Expect {
                model: &model_label,
                a: &a_label,
                b: &b_label,
                judge: &judge_model,
                prompts: &prompts,
            },
        )?,
        None => output::Existing::default(),
    };
    let mut tally = Tally::default();
    let mut resumed = 0;
    for it in &items {
        if let Some(o) = existing.outcomes.get(&it.index) {
            tally.add(*o);
            resumed += 1;
        }
    }
    let pending: Vec<&Item> = items
        .iter()
        .copied()
        .filter(|i| !existing.outcomes.contains_key(&i.index))
        .collect();
    let mut persona: Vec<String> = Vec::new();
    for side in [&opts.a, &opts.b] {
        if let Side::Adapter(p) = side {
            if let Some(text) = prompt::persona_of(p) {
                if !persona.contains(&text) {
                    persona.push(text);
                }
            }
        }
    }
    let rubric = prompt::rubric(opts.rubric.as_deref(), &persona);
    observer.event(&Event::Start {
        items: items.len(),
        done: resumed,
        judge: judge_ep.describe(),
        rubric: rubric.clone(),
    });
    tracing::info!(
        judge = %judge_ep.describe(),
        model = %model_label,
        a = %a_label,
        b = %b_label,
        items = items.len(),
        already = resumed,
        "judge start"
    );
    let mut report = Report {
        win_rate: None,
        ci95: None,
        interval: INTERVAL,
        wins: 0,
        losses: 0,
        ties: 0,
        errors: 0,
        n: 0,
        items: items.len(),
        judged: 0,
        written: 0,
        resumed,
        failed: 0,
        skipped: all.skipped,
        duplicates: all.duplicates,
        model: model_label.clone(),
        a: a_label.clone(),
        b: b_label.clone(),
        judge: judge_ep.describe(),
        rubric: rubric.clone(),
        persona,
        output: opts.output.clone(),
        requests: 0,
        retries: 0,
        request_errors: 0,
        timeouts: 0,
        tokens: Tokens::default(),
        repaired_bytes: existing.repaired,
        failures: Vec::new(),
        stopped: None,
        cancelled: false,
        seconds: 0.0,
    };
    if !pending.is_empty() && !stop.load(Ordering::Relaxed) {
        let base =
            crate::infer::load::base(&opts.model, &opts.template, opts.template_kwargs.clone())?;
        let load = |side: &Side| -> Result<Option<Model>, JudgeError> {
            match side {
                Side::Base => Ok(None),
                Side::Adapter(p) => Ok(Some(base.with_adapter(p)?)),
            }
        };
        let model_a = load(&opts.a)?;
        let same = opts.a == opts.b;
        let model_b = if same { None } else { load(&opts.b)? };
        let mut work = Vec::with_capacity(pending.len());
        for item in pending {
            let messages: Vec<Value> = item
                .messages
                .iter()
                .map(crate::template::encode::template_message)
                .collect();
            let ids = base.encoder.generation_prompt_ids(&messages).map_err(|e| {
                JudgeError::Template {
                    path: opts.data.clone(),
                    location: item.location.clone(),
                    message: e.to_string(),
                }
            })?;
            work.push((item, ids));
        }
        observer.event(&Event::Loaded);
        let run = Run {
            opts,
            judge: judge_ep,
            client,
            rubric,
            model: model_label,
            a: a_label,
            b: b_label,
            observer,
            stop,
            fatal: AtomicBool::new(false),
            appender: match &opts.output {
                Some(p) => Some(Mutex::new(Appender::open(p)?)),
                None => None,
            },
            state: Mutex::new(State {
                tally,
                judged: resumed,
                items: items.len(),
                written: 0,
                failed: 0,
                failures: Vec::new(),
                stopped: None,
                error: None,
            }),
        };
        let sides = Sides {
            a: model_a.as_ref().unwrap_or(&base.model),
            b: (!same).then(|| model_b.as_ref().unwrap_or(&base.model)),
            tokenizer: &base.encoder.tokenizer,
        };
        run.go(work, &sides);
        let st = &run.client.stats;
        report.requests = Stats::get(&st.requests);
        report.retries = Stats::get(&st.retries);
        report.request_errors = Stats::get(&st.errors);
        report.timeouts = Stats::get(&st.timeouts);
        report.tokens = Tokens {
            input: Stats::get(&st.input_tokens),
            output: Stats::get(&st.output_tokens),
        };
        let state = run.state.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = state.error {
            return Err(e);
        }
        tally = state.tally;
        report.written = state.written;
        report.failed = state.failed;
        report.failures = state.failures;
        report.stopped = state.stopped;
    }
    report.win_rate = tally.win_rate();
    report.ci95 = tally.interval().map(|(lo, hi)| [lo, hi]);
    report.wins = tally.wins;
    report.losses = tally.losses;
    report.ties = tally.ties;
    report.errors = tally.errors;
    report.n = tally.n();
    report.judged = tally.n() + tally.errors;
    report.cancelled = stop.load(Ordering::Relaxed) && !report.complete();
    report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        written = report.written,
        resumed = report.resumed,
        failed = report.failed,
        win_rate = ?report.win_rate,
        "judge done"
    );
    Ok(report)
}

/// The models that answer: side B `None` when it is side A (its answers are A's: the same
/// model, prompt and sampling give the same text).
struct Sides<'a> {
    a: &'a Model,
    b: Option<&'a Model>,
    tokenizer: &'a TextTokenizer,
}

/// Both answers to one item, on their way to the judge.
struct Answered<'a> {
    item: &'a Item,
    answer_a: String,
    answer_b: String,
}

/// Shared between the threads.
struct State {
    tally: Tally,
    judged: usize,
    items: usize,
    written: usize,
    failed: usize,
    failures: Vec<String>,
    stopped: Option<String>,
    /// What ended the run early with an error (a write that failed, a compute error).
    error: Option<JudgeError>,
}

struct Run<'a> {
    opts: &'a Options,
    judge: Endpoint,
    client: Client,
    rubric: String,
    model: String,
    a: String,
    b: String,
    observer: &'a dyn Observer,
    stop: &'a AtomicBool,
    /// Set when nothing more can succeed (a refused key, a failed write).
    fatal: AtomicBool,
    appender: Option<Mutex<Appender>>,
    state: Mutex<State>,
}

/// Why one request of an item produced no verdict text.
enum Asked {
    Reply(String),
    Failed(String),
    Cancelled,
}

impl Run<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn halted(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.fatal.load(Ordering::Relaxed)
    }

    /// Answers on this thread's generation worker, judges on `concurrency` workers.
    fn go(&self, work: Vec<(&Item, Vec<u32>)>, sides: &Sides<'_>) {
        let workers = self.opts.concurrency.clamp(1, work.len().max(1));
        let (tx, rx) = sync_channel::<Answered<'_>>(workers);
        let rx = Mutex::new(rx);
        std::thread::scope(|s| {
            let generator = std::thread::Builder::new()
                .name("tunelab-judge-generate".into())
                .spawn_scoped(s, move || {
                    for (item, ids) in work {
                        if self.halted() {
                            break;
                        }
                        let Some(answered) = self.answer(item, &ids, sides) else {
                            break;
                        };
                        self.observer.event(&Event::Answered { index: item.index });
                        if tx.send(answered).is_err() {
                            break;
                        }
                    }
                });
            if let Err(e) = generator {
                self.fail(JudgeError::Generate {
                    index: 0,
                    message: format!("cannot start the generation thread: {e}"),
                });
                return;
            }
            for _ in 0..workers {
                s.spawn(|| self.judge_worker(&rx));
            }
        });
    }

    fn fail(&self, e: JudgeError) {
        self.fatal.store(true, Ordering::Relaxed);
        let mut st = self.lock();
        if st.error.is_none() {
            st.error = Some(e);
        }
    }

    /// Both sides' answers to `item`; `None` when the run stops (or generation failed).
    fn answer<'i>(&self, item: &'i Item, ids: &[u32], sides: &Sides<'_>) -> Option<Answered<'i>> {
        let answer_a = self.generate(item, sides.a, sides.tokenizer, ids)?;
        let answer_b = match sides.b {
            Some(m) => self.generate(item, m, sides.tokenizer, ids)?,
            None => answer_a.clone(),
        };
        Some(Answered {
            item,
            answer_a,
            answer_b,
        })
    }

    /// One side's answer, trimmed; `None` when stopped, or on a compute error (recorded).
    fn generate(
        &self,
        item: &Item,
        model: &Model,
        tok: &TextTokenizer,
        ids: &[u32],
    ) -> Option<String> {
        let mut text = String::new();
        let mut finished = false;
        let mut error = None;
        crate::infer::generate(model, tok, ids, self.opts.sampling.clone(), |e| {
            match e {
                GenEvent::Text(t) => text.push_str(&t),
                GenEvent::Done { .. } => finished = true,
                GenEvent::Error(m) => error = Some(m),
            }
            !self.halted()
        });
        if let Some(message) = error {
            self.fail(JudgeError::Generate {
                index: item.index,
                message,
            });
            return None;
        }
        finished.then(|| text.trim().to_string())
    }

    fn judge_worker(&self, rx: &Mutex<Receiver<Answered<'_>>>) {
        loop {
            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(answered) = next else { return };
            if self.halted() {
                continue;
            }
            self.judge_item(answered);
        }
    }

    /// Asks the judge about `x` in both orders and writes its line.
    fn judge_item(&self, x: Answered<'_>) {
        let prompt = x.item.prompt();
        let mut verdicts = Vec::with_capacity(2);
        for (first, a_first) in [(Which::A, true), (Which::B, false)] {
            let (shown_a, shown_b) = if a_first {
                (&x.answer_a, &x.answer_b)
            } else {
                (&x.answer_b, &x.answer_a)
            };
            let req = prompt::request(
                &self.rubric,
                &prompt,
                shown_a,
                shown_b,
                self.opts.judge_max_tokens,
                self.opts.judge_temperature,
            );
            let text = match self.ask(&req) {
                Asked::Reply(t) => t,
                Asked::Cancelled => return,
                Asked::Failed(reason) => {
                    self.item_failed(x.item.index, reason);
                    return;
                }
            };
            let v = match verdict::parse(&text) {
                Ok(tag) => Verdict {
                    first,
                    tag: Some(tag),
                    pick: Some(verdict::pick(tag, a_first)),
                    text,
                    error: None,
                },
                Err(why) => Verdict {
                    first,
                    tag: None,
                    pick: None,
                    text,
                    error: Some(why.to_string()),
                },
            };
            verdicts.push(v);
        }
        let picks: Vec<Option<Pick>> = verdicts.iter().map(|v| v.pick).collect();
        let outcome = verdict::combine(picks[0], picks[1]);
        let line = VerdictLine {
            index: x.item.index,
            model: self.model.clone(),
            a: self.a.clone(),
            b: self.b.clone(),
            judge: self.judge.model_name().to_string(),
            prompt,
            answer_a: x.answer_a,
            answer_b: x.answer_b,
            verdicts,
            outcome,
        };
        if let Some(app) = &self.appender {
            let written = app.lock().unwrap_or_else(|e| e.into_inner()).append(&line);
            if let Err(e) = written {
                self.fail(e);
                return;
            }
        }
        let mut st = self.lock();
        st.tally.add(outcome);
        st.written += 1;
        st.judged += 1;
        let (done, items) = (st.judged, st.items);
        drop(st);
        self.observer.event(&Event::Judged {
            index: line.index,
            outcome,
            done,
            items,
        });
    }

    fn item_failed(&self, index: usize, reason: String) {
        let mut st = self.lock();
        st.failed += 1;
        if st.failures.len() < 10 && !st.failures.contains(&reason) {
            st.failures.push(reason.clone());
        }
        drop(st);
        tracing::warn!(index, %reason, "item not judged");
        self.observer.event(&Event::Failed { index, reason });
    }

    /// One judge request: its reply's text, or why there is none. A refusal that no later
    /// request can get past (a bad key, model or URL) stops the run.
    fn ask(&self, req: &crate::synth::message::ChatRequest) -> Asked {
        if self.halted() {
            return Asked::Cancelled;
        }
        let on_retry = |reason: &str, wait: Duration| {
            tracing::info!(judge = %self.judge.describe(), %reason, wait_s = wait.as_secs_f64(), "retrying");
            self.observer.event(&Event::Retry {
                reason: reason.to_string(),
                wait,
            });
        };
        match self
            .client
            .chat_unless(&self.judge, req, &on_retry, self.stop)
        {
            Ok(reply) => Asked::Reply(self.judge.redact(&reply.text)),
            Err(_) if self.halted() => Asked::Cancelled,
            Err(CallError::Cancelled) => Asked::Cancelled,
            Err(e @ CallError::Refused { status, .. }) => {
                let reason = format!("{} ({})", e, self.judge.describe());
                if matches!(status, 401 | 403 | 404 | 405) {
                    self.fatal.store(true, Ordering::Relaxed);
                    let mut st = self.lock();
                    if st.stopped.is_none() {
                        st.stopped = Some(reason.clone());
                    }
                }
                Asked::Failed(reason)
            }
            Err(e) => Asked::Failed(e.to_string()),
        }
    }
}
