//! The scheduler's REST API in Kafka-on-Mesos's shape: `/api/broker/<verb>` and
//! `/api/topic/<verb>`, parameters in the query string or a form body, JSON answers, and a
//! 400 with a plain-text message for bad input.
//!
//! Broker verbs go to the dispatcher over a channel; this module only waits (for `start`,
//! `stop` and the rolling `restart`, until brokers reach the state asked for or `timeout`
//! passes). Topic verbs talk the Kafka protocol to the running brokers' endpoints directly:
//! every tansu broker is its own one-node cluster, so a topic is created on, and deleted from,
//! each selected broker, and updated on each broker that has it. Topic changes are recorded by
//! the dispatcher (saved) first, so brokers that start later get them; `rebalance` and
//! `realign` are refused with the reason. It also serves the binaries agents fetch.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::expr::{BrokerExpr, parse_topics, topic_selected};
use crate::kafka;
use crate::model::{Broker, InputError, Period};
use crate::scheduler::{Request, TopicChange};

#[derive(Clone)]
struct Api {
    dispatcher: mpsc::Sender<Request>,
    artifacts: std::sync::Arc<Artifacts>,
}

/// The files agents download from the API to run a broker (Kafka-on-Mesos serves its jar and
/// Kafka's tarball the same way): this binary as `/executor/agora-kafka`, and tansu as
/// `/tansu/tansu` when the scheduler has it.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub executor: std::path::PathBuf,
    pub tansu: Option<std::path::PathBuf>,
}

pub fn router(dispatcher: mpsc::Sender<Request>, artifacts: Artifacts) -> Router {
    Router::new()
        .route("/health", any(|| async { "ok" }))
        .route("/api/broker/{verb}", any(broker))
        .route("/api/topic/{verb}", any(topic))
        .route("/executor/{name}", axum::routing::get(download))
        .route("/tansu/{name}", axum::routing::get(download))
        .with_state(Api { dispatcher, artifacts: std::sync::Arc::new(artifacts) })
}

/// `GET /executor/agora-kafka` or `/tansu/tansu`: the binary, or 404.
async fn download(State(api): State<Api>, uri: axum::http::Uri) -> Response {
    let file = match uri.path() {
        "/executor/agora-kafka" => Some(api.artifacts.executor.clone()),
        "/tansu/tansu" => api.artifacts.tansu.clone(),
        _ => None,
    };
    let Some(file) = file else {
        let known = if api.artifacts.tansu.is_some() {
            "/executor/agora-kafka and /tansu/tansu"
        } else {
            "/executor/agora-kafka"
        };
        return (StatusCode::NOT_FOUND, format!("no such file: this scheduler serves {known}"))
            .into_response();
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], bytes)
            .into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot read {}: {e}", file.display()))
                .into_response()
        }
    }
}

/// Bad input (400) or a failure on our side (500), as plain text.
enum ApiError {
    Input(String),
    Internal(String),
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::Input(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Input(m) => (StatusCode::BAD_REQUEST, m).into_response(),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m).into_response(),
        }
    }
}

type ApiResult = Result<axum::Json<Value>, ApiError>;

