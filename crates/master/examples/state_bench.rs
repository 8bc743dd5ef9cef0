//! Benchmark of `/master/state` on a large cluster: a master core holding 20,000 agents,
//! 200,000 running and 200,000 completed tasks, built through the real core (agents register,
//! frameworks subscribe, accept offers with LAUNCH, agents report TASK_RUNNING and
//! TASK_FINISHED, schedulers acknowledge), in-process, with no HTTP and no sockets.
//!
//! Part 1 times what a `/master/state` request costs: the snapshot the dispatcher takes out of
//! the core (`Master::state_view`, the only part that holds the core; tasks, agents and
//! frameworks are shared, so the first snapshot, which builds their views, is printed apart
//! from the later ones), and the rendering of the legacy JSON (`agora_master::legacy::render_state`,
//! done off the dispatcher). Next to it, in the same run, `serde_json::to_vec` of a
//! `serde_json::Value` of the same document: the cost of merely serializing that many bytes of
//! JSON, the physical floor this is compared with. Mesos 1.7's published `/master/state` time
//! for a cluster of this size (≈3.1 s) is printed as a stated constant. It also times
//! GET_STATE's protobuf encoding.
//!
//! Part 2 measures what `/master/state` pollers cost the scheduling work: a dispatcher task on a
//! tokio runtime owns the core (as the master's does; this is a stand-in with the same
//! one-owner, one-channel shape, not the master's own dispatcher, so no registry and no HTTP)
//! and runs offer cycles for a driving framework (accept one offer with a small task, the agent
//! reports it running then finished, the framework acknowledges both; an allocation run when
//! no offer is left). The offer cycles per second are counted alone, with 20 concurrent pollers
//! that go through `agora_master::legacy::StateRenders::serve` exactly as the HTTP handler
//! does (snapshot on the dispatcher, render on its own low-priority thread), and alone again.
//!
//! `cargo run --release -p agora-master --example state_bench [-- AGENTS TASKS_PER_AGENT
//! FRAMEWORKS ROUNDS POLLERS SECONDS]` (defaults 20000 10 200 5 20 5).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agora_core::allocator::AllocatorConfig;
use agora_core::master::{Input, Master, MasterConfig, Output};
use agora_master::legacy::{StateRenders, StateSnapshot, render_state};
use agora_proto::scheduler::call::Type as CallType;
use agora_proto::{internal, scheduler as sched, v1};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

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
        for offer in offers {
            self.launch(offer, per_offer, finish);
        }
    }

    /// One offer cycle of part 2: an allocation run if no offer is left, then one offer
    /// accepted with one small task that runs and finishes.
    fn cycle(&mut self) {
        if self.offers.is_empty() {
            self.tick();
        }
        if let Some(offer) = self.offers.pop() {
            self.launch(offer, 1, true);
        }
    }

    fn launch(&mut self, offer: (String, String, String), per_offer: usize, finish: bool) {
        let (offer_id, framework_id, agent_id) = offer;
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
        max_operator_event_stream_subscribers: 1000,
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

    // Where the snapshot's time goes, once. The first snapshot builds the shared views of
    // every unfinished task, agent and framework; the later ones copy pointers (and rebuild
    // only what changed in between, which here is nothing).
    let time = |f: &dyn Fn() -> usize| {
        let t = Instant::now();
        let n = f();
        (t.elapsed().as_secs_f64() * 1e3, n)
    };
    let m = &b.master;
    let (tasks_cold, _) = time(&|| m.task_views().0.len());
    let (tasks_warm, _) = time(&|| m.task_views().0.len());
    let (agents_cold, _) = time(&|| m.agent_views().len());
    let (agents_warm, _) = time(&|| m.agent_views().len());
    let (frameworks_cold, _) = time(&|| m.framework_views().len());
    let (frameworks_warm, _) = time(&|| m.framework_views().len());
    println!(
        "snapshot parts, shared / first build: tasks {tasks_warm:.0} / {tasks_cold:.0} ms, \
         agents {agents_warm:.1} / {agents_cold:.0} ms, frameworks {frameworks_warm:.1} / \
         {frameworks_cold:.0} ms"
    );

    let flags = vec![("allocation_interval".to_string(), "1secs".to_string())];
    let mut snapshot_s = Vec::new();
    let mut render_s = Vec::new();
    let mut floor_s = Vec::new();
    let mut proto_s = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let snapshot = StateSnapshot {
            master_info: b.master.master_info().clone(),
            start_time: b.master.start_time(),
            state: b.master.state_view(),
            flags: flags.clone(),
        };
        snapshot_s.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let body = render_state(&snapshot).expect("renders");
        render_s.push(t.elapsed().as_secs_f64());
        size = body.len();

        let t = Instant::now();
        let mut response = agora_proto::master::Response::default();
        response.set_type(agora_proto::master::response::Type::GetState);
        response.get_state = Some(snapshot.state.into_proto());
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
        (stats(snapshot_s), stats(render_s), stats(floor_s), stats(proto_s));
    let total = snap.1 + render.1;
    println!("/master/state: {:.1} MB; {rounds} rounds, min / median / max:", size as f64 / 1e6);
    println!("  snapshot on the dispatcher  {}", snap.ms());
    println!("  render (off the dispatcher) {}", render.ms());
    println!("  serde_json::to_vec of a Value of the same document (floor) {}", floor.ms());
    println!("  GET_STATE: copy out of the shared tasks + protobuf encoding {}", proto.ms());
    println!(
        "total (median snapshot + median render) {:.0} ms; ours / floor = {:.2}; Mesos 1.7 \
         (published, ≈{MESOS_17_STATE_SECONDS} s) / ours = {:.1}; goal ≤ 1 s: {}",
        total * 1e3,
        total / floor.1,
        MESOS_17_STATE_SECONDS / total,
        if total <= 1.0 { "met" } else { "not met" }
    );

    pollers_bench(b, flags, arg(5, 20), Duration::from_secs(arg(6, 5) as u64));
}

