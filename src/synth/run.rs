//! The synthesis run: jobs (a seed and a round) handed to worker threads, each asking the
//! strong model for a prompt (when its seed is a topic) and the persona's answer, and for a
//! preference pair the rejected answer (from a second model, or a plain one from the strong
//! model); every record appended the moment it is done, every turned-away output logged.

use super::error::SynthError;
use super::http::{CallError, Client, Policy, Stats};
use super::message::{ChatRequest, Reply};
use super::output::{self, Appender, Existing, RejectLog, ID_FIELD};
use super::prompts;
use super::provider::{Endpoint, Provider};
use super::seeds::Seed;
use crate::data::{Body, Conversation, Format, Kind, Message, PreferencePair, Record, Role};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum SynthKind {
    /// Conversations: the prompt and the persona's answer.
    #[default]
    Sft,
    /// Pairs: the persona's answer chosen, a plain or base model's answer rejected.
    Preference,
}

impl std::str::FromStr for SynthKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::choice::parse("kind", s)
    }
}

impl SynthKind {
    pub fn data_kind(self) -> Kind {
        match self {
            SynthKind::Sft => Kind::Sft,
            SynthKind::Preference => Kind::Preference,
        }
    }

    /// The format written when none is named: OpenAI messages, or TRL's conversational
    /// prompt/chosen/rejected.
    pub fn default_format(self) -> Format {
        match self {
            SynthKind::Sft => Format::Openai,
            SynthKind::Preference => Format::Preference,
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub kind: SynthKind,
    /// The model that writes prompts and the persona's (chosen) answers.
    pub strong: Endpoint,
    /// The model whose answers are rejected; `None`: the strong model, asked plainly.
    pub rejected: Option<Endpoint>,
    pub seeds: Vec<Seed>,
    pub persona: String,
    /// Records the output holds at the end (those already there count).
    pub n: usize,
    /// A `.jsonl` file, appended to.
    pub output: PathBuf,
    pub format: Format,
    pub concurrency: usize,
    pub policy: Policy,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    /// Put the persona into each record as a system message.
    pub include_system: bool,
}

/// Something a watcher (the CLI's progress bar) may show.
#[derive(Debug, Clone)]
pub enum Event {
    /// Work starts: `done` of `target` records are already in the output.
    Start {
        target: usize,
        done: usize,
        strong: String,
        rejected: Option<String>,
    },
    /// A record was appended.
    Written { done: usize },
    /// A request is retried after `wait`.
    Retry { reason: String, wait: Duration },
    /// Model output was turned away (and logged).
    Rejected { reason: String },
    /// A record's prompt was already in the output; it was dropped.
    Duplicate { prompt: String },
    /// A record was given up.
    Failed { reason: String },
}

/// Hears a run's events, from any worker thread.
pub trait Observer: Sync {
    fn event(&self, e: &Event);

    /// The tokens the run has used so far, after each reply (a live count for a watcher;
    /// the report has the final one).
    fn usage(&self, _total: Tokens) {}
}

impl<F: Fn(&Event) + Sync> Observer for F {
    fn event(&self, e: &Event) {
        self(e)
    }
}

/// Tokens used, as the APIs' `usage` fields report them (servers that send none add 0).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub output: PathBuf,
    pub rejected_log: PathBuf,
    pub kind: &'static str,
    pub format: String,
    /// The record count asked for.
    pub target: usize,
    /// Records in the output now (those from earlier runs included).
    pub records: usize,
    /// Records this run appended.
    pub written: usize,
    /// Records already in the output when the run started.
    pub skipped: usize,
    /// Records given up (their requests failed for good, or every try was turned away).
    pub failed: usize,
    /// Model outputs turned away and logged to `rejected_log`.
    pub rejected: usize,
    /// Records dropped because their prompt was already in the output.
    pub duplicates: usize,
    pub requests: u64,
    pub retries: u64,
    /// Failed requests: 429s, 5xx, other 4xx, timeouts, dropped connections.
    pub request_errors: u64,
    pub timeouts: u64,
    pub tokens: Tokens,
    /// Bytes of a torn last line cut from the output before resuming.
    pub repaired_bytes: u64,
    /// The first distinct reasons records were given up.
    pub errors: Vec<String>,
    /// Set when the run stopped early because a provider refused it (a bad key, model or
    /// URL): nothing more could succeed.
    pub stopped: Option<String>,
    /// The caller stopped the run ([`synthesize_unless`]); what was written is kept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    pub seconds: f64,
}

impl Report {
    /// `out.jsonl: 3 of 3 records (3 written now, 0 already there) · sft as openai`: the
    /// first line of the report in the CLI and the workbench.
    pub fn headline(&self) -> String {
        format!(
            "{}: {} of {} records ({} written now, {} already there) · {} as {}",
            self.output.display(),
            self.records.min(self.target),
            self.target,
            self.written,
            self.skipped,
            self.kind,
            self.format
        )
    }

