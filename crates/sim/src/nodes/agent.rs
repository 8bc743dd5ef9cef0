//! An agent's shell: one `Agent` core, its checkpoint disk, its link to the master and its
//! executors' connections, like `crates/agent/src/dispatcher.rs` and `master_link.rs`.
//!
//! The link keeps a REGISTER stream open with the master its detector names, reconnecting with
//! a doubling backoff, and breaks it to register with a new leader the moment the detector
//! names one, as `master_link.rs` does; until then it takes whatever the master of its stream
//! sends, deposed or not. Calls to the master go one at a time on their own ordered channel
//! to the master of the stream, and a lost call is simply gone (the core retries status
//! updates on its own clock, as in the real shell). A crash loses the core
//! and every connection but keeps the disk; the restart rebuilds the core with
//! `Agent::recover` and tells it which checkpointed executors are still alive. Machine
//! reboots, slow disks and failed checkpoint writes are not modelled.

use std::collections::BTreeMap;
use std::time::Duration;

use agora_core::agent::{
    Agent, AgentConfig, CheckpointKey, CheckpointRecord, CommandExecutor, Input, Liveness, Output,
    Recovered,
};
use agora_core::convert;
use agora_core::resources::Resources;
use agora_proto::{internal, v1};

use crate::network::Channel;
use crate::nodes::master::Peer;
use crate::rng::Rng;
use crate::sim::{ConnId, Event, Sim};

/// What every simulated agent offers.
pub(crate) const AGENT_RESOURCES: &str = "cpus:4;mem:2048";
/// Loopback between an agent and its executors.
pub(crate) const LOOPBACK: Duration = Duration::from_millis(1);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// How long a REGISTER may go unanswered before the link gives up on it.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence on the master's stream after which the link reconnects: five heartbeat intervals,
/// as in `master_link.rs`.
const SILENCE: Duration = Duration::from_secs(75);

#[derive(Debug, Clone)]
enum Link {
    Down { retry_at: Duration },
    Registering { conn: ConnId, master: usize, stream_id: String, since: Duration },
    Connected { conn: ConnId, master: usize, stream_id: String },
}

pub(crate) struct AgentNode {
    index: usize,
    pub(crate) core: Option<Agent>,
    /// Bumped by every (re)start; messages to an older incarnation are lost.
    pub(crate) inc: u64,
    disk: BTreeMap<CheckpointKey, CheckpointRecord>,
    link: Link,
    /// The master its detector names as leader.
    pub(crate) leader: Option<usize>,
    /// When the master's stream last delivered anything.
    last_heard: Duration,
    backoff: Duration,
    /// Executor streams by connection id, and requests awaiting a reply, with their executor.
    exec_conns: BTreeMap<ConnId, usize>,
    exec_reqs: BTreeMap<u64, usize>,
    rng: Rng,
}

impl AgentNode {
    pub(crate) fn new(index: usize, rng: &mut Rng) -> Self {
        Self {
            index,
            core: None,
            inc: 0,
            disk: BTreeMap::new(),
            link: Link::Down { retry_at: Duration::ZERO },
            leader: Some(0),
            last_heard: Duration::ZERO,
            backoff: BACKOFF_MIN,
            exec_conns: BTreeMap::new(),
            exec_reqs: BTreeMap::new(),
            rng: rng.fork(),
        }
    }

    fn config(&mut self) -> AgentConfig {
        let resources = Resources::parse(AGENT_RESOURCES).expect("a valid constant");
        AgentConfig {
            agent_info: v1::AgentInfo {
                hostname: format!("agent{}", self.index),
                port: Some(5051),
                resources: convert::resources_to_proto(&resources, None),
                ..Default::default()
            },
            endpoint: format!("10.0.0.{}:5051", self.index + 1),
            work_dir: "/var/lib/agora".into(),
            command_executor: CommandExecutor {
                program: "/usr/bin/agora".into(),
                arguments: vec!["executor".into()],
            },
            default_executor: CommandExecutor {
                program: "/usr/bin/agora".into(),
                arguments: vec!["executor".into(), "--default".into()],
            },
            executor_shutdown_grace_period: Duration::from_secs(5),
            executor_registration_timeout: Duration::from_secs(60),
            executor_reregistration_timeout: Duration::from_secs(10),
            recovery_timeout: Duration::from_secs(60),
            status_update_retry_min: Duration::from_secs(10),
            status_update_retry_max: Duration::from_secs(40),
            // A fresh seed per incarnation, as a real process would have: uuids of updates made
            // before and after a restart must differ.
            seed: self.rng.next_u64(),
        }
    }

