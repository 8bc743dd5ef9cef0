//! A client for the operator API: one `mesos.v1.master.Call` to the master's `POST /api/v1`
//! and its `Response`, or the operator `SUBSCRIBE` stream of `mesos.v1.master.Event`s; and
//! the two read calls of an agent's files API (`/files/browse`, `/files/read`) that operators
//! use to look into sandboxes.
//!
//! It only speaks the protocol: which calls to make, how to present their answers and how long
//! to wait belong to the caller (the `agora` CLI). Errors keep the URL that was tried and the
//! status and body of a refusal, so a caller can tell the operator what went wrong.

use agora_proto::codec::Format;
use agora_proto::master::{Call, Event, Response, call};

use crate::http::{self, ClientError, Subscription};

/// The master's operator endpoint at one address.
#[derive(Clone)]
pub struct Operator {
    client: reqwest::Client,
    url: String,
    format: Format,
}

impl Operator {
    /// An operator client for the master at `master` (`host:port`, or a URL with a scheme).
    pub fn new(master: &str, format: Format) -> Operator {
        let base = if master.contains("://") {
            master.trim_end_matches('/').to_string()
        } else {
            format!("http://{master}")
        };
        Operator { client: http::client(), url: format!("{base}/api/v1"), format }
    }

    /// The URL calls go to, for messages that say what was tried.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one call. Queries come back as their `Response`; mutating calls answer 200 or 202
    /// with an empty body, which comes back as `None`.
    pub async fn call(&self, message: &Call) -> Result<Option<Response>, ClientError> {
        let body = http::call(&self.client, &self.url, self.format, None, message).await?;
        if body.is_empty() {
            return Ok(None);
        }
        self.format
            .decode(&body)
            .map(Some)
            .map_err(|source| ClientError::Decode { url: self.url.clone(), source })
    }

    /// Kills one task through Agora's operator extension (`POST /api/agora/v1/kill_task`), as
    /// its framework's KILL would; `framework_id` is needed only when several frameworks use
    /// the task id.
    pub async fn kill_task(
        &self,
        task_id: &str,
        framework_id: Option<&str>,
    ) -> Result<(), ClientError> {
        let url = self.url.replace("/api/v1", "/api/agora/v1/kill_task");
        let message = agora_proto::internal::KillTaskCall {
            task_id: task_id.to_string(),
            framework_id: framework_id.map(str::to_string),
        };
        http::call(&self.client, &url, self.format, None, &message).await.map(|_| ())
    }

    /// Sends a query that carries nothing but its type (GET_STATE, GET_AGENTS, ...) and
    /// expects its `Response`.
    pub async fn query(&self, kind: call::Type) -> Result<Response, ClientError> {
        let mut message = Call::default();
        message.set_type(kind);
        self.call(&message).await?.ok_or_else(|| ClientError::Status {
            url: self.url.clone(),
            status: 200,
            body: format!("an empty answer to {}", kind.as_str_name()),
        })
    }

    /// Opens the operator event stream; its first event is SUBSCRIBED with the master's state.
    pub async fn subscribe(&self) -> Result<Subscription<Event>, ClientError> {
        let mut message = Call::default();
        message.set_type(call::Type::Subscribe);
        Subscription::open(&self.client, &self.url, self.format, &message).await
    }
}

/// One entry of an agent's `/files/browse` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// As `ls -l` shows it, e.g. `-rw-r--r--`.
    pub mode: String,
    pub nlink: i64,
    pub uid: String,
    pub gid: String,
}

/// The files API of one agent (`http://host:port`).
#[derive(Clone)]
pub struct AgentFiles {
    client: reqwest::Client,
    base: String,
}

impl AgentFiles {
    /// The files API of the agent at `address` (`host:port`).
    pub fn new(address: &str) -> AgentFiles {
        AgentFiles { client: http::client(), base: format!("http://{address}") }
    }

    /// The agent's base URL, for messages that say what was tried.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, endpoint: &str, query: &str) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/files/{endpoint}?{query}", self.base);
        let response = self
            .client
            .get(&url)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .map_err(|source| ClientError::Http { url: url.clone(), source })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| ClientError::Http { url: url.clone(), source })?;
        if !status.is_success() {
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Status {
            url,
            status: status.as_u16(),
            body: format!("not the JSON the files API answers: {e}"),
        })
    }

    /// Lists a directory (`/files/browse?path=`), sorted by path.
    pub async fn browse(&self, path: &str) -> Result<Vec<FileEntry>, ClientError> {
        let value = self.get("browse", &format!("path={}", escape(path))).await?;
        let mut entries: Vec<FileEntry> = value
            .as_array()
            .map(|items| items.iter().map(file_entry).collect())
            .unwrap_or_default();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Reads from `offset` to the end of the file or the agent's per-read cap; `None` as the
    /// offset asks only for the size. Returns the offset the data starts at and the data.
    pub async fn read(
        &self,
        path: &str,
        offset: Option<u64>,
    ) -> Result<(u64, String), ClientError> {
        let offset = offset.map_or_else(|| "-1".to_string(), |o| o.to_string());
        let value = self.get("read", &format!("path={}&offset={offset}", escape(path))).await?;
        let at = value.get("offset").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let data = value.get("data").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        Ok((at, data))
    }
}

fn file_entry(item: &serde_json::Value) -> FileEntry {
    let text =
        |key: &str| item.get(key).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
    let number = |key: &str| item.get(key).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    FileEntry {
        path: text("path"),
        size: number("size") as u64,
        mtime: number("mtime") as i64,
        mode: text("mode"),
        nlink: number("nlink") as i64,
        uid: text("uid"),
        gid: text("gid"),
    }
}

/// Percent-encodes a query value, keeping `/` and the unreserved characters readable.
pub fn escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_built_from_an_address_or_a_url() {
        assert_eq!(Operator::new("m:5050", Format::Json).url(), "http://m:5050/api/v1");
        assert_eq!(Operator::new("http://m:1/", Format::Json).url(), "http://m:1/api/v1");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(escape("/a b/c&d"), "/a%20b/c%26d");
    }

    #[test]
    fn browse_entries_take_mesos_fields_and_tolerate_missing_ones() {
        let item = serde_json::json!({"path": "/x/stdout", "size": 12, "mtime": 7.0,
            "mode": "-rw-r--r--", "nlink": 1, "uid": "root", "gid": "root"});
        let entry = file_entry(&item);
        assert_eq!((entry.path.as_str(), entry.size, entry.mtime), ("/x/stdout", 12, 7));
        assert_eq!(file_entry(&serde_json::json!({})).path, "");
    }
}
