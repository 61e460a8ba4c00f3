//! The HTTP side: axum routes on a small tokio runtime that only moves bytes. `/health`,
//! `/v1/models` (and `/v1/models/{id}`), `/v1/chat/completions` (JSON, or server-sent events
//! with `stream: true`); every other path is an OpenAI-shaped 404. Completions wait for a
//! generation slot ([`Slots`]); the work itself runs on the generation thread
//! ([`generate::start`]) and streams back over a channel. One access line per request goes
//! to the log (whether a key matched, never the key). SIGINT or SIGTERM stops accepting,
//! lets running requests finish for a grace period (a second signal ends it at once), then
//! returns.
//!
//! On a shared box the server defends itself: API keys on every route but `/health`
//! ([`guard`]), a requests-per-minute window per key, a cap on `max_tokens`, prompt and
//! completion within the context (an error, never a silent cut), a bounded request body read
//! within a time limit, a bounded number of connections each of which must send its headers
//! in time (a slow client is dropped without holding a slot), and a bounded queue (429 with
//! `Retry-After` beyond it).

use super::generate::{self, Job, Out};
use super::guard::{Caller, KeyCheck, Keys, RateLimit};
use super::models::Registry;
use super::openai::{self, ApiError, Completion, Usage};
use super::slots::Slots;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the server listens, schedules and defends itself. Every limit has a flag on
/// `tunelab serve`; the defaults are the values below.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Generations at once (each on its own thread).
    pub parallel: usize,
    /// Requests that may wait for a slot; one more is refused with 429.
    pub queue: usize,
    /// `max_tokens` for requests that leave it out.
    pub default_max_tokens: usize,
    /// The most `max_tokens` a request may ask for.
    pub max_tokens_cap: usize,
    /// How long running requests may go on after SIGINT/SIGTERM.
    pub grace: Duration,
    /// The largest request body.
    pub max_body_bytes: usize,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// A connection must send a request's headers within this, or it is closed.
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Requests per minute per key (per client address without keys); 0 is no limit.
    pub requests_per_minute: usize,
    /// The accepted API keys; none lets every request in.
    pub keys: Keys,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "127.0.0.1".into(),
            port: 8000,
            parallel: 2,
            queue: 64,
            default_max_tokens: 1024,
            max_tokens_cap: 4096,
            grace: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            requests_per_minute: 0,
            keys: Keys::default(),
        }
    }
}

