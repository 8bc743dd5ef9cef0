//! Agent tests of task groups: RUN_TASK_GROUP launching the default executor or a custom one,
//! LAUNCH_GROUP delivery (at once or after SUBSCRIBE, in arrival order with single tasks),
//! kills of group tasks before and after delivery, the executor's end, and what a
//! re-subscribing executor hands back (unacknowledged updates and tasks).

use super::*;

/// An ExecutorInfo of type DEFAULT, as the master forwards it: no command, own resources.
fn default_executor(id: &str) -> v1::ExecutorInfo {
    let resources = Resources::parse("cpus:0.1;mem:32").expect("valid");
    let allocation = v1::resource::AllocationInfo { role: Some("web".into()) };
    let mut executor = v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: id.into() },
        framework_id: Some(v1::FrameworkId { value: FRAMEWORK_ID.into() }),
        resources: convert::resources_to_proto(&resources, Some(&allocation)),
        ..Default::default()
    };
    executor.set_type(v1::executor_info::Type::Default);
    executor
}

/// The custom executor of `custom_task`, typed CUSTOM as LAUNCH_GROUP requires.
fn custom_executor(id: &str) -> v1::ExecutorInfo {
    let mut executor = custom_task("unused", id).executor.expect("a custom task has one");
    executor.set_type(v1::executor_info::Type::Custom);
    executor
}

fn run_group(executor: v1::ExecutorInfo, task_ids: &[&str]) -> Input {
    let mut e = master_event(MasterEventType::RunTaskGroup);
    e.run_task_group = Some(internal::agent_event::RunTaskGroup {
        framework_info: framework(false),
        executor,
        task_group: v1::TaskGroupInfo {
            tasks: task_ids.iter().map(|id| command_task(id)).collect(),
        },
    });
    Input::Master(e)
}

/// What each LAUNCH or LAUNCH_GROUP event to `conn` carries, as task id lists.
fn delivered(out: &[Output], conn: ConnId) -> Vec<Vec<String>> {
    exec_events(out, conn)
        .into_iter()
        .filter_map(|e| match (e.launch, e.launch_group) {
            (Some(launch), _) => Some(vec![launch.task.task_id.value]),
            (None, Some(group)) => {
                Some(group.task_group.tasks.into_iter().map(|t| t.task_id.value).collect())
            }
            (None, None) => None,
        })
        .collect()
}

fn ids(lists: &[&[&str]]) -> Vec<Vec<String>> {
    lists.iter().map(|l| l.iter().map(|s| s.to_string()).collect()).collect()
}

#[test]
fn task_groups_launch_the_default_executor_and_arrive_as_one_launch_group() {
    let mut h = Harness::registered();
    let out = h.handle(run_group(default_executor("e1"), &["g1", "g2"]));
    let launch = launches(&out).pop().expect("LaunchExecutor");
    assert_eq!(launch.executor_id, "e1");
    assert_eq!(launch.command.value.as_deref(), Some("/usr/bin/agora"));
    assert_eq!(launch.command.arguments, ["agora", "executor", "--default"]);
    assert!(!launch.command.shell(), "the arguments are the whole argv");
    assert_eq!(launch.user.as_deref(), Some("alice"));
    assert_eq!(env_of(&launch, "MESOS_EXECUTOR_ID").as_deref(), Some("e1"));
    assert_eq!(env_of(&launch, "MESOS_ALLOCATION_ROLE").as_deref(), Some("web"));
    assert!(to_master(&out).is_empty(), "nothing to report yet");

    // A second group before the executor subscribed waits with the first.
    let out = h.handle(run_group(default_executor("e1"), &["g3"]));
    assert!(out.is_empty(), "{out:?}");
    let (conn, result, out) = h.subscribe("e1");
    assert_eq!(result, Ok(()));
    assert_eq!(
        exec_kinds(&out, conn),
        [EventType::Subscribed, EventType::LaunchGroup, EventType::LaunchGroup]
    );
    let subscribed = exec_events(&out, conn)[0].subscribed.clone().expect("SUBSCRIBED");
    assert_eq!(
        subscribed.executor_info.r#type(),
        v1::executor_info::Type::Default,
        "the executor sees the ExecutorInfo the framework sent"
    );
    assert_eq!(delivered(&out, conn), ids(&[&["g1", "g2"], &["g3"]]));

    // Once it runs, groups go straight to it; no second executor starts.
    let out = h.handle(run_group(default_executor("e1"), &["g4", "g5"]));
    assert!(launches(&out).is_empty());
    assert_eq!(delivered(&out, conn), ids(&[&["g4", "g5"]]));
    assert_eq!(h.agent.executors().len(), 1);

    // Each task of a group has its own update stream.
    assert_eq!(h.update("e1", status("g1", TaskState::TaskRunning, 1)).0, Ok(()));
    let (_, out) = h.update("e1", status("g2", TaskState::TaskRunning, 2));
    assert_eq!(sent_short(&out), [("g2".into(), TaskState::TaskRunning, 2)]);
    assert_eq!(h.agent.pending_updates(), 2);
}

