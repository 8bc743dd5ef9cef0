//! `agora-kafka executor`: the custom executor that runs one Kafka-protocol broker (a tansu
//! process) for the task the scheduler launched on it.
//!
//! The broker's configuration arrives as JSON in TaskInfo.data (`LaunchConfig`). The executor
//! reports TASK_STARTING, starts tansu on the offered port advertising the agent's hostname,
//! and reports TASK_RUNNING with the endpoint `host:port` in `data` once the port accepts
//! connections. If the broker process dies the task fails with its exit status and the tail of
//! its log; a KILL or SHUTDOWN stops it with SIGTERM (SIGKILL after a grace period). A framework
//! message `log,<request>,<name>,<lines>` is answered with `log,<request>,<tail>`. When the
//! framework checkpoints (it does), losing the agent does not stop the broker: the executor
//! subscribes again for `MESOS_RECOVERY_TIMEOUT`, carrying the task and updates the agent has
//! not acknowledged, so the broker survives an agent restart.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agora_client::executor::{ExecutorEnv, ExecutorSession};
use agora_proto::executor::event::Type as EventType;
use agora_proto::executor::{Event, call};
use agora_proto::{Format, v1};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::model::{METRICS_INTERVAL_MS, Metrics};

/// What the scheduler tells the executor about the broker to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchConfig {
    pub id: u32,
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    /// The agent's hostname, advertised to clients.
    pub hostname: String,
    pub port: u16,
    /// Each tansu process with its own storage is a one-node cluster; the id names it.
    pub cluster_id: String,
    /// The tansu binary to run.
    pub tansu: String,
    /// Where the broker's persistent volume appears in the sandbox, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_path: Option<String>,
}

impl LaunchConfig {
    /// A broker option, empty values counting as unset.
    fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `--storage-engine` from the broker's options: `storage.engine` `memory` (the default
    /// without a volume or `log.dirs`), `sqlite` (a file in `log.dirs`, else in the persistent
    /// volume if the broker has one, else in the sandbox), or a full `memory://` / `sqlite://`
    /// URL; `log.dirs` or a volume alone mean `sqlite`.
    pub fn storage_engine(&self) -> Result<String, String> {
        let in_dir = |dir: &str| format!("sqlite://{}/broker.db", dir.trim_end_matches('/'));
        let sqlite = match (self.option("log.dirs"), &self.volume_path) {
            (Some(dir), _) => in_dir(dir),
            (None, Some(path)) => in_dir(path),
            (None, None) => "sqlite://broker.db".into(),
        };
        let on_disk = self.volume_path.is_some() || self.option("log.dirs").is_some();
        match self.option("storage.engine") {
            None if on_disk => Ok(sqlite),
            None | Some("memory") => Ok("memory://tansu/".into()),
            Some("sqlite") => Ok(sqlite),
            Some(url) if url.starts_with("memory://") || url.starts_with("sqlite://") => {
                Ok(url.to_string())
            }
            Some(other) => {
                Err(format!("unsupported storage.engine {other:?}: use memory or sqlite"))
            }
        }
    }

    /// Where tansu runs. It resolves a `sqlite://` URL against its working directory (the URL's
    /// host and path joined below it), so an absolute `sqlite:///path` needs `/`; everything
    /// else runs in the sandbox.
    pub fn working_dir<'a>(&self, sandbox: &'a Path) -> &'a Path {
        match self.storage_engine() {
            Ok(url) if url.starts_with("sqlite:///") => Path::new("/"),
            _ => sandbox,
        }
    }

    /// The host clients are told to connect to: `advertised.host.name`, or the agent's.
    pub fn advertised_host(&self) -> &str {
        self.option("advertised.host.name").unwrap_or(&self.hostname)
    }

    /// The endpoint reported in TASK_RUNNING's data.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.advertised_host(), self.port)
    }

    /// The arguments of `tansu broker`, listening on `bind` (already resolved on this host).
    pub fn tansu_args(&self, bind: &str) -> Result<Vec<String>, String> {
        let bind = if bind.contains(':') { format!("[{bind}]") } else { bind.to_string() };
        Ok(vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://{bind}:{}", self.port),
            "--advertised-listener-url".into(),
            format!("tcp://{}", self.endpoint()),
            "--storage-engine".into(),
            self.storage_engine()?,
            "--cluster-id".into(),
            self.option("cluster.id").unwrap_or(&self.cluster_id).to_string(),
        ])
    }
}

