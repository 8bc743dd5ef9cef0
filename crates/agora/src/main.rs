//! The `agora` binary: `agora master`, `agora agent`, `agora dev` (both on one machine),
//! `agora execute` (run one command on the cluster), the git-like operator commands (`agora
//! agent list`, `agora task log`, `agora events`, ...: `cli.rs`), `agora completions`, and the
//! hidden `agora executor` mode the agent starts as its command executor (and, with
//! `--default`, as its default executor for task groups).
//!
//! Flags carry Mesos's names (`--work_dir`, `--resources`, ...) so existing configurations carry
//! over; the kebab-case spellings are accepted too. This file only parses flags and wires the
//! daemons together; the daemons live in their own crates.

mod cli;
mod execute;
mod launch;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agora_agent::AgentOptions;
use agora_core::agent::CommandExecutor;
use agora_core::resources::Resources;
use agora_master::{MasterOptions, RegistryKind};
use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agora", version, about = "A cluster resource manager in the Apache Mesos family")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a master.
    Master(MasterFlags),
    /// Run an agent (with flags), or `agora agent list` the agents of a cluster.
    Agent(AgentArgs),
    /// Run a master and one agent on this machine, with defaults that just work.
    Dev(DevFlags),
    /// Run one command as a task on the cluster, print its output and exit with its status.
    Execute(execute::ExecuteFlags),
    /// The frameworks of a cluster.
    #[command(subcommand)]
    Framework(cli::FrameworkCommand),
    /// The tasks of a cluster: list, show, log, ls, kill.
    #[command(subcommand)]
    Task(cli::TaskCommand),
    /// The roles of a cluster.
    #[command(subcommand)]
    Role(cli::RoleCommand),
    /// The quota of roles.
    #[command(subcommand)]
    Quota(cli::QuotaCommand),
    /// Reserve resources of an agent for a role (dynamic reservation).
    Reserve(cli::ReserveArgs),
    /// Release a role's dynamic reservation of an agent's resources.
    Unreserve(cli::ReserveArgs),
    /// Print the master's events live (agents, frameworks and tasks coming and going).
    Events(cli::EventsArgs),
    /// Print a shell completion script: `agora completions bash > /etc/bash_completion.d/agora`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// The executors the agent starts: the command executor for command tasks, with
    /// `--default` the default executor for task groups (not for direct use).
    #[command(hide = true)]
    Executor(ExecutorFlags),
    /// Runs PROGRAM with ARG0 as its argv[0] as the leader of a new session (the agent starts
    /// executors through it, so that their whole tree can be killed; not for direct use).
    #[command(name = "session-exec", hide = true)]
    SessionExec(launch::SessionExecFlags),
}

#[derive(Args, Clone)]
struct ExecutorFlags {
    /// Run as the default executor, which runs task groups, instead of the command executor.
    #[arg(long)]
    default: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    agora_core::duration::parse(text).map_err(|e| e.to_string())
}

