//! A minimal Kafka protocol client for topic administration against the brokers the framework
//! runs: Metadata v4, CreateTopics v2, DeleteTopics v1 and IncrementalAlterConfigs v0, the
//! non-flexible versions every broker from Kafka 2.3 on (and tansu) accepts.
//!
//! One request per connection keeps it simple; topic administration is rare. Responses are
//! decoded with bounds checks, so a broken or hostile peer yields an error, never a panic. It
//! does not produce or consume records: clients do that against the endpoints the framework
//! reports.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot reach broker {endpoint}: {source}")]
    Io { endpoint: String, source: std::io::Error },
    #[error("broker {endpoint} did not answer within {0:?}", IO_TIMEOUT)]
    Timeout { endpoint: String },
    #[error("malformed response from broker {endpoint}: {what}")]
    Malformed { endpoint: String, what: String },
    #[error("broker {endpoint}: {operation} {topic}: {message} (error code {code})")]
    Refused { endpoint: String, operation: &'static str, topic: String, code: i16, message: String },
}

/// Kafka's error code for a topic that exists already.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;

const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Responses larger than this are refused (metadata of thousands of topics is well below).
const MAX_RESPONSE: usize = 64 << 20;
const CLIENT_ID: &str = "agora-kafka";

/// A topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    /// Partition index and its replicas' node ids.
    pub partitions: Vec<(i32, Vec<i32>)>,
}

struct Writer(Vec<u8>);

impl Writer {
    fn header(api_key: i16, version: i16) -> Writer {
        let mut w = Writer(Vec::new());
        w.i16(api_key);
        w.i16(version);
        w.i32(1);
        w.string(CLIENT_ID);
        w
    }
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &str) {
        // Topic names and config values are short; the caller validated them.
        self.i16(s.len().min(i16::MAX as usize) as i16);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(v as u8);
    }
    fn i8(&mut self, v: i8) {
        self.0.push(v as u8);
    }
    fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    endpoint: &'a str,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], KafkaError> {
        if self.data.len() < n {
            return Err(KafkaError::Malformed {
                endpoint: self.endpoint.to_string(),
                what: "truncated response".into(),
            });
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, KafkaError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }
    fn i32(&mut self) -> Result<i32, KafkaError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }
    fn bool(&mut self) -> Result<bool, KafkaError> {
        Ok(self.take(1)?[0] != 0)
    }
    /// A nullable string; null reads as empty.
    fn string(&mut self) -> Result<String, KafkaError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(String::new());
        }
        Ok(String::from_utf8_lossy(self.take(len as usize)?).into_owned())
    }
    /// An array length; null (-1) reads as empty, absurd lengths are errors.
    fn len(&mut self) -> Result<usize, KafkaError> {
        let n = self.i32()?;
        if n > self.data.len() as i32 {
            return Err(KafkaError::Malformed {
                endpoint: self.endpoint.to_string(),
                what: format!("array of {n} elements in {} bytes", self.data.len()),
            });
        }
        Ok(n.max(0) as usize)
    }
}

/// Sends one request and returns the response body after its correlation id.
async fn exchange(endpoint: &str, request: Writer) -> Result<Vec<u8>, KafkaError> {
    let io = |source| KafkaError::Io { endpoint: endpoint.to_string(), source };
    let work = async {
        let mut stream = TcpStream::connect(endpoint).await.map_err(io)?;
        let mut frame = (request.0.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&request.0);
        stream.write_all(&frame).await.map_err(io)?;
        let size = stream.read_i32().await.map_err(io)?;
        if size < 4 || size as usize > MAX_RESPONSE {
            return Err(KafkaError::Malformed {
                endpoint: endpoint.to_string(),
                what: format!("response size {size}"),
            });
        }
        let mut body = vec![0; size as usize];
        stream.read_exact(&mut body).await.map_err(io)?;
        // The correlation id: one request per connection, so it needs no matching.
        Ok(body.split_off(4))
    };
    tokio::time::timeout(IO_TIMEOUT, work)
        .await
        .map_err(|_| KafkaError::Timeout { endpoint: endpoint.to_string() })?
}

/// A per-topic result: `Ok` for error code 0, otherwise the broker's refusal, with its
/// message or, when it sent none, the code's name.
fn refused(
    endpoint: &str,
    operation: &'static str,
    topic: String,
    code: i16,
    message: String,
) -> Result<(), KafkaError> {
    if code == 0 {
        return Ok(());
    }
    let message = if message.is_empty() { error_name(code).to_string() } else { message };
    Err(KafkaError::Refused { endpoint: endpoint.to_string(), operation, topic, code, message })
}

/// Kafka's error codes that topic administration meets, by name.
fn error_name(code: i16) -> &'static str {
    match code {
        3 => "unknown topic or partition",
        17 => "invalid topic name",
        36 => "topic already exists",
        37 => "invalid number of partitions",
        38 => "invalid replication factor",
        40 => "invalid config",
        41 => "not the controller",
        _ => "refused",
    }
}