/// The address to listen on for the broker's `bindAddress`, resolved against this host's
/// `interfaces` (name and address): none is every address; `if:<name>` is that interface's
/// first IPv4 address (or its first address); a mask with `*` (`192.168.*`) is the first IPv4
/// address it matches; anything else is used as given.
pub fn resolve_bind(spec: Option<&str>, interfaces: &[(String, IpAddr)]) -> Result<String, String> {
    let have = || {
        let all: Vec<String> = interfaces.iter().map(|(n, a)| format!("{n} {a}")).collect();
        all.join(", ")
    };
    let first_v4 = |addrs: Vec<IpAddr>| {
        addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).map(IpAddr::to_string)
    };
    match spec {
        None | Some("") => Ok("0.0.0.0".into()),
        Some(spec) if spec.starts_with("if:") => {
            let name = &spec[3..];
            let addrs = interfaces.iter().filter(|(n, _)| n == name).map(|(_, a)| *a).collect();
            first_v4(addrs).ok_or_else(|| {
                format!(
                    "bindAddress {spec}: no interface {name} with an address here (have: {})",
                    have()
                )
            })
        }
        Some(mask) if mask.contains('*') => interfaces
            .iter()
            .map(|(_, a)| a)
            .find(|a| a.is_ipv4() && crate::expr::glob(mask, &a.to_string()))
            .map(IpAddr::to_string)
            .ok_or_else(|| {
                format!("bindAddress {mask}: no address here matches (have: {})", have())
            }),
        Some(address) => Ok(address.to_string()),
    }
}

/// This host's interfaces and their IP addresses.
fn interfaces() -> Vec<(String, IpAddr)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    addrs
        .filter_map(|i| {
            let address = i.address?;
            let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some((i.interface_name, ip))
        })
        .collect()
}

/// The broker's own log in the sandbox (tansu's stdout and stderr).
const BROKER_LOG: &str = "server.log";
/// How long a broker may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The largest log tail sent back in one framework message.
const MAX_TAIL: usize = 100 * 1024;