/// min, median, max.
struct Stats(f64, f64, f64);

impl Stats {
    fn ms(&self) -> String {
        format!("{:.0} / {:.0} / {:.0} ms", self.0 * 1e3, self.1 * 1e3, self.2 * 1e3)
    }
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    Stats(v[0], v[v.len() / 2], v[v.len() - 1])
}

/// What the stand-in dispatcher of part 2 is asked to do.
enum Command {
    /// One offer cycle of the driving framework.
    Cycle(oneshot::Sender<()>),
    /// A read-only query, as the master's dispatcher runs them.
    Read(Box<dyn FnOnce(&Master) + Send>),
}

/// Part 2: offer cycles per second alone, with `pollers` concurrent `/master/state` pollers,
/// and alone again, `window` each.
fn pollers_bench(b: Bench, flags: Vec<(String, String)>, pollers: usize, window: Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        let dispatcher = tokio::spawn(async move {
            let mut b = b;
            while let Some(command) = rx.recv().await {
                match command {
                    Command::Cycle(reply) => {
                        b.cycle();
                        let _ = reply.send(());
                    }
                    Command::Read(read) => read(&b.master),
                }
            }
        });
        let cycles = |window: Duration| {
            let tx = tx.clone();
            async move {
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < window {
                    let (reply, done) = oneshot::channel();
                    if tx.send(Command::Cycle(reply)).is_err() || done.await.is_err() {
                        break;
                    }
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            }
        };
        // A short warm-up: the first allocation runs over every agent.
        cycles(Duration::from_secs(1)).await;
        let alone = cycles(window).await;

        let renders = Arc::new(StateRenders::default());
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        // Per snapshot: total, then its parts (tasks, agents, frameworks).
        let held = Arc::new(std::sync::Mutex::new(Vec::<[f64; 4]>::new()));
        let mut handles = Vec::new();
        for _ in 0..pollers {
            let (tx, renders, stop, served, held, flags) = (
                tx.clone(),
                renders.clone(),
                stop.clone(),
                served.clone(),
                held.clone(),
                flags.clone(),
            );
            handles.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let snapshot = || {
                        let (tx, held, flags) = (tx.clone(), held.clone(), flags.clone());
                        async move {
                            let (reply, answer) = oneshot::channel();
                            let read = move |m: &Master| {
                                // The parts first (each builds the views that changed),
                                // then the snapshot, which finds them built: one more copy
                                // of the task pointers (the "tasks" part, about 50 ms here)
                                // and of the agents' and frameworks' (about 10 ms).
                                let t = Instant::now();
                                drop(m.task_views());
                                let t_tasks = t.elapsed().as_secs_f64();
                                drop(m.agent_views());
                                let t_agents = t.elapsed().as_secs_f64();
                                drop(m.framework_views());
                                let t_frameworks = t.elapsed().as_secs_f64();
                                let snapshot = StateSnapshot {
                                    master_info: m.master_info().clone(),
                                    start_time: m.start_time(),
                                    state: m.state_view(),
                                    flags,
                                };
                                let total = t.elapsed().as_secs_f64();
                                held.lock().expect("not poisoned").push([
                                    total,
                                    t_tasks,
                                    t_agents - t_tasks,
                                    t_frameworks - t_agents,
                                ]);
                                let _ = reply.send(snapshot);
                            };
                            tx.send(Command::Read(Box::new(read))).ok()?;
                            answer.await.ok()
                        }
                    };
                    if renders.serve(snapshot).await.is_err() {
                        break;
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let with = cycles(window).await;
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.await;
        }
        let after = cycles(window).await;
        drop(tx);
        let _ = dispatcher.await;

        let held = std::mem::take(&mut *held.lock().expect("not poisoned"));
        let snapshots = held.len();
        let part = |i: usize| {
            if held.is_empty() {
                Stats(0.0, 0.0, 0.0)
            } else {
                stats(held.iter().map(|h| h[i]).collect())
            }
        };
        let baseline = (alone + after) / 2.0;
        println!(
            "offer cycles/s (accept 1 task, RUNNING, FINISHED, 2 acks), {:.0} s windows: alone \
             {alone:.0}, with {pollers} /master/state pollers {with:.0}, alone again {after:.0}; \
             slowdown {:.1}% (goal ≤ 10%)",
            window.as_secs_f64(),
            (1.0 - with / baseline) * 100.0
        );
        println!(
            "pollers: {} responses, {} snapshots (renders shared by pollers waiting together); \
             dispatcher time per snapshot under churn: {} (tasks {}, agents {}, frameworks {})",
            served.load(Ordering::Relaxed),
            snapshots,
            part(0).ms(),
            part(1).ms(),
            part(2).ms(),
            part(3).ms()
        );
    });
}
