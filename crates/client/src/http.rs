//! One HTTP call or one RecordIO subscription against a Mesos-style `POST` endpoint, in JSON or
//! protobuf.
//!
//! A subscription is the 200 response of a streaming call, read record by record with the
//! incremental decoder of `agora-proto`; plain calls expect a 2xx. Non-2xx answers come back as
//! `ClientError::Status` with the server's message, so callers can show it.

use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use agora_proto::codec::{DecodeError, Format};
use agora_proto::recordio;
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// The largest record a client accepts (Mesos has no limit; 64 MiB keeps a bad peer harmless).
const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("cannot decode a message from {url}: {source}")]
    Decode { url: String, source: DecodeError },
    #[error("malformed RecordIO stream from {url}: {source}")]
    RecordIo { url: String, source: recordio::RecordIoError },
}

/// How long connecting may take before a call or subscription fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a plain call may take in all; a hung peer must not stall its caller for good.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the shared HTTP client; one per process is enough.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("a client without TLS or proxies always builds")
}

/// Sends one call and expects a 2xx answer.
pub async fn call<C: prost::Message + prost::Name>(
    client: &reqwest::Client,
    url: &str,
    format: Format,
    stream_id: Option<&str>,
    message: &C,
) -> Result<Bytes, ClientError> {
    let mut request = client
        .post(url)
        .timeout(CALL_TIMEOUT)
        .header("Content-Type", format.media_type())
        .header("Accept", format.media_type())
        .body(format.encode(message));
    if let Some(id) = stream_id {
        request = request.header("Mesos-Stream-Id", id);
    }
    let response = request
        .send()
        .await
        .map_err(|source| ClientError::Http { url: url.to_string(), source })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|source| ClientError::Http { url: url.to_string(), source })?;
    if !status.is_success() {
        return Err(ClientError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(body)
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open subscription: the events of a streaming call's 200 response.
pub struct Subscription<E> {
    url: String,
    /// The `Mesos-Stream-Id` header of the response, if the server sent one.
    pub stream_id: Option<String>,
    body: ByteStream,
    decoder: recordio::Decoder,
    format: Format,
    _event: PhantomData<fn() -> E>,
}

impl<E: prost::Message + prost::Name + Default> Subscription<E> {
    /// Opens a subscription with a streaming call.
    pub async fn open<C: prost::Message + prost::Name>(
        client: &reqwest::Client,
        url: &str,
        format: Format,
        message: &C,
    ) -> Result<Self, ClientError> {
        let response = client
            .post(url)
            .header("Content-Type", format.media_type())
            .header("Accept", format.media_type())
            .body(format.encode(message))
            .send()
            .await
            .map_err(|source| ClientError::Http { url: url.to_string(), source })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        let stream_id = response
            .headers()
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Self {
            url: url.to_string(),
            stream_id,
            body: Box::pin(response.bytes_stream()),
            decoder: recordio::Decoder::new(MAX_RECORD),
            format,
            _event: PhantomData,
        })
    }

    /// The next event, or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<E>, ClientError> {
        loop {
            match self.decoder.next_record() {
                Ok(Some(record)) => {
                    return self
                        .format
                        .decode(&record)
                        .map(Some)
                        .map_err(|source| ClientError::Decode { url: self.url.clone(), source });
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::RecordIo { url: self.url.clone(), source });
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.decoder.feed(&chunk),
                Some(Err(source)) => {
                    return Err(ClientError::Http { url: self.url.clone(), source });
                }
                None => return Ok(None),
            }
        }
    }
}
