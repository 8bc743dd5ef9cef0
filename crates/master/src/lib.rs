//! The master daemon's IO shell: it binds the HTTP server, runs the dispatcher that owns the
//! `agora_core::master::Master` state machine, and turns timers into inputs.
//!
//! `http.rs` decodes requests and maps refusals to status codes; `dispatcher.rs` is the single
//! owner of the core and of every open stream. The shell keeps no state of its own beyond
//! connection plumbing. Not here yet: the registry (nothing persists), ZooKeeper election,
//! the operator API and the legacy state endpoints.

mod dispatcher;
mod http;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use agora_core::allocator::AllocatorConfig;
use agora_core::master::MasterConfig;
use agora_http::Server;
use agora_proto::v1;
use tokio::net::TcpListener;

/// The Mesos release whose API this master speaks; `/version` reports it because clients such
/// as pymesos parse it as dotted numbers.
pub const MESOS_API_VERSION: &str = "1.11.0";

/// How to run a master; the `agora` binary fills this from Mesos-named flags.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    pub ip: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Advertised hostname; defaults to the IP.
    pub hostname: Option<String>,
    pub work_dir: PathBuf,
    pub allocation_interval: Duration,
    pub heartbeat_interval: Duration,
    /// `--offer_timeout`: rescind offers not answered within this.
    pub offer_timeout: Option<Duration>,
    pub allocator: AllocatorConfig,
}

impl MasterOptions {
    pub fn new(ip: IpAddr, port: u16, work_dir: PathBuf) -> Self {
        Self {
            ip,
            port,
            hostname: None,
            work_dir,
            allocation_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            allocator: AllocatorConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot create work directory {path}: {source}")]
    WorkDir { path: PathBuf, source: std::io::Error },
}

/// A master that is serving; dropping it does not stop it, `shutdown` does.
pub struct RunningMaster {
    pub addr: SocketAddr,
    pub master_info: v1::MasterInfo,
    server: Server,
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
}

/// Binds, starts the dispatcher and serves until `shutdown`.
pub async fn start(options: MasterOptions) -> Result<RunningMaster, MasterError> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|source| MasterError::WorkDir { path: options.work_dir.clone(), source })?;
    let requested = SocketAddr::new(options.ip, options.port);
    let listener = TcpListener::bind(requested)
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
        max_completed_tasks_per_framework: 1000,
        max_completed_frameworks: 50,
    };
    let handle = dispatcher::spawn(config);
    let app = http::router(handle);
    let server = Server::spawn(listener, app, "master")
        .map_err(|source| MasterError::Bind { addr: requested, source })?;
    tracing::info!(%addr, id = %master_info.id, "master listening");
    Ok(RunningMaster { addr, master_info, server })
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
