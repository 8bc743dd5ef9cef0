//! Master tests of the operator API's side of the core: the read-only snapshot (GET_STATE and
//! friends, the metrics), the event stream's events in the order things happen, and the
//! operator's reservations, TEARDOWN and MARK_AGENT_GONE.

use agora_proto::master::Event;
use agora_proto::master::event::Type as OperatorEvent;

use super::*;

/// The events of operator stream `conn`.
fn operator_events(out: &[Output], conn: ConnId) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToOperator { conn: c, event } if *c == conn => Some((**event).clone()),
            _ => None,
        })
        .collect()
}

fn operator_kinds(out: &[Output], conn: ConnId) -> Vec<OperatorEvent> {
    operator_events(out, conn)
        .iter()
        .map(Event::r#type)
        .filter(|t| *t != OperatorEvent::Heartbeat)
        .collect()
}

fn open_operator_stream(h: &mut Harness) -> (ConnId, Vec<Output>) {
    let (req, conn) = (h.next(), h.next());
    let out = h.handle(Input::OperatorSubscribe { req, conn });
    assert_eq!(reply(&out, req), Ok(()));
    (conn, out)
}

#[test]
fn the_snapshot_shows_agents_frameworks_and_tasks() {
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.launch(vec![task("t1", &aid, "cpus:1;mem:128")], Some(0.0));
    c.h.status_update(&aid, &fid, "t1", TaskState::TaskRunning, Some(1));

    let state = c.h.master.get_state();
    let tasks = state.get_tasks.expect("tasks").tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state(), TaskState::TaskRunning);
    assert_eq!(tasks[0].agent_id.as_ref().map(|a| a.value.as_str()), Some(aid.as_str()));
    assert_eq!(tasks[0].statuses.len(), 1);
    let agents = state.get_agents.expect("agents").agents;
    assert_eq!(agents.len(), 1);
    assert!(agents[0].active);
    let allocated = convert::resources_from_proto(&agents[0].allocated_resources).expect("valid");
    assert_eq!(allocated, res("cpus:1;mem:128"));
    let frameworks = state.get_frameworks.expect("frameworks").frameworks;
    assert_eq!(
        frameworks[0].framework_info.id.as_ref().map(|i| i.value.as_str()),
        Some(fid.as_str())
    );
    assert!(frameworks[0].active && frameworks[0].connected);
    let roles = c.h.master.get_roles().roles;
    assert_eq!(roles[0].name, "*");
    assert_eq!(roles[0].frameworks[0].value, fid);

    let metrics: BTreeMap<String, f64> = c.h.master.metrics().into_iter().collect();
    assert_eq!(metrics["master/tasks_running"], 1.0);
    assert_eq!(metrics["master/tasks_staging"], 0.0);
    assert_eq!(metrics["master/cpus_total"], 4.0);
    assert_eq!(metrics["master/cpus_used"], 1.0);
    assert_eq!(metrics["master/cpus_percent"], 0.25);
    assert_eq!(metrics["master/slaves_active"], 1.0);
    assert_eq!(metrics["master/frameworks_active"], 1.0);
    assert_eq!(metrics["master/slave_registrations"], 1.0);
    assert_eq!(metrics["master/valid_status_updates"], 1.0);
}

#[test]
fn shared_task_views_follow_every_change_and_completed_tasks_are_shared() {
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.launch(vec![task("t1", &aid, "cpus:1;mem:128")], Some(0.0));
    let staging = c.h.master.state_view();
    assert_eq!(staging.tasks[0].state(), TaskState::TaskStaging);
    // A snapshot with no change in between shares the same task.
    assert!(std::sync::Arc::ptr_eq(&staging.tasks[0], &c.h.master.state_view().tasks[0]));

    c.h.status_update(&aid, &fid, "t1", TaskState::TaskRunning, Some(1));
    let running = c.h.master.state_view();
    assert_eq!(running.tasks[0].state(), TaskState::TaskRunning);
    assert_eq!(running.tasks[0].status_update_state, Some(TaskState::TaskRunning as i32));
    // The first snapshot still shows what it saw.
    assert_eq!(staging.tasks[0].state(), TaskState::TaskStaging);

    let (result, _) = c.h.acknowledge(&fid, &aid, "t1", uuid(1));
    assert_eq!(result, Ok(()));
    let acknowledged = c.h.master.state_view();
    assert_eq!(acknowledged.tasks[0].status_update_state, None);
    assert_eq!(acknowledged.tasks[0].status_update_uuid, None);

    c.h.status_update(&aid, &fid, "t1", TaskState::TaskFinished, Some(2));
    let (result, _) = c.h.acknowledge(&fid, &aid, "t1", uuid(2));
    assert_eq!(result, Ok(()));
    let done = c.h.master.state_view();
    assert!(done.tasks.is_empty());
    assert_eq!(done.completed_tasks[0].state(), TaskState::TaskFinished);
    assert!(std::sync::Arc::ptr_eq(
        &done.completed_tasks[0],
        &c.h.master.state_view().completed_tasks[0]
    ));
    assert_eq!(c.h.master.get_state().get_tasks.expect("tasks").completed_tasks.len(), 1);
}