impl Options {
    /// Whether the server listens beyond this machine.
    pub fn beyond_loopback(&self) -> bool {
        match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => self.host != "localhost",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
struct App {
    registry: Arc<Registry>,
    slots: Arc<Slots>,
    default_max_tokens: usize,
    max_tokens_cap: usize,
    max_body_bytes: usize,
    body_timeout: Duration,
    keys: Arc<Keys>,
    limit: Arc<RateLimit>,
    /// Listening beyond loopback without keys (`/health` says `"auth": false`).
    exposed: bool,
    /// Numbers completion ids and log lines.
    next_id: Arc<AtomicU64>,
}

/// A response whose access line the handler writes itself (a stream, at its end).
#[derive(Clone)]
struct Logged;

/// More for a response's access line (model, tokens).
#[derive(Clone)]
struct Note(String);

/// The routes over `registry`.
pub fn router(registry: Arc<Registry>, opts: &Options) -> Router {
    let app = App {
        registry,
        slots: Arc::new(Slots::new(opts.parallel, opts.queue)),
        default_max_tokens: opts.default_max_tokens,
        max_tokens_cap: opts.max_tokens_cap,
        max_body_bytes: opts.max_body_bytes,
        body_timeout: opts.body_timeout,
        keys: Arc::new(opts.keys.clone()),
        limit: Arc::new(RateLimit::new(opts.requests_per_minute)),
        exposed: opts.keys.is_empty() && opts.beyond_loopback(),
        next_id: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
}

/// The key and the rate window, before any route but `/health`.
async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let check = app.keys.check(header);
    let refused = match check {
        KeyCheck::Missing => Some(ApiError::unauthorized(
            "missing API key: send `Authorization: Bearer KEY` (this server was started with --api-key)",
        )),
        KeyCheck::Wrong => Some(ApiError::unauthorized("incorrect API key provided")),
        KeyCheck::Open | KeyCheck::Matched(_) => None,
    };
    let mut r = match refused {
        Some(e) => error_response(&e),
        None => {
            let caller = match check {
                KeyCheck::Matched(i) => Caller::Key(i),
                _ => Caller::Address(peer_ip(&req)),
            };
            match app.limit.admit(caller, Instant::now()) {
                Ok(()) => next.run(req).await,
                Err(wait) => retry_after(
                    error_response(&ApiError::rate_limited(app.limit.per_minute())),
                    wait,
                ),
            }
        }
    };
    r.extensions_mut().insert(check);
    r
}

/// `r` with a `Retry-After` of `wait`, in whole seconds (at least 1).
fn retry_after(mut r: Response, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn peer_ip(req: &Request) -> std::net::IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// Binds, calls `on_listen` with the address (port 0 made real), and serves until SIGINT or
/// SIGTERM.
pub fn run(
    registry: Registry,
    opts: &Options,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tunelab-http")
        .enable_all()
        .build()?;
    let ids = registry.ids().join(", ");
    let app = router(Arc::new(registry), opts);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
            .await
            .map_err(|source| ServeError::Bind {
                addr: format!("{}:{}", opts.host, opts.port),
                source,
            })?;
        let addr = listener.local_addr()?;
        on_listen(addr);
        tracing::info!("serving {ids} on http://{addr}");
        if opts.keys.is_empty() && opts.beyond_loopback() {
            tracing::warn!(
                "listening on {} without an API key: anyone who can reach the port can use the model",
                opts.host
            );
        }
        let stop = tokio::sync::watch::channel(false).0;
        let connections = serve_connections(listener, app, opts, stop.subscribe());
        let grace = opts.grace;
        tokio::select! {
            r = connections => r?,
            sig = signal() => {
                tracing::info!("{sig}: no new connections; running requests may finish");
                let _ = stop.send(true);
                tokio::select! {
                    _ = tokio::time::sleep(grace) => tracing::info!("stopping with requests still running"),
                    _ = signal() => tracing::info!("stopping at once"),
                    _ = stop.closed() => {}
                }
            }
        }
        tracing::info!("server stopped");
        Ok(())
    })
}

/// Accepts connections (at most `max_connections` open; more wait in the kernel's backlog)
/// and serves each over HTTP/1 with hyper's header read timeout, so a client that sends its
/// headers slowly is dropped. `stop` turns every connection to a graceful close; this
/// returns when the listener fails.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    opts: &Options,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let open = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let header_timeout = opts.header_timeout;
    loop {
        let Ok(permit) = Arc::clone(&open).acquire_owned().await else {
            return Ok(());
        };
        let mut stopping = stop.clone();
        if *stopping.borrow() {
            return Ok(());
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: say so, breathe, go on.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping.changed() => return Ok(()),
        };
        let service = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper_util::service::TowerToHyperService::new(service);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("{peer}: connection: {e}");
                    }
                }
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// The next SIGINT or SIGTERM, by name.
async fn signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &e.body());
    r.extensions_mut()
        .insert(Note(format!(" error={:?}", e.message)));
    r
}

async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let peer = peer_of(&req);
    let r = next.run(req).await;
    if r.extensions().get::<Logged>().is_none() {
        let note = r.extensions().get::<Note>().map_or("", |n| n.0.as_str());
        let key = r
            .extensions()
            .get::<KeyCheck>()
            .map_or("none", |k| k.log_word());
        tracing::info!(
            "{peer} \"{method} {path}\" {} {}ms key={key}{note}",
            r.status().as_u16(),
            started.elapsed().as_millis()
        );
    }
    r
}

fn peer_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_string(), |c| c.0.to_string())
}

async fn health(State(app): State<App>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "models": app.registry.ids(),
            "running": app.slots.running(),
            "queued": app.slots.queued(),
            "parallel": app.slots.parallel(),
            "queue": app.slots.queue(),
            "auth": !app.keys.is_empty(),
            "warning": app.exposed.then_some(
                "listening beyond loopback without an API key: anyone who can reach the port can use the model (start with --api-key)"
            ),
        }),
    )
}

