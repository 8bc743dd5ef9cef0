//! The agent's HTTP surface: the executor API `POST /api/v1/executor` (reference §3.1), the
//! files API `GET /files/{browse,read,download,debug}` (also under `.json`, §4.4),
//! `GET /version` and `GET /health`, and routes the operator API (`operator.rs`) and the
//! legacy state, flags, statistics and metrics endpoints (`legacy.rs`), each also under
//! `/slave(1)`.
//!
//! Handlers check the transport-level rules (content type, body, `Accept`) and map the core's
//! refusals to status codes in `refusal`; the executor API goes through the dispatcher, the
//! files API straight to `files.rs` on a blocking thread (it only reads the disk).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use agora_core::agent::{CallError, Input};
use agora_http::{
    EventBody, Refusal, accepted, decode_call, refuse, request_format, response_format,
    stream_response,
};
use agora_proto::executor;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::dispatcher::{Command, Handle, submit};
use crate::files::{self, FilesError};
use crate::legacy;
use crate::operator::{self, LoggingLevel};

/// What every handler may use: the dispatcher, the work directory (for the files API), the
/// agent's flags as Mesos names and prints them, its logging level and its address.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) handle: Handle,
    pub(crate) work_dir: Arc<PathBuf>,
    pub(crate) flags: Arc<BTreeMap<String, String>>,
    pub(crate) logging: Arc<LoggingLevel>,
    /// `ip:port` the agent serves on, for `/state`'s `pid`.
    pub(crate) addr: Arc<String>,
}

pub(crate) fn router(
    handle: Handle,
    work_dir: PathBuf,
    flags: BTreeMap<String, String>,
    addr: String,
) -> Router {
    let state = AppState {
        handle,
        work_dir: Arc::new(work_dir),
        flags: Arc::new(flags),
        logging: Arc::default(),
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
        .route("/files/browse", get(files_browse))
        .route("/files/browse.json", get(files_browse))
        .route("/files/read", get(files_read))
        .route("/files/read.json", get(files_read))
        .route("/files/download", get(files_download))
        .route("/files/download.json", get(files_download))
        .route("/files/debug", get(files_debug))
        .route("/files/debug.json", get(files_debug))
        .route("/version", get(version))
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

/// The `path` query parameter every files endpoint but debug needs.
fn path_param(query: &HashMap<String, String>) -> Result<String, Refusal> {
    query
        .get("path")
        .cloned()
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "Expecting 'path' query parameter"))
}

/// Runs a files operation off the async threads and maps its refusals to Mesos's codes.
pub(crate) async fn blocking_files<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(FilesError::BadRequest(m))) => Err(refuse(StatusCode::BAD_REQUEST, m)),
        Ok(Err(FilesError::NotFound(m))) => Err(refuse(StatusCode::NOT_FOUND, m)),
        Err(e) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("files API failed: {e}"))),
    }
}

async fn files_browse(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let path = path_param(&query)?;
    let work_dir = state.work_dir.clone();
    let infos = blocking_files(move || files::browse(&work_dir, &path)).await?;
    let entries: Vec<serde_json::Value> = infos.iter().map(files::FileInfo::to_json).collect();
    Ok(axum::Json(entries).into_response())
}

async fn files_read(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let path = path_param(&query)?;
    let number = |key: &str| -> Result<Option<i64>, Refusal> {
        match query.get(key) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to parse {key}: '{text}' is not a number"),
                )
            }),
        }
    };
    let offset = number("offset")?;
    let length = number("length")?;
    let work_dir = state.work_dir.clone();
    let read = blocking_files(move || files::read(&work_dir, &path, offset, length)).await?;
    Ok(axum::Json(serde_json::json!({ "data": read.data, "offset": read.offset })).into_response())
}

/// The file as an attachment, streamed in chunks so that a large file costs little memory.
async fn files_download(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let path = path_param(&query)?;
    let work_dir = state.work_dir.clone();
    let requested = path.clone();
    let (real, name) = blocking_files(move || files::download(&work_dir, &path)).await?;
    let file = tokio::fs::File::open(&real).await.map_err(|e| {
        refuse(StatusCode::NOT_FOUND, format!("Failed to open file {requested}: {e}"))
    })?;
    // The stream ends after an error, so a failing disk cannot keep it spinning.
    let chunks = futures::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buffer = vec![0; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buffer)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    // Quotes would end the header's quoted string early and control characters are not
    // allowed in a header at all; a task chooses its file names.
    let quoted: String = name
        .chars()
        .map(|c| if c == '"' || c == '\\' || c.is_control() { '_' } else { c })
        .collect();
    let headers = [
        (header::CONTENT_TYPE, files::content_type(&name).to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{quoted}\"")),
    ];
    Ok((headers, Body::from_stream(chunks)).into_response())
}

/// The virtual path table: attached path → sandbox directory.
async fn files_debug(State(state): State<AppState>) -> Result<Response, Refusal> {
    let work_dir = state.work_dir.clone();
    let table = blocking_files(move || Ok(files::attachments(&work_dir))).await?;
    let table: serde_json::Map<String, serde_json::Value> = table
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v.to_string_lossy().into_owned())))
        .collect();
    Ok(axum::Json(table).into_response())
}

async fn version() -> Response {
    axum::Json(serde_json::json!({
        "version": operator::MESOS_VERSION,
        "agora_version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}
