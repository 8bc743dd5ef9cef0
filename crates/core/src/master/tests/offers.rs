//! Master tests of offers and launches: ACCEPT with LAUNCH, the leftovers' refuse filters,
//! task and offer validation, DECLINE, REVIVE and SUPPRESS.

use super::*;

#[test]
fn accept_launches_and_filters_the_leftovers() {
    // (refuse_seconds, allocation interval, seconds after which the leftovers come back)
    let cases =
        [(Some(0.0), 1.0, 0.0), (None, 1.0, 5.0), (Some(2.0), 1.0, 2.0), (Some(0.5), 3.0, 3.0)];
    for (refuse, interval, back_after) in cases {
        let mut h = Harness::with(MasterConfig {
            allocation_interval: Duration::from_secs_f64(interval),
            ..config()
        });
        let (fconn, fid) = h.subscribe(framework("f"));
        let (aconn, out) = h.register(register_call(AGENT_RESOURCES, "", None));
        let offer = offers(&out, fconn).pop().expect("offer");
        let aid = offer.agent_id.value.clone();
        let (result, out) = h.call(
            &fid,
            accept(
                &[&offer.id.value],
                vec![launch(vec![task("t1", &aid, "cpus:1;mem:128")])],
                refuse,
            ),
        );
        assert_eq!(result, Ok(()));
        let run = agent_events(&out, aconn);
        assert_eq!(run.len(), 1, "{out:?}");
        assert_eq!(run[0].r#type(), internal::agent_event::Type::RunTask);
        let run = run[0].run_task.clone().expect("payload");
        assert_eq!(run.framework_info.id.map(|i| i.value), Some(fid.clone()));
        assert_eq!(run.task.task_id.value, "t1");
        assert_eq!(h.master.tasks(), vec![(fid.clone(), "t1".to_string(), TaskState::TaskStaging)]);
        assert!(h.master.offer_ids().is_empty());

        if back_after > 0.0 {
            assert!(offers(&h.tick(), fconn).is_empty(), "{refuse:?}: filtered right after");
            h.advance(back_after - 0.1);
            assert!(offers(&h.tick(), fconn).is_empty(), "{refuse:?}: still filtered");
            h.advance(0.1);
        }
        let again = offers(&h.tick(), fconn);
        assert_eq!(again.len(), 1, "{refuse:?}: leftovers offered again");
        assert_eq!(offered(&again[0]), res("cpus:3;mem:896"));
    }
}

#[test]
fn custom_executors_get_the_framework_id_and_show_in_offers() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    let out = c.launch(
        vec![executor_task("t1", &aid, "cpus:1;mem:128", "e1", "cpus:0.5;mem:32")],
        Some(0.0),
    );
    let run = agent_events(&out, c.aconn).pop().and_then(|e| e.run_task).expect("RUN_TASK");
    let executor = run.task.executor.expect("executor");
    assert_eq!(executor.framework_id.map(|f| f.value), Some(c.fid.clone()));
    let offer = offers(&c.h.tick(), c.fconn).pop().expect("leftovers");
    assert_eq!(offered(&offer), res("cpus:2.5;mem:864"), "the executor's resources are used too");
    assert_eq!(offer.executor_ids, vec![v1::ExecutorId { value: "e1".into() }]);

    // A second task for the running executor does not pay for the executor again.
    c.offer = offer;
    let out = c
        .launch(vec![executor_task("t2", &aid, "cpus:2.5;mem:864", "e1", "cpus:0.5;mem:32")], None);
    assert!(updates(&out, c.fconn).is_empty(), "{out:?}");
    assert_eq!(c.h.master.tasks().len(), 2);

    // An executor exit is reported as FAILURE and frees the executor's resources.
    let mut exited = internal::AgentCall::default();
    exited.set_type(internal::agent_call::Type::ExecutorExited);
    exited.executor_exited = Some(internal::agent_call::ExecutorExited {
        framework_id: v1::FrameworkId { value: c.fid.clone() },
        executor_id: v1::ExecutorId { value: "e1".into() },
        status: Some(256),
    });
    let (result, out) = c.h.agent_call(&aid, exited);
    assert_eq!(result, Ok(()));
    let failure = events(&out, c.fconn).pop().and_then(|e| e.failure).expect("FAILURE");
    assert_eq!(failure.agent_id.map(|a| a.value), Some(aid.clone()));
    assert_eq!(failure.executor_id.map(|e| e.value), Some("e1".to_string()));
    assert_eq!(failure.status, Some(256));
    c.h.advance(10.0);
    let offer = offers(&c.h.tick(), c.fconn).pop().expect("executor resources back");
    assert_eq!(offered(&offer), res("cpus:0.5;mem:32"));
    assert!(offer.executor_ids.is_empty());
}

