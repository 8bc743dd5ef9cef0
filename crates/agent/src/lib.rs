//! The agent daemon's IO shell: the HTTP server for executors and files, the link to the
//! master, executor processes and sandboxes, and the dispatcher that owns the
//! `agora_core::agent::Agent` state machine.
//!
//! `dispatcher.rs` is the single owner of the core and of executor streams; `master_link.rs`
//! keeps the registration stream to the master alive and sends calls in order; `launcher.rs`
//! creates sandboxes and starts, watches and kills executor processes; `fetcher.rs` fetches an
//! executor's URIs into its sandbox before it starts; `gc.rs` removes the sandboxes of ended
//! executors after `--gc_delay`; `http.rs` serves the executor API and the files API of
//! `files.rs`; `detect.rs` measures the machine; `checkpoint.rs` keeps the agent's checkpoint
//! under `<work_dir>/meta`, from which `start` recovers after a restart (reference §7.4): the
//! core rebuilds its executors, tasks and update streams, executors still alive are watched
//! and may subscribe again, and the executors of frameworks that do not checkpoint are
//! killed. `operator.rs` serves the operator API (`/api/v1`) from the core's read-only views,
//! `legacy.rs` the v0 `/state`, `/flags`, `/monitor/statistics`, `/containers` and metrics
//! endpoints, and `usage.rs` measures executors' containers from `/proc`, overlaid with their
//! cgroups' figures under cgroup isolation. `isolation.rs` runs the isolators of
//! `--isolation` with the cgroups of `cgroups.rs` (v1 and v2): limits, OOM kills reported as
//! container limitations, and the whole cgroup killed when an executor ends. Not here yet:
//! namespaces, rlimits, disk quotas, switching user.

pub mod cgroups;
pub mod checkpoint;
mod detect;
mod dispatcher;
mod fetcher;
mod files;
mod gc;
mod http;
mod isolation;
mod launcher;
mod legacy;
mod master_link;
mod operator;
mod usage;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use agora_core::agent::{AgentConfig, CommandExecutor, Liveness, Recovered};
use agora_core::attributes::{AttributeParseError, Attributes};
use agora_core::convert;
use agora_core::resources::{ParseError, Resources};
use agora_http::Server;
use agora_proto::v1;
pub use isolation::IsolationOptions;

/// The agent's log file under `--log_dir` (what `/slave/log` names).
pub const LOG_FILE: &str = "agora-agent.log";

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
    /// `--recover`: what to do with the executors a previous run left.
    pub recover: RecoverMode,
    /// `--strict`: a checkpoint record that cannot be read stops the agent (else it is
    /// skipped).
    pub strict: bool,
    /// `--executor_reregistration_timeout`: how long recovered executors have to subscribe
    /// again (Mesos: 2secs, at most 15secs).
    pub executor_reregistration_timeout: Duration,
    /// `--recovery_timeout`: how long checkpointing executors try to reach a restarting agent.
    pub recovery_timeout: Duration,
    /// A program that runs `session-exec PROGRAM ARG0 ARGS...` as a new session leader (the
    /// `agora` binary), so that an executor's whole tree can be found and killed; without
    /// one, executors only get a process group of their own.
    pub session_helper: Option<String>,
    /// `--isolation` and the cgroup flags that tune it.
    pub isolation: IsolationOptions,
    /// `--log_dir`: where the binary writes the agent's log (`LOG_FILE`), which the files API
    /// shows at `/slave/log`.
    pub log_dir: Option<PathBuf>,
    /// The process's log filter, which SET_LOGGING_LEVEL changes; the default only records
    /// the level (a daemon started in-process has no filter of its own).
    pub logging: std::sync::Arc<agora_http::Logging>,
}

