//! Benchmark of `/master/state` on a large cluster: a master core holding 20,000 agents,
//! 200,000 running and 200,000 completed tasks, built through the real core (agents register,
//! frameworks subscribe, accept offers with LAUNCH, agents report TASK_RUNNING and
//! TASK_FINISHED, schedulers acknowledge), in-process, with no HTTP and no sockets.
//!
//! It times what a `/master/state` request costs: the snapshot the dispatcher copies out of the
//! core (`Master::get_state`, the only part that holds the core), and the rendering of the
//! legacy JSON (`agora_master::legacy::render_state`, done in the handler's task). Next to it,
//! in the same run, `serde_json::to_vec` of a `serde_json::Value` of the same document: the
//! cost of merely serializing that many bytes of JSON, the physical floor this is compared
//! with. Mesos 1.7's published `/master/state` time for a cluster of this size (≈3.1 s) is
//! printed as a stated constant. It also times GET_STATE's protobuf encoding.
//!
//! `cargo run --release -p agora-master --example state_bench [-- AGENTS TASKS_PER_AGENT
//! FRAMEWORKS ROUNDS]` (defaults 20000 10 200 5).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agora_core::allocator::AllocatorConfig;
use agora_core::master::{Input, Master, MasterConfig, Output};
use agora_master::legacy::{StateSnapshot, render_state};
use agora_proto::scheduler::call::Type as CallType;
use agora_proto::{internal, scheduler as sched, v1};
use bytes::Bytes;

/// Mesos 1.7's `/master/state` time for a cluster of this size, from the project's blog
/// ("Performance Improvements in Mesos 1.7.0"); a published constant, not measured here.
const MESOS_17_STATE_SECONDS: f64 = 3.1;

struct Bench {
    master: Master,
    now: Duration,
    next_id: u64,
    /// Framework id -> its stream id.
    frameworks: HashMap<String, String>,
    /// Agent id -> its stream id.
    agents: HashMap<String, String>,
    /// Offers not yet used: (offer id, framework id, agent id).
    offers: Vec<(String, String, String)>,
    next_task: u64,
}

impl Bench {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Feeds an input; keeps the offers it makes, and returns the outputs.
    fn handle(&mut self, input: Input) -> Vec<Output> {
        let out = self.master.handle(input, self.now);
        for o in &out {
            if let Output::ToScheduler { event, .. } = o
                && let Some(offers) = &event.offers
            {
                for offer in &offers.offers {
                    self.offers.push((
                        offer.id.value.clone(),
                        offer.framework_id.value.clone(),
                        offer.agent_id.value.clone(),
                    ));
                }
            }
        }
        out
    }

    fn subscribe(&mut self, name: &str) {
        let (req, conn) = (self.id(), self.id());
        let stream_id = format!("s{conn}");
        let mut call = sched::Call::default();
        call.set_type(CallType::Subscribe);
        call.subscribe = Some(sched::call::Subscribe {
            framework_info: v1::FrameworkInfo {
                user: "bench".into(),
                name: name.into(),
                ..Default::default()
            },
            ..Default::default()
        });
        let out = self.handle(Input::Subscribe { req, conn, stream_id: stream_id.clone(), call });
        for o in out {
            if let Output::ToScheduler { event, .. } = o
                && let Some(s) = event.subscribed
            {
                self.frameworks.insert(s.framework_id.value, stream_id.clone());
            }
        }
    }

    fn register(&mut self, n: usize) {
        let (req, conn) = (self.id(), self.id());
        let stream_id = format!("a{conn}");
        let resources = agora_core::resources::Resources::parse(
            "cpus:16;mem:65536;disk:1000000;ports:[31000-32000]",
        )
        .expect("valid resources");
        let mut call = internal::AgentCall::default();
        call.set_type(internal::agent_call::Type::Register);
        call.register = Some(internal::agent_call::Register {
            agent_info: v1::AgentInfo {
                hostname: format!("agent{n}.example.com"),
                port: Some(5051),
                resources: agora_core::convert::resources_to_proto(&resources, None),
                ..Default::default()
            },
            protocol_version: agora_core::master::AGENT_PROTOCOL_VERSION,
            endpoint: Some(format!("10.{}.{}.{}:5051", n >> 16, (n >> 8) & 255, n & 255)),
            ..Default::default()
        });
        let out =
            self.handle(Input::AgentRegister { req, conn, stream_id: stream_id.clone(), call });
        for o in out {
            if let Output::ToAgent { event, .. } = o
                && let Some(r) = event.registered
            {
                self.agents.insert(r.agent_id.value, stream_id.clone());
            }
        }
    }