/// `a=1&b=x%2Cy` into a map; `+` is a space. Later duplicates win.
pub fn parse_urlencoded(text: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn params(query: Option<String>, body: &Bytes) -> HashMap<String, String> {
    let mut params = parse_urlencoded(&String::from_utf8_lossy(body));
    params.extend(parse_urlencoded(query.as_deref().unwrap_or("")));
    params
}

impl Api {
    async fn list(&self) -> Result<Vec<Broker>, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::List { reply }).await?;
        let value = rx.await.map_err(|_| ApiError::Internal("the scheduler stopped".into()))?;
        let brokers = value["brokers"].as_array().cloned().unwrap_or_default();
        Ok(brokers
            .into_iter()
            .filter_map(|mut b| {
                // The API shows ids as strings; the model keeps numbers.
                let id = b["id"].as_str().and_then(|s| s.parse::<u32>().ok())?;
                b["id"] = json!(id);
                serde_json::from_value(b).ok()
            })
            .collect())
    }

    /// The brokers `ids` as the API shows them.
    async fn rendered(&self, ids: &[u32]) -> Result<Vec<Value>, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::List { reply }).await?;
        let all = rx.await.map_err(|_| ApiError::Internal("the scheduler stopped".into()))?;
        Ok(all["brokers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| {
                b["id"].as_str().and_then(|s| s.parse().ok()).is_some_and(|id| ids.contains(&id))
            })
            .cloned()
            .collect())
    }

    /// A change to the remembered topics, answered once it is saved.
    async fn topics(&self, change: TopicChange) -> Result<Value, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Topics { change, reply }).await?;
        Ok(rx.await.map_err(|_| ApiError::Internal("the scheduler stopped".into()))??)
    }

    async fn send(&self, request: Request) -> Result<(), ApiError> {
        self.dispatcher
            .send(request)
            .await
            .map_err(|_| ApiError::Internal("the scheduler stopped".into()))
    }

    async fn verb(&self, verb: &str, params: HashMap<String, String>) -> Result<Value, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Broker { verb: verb.into(), params, reply }).await?;
        Ok(rx.await.map_err(|_| ApiError::Internal("the scheduler stopped".into()))??)
    }

    /// Waits until every broker in `ids` is running (`running`) or has no task (`!running`).
    async fn wait(&self, ids: &[u32], running: bool, timeout: Duration) -> Result<bool, ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let brokers = self.list().await?;
            let done = ids.iter().all(|id| {
                brokers.iter().find(|b| b.id == *id).is_none_or(|b| match &b.task {
                    Some(t) => running && t.state == "running",
                    None => !running,
                })
            });
            if done {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn timeout_param(params: &HashMap<String, String>, default: &str) -> Result<Duration, ApiError> {
    let text = params.get("timeout").map(String::as_str).unwrap_or(default);
    Ok(Duration::from_millis(Period::parse(text)?.ms()))
}

fn ids_of(value: &Value) -> Vec<u32> {
    value["ids"].as_str().unwrap_or("").split(',').filter_map(|s| s.parse().ok()).collect()
}

async fn broker(
    State(api): State<Api>,
    Path(verb): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = params(query, &body);
    match verb.as_str() {
        "list" => {
            let brokers: std::collections::BTreeMap<u32, Broker> =
                api.list().await?.into_iter().map(|b| (b.id, b)).collect();
            let expr = params.get("broker").filter(|e| !e.is_empty()).map_or("*", String::as_str);
            let ids = BrokerExpr::parse(expr)?.select(&brokers)?;
            Ok(axum::Json(json!({ "brokers": api.rendered(&ids).await? })))
        }
        "add" | "update" | "remove" | "clone" => Ok(axum::Json(api.verb(&verb, params).await?)),
        "start" | "stop" => {
            let timeout = timeout_param(&params, "60s")?;
            let mut result = api.verb(&verb, params).await?;
            let ids = ids_of(&result);
            let done = timeout.is_zero() || api.wait(&ids, verb == "start", timeout).await?;
            result["status"] = json!(match (done, verb.as_str()) {
                (false, _) => "timeout",
                (true, "start") => "started",
                (true, _) => "stopped",
            });
            result["success"] = json!(done);
            Ok(axum::Json(result))
        }
        "restart" => {
            let timeout = timeout_param(&params, "2m")?;
            let expr = params.get("broker").cloned().unwrap_or_default();
            let ids = BrokerExpr::parse(&expr)?
                .select(&api.list().await?.into_iter().map(|b| (b.id, b)).collect())?;
            // One broker at a time, so the others keep serving.
            for id in &ids {
                let one = HashMap::from([("broker".to_string(), id.to_string())]);
                api.verb("stop", one.clone()).await?;
                if !api.wait(&[*id], false, timeout).await? {
                    return Err(ApiError::Input(format!("broker {id} timeout on stop")));
                }
                api.verb("start", one).await?;
                if !api.wait(&[*id], true, timeout).await? {
                    return Err(ApiError::Input(format!("broker {id} timeout on start")));
                }
            }
            let shown = api.rendered(&ids).await?;
            Ok(axum::Json(json!({ "status": "restarted", "brokers": shown })))
        }
        "log" => {
            let id: u32 = params
                .get("broker")
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| ApiError::Input("broker required: one broker id".into()))?;
            let name = params.get("name").cloned().unwrap_or_else(|| "stdout".into());
            let lines: u32 = match params.get("lines") {
                None => 100,
                Some(l) => l
                    .parse()
                    .ok()
                    .filter(|l| *l > 0)
                    .ok_or_else(|| ApiError::Input(format!("invalid lines {l:?}")))?,
            };
            let timeout = timeout_param(&params, "30s")?;
            let (reply, rx) = oneshot::channel();
            api.send(Request::Log { id, name, lines, reply }).await?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(content))) => {
                    Ok(axum::Json(json!({ "status": "ok", "content": content })))
                }
                Ok(Ok(Err(e))) => Err(e.into()),
                _ => Ok(axum::Json(json!({ "status": "timeout" }))),
            }
        }
        other => Err(ApiError::Input(format!("unknown broker command {other:?}"))),
    }
}