#[test]
fn custom_executors_take_groups_and_tasks_in_arrival_order() {
    let mut h = Harness::registered();
    let out = h.handle(run_task(framework(false), custom_task("t1", "e1")));
    assert_eq!(launches(&out).len(), 1);
    h.handle(run_group(custom_executor("e1"), &["g1", "g2"]));
    h.handle(run_task(framework(false), custom_task("t2", "e1")));
    let (conn, _, out) = h.subscribe("e1");
    assert_eq!(delivered(&out, conn), ids(&[&["t1"], &["g1", "g2"], &["t2"]]));

    // A group that starts a custom executor runs the executor's own command.
    let mut h = Harness::registered();
    let launch = launches(&h.handle(run_group(custom_executor("e2"), &["g1"])))
        .pop()
        .expect("LaunchExecutor");
    assert_eq!(launch.command.value.as_deref(), Some("./my-executor"));
    assert_eq!(env_of(&launch, "MESOS_ALLOCATION_ROLE"), None, "only built-in executors get it");
}

#[test]
fn killing_a_queued_group_task_kills_the_whole_group() {
    let mut h = Harness::registered();
    h.handle(run_group(default_executor("e1"), &["g1", "g2"]));
    let out = h.handle(kill_task("g2"));
    let mut killed: Vec<(String, TaskState, Reason)> = sent(&out)
        .into_iter()
        .map(|(s, _)| (s.task_id.value.clone(), s.state(), s.reason()))
        .collect();
    killed.sort();
    assert_eq!(
        killed,
        [
            ("g1".into(), TaskState::TaskKilled, Reason::TaskKilledDuringLaunch),
            ("g2".into(), TaskState::TaskKilled, Reason::TaskKilledDuringLaunch),
        ]
    );
    // Nothing is left for the executor, which never subscribed: it is killed at once.
    assert!(out.contains(&Output::KillExecutor {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "e1".into()
    }));
}

#[test]
fn killing_a_queued_group_spares_the_executor_s_other_work() {
    let mut h = Harness::registered();
    h.handle(run_group(default_executor("e1"), &["g1", "g2"]));
    h.handle(run_group(default_executor("e1"), &["h1"]));
    let out = h.handle(kill_task("g1"));
    assert_eq!(sent(&out).len(), 2);
    assert!(!out.iter().any(|o| matches!(o, Output::KillExecutor { .. })), "h1 still waits");
    let (conn, _, out) = h.subscribe("e1");
    assert_eq!(delivered(&out, conn), ids(&[&["h1"]]));
}

#[test]
fn kills_of_delivered_group_tasks_go_to_the_executor_and_its_death_kills_the_group() {
    let mut h = Harness::registered();
    h.handle(run_group(default_executor("e1"), &["g1", "g2"]));
    let (conn, _, _) = h.subscribe("e1");
    assert_eq!(h.update("e1", status("g1", TaskState::TaskRunning, 1)).0, Ok(()));
    h.handle(acknowledge("g1", 1));

    let out = h.handle(kill_task("g1"));
    let kill = exec_events(&out, conn).pop().and_then(|e| e.kill).expect("KILL");
    assert_eq!(kill.task_id.value, "g1", "the executor kills the rest of the group itself");
    assert!(sent(&out).is_empty());

    // The executor dies before reporting: the kill covered the whole group.
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "e1".into(),
        status: Some(9),
    });
    let mut ended: Vec<(String, TaskState)> =
        sent_short(&out).into_iter().map(|(id, state, _)| (id, state)).collect();
    ended.sort();
    assert_eq!(ended, [("g1".into(), TaskState::TaskKilled), ("g2".into(), TaskState::TaskKilled)]);
}

