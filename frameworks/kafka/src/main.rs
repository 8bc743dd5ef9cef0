//! `agora-kafka`: the Kafka framework's single binary. `scheduler` runs the framework and its
//! REST API, `executor` is what the agents start for each broker, and `broker ...` / `topic ...`
//! are the Kafka-on-Mesos CLI against the API.
//!
//! This file only parses arguments and wires the pieces of the library together.

use std::collections::BTreeMap;
use std::path::PathBuf;

use agora_kafka::{api, cli, executor, model::Period, scheduler};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agora-kafka", about = "Kafka brokers (tansu) on an Agora cluster")]
struct Cli {
    /// The scheduler's API, e.g. http://127.0.0.1:7000.
    #[arg(long, global = true, env = "KM_API")]
    api: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler and its REST API.
    Scheduler(SchedulerFlags),
    /// Run one broker (started by an agent, not by hand).
    Executor,
    /// Manage brokers.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Manage topics through the Kafka protocol.
    #[command(subcommand)]
    Topic(TopicCommand),
}

#[derive(Args)]
struct SchedulerFlags {
    /// A properties file (`key=value`, the flags' names); defaults to kafka-mesos.properties
    /// when it exists. Flags win over it.
    config: Option<PathBuf>,
    /// `host:port`, or `zk://host:port/path` to follow the leading master.
    #[arg(long)]
    master: Option<String>,
    /// `file:<path>`, or `zk:/<path>` under `--zk`.
    #[arg(long)]
    storage: Option<String>,
    /// ZooKeeper for `zk:` storage: `host:port[,host:port][/chroot]`.
    #[arg(long)]
    zk: Option<String>,
    #[arg(long)]
    framework_name: Option<String>,
    #[arg(long)]
    framework_role: Option<String>,
    /// How long the master keeps the brokers while the scheduler is away (e.g. 30d).
    #[arg(long)]
    framework_timeout: Option<String>,
    /// The user the brokers run as.
    #[arg(long)]
    user: Option<String>,
    /// The tansu binary the executors run: a file here, which agents download from the API,
    /// or a name the agents find on their PATH.
    #[arg(long, env = "AGORA_TANSU")]
    tansu: Option<String>,
}

#[derive(Args, Clone, Default)]
struct BrokerOptions {
    #[arg(long)]
    cpus: Option<String>,
    #[arg(long)]
    mem: Option<String>,
    #[arg(long)]
    heap: Option<String>,
    /// A port or a range a..b; empty for any.
    #[arg(long)]
    port: Option<String>,
    /// An address, a mask like 192.168.* or if:<interface>, resolved on the agent.
    #[arg(long)]
    bind_address: Option<String>,
    /// `k=v,k2=v2` (`\,` for a comma) of storage.engine (memory, sqlite or a URL), log.dirs,
    /// advertised.host.name and cluster.id: the options tansu honours.
    #[arg(long)]
    options: Option<String>,
    /// `attr=op[:value],...` with like, unlike, unique, cluster, groupBy.
    #[arg(long)]
    constraints: Option<String>,
    #[arg(long)]
    failover_delay: Option<String>,
    #[arg(long)]
    failover_max_delay: Option<String>,
    #[arg(long)]
    failover_max_tries: Option<String>,
    #[arg(long)]
    stickiness_period: Option<String>,
    #[arg(long)]
    volume: Option<String>,
}

