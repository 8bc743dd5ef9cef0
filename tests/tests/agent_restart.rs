//! Agent checkpointing and recovery (reference §7.4), with the real binary: `agora agent` is
//! SIGKILLed and started again on the same address and work directory.
//!
//! - 50 tasks of a checkpointing framework keep running (same processes); those that end while
//!   the agent is down deliver their terminal updates afterwards; every task reaches the
//!   framework in order, and finishes exactly once.
//! - A changed boot id (the machine rebooted) turns the tasks into TASK_LOST.
//! - The executors of a framework that does not checkpoint do not survive the restart.
//! - `--recover=cleanup` kills what the previous run left and forgets the checkpoint.
//! - A pymesos executor (the real, unmodified `MesosExecutorDriver`) re-subscribes to the
//!   restarted agent and carries on.
//! - An executor in a PID namespace of its own (`namespaces/pid`, privileged) is recovered
//!   by its host pid, re-subscribes and still kills its task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_proto::Format;
use agora_proto::scheduler::{self, Event};
use agora_proto::v1::task_status::Reason;
use agora_proto::v1::{self, TaskState};
use agora_tests::{
    Daemon, agora_bin, alive, command_task, eventually, free_port, next_event, next_offers,
    next_update, required_in_ci, task_pid,
};
use anyhow::{Context, bail, ensure};

fn master_args() -> Vec<String> {
    ["--port", "0", "--registry", "in_memory", "--allocation_interval", "100ms"]
        .into_iter()
        .chain(["--heartbeat_interval", "1secs"])
        .map(String::from)
        .collect()
}

fn agent_args(master: &str, port: u16, work_dir: &Path) -> Vec<String> {
    vec![
        "--master".into(),
        master.into(),
        "--port".into(),
        port.to_string(),
        "--work_dir".into(),
        work_dir.to_string_lossy().into_owned(),
        "--resources".into(),
        "cpus:16;mem:16384;disk:4096;ports:[31000-32000]".into(),
        "--status_update_retry_interval".into(),
        "500ms".into(),
        "--registration_backoff_factor".into(),
        "100ms".into(),
        "--registration_backoff_max".into(),
        "500ms".into(),
        // Generous, for a loaded CI machine; executors retry at least this often.
        "--executor_reregistration_timeout".into(),
        "10secs".into(),
        // Bounds how long an executor left behind by a failed test keeps looking for us.
        "--recovery_timeout".into(),
        "1mins".into(),
    ]
}

fn framework(name: &str, checkpoint: bool) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "root".into(),
        name: name.into(),
        failover_timeout: Some(3600.0),
        checkpoint: Some(checkpoint),
        ..Default::default()
    }
}

/// The parent of process `pid`.
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()
}

/// A master and an agent on a fixed port, with their directories; the agent can be killed
/// and started again on the same address and work directory.
struct Rig {
    dir: tempfile::TempDir,
    master: Daemon,
    agent_dir: PathBuf,
    port: u16,
}

impl Rig {
    /// The master alone.
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let master = Daemon::master(&master_args())?;
        let agent_dir = dir.path().join("agent");
        Ok(Self { dir, master, agent_dir, port: free_port()? })
    }

    /// The master and the agent.
    fn start() -> anyhow::Result<(Self, Daemon)> {
        let rig = Self::new()?;
        let agent = rig.agent()?;
        Ok((rig, agent))
    }

    /// Starts (or starts again) the agent.
    fn agent(&self) -> anyhow::Result<Daemon> {
        Daemon::agent(&self.agent_args())
    }

    fn agent_args(&self) -> Vec<String> {
        agent_args(&self.master.addr, self.port, &self.agent_dir)
    }

    /// A directory under the test's own.
    fn subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }
}

/// Per task, the states the framework saw, in order.
#[derive(Default)]
struct Seen(BTreeMap<String, Vec<TaskState>>);

impl Seen {
    /// Takes one update (acknowledging it) and checks that it does not go backwards: a task
    /// may see an update again (at least once), never an older state after a newer one, and
    /// nothing after its terminal state but that same state again.
    async fn take(
        &mut self,
        session: &SchedulerSession,
        status: &v1::TaskStatus,
    ) -> anyhow::Result<()> {
        session.acknowledge(status).await?;
        let rank = |s: TaskState| match s {
            TaskState::TaskStaging => 0,
            TaskState::TaskStarting => 1,
            TaskState::TaskRunning => 2,
            _ => 3,
        };
        let states = self.0.entry(status.task_id.value.clone()).or_default();
        if let Some(&last) = states.last() {
            ensure!(
                rank(status.state()) >= rank(last) && (rank(last) < 3 || status.state() == last),
                "task {} went {:?} after {last:?} ({:?}: {})",
                status.task_id.value,
                status.state(),
                status.reason(),
                status.message()
            );
        }
        states.push(status.state());
        Ok(())
    }