#[test]
fn the_event_stream_follows_a_task_and_its_agent() {
    let mut h = Harness::new();
    let (conn, out) = open_operator_stream(&mut h);
    let first = operator_events(&out, conn);
    assert_eq!(first[0].r#type(), OperatorEvent::Subscribed);
    let subscribed = first[0].subscribed.clone().expect("subscribed");
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));

    let (_fconn, fid) = h.subscribe(framework("f"));
    let (aconn, out) = h.register(register_call(AGENT_RESOURCES, "", None));
    assert_eq!(operator_kinds(&out, conn), [OperatorEvent::AgentAdded]);
    let aid = agent_events(&out, aconn).into_iter().find_map(|e| e.registered).expect("REGISTERED");
    let aid = aid.agent_id.value;
    let offer = outstanding_offer(&h, &fid).expect("an offer");

    let (result, out) =
        h.call(&fid, accept(&[&offer], vec![launch(vec![task("t1", &aid, "cpus:1")])], None));
    assert_eq!(result, Ok(()));
    let added = operator_events(&out, conn);
    assert_eq!(added[0].r#type(), OperatorEvent::TaskAdded);
    let task = added[0].task_added.clone().expect("task_added").task;
    assert_eq!(task.state(), TaskState::TaskStaging);

    let out = h.status_update(&aid, &fid, "t1", TaskState::TaskRunning, Some(1));
    let updated = operator_events(&out, conn);
    let update = updated[0].task_updated.clone().expect("task_updated");
    assert_eq!(
        (update.status.state(), update.state()),
        (TaskState::TaskRunning, TaskState::TaskRunning)
    );

    // Closing the stream stops the events.
    h.handle(Input::OperatorClosed { conn });
    let out = h.status_update(&aid, &fid, "t1", TaskState::TaskFinished, Some(2));
    assert!(operator_events(&out, conn).is_empty());
}

#[test]
fn frameworks_come_and_go_on_the_event_stream() {
    let mut h = Harness::new();
    let (conn, _) = open_operator_stream(&mut h);
    let (fconn, _, out) = h.subscribe_raw(subscribe_call(framework("f")));
    assert_eq!(operator_kinds(&out, conn), [OperatorEvent::FrameworkAdded]);
    let out = h.handle(Input::SchedulerClosed { conn: fconn });
    assert_eq!(operator_kinds(&out, conn), [OperatorEvent::FrameworkUpdated]);
    let fid = h.master.framework_ids().remove(0);
    let req = h.next();
    let out = h.handle(Input::Teardown { req, framework_id: fid.clone() });
    assert_eq!(reply(&out, req), Ok(()));
    assert_eq!(operator_kinds(&out, conn), [OperatorEvent::FrameworkRemoved]);
    assert!(h.master.framework_ids().is_empty());
    let req = h.next();
    let out = h.handle(Input::Teardown { req, framework_id: fid });
    assert!(matches!(reply(&out, req), Err(CallError::BadRequest(_))));
}

