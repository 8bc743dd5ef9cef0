//! Tests of the agent's read-only views: which GET_TASKS list a task is in as it goes from
//! queued to completed, executors and frameworks that end, the containers with their limits,
//! and the `slave/*` metrics.

use super::*;
use crate::agent::scalar_sum;

fn ids(tasks: &[v1::Task]) -> Vec<String> {
    tasks.iter().filter_map(|t| Some(t.task_id.clone()?.value)).collect()
}

fn with_resources(mut task: v1::TaskInfo, text: &str) -> v1::TaskInfo {
    let resources = Resources::parse(text).expect("valid");
    task.resources = convert::resources_to_proto(&resources, None);
    task
}

#[test]
fn a_task_moves_from_queued_to_launched_to_terminated_to_completed() {
    let mut h = Harness::registered();
    h.handle(run_task(framework(false), custom_task("t1", "e")));
    let tasks = h.agent.get_tasks();
    assert_eq!(ids(&tasks.queued_tasks), ["t1"]);
    assert!(tasks.pending_tasks.is_empty() && tasks.launched_tasks.is_empty());
    assert_eq!(tasks.queued_tasks[0].state(), TaskState::TaskStaging);
    assert_eq!(
        tasks.queued_tasks[0].executor_id.as_ref().map(|e| e.value.as_str()),
        Some("e"),
        "a custom executor's task names it"
    );

    assert_eq!(h.subscribe("e").1, Ok(()));
    assert_eq!(h.update("e", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
    h.handle(acknowledge("t1", 1));
    let tasks = h.agent.get_tasks();
    assert!(tasks.queued_tasks.is_empty());
    assert_eq!(ids(&tasks.launched_tasks), ["t1"]);
    assert_eq!(tasks.launched_tasks[0].state(), TaskState::TaskRunning);

    assert_eq!(h.update("e", status("t1", TaskState::TaskFinished, 2)).0, Ok(()));
    let tasks = h.agent.get_tasks();
    assert!(tasks.launched_tasks.is_empty());
    assert_eq!(ids(&tasks.terminated_tasks), ["t1"], "over, but not acknowledged");

    h.handle(acknowledge("t1", 2));
    let tasks = h.agent.get_tasks();
    assert!(tasks.terminated_tasks.is_empty());
    assert_eq!(ids(&tasks.completed_tasks), ["t1"]);
    assert_eq!(tasks.completed_tasks[0].state(), TaskState::TaskFinished);
    assert_eq!(tasks.completed_tasks[0].name.as_deref(), Some("t1"));
}

#[test]
fn ended_executors_and_frameworks_are_listed_as_completed() {
    let mut h = Harness::registered();
    h.running("t1");
    let executors = h.agent.get_executors();
    assert_eq!(executors.executors.len(), 1);
    let info = &executors.executors[0].executor_info;
    assert_eq!(info.executor_id.value, "t1", "a command task's executor takes its id");
    assert_eq!(info.framework_id.as_ref().map(|f| f.value.as_str()), Some(FRAMEWORK_ID));
    assert_eq!(h.agent.get_frameworks().frameworks.len(), 1);

    h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        status: Some(0),
    });
    let state = h.agent.get_state();
    let executors = state.get_executors.expect("executors");
    assert!(executors.executors.is_empty());
    assert_eq!(executors.completed_executors.len(), 1);
    let frameworks = state.get_frameworks.expect("frameworks");
    assert!(frameworks.frameworks.is_empty());
    assert_eq!(frameworks.completed_frameworks[0].framework_info.name, "demo");
    // The task the executor left failed; its update waits for the acknowledgement.
    let tasks = state.get_tasks.expect("tasks");
    assert_eq!(ids(&tasks.terminated_tasks), ["t1"]);
    assert_eq!(tasks.terminated_tasks[0].state(), TaskState::TaskFailed);
    let metrics = h.agent.metrics();
    assert_eq!(metrics["slave/executors_terminated"], 1.0);
    assert_eq!(metrics["slave/tasks_failed"], 1.0);
    assert_eq!(metrics["slave/frameworks_active"], 0.0);
}