pub async fn run() -> anyhow::Result<()> {
    let env = ExecutorEnv::from_env().map_err(anyhow::Error::msg)?;
    let sandbox = PathBuf::from(env.sandbox.clone().unwrap_or_else(|| ".".into()));
    let mut link = Link {
        session: ExecutorSession::new(&env, Format::Json),
        recovery: Recovery::from_env(&env),
        tasks: Vec::new(),
        updates: Vec::new(),
    };
    let mut events = link.session.subscribe(Vec::new(), Vec::new()).await.context("subscribe")?;
    let mut broker: Option<(v1::TaskId, Child, String)> = None;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1);
    // Where the executor itself reaches the broker, and when to report its metrics next
    // (from TASK_RUNNING on).
    let mut probe_addr: Option<String> = None;
    let mut next_metrics: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            event = events.next() => {
                let event = match event {
                    Ok(Some(event)) => event,
                    lost => {
                        if let Err(e) = lost {
                            tracing::warn!(error = %e, "the agent's stream broke");
                        }
                        // A checkpointing agent may be restarting: the broker keeps running
                        // while we subscribe again. Otherwise the broker goes with us.
                        match link.resubscribe().await {
                            Some(again) => {
                                events = again;
                                continue;
                            }
                            None => {
                                if let Some((_, child, _)) = &mut broker { stop(child).await; }
                                return Ok(());
                            }
                        }
                    }
                };
                match event.r#type() {
                    EventType::Acknowledged => {
                        if let Some(ack) = event.acknowledged {
                            link.acknowledged(&ack.task_id, &ack.uuid);
                        }
                    }
                    EventType::Launch => {
                        let task = event.launch.context("LAUNCH without a task")?.task;
                        let task_id = task.task_id.clone();
                        link.tasks.push(task.clone());
                        link.update(&task_id, v1::TaskState::TaskStarting, None, None).await?;
                        match start(&task, &sandbox).await {
                            Ok((child, config, bind)) => {
                                let endpoint = config.endpoint();
                                let probe = probe_address(&bind, config.port);
                                probe_addr = Some(probe.clone());
                                let ready = ready_tx.clone();
                                tokio::spawn(async move {
                                    while tokio::net::TcpStream::connect(&probe).await.is_err() {
                                        tokio::time::sleep(Duration::from_millis(100)).await;
                                    }
                                    let _ = ready.send(()).await;
                                });
                                broker = Some((task_id, child, endpoint));
                            }
                            Err(e) => {
                                let message = format!("{e:#}");
                                link.update(&task_id, v1::TaskState::TaskFailed, None, Some(message)).await?;
                                return Ok(());
                            }
                        }
                    }
                    EventType::Kill | EventType::Shutdown => {
                        let killed = event.kill.map(|k| k.task_id);
                        match broker.take() {
                            Some((task_id, mut child, _)) => {
                                link.update(&task_id, v1::TaskState::TaskKilling, None, None).await?;
                                stop(&mut child).await;
                                link.update(&task_id, v1::TaskState::TaskKilled, None, Some("stopped by the framework".into())).await?;
                            }
                            // Killed before its broker started: the task still needs its end.
                            None => if let Some(task_id) = killed {
                                link.update(&task_id, v1::TaskState::TaskKilled, None, None).await?;
                            },
                        }
                        return Ok(());
                    }
                    EventType::Message => {
                        let data = event.message.map(|m| m.data).unwrap_or_default();
                        if let Some(reply) = answer(&String::from_utf8_lossy(&data), &sandbox) {
                            // A lost answer is a `broker log` timeout, not the broker's end.
                            if let Err(e) = link.session.message(reply.into_bytes()).await {
                                tracing::warn!(error = %e, "cannot send a log tail");
                            }
                        }
                    }
                    EventType::Error => {
                        bail!("the agent reported an error: {:?}", event.error.map(|e| e.message));
                    }
                    _ => {}
                }
            }
            Some(()) = ready_rx.recv() => {
                if let Some((task_id, _, endpoint)) = &broker {
                    tracing::info!(%endpoint, "the broker accepts connections");
                    link.update(task_id, v1::TaskState::TaskRunning, Some(endpoint.clone()), None).await?;
                    next_metrics = Some(tokio::time::Instant::now());
                }
            }
            () = sleep_until(next_metrics) => {
                next_metrics = Some(tokio::time::Instant::now() + Duration::from_millis(METRICS_INTERVAL_MS));
                if let (Some((_, child, _)), Some(probe)) = (&broker, &probe_addr) {
                    let metrics = collect_metrics(child.id(), probe).await;
                    let message = format!("metrics,{}", serde_json::to_string(&metrics).unwrap_or_default());
                    // Best effort, like Kafka-on-Mesos's: the next report replaces a lost one.
                    if let Err(e) = link.session.message(message.into_bytes()).await {
                        tracing::debug!(error = %e, "cannot send metrics");
                    }
                }
            }
            status = wait_child(&mut broker) => {
                let (task_id, _, _) = broker.take().expect("waited on a running broker");
                let tail = tail(&sandbox.join(BROKER_LOG), 20).unwrap_or_default();
                let message = format!("the broker exited ({status}); last lines of {BROKER_LOG}:\n{tail}");
                link.update(&task_id, v1::TaskState::TaskFailed, None, Some(message)).await?;
                return Ok(());
            }
        }
    }
}

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The broker's metrics now: topics and partitions from its own Metadata (zero when it does
/// not answer within a few seconds), memory and CPU time of its process from `/proc`.
async fn collect_metrics(pid: Option<u32>, probe: &str) -> Metrics {
    let topics = tokio::time::timeout(Duration::from_secs(5), crate::kafka::metadata(probe)).await;
    let topics = topics.ok().and_then(Result::ok).unwrap_or_default();
    let (rss_bytes, cpu_seconds) = pid.map(process_usage).unwrap_or_default();
    Metrics {
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default(),
        topics: topics.len() as u32,
        partitions: topics.iter().map(|t| t.partitions.len() as u32).sum(),
        rss_bytes,
        cpu_seconds,
    }
}