    pub(crate) fn recovery_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
}

impl Sim {
    pub(crate) fn agent_tick(&mut self, a: usize) {
        self.after(Duration::from_secs(1), Event::AgentTick(a));
        if self.agents[a].core.is_none() {
            return;
        }
        self.agent_input(a, Input::Tick);
        match self.agents[a].link.clone() {
            Link::Down { retry_at } if self.now >= retry_at => self.register(a),
            Link::Registering { conn, since, .. } if self.now >= since + REGISTER_TIMEOUT => {
                self.trace(|| format!("agent {a}: REGISTER on {conn} unanswered, giving up"));
                self.client_closes(conn);
                self.register(a);
            }
            Link::Connected { conn, .. } if self.now >= self.agents[a].last_heard + SILENCE => {
                self.trace(|| format!("agent {a}: no heartbeat on {conn}, reconnecting"));
                self.client_closes(conn);
                let agent = &mut self.agents[a];
                agent.link = Link::Down { retry_at: self.now + agent.backoff };
                agent.backoff = (agent.backoff * 2).min(BACKOFF_MAX);
                self.agent_input(a, Input::MasterDisconnected);
            }
            _ => {}
        }
    }

    /// Opens a REGISTER stream with what the core reports.
    fn register(&mut self, a: usize) {
        let Some(core) = self.agents[a].core.as_ref() else { return };
        let Some(master) = self.agents[a].leader else {
            // The link waits for its detector to name a leader.
            self.agents[a].link = Link::Down { retry_at: self.now };
            return;
        };
        let call = core.register_call();
        let conn = self.id();
        let req = self.id();
        let stream_id = format!("agent-stream-{conn}");
        self.agents[a].link =
            Link::Registering { conn, master, stream_id: stream_id.clone(), since: self.now };
        if self.net.request_lost(Some(a), self.now) {
            self.trace(|| format!("net: agent {a} REGISTER on {conn} lost"));
            return;
        }
        let inc = self.agents[a].inc;
        let epoch = self.master_open(master, conn, Peer::Agent(a, inc));
        let input = agora_core::master::Input::AgentRegister { req, conn, stream_id, call };
        let delay = self.net.delay();
        self.after(delay, Event::AtMaster { m: master, epoch, input });
    }

    /// The detector of agent `a` names `leader`: a new one breaks the stream, and the link
    /// registers with it at once, as `master_link.rs` does.
    pub(crate) fn agent_detects(&mut self, a: usize, leader: Option<usize>) {
        let agent = &mut self.agents[a];
        if agent.leader == leader {
            return;
        }
        agent.leader = leader;
        if agent.core.is_none() {
            return;
        }
        self.trace(|| format!("agent {a}: detects leader {leader:?}"));
        if let Link::Registering { conn, .. } | Link::Connected { conn, .. } =
            self.agents[a].link.clone()
        {
            self.client_closes(conn);
            let agent = &mut self.agents[a];
            agent.link = Link::Down { retry_at: self.now };
            agent.backoff = BACKOFF_MIN;
            self.agent_input(a, Input::MasterDisconnected);
        }
        self.register(a);
    }

    pub(crate) fn agent_from_master(
        &mut self,
        a: usize,
        inc: u64,
        conn: ConnId,
        event: Option<internal::AgentEvent>,
    ) {
        let agent = &mut self.agents[a];
        if agent.inc != inc || agent.core.is_none() {
            return;
        }
        let current = match &agent.link {
            Link::Registering { conn: c, .. } | Link::Connected { conn: c, .. } => *c == conn,
            Link::Down { .. } => false,
        };
        if !current {
            return;
        }
        match event {
            None => {
                self.trace(|| format!("agent {a}: master stream {conn} closed"));
                let agent = &mut self.agents[a];
                agent.link = Link::Down { retry_at: self.now + agent.backoff };
                agent.backoff = (agent.backoff * 2).min(BACKOFF_MAX);
                self.agent_input(a, Input::MasterDisconnected);
            }
            Some(event) => {
                let agent = &mut self.agents[a];
                agent.last_heard = self.now;
                if let Link::Registering { conn, master, stream_id, .. } = &agent.link {
                    agent.link = Link::Connected {
                        conn: *conn,
                        master: *master,
                        stream_id: stream_id.clone(),
                    };
                }
                if let Some(registered) = &event.registered {
                    agent.backoff = BACKOFF_MIN;
                    let id = registered.agent_id.value.clone();
                    self.note_owner(&id, format!("agent {a}"));
                }
                self.trace(|| format!("agent {a}: <- {}", describe_event(&event)));
                self.agent_input(a, Input::Master(event));
            }
        }
    }

