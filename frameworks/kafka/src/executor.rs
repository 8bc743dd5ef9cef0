//! `agora-kafka executor`: the custom executor that runs one Kafka-protocol broker (a tansu
//! process) for the task the scheduler launched on it.
//!
//! The broker's configuration arrives as JSON in TaskInfo.data (`LaunchConfig`). The executor
//! reports TASK_STARTING, starts tansu on the offered port advertising the agent's hostname,
//! and reports TASK_RUNNING with the endpoint `host:port` in `data` once the port accepts
//! connections. If the broker process dies the task fails with its exit status and the tail of
//! its log; a KILL or SHUTDOWN stops it with SIGTERM (SIGKILL after a grace period). A framework
//! message `log,<request>,<name>,<lines>` is answered with `log,<request>,<tail>`. It does not
//! re-subscribe after losing its agent: the scheduler's failover starts a new broker instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agora_client::executor::{ExecutorEnv, ExecutorSession};
use agora_proto::executor::event::Type as EventType;
use agora_proto::{Format, v1};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

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
    /// `--storage-engine` from the broker's `storage.engine` option: `memory` (the default
    /// without a volume), `sqlite` (a file in the persistent volume if the broker has one, the
    /// default then, or else in the sandbox), or a full `memory://` / `sqlite://` URL.
    pub fn storage_engine(&self) -> Result<String, String> {
        let sqlite = match &self.volume_path {
            Some(path) => format!("sqlite://{}/broker.db", path.trim_end_matches('/')),
            None => "sqlite://broker.db".into(),
        };
        match self.options.get("storage.engine").map(String::as_str) {
            None | Some("") if self.volume_path.is_some() => Ok(sqlite),
            None | Some("") | Some("memory") => Ok("memory://tansu/".into()),
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

    /// The arguments of `tansu broker`.
    pub fn tansu_args(&self) -> Result<Vec<String>, String> {
        let bind = self.bind_address.as_deref().unwrap_or("0.0.0.0");
        Ok(vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://{bind}:{}", self.port),
            "--advertised-listener-url".into(),
            format!("tcp://{}:{}", self.hostname, self.port),
            "--storage-engine".into(),
            self.storage_engine()?,
            "--cluster-id".into(),
            self.cluster_id.clone(),
        ])
    }
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
    let session = ExecutorSession::new(&env, Format::Json);
    let mut events = session.subscribe(Vec::new(), Vec::new()).await.context("subscribe")?;
    let mut broker: Option<(v1::TaskId, Child, String)> = None;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event.context("executor stream")? else {
                    // The agent went away; the broker goes with us.
                    if let Some((_, child, _)) = &mut broker { stop(child).await; }
                    return Ok(());
                };
                match event.r#type() {
                    EventType::Launch => {
                        let task = event.launch.context("LAUNCH without a task")?.task;
                        let task_id = task.task_id.clone();
                        update(&session, &task_id, v1::TaskState::TaskStarting, None, None).await?;
                        match start(&task, &sandbox).await {
                            Ok((child, config)) => {
                                let endpoint = format!("{}:{}", config.hostname, config.port);
                                let probe = format!("{}:{}", probe_host(&config), config.port);
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
                                update(&session, &task_id, v1::TaskState::TaskFailed, None, Some(message)).await?;
                                return Ok(());
                            }
                        }
                    }
                    EventType::Kill | EventType::Shutdown => {
                        let killed = event.kill.map(|k| k.task_id);
                        match broker.take() {
                            Some((task_id, mut child, _)) => {
                                update(&session, &task_id, v1::TaskState::TaskKilling, None, None).await?;
                                stop(&mut child).await;
                                update(&session, &task_id, v1::TaskState::TaskKilled, None, Some("stopped by the framework".into())).await?;
                            }
                            // Killed before its broker started: the task still needs its end.
                            None => if let Some(task_id) = killed {
                                update(&session, &task_id, v1::TaskState::TaskKilled, None, None).await?;
                            },
                        }
                        return Ok(());
                    }
                    EventType::Message => {
                        let data = event.message.map(|m| m.data).unwrap_or_default();
                        if let Some(reply) = answer(&String::from_utf8_lossy(&data), &sandbox) {
                            session.message(reply.into_bytes()).await.context("MESSAGE")?;
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
                    update(&session, task_id, v1::TaskState::TaskRunning, Some(endpoint.clone()), None).await?;
                }
            }
            status = wait_child(&mut broker) => {
                let (task_id, _, _) = broker.take().expect("waited on a running broker");
                let tail = tail(&sandbox.join(BROKER_LOG), 20).unwrap_or_default();
                let message = format!("the broker exited ({status}); last lines of {BROKER_LOG}:\n{tail}");
                update(&session, &task_id, v1::TaskState::TaskFailed, None, Some(message)).await?;
                return Ok(());
            }
        }
    }
}

/// Where to check that the broker listens: its bind address, or loopback for all addresses.
fn probe_host(config: &LaunchConfig) -> &str {
    match config.bind_address.as_deref() {
        None | Some("0.0.0.0") => "127.0.0.1",
        Some(addr) => addr,
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

async fn start(task: &v1::TaskInfo, sandbox: &Path) -> anyhow::Result<(Child, LaunchConfig)> {
    let data = task.data.as_ref().context("the task carries no launch configuration")?;
    let config: LaunchConfig = serde_json::from_slice(data).context("bad launch configuration")?;
    let args = config.tansu_args().map_err(anyhow::Error::msg)?;
    let log = std::fs::File::create(sandbox.join(BROKER_LOG)).context("create server.log")?;
    let child = Command::new(&config.tansu)
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
    Ok((child, config))
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

async fn update(
    session: &ExecutorSession,
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
    session.update(status).await.with_context(|| format!("UPDATE {}", state.as_str_name()))
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
        let args = config(&[]).tansu_args().expect("valid");
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