    /// Every asked-for record is in the output.
    pub fn complete(&self) -> bool {
        self.records >= self.target
    }
}

/// One unit of work: round `round` of seed `seed`.
#[derive(Debug, Clone)]
struct Job {
    seed: usize,
    round: usize,
    id: String,
    avoid: Vec<String>,
}

/// What a job has so far.
struct Parts {
    prompt: Option<String>,
    chosen: Option<String>,
    rejected: Option<String>,
    /// Prompts the model is asked to steer clear of.
    avoid: Vec<String>,
}

/// Why a try of a job stopped short.
enum StageError {
    /// The model's output cannot be used: logged, and tried again.
    TurnedAway {
        stage: &'static str,
        reason: String,
        output: String,
    },
    /// The model wrote a prompt the output already has: asked again, not logged.
    Duplicate(String),
    /// The job ends here.
    End(Box<Outcome>),
}

/// What a job came to.
enum Outcome {
    Done {
        record: Record,
        prompt: String,
    },
    /// Every try turned away (content), or a request failed for good.
    Failed {
        reason: String,
        content: bool,
    },
    /// A provider refused outright; `fatal` when nothing after it can succeed.
    Refused {
        reason: String,
        fatal: bool,
    },
    /// The caller stopped the run before the job was done.
    Cancelled,
}

/// Shared between the workers.
struct State {
    cursor: usize,
    in_flight: usize,
    done: usize,
    /// Jobs that ended without a record and were not replaced.
    given_up: usize,
    /// Replacements left for jobs that ended without a record through no fault of the API
    /// (a duplicate, output turned away on every try).
    spare: usize,
    ids: HashSet<String>,
    prompts: HashSet<String>,
    by_seed: HashMap<String, Vec<String>>,
    written: usize,
    failed: usize,
    duplicates: usize,
    errors: Vec<String>,
    stopped: Option<String>,
    io_error: Option<SynthError>,
}

struct Run<'a> {
    opts: &'a Options,
    strong: Endpoint,
    rejected: Option<Endpoint>,
    client: Client,
    state: Mutex<State>,
    appender: Mutex<Appender>,
    rejects: Mutex<(RejectLog, usize)>,
    observer: &'a dyn Observer,
    stop: &'a AtomicBool,
}

/// Checks what can be checked before any request.
pub fn check(opts: &Options) -> Result<(), SynthError> {
    if opts.n == 0 {
        return Err(SynthError::Input("-n must be at least 1".into()));
    }
    if opts.seeds.is_empty() {
        return Err(SynthError::Input("no seeds".into()));
    }
    let ext = opts
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("jsonl") | Some("ndjson")) {
        return Err(SynthError::Input(format!(
            "{}: synth appends one record per line as it goes, so the output must be .jsonl (make a .json array afterwards with `tunelab data convert`)",
            opts.output.display()
        )));
    }
    if opts.output.is_dir() {
        return Err(SynthError::Input(format!(
            "{}: is a directory",
            opts.output.display()
        )));
    }
    if !crate::data::convert::compatible(opts.kind.data_kind(), opts.format.kind()) {
        return Err(SynthError::Input(format!(
            "--kind {} makes {} records, which {} ({} data) cannot hold",
            <&str>::from(opts.kind),
            opts.kind.data_kind(),
            opts.format,
            opts.format.kind()
        )));
    }
    if opts.rejected.is_some() && opts.kind != SynthKind::Preference {
        return Err(SynthError::Input(
            "--rejected-provider only makes sense with --kind preference".into(),
        ));
    }
    Ok(())
}

