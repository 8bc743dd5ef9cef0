//! Master failover time (issue 8): from SIGKILL of the leading master to a new leader that
//! serves offers with every agent re-registered, beside ZooKeeper's own part of it (the time
//! until ZooKeeper names the next leader) measured in the same run.
//!
//! ```text
//! cargo build --release -p agora
//! cargo run --release -p agora-tests --example failover_bench -- [AGENTS...] [--rounds N]
//! ```
//!
//! Real pieces: a ZooKeeper server (Debian's package), two `agora master --zk` processes
//! (release build), and in this process one framework (`SchedulerSession` through `zk://`)
//! and AGENTS lightweight fake agents (default 1000 and 10000) that speak the real internal
//! agent protocol over loopback: each registers with 10 RUNNING tasks of the framework,
//! answers pings, and re-registers with the leader ZooKeeper names when its stream breaks.
//! The leader is then SIGKILLed. Timed from the kill: ZooKeeper names the standby (a
//! detector in this process sees it), the standby serves (its registry read from
//! ZooKeeper), the last fake agent has REGISTERED from it, and the framework has its first
//! OFFERS from it. The ZooKeeper session timeout is the floor of the first figure; it is
//! 2 s here (`--zk_session_timeout`), as small as this server allows for a 1 s tick budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agora_client::Subscription;
use agora_client::http::{call, client};
use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_core::resources::Resources;
use agora_proto::scheduler::event::Type as EventType;
use agora_proto::{Format, internal, v1};
use agora_tests::Daemon;
use agora_tests::zookeeper::ZooKeeper;
use anyhow::{Context, bail};
use tokio::sync::watch;

const TASKS_PER_AGENT: usize = 10;
const SESSION_TIMEOUT: &str = "2secs";

fn main() -> anyhow::Result<()> {
    let mut sizes = Vec::new();
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args.next().context("--rounds N")?.parse()?;
        } else {
            sizes.push(arg.parse::<usize>().context("AGENTS must be numbers")?);
        }
    }
    if sizes.is_empty() {
        sizes = vec![1000, 10_000];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("machine: {} cores, {}", cores(), kernel());
    println!("failover: SIGKILL of the leader until ... (seconds; min / median / max of {rounds})");
    println!(
        "| agents | tasks | ZooKeeper names the new leader | new leader serves | all agents re-registered | first offer | ours (offer − ZooKeeper) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for agents in sizes {
        let mut runs = Vec::new();
        for round in 0..rounds {
            let run = runtime
                .block_on(failover(agents))
                .with_context(|| format!("{agents} agents, round {round}"))?;
            eprintln!("  {agents} agents, round {round}: {run:?}");
            runs.push(run);
        }
        let column = |f: fn(&Run) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            format!(
                "{:.2} / {:.2} / {:.2}",
                values[0],
                values[values.len() / 2],
                values[values.len() - 1]
            )
        };
        println!(
            "| {agents} | {} | {} | {} | {} | {} | {} |",
            agents * TASKS_PER_AGENT,
            column(|r| r.elected),
            column(|r| r.serving),
            column(|r| r.reregistered),
            column(|r| r.offered),
            column(|r| r.offered - r.elected),
        );
    }
    Ok(())
}

/// Seconds from the kill.
#[derive(Debug)]
struct Run {
    elected: f64,
    serving: f64,
    reregistered: f64,
    offered: f64,
}

async fn failover(agents: usize) -> anyhow::Result<Run> {
    let zk = ZooKeeper::start()?;
    let url = zk.url("/agora/bench");
    let master = |url: &str| {
        Daemon::master(&[
            "--port",
            "0",
            "--zk",
            url,
            "--zk_session_timeout",
            SESSION_TIMEOUT,
            "--allocation_interval",
            "100ms",
            "--agent_reregister_timeout",
            "10mins",
        ])
    };
    let first = master(&url)?;
    let mut leaders = agora_client::leader::follow(&url)?;
    let leader = agora_client::leader::current(&mut leaders, &url, Duration::from_secs(60)).await?;
    let second = master(&url)?;
    let (first, second) = if leader == first.addr { (first, second) } else { (second, first) };

    let info = v1::FrameworkInfo {
        user: "root".into(),
        name: "failover-bench".into(),
        failover_timeout: Some(3600.0),
        checkpoint: Some(true),
        ..Default::default()
    };
    // The elected master answers 503 while it reads its registry.
    let http = client();
    wait_serving(&http, &leader).await?;
    let (session, mut events) =
        SchedulerSession::subscribe(&url, info.clone(), Format::Protobuf).await?;
    let framework = with_id(info, &session.framework_id);

    // The fake agents register with their tasks.
    let registered = Arc::new(AtomicUsize::new(0));
    let (phase_tx, phase) = watch::channel(0usize);
    let mut handles = Vec::new();
    for i in 0..agents {
        handles.push(tokio::spawn(fake_agent(
            i,
            leaders.clone(),
            framework.clone(),
            registered.clone(),
            phase.clone(),
        )));
    }
    wait_until("every agent registered", Duration::from_secs(300), || {
        registered.load(Ordering::Relaxed) >= agents
    })
    .await?;
    // Drain the framework's stream until the cluster is quiet (offers of every agent).
    let drain = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = events.next().await {}
    });
    let _ = drain.await;

    // Kill the leader.
    registered.store(0, Ordering::Relaxed);
    phase_tx.send_replace(1);
    let killed = Instant::now();
    first.kill()?;
    let standby = second.addr.clone();
    let mut elected = None;
    let mut serving = None;
    let mut reregistered = None;
    let mut offered = None;
    let resubscribe = {
        let session = &session;
        async move {
            loop {
                match session.resubscribe(Duration::from_secs(120)).await {
                    Ok((_, mut events)) => loop {
                        match events.next().await {
                            Ok(Some(event)) if event.r#type() == EventType::Offers => {
                                return Ok(Instant::now());
                            }
                            Ok(Some(_)) => {}
                            _ => break,
                        }
                    },
                    Err(e) => return Err(anyhow::anyhow!("resubscribe: {e}")),
                }
            }
        }
    };
    tokio::pin!(resubscribe);
    let deadline = killed + Duration::from_secs(300);
    while offered.is_none() || reregistered.is_none() {
        if Instant::now() > deadline {
            bail!(
                "no complete failover within 300 s: elected {elected:?}, serving {serving:?}, registered {}",
                registered.load(Ordering::Relaxed)
            );
        }
        if elected.is_none() && leaders.borrow().as_deref() == Some(standby.as_str()) {
            elected = Some(killed.elapsed());
        }
        if serving.is_none() && elected.is_some() {
            let health = http.get(format!("http://{standby}/master/state-summary")).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                serving = Some(killed.elapsed());
            }
        }
        if reregistered.is_none() && registered.load(Ordering::Relaxed) >= agents {
            reregistered = Some(killed.elapsed());
        }
        tokio::select! {
            at = &mut resubscribe, if offered.is_none() => offered = Some(at?.duration_since(killed)),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    phase_tx.send_replace(2);
    for handle in handles {
        handle.abort();
    }
    drop(second);
    drop(zk);
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    Ok(Run {
        elected: secs(elected),
        serving: secs(serving),
        reregistered: secs(reregistered),
        offered: secs(offered),
    })
}

