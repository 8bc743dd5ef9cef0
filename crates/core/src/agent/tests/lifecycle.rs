//! Agent tests of what happens after a launch: the status update streams (one update in
//! flight, retries and backoff, master disconnection), executor exits, kills and framework
//! shutdown.

use super::*;

#[test]
fn one_update_in_flight_per_task() {
    let mut h = Harness::registered();
    let conn = h.running("t1");
    let (_, out) = h.update("t1", status("t1", TaskState::TaskRunning, 1));
    assert_eq!(sent_short(&out), vec![("t1".into(), TaskState::TaskRunning, 1)]);
    let (_, out) = h.update("t1", status("t1", TaskState::TaskFinished, 2));
    assert!(sent(&out).is_empty(), "waits for the acknowledgement of the first");
    assert_eq!(
        exec_kinds(&out, conn),
        vec![EventType::Acknowledged],
        "the executor is answered at once"
    );
    // A duplicate from the executor is acknowledged again but not queued.
    let (result, out) = h.update("t1", status("t1", TaskState::TaskFinished, 2));
    assert_eq!(result, Ok(()));
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Acknowledged]);
    assert_eq!(h.agent.pending_updates(), 2);

    // The retry of the head carries the newest state.
    h.advance(10);
    let out = h.handle(Input::Tick);
    let latest: Vec<Option<TaskState>> = sent(&out).into_iter().map(|(_, l)| l).collect();
    assert_eq!(latest, vec![Some(TaskState::TaskFinished)]);
    assert_eq!(sent_short(&out), vec![("t1".into(), TaskState::TaskRunning, 1)]);

    // Stale acknowledgements change nothing; the right one releases the next update.
    assert!(h.handle(acknowledge("t1", 9)).is_empty());
    assert!(h.handle(acknowledge("other", 1)).is_empty());
    let out = h.handle(acknowledge("t1", 1));
    assert_eq!(sent_short(&out), vec![("t1".into(), TaskState::TaskFinished, 2)]);
    assert_eq!(h.agent.pending_updates(), 1);
    assert!(h.handle(acknowledge("t1", 2)).is_empty());
    assert_eq!(h.agent.pending_updates(), 0);
    h.advance(1000);
    assert!(sent(&h.handle(Input::Tick)).is_empty(), "nothing left to retry");
}

#[test]
fn retries_back_off_up_to_the_maximum() {
    let mut h = Harness::registered();
    h.running("t1");
    let (_, out) = h.update("t1", status("t1", TaskState::TaskRunning, 1));
    assert_eq!(sent(&out).len(), 1);
    // min 10 s, max 40 s: sends at 0, 10, 30, 70, 110, 150.
    let start = h.now;
    for (at, expected) in [
        (5, 0),
        (10, 1),
        (29, 0),
        (30, 1),
        (69, 0),
        (70, 1),
        (109, 0),
        (110, 1),
        (149, 0),
        (150, 1),
    ] {
        h.now = start + Duration::from_secs(at);
        assert_eq!(sent(&h.handle(Input::Tick)).len(), expected, "at {at} s");
    }
}

#[test]
fn disconnection_holds_updates_and_registration_resends_them() {
    // A checkpointing framework: its executors outlive the master's connection.
    let mut h = Harness::registered();
    h.running_for(framework(true), "t1");
    h.running_for(framework(true), "t2");
    assert_eq!(h.update("t1", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
    assert!(h.handle(Input::MasterDisconnected).is_empty());
    let (result, out) = h.update("t2", status("t2", TaskState::TaskRunning, 2));
    assert_eq!(result, Ok(()));
    assert!(sent(&out).is_empty(), "no master to send to");
    h.advance(100);
    assert!(sent(&h.handle(Input::Tick)).is_empty());
    assert_eq!(h.agent.pending_updates(), 2);

    let out = h.handle(registered(AGENT_ID));
    let mut heads = sent_short(&out);
    heads.sort();
    assert_eq!(
        heads,
        vec![("t1".into(), TaskState::TaskRunning, 1), ("t2".into(), TaskState::TaskRunning, 2)]
    );
    // The backoff starts over from the minimum.
    h.advance(10);
    assert_eq!(sent(&h.handle(Input::Tick)).len(), 2);
}

#[test]
fn losing_the_master_kills_nothing() {
    // Not even the executors of frameworks that do not checkpoint: the master may be
    // restarting, and it must find the tasks again.
    let mut h = Harness::registered();
    let conn = h.running("t1");
    assert!(h.handle(Input::MasterDisconnected).is_empty());
    let (result, out) = h.update("t1", status("t1", TaskState::TaskFinished, 3));
    assert_eq!(result, Ok(()));
    assert!(sent(&out).is_empty(), "no master to send to");
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Acknowledged]);
    assert_eq!(h.agent.pending_updates(), 1, "kept for the next master");
    let out = h.handle(registered(AGENT_ID));
    assert_eq!(sent_short(&out), vec![("t1".into(), TaskState::TaskFinished, 3)]);
}