#[test]
fn the_default_executor_s_end_fails_the_unfinished_tasks_and_reaches_the_master() {
    let mut h = Harness::registered();
    h.handle(run_group(default_executor("e1"), &["g1", "g2"]));
    let (conn, _, _) = h.subscribe("e1");
    assert_eq!(h.update("e1", status("g1", TaskState::TaskFinished, 1)).0, Ok(()));
    assert_eq!(h.update("e1", status("g2", TaskState::TaskRunning, 2)).0, Ok(()));
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "e1".into(),
        status: Some(256),
    });
    assert!(out.contains(&Output::CloseExecutor { conn }));
    // g2's failure queues behind its unacknowledged RUNNING; g1 had finished.
    assert!(sent(&out).is_empty(), "{out:?}");
    let out = h.handle(acknowledge("g2", 2));
    let failed = sent(&out).pop().expect("TASK_FAILED").0;
    assert_eq!(
        (failed.task_id.value.as_str(), failed.state(), failed.reason(), failed.source()),
        ("g2", TaskState::TaskFailed, Reason::ExecutorTerminated, Source::Agent)
    );
    assert!(failed.message().contains("exited with status 1"), "{:?}", failed.message());
    assert_eq!(h.agent.pending_updates(), 2, "g1's FINISHED and g2's FAILED");
}

#[test]
fn executor_exit_is_reported_for_default_executors() {
    let mut h = Harness::registered();
    h.handle(run_group(default_executor("e1"), &["g1"]));
    assert_eq!(h.subscribe("e1").1, Ok(()));
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "e1".into(),
        status: Some(0),
    });
    let exited =
        to_master(&out).into_iter().find_map(|c| c.executor_exited).expect("EXECUTOR_EXITED");
    assert_eq!((exited.executor_id.value.as_str(), exited.status), ("e1", Some(0)));
}

#[test]
fn groups_for_a_terminating_executor_are_lost() {
    let mut h = Harness::registered();
    h.handle(run_group(default_executor("e1"), &["g1"]));
    assert_eq!(h.subscribe("e1").1, Ok(()));
    let mut shutdown = master_event(MasterEventType::ShutdownExecutor);
    shutdown.shutdown_executor = Some(internal::agent_event::ShutdownExecutor {
        framework_id: v1::FrameworkId { value: FRAMEWORK_ID.into() },
        executor_id: v1::ExecutorId { value: "e1".into() },
    });
    h.handle(Input::Master(shutdown));
    let out = h.handle(run_group(default_executor("e1"), &["g2", "g3"]));
    let lost: Vec<(String, TaskState)> =
        sent_short(&out).into_iter().map(|(id, state, _)| (id, state)).collect();
    assert_eq!(lost, [("g2".into(), TaskState::TaskLost), ("g3".into(), TaskState::TaskLost)]);
    assert!(launches(&out).is_empty());
    // An empty group changes nothing.
    assert!(h.handle(run_group(default_executor("e9"), &[])).is_empty());
}