#[test]
fn invalid_tasks_get_task_error_while_the_call_succeeds() {
    // `cluster` registers the master's first agent.
    let aid = format!("{MASTER_ID}-S0");
    let aid = aid.as_str();
    let mut both = executor_task("t", aid, "cpus:1", "e", "cpus:0.1");
    both.command = task("t", aid, "cpus:1").command;
    let mut neither = task("t", aid, "cpus:1");
    neither.command = None;
    let cases: Vec<(&str, Vec<v1::TaskInfo>, &str)> = vec![
        ("too big", vec![task("t", aid, "cpus:8")], "more than available"),
        ("duplicate", vec![task("t", aid, "cpus:1"), task("t", aid, "cpus:1")], "duplicate ID"),
        ("both", vec![both], "(but not both)"),
        ("neither", vec![neither], "(but not both)"),
        ("agent", vec![task("t", "elsewhere", "cpus:1")], "invalid agent"),
        ("task id", vec![task("a/b", aid, "cpus:1")], "is invalid"),
        ("no resources", vec![task("t", aid, "")], "no resources"),
        ("second task", vec![task("t", aid, "cpus:3"), task("u", aid, "cpus:2")], "more than"),
        ("executor id", vec![executor_task("t", aid, "cpus:1", "e/1", "cpus:0.1")], "Executor ID"),
    ];
    for (name, tasks, message) in cases {
        let mut c = cluster(framework("f"));
        assert_eq!(c.aid, aid);
        let count = tasks.len();
        let out = c.launch(tasks, None);
        let statuses = updates(&out, c.fconn);
        assert_eq!(statuses.len(), 1, "{name}: {out:?}");
        let status = &statuses[0];
        assert_eq!(status.state(), TaskState::TaskError, "{name}");
        assert_eq!(status.reason(), Reason::TaskInvalid, "{name}");
        assert_eq!(status.source(), Source::Master, "{name}");
        assert!(status.uuid.is_none(), "{name}: master updates are never acknowledged");
        assert!(status.message().contains(message), "{name}: {:?}", status.message());
        assert_eq!(agent_events(&out, c.aconn).len(), count - 1, "{name}");
        assert_eq!(c.h.master.tasks().len(), count - 1, "{name}");
    }
}

#[test]
fn invalid_offers_lose_or_drop_the_tasks() {
    for (caps, state) in
        [(vec![], TaskState::TaskLost), (vec![Capability::PartitionAware], TaskState::TaskDropped)]
    {
        let mut c = cluster(with_capabilities(framework("f"), &caps));
        let aid = c.aid.clone();
        let offer_id = c.offer.id.value.clone();
        let (_, out) = c.h.call(
            &c.fid,
            accept(&["no-such-offer"], vec![launch(vec![task("t1", &aid, "cpus:1")])], None),
        );
        let status = updates(&out, c.fconn).pop().expect("update");
        assert_eq!(
            (status.state(), status.reason(), status.source()),
            (state, Reason::InvalidOffers, Source::Master)
        );
        assert!(status.uuid.is_none());
        assert_eq!(c.h.master.offer_ids().len(), 1, "an unknown id consumes nothing");

        // An offer can be used once.
        c.launch(vec![task("t1", &aid, "cpus:1")], Some(0.0));
        let (_, out) = c.h.call(
            &c.fid,
            accept(&[&offer_id], vec![launch(vec![task("t2", &aid, "cpus:1")])], None),
        );
        assert_eq!(updates(&out, c.fconn).pop().map(|s| s.reason()), Some(Reason::InvalidOffers));
        assert_eq!(c.h.master.tasks().len(), 1);
    }
}

