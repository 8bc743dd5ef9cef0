//! Master tests of the resource operations in ACCEPT: RESERVE, CREATE, DESTROY and UNRESERVE
//! change the offer, the agent's total and what the agent is told to checkpoint; invalid ones
//! are dropped and change nothing (reference §2.6, §2.7, §5.5).

use crate::resources::{DiskInfo, Reservation, Resource, Scalar, Value};

use super::*;

fn web_framework() -> v1::FrameworkInfo {
    let mut info = framework("f");
    #[expect(deprecated, reason = "a single-role framework names its role this way")]
    {
        info.role = Some("web".into());
    }
    info.principal = Some("ops".into());
    info
}

fn scalar(name: &str, amount: f64) -> Resource {
    Resource::new(name, "*", Value::Scalar(Scalar::from_f64(amount)))
}

fn reserved(name: &str, amount: f64) -> Resource {
    scalar(name, amount).pushed(Reservation::new_dynamic("web", Some("ops")))
}

fn volume(id: &str, mb: f64) -> Resource {
    reserved("disk", mb).with_disk(DiskInfo::persistent_volume(id, Some("ops"), "data"))
}

fn op(kind: v1::offer::operation::Type, resources: Vec<Resource>) -> v1::offer::Operation {
    use v1::offer::operation as o;
    let wire = convert::resources_to_proto(&resources.into_iter().collect(), None);
    let mut op = v1::offer::Operation::default();
    op.set_type(kind);
    match kind {
        o::Type::Reserve => op.reserve = Some(o::Reserve { resources: wire, source: vec![] }),
        o::Type::Unreserve => op.unreserve = Some(o::Unreserve { resources: wire }),
        o::Type::Create => op.create = Some(o::Create { volumes: wire }),
        o::Type::Destroy => op.destroy = Some(o::Destroy { volumes: wire }),
        _ => unreachable!("only resource operations here"),
    }
    op
}

fn checkpoints(out: &[Output], aconn: ConnId) -> Vec<Resources> {
    agent_events(out, aconn)
        .into_iter()
        .filter_map(|e| e.checkpoint_resources)
        .map(|c| convert::resources_from_proto(&c.resources).expect("valid checkpoint"))
        .collect()
}

fn cluster_with_disk() -> Cluster {
    let mut h = Harness::new();
    let (fconn, fid) = h.subscribe(web_framework());
    let (aconn, out) = h.register(register_call("cpus:4;mem:1024;disk:1000", "", None));
    let aid = agent_events(&out, aconn)
        .into_iter()
        .find_map(|e| e.registered)
        .expect("REGISTERED")
        .agent_id
        .value;
    let offer = offers(&out, fconn).pop().expect("offer");
    Cluster { h, fconn, fid, aconn, aid, offer }
}

