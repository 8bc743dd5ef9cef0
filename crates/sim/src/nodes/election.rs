//! The registry store and, with several masters, the part of the masters' and clients' shells
//! that follows the election: a master's candidacy as `Lead` in `crates/master/src/lib.rs`
//! runs it (a process enters the election as a standby, recovers from the registry once it
//! learns it leads, and stops for good once it learns its session is gone or a registry write
//! is refused, to be restarted by its supervisor as a new standby), and the leader detection
//! of agents and schedulers (`agora_client::leader`), which learn of a new leader after a
//! seeded delay each.
//!
//! A deposed leader is modelled the two ways it happens. Its session expires while it is cut
//! off from the coordination service, and it learns so only after a delay of its own (its
//! client notices the lost connection on its own clock, or hears "session expired" when it
//! reconnects); meanwhile its registry writes fail for want of a connection. Or its process
//! freezes past the session timeout (a long pause) and, when it wakes up, works through what
//! queued up before the news of its lost session reaches it; then its registry writes reach
//! the service and fail the fence. Either way, until it learns it keeps its core, its streams
//! and its timers: it makes offers, accepts calls, forwards updates; a refused write stops it. It
//! does not model a quorum of masters (`--quorum` is 1), redirects from standbys, or stale
//! reads of the registry (ZooKeeper orders a session's reads after the changes it has seen).

use std::collections::BTreeSet;
use std::time::Duration;

use agora_core::master::{Master, RegistryOp};
use agora_proto::internal;

use crate::coord::{Refusal, SESSION_TIMEOUT};
use crate::nodes::master::{apply, config};
use crate::sim::{Event, Sim};

/// The registry as the store holds it (the embedded store, or the records under ZooKeeper's
/// `log_replicas`), with what the invariants need to judge the writes.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) records: internal::Registry,
    /// Writes that got through.
    pub(crate) version: u64,
    /// The candidacy node of the last master whose write got through.
    last_writer: Option<u64>,
    /// Ids the masters handed out (REGISTERED, SUBSCRIBED) and not forgotten since: the
    /// registry must hold them all, at every instant.
    promised_agents: BTreeSet<String>,
    promised_frameworks: BTreeSet<String>,
}

impl Registry {
    fn holds_agent(&self, id: &str) -> bool {
        self.records.agents.iter().any(|a| a.agent_info.id.as_ref().is_some_and(|i| i.value == id))
    }

    fn holds_framework(&self, id: &str) -> bool {
        self.records
            .frameworks
            .iter()
            .any(|f| f.framework_info.id.as_ref().is_some_and(|i| i.value == id))
    }

    /// The first promised id the registry does not hold.
    fn broken_promise(&self) -> Option<String> {
        let agent = self.promised_agents.iter().find(|id| !self.holds_agent(id));
        let framework = self.promised_frameworks.iter().find(|id| !self.holds_framework(id));
        agent
            .map(|id| format!("agent {id}"))
            .or_else(|| framework.map(|id| format!("framework {id}")))
    }
}

/// Someone who follows the election without taking part.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Client {
    Agent(usize),
    Scheduler(usize),
}

impl Sim {
    /// Applies master `m`'s registry operations of one input as one write; `false` (and the
    /// master stops) when the coordination service refuses it.
    pub(crate) fn persist(&mut self, m: usize, ops: Vec<RegistryOp>) -> bool {
        if let Some(coord) = &self.coord {
            let session = self.masters[m].session.unwrap_or_default();
            if let Err(refusal) = coord.admit_write(m, session, self.now) {
                self.summary.refused_writes += 1;
                let why = match refusal {
                    Refusal::Unreachable => "it cannot reach the coordination service",
                    Refusal::Fenced => {
                        self.summary.fenced_writes += 1;
                        "its candidacy node is gone (fenced)"
                    }
                };
                self.master_stops(m, &format!("its registry write is refused: {why}"));
                return false;
            }
            // At most one master writes at a time, and leaders follow each other: once a
            // newer leader wrote, an older one never writes again.
            let leader = coord.leader();
            let node = coord.node_of(session);
            if leader.map(|(s, _)| s) != Some(session) {
                let leader = leader.map(|(_, l)| l);
                self.fail(format!(
                    "master {m} wrote to the registry while the coordination service names \
                     {leader:?} as leader"
                ));
            }
            if let (Some(last), Some(node)) = (self.registry.last_writer, node)
                && node < last
            {
                self.fail(format!(
                    "master {m} (node {node}) wrote to the registry after node {last} did"
                ));
            }
            self.registry.last_writer = node;
        }
        for op in ops {
            if let RegistryOp::ForgetFramework(id) = &op {
                self.registry.promised_frameworks.remove(id);
            }
            apply(&mut self.registry.records, op);
        }
        self.registry.version += 1;
        if let Some(what) = self.registry.broken_promise() {
            self.fail(format!("the registry lost {what}, which a master handed out"));
        }
        true
    }

