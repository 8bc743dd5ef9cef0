//! The agent's HTTP surface: the executor API `POST /api/v1/executor` (reference §3.1),
//! `GET /files/read`, `GET /version` and `GET /health`.
//!
//! Handlers check the transport-level rules (content type, body, `Accept`) and map the core's
//! refusals to status codes in `refusal`; everything else goes through the dispatcher.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use agora_core::agent::{CallError, Input};
use agora_http::{
    EventBody, Refusal, accepted, decode_call, refuse, request_format, response_format,
    stream_response,
};
use agora_proto::executor;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::dispatcher::{Command, Handle, submit};
use crate::files::{self, FilesError};

#[derive(Clone)]
struct AppState {
    handle: Handle,
    work_dir: Arc<PathBuf>,
}

pub(crate) fn router(handle: Handle, work_dir: PathBuf) -> Router {
    Router::new()
        .route("/api/v1/executor", post(executor_api))
        .route("/files/read", get(files_read))
        .route("/files/read.json", get(files_read))
        .route("/version", get(version))
        .route("/health", get(|| async { StatusCode::OK }))
        .layer(DefaultBodyLimit::max(agora_http::MAX_BODY))
        .with_state(AppState { handle, work_dir: Arc::new(work_dir) })
}

fn refusal(error: CallError) -> Refusal {
    match error {
        CallError::BadRequest(m) => refuse(StatusCode::BAD_REQUEST, m),
        CallError::Forbidden(m) => refuse(StatusCode::FORBIDDEN, m),
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

async fn files_read(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(path) = query.get("path") else {
        return refuse(StatusCode::BAD_REQUEST, "Expecting 'path' query parameter").into_response();
    };
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
    let (offset, length) = match (number("offset"), number("length")) {
        (Ok(o), Ok(l)) => (o, l),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let work_dir = state.work_dir.clone();
    let path = path.clone();
    let result =
        tokio::task::spawn_blocking(move || files::read(&work_dir, &path, offset, length)).await;
    match result {
        Ok(Ok(read)) => axum::Json(serde_json::json!({ "data": read.data, "offset": read.offset }))
            .into_response(),
        Ok(Err(FilesError::BadRequest(m))) => refuse(StatusCode::BAD_REQUEST, m).into_response(),
        Ok(Err(FilesError::NotFound(m))) => refuse(StatusCode::NOT_FOUND, m).into_response(),
        Err(e) => {
            refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("read failed: {e}")).into_response()
        }
    }
}

async fn version() -> Response {
    axum::Json(
        serde_json::json!({ "version": "1.11.0", "agora_version": env!("CARGO_PKG_VERSION") }),
    )
    .into_response()
}