/// Every topic the broker knows.
pub async fn metadata(endpoint: &str) -> Result<Vec<TopicMeta>, KafkaError> {
    let mut w = Writer::header(3, 4);
    w.i32(-1); // all topics
    w.bool(false); // never create topics as a side effect
    let body = exchange(endpoint, w).await?;
    let mut r = Reader { data: &body, endpoint };
    r.i32()?; // throttle time
    for _ in 0..r.len()? {
        r.i32()?; // node id
        r.string()?; // host
        r.i32()?; // port
        r.string()?; // rack
    }
    r.string()?; // cluster id
    r.i32()?; // controller id
    let mut topics = Vec::new();
    for _ in 0..r.len()? {
        let _error = r.i16()?;
        let name = r.string()?;
        r.bool()?; // internal
        let mut partitions = Vec::new();
        for _ in 0..r.len()? {
            r.i16()?;
            let index = r.i32()?;
            r.i32()?; // leader
            let replicas = (0..r.len()?).map(|_| r.i32()).collect::<Result<Vec<_>, _>>()?;
            for _ in 0..r.len()? {
                r.i32()?; // in-sync replicas
            }
            partitions.push((index, replicas));
        }
        partitions.sort();
        topics.push(TopicMeta { name, partitions });
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

/// CreateTopics for one topic.
pub async fn create_topic(
    endpoint: &str,
    name: &str,
    partitions: i32,
    replication: i16,
    configs: &[(String, String)],
) -> Result<(), KafkaError> {
    let mut w = Writer::header(19, 2);
    w.i32(1);
    w.string(name);
    w.i32(partitions);
    w.i16(replication);
    w.i32(0); // no manual assignment
    w.i32(configs.len() as i32);
    for (k, v) in configs {
        w.string(k);
        w.string(v);
    }
    w.i32(IO_TIMEOUT.as_millis() as i32);
    w.bool(false); // validate only
    let body = exchange(endpoint, w).await?;
    let mut r = Reader { data: &body, endpoint };
    r.i32()?; // throttle time
    for _ in 0..r.len()? {
        let topic = r.string()?;
        let code = r.i16()?;
        let message = r.string()?;
        refused(endpoint, "create", topic, code, message)?;
    }
    Ok(())
}

/// DeleteTopics for one topic.
pub async fn delete_topic(endpoint: &str, name: &str) -> Result<(), KafkaError> {
    let mut w = Writer::header(20, 1);
    w.i32(1);
    w.string(name);
    w.i32(IO_TIMEOUT.as_millis() as i32);
    let body = exchange(endpoint, w).await?;
    let mut r = Reader { data: &body, endpoint };
    r.i32()?; // throttle time
    for _ in 0..r.len()? {
        let topic = r.string()?;
        let code = r.i16()?;
        refused(endpoint, "delete", topic, code, String::new())?;
    }
    Ok(())
}

/// IncrementalAlterConfigs for one topic: `Some(value)` sets a config, `None` removes it.
pub async fn alter_topic_configs(
    endpoint: &str,
    name: &str,
    configs: &[(String, Option<String>)],
) -> Result<(), KafkaError> {
    const TOPIC: i8 = 2;
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let mut w = Writer::header(44, 0);
    w.i32(1);
    w.i8(TOPIC);
    w.string(name);
    w.i32(configs.len() as i32);
    for (key, value) in configs {
        w.string(key);
        w.i8(if value.is_some() { SET } else { DELETE });
        w.nullable_string(value.as_deref());
    }
    w.bool(false); // validate only
    let body = exchange(endpoint, w).await?;
    let mut r = Reader { data: &body, endpoint };
    r.i32()?; // throttle time
    for _ in 0..r.len()? {
        let code = r.i16()?;
        let message = r.string()?;
        r.take(1)?; // resource type
        let topic = r.string()?;
        refused(endpoint, "update", topic, code, message)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_refuse_truncated_and_absurd_input() {
        let data = [0u8, 5, b'a'];
        let mut r = Reader { data: &data, endpoint: "x" };
        assert!(r.string().is_err());
        let data = [0x7f, 0xff, 0xff, 0xff];
        let mut r = Reader { data: &data, endpoint: "x" };
        assert!(r.len().is_err());
        let data = [0xff, 0xff];
        let mut r = Reader { data: &data, endpoint: "x" };
        assert_eq!(r.string().expect("null string"), "");
    }

    #[test]
    fn requests_carry_the_header() {
        let w = Writer::header(19, 2);
        assert_eq!(&w.0[..8], &[0, 19, 0, 2, 0, 0, 0, 1]);
        assert_eq!(&w.0[8..10], &[0, CLIENT_ID.len() as u8]);
    }
}
