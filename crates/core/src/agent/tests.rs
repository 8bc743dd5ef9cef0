//! Unit tests of the agent state machine, driven through `Agent::handle` the way the agent's
//! shell drives it: events from the master, executor API calls, process exits and ticks, with a
//! fake clock.
//!
//! This file holds the harness, the helpers, and the tests of registration, launches and the
//! executor API; `tests/lifecycle.rs` covers status update streams, exits, kills and shutdown,
//! `tests/groups.rs` task groups and executor re-subscription.
//! The checks are what the master, the executors and the process supervisor observe.

use std::time::Duration;

use agora_proto::executor::call::Type as CallType;
use agora_proto::executor::event::Type as EventType;
use agora_proto::internal::agent_event::Type as MasterEventType;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};
use agora_proto::{executor, internal};
use bytes::Bytes;

use std::collections::BTreeMap;

use super::{
    Agent, AgentConfig, CallError, CheckpointKey, CheckpointRecord, CommandExecutor, ConnId, Input,
    Launch, Liveness, Output, Recovered,
};
use crate::convert;
use crate::resources::Resources;

mod groups;
mod lifecycle;
mod limitation;
mod recovery;
mod view;

const AGENT_ID: &str = "c0ffee-S0";
const FRAMEWORK_ID: &str = "c0ffee-0000";

fn config() -> AgentConfig {
    AgentConfig {
        agent_info: v1::AgentInfo {
            hostname: "agent7".into(),
            port: Some(5051),
            resources: convert::resources_to_proto(
                &Resources::parse("cpus:4;mem:1024").expect("valid"),
                None,
            ),
            ..Default::default()
        },
        endpoint: "10.0.0.7:5051".into(),
        work_dir: "/var/lib/agora/".into(),
        command_executor: CommandExecutor {
            program: "/usr/bin/agora".into(),
            arguments: vec!["executor".into()],
        },
        default_executor: CommandExecutor {
            program: "/usr/bin/agora".into(),
            arguments: vec!["agora".into(), "executor".into(), "--default".into()],
        },
        executor_shutdown_grace_period: Duration::from_secs(5),
        executor_registration_timeout: Duration::from_secs(60),
        executor_reregistration_timeout: Duration::from_secs(2),
        recovery_timeout: Duration::from_secs(900),
        status_update_retry_min: Duration::from_secs(10),
        status_update_retry_max: Duration::from_secs(40),
        seed: 7,
    }
}

fn framework(checkpoint: bool) -> v1::FrameworkInfo {
    v1::FrameworkInfo {
        user: "alice".into(),
        name: "demo".into(),
        id: Some(v1::FrameworkId { value: FRAMEWORK_ID.into() }),
        checkpoint: Some(checkpoint),
        ..Default::default()
    }
}

