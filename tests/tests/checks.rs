//! Generalized checks (`TaskInfo.check`) end to end against a real `agora dev` (reference
//! §7.7): the command executor runs a task's COMMAND check with a short interval, and the
//! framework sees the task's first TASK_RUNNING carry an empty result, then one TASK_RUNNING
//! update with reason TASK_CHECK_STATUS_UPDATED per change of the exit code (the test flips a
//! file the check looks at), while the task keeps running whatever the exit code. The default
//! executor checks a task of a group the same way, and a task with an invalid check fails.
//! No assertion depends on timing: the test waits for each change before causing the next, and
//! the waits are the helpers' generous deadlines.

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_core::resources::Resources;
use agora_core::status::is_terminal;
use agora_proto::scheduler::Event;
use agora_proto::v1::check_info::{Command, Type};
use agora_proto::v1::task_status::Reason;
use agora_proto::v1::{TaskState, TaskStatus};
use agora_proto::{Format, v1};
use agora_tests::{Cluster, command_task, next_offers, next_update};

/// A COMMAND check running `command` at once and then every 0.2 s.
fn command_check(command: &str) -> v1::CheckInfo {
    v1::CheckInfo {
        r#type: Some(Type::Command as i32),
        command: Some(Command {
            command: v1::CommandInfo { value: Some(command.into()), ..Default::default() },
        }),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.2),
        timeout_seconds: Some(10.0),
        ..Default::default()
    }
}