    /// Master `m` is about to tell a scheduler its framework id: persist before you promise.
    pub(crate) fn check_promise_framework(&mut self, m: usize, id: &str) {
        if !self.registry.holds_framework(id) {
            self.fail(format!("master {m} handed out framework id {id} the registry lacks"));
        }
        self.registry.promised_frameworks.insert(id.to_string());
    }

    /// Master `m` is about to tell an agent its id: persist before you promise.
    pub(crate) fn check_promise_agent(&mut self, m: usize, id: &str) {
        if !self.registry.holds_agent(id) {
            self.fail(format!("master {m} handed out agent id {id} the registry lacks"));
        }
        self.registry.promised_agents.insert(id.to_string());
    }

    /// Counts what a master sends after its session is gone.
    pub(crate) fn note_deposed_act(&mut self, m: usize) {
        if let (Some(coord), Some(session)) = (&self.coord, self.masters[m].session)
            && !coord.alive(session)
        {
            self.summary.deposed_messages += 1;
        }
    }

    /// A master process of a run with several masters starts and enters the election.
    pub(crate) fn start_standby(&mut self, m: usize) {
        if self.masters[m].alive {
            return;
        }
        let epoch = self.next_epoch();
        let Some(coord) = self.coord.as_mut() else { return };
        let (session, changed) = coord.open(m);
        let node = &mut self.masters[m];
        node.epoch = epoch;
        node.alive = true;
        node.core = None;
        node.session = Some(session);
        node.learned.clear();
        self.trace(|| format!("master {m}: starts (incarnation {epoch}) as a candidate"));
        if changed {
            self.leader_changed();
        }
    }

    /// The process of master `m` stops (it crashed, or it learned it lost the lead): every
    /// stream breaks; its session outlives it until the service times it out; its supervisor
    /// starts it again later.
    pub(crate) fn master_stops(&mut self, m: usize, why: &str) {
        if !self.masters[m].alive {
            return;
        }
        self.trace(|| format!("master {m}: stops: {why}"));
        self.close_all(m);
        let node = &mut self.masters[m];
        node.core = None;
        node.alive = false;
        node.frozen_until = Duration::ZERO;
        node.backlog.clear();
        node.learned.clear();
        if let (Some(session), Some(coord)) = (node.session.take(), self.coord.as_mut())
            && coord.alive(session)
        {
            coord.orphan(session, self.now);
            self.after(SESSION_TIMEOUT, Event::SessionExpiry { session });
        }
        let restart = Duration::from_millis(self.ha_rng.range(1_000, 10_000));
        self.after(restart, Event::MasterStart(m));
    }

    /// The coordination service names another leader (or none): the new leader and every
    /// client hear of it, each after its own delay.
    fn leader_changed(&mut self) {
        let Some(coord) = &self.coord else { return };
        let leader = coord.leader();
        self.trace(|| format!("coordination: the leader is now {:?}", leader.map(|(_, m)| m)));
        if let Some((session, m)) = leader
            && self.masters[m].alive
            && self.masters[m].session == Some(session)
        {
            let epoch = self.masters[m].epoch;
            let delay = Duration::from_millis(self.ha_rng.range(10, 2_000));
            self.after(delay, Event::Elected { m, epoch });
        }
        for a in 0..self.agents.len() {
            let delay = Duration::from_millis(self.ha_rng.range(10, 5_000));
            self.after(delay, Event::Detect(Client::Agent(a)));
        }
        for s in 0..self.schedulers.len() {
            let delay = Duration::from_millis(self.ha_rng.range(10, 5_000));
            self.after(delay, Event::Detect(Client::Scheduler(s)));
        }
    }

    /// Master `m` learns it leads: it reads the registry and starts serving.
    pub(crate) fn elected(&mut self, m: usize, epoch: u64) {
        let node = &self.masters[m];
        if !node.alive || node.epoch != epoch || node.core.is_some() {
            return;
        }
        let Some(coord) = &self.coord else { return };
        if coord.leader() != node.session.map(|s| (s, m)) {
            return;
        }
        if let Some(until) = coord.cut_until(m, self.now) {
            // It hears of its election once it reaches the service again, if its session
            // lasts until then.
            self.at(until, Event::Elected { m, epoch });
            return;
        }
        self.summary.elections += 1;
        let registry = self.registry.records.clone();
        let version = self.registry.version;
        self.trace(|| format!("master {m}: elected; recovers from registry version {version}"));
        let now = self.wall();
        self.masters[m].core = Some(Master::recover(config(epoch), registry, now));
    }

    /// Master `m` hears that its session is gone, if it still runs that incarnation.
    pub(crate) fn master_lost(&mut self, m: usize, epoch: u64) {
        let node = &self.masters[m];
        if !node.alive || node.epoch != epoch {
            return;
        }
        let gone = match (&self.coord, node.session) {
            (Some(coord), Some(session)) => !coord.alive(session),
            _ => false,
        };
        if gone {
            self.master_stops(m, "it learns that its candidacy is lost");
        }
    }

