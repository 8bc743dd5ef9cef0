//! Master tests of what follows a launch and of the agent side: status updates and their
//! acknowledgements, KILL, reconciliation, TEARDOWN, and agents registering and disconnecting.

use super::*;

#[test]
fn status_updates_acknowledgements_and_resource_release() {
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.launch(vec![task("t1", &aid, AGENT_RESOURCES)], None);

    let out = c.h.status_update(&aid, &fid, "t1", TaskState::TaskRunning, Some(1));
    let status = updates(&out, c.fconn).pop().expect("UPDATE");
    assert_eq!(status.agent_id.map(|a| a.value), Some(aid.clone()));
    assert_eq!(status.uuid, Some(uuid(1)));
    assert_eq!(c.h.master.tasks(), vec![(fid.clone(), "t1".to_string(), TaskState::TaskRunning)]);

    for bad in [Bytes::from_static(b"abc"), Bytes::new(), Bytes::from(vec![1; 17])] {
        let (result, out) = c.h.acknowledge(&fid, &aid, "t1", bad);
        assert!(matches!(result, Err(CallError::BadRequest(_))), "{result:?}");
        assert!(agent_events(&out, c.aconn).is_empty());
    }
    let (result, out) = c.h.acknowledge(&fid, &aid, "t1", uuid(1));
    assert_eq!(result, Ok(()));
    let ack = agent_events(&out, c.aconn).pop().and_then(|e| e.acknowledge).expect("ACKNOWLEDGE");
    assert_eq!(
        (ack.framework_id.value.as_str(), ack.task_id.value.as_str(), &ack.uuid),
        (fid.as_str(), "t1", &uuid(1))
    );

    c.h.advance(10.0);
    assert!(offers(&c.h.tick(), c.fconn).is_empty(), "the running task holds the agent");
    c.h.status_update(&aid, &fid, "t1", TaskState::TaskFinished, Some(2));
    let offer = offers(&c.h.tick(), c.fconn).pop().expect("released before the acknowledgement");
    assert_eq!(offered(&offer), res(AGENT_RESOURCES));
    assert_eq!(c.h.master.tasks(), vec![(fid.clone(), "t1".to_string(), TaskState::TaskFinished)]);
    // A retry of the same update does not release anything twice.
    c.h.status_update(&aid, &fid, "t1", TaskState::TaskFinished, Some(2));
    assert!(offers(&c.h.tick(), c.fconn).is_empty());
    assert_eq!(c.h.acknowledge(&fid, &aid, "t1", uuid(2)).0, Ok(()));
    assert!(c.h.master.tasks().is_empty());
}

#[test]
fn latest_state_drives_the_task_state() {
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.launch(vec![task("t1", &aid, AGENT_RESOURCES)], None);
    let mut status = v1::TaskStatus {
        task_id: v1::TaskId { value: "t1".into() },
        uuid: Some(uuid(1)),
        ..Default::default()
    };
    status.set_state(TaskState::TaskRunning);
    let mut update = internal::agent_call::StatusUpdate {
        framework_id: v1::FrameworkId { value: fid.clone() },
        status,
        latest_state: None,
    };
    update.set_latest_state(TaskState::TaskFailed);
    let mut call = internal::AgentCall::default();
    call.set_type(internal::agent_call::Type::StatusUpdate);
    call.status_update = Some(update);
    assert_eq!(c.h.agent_call(&aid, call).0, Ok(()));
    assert_eq!(c.h.master.tasks(), vec![(fid.clone(), "t1".to_string(), TaskState::TaskFailed)]);
    assert_eq!(
        offers(&c.h.tick(), c.fconn).len(),
        1,
        "a known terminal state releases the resources"
    );
    // Acknowledging the non-terminal update in flight keeps the task until its terminal one.
    assert_eq!(c.h.acknowledge(&fid, &aid, "t1", uuid(1)).0, Ok(()));
    assert_eq!(c.h.master.tasks().len(), 1);
}