#[test]
fn executor_exit_fails_unfinished_tasks() {
    // (input, reason, wait status reported to the master, text in the message)
    let cases = [
        (
            Input::ExecutorExited {
                framework_id: FRAMEWORK_ID.into(),
                executor_id: "t1".into(),
                status: Some(256),
            },
            Reason::ExecutorTerminated,
            Some(256),
            "exited with status 1",
        ),
        (
            Input::ExecutorExited {
                framework_id: FRAMEWORK_ID.into(),
                executor_id: "t1".into(),
                status: Some(9),
            },
            Reason::ExecutorTerminated,
            Some(9),
            "terminated by signal 9",
        ),
        (
            Input::ExecutorLaunchFailed {
                framework_id: FRAMEWORK_ID.into(),
                executor_id: "t1".into(),
                message: "no such file".into(),
            },
            Reason::ContainerLaunchFailed,
            None,
            "no such file",
        ),
    ];
    for (input, reason, wait_status, message) in cases {
        let mut h = Harness::registered();
        let launched = matches!(input, Input::ExecutorExited { .. });
        let conn = if launched {
            let conn = h.running("t1");
            assert_eq!(h.update("t1", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
            h.handle(acknowledge("t1", 1));
            Some(conn)
        } else {
            h.handle(run_task(framework(false), command_task("t1")));
            None
        };
        let out = h.handle(input);
        let updates = sent(&out);
        assert_eq!(updates.len(), 1, "{out:?}");
        let failed = &updates[0].0;
        assert_eq!(
            (failed.state(), failed.source(), failed.reason()),
            (TaskState::TaskFailed, Source::Agent, reason)
        );
        assert!(failed.message().contains(message), "{:?}", failed.message());
        assert_eq!(failed.uuid.as_ref().map(Bytes::len), Some(16), "retried until acknowledged");
        assert_eq!(failed.executor_id.as_ref().map(|e| e.value.as_str()), Some("t1"));
        // A command executor's exit is not reported to the master, only its task's end.
        let _ = wait_status;
        assert!(to_master(&out).iter().all(|c| c.executor_exited.is_none()), "{out:?}");
        if let Some(conn) = conn {
            assert!(out.contains(&Output::CloseExecutor { conn }));
        }
        assert!(h.agent.executors().is_empty());
    }
}

#[test]
fn executor_exit_after_a_terminal_update_reports_nothing_more() {
    let mut h = Harness::registered();
    h.running("t1");
    assert_eq!(h.update("t1", status("t1", TaskState::TaskFinished, 1)).0, Ok(()));
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        status: Some(0),
    });
    assert!(sent(&out).is_empty(), "{out:?}");
    assert!(to_master(&out).is_empty(), "a command executor's exit is not reported");
    // An exit of an unknown executor is ignored.
    assert!(
        h.handle(Input::ExecutorExited {
            framework_id: "x".into(),
            executor_id: "y".into(),
            status: None
        })
        .is_empty()
    );
}

