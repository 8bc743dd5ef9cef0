//! The scheduler's IO shell: one dispatcher task owns the `Core`, the scheduler session and the
//! state storage, and `select!`s over Mesos events and requests from the REST API.
//!
//! It registers with a failover timeout and stores the FrameworkID with the brokers, so that
//! after its own restart it subscribes again as the same framework, reconciles the tasks it
//! knows and keeps running brokers. Every change is saved before it is answered or acted on
//! (persist before you promise). Offers become launches or declines with the core's reasons;
//! status updates go to the core and are acknowledged after the save.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use agora_client::scheduler::SchedulerSession;
use agora_proto::scheduler::{Event, event};
use agora_proto::{Format, v1};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::core::{BrokerParams, Core, Decision, Offer, TaskEvent};
use crate::executor::LaunchConfig;
use crate::model::{InputError, Period};
use crate::storage::Storage;

/// How the scheduler was configured (flags, properties file).
#[derive(Debug, Clone)]
pub struct Config {
    pub master: String,
    pub storage: String,
    /// ZooKeeper for `zk:` storage: `host:port[,host:port][/chroot]`, with or without `zk://`.
    pub zk: Option<String>,
    pub framework_name: String,
    pub framework_role: String,
    pub framework_timeout: Period,
    pub user: String,
    /// The tansu binary the executors run: a path or name on the agents, or `./tansu` when
    /// the agents fetch it from the API (`tansu_uri`).
    pub tansu: String,
    /// Where agents download tansu from the scheduler's API, if it serves it.
    pub tansu_uri: Option<String>,
    /// Where agents download this binary, the executor, from the scheduler's API.
    pub executor_uri: String,
}

/// A request from the REST API to the dispatcher.
pub enum Request {
    /// A broker verb (`add`, `update`, `remove`, `start`, `stop`, `clone`) with its parameters.
    Broker {
        verb: String,
        params: HashMap<String, String>,
        reply: oneshot::Sender<Result<Value, InputError>>,
    },
    /// The current brokers as the API shows them.
    List { reply: oneshot::Sender<Value> },
    /// A change to the topics the framework remembers, saved before the answer.
    Topics { change: TopicChange, reply: oneshot::Sender<Result<Value, InputError>> },
    /// A log tail from a broker's executor; the answer arrives as a framework message.
    Log { id: u32, name: String, lines: u32, reply: oneshot::Sender<Result<String, InputError>> },
}

/// What `topic add|update|delete` changes in the remembered topics.
pub enum TopicChange {
    Add {
        names: Vec<String>,
        partitions: i32,
        options: BTreeMap<String, String>,
        broker: String,
    },
    /// Forget the topics the patterns select; answers `{"names": [...]}`.
    Delete {
        expr: Vec<String>,
    },
    /// Answers `{"names": [...]}` of the remembered topics changed.
    Update {
        expr: Vec<String>,
        options: BTreeMap<String, String>,
    },
    /// Answers `{"topics": {name: spec}}`.
    List,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// How long to wait for the master after losing the stream.
const MASTER_PATIENCE: Duration = Duration::from_secs(3600);

/// Runs the dispatcher until the master refuses the framework or storage fails.
pub async fn run(config: Config, mut requests: mpsc::Receiver<Request>) -> anyhow::Result<()> {
    let storage = Storage::open(&config.storage, config.zk.as_deref()).await?;
    let mut core = Core::new(storage.load().await?);
    // One role, as Kafka-on-Mesos subscribes: the single-role field keeps offers free of
    // allocation info the framework has no use for.
    #[allow(deprecated)]
    let info = v1::FrameworkInfo {
        user: config.user.clone(),
        name: config.framework_name.clone(),
        id: core.state.framework_id.clone().map(|value| v1::FrameworkId { value }),
        failover_timeout: Some(config.framework_timeout.ms() as f64 / 1000.0),
        checkpoint: Some(true),
        role: Some(config.framework_role.clone()),
        ..Default::default()
    };
    let (mut session, mut events) = subscribe(&config.master, info).await?;
    tracing::info!(framework_id = %session.framework_id.value, "subscribed");
    println!("agora-kafka scheduler subscribed as {}", session.framework_id.value);
    core.state.framework_id = Some(session.framework_id.value.clone());
    storage.save(&core.state).await?;
    let mut shell = Shell { config, storage, core, pending_logs: HashMap::new(), next_request: 0 };
    shell.reconcile(&session).await;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Ok(Some(event)) => shell.event(&session, event).await?,
                Ok(None) | Err(_) => {
                    tracing::warn!("lost the master; subscribing again");
                    let (s, e) = session.resubscribe(MASTER_PATIENCE).await.context("resubscribe")?;
                    (session, events) = (s, e);
                    shell.reconcile(&session).await;
                }
            },
            Some(request) = requests.recv() => shell.request(&session, request).await?,
        }
    }
}

