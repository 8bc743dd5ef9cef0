//! A master restart kills nothing: `agora master` with a registry under its work directory is
//! SIGKILLed in the middle of a workload and started again on the same address. The agent
//! re-registers with its tasks, the scheduler re-subscribes with its FrameworkID, long tasks
//! keep running (same processes), tasks that ended during the outage deliver their terminal
//! updates, and new tasks launch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_proto::scheduler::Event;
use agora_proto::v1::task_status::Reason;
use agora_proto::{Format, v1};
use agora_tests::{
    Daemon, agora_bin, alive, command_task, eventually, free_port, next_offers, next_update,
    task_pid,
};
use anyhow::{Context, bail, ensure};

const LONG: [&str; 2] = ["long-1", "long-2"];
const SHORT: [&str; 2] = ["short-1", "short-2"];

fn master_args(port: u16, work_dir: &Path) -> Vec<String> {
    vec![
        "--port".into(),
        port.to_string(),
        "--work_dir".into(),
        work_dir.to_string_lossy().into_owned(),
        // Short intervals keep the test fast; they are flags, not assertions.
        "--allocation_interval".into(),
        "100ms".into(),
        "--heartbeat_interval".into(),
        "1secs".into(),
    ]
}

/// Acknowledges updates (declining offers) until every task of `ids` is RUNNING.
async fn wait_running(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
    ids: &[&str],
) -> anyhow::Result<()> {
    let mut running = BTreeSet::new();
    while running.len() < ids.len() {
        let status = next_update(session, events).await?;
        session.acknowledge(&status).await?;
        match status.state() {
            v1::TaskState::TaskRunning => {
                running.insert(status.task_id.value);
            }
            v1::TaskState::TaskStarting => {}
            other => bail!("{} went {other:?} before running", status.task_id.value),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_master_restart_kills_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let master_dir = dir.path().join("master");
    let pids = dir.path().join("pids");
    std::fs::create_dir_all(&pids)?;
    let finish = dir.path().join("finish");
    let port = free_port()?;

    let master = Daemon::master(&master_args(port, &master_dir))?;
    assert_eq!(
        master.line_starting("agora master registry:")?,
        "agora master registry: 0 agents, 0 frameworks"
    );
    let agent_dir: PathBuf = dir.path().join("agent");
    let _agent = Daemon::agent(&[
        "--master",
        &master.addr,
        "--port",
        "0",
        "--work_dir",
        &agent_dir.to_string_lossy(),
        "--resources",
        "cpus:4;mem:4096;disk:4096;ports:[31000-32000]",
        "--status_update_retry_interval",
        "500ms",
        "--registration_backoff_factor",
        "100ms",
        "--registration_backoff_max",
        "500ms",
    ])?;

    // A framework that does not checkpoint: a master restart must not cost it its tasks either.
    let info = v1::FrameworkInfo {
        user: "root".into(),
        name: "restart".into(),
        failover_timeout: Some(3600.0),
        ..Default::default()
    };
    let (session, mut events) =
        SchedulerSession::subscribe(&master.addr, info, Format::Protobuf).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let pid_file = |task: &str| pids.join(format!("{task}.pid")).to_string_lossy().into_owned();
    let mut tasks = Vec::new();
    for task in LONG {
        let command = format!("echo $$ > {}; exec sleep 600", pid_file(task));
        tasks.push(command_task(task, &offer.agent_id, "cpus:0.1;mem:32", &command));
    }
    for task in SHORT {
        // They end while the master is down: the test lets them go by creating `finish`.
        let command = format!(
            "echo $$ > {}; while [ ! -e {} ]; do sleep 0.1; done",
            pid_file(task),
            finish.display()
        );
        tasks.push(command_task(task, &offer.agent_id, "cpus:0.1;mem:32", &command));
    }
    session.launch(vec![offer.id.clone()], tasks, Some(0.0)).await?;
    wait_running(&session, &mut events, &[LONG, SHORT].concat()).await?;
    let mut long_pids = Vec::new();
    for task in LONG {
        long_pids.push(task_pid(&pids, task).await?);
    }
    let mut short_pids = Vec::new();
    for task in SHORT {
        short_pids.push(task_pid(&pids, task).await?);
    }

    // The master dies mid-workload; the short tasks end while it is gone.
    let master_pid = master.pid();
    master.kill()?;
    ensure!(!alive(master_pid), "the master is dead");
    drop(events);
    std::fs::write(&finish, b"")?;
    eventually("the short tasks ended", || short_pids.iter().all(|p| !alive(*p))).await?;
    ensure!(long_pids.iter().all(|p| alive(*p)), "losing the master killed a long task");

    // The same master comes back on the same address and work directory, and remembers.
    let master = Daemon::master(&master_args(port, &master_dir))?;
    assert_eq!(
        master.line_starting("agora master registry:")?,
        "agora master registry: 1 agents, 1 frameworks"
    );
    let (session, mut events) = session.resubscribe(Duration::from_secs(120)).await?;

    // The agent re-registers on its own. Until it has, reconciliation says nothing; then it
    // shows the long tasks running. The terminal updates of the short tasks arrive meanwhile
    // (the agent retries them), and nothing else happens to any task.
    let mut reconciled = BTreeSet::new();
    let mut finished = BTreeSet::new();
    let mut spare_offer = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut next_reconcile = tokio::time::Instant::now();
    while reconciled.len() < LONG.len() || finished.len() < SHORT.len() || spare_offer.is_none() {
        let now = tokio::time::Instant::now();
        ensure!(
            now < deadline,
            "after the restart: reconciled {reconciled:?}, finished {finished:?}"
        );
        // Implicit reconciliation, again every second: it stays unanswered until the agent is
        // back.
        if now >= next_reconcile {
            session.reconcile(Vec::new()).await?;
            next_reconcile = now + Duration::from_secs(1);
        }
        let event = match tokio::time::timeout(Duration::from_millis(200), events.next()).await {
            Ok(event) => event?.context("the new master closed the stream")?,
            Err(_) => continue,
        };
        if let Some(offers) = event.offers {
            for offer in offers.offers {
                match spare_offer {
                    None => spare_offer = Some(offer),
                    Some(_) => session.decline(vec![offer.id], Some(0.0)).await?,
                }
            }
            continue;
        }
        let Some(status) = event.update.and_then(|u| u.status) else {
            continue;
        };
        let task = status.task_id.value.clone();
        session.acknowledge(&status).await?;
        match (status.state(), status.reason()) {
            (v1::TaskState::TaskRunning, Reason::Reconciliation) if LONG.contains(&&*task) => {
                reconciled.insert(task);
            }
            // Implicit reconciliation may catch a short task's end before its own update.
            (v1::TaskState::TaskFinished, Reason::Reconciliation) => {}
            (v1::TaskState::TaskFinished, _) if SHORT.contains(&&*task) => {
                ensure!(status.uuid.is_some(), "the agent's own update carries a uuid");
                finished.insert(task);
            }
            (v1::TaskState::TaskRunning, Reason::Reconciliation) => {}
            // The acknowledgement of a long task's RUNNING may not have reached the agent
            // before the master died: the agent delivers it again (at least once).
            (v1::TaskState::TaskRunning, _) if LONG.contains(&&*task) && status.uuid.is_some() => {}
            (state, reason) => bail!("unexpected update for {task}: {state:?} ({reason:?})"),
        }
    }
    ensure!(long_pids.iter().all(|p| alive(*p)), "a long task died across the restart");

    // New work launches as before.
    let offer = spare_offer.context("an offer")?;
    let task = command_task("after", &offer.agent_id, "cpus:0.1;mem:32", "echo after the restart");
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.task_id.value != "after" {
            // Late answers to reconciliation, or a retry (of a short task's end or a long
            // task's RUNNING) that crossed its acknowledgement.
            let task = status.task_id.value.as_str();
            let late_retry = (SHORT.contains(&task)
                && status.state() == v1::TaskState::TaskFinished)
                || (LONG.contains(&task)
                    && status.state() == v1::TaskState::TaskRunning
                    && status.uuid.is_some());
            ensure!(
                status.reason() == Reason::Reconciliation || late_retry,
                "unexpected update: {status:?}"
            );
            continue;
        }
        match status.state() {
            v1::TaskState::TaskFinished => break,
            v1::TaskState::TaskStarting | v1::TaskState::TaskRunning => {}
            other => bail!("the new task went {other:?}"),
        }
    }
    ensure!(long_pids.iter().all(|p| alive(*p)), "a long task died");

    // Done: the framework leaves, and its long tasks go with it.
    session.teardown().await?;
    eventually("teardown ended the long tasks", || long_pids.iter().all(|p| !alive(*p))).await?;
    Ok(())
}

#[test]
fn the_replicated_log_registry_needs_a_work_dir() -> anyhow::Result<()> {
    let output = Command::new(agora_bin()).args(["master", "--port", "0"]).output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--work_dir is required with --registry=replicated_log"), "{stderr}");

    // In memory, nothing is kept and no directory is needed.
    let master = Daemon::master(&["--port", "0", "--registry", "in_memory"])?;
    assert_eq!(
        master.line_starting("agora master registry:")?,
        "agora master registry: 0 agents, 0 frameworks"
    );
    Ok(())
}

/// Posts a JSON operator call; returns the status and the parsed body (`null` if empty).
async fn operator(addr: &str, body: serde_json::Value) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, text) = agora_tests::operator_post(addr, &body).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
}