#[test]
fn killing_queued_and_delivered_tasks() {
    let mut h = Harness::registered();
    h.handle(run_task(framework(false), command_task("t1")));
    let out = h.handle(kill_task("t1"));
    let killed = sent(&out).pop().expect("TASK_KILLED").0;
    assert_eq!(
        (killed.state(), killed.reason(), killed.source()),
        (TaskState::TaskKilled, Reason::TaskKilledDuringLaunch, Source::Agent)
    );
    assert!(killed.uuid.is_some());
    assert!(out.contains(&Output::KillExecutor {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into()
    }));
    // The executor is gone for good: it may not subscribe, and new tasks for it are lost.
    assert!(matches!(h.subscribe("t1").1, Err(CallError::Forbidden(_))));
    h.handle(acknowledge_uuid("t1", killed.uuid.clone().expect("uuid")));
    let out = h.handle(run_task(framework(false), command_task("t1")));
    assert!(launches(&out).is_empty());
    let lost = sent(&out).pop().expect("TASK_LOST").0;
    assert_eq!((lost.state(), lost.message()), (TaskState::TaskLost, "Executor is shutting down"));

    let conn = h.running("t2");
    let out = h.handle(kill_task("t2"));
    let kill = exec_events(&out, conn).pop().and_then(|e| e.kill).expect("KILL");
    assert_eq!(kill.task_id.value, "t2");
    assert_eq!(kill.kill_policy.and_then(|p| p.grace_period).map(|g| g.nanoseconds), Some(1_000));
    assert!(sent(&out).is_empty(), "the executor reports the kill");
    // A kill for a task the agent does not have is answered (see the test below).
    assert_eq!(sent(&h.handle(kill_task("unknown"))).len(), 1);
}

#[test]
fn shutdown_framework_asks_then_kills() {
    let mut h = Harness::registered();
    let conn = h.running("t1");
    h.handle(run_task(framework(false), command_task("t2"))); // never subscribes
    assert_eq!(h.update("t1", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
    let out = h.handle(shutdown_framework());
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Shutdown]);
    let kill =
        |e: &str| Output::KillExecutor { framework_id: FRAMEWORK_ID.into(), executor_id: e.into() };
    assert_eq!(out.iter().filter(|o| matches!(o, Output::KillExecutor { .. })).count(), 1);
    assert!(out.contains(&kill("t2")), "an executor that never subscribed is killed at once");
    assert_eq!(h.agent.pending_updates(), 0, "nobody will acknowledge them any more");

    h.advance(4);
    assert!(!h.handle(Input::Tick).contains(&kill("t1")), "within the grace period");
    h.advance(1);
    assert!(h.handle(Input::Tick).contains(&kill("t1")));
}

#[test]
fn shut_down_frameworks_leave_no_updates_behind() {
    let mut h = Harness::registered();
    let conn = h.running("t1");
    h.handle(shutdown_framework());
    // The executor obeys: it kills its task and reports it, then exits.
    let (result, out) = h.update("t1", status("t1", TaskState::TaskKilled, 1));
    assert_eq!(result, Ok(()));
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Acknowledged]);
    h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        status: Some(0),
    });
    // The master forgot the framework and will never acknowledge: nothing may be retried.
    assert_eq!(h.agent.pending_updates(), 0);
    h.advance(1000);
    assert!(sent(&h.handle(Input::Tick)).is_empty());
}

#[test]
fn wait_statuses_in_words() {
    for (status, text) in [
        (0, "exited with status 0"),
        (256, "exited with status 1"),
        (9, "terminated by signal 9"),
        (0x8b, "terminated by signal 11"),
    ] {
        assert_eq!(crate::agent::describe_wait_status(status), text);
    }
}

#[test]
fn custom_executor_exits_are_reported_to_the_master() {
    let mut h = Harness::registered();
    h.handle(run_task(framework(false), custom_task("t1", "ex")));
    let (_, result, _) = h.subscribe("ex");
    assert_eq!(result, Ok(()));
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "ex".into(),
        status: Some(256),
    });
    let exited =
        to_master(&out).into_iter().find_map(|c| c.executor_exited).expect("EXECUTOR_EXITED");
    assert_eq!((exited.executor_id.value.as_str(), exited.status), ("ex", Some(256)));
    let failed = sent_short(&out);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1, TaskState::TaskFailed);
}

