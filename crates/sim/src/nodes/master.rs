//! A master's shell: one `Master` core, the routing of its outputs to the streams and
//! requests of agents and schedulers, and its registry writes, like
//! `crates/master/src/dispatcher.rs`. With one master (the default) the registry is the
//! embedded store and a crashed master restarts from it at once; with several, a master runs
//! a core only once elected (`nodes/election.rs`), and its writes go through the fencing of
//! the coordination service (`coord.rs`).
//!
//! A registry operation is applied before any other output of the same input goes out, and a
//! crash falls between inputs, so "persist before you promise" holds by construction here. A
//! refused write is fatal, as in the real dispatcher: the master stops without delivering
//! anything of that input. Slow disks are not modelled.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_core::allocator::AllocatorConfig;
use agora_core::master::{Input, Master, MasterConfig, Output, RegistryOp, ReqId};
use agora_proto::{internal, scheduler as sched, v1};

use crate::network::Channel;
use crate::sim::{ConnId, Event, Sim};

/// Who holds the other end of one of the master's streams.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Peer {
    Scheduler(usize),
    /// An agent, and the incarnation of it that opened the stream.
    Agent(usize, u64),
}

/// A request whose reply opens (or refuses) a stream.
#[derive(Debug, Clone, Copy)]
struct StreamRequest {
    conn: ConnId,
}

pub(crate) struct MasterNode {
    /// The core, while this master serves: always with one master; with several, from its
    /// election until its process stops (a deposed master keeps it until it learns).
    pub(crate) core: Option<Master>,
    /// The process incarnation, unique over the run and over all masters; requests addressed
    /// to an older incarnation are lost.
    pub(crate) epoch: u64,
    /// Whether the process runs (a standby runs without a core).
    pub(crate) alive: bool,
    /// Its session with the coordination service (several masters only).
    pub(crate) session: Option<u64>,
    /// The process is frozen (a long pause: a stop signal, a stalled VM) until then; what
    /// reaches it meanwhile waits in `backlog`, in arrival order, for it to wake up.
    pub(crate) frozen_until: Duration,
    pub(crate) backlog: Vec<(u64, Input)>,
    /// The open streams, by connection id.
    conns: BTreeMap<ConnId, Peer>,
    opening: BTreeMap<ReqId, StreamRequest>,
    /// The tasks this incarnation launched or heard of from agents, by framework: the only
    /// sources a master may learn tasks from (the registry holds none).
    pub(crate) learned: BTreeMap<String, BTreeSet<String>>,
}

impl MasterNode {
    pub(crate) fn new() -> Self {
        Self {
            core: None,
            epoch: 0,
            alive: false,
            session: None,
            frozen_until: Duration::ZERO,
            backlog: Vec::new(),
            conns: BTreeMap::new(),
            opening: BTreeMap::new(),
            learned: BTreeMap::new(),
        }
    }

    fn learn(&mut self, framework_id: &str, task_id: &str) {
        self.learned.entry(framework_id.to_string()).or_default().insert(task_id.to_string());
    }
}

pub(crate) fn config(epoch: u64) -> MasterConfig {
    MasterConfig {
        // A fresh id per incarnation, as the real master has: offer and framework ids made by
        // different incarnations must not collide.
        master_info: v1::MasterInfo {
            id: format!("m{epoch}"),
            hostname: Some("master".into()),
            ..Default::default()
        },
        allocation_interval: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(15),
        offer_timeout: Some(Duration::from_secs(30)),
        allocator: AllocatorConfig::default(),
        max_completed_tasks_per_framework: 1000,
        max_completed_frameworks: 50,
        agent_reregister_timeout: Duration::from_secs(60),
        agent_ping_timeout: Duration::from_secs(15),
        max_agent_ping_timeouts: 5,
        max_operator_event_stream_subscribers: 1000,
    }
}

/// What a store that applied `op` would hand back.
pub(crate) fn apply(registry: &mut internal::Registry, op: RegistryOp) {
    let framework_id =
        |r: &internal::RegistryFramework| r.framework_info.id.as_ref().map(|f| f.value.clone());
    match op {
        RegistryOp::AdmitAgent(record) | RegistryOp::UpdateAgent(record) => {
            let id = record.agent_info.id.clone();
            registry.agents.retain(|a| a.agent_info.id != id);
            registry.agents.push(record);
        }
        RegistryOp::AddFramework(record)
        | RegistryOp::UpdateFramework(record)
        | RegistryOp::RemoveFramework(record) => {
            let id = framework_id(&record);
            registry.frameworks.retain(|f| framework_id(f) != id);
            registry.frameworks.push(record);
        }
        RegistryOp::ForgetFramework(id) => {
            registry.frameworks.retain(|f| framework_id(f).as_deref() != Some(id.as_str()));
        }
        RegistryOp::UpdateWeights(list) => {
            for weight in list {
                registry.weights.retain(|w| w.role != weight.role);
                registry.weights.push(weight);
            }
        }
        RegistryOp::UpdateQuota(quota) => {
            registry.quotas.retain(|q| q.role != quota.role);
            registry.quotas.push(quota);
        }
        RegistryOp::RemoveQuota(role) => registry.quotas.retain(|q| q.role != role),
    }
}