#[test]
fn agent_calls_need_the_agent_stream() {
    let mut c = cluster(framework("f"));
    let mut call = internal::AgentCall::default();
    call.set_type(internal::agent_call::Type::StatusUpdate);
    call.agent_id = Some(v1::AgentId { value: c.aid.clone() });
    for stream_id in [None, Some("wrong".to_string())] {
        let out = c.h.handle(Input::AgentCall { req: 99, stream_id, call: call.clone() });
        assert!(matches!(reply(&out, 99), Err(CallError::BadRequest(_))));
    }
    let (result, _) = c.h.agent_call("unknown-agent", call.clone());
    assert!(matches!(result, Err(CallError::BadRequest(_))));
    let (result, _) = c.h.agent_call(&c.aid.clone(), call);
    assert!(matches!(result, Err(CallError::BadRequest(m)) if m.contains("status_update")));
}

#[test]
fn kill_known_and_unknown_tasks() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    c.launch(vec![task("t1", &aid, "cpus:1")], None);
    let kill = |id: &str, agent: Option<&str>| {
        let mut k = call(CallType::Kill);
        k.kill = Some(sched::call::Kill {
            task_id: v1::TaskId { value: id.into() },
            agent_id: agent.map(|a| v1::AgentId { value: a.into() }),
            kill_policy: None,
        });
        k
    };
    let (result, out) = c.h.call(&c.fid, kill("t1", None));
    assert_eq!(result, Ok(()));
    let k = agent_events(&out, c.aconn).pop().and_then(|e| e.kill_task).expect("KILL_TASK");
    assert_eq!((k.framework_id.value, k.task_id.value), (c.fid.clone(), "t1".to_string()));
    assert!(updates(&out, c.fconn).is_empty());

    for (agent, message) in
        [(None, "Task is unknown"), (Some(aid.as_str()), "Task is unknown to the agent")]
    {
        let (result, out) = c.h.call(&c.fid, kill("ghost", agent));
        assert_eq!(result, Ok(()));
        assert!(agent_events(&out, c.aconn).is_empty());
        let status = updates(&out, c.fconn).pop().expect("reconciliation answer");
        assert_eq!(
            (status.state(), status.reason()),
            (TaskState::TaskLost, Reason::Reconciliation)
        );
        assert_eq!(status.message(), message);
        assert!(status.uuid.is_none());
    }
}

#[test]
fn reconciliation_implicit_and_explicit() {
    let reconcile = |tasks: &[(&str, Option<&str>)]| {
        let mut r = call(CallType::Reconcile);
        r.reconcile = Some(sched::call::Reconcile {
            tasks: tasks
                .iter()
                .map(|(t, a)| sched::call::reconcile::Task {
                    task_id: Some(v1::TaskId { value: t.to_string() }),
                    agent_id: a.map(|a| v1::AgentId { value: a.into() }),
                })
                .collect(),
        });
        r
    };
    for (caps, unknown, unknown_on_agent) in [
        (vec![], TaskState::TaskLost, TaskState::TaskLost),
        (vec![Capability::PartitionAware], TaskState::TaskUnknown, TaskState::TaskGone),
    ] {
        let mut c = cluster(with_capabilities(framework("f"), &caps));
        let (aid, fid) = (c.aid.clone(), c.fid.clone());
        c.launch(vec![task("t1", &aid, "cpus:1"), task("t2", &aid, "cpus:1")], None);
        c.h.status_update(&aid, &fid, "t2", TaskState::TaskRunning, Some(1));

        let (result, out) = c.h.call(&fid, reconcile(&[]));
        assert_eq!(result, Ok(()));
        let states: Vec<(String, TaskState)> =
            updates(&out, c.fconn).iter().map(|s| (s.task_id.value.clone(), s.state())).collect();
        assert_eq!(
            states,
            vec![("t1".into(), TaskState::TaskStaging), ("t2".into(), TaskState::TaskRunning)]
        );
        for s in updates(&out, c.fconn) {
            assert_eq!(
                (s.reason(), s.source(), s.message()),
                (Reason::Reconciliation, Source::Master, "Reconciliation: Latest task state")
            );
            assert!(s.uuid.is_none());
        }

        let (_, out) =
            c.h.call(&fid, reconcile(&[("t2", None), ("ghost", None), ("ghost", Some(&aid))]));
        let got: Vec<(TaskState, String)> =
            updates(&out, c.fconn).iter().map(|s| (s.state(), s.message().to_string())).collect();
        assert_eq!(
            got,
            vec![
                (TaskState::TaskRunning, "Reconciliation: Latest task state".to_string()),
                (unknown, "Task is unknown".to_string()),
                (unknown_on_agent, "Task is unknown to the agent".to_string()),
            ]
        );
    }
}