fn command_task(id: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        agent_id: v1::AgentId { value: AGENT_ID.into() },
        command: Some(v1::CommandInfo {
            value: Some("echo hello world && sleep 30".into()),
            shell: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn custom_task(id: &str, executor_id: &str) -> v1::TaskInfo {
    let mut task = command_task(id);
    task.command = None;
    task.executor = Some(v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: executor_id.into() },
        framework_id: Some(v1::FrameworkId { value: FRAMEWORK_ID.into() }),
        command: Some(v1::CommandInfo {
            value: Some("./my-executor".into()),
            environment: Some(v1::Environment {
                variables: vec![v1::environment::Variable {
                    name: "MESOS_CHECKPOINT".into(),
                    value: Some("overridden".into()),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        shutdown_grace_period: Some(v1::DurationInfo { nanoseconds: 2_000_000_000 }),
        ..Default::default()
    });
    task
}

fn master_event(kind: MasterEventType) -> internal::AgentEvent {
    let mut e = internal::AgentEvent::default();
    e.set_type(kind);
    e
}

fn registered(id: &str) -> Input {
    let mut e = master_event(MasterEventType::Registered);
    e.registered = Some(internal::agent_event::Registered {
        agent_id: v1::AgentId { value: id.into() },
        master_info: v1::MasterInfo { id: "c0ffee".into(), ..Default::default() },
        heartbeat_interval_seconds: Some(15.0),
    });
    Input::Master(e)
}

fn run_task(info: v1::FrameworkInfo, task: v1::TaskInfo) -> Input {
    let mut e = master_event(MasterEventType::RunTask);
    e.run_task = Some(internal::agent_event::RunTask { framework_info: info, task });
    Input::Master(e)
}

fn kill_task(task_id: &str) -> Input {
    let mut e = master_event(MasterEventType::KillTask);
    e.kill_task = Some(internal::agent_event::KillTask {
        framework_id: v1::FrameworkId { value: FRAMEWORK_ID.into() },
        task_id: v1::TaskId { value: task_id.into() },
        kill_policy: Some(v1::KillPolicy {
            grace_period: Some(v1::DurationInfo { nanoseconds: 1_000 }),
        }),
    });
    Input::Master(e)
}

fn acknowledge(task_id: &str, n: u8) -> Input {
    acknowledge_uuid(task_id, uuid(n))
}

fn acknowledge_uuid(task_id: &str, uuid: Bytes) -> Input {
    let mut e = master_event(MasterEventType::Acknowledge);
    e.acknowledge = Some(internal::agent_event::Acknowledge {
        framework_id: v1::FrameworkId { value: FRAMEWORK_ID.into() },
        task_id: v1::TaskId { value: task_id.into() },
        uuid,
    });
    Input::Master(e)
}

fn shutdown_framework() -> Input {
    let mut e = master_event(MasterEventType::ShutdownFramework);
    e.shutdown_framework = Some(internal::agent_event::ShutdownFramework {
        framework_id: v1::FrameworkId { value: FRAMEWORK_ID.into() },
    });
    Input::Master(e)
}

fn uuid(n: u8) -> Bytes {
    Bytes::from(vec![n; 16])
}

/// What an executor reports: `state` for `task_id` with `uuid(n)`.
fn status(task_id: &str, state: TaskState, n: u8) -> v1::TaskStatus {
    let mut s = v1::TaskStatus {
        task_id: v1::TaskId { value: task_id.into() },
        uuid: Some(uuid(n)),
        ..Default::default()
    };
    s.set_state(state);
    s.set_source(Source::Executor);
    s
}

fn executor_call(executor_id: &str, kind: CallType) -> executor::Call {
    let mut c = executor::Call {
        executor_id: v1::ExecutorId { value: executor_id.into() },
        framework_id: v1::FrameworkId { value: FRAMEWORK_ID.into() },
        ..Default::default()
    };
    c.set_type(kind);
    c
}

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

fn launches(out: &[Output]) -> Vec<Launch> {
    out.iter()
        .filter_map(|o| match o {
            Output::LaunchExecutor(l) => Some((**l).clone()),
            _ => None,
        })
        .collect()
}

fn to_master(out: &[Output]) -> Vec<internal::AgentCall> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToMaster(call) => Some(call.clone()),
            _ => None,
        })
        .collect()
}

/// The status updates sent to the master, with their `latest_state`.
fn sent(out: &[Output]) -> Vec<(v1::TaskStatus, Option<TaskState>)> {
    to_master(out)
        .into_iter()
        .filter_map(|c| c.status_update)
        .map(|u| {
            let latest = u.latest_state.map(|_| u.latest_state());
            (u.status, latest)
        })
        .collect()
}

/// (task id, state, uuid byte) of each update sent to the master.
fn sent_short(out: &[Output]) -> Vec<(String, TaskState, u8)> {
    sent(out)
        .into_iter()
        .map(|(s, _)| {
            let n = s.uuid.as_ref().and_then(|u| u.first().copied()).unwrap_or(0);
            (s.task_id.value.clone(), s.state(), n)
        })
        .collect()
}

fn exec_events(out: &[Output], conn: ConnId) -> Vec<executor::Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::ToExecutor { conn: c, event } if *c == conn => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn exec_kinds(out: &[Output], conn: ConnId) -> Vec<EventType> {
    exec_events(out, conn).iter().map(executor::Event::r#type).collect()
}

fn env_of(launch: &Launch, name: &str) -> Option<String> {
    launch.env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

struct Harness {
    agent: Agent,
    now: Duration,
    next_id: u64,
    /// The checkpoint as the shell would have written it.
    disk: BTreeMap<CheckpointKey, CheckpointRecord>,
}

impl Harness {
    fn new() -> Self {
        Self {
            agent: Agent::new(config()),
            now: Duration::from_secs(1_700_000_000),
            next_id: 0,
            disk: BTreeMap::new(),
        }
    }

    /// Applies the checkpoint output (always first) to `disk` and returns the rest.
    fn persist(&mut self, mut out: Vec<Output>) -> Vec<Output> {
        if let Some(Output::Checkpoint(records)) = out.first() {
            for (key, record) in records.clone() {
                match record {
                    Some(record) => self.disk.insert(key, record),
                    None => self.disk.remove(&key),
                };
            }
            out.remove(0);
        }
        assert!(
            !out.iter().any(|o| matches!(o, Output::Checkpoint(_))),
            "the checkpoint goes first, once"
        );
        out
    }

    /// A new agent process recovering from `disk`, with `liveness` for every executor
    /// found there; returns the outputs of the recovery.
    fn restart(&mut self, liveness: Liveness, rebooted: bool) -> Vec<Output> {
        let mut recovered = Recovered { rebooted, ..Default::default() };
        for record in self.disk.values().cloned() {
            match record {
                CheckpointRecord::Agent(a) => recovered.agent = Some(a),
                CheckpointRecord::Framework(f) => recovered.frameworks.push(f),
                CheckpointRecord::Executor(e) => recovered.executors.push((e, liveness)),
                CheckpointRecord::Task(t) => recovered.tasks.push(t),
            }
        }
        self.agent = Agent::new(config());
        let out = self.agent.recover(recovered, self.now);
        self.persist(out)
    }

    /// An agent the master has registered as `AGENT_ID`.
    fn registered() -> Self {
        let mut h = Self::new();
        h.handle(registered(AGENT_ID));
        h
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        let out = self.agent.handle(input, self.now);
        self.persist(out)
    }

    fn advance(&mut self, seconds: u64) {
        self.now += Duration::from_secs(seconds);
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn subscribe(&mut self, executor_id: &str) -> (ConnId, Result<(), CallError>, Vec<Output>) {
        let req = self.next();
        let conn = self.next();
        let call = executor_call(executor_id, CallType::Subscribe);
        let out = self.handle(Input::ExecutorSubscribe { req, conn, call });
        (conn, reply(&out, req), out)
    }

    fn call(&mut self, call: executor::Call) -> (Result<(), CallError>, Vec<Output>) {
        let req = self.next();
        let out = self.handle(Input::ExecutorCall { req, call });
        (reply(&out, req), out)
    }

    fn update(
        &mut self,
        executor_id: &str,
        status: v1::TaskStatus,
    ) -> (Result<(), CallError>, Vec<Output>) {
        let mut c = executor_call(executor_id, CallType::Update);
        c.update = Some(executor::call::Update { status });
        self.call(c)
    }

    /// A command task `id` launched and its executor subscribed; returns the executor's conn.
    fn running(&mut self, id: &str) -> ConnId {
        self.running_for(framework(false), id)
    }

    /// The same for a framework of the caller's choosing.
    fn running_for(&mut self, info: v1::FrameworkInfo, id: &str) -> ConnId {
        self.handle(run_task(info, command_task(id)));
        let (conn, result, _) = self.subscribe(id);
        assert_eq!(result, Ok(()));
        conn
    }
}

#[test]
fn register_call_carries_info_and_then_the_id() {
    let mut h = Harness::new();
    let call = h.agent.register_call();
    assert_eq!(call.r#type(), internal::agent_call::Type::Register);
    let register = call.register.expect("payload");
    assert_eq!(register.protocol_version, crate::master::AGENT_PROTOCOL_VERSION);
    assert_eq!(register.endpoint.as_deref(), Some("10.0.0.7:5051"));
    assert_eq!(register.agent_info.hostname, "agent7");
    assert_eq!(register.agent_info.resources, config().agent_info.resources);
    assert!(register.agent_info.id.is_none());
    assert!(h.agent.agent_id().is_none());

    assert!(h.handle(registered(AGENT_ID)).is_empty());
    assert_eq!(h.agent.agent_id(), Some(AGENT_ID));
    let again = h.agent.register_call().register.expect("payload");
    assert_eq!(again.agent_info.id.map(|i| i.value), Some(AGENT_ID.to_string()));
    // Heartbeats and errors from the master change nothing.
    for kind in [MasterEventType::Heartbeat, MasterEventType::Error, MasterEventType::Unknown] {
        assert!(h.handle(Input::Master(master_event(kind))).is_empty());
    }
}

#[test]
fn command_tasks_launch_the_command_executor() {
    // (checkpoint, expected MESOS_CHECKPOINT, recovery variables present)
    for (checkpoint, flag, recovery) in [(false, "0", false), (true, "1", true)] {
        let mut h = Harness::registered();
        let out = h.handle(run_task(framework(checkpoint), command_task("t1")));
        let launches = launches(&out);
        assert_eq!(launches.len(), 1, "{out:?}");
        let launch = &launches[0];
        assert_eq!(
            (launch.framework_id.as_str(), launch.executor_id.as_str()),
            (FRAMEWORK_ID, "t1")
        );
        assert_eq!(launch.container_id.len(), 36, "a uuid");
        assert_eq!(
            launch.sandbox,
            format!(
                "/var/lib/agora/slaves/{AGENT_ID}/frameworks/{FRAMEWORK_ID}/executors/t1/runs/{}",
                launch.container_id
            )
        );
        assert_eq!(launch.command.value.as_deref(), Some("/usr/bin/agora"));
        assert_eq!(launch.command.arguments, vec!["executor".to_string()]);
        assert_eq!(launch.user.as_deref(), Some("alice"));
        for (name, value) in [
            ("MESOS_FRAMEWORK_ID", FRAMEWORK_ID),
            ("MESOS_EXECUTOR_ID", "t1"),
            ("MESOS_AGENT_ENDPOINT", "10.0.0.7:5051"),
            ("MESOS_DIRECTORY", launch.sandbox.as_str()),
            ("MESOS_SANDBOX", launch.sandbox.as_str()),
            ("MESOS_SLAVE_ID", AGENT_ID),
            ("MESOS_CHECKPOINT", flag),
            ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs"),
        ] {
            assert_eq!(env_of(launch, name).as_deref(), Some(value), "{name}");
        }
        assert_eq!(env_of(launch, "MESOS_RECOVERY_TIMEOUT").is_some(), recovery);
        assert_eq!(env_of(launch, "MESOS_SUBSCRIPTION_BACKOFF_MAX").is_some(), recovery);
        assert_eq!(
            h.agent.executors(),
            vec![(FRAMEWORK_ID.into(), "t1".into(), launch.sandbox.clone())]
        );
        assert!(to_master(&out).is_empty(), "nothing to report yet");
    }
}

#[test]
fn the_command_executor_carries_its_tasks_uris_to_the_fetcher() {
    let mut h = Harness::registered();
    let mut task = command_task("t1");
    let uris = vec![
        v1::command_info::Uri { value: "http://h/a.tgz".into(), ..Default::default() },
        v1::command_info::Uri {
            value: "/opt/tool".into(),
            executable: Some(true),
            output_file: Some("bin/tool".into()),
            ..Default::default()
        },
    ];
    if let Some(command) = task.command.as_mut() {
        command.uris = uris.clone();
    }
    let launch =
        launches(&h.handle(run_task(framework(false), task))).pop().expect("LaunchExecutor");
    assert_eq!(launch.command.uris, uris);
    assert_eq!(launch.command.value.as_deref(), Some("/usr/bin/agora"));
}

#[test]
fn custom_executors_run_once_and_take_further_tasks() {
    let mut h = Harness::registered();
    let out = h.handle(run_task(framework(false), custom_task("t1", "e1")));
    let launch = launches(&out).pop().expect("LaunchExecutor");
    assert_eq!(launch.executor_id, "e1");
    assert_eq!(launch.command.value.as_deref(), Some("./my-executor"));
    assert_eq!(env_of(&launch, "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD").as_deref(), Some("2secs"));
    assert_eq!(
        env_of(&launch, "MESOS_CHECKPOINT").as_deref(),
        Some("overridden"),
        "CommandInfo env wins"
    );

    // A task arriving before the executor subscribed waits with the first one.
    assert!(launches(&h.handle(run_task(framework(false), custom_task("t2", "e1")))).is_empty());
    let (conn, result, out) = h.subscribe("e1");
    assert_eq!(result, Ok(()));
    assert_eq!(
        exec_kinds(&out, conn),
        vec![EventType::Subscribed, EventType::Launch, EventType::Launch]
    );
    let tasks: Vec<String> = exec_events(&out, conn)
        .into_iter()
        .filter_map(|e| Some(e.launch?.task.task_id.value))
        .collect();
    assert_eq!(tasks, vec!["t1".to_string(), "t2".to_string()]);

    // Once it runs, new tasks go straight to it.
    let out = h.handle(run_task(framework(false), custom_task("t3", "e1")));
    assert!(launches(&out).is_empty());
    assert_eq!(exec_kinds(&out, conn), vec![EventType::Launch]);
    assert_eq!(h.agent.executors().len(), 1);
}

#[test]
fn executor_subscribe() {
    let mut h = Harness::registered();
    let launch =
        launches(&h.handle(run_task(framework(true), command_task("t1")))).pop().expect("launch");
    for (framework_id, executor_id, message) in [
        ("nope", "t1", "Framework cannot be found"),
        (FRAMEWORK_ID, "nope", "Executor cannot be found"),
    ] {
        let mut call = executor_call(executor_id, CallType::Subscribe);
        call.framework_id.value = framework_id.into();
        let out = h.handle(Input::ExecutorSubscribe { req: 1, conn: 2, call });
        assert_eq!(
            out,
            vec![Output::Reply { req: 1, result: Err(CallError::BadRequest(message.into())) }]
        );
    }
    let (conn, result, out) = h.subscribe("t1");
    assert_eq!(result, Ok(()));
    assert!(matches!(out[0], Output::Reply { .. }), "the reply goes first: {out:?}");
    let events = exec_events(&out, conn);
    let subscribed = events[0].subscribed.clone().expect("SUBSCRIBED");
    assert_eq!(subscribed.executor_info.executor_id.value, "t1");
    assert_eq!(subscribed.framework_info.id.map(|i| i.value), Some(FRAMEWORK_ID.to_string()));
    assert_eq!(subscribed.agent_info.id.map(|i| i.value), Some(AGENT_ID.to_string()));
    assert_eq!(subscribed.container_id.map(|c| c.value), Some(launch.container_id));
    assert_eq!(events[1].launch.as_ref().map(|l| l.task.task_id.value.as_str()), Some("t1"));

    // A second subscription replaces the first stream.
    let (second, result, out) = h.subscribe("t1");
    assert_eq!(result, Ok(()));
    assert!(out.contains(&Output::CloseExecutor { conn }));
    assert_eq!(exec_kinds(&out, second), vec![EventType::Subscribed], "nothing queued any more");
    // Other call types on the subscribe path are refused.
    let out = h.handle(Input::ExecutorSubscribe {
        req: 9,
        conn: 10,
        call: executor_call("t1", CallType::Update),
    });
    assert!(matches!(reply(&out, 9), Err(CallError::BadRequest(_))));
}

#[test]
fn executor_update_validation() {
    let mut h = Harness::registered();
    h.handle(run_task(framework(false), command_task("t1")));
    // Not subscribed yet: a valid update is forbidden.
    let (result, _) = h.update("t1", status("t1", TaskState::TaskRunning, 1));
    assert!(matches!(result, Err(CallError::Forbidden(_))), "{result:?}");
    let (conn, _, _) = h.subscribe("t1");

    let valid = status("t1", TaskState::TaskRunning, 1);
    let cases: Vec<(&str, v1::TaskStatus)> = vec![
        ("missing uuid", v1::TaskStatus { uuid: None, ..valid.clone() }),
        ("short uuid", v1::TaskStatus { uuid: Some(Bytes::from_static(b"abc")), ..valid.clone() }),
        ("source", {
            let mut s = valid.clone();
            s.set_source(Source::Agent);
            s
        }),
        ("staging", status("t1", TaskState::TaskStaging, 1)),
        (
            "executor id",
            v1::TaskStatus {
                executor_id: Some(v1::ExecutorId { value: "other".into() }),
                ..valid.clone()
            },
        ),
        ("task id", v1::TaskStatus { task_id: v1::TaskId::default(), ..valid.clone() }),
    ];
    for (name, status) in cases {
        let (result, out) = h.update("t1", status);
        assert!(matches!(result, Err(CallError::BadRequest(_))), "{name}: {result:?}");
        assert_eq!(out.len(), 1, "{name}: only the reply");
    }
    let (result, _) = h.call(executor_call("t1", CallType::Update));
    assert!(matches!(result, Err(CallError::BadRequest(_))), "no payload");
    assert_eq!(h.call(executor_call("t1", CallType::Heartbeat)).0, Ok(()));
    assert_eq!(h.agent.pending_updates(), 0);

    let (result, out) = h.update("t1", valid);
    assert_eq!(result, Ok(()));
    let ack = exec_events(&out, conn).pop().and_then(|e| e.acknowledged).expect("ACKNOWLEDGED");
    assert_eq!((ack.task_id.value.as_str(), &ack.uuid), ("t1", &uuid(1)));
    let calls = to_master(&out);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].r#type(), internal::agent_call::Type::StatusUpdate);
    assert_eq!(calls[0].agent_id.as_ref().map(|a| a.value.as_str()), Some(AGENT_ID));
    let update = calls[0].status_update.clone().expect("payload");
    assert_eq!(update.framework_id.value, FRAMEWORK_ID);
    assert_eq!(update.status.agent_id.as_ref().map(|a| a.value.as_str()), Some(AGENT_ID));
    assert_eq!(update.status.executor_id.as_ref().map(|e| e.value.as_str()), Some("t1"));
    assert_eq!(update.status.uuid, Some(uuid(1)));
    assert_eq!(update.latest_state(), TaskState::TaskRunning);
    assert!(update.status.timestamp.is_some());
}

#[test]
fn closed_executor_streams_need_a_new_subscription() {
    let mut h = Harness::registered();
    let conn = h.running("t1");
    assert!(h.handle(Input::ExecutorClosed { conn }).is_empty());
    let (result, _) = h.update("t1", status("t1", TaskState::TaskRunning, 1));
    assert!(matches!(result, Err(CallError::Forbidden(_))));
    let (_, result, _) = h.subscribe("t1");
    assert_eq!(result, Ok(()));
    assert_eq!(h.update("t1", status("t1", TaskState::TaskRunning, 1)).0, Ok(()));
    // A MESSAGE without its payload is refused.
    assert!(matches!(
        h.call(executor_call("t1", CallType::Message)).0,
        Err(CallError::BadRequest(_))
    ));
}