    fn scheduler_call(&mut self, framework_id: &str, mut call: sched::Call) {
        call.framework_id = Some(v1::FrameworkId { value: framework_id.into() });
        let stream_id = self.frameworks.get(framework_id).cloned();
        let req = self.id();
        self.handle(Input::SchedulerCall { req, stream_id, call });
    }

    fn status(&mut self, framework_id: &str, agent_id: &str, task_id: &str, state: v1::TaskState) {
        let n = self.id();
        let uuid = Bytes::copy_from_slice(&u128::from(n).to_be_bytes());
        let mut status = v1::TaskStatus {
            task_id: v1::TaskId { value: task_id.into() },
            uuid: Some(uuid.clone()),
            timestamp: Some(self.now.as_secs_f64()),
            ..Default::default()
        };
        status.set_state(state);
        status.set_source(v1::task_status::Source::Executor);
        let mut call = internal::AgentCall::default();
        call.set_type(internal::agent_call::Type::StatusUpdate);
        call.agent_id = Some(v1::AgentId { value: agent_id.into() });
        call.status_update = Some(internal::agent_call::StatusUpdate {
            framework_id: v1::FrameworkId { value: framework_id.into() },
            status,
            latest_state: None,
        });
        let stream_id = self.agents.get(agent_id).cloned();
        let req = self.id();
        self.handle(Input::AgentCall { req, stream_id, call });
        let mut ack = sched::Call::default();
        ack.set_type(CallType::Acknowledge);
        ack.acknowledge = Some(sched::call::Acknowledge {
            agent_id: v1::AgentId { value: agent_id.into() },
            task_id: v1::TaskId { value: task_id.into() },
            uuid,
        });
        self.scheduler_call(framework_id, ack);
    }

