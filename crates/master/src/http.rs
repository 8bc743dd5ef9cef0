//! The master's HTTP surface: `POST /api/v1/scheduler` (reference §1.1), Agora's internal
//! `POST /api/agora/v1/agent`, the operator API `POST /api/v1` (served by `operator.rs`), the
//! legacy state endpoints (`legacy.rs`), the metrics (`metrics.rs`), `GET /version` and
//! `GET /health`.
//!
//! Handlers check what Mesos checks before a call reaches the state machine (method, content
//! type, body, `Accept`, the stream-id header on SUBSCRIBE) and map the core's refusals to
//! status codes in one place, `refusal`. They hold no state: everything goes through the
//! dispatcher.

use agora_core::master::{CallError, ConnId, Input, validate_call};
use agora_http::{
    EventBody, Refusal, accepted, decode_call, refuse, request_format, response_format,
    stream_response,
};
use std::sync::Arc;
use std::time::Instant;

use agora_proto::{Format, internal, master, scheduler, v1};
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::MESOS_API_VERSION;
use crate::dispatcher::{Command, Handle, StreamSender, submit};
use crate::{legacy, metrics};

/// What every handler can reach: the dispatcher, and the shell's own fixed facts.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) handle: Handle,
    pub(crate) shell: Arc<Shell>,
}

/// Facts about this master that are not the core's: its flags, when the process started, the
/// log filter SET_LOGGING_LEVEL changes and the files (its log) the files API shows.
pub(crate) struct Shell {
    /// Whether this master serves; in high-availability mode only the elected leader does,
    /// once it has recovered.
    pub(crate) gate: tokio::sync::watch::Sender<Gate>,
    pub(crate) flags: Vec<(String, String)>,
    pub(crate) started: Instant,
    pub(crate) logging: Arc<agora_http::Logging>,
    pub(crate) files: agora_http::files::Source,
    pub(crate) master_info: v1::MasterInfo,
    /// `/master/state` renders, one at a time and shared by the requests that wait together.
    pub(crate) state_renders: crate::legacy::StateRenders,
}

/// What a master does with the requests it gets (reference §5.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Serves everything: a single master, or the recovered leader.
    Serving,
    /// Elected, reading the registry: 503 (agents' registrations wait for the end).
    Recovering,
    /// Another master leads (`host:port`, if known): 307 there, or 503 while none is known.
    Standby { leader: Option<String> },
}

/// The agents' endpoint (`agora-agent` speaks it, no Mesos client does).
const AGENT_API: &str = "/api/agora/v1/agent";

/// How long an agent's registration waits for a recovering master.
const RECOVERY_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// Paths every master answers itself, whatever its standing.
fn always_served(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let path = path.strip_prefix("/master").unwrap_or(path);
    matches!(path, "/health" | "/version" | "/metrics" | "/metrics/snapshot")
}

/// Lets requests through only while this master serves; a standby redirects to the leader
/// with `Location: http://HOST:PORT` (for the scheduler API, the form every Mesos client
/// understands; other paths keep their path and query so that a browser or `curl -L` lands
/// on the same page), and answers 503 while it knows no leader or is still recovering.
async fn gate(
    State(shell): State<Arc<Shell>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut gate = shell.gate.borrow().clone();
    let path = request.uri().path();
    if gate == Gate::Recovering && path == AGENT_API {
        // Agents speak our own protocol, so they need no 503: rather than send thousands of
        // them into a backoff that outlasts the recovery (a failover waited for it), their
        // registrations wait here for the recovery to end, up to a bound.
        let mut changes = shell.gate.subscribe();
        let end = changes.wait_for(|gate| *gate != Gate::Recovering);
        if let Ok(Ok(now)) = tokio::time::timeout(RECOVERY_HOLD, end).await {
            gate = now.clone();
        }
    }
    if gate == Gate::Serving || always_served(path) {
        return next.run(request).await;
    }
    let unavailable =
        |message: &str| (StatusCode::SERVICE_UNAVAILABLE, message.to_string()).into_response();
    match gate {
        Gate::Serving => next.run(request).await,
        Gate::Recovering => unavailable("The master is recovering its registry; retry shortly"),
        Gate::Standby { leader: None } => unavailable("No master is currently leading"),
        Gate::Standby { leader: Some(leader) } => {
            let trimmed = path.trim_end_matches('/');
            let location = if trimmed.ends_with("/redirect") {
                format!("//{leader}")
            } else if trimmed.ends_with("/api/v1/scheduler") {
                format!("http://{leader}")
            } else {
                let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("http://{leader}{path}{query}")
            };
            let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
            if let Ok(value) = axum::http::HeaderValue::from_str(&location) {
                response.headers_mut().insert(axum::http::header::LOCATION, value);
            }
            response
        }
    }
}

impl FromRef<AppState> for Handle {
    fn from_ref(state: &AppState) -> Handle {
        state.handle.clone()
    }
}