    fn count(&self, state: TaskState) -> usize {
        self.0.values().filter(|s| s.last() == Some(&state)).count()
    }
}

#[tokio::test]
async fn fifty_tasks_survive_a_sigkilled_agent() -> anyhow::Result<()> {
    const TASKS: usize = 50;
    let (rig, agent) = Rig::start()?;
    let pids = rig.subdir("pids")?;
    // Half the tasks end while the agent is down, half after it is back.
    let early = rig.dir.path().join("early");
    let late = rig.dir.path().join("late");
    let master = &rig.master;

    let (session, mut events) =
        SchedulerSession::subscribe(&master.addr, framework("restart", true), Format::Protobuf)
            .await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let name = |i: usize| format!("task-{i:02}");
    let tasks = (0..TASKS)
        .map(|i| {
            let gate = if i % 2 == 0 { &early } else { &late };
            let command = format!(
                "echo $$ > {}/{}.pid; while [ ! -e {} ]; do sleep 0.5; done",
                pids.display(),
                name(i),
                gate.display()
            );
            command_task(&name(i), &offer.agent_id, "cpus:0.1;mem:32", &command)
        })
        .collect();
    session.launch(vec![offer.id.clone()], tasks, Some(0.0)).await?;
    let mut seen = Seen::default();
    while seen.count(TaskState::TaskRunning) < TASKS {
        let status = next_update(&session, &mut events).await?;
        seen.take(&session, &status).await?;
    }
    let mut before = Vec::new();
    for i in 0..TASKS {
        before.push(task_pid(&pids, &name(i)).await?);
    }

    agent.kill()?;
    std::fs::write(&early, "")?;
    // The early tasks end while nobody listens to their executors.
    for (i, pid) in before.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        eventually(&format!("{} ended", name(i)), || !alive(*pid)).await?;
    }
    let _agent = rig.agent()?;
    let mut finished = 0;
    while finished < TASKS / 2 {
        let status = next_update(&session, &mut events).await?;
        seen.take(&session, &status).await?;
        if status.state() == TaskState::TaskFinished {
            finished += 1;
        }
    }
    // The late tasks are the very processes that ran before the restart.
    for (i, pid) in before.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        ensure!(alive(*pid), "{} (pid {pid}) did not survive the agent's restart", name(i));
    }
    std::fs::write(&late, "")?;
    while seen.count(TaskState::TaskFinished) < TASKS {
        let status = next_update(&session, &mut events).await?;
        seen.take(&session, &status).await?;
    }
    for (task, states) in &seen.0 {
        let finished = states.iter().filter(|s| **s == TaskState::TaskFinished).count();
        ensure!(finished >= 1, "{task} saw {states:?}");
    }
    // Nothing is left running, and nothing more arrives for the tasks.
    for (i, pid) in before.iter().enumerate() {
        eventually(&format!("{} ended", name(i)), || !alive(*pid)).await?;
    }
    let quiet = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(event) = tokio::time::timeout_at(quiet, next_event(&mut events)).await {
        if let Some(status) = event?.update.and_then(|u| u.status) {
            seen.take(&session, &status).await?;
        }
    }
    Ok(())
}

/// Starts one long task of a framework (`checkpoint` as given) and waits until it runs;
/// returns the session, its events, the task's pid and its executor's pid.
async fn one_long_task(
    master: &str,
    checkpoint: bool,
    pids: &Path,
) -> anyhow::Result<(SchedulerSession, Subscription<Event>, i32, i32)> {
    let info = framework("one", checkpoint);
    let (session, mut events) = SchedulerSession::subscribe(master, info, Format::Protobuf).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let command = format!("echo $$ > {}/long.pid; exec sleep 600", pids.display());
    let task = command_task("long", &offer.agent_id, "cpus:0.1;mem:32", &command);
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.state() == TaskState::TaskRunning {
            break;
        }
    }
    let pid = task_pid(pids, "long").await?;
    let executor = parent(pid).context("the task's executor")?;
    Ok((session, events, pid, executor))
}

/// The first update that is not a RUNNING (acknowledging every one).
async fn next_change(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
) -> anyhow::Result<v1::TaskStatus> {
    loop {
        let status = next_update(session, events).await?;
        session.acknowledge(&status).await?;
        if status.state() != TaskState::TaskRunning {
            return Ok(status);
        }
    }
}