#[test]
fn reserve_create_and_launch_in_one_accept_then_destroy_and_unreserve() {
    use v1::offer::operation::Type as T;
    let mut c = cluster_with_disk();
    let aid = c.aid.clone();
    let mut t = task("db", &aid, "cpus:1;mem:128");
    let task_resources: Resources =
        [reserved("cpus", 1.0), reserved("mem", 128.0), volume("vol1", 500.0)]
            .into_iter()
            .collect();
    t.resources = convert::resources_to_proto(&task_resources, None);
    let operations = vec![
        op(
            T::Reserve,
            vec![reserved("cpus", 1.0), reserved("mem", 128.0), reserved("disk", 500.0)],
        ),
        op(T::Create, vec![volume("vol1", 500.0)]),
        launch(vec![t]),
    ];
    let offer_id = c.offer.id.value.clone();
    let (result, out) = c.h.call(&c.fid, accept(&[&offer_id], operations, Some(0.0)));
    assert_eq!(result, Ok(()));
    assert!(updates(&out, c.fconn).is_empty(), "{:?}", updates(&out, c.fconn));
    let checkpointed = checkpoints(&out, c.aconn);
    assert_eq!(checkpointed.len(), 1, "one checkpoint for the whole ACCEPT");
    let expected: Resources =
        [reserved("cpus", 1.0), reserved("mem", 128.0), volume("vol1", 500.0)]
            .into_iter()
            .collect();
    assert_eq!(checkpointed[0], expected);
    let run = agent_events(&out, c.aconn).into_iter().find_map(|e| e.run_task).expect("RUN_TASK");
    assert_eq!(run.task.task_id.value, "db");

    // The volume is in use: DESTROY is dropped, nothing changes.
    let offer = offers(&c.h.tick(), c.fconn).pop().expect("the unreserved rest");
    let (result, out) = c.h.call(
        &c.fid,
        accept(&[&offer.id.value], vec![op(T::Destroy, vec![volume("vol1", 500.0)])], Some(0.0)),
    );
    assert_eq!(result, Ok(()));
    assert!(checkpoints(&out, c.aconn).is_empty());

    // Once the task is gone the reserved resources and the volume come back to the web role.
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.h.status_update(&aid, &fid, "db", v1::TaskState::TaskFinished, None);
    let out = c.h.tick();
    let offer = offers(&out, c.fconn).pop().expect("an offer with the volume");
    let with_volume = offered(&offer);
    assert!(with_volume.contains(&expected), "{with_volume}");
    let operations = vec![
        op(T::Destroy, vec![volume("vol1", 500.0)]),
        op(
            T::Unreserve,
            vec![reserved("cpus", 1.0), reserved("mem", 128.0), reserved("disk", 500.0)],
        ),
    ];
    let (result, out) = c.h.call(&c.fid, accept(&[&offer.id.value], operations, Some(0.0)));
    assert_eq!(result, Ok(()));
    assert_eq!(checkpoints(&out, c.aconn), vec![Resources::new()]);
    let offer = offers(&c.h.tick(), c.fconn).pop().expect("everything unreserved");
    assert_eq!(offered(&offer), res("cpus:4;mem:1024;disk:1000"));
}

#[test]
fn invalid_operations_are_dropped_and_change_nothing() {
    use v1::offer::operation::Type as T;
    let other_role = |r: Resource| {
        let mut r = r;
        r.reservations = vec![Reservation::new_dynamic("db", Some("ops"))];
        r
    };
    let cases: Vec<(&str, Vec<v1::offer::Operation>)> = vec![
        (
            "a role the framework is not in",
            vec![op(T::Reserve, vec![other_role(scalar("cpus", 1.0))])],
        ),
        ("more than offered", vec![op(T::Reserve, vec![reserved("cpus", 100.0)])]),
        ("unreserve of unreserved", vec![op(T::Unreserve, vec![reserved("cpus", 1.0)])]),
        ("volume on unreserved disk", vec![op(T::Create, vec![volume("v", 10.0)])]),
        ("destroy of an unknown volume", vec![op(T::Destroy, vec![volume("v", 10.0)])]),
    ];
    for (name, operations) in cases {
        let mut c = cluster_with_disk();
        let offer_id = c.offer.id.value.clone();
        let (result, out) = c.h.call(&c.fid, accept(&[&offer_id], operations, Some(0.0)));
        assert_eq!(result, Ok(()), "{name}");
        assert!(checkpoints(&out, c.aconn).is_empty(), "{name}");
        let offer = offers(&c.h.tick(), c.fconn).pop().expect("the whole offer comes back");
        assert_eq!(offered(&offer), res("cpus:4;mem:1024;disk:1000"), "{name}");
    }
}

#[test]
fn an_agent_reports_its_reservations_and_volumes_when_it_registers() {
    let mut h = Harness::new();
    let (fconn, _) = h.subscribe(web_framework());
    let checkpointed: Resources =
        [reserved("cpus", 1.0), volume("vol1", 100.0)].into_iter().collect();
    let mut register = register_call("cpus:4;mem:1024;disk:1000", "", Some("a1"));
    if let Some(r) = register.register.as_mut() {
        r.checkpointed_resources = convert::resources_to_proto(&checkpointed, None);
    }
    let (_, out) = h.register(register);
    let offer = offers(&out, fconn).pop().expect("offer");
    let mut expected = res("cpus:3;mem:1024;disk:900");
    expected += &checkpointed;
    assert_eq!(offered(&offer), expected);

    // More than the agent has is refused, naming both.
    let mut h = Harness::new();
    let mut register = register_call("cpus:4;mem:1024", "", Some("a2"));
    if let Some(r) = register.register.as_mut() {
        r.checkpointed_resources = convert::resources_to_proto(&checkpointed, None);
    }
    let (aconn, out) = h.register(register);
    let errors: Vec<String> =
        agent_events(&out, aconn).into_iter().filter_map(|e| Some(e.error?.message)).collect();
    assert!(errors.iter().any(|m| m.contains("exceed the agent's")), "{errors:?}");
}