pub(crate) fn router(handle: Handle, shell: Arc<Shell>) -> Router {
    let mut router = Router::new()
        .route(AGENT_API, post(agent_api))
        .route("/api/agora/v1/kill_task", post(kill_task_api))
        .route("/version", get(version))
        .route("/metrics/snapshot", get(metrics::snapshot_json))
        .route("/metrics", get(metrics::prometheus));
    // Mesos serves each route under its actor (`/master/...`) and, by delegation, at the root;
    // libprocess picks a path's longest registered prefix, so `/api/v1/operator` (where
    // pymesos' operator driver posts) and `/master/frameworks/` (avmesos-cli) reach the same
    // handlers as `/api/v1` and `/master/frameworks`. Tools use every spelling.
    for prefix in ["", "/master"] {
        router = router
            .route(&format!("{prefix}/api/v1/scheduler"), post(scheduler_api))
            .route(&format!("{prefix}/api/v1"), post(operator_api))
            .route(&format!("{prefix}/api/v1/operator"), post(operator_api))
            .route(&format!("{prefix}/health"), get(health))
            .route(&format!("{prefix}/redirect"), get(legacy::redirect));
        let reads = [
            ("state", get(legacy::state)),
            ("state.json", get(legacy::state)),
            ("state-summary", get(legacy::state_summary)),
            ("frameworks", get(legacy::frameworks)),
            ("slaves", get(legacy::slaves)),
            ("tasks", get(legacy::tasks)),
            ("roles", get(legacy::roles)),
            ("flags", get(legacy::flags)),
        ];
        for (name, handler) in reads {
            router = router
                .route(&format!("{prefix}/{name}"), handler.clone())
                .route(&format!("{prefix}/{name}/"), handler);
        }
    }
    router
        .merge(agora_http::files::routes(Arc::clone(&shell.files)))
        .layer(axum::middleware::from_fn(agora_http::jsonp))
        .layer(DefaultBodyLimit::max(agora_http::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(shell.clone(), gate))
        .with_state(AppState { handle, shell })
}

pub(crate) fn refusal(error: CallError) -> Refusal {
    match error {
        CallError::BadRequest(m) => refuse(StatusCode::BAD_REQUEST, m),
        CallError::Forbidden(m) => refuse(StatusCode::FORBIDDEN, m),
        CallError::NotFound(m) => refuse(StatusCode::NOT_FOUND, m),
        CallError::Conflict(m) => refuse(StatusCode::CONFLICT, m),
    }
}

async fn scheduler_api(
    State(handle): State<Handle>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let format = request_format(&headers)?;
    let call: scheduler::Call = decode_call(format, &body)?;
    let stream_id = agora_http::stream_id(&headers);
    let req = handle.next_id();
    if call.r#type() != scheduler::call::Type::Subscribe {
        return plain_call(&handle, Input::SchedulerCall { req, stream_id, call }).await;
    }
    validate_call(&call).map_err(refusal)?;
    let format = response_format(&headers)?;
    if stream_id.is_some() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Subscribe calls should not include the 'Mesos-Stream-Id' header",
        ));
    }
    let open = |conn, stream_id| Input::Subscribe { req, conn, stream_id, call };
    open_stream(&handle, format, open, |conn| Input::SchedulerClosed { conn }).await
}

async fn agent_api(
    State(handle): State<Handle>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let format = request_format(&headers)?;
    let call: internal::AgentCall = decode_call(format, &body)?;
    let stream_id = agora_http::stream_id(&headers);
    let req = handle.next_id();
    if call.r#type() != internal::agent_call::Type::Register {
        return plain_call(&handle, Input::AgentCall { req, stream_id, call }).await;
    }
    let format = response_format(&headers)?;
    let open = |conn, stream_id| Input::AgentRegister { req, conn, stream_id, call };
    open_stream(&handle, format, open, |conn| Input::AgentClosed { conn }).await
}

/// The operator API (reference §4.2): decoding here, the calls in `operator.rs`.
async fn operator_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let format = request_format(&headers)?;
    let call: master::Call = decode_call(format, &body)?;
    crate::operator::serve(&state, &headers, call).await
}

/// Agora's operator extension `POST /api/agora/v1/kill_task` (`internal::KillTaskCall`): kills
/// one task as its framework's KILL would, which the Mesos operator API cannot; 202 once the
/// kill is on its way, 404 for no such running task, 400 when the id is ambiguous.
async fn kill_task_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let format = request_format(&headers)?;
    let call: internal::KillTaskCall = decode_call(format, &body)?;
    let req = state.handle.next_id();
    let input =
        Input::OperatorKillTask { req, task_id: call.task_id, framework_id: call.framework_id };
    plain_call(&state.handle, input).await
}

/// A call answered 202 or refused.
async fn plain_call(handle: &Handle, input: Input) -> Result<Response, Refusal> {
    submit(handle, input, None).await.map(|()| accepted()).map_err(refusal)
}

/// Opens a subscription stream: the dispatcher registers it under a fresh connection id
/// together with the input that opens it, and the answer is the 200 stream or the refusal.
/// `closed` is the input the dispatcher gets when the stream goes away.
async fn open_stream(
    handle: &Handle,
    format: Format,
    open: impl FnOnce(ConnId, String) -> Input,
    closed: fn(ConnId) -> Input,
) -> Result<Response, Refusal> {
    let conn = handle.next_id();
    let stream_id = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = StreamSender { conn, format, tx };
    // The body exists before the dispatcher knows the stream, so that whatever happens to this
    // request from here on (refusal, client gone), dropping it tells the dispatcher.
    let body = EventBody::new(rx, handle.tx.clone(), Command::Closed(closed(conn)));
    match submit(handle, open(conn, stream_id.clone()), Some(stream)).await {
        Ok(()) => Ok(stream_response(format, Some(&stream_id), body)),
        Err(e) => Err(refusal(e)),
    }
}

/// `/version` in Mesos's shape; the version is purely numeric because clients parse it.
async fn version() -> Response {
    let body = serde_json::json!({
        "version": MESOS_API_VERSION,
        "build_date": "",
        "build_time": 0,
        "build_user": "",
        "git_sha": "",
        "agora_version": env!("CARGO_PKG_VERSION"),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn health() -> StatusCode {
    StatusCode::OK
}