impl Sim {
    /// Starts master 0 of a single-master run from the registry as it stands.
    pub(crate) fn start_master(&mut self) {
        let epoch = self.next_epoch();
        let registry = self.registry.records.clone();
        let now = self.wall();
        let node = &mut self.masters[0];
        node.epoch = epoch;
        node.alive = true;
        node.learned.clear();
        node.core = Some(Master::recover(config(epoch), registry, now));
    }

    /// A fresh process incarnation number.
    pub(crate) fn next_epoch(&mut self) -> u64 {
        self.epochs += 1;
        self.epochs
    }

    /// The process of a single master dies and a new one starts from the registry; every
    /// stream breaks and the requests under way are lost.
    pub(crate) fn crash_master(&mut self) {
        self.trace(|| "fault: the master crashes and restarts".into());
        self.close_all(0);
        self.start_master();
    }

    /// Every stream of master `m` breaks, and the requests under way are lost: its process
    /// is gone.
    pub(crate) fn close_all(&mut self, m: usize) {
        let conns = std::mem::take(&mut self.masters[m].conns);
        self.masters[m].opening.clear();
        for (conn, peer) in conns {
            self.peer_sees_close(conn, peer);
        }
    }

    /// The client end of stream `conn` learns that it is gone.
    fn peer_sees_close(&mut self, conn: ConnId, peer: Peer) {
        let at = self.net.arrival(Channel::Stream(conn), self.now);
        match peer {
            Peer::Scheduler(s) => self.at(at, Event::AtScheduler { s, conn, event: None }),
            Peer::Agent(a, inc) => self.at(at, Event::FromMaster { a, inc, conn, event: None }),
        }
    }

    /// A client opens stream `conn` to master `m` with a request: the shell registers the
    /// stream before the core sees the request. Returns the incarnation it reaches.
    pub(crate) fn master_open(&mut self, m: usize, conn: ConnId, peer: Peer) -> u64 {
        let node = &mut self.masters[m];
        if !node.alive {
            // No process listens (a crashed master whose candidacy lingers, which detectors
            // still name): the connection is refused.
            let epoch = node.epoch;
            self.peer_sees_close(conn, peer);
            return epoch;
        }
        node.conns.insert(conn, peer);
        node.epoch
    }

    /// The master holding stream `conn`, if any does.
    fn master_of(&self, conn: ConnId) -> Option<usize> {
        self.masters.iter().position(|node| node.conns.contains_key(&conn))
    }

    /// A client closes its end of stream `conn` (it gave up on it, or its process died).
    pub(crate) fn client_closes(&mut self, conn: ConnId) {
        let Some(m) = self.master_of(conn) else { return };
        let Some(peer) = self.masters[m].conns.remove(&conn) else { return };
        let input = match peer {
            Peer::Scheduler(_) => Input::SchedulerClosed { conn },
            Peer::Agent(..) => Input::AgentClosed { conn },
        };
        let epoch = self.masters[m].epoch;
        let delay = self.net.delay();
        self.after(delay, Event::AtMaster { m, epoch, input });
    }

    /// A dropped message broke stream `conn` of master `m`: both ends see it close.
    fn break_stream(&mut self, m: usize, conn: ConnId) {
        let Some(peer) = self.masters[m].conns.remove(&conn) else {
            return;
        };
        self.trace(|| format!("net: stream {conn} breaks"));
        let input = match peer {
            Peer::Scheduler(_) => Input::SchedulerClosed { conn },
            Peer::Agent(..) => Input::AgentClosed { conn },
        };
        let epoch = self.masters[m].epoch;
        let delay = self.net.delay();
        self.after(delay, Event::AtMaster { m, epoch, input });
        self.peer_sees_close(conn, peer);
    }

    /// Feeds one input to master `m` and carries out its outputs.
    pub(crate) fn master_input(&mut self, m: usize, input: Input) {
        if let Input::Subscribe { req, conn, .. } | Input::AgentRegister { req, conn, .. } = &input
        {
            if !self.masters[m].conns.contains_key(conn) {
                // The client gave up on this stream before its request arrived.
                return;
            }
            if self.masters[m].core.is_none() {
                // A standby, or an elected master still recovering, answers 503 (redirects
                // to the leader are not modelled: the client retries where its detector
                // points).
                let conn = *conn;
                self.trace(|| format!("master {m}: not serving; stream {conn} refused"));
                if let Some(peer) = self.masters[m].conns.remove(&conn) {
                    self.peer_sees_close(conn, peer);
                }
                return;
            }
            self.masters[m].opening.insert(*req, StreamRequest { conn: *conn });
        }
        self.note_sources(m, &input);
        let now = self.wall();
        let Some(core) = self.masters[m].core.as_mut() else {
            return;
        };
        let outputs = core.handle(input, now);
        // Persist first: nothing of this input goes out before the registry holds it, and
        // nothing at all if the registry refuses it.
        let ops: Vec<RegistryOp> = outputs
            .iter()
            .filter_map(|o| if let Output::Persist(op) = o { Some(op.clone()) } else { None })
            .collect();
        if !ops.is_empty() && !self.persist(m, ops) {
            return;
        }
        for output in outputs {
            self.master_output(m, output);
        }
    }

