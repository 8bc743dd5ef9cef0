//! Unit tests of the master state machine, driven through `Master::handle` the way the HTTP
//! shell drives it: a small harness numbers requests and streams, remembers each framework's
//! and agent's stream id, and moves a fake clock.
//!
//! This file holds the harness and the call and event helpers; the tests live in
//! `tests/subscribe.rs`, `tests/offers.rs` and `tests/tasks.rs`. They check what a client can
//! observe (replies, events on its stream, messages to agents) plus the read-only views
//! (`tasks`, `offer_ids`, `framework_ids`); allocator arithmetic is tested in
//! `allocator/tests.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_proto::scheduler::call::Type as CallType;
use agora_proto::scheduler::event::Type as EventType;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};
use agora_proto::{internal, scheduler as sched};
use bytes::Bytes;

use super::{AGENT_PROTOCOL_VERSION, CallError, ConnId, Input, Master, MasterConfig, Output};
use crate::allocator::AllocatorConfig;
use crate::attributes::Attributes;
use crate::convert;
use crate::resources::Resources;

mod groups;
mod health;
mod offers;
mod operator;
mod recovery;
mod reservations;
mod subscribe;
mod tasks;
mod update;

const MASTER_ID: &str = "c0ffee";
const AGENT_RESOURCES: &str = "cpus:4;mem:1024";

fn config() -> MasterConfig {
    MasterConfig {
        master_info: v1::MasterInfo {
            id: MASTER_ID.into(),
            ip: 0x0100_007f,
            port: 5050,
            hostname: Some("m1".into()),
            ..Default::default()
        },
        allocation_interval: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(15),
        offer_timeout: None,
        allocator: AllocatorConfig::default(),
        max_completed_tasks_per_framework: 10,
        max_completed_frameworks: 10,
        agent_reregister_timeout: Duration::from_secs(600),
        agent_ping_timeout: Duration::from_secs(15),
        max_agent_ping_timeouts: 5,
        max_operator_event_stream_subscribers: 1000,
    }
}

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("test resources are valid")
}

/// A framework that survives disconnections for an hour unless a test says otherwise.
fn framework(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "alice".into(),
        name: name.into(),
        failover_timeout: Some(3600.0),
        ..Default::default()
    }
}

fn with_capabilities(mut info: v1::FrameworkInfo, caps: &[Capability]) -> v1::FrameworkInfo {
    for cap in caps {
        let mut c = v1::framework_info::Capability::default();
        c.set_type(*cap);
        info.capabilities.push(c);
    }
    info
}

fn call(kind: CallType) -> sched::Call {
    let mut c = sched::Call::default();
    c.set_type(kind);
    c
}

fn subscribe_call(info: v1::FrameworkInfo) -> sched::Call {
    let mut c = call(CallType::Subscribe);
    c.subscribe = Some(sched::call::Subscribe { framework_info: info, ..Default::default() });
    c
}

fn accept(
    offer_ids: &[&str],
    operations: Vec<v1::offer::Operation>,
    refuse: Option<f64>,
) -> sched::Call {
    let mut c = call(CallType::Accept);
    c.accept = Some(sched::call::Accept {
        offer_ids: offer_ids.iter().map(|id| v1::OfferId { value: id.to_string() }).collect(),
        operations,
        filters: refuse.map(|s| v1::Filters { refuse_seconds: Some(s) }),
    });
    c
}

fn decline(offer_ids: &[&str], refuse: Option<f64>) -> sched::Call {
    let mut c = call(CallType::Decline);
    c.decline = Some(sched::call::Decline {
        offer_ids: offer_ids.iter().map(|id| v1::OfferId { value: id.to_string() }).collect(),
        filters: refuse.map(|s| v1::Filters { refuse_seconds: Some(s) }),
    });
    c
}

