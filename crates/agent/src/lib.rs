//! The agent daemon's IO shell: the HTTP server for executors and files, the link to the
//! master, executor processes and sandboxes, and the dispatcher that owns the
//! `agora_core::agent::Agent` state machine.
//!
//! `dispatcher.rs` is the single owner of the core and of executor streams; `master_link.rs`
//! keeps the registration stream to the master alive and sends calls in order; `launcher.rs`
//! creates sandboxes and starts, watches and kills executor processes; `fetcher.rs` fetches an
//! executor's URIs into its sandbox before it starts; `gc.rs` removes the sandboxes of ended
//! executors after `--gc_delay`; `http.rs` serves the executor API and the files API of
//! `files.rs`; `detect.rs` measures the machine. Not here yet: checkpointing and recovery,
//! cgroups and namespaces.

mod detect;
mod dispatcher;
mod fetcher;
mod files;
mod gc;
mod http;
mod launcher;
mod master_link;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use agora_core::agent::{AgentConfig, CommandExecutor};
use agora_core::attributes::{AttributeParseError, Attributes};
use agora_core::convert;
use agora_core::resources::{ParseError, Resources};
use agora_http::Server;
use agora_proto::v1;
use tokio::net::TcpListener;

/// How to run an agent; the `agora` binary fills this from Mesos-named flags.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `host:port` of the master.
    pub master: String,
    pub ip: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Advertised hostname; defaults to the IP.
    pub hostname: Option<String>,
    pub work_dir: PathBuf,
    /// `--resources`; what it leaves out is detected.
    pub resources: Option<String>,
    /// `--attributes`.
    pub attributes: Option<String>,
    pub executor_shutdown_grace_period: Duration,
    /// `--executor_registration_timeout`: how long an executor has to subscribe.
    pub executor_registration_timeout: Duration,
    pub status_update_retry_min: Duration,
    pub status_update_retry_max: Duration,
    /// First wait before registering again after a failed attempt or a lost master; doubles
    /// up to `registration_backoff_max`.
    pub registration_backoff_min: Duration,
    pub registration_backoff_max: Duration,
    /// How to start the command executor.
    pub command_executor: CommandExecutor,
    /// How to start the default executor (for task groups whose ExecutorInfo has type DEFAULT).
    pub default_executor: CommandExecutor,
    /// `--gc_delay`: how long a sandbox stays after its executor ended (Mesos: 1 week).
    pub gc_delay: Duration,
    /// `--fetcher_cache_dir`: where URIs with `cache` set are kept; `<work_dir>/fetch` if unset.
    pub fetcher_cache_dir: Option<PathBuf>,
}

impl AgentOptions {
    pub fn new(
        master: String,
        ip: IpAddr,
        port: u16,
        work_dir: PathBuf,
        command_executor: CommandExecutor,
        default_executor: CommandExecutor,
    ) -> Self {
        Self {
            master,
            ip,
            port,
            hostname: None,
            work_dir,
            resources: None,
            attributes: None,
            executor_shutdown_grace_period: Duration::from_secs(5),
            executor_registration_timeout: Duration::from_secs(60),
            status_update_retry_min: Duration::from_secs(10),
            status_update_retry_max: Duration::from_secs(600),
            registration_backoff_min: Duration::from_millis(100),
            registration_backoff_max: Duration::from_secs(10),
            command_executor,
            default_executor,
            gc_delay: Duration::from_secs(7 * 24 * 3600),
            fetcher_cache_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid --resources: {0}")]
    Resources(#[from] ParseError),
    #[error("invalid --attributes: {0}")]
    Attributes(#[from] AttributeParseError),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot use work directory {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
    #[error("cannot set up the fetcher's HTTP client: {0}")]
    Fetcher(#[source] reqwest::Error),
}

/// An agent that is serving.
pub struct RunningAgent {
    pub addr: SocketAddr,
    pub resources: Resources,
    server: Server,
}

impl RunningAgent {
    /// Stops serving. Executors keep running; without checkpointing they exit on their own
    /// once their stream to the agent breaks. (Losing the master, by contrast, stops nothing.)
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Waits until the server stops by itself (it does not, short of an error).
    pub async fn wait(self) {
        self.server.wait().await;
    }
}

/// Checks the flags, binds, registers with the master and serves.
pub async fn start(options: AgentOptions) -> Result<RunningAgent, AgentError> {
    let given = match &options.resources {
        Some(text) => Resources::parse(text)?,
        None => Resources::new(),
    };
    let attributes = match &options.attributes {
        Some(text) => Attributes::parse(text)?,
        None => Attributes::default(),
    };
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|source| AgentError::WorkDir { path: options.work_dir.clone(), source })?;
    let work_dir = std::fs::canonicalize(&options.work_dir)
        .map_err(|source| AgentError::WorkDir { path: options.work_dir.clone(), source })?;
    let resources = given.with_defaults(&detect::resources(&work_dir));

    let requested = SocketAddr::new(options.ip, options.port);
    let listener = TcpListener::bind(requested)
        .await
        .map_err(|source| AgentError::Bind { addr: requested, source })?;
    let addr =
        listener.local_addr().map_err(|source| AgentError::Bind { addr: requested, source })?;
    let hostname = options.hostname.clone().unwrap_or_else(|| addr.ip().to_string());
    let config = AgentConfig {
        agent_info: v1::AgentInfo {
            hostname,
            port: Some(i32::from(addr.port())),
            resources: convert::resources_to_proto(&resources, None),
            attributes: convert::attributes_to_proto(&attributes),
            ..Default::default()
        },
        endpoint: addr.to_string(),
        work_dir: work_dir.to_string_lossy().into_owned(),
        command_executor: options.command_executor.clone(),
        default_executor: options.default_executor.clone(),
        executor_shutdown_grace_period: options.executor_shutdown_grace_period,
        executor_registration_timeout: options.executor_registration_timeout,
        status_update_retry_min: options.status_update_retry_min,
        status_update_retry_max: options.status_update_retry_max,
        seed: rand_seed(),
    };
    let backoff = master_link::Backoff {
        min: options.registration_backoff_min,
        max: options.registration_backoff_max,
    };
    let cache_dir = options.fetcher_cache_dir.clone().unwrap_or_else(|| work_dir.join("fetch"));
    let fetcher = fetcher::Fetcher::new(cache_dir).map_err(AgentError::Fetcher)?;
    let handle =
        dispatcher::spawn(config, options.master.clone(), backoff, options.gc_delay, fetcher);
    let app = http::router(handle, work_dir);
    let server = Server::spawn(listener, app, "agent")
        .map_err(|source| AgentError::Bind { addr: requested, source })?;
    tracing::info!(%addr, master = %options.master, %resources, "agent listening");
    Ok(RunningAgent { addr, resources, server })
}

/// Seeds the core's uuid generator from the operating system's randomness.
fn rand_seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}