#[derive(Args, Clone)]
struct MasterFlags {
    /// IP address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 5050)]
    port: u16,
    /// Hostname to advertise (defaults to the IP).
    #[arg(long)]
    hostname: Option<String>,
    /// Directory for the master's persistent state (its registry); required with
    /// `--registry=replicated_log`.
    #[arg(long = "work_dir", alias = "work-dir")]
    work_dir: Option<PathBuf>,
    /// Where the registry lives: `replicated_log` (a store under --work_dir that survives
    /// restarts) or `in_memory` (nothing survives the process).
    #[arg(long, value_enum, default_value_t = RegistryFlag::ReplicatedLog)]
    registry: RegistryFlag,
    /// High availability: `zk://host:port[,host:port...]/path`. Masters given the same URL
    /// elect one leader through ZooKeeper, which also holds the registry; the others redirect
    /// to it.
    #[arg(long)]
    zk: Option<agora_leader::ZkUrl>,
    /// With --zk: how many masters (the leader included) must be in the election before the
    /// elected one recovers; Mesos's replicated log quorum.
    #[arg(long, default_value_t = 1)]
    quorum: usize,
    /// With --zk: the ZooKeeper session timeout; a leader cut off from ZooKeeper for longer
    /// stops.
    #[arg(long = "zk_session_timeout", alias = "zk-session-timeout", default_value = "10secs", value_parser = duration)]
    zk_session_timeout: Duration,
    #[command(flatten)]
    timing: MasterTiming,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RegistryFlag {
    #[value(name = "replicated_log")]
    ReplicatedLog,
    #[value(name = "in_memory")]
    InMemory,
}

#[derive(Args, Clone)]
struct MasterTiming {
    /// Time between allocation cycles.
    #[arg(long = "allocation_interval", alias = "allocation-interval", default_value = "1secs", value_parser = duration)]
    allocation_interval: Duration,
    /// Time between HEARTBEAT events on subscription streams (Mesos uses 15secs).
    #[arg(long = "heartbeat_interval", alias = "heartbeat-interval", default_value = "15secs", value_parser = duration)]
    heartbeat_interval: Duration,
    /// How long agents have to re-register after a master restart before they count as
    /// unreachable.
    #[arg(long = "agent_reregister_timeout", alias = "agent-reregister-timeout", default_value = "10mins", value_parser = duration)]
    agent_reregister_timeout: Duration,
    /// Time between pings of each agent; an unanswered ping counts as a miss.
    #[arg(long = "agent_ping_timeout", alias = "agent-ping-timeout", default_value = "15secs", value_parser = duration)]
    agent_ping_timeout: Duration,
    /// Missed pings in a row after which an agent is unreachable.
    #[arg(
        long = "max_agent_ping_timeouts",
        alias = "max-agent-ping-timeouts",
        default_value_t = 5
    )]
    max_agent_ping_timeouts: u32,
    /// Rescind offers a framework has not answered within this (Mesos: none).
    #[arg(long = "offer_timeout", alias = "offer-timeout", value_parser = duration)]
    offer_timeout: Option<Duration>,
    /// Role weights, e.g. `ads=2,eng/web=0.5` (Mesos's deprecated `--weights`).
    #[arg(long, value_parser = weights)]
    weights: Option<Weights>,
    /// What an offer must hold at least: `;` joins quantities, `|` separates alternatives.
    #[arg(long = "min_allocatable_resources", alias = "min-allocatable-resources", value_parser = min_allocatable)]
    min_allocatable_resources: Option<MinAllocatable>,
    /// Directory the master writes its log to (`agora-master.log`, also on stderr); the files
    /// API shows it at `/master/log`.
    #[arg(long = "log_dir", alias = "log-dir")]
    log_dir: Option<PathBuf>,
    /// How many torn-down frameworks the state endpoints keep.
    #[arg(
        long = "max_completed_frameworks",
        alias = "max-completed-frameworks",
        default_value_t = 50
    )]
    max_completed_frameworks: usize,
    /// How many completed tasks the state endpoints keep per framework.
    #[arg(
        long = "max_completed_tasks_per_framework",
        alias = "max-completed-tasks-per-framework",
        default_value_t = 1000
    )]
    max_completed_tasks_per_framework: usize,
    /// How many operator event stream subscribers at most; the oldest goes when one more
    /// subscribes.
    #[arg(
        long = "max_operator_event_stream_subscribers",
        alias = "max-operator-event-stream-subscribers",
        default_value_t = 1000
    )]
    max_operator_event_stream_subscribers: usize,
}

/// Parsed `--weights` (a newtype, so that clap treats it as one value and not a list).
#[derive(Debug, Clone)]
struct Weights(BTreeMap<String, f64>);

/// Parsed `--min_allocatable_resources`, one entry per `|` alternative.
#[derive(Debug, Clone)]
struct MinAllocatable(Vec<Resources>);

/// `role=weight,...` with positive finite weights.
fn weights(text: &str) -> Result<Weights, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').filter(|i| !i.trim().is_empty()) {
        let (role, weight) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not of the form role=weight"))?;
        let weight: f64 =
            weight.trim().parse().map_err(|_| format!("weight '{weight}' is not a number"))?;
        if !weight.is_finite() || weight <= 0.0 {
            return Err(format!("weight of role '{role}' must be positive"));
        }
        out.insert(role.trim().to_string(), weight);
    }
    Ok(Weights(out))
}

