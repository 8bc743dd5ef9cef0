//! Master tests of persistence and restart: the registry operations each change emits, and a
//! master recovered from the registry those operations built (tasks rebuilt from re-registering
//! agents, reconciliation silence while agents may still return, the re-registration deadline,
//! removed frameworks staying removed).

use super::*;
use crate::master::RegistryOp;

/// What a store holding every operation of `out` would hand a restarting master.
pub(super) fn store(registry: &mut internal::Registry, out: &[Output]) {
    fn put<T>(list: &mut Vec<T>, same: impl Fn(&T) -> bool, record: T) {
        list.retain(|r| !same(r));
        list.push(record);
    }
    let agent_id = |r: &internal::RegistryAgent| r.agent_info.id.clone().unwrap_or_default().value;
    let framework_id =
        |r: &internal::RegistryFramework| r.framework_info.id.clone().unwrap_or_default().value;
    for op in persisted(out) {
        match op {
            RegistryOp::AdmitAgent(r) | RegistryOp::UpdateAgent(r) => {
                let id = agent_id(&r);
                put(&mut registry.agents, |a| agent_id(a) == id, r);
            }
            RegistryOp::AddFramework(r)
            | RegistryOp::UpdateFramework(r)
            | RegistryOp::RemoveFramework(r) => {
                let id = framework_id(&r);
                put(&mut registry.frameworks, |f| framework_id(f) == id, r);
            }
            RegistryOp::ForgetFramework(id) => {
                registry.frameworks.retain(|f| framework_id(f) != id)
            }
            RegistryOp::UpdateWeights(weights) => {
                for w in weights {
                    let role = w.role.clone();
                    put(&mut registry.weights, |o| o.role == role, w);
                }
            }
            RegistryOp::UpdateQuota(q) => {
                let role = q.role.clone();
                put(&mut registry.quotas, |o| o.role == role, q);
            }
            RegistryOp::RemoveQuota(role) => registry.quotas.retain(|q| q.role != role),
        }
    }
}