#[tokio::test]
async fn after_a_reboot_the_tasks_are_lost() -> anyhow::Result<()> {
    let (rig, agent) = Rig::start()?;
    let pids = rig.subdir("pids")?;
    let (session, mut events, pid, executor) = one_long_task(&rig.master.addr, true, &pids).await?;

    // A reboot: the agent and every process go, and the machine comes back with a new boot id.
    agent.kill()?;
    for victim in [executor, pid] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    eventually("the old processes are gone", || !alive(pid) && !alive(executor)).await?;
    std::fs::write(rig.agent_dir.join("meta/boot_id"), "00000000-0000-0000-0000-000000000000\n")?;
    let _agent = rig.agent()?;
    // A RUNNING whose acknowledgement died with the agent may come again first.
    let status = next_change(&session, &mut events).await?;
    ensure!(
        (status.state(), status.reason()) == (TaskState::TaskLost, Reason::AgentRestarted),
        "got {:?} ({:?}: {})",
        status.state(),
        status.reason(),
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn executors_of_frameworks_without_checkpoint_do_not_survive_a_restart() -> anyhow::Result<()>
{
    let (rig, agent) = Rig::start()?;
    let pids = rig.subdir("pids")?;
    let (session, mut events, pid, executor) =
        one_long_task(&rig.master.addr, false, &pids).await?;
    agent.kill()?;
    let _agent = rig.agent()?;
    eventually("the executor and its task are gone", || !alive(pid) && !alive(executor)).await?;
    let status = next_change(&session, &mut events).await?;
    ensure!(
        status.state() == TaskState::TaskLost,
        "got {:?}: {}",
        status.state(),
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn recover_cleanup_kills_what_the_last_run_left() -> anyhow::Result<()> {
    let (rig, agent) = Rig::start()?;
    let pids = rig.subdir("pids")?;
    let (_session, _events, pid, executor) = one_long_task(&rig.master.addr, true, &pids).await?;
    agent.kill()?;
    ensure!(alive(pid) && alive(executor), "a checkpointing framework's task outlives its agent");
    let mut args = rig.agent_args();
    args.push("--recover=cleanup".into());
    let output = Command::new(agora_bin()).arg("agent").args(&args).output()?;
    ensure!(output.status.success(), "cleanup failed: {}", String::from_utf8_lossy(&output.stderr));
    ensure!(!alive(pid) && !alive(executor), "cleanup left the task or its executor running");
    ensure!(!rig.agent_dir.join("meta").exists(), "cleanup kept the checkpoint");
    Ok(())
}

#[tokio::test]
async fn a_pymesos_executor_resubscribes_to_a_restarted_agent() -> anyhow::Result<()> {
    let Some(python) = std::env::var_os("AGORA_COMPAT_PYTHON") else {
        required_in_ci("the pymesos executor reconnect test", "AGORA_COMPAT_PYTHON is not set");
        return Ok(());
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compat/pymesos_executor.py");
    let rig = Rig::new()?;
    let master = &rig.master;
    let agent_dir = &rig.agent_dir;
    let mut args = rig.agent_args();
    // pymesos backs off from 2 s up to 15 s between attempts; Mesos allows waiting 15 s.
    let timeout = args.iter().position(|a| a == "10secs").context("timeout flag")?;
    args[timeout] = "15secs".into();
    let agent = Daemon::agent(&args)?;

    let (session, mut events) = SchedulerSession::subscribe(
        &master.addr,
        framework("pymesos-reconnect", true),
        Format::Json,
    )
    .await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let variable = |name: &str, value: &str| v1::environment::Variable {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let executor = v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: "pymesos".into() },
        command: Some(v1::CommandInfo {
            value: Some(format!("{} {}", python.to_string_lossy(), script.display())),
            shell: Some(true),
            environment: Some(v1::Environment {
                variables: vec![
                    // The task waits for our message, which goes out after the restart.
                    variable("AGORA_COMPAT_EXECUTOR_MESSAGE_SECS", "120"),
                    variable("AGORA_COMPAT_EXECUTOR_RECONNECT_SECS", "60"),
                ],
            }),
            ..Default::default()
        }),
        resources: command_task("x", &offer.agent_id, "cpus:0.1;mem:64", "true").resources,
        ..Default::default()
    };
    let mut task = command_task("py", &offer.agent_id, "cpus:0.1;mem:64", "true");
    task.command = None;
    task.executor = Some(executor);
    task.data = Some(b"agora".to_vec().into());
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        ensure!(
            matches!(status.state(), TaskState::TaskRunning | TaskState::TaskStarting),
            "got {:?}: {}",
            status.state(),
            status.message()
        );
        if status.state() == TaskState::TaskRunning {
            break;
        }
    }
    agent.kill()?;
    let _agent = Daemon::agent(&args)?;
    let stderr = agent_dir.join(format!(
        "slaves/{}/frameworks/{}/executors/pymesos/runs/latest/stderr",
        offer.agent_id.value, offer.framework_id.value
    ));
    let resubscribed = eventually("the pymesos executor re-subscribed", || {
        std::fs::read_to_string(&stderr).is_ok_and(|log| log.contains("re-SUBSCRIBED"))
    })
    .await;
    if let Err(e) = resubscribed {
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        bail!("{e}; the executor's stderr:\n{log}");
    }
    let mut call = scheduler::Call::default();
    call.set_type(scheduler::call::Type::Message);
    call.message = Some(scheduler::call::Message {
        agent_id: Some(offer.agent_id.clone()),
        executor_id: Some(v1::ExecutorId { value: "pymesos".into() }),
        data: Some(b"ping".to_vec().into()),
    });
    session.call(call).await?;
    loop {
        let event = next_event(&mut events).await?;
        if let Some(status) = event.update.and_then(|u| u.status) {
            session.acknowledge(&status).await?;
            match status.state() {
                TaskState::TaskRunning => continue,
                TaskState::TaskFinished => {
                    ensure!(
                        status.data.as_deref() == Some(b"aroga".as_slice()),
                        "data {:?}",
                        status.data
                    );
                    return Ok(());
                }
                other => bail!("the task went {other:?}: {}", status.message()),
            }
        }
    }
}

/// A task never outlives its executor: SIGKILL the executor and the task's process goes too,
/// whether the agent that started the executor sees it end or a restarted agent (which
/// recovered it) does.
#[tokio::test]
async fn a_sigkilled_executor_takes_its_task_along() -> anyhow::Result<()> {
    let (rig, agent) = Rig::start()?;
    let pids = rig.subdir("pids")?;
    let (session, mut events, pid, executor) = one_long_task(&rig.master.addr, true, &pids).await?;
    let sigkill = |victim: i32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim),
            nix::sys::signal::Signal::SIGKILL,
        )
    };
    sigkill(executor)?;
    eventually("the task's process is gone", || !alive(pid)).await?;
    let status = next_change(&session, &mut events).await?;
    ensure!(status.state() == TaskState::TaskFailed, "got {:?}", status.state());
    // The first framework would otherwise hold the agent's offer and starve the second.
    drop((session, events));

    // Once more, with the executor ending while its agent is down.
    let (session, mut events, pid, executor) = one_long_task(&rig.master.addr, true, &pids).await?;
    agent.kill()?;
    sigkill(executor)?;
    let _agent = rig.agent()?;
    eventually("the task's process is gone", || !alive(pid)).await?;
    let status = next_change(&session, &mut events).await?;
    ensure!(status.state() == TaskState::TaskFailed, "got {:?}", status.state());
    Ok(())
}