    /// The service checks whether `session` timed out.
    pub(crate) fn session_expiry(&mut self, session: u64) {
        let Some(coord) = self.coord.as_mut() else { return };
        let (expired, changed) = coord.try_expire(session, self.now);
        if !expired {
            return;
        }
        self.trace(|| format!("coordination: session {session} expires"));
        let holder = self.masters.iter().position(|n| n.alive && n.session == Some(session));
        if let Some(m) = holder {
            // Its client notices on its own clock, or hears "session expired" the moment it
            // reaches the service again; until then it acts as the leader it no longer is. A
            // frozen process hears it some time after it wakes up.
            let lag = Duration::from_millis(self.ha_rng.range(0, 20_000));
            let reconnect = self.coord.as_ref().and_then(|c| c.cut_until(m, self.now));
            let mut learns = reconnect.map_or(self.now, |until| (self.now + lag).min(until));
            let frozen_until = self.masters[m].frozen_until;
            if frozen_until > self.now {
                learns = frozen_until + Duration::from_millis(self.ha_rng.range(0, 3_000));
            }
            let epoch = self.masters[m].epoch;
            self.at(learns, Event::MasterLost { m, epoch });
        }
        if changed {
            self.leader_changed();
        }
    }

    /// A client's detector reports the leader the service names now.
    pub(crate) fn detect(&mut self, client: Client) {
        let Some(leader) = self.coord.as_ref().map(|c| c.leading_master()) else { return };
        match client {
            Client::Agent(a) => self.agent_detects(a, leader),
            Client::Scheduler(s) => self.scheduler_detects(s, leader),
        }
    }

    /// Faults stop: every master reaches the service again, and one whose session expired
    /// hears so.
    pub(crate) fn heal_masters(&mut self) {
        let Some(coord) = self.coord.as_mut() else { return };
        coord.heal();
        for m in 0..self.masters.len() {
            let epoch = self.masters[m].epoch;
            self.after(Duration::ZERO, Event::MasterLost { m, epoch });
        }
    }

    /// A fault of a run with several masters, mostly aimed at the leader: its process
    /// crashes, or it is cut off from the coordination service (past the session timeout,
    /// that deposes it while it still runs and still talks to its agents and schedulers).
    pub(crate) fn master_fault(&mut self) {
        let Some(coord) = &self.coord else { return };
        let leader = coord.leading_master().filter(|&l| self.masters[l].alive);
        let n = self.masters.len();
        let kind = self.ha_rng.range(0, 8);
        let target = match (kind, leader) {
            (0..=5, Some(l)) => l,
            _ => self.ha_rng.index(n),
        };
        let crash = kind.is_multiple_of(3) || !self.masters[target].alive;
        if crash {
            self.crash_one_master(target);
        } else if kind % 3 == 1 {
            // Mostly past the session timeout.
            let length = Duration::from_millis(self.ha_rng.range(5_000, 40_000));
            self.trace(|| format!("fault: master {target} freezes for {length:?}"));
            let until = (self.now + length).max(self.masters[target].frozen_until);
            self.masters[target].frozen_until = until;
            self.at(until, Event::Thaw(target));
            if let Some(coord) = self.coord.as_mut() {
                coord.cut_off(target, self.now, until);
            }
            if let Some(session) = self.masters[target].session {
                self.after(SESSION_TIMEOUT, Event::SessionExpiry { session });
            }
        } else {
            let length = Duration::from_millis(self.ha_rng.range(2_000, 60_000));
            self.trace(|| {
                format!("fault: master {target} cut off from coordination for {length:?}")
            });
            let until = self.now + length;
            if let Some(coord) = self.coord.as_mut() {
                coord.cut_off(target, self.now, until);
            }
            if let Some(session) = self.masters[target].session {
                self.after(SESSION_TIMEOUT, Event::SessionExpiry { session });
            }
        }
    }

    /// Master `m` wakes up from a freeze (unless a later freeze extended it) and works
    /// through what reached it meanwhile, in one go and in arrival order.
    pub(crate) fn thaw(&mut self, m: usize) {
        if self.masters[m].frozen_until > self.now {
            return;
        }
        let backlog = std::mem::take(&mut self.masters[m].backlog);
        self.trace(|| format!("master {m}: wakes up to {} inputs", backlog.len()));
        for (epoch, input) in backlog {
            if epoch == self.masters[m].epoch && self.masters[m].alive {
                self.master_input(m, input);
            }
        }
    }

    fn crash_one_master(&mut self, m: usize) {
        if self.masters[m].alive {
            self.trace(|| format!("fault: master {m} crashes"));
            self.master_stops(m, "crash");
        }
    }
}