#[test]
fn kills_the_agent_cannot_deliver_still_end_the_task() {
    // A task the agent does not have: TASK_LOST with REASON_TASK_UNKNOWN, retried until acked.
    let mut h = Harness::registered();
    let out = h.handle(kill_task("ghost"));
    let lost = sent(&out);
    assert_eq!(lost.len(), 1);
    assert_eq!(
        (lost[0].0.state(), lost[0].0.source(), lost[0].0.reason()),
        (TaskState::TaskLost, Source::Agent, Reason::TaskUnknown)
    );
    assert!(lost[0].0.uuid.is_some());

    // A task whose executor lost its stream: the executor is killed and the task ends KILLED.
    let mut h = Harness::registered();
    let conn = h.running("t1");
    h.handle(Input::ExecutorClosed { conn });
    let out = h.handle(kill_task("t1"));
    assert!(out.contains(&Output::KillExecutor {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into()
    }));
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        status: Some(9),
    });
    let killed = sent(&out);
    assert_eq!(killed.len(), 1);
    assert_eq!(killed[0].0.state(), TaskState::TaskKilled);
}

#[test]
fn registration_reports_the_agent_s_frameworks() {
    let mut h = Harness::registered();
    h.running("t1");
    let call = h.agent.register_call();
    let frameworks = call.register.expect("register").frameworks;
    assert_eq!(frameworks.len(), 1);
    assert_eq!(frameworks[0].id.as_ref().map(|f| f.value.as_str()), Some(FRAMEWORK_ID));
}

#[test]
fn registration_reports_tasks_executors_and_updates_in_flight() {
    let mut h = Harness::registered();
    // t1 runs, its RUNNING update unacknowledged; t2 waits for its custom executor; t3 ended and
    // its executor is gone, but its terminal update still waits.
    h.running("t1");
    assert_eq!(h.update("t1", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
    h.handle(run_task(framework(false), custom_task("t2", "e2")));
    h.running("t3");
    assert_eq!(h.update("t3", status("t3", TaskState::TaskFinished, 3)).0, Ok(()));
    h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t3".into(),
        status: Some(0),
    });
    h.handle(Input::MasterDisconnected);

    let register = h.agent.register_call().register.expect("register");
    assert_eq!(register.agent_info.id.map(|a| a.value), Some(AGENT_ID.to_string()));
    /// (task id, state, state in flight, uuid in flight, statuses)
    type Reported = (String, TaskState, Option<TaskState>, Option<Bytes>, usize);
    let mut tasks: Vec<Reported> = register
        .tasks
        .iter()
        .map(|t| {
            assert_eq!(t.framework_id.as_ref().map(|f| f.value.as_str()), Some(FRAMEWORK_ID));
            (
                t.task_id.clone().unwrap_or_default().value,
                t.state(),
                t.status_update_state.map(|_| t.status_update_state()),
                t.status_update_uuid.clone(),
                t.statuses.len(),
            )
        })
        .collect();
    tasks.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        tasks,
        vec![
            ("t1".into(), TaskState::TaskRunning, Some(TaskState::TaskRunning), Some(uuid(1)), 1),
            ("t2".into(), TaskState::TaskStaging, None, None, 0),
            ("t3".into(), TaskState::TaskFinished, Some(TaskState::TaskFinished), Some(uuid(3)), 1),
        ]
    );
    let t1 = register.tasks.iter().find(|t| t.name.as_deref() == Some("t1")).expect("t1");
    assert!(t1.executor_id.is_none(), "command executors are implied by their tasks");
    let executors: Vec<String> =
        register.executors.iter().map(|e| e.executor_id.value.clone()).collect();
    assert_eq!(executors, vec!["e2".to_string()]);
    assert!(register.executors[0].framework_id.is_some());
}

#[test]
fn framework_messages_travel_both_ways_and_executors_shut_down_on_request() {
    let mut h = Harness::registered();
    let conn = h.running("t1");
    let mut to_executor = master_event(MasterEventType::FrameworkMessage);
    to_executor.framework_message = Some(internal::agent_event::FrameworkMessage {
        framework_id: v1::FrameworkId { value: FRAMEWORK_ID.into() },
        executor_id: v1::ExecutorId { value: "t1".into() },
        data: Bytes::from_static(b"ping"),
    });
    let out = h.handle(Input::Master(to_executor));
    let message = exec_events(&out, conn).pop().and_then(|e| e.message).expect("MESSAGE");
    assert_eq!(message.data, Bytes::from_static(b"ping"));

    let mut from_executor = executor_call("t1", CallType::Message);
    from_executor.message = Some(executor::call::Message { data: Bytes::from_static(b"pong") });
    let (result, out) = h.call(from_executor);
    assert_eq!(result, Ok(()));
    let forwarded =
        to_master(&out).into_iter().find_map(|c| c.executor_message).expect("EXECUTOR_MESSAGE");
    assert_eq!(
        (forwarded.executor_id.value.as_str(), forwarded.data),
        ("t1", Bytes::from_static(b"pong"))
    );

    let mut shutdown = master_event(MasterEventType::ShutdownExecutor);
    shutdown.shutdown_executor = Some(internal::agent_event::ShutdownExecutor {
        framework_id: v1::FrameworkId { value: FRAMEWORK_ID.into() },
        executor_id: v1::ExecutorId { value: "t1".into() },
    });
    let out = h.handle(Input::Master(shutdown));
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Shutdown]);
}