    /// Launches `per_offer` tasks on every outstanding offer; they run, and with `finish` they
    /// finish too.
    fn round(&mut self, per_offer: usize, finish: bool) {
        let offers = std::mem::take(&mut self.offers);
        for (offer_id, framework_id, agent_id) in offers {
            let mut tasks = Vec::with_capacity(per_offer);
            for _ in 0..per_offer {
                self.next_task += 1;
                let id = format!("task-{}", self.next_task);
                let resources = agora_core::resources::Resources::parse("cpus:0.1;mem:32")
                    .expect("valid resources");
                tasks.push(v1::TaskInfo {
                    name: id.clone(),
                    task_id: v1::TaskId { value: id },
                    agent_id: v1::AgentId { value: agent_id.clone() },
                    resources: agora_core::convert::resources_to_proto(&resources, None),
                    command: Some(v1::CommandInfo {
                        value: Some("sleep 1000".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            let ids: Vec<String> = tasks.iter().map(|t| t.task_id.value.clone()).collect();
            let mut launch = v1::offer::Operation::default();
            launch.set_type(v1::offer::operation::Type::Launch);
            launch.launch = Some(v1::offer::operation::Launch { task_infos: tasks });
            let mut accept = sched::Call::default();
            accept.set_type(CallType::Accept);
            accept.accept = Some(sched::call::Accept {
                offer_ids: vec![v1::OfferId { value: offer_id }],
                operations: vec![launch],
                filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
            });
            self.scheduler_call(&framework_id, accept);
            for id in &ids {
                self.status(&framework_id, &agent_id, id, v1::TaskState::TaskRunning);
                if finish {
                    self.status(&framework_id, &agent_id, id, v1::TaskState::TaskFinished);
                }
            }
        }
    }

    fn tick(&mut self) {
        self.now += Duration::from_secs(2);
        self.handle(Input::AllocationTick);
    }
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let agents = arg(1, 20_000);
    let per_agent = arg(2, 10);
    let frameworks = arg(3, 200);
    let rounds = arg(4, 5).max(1);
    let config = MasterConfig {
        master_info: v1::MasterInfo {
            id: "bench-master".into(),
            port: 5050,
            hostname: Some("master.example.com".into()),
            pid: Some("master@10.0.0.1:5050".into()),
            ..Default::default()
        },
        allocation_interval: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(15),
        offer_timeout: None,
        allocator: AllocatorConfig::default(),
        // Enough to keep every completed task: the benchmark is about their rendering.
        max_completed_tasks_per_framework: 1_000_000,
        max_completed_frameworks: 50,
        agent_reregister_timeout: Duration::from_secs(600),
        agent_ping_timeout: Duration::from_secs(15),
        max_agent_ping_timeouts: 5,
    };
    let mut b = Bench {
        master: Master::new(config),
        now: Duration::from_secs(1_700_000_000),
        next_id: 0,
        frameworks: HashMap::new(),
        agents: HashMap::new(),
        offers: Vec::new(),
        next_task: 0,
    };
    let setup = Instant::now();
    for f in 0..frameworks {
        b.subscribe(&format!("framework-{f}"));
    }
    for n in 0..agents {
        b.register(n);
    }
    // First the tasks that finish, then those that keep running.
    b.round(per_agent, true);
    b.tick();
    b.round(per_agent, false);
    let metrics: HashMap<String, f64> = b.master.metrics().into_iter().collect();
    println!(
        "built through the core in {:.1} s: {} agents, {} frameworks, {} running and {} \
         completed tasks; RSS {:.0} MiB",
        setup.elapsed().as_secs_f64(),
        metrics["master/slaves_active"],
        metrics["master/frameworks_active"],
        metrics["master/tasks_running"],
        metrics["master/tasks_finished"],
        rss_mib(),
    );

    // Where the snapshot's time goes, once.
    let t = Instant::now();
    let tasks = b.master.get_tasks();
    let t_tasks = t.elapsed();
    let t = Instant::now();
    let agents_view = b.master.get_agents();
    let t_agents = t.elapsed();
    let t = Instant::now();
    let frameworks_view = b.master.get_frameworks();
    let t_frameworks = t.elapsed();
    println!(
        "snapshot parts: tasks {:.0} ms, agents {:.0} ms, frameworks {:.0} ms",
        t_tasks.as_secs_f64() * 1e3,
        t_agents.as_secs_f64() * 1e3,
        t_frameworks.as_secs_f64() * 1e3
    );
    drop((tasks, agents_view, frameworks_view));

    let mut snapshot_s = Vec::new();
    let mut render_s = Vec::new();
    let mut floor_s = Vec::new();
    let mut proto_s = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let state = b.master.get_state();
        let snapshot = StateSnapshot {
            master_info: b.master.master_info().clone(),
            start_time: b.master.start_time(),
            state,
            flags: vec![("allocation_interval".into(), "1secs".into())],
        };
        snapshot_s.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let body = render_state(&snapshot).expect("renders");
        render_s.push(t.elapsed().as_secs_f64());
        size = body.len();

        let t = Instant::now();
        let mut response = agora_proto::master::Response::default();
        response.set_type(agora_proto::master::response::Type::GetState);
        response.get_state = Some(snapshot.state);
        let encoded = prost::Message::encode_to_vec(&response);
        proto_s.push(t.elapsed().as_secs_f64());
        drop(encoded);

        // The floor: serializing an already-built value of the same document.
        let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        let t = Instant::now();
        let again = serde_json::to_vec(&value).expect("serializes");
        floor_s.push(t.elapsed().as_secs_f64());
        assert_eq!(again.len(), body.len(), "same document, same size");
    }
    let (snap, render, floor, proto) =
        (median(snapshot_s), median(render_s), median(floor_s), median(proto_s));
    let total = snap + render;
    println!(
        "/master/state: {:.1} MB; median of {rounds}: snapshot (dispatcher) {:.0} ms + render \
         (handler) {:.0} ms = {:.0} ms",
        size as f64 / 1e6,
        snap * 1e3,
        render * 1e3,
        total * 1e3
    );
    println!(
        "serde_json::to_vec of a same-sized Value: {:.0} ms; ours / floor = {:.2}",
        floor * 1e3,
        total / floor
    );
    println!("GET_STATE protobuf encoding (after the same snapshot): {:.0} ms", proto * 1e3);
    println!(
        "Mesos 1.7 (published, ≈{MESOS_17_STATE_SECONDS} s) / ours = {:.1}; goal ≤ 1 s: {}",
        MESOS_17_STATE_SECONDS / total,
        if total <= 1.0 { "met" } else { "not met" }
    );
}