/// `--recover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverMode {
    /// Reconnect to the executors still running and carry on (the default).
    Reconnect,
    /// Kill every executor a previous run left, forget the checkpoint and exit.
    Cleanup,
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
            recover: RecoverMode::Reconnect,
            strict: true,
            executor_reregistration_timeout: Duration::from_secs(2),
            recovery_timeout: Duration::from_secs(15 * 60),
            session_helper: None,
            isolation: IsolationOptions::default(),
            logging: std::sync::Arc::default(),
            log_dir: None,
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
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(
        "incompatible agent info detected: {0}. The checkpoint under {1} belongs to an agent \
         with another configuration; start it as before, or run `agora agent --recover=cleanup` \
         with the same --work_dir to end what it left running and register as a new agent"
    )]
    Incompatible(String, String),
    #[error("invalid --isolation: {0}")]
    Isolation(String),
    #[error("invalid --master: {0}")]
    Master(#[from] agora_leader::UrlError),
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
    let isolator = isolation::Isolator::new(&options.isolation).map_err(AgentError::Isolation)?;
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
    let listener = agora_http::bind(requested)
        .await
        .map_err(|source| AgentError::Bind { addr: requested, source })?;
    let addr =
        listener.local_addr().map_err(|source| AgentError::Bind { addr: requested, source })?;
    let hostname = options.hostname.clone().unwrap_or_else(|| addr.ip().to_string());
    let store = checkpoint::Store::open(&work_dir)?;
    let loaded = store.load(options.strict)?;
    let rebooted = checkpoint::boot_id_changed(&work_dir)?;
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
        executor_reregistration_timeout: options.executor_reregistration_timeout,
        recovery_timeout: options.recovery_timeout,
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
    if let Some(agent) = &loaded.agent {
        compatible(&agent.agent_info, &config.agent_info).map_err(|why| {
            AgentError::Incompatible(why, checkpoint::Store::dir(&work_dir).display().to_string())
        })?;
    }
    let recovery = recovery(loaded, rebooted);
    let masters = agora_client::leader::follow(&options.master)?;
    let handle = dispatcher::spawn(
        config,
        masters,
        backoff,
        options.gc_delay,
        fetcher,
        dispatcher::Persistence {
            store,
            recovery,
            session_helper: options.session_helper.clone(),
            isolator: std::sync::Arc::new(isolator),
        },
    );
    // Written only now, so that a crash during recovery still finds the old boot id.
    checkpoint::record_boot_id(&work_dir)?;
    let flags = flags(&options, &work_dir, addr);
    let log = options.log_dir.as_ref().map(|dir| dir.join(LOG_FILE));
    let app = http::router(handle, work_dir, log, flags, addr.to_string(), options.logging.clone());
    let server = Server::spawn(listener, app, "agent")
        .map_err(|source| AgentError::Bind { addr: requested, source })?;
    tracing::info!(%addr, master = %options.master, %resources, "agent listening");
    Ok(RunningAgent { addr, resources, server })
}

