//! The invariants checked after every step, and the settlement checked at the end of a run.
//!
//! After every step: no agent has more offered and used than it has (as the master accounts
//! it: its outstanding offers plus its unfinished tasks); no agent runs task processes beyond
//! its capacity (as the simulated machines see it); an offer id never names two frameworks;
//! a task id never runs in two places at once. Schedulers check on receipt that a task's
//! states never go backwards (`nodes/scheduler.rs`). At the end, with faults over and the
//! network healed for long enough, every task a scheduler launched is either over (the
//! scheduler saw its terminal state and the master no longer holds it) or running and known
//! as running to both. Offers made to a framework whose stream is down are never seen by the
//! simulator, so the offer sum can only under-count them.
//!
//! Across failovers (several masters), every master that runs a core is checked as above, a
//! deposed one too, and: a task a master holds came from a scheduler's launch at that master
//! or from an agent's report to it (the registry holds no tasks); an agent or framework id
//! names one agent or one scheduler for the whole run. The registry's side is checked where
//! it happens (`nodes/election.rs`): only the leader's writes get through and leaders write
//! in election order, an id is handed out only once the registry holds it and the registry
//! never loses it afterwards. At the end exactly the elected master runs a core, and every
//! scheduler is subscribed at it.

use std::collections::BTreeMap;

use agora_core::resources::Resources;
use agora_core::status::is_terminal;
use agora_proto::v1;

use crate::nodes::agent::AGENT_RESOURCES;
use crate::sim::Sim;

/// The cpus and memory of some resources: all the invariants compare, kept as two numbers
/// because the checks run after every step and full `Resources` arithmetic would dominate a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Load {
    cpus: f64,
    mem: f64,
}

impl Load {
    pub(crate) fn of(resources: &Resources) -> Self {
        Self { cpus: resources.cpus().as_f64(), mem: resources.mem().as_f64() }
    }

    pub(crate) fn of_proto(resources: &[v1::Resource]) -> Self {
        Self::of(&agora_core::convert::resources_from_proto(resources).unwrap_or_default())
    }

    fn add(&mut self, other: Load) {
        self.cpus += other.cpus;
        self.mem += other.mem;
    }

    /// Whether `self` fits in `total`, up to rounding.
    fn fits(self, total: Load) -> bool {
        const EPSILON: f64 = 1e-6;
        self.cpus <= total.cpus + EPSILON && self.mem <= total.mem + EPSILON
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cpus:{};mem:{}", self.cpus, self.mem)
    }
}

/// What every simulated agent has, as a `Load`.
pub(crate) fn agent_capacity() -> Load {
    Load::of(&Resources::parse(AGENT_RESOURCES).expect("a valid constant"))
}

/// An offer as the master made it.
#[derive(Debug, Clone)]
pub(crate) struct OfferSeen {
    framework_id: String,
    agent_id: String,
    load: Load,
}

/// A task as its scheduler launched it.
#[derive(Debug, Clone)]
pub(crate) struct TaskSeen {
    agent_id: String,
    load: Load,
}

/// Adds `load` to the entry of `key` in a short list (a handful of agents: a map would cost
/// more than the scan).
fn add_to<K: PartialEq>(list: &mut Vec<(K, Load)>, key: K, load: Load) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, sum)) => sum.add(load),
        None => list.push((key, load)),
    }
}

impl Sim {
    pub(crate) fn note_offer(&mut self, offer: &v1::Offer) {
        let seen = OfferSeen {
            framework_id: offer.framework_id.value.clone(),
            agent_id: offer.agent_id.value.clone(),
            load: Load::of_proto(&offer.resources),
        };
        if let Some(old) = self.offers_seen.get(&offer.id.value)
            && old.framework_id != seen.framework_id
        {
            let message = format!(
                "offer {} was made to {} and to {}",
                offer.id.value, old.framework_id, seen.framework_id
            );
            self.fail(message);
        }
        self.offers_seen.insert(offer.id.value.clone(), seen);
    }

    pub(crate) fn note_launch(
        &mut self,
        framework_id: &str,
        task_id: &str,
        agent_id: &str,
        resources: &Resources,
    ) {
        self.tasks_launched.entry(framework_id.to_string()).or_default().insert(
            task_id.to_string(),
            TaskSeen { agent_id: agent_id.to_string(), load: Load::of(resources) },
        );
    }

    /// An id (of an agent or a framework) is handed to `who`: it must never name another.
    pub(crate) fn note_owner(&mut self, id: &str, who: String) {
        match self.id_owners.get(id) {
            Some(owner) if *owner != who => {
                let message = format!("id {id} was handed to {owner} and to {who}");
                self.fail(message);
            }
            Some(_) => {}
            None => {
                self.id_owners.insert(id.to_string(), who);
            }
        }
    }