#[tokio::test]
async fn a_gone_agent_stays_gone_after_a_master_restart() -> anyhow::Result<()> {
    use serde_json::{Value, json};
    let dir = tempfile::tempdir()?;
    let master_dir = dir.path().join("master");
    let port = free_port()?;
    let master = Daemon::master(&master_args(port, &master_dir))?;
    let agent_dir = dir.path().join("agent");
    let _agent = Daemon::agent(&[
        "--master",
        &master.addr,
        "--port",
        "0",
        "--work_dir",
        &agent_dir.to_string_lossy(),
        "--resources",
        "cpus:1;mem:512;disk:512",
        "--registration_backoff_factor",
        "100ms",
        "--registration_backoff_max",
        "500ms",
    ])?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let agent_info = loop {
        let (_, agents) = operator(&master.addr, json!({"type": "GET_AGENTS"})).await?;
        if let Some(agent) = agents["get_agents"]["agents"].get(0) {
            break agent["agent_info"].clone();
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the agent never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let agent_id = agent_info["id"]["value"].as_str().context("agent id")?.to_string();
    let gone =
        json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}});
    assert_eq!(operator(&master.addr, gone.clone()).await?.0, 200);

    // Answered means written: a master killed right away still knows.
    master.kill()?;
    let master = Daemon::master(&master_args(port, &master_dir))?;
    assert_eq!(
        master.line_starting("agora master registry:")?,
        "agora master registry: 1 agents, 0 frameworks"
    );
    let (status, agents) = operator(&master.addr, json!({"type": "GET_AGENTS"})).await?;
    assert_eq!(status, 200);
    assert_eq!(agents["get_agents"]["agents"], Value::Null, "{agents}");
    assert_eq!(agents["get_agents"]["recovered_agents"], Value::Null, "{agents}");

    // The agent (whose own attempts go on in the background) is refused as before the restart:
    // its REGISTER with its id gets the error and the stream ends.
    let mut register = agora_proto::internal::AgentCall::default();
    register.set_type(agora_proto::internal::agent_call::Type::Register);
    register.register = Some(agora_proto::internal::agent_call::Register {
        agent_info: v1::AgentInfo {
            id: Some(v1::AgentId { value: agent_id.clone() }),
            hostname: "127.0.0.1".into(),
            ..Default::default()
        },
        protocol_version: agora_core::master::AGENT_PROTOCOL_VERSION,
        ..Default::default()
    });
    let mut events = Subscription::<agora_proto::internal::AgentEvent>::open(
        &agora_client::http::client(),
        &format!("http://{}/api/agora/v1/agent", master.addr),
        Format::Protobuf,
        &register,
    )
    .await?;
    let event = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .context("no answer to REGISTER")??
        .context("the stream closed without an answer")?;
    assert_eq!(event.error.map(|e| e.message).as_deref(), Some("Agent has been marked gone"));
    assert!(events.next().await?.is_none());
    // Marking it gone again still succeeds.
    assert_eq!(operator(&master.addr, gone).await?.0, 200);
    Ok(())
}