#[test]
fn offers_of_two_agents_cannot_be_combined() {
    let mut h = Harness::new();
    let (fconn, fid) = h.subscribe(framework("f"));
    let (_, a1) = h.register_agent(AGENT_RESOURCES);
    let (_, a2) = h.register_agent(AGENT_RESOURCES);
    assert_ne!(a1, a2);
    let ids: Vec<String> = h.master.offer_ids().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 2);
    let (result, out) = h.call(
        &fid,
        accept(&[&ids[0], &ids[1]], vec![launch(vec![task("t", &a1, "cpus:1")])], None),
    );
    assert_eq!(result, Ok(()));
    let status = updates(&out, fconn).pop().expect("update");
    assert_eq!(status.reason(), Reason::InvalidOffers);
    assert!(status.message().contains("single agent"), "{:?}", status.message());
    assert!(h.master.offer_ids().is_empty(), "both offers are used up");
    assert!(h.master.tasks().is_empty());
}

#[test]
fn decline_revive_and_suppress() {
    let mut c = cluster(framework("f"));
    let offer_id = c.offer.id.value.clone();
    assert_eq!(c.h.call(&c.fid, decline(&[&offer_id], Some(10.0))).0, Ok(()));
    assert!(c.h.master.offer_ids().is_empty());
    c.h.advance(9.0);
    assert!(offers(&c.h.tick(), c.fconn).is_empty(), "declined for 10 s");
    c.h.advance(1.0);
    let offer = offers(&c.h.tick(), c.fconn).pop().expect("filter expired");

    // REVIVE clears the filter and allocates at once.
    assert_eq!(c.h.call(&c.fid, decline(&[&offer.id.value], Some(1000.0))).0, Ok(()));
    let (result, out) = c.h.call(&c.fid, call(CallType::Revive));
    assert_eq!(result, Ok(()));
    let offer = offers(&out, c.fconn).pop().expect("revived");

    // SUPPRESS stops offers until the next REVIVE.
    assert_eq!(c.h.call(&c.fid, call(CallType::Suppress)).0, Ok(()));
    assert_eq!(c.h.call(&c.fid, decline(&[&offer.id.value], Some(0.0))).0, Ok(()));
    c.h.advance(100.0);
    assert!(offers(&c.h.tick(), c.fconn).is_empty(), "suppressed");
    let (_, out) = c.h.call(&c.fid, call(CallType::Revive));
    assert_eq!(offers(&out, c.fconn).len(), 1);
}

#[test]
fn refuse_durations() {
    let master = Master::new(config());
    let year = Duration::from_secs(365 * 24 * 3600);
    for (refuse, expected) in [
        (None, Some(Duration::from_secs(5))),
        (Some(0.0), None),
        (Some(-3.0), Some(Duration::from_secs(5))),
        (Some(f64::NAN), Some(Duration::from_secs(5))),
        (Some(0.25), Some(Duration::from_secs(1))),
        (Some(30.0), Some(Duration::from_secs(30))),
        (Some(1e12), Some(year)),
    ] {
        let filters = refuse.map(|s| v1::Filters { refuse_seconds: Some(s) });
        assert_eq!(master.refuse_duration(filters.as_ref()), expected, "{refuse:?}");
    }
}

#[test]
fn unsupported_operations_are_refused_without_consuming_offers() {
    let mut c = cluster(framework("f"));
    let mut grow = v1::offer::Operation::default();
    grow.set_type(v1::offer::operation::Type::GrowVolume);
    let mut feedback = launch(vec![]);
    feedback.id = Some(v1::OperationId { value: "op1".into() });
    let offer_id = c.offer.id.value.clone();
    for (op, expected) in [(grow, "GROW_VOLUME"), (feedback, "Operation feedback")] {
        let (result, out) = c.h.call(&c.fid, accept(&[&offer_id], vec![op], None));
        assert!(
            matches!(&result, Err(CallError::BadRequest(m)) if m.contains(expected)),
            "{result:?}"
        );
        assert!(updates(&out, c.fconn).is_empty());
        assert_eq!(c.h.master.offer_ids().len(), 1);
    }
}