/// `cpus:0.01|mem:32` (alternatives) where each alternative is `name:quantity;...`.
fn min_allocatable(text: &str) -> Result<MinAllocatable, String> {
    text.split('|')
        .map(|alt| Resources::parse(alt).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(MinAllocatable)
}

/// `agora agent`: a daemon when given flags, an operator command when given a subcommand.
#[derive(Args, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct AgentArgs {
    #[command(subcommand)]
    command: Option<cli::AgentCommand>,
    #[command(flatten)]
    daemon: AgentFlags,
}

#[derive(Args, Clone)]
struct AgentFlags {
    /// The master, as `host:port`.
    // Optional only in type: clap requires it unless a subcommand (`agora agent list`) is given.
    #[arg(long, required = true)]
    master: Option<String>,
    /// IP address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 5051)]
    port: u16,
    /// Hostname to advertise (defaults to the IP).
    #[arg(long)]
    hostname: Option<String>,
    /// Directory for sandboxes and the agent's state.
    #[arg(long = "work_dir", alias = "work-dir", required = true)]
    work_dir: Option<PathBuf>,
    /// Directory the agent writes its log to (`agora-agent.log`, also on stderr); the files
    /// API shows it at `/slave/log`.
    #[arg(long = "log_dir", alias = "log-dir")]
    log_dir: Option<PathBuf>,
    #[command(flatten)]
    shape: AgentShape,
}

#[derive(Args, Clone)]
struct AgentShape {
    /// Resources to offer, e.g. `cpus:4;mem:1024;ports:[31000-32000]`; the rest is detected.
    #[arg(long)]
    resources: Option<String>,
    /// Attributes, e.g. `rack:r1;zone:a`.
    #[arg(long)]
    attributes: Option<String>,
    /// Time an executor gets to shut down before it is killed.
    #[arg(long = "executor_shutdown_grace_period", alias = "executor-shutdown-grace-period", default_value = "5secs", value_parser = duration)]
    executor_shutdown_grace_period: Duration,
    /// Time an executor has to subscribe before it is killed and its tasks fail.
    #[arg(long = "executor_registration_timeout", alias = "executor-registration-timeout", default_value = "1mins", value_parser = duration)]
    executor_registration_timeout: Duration,
    /// First retry of an unacknowledged status update (doubles up to 10mins; Mesos: 10secs).
    #[arg(long = "status_update_retry_interval", alias = "status-update-retry-interval", default_value = "10secs", value_parser = duration)]
    status_update_retry_interval: Duration,
    /// First wait before registering with the master again after a failed attempt or a lost
    /// master; it doubles up to --registration_backoff_max.
    #[arg(long = "registration_backoff_factor", alias = "registration-backoff-factor", default_value = "100ms", value_parser = duration)]
    registration_backoff_factor: Duration,
    /// How long the sandbox of an ended executor stays before it is removed.
    #[arg(long = "gc_delay", alias = "gc-delay", default_value = "1weeks", value_parser = duration)]
    gc_delay: Duration,
    /// Longest wait between registration attempts.
    #[arg(long = "registration_backoff_max", alias = "registration-backoff-max", default_value = "10secs", value_parser = duration)]
    registration_backoff_max: Duration,
    /// Where fetched URIs with `cache` set are kept (default: `fetch` under the agent's
    /// --work_dir).
    #[arg(long = "fetcher_cache_dir", alias = "fetcher-cache-dir")]
    fetcher_cache_dir: Option<PathBuf>,
    /// What to do with the executors a previous run of the agent left: `reconnect` to them, or
    /// `cleanup` (kill them all, forget the checkpoint and exit).
    #[arg(long, default_value = "reconnect", value_parser = ["reconnect", "cleanup"])]
    recover: String,
    /// Refuse to start when a checkpoint record cannot be read (`--strict=false` skips it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    strict: bool,
    /// How long executors found running after a restart have to subscribe again (at most
    /// 15secs, as in Mesos).
    #[arg(long = "executor_reregistration_timeout", alias = "executor-reregistration-timeout", default_value = "2secs", value_parser = reregistration_timeout)]
    executor_reregistration_timeout: Duration,
    /// How long executors of checkpointing frameworks keep trying to reach a restarting agent.
    #[arg(long = "recovery_timeout", alias = "recovery-timeout", default_value = "15mins", value_parser = duration)]
    recovery_timeout: Duration,
    /// Isolators, comma-separated, by Mesos's names: `posix/cpu`, `posix/mem` (usage only),
    /// `cgroups/cpu`, `cgroups/mem`, `cgroups/pids`, `cgroups/all`, `namespaces/pid`,
    /// `posix/rlimits`, `filesystem/posix`, `disk/du`.
    #[arg(long, default_value = "posix/cpu,posix/mem")]
    isolation: String,
    /// The directory under each cgroup hierarchy that holds containers' cgroups.
    #[arg(long = "cgroups_root", alias = "cgroups-root", default_value = "agora")]
    cgroups_root: String,
    /// With cgroups/cpu, cap each container at its cpus with a CFS quota (not only shares).
    #[arg(long = "cgroups_enable_cfs", alias = "cgroups-enable-cfs", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    cgroups_enable_cfs: bool,
    /// With cgroups/pids, the most processes and threads a container may have (not a Mesos
    /// flag; default: unlimited, only counted).
    #[arg(long = "cgroups_pids_max", alias = "cgroups-pids-max")]
    cgroups_pids_max: Option<u64>,
    /// Run each executor as its command's user, else its framework's (the agent must be
    /// root; an unknown user fails the task).
    #[arg(long = "switch_user", alias = "switch-user", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    switch_user: bool,
    /// With disk/du, how often each container's sandbox is measured.
    #[arg(long = "container_disk_watch_interval", alias = "container-disk-watch-interval", default_value = "15secs", value_parser = duration)]
    container_disk_watch_interval: Duration,
    /// With disk/du, kill a container whose sandbox grows past its disk.
    #[arg(long = "enforce_container_disk_quota", alias = "enforce-container-disk-quota", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    enforce_container_disk_quota: bool,
}

