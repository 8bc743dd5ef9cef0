//! Master tests of the scheduler stream: SUBSCRIBE and its errors, stream id checks, failover
//! and failover timeouts, roles, and heartbeats.

use super::*;

#[test]
fn subscribe_sends_subscribed_then_heartbeat_and_offers_follow_agents() {
    let mut h = Harness::new();
    let (conn, req, out) = h.subscribe_raw(subscribe_call(framework("demo")));
    assert_eq!(reply(&out, req), Ok(()));
    assert_eq!(kinds(&out, conn), vec![EventType::Subscribed, EventType::Heartbeat]);
    let subscribed = events(&out, conn)[0].subscribed.clone().expect("payload");
    assert_eq!(subscribed.framework_id.value, format!("{MASTER_ID}-0000"));
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(15.0));
    assert_eq!(subscribed.master_info.expect("master_info").id, MASTER_ID);
    assert_eq!(h.master.framework_ids(), vec![format!("{MASTER_ID}-0000")]);
    let (_, second) = h.subscribe(framework("other"));
    assert_eq!(second, format!("{MASTER_ID}-0001"));

    let (aconn, out) = h.register(register_call(AGENT_RESOURCES, "rack:r1;level:3", None));
    let registered = agent_events(&out, aconn)[0].registered.clone().expect("REGISTERED first");
    assert_eq!(registered.agent_id.value, format!("{MASTER_ID}-S0"));
    assert_eq!(registered.master_info.id, MASTER_ID);
    // Coarse-grained offers: the whole agent goes to one framework, in one OFFERS event.
    let offers = offers(&out, conn);
    assert_eq!(kinds(&out, conn), vec![EventType::Offers]);
    assert_eq!(offers.len(), 1);
    let offer = &offers[0];
    assert_eq!(offer.id.value, format!("{MASTER_ID}-O0"));
    assert_eq!(offer.agent_id.value, registered.agent_id.value);
    assert_eq!(offer.framework_id.value, subscribed.framework_id.value);
    assert_eq!(offer.hostname, "agent7");
    assert_eq!(offered(offer), res(AGENT_RESOURCES));
    assert_eq!(offer.attributes.len(), 2);
    assert_eq!(offer.attributes[0].name, "rack");
    assert!(offer.allocation_info.is_none(), "stripped for non-MULTI_ROLE frameworks");
    assert!(offer.resources.iter().all(|r| r.allocation_info.is_none()));
    let url = offer.url.clone().expect("url");
    assert_eq!(
        (url.scheme.as_str(), url.address.ip.as_deref(), url.address.port),
        ("http", Some("10.0.0.7"), 5051)
    );
    assert!(offer.executor_ids.is_empty());
    assert_eq!(h.master.offer_ids().len(), 1);
}

#[test]
fn malformed_subscribe_calls_are_refused_synchronously() {
    let mut mismatch = subscribe_call(framework("f"));
    if let Some(s) = mismatch.subscribe.as_mut() {
        s.framework_info.id = Some(v1::FrameworkId { value: "a".into() });
    }
    mismatch.framework_id = Some(v1::FrameworkId { value: "b".into() });
    for c in [mismatch, call(CallType::Subscribe), sched::Call::default()] {
        let mut h = Harness::new();
        let (_, req, out) = h.subscribe_raw(c.clone());
        assert!(matches!(reply(&out, req), Err(CallError::BadRequest(_))), "{c:?}");
        assert_eq!(out.len(), 1, "no stream events: {out:?}");
        assert!(h.master.framework_ids().is_empty());
    }
}

#[test]
fn multi_role_frameworks_get_allocation_info() {
    let mut h = Harness::new();
    let mut info = with_capabilities(framework("mr"), &[Capability::MultiRole]);
    info.roles = vec!["dev".into()];
    let (conn, _) = h.subscribe(info);
    let (_, out) = h.register(register_call(AGENT_RESOURCES, "", None));
    let offer = offers(&out, conn).pop().expect("offer");
    let dev = Some(v1::resource::AllocationInfo { role: Some("dev".into()) });
    assert_eq!(offer.allocation_info, dev);
    assert!(offer.resources.iter().all(|r| r.allocation_info == dev));
}

