//! Requests with the manners a shared API expects: a timeout on every request, a
//! requests-per-minute pace shared by every thread, 429 and 5xx (Anthropic's 529 among
//! them), timeouts and dropped connections retried with exponential backoff and jitter,
//! `Retry-After` honoured (seconds or an HTTP date), and a bounded number of attempts.

use super::message::{ChatRequest, Reply, Usage};
use super::provider::{clip, Endpoint};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a `Retry-After` is waited for; a server asking for more gets its attempt
/// counted and the wait cut to this.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// How requests are made.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Per request, connection to the end of the body.
    pub timeout: Duration,
    /// Tries per request (the first one included), at least 1.
    pub attempts: u32,
    /// The first backoff; each retry doubles it (capped at a minute), with jitter.
    pub backoff: Duration,
    /// Requests per minute over all threads; `None` for no limit.
    pub rpm: Option<u32>,
}

/// Counters over every request of a run.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Responses that were not a success (429, 5xx, other 4xx) and transport failures.
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn add_usage(&self, u: Usage) {
        self.input_tokens.fetch_add(u.input, Ordering::Relaxed);
        self.output_tokens.fetch_add(u.output, Ordering::Relaxed);
    }
}

/// Why a request produced no reply.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// A success status whose body is not the provider's response shape. Not retried here:
    /// the caller logs it as rejected output and asks again.
    Malformed { message: String, body: String },
    /// Every attempt failed (429, 5xx, a timeout, a dropped connection): the last reason.
    GaveUp { attempts: u32, last: String },
    /// A client error a retry cannot fix (400, 401, 403, 404, …).
    Refused { status: u16, message: String },
    /// The caller's stop flag was set before the request went out or while it waited to
    /// retry.
    Cancelled,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Malformed { message, .. } => write!(f, "malformed response: {message}"),
            CallError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: {last}")
            }
            CallError::Refused { status, message } => write!(f, "HTTP {status}: {message}"),
            CallError::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// Spaces request starts `60/rpm` seconds apart over all threads, and holds every thread
/// back while a server's `Retry-After` runs.
#[derive(Debug)]
pub struct Pace {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pace {
    pub fn new(rpm: Option<u32>) -> Self {
        Pace {
            interval: rpm
                .filter(|r| *r > 0)
                .map(|r| Duration::from_secs_f64(60.0 / f64::from(r))),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this thread's turn.
    pub fn acquire(&self) {
        self.acquire_unless(&AtomicBool::new(false));
    }

    /// Waits for this thread's turn; false when `stop` was set meanwhile (the turn is spent).
    pub fn acquire_unless(&self, stop: &AtomicBool) -> bool {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval.unwrap_or_default();
            at
        };
        sleep_unless(at.saturating_duration_since(Instant::now()), stop)
    }

    /// No request starts before `until`.
    pub fn hold_until(&self, until: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if until > *next {
            *next = until;
        }
    }
}

/// A `Retry-After` value: delay seconds, or an HTTP date (RFC 9110's IMF-fixdate, which
/// RFC 2822 parsing reads) measured from `now`.
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.with_timezone(&chrono::Utc) - now).num_milliseconds();
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// The wait before retry `retry` (1-based): `base · 2^(retry-1)`, capped at a minute, then
/// a uniformly random point in its upper half (so threads that failed together do not
/// retry together).
pub fn backoff(base: Duration, retry: u32, jitter: f64) -> Duration {
    let full = base
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
        .min(Duration::from_secs(60));
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Sleeps for `wait` in short slices, waking early when `stop` is set; false if it was.
pub fn sleep_unless(wait: Duration, stop: &AtomicBool) -> bool {
    const SLICE: Duration = Duration::from_millis(50);
    let until = Instant::now() + wait;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(SLICE));
    }
}

/// Statuses worth another try.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || (500..=599).contains(&status)
}

/// One HTTP agent (connection pool) for a run.
pub struct Client {
    agent: ureq::Agent,
    pub policy: Policy,
    pub pace: Pace,
    pub stats: Stats,
}

/// What one attempt came to.
enum Attempt {
    Done(Result<Reply, CallError>),
    Retry {
        reason: String,
        wait: Option<Duration>,
    },
}

impl Client {
    pub fn new(policy: Policy) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(policy.timeout)
            .user_agent(concat!("tunelab/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent,
            pace: Pace::new(policy.rpm),
            policy,
            stats: Stats::default(),
        }
    }

    /// The first model an OpenAI-compatible server lists (`GET {base}/models`), if it answers.
    pub fn first_model(&self, ep: &Endpoint) -> Option<String> {
        let mut req = self.agent.get(&super::openai::models_url(&ep.base_url));
        for (k, v) in ep.headers() {
            if k != "content-type" {
                req = req.set(k, &v);
            }
        }
        let body = req.call().ok()?.into_string().ok()?;
        super::openai::first_model(&body)
    }

    /// Sends `req` to `ep`, retrying as the policy says. `on_retry` hears each retry's reason
    /// and wait (the key never appears in it).
    pub fn chat(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        on_retry: &dyn Fn(&str, Duration),
    ) -> Result<Reply, CallError> {
        self.chat_unless(ep, req, on_retry, &AtomicBool::new(false))
    }