#[test]
fn teardown_shuts_the_framework_down() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    let (a2conn, _) = c.h.register_agent(AGENT_RESOURCES);
    c.launch(vec![task("t1", &aid, "cpus:1")], None);
    assert_eq!(c.h.master.offer_ids().len(), 1, "the second agent's offer is outstanding");
    let (result, out) = c.h.call(&c.fid, call(CallType::Teardown));
    assert_eq!(result, Ok(()));
    let shutdown = agent_events(&out, c.aconn)
        .pop()
        .and_then(|e| e.shutdown_framework)
        .expect("SHUTDOWN_FRAMEWORK");
    assert_eq!(shutdown.framework_id.value, c.fid);
    assert!(agent_events(&out, a2conn).is_empty(), "no tasks there");
    assert!(out.contains(&Output::CloseScheduler { conn: c.fconn }));
    assert!(c.h.master.offer_ids().is_empty());
    assert!(c.h.master.framework_ids().is_empty());
    assert!(c.h.master.tasks().is_empty());

    // Everything is free for the next framework, and the old id is barred.
    let (_, other) = c.h.subscribe(framework("g"));
    let offers = c.h.master.offer_ids();
    assert_eq!(offers.len(), 2);
    assert!(offers.iter().all(|(_, f, _)| *f == other));
    let mut info = framework("f");
    info.id = Some(v1::FrameworkId { value: c.fid.clone() });
    let (conn, _, out) = c.h.subscribe_raw(subscribe_call(info));
    assert_eq!(errors(&out, conn), vec!["Framework has been removed".to_string()]);
}

