//! The master's shell: one `Master` core, the registry its `Persist` outputs build (which a
//! crash leaves behind and `Master::recover` starts from), and the routing of its outputs to
//! the streams and requests of agents and schedulers, like `crates/master/src/dispatcher.rs`.
//!
//! A registry operation is applied before any other output of the same input goes out, and a
//! crash falls between inputs, so "persist before you promise" holds by construction here; slow
//! or failing registry writes are not modelled.

use std::collections::BTreeMap;
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
    pub(crate) core: Option<Master>,
    /// Bumped by every restart; requests addressed to an older incarnation are lost.
    pub(crate) epoch: u64,
    pub(crate) registry: internal::Registry,
    /// The open streams, by connection id.
    conns: BTreeMap<ConnId, Peer>,
    opening: BTreeMap<ReqId, StreamRequest>,
}

impl MasterNode {
    pub(crate) fn new() -> Self {
        Self {
            core: None,
            epoch: 0,
            registry: internal::Registry::default(),
            conns: BTreeMap::new(),
            opening: BTreeMap::new(),
        }
    }
}

fn config(epoch: u64) -> MasterConfig {
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
    /// Starts a master incarnation from the registry as it stands.
    pub(crate) fn start_master(&mut self) {
        self.master.epoch += 1;
        let epoch = self.master.epoch;
        let registry = self.master.registry.clone();
        self.master.core = Some(Master::recover(config(epoch), registry, self.wall()));
    }

    /// The master process dies and a new one starts from the registry; every stream breaks
    /// and the requests under way are lost.
    pub(crate) fn crash_master(&mut self) {
        self.trace(|| "fault: the master crashes and restarts".into());
        let conns = std::mem::take(&mut self.master.conns);
        self.master.opening.clear();
        for (conn, peer) in conns {
            self.peer_sees_close(conn, peer);
        }
        self.start_master();
    }

    /// The client end of stream `conn` learns that it is gone.
    fn peer_sees_close(&mut self, conn: ConnId, peer: Peer) {
        let at = self.net.arrival(Channel::Stream(conn), self.now);
        match peer {
            Peer::Scheduler(s) => self.at(at, Event::AtScheduler { s, conn, event: None }),
            Peer::Agent(a, inc) => self.at(at, Event::FromMaster { a, inc, conn, event: None }),
        }
    }

    /// A client opens stream `conn` with a request: the shell registers the stream before the
    /// core sees the request.
    pub(crate) fn master_open(&mut self, conn: ConnId, peer: Peer) -> u64 {
        let epoch = self.master.epoch;
        self.master.conns.insert(conn, peer);
        epoch
    }

    /// A client closes its end of stream `conn` (it gave up on it, or its process died).
    pub(crate) fn client_closes(&mut self, conn: ConnId) {
        let Some(peer) = self.master.conns.remove(&conn) else {
            return;
        };
        let input = match peer {
            Peer::Scheduler(_) => Input::SchedulerClosed { conn },
            Peer::Agent(..) => Input::AgentClosed { conn },
        };
        let epoch = self.master.epoch;
        let delay = self.net.delay();
        self.after(delay, Event::AtMaster { epoch, input });
    }

    /// A dropped message broke stream `conn`: both ends see it close.
    fn break_stream(&mut self, conn: ConnId) {
        let Some(peer) = self.master.conns.remove(&conn) else {
            return;
        };
        self.trace(|| format!("net: stream {conn} breaks"));
        let input = match peer {
            Peer::Scheduler(_) => Input::SchedulerClosed { conn },
            Peer::Agent(..) => Input::AgentClosed { conn },
        };
        let epoch = self.master.epoch;
        let delay = self.net.delay();
        self.after(delay, Event::AtMaster { epoch, input });
        self.peer_sees_close(conn, peer);
    }

    /// Feeds one input to the master and carries out its outputs.
    pub(crate) fn master_input(&mut self, input: Input) {
        if let Input::Subscribe { req, conn, .. } | Input::AgentRegister { req, conn, .. } = &input
        {
            if !self.master.conns.contains_key(conn) {
                // The client gave up on this stream before its request arrived.
                return;
            }
            self.master.opening.insert(*req, StreamRequest { conn: *conn });
        }
        let now = self.wall();
        let Some(core) = self.master.core.as_mut() else {
            return;
        };
        let outputs = core.handle(input, now);
        // Persist first: nothing of this input goes out before the registry holds it.
        for output in &outputs {
            if let Output::Persist(op) = output {
                apply(&mut self.master.registry, op.clone());
            }
        }
        for output in outputs {
            self.master_output(output);
        }
    }

    fn master_output(&mut self, output: Output) {
        match output {
            // The simulator opens no operator streams.
            Output::Persist(_) | Output::ToOperator { .. } => {}
            Output::Reply { req, result } => {
                let Some(opening) = self.master.opening.remove(&req) else {
                    return;
                };
                if let Err(e) = result {
                    // A refused SUBSCRIBE or REGISTER gets an error status and no stream.
                    self.trace(|| format!("master: stream {} refused: {e}", opening.conn));
                    if let Some(peer) = self.master.conns.remove(&opening.conn) {
                        self.peer_sees_close(opening.conn, peer);
                    }
                }
            }
            Output::ToScheduler { conn, event } => {
                self.observe_offers(&event);
                let Some(&peer) = self.master.conns.get(&conn) else {
                    return;
                };
                let Peer::Scheduler(s) = peer else { return };
                if self.net.stream_breaks() {
                    self.break_stream(conn);
                    return;
                }
                let at = self.net.arrival(Channel::Stream(conn), self.now);
                self.at(at, Event::AtScheduler { s, conn, event: Some(event) });
            }
            Output::ToAgent { conn, event } => {
                let Some(&Peer::Agent(a, inc)) = self.master.conns.get(&conn) else {
                    return;
                };
                if self.net.stream_breaks() {
                    self.break_stream(conn);
                    return;
                }
                let healed = self.net.partition_end(a, self.now).unwrap_or(self.now);
                let at = self.net.arrival_after(Channel::Stream(conn), self.now, healed);
                self.at(at, Event::FromMaster { a, inc, conn, event: Some(event) });
            }
            Output::CloseScheduler { conn }
            | Output::CloseAgent { conn }
            | Output::CloseOperator { conn } => {
                if let Some(peer) = self.master.conns.remove(&conn) {
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