#[test]
#[expect(deprecated, reason = "the single `role` is part of what is validated")]
fn invalid_roles_arrive_as_error_event_and_close() {
    let multi = |roles: &[&str]| {
        let mut i = with_capabilities(framework("x"), &[Capability::MultiRole]);
        i.roles = roles.iter().map(|r| r.to_string()).collect();
        i
    };
    let cases: Vec<(v1::FrameworkInfo, &str)> = vec![
        (
            {
                let mut i = framework("x");
                i.roles = vec!["dev".into()];
                i
            },
            "not MULTI_ROLE",
        ),
        (
            {
                let mut i = multi(&["dev"]);
                i.role = Some("dev".into());
                i
            },
            "must not be set",
        ),
        (multi(&["dev", "dev"]), "duplicate"),
        (multi(&["-dev"]), "invalid"),
        (multi(&["a b"]), "invalid"),
        (multi(&["a//b"]), "invalid"),
        (
            {
                let mut i = framework("x");
                i.role = Some("..".into());
                i
            },
            "invalid",
        ),
    ];
    for (info, message) in cases {
        let mut h = Harness::new();
        let (conn, req, out) = h.subscribe_raw(subscribe_call(info.clone()));
        assert_eq!(reply(&out, req), Ok(()), "{info:?}: the 200 stream opens first");
        let errors = errors(&out, conn);
        assert_eq!(errors.len(), 1, "{info:?}");
        assert!(errors[0].contains(message), "{errors:?} should mention {message}");
        assert_eq!(out.last(), Some(&Output::CloseScheduler { conn }));
        assert!(h.master.framework_ids().is_empty());
    }
}

#[test]
fn stream_id_and_framework_state_checks() {
    let mut h = Harness::new();
    let (_, fid) = h.subscribe(framework("a"));
    let (_, gone) = h.subscribe(framework("b"));
    let (gone_conn, _) = h.frameworks[&gone].clone();
    assert!(h.handle(Input::SchedulerClosed { conn: gone_conn }).is_empty());
    let stream = h.frameworks[&fid].1.clone();
    let with_id = |id: &str| {
        let mut c = call(CallType::Revive);
        c.framework_id = Some(v1::FrameworkId { value: id.into() });
        c
    };
    let bad = |m: &str| Err(CallError::BadRequest(m.into()));
    let cases: Vec<(Option<String>, sched::Call, Result<(), CallError>)> = vec![
        (Some(stream.clone()), with_id(&fid), Ok(())),
        (
            None,
            with_id(&fid),
            bad("All non-subscribe calls should include the 'Mesos-Stream-Id' header"),
        ),
        (
            Some("nope".into()),
            with_id(&fid),
            bad(&format!(
                "The stream ID 'nope' included in this request didn't match the stream ID currently associated with framework ID {fid}"
            )),
        ),
        (Some(stream.clone()), with_id("unknown"), bad("Framework cannot be found")),
        (
            Some(stream.clone()),
            with_id(&gone),
            Err(CallError::Forbidden("Framework is not subscribed".into())),
        ),
        (
            Some(stream.clone()),
            call(CallType::Revive),
            bad("Failed to validate scheduler::Call: Expecting 'framework_id' to be present"),
        ),
        (
            Some(stream.clone()),
            sched::Call::default(),
            bad("Failed to validate scheduler::Call: Expecting 'type' to be present"),
        ),
        (
            Some(stream.clone()),
            {
                let mut c = with_id(&fid);
                c.set_type(CallType::Kill);
                c
            },
            bad("Failed to validate scheduler::Call: Expecting 'kill' to be present"),
        ),
        (
            Some(stream.clone()),
            {
                let mut c = subscribe_call(framework("a"));
                c.framework_id = with_id(&fid).framework_id;
                c
            },
            bad(
                "Failed to validate scheduler::Call: SUBSCRIBE must be sent as a streaming request",
            ),
        ),
    ];
    for (stream_id, c, expected) in cases {
        let (result, _) = h.raw_call(stream_id.clone(), c.clone());
        assert_eq!(result, expected, "{stream_id:?} {c:?}");
    }
}