#[test]
fn acknowledged_terminal_tasks_are_forgotten_and_not_reported_again() {
    let mut h = Harness::registered();
    // Two tasks on one custom executor: t1 finishes and its end is acknowledged, t2 runs on.
    h.handle(run_task(framework(false), custom_task("t1", "e")));
    h.handle(run_task(framework(false), custom_task("t2", "e")));
    let (_, result, _) = h.subscribe("e");
    assert_eq!(result, Ok(()));
    assert_eq!(h.update("e", status("t1", TaskState::TaskFinished, 1)).0, Ok(()));
    assert_eq!(h.update("e", status("t2", TaskState::TaskRunning, 2)).0, Ok(()));
    h.handle(acknowledge("t1", 1));
    let register = h.agent.register_call().register.expect("register");
    let reported: Vec<String> =
        register.tasks.iter().filter_map(|t| Some(t.task_id.clone()?.value)).collect();
    assert_eq!(reported, vec!["t2".to_string()]);
}

#[test]
fn an_executor_that_never_subscribes_is_killed_and_its_tasks_fail() {
    let mut h = Harness::registered();
    h.handle(run_task(framework(false), custom_task("slow", "e-slow")));
    h.handle(run_task(framework(false), custom_task("fine", "e-fine")));
    h.advance(30);
    let (_, result, _) = h.subscribe("e-fine");
    assert_eq!(result, Ok(()));
    h.advance(29);
    let kill =
        |e: &str| Output::KillExecutor { framework_id: FRAMEWORK_ID.into(), executor_id: e.into() };
    assert!(!h.handle(Input::Tick).contains(&kill("e-slow")), "59 s is within the timeout");
    h.advance(1);
    let out = h.handle(Input::Tick);
    assert!(out.contains(&kill("e-slow")), "{out:?}");
    assert!(!out.contains(&kill("e-fine")), "a subscribed executor is never timed out");

    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "e-slow".into(),
        status: Some(9),
    });
    let failed: Vec<(String, TaskState, Reason, String)> = sent(&out)
        .into_iter()
        .map(|(s, _)| (s.task_id.value.clone(), s.state(), s.reason(), s.message().to_string()))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (&*failed[0].0, failed[0].1, failed[0].2),
        ("slow", TaskState::TaskFailed, Reason::ExecutorRegistrationTimeout)
    );
    assert!(failed[0].3.contains("did not register within 1mins"), "{}", failed[0].3);
}

#[test]
fn pings_are_answered_with_pongs() {
    let mut h = Harness::registered();
    let out = h.handle(Input::Master(master_event(MasterEventType::Ping)));
    let calls = to_master(&out);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].r#type(), internal::agent_call::Type::Pong);
    assert_eq!(calls[0].agent_id.as_ref().map(|a| a.value.as_str()), Some(AGENT_ID));
}

#[test]
fn killing_a_task_whose_end_awaits_its_acknowledgement_adds_nothing() {
    let mut h = Harness::registered();
    h.running("t1");
    let (result, _) = h.update("t1", status("t1", TaskState::TaskFinished, 1));
    assert_eq!(result, Ok(()));
    h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        status: Some(0),
    });
    // (Found by the simulator: the kill queued TASK_LOST behind TASK_FINISHED.)
    let out = h.handle(kill_task("t1"));
    assert!(sent(&out).is_empty(), "{out:?}");
    assert_eq!(h.agent.pending_updates(), 1, "only the FINISHED waits");
}