#[test]
fn agent_disconnection_rescinds_offers_and_a_restarted_agent_loses_what_it_no_longer_runs() {
    let mut h = Harness::new();
    let (lost_conn, lost_fid) = h.subscribe(framework("volatile"));
    let mut durable = framework("durable");
    durable.checkpoint = Some(true);
    let (kept_conn, kept_fid) = h.subscribe(durable);
    let (aconn, aid) = h.register_agent("cpus:4;mem:1024");
    // Each framework launches on an offer of its own, leaving the rest to be offered again.
    for (fid, id) in [(&lost_fid, "lost"), (&kept_fid, "kept")] {
        h.tick();
        let offer_id = outstanding_offer(&h, fid).expect("an offer for each framework");
        let (result, _) = h.call(
            fid,
            accept(&[&offer_id], vec![launch(vec![task(id, &aid, "cpus:1;mem:128")])], Some(0.0)),
        );
        assert_eq!(result, Ok(()));
    }
    h.tick();
    let outstanding = h.master.offer_ids();
    assert_eq!(outstanding.len(), 1);
    let (offer_id, owner, _) = outstanding[0].clone();
    let owner_conn = if owner == lost_fid { lost_conn } else { kept_conn };

    let out = h.handle(Input::AgentClosed { conn: aconn });
    let rescind = events(&out, owner_conn).into_iter().find_map(|e| e.rescind).expect("RESCIND");
    assert_eq!(rescind.offer_id.map(|o| o.value), Some(offer_id));
    // A broken stream alone ends no task: the agent may still run them all.
    assert!(updates(&out, lost_conn).is_empty() && updates(&out, kept_conn).is_empty());
    assert_eq!(h.master.tasks().len(), 2);
    assert!(h.master.offer_ids().is_empty());

    // The agent restarted: it comes back with its id, without the task of the framework that
    // does not checkpoint (its executor was killed), which is lost; the surviving task still
    // holds its resources.
    let call = register_call("cpus:4;mem:1024", "", Some(&aid));
    let (conn, out) = h.register(reporting(call, &aid, &[(&kept_fid, "kept", "cpus:1;mem:128")]));
    let lost = updates(&out, lost_conn);
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].state(), lost[0].reason()), (TaskState::TaskLost, Reason::Reconciliation));
    assert_eq!(lost[0].agent_id.as_ref().map(|a| a.value.as_str()), Some(aid.as_str()));
    assert!(updates(&out, kept_conn).is_empty(), "checkpointing frameworks keep their tasks");
    assert_eq!(
        h.master.tasks(),
        vec![(kept_fid.clone(), "kept".to_string(), TaskState::TaskStaging)]
    );
    let registered = agent_events(&out, conn).into_iter().find_map(|e| e.registered);
    assert_eq!(registered.map(|r| r.agent_id.value), Some(aid.clone()));
    let offered_now: Resources = [lost_conn, kept_conn].iter().flat_map(|c| offers(&out, *c)).fold(
        Resources::new(),
        |mut acc, o| {
            acc += &offered(&o);
            acc
        },
    );
    assert_eq!(offered_now, res("cpus:3;mem:896"));
}

#[test]
fn agent_reregistering_on_a_new_stream_rescinds_its_offers() {
    let mut c = cluster(framework("f"));
    let (_, out) = c.h.register(register_call(AGENT_RESOURCES, "", Some(&c.aid.clone())));
    assert!(out.contains(&Output::CloseAgent { conn: c.aconn }));
    let rescinded: Vec<String> = events(&out, c.fconn)
        .into_iter()
        .filter_map(|e| Some(e.rescind?.offer_id?.value))
        .collect();
    assert_eq!(rescinded, vec![c.offer.id.value.clone()]);
    // Never two outstanding offers for the same resources.
    assert_eq!(c.h.master.offer_ids().len(), 1);
    let offer = offers(&out, c.fconn).pop().expect("offered again");
    assert_eq!(offered(&offer), res(AGENT_RESOURCES));
    // The old stream closing afterwards changes nothing.
    assert!(c.h.handle(Input::AgentClosed { conn: c.aconn }).is_empty());
    assert_eq!(c.h.master.offer_ids().len(), 1);
}

#[test]
fn bad_agent_registrations_are_refused() {
    let mut h = Harness::new();
    let mut wrong_version = register_call(AGENT_RESOURCES, "", None);
    if let Some(r) = wrong_version.register.as_mut() {
        r.protocol_version = AGENT_PROTOCOL_VERSION + 1;
    }
    let mut bad_id = register_call(AGENT_RESOURCES, "", Some("a/b"));
    bad_id.set_type(internal::agent_call::Type::Register);
    for (call, message) in [(wrong_version, "protocol version"), (bad_id, "Invalid agent id")] {
        let (conn, out) = h.register(call);
        let events = agent_events(&out, conn);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].r#type(), internal::agent_event::Type::Error);
        assert!(
            events[0].error.as_ref().is_some_and(|e| e.message.contains(message)),
            "{events:?}"
        );
        assert_eq!(out.last(), Some(&Output::CloseAgent { conn }));
    }
    assert!(h.master.agent_ids().is_empty());

    // A REGISTER without its payload is refused synchronously.
    let mut empty = internal::AgentCall::default();
    empty.set_type(internal::agent_call::Type::Register);
    let out =
        h.handle(Input::AgentRegister { req: 7, conn: 8, stream_id: "s".into(), call: empty });
    assert!(matches!(reply(&out, 7), Err(CallError::BadRequest(_))));
    assert_eq!(out.len(), 1);
}

