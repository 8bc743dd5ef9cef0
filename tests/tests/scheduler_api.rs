//! The scheduler API end to end against a real `agora dev`: subscribe in both formats, offers,
//! launches through the command executor, status updates with acknowledgements, kills,
//! heartbeats, and `agora execute`.

use std::process::Command;
use std::time::Duration;

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_proto::scheduler::{Event, event::Type};
use agora_proto::{Format, v1};
use agora_tests::{Cluster, ClusterOptions, agora_bin, command_task, next_offers, next_update};
use anyhow::{Context, bail};

fn framework(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo { user: "root".into(), name: name.into(), ..Default::default() }
}

/// A cluster with one framework that launched one command task on its first offer.
async fn one_task(
    name: &str,
    format: Format,
    task_id: &str,
    command: &str,
) -> anyhow::Result<(Cluster, SchedulerSession, Subscription<Event>, v1::Offer)> {
    let cluster = Cluster::start()?;
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework(name), format).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = command_task(task_id, &offer.agent_id, "cpus:0.1;mem:32", command);
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    Ok((cluster, session, events, offer))
}

/// Acknowledges updates until the task runs.
async fn wait_running(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
) -> anyhow::Result<()> {
    loop {
        let status = next_update(session, events).await?;
        session.acknowledge(&status).await?;
        if status.state() == v1::TaskState::TaskRunning {
            return Ok(());
        }
    }
}

/// Runs a task to its end, acknowledging every update; returns the states seen.
async fn run_to_end(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
) -> anyhow::Result<(Vec<v1::TaskState>, v1::TaskStatus)> {
    let mut states = Vec::new();
    loop {
        let status = next_update(session, events).await?;
        if status.uuid.is_none() {
            bail!("executor update without uuid: {status:?}");
        }
        if status.agent_id.is_none() {
            bail!("update without agent_id: {status:?}");
        }
        states.push(status.state());
        session.acknowledge(&status).await?;
        if agora_core::status::is_terminal(status.state()) {
            return Ok((states, status));
        }
    }
}

#[tokio::test]
async fn json_and_protobuf_frameworks_run_command_tasks() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    for (format, command, expected) in [
        (Format::Json, "echo hello", v1::TaskState::TaskFinished),
        (Format::Protobuf, "exit 3", v1::TaskState::TaskFailed),
    ] {
        let (session, mut events) =
            SchedulerSession::subscribe(&cluster.master, framework("it"), format).await?;
        let offers = next_offers(&mut events).await?;
        let offer = &offers[0];
        assert!(offer.url.is_some(), "offers carry the agent's address");
        let task = command_task("t1", &offer.agent_id, "cpus:0.1;mem:32", command);
        session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
        let (states, last) = run_to_end(&session, &mut events).await?;
        assert_eq!(
            states,
            vec![v1::TaskState::TaskStarting, v1::TaskState::TaskRunning, expected],
            "{format:?}"
        );
        if expected == v1::TaskState::TaskFailed {
            assert_eq!(last.message.as_deref(), Some("Command exited with status 3"));
        }
        session.teardown().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_killed_task_ends_killed_and_resources_return() -> anyhow::Result<()> {
    let (_cluster, session, mut events, offer) =
        one_task("kill", Format::Json, "sleeper", "sleep 60").await?;
    let total = convert::resources_from_proto(&offer.resources).expect("valid offer");
    wait_running(&session, &mut events).await?;
    session.kill(v1::TaskId { value: "sleeper".into() }).await?;
    let (states, _) = run_to_end(&session, &mut events).await?;
    assert_eq!(states.last(), Some(&v1::TaskState::TaskKilled));
    // Everything comes back once the task is gone.
    loop {
        let offers = next_offers(&mut events).await?;
        let offered = convert::resources_from_proto(&offers[0].resources).expect("valid offer");
        if offered == total {
            break;
        }
        session.decline(offers.iter().map(|o| o.id.clone()).collect(), Some(0.0)).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_heartbeat_follows_subscribed_at_once() -> anyhow::Result<()> {
    // With an hour between periodic heartbeats, the only one that can come is the immediate one.
    let cluster = Cluster::start_with(ClusterOptions {
        heartbeat_interval: "1hrs".into(),
        ..Default::default()
    })?;
    let (_session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework("hb"), Format::Json).await?;
    let first = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .context("no event")??
        .context("closed")?;
    assert_eq!(first.r#type(), Type::Heartbeat);
    Ok(())
}

#[tokio::test]
async fn heartbeats_keep_coming() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let (_session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework("hb"), Format::Json).await?;
    let mut heartbeats = 0;
    while heartbeats < 3 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("no event")??
            .context("closed")?;
        if event.r#type() == Type::Heartbeat {
            heartbeats += 1;
        }
    }
    Ok(())
}

#[tokio::test]
async fn version_and_health() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let version: serde_json::Value = serde_json::from_slice(
        &reqwest::get(cluster.master_url("/version")).await?.bytes().await?,
    )?;
    assert_eq!(version["version"], "1.11.0");
    assert_eq!(reqwest::get(cluster.master_url("/health")).await?.status(), 200);
    Ok(())
}

