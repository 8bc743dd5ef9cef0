//! Agent tests of the checkpoint and of recovery after a restart (reference §7.4): what is
//! written for checkpointing and other frameworks, executors that subscribe again, that died
//! meanwhile or never come back, a rebooted machine, and status update streams that carry on
//! exactly where they stopped.

use super::*;

impl Harness {
    /// An executor's update that the agent must accept.
    fn report(&mut self, executor_id: &str, status: v1::TaskStatus) {
        let (result, _) = self.update(executor_id, status);
        assert_eq!(result, Ok(()));
    }
}

fn restarted_registered(h: &mut Harness, liveness: Liveness, rebooted: bool) -> Vec<Output> {
    let mut out = h.restart(liveness, rebooted);
    out.extend(h.handle(registered(AGENT_ID)));
    out
}

#[test]
fn only_checkpointing_frameworks_leave_records_beyond_the_agents_own() {
    let mut h = Harness::registered();
    assert!(matches!(h.disk.get(&CheckpointKey::Agent), Some(CheckpointRecord::Agent(a))
        if a.agent_id.as_deref() == Some(AGENT_ID)));
    h.running_for(framework(false), "plain");
    h.report("plain", status("plain", TaskState::TaskRunning, 1));
    assert_eq!(h.disk.len(), 1, "{:?}", h.disk.keys());

    let mut h = Harness::registered();
    h.running_for(framework(true), "kept");
    h.report("kept", status("kept", TaskState::TaskRunning, 2));
    let keys: Vec<_> = h.disk.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            CheckpointKey::Agent,
            CheckpointKey::Framework(FRAMEWORK_ID.into()),
            CheckpointKey::Executor(FRAMEWORK_ID.into(), "kept".into()),
            CheckpointKey::Task(FRAMEWORK_ID.into(), "kept".into()),
        ]
    );
    let Some(CheckpointRecord::Task(task)) =
        h.disk.get(&CheckpointKey::Task(FRAMEWORK_ID.into(), "kept".into()))
    else {
        panic!("a task record");
    };
    assert_eq!(task.state(), TaskState::TaskRunning);
    assert_eq!(task.pending.len(), 1, "the RUNNING update waits for its acknowledgement");

    // The terminal update acknowledged: the task and its executor leave the checkpoint.
    h.handle(acknowledge("kept", 2));
    h.report("kept", status("kept", TaskState::TaskFinished, 3));
    h.handle(acknowledge("kept", 3));
    h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "kept".into(),
        status: Some(0),
    });
    let keys: Vec<_> = h.disk.keys().cloned().collect();
    assert_eq!(keys, vec![CheckpointKey::Agent]);
}

#[test]
fn the_checkpoint_goes_out_before_the_acknowledgement_it_backs() {
    let mut h = Harness::registered();
    h.running_for(framework(true), "t1");
    let req = h.next();
    let mut call = executor_call("t1", CallType::Update);
    call.update = Some(executor::call::Update { status: status("t1", TaskState::TaskRunning, 1) });
    let out = h.agent.handle(Input::ExecutorCall { req, call }, h.now);
    assert!(matches!(out.first(), Some(Output::Checkpoint(_))), "{out:?}");
}

#[test]
fn a_live_executor_subscribes_again_and_its_streams_carry_on() {
    let mut h = Harness::registered();
    h.running_for(framework(true), "t1");
    h.report("t1", status("t1", TaskState::TaskRunning, 1));
    h.handle(acknowledge("t1", 1));
    h.report("t1", status("t1", TaskState::TaskRunning, 2));
    // Crash with update 2 unacknowledged.
    let out = restarted_registered(&mut h, Liveness::Alive, false);
    assert!(launches(&out).is_empty(), "nothing is launched again");
    assert_eq!(
        sent_short(&out),
        vec![("t1".into(), TaskState::TaskRunning, 2)],
        "the pending update goes out after registration"
    );
    let register = h.agent.register_call().register.expect("payload");
    assert_eq!(register.agent_info.id.map(|a| a.value), Some(AGENT_ID.to_string()));
    let tasks: Vec<_> = register.tasks.iter().map(|t| (t.task_id.clone(), t.state())).collect();
    assert_eq!(tasks, vec![(Some(v1::TaskId { value: "t1".into() }), TaskState::TaskRunning)]);

    // The executor comes back with what it holds; a duplicate is dropped.
    let req = h.next();
    let conn = h.next();
    let mut call = executor_call("t1", CallType::Subscribe);
    call.subscribe = Some(executor::call::Subscribe {
        unacknowledged_tasks: vec![],
        unacknowledged_updates: vec![executor::call::Update {
            status: status("t1", TaskState::TaskRunning, 2),
        }],
    });
    let out = h.handle(Input::ExecutorSubscribe { req, conn, call });
    assert_eq!(reply(&out, req), Ok(()));
    assert_eq!(exec_kinds(&out, conn)[0], EventType::Subscribed);
    assert!(exec_kinds(&out, conn).iter().all(|k| *k != EventType::Launch), "no relaunch");
    assert_eq!(h.agent.pending_updates(), 1);

    // Well past the re-registration timeout nothing is killed.
    h.advance(60);
    let out = h.handle(Input::Tick);
    assert!(!out.iter().any(|o| matches!(o, Output::KillExecutor { .. })), "{out:?}");
    h.handle(acknowledge("t1", 2));
    let (_, out) = h.update("t1", status("t1", TaskState::TaskFinished, 3));
    assert_eq!(sent_short(&out), vec![("t1".into(), TaskState::TaskFinished, 3)]);
}

