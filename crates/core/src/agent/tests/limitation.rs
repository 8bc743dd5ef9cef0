//! Agent tests of container limitations: the container's size in the launch order, and tasks
//! ending TASK_FAILED with the limitation's reason once the shell reports that a container
//! went over a limit, whether the executor reports the task's end or dies first.

use super::*;
use crate::agent::Limitation;

fn sized_task(id: &str) -> v1::TaskInfo {
    let mut task = command_task(id);
    task.resources = convert::resources_to_proto(
        &Resources::parse("cpus:0.5;mem:64").expect("valid resources"),
        None,
    );
    task
}

fn oom(executor_id: &str) -> Input {
    Input::ContainerLimited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: executor_id.into(),
        limitation: Limitation::Memory,
        message: "Memory limit exceeded: 64MB".into(),
    }
}

fn assert_limited(status: &v1::TaskStatus) {
    assert_eq!(
        (status.state(), status.reason(), status.source()),
        (TaskState::TaskFailed, Reason::ContainerLimitationMemory, Source::Agent)
    );
    assert_eq!(status.message.as_deref(), Some("Memory limit exceeded: 64MB"));
    let limited = status.limitation.as_ref().expect("the limitation is named");
    assert_eq!(limited.resources[0].name, "mem");
}

#[test]
fn a_command_container_is_its_task_plus_the_executor_allowance() {
    let mut h = Harness::registered();
    let out = h.handle(run_task(framework(false), sized_task("t1")));
    let launch = launches(&out).pop().expect("a launch");
    assert_eq!(launch.cpus, Some(0.6));
    assert_eq!(launch.mem_mb, Some(96.0));
    let mut h = Harness::registered();
    let out = h.handle(run_task(framework(false), command_task("t2")));
    let launch = launches(&out).pop().expect("a launch");
    assert_eq!((launch.cpus, launch.mem_mb), (None, None), "nothing asked, nothing limited");
    assert_eq!((launch.disk_mb, launch.rlimits.as_ref()), (None, None));
}

#[test]
fn a_command_container_carries_its_disk_and_its_task_rlimits() {
    let mut task = command_task("t1");
    task.resources = convert::resources_to_proto(
        &Resources::parse("cpus:0.5;mem:64;disk:10").expect("valid resources"),
        None,
    );
    let rlimit = v1::r_limit_info::RLimit {
        r#type: Some(v1::r_limit_info::r_limit::Type::RlmtNofile as i32),
        hard: Some(100),
        soft: Some(50),
    };
    let rlimits = v1::RLimitInfo { rlimits: vec![rlimit] };
    task.container =
        Some(v1::ContainerInfo { rlimit_info: Some(rlimits.clone()), ..Default::default() });
    let mut h = Harness::registered();
    let out = h.handle(run_task(framework(false), task));
    let launch = launches(&out).pop().expect("a launch");
    assert_eq!(launch.disk_mb, Some(10.0), "the executor's allowance has no disk");
    assert_eq!(launch.rlimits, Some(rlimits));
}

#[test]
fn a_task_the_executor_reports_killed_after_an_oom_fails_with_the_memory_reason() {
    let mut h = Harness::registered();
    h.running("t1");
    assert!(h.handle(oom("t1")).is_empty(), "the shell destroys the container itself");
    let mut killed = status("t1", TaskState::TaskFailed, 1);
    killed.message = Some("Command terminated by signal 9".into());
    let (result, out) = h.update("t1", killed);
    assert_eq!(result, Ok(()));
    let sent = sent(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_limited(&sent[0].0);
}

#[test]
fn tasks_left_when_a_limited_executor_dies_fail_with_the_memory_reason() {
    let mut h = Harness::registered();
    h.running("t1");
    h.handle(oom("t1"));
    // A second report of the same container changes nothing.
    h.handle(Input::ContainerLimited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        limitation: Limitation::Disk,
        message: "later".into(),
    });
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        status: Some(9),
    });
    let sent = sent(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_limited(&sent[0].0);
}

#[test]
fn a_finished_task_stays_finished_and_unknown_executors_are_ignored() {
    let mut h = Harness::registered();
    h.running("t1");
    assert!(h.handle(oom("nobody")).is_empty());
    h.handle(oom("t1"));
    let (_, out) = h.update("t1", status("t1", TaskState::TaskFinished, 1));
    assert_eq!(sent(&out)[0].0.state(), TaskState::TaskFinished);
}

/// The container sizes the outputs order.
fn resizes(out: &[Output]) -> Vec<(Option<f64>, Option<f64>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::ResizeContainer { cpus, mem_mb, disk_mb: None, .. } => Some((*cpus, *mem_mb)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_container_grows_with_the_tasks_that_join_it_and_shrinks_as_they_end() {
    let sized_custom = |id: &str| {
        let mut task = custom_task(id, "e1");
        task.resources = sized_task(id).resources;
        if let Some(executor) = task.executor.as_mut() {
            executor.resources = convert::resources_to_proto(
                &Resources::parse("cpus:0.1;mem:32").expect("valid resources"),
                None,
            );
        }
        task
    };
    let mut h = Harness::registered();
    let out = h.handle(run_task(framework(false), sized_custom("t1")));
    let launch = launches(&out).pop().expect("a launch");
    assert_eq!((launch.cpus, launch.mem_mb), (Some(0.6), Some(96.0)), "no allowance on top");
    assert!(resizes(&out).is_empty(), "the launch has the size already");
    let (_, subscribed, _) = h.subscribe("e1");
    assert_eq!(subscribed, Ok(()));
    let out = h.handle(run_task(framework(false), sized_custom("t2")));
    assert_eq!(resizes(&out), vec![(Some(1.1), Some(160.0))]);
    let (result, out) = h.update("e1", status("t2", TaskState::TaskRunning, 1));
    assert_eq!(result, Ok(()));
    assert!(resizes(&out).is_empty(), "nothing changed");
    let (result, out) = h.update("e1", status("t2", TaskState::TaskFinished, 2));
    assert_eq!(result, Ok(()));
    assert_eq!(resizes(&out), vec![(Some(0.6), Some(96.0))]);
}