#[test]
fn a_kill_missed_by_a_disconnected_agent_is_sent_when_it_returns() {
    let mut info = framework("durable");
    info.checkpoint = Some(true);
    let mut c = cluster(info);
    let aid = c.aid.clone();
    c.launch(vec![task("t1", &aid, "cpus:1")], None);
    c.h.handle(Input::AgentClosed { conn: c.aconn });
    let mut kill = call(CallType::Kill);
    kill.kill = Some(sched::call::Kill {
        task_id: v1::TaskId { value: "t1".into() },
        agent_id: None,
        kill_policy: None,
    });
    let (result, out) = c.h.call(&c.fid, kill);
    assert_eq!(result, Ok(()));
    assert!(!out.iter().any(|o| matches!(o, Output::ToAgent { .. })), "nobody to send it to");

    let call = register_call(AGENT_RESOURCES, "", Some(&aid));
    let (conn, out) = c.h.register(reporting(call, &aid, &[(&c.fid, "t1", "cpus:1")]));
    let kills: Vec<String> = agent_events(&out, conn)
        .into_iter()
        .filter_map(|e| Some(e.kill_task?.task_id.value))
        .collect();
    assert_eq!(kills, vec!["t1".to_string()]);
}

#[test]
fn status_updates_only_count_from_the_task_s_agent() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    c.launch(vec![task("t1", &aid, "cpus:1")], None);
    let (_, other) = c.h.register_agent("cpus:1;mem:64");
    let mut status = v1::TaskStatus {
        task_id: v1::TaskId { value: "t1".into() },
        uuid: Some(uuid(1)),
        ..Default::default()
    };
    status.set_state(TaskState::TaskFinished);
    let mut update = internal::AgentCall::default();
    update.set_type(internal::agent_call::Type::StatusUpdate);
    update.status_update = Some(internal::agent_call::StatusUpdate {
        framework_id: v1::FrameworkId { value: c.fid.clone() },
        status,
        latest_state: None,
    });
    // The stale copy's update is taken and acknowledged by the master itself, so that the
    // other agent stops retrying it; the framework never sees it.
    let (result, out) = c.h.agent_call(&other, update);
    assert_eq!(result, Ok(()));
    assert!(updates(&out, c.fconn).is_empty());
    let other_conn = c.h.agents[&other].0;
    let acks: Vec<Bytes> = agent_events(&out, other_conn)
        .into_iter()
        .filter_map(|e| Some(e.acknowledge?.uuid))
        .collect();
    assert_eq!(acks, vec![uuid(1)]);
    assert_eq!(c.h.master.tasks(), vec![(c.fid.clone(), "t1".to_string(), TaskState::TaskStaging)]);
}

#[test]
fn frameworks_removed_while_an_agent_was_away_are_shut_down_when_it_returns() {
    let mut h = Harness::new();
    let mut info = framework("gone");
    info.failover_timeout = None;
    let (fconn, fid) = h.subscribe(info);
    let (aconn, aid) = h.register_agent("cpus:4;mem:1024");
    h.handle(Input::AgentClosed { conn: aconn });
    h.handle(Input::SchedulerClosed { conn: fconn });
    assert!(h.master.framework_ids().is_empty(), "failover_timeout 0 removes it at once");

    let mut call = register_call("cpus:4;mem:1024", "", Some(&aid));
    if let Some(r) = call.register.as_mut() {
        r.frameworks = vec![v1::FrameworkInfo {
            id: Some(v1::FrameworkId { value: fid.clone() }),
            ..framework("gone")
        }];
    }
    let (conn, out) = h.register(call);
    let shutdowns: Vec<String> = agent_events(&out, conn)
        .into_iter()
        .filter_map(|e| Some(e.shutdown_framework?.framework_id.value))
        .collect();
    assert_eq!(shutdowns, vec![fid]);
}