/// Subscribes, waiting for a master that is not up yet (a scheduler started by a supervisor
/// before, or while, the master restarts); a refusal ends it at once.
async fn subscribe(
    master: &str,
    info: v1::FrameworkInfo,
) -> anyhow::Result<(SchedulerSession, agora_client::Subscription<Event>)> {
    use agora_client::scheduler::SubscribeError;
    let deadline = tokio::time::Instant::now() + MASTER_PATIENCE;
    let mut wait = Duration::from_millis(100);
    loop {
        match SchedulerSession::subscribe(master, info.clone(), Format::Json).await {
            Err(e @ (SubscribeError::Client(_) | SubscribeError::Leader(_)))
                if tokio::time::Instant::now() + wait < deadline =>
            {
                tracing::warn!(error = %e, "the master is not reachable yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other.context("subscribe"),
        }
    }
}

struct Shell {
    config: Config,
    storage: Storage,
    core: Core,
    /// Log requests waiting for their executor's answer.
    pending_logs: HashMap<u64, oneshot::Sender<Result<String, InputError>>>,
    next_request: u64,
}

impl Shell {
    async fn reconcile(&self, session: &SchedulerSession) {
        let tasks = self
            .core
            .known_tasks()
            .into_iter()
            .map(|(task, agent)| (v1::TaskId { value: task }, Some(v1::AgentId { value: agent })))
            .collect();
        if let Err(e) = session.reconcile(tasks).await {
            tracing::warn!(error = %e, "RECONCILE failed");
        }
    }

    async fn event(&mut self, session: &SchedulerSession, event: Event) -> anyhow::Result<()> {
        match event.r#type() {
            event::Type::Offers => {
                for offer in event.offers.map(|o| o.offers).unwrap_or_default() {
                    self.offer(session, offer).await?;
                }
            }
            event::Type::Update => {
                let Some(status) = event.update.and_then(|u| u.status) else { return Ok(()) };
                self.update(session, status).await?;
            }
            event::Type::Message => {
                let message = event.message.unwrap_or_default();
                let executor = message.executor_id.map(|e| e.value).unwrap_or_default();
                let data = message.data.unwrap_or_default();
                let text = String::from_utf8_lossy(&data);
                if let Some(json) = text.strip_prefix("metrics,") {
                    match serde_json::from_str(json) {
                        Ok(metrics) => {
                            self.core.metrics_reported(&executor, metrics);
                        }
                        Err(e) => tracing::debug!(%executor, error = %e, "unreadable metrics"),
                    }
                } else if let Some((request, tail)) =
                    text.strip_prefix("log,").and_then(|r| r.split_once(','))
                    && let Some(reply) =
                        request.parse().ok().and_then(|r| self.pending_logs.remove(&r))
                {
                    let _ = reply.send(Ok(tail.to_string()));
                }
            }
            event::Type::Error => {
                bail!("the master reported an error: {:?}", event.error.map(|e| e.message))
            }
            _ => {}
        }
        Ok(())
    }

    async fn offer(&mut self, session: &SchedulerSession, offer: v1::Offer) -> anyhow::Result<()> {
        let view = offer_view(&offer);
        let task_id = format!("{}-{}", self.config.framework_name, uuid::Uuid::new_v4());
        match self.core.offer(&view, now_ms(), &task_id) {
            Decision::Launch { broker, port } => {
                let b = self.core.brokers()[&broker].clone();
                let task_id =
                    format!("{}-{broker}-{}", self.config.framework_name, uuid::Uuid::new_v4());
                // The core named the task before it knew the broker; give it its final id.
                if let Some(task) =
                    self.core.state.brokers.get_mut(&broker).and_then(|b| b.task.as_mut())
                {
                    task.id = task_id.clone();
                    task.executor_id = task_id.clone();
                }
                self.storage.save(&self.core.state).await?;
                let launch = LaunchConfig {
                    id: broker,
                    options: b.effective_options(),
                    bind_address: b.bind_address.clone(),
                    hostname: offer.hostname.clone(),
                    port,
                    cluster_id: format!("{}-{broker}", self.config.framework_name),
                    tansu: self.config.tansu.clone(),
                    volume_path: b.volume.as_deref().and_then(|v| volume_path(&offer, v)),
                };
                let task = v1::TaskInfo {
                    name: format!("{}-{broker}", self.config.framework_name),
                    task_id: v1::TaskId { value: task_id.clone() },
                    agent_id: offer.agent_id.clone(),
                    resources: take_resources(
                        &offer,
                        b.cpus,
                        b.mem as f64,
                        port,
                        b.volume.as_deref(),
                    ),
                    executor: Some(v1::ExecutorInfo {
                        executor_id: v1::ExecutorId { value: task_id.clone() },
                        name: Some(format!("broker-{broker}")),
                        framework_id: Some(session.framework_id.clone()),
                        command: Some(self.executor_command()),
                        ..Default::default()
                    }),
                    data: Some(Bytes::from(serde_json::to_vec(&launch).context("launch config")?)),
                    ..Default::default()
                };
                tracing::info!(broker, %task_id, host = %offer.hostname, port, "launching");
                if let Err(e) = session.launch(vec![offer.id], vec![task], Some(1.0)).await {
                    tracing::warn!(error = %e, "ACCEPT failed; the broker waits for another offer");
                    self.core.task_event(
                        &task_id,
                        TaskEvent::Ended { reason: e.to_string() },
                        now_ms(),
                    );
                    self.storage.save(&self.core.state).await?;
                }
            }
            Decision::Decline { refuse_ms, reason } => {
                tracing::debug!(host = %offer.hostname, %reason, refuse_ms, "declining");
                let _ = session.decline(vec![offer.id], Some(refuse_ms as f64 / 1000.0)).await;
            }
        }
        Ok(())
    }

    async fn update(
        &mut self,
        session: &SchedulerSession,
        status: v1::TaskStatus,
    ) -> anyhow::Result<()> {
        use v1::TaskState as S;
        let event = match status.state() {
            S::TaskStaging | S::TaskStarting => TaskEvent::Starting,
            S::TaskRunning => TaskEvent::Running {
                endpoint: status.data.as_ref().map(|d| String::from_utf8_lossy(d).into_owned()),
            },
            S::TaskKilling => TaskEvent::Starting,
            state => TaskEvent::Ended {
                reason: format!(
                    "{}{}",
                    state.as_str_name(),
                    status.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                ),
            },
        };
        let ended = matches!(event, TaskEvent::Ended { .. });
        let endpoint = match &event {
            TaskEvent::Running { endpoint } => endpoint.clone(),
            _ => None,
        };
        let known = self.core.task_event(&status.task_id.value, event, now_ms());
        self.storage.save(&self.core.state).await?;
        if let Some(endpoint) = endpoint
            && let Some(broker) = self.core.broker_of_task(&status.task_id.value)
        {
            // A broker that starts later, or comes back with an empty store, gets the topics
            // added through the framework. Off the dispatcher: a slow broker must not stall it.
            let topics = self.core.topics_for(broker);
            if !topics.is_empty() {
                tokio::spawn(ensure_topics(broker, endpoint, topics));
            }
        }
        if !known && !ended {
            tracing::warn!(task = %status.task_id.value, "killing a task no broker owns");
            let _ = session.kill(status.task_id.clone()).await;
        }
        if ended && known {
            // A failed broker waits for offers again.
            let _ = session.revive().await;
        }
        if let Err(e) = session.acknowledge(&status).await {
            tracing::warn!(error = %e, "ACKNOWLEDGE failed");
        }
        Ok(())
    }

    async fn request(
        &mut self,
        session: &SchedulerSession,
        request: Request,
    ) -> anyhow::Result<()> {
        match request {
            Request::List { reply } => {
                let _ = reply.send(self.list());
            }
            Request::Broker { verb, params, reply } => {
                let result = self.broker(session, &verb, &params).await;
                if result.is_ok() {
                    self.storage.save(&self.core.state).await?;
                }
                let _ = reply.send(result);
            }
            Request::Topics { change, reply } => {
                let result = self.topics(change);
                if result.is_ok() {
                    self.storage.save(&self.core.state).await?;
                }
                let _ = reply.send(result);
            }
            Request::Log { id, name, lines, reply } => {
                let Some(task) = self.core.brokers().get(&id).map(|b| b.task.clone()) else {
                    let _ = reply.send(Err(InputError(format!("broker {id} not found"))));
                    return Ok(());
                };
                let Some(task) = task else {
                    let _ = reply.send(Err(InputError(format!("broker {id} is not running"))));
                    return Ok(());
                };
                self.next_request += 1;
                let data = format!("log,{},{name},{lines}", self.next_request);
                let sent = session
                    .message(
                        v1::AgentId { value: task.slave_id },
                        v1::ExecutorId { value: task.executor_id },
                        data.into_bytes(),
                    )
                    .await;
                match sent {
                    Ok(()) => {
                        self.pending_logs.insert(self.next_request, reply);
                    }
                    Err(e) => {
                        let _ =
                            reply.send(Err(InputError(format!("cannot reach broker {id}: {e}"))));
                    }
                }
                // Requests whose executor never answered are dropped with their API call.
                self.pending_logs.retain(|_, reply| !reply.is_closed());
            }
        }
        Ok(())
    }

    async fn broker(
        &mut self,
        session: &SchedulerSession,
        verb: &str,
        params: &HashMap<String, String>,
    ) -> Result<Value, InputError> {
        let expr = params.get("broker").map(String::as_str).ok_or_else(|| {
            InputError("broker required (a broker expression, e.g. 0, 0..2 or *)".into())
        })?;
        match verb {
            "add" => {
                let ids = self.core.add(expr, &BrokerParams::from_params(params)?)?;
                Ok(json!({ "brokers": self.render(&ids) }))
            }
            "update" => {
                let ids = self.core.update(expr, &BrokerParams::from_params(params)?)?;
                Ok(json!({ "brokers": self.render(&ids) }))
            }
            "clone" => {
                let source =
                    params.get("source").ok_or_else(|| InputError("source required".into()))?;
                let ids = self.core.clone_broker(expr, source)?;
                Ok(json!({ "brokers": self.render(&ids) }))
            }
            "remove" => {
                let ids = self.core.remove(expr)?;
                Ok(json!({ "ids": join(&ids) }))
            }
            "start" => {
                let ids = self.core.start(expr)?;
                let _ = session.revive().await;
                Ok(json!({ "ids": join(&ids), "brokers": self.render(&ids) }))
            }
            "stop" => {
                let (ids, kill) = self.core.stop(expr)?;
                for task in kill {
                    let _ = session.kill(v1::TaskId { value: task.id }).await;
                }
                Ok(json!({ "ids": join(&ids), "brokers": self.render(&ids) }))
            }
            other => Err(InputError(format!("unknown broker command {other:?}"))),
        }
    }

    fn topics(&mut self, change: TopicChange) -> Result<Value, InputError> {
        match change {
            TopicChange::Add { names, partitions, options, broker } => {
                self.core.remember_topics(&names, partitions, &options, &broker)?;
                Ok(json!({ "names": names }))
            }
            TopicChange::Delete { expr } => Ok(json!({ "names": self.core.forget_topics(&expr) })),
            TopicChange::Update { expr, options } => {
                Ok(json!({ "names": self.core.update_topics(&expr, &options) }))
            }
            TopicChange::List => Ok(json!({ "topics": self.core.state.topics })),
        }
    }

    /// The executor's command: this binary and (if served) tansu, fetched from the API into
    /// the sandbox as Kafka-on-Mesos ships its jar, so agents need nothing installed. Not
    /// cached: a new scheduler binary on the same URL must not meet a stale copy.
    fn executor_command(&self) -> v1::CommandInfo {
        let fetch = |value: &str| v1::command_info::Uri {
            value: value.to_string(),
            executable: Some(true),
            extract: Some(false),
            ..Default::default()
        };
        let mut uris = vec![fetch(&self.config.executor_uri)];
        uris.extend(self.config.tansu_uri.as_deref().map(fetch));
        v1::CommandInfo { uris, value: Some("./agora-kafka executor".into()), ..Default::default() }
    }

    fn list(&self) -> Value {
        let ids: Vec<u32> = self.core.brokers().keys().copied().collect();
        json!({ "brokers": self.render(&ids) })
    }

    /// Brokers in the API's shape: the stored fields, the id as a string as Kafka-on-Mesos
    /// writes it, the state word and, for a waiting broker, why it is not running yet.
    fn render(&self, ids: &[u32]) -> Vec<Value> {
        ids.iter()
            .filter_map(|id| self.core.brokers().get(id))
            .map(|b| {
                let mut v = serde_json::to_value(b).unwrap_or(Value::Null);
                v["id"] = json!(b.id.to_string());
                v["state"] = json!(b.state_word());
                if let Some(reason) = self.core.reasons.get(&b.id) {
                    v["reason"] = json!(reason);
                }
                if let Some(metrics) = self.core.metrics.get(&b.id) {
                    v["metrics"] = json!(metrics);
                }
                v
            })
            .collect()
    }
}

/// Creates the remembered `topics` on a broker that just started running; those it has
/// already (kept in its store) are left as they are. A refusal or an unreachable broker is
/// tried again a few times (a broker that just opened its port may still be settling), then
/// logged: the topic comes with the broker's next start.
async fn ensure_topics(
    broker: u32,
    endpoint: String,
    topics: Vec<(String, crate::core::TopicSpec)>,
) {
    use crate::kafka::{KafkaError, TOPIC_ALREADY_EXISTS, create_topic};
    for (name, spec) in topics {
        let configs: Vec<(String, String)> = spec.options.into_iter().collect();
        let mut pause = Duration::from_millis(500);
        for attempt in 1..=5 {
            match create_topic(&endpoint, &name, spec.partitions, 1, &configs).await {
                Ok(()) => tracing::info!(broker, topic = %name, "created the topic on the broker"),
                Err(KafkaError::Refused { code: TOPIC_ALREADY_EXISTS, .. }) => {}
                Err(e) if attempt < 5 => {
                    tracing::debug!(broker, topic = %name, error = %e, "creating the topic again soon");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(broker, topic = %name, error = %e, "cannot create the topic")
                }
            }
            break;
        }
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The offer as placement sees it: totals of cpus and mem, the port ranges, text attributes.
fn offer_view(offer: &v1::Offer) -> Offer {
    let mut view = Offer {
        agent_id: offer.agent_id.value.clone(),
        hostname: offer.hostname.clone(),
        ..Default::default()
    };
    for r in &offer.resources {
        match r.name.as_str() {
            "cpus" => view.cpus += r.scalar.as_ref().map_or(0.0, |s| s.value),
            "mem" => view.mem += r.scalar.as_ref().map_or(0.0, |s| s.value),
            "ports" => {
                for range in r.ranges.iter().flat_map(|rs| &rs.range) {
                    view.ports.push((range.begin, range.end));
                }
            }
            "disk" => {
                if let Some(id) = persistence_id(r) {
                    view.volumes.push(id.to_string());
                }
            }
            _ => {}
        }
    }
    for a in &offer.attributes {
        if let Some(text) = &a.text {
            view.attributes.insert(a.name.clone(), text.value.clone());
        }
    }
    view
}

fn persistence_id(r: &v1::Resource) -> Option<&str> {
    r.disk.as_ref()?.persistence.as_ref().map(|p| p.id.as_str())
}

/// Where the persistent volume `id` of the offer appears in the sandbox.
fn volume_path(offer: &v1::Offer, id: &str) -> Option<String> {
    offer
        .resources
        .iter()
        .find(|r| persistence_id(r) == Some(id))
        .and_then(|r| r.disk.as_ref()?.volume.as_ref().map(|v| v.container_path.clone()))
}

/// The resources of the task, cut from the offered ones so that roles and reservations match;
/// with the broker's persistent volume, if it has one.
fn take_resources(
    offer: &v1::Offer,
    cpus: f64,
    mem: f64,
    port: u16,
    volume: Option<&str>,
) -> Vec<v1::Resource> {
    let mut taken = Vec::new();
    let (mut cpus, mut mem) = (cpus, mem);
    let mut port_taken = false;
    for r in &offer.resources {
        let mut part = r.clone();
        match r.name.as_str() {
            "cpus" | "mem" => {
                let want = if r.name == "cpus" { &mut cpus } else { &mut mem };
                let have = r.scalar.as_ref().map_or(0.0, |s| s.value);
                let take = have.min(*want);
                if take <= 0.0 {
                    continue;
                }
                *want -= take;
                part.scalar = Some(v1::value::Scalar { value: take });
            }
            "ports" => {
                let port = u64::from(port);
                let inside = r
                    .ranges
                    .iter()
                    .flat_map(|rs| &rs.range)
                    .any(|g| g.begin <= port && port <= g.end);
                if !inside || port_taken {
                    continue;
                }
                port_taken = true;
                part.ranges = Some(v1::value::Ranges {
                    range: vec![v1::value::Range { begin: port, end: port }],
                });
            }
            "disk" if volume.is_some() && persistence_id(r) == volume => {}
            _ => continue,
        }
        taken.push(part);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(name: &str, value: f64, role: &str) -> v1::Resource {
        let mut r = v1::Resource {
            name: name.into(),
            scalar: Some(v1::value::Scalar { value }),
            ..Default::default()
        };
        r.set_type(v1::value::Type::Scalar);
        #[allow(deprecated)]
        {
            r.role = Some(role.into());
        }
        r
    }

    fn offer() -> v1::Offer {
        let mut ports = v1::Resource {
            name: "ports".into(),
            ranges: Some(v1::value::Ranges {
                range: vec![v1::value::Range { begin: 31000, end: 31010 }],
            }),
            ..Default::default()
        };
        ports.set_type(v1::value::Type::Ranges);
        let mut rack = v1::Attribute {
            name: "rack".into(),
            text: Some(v1::value::Text { value: "r1".into() }),
            ..Default::default()
        };
        rack.set_type(v1::value::Type::Text);
        v1::Offer {
            hostname: "h1".into(),
            agent_id: v1::AgentId { value: "a1".into() },
            resources: vec![
                scalar("cpus", 1.0, "kafka"),
                scalar("cpus", 2.0, "*"),
                scalar("mem", 1024.0, "*"),
                ports,
            ],
            attributes: vec![rack],
            ..Default::default()
        }
    }

    #[test]
    fn offers_are_read_and_cut_by_role() {
        let view = offer_view(&offer());
        assert_eq!((view.cpus, view.mem), (3.0, 1024.0));
        assert_eq!(view.ports, [(31000, 31010)]);
        assert_eq!(view.attributes["rack"], "r1");
        let taken = take_resources(&offer(), 1.5, 512.0, 31005, None);
        let cpus: Vec<f64> = taken
            .iter()
            .filter(|r| r.name == "cpus")
            .map(|r| r.scalar.as_ref().map_or(0.0, |s| s.value))
            .collect();
        assert_eq!(cpus, [1.0, 0.5], "taken in offer order, each part keeping its role");
        let port = taken.iter().find(|r| r.name == "ports").and_then(|r| r.ranges.clone());
        assert_eq!(
            port.map(|r| r.range),
            Some(vec![v1::value::Range { begin: 31005, end: 31005 }])
        );
    }

    #[test]
    fn a_broker_takes_its_volume() {
        let mut offer = offer();
        let mut disk = scalar("disk", 100.0, "kafka");
        disk.disk = Some(v1::resource::DiskInfo {
            persistence: Some(v1::resource::disk_info::Persistence {
                id: "kafka-0".into(),
                ..Default::default()
            }),
            volume: Some(v1::Volume { container_path: "data".into(), ..Default::default() }),
            ..Default::default()
        });
        offer.resources.push(disk);
        assert_eq!(offer_view(&offer).volumes, ["kafka-0"]);
        assert_eq!(volume_path(&offer, "kafka-0").as_deref(), Some("data"));
        let taken = take_resources(&offer, 1.0, 512.0, 31000, Some("kafka-0"));
        assert!(taken.iter().any(|r| persistence_id(r) == Some("kafka-0")));
        assert!(take_resources(&offer, 1.0, 512.0, 31000, None).iter().all(|r| r.name != "disk"));
    }
}
