//! HTTP plumbing shared by the master and agent servers for Mesos-style `POST` APIs: reading a
//! request's body format, the refusals Mesos answers before a call is even looked at, encoding
//! events as RecordIO records, and streaming response bodies.
//!
//! It also runs a server (`Server`) with the shutdown both daemons need, holds the handle to a
//! dispatcher task (`Dispatch`) and the streams it writes to (`Streams`), and keeps the clock
//! (`Clock`) both dispatchers feed their state machines, renders metrics as Prometheus
//! text (`prometheus`), answers JSON with JSONP when asked (`jsonp`), serves the files API
//! over a daemon's attachments (`files`) and changes the log filter at run time (`logging`). It knows nothing of schedulers, agents
//! or executors; each server's `http.rs` decides what a call means.

mod clock;
mod dispatch;
pub mod files;
pub mod logging;
pub mod prometheus;
mod server;
mod stream;
mod streams;

use agora_proto::Format;
use agora_proto::recordio;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

pub use clock::Clock;
pub use dispatch::Dispatch;
pub use logging::Logging;
pub use server::{Server, bind};
pub use stream::EventBody;
pub use streams::Streams;

/// The largest request body the servers read. Mesos sets no limit; axum's default of 2 MB
/// would refuse a large ACCEPT with a 413 no Mesos client expects.
pub const MAX_BODY: usize = 64 << 20;

/// The header that ties calls to a subscription stream.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// A request refused with the status code Mesos uses and a plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let content_type = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        (self.status, content_type, self.message).into_response()
    }
}

/// A refusal; handlers return it with `?` or turn it into a response.
pub fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal { status, message: message.into() }
}

/// The body format named by `Content-Type`: 400 when it is missing, 415 when unsupported.
pub fn request_format(headers: &HeaderMap) -> Result<Format, Refusal> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "Expecting 'Content-Type' to be present"));
    };
    value.to_str().ok().and_then(Format::from_content_type).ok_or_else(|| {
        refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json or application/x-protobuf",
        )
    })
}

/// The response format a streaming call asked for with `Accept`: 406 when neither is acceptable.
pub fn response_format(headers: &HeaderMap) -> Result<Format, Refusal> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    Format::negotiate_accept(accept).ok_or_else(|| {
        refuse(
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json or application/x-protobuf",
        )
    })
}

/// The `Mesos-Stream-Id` of a request, if it has a readable one.
pub fn stream_id(headers: &HeaderMap) -> Option<String> {
    headers.get(STREAM_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Decodes a call body, answering 400 with the decoder's message when it does not parse.
pub fn decode_call<M: prost::Message + prost::Name + Default>(
    format: Format,
    body: &[u8],
) -> Result<M, Refusal> {
    format.decode(body).map_err(|e| {
        refuse(StatusCode::BAD_REQUEST, format!("Failed to parse body into {}: {e}", M::NAME))
    })
}

/// One event as a RecordIO record in the stream's format.
pub fn record<M: prost::Message + prost::Name>(format: Format, event: &M) -> Bytes {
    Bytes::from(recordio::encode(&format.encode(event)))
}

/// The 200 response of a streaming call.
pub fn stream_response<C: Send + Unpin + 'static>(
    format: Format,
    stream_id: Option<&str>,
    body: EventBody<C>,
) -> Response {
    let mut response = axum::body::Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    if let Some(id) = stream_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert(STREAM_ID_HEADER, id);
    }
    response
}

/// The query parameter that asks a JSON endpoint for JSONP (reference §4.4).
pub const JSONP: &str = "jsonp";

/// Middleware for a router of JSON endpoints: when the query names a `jsonp` callback, a 200
/// `application/json` answer becomes `callback(<json>);` as `text/javascript`, which is what
/// libprocess answers on every JSON endpoint. Everything else passes through untouched, so the
/// handlers need not know about it.
pub async fn jsonp(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let callback = axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
        request.uri(),
    )
    .ok()
    .and_then(|q| q.0.get(JSONP).cloned());
    let response = next.run(request).await;
    let Some(callback) = callback else {
        return response;
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if response.status() != StatusCode::OK || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let json = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(json) => json,
        Err(e) => {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("Cannot read body: {e}"))
                .into_response();
        }
    };
    let mut wrapped = Vec::with_capacity(callback.len() + json.len() + 3);
    wrapped.extend_from_slice(callback.as_bytes());
    wrapped.push(b'(');
    wrapped.extend_from_slice(&json);
    wrapped.extend_from_slice(b");");
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(wrapped))
}

/// 202 Accepted with an empty body, the answer to every successful non-streaming call.
pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}