async fn models(State(app): State<App>) -> Response {
    json_response(StatusCode::OK, &app.registry.list_json())
}

async fn model(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.registry.get(Some(&id)) {
        Some(m) => json_response(StatusCode::OK, &app.registry.model_json(m)),
        None => error_response(&ApiError::unknown_model(&id, &app.registry.ids())),
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        &ApiError::status(
            404,
            format!(
                "Invalid URL ({method} {}); this server has GET /health, GET /v1/models and \
                 POST /v1/chat/completions",
                uri.path()
            ),
        )
        .with_code("not_found"),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    error_response(
        &ApiError::status(405, format!("{method} is not allowed on {}", uri.path()))
            .with_code("method_not_allowed"),
    )
}

/// What a completion's access line says.
struct Line {
    peer: String,
    model: String,
    started: Instant,
    prompt_tokens: usize,
    /// Text chunks sent so far.
    chunks: usize,
}

impl Line {
    fn log(&self, status: u16, what: &str) {
        tracing::info!(
            "{} \"POST /v1/chat/completions\" {status} {}ms model={} stream prompt_tokens={} {what}",
            self.peer,
            self.started.elapsed().as_millis(),
            self.model,
            self.prompt_tokens,
        );
    }
}

/// Logs a completion whose client left before it was answered (the handler dropped while
/// queued or generating), unless disarmed.
struct Unanswered {
    peer: SocketAddr,
    started: Instant,
    armed: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if self.armed {
            tracing::info!(
                "{} \"POST /v1/chat/completions\" 499 {}ms client gone before the answer",
                self.peer,
                self.started.elapsed().as_millis()
            );
        }
    }
}

async fn chat(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let mut guard = Unanswered {
        peer,
        started,
        armed: true,
    };
    let body = read_body(&app, req).await;
    let r = answer(app, peer, started, body).await;
    guard.armed = false;
    r
}

/// The request body, at most `max_body_bytes`, within `body_timeout` (a slow client is
/// dropped before it waits for a slot).
async fn read_body(app: &App, req: Request) -> Result<Bytes, ApiError> {
    let limit = app.max_body_bytes;
    match tokio::time::timeout(
        app.body_timeout,
        axum::body::to_bytes(req.into_body(), limit),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(ApiError::status(
            413,
            format!("the request body is over {limit} bytes (--max-body-bytes)"),
        )
        .with_code("request_too_large")),
        Err(_) => Err(ApiError::status(
            408,
            format!(
                "the request body did not arrive within {}s",
                app.body_timeout.as_secs_f64()
            ),
        )
        .with_code("request_timeout")),
    }
}