/// The endpoints of the running brokers selected by the `broker` parameter (all by default).
async fn endpoints(
    api: &Api,
    params: &HashMap<String, String>,
) -> Result<Vec<(u32, String)>, ApiError> {
    let brokers: std::collections::BTreeMap<u32, Broker> =
        api.list().await?.into_iter().map(|b| (b.id, b)).collect();
    let expr = params.get("broker").filter(|b| !b.is_empty()).map_or("*", String::as_str);
    let ids = BrokerExpr::parse(expr)?.select(&brokers)?;
    let found: Vec<(u32, String)> = ids
        .iter()
        .filter_map(|id| {
            let task = brokers[id].task.as_ref()?;
            (task.state == "running").then(|| task.endpoint.clone().map(|e| (*id, e)))?
        })
        .collect();
    if found.is_empty() {
        return Err(ApiError::Input("no running broker: start brokers first".into()));
    }
    Ok(found)
}

/// Why `topic rebalance` and `topic realign` are refused.
pub const NO_REASSIGNMENT: &str = "is not supported: every tansu broker is its own one-node \
cluster (tansu 0.6.0 has no replication and no partition reassignment), so a topic lives whole \
on each broker it was added to and there are no replicas to move. Add a topic to more brokers \
with `topic add <topic> --broker <expr>`; brokers started later get the framework's topics \
when they run";