fn reserve(resources: &str, role: &str) -> Box<v1::offer::Operation> {
    let mut op = v1::offer::Operation::default();
    op.set_type(v1::offer::operation::Type::Reserve);
    let mut reserved = convert::resources_to_proto(&res(resources), None);
    for r in &mut reserved {
        let mut reservation =
            v1::resource::ReservationInfo { role: Some(role.into()), ..Default::default() };
        reservation.set_type(v1::resource::reservation_info::Type::Dynamic);
        r.reservations.push(reservation);
    }
    op.reserve = Some(v1::offer::operation::Reserve { resources: reserved, source: Vec::new() });
    Box::new(op)
}

#[test]
fn operator_reservations_rescind_offers_and_conflict_when_short() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    let req = c.h.next();
    let out = c.h.handle(Input::OperatorOperation {
        req,
        agent_id: aid.clone(),
        operation: reserve("cpus:1", "ops"),
    });
    assert_eq!(reply(&out, req), Ok(()));
    assert!(kinds(&out, c.fconn).contains(&EventType::Rescind), "the agent's offer went first");
    assert!(agent_events(&out, c.aconn).iter().any(|e| e.checkpoint_resources.is_some()));
    let total = c.h.master.get_agents().agents[0].total_resources.clone();
    let total = convert::resources_from_proto(&total).expect("valid");
    assert_eq!(total.reserved("ops").cpus(), res("cpus:1").cpus());

    let req = c.h.next();
    let out = c.h.handle(Input::OperatorOperation {
        req,
        agent_id: aid,
        operation: reserve("cpus:10", "ops"),
    });
    assert!(matches!(reply(&out, req), Err(CallError::Conflict(_))), "{:?}", reply(&out, req));
    let req = c.h.next();
    let out = c.h.handle(Input::OperatorOperation {
        req,
        agent_id: "nope".into(),
        operation: reserve("cpus:1", "ops"),
    });
    assert_eq!(
        reply(&out, req),
        Err(CallError::BadRequest("No agent found with specified ID".into()))
    );
}

#[test]
fn marking_an_agent_gone_ends_its_tasks_once() {
    let mut c = cluster(with_capabilities(framework("f"), &[Capability::PartitionAware]));
    let aid = c.aid.clone();
    c.launch(vec![task("t1", &aid, "cpus:1")], None);
    let (conn, _) = open_operator_stream(&mut c.h);
    let req = c.h.next();
    let out = c.h.handle(Input::MarkAgentGone { req, agent_id: aid.clone() });
    assert_eq!(reply(&out, req), Ok(()));
    let status = updates(&out, c.fconn).pop().expect("an update");
    assert_eq!(status.state(), TaskState::TaskGoneByOperator);
    assert_eq!(status.reason(), Reason::AgentRemovedByOperator);
    assert_eq!(
        operator_kinds(&out, conn),
        [OperatorEvent::TaskUpdated, OperatorEvent::AgentRemoved]
    );
    assert!(c.h.master.agent_ids().is_empty());
    assert!(c.h.master.tasks().is_empty());

    // Idempotent, and the agent may not come back.
    let req = c.h.next();
    let out = c.h.handle(Input::MarkAgentGone { req, agent_id: aid.clone() });
    assert_eq!(reply(&out, req), Ok(()));
    assert!(updates(&out, c.fconn).is_empty());
    let (aconn, out) = c.h.register(register_call(AGENT_RESOURCES, "", Some(&aid)));
    assert!(agent_events(&out, aconn).iter().any(|e| e.error.is_some()));
    let req = c.h.next();
    let out = c.h.handle(Input::MarkAgentGone { req, agent_id: "nope".into() });
    assert!(matches!(reply(&out, req), Err(CallError::NotFound(_))));
}

#[test]
fn a_gone_agent_stays_gone_after_a_master_restart() {
    let mut h = Harness::new();
    let (_, aid) = h.register_agent(AGENT_RESOURCES);
    let req = h.next();
    let out = h.handle(Input::MarkAgentGone { req, agent_id: aid.clone() });
    assert_eq!(reply(&out, req), Ok(()));
    // The reply and the registry write leave in the same batch: the shell delivers the reply
    // only once the write is durable.
    let gone: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Persist(crate::master::RegistryOp::UpdateAgent(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(gone.len(), 1);
    assert!(gone[0].gone_time.is_some());

    let mut h = h.restart();
    let agents = h.master.get_agents();
    assert!(agents.agents.is_empty() && agents.recovered_agents.is_empty(), "{agents:?}");
    let (aconn, out) = h.register(register_call(AGENT_RESOURCES, "", Some(&aid)));
    let errors: Vec<String> =
        agent_events(&out, aconn).into_iter().filter_map(|e| e.error.map(|e| e.message)).collect();
    assert_eq!(errors, ["Agent has been marked gone"]);
    assert!(out.iter().any(|o| matches!(o, Output::CloseAgent { conn } if *conn == aconn)));
    // Still idempotent, and nothing is written again.
    let req = h.next();
    let out = h.handle(Input::MarkAgentGone { req, agent_id: aid });
    assert_eq!(reply(&out, req), Ok(()));
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));
}