async fn answer(
    app: App,
    peer: SocketAddr,
    started: Instant,
    body: Result<Bytes, ApiError>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let request = match openai::parse_chat(&body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let Some(served) = app.registry.get(request.model.as_deref()) else {
        let id = request.model.as_deref().unwrap_or_default();
        return error_response(&ApiError::unknown_model(id, &app.registry.ids()));
    };
    if let Some(n) = request.max_tokens.filter(|n| *n > app.max_tokens_cap) {
        return error_response(&ApiError::invalid(
            "max_tokens",
            format!(
                "{n} is over this server's cap of {} (--max-tokens-cap)",
                app.max_tokens_cap
            ),
        ));
    }
    let slot = match app.slots.acquire().await {
        Ok(s) => s,
        Err(_) => {
            return retry_after(
                error_response(&ApiError::busy(app.slots.queue())),
                Duration::from_secs(1),
            )
        }
    };
    let n = app.next_id.fetch_add(1, Ordering::Relaxed);
    let completion = Completion {
        id: format!("chatcmpl-{:016x}{n:08x}", rand::random::<u64>()),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: served.id.clone(),
    };
    let (stream, include_usage) = (request.stream, request.include_usage);
    let job = Job {
        request,
        default_max_tokens: app.default_max_tokens.min(app.max_tokens_cap),
        context: app.registry.context,
        label: format!("{peer} request {n} ({})", served.id),
    };
    let mut rx = match generate::start(
        Arc::clone(&served.model),
        Arc::clone(&app.registry.encoder),
        job,
        slot,
    ) {
        Ok(rx) => rx,
        Err(e) => {
            return error_response(&ApiError::internal(format!(
                "cannot start a generation thread: {e}"
            )))
        }
    };
    let prompt_tokens = match rx.recv().await {
        Some(Out::Started { prompt_tokens }) => prompt_tokens,
        Some(Out::Rejected(e)) => return error_response(&e),
        _ => return error_response(&ApiError::internal("the generation thread ended early")),
    };
    if stream {
        let line = Line {
            peer: peer.to_string(),
            model: served.id.clone(),
            started,
            prompt_tokens,
            chunks: 0,
        };
        return sse(rx, completion, include_usage, line);
    }
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Out::Text(t)) => text.push_str(&t),
            Some(Out::Done { finish, usage }) => {
                let mut r =
                    json_response(StatusCode::OK, &completion.response(&text, finish, usage));
                r.extensions_mut().insert(Note(format!(
                    " model={} prompt_tokens={} completion_tokens={} finish={}",
                    served.id,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    finish.as_str()
                )));
                return r;
            }
            Some(Out::Failed(e)) => {
                return error_response(&ApiError::internal(format!("generation failed: {e}")))
            }
            _ => return error_response(&ApiError::internal("the generation thread ended early")),
        }
    }
}

/// Where a stream is.
enum Phase {
    /// The first chunk (the assistant role) is next.
    Role,
    Text,
    /// The usage chunk is next.
    Usage(Usage),
    /// `[DONE]` is next.
    Done,
    End,
}

struct Streaming {
    rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
    completion: Completion,
    include_usage: bool,
    phase: Phase,
    line: Line,
    /// Whether the access line is written.
    logged: bool,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if !self.logged {
            self.line.log(
                499,
                &format!("client gone after {} chunks", self.line.chunks),
            );
        }
    }
}

fn data(v: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

/// The completion as server-sent events: the role chunk, one chunk per piece of text, the
/// finish chunk, the usage chunk when asked for, then `data: [DONE]`. Dropping the stream (the
/// client went away) drops the channel, which stops the generation thread.
fn sse(
    rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
    completion: Completion,
    include_usage: bool,
    line: Line,
) -> Response {
    let state = Streaming {
        rx,
        completion,
        include_usage,
        phase: Phase::Role,
        line,
        logged: false,
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        let event = match std::mem::replace(&mut s.phase, Phase::End) {
            Phase::Role => {
                s.phase = Phase::Text;
                data(
                    &s.completion
                        .chunk(json!({"role": "assistant", "content": ""}), None),
                )
            }
            Phase::Text => match s.rx.recv().await {
                Some(Out::Text(t)) => {
                    s.line.chunks += 1;
                    s.phase = Phase::Text;
                    data(&s.completion.chunk(json!({"content": t}), None))
                }
                Some(Out::Done { finish, usage }) => {
                    s.line.log(
                        200,
                        &format!(
                            "completion_tokens={} finish={}",
                            usage.completion_tokens,
                            finish.as_str()
                        ),
                    );
                    s.logged = true;
                    s.phase = if s.include_usage {
                        Phase::Usage(usage)
                    } else {
                        Phase::Done
                    };
                    data(&s.completion.chunk(json!({}), Some(finish)))
                }
                other => {
                    let why = match other {
                        Some(Out::Failed(e)) => format!("generation failed: {e}"),
                        _ => "the generation thread ended early".to_string(),
                    };
                    s.line.log(200, &format!("error={why:?}"));
                    s.logged = true;
                    s.phase = Phase::Done;
                    data(&ApiError::internal(why).body())
                }
            },
            Phase::Usage(usage) => {
                s.phase = Phase::Done;
                data(&s.completion.usage_chunk(usage))
            }
            Phase::Done => Ok(Event::default().data("[DONE]")),
            Phase::End => return None,
        };
        Some((event, s))
    });
    let mut r = Sse::new(events).into_response();
    r.extensions_mut().insert(Logged);
    r
}
