//! `--executor_registration_timeout` against a real `agora dev`: a custom executor whose process
//! never subscribes is killed, and its task fails with REASON_EXECUTOR_REGISTRATION_TIMEOUT.

use agora_client::scheduler::SchedulerSession;
use agora_proto::{Format, v1};
use agora_tests::{Cluster, ClusterOptions, command_task, next_offers, next_update};

#[tokio::test]
async fn an_executor_that_never_subscribes_fails_its_task() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(ClusterOptions {
        extra: vec!["--executor_registration_timeout".into(), "1secs".into()],
        ..Default::default()
    })?;
    let info =
        v1::FrameworkInfo { user: "root".into(), name: "silent".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, info, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let mut task = command_task("t", &offer.agent_id, "cpus:0.1;mem:32", "true");
    task.command = None;
    task.executor = Some(v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: "mute".into() },
        // A process that runs but never speaks the executor API.
        command: Some(v1::CommandInfo { value: Some("sleep 600".into()), ..Default::default() }),
        ..Default::default()
    });
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    let status = next_update(&session, &mut events).await?;
    session.acknowledge(&status).await?;
    assert_eq!(status.state(), v1::TaskState::TaskFailed, "{status:?}");
    assert_eq!(status.reason(), v1::task_status::Reason::ExecutorRegistrationTimeout);
    Ok(())
}