#[test]
fn the_operator_kills_a_task_as_its_framework_would() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    c.launch(vec![task("t1", &aid, "cpus:1;mem:64")], None);
    let req = c.h.next();
    let out = c.h.handle(Input::OperatorKillTask { req, task_id: "t1".into(), framework_id: None });
    assert_eq!(reply(&out, req), Ok(()));
    let kills: Vec<_> =
        agent_events(&out, c.aconn).into_iter().filter_map(|e| e.kill_task).collect();
    assert_eq!(kills.len(), 1);
    assert_eq!(
        (kills[0].framework_id.value.as_str(), kills[0].task_id.value.as_str()),
        (c.fid.as_str(), "t1")
    );

    for (task_id, framework_id) in [("nope", None), ("t1", Some("another"))] {
        let req = c.h.next();
        let framework_id = framework_id.map(String::from);
        let out =
            c.h.handle(Input::OperatorKillTask { req, task_id: task_id.into(), framework_id });
        assert!(matches!(reply(&out, req), Err(CallError::NotFound(_))), "{task_id}");
    }
}

#[test]
fn removed_frameworks_are_kept_as_completed_frameworks_within_bounds() {
    let mut c = cluster(framework("first"));
    let aid = c.aid.clone();
    // One task finishes, one still runs when the framework goes.
    c.launch(vec![task("done", &aid, "cpus:1"), task("running", &aid, "cpus:1")], None);
    let fid = c.fid.clone();
    c.h.status_update(&aid, &fid, "done", TaskState::TaskFinished, None);
    let req = c.h.next();
    let out = c.h.handle(Input::Teardown { req, framework_id: c.fid.clone() });
    assert_eq!(reply(&out, req), Ok(()));

    let frameworks = c.h.master.get_frameworks();
    assert!(frameworks.frameworks.is_empty());
    let completed = &frameworks.completed_frameworks;
    assert_eq!(completed.len(), 1);
    let view = &completed[0];
    assert_eq!(view.framework_info.name, "first");
    assert_eq!(view.framework_info.id.as_ref().map(|i| i.value.as_str()), Some(c.fid.as_str()));
    assert!(!view.active && !view.connected && view.unregistered_time.is_some());
    // Its tasks are completed tasks now: the running one as TASK_KILLED, as in Mesos.
    let tasks = c.h.master.get_tasks();
    assert!(tasks.tasks.is_empty());
    let mut states: Vec<(String, TaskState)> = tasks
        .completed_tasks
        .iter()
        .map(|t| (t.task_id.clone().unwrap_or_default().value, t.state()))
        .collect();
    states.sort();
    assert_eq!(
        states,
        [("done".to_string(), TaskState::TaskFinished), ("running".into(), TaskState::TaskKilled)]
    );
    assert_eq!(
        c.h.master.get_state().get_frameworks.map(|f| f.completed_frameworks.len()),
        Some(1)
    );
}

