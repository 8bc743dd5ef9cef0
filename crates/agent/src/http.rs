//! The agent's HTTP surface: the executor API `POST /api/v1/executor` (reference §3.1), the
//! files API `GET /files/{browse,read,download,debug}` (also under `.json`, §4.4),
//! `GET /version` and `GET /health`, and routes the operator API (`operator.rs`) and the
//! legacy state, flags, statistics and metrics endpoints (`legacy.rs`), each also under
//! `/slave(1)`.
//!
//! Handlers check the transport-level rules (content type, body, `Accept`) and map the core's
//! refusals to status codes in `refusal`; the executor API goes through the dispatcher, the
//! files API to `agora_http::files` over the sandboxes `files.rs` attaches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use agora_core::agent::{CallError, Input};
use agora_http::{
    EventBody, Refusal, accepted, decode_call, refuse, request_format, response_format,
    stream_response,
};
use agora_proto::executor;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::dispatcher::{Command, Handle, submit};
use crate::files;
use crate::legacy;
use crate::operator;

/// What every handler may use: the dispatcher, the sandboxes (for the files API), the
/// agent's flags as Mesos names and prints them, its logging level and its address.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) handle: Handle,
    /// The sandboxes' attachments for the files API, read from the work directory on each
    /// request.
    pub(crate) files: agora_http::files::Source,
    pub(crate) flags: Arc<BTreeMap<String, String>>,
    pub(crate) logging: Arc<agora_http::Logging>,
    /// `ip:port` the agent serves on, for `/state`'s `pid`.
    pub(crate) addr: Arc<String>,
}

pub(crate) fn router(
    handle: Handle,
    work_dir: PathBuf,
    log: Option<PathBuf>,
    flags: BTreeMap<String, String>,
    addr: String,
    logging: Arc<agora_http::Logging>,
) -> Router {
    let files: agora_http::files::Source = Arc::new(move || {
        let mut table = files::attachments(&work_dir);
        // Mesos's virtual path for the agent's log, once the file exists.
        if let Some(log) = log.as_ref().and_then(|log| std::fs::canonicalize(log).ok()) {
            table.insert("/slave/log".to_string(), log);
        }
        table
    });
    let state = AppState {
        handle,
        files: Arc::clone(&files),
        flags: Arc::new(flags),
        logging,
        addr: Arc::new(addr),
    };
    // Mesos serves each route under its actor (`/slave(1)/...`) and, by delegation, at the
    // root; tools use both, and the `.json` spellings of older releases.
    let mut router = Router::new()
        .route("/api/v1/executor", post(executor_api))
        .route("/slave(1)/api/v1/executor", post(executor_api));
    for prefix in ["", "/slave(1)"] {
        router = router
            .route(&format!("{prefix}/api/v1"), post(operator::operator_api))
            // libprocess routes a path to its longest registered prefix, so Mesos answers
            // operator calls under any `/api/v1/<more>` too; pymesos' operator drivers post
            // to `/api/v1/operator`.
            .route(&format!("{prefix}/api/v1/operator"), post(operator::operator_api))
            .route(&format!("{prefix}/state"), get(legacy::state))
            .route(&format!("{prefix}/state.json"), get(legacy::state))
            .route(&format!("{prefix}/flags"), get(legacy::flags))
            .route(&format!("{prefix}/containers"), get(legacy::containers))
            .route(&format!("{prefix}/health"), get(|| async { StatusCode::OK }));
    }
    router
        .route("/monitor/statistics", get(legacy::monitor_statistics))
        .route("/monitor/statistics.json", get(legacy::monitor_statistics))
        .route("/metrics/snapshot", get(legacy::metrics_snapshot))
        .route("/metrics", get(legacy::metrics_prometheus))
        .merge(agora_http::files::routes(Arc::clone(&files)))
        .route("/version", get(version))
        .layer(axum::middleware::from_fn(agora_http::jsonp))
        .layer(DefaultBodyLimit::max(agora_http::MAX_BODY))
        .with_state(state)
}

fn refusal(error: CallError) -> Refusal {
    match error {
        CallError::BadRequest(m) => refuse(StatusCode::BAD_REQUEST, m),
        CallError::Forbidden(m) => refuse(StatusCode::FORBIDDEN, m),
        CallError::NotFound(m) => refuse(StatusCode::NOT_FOUND, m),
        CallError::Conflict(m) => refuse(StatusCode::CONFLICT, m),
    }
}

async fn executor_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let handle = state.handle;
    let format = request_format(&headers)?;
    let call: executor::Call = decode_call(format, &body)?;
    let req = handle.next_id();
    if call.r#type() != executor::call::Type::Subscribe {
        return match submit(&handle, Input::ExecutorCall { req, call }, None).await {
            Ok(()) => Ok(accepted()),
            Err(e) => Err(refusal(e)),
        };
    }
    let response_format = response_format(&headers)?;
    let conn = handle.next_id();
    let (tx, rx) = mpsc::unbounded_channel();
    // The body exists before the dispatcher knows the stream, so that whatever happens to this
    // request from here on (refusal, client gone), dropping it tells the dispatcher.
    let body =
        EventBody::new(rx, handle.tx.clone(), Command::Event(Input::ExecutorClosed { conn }));
    let subscribe = Input::ExecutorSubscribe { req, conn, call };
    match submit(&handle, subscribe, Some((conn, response_format, tx))).await {
        Ok(()) => Ok(stream_response(response_format, None, body)),
        Err(e) => Err(refusal(e)),
    }
}

async fn version() -> Response {
    axum::Json(serde_json::json!({
        "version": operator::MESOS_VERSION,
        "agora_version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}