#[test]
fn messages_and_executor_shutdowns_are_forwarded() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    let mut message = call(CallType::Message);
    message.message = Some(sched::call::Message {
        agent_id: Some(v1::AgentId { value: aid.clone() }),
        executor_id: Some(v1::ExecutorId { value: "e1".into() }),
        data: Some(Bytes::from_static(b"ping")),
    });
    let (result, out) = c.h.call(&c.fid, message);
    assert_eq!(result, Ok(()));
    let forwarded = agent_events(&out, c.aconn)
        .pop()
        .and_then(|e| e.framework_message)
        .expect("FRAMEWORK_MESSAGE");
    assert_eq!(
        (forwarded.executor_id.value.as_str(), forwarded.data),
        ("e1", Bytes::from_static(b"ping"))
    );

    let mut incomplete = call(CallType::Message);
    incomplete.message = Some(sched::call::Message::default());
    assert!(matches!(c.h.call(&c.fid, incomplete).0, Err(CallError::BadRequest(_))));

    let mut from_executor = internal::AgentCall::default();
    from_executor.set_type(internal::agent_call::Type::ExecutorMessage);
    from_executor.executor_message = Some(internal::agent_call::ExecutorMessage {
        framework_id: v1::FrameworkId { value: c.fid.clone() },
        executor_id: v1::ExecutorId { value: "e1".into() },
        data: Bytes::from_static(b"pong"),
    });
    let (result, out) = c.h.agent_call(&aid, from_executor);
    assert_eq!(result, Ok(()));
    let event = events(&out, c.fconn).pop().and_then(|e| e.message).expect("MESSAGE event");
    assert_eq!(event.agent_id.map(|a| a.value), Some(aid.clone()));
    assert_eq!(event.data, Some(Bytes::from_static(b"pong")));

    let mut shutdown = call(CallType::Shutdown);
    shutdown.shutdown = Some(sched::call::Shutdown {
        executor_id: v1::ExecutorId { value: "e1".into() },
        agent_id: v1::AgentId { value: aid },
    });
    let (result, out) = c.h.call(&c.fid, shutdown);
    assert_eq!(result, Ok(()));
    let order = agent_events(&out, c.aconn).pop().and_then(|e| e.shutdown_executor);
    assert_eq!(order.map(|s| s.executor_id.value), Some("e1".to_string()));
}

/// Sim seed 24: a task of a framework that does not checkpoint finishes, its TASK_FINISHED
/// reaches the master while the framework's stream is down, and the agent process dies before
/// the acknowledgement, losing the update. The restarted agent no longer reports the task, so
/// nothing would ever acknowledge it: the master must complete it itself, telling the framework
/// the terminal state it knows (with no uuid to acknowledge), rather than hold it forever.
#[test]
fn a_finished_task_its_restarted_agent_forgot_is_completed() {
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.launch(vec![task("t1", &aid, "cpus:1")], None);
    c.h.status_update(&aid, &fid, "t1", TaskState::TaskFinished, Some(1));
    assert_eq!(c.h.master.tasks(), vec![(fid.clone(), "t1".to_string(), TaskState::TaskFinished)]);

    c.h.handle(Input::AgentClosed { conn: c.aconn });
    let (_, out) = c.h.register(register_call(AGENT_RESOURCES, "", Some(&aid)));
    let told = updates(&out, c.fconn);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0].state(), told[0].reason(), told[0].uuid.is_none()),
        (TaskState::TaskFinished, Reason::Reconciliation, true)
    );
    assert!(c.h.master.tasks().is_empty(), "the task is completed");
}