#[test]
fn resubscription_resends_unacknowledged_updates_as_updates() {
    let mut h = Harness::registered();
    let old = h.running("t1");
    assert_eq!(h.update("t1", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
    h.handle(Input::ExecutorClosed { conn: old });

    // The executor never saw the ack of RUNNING and finished meanwhile.
    let resend = |n: u8, state| executor::call::Update { status: status("t1", state, n) };
    let mut call = executor_call("t1", CallType::Subscribe);
    call.subscribe = Some(executor::call::Subscribe {
        unacknowledged_tasks: vec![command_task("t1")],
        unacknowledged_updates: vec![
            resend(1, TaskState::TaskRunning),
            resend(2, TaskState::TaskFinished),
        ],
    });
    let out = h.handle(Input::ExecutorSubscribe { req: 50, conn: 51, call: call.clone() });
    assert_eq!(reply(&out, 50), Ok(()));
    assert_eq!(
        exec_kinds(&out, 51),
        [EventType::Subscribed, EventType::Acknowledged, EventType::Acknowledged],
        "both are acknowledged, and the known task is not launched again"
    );
    assert!(sent(&out).is_empty(), "the duplicate is dropped, FINISHED waits for RUNNING's ack");
    assert_eq!(h.agent.pending_updates(), 2);
    assert_eq!(
        sent_short(&h.handle(acknowledge("t1", 1))),
        [("t1".into(), TaskState::TaskFinished, 2)]
    );

    // A resent update that fails validation refuses the whole subscription.
    let mut bad = call;
    if let Some(subscribe) = bad.subscribe.as_mut() {
        subscribe.unacknowledged_updates[0].status.uuid = None;
    }
    let out = h.handle(Input::ExecutorSubscribe { req: 60, conn: 61, call: bad });
    assert!(matches!(reply(&out, 60), Err(CallError::BadRequest(_))), "{out:?}");
    assert_eq!(out.len(), 1, "only the reply: the stream on conn 51 stays the executor's");
}

#[test]
fn resubscription_takes_back_queued_groups_the_executor_already_holds() {
    let mut h = Harness::registered();
    h.handle(run_group(default_executor("e1"), &["g1", "g2"]));
    h.handle(run_group(default_executor("e1"), &["h1"]));
    // The executor names one task of the first group: it holds that whole group.
    let mut call = executor_call("e1", CallType::Subscribe);
    call.subscribe = Some(executor::call::Subscribe {
        unacknowledged_tasks: vec![command_task("g2"), command_task("unknown")],
        unacknowledged_updates: vec![],
    });
    let out = h.handle(Input::ExecutorSubscribe { req: 1, conn: 2, call });
    assert_eq!(reply(&out, 1), Ok(()));
    assert_eq!(delivered(&out, 2), ids(&[&["h1"]]));
    // g1 counts as delivered: its kill goes to the executor.
    let out = h.handle(kill_task("g1"));
    assert_eq!(exec_kinds(&out, 2), [EventType::Kill]);
    assert!(sent(&out).is_empty());
}

#[test]
fn persistent_volumes_of_group_tasks_are_linked_into_the_executor_sandbox() {
    use crate::resources::{DiskInfo, Reservation, Resource, Scalar, Value};
    let volume = |id: &str| {
        let disk = Resource::new("disk", "*", Value::Scalar(Scalar::from_f64(10.0)))
            .pushed(Reservation::new_dynamic("web", None))
            .with_disk(DiskInfo::persistent_volume(id, None, id));
        convert::resources_to_proto(&[disk].into_iter().collect(), None)
    };
    let mut h = Harness::registered();
    let mut e = master_event(MasterEventType::RunTaskGroup);
    let mut tasks = vec![command_task("g1"), command_task("g2")];
    tasks[1].resources = volume("v1");
    e.run_task_group = Some(internal::agent_event::RunTaskGroup {
        framework_info: framework(false),
        executor: default_executor("e1"),
        task_group: v1::TaskGroupInfo { tasks },
    });
    let launch = launches(&h.handle(Input::Master(e))).pop().expect("LaunchExecutor");
    let linked: Vec<&str> = launch.volumes.iter().map(|v| v.container_path.as_str()).collect();
    assert_eq!(linked, ["v1"]);
    assert!(launch.volumes[0].host_path.ends_with("/volumes/roles/web/v1"));

    // A later group on the running executor brings its volumes along.
    let mut e = master_event(MasterEventType::RunTaskGroup);
    let mut task = command_task("g3");
    task.resources = volume("v2");
    e.run_task_group = Some(internal::agent_event::RunTaskGroup {
        framework_info: framework(false),
        executor: default_executor("e1"),
        task_group: v1::TaskGroupInfo { tasks: vec![task] },
    });
    let out = h.handle(Input::Master(e));
    let attached = out.iter().find_map(|o| match o {
        Output::AttachVolumes { sandbox, volumes } => Some((sandbox.clone(), volumes.clone())),
        _ => None,
    });
    let (sandbox, volumes) = attached.expect("AttachVolumes");
    assert_eq!(sandbox, launch.sandbox);
    assert_eq!(volumes.iter().map(|v| v.container_path.as_str()).collect::<Vec<_>>(), ["v2"]);
}