fn launch(tasks: Vec<v1::TaskInfo>) -> v1::offer::Operation {
    let mut op = v1::offer::Operation::default();
    op.set_type(v1::offer::operation::Type::Launch);
    op.launch = Some(v1::offer::operation::Launch { task_infos: tasks });
    op
}

/// A command task.
fn task(id: &str, agent_id: &str, resources: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        agent_id: v1::AgentId { value: agent_id.into() },
        resources: convert::resources_to_proto(&res(resources), None),
        command: Some(v1::CommandInfo { value: Some("sleep 30".into()), ..Default::default() }),
        ..Default::default()
    }
}

/// A task for the custom executor `executor_id`.
fn executor_task(
    id: &str,
    agent_id: &str,
    resources: &str,
    executor_id: &str,
    executor_resources: &str,
) -> v1::TaskInfo {
    let mut t = task(id, agent_id, resources);
    t.command = None;
    t.executor = Some(v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: executor_id.into() },
        resources: convert::resources_to_proto(&res(executor_resources), None),
        command: Some(v1::CommandInfo {
            value: Some("./my-executor".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    t
}

fn register_call(resources: &str, attributes: &str, id: Option<&str>) -> internal::AgentCall {
    let mut c = internal::AgentCall::default();
    c.set_type(internal::agent_call::Type::Register);
    c.register = Some(internal::agent_call::Register {
        agent_info: v1::AgentInfo {
            hostname: "agent7".into(),
            port: Some(5051),
            resources: convert::resources_to_proto(&res(resources), None),
            attributes: convert::attributes_to_proto(
                &Attributes::parse(attributes).expect("valid attributes"),
            ),
            id: id.map(|id| v1::AgentId { value: id.into() }),
            ..Default::default()
        },
        protocol_version: AGENT_PROTOCOL_VERSION,
        endpoint: Some("10.0.0.7:5051".into()),
        tasks: Vec::new(),
        frameworks: Vec::new(),
        executors: Vec::new(),
        completed_tasks: Vec::new(),
        checkpointed_resources: Vec::new(),
    });
    c
}

/// `call` with the agent reporting `tasks` (framework id, task id, resources) as running, as
/// an agent that re-registers does.
fn reporting(
    mut call: internal::AgentCall,
    agent_id: &str,
    tasks: &[(&str, &str, &str)],
) -> internal::AgentCall {
    if let Some(register) = call.register.as_mut() {
        for (framework_id, task_id, resources) in tasks {
            let mut task = v1::Task {
                name: Some(task_id.to_string()),
                task_id: Some(v1::TaskId { value: task_id.to_string() }),
                framework_id: Some(v1::FrameworkId { value: framework_id.to_string() }),
                agent_id: Some(v1::AgentId { value: agent_id.into() }),
                resources: convert::resources_to_proto(&res(resources), None),
                ..Default::default()
            };
            task.set_state(TaskState::TaskRunning);
            register.tasks.push(task);
        }
    }
    call
}

fn uuid(n: u8) -> Bytes {
    Bytes::from(vec![n; 16])
}

/// The single reply to `req`.
fn reply(out: &[Output], req: u64) -> Result<(), CallError> {
    let replies: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Reply { req: r, result } if *r == req => Some(result.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "exactly one reply to request {req}: {out:?}");
    replies.into_iter().next().expect("one reply")
}

fn events(out: &[Output], conn: ConnId) -> Vec<sched::Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToScheduler { conn: c, event } if *c == conn => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn kinds(out: &[Output], conn: ConnId) -> Vec<EventType> {
    events(out, conn).iter().map(sched::Event::r#type).collect()
}

fn offers(out: &[Output], conn: ConnId) -> Vec<v1::Offer> {
    events(out, conn).into_iter().filter_map(|e| e.offers).flat_map(|o| o.offers).collect()
}

fn updates(out: &[Output], conn: ConnId) -> Vec<v1::TaskStatus> {
    events(out, conn).into_iter().filter_map(|e| e.update?.status).collect()
}

fn errors(out: &[Output], conn: ConnId) -> Vec<String> {
    events(out, conn).into_iter().filter_map(|e| Some(e.error?.message)).collect()
}

fn agent_events(out: &[Output], conn: ConnId) -> Vec<internal::AgentEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToAgent { conn: c, event } if *c == conn => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn offered(offer: &v1::Offer) -> Resources {
    convert::resources_from_proto(&offer.resources).expect("offers carry valid resources")
}

struct Harness {
    master: Master,
    now: Duration,
    next_id: u64,
    /// The open stream of each framework and agent: (conn, stream id).
    frameworks: BTreeMap<String, (ConnId, String)>,
    agents: BTreeMap<String, (ConnId, String)>,
    /// What a store that applied every `Output::Persist` so far would hold.
    registry: internal::Registry,
}

impl Harness {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(config: MasterConfig) -> Self {
        Self {
            master: Master::new(config),
            now: Duration::from_secs(1_700_000_000),
            next_id: 0,
            frameworks: BTreeMap::new(),
            agents: BTreeMap::new(),
            registry: internal::Registry::default(),
        }
    }

    /// The same cluster after a master restart: a master recovered from the registry a little
    /// later, with no streams open.
    fn restart(&self) -> Harness {
        let mut restarted = Harness::new();
        restarted.now = self.now + Duration::from_secs(5);
        restarted.next_id = self.next_id + 1000;
        restarted.registry = self.registry.clone();
        restarted.master = Master::recover(config(), self.registry.clone(), restarted.now);
        restarted
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        let out = self.master.handle(input, self.now);
        recovery::store(&mut self.registry, &out);
        self.master.assert_views_fresh();
        out
    }

    fn advance(&mut self, seconds: f64) {
        self.now += Duration::from_secs_f64(seconds);
    }

    fn tick(&mut self) -> Vec<Output> {
        self.handle(Input::AllocationTick)
    }

    /// Opens a SUBSCRIBE stream; returns its conn and the request's outputs.
    fn subscribe_raw(&mut self, call: sched::Call) -> (ConnId, u64, Vec<Output>) {
        let req = self.next();
        let conn = self.next();
        let stream_id = format!("stream-{conn}");
        let out = self.handle(Input::Subscribe { req, conn, stream_id: stream_id.clone(), call });
        for e in events(&out, conn) {
            if let Some(s) = e.subscribed {
                self.frameworks.insert(s.framework_id.value, (conn, stream_id.clone()));
            }
        }
        (conn, req, out)
    }

    fn subscribe(&mut self, info: v1::FrameworkInfo) -> (ConnId, String) {
        let (conn, _, out) = self.subscribe_raw(subscribe_call(info));
        let id = events(&out, conn)
            .into_iter()
            .find_map(|e| e.subscribed)
            .expect("SUBSCRIBED")
            .framework_id
            .value;
        (conn, id)
    }

    /// A call of framework `id` on its current stream.
    fn call(&mut self, id: &str, mut call: sched::Call) -> (Result<(), CallError>, Vec<Output>) {
        call.framework_id = Some(v1::FrameworkId { value: id.into() });
        let stream = self.frameworks.get(id).map(|(_, s)| s.clone());
        self.raw_call(stream, call)
    }

    fn raw_call(
        &mut self,
        stream_id: Option<String>,
        call: sched::Call,
    ) -> (Result<(), CallError>, Vec<Output>) {
        let req = self.next();
        let out = self.handle(Input::SchedulerCall { req, stream_id, call });
        (reply(&out, req), out)
    }

    fn register(&mut self, call: internal::AgentCall) -> (ConnId, Vec<Output>) {
        let req = self.next();
        let conn = self.next();
        let stream_id = format!("agent-stream-{conn}");
        let out =
            self.handle(Input::AgentRegister { req, conn, stream_id: stream_id.clone(), call });
        assert_eq!(reply(&out, req), Ok(()));
        for e in agent_events(&out, conn) {
            if let Some(r) = e.registered {
                self.agents.insert(r.agent_id.value, (conn, stream_id.clone()));
            }
        }
        (conn, out)
    }

    fn register_agent(&mut self, resources: &str) -> (ConnId, String) {
        let (conn, out) = self.register(register_call(resources, "rack:r1", None));
        let id =
            agent_events(&out, conn).into_iter().find_map(|e| e.registered).expect("REGISTERED");
        (conn, id.agent_id.value)
    }

    fn agent_call(
        &mut self,
        agent_id: &str,
        mut call: internal::AgentCall,
    ) -> (Result<(), CallError>, Vec<Output>) {
        call.agent_id = Some(v1::AgentId { value: agent_id.into() });
        let stream_id = self.agents.get(agent_id).map(|(_, s)| s.clone());
        let req = self.next();
        let out = self.handle(Input::AgentCall { req, stream_id, call });
        (reply(&out, req), out)
    }

    /// The agent reports `state` for a task, with `uuid(n)` when given.
    fn status_update(
        &mut self,
        agent_id: &str,
        framework_id: &str,
        task_id: &str,
        state: TaskState,
        n: Option<u8>,
    ) -> Vec<Output> {
        let mut status = v1::TaskStatus {
            task_id: v1::TaskId { value: task_id.into() },
            uuid: n.map(uuid),
            ..Default::default()
        };
        status.set_state(state);
        status.set_source(Source::Executor);
        let mut c = internal::AgentCall::default();
        c.set_type(internal::agent_call::Type::StatusUpdate);
        c.status_update = Some(internal::agent_call::StatusUpdate {
            framework_id: v1::FrameworkId { value: framework_id.into() },
            status,
            latest_state: None,
        });
        let (result, out) = self.agent_call(agent_id, c);
        assert_eq!(result, Ok(()));
        out
    }

    pub(super) fn acknowledge(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        task_id: &str,
        uuid: Bytes,
    ) -> (Result<(), CallError>, Vec<Output>) {
        let mut c = call(CallType::Acknowledge);
        c.acknowledge = Some(sched::call::Acknowledge {
            agent_id: v1::AgentId { value: agent_id.into() },
            task_id: v1::TaskId { value: task_id.into() },
            uuid,
        });
        self.call(framework_id, c)
    }
}

/// The id of an outstanding offer to `framework_id`.
fn outstanding_offer(h: &Harness, framework_id: &str) -> Option<String> {
    h.master.offer_ids().into_iter().find(|(_, f, _)| f == framework_id).map(|(id, _, _)| id)
}

/// One framework, one agent, and the first offer.
struct Cluster {
    h: Harness,
    fconn: ConnId,
    fid: String,
    aconn: ConnId,
    aid: String,
    offer: v1::Offer,
}

fn cluster(info: v1::FrameworkInfo) -> Cluster {
    let mut h = Harness::new();
    let (fconn, fid) = h.subscribe(info);
    let (aconn, out) = h.register(register_call(AGENT_RESOURCES, "rack:r1;level:3", None));
    let aid = agent_events(&out, aconn)
        .into_iter()
        .find_map(|e| e.registered)
        .expect("REGISTERED")
        .agent_id
        .value;
    let offer =
        offers(&out, fconn).into_iter().next().expect("an offer after the agent registered");
    Cluster { h, fconn, fid, aconn, aid, offer }
}

impl Cluster {
    fn launch(&mut self, tasks: Vec<v1::TaskInfo>, refuse: Option<f64>) -> Vec<Output> {
        let offer_id = self.offer.id.value.clone();
        let (result, out) =
            self.h.call(&self.fid, accept(&[&offer_id], vec![launch(tasks)], refuse));
        assert_eq!(result, Ok(()), "ACCEPT replies 202 whatever happens to its tasks");
        out
    }
}
