//! Health checks end to end against a real `agora dev` (reference §7.7): the command executor
//! runs a task's COMMAND, TCP or HTTP health check with short intervals; a check that keeps
//! failing yields TASK_RUNNING updates with `healthy: false` and then TASK_KILLED with
//! `healthy: false`, and checks that pass yield a TASK_RUNNING update with `healthy: true`.
//! The default executor checks each task of a group the same way, and a task killed by its
//! checks takes its group down.
//! No assertion depends on timing: the waits are the helpers' generous deadlines.

use std::collections::BTreeMap;

use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_core::resources::Resources;
use agora_core::status::is_terminal;
use agora_proto::v1::health_check::{HttpCheckInfo, TcpCheckInfo, Type};
use agora_proto::v1::task_status::Reason;
use agora_proto::v1::{TaskState, TaskStatus};
use agora_proto::{Format, v1};
use agora_tests::{Cluster, command_task, free_port, next_offers, next_update};

/// A health check of `kind` that starts at once, probes every 0.2 s, ignores nothing and kills
/// after 3 failures in a row.
fn quick_check(kind: Type) -> v1::HealthCheck {
    v1::HealthCheck {
        r#type: Some(kind as i32),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.2),
        timeout_seconds: Some(10.0),
        consecutive_failures: Some(3),
        grace_period_seconds: Some(0.0),
        ..Default::default()
    }
}

fn command_check(command: &str) -> v1::HealthCheck {
    v1::HealthCheck {
        command: Some(v1::CommandInfo { value: Some(command.into()), ..Default::default() }),
        ..quick_check(Type::Command)
    }
}

fn is_health_update(status: &TaskStatus) -> bool {
    status.state() == TaskState::TaskRunning
        && status.reason() == Reason::TaskHealthCheckStatusUpdated
        && status.healthy.is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_checks_kill_the_task_and_passing_ones_report_healthy() -> anyhow::Result<()> {
    let http_port = free_port()?;
    // The system's interpreter does not depend on the environment a version manager needs.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let cluster = Cluster::start()?;
    let framework =
        v1::FrameworkInfo { user: "root".into(), name: "health".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = |id: &str, command: &str, check: v1::HealthCheck| v1::TaskInfo {
        health_check: Some(check),
        ..command_task(id, &offer.agent_id, "cpus:0.1;mem:32", command)
    };
    let tasks = vec![
        // The file never exists: every probe fails.
        task("failing", "sleep 600", command_check("test -f ok")),
        // The first probe may run before the file exists: the grace period allows for that.
        task(
            "passing",
            "touch ok && sleep 600",
            v1::HealthCheck { grace_period_seconds: Some(120.0), ..command_check("test -f ok") },
        ),
        // Nothing listens on the port: every connection is refused.
        task(
            "tcp-refused",
            "sleep 600",
            v1::HealthCheck {
                tcp: Some(TcpCheckInfo { port: u32::from(free_port()?), ..Default::default() }),
                ..quick_check(Type::Tcp)
            },
        ),
        // The server takes a moment to listen: the failures before that are allowed for.
        task(
            "http",
            &format!("exec {python} -m http.server {http_port} --bind 127.0.0.1"),
            v1::HealthCheck {
                http: Some(HttpCheckInfo {
                    port: u32::from(http_port),
                    path: Some("/".into()),
                    ..Default::default()
                }),
                grace_period_seconds: Some(120.0),
                ..quick_check(Type::Http)
            },
        ),
    ];
    session.launch(vec![offer.id.clone()], tasks, Some(0.0)).await?;

    let mut seen: BTreeMap<String, Vec<TaskStatus>> = BTreeMap::new();
    let done = |seen: &BTreeMap<String, Vec<TaskStatus>>| {
        let ended = |id: &str| {
            seen.get(id).is_some_and(|s| s.last().is_some_and(|s| is_terminal(s.state())))
        };
        let healthy = |id: &str| {
            seen.get(id).is_some_and(|s| s.iter().any(|s| is_health_update(s) && s.healthy()))
        };
        ended("failing") && ended("tcp-refused") && healthy("passing") && healthy("http")
    };
    while !done(&seen) {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        seen.entry(status.task_id.value.clone()).or_default().push(status);
    }

    for id in ["failing", "tcp-refused"] {
        let updates = &seen[id];
        let unhealthy = updates.iter().filter(|s| is_health_update(s) && !s.healthy()).count();
        assert_eq!(unhealthy, 3, "{id}: one unhealthy update per counted failure: {updates:#?}");
        assert!(
            !updates.iter().any(|s| s.healthy == Some(true)),
            "{id} was never healthy: {updates:#?}"
        );
        let last = updates.last().expect("the loop saw a terminal update");
        assert_eq!(last.state(), TaskState::TaskKilled, "{id}: {last:?}");
        assert_eq!(last.healthy, Some(false), "{id}: the kill was the health check's: {last:?}");
    }
    for id in ["passing", "http"] {
        let updates = &seen[id];
        assert!(
            updates.iter().all(|s| !is_terminal(s.state()) && s.healthy != Some(false)),
            "{id} stayed up and healthy: {updates:#?}"
        );
        session.kill(v1::TaskId { value: id.into() }).await?;
    }
    // The healthy tasks end when asked to, as any other.
    let mut killed = 0;
    while killed < 2 {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if is_terminal(status.state()) {
            assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");
            assert_eq!(status.healthy, None, "a kill by the framework says nothing of health");
            killed += 1;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_group_member_that_fails_its_check_takes_the_group_down() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let framework = v1::FrameworkInfo {
        user: "root".into(),
        name: "group-health".into(),
        ..Default::default()
    };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = |id: &str, check: Option<v1::HealthCheck>| v1::TaskInfo {
        health_check: check,
        ..command_task(id, &offer.agent_id, "cpus:0.1;mem:32", "sleep 600")
    };
    let resources = Resources::parse("cpus:0.1;mem:32").expect("a valid resource string");
    let mut executor = v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: "group-health".into() },
        resources: convert::resources_to_proto(&resources, None),
        ..Default::default()
    };
    executor.set_type(v1::executor_info::Type::Default);
    // The check runs in the task's own sandbox, where the file never appears.
    let tasks = vec![task("checked", Some(command_check("test -f ok"))), task("other", None)];
    session.launch_group(vec![offer.id.clone()], executor, tasks, Some(0.0)).await?;

    let mut seen: BTreeMap<String, Vec<TaskStatus>> = BTreeMap::new();
    let ended = |seen: &BTreeMap<String, Vec<TaskStatus>>, id: &str| {
        seen.get(id).is_some_and(|s| s.last().is_some_and(|s| is_terminal(s.state())))
    };
    while !(ended(&seen, "checked") && ended(&seen, "other")) {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        seen.entry(status.task_id.value.clone()).or_default().push(status);
    }
    let checked = &seen["checked"];
    let unhealthy = checked.iter().filter(|s| is_health_update(s) && !s.healthy()).count();
    assert_eq!(unhealthy, 3, "one unhealthy update per counted failure: {checked:#?}");
    let last = checked.last().expect("the loop saw a terminal update");
    assert_eq!((last.state(), last.healthy), (TaskState::TaskKilled, Some(false)), "{last:?}");
    let other = &seen["other"];
    assert!(!other.iter().any(is_health_update), "an unchecked task reports no health");
    let last = other.last().expect("the loop saw a terminal update");
    assert_eq!((last.state(), last.healthy), (TaskState::TaskKilled, None), "{last:?}");
    Ok(())
}
