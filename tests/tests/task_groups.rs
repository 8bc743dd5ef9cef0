//! Task groups end to end against a real `agora dev`: a LAUNCH_GROUP whose ExecutorInfo has
//! type DEFAULT makes the agent start its default executor (`agora executor --default`), which
//! runs each task of the group in a sandbox of its own and ends the group as a whole: both
//! tasks finish; one fails and the other is killed; a kill of one kills both.
//!
//! These tests need the master's side of LAUNCH_GROUP (validation and RUN_TASK_GROUP to the
//! agent) as well as the agent's and the executor's; with a master that refuses the operation
//! the launch fails with a 400 and the test fails with it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_core::resources::Resources;
use agora_core::status::is_terminal;
use agora_proto::scheduler::Event;
use agora_proto::v1::TaskState;
use agora_proto::{Format, v1};
use agora_tests::{Cluster, command_task, next_offers, next_update};
use anyhow::{Context, bail};

const EXECUTOR_ID: &str = "group-executor";

/// A framework that wants TASK_KILLING, so that kills show it.
fn framework(name: &str) -> v1::FrameworkInfo {
    let mut killing = v1::framework_info::Capability::default();
    killing.set_type(v1::framework_info::capability::Type::TaskKillingState);
    v1::FrameworkInfo {
        user: "root".into(),
        name: name.into(),
        capabilities: vec![killing],
        ..Default::default()
    }
}

/// The ExecutorInfo that asks for the agent's default executor.
fn default_executor() -> v1::ExecutorInfo {
    let resources = Resources::parse("cpus:0.1;mem:32").expect("a valid resource string");
    let mut executor = v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: EXECUTOR_ID.into() },
        resources: convert::resources_to_proto(&resources, None),
        ..Default::default()
    };
    executor.set_type(v1::executor_info::Type::Default);
    executor
}

/// A running cluster with one framework that launched `tasks` (id, shell command) as one group
/// on its first offer.
struct Group {
    cluster: Cluster,
    session: SchedulerSession,
    events: Subscription<Event>,
    agent_id: v1::AgentId,
}

impl Group {
    async fn launch(name: &str, tasks: &[(&str, &str)]) -> anyhow::Result<Self> {
        let cluster = Cluster::start()?;
        let (session, mut events) =
            SchedulerSession::subscribe(&cluster.master, framework(name), Format::Json).await?;
        let offer = next_offers(&mut events).await?.remove(0);
        let tasks = tasks
            .iter()
            .map(|(id, command)| command_task(id, &offer.agent_id, "cpus:0.1;mem:32", command))
            .collect();
        session
            .launch_group(vec![offer.id.clone()], default_executor(), tasks, Some(0.0))
            .await
            .context("the master refused LAUNCH_GROUP")?;
        Ok(Self { cluster, session, events, agent_id: offer.agent_id })
    }

    /// Acknowledges every update until `done` holds for the updates seen so far, by task.
    async fn until(
        &mut self,
        done: impl Fn(&BTreeMap<String, Vec<v1::TaskStatus>>) -> bool,
    ) -> anyhow::Result<BTreeMap<String, Vec<v1::TaskStatus>>> {
        let mut seen: BTreeMap<String, Vec<v1::TaskStatus>> = BTreeMap::new();
        while !done(&seen) {
            let status = next_update(&self.session, &mut self.events).await?;
            if status.uuid.is_none() {
                bail!("an update from the executor or the agent without uuid: {status:?}");
            }
            self.session.acknowledge(&status).await?;
            seen.entry(status.task_id.value.clone()).or_default().push(status);
        }
        Ok(seen)
    }

    /// Runs until every task of `ids` has reached a terminal state.
    async fn run_to_end(
        &mut self,
        ids: &[&str],
    ) -> anyhow::Result<BTreeMap<String, Vec<v1::TaskStatus>>> {
        self.until(|seen| ids.iter().all(|id| last_state(seen, id).is_some_and(is_terminal))).await
    }

