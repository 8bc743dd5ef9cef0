//! Agent health end to end: a real `agora master` pings a real `agora agent`; while the agent
//! is stopped (SIGSTOP) it misses its pings and becomes unreachable, so its running task is
//! reported TASK_LOST; once it continues (SIGCONT) it re-registers with the task, which was
//! never killed, and the framework hears it is RUNNING again.

use agora_client::scheduler::SchedulerSession;
use agora_proto::v1::task_status::Reason;
use agora_proto::{Format, v1};
use agora_tests::{Daemon, command_task, next_offers, next_update};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[tokio::test]
async fn a_stopped_agent_becomes_unreachable_and_its_task_comes_back() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let master_dir = work.path().join("master");
    let agent_dir = work.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let master = Daemon::master(&[
        "--port",
        "0",
        "--work_dir",
        &master_dir.to_string_lossy(),
        "--allocation_interval",
        "100ms",
        // Short intervals keep the test fast; they are flags, not assertions.
        "--agent_ping_timeout",
        "500ms",
        "--max_agent_ping_timeouts",
        "3",
    ])?;
    let agent = Daemon::agent(&[
        "--master",
        &master.addr,
        "--port",
        "0",
        "--work_dir",
        &agent_dir.to_string_lossy(),
        "--resources",
        "cpus:2;mem:1024",
        "--registration_backoff_factor",
        "100ms",
        "--registration_backoff_max",
        "500ms",
        "--status_update_retry_interval",
        "500ms",
    ])?;
    let info = v1::FrameworkInfo {
        user: "root".into(),
        name: "health".into(),
        failover_timeout: Some(300.0),
        ..Default::default()
    };
    let (session, mut events) =
        SchedulerSession::subscribe(&master.addr, info, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = command_task("t", &offer.agent_id, "cpus:0.1;mem:32", "sleep 600");
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.state() == v1::TaskState::TaskRunning {
            break;
        }
    }

    let pid = Pid::from_raw(agent.pid());
    kill(pid, Signal::SIGSTOP)?;
    let lost = next_update(&session, &mut events).await;
    // Let the agent go on before anything can fail, so that it is never left stopped.
    kill(pid, Signal::SIGCONT)?;
    let lost = lost?;
    assert_eq!((lost.state(), lost.reason()), (v1::TaskState::TaskLost, Reason::AgentRemoved));

    let back = next_update(&session, &mut events).await?;
    assert_eq!(back.task_id.value, "t");
    assert_eq!(
        (back.state(), back.reason()),
        (v1::TaskState::TaskRunning, Reason::AgentReregistered),
        "{back:?}"
    );
    drop(agent);
    drop(master);
    Ok(())
}