#[test]
fn zero_failover_timeout_removes_the_framework_for_good() {
    let mut h = Harness::new();
    let mut info = framework("short");
    info.failover_timeout = None;
    let (conn, fid) = h.subscribe(info.clone());
    h.handle(Input::SchedulerClosed { conn });
    assert!(h.master.framework_ids().is_empty());

    info.id = Some(v1::FrameworkId { value: fid.clone() });
    let (conn, req, out) = h.subscribe_raw(subscribe_call(info));
    assert_eq!(reply(&out, req), Ok(()));
    assert_eq!(errors(&out, conn), vec!["Framework has been removed".to_string()]);
    assert_eq!(out.last(), Some(&Output::CloseScheduler { conn }));
    assert!(h.master.framework_ids().is_empty());
    let (result, _) = h.call(&fid, call(CallType::Revive));
    assert_eq!(result, Err(CallError::BadRequest("Framework cannot be found".into())));
}

#[test]
fn failover_timeout_keeps_the_framework_until_it_runs_out() {
    let mut c = cluster(framework("long"));
    c.launch(vec![task("t1", &c.aid, "cpus:1;mem:128")], None);
    let out = c.h.handle(Input::SchedulerClosed { conn: c.fconn });
    assert!(out.is_empty(), "nobody to tell: {out:?}");
    assert!(c.h.master.offer_ids().is_empty(), "offers of a disconnected framework are recovered");
    c.h.advance(3599.0);
    assert!(offers(&c.h.tick(), c.fconn).is_empty());
    assert_eq!(c.h.master.framework_ids(), vec![c.fid.clone()]);

    // Re-subscribing with the id within the timeout keeps the tasks.
    let mut info = framework("long");
    info.id = Some(v1::FrameworkId { value: c.fid.clone() });
    let (conn, fid) = c.h.subscribe(info);
    assert_eq!(fid, c.fid);
    assert_eq!(c.h.master.tasks().len(), 1);
    c.h.handle(Input::SchedulerClosed { conn });

    c.h.advance(3600.0);
    let out = c.h.tick();
    assert!(c.h.master.framework_ids().is_empty());
    assert!(c.h.master.tasks().is_empty());
    let shutdown = agent_events(&out, c.aconn);
    assert_eq!(shutdown.len(), 1);
    assert_eq!(shutdown[0].r#type(), internal::agent_event::Type::ShutdownFramework);
}

#[test]
fn resubscribing_while_connected_fails_over_the_old_stream() {
    let mut c = cluster(framework("f"));
    let old_stream = c.h.frameworks[&c.fid].1.clone();
    let mut info = framework("f");
    info.id = Some(v1::FrameworkId { value: c.fid.clone() });
    let (conn, out_req, out) = c.h.subscribe_raw(subscribe_call(info));
    assert_eq!(reply(&out, out_req), Ok(()));
    assert_eq!(errors(&out, c.fconn), vec!["Framework failed over".to_string()]);
    assert!(out.contains(&Output::CloseScheduler { conn: c.fconn }));
    assert_eq!(
        kinds(&out, conn),
        vec![EventType::Subscribed, EventType::Heartbeat, EventType::Offers]
    );
    // The old offer was withdrawn and its resources offered again on the new stream.
    let new_offer = offers(&out, conn).pop().expect("re-offer");
    assert_ne!(new_offer.id, c.offer.id);
    assert_eq!(c.h.master.offer_ids().len(), 1);
    assert_eq!(c.h.master.framework_ids().len(), 1);

    let mut revive = call(CallType::Revive);
    revive.framework_id = Some(v1::FrameworkId { value: c.fid.clone() });
    assert!(matches!(c.h.raw_call(Some(old_stream), revive).0, Err(CallError::BadRequest(_))));
    assert_eq!(c.h.call(&c.fid, call(CallType::Revive)).0, Ok(()));
    // The old conn closing later does not disconnect the framework.
    c.h.handle(Input::SchedulerClosed { conn: c.fconn });
    assert_eq!(c.h.call(&c.fid, call(CallType::Revive)).0, Ok(()));
}

#[test]
fn a_resubscription_with_another_principal_leaves_the_running_scheduler_alone() {
    let mut c = cluster(framework("f"));
    let mut info = framework("f");
    info.id = Some(v1::FrameworkId { value: c.fid.clone() });
    info.principal = Some("intruder".into());
    let (conn, _, out) = c.h.subscribe_raw(subscribe_call(info));
    assert_eq!(errors(&out, conn), vec!["Changing the framework's principal is not allowed"]);
    assert!(out.contains(&Output::CloseScheduler { conn }));
    assert!(events(&out, c.fconn).is_empty(), "the old stream is untouched: {out:?}");
    assert!(!out.contains(&Output::CloseScheduler { conn: c.fconn }));
    assert_eq!(c.h.master.offer_ids().len(), 1, "its offer is still outstanding");
    assert_eq!(c.h.call(&c.fid, call(CallType::Revive)).0, Ok(()));
}

#[test]
fn resubscribing_can_change_roles() {
    let mut h = Harness::new();
    let multi = |roles: &[&str]| {
        let mut i = with_capabilities(framework("mr"), &[Capability::MultiRole]);
        i.roles = roles.iter().map(|r| r.to_string()).collect();
        i
    };
    let (_, fid) = h.subscribe(multi(&["a"]));
    h.register_agent(AGENT_RESOURCES);
    let mut info = multi(&["b"]);
    info.id = Some(v1::FrameworkId { value: fid });
    let (conn, _, out) = h.subscribe_raw(subscribe_call(info));
    let offer = offers(&out, conn).pop().expect("re-offer");
    assert_eq!(offer.allocation_info.and_then(|a| a.role).as_deref(), Some("b"));
}

#[test]
fn heartbeats_go_to_every_stream() {
    let mut h = Harness::new();
    let (a, _) = h.subscribe(framework("a"));
    let (b, _) = h.subscribe(framework("b"));
    let (agent, _) = h.register_agent(AGENT_RESOURCES);
    let out = h.handle(Input::HeartbeatTick);
    assert_eq!(kinds(&out, a), vec![EventType::Heartbeat]);
    assert_eq!(kinds(&out, b), vec![EventType::Heartbeat]);
    let agent_events = agent_events(&out, agent);
    assert_eq!(agent_events.len(), 1);
    assert_eq!(agent_events[0].r#type(), internal::agent_event::Type::Heartbeat);
    assert_eq!(out.len(), 3);
    // Output order is deterministic (the simulator replays runs exactly).
    assert_eq!(out, h.handle(Input::HeartbeatTick));
    let conns: Vec<ConnId> = out
        .iter()
        .filter_map(|o| match o {
            Output::ToScheduler { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(conns, vec![a, b]);
}

#[test]
fn suppressed_roles_must_be_the_framework_roles() {
    let mut h = Harness::new();
    let mut c = subscribe_call(framework("x"));
    if let Some(s) = c.subscribe.as_mut() {
        s.suppressed_roles = vec!["other".into()];
    }
    let (conn, req, out) = h.subscribe_raw(c);
    assert_eq!(reply(&out, req), Ok(()));
    let errors = errors(&out, conn);
    assert!(errors.iter().any(|e| e.contains("Suppressed role 'other'")), "{errors:?}");
    assert_eq!(out.last(), Some(&Output::CloseScheduler { conn }));
    assert!(h.master.framework_ids().is_empty());
}