#[test]
fn agora_execute_prints_output_and_exits_with_the_task_status() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let run = |name: &str, command: &str, format: &str| {
        Command::new(agora_bin())
            .args(["execute", "--master", &cluster.master, "--name", name, "--command", command])
            .args(["--content_type", format])
            .output()
    };
    let ok = run("hello", "echo hi from agora", "protobuf")?;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("TASK_RUNNING"), "{stdout}");
    assert!(stdout.contains("TASK_FINISHED"), "{stdout}");
    assert!(stdout.contains("hi from agora"), "{stdout}");

    let failed = run("fails", "echo partial; exit 7", "json")?;
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(7), "{stdout}");
    assert!(stdout.contains("TASK_FAILED"), "{stdout}");
    assert!(stdout.contains("partial"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn unacknowledged_updates_are_retried_until_acknowledged() -> anyhow::Result<()> {
    // The cluster retries after 500 ms (`--status_update_retry_interval` in the harness).
    let (_cluster, session, mut events, _) =
        one_task("retry", Format::Json, "r1", "exit 0").await?;
    let first = next_update(&session, &mut events).await?;
    assert_eq!(first.state(), v1::TaskState::TaskStarting);
    // Not acknowledged: the same update (same uuid) comes again, and nothing overtakes it.
    let again = next_update(&session, &mut events).await?;
    assert_eq!((again.state(), &again.uuid), (first.state(), &first.uuid));
    session.acknowledge(&again).await?;
    let (states, _) = run_to_end(&session, &mut events).await?;
    assert_eq!(states.first(), Some(&v1::TaskState::TaskRunning));
    assert_eq!(states.last(), Some(&v1::TaskState::TaskFinished));
    Ok(())
}

#[tokio::test]
async fn sandboxes_follow_the_mesos_layout_and_executors_get_their_environment()
-> anyhow::Result<()> {
    let command = "env | grep -E '^(MESOS|LIBPROCESS)_' | sort; echo oops >&2";
    let (cluster, session, mut events, offer) =
        one_task("env", Format::Protobuf, "env-task", command).await?;
    let (states, _) = run_to_end(&session, &mut events).await?;
    assert_eq!(states.last(), Some(&v1::TaskState::TaskFinished));

    let fid = &session.framework_id.value;
    let aid = &offer.agent_id.value;
    let executor_dir = cluster
        .work_dir
        .path()
        .join(format!("agent/slaves/{aid}/frameworks/{fid}/executors/env-task/runs"));
    let latest = executor_dir.join("latest");
    let run = std::fs::read_link(&latest).context("runs/latest is a link to the run")?;
    let sandbox = executor_dir.join(&run);
    let stdout = std::fs::read_to_string(sandbox.join("stdout"))?;
    assert!(std::fs::read_to_string(sandbox.join("stderr"))?.contains("oops"));
    let sandbox_text = sandbox.canonicalize()?.to_string_lossy().into_owned();
    for expected in [
        format!("MESOS_FRAMEWORK_ID={fid}"),
        "MESOS_EXECUTOR_ID=env-task".to_string(),
        format!("MESOS_SLAVE_ID={aid}"),
        format!("MESOS_AGENT_ENDPOINT={}", cluster.agent),
        format!("MESOS_DIRECTORY={sandbox_text}"),
        format!("MESOS_SANDBOX={sandbox_text}"),
        "MESOS_CHECKPOINT=0".to_string(),
        "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD=5secs".to_string(),
        format!("MESOS_SLAVE_PID=slave(1)@{}", cluster.agent),
        "LIBPROCESS_PORT=0".to_string(),
    ] {
        assert!(stdout.lines().any(|l| l == expected), "missing {expected} in:\n{stdout}");
    }

    // The same file through the agent's files API, by its virtual path.
    let path = format!("/frameworks/{fid}/executors/env-task/runs/latest/stdout");
    let url = format!("http://{}/files/read?path={path}&offset=0", cluster.agent);
    let read: serde_json::Value =
        serde_json::from_slice(&reqwest::get(&url).await?.bytes().await?)?;
    assert_eq!(read["data"].as_str(), Some(stdout.as_str()));
    assert_eq!(read["offset"], 0);
    Ok(())
}

#[tokio::test]
async fn shutting_down_an_executor_kills_its_task() -> anyhow::Result<()> {
    let (_cluster, session, mut events, offer) =
        one_task("shutdown", Format::Json, "long", "sleep 60").await?;
    wait_running(&session, &mut events).await?;
    // A command task's executor has the task's id.
    let mut shutdown = agora_proto::scheduler::Call {
        shutdown: Some(agora_proto::scheduler::call::Shutdown {
            executor_id: v1::ExecutorId { value: "long".into() },
            agent_id: offer.agent_id.clone(),
        }),
        ..Default::default()
    };
    shutdown.set_type(agora_proto::scheduler::call::Type::Shutdown);
    session.call(shutdown).await?;
    let (states, _) = run_to_end(&session, &mut events).await?;
    assert_eq!(states.last(), Some(&v1::TaskState::TaskKilled));
    Ok(())
}