/// Resident memory (`VmRSS` of `/proc/<pid>/status`) and CPU time (`/proc/<pid>/schedstat`,
/// in nanoseconds, which needs no clock-tick rate) of a process; zeros for what cannot be read.
fn process_usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let cpu_ns: u64 = schedstat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (rss_kb * 1024, cpu_ns as f64 / 1e9)
}

/// Where to check that the broker listens: its bind address, or loopback for all addresses.
fn probe_address(bind: &str, port: u16) -> String {
    match bind.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
        Ok(ip) => std::net::SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{bind}:{port}"),
    }
}

async fn wait_child(broker: &mut Option<(v1::TaskId, Child, String)>) -> String {
    match broker {
        Some((_, child, _)) => match child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("cannot wait for it: {e}"),
        },
        None => std::future::pending().await,
    }
}

async fn start(
    task: &v1::TaskInfo,
    sandbox: &Path,
) -> anyhow::Result<(Child, LaunchConfig, String)> {
    let data = task.data.as_ref().context("the task carries no launch configuration")?;
    let config: LaunchConfig = serde_json::from_slice(data).context("bad launch configuration")?;
    let bind =
        resolve_bind(config.bind_address.as_deref(), &interfaces()).map_err(anyhow::Error::msg)?;
    let args = config.tansu_args(&bind).map_err(anyhow::Error::msg)?;
    if let Some(dir) = config.option("log.dirs") {
        // SQLite creates its file, not the directories above it.
        let dir = sandbox.join(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let log = std::fs::File::create(sandbox.join(BROKER_LOG)).context("create server.log")?;
    // `./tansu` is the copy the agent fetched into the sandbox; tansu may run elsewhere.
    let program = match config.tansu.strip_prefix("./") {
        // Absolute, because tansu's working directory may not be the sandbox.
        Some(name) => std::path::absolute(sandbox.join(name)).unwrap_or(sandbox.join(name)),
        None => PathBuf::from(&config.tansu),
    };
    let child = Command::new(&program)
        .args(&args)
        .current_dir(config.working_dir(sandbox))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("server.log")?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", config.tansu))?;
    tracing::info!(pid = child.id(), ?args, "started the broker");
    if let Some(pid) = child.id() {
        let _ = std::fs::write(sandbox.join("broker.pid"), pid.to_string());
    }
    Ok((child, config, bind))
}

/// SIGTERM, then SIGKILL after the grace period.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// How a checkpointing framework's executor outlives its agent: `MESOS_RECOVERY_TIMEOUT` to
/// come back, tries at most half of `MESOS_SUBSCRIPTION_BACKOFF_MAX` apart (so that two fall
/// within the window a restarted agent waits for its executors).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Recovery {
    timeout: Duration,
    backoff_max: Duration,
}

impl Recovery {
    fn from_env(env: &ExecutorEnv) -> Option<Recovery> {
        if !env.checkpoint {
            return None;
        }
        let duration = |text: &Option<String>, default| {
            text.as_deref().and_then(parse_duration).unwrap_or(default)
        };
        Some(Recovery {
            timeout: duration(&env.recovery_timeout, Duration::from_secs(15 * 60)),
            backoff_max: duration(&env.subscription_backoff_max, Duration::from_secs(2)),
        })
    }
}

/// A duration as the agent writes it (`15mins`, `2secs`, `500ms`, `1.5hrs`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "secs" => 1.0,
        "mins" => 60.0,
        "hrs" => 3600.0,
        "days" => 86_400.0,
        "weeks" => 604_800.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * seconds).ok()
}

/// The executor's side of the agent link: the session, and what the agent has not
/// acknowledged yet (the launched task until an update of it is acknowledged, and every
/// update), which a SUBSCRIBE to a restarted agent carries again.
struct Link {
    session: ExecutorSession,
    recovery: Option<Recovery>,
    tasks: Vec<v1::TaskInfo>,
    updates: Vec<call::Update>,
}