async fn topic(
    State(api): State<Api>,
    Path(verb): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = params(query, &body);
    if verb == "rebalance" || verb == "realign" {
        return Err(ApiError::Input(format!("topic {verb} {NO_REASSIGNMENT}")));
    }
    if !["list", "partitions", "add", "delete", "update"].contains(&verb.as_str()) {
        return Err(ApiError::Input(format!("unknown topic command {verb:?}")));
    }
    let internal = |e: kafka::KafkaError| ApiError::Internal(e.to_string());
    let endpoints = endpoints(&api, &params).await?;
    match verb.as_str() {
        "list" | "partitions" => {
            let expr = match (verb.as_str(), params.get("topic")) {
                ("partitions", None) => return Err(ApiError::Input("topic required".into())),
                (_, Some(t)) if !t.is_empty() => parse_topics(t)?,
                _ => vec!["*".to_string()],
            };
            let remembered = api.topics(TopicChange::List).await?;
            // Topic name -> (partitions of the first broker that has it, brokers that have it).
            let mut topics: std::collections::BTreeMap<String, (Value, Vec<String>)> =
                Default::default();
            for (id, endpoint) in &endpoints {
                for t in kafka::metadata(endpoint).await.map_err(internal)? {
                    if !topic_selected(&expr, &t.name) {
                        continue;
                    }
                    let partitions: serde_json::Map<String, Value> = t
                        .partitions
                        .iter()
                        .map(|(p, replicas)| {
                            let r: Vec<String> = replicas.iter().map(i32::to_string).collect();
                            (p.to_string(), json!(r.join(", ")))
                        })
                        .collect();
                    let entry =
                        topics.entry(t.name).or_insert((Value::Object(partitions), Vec::new()));
                    entry.1.push(id.to_string());
                }
            }
            let list: Vec<Value> = topics
                .into_iter()
                .map(|(name, (partitions, brokers))| {
                    // The options the framework set on it, as Kafka-on-Mesos shows them.
                    let options = remembered["topics"][&name]["options"].clone();
                    let options = if options.is_object() { options } else { json!({}) };
                    json!({ "name": name, "partitions": partitions, "options": options, "brokers": brokers.join(",") })
                })
                .collect();
            Ok(axum::Json(json!({ "topics": list })))
        }
        "add" => {
            let names = parse_topics(params.get("topic").map_or("", String::as_str))?;
            if names.iter().any(|n| n.contains('*')) {
                return Err(ApiError::Input("topic add needs plain names, not patterns".into()));
            }
            let partitions: i32 = match params.get("partitions") {
                None => 1,
                Some(p) => p.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                    ApiError::Input(format!("invalid partitions {p:?}: must be a positive integer"))
                })?,
            };
            if params.get("replicas").is_some_and(|r| r != "1") {
                return Err(ApiError::Input(
                    "replicas must be 1: every tansu broker is its own one-node cluster".into(),
                ));
            }
            let options =
                crate::model::parse_map(params.get("options").map_or("", String::as_str))?;
            // Remembered (and saved) first, so that a broker that starts meanwhile gets it too.
            let broker = params.get("broker").filter(|b| !b.is_empty()).map_or("*", String::as_str);
            api.topics(TopicChange::Add {
                names: names.clone(),
                partitions,
                options: options.clone(),
                broker: broker.to_string(),
            })
            .await?;
            let configs: Vec<(String, String)> = options.into_iter().collect();
            for name in &names {
                for (_, endpoint) in &endpoints {
                    match kafka::create_topic(endpoint, name, partitions, 1, &configs).await {
                        // Adding a topic to more brokers leaves those that have it alone.
                        Ok(())
                        | Err(kafka::KafkaError::Refused {
                            code: kafka::TOPIC_ALREADY_EXISTS,
                            ..
                        }) => {}
                        Err(e) => return Err(internal(e)),
                    }
                }
            }
            let list: Vec<Value> = names
                .iter()
                .map(|n| json!({ "name": n, "partitions": partitions, "brokers": endpoints.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>().join(",") }))
                .collect();
            Ok(axum::Json(json!({ "topics": list })))
        }
        "delete" => {
            let expr = parse_topics(params.get("topic").map_or("", String::as_str))?;
            let mut deleted = std::collections::BTreeSet::new();
            // Forgotten first, so that no broker starting meanwhile gets it back.
            let forgotten = api.topics(TopicChange::Delete { expr: expr.clone() }).await?;
            deleted.extend(names_of(&forgotten));
            for (_, endpoint) in &endpoints {
                for t in kafka::metadata(endpoint).await.map_err(internal)? {
                    if topic_selected(&expr, &t.name) {
                        kafka::delete_topic(endpoint, &t.name).await.map_err(internal)?;
                        deleted.insert(t.name);
                    }
                }
            }
            if deleted.is_empty() {
                return Err(ApiError::Input(format!("no topic matches {}", expr.join(","))));
            }
            let list: Vec<Value> = deleted.into_iter().map(|n| json!({ "name": n })).collect();
            Ok(axum::Json(json!({ "topics": list })))
        }
        _ => {
            let expr = parse_topics(params.get("topic").map_or("", String::as_str))?;
            let options =
                crate::model::parse_map(params.get("options").map_or("", String::as_str))?;
            if options.is_empty() {
                return Err(ApiError::Input("options required (k=v,...; k= removes k)".into()));
            }
            let mut updated = std::collections::BTreeSet::new();
            let remembered = api
                .topics(TopicChange::Update { expr: expr.clone(), options: options.clone() })
                .await?;
            updated.extend(names_of(&remembered));
            // An empty value removes the option, as Kafka-on-Mesos's "" unsets.
            let configs: Vec<(String, Option<String>)> =
                options.into_iter().map(|(k, v)| (k, (!v.is_empty()).then_some(v))).collect();
            for (_, endpoint) in &endpoints {
                for t in kafka::metadata(endpoint).await.map_err(internal)? {
                    if topic_selected(&expr, &t.name) {
                        kafka::alter_topic_configs(endpoint, &t.name, &configs)
                            .await
                            .map_err(internal)?;
                        updated.insert(t.name);
                    }
                }
            }
            if updated.is_empty() {
                return Err(ApiError::Input(format!("no topic matches {}", expr.join(","))));
            }
            let list: Vec<Value> = updated.into_iter().map(|n| json!({ "name": n })).collect();
            Ok(axum::Json(json!({ "topics": list })))
        }
    }
}

fn names_of(answer: &Value) -> Vec<String> {
    answer["names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_parameters_decode() {
        let p = parse_urlencoded("broker=0..2&options=a%3D1%2Cb%3D2&name=x+y&bad=%zz&trunc=%4");
        assert_eq!(p["broker"], "0..2");
        assert_eq!(p["options"], "a=1,b=2");
        assert_eq!(p["name"], "x y");
        assert_eq!(p["bad"], "%zz");
        assert_eq!(p["trunc"], "%4");
    }
}