fn persisted(out: &[Output]) -> Vec<RegistryOp> {
    out.iter()
        .filter_map(|o| match o {
            Output::Persist(op) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

fn reconcile(tasks: &[(&str, Option<&str>)]) -> sched::Call {
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
}

/// A task as a re-registering agent reports it.
fn reported(
    framework_id: &str,
    agent_id: &str,
    id: &str,
    resources: &str,
    state: TaskState,
) -> v1::Task {
    let mut t = v1::Task {
        name: Some(id.into()),
        task_id: Some(v1::TaskId { value: id.into() }),
        framework_id: Some(v1::FrameworkId { value: framework_id.into() }),
        agent_id: Some(v1::AgentId { value: agent_id.into() }),
        resources: convert::resources_to_proto(&res(resources), None),
        ..Default::default()
    };
    t.set_state(state);
    t
}

fn reregister(
    agent_id: &str,
    frameworks: Vec<v1::FrameworkInfo>,
    tasks: Vec<v1::Task>,
) -> internal::AgentCall {
    let mut c = register_call(AGENT_RESOURCES, "rack:r1;level:3", Some(agent_id));
    if let Some(r) = c.register.as_mut() {
        r.frameworks = frameworks;
        r.tasks = tasks;
    }
    c
}

fn with_id(mut info: v1::FrameworkInfo, id: &str) -> v1::FrameworkInfo {
    info.id = Some(v1::FrameworkId { value: id.into() });
    info
}

#[test]
fn changes_that_must_survive_are_persisted_and_nothing_else() {
    let mut h = Harness::new();
    let (_, _, out) = h.subscribe_raw(subscribe_call(framework("f")));
    let ops = persisted(&out);
    assert!(
        matches!(ops.as_slice(), [RegistryOp::AddFramework(r)] if r.framework_info.id.is_some())
    );
    let fid = h.frameworks.keys().next().cloned().expect("subscribed");

    let (aconn, out) = h.register(register_call(AGENT_RESOURCES, "", None));
    let ops = persisted(&out);
    assert!(matches!(ops.as_slice(), [RegistryOp::AdmitAgent(r)] if r.agent_info.id.is_some()));
    let aid = h.agents.keys().next().cloned().expect("registered");

    // Re-registering unchanged persists nothing; a change of resources is an update.
    h.handle(Input::AgentClosed { conn: aconn });
    let (_, out) = h.register(register_call(AGENT_RESOURCES, "", Some(&aid)));
    assert_eq!(persisted(&out), vec![]);
    let (_, out) = h.register(register_call("cpus:8;mem:1024", "", Some(&aid)));
    assert!(matches!(persisted(&out).as_slice(), [RegistryOp::UpdateAgent(_)]));

    // Re-subscribing unchanged persists nothing either; TEARDOWN records the removal.
    let (_, _, out) = h.subscribe_raw(subscribe_call(with_id(framework("f"), &fid)));
    assert_eq!(persisted(&out), vec![]);
    let (_, out) = h.call(&fid, call(CallType::Teardown));
    assert!(matches!(
        persisted(&out).as_slice(),
        [RegistryOp::RemoveFramework(r)] if r.removed_time.is_some()
    ));
    // Heartbeats, allocation and status updates are soft state.
    assert_eq!(persisted(&h.tick()), vec![]);
    assert_eq!(persisted(&h.handle(Input::HeartbeatTick)), vec![]);
}

#[test]
fn a_restarted_master_rebuilds_tasks_from_the_agents_that_come_back() {
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.launch(vec![task("t1", &aid, "cpus:1;mem:128"), task("t2", &aid, "cpus:1;mem:128")], None);
    c.h.status_update(&aid, &fid, "t1", TaskState::TaskRunning, Some(1));

    let mut m = c.h.restart();
    assert_eq!(m.master.framework_ids(), vec![fid.clone()]);
    assert_eq!(m.master.recovered_agent_ids(), vec![aid.clone()]);
    assert!(m.master.agent_ids().is_empty());
    assert!(m.master.tasks().is_empty(), "tasks are soft state");

    // The scheduler comes back with its id before the agent: reconciliation is silent about
    // tasks that may be on the recovered agent (any agent, when the call names none), and
    // there is nothing to offer.
    let (fconn, _, out) = m.subscribe_raw(subscribe_call(with_id(framework("f"), &fid)));
    assert!(kinds(&out, fconn).contains(&EventType::Subscribed));
    assert!(offers(&out, fconn).is_empty());
    for tasks in [vec![], vec![("t1", Some(aid.as_str()))], vec![("t1", None)]] {
        let (result, out) = m.call(&fid, reconcile(&tasks));
        assert_eq!(result, Ok(()));
        assert!(updates(&out, fconn).is_empty(), "silent for {tasks:?}");
    }
    // A task named on an agent that is not recovering still gets its answer.
    let (_, out) = m.call(&fid, reconcile(&[("t9", Some("elsewhere"))]));
    assert_eq!(updates(&out, fconn).pop().map(|s| s.state()), Some(TaskState::TaskLost));

    // The agent re-registers with its id and its tasks: the master knows them again, their
    // resources stay in use, and nothing about the agent changed in the registry.
    let tasks = vec![
        reported(&fid, &aid, "t1", "cpus:1;mem:128", TaskState::TaskRunning),
        reported(&fid, &aid, "t2", "cpus:1;mem:128", TaskState::TaskStaging),
    ];
    let (aconn, out) = m.register(reregister(&aid, vec![with_id(framework("f"), &fid)], tasks));
    assert_eq!(persisted(&out), vec![]);
    let registered = agent_events(&out, aconn).into_iter().find_map(|e| e.registered);
    assert_eq!(registered.map(|r| r.agent_id.value), Some(aid.clone()));
    assert!(m.master.recovered_agent_ids().is_empty());
    let mut tasks = m.master.tasks();
    tasks.sort();
    assert_eq!(
        tasks,
        vec![
            (fid.clone(), "t1".to_string(), TaskState::TaskRunning),
            (fid.clone(), "t2".to_string(), TaskState::TaskStaging),
        ]
    );
    let offer = offers(&out, fconn).pop().expect("the rest of the agent is offered");
    assert_eq!(offered(&offer), res("cpus:2;mem:768"));
    let (_, out) = m.call(&fid, reconcile(&[]));
    let states: Vec<(String, TaskState)> =
        updates(&out, fconn).iter().map(|s| (s.task_id.value.clone(), s.state())).collect();
    assert_eq!(
        states,
        vec![("t1".into(), TaskState::TaskRunning), ("t2".into(), TaskState::TaskStaging)]
    );
    // Now that no agent is recovering, unknown tasks get their answers again.
    let (_, out) = m.call(&fid, reconcile(&[("ghost", Some(&aid))]));
    assert_eq!(updates(&out, fconn)[0].state(), TaskState::TaskLost);

    // Status updates the agent retries reach the framework and complete the task.
    let out = m.status_update(&aid, &fid, "t2", TaskState::TaskFinished, Some(2));
    assert_eq!(updates(&out, fconn)[0].state(), TaskState::TaskFinished);
    assert_eq!(m.acknowledge(&fid, &aid, "t2", uuid(2)).0, Ok(()));
    assert_eq!(m.master.tasks().len(), 1);
}

#[test]
fn agents_that_do_not_come_back_in_time_become_unreachable() {
    let mut h = Harness::new();
    let (_, fid) = h.subscribe(framework("f"));
    let (_, aid) = h.register_agent(AGENT_RESOURCES);

    let mut m = h.restart();
    let info = with_capabilities(with_id(framework("f"), &fid), &[Capability::PartitionAware]);
    let (fconn, _) = m.subscribe(info);
    m.advance(599.0);
    assert!(persisted(&m.tick()).is_empty());
    assert_eq!(m.master.recovered_agent_ids(), vec![aid.clone()]);
    m.advance(2.0);
    let out = m.tick();
    let ops = persisted(&out);
    assert!(
        matches!(ops.as_slice(), [RegistryOp::UpdateAgent(r)] if r.unreachable_time.is_some()),
        "{ops:?}"
    );
    let failure = events(&out, fconn).into_iter().find_map(|e| e.failure).expect("FAILURE");
    assert_eq!(failure.agent_id.map(|a| a.value), Some(aid.clone()));
    assert_eq!(m.master.unreachable_agent_ids(), vec![aid.clone()]);

    // Reconciliation now answers for tasks that were on it.
    let (_, out) = m.call(&fid, reconcile(&[("t1", Some(&aid))]));
    let status = updates(&out, fconn).pop().expect("an answer");
    assert_eq!(status.state(), TaskState::TaskUnreachable);
    assert!(status.unreachable_time.is_some());

    // It stays unreachable across another restart, and may still come back with its tasks.
    let mut again = m.restart();
    assert_eq!(again.master.unreachable_agent_ids(), vec![aid.clone()]);
    assert!(again.master.recovered_agent_ids().is_empty());
    let tasks = vec![reported(&fid, &aid, "t1", "cpus:1", TaskState::TaskRunning)];
    let (_, out) = again.register(reregister(&aid, vec![with_id(framework("f"), &fid)], tasks));
    assert!(matches!(
        persisted(&out).as_slice(),
        [RegistryOp::UpdateAgent(r)] if r.unreachable_time.is_none()
    ));
    assert_eq!(again.master.tasks(), vec![(fid.clone(), "t1".to_string(), TaskState::TaskRunning)]);
    assert!(again.master.unreachable_agent_ids().is_empty());
}

#[test]
fn removed_frameworks_stay_removed_across_restarts() {
    let mut h = Harness::new();
    let (_, fid) = h.subscribe(framework("f"));
    assert_eq!(h.call(&fid, call(CallType::Teardown)).0, Ok(()));

    let mut m = h.restart();
    assert!(m.master.framework_ids().is_empty());
    assert!(m.master.is_removed_framework(&fid));
    let (conn, _, out) = m.subscribe_raw(subscribe_call(with_id(framework("f"), &fid)));
    assert_eq!(errors(&out, conn), vec!["Framework has been removed".to_string()]);
    // An agent still running it is told to shut it down, and the master adopts none of it.
    let tasks = vec![reported(&fid, "a1", "t1", "cpus:1", TaskState::TaskRunning)];
    let (aconn, out) = m.register(reregister("a1", vec![with_id(framework("f"), &fid)], tasks));
    let shutdowns: Vec<String> = agent_events(&out, aconn)
        .into_iter()
        .filter_map(|e| Some(e.shutdown_framework?.framework_id.value))
        .collect();
    assert_eq!(shutdowns, vec![fid]);
    assert!(m.master.tasks().is_empty());
}

#[test]
fn frameworks_learnt_from_an_agent_wait_inactive_for_their_scheduler() {
    // A master with an empty registry (`--registry=in_memory`, or a lost store).
    let mut h = Harness::new();
    let info = with_id(framework("f"), "old-0001");
    let tasks = vec![reported("old-0001", "old-S3", "t1", "cpus:1", TaskState::TaskRunning)];
    let (_, out) = h.register(reregister("old-S3", vec![info.clone()], tasks));
    let ops = persisted(&out);
    assert!(matches!(ops.as_slice(), [RegistryOp::AdmitAgent(_), RegistryOp::AddFramework(_)]));
    assert_eq!(h.master.framework_ids(), vec!["old-0001".to_string()]);
    assert_eq!(h.master.tasks(), vec![("old-0001".into(), "t1".into(), TaskState::TaskRunning)]);
    assert!(h.master.offer_ids().is_empty(), "an inactive framework gets no offers");

    let (fconn, _, out) = h.subscribe_raw(subscribe_call(info));
    assert!(kinds(&out, fconn).contains(&EventType::Subscribed));
    assert_eq!(offered(&offers(&out, fconn)[0]), res("cpus:3;mem:1024"));
}

#[test]
fn a_restart_alone_does_not_remove_frameworks() {
    // failover_timeout 0 would remove the framework at its first disconnection; a master
    // restart gives its scheduler as long as the agents get to come back.
    let mut h = Harness::new();
    let mut info = framework("f");
    info.failover_timeout = None;
    let (_, fid) = h.subscribe(info);

    let mut m = h.restart();
    m.advance(10.0);
    assert!(persisted(&m.tick()).is_empty());
    assert_eq!(m.master.framework_ids(), vec![fid.clone()]);
    m.advance(600.0);
    let ops = persisted(&m.tick());
    assert!(matches!(ops.as_slice(), [RegistryOp::RemoveFramework(_)]), "{ops:?}");
    assert!(m.master.is_removed_framework(&fid));
}

#[test]
fn weights_and_quota_are_persisted_and_recovered() {
    let mut h = Harness::new();
    let weights = vec![v1::WeightInfo { weight: 2.5, role: Some("analytics".into()) }];
    let out = h.handle(Input::UpdateWeights { req: 1, weights: weights.clone() });
    assert_eq!(reply(&out, 1), Ok(()));
    assert_eq!(persisted(&out), vec![RegistryOp::UpdateWeights(weights)]);
    for bad in [
        v1::WeightInfo { weight: 0.0, role: Some("r".into()) },
        v1::WeightInfo { weight: 1.0, role: None },
        v1::WeightInfo { weight: 1.0, role: Some("a b".into()) },
    ] {
        let out = h.handle(Input::UpdateWeights { req: 2, weights: vec![bad] });
        assert!(matches!(reply(&out, 2), Err(CallError::BadRequest(_))));
        assert!(persisted(&out).is_empty());
    }
    let mut quota = internal::RegistryQuota { role: "analytics".into(), ..Default::default() };
    quota.guarantees.insert("cpus".into(), v1::value::Scalar { value: 4.0 });
    let out = h.handle(Input::UpdateQuota { req: 3, quotas: vec![quota.clone()] });
    assert_eq!(reply(&out, 3), Ok(()));

    let mut m = h.restart();
    assert_eq!(m.master.weights().get("analytics"), Some(&2.5));
    assert_eq!(m.master.quotas().cloned().collect::<Vec<_>>(), vec![quota.clone()]);

    // A quota with nothing in it removes the role's quota.
    quota.guarantees.clear();
    let out = m.handle(Input::UpdateQuota { req: 5, quotas: vec![quota] });
    assert_eq!(persisted(&out), vec![RegistryOp::RemoveQuota("analytics".into())]);
    assert_eq!(m.master.quotas().count(), 0);
}

#[test]
fn a_new_master_learns_recently_completed_tasks_from_the_agents() {
    let mut c = cluster(framework("f"));
    let (aid, fid) = (c.aid.clone(), c.fid.clone());
    c.launch(vec![task("t1", &aid, "cpus:1;mem:128")], None);
    c.h.status_update(&aid, &fid, "t1", TaskState::TaskRunning, Some(1));

    // Another master takes over (here: the same registry, a new master); the agent comes
    // back with its running task and the task that ended and was acknowledged before.
    let mut m = c.h.restart();
    let running = vec![reported(&fid, &aid, "t1", "cpus:1;mem:128", TaskState::TaskRunning)];
    let mut call = reregister(&aid, vec![with_id(framework("f"), &fid)], running);
    if let Some(r) = call.register.as_mut() {
        r.completed_tasks = vec![
            reported(&fid, &aid, "t0", "cpus:1;mem:128", TaskState::TaskFinished),
            // Of a framework this master never heard of: nothing to attach it to.
            reported("other", &aid, "x0", "cpus:1;mem:128", TaskState::TaskFinished),
            // Not over: not a completed task, whatever the agent says.
            reported(&fid, &aid, "t7", "cpus:1;mem:128", TaskState::TaskRunning),
            // The running task itself: the master's own record wins.
            reported(&fid, &aid, "t1", "cpus:1;mem:128", TaskState::TaskFinished),
        ];
    }
    m.register(call.clone());
    let tasks = m.master.get_tasks();
    let completed: Vec<(&str, TaskState)> = tasks
        .completed_tasks
        .iter()
        .map(|t| (t.task_id.as_ref().map_or("", |i| i.value.as_str()), t.state()))
        .collect();
    assert_eq!(completed, vec![("t0", TaskState::TaskFinished)]);
    assert_eq!(tasks.tasks.len(), 1);

    // The agent registering again (a reconnection) does not list them twice.
    m.register(call);
    assert_eq!(m.master.get_tasks().completed_tasks.len(), 1);
}