impl Link {
    async fn update(
        &mut self,
        task_id: &v1::TaskId,
        state: v1::TaskState,
        data: Option<String>,
        message: Option<String>,
    ) -> anyhow::Result<()> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let mut status = v1::TaskStatus {
            task_id: task_id.clone(),
            message,
            data: data.map(Bytes::from),
            timestamp: Some(timestamp),
            uuid: Some(Bytes::copy_from_slice(uuid::Uuid::new_v4().as_bytes())),
            ..Default::default()
        };
        status.set_state(state);
        status.set_source(v1::task_status::Source::Executor);
        self.updates.push(call::Update { status: status.clone() });
        match self.session.update(status).await {
            Ok(()) => Ok(()),
            // The next SUBSCRIBE carries it to the restarted agent.
            Err(e) if self.recovery.is_some() => {
                tracing::warn!(error = %e, state = state.as_str_name(), "UPDATE failed; kept for the agent's return");
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("UPDATE {}", state.as_str_name())),
        }
    }

    fn acknowledged(&mut self, task_id: &v1::TaskId, uuid: &[u8]) {
        self.updates.retain(|u| u.status.uuid.as_deref() != Some(uuid));
        self.tasks.retain(|t| t.task_id != *task_id);
    }

    /// Subscribes again until the agent answers or the recovery timeout passes; `None` when
    /// the framework does not checkpoint or the agent did not come back.
    async fn resubscribe(&self) -> Option<agora_client::Subscription<Event>> {
        let recovery = self.recovery?;
        let deadline = tokio::time::Instant::now() + recovery.timeout;
        let cap = (recovery.backoff_max / 2).max(Duration::from_millis(10));
        let mut pause = Duration::from_millis(100).min(cap);
        let mut failures = 0u32;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            let attempt = self.session.subscribe(self.tasks.clone(), self.updates.clone());
            match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok(events)) => {
                    tracing::info!(failures, "subscribed to the agent again");
                    return Some(events);
                }
                Ok(Err(e)) if failures.is_multiple_of(10) => {
                    tracing::info!(error = %e, "cannot subscribe to the agent yet");
                }
                _ => {}
            }
            failures += 1;
            pause = (pause * 2).min(cap);
        }
        tracing::warn!("the agent did not come back within {:?}", recovery.timeout);
        None
    }
}

/// Answers a `log,<request>,<name>,<lines>` message; other messages are ignored.
pub fn answer(message: &str, sandbox: &Path) -> Option<String> {
    let mut parts = message.splitn(4, ',');
    if parts.next() != Some("log") {
        return None;
    }
    let request = parts.next()?;
    let name = parts.next().unwrap_or("stdout");
    let lines = parts.next().and_then(|l| l.parse().ok()).unwrap_or(100);
    let text = match name {
        "stdout" | "stderr" | BROKER_LOG => {
            tail(&sandbox.join(name), lines).unwrap_or_else(|e| format!("cannot read {name}: {e}"))
        }
        other => format!("unknown log {other:?}: use stdout, stderr or {BROKER_LOG}"),
    };
    Some(format!("log,{request},{text}"))
}