    /// The invariants that hold after every step. They run after every event, so they borrow
    /// rather than copy, and add up `Load`s rather than `Resources`.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (m, node) in self.masters.iter().enumerate() {
            let Some(master) = node.core.as_ref() else { continue };
            self.check_master(m, master, &node.learned)?;
        }
        self.check_machines()
    }

    /// One master's accounting, and where its tasks came from.
    fn check_master(
        &self,
        m: usize,
        master: &agora_core::master::Master,
        learned: &BTreeMap<String, std::collections::BTreeSet<String>>,
    ) -> Result<(), String> {
        let total = self.capacity;

        // The master's accounting: outstanding offers plus unfinished tasks, per agent.
        let mut held: Vec<(&str, Load)> = Vec::new();
        for (offer_id, framework_id, agent_id) in master.offers_held() {
            let Some(seen) = self.offers_seen.get(offer_id) else { continue };
            if seen.framework_id != framework_id || seen.agent_id != agent_id {
                return Err(format!(
                    "offer {offer_id} is held for {framework_id} on {agent_id} but was made to {} on {}",
                    seen.framework_id, seen.agent_id
                ));
            }
            add_to(&mut held, agent_id, seen.load);
        }
        for (framework_id, task_id, state) in master.task_states() {
            if !learned.get(framework_id).is_some_and(|t| t.contains(task_id)) {
                return Err(format!(
                    "master {m} holds task {task_id} of {framework_id}, which no scheduler \
                     launched and no agent reported to it"
                ));
            }
            if is_terminal(state) {
                continue;
            }
            if let Some(seen) = self.tasks_launched.get(framework_id).and_then(|t| t.get(task_id)) {
                add_to(&mut held, seen.agent_id.as_str(), seen.load);
            }
        }
        for (agent_id, used) in &held {
            if !used.fits(total) {
                return Err(format!(
                    "master {m} holds {used} of agent {agent_id} in offers and tasks, beyond \
                     its {total}"
                ));
            }
        }
        Ok(())
    }

    /// The machines' view, whoever leads.
    fn check_machines(&self) -> Result<(), String> {
        let total = self.capacity;

        // The machines' view: processes that run, per agent and per task id.
        let mut running: Vec<(usize, Load)> = Vec::new();
        let mut places: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (e, x) in self.executors.iter().enumerate() {
            if !x.alive {
                continue;
            }
            for (task_id, load) in x.running_tasks() {
                if let Some(other) = places.insert((x.framework_id.as_str(), task_id), e) {
                    return Err(format!(
                        "task {task_id} of {} runs in executors {other} and {e} at once",
                        x.framework_id
                    ));
                }
                add_to(&mut running, x.agent, load);
            }
        }
        for (a, used) in &running {
            if !used.fits(total) {
                return Err(format!("agent {a} runs tasks of {used}, beyond its {total}"));
            }
        }
        Ok(())
    }

    /// Liveness at the end of a run.
    pub(crate) fn check_settled(&self) -> Result<(), String> {
        let leader = match &self.coord {
            Some(coord) => coord.leading_master().ok_or("no master leads")?,
            None => 0,
        };
        let Some(master) = self.masters[leader].core.as_ref() else {
            return Err(format!("master {leader} leads but does not serve"));
        };
        for (m, node) in self.masters.iter().enumerate() {
            if m != leader && node.core.is_some() {
                return Err(format!("master {m} still acts while master {leader} leads"));
            }
        }
        let active: BTreeMap<(&str, &str), v1::TaskState> =
            master.task_states().map(|(f, t, s)| ((f, t), s)).collect();
        for (s, node) in self.schedulers.iter().enumerate() {
            if node.subscribed_at() != Some(leader) {
                return Err(format!(
                    "scheduler {s} is not subscribed at the leader {leader} (but at {:?})",
                    node.subscribed_at()
                ));
            }
            let framework_id = node.framework_id.clone().unwrap_or_default();
            for (task_id, view) in &node.tasks {
                let at_master = active.get(&(framework_id.as_str(), task_id.as_str()));
                let settled = match view.last {
                    Some(state) if is_terminal(state) => at_master.is_none(),
                    Some(v1::TaskState::TaskRunning) => {
                        at_master == Some(&v1::TaskState::TaskRunning)
                    }
                    _ => false,
                };
                if !settled {
                    return Err(format!(
                        "task {task_id} of scheduler {s} ({framework_id}) did not settle: the \
                         scheduler last saw {:?}, the master holds it as {at_master:?}",
                        view.last
                    ));
                }
            }
        }
        for (a, agent) in self.agents.iter().enumerate() {
            if let Some(core) = &agent.core
                && core.pending_updates() > 0
            {
                return Err(format!(
                    "agent {a} still has {} unacknowledged status updates",
                    core.pending_updates()
                ));
            }
        }
        Ok(())
    }
}