#[test]
fn containers_carry_the_executor_and_its_live_tasks_resources() {
    let mut h = Harness::registered();
    h.handle(run_task(framework(false), with_resources(custom_task("t1", "e"), "cpus:1;mem:64")));
    h.handle(run_task(framework(false), with_resources(custom_task("t2", "e"), "cpus:2;mem:32")));
    let containers = h.agent.containers();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!((c.framework_id.as_str(), c.executor_id.as_str()), (FRAMEWORK_ID, "e"));
    assert!(!c.container_id.is_empty());
    assert!(c.sandbox.ends_with(&format!("/runs/{}", c.container_id)), "{}", c.sandbox);
    assert_eq!(scalar_sum(&c.resources, "cpus"), 3.0);
    assert_eq!(scalar_sum(&c.resources, "mem"), 96.0);

    assert_eq!(h.subscribe("e").1, Ok(()));
    assert_eq!(h.update("e", status("t2", TaskState::TaskFinished, 1)).0, Ok(()));
    let c = &h.agent.containers()[0];
    assert_eq!(scalar_sum(&c.resources, "cpus"), 1.0, "a finished task holds nothing");
}

#[test]
fn metrics_count_executors_tasks_and_updates() {
    let mut h = Harness::registered();
    h.handle(run_task(framework(false), custom_task("queued", "slow")));
    h.running("t1");
    assert_eq!(h.update("t1", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
    assert!(h.update("nobody", status("t9", TaskState::TaskRunning, 2)).0.is_err());
    let m = h.agent.metrics();
    assert_eq!(m["slave/registered"], 1.0);
    assert_eq!(m["slave/cpus_total"], 4.0);
    assert_eq!(m["slave/mem_total"], 1024.0);
    assert_eq!(m["slave/executors_registering"], 1.0);
    assert_eq!(m["slave/executors_running"], 1.0);
    assert_eq!(m["slave/tasks_staging"], 1.0);
    assert_eq!(m["slave/tasks_running"], 1.0);
    assert_eq!(m["slave/valid_status_updates"], 1.0);
    assert_eq!(m["slave/invalid_status_updates"], 1.0);
    assert_eq!(m["slave/frameworks_active"], 1.0);

    h.handle(kill_task("t1"));
    let m = h.agent.metrics();
    assert_eq!(m["slave/executors_running"], 1.0, "a task kill does not end its executor");
    h.handle(shutdown_framework());
    // Both executors are asked to end (the one that never subscribed is killed at once).
    assert_eq!(h.agent.metrics()["slave/executors_terminating"], 2.0);
}

#[test]
fn get_agent_carries_the_id_once_registered() {
    let h = Harness::new();
    assert!(h.agent.get_agent().agent_info.expect("info").id.is_none());
    let h = Harness::registered();
    let info = h.agent.get_agent().agent_info.expect("info");
    assert_eq!(info.id.map(|i| i.value), Some(AGENT_ID.to_string()));
    assert_eq!(info.hostname, "agent7");
}

#[test]
fn the_agent_recovers_until_its_live_executors_subscribe_again_or_time_out() {
    let mut h = Harness::registered();
    assert!(!h.agent.recovering());
    h.running_for(framework(true), "t1");
    h.running_for(framework(true), "t2");
    h.restart(Liveness::Alive, false);
    assert!(h.agent.recovering(), "both executors are expected back");
    assert_eq!(h.subscribe("t1").1, Ok(()));
    assert!(h.agent.recovering(), "t2 is still expected");
    h.advance(3);
    h.handle(Input::Tick);
    assert!(!h.agent.recovering(), "t2 ran out of time to come back");

    // Executors that did not survive the restart are nothing to wait for.
    let mut h = Harness::registered();
    h.running_for(framework(true), "t1");
    h.restart(Liveness::Gone, false);
    assert!(!h.agent.recovering());
}