    /// What an input tells master `m` about tasks: a scheduler's launches, an agent's report
    /// of its tasks or a task's update.
    fn note_sources(&mut self, m: usize, input: &Input) {
        let node = &mut self.masters[m];
        match input {
            Input::SchedulerCall { call, .. } => {
                let Some(framework_id) = &call.framework_id else { return };
                for op in call.accept.iter().flat_map(|a| &a.operations) {
                    for task in op.launch.iter().flat_map(|l| &l.task_infos) {
                        node.learn(&framework_id.value, &task.task_id.value);
                    }
                }
            }
            Input::AgentRegister { call, .. } | Input::AgentCall { call, .. } => {
                for task in call.register.iter().flat_map(|r| &r.tasks) {
                    if let (Some(f), Some(t)) = (&task.framework_id, &task.task_id) {
                        node.learn(&f.value, &t.value);
                    }
                }
                if let Some(update) = &call.status_update {
                    node.learn(&update.framework_id.value, &update.status.task_id.value);
                }
            }
            _ => {}
        }
    }

    fn master_output(&mut self, m: usize, output: Output) {
        match output {
            // The simulator opens no operator streams.
            Output::Persist(_) | Output::ToOperator { .. } => {}
            Output::Reply { req, result } => {
                let Some(opening) = self.masters[m].opening.remove(&req) else {
                    return;
                };
                if let Err(e) = result {
                    // A refused SUBSCRIBE or REGISTER gets an error status and no stream.
                    self.trace(|| format!("master: stream {} refused: {e}", opening.conn));
                    if let Some(peer) = self.masters[m].conns.remove(&opening.conn) {
                        self.peer_sees_close(opening.conn, peer);
                    }
                }
            }
            Output::ToScheduler { conn, event } => {
                self.observe_offers(&event);
                let Some(&peer) = self.masters[m].conns.get(&conn) else {
                    return;
                };
                let Peer::Scheduler(s) = peer else { return };
                if let Some(subscribed) = &event.subscribed {
                    self.check_promise_framework(m, &subscribed.framework_id.value);
                }
                self.note_deposed_act(m);
                if self.net.stream_breaks() {
                    self.break_stream(m, conn);
                    return;
                }
                let at = self.net.arrival(Channel::Stream(conn), self.now);
                self.at(at, Event::AtScheduler { s, conn, event: Some(event) });
            }
            Output::ToAgent { conn, event } => {
                let Some(&Peer::Agent(a, inc)) = self.masters[m].conns.get(&conn) else {
                    return;
                };
                if let Some(registered) = &event.registered {
                    self.check_promise_agent(m, &registered.agent_id.value);
                }
                self.note_deposed_act(m);
                if self.net.stream_breaks() {
                    self.break_stream(m, conn);
                    return;
                }
                let healed = self.net.partition_end(a, self.now).unwrap_or(self.now);
                let at = self.net.arrival_after(Channel::Stream(conn), self.now, healed);
                self.at(at, Event::FromMaster { a, inc, conn, event: Some(event) });
            }
            Output::CloseScheduler { conn }
            | Output::CloseAgent { conn }
            | Output::CloseOperator { conn } => {
                if let Some(peer) = self.masters[m].conns.remove(&conn) {
                    self.peer_sees_close(conn, peer);
                }
            }
        }
    }

    /// Books every offer the master makes, for the invariants.
    fn observe_offers(&mut self, event: &sched::Event) {
        let Some(offers) = &event.offers else { return };
        for offer in &offers.offers {
            self.note_offer(offer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_keeps_one_record_per_framework_and_forgets_on_request() {
        let mut registry = internal::Registry::default();
        let record = |id: &str| internal::RegistryFramework {
            framework_info: v1::FrameworkInfo {
                id: Some(v1::FrameworkId { value: id.into() }),
                ..Default::default()
            },
            removed_time: None,
        };
        apply(&mut registry, RegistryOp::AddFramework(record("f1")));
        apply(&mut registry, RegistryOp::UpdateFramework(record("f1")));
        apply(&mut registry, RegistryOp::AddFramework(record("f2")));
        assert_eq!(registry.frameworks.len(), 2);
        apply(&mut registry, RegistryOp::ForgetFramework("f1".into()));
        assert_eq!(registry.frameworks.len(), 1);
    }
}