async fn wait_serving(http: &reqwest::Client, master: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http.get(format!("http://{master}/master/state-summary")).send().await;
        if answer.is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{master} does not serve");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn with_id(mut info: v1::FrameworkInfo, id: &v1::FrameworkId) -> v1::FrameworkInfo {
    info.id = Some(id.clone());
    info
}

async fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// One fake agent: registers with the current leader with its tasks, answers pings, and
/// registers again (same id, same tasks) whenever its stream ends. Counts each REGISTERED
/// once per phase.
async fn fake_agent(
    index: usize,
    mut leaders: agora_client::leader::Masters,
    framework: v1::FrameworkInfo,
    registered: Arc<AtomicUsize>,
    phase: watch::Receiver<usize>,
) {
    let framework_id = framework.id.clone().unwrap_or_default();
    let agent_id = v1::AgentId { value: format!("bench-S{index}") };
    let resources = Resources::parse("cpus:16;mem:65536;disk:100000").unwrap_or_default();
    let task_resources = Resources::parse("cpus:0.1;mem:32").unwrap_or_default();
    let tasks: Vec<v1::Task> = (0..TASKS_PER_AGENT)
        .map(|k| {
            let mut task = v1::Task {
                name: Some(format!("t{index}-{k}")),
                task_id: Some(v1::TaskId { value: format!("t{index}-{k}") }),
                framework_id: Some(framework_id.clone()),
                agent_id: Some(agent_id.clone()),
                resources: convert::resources_to_proto(&task_resources, None),
                ..Default::default()
            };
            task.set_state(v1::TaskState::TaskRunning);
            task
        })
        .collect();
    let mut register = internal::AgentCall::default();
    register.set_type(internal::agent_call::Type::Register);
    register.register = Some(internal::agent_call::Register {
        agent_info: v1::AgentInfo {
            id: Some(agent_id.clone()),
            hostname: format!("bench-{index}"),
            port: Some(5051),
            resources: convert::resources_to_proto(&resources, None),
            ..Default::default()
        },
        protocol_version: agora_core::master::AGENT_PROTOCOL_VERSION,
        endpoint: Some(format!("127.0.0.1:{}", 20000 + index % 40000)),
        tasks,
        frameworks: vec![framework],
        ..Default::default()
    });
    let http = client();
    let mut counted_phase = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Ok(master) =
            agora_client::leader::current(&mut leaders, "zk", Duration::from_secs(600)).await
        else {
            return;
        };
        let url = format!("http://{master}/api/agora/v1/agent");
        let Ok(mut events) =
            Subscription::<internal::AgentEvent>::open(&http, &url, Format::Protobuf, &register)
                .await
        else {
            // As a real agent: back off (100 ms doubling to 1 s, spread by the agent's index)
            // rather than hammer a master that is still recovering.
            let spread = Duration::from_millis((index % 100) as u64);
            tokio::time::sleep(backoff + spread).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(100);
        let stream_id = events.stream_id.clone();
        while let Ok(Some(event)) = events.next().await {
            if event.registered.is_some() {
                let now = *phase.borrow();
                if counted_phase != Some(now) {
                    counted_phase = Some(now);
                    registered.fetch_add(1, Ordering::Relaxed);
                }
            }
            if event.r#type() == internal::agent_event::Type::Ping {
                let mut pong = internal::AgentCall::default();
                pong.set_type(internal::agent_call::Type::Pong);
                let _ = call(&http, &url, Format::Protobuf, stream_id.as_deref(), &pong).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown kernel".into(), |k| format!("Linux {}", k.trim()))
}