#[test]
fn an_executor_that_does_not_come_back_is_killed_and_its_tasks_fail() {
    let mut h = Harness::registered();
    h.running_for(framework(true), "t1");
    h.report("t1", status("t1", TaskState::TaskRunning, 1));
    h.handle(acknowledge("t1", 1));
    restarted_registered(&mut h, Liveness::Alive, false);
    h.advance(1);
    assert!(!h.handle(Input::Tick).iter().any(|o| matches!(o, Output::KillExecutor { .. })));
    h.advance(2);
    let out = h.handle(Input::Tick);
    assert!(out.iter().any(|o| matches!(o, Output::KillExecutor { .. })), "{out:?}");
    let out = h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t1".into(),
        status: Some(9),
    });
    let (failed, _) = sent(&out).into_iter().next().expect("an update");
    assert_eq!(failed.state(), TaskState::TaskFailed);
    assert_eq!(failed.reason(), Reason::ExecutorReregistrationTimeout);
}

#[test]
fn tasks_of_an_executor_that_died_meanwhile_fail_and_after_a_reboot_are_lost() {
    for (liveness, rebooted, state, reason) in [
        (Liveness::Gone, false, TaskState::TaskFailed, Reason::ExecutorTerminated),
        (Liveness::Alive, true, TaskState::TaskLost, Reason::AgentRestarted),
    ] {
        let mut h = Harness::registered();
        h.running_for(framework(true), "t1");
        h.report("t1", status("t1", TaskState::TaskRunning, 1));
        h.handle(acknowledge("t1", 1));
        let out = restarted_registered(&mut h, liveness, rebooted);
        assert!(!out.iter().any(|o| matches!(o, Output::KillExecutor { .. })), "{out:?}");
        let updates = sent(&out);
        assert_eq!(updates.len(), 1, "{out:?}");
        assert_eq!((updates[0].0.state(), updates[0].0.reason()), (state, reason));
        // The master hears of neither the dead executor nor the task as running.
        let register = h.agent.register_call().register.expect("payload");
        assert!(register.executors.is_empty());
        assert!(register.tasks.iter().all(|t| t.state() == state), "{:?}", register.tasks);
    }
}

#[test]
fn queued_tasks_and_terminal_streams_survive_a_restart() {
    let mut h = Harness::registered();
    // t1 never reached its executor; t2 ended and its executor is gone, update unacknowledged.
    h.handle(run_task(framework(true), command_task("t1")));
    h.running_for(framework(true), "t2");
    h.report("t2", status("t2", TaskState::TaskFailed, 5));
    h.handle(Input::ExecutorExited {
        framework_id: FRAMEWORK_ID.into(),
        executor_id: "t2".into(),
        status: Some(256),
    });
    let out = restarted_registered(&mut h, Liveness::Alive, false);
    assert_eq!(sent_short(&out), vec![("t2".into(), TaskState::TaskFailed, 5)]);
    // t1's executor subscribes for the first time and gets its task.
    let (conn, result, out) = h.subscribe("t1");
    assert_eq!(result, Ok(()));
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Subscribed, EventType::Launch]);
    assert!(h.handle(acknowledge("t2", 5)).is_empty());
    assert!(!h.disk.contains_key(&CheckpointKey::Task(FRAMEWORK_ID.into(), "t2".into())));
}

#[test]
fn executors_being_shut_down_are_killed_after_a_restart() {
    let mut h = Harness::registered();
    h.running_for(framework(true), "t1");
    h.handle(shutdown_framework());
    let out = h.restart(Liveness::Alive, false);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::KillExecutor { executor_id, .. } if executor_id == "t1")),
        "{out:?}"
    );
}

#[test]
fn a_task_whose_launch_died_with_the_agent_is_reported_lost() {
    let mut h = Harness::registered();
    // Handed over (STAGING), but the executor never got the LAUNCH before the crash.
    h.running_for(framework(true), "t1");
    restarted_registered(&mut h, Liveness::Alive, false);
    let (conn, result, out) = h.subscribe("t1");
    assert_eq!(result, Ok(()));
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Subscribed], "not delivered twice");
    let (lost, _) = sent(&out).into_iter().next().expect("an update");
    assert_eq!((lost.state(), lost.reason()), (TaskState::TaskLost, Reason::AgentRestarted));

    // One the executor holds (it says so) stays.
    let mut h = Harness::registered();
    h.running_for(framework(true), "t2");
    restarted_registered(&mut h, Liveness::Alive, false);
    let req = h.next();
    let conn = h.next();
    let mut call = executor_call("t2", CallType::Subscribe);
    call.subscribe = Some(executor::call::Subscribe {
        unacknowledged_tasks: vec![command_task("t2")],
        unacknowledged_updates: vec![],
    });
    let out = h.handle(Input::ExecutorSubscribe { req, conn, call });
    assert_eq!(reply(&out, req), Ok(()));
    assert!(sent(&out).is_empty(), "{out:?}");
}

#[test]
fn forgetting_a_task_rewrites_its_executors_record() {
    let mut h = Harness::registered();
    h.running_for(framework(true), "t1");
    h.handle(kill_task("t1"));
    h.report("t1", status("t1", TaskState::TaskKilled, 1));
    h.handle(acknowledge("t1", 1));
    let Some(CheckpointRecord::Executor(executor)) =
        h.disk.get(&CheckpointKey::Executor(FRAMEWORK_ID.into(), "t1".into()))
    else {
        panic!("the executor's record");
    };
    assert!(executor.kill_requested.is_empty(), "{executor:?}");
}
