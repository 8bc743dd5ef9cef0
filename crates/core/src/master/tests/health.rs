//! Master tests of agent health: pings and pongs, an agent that stops answering becomes
//! unreachable (its tasks end UNREACHABLE or LOST, frameworks get FAILURE, the registry keeps
//! it), and its tasks come back when it re-registers.

use agora_proto::v1::task_status::Reason;

use crate::master::RegistryOp;

use super::*;

fn pong(h: &mut Harness, agent_id: &str) {
    let mut c = internal::AgentCall::default();
    c.set_type(internal::agent_call::Type::Pong);
    let (result, _) = h.agent_call(agent_id, c);
    assert_eq!(result, Ok(()));
}

fn pings(out: &[Output], conn: ConnId) -> usize {
    agent_events(out, conn)
        .iter()
        .filter(|e| e.r#type() == internal::agent_event::Type::Ping)
        .count()
}

#[test]
fn an_agent_that_stops_answering_pings_becomes_unreachable_and_may_return() {
    for partition_aware in [false, true] {
        let info = if partition_aware {
            with_capabilities(framework("f"), &[Capability::PartitionAware])
        } else {
            framework("f")
        };
        let mut c = cluster(info);
        let aid = c.aid.clone();
        c.launch(vec![task("t", &aid, "cpus:1")], Some(0.0));

        // Answered pings keep it healthy, however many.
        for _ in 0..10 {
            assert_eq!(pings(&c.h.handle(Input::PingTick), c.aconn), 1);
            pong(&mut c.h, &aid);
        }
        // Five unanswered pings in a row (the default): unreachable at the sixth tick.
        for _ in 0..5 {
            let out = c.h.handle(Input::PingTick);
            assert_eq!(pings(&out, c.aconn), 1);
        }
        let out = c.h.handle(Input::PingTick);
        assert!(out.contains(&Output::CloseAgent { conn: c.aconn }), "{out:?}");
        let ended = updates(&out, c.fconn);
        assert_eq!(ended.len(), 1);
        let expected =
            if partition_aware { TaskState::TaskUnreachable } else { TaskState::TaskLost };
        assert_eq!((ended[0].state(), ended[0].reason()), (expected, Reason::AgentRemoved));
        assert!(ended[0].unreachable_time.is_some());
        assert!(ended[0].uuid.is_none(), "master-generated updates are not acknowledged");
        let failures: Vec<_> =
            events(&out, c.fconn).into_iter().filter_map(|e| e.failure).collect();
        assert_eq!(failures.len(), 1);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Persist(RegistryOp::UpdateAgent(r)) if r.unreachable_time.is_some()
        )));
        assert!(c.h.master.tasks().is_empty());

        // Explicit reconciliation now answers for the unreachable agent.
        let mut reconcile = call(CallType::Reconcile);
        reconcile.reconcile = Some(sched::call::Reconcile {
            tasks: vec![sched::call::reconcile::Task {
                task_id: Some(v1::TaskId { value: "t".into() }),
                agent_id: Some(v1::AgentId { value: aid.clone() }),
            }],
        });
        let (_, out) = c.h.call(&c.fid, reconcile);
        assert_eq!(updates(&out, c.fconn)[0].state(), expected);

        // It comes back with the task still running: the framework hears so.
        let call = register_call(AGENT_RESOURCES, "", Some(&aid));
        let (_, out) = c.h.register(reporting(call, &aid, &[(&c.fid, "t", "cpus:1")]));
        let back = updates(&out, c.fconn);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(
            (back[0].state(), back[0].reason()),
            (TaskState::TaskRunning, Reason::AgentReregistered)
        );
        assert_eq!(c.h.master.tasks().len(), 1);
    }
}