/// The exit code a TASK_RUNNING update reports for its task's COMMAND check: `Some(None)` for
/// the empty result, `None` when it carries no COMMAND check status.
fn exit_code(status: &TaskStatus) -> Option<Option<i32>> {
    let check = status.check_status.as_ref()?;
    assert_eq!(check.r#type(), Type::Command, "{status:?}");
    Some(check.command.as_ref()?.exit_code)
}

fn is_check_update(status: &TaskStatus) -> bool {
    status.state() == TaskState::TaskRunning && status.reason() == Reason::TaskCheckStatusUpdated
}

/// The next update of `task_id` (acknowledged): the first one `held` back, else the next to
/// arrive. Updates of other tasks are acknowledged and held back for them, so that no test
/// depends on the order in which two tasks' updates arrive.
async fn next_of(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
    held: &mut Vec<TaskStatus>,
    task_id: &str,
) -> anyhow::Result<TaskStatus> {
    if let Some(i) = held.iter().position(|s| s.task_id.value == task_id) {
        return Ok(held.remove(i));
    }
    loop {
        let status = next_update(session, events).await?;
        session.acknowledge(&status).await?;
        if status.task_id.value == task_id {
            return Ok(status);
        }
        held.push(status);
    }
}

/// The next update of task `checked`, which must still be alive.
async fn next_alive(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
    held: &mut Vec<TaskStatus>,
) -> anyhow::Result<TaskStatus> {
    let status = next_of(session, events, held, "checked").await?;
    assert!(!is_terminal(status.state()), "checks never end the task: {status:?}");
    Ok(status)
}

#[tokio::test(flavor = "multi_thread")]
async fn check_results_reach_the_framework_when_they_change_and_never_kill() -> anyhow::Result<()> {
    // The check looks at a file outside the sandbox that the test flips.
    let dir = tempfile::tempdir()?;
    let flag = dir.path().join("ok");
    let check = format!("if test -f '{}'; then exit 0; else exit 3; fi", flag.display());
    let cluster = Cluster::start()?;
    let framework =
        v1::FrameworkInfo { user: "root".into(), name: "checks".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = |id: &str, check: v1::CheckInfo| v1::TaskInfo {
        check: Some(check),
        ..command_task(id, &offer.agent_id, "cpus:0.1;mem:32", "sleep 600")
    };
    let invalid = v1::CheckInfo { r#type: Some(Type::Http as i32), ..Default::default() };
    let tasks = vec![task("checked", command_check(&check)), task("invalid", invalid)];
    session.launch(vec![offer.id.clone()], tasks, Some(0.0)).await?;
    let mut held = Vec::new();

    // The task with an HTTP check without a port never runs.
    let mut invalid = next_of(&session, &mut events, &mut held, "invalid").await?;
    while !is_terminal(invalid.state()) {
        invalid = next_of(&session, &mut events, &mut held, "invalid").await?;
    }
    assert_eq!(invalid.state(), TaskState::TaskFailed, "{invalid:?}");
    assert!(invalid.message().contains("Invalid check"), "{invalid:?}");

    let mut running = next_alive(&session, &mut events, &mut held).await?;
    while running.state() != TaskState::TaskRunning {
        running = next_alive(&session, &mut events, &mut held).await?;
    }
    assert_eq!(exit_code(&running), Some(None), "the first TASK_RUNNING: empty: {running:?}");
    assert_eq!(running.reason, None, "{running:?}");
    let first = next_alive(&session, &mut events, &mut held).await?;
    assert!(is_check_update(&first), "{first:?}");
    assert_eq!(exit_code(&first), Some(Some(3)), "{first:?}");

    std::fs::write(&flag, "")?;
    let flipped = next_alive(&session, &mut events, &mut held).await?;
    assert!(is_check_update(&flipped), "{flipped:?}");
    assert_eq!(exit_code(&flipped), Some(Some(0)), "only a change is reported: {flipped:?}");

    std::fs::remove_file(&flag)?;
    let back = next_alive(&session, &mut events, &mut held).await?;
    assert!(is_check_update(&back), "{back:?}");
    assert_eq!(exit_code(&back), Some(Some(3)), "{back:?}");

    session.kill(v1::TaskId { value: "checked".into() }).await?;
    let mut last = next_of(&session, &mut events, &mut held, "checked").await?;
    while !is_terminal(last.state()) {
        assert!(!is_check_update(&last), "no check results once the kill began: {last:?}");
        last = next_of(&session, &mut events, &mut held, "checked").await?;
    }
    assert_eq!(last.state(), TaskState::TaskKilled, "the framework's kill ended it: {last:?}");
    assert_eq!(last.check_status, None, "check results go on TASK_RUNNING only: {last:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_executor_checks_each_task_of_a_group() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let framework = v1::FrameworkInfo {
        user: "root".into(),
        name: "group-checks".into(),
        ..Default::default()
    };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = |id: &str, check: Option<v1::CheckInfo>| v1::TaskInfo {
        check,
        ..command_task(id, &offer.agent_id, "cpus:0.1;mem:32", "sleep 600")
    };
    let resources = Resources::parse("cpus:0.1;mem:32").expect("a valid resource string");
    let mut executor = v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: "group-checks".into() },
        resources: convert::resources_to_proto(&resources, None),
        ..Default::default()
    };
    executor.set_type(v1::executor_info::Type::Default);
    let tasks = vec![task("checked", Some(command_check("exit 7"))), task("other", None)];
    session.launch_group(vec![offer.id.clone()], executor, tasks, Some(0.0)).await?;
    let mut held = Vec::new();

    let mut running = next_of(&session, &mut events, &mut held, "checked").await?;
    while running.state() != TaskState::TaskRunning {
        running = next_of(&session, &mut events, &mut held, "checked").await?;
    }
    assert_eq!(exit_code(&running), Some(None), "the first TASK_RUNNING: empty: {running:?}");
    let result = next_of(&session, &mut events, &mut held, "checked").await?;
    assert!(is_check_update(&result), "{result:?}");
    assert_eq!(exit_code(&result), Some(Some(7)), "{result:?}");

    session.kill(v1::TaskId { value: "checked".into() }).await?;
    let mut ended = Vec::new();
    while ended.len() < 2 {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        let id = status.task_id.value.clone();
        assert!(id == "other" || !is_check_update(&status), "unchanged: {status:?}");
        if id == "other" {
            assert_eq!(status.check_status, None, "an unchecked task has no check status");
        }
        if is_terminal(status.state()) {
            assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");
            ended.push(id);
        }
    }
    Ok(())
}
