//! The master daemon's IO shell: it binds the HTTP server, runs the dispatcher that owns the
//! `agora_core::master::Master` state machine, and turns timers into inputs.
//!
//! `http.rs` decodes requests and maps refusals to status codes; `dispatcher.rs` is the single
//! owner of the core and of every open stream, and group-commits the registry; `registry.rs` is
//! the embedded store (redb) under `--work_dir`. The shell keeps no state of its own beyond
//! connection plumbing. `operator.rs` serves the operator API, `legacy.rs` the unversioned
//! state endpoints, `metrics.rs` the metrics. With `--zk` (`HaOptions`), `lead` runs the
//! master's candidacy (`agora-leader`): the HTTP server answers as a standby (307 to the
//! leader, 503 while none is known) until this master is elected, then it reads the registry
//! from ZooKeeper (`registry/zk.rs`), starts the dispatcher and serves; losing the lead after
//! that is fatal, as in Mesos, where a deposed leader aborts and its supervisor restarts it.

mod dispatcher;
mod http;
pub mod legacy;
mod metrics;
mod operator;
pub mod registry;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agora_core::allocator::AllocatorConfig;
use agora_core::master::MasterConfig;
use agora_http::Server;
use agora_proto::{internal, v1};
use tokio::sync::oneshot;

use crate::http::Gate;
use crate::registry::{Backend, RegistryError, Store};

/// The Mesos release whose API this master speaks; `/version` reports it because clients such
/// as pymesos parse it as dotted numbers.
pub const MESOS_API_VERSION: &str = "1.11.0";

/// The master's log file under `--log_dir` (what `/master/log` names).
pub const LOG_FILE: &str = "agora-master.log";

/// Where the master keeps its registry (`--registry`, with Mesos's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    /// Mesos's `replicated_log`: here the embedded store under `--work_dir`, which survives
    /// restarts (the replicated log proper, across masters, comes with ZooKeeper).
    ReplicatedLog,
    /// Nothing survives the process.
    InMemory,
}

/// How to run a master; the `agora` binary fills this from Mesos-named flags.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    pub ip: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Advertised hostname; defaults to the IP.
    pub hostname: Option<String>,
    /// Required with `RegistryKind::ReplicatedLog`, as in Mesos.
    pub work_dir: Option<PathBuf>,
    pub registry: RegistryKind,
    pub allocation_interval: Duration,
    pub heartbeat_interval: Duration,
    /// `--offer_timeout`: rescind offers not answered within this.
    pub offer_timeout: Option<Duration>,
    pub agent_reregister_timeout: Duration,
    /// `--agent_ping_timeout` and `--max_agent_ping_timeouts`.
    pub agent_ping_timeout: Duration,
    pub max_agent_ping_timeouts: u32,
    pub allocator: AllocatorConfig,
    /// `--log_dir`: where the binary writes the master's log (`LOG_FILE`), which the files
    /// API shows at `/master/log`.
    pub log_dir: Option<PathBuf>,
    /// The process's log filter, which SET_LOGGING_LEVEL changes; the default only records
    /// the level (a master started in-process has no filter of its own).
    pub logging: Arc<agora_http::Logging>,
    /// `--max_completed_frameworks`: torn-down frameworks kept for the state endpoints.
    pub max_completed_frameworks: usize,
    /// `--max_completed_tasks_per_framework`.
    pub max_completed_tasks_per_framework: usize,
    /// `--max_operator_event_stream_subscribers`: beyond it the oldest subscriber is dropped.
    pub max_operator_event_stream_subscribers: usize,
    /// `--zk`: contend for the lead and keep the registry in ZooKeeper.
    pub ha: Option<HaOptions>,
}

/// High availability: several masters, one elected through ZooKeeper (reference §5.9).
#[derive(Debug, Clone)]
pub struct HaOptions {
    pub zk: agora_leader::ZkUrl,
    /// `--quorum`: an elected master recovers only once this many masters (itself included)
    /// are in the election, as a Mesos master cannot read its replicated registry without a
    /// quorum of replicas.
    pub quorum: usize,
    /// `--zk_session_timeout`.
    pub session_timeout: Duration,
}