fn reregistration_timeout(text: &str) -> Result<Duration, String> {
    let value = duration(text)?;
    if value > Duration::from_secs(15) {
        return Err(format!("{text} is above the 15secs Mesos allows"));
    }
    Ok(value)
}

#[derive(Args, Clone)]
struct DevFlags {
    /// IP address both daemons listen on.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Master port (0 picks a free one).
    #[arg(long, default_value_t = 5050)]
    port: u16,
    /// Agent port (0 picks a free one).
    #[arg(long = "agent_port", alias = "agent-port", default_value_t = 5051)]
    agent_port: u16,
    /// Directory for both daemons' state (default: a directory under the system temp dir).
    #[arg(long = "work_dir", alias = "work-dir")]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    timing: MasterTiming,
    #[command(flatten)]
    shape: AgentShape,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::SessionExec(flags) = cli.command {
        return launch::session_exec(flags);
    }
    if let Command::Executor(flags) = &cli.command {
        // The executor's stderr is the sandbox's; it logs there plainly.
        let default = flags.default;
        return runtime().block_on(async move {
            let code = if default {
                agora_executor::run_default_executor().await
            } else {
                agora_executor::run_command_executor().await
            };
            exit_code(code)
        });
    }
    let command = match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "agora", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Agent(AgentArgs { command: Some(command), .. }) => {
            return run_cli(cli::Verb::Agent(command));
        }
        Command::Framework(command) => return run_cli(cli::Verb::Framework(command)),
        Command::Task(command) => return run_cli(cli::Verb::Task(command)),
        Command::Role(command) => return run_cli(cli::Verb::Role(command)),
        Command::Quota(command) => return run_cli(cli::Verb::Quota(command)),
        Command::Reserve(args) => return run_cli(cli::Verb::Reserve(args)),
        Command::Unreserve(args) => return run_cli(cli::Verb::Unreserve(args)),
        Command::Events(args) => return run_cli(cli::Verb::Events(args)),
        daemon => daemon,
    };
    let log_file = match &command {
        Command::Master(flags) => flags.timing.log_dir.clone().map(|d| (d, agora_master::LOG_FILE)),
        Command::Dev(flags) => flags.timing.log_dir.clone().map(|d| (d, agora_master::LOG_FILE)),
        Command::Agent(args) => args.daemon.log_dir.clone().map(|d| (d, agora_agent::LOG_FILE)),
        _ => None,
    };
    let logging = match init_tracing(log_file) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("agora: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime().block_on(async move {
        match command {
            Command::Master(flags) => run_master(flags, logging).await,
            Command::Agent(args) => run_agent(args.daemon, logging).await,
            Command::Dev(flags) => run_dev(flags, logging).await,
            Command::Execute(flags) => return execute::run(flags).await.map(exit_code),
            // The executor modes and the operator commands were dispatched above.
            _ => Ok(()),
        }
        .map(|()| ExitCode::SUCCESS)
    });
    result.unwrap_or_else(|e| {
        eprintln!("agora: {e:#}");
        ExitCode::FAILURE
    })
}