#[tokio::test]
async fn an_executor_in_a_pid_namespace_is_recovered_by_its_host_pid() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        required_in_ci("agent restart: pid namespace", "not running as root");
        return Ok(());
    }
    let rig = Rig::new()?;
    let mut args = rig.agent_args();
    args.push("--isolation=namespaces/pid".into());
    let agent = Daemon::agent(&args)?;
    let info = framework("ns", true);
    let (session, mut events) =
        SchedulerSession::subscribe(&rig.master.addr, info, Format::Protobuf).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = command_task("long", &offer.agent_id, "cpus:0.1;mem:32", "exec sleep 600");
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        ensure!(status.state() != TaskState::TaskFailed, "{status:?}");
        if status.state() == TaskState::TaskRunning {
            break;
        }
    }
    agent.kill()?;
    let agent = Daemon::agent(&args)?;
    // The agent answers `/state` once its recovery is over: the executor subscribed again
    // or was given up.
    let url = format!("http://{}/state", agent.addr);
    let mut recovered = false;
    for _ in 0..1200 {
        if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(recovered, "the restarted agent never finished its recovery");
    // Only a recovered executor that subscribed again can carry the kill to its task; one
    // taken for dead would have its task end TASK_LOST or TASK_FAILED instead.
    session.kill(v1::TaskId { value: "long".into() }).await?;
    let status = next_change(&session, &mut events).await?;
    ensure!(
        status.state() == TaskState::TaskKilled,
        "got {:?} ({:?}: {})",
        status.state(),
        status.reason(),
        status.message()
    );
    Ok(())
}