    /// An executor's request, or news of an executor, reaches the agent.
    pub(crate) fn agent_from_executor(&mut self, a: usize, inc: u64, e: usize, input: Input) {
        let req = match &input {
            Input::ExecutorSubscribe { req, .. } | Input::ExecutorCall { req, .. } => Some(*req),
            _ => None,
        };
        let agent = &mut self.agents[a];
        if agent.inc != inc || agent.core.is_none() {
            // Connection refused: the executor hears so at once.
            if let Some(req) = req {
                self.after(LOOPBACK, Event::ExecutorReply { e, req, ok: false });
            }
            return;
        }
        if let Input::ExecutorSubscribe { conn, .. } = &input {
            agent.exec_conns.insert(*conn, e);
        }
        if let Some(req) = req {
            agent.exec_reqs.insert(req, e);
        }
        self.agent_input(a, input);
    }

    pub(crate) fn agent_input(&mut self, a: usize, input: Input) {
        let now = self.wall();
        let Some(core) = self.agents[a].core.as_mut() else { return };
        let outputs = core.handle(input, now);
        self.agent_outputs(a, outputs);
    }

    fn agent_outputs(&mut self, a: usize, outputs: Vec<Output>) {
        for output in outputs {
            self.agent_output(a, output);
        }
    }

    fn agent_output(&mut self, a: usize, output: Output) {
        match output {
            Output::Checkpoint(records) => {
                let disk = &mut self.agents[a].disk;
                for (key, record) in records {
                    match record {
                        Some(record) => disk.insert(key, record),
                        None => disk.remove(&key),
                    };
                }
            }
            Output::Reply { req, result } => {
                if let Some(e) = self.agents[a].exec_reqs.remove(&req) {
                    self.after(LOOPBACK, Event::ExecutorReply { e, req, ok: result.is_ok() });
                }
            }
            Output::ToMaster(call) => {
                let Link::Connected { stream_id, master, .. } = &self.agents[a].link else {
                    // The real link sends with no stream id, and the master refuses that.
                    return;
                };
                let (stream_id, m) = (Some(stream_id.clone()), *master);
                if self.net.request_lost(Some(a), self.now) {
                    self.trace(|| format!("net: a call of agent {a} is lost"));
                    return;
                }
                self.trace(|| format!("agent {a}: -> {}", describe_call(&call)));
                // Only a status update is ever sent again (see `network.rs`); the copy follows
                // its original on the same ordered channel, as the head of the update stream
                // re-sent before any later update of the task.
                let copies = if call.status_update.is_some() && self.net.update_duplicated() {
                    self.summary.duplicates += 1;
                    self.trace(|| format!("net: agent {a} sends that update twice"));
                    2
                } else {
                    1
                };
                let epoch = self.masters[m].epoch;
                for _ in 0..copies {
                    let req = self.id();
                    let at = self.net.arrival(Channel::AgentCalls(a), self.now);
                    let input = agora_core::master::Input::AgentCall {
                        req,
                        stream_id: stream_id.clone(),
                        call: call.clone(),
                    };
                    self.at(at, Event::AtMaster { m, epoch, input });
                }
            }
            Output::ToExecutor { conn, event } => {
                if let Some(&e) = self.agents[a].exec_conns.get(&conn) {
                    self.after(LOOPBACK, Event::ToExecutor { e, conn, event: Some(event) });
                }
            }
            Output::CloseExecutor { conn } => {
                if let Some(e) = self.agents[a].exec_conns.remove(&conn) {
                    self.after(LOOPBACK, Event::ToExecutor { e, conn, event: None });
                }
            }
            Output::LaunchExecutor(launch) => self.spawn_executor(a, *launch),
            Output::KillExecutor { framework_id, executor_id } => {
                if let Some(e) = self.live_executor(a, &framework_id, &executor_id) {
                    self.kill_executor(e, 9, true);
                }
            }
            Output::DestroyVolumes { .. }
            | Output::AttachVolumes { .. }
            | Output::ResizeContainer { .. } => {}
        }
    }