/// The last `lines` lines of a file, at most `MAX_TAIL` bytes.
fn tail(path: &Path, lines: usize) -> std::io::Result<String> {
    let data = std::fs::read(path)?;
    let start = data.len().saturating_sub(MAX_TAIL);
    let text = String::from_utf8_lossy(&data[start..]);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(options: &[(&str, &str)]) -> LaunchConfig {
        LaunchConfig {
            id: 1,
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            bind_address: None,
            hostname: "h1".into(),
            port: 31000,
            cluster_id: "kafka-1".into(),
            tansu: "tansu".into(),
            volume_path: None,
        }
    }

    #[test]
    fn tansu_arguments_follow_the_options() {
        let args = config(&[]).tansu_args("0.0.0.0").expect("valid");
        assert_eq!(args[2], "tcp://0.0.0.0:31000");
        assert_eq!(args[4], "tcp://h1:31000");
        assert_eq!(args[6], "memory://tansu/");
        assert_eq!(
            config(&[("storage.engine", "sqlite")]).storage_engine().expect("valid"),
            "sqlite://broker.db"
        );
        assert!(config(&[("storage.engine", "postgres://x")]).storage_engine().is_err());
        let mut on_volume = config(&[]);
        on_volume.volume_path = Some("data".into());
        assert_eq!(on_volume.storage_engine().expect("valid"), "sqlite://data/broker.db");
        let sandbox = Path::new("/sandbox");
        assert_eq!(on_volume.working_dir(sandbox), sandbox);
        let absolute = config(&[("storage.engine", "sqlite:///var/lib/kafka/b1.db")]);
        assert_eq!(absolute.working_dir(sandbox), Path::new("/"));
        // log.dirs: a SQLite store in that directory, relative to the sandbox or absolute.
        assert_eq!(
            config(&[("log.dirs", "kafka-logs")]).storage_engine().expect("valid"),
            "sqlite://kafka-logs/broker.db"
        );
        let absolute = config(&[("log.dirs", "/var/lib/kafka/1/")]);
        assert_eq!(
            absolute.storage_engine().expect("valid"),
            "sqlite:///var/lib/kafka/1/broker.db"
        );
        assert_eq!(absolute.working_dir(sandbox), Path::new("/"));
        assert_eq!(
            config(&[("storage.engine", "")]).storage_engine().expect("unset"),
            "memory://tansu/"
        );
        // The advertised host and the cluster id.
        let named = config(&[("advertised.host.name", "kafka1.example"), ("cluster.id", "c9")]);
        let args = named.tansu_args("::1").expect("valid");
        assert_eq!(args[2], "tcp://[::1]:31000");
        assert_eq!(args[4], "tcp://kafka1.example:31000");
        assert_eq!(args[8], "c9");
        assert_eq!(named.endpoint(), "kafka1.example:31000");
    }

    #[test]
    fn bind_addresses_resolve_on_the_host() {
        let ip = |t: &str| t.parse::<IpAddr>().expect("ip");
        let here = [
            ("lo".to_string(), ip("127.0.0.1")),
            ("lo".to_string(), ip("::1")),
            ("eth0".to_string(), ip("fe80::1")),
            ("eth0".to_string(), ip("192.168.1.7")),
            ("eth1".to_string(), ip("10.0.0.5")),
        ];
        let cases = [
            (None, Ok("0.0.0.0")),
            (Some("10.0.0.5"), Ok("10.0.0.5")),
            (Some("if:eth0"), Ok("192.168.1.7")),
            (Some("if:lo"), Ok("127.0.0.1")),
            (Some("192.168.*"), Ok("192.168.1.7")),
            (Some("10.*.*.5"), Ok("10.0.0.5")),
        ];
        for (spec, expected) in cases {
            assert_eq!(
                resolve_bind(spec, &here).as_deref(),
                expected.map_err(|e: &str| e.to_string()).as_deref(),
                "{spec:?}"
            );
        }
        let e = resolve_bind(Some("if:wlan0"), &here).expect_err("no such interface");
        assert!(e.contains("no interface wlan0") && e.contains("eth1 10.0.0.5"), "{e}");
        let e = resolve_bind(Some("172.16.*"), &here).expect_err("no match");
        assert!(e.contains("no address here matches"), "{e}");
        assert_eq!(probe_address("0.0.0.0", 9), "127.0.0.1:9");
        assert_eq!(probe_address("::1", 9), "[::1]:9");
        // The real host has a loopback interface.
        assert_eq!(resolve_bind(Some("127.0.0.*"), &interfaces()).as_deref(), Ok("127.0.0.1"));
    }

    #[test]
    fn process_usage_reads_proc() {
        let (rss, cpu) = process_usage(std::process::id());
        assert!(rss > 0, "this test process has resident memory");
        assert!(cpu >= 0.0);
        assert_eq!(process_usage(u32::MAX), (0, 0.0), "no such process");
    }

    #[test]
    fn agent_durations_parse() {
        assert_eq!(parse_duration("15mins"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("2secs"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5hrs"), Some(Duration::from_secs(5400)));
        for bad in ["", "10", "secs", "1x", "-1secs"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn log_requests_are_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("stdout"), "a\nb\nc\n").expect("write");
        assert_eq!(answer("log,7,stdout,2", dir.path()).as_deref(), Some("log,7,b\nc"));
        assert!(
            answer("log,7,../etc/passwd,2", dir.path()).expect("answered").contains("unknown log")
        );
        assert!(
            answer("log,8,stderr", dir.path()).expect("answered").starts_with("log,8,cannot read")
        );
        assert_eq!(answer("metrics", dir.path()), None);
    }
}