#[test]
fn offers_use_the_reservation_format_the_framework_reads() {
    let checkpointed: Resources = [reserved("cpus", 1.0)].into_iter().collect();
    for refinement in [false, true] {
        let mut info = web_framework();
        if refinement {
            info = with_capabilities(info, &[Capability::ReservationRefinement]);
        }
        let mut h = Harness::new();
        let (fconn, _) = h.subscribe(info);
        let mut register = register_call("cpus:4;mem:1024", "", Some("a1"));
        if let Some(r) = register.register.as_mut() {
            r.checkpointed_resources = convert::resources_to_proto(&checkpointed, None);
        }
        let (_, out) = h.register(register);
        let offer = offers(&out, fconn).pop().expect("offer");
        let cpus: Vec<&v1::Resource> =
            offer.resources.iter().filter(|r| r.name == "cpus" && r.role() == "web").collect();
        assert_eq!(cpus.len(), 1, "{:?}", offer.resources);
        if refinement {
            assert_eq!(cpus[0].reservations.len(), 1);
            assert!(cpus[0].reservation.is_none());
        } else {
            assert!(cpus[0].reservations.is_empty());
            assert!(cpus[0].reservation.is_some());
        }
        assert_eq!(offered(&offer).cpus(), Scalar::from_f64(4.0), "both formats read back");
    }
}