    /// The sandbox the default executor gave task `task_id`.
    fn task_sandbox(&self, task_id: &str) -> PathBuf {
        self.cluster
            .work_dir
            .path()
            .join("agent/slaves")
            .join(&self.agent_id.value)
            .join("frameworks")
            .join(&self.session.framework_id.value)
            .join("executors")
            .join(EXECUTOR_ID)
            .join("runs/latest/tasks")
            .join(task_id)
    }
}

fn last_state(seen: &BTreeMap<String, Vec<v1::TaskStatus>>, id: &str) -> Option<TaskState> {
    seen.get(id).and_then(|s| s.last()).map(v1::TaskStatus::state)
}

fn states(seen: &BTreeMap<String, Vec<v1::TaskStatus>>, id: &str) -> Vec<TaskState> {
    seen.get(id).map(|s| s.iter().map(v1::TaskStatus::state).collect()).unwrap_or_default()
}

#[tokio::test]
async fn both_tasks_of_a_group_finish_each_in_its_own_sandbox() -> anyhow::Result<()> {
    let mut group = Group::launch(
        "finish",
        &[
            // The task's working directory is its sandbox, which MESOS_SANDBOX names.
            ("first", "test \"$MESOS_SANDBOX\" = \"$(pwd)\" && echo hello from first"),
            ("second", "echo hello from second"),
        ],
    )
    .await?;
    let seen = group.run_to_end(&["first", "second"]).await?;
    for id in ["first", "second"] {
        assert_eq!(
            states(&seen, id),
            [TaskState::TaskStarting, TaskState::TaskRunning, TaskState::TaskFinished],
            "{id}: {seen:?}"
        );
        let last = seen[id].last().context("a terminal update")?;
        assert_eq!(last.message.as_deref(), Some("Command exited with status 0"));
        assert_eq!(last.executor_id.as_ref().map(|e| e.value.as_str()), Some(EXECUTOR_ID));
        let stdout = std::fs::read_to_string(group.task_sandbox(id).join("stdout"))
            .with_context(|| format!("the stdout of task {id}"))?;
        assert_eq!(stdout, format!("hello from {id}\n"));
    }
    group.session.teardown().await?;
    Ok(())
}

#[tokio::test]
async fn a_failing_task_takes_its_group_down() -> anyhow::Result<()> {
    let mut group =
        Group::launch("fail", &[("failing", "exit 3"), ("sleeper", "sleep 60")]).await?;
    let seen = group.run_to_end(&["failing", "sleeper"]).await?;
    let failed = seen["failing"].last().context("a terminal update")?;
    assert_eq!(failed.state(), TaskState::TaskFailed, "{seen:?}");
    assert_eq!(failed.message.as_deref(), Some("Command exited with status 3"));
    assert_eq!(last_state(&seen, "sleeper"), Some(TaskState::TaskKilled), "{seen:?}");
    assert!(states(&seen, "sleeper").contains(&TaskState::TaskKilling), "{seen:?}");
    group.session.teardown().await?;
    Ok(())
}

#[tokio::test]
async fn killing_one_task_kills_the_group() -> anyhow::Result<()> {
    let mut group = Group::launch("kill", &[("one", "sleep 60"), ("two", "exec sleep 60")]).await?;
    let running = |seen: &BTreeMap<String, Vec<v1::TaskStatus>>| {
        ["one", "two"].iter().all(|id| last_state(seen, id) == Some(TaskState::TaskRunning))
    };
    group.until(running).await?;
    group.session.kill(v1::TaskId { value: "one".into() }).await?;
    let seen = group.run_to_end(&["one", "two"]).await?;
    for id in ["one", "two"] {
        assert_eq!(
            states(&seen, id),
            [TaskState::TaskKilling, TaskState::TaskKilled],
            "{id}: {seen:?}"
        );
    }
    group.session.teardown().await?;
    Ok(())
}