#[test]
fn completed_frameworks_and_their_tasks_are_bounded() {
    let mut config = config();
    config.max_completed_frameworks = 2;
    config.max_completed_tasks_per_framework = 1;
    let mut h = Harness::with(config);
    let (_, aid) = h.register_agent(AGENT_RESOURCES);
    for name in ["f1", "f2", "f3"] {
        let (fconn, _, out) = h.subscribe_raw(subscribe_call(framework(name)));
        let fid = events(&out, fconn)
            .into_iter()
            .find_map(|e| e.subscribed)
            .expect("SUBSCRIBED")
            .framework_id
            .value;
        let offer = offers(&out, fconn)
            .into_iter()
            .chain(offers(&h.tick(), fconn))
            .next()
            .expect("an offer");
        let tasks = vec![task("a", &aid, "cpus:0.5"), task("b", &aid, "cpus:0.5")];
        let (result, _) = h.call(&fid, accept(&[&offer.id.value], vec![launch(tasks)], Some(0.0)));
        assert_eq!(result, Ok(()));
        let req = h.next();
        h.handle(Input::Teardown { req, framework_id: fid });
    }
    let names: Vec<String> = h
        .master
        .get_frameworks()
        .completed_frameworks
        .into_iter()
        .map(|f| f.framework_info.name)
        .collect();
    assert_eq!(names, ["f2", "f3"]);
    assert_eq!(h.master.get_tasks().completed_tasks.len(), 2);
}

#[test]
fn one_operator_subscriber_too_many_closes_the_oldest() {
    let mut config = config();
    config.max_operator_event_stream_subscribers = 2;
    let mut h = Harness::with(config);
    let (first, _) = open_operator_stream(&mut h);
    let (second, out) = open_operator_stream(&mut h);
    assert!(!out.iter().any(|o| matches!(o, Output::CloseOperator { .. })));
    let (third, out) = open_operator_stream(&mut h);
    let closed: Vec<ConnId> = out
        .iter()
        .filter_map(|o| match o {
            Output::CloseOperator { conn } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(closed, [first]);
    assert_eq!(operator_kinds(&out, third).first(), Some(&OperatorEvent::Subscribed));
    // Events go to the two that are left.
    let out = h.register(register_call(AGENT_RESOURCES, "", None)).1;
    assert!(operator_events(&out, first).is_empty());
    assert!(!operator_events(&out, second).is_empty());
    assert!(!operator_events(&out, third).is_empty());
}

#[test]
fn shared_agent_and_framework_views_follow_every_change() {
    // `Harness::handle` compares every cached view with a fresh one after each input; this
    // test adds that an unchanged agent or framework is shared, not rebuilt.
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    let (_, other) = c.h.register_agent("cpus:2;mem:512");
    let offered = c.h.master.state_view();
    let again = c.h.master.state_view();
    for (a, b) in offered.agents.iter().zip(&again.agents) {
        assert!(std::sync::Arc::ptr_eq(a, b));
    }
    assert!(std::sync::Arc::ptr_eq(&offered.frameworks[0], &again.frameworks[0]));
    let on = |view: &crate::master::StateView, id: &str| {
        view.agents
            .iter()
            .find(|a| a.agent_info.id.as_ref().is_some_and(|i| i.value == id))
            .cloned()
            .expect("the agent is in the view")
    };
    assert!(!on(&offered, &aid).offered_resources.is_empty());

    // Accepting the offer moves resources from offered to allocated on one agent only.
    c.launch(vec![task("t1", &aid, "cpus:1;mem:128")], Some(0.0));
    let launched = c.h.master.state_view();
    assert!(on(&launched, &aid).offered_resources.is_empty());
    assert!(!on(&launched, &aid).allocated_resources.is_empty());
    assert!(!launched.frameworks[0].allocated_resources.is_empty());
    assert!(std::sync::Arc::ptr_eq(&on(&offered, &other), &on(&launched, &other)));

    // A ping tick changes nothing an agent shows: the views stay shared.
    c.h.handle(Input::PingTick);
    let pinged = c.h.master.state_view();
    assert!(std::sync::Arc::ptr_eq(&on(&launched, &aid), &on(&pinged, &aid)));

    // The task ends: its resources leave the framework's and the agent's allocation.
    c.h.status_update(&aid, &fid, "t1", TaskState::TaskFinished, Some(1));
    let done = c.h.master.state_view();
    assert!(done.frameworks[0].allocated_resources.is_empty());
    assert!(on(&done, &aid).allocated_resources.is_empty());
    // The snapshot taken earlier still shows what it saw.
    assert!(!launched.frameworks[0].allocated_resources.is_empty());

    // The agent's stream breaks: it shows as inactive.
    c.h.handle(Input::AgentClosed { conn: c.aconn });
    assert!(!on(&c.h.master.state_view(), &aid).active);
}