#[test]
fn the_master_s_reservations_win_over_an_agent_that_missed_them() {
    use v1::offer::operation::Type as T;
    let mut c = cluster_with_disk();
    let aid = c.aid.clone();
    let mut t = task("t", &aid, "cpus:1");
    t.resources = convert::resources_to_proto(&[reserved("cpus", 1.0)].into_iter().collect(), None);
    let operations = vec![op(T::Reserve, vec![reserved("cpus", 1.0)]), launch(vec![t])];
    let offer_id = c.offer.id.value.clone();
    let (result, out) = c.h.call(&c.fid, accept(&[&offer_id], operations, Some(0.0)));
    assert_eq!(result, Ok(()));
    // The checkpoint reaches the agent before the task that uses it.
    let kinds: Vec<_> = agent_events(&out, c.aconn).iter().map(|e| e.r#type()).collect();
    use internal::agent_event::Type as A;
    assert_eq!(kinds, vec![A::CheckpointResources, A::RunTask]);

    // The agent comes back without the reservation (it missed the checkpoint): the master
    // tells it again and keeps counting the reserved cpu as used by the task.
    let mut register = register_call("cpus:4;mem:1024;disk:1000", "", Some(&aid));
    if let Some(r) = register.register.as_mut() {
        let mut running = v1::Task {
            name: Some("t".into()),
            task_id: Some(v1::TaskId { value: "t".into() }),
            framework_id: Some(v1::FrameworkId { value: c.fid.clone() }),
            agent_id: Some(v1::AgentId { value: aid.clone() }),
            resources: convert::resources_to_proto(
                &[reserved("cpus", 1.0)].into_iter().collect(),
                None,
            ),
            ..Default::default()
        };
        running.set_state(v1::TaskState::TaskRunning);
        r.tasks.push(running);
    }
    let (aconn, out) = c.h.register(register);
    let resent: Vec<Resources> = checkpoints(&out, aconn);
    assert_eq!(resent, vec![[reserved("cpus", 1.0)].into_iter().collect::<Resources>()]);
    let offered_now: Vec<Resources> = offers(&out, c.fconn).iter().map(offered).collect();
    let offered_now = offered_now.into_iter().fold(Resources::new(), |acc, r| acc + &r);
    assert_eq!(offered_now, res("cpus:3;mem:1024;disk:1000"), "the task's cpu is not offered");
}

#[test]
fn what_a_returning_agent_does_not_report_is_gone() {
    let mut info = framework("f");
    info.checkpoint = Some(true);
    let mut c = cluster(info);
    let aid = c.aid.clone();
    let group_executor = {
        let mut e = v1::ExecutorInfo {
            executor_id: v1::ExecutorId { value: "ex".into() },
            resources: convert::resources_to_proto(&res("cpus:0.5;mem:64"), None),
            ..Default::default()
        };
        e.set_type(v1::executor_info::Type::Default);
        e
    };
    let mut group = v1::offer::Operation::default();
    group.set_type(v1::offer::operation::Type::LaunchGroup);
    group.launch_group = Some(v1::offer::operation::LaunchGroup {
        executor: group_executor,
        task_group: v1::TaskGroupInfo { tasks: vec![task("g", &aid, "cpus:1;mem:64")] },
    });
    let offer_id = c.offer.id.value.clone();
    let launch_t = launch(vec![task("t", &aid, "cpus:1")]);
    let (result, _) = c.h.call(&c.fid, accept(&[&offer_id], vec![launch_t, group], Some(0.0)));
    assert_eq!(result, Ok(()));

    // The agent's stream breaks before anything arrives; it comes back knowing nothing.
    c.h.handle(Input::AgentClosed { conn: c.aconn });
    let (_, out) = c.h.register(register_call(AGENT_RESOURCES, "", Some(&aid)));
    let mut lost: Vec<(String, v1::TaskState)> =
        updates(&out, c.fconn).iter().map(|s| (s.task_id.value.clone(), s.state())).collect();
    lost.sort();
    assert_eq!(
        lost,
        vec![("g".into(), v1::TaskState::TaskLost), ("t".into(), v1::TaskState::TaskLost)]
    );
    assert!(c.h.master.tasks().is_empty());
    let offer = offers(&out, c.fconn).pop().expect("everything is free again");
    assert_eq!(offered(&offer), res(AGENT_RESOURCES));
    assert!(offer.executor_ids.is_empty(), "the unreported executor is forgotten");
}

#[test]
fn a_returning_agent_is_told_to_kill_a_task_whose_id_now_runs_elsewhere() {
    let mut c = cluster(framework("f"));
    let a = c.aid.clone();
    let offer_id = c.offer.id.value.clone();
    let (result, _) =
        c.h.call(&c.fid, accept(&[&offer_id], vec![launch(vec![task("t", &a, "cpus:1")])], None));
    assert_eq!(result, Ok(()));
    // Agent A goes away and stays away: after the pings it misses the task is lost, and the
    // scheduler relaunches it on agent B.
    let out = c.h.handle(Input::AgentClosed { conn: c.aconn });
    assert!(updates(&out, c.fconn).is_empty(), "a broken stream alone ends nothing");
    let mut out = Vec::new();
    for _ in 0..5 {
        out = c.h.handle(Input::PingTick);
    }
    assert_eq!(updates(&out, c.fconn)[0].state(), v1::TaskState::TaskLost);
    let (_, out) = c.h.register(register_call(AGENT_RESOURCES, "", Some("b")));
    let offer = offers(&out, c.fconn).pop().expect("an offer of b");
    let (result, _) = c.h.call(
        &c.fid,
        accept(&[&offer.id.value], vec![launch(vec![task("t", "b", "cpus:1")])], None),
    );
    assert_eq!(result, Ok(()));

    // A comes back with its copy still running: it is told to kill it.
    let call = register_call(AGENT_RESOURCES, "", Some(&a));
    let (aconn, out) = c.h.register(reporting(call, &a, &[(&c.fid, "t", "cpus:1")]));
    let kills: Vec<String> = agent_events(&out, aconn)
        .into_iter()
        .filter_map(|e| Some(e.kill_task?.task_id.value))
        .collect();
    assert_eq!(kills, vec!["t".to_string()]);
}