    /// [`Client::chat`] that gives up with [`CallError::Cancelled`] once `stop` is set: no
    /// request starts after it, and a wait to retry ends early. A request already sent runs
    /// to its end (or the policy's timeout).
    pub fn chat_unless(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        on_retry: &dyn Fn(&str, Duration),
        stop: &AtomicBool,
    ) -> Result<Reply, CallError> {
        let body = ep.body(req).to_string();
        let attempts = self.policy.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if !self.pace.acquire_unless(stop) || stop.load(Ordering::Relaxed) {
                return Err(CallError::Cancelled);
            }
            Stats::bump(&self.stats.requests);
            match self.attempt(ep, &body) {
                Attempt::Done(r) => {
                    if let Ok(reply) = &r {
                        self.stats.add_usage(reply.usage);
                    }
                    return r;
                }
                Attempt::Retry { reason, wait } => {
                    Stats::bump(&self.stats.errors);
                    last = reason;
                    if attempt == attempts {
                        break;
                    }
                    let wait = wait.unwrap_or_else(|| {
                        backoff(self.policy.backoff, attempt, rand::random::<f64>())
                    });
                    let wait = wait.min(MAX_WAIT);
                    Stats::bump(&self.stats.retries);
                    on_retry(&last, wait);
                    if !sleep_unless(wait, stop) {
                        return Err(CallError::Cancelled);
                    }
                }
            }
        }
        Err(CallError::GaveUp { attempts, last })
    }

    fn attempt(&self, ep: &Endpoint, body: &str) -> Attempt {
        let mut req = self.agent.post(&ep.url());
        for (k, v) in ep.headers() {
            req = req.set(k, &v);
        }
        match req.send_string(body) {
            Ok(resp) => match resp.into_string() {
                Ok(text) => {
                    Attempt::Done(ep.parse(&text).map_err(|message| CallError::Malformed {
                        message: ep.redact(&message),
                        body: ep.redact(&text),
                    }))
                }
                Err(e) => self.transport_failure(is_timeout_io(&e), &e.to_string(), ep),
            },
            Err(ureq::Error::Status(status, resp)) => {
                let wait = resp
                    .header("retry-after")
                    .and_then(|v| retry_after(v, chrono::Utc::now()));
                let text = resp.into_string().unwrap_or_default();
                let message = ep.error_message(&text);
                if retryable(status) {
                    if let Some(w) = wait {
                        self.pace.hold_until(Instant::now() + w.min(MAX_WAIT));
                    }
                    let reason = if message.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {}", clip(&message, 200))
                    };
                    Attempt::Retry { reason, wait }
                } else {
                    Stats::bump(&self.stats.errors);
                    Attempt::Done(Err(CallError::Refused { status, message }))
                }
            }
            Err(ureq::Error::Transport(t)) => {
                let timeout = is_timeout(&t);
                self.transport_failure(timeout, &t.to_string(), ep)
            }
        }
    }

    fn transport_failure(&self, timeout: bool, message: &str, ep: &Endpoint) -> Attempt {
        let reason = if timeout {
            Stats::bump(&self.stats.timeouts);
            format!(
                "timed out after {:.0}s (--timeout)",
                self.policy.timeout.as_secs_f64()
            )
        } else {
            ep.redact(message)
        };
        Attempt::Retry { reason, wait: None }
    }
}

fn is_timeout_io(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn is_timeout(t: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(t);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if is_timeout_io(io) {
                return true;
            }
        }
        source = s.source();
    }
    t.to_string().contains("timed out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means now.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_in_its_upper_half_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(base, 1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(base, 3, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(base, 30, 1.0), Duration::from_secs(60));
        assert!(retryable(429) && retryable(529) && retryable(500) && !retryable(401));
    }

    #[test]
    fn a_stop_flag_ends_waits_early() {
        let stop = AtomicBool::new(false);
        assert!(sleep_unless(Duration::from_millis(20), &stop));
        let pace = Pace::new(Some(6)); // 10 s apart
        assert!(pace.acquire_unless(&stop));
        stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        assert!(!pace.acquire_unless(&stop));
        assert!(!sleep_unless(Duration::from_secs(60), &stop));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let client = Client::new(Policy {
            timeout: Duration::from_secs(1),
            attempts: 3,
            backoff: Duration::from_secs(1),
            rpm: None,
        });
        let ep = Endpoint {
            provider: super::super::Provider::Openai,
            base_url: "http://127.0.0.1:9/v1".into(),
            model: Some("m".into()),
            key: None,
        };
        let req = ChatRequest::user(None, "hi", 8);
        assert_eq!(
            client.chat_unless(&ep, &req, &|_, _| {}, &stop),
            Err(CallError::Cancelled)
        );
        assert_eq!(Stats::get(&client.stats.requests), 0, "nothing was sent");
    }

    #[test]
    fn the_pace_spaces_requests() {
        let pace = Pace::new(Some(1200)); // 50 ms apart
        let t = Instant::now();
        for _ in 0..4 {
            pace.acquire();
        }
        assert!(
            t.elapsed() >= Duration::from_millis(140),
            "{:?}",
            t.elapsed()
        );
        let open = Pace::new(None);
        let t = Instant::now();
        for _ in 0..100 {
            open.acquire();
        }
        assert!(t.elapsed() < Duration::from_millis(100));
    }
}