/// Runs synthesis until the output holds `opts.n` records, or nothing more can be done.
pub fn synthesize(opts: &Options, observer: &dyn Observer) -> Result<Report, SynthError> {
    synthesize_unless(opts, observer, &AtomicBool::new(false))
}

/// [`synthesize`] that a caller can stop from another thread by setting `stop`: no job
/// starts after it, waits end early, requests already sent finish (within the policy's
/// timeout) and their records are kept, so the output resumes like any interrupted run.
pub fn synthesize_unless(
    opts: &Options,
    observer: &dyn Observer,
    stop: &AtomicBool,
) -> Result<Report, SynthError> {
    check(opts)?;
    let started = Instant::now();
    let existing = output::read_existing(&opts.output, opts.format)?;
    let remaining = opts.n.saturating_sub(existing.records);
    let client = Client::new(opts.policy);
    // An OpenAI-compatible server without a model name is asked for its first model.
    let resolve = |ep: &Endpoint| {
        let mut ep = ep.clone();
        if ep.model.is_none() && ep.provider == Provider::Openai && remaining > 0 {
            ep.model = Some(
                client
                    .first_model(&ep)
                    .unwrap_or_else(|| super::openai::DEFAULT_MODEL.to_string()),
            );
        }
        ep
    };
    let strong = resolve(&opts.strong);
    let rejected = opts.rejected.as_ref().map(resolve);
    let Existing {
        ids,
        records,
        prompts,
        by_seed,
        repaired,
    } = existing;
    let skipped = records.min(opts.n);
    let run = Run {
        opts,
        client,
        state: Mutex::new(State {
            cursor: 0,
            in_flight: 0,
            done: records,
            given_up: 0,
            spare: remaining.div_ceil(4).max(2),
            ids,
            prompts,
            by_seed,
            written: 0,
            failed: 0,
            duplicates: 0,
            errors: Vec::new(),
            stopped: None,
            io_error: None,
        }),
        appender: Mutex::new(Appender::open(&opts.output)?),
        rejects: Mutex::new((RejectLog::new(output::rejected_path(&opts.output)), 0)),
        observer,
        stop,
        strong,
        rejected,
    };
    observer.event(&Event::Start {
        target: opts.n,
        done: records.min(opts.n),
        strong: run.strong.describe(),
        rejected: run.rejected.as_ref().map(Endpoint::describe),
    });
    tracing::info!(
        strong = %run.strong.describe(),
        rejected = ?run.rejected.as_ref().map(Endpoint::describe),
        target = opts.n,
        already = records,
        output = %opts.output.display(),
        "synth start"
    );
    if remaining > 0 {
        let workers = opts.concurrency.clamp(1, remaining);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| run.worker());
            }
        });
    }
    let state = run.state.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = state.io_error {
        return Err(e);
    }
    let (log, rejected) = run.rejects.into_inner().unwrap_or_else(|e| e.into_inner());
    let st = &run.client.stats;
    let report = Report {
        output: opts.output.clone(),
        rejected_log: log.path().to_path_buf(),
        kind: opts.kind.into(),
        format: opts.format.name().to_string(),
        target: opts.n,
        records: state.done,
        written: state.written,
        skipped,
        failed: state.failed,
        rejected,
        duplicates: state.duplicates,
        requests: Stats::get(&st.requests),
        retries: Stats::get(&st.retries),
        request_errors: Stats::get(&st.errors),
        timeouts: Stats::get(&st.timeouts),
        tokens: Tokens {
            input: Stats::get(&st.input_tokens),
            output: Stats::get(&st.output_tokens),
        },
        repaired_bytes: repaired,
        errors: state.errors,
        stopped: state.stopped,
        cancelled: stop.load(Ordering::Relaxed) && state.done < opts.n,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        written = report.written,
        skipped = report.skipped,
        failed = report.failed,
        rejected = report.rejected,
        retries = report.retries,
        "synth done"
    );
    Ok(report)
}