#[test]
fn a_running_executor_must_be_named_with_the_same_executor_info() {
    let mut c = cluster(framework("f"));
    let aid = c.aid.clone();
    c.launch(vec![executor_task("t1", &aid, "cpus:1;mem:128", "e1", "cpus:0.5;mem:32")], Some(0.0));
    c.offer = offers(&c.h.tick(), c.fconn).pop().expect("leftovers");
    let mut changed = executor_task("t2", &aid, "cpus:1;mem:128", "e1", "cpus:0.5;mem:32");
    if let Some(e) = changed.executor.as_mut() {
        e.command = Some(v1::CommandInfo { value: Some("./other".into()), ..Default::default() });
    }
    let out = c.launch(vec![changed], Some(0.0));
    let error = updates(&out, c.fconn).pop().expect("TASK_ERROR");
    assert_eq!(error.state(), TaskState::TaskError);
    assert!(error.message().contains("not compatible"), "{}", error.message());
}

#[test]
fn multi_role_frameworks_must_echo_the_allocation_role() {
    let mut info = with_capabilities(framework("f"), &[Capability::MultiRole]);
    info.roles = vec!["web".into()];
    let mut c = cluster(info);
    let aid = c.aid.clone();
    assert_eq!(
        c.offer.allocation_info.as_ref().and_then(|a| a.role.as_deref()),
        Some("web"),
        "offers to MULTI_ROLE frameworks name their role"
    );
    let web = v1::resource::AllocationInfo { role: Some("web".into()) };
    let other = v1::resource::AllocationInfo { role: Some("db".into()) };
    let bare = task("bare", &aid, "cpus:1");
    let mut wrong = task("wrong", &aid, "cpus:1");
    wrong.resources = convert::resources_to_proto(&res("cpus:1"), Some(&other));
    let mut echoed = task("echoed", &aid, "cpus:1");
    echoed.resources = convert::resources_to_proto(&res("cpus:1"), Some(&web));
    let out = c.launch(vec![bare, wrong, echoed], None);
    let errors: Vec<(String, String)> = updates(&out, c.fconn)
        .into_iter()
        .map(|s| (s.task_id.value.clone(), s.message().to_string()))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].0 == "bare" && errors[0].1.contains("lacks 'allocation_info'"));
    assert!(errors[1].0 == "wrong" && errors[1].1.contains("allocated to role 'db'"));
    assert_eq!(c.h.master.tasks().len(), 1);
}

#[test]
fn gpu_agents_go_only_to_gpu_frameworks() {
    let mut h = Harness::new();
    let (plain, _) = h.subscribe(framework("plain"));
    let (gpu, _) = h.subscribe(with_capabilities(framework("gpu"), &[Capability::GpuResources]));
    let (_, out) = h.register(register_call("cpus:4;mem:1024;gpus:2", "", Some("g1")));
    assert!(offers(&out, plain).is_empty(), "no GPU agent for a framework without GPU_RESOURCES");
    assert_eq!(offers(&out, gpu).len(), 1);
    let (_, out) = h.register(register_call("cpus:4;mem:1024", "", Some("c1")));
    assert_eq!(offers(&out, plain).len() + offers(&out, gpu).len(), 1, "a plain agent for anyone");
}

#[test]
fn offer_filters_set_a_per_role_minimum() {
    let mut info = framework("picky");
    let mut quantities = std::collections::HashMap::new();
    quantities.insert("cpus".to_string(), v1::value::Scalar { value: 8.0 });
    info.offer_filters.insert(
        "*".into(),
        v1::OfferFilters {
            min_allocatable_resources: Some(v1::offer_filters::MinAllocatableResources {
                quantities: vec![v1::offer_filters::ResourceQuantities { quantities }],
            }),
        },
    );
    let mut h = Harness::new();
    let (fconn, _) = h.subscribe(info);
    let (_, out) = h.register(register_call("cpus:4;mem:1024", "", Some("small")));
    assert!(offers(&out, fconn).is_empty(), "4 cpus are below the framework's minimum of 8");
    let (_, out) = h.register(register_call("cpus:16;mem:1024", "", Some("big")));
    assert_eq!(offers(&out, fconn).len(), 1);
}