    /// The agent process dies: its core and connections are gone, its disk stays.
    pub(crate) fn crash_agent(&mut self, a: usize) {
        if self.agents[a].core.is_none() {
            return;
        }
        self.trace(|| format!("fault: agent {a} crashes"));
        let agent = &mut self.agents[a];
        agent.core = None;
        let link = std::mem::replace(&mut agent.link, Link::Down { retry_at: Duration::ZERO });
        let conns = std::mem::take(&mut agent.exec_conns);
        let reqs = std::mem::take(&mut agent.exec_reqs);
        if let Link::Registering { conn, .. } | Link::Connected { conn, .. } = link {
            self.client_closes(conn);
        }
        for (conn, e) in conns {
            self.after(LOOPBACK, Event::ToExecutor { e, conn, event: None });
        }
        for (req, e) in reqs {
            self.after(LOOPBACK, Event::ExecutorReply { e, req, ok: false });
        }
    }

    /// Starts (or restarts) agent `a` from its checkpoint disk.
    pub(crate) fn restart_agent(&mut self, a: usize) {
        if self.agents[a].core.is_some() {
            return;
        }
        let mut recovered = Recovered::default();
        let mut kept = Vec::new();
        for record in self.agents[a].disk.values().cloned() {
            match record {
                CheckpointRecord::Agent(r) => recovered.agent = Some(r),
                CheckpointRecord::Framework(f) => recovered.frameworks.push(f),
                CheckpointRecord::Executor(x) => {
                    let live =
                        self.live_executor(a, &x.framework_id, &x.executor_info.executor_id.value);
                    kept.extend(live);
                    let liveness = if live.is_some() { Liveness::Alive } else { Liveness::Gone };
                    recovered.executors.push((x, liveness));
                }
                CheckpointRecord::Task(t) => recovered.tasks.push(t),
            }
        }
        // Executors the checkpoint does not know (of frameworks that do not checkpoint) are
        // killed, as the real agent kills such orphans.
        for e in self.live_executors_of(a) {
            if !kept.contains(&e) {
                self.kill_executor(e, 9, false);
            }
        }
        let config = self.agents[a].config();
        let agent = &mut self.agents[a];
        agent.inc += 1;
        agent.link = Link::Down { retry_at: self.now };
        agent.backoff = BACKOFF_MIN;
        let mut core = Agent::new(config);
        let inc = agent.inc;
        self.trace(|| {
            format!("agent {a}: starts (incarnation {inc}), {} live executors", kept.len())
        });
        let outputs = core.recover(recovered, self.wall());
        self.agents[a].core = Some(core);
        self.agent_outputs(a, outputs);
        self.register(a);
    }
}

/// One line about a master event, for traces.
fn describe_event(event: &internal::AgentEvent) -> String {
    let mut text = event.r#type().as_str_name().to_string();
    if let Some(run) = &event.run_task {
        text += &format!(" {}", run.task.task_id.value);
    }
    if let Some(kill) = &event.kill_task {
        text += &format!(" {}", kill.task_id.value);
    }
    if let Some(ack) = &event.acknowledge {
        text += &format!(" {}", ack.task_id.value);
    }
    if let Some(f) = &event.shutdown_framework {
        text += &format!(" {}", f.framework_id.value);
    }
    if let Some(r) = &event.registered {
        text += &format!(" as {}", r.agent_id.value);
    }
    text
}

/// One line about a call to the master, for traces.
fn describe_call(call: &internal::AgentCall) -> String {
    let mut text = call.r#type().as_str_name().to_string();
    if let Some(update) = &call.status_update {
        text += &format!(
            " {} {:?} ({:?})",
            update.status.task_id.value,
            update.status.state(),
            update.status.reason()
        );
    }
    if let Some(register) = &call.register {
        let tasks: Vec<String> = register
            .tasks
            .iter()
            .map(|t| format!("{:?}={:?}", t.task_id.as_ref().map(|i| i.value.as_str()), t.state()))
            .collect();
        text += &format!(" tasks [{}]", tasks.join(", "));
    }
    text
}