impl BrokerOptions {
    fn params(&self) -> Vec<(&'static str, String)> {
        [
            ("cpus", &self.cpus),
            ("mem", &self.mem),
            ("heap", &self.heap),
            ("port", &self.port),
            ("bindAddress", &self.bind_address),
            ("options", &self.options),
            ("constraints", &self.constraints),
            ("failoverDelay", &self.failover_delay),
            ("failoverMaxDelay", &self.failover_max_delay),
            ("failoverMaxTries", &self.failover_max_tries),
            ("stickinessPeriod", &self.stickiness_period),
            ("volume", &self.volume),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Subcommand)]
enum BrokerCommand {
    Add {
        expr: String,
        #[command(flatten)]
        options: BrokerOptions,
    },
    Update {
        expr: String,
        #[command(flatten)]
        options: BrokerOptions,
    },
    Remove {
        expr: String,
    },
    Start {
        expr: String,
        #[arg(long)]
        timeout: Option<String>,
    },
    Stop {
        expr: String,
        #[arg(long)]
        timeout: Option<String>,
    },
    Restart {
        expr: String,
        #[arg(long)]
        timeout: Option<String>,
    },
    List {
        expr: Option<String>,
    },
    Log {
        id: String,
        /// stdout, stderr or server.log.
        #[arg(long, default_value = "stdout")]
        name: String,
        #[arg(long, default_value = "100")]
        lines: String,
        #[arg(long)]
        timeout: Option<String>,
    },
    Clone {
        expr: String,
        #[arg(long)]
        source: String,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    List {
        expr: Option<String>,
    },
    Add {
        expr: String,
        #[arg(long)]
        partitions: Option<String>,
        #[arg(long)]
        replicas: Option<String>,
        /// The brokers to create it on (all running brokers by default).
        #[arg(long)]
        broker: Option<String>,
        #[arg(long)]
        options: Option<String>,
    },
    Update {
        expr: String,
        #[arg(long)]
        options: Option<String>,
    },
    Delete {
        expr: String,
    },
    Partitions {
        topic: String,
    },
    /// Refused with the reason: tansu brokers have no replicas to move.
    Rebalance {
        expr: String,
        #[arg(long)]
        broker: Option<String>,
        #[arg(long)]
        replicas: Option<String>,
        #[arg(long)]
        timeout: Option<String>,
    },
    /// Refused with the reason: tansu brokers have no replicas to move.
    Realign {
        expr: String,
        #[arg(long)]
        broker: Option<String>,
        #[arg(long)]
        replicas: Option<String>,
        #[arg(long)]
        timeout: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Scheduler(flags) => run_scheduler(flags, cli.api).await,
        Command::Executor => executor::run().await,
        Command::Broker(command) => broker(&cli::api_url(cli.api)?, command).await,
        Command::Topic(command) => topic(&cli::api_url(cli.api)?, command).await,
    }
}

async fn run_scheduler(flags: SchedulerFlags, api: Option<String>) -> anyhow::Result<()> {
    let file = flags.config.clone().or_else(|| {
        let default = PathBuf::from("kafka-mesos.properties");
        default.exists().then_some(default)
    });
    let props: BTreeMap<String, String> = match &file {
        Some(path) => cli::read_properties(path)?,
        None => BTreeMap::new(),
    };
    let pick = |flag: Option<String>, key: &str, default: &str| {
        flag.or_else(|| props.get(key).cloned()).unwrap_or_else(|| default.to_string())
    };
    let api = pick(api, "api", "http://127.0.0.1:7000");
    let exe = std::env::current_exe().context("the path of this binary")?;
    let bind = api
        .strip_prefix("http://")
        .context("--api must be an http:// URL")?
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    // Agents reach the API at the host --api names (like Kafka-on-Mesos's), on the port bound.
    let port = listener.local_addr()?.port();
    let host = bind.rsplit_once(':').map_or(bind.as_str(), |(host, _)| host);
    let public = format!("http://{host}:{port}");
    let tansu = pick(flags.tansu, "tansu", "tansu");
    // A tansu binary on this host is served to the agents; a bare name is left to their PATH.
    let tansu_file = Some(PathBuf::from(&tansu)).filter(|p| tansu.contains('/') && p.is_file());
    let config = scheduler::Config {
        master: pick(flags.master, "master", "127.0.0.1:5050"),
        storage: pick(flags.storage, "storage", "file:kafka-mesos.json"),
        zk: flags.zk.or_else(|| props.get("zk").cloned()),
        framework_name: pick(flags.framework_name, "framework-name", "kafka"),
        framework_role: pick(flags.framework_role, "framework-role", "*"),
        framework_timeout: Period::parse(&pick(
            flags.framework_timeout,
            "framework-timeout",
            "30d",
        ))
        .context("--framework-timeout")?,
        user: pick(flags.user, "user", "root"),
        tansu: if tansu_file.is_some() { "./tansu".into() } else { tansu },
        tansu_uri: tansu_file.as_ref().map(|_| format!("{public}/tansu/tansu")),
        executor_uri: format!("{public}/executor/agora-kafka"),
    };
    println!("agora-kafka api listening on http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let artifacts = api::Artifacts { executor: exe, tansu: tansu_file };
    let server = axum::serve(listener, api::router(tx, artifacts));
    tokio::select! {
        result = scheduler::run(config, rx) => result,
        result = server => result.context("the API server stopped"),
    }
}

async fn broker(api: &str, command: BrokerCommand) -> anyhow::Result<()> {
    let with_timeout = |expr: String, timeout: Option<String>| {
        let mut p = vec![("broker", expr)];
        if let Some(t) = timeout {
            p.push(("timeout", t));
        }
        p
    };
    match command {
        BrokerCommand::Add { expr, options } => {
            let mut p = vec![("broker", expr)];
            p.extend(options.params());
            cli::print_brokers("broker added:", &cli::call(api, "broker/add", &p).await?);
        }
        BrokerCommand::Update { expr, options } => {
            let mut p = vec![("broker", expr)];
            p.extend(options.params());
            cli::print_brokers("broker updated:", &cli::call(api, "broker/update", &p).await?);
        }
        BrokerCommand::Remove { expr } => {
            let answer = cli::call(api, "broker/remove", &[("broker", expr)]).await?;
            println!("broker {} removed", answer["ids"].as_str().unwrap_or_default());
        }
        BrokerCommand::Start { expr, timeout } => {
            let answer = cli::call(api, "broker/start", &with_timeout(expr, timeout)).await?;
            let status = answer["status"].as_str().unwrap_or_default().to_string();
            cli::print_brokers(&format!("brokers {status}:"), &answer);
        }
        BrokerCommand::Stop { expr, timeout } => {
            let answer = cli::call(api, "broker/stop", &with_timeout(expr, timeout)).await?;
            let status = answer["status"].as_str().unwrap_or_default().to_string();
            cli::print_brokers(&format!("brokers {status}:"), &answer);
        }
        BrokerCommand::Restart { expr, timeout } => {
            let answer = cli::call(api, "broker/restart", &with_timeout(expr, timeout)).await?;
            cli::print_brokers("brokers restarted:", &answer);
        }
        BrokerCommand::List { expr } => {
            let p: Vec<(&str, String)> = expr.map(|e| ("broker", e)).into_iter().collect();
            cli::print_brokers("brokers:", &cli::call(api, "broker/list", &p).await?);
        }
        BrokerCommand::Log { id, name, lines, timeout } => {
            let mut p = with_timeout(id, timeout);
            p.push(("name", name));
            p.push(("lines", lines));
            let answer = cli::call(api, "broker/log", &p).await?;
            match answer["content"].as_str() {
                Some(content) => println!("{content}"),
                None => anyhow::bail!("broker log: {}", answer["status"]),
            }
        }
        BrokerCommand::Clone { expr, source } => {
            let answer =
                cli::call(api, "broker/clone", &[("broker", expr), ("source", source)]).await?;
            cli::print_brokers("brokers added:", &answer);
        }
    }
    Ok(())
}

async fn topic(api: &str, command: TopicCommand) -> anyhow::Result<()> {
    let opt = |k: &'static str, v: Option<String>| v.map(|v| (k, v));
    match command {
        TopicCommand::List { expr } => {
            let p: Vec<_> = opt("topic", expr).into_iter().collect();
            cli::print_topics("topics:", &cli::call(api, "topic/list", &p).await?);
        }
        TopicCommand::Add { expr, partitions, replicas, broker, options } => {
            let p: Vec<_> = [Some(("topic", expr))]
                .into_iter()
                .chain([opt("partitions", partitions), opt("replicas", replicas)])
                .chain([opt("broker", broker), opt("options", options)])
                .flatten()
                .collect();
            cli::print_topics("topic added:", &cli::call(api, "topic/add", &p).await?);
        }
        TopicCommand::Update { expr, options } => {
            let p: Vec<_> =
                [Some(("topic", expr)), opt("options", options)].into_iter().flatten().collect();
            cli::print_topics("topic updated:", &cli::call(api, "topic/update", &p).await?);
        }
        TopicCommand::Delete { expr } => {
            cli::print_topics(
                "topic deleted:",
                &cli::call(api, "topic/delete", &[("topic", expr)]).await?,
            );
        }
        TopicCommand::Rebalance { expr, broker, replicas, timeout } => {
            // The API says why this cannot be done; the CLI only carries the call there.
            let p: Vec<_> = [Some(("topic", expr)), opt("broker", broker)]
                .into_iter()
                .chain([opt("replicas", replicas), opt("timeout", timeout)])
                .flatten()
                .collect();
            cli::print_topics("topics:", &cli::call(api, "topic/rebalance", &p).await?);
        }
        TopicCommand::Realign { expr, broker, replicas, timeout } => {
            let p: Vec<_> = [Some(("topic", expr)), opt("broker", broker)]
                .into_iter()
                .chain([opt("replicas", replicas), opt("timeout", timeout)])
                .flatten()
                .collect();
            cli::print_topics("topics:", &cli::call(api, "topic/realign", &p).await?);
        }
        TopicCommand::Partitions { topic } => {
            cli::print_topics(
                "partitions:",
                &cli::call(api, "topic/partitions", &[("topic", topic)]).await?,
            );
        }
    }
    Ok(())
}
