//! The HTTP side: axum routes on a small tokio runtime that only moves bytes. `/health`,
//! `/v1/models` (and `/v1/models/{id}`), `/v1/chat/completions` (JSON, or server-sent events
//! with `stream: true`); every other path is an OpenAI-shaped 404. Completions wait for a
//! generation slot ([`Slots`]); the work itself runs on the generation thread
//! ([`generate::start`]) and streams back over a channel. One access line per request goes
//! to the log. SIGINT or SIGTERM stops accepting, lets running requests finish for a grace
//! period (a second signal ends it at once), then returns.

use super::generate::{self, Job, Out};
use super::models::Registry;
use super::openai::{self, ApiError, Completion, Usage};
use super::slots::Slots;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
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

/// How the server listens and schedules.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Generations at once (each on its own thread).
    pub parallel: usize,
    /// Requests that may wait for a slot; one more is refused with 503.
    pub queue: usize,
    /// `max_tokens` for requests that leave it out.
    pub default_max_tokens: usize,
    /// How long running requests may go on after SIGINT/SIGTERM.
    pub grace: Duration,
    /// The largest request body.
    pub max_body_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "127.0.0.1".into(),
            port: 8000,
            parallel: 2,
            queue: 64,
            default_max_tokens: 1024,
            grace: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
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
        next_id: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/chat/completions", post(chat))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
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
        let stopping = Arc::new(tokio::sync::Notify::new());
        let signalled = Arc::clone(&stopping);
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let sig = signal().await;
            tracing::info!("{sig}: no new connections; running requests may finish");
            signalled.notify_one();
        });
        let grace = opts.grace;
        tokio::select! {
            r = server => r?,
            _ = async {
                stopping.notified().await;
                tokio::select! {
                    _ = tokio::time::sleep(grace) => {}
                    _ = signal() => {}
                }
            } => tracing::info!("stopping with requests still running"),
        }
        tracing::info!("server stopped");
        Ok(())
    })
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
        tracing::info!(
            "{peer} \"{method} {path}\" {} {}ms{note}",
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let mut guard = Unanswered {
        peer,
        started,
        armed: true,
    };
    let r = answer(app, peer, started, body).await;
    guard.armed = false;
    r
}

async fn answer(
    app: App,
    peer: SocketAddr,
    started: Instant,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::status(e.status().as_u16(), e.body_text())),
    };
    let request = match openai::parse_chat(&body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let Some(served) = app.registry.get(request.model.as_deref()) else {
        let id = request.model.as_deref().unwrap_or_default();
        return error_response(&ApiError::unknown_model(id, &app.registry.ids()));
    };
    let slot = match app.slots.acquire().await {
        Ok(s) => s,
        Err(_) => return error_response(&ApiError::busy(app.slots.queue())),
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
        default_max_tokens: app.default_max_tokens,
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