/// Runs an operator command. They print for people and scripts, so the daemons' logs (which
/// would be noise there) stay off.
fn run_cli(verb: cli::Verb) -> ExitCode {
    runtime().block_on(cli::run(verb)).unwrap_or_else(|e| {
        eprintln!("agora: {e:#}");
        ExitCode::FAILURE
    })
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds on any supported platform")
}

/// Logs to stderr and, with a log directory, to the daemon's log file there too; the filter
/// (`AGORA_LOG`, else `info`) can be replaced at run time through the returned `Logging`,
/// which SET_LOGGING_LEVEL uses.
fn init_tracing(log_file: Option<(PathBuf, &str)>) -> anyhow::Result<Arc<agora_http::Logging>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = std::env::var("AGORA_LOG")
        .ok()
        .filter(|d| tracing_subscriber::EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| "info".to_string());
    let (filter, handle) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new(&default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let file = match log_file {
        None => None,
        Some((dir, name)) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create --log_dir {}", dir.display()))?;
            let path = dir.join(name);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            Some(tracing_subscriber::fmt::layer().with_writer(Arc::new(file)).with_ansi(false))
        }
    };
    tracing_subscriber::registry().with(filter).with(stderr).with(file).init();
    let reload: agora_http::logging::Reload = Box::new(move |directives: &str| {
        let filter =
            tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    Ok(Arc::new(agora_http::Logging::new(default, Some(reload))))
}

fn master_options(
    ip: IpAddr,
    port: u16,
    hostname: Option<String>,
    work_dir: Option<PathBuf>,
    registry: RegistryFlag,
    timing: &MasterTiming,
) -> MasterOptions {
    let mut options = MasterOptions::new(ip, port, PathBuf::new());
    options.work_dir = work_dir;
    options.registry = match registry {
        RegistryFlag::ReplicatedLog => RegistryKind::ReplicatedLog,
        RegistryFlag::InMemory => RegistryKind::InMemory,
    };
    options.hostname = hostname;
    options.allocation_interval = timing.allocation_interval;
    options.heartbeat_interval = timing.heartbeat_interval;
    options.offer_timeout = timing.offer_timeout;
    if let Some(weights) = &timing.weights {
        options.allocator.weights = weights.0.clone();
    }
    if let Some(min) = &timing.min_allocatable_resources {
        options.allocator.min_allocatable = min.0.clone();
    }
    options.agent_reregister_timeout = timing.agent_reregister_timeout;
    options.agent_ping_timeout = timing.agent_ping_timeout;
    options.max_agent_ping_timeouts = timing.max_agent_ping_timeouts;
    options.log_dir = timing.log_dir.clone();
    options.max_completed_frameworks = timing.max_completed_frameworks;
    options.max_completed_tasks_per_framework = timing.max_completed_tasks_per_framework;
    options.max_operator_event_stream_subscribers = timing.max_operator_event_stream_subscribers;
    options
}

fn agent_options(
    master: String,
    ip: IpAddr,
    port: u16,
    hostname: Option<String>,
    work_dir: PathBuf,
    shape: AgentShape,
) -> anyhow::Result<AgentOptions> {
    let program = std::env::current_exe()
        .context("cannot find the agora binary for the built-in executors")?
        .to_string_lossy()
        .into_owned();
    let program_path = program.clone();
    // Both built-in executors are this very binary in its hidden executor mode.
    let command_executor = CommandExecutor {
        program: program.clone(),
        arguments: vec!["agora".into(), "executor".into()],
    };
    let default_executor = CommandExecutor {
        program,
        arguments: vec!["agora".into(), "executor".into(), "--default".into()],
    };
    let mut options =
        AgentOptions::new(master, ip, port, work_dir, command_executor, default_executor);
    options.hostname = hostname;
    options.resources = shape.resources;
    options.attributes = shape.attributes;
    options.executor_shutdown_grace_period = shape.executor_shutdown_grace_period;
    options.executor_registration_timeout = shape.executor_registration_timeout;
    options.status_update_retry_min = shape.status_update_retry_interval;
    options.gc_delay = shape.gc_delay;
    options.registration_backoff_min = shape.registration_backoff_factor;
    options.registration_backoff_max =
        shape.registration_backoff_max.max(shape.registration_backoff_factor);
    options.fetcher_cache_dir = shape.fetcher_cache_dir;
    options.recover = if shape.recover == "cleanup" {
        agora_agent::RecoverMode::Cleanup
    } else {
        agora_agent::RecoverMode::Reconnect
    };
    options.strict = shape.strict;
    options.executor_reregistration_timeout = shape.executor_reregistration_timeout;
    options.recovery_timeout = shape.recovery_timeout;
    options.session_helper = Some(program_path);
    options.isolation = agora_agent::IsolationOptions {
        isolation: shape.isolation,
        cgroups_root: shape.cgroups_root,
        cgroups_enable_cfs: shape.cgroups_enable_cfs,
        cgroups_pids_max: shape.cgroups_pids_max,
        switch_user: shape.switch_user,
        container_disk_watch_interval: shape.container_disk_watch_interval,
        enforce_container_disk_quota: shape.enforce_container_disk_quota,
    };
    Ok(options)
}

async fn run_master(flags: MasterFlags, logging: Arc<agora_http::Logging>) -> anyhow::Result<()> {
    let mut options = master_options(
        flags.ip,
        flags.port,
        flags.hostname,
        flags.work_dir,
        flags.registry,
        &flags.timing,
    );
    options.logging = logging;
    let mut options = options;
    if let Some(zk) = flags.zk {
        anyhow::ensure!(flags.quorum >= 1, "--quorum must be at least 1");
        options.ha = Some(agora_master::HaOptions {
            zk,
            quorum: flags.quorum,
            session_timeout: flags.zk_session_timeout,
        });
    }
    let ha = options.ha.is_some();
    let mut master = agora_master::start(options).await?;
    println!("agora master listening on http://{} (id {})", master.addr, master.master_info.id);
    if ha {
        println!("agora master registry: in ZooKeeper, read once elected");
    } else {
        let (agents, frameworks) = master.recovered;
        println!("agora master registry: {agents} agents, {frameworks} frameworks");
    }
    tokio::select! {
        _ = wait_for_signal() => {}
        reason = master.failed() => anyhow::bail!("the master failed: {reason}"),
    }
    master.shutdown().await;
    Ok(())
}

async fn run_agent(flags: AgentFlags, logging: Arc<agora_http::Logging>) -> anyhow::Result<()> {
    let (Some(master), Some(work_dir)) = (flags.master, flags.work_dir) else {
        anyhow::bail!("an agent needs --master and --work_dir");
    };
    let mut options =
        agent_options(master, flags.ip, flags.port, flags.hostname, work_dir, flags.shape)?;
    options.logging = logging;
    options.log_dir = flags.log_dir;
    if options.recover == agora_agent::RecoverMode::Cleanup {
        let killed = agora_agent::cleanup(&options).await?;
        println!(
            "agora agent: recovery cleanup killed {killed} executors and removed the checkpoint"
        );
        return Ok(());
    }
    let agent = agora_agent::start(options).await?;
    println!("agora agent listening on http://{} (resources {})", agent.addr, agent.resources);
    wait_for_signal().await;
    agent.shutdown().await;
    Ok(())
}

async fn run_dev(flags: DevFlags, logging: Arc<agora_http::Logging>) -> anyhow::Result<()> {
    let work_dir = flags.work_dir.unwrap_or_else(|| std::env::temp_dir().join("agora-dev"));
    // The registry persists under the dev work directory, like a real master's.
    let mut master_options = master_options(
        flags.ip,
        flags.port,
        None,
        Some(work_dir.join("master")),
        RegistryFlag::ReplicatedLog,
        &flags.timing,
    );
    // One process, one log filter: both daemons' SET_LOGGING_LEVEL change it.
    master_options.logging = Arc::clone(&logging);
    let agent_shape = flags.shape.clone();
    let mut master = agora_master::start(master_options).await?;
    let mut agent_options = agent_options(
        master.addr.to_string(),
        flags.ip,
        flags.agent_port,
        None,
        work_dir.join("agent"),
        agent_shape,
    )?;
    agent_options.logging = logging;
    let agent = match agora_agent::start(agent_options).await {
        Ok(agent) => agent,
        Err(e) => {
            master.shutdown().await;
            return Err(e.into());
        }
    };
    println!("agora master listening on http://{} (id {})", master.addr, master.master_info.id);
    println!("agora agent listening on http://{} (resources {})", agent.addr, agent.resources);
    println!("agora work directory: {}", work_dir.display());
    println!("try: agora execute --master {} --name hello --command 'echo hi'", master.addr);
    let failed = tokio::select! {
        _ = wait_for_signal() => None,
        reason = master.failed() => Some(reason),
    };
    agent.shutdown().await;
    if let Some(reason) = failed {
        anyhow::bail!("the master failed: {reason}");
    }
    master.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail in a fresh runtime");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("agora").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn agent_is_a_daemon_with_flags_and_an_operator_command_with_a_subcommand() {
        let daemon =
            parse(&["agent", "--master", "m:5050", "--work_dir", "/tmp/w"]).expect("daemon");
        assert!(matches!(
            daemon.command,
            Command::Agent(AgentArgs { command: None, daemon: AgentFlags { master: Some(_), .. } })
        ));
        let list = parse(&["agent", "list", "--master", "m:1", "--json"]).expect("list");
        let Command::Agent(AgentArgs { command: Some(cli::AgentCommand::List(read)), .. }) =
            list.command
        else {
            panic!("agent list parses as the operator command");
        };
        assert_eq!(
            format!("{read:?}"),
            r#"ReadArgs { target: Target { master: "m:1" }, json: true }"#
        );
        // The daemon still needs its flags, and the two forms do not mix.
        assert!(parse(&["agent", "--work_dir", "/tmp/w"]).is_err());
        assert!(parse(&["agent", "--master", "m:5050", "list"]).is_err());
    }

    #[test]
    fn operator_commands_parse() {
        for args in [
            &["task", "list", "--all"][..],
            &["task", "show", "t1", "--json"],
            &["task", "log", "t1", "--stderr", "--follow"],
            &["task", "ls", "t1", "sub/dir"],
            &["task", "kill", "t1"],
            &["framework", "list", "--all", "--json"],
            &["framework", "teardown", "f1"],
            &["role", "list"],
            &["quota", "get", "eng"],
            &["quota", "set", "eng", "--limits", "cpus:2", "--guarantees", "mem:64", "--force"],
            &["reserve", "a1", "cpus:1;mem:128", "--role", "eng", "--principal", "ops"],
            &["unreserve", "a1", "cpus:1", "--role", "eng"],
            &["events", "--json"],
            &["execute", "--name", "n", "--command", "true", "--follow"],
            &["completions", "zsh"],
        ] {
            assert!(parse(args).is_ok(), "{args:?}: {:?}", parse(args).err());
        }
        assert!(parse(&["reserve", "a1", "cpus:1"]).is_err(), "reserve needs --role");
        assert!(parse(&["completions", "tcsh"]).is_err());
    }
}