impl Run<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cancelled(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn worker(&self) {
        while let Some(job) = self.take() {
            let outcome = self.work(&job);
            self.finish(&job, outcome);
        }
    }

    /// The next job, or `None` when the target is covered by what is done and under way.
    fn take(&self) -> Option<Job> {
        let mut st = self.lock();
        if st.stopped.is_some()
            || self.cancelled()
            || st.io_error.is_some()
            || st.done + st.in_flight + st.given_up >= self.opts.n
        {
            return None;
        }
        let seeds = &self.opts.seeds;
        loop {
            let (seed, round) = (st.cursor % seeds.len(), st.cursor / seeds.len());
            st.cursor += 1;
            let s = &seeds[seed];
            let key = s.key();
            let id = format!("{key}:{round}");
            if st.ids.contains(&id) {
                continue;
            }
            // A prompt seed answered as it is: skip it when its prompt is already there.
            if s.is_prompt && round == 0 && st.prompts.contains(&prompts::normalize(&s.text)) {
                continue;
            }
            st.ids.insert(id.clone());
            st.in_flight += 1;
            let avoid = st.by_seed.get(&key).cloned().unwrap_or_default();
            return Some(Job {
                seed,
                round,
                id,
                avoid,
            });
        }
    }

    fn finish(&self, job: &Job, outcome: Outcome) {
        let mut st = self.lock();
        st.in_flight -= 1;
        let replace = |st: &mut State| {
            if st.spare > 0 {
                st.spare -= 1;
            } else {
                st.given_up += 1;
            }
        };
        let note_error = |st: &mut State, reason: &str| {
            st.failed += 1;
            if st.errors.len() < 10 && !st.errors.iter().any(|e| e == reason) {
                st.errors.push(reason.to_string());
            }
        };
        match outcome {
            Outcome::Done { record, prompt } => {
                let norm = prompts::normalize(&prompt);
                if st.prompts.contains(&norm) {
                    st.duplicates += 1;
                    replace(&mut st);
                    tracing::info!(id = %job.id, "duplicate prompt dropped");
                    drop(st);
                    self.observer.event(&Event::Duplicate { prompt });
                    return;
                }
                let bytes = match output::lines(&record, self.opts.format) {
                    Ok(b) => b,
                    Err(e) => {
                        note_error(&mut st, &e);
                        st.given_up += 1;
                        return;
                    }
                };
                let appended = self
                    .appender
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .append(&bytes);
                if let Err(e) = appended {
                    st.io_error = Some(e);
                    return;
                }
                st.prompts.insert(norm);
                let key = self.opts.seeds[job.seed].key();
                st.by_seed.entry(key).or_default().push(prompt);
                st.done += 1;
                st.written += 1;
                let done = st.done.min(self.opts.n);
                drop(st);
                self.observer.event(&Event::Written { done });
            }
            Outcome::Failed { reason, content } => {
                note_error(&mut st, &reason);
                if content {
                    replace(&mut st);
                } else {
                    st.given_up += 1;
                }
                tracing::warn!(id = %job.id, %reason, "record given up");
                drop(st);
                self.observer.event(&Event::Failed { reason });
            }
            Outcome::Refused { reason, fatal } => {
                note_error(&mut st, &reason);
                st.given_up += 1;
                if fatal && st.stopped.is_none() {
                    st.stopped = Some(reason.clone());
                }
                tracing::warn!(id = %job.id, %reason, "request refused");
                drop(st);
                self.observer.event(&Event::Failed { reason });
            }
            Outcome::Cancelled => st.given_up += 1,
        }
    }

    fn redact(&self, s: &str) -> String {
        let s = self.strong.redact(s);
        match &self.rejected {
            Some(r) => r.redact(&s),
            None => s,
        }
    }

    /// Logs turned-away output with what it answered.
    fn reject(&self, job: &Job, stage: &str, reason: &str, prompt: Option<&str>, output: &str) {
        let seed = &self.opts.seeds[job.seed];
        let entry = json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ID_FIELD: job.id,
            "seed": seed.text,
            "stage": stage,
            "reason": self.redact(reason),
            "prompt": prompt,
            "output": self.redact(&clip_keep_lines(output, 4000)),
        });
        tracing::info!(id = %job.id, stage, reason = %self.redact(reason), "output rejected");
        let mut guard = self.rejects.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 += 1;
        if let Err(e) = guard.0.write(&entry) {
            tracing::warn!("cannot write the rejected log: {e}");
        }
        drop(guard);
        self.observer.event(&Event::Rejected {
            reason: self.redact(reason),
        });
    }

    fn call(&self, ep: &Endpoint, req: &ChatRequest) -> Result<Reply, CallError> {
        let on_retry = |reason: &str, wait: Duration| {
            tracing::info!(endpoint = %ep.describe(), %reason, wait_s = wait.as_secs_f64(), "retrying");
            self.observer.event(&Event::Retry {
                reason: reason.to_string(),
                wait,
            });
        };
        let reply = self.client.chat_unless(ep, req, &on_retry, self.stop);
        if reply.is_ok() {
            let st = &self.client.stats;
            self.observer.usage(Tokens {
                input: Stats::get(&st.input_tokens),
                output: Stats::get(&st.output_tokens),
            });
        }
        reply
    }

    /// Produces the job's record, retrying turned-away output (and prompts the output
    /// already has) up to the attempt limit.
    fn work(&self, job: &Job) -> Outcome {
        let seed = &self.opts.seeds[job.seed];
        let mut parts = Parts {
            prompt: (seed.is_prompt && job.round == 0).then(|| seed.text.clone()),
            chosen: None,
            rejected: None,
            avoid: job.avoid.clone(),
        };
        let mut last = String::new();
        for _ in 0..self.opts.policy.attempts.max(1) {
            if self.cancelled() {
                return Outcome::Cancelled;
            }
            match self.stages(job, &mut parts) {
                Ok(()) => {
                    let prompt = parts.prompt.unwrap_or_default();
                    let chosen = parts.chosen.unwrap_or_default();
                    return Outcome::Done {
                        record: self.record(job, &prompt, chosen, parts.rejected),
                        prompt,
                    };
                }
                Err(StageError::TurnedAway {
                    stage,
                    reason,
                    output,
                }) => {
                    self.reject(job, stage, &reason, parts.prompt.as_deref(), &output);
                    last = format!("{stage}: {reason}");
                }
                Err(StageError::Duplicate(prompt)) => {
                    self.lock().duplicates += 1;
                    tracing::info!(id = %job.id, "duplicate prompt asked again");
                    self.observer.event(&Event::Duplicate {
                        prompt: prompt.clone(),
                    });
                    last = "prompt: a duplicate of one already written".into();
                    parts.avoid.push(prompt);
                }
                Err(StageError::End(outcome)) => return *outcome,
            }
        }
        Outcome::Failed {
            reason: format!(
                "every try turned away ({} tries); last: {last}",
                self.opts.policy.attempts.max(1)
            ),
            content: true,
        }
    }

    /// Runs each stage not done yet; one turned away ends this try (what was done is kept).
    fn stages(&self, job: &Job, parts: &mut Parts) -> Result<(), StageError> {
        let o = self.opts;
        let turned = |stage, reason, output: &str| StageError::TurnedAway {
            stage,
            reason,
            output: output.to_string(),
        };
        if parts.prompt.is_none() {
            let seed = &o.seeds[job.seed];
            let req =
                prompts::prompt_request(&o.persona, seed, job.round, &parts.avoid, o.max_tokens);
            let reply = self.ask(&self.strong, req, "prompt")?;
            prompts::check(&reply, true).map_err(|r| turned("prompt", r, &reply.text))?;
            let p =
                prompts::parse_prompt(&reply.text).map_err(|r| turned("prompt", r, &reply.text))?;
            if self.lock().prompts.contains(&prompts::normalize(&p)) {
                return Err(StageError::Duplicate(p));
            }
            parts.prompt = Some(p);
        }
        let prompt = parts.prompt.clone().unwrap_or_default();
        if parts.chosen.is_none() {
            let req = prompts::answer_request(&o.persona, &prompt, o.max_tokens);
            let reply = self.ask(&self.strong, req, "answer")?;
            prompts::check(&reply, true).map_err(|r| turned("answer", r, &reply.text))?;
            parts.chosen = Some(reply.text.trim().to_string());
        }
        if o.kind == SynthKind::Preference && parts.rejected.is_none() {
            let (ep, req) = match &self.rejected {
                Some(ep) => (ep, prompts::base_request(&prompt, o.max_tokens)),
                None => (&self.strong, prompts::plain_request(&prompt, o.max_tokens)),
            };
            let reply = self.ask(ep, req, "rejected")?;
            prompts::check(&reply, false).map_err(|r| turned("rejected", r, &reply.text))?;
            let text = reply.text.trim().to_string();
            if parts.chosen.as_ref() == Some(&text) {
                return Err(turned(
                    "rejected",
                    "the rejected answer is the chosen one".into(),
                    &text,
                ));
            }
            parts.rejected = Some(text);
        }
        Ok(())
    }

    /// One request of `stage`; a malformed body is turned-away output like any other, a
    /// request that failed for good ends the job.
    fn ask(
        &self,
        ep: &Endpoint,
        mut req: ChatRequest,
        stage: &'static str,
    ) -> Result<Reply, StageError> {
        req.temperature = self.opts.temperature;
        match self.call(ep, &req) {
            Ok(r) => Ok(r),
            // A request that failed for good while the caller was stopping is no failure.
            Err(CallError::Cancelled) | Err(CallError::GaveUp { .. }) if self.cancelled() => {
                Err(StageError::End(Box::new(Outcome::Cancelled)))
            }
            Err(CallError::Cancelled) => Err(StageError::End(Box::new(Outcome::Cancelled))),
            Err(CallError::Malformed { message, body }) => Err(StageError::TurnedAway {
                stage,
                reason: format!("malformed response: {message}"),
                output: body,
            }),
            Err(e @ CallError::GaveUp { .. }) => Err(StageError::End(Box::new(Outcome::Failed {
                reason: format!("{stage}: {}", self.redact(&e.to_string())),
                content: false,
            }))),
            Err(e @ CallError::Refused { status, .. }) => {
                Err(StageError::End(Box::new(Outcome::Refused {
                    reason: format!(
                        "{stage}: {} ({})",
                        self.redact(&e.to_string()),
                        ep.describe()
                    ),
                    fatal: matches!(status, 401 | 403 | 404 | 405),
                })))
            }
        }
    }

    fn record(&self, job: &Job, prompt: &str, chosen: String, rejected: Option<String>) -> Record {
        let mut head = Vec::new();
        if self.opts.include_system {
            head.push(Message::new(Role::System, self.opts.persona.clone()));
        }
        head.push(Message::new(Role::User, prompt));
        let body = match rejected {
            Some(r) => Body::Preference(PreferencePair {
                prompt: head,
                chosen: vec![Message::new(Role::Assistant, chosen)],
                rejected: vec![Message::new(Role::Assistant, r)],
                ..Default::default()
            }),
            None => {
                head.push(Message::new(Role::Assistant, chosen));
                Body::Conversation(Conversation {
                    messages: head,
                    ..Default::default()
                })
            }
        };
        Record {
            body,
            meta: [(ID_FIELD.to_string(), Value::String(job.id.clone()))]
                .into_iter()
                .collect(),
        }
    }
}

/// `s` cut to `max` characters (line breaks kept), with `…` when cut.
fn clip_keep_lines(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}