impl MasterOptions {
    /// A master with Mesos's defaults and a durable registry under `work_dir`.
    pub fn new(ip: IpAddr, port: u16, work_dir: PathBuf) -> Self {
        Self {
            ip,
            port,
            hostname: None,
            work_dir: Some(work_dir),
            registry: RegistryKind::ReplicatedLog,
            allocation_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            agent_reregister_timeout: Duration::from_secs(600),
            agent_ping_timeout: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            allocator: AllocatorConfig::default(),
            log_dir: None,
            logging: Arc::default(),
            max_completed_frameworks: 50,
            max_completed_tasks_per_framework: 1000,
            max_operator_event_stream_subscribers: 1000,
            ha: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot create work directory {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
    #[error("--work_dir is required with --registry=replicated_log")]
    NoWorkDir,
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the registry could not be opened: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Election(#[from] agora_leader::LeaderError),
}

/// A master that is serving; dropping it does not stop it, `shutdown` does.
pub struct RunningMaster {
    pub addr: SocketAddr,
    pub master_info: v1::MasterInfo,
    /// Agents and frameworks the registry held at start (in high availability mode the
    /// registry is read only once elected: zeros).
    pub recovered: (usize, usize),
    server: Server,
    fatal: oneshot::Receiver<String>,
}

impl RunningMaster {
    /// Stops serving and waits for the server to finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Waits until the server stops by itself (it does not, short of an error).
    pub async fn wait(self) {
        self.server.wait().await;
    }

    /// Resolves with the reason if the master cannot go on (its registry failed); the process
    /// should then exit, as a Mesos master aborts.
    pub async fn failed(&mut self) -> String {
        (&mut self.fatal).await.unwrap_or_else(|_| "the dispatcher is gone".into())
    }
}

/// Binds, starts the dispatcher and serves until `shutdown`.
pub async fn start(options: MasterOptions) -> Result<RunningMaster, MasterError> {
    if let Some(work_dir) = &options.work_dir {
        std::fs::create_dir_all(work_dir)
            .map_err(|source| MasterError::WorkDir { path: work_dir.clone(), source })?;
    }
    let requested = SocketAddr::new(options.ip, options.port);
    let listener = agora_http::bind(requested)
        .await
        .map_err(|source| MasterError::Bind { addr: requested, source })?;
    let addr =
        listener.local_addr().map_err(|source| MasterError::Bind { addr: requested, source })?;
    let master_info = master_info(&options, addr);
    let config = MasterConfig {
        master_info: master_info.clone(),
        allocation_interval: options.allocation_interval,
        heartbeat_interval: options.heartbeat_interval,
        offer_timeout: options.offer_timeout,
        allocator: options.allocator.clone(),
        max_completed_tasks_per_framework: options.max_completed_tasks_per_framework,
        max_completed_frameworks: options.max_completed_frameworks,
        agent_reregister_timeout: options.agent_reregister_timeout,
        agent_ping_timeout: options.agent_ping_timeout,
        max_agent_ping_timeouts: options.max_agent_ping_timeouts,
        max_operator_event_stream_subscribers: options.max_operator_event_stream_subscribers,
    };
    let (gate, _) = tokio::sync::watch::channel(Gate::Serving);
    let (handle, rx) = dispatcher::channel();
    let (fatal_tx, fatal) = oneshot::channel();
    let mut recovered = (0, 0);
    match &options.ha {
        None => {
            let (store, snapshot) = open_registry(&options, &master_info).await?;
            recovered = (snapshot.agents.len(), snapshot.frameworks.len());
            let failed = dispatcher::start(rx, config, snapshot, store);
            tokio::spawn(async move {
                if let Ok(reason) = failed.await {
                    let _ = fatal_tx.send(reason);
                }
            });
        }
        Some(ha) => {
            gate.send_replace(Gate::Standby { leader: None });
            let (candidacy, standing) =
                agora_leader::contend(&ha.zk, &master_info, ha.session_timeout).await?;
            let lead = Lead { candidacy, standing, gate: gate.clone(), quorum: ha.quorum };
            tokio::spawn(async move {
                let reason = lead.run(rx, config).await;
                tracing::error!(%reason, "the master stops");
                let _ = fatal_tx.send(reason);
            });
        }
    }
    let shell = http::Shell {
        gate,
        flags: flags(&options),
        started: std::time::Instant::now(),
        logging: Arc::clone(&options.logging),
        files: log_attachment(options.log_dir.clone()),
        master_info: master_info.clone(),
        state_renders: Default::default(),
    };
    let app = http::router(handle, Arc::new(shell));
    let server = Server::spawn(listener, app, "master")
        .map_err(|source| MasterError::Bind { addr: requested, source })?;
    tracing::info!(
        %addr,
        id = %master_info.id,
        agents = recovered.0,
        frameworks = recovered.1,
        "master listening"
    );
    Ok(RunningMaster { addr, master_info, recovered, server, fatal })
}

/// The master's attachments for the files API: its log at `/master/log` (Mesos's virtual
/// path) once the file exists, nothing without `--log_dir`.
fn log_attachment(log_dir: Option<PathBuf>) -> agora_http::files::Source {
    Arc::new(move || {
        let log = log_dir.as_ref().and_then(|dir| std::fs::canonicalize(dir.join(LOG_FILE)).ok());
        log.map(|log| ("/master/log".to_string(), log)).into_iter().collect()
    })
}

/// A master's candidacy, from entering the election to losing the lead.
struct Lead {
    candidacy: agora_leader::Candidacy,
    standing: tokio::sync::watch::Receiver<agora_leader::Standing>,
    gate: tokio::sync::watch::Sender<Gate>,
    quorum: usize,
}

impl Lead {
    /// Follows the election: standby while another master leads, then, once elected with a
    /// quorum in the election, recovers from ZooKeeper and starts the dispatcher on `rx`.
    /// Returns why the master must stop: the candidacy was lost, or the lead given up, or the
    /// registry failed.
    async fn run(
        mut self,
        rx: tokio::sync::mpsc::UnboundedReceiver<dispatcher::Command>,
        config: MasterConfig,
    ) -> String {
        use agora_leader::Standing;
        loop {
            let standing = self.standing.borrow_and_update().clone();
            match standing {
                Standing::Entering => {}
                Standing::Following { leader } => {
                    let leader = leader.as_deref().and_then(agora_leader::master_address);
                    self.gate.send_replace(Gate::Standby { leader });
                }
                Standing::Leading { contenders } if contenders < self.quorum => {
                    tracing::warn!(
                        contenders,
                        quorum = self.quorum,
                        "elected, waiting for a quorum of masters before recovering"
                    );
                    self.gate.send_replace(Gate::Recovering);
                }
                Standing::Leading { .. } => return self.serve(rx, config).await,
                Standing::Lost(reason) => return format!("lost the ZooKeeper candidacy: {reason}"),
            }
            if self.standing.changed().await.is_err() {
                return "the election ended".into();
            }
        }
    }

    /// The elected master: reads the registry, starts the dispatcher, serves until the lead
    /// or the registry is lost.
    async fn serve(
        mut self,
        rx: tokio::sync::mpsc::UnboundedReceiver<dispatcher::Command>,
        config: MasterConfig,
    ) -> String {
        self.gate.send_replace(Gate::Recovering);
        tracing::info!(
            node = self.candidacy.node(),
            "elected leading master; recovering the registry"
        );
        let opened = registry::zk::ZkStore::open(&self.candidacy, &config.master_info).await;
        let (store, snapshot) = match opened {
            Ok(opened) => opened,
            Err(e) => return format!("cannot recover the registry from ZooKeeper: {e}"),
        };
        tracing::info!(
            agents = snapshot.agents.len(),
            frameworks = snapshot.frameworks.len(),
            "registry recovered from ZooKeeper; serving as the leading master"
        );
        let mut failed =
            dispatcher::start(rx, config, snapshot, Some(Backend::ZooKeeper(Arc::new(store))));
        self.gate.send_replace(Gate::Serving);
        let reason = loop {
            tokio::select! {
                reason = &mut failed => {
                    break reason.unwrap_or_else(|_| "the dispatcher is gone".into());
                }
                changed = self.standing.changed() => {
                    let standing = self.standing.borrow_and_update().clone();
                    match (changed, standing) {
                        (Ok(()), agora_leader::Standing::Leading { .. }) => continue,
                        (Ok(()), standing) => break format!("lost the lead: {standing:?}"),
                        (Err(_), _) => break "the election ended".into(),
                    }
                }
            }
        };
        // Refuse everything at once: whatever the dispatcher still does can no longer reach
        // the registry (its writes are fenced) and the process is about to stop.
        self.gate.send_replace(Gate::Standby { leader: None });
        reason
    }
}

/// Opens the store the options ask for and reads the registry back.
async fn open_registry(
    options: &MasterOptions,
    master_info: &v1::MasterInfo,
) -> Result<(Option<Backend>, internal::Registry), MasterError> {
    match options.registry {
        RegistryKind::InMemory => Ok((None, internal::Registry::default())),
        RegistryKind::ReplicatedLog => {
            let work_dir = options.work_dir.as_ref().ok_or(MasterError::NoWorkDir)?;
            let path = work_dir.join(registry::FILE_NAME);
            let info = master_info.clone();
            // Reading and first writing block on the disk; the runtime may be serving others.
            let (store, snapshot) =
                tokio::task::spawn_blocking(move || Store::open(&path, &info)).await??;
            Ok((Some(Backend::Embedded(Arc::new(store))), snapshot))
        }
    }
}

/// The MasterInfo clients see in SUBSCRIBED; `ip` is the raw network-order address read as a
/// little-endian integer, which is how Mesos stores it (reference §2.3).
fn master_info(options: &MasterOptions, addr: SocketAddr) -> v1::MasterInfo {
    let hostname = options.hostname.clone().unwrap_or_else(|| addr.ip().to_string());
    let ip = match addr.ip() {
        IpAddr::V4(v4) => u32::from_le_bytes(v4.octets()),
        IpAddr::V6(_) => 0,
    };
    v1::MasterInfo {
        id: uuid::Uuid::new_v4().to_string(),
        ip,
        port: u32::from(addr.port()),
        pid: Some(format!("master@{addr}")),
        hostname: Some(hostname.clone()),
        version: Some(MESOS_API_VERSION.to_string()),
        address: Some(v1::Address {
            hostname: Some(hostname),
            ip: Some(addr.ip().to_string()),
            port: i32::from(addr.port()),
        }),
        ..Default::default()
    }
}

/// The master's flags as GET_FLAGS and `/master/flags` show them: Mesos's names, values as
/// strings, durations in stout's units.
fn flags(options: &MasterOptions) -> Vec<(String, String)> {
    use agora_core::duration::format;
    let mut flags = vec![
        ("ip".to_string(), options.ip.to_string()),
        ("port".to_string(), options.port.to_string()),
        (
            "registry".to_string(),
            match options.registry {
                RegistryKind::ReplicatedLog => "replicated_log".to_string(),
                RegistryKind::InMemory => "in_memory".to_string(),
            },
        ),
        ("allocation_interval".to_string(), format(options.allocation_interval)),
        ("heartbeat_interval".to_string(), format(options.heartbeat_interval)),
        ("agent_reregister_timeout".to_string(), format(options.agent_reregister_timeout)),
        ("agent_ping_timeout".to_string(), format(options.agent_ping_timeout)),
        ("max_agent_ping_timeouts".to_string(), options.max_agent_ping_timeouts.to_string()),
    ];
    if let Some(hostname) = &options.hostname {
        flags.push(("hostname".to_string(), hostname.clone()));
    }
    if let Some(work_dir) = &options.work_dir {
        flags.push(("work_dir".to_string(), work_dir.display().to_string()));
    }
    if let Some(log_dir) = &options.log_dir {
        flags.push(("log_dir".to_string(), log_dir.display().to_string()));
    }
    flags.push((
        "max_completed_frameworks".to_string(),
        options.max_completed_frameworks.to_string(),
    ));
    flags.push((
        "max_completed_tasks_per_framework".to_string(),
        options.max_completed_tasks_per_framework.to_string(),
    ));
    flags.push((
        "max_operator_event_stream_subscribers".to_string(),
        options.max_operator_event_stream_subscribers.to_string(),
    ));
    if let Some(ha) = &options.ha {
        flags.push(("zk".to_string(), ha.zk.to_string()));
        flags.push(("quorum".to_string(), ha.quorum.to_string()));
        flags.push(("zk_session_timeout".to_string(), format(ha.session_timeout)));
    }
    if let Some(timeout) = options.offer_timeout {
        flags.push(("offer_timeout".to_string(), format(timeout)));
    }
    if !options.allocator.weights.is_empty() {
        let weights: Vec<String> =
            options.allocator.weights.iter().map(|(r, w)| format!("{r}={w}")).collect();
        flags.push(("weights".to_string(), weights.join(",")));
    }
    flags.sort();
    flags
}