/// The agent's flags as GET_FLAGS and `/flags` show them: Mesos's names, values as strings
/// with durations in stout's spelling.
fn flags(
    options: &AgentOptions,
    work_dir: &std::path::Path,
    addr: SocketAddr,
) -> std::collections::BTreeMap<String, String> {
    use agora_core::duration::format;
    let mut flags: std::collections::BTreeMap<String, String> = [
        ("master", options.master.clone()),
        ("ip", addr.ip().to_string()),
        ("port", addr.port().to_string()),
        ("work_dir", work_dir.display().to_string()),
        ("executor_shutdown_grace_period", format(options.executor_shutdown_grace_period)),
        ("executor_registration_timeout", format(options.executor_registration_timeout)),
        ("executor_reregistration_timeout", format(options.executor_reregistration_timeout)),
        ("recovery_timeout", format(options.recovery_timeout)),
        ("gc_delay", format(options.gc_delay)),
        (
            "recover",
            match options.recover {
                RecoverMode::Reconnect => "reconnect".into(),
                RecoverMode::Cleanup => "cleanup".into(),
            },
        ),
        ("strict", options.strict.to_string()),
        ("registration_backoff_factor", format(options.registration_backoff_min)),
        ("isolation", options.isolation.isolation.clone()),
        ("cgroups_root", options.isolation.cgroups_root.clone()),
        ("cgroups_enable_cfs", options.isolation.cgroups_enable_cfs.to_string()),
        ("switch_user", options.isolation.switch_user.to_string()),
        ("container_disk_watch_interval", format(options.isolation.container_disk_watch_interval)),
        (
            "enforce_container_disk_quota",
            options.isolation.enforce_container_disk_quota.to_string(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    let optional = [
        ("hostname", options.hostname.clone()),
        ("resources", options.resources.clone()),
        ("attributes", options.attributes.clone()),
        ("fetcher_cache_dir", options.fetcher_cache_dir.as_ref().map(|p| p.display().to_string())),
        ("log_dir", options.log_dir.as_ref().map(|p| p.display().to_string())),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            flags.insert(name.to_string(), value);
        }
    }
    flags
}

/// `--recover=cleanup`: kills every executor a previous run of the agent left running (those
/// of all frameworks, by their whole sessions), waits for them to be gone, and removes the
/// checkpoint, so that the next start registers as a new agent. Returns how many were killed.
pub async fn cleanup(options: &AgentOptions) -> Result<usize, AgentError> {
    let work_dir = &options.work_dir;
    let meta = checkpoint::Store::dir(work_dir);
    if !meta.exists() {
        return Ok(0);
    }
    // Best effort: cleanup is what an operator reaches for when the checkpoint is in doubt,
    // so unreadable records are skipped rather than refused.
    let loaded = checkpoint::Store::open(work_dir)?.load(false)?;
    let rebooted = checkpoint::boot_id_changed(work_dir)?;
    let recorded: Vec<_> =
        loaded.pids.into_iter().map(|(_, pid)| pid).filter(|_| !rebooted).collect();
    let live: Vec<_> = recorded.iter().copied().filter(|pid| checkpoint::is_alive(*pid)).collect();
    // Dead executors too: what they left in their sessions goes.
    for pid in &recorded {
        launcher::kill_tree(*pid);
    }
    // SIGKILL cannot be refused; the wait only covers the kernel's own pace.
    for _ in 0..100 {
        if !live.iter().any(|pid| checkpoint::is_alive(*pid)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_dir_all(&meta)
        .map_err(|source| AgentError::WorkDir { path: meta.clone(), source })?;
    Ok(live.len())
}

/// Mesos's `equal` reconfiguration policy: a restarted agent keeps its id only with the
/// hostname, port, resources and attributes it registered with.
fn compatible(old: &v1::AgentInfo, new: &v1::AgentInfo) -> Result<(), String> {
    let differs = |what: &str, old: String, new: String| {
        Err(format!("the {what} changed from {old} to {new}"))
    };
    if old.hostname != new.hostname {
        return differs("hostname", old.hostname.clone(), new.hostname.clone());
    }
    if old.port != new.port {
        return differs("port", format!("{:?}", old.port), format!("{:?}", new.port));
    }
    let resources = |r: &[v1::Resource]| {
        convert::resources_from_proto(r).map_or_else(|e| format!("<{e}>"), |r| r.to_string())
    };
    if resources(&old.resources) != resources(&new.resources) {
        return differs("resources", resources(&old.resources), resources(&new.resources));
    }
    if old.attributes != new.attributes {
        return differs(
            "attributes",
            format!("{:?}", old.attributes),
            format!("{:?}", new.attributes),
        );
    }
    Ok(())
}

/// What the dispatcher recovers: the core's records, each executor's liveness, the processes
/// to watch, and the recorded executors that are not recovered (those of frameworks that do
/// not checkpoint, and those that ended meanwhile), which are killed with whatever they left.
fn recovery(loaded: checkpoint::Loaded, rebooted: bool) -> dispatcher::Recovery {
    let pids: std::collections::BTreeMap<_, _> = loaded.pids.into_iter().collect();
    let mut live = Vec::new();
    let mut executors = Vec::new();
    for record in loaded.executors {
        let key = (record.framework_id.clone(), record.executor_info.executor_id.value.clone());
        // After a reboot a recorded pid names some other process, if any.
        let pid = pids.get(&key).copied().filter(|pid| !rebooted && checkpoint::is_alive(*pid));
        let liveness = match pid {
            Some(pid) => {
                live.push((key, pid));
                Liveness::Alive
            }
            None => Liveness::Gone,
        };
        executors.push((record, liveness));
    }
    let dead: Vec<_> =
        pids.into_iter().filter(|(key, _)| !live.iter().any(|(k, _)| k == key)).collect();
    // After a reboot nothing of the last run is left, and the numbers name other processes.
    let orphans = dead.iter().filter(|_| !rebooted).map(|(_, pid)| *pid).collect();
    let forget = dead.into_iter().map(|(key, _)| key).collect();
    dispatcher::Recovery {
        recovered: Recovered {
            agent: loaded.agent,
            frameworks: loaded.frameworks,
            executors,
            tasks: loaded.tasks,
            rebooted,
        },
        live,
        orphans,
        forget,
    }
}

/// Seeds the core's uuid generator from the operating system's randomness.
fn rand_seed() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}
