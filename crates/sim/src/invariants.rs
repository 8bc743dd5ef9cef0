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

use std::collections::BTreeMap;

use agora_core::resources::Resources;
use agora_core::status::is_terminal;
use agora_proto::v1;

use crate::nodes::agent::AGENT_RESOURCES;
use crate::sim::Sim;

/// An offer as the master made it.
#[derive(Debug, Clone)]
pub(crate) struct OfferSeen {
    framework_id: String,
    agent_id: String,
    resources: Resources,
}

/// A task as its scheduler launched it.
#[derive(Debug, Clone)]
pub(crate) struct TaskSeen {
    agent_id: String,
    resources: Resources,
}

/// `used` fits in `total` (cpus and mem; what the simulation uses).
fn fits(used: &Resources, total: &Resources) -> bool {
    const EPSILON: f64 = 1e-6;
    used.cpus().as_f64() <= total.cpus().as_f64() + EPSILON
        && used.mem().as_f64() <= total.mem().as_f64() + EPSILON
}

fn show(r: &Resources) -> String {
    format!("cpus:{};mem:{}", r.cpus().as_f64(), r.mem().as_f64())
}

impl Sim {
    pub(crate) fn note_offer(&mut self, offer: &v1::Offer) {
        let resources =
            agora_core::convert::resources_from_proto(&offer.resources).unwrap_or_default();
        let seen = OfferSeen {
            framework_id: offer.framework_id.value.clone(),
            agent_id: offer.agent_id.value.clone(),
            resources,
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
        self.tasks_launched.insert(
            (framework_id.to_string(), task_id.to_string()),
            TaskSeen { agent_id: agent_id.to_string(), resources: resources.clone() },
        );
    }

    /// The invariants that hold after every step.
    pub(crate) fn check(&self) -> Result<(), String> {
        let total = Resources::parse(AGENT_RESOURCES).expect("a valid constant");
        let Some(master) = self.master.core.as_ref() else { return Ok(()) };

        // The master's accounting: outstanding offers plus unfinished tasks, per agent.
        let mut held: BTreeMap<String, Resources> = BTreeMap::new();
        for (offer_id, framework_id, agent_id) in master.offer_ids() {
            let Some(seen) = self.offers_seen.get(&offer_id) else { continue };
            if seen.framework_id != framework_id || seen.agent_id != agent_id {
                return Err(format!(
                    "offer {offer_id} is held for {framework_id} on {agent_id} but was made to {} on {}",
                    seen.framework_id, seen.agent_id
                ));
            }
            held.entry(agent_id).or_default().add(&seen.resources);
        }
        for (framework_id, task_id, state) in master.tasks() {
            if is_terminal(state) {
                continue;
            }
            if let Some(seen) = self.tasks_launched.get(&(framework_id, task_id)) {
                held.entry(seen.agent_id.clone()).or_default().add(&seen.resources);
            }
        }
        for (agent_id, used) in &held {
            if !fits(used, &total) {
                return Err(format!(
                    "the master holds {} of agent {agent_id} in offers and tasks, beyond its {}",
                    show(used),
                    show(&total)
                ));
            }
        }

        // The machines' view: processes that run, per agent and per task id.
        let mut running: BTreeMap<usize, Resources> = BTreeMap::new();
        let mut places: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (e, x) in self.executors.iter().enumerate() {
            let (true, Some(task)) = (x.running, &x.task) else { continue };
            let key = (x.framework_id.clone(), task.task_id.value.clone());
            if let Some(other) = places.insert(key.clone(), e) {
                return Err(format!(
                    "task {} of {} runs in executors {other} and {e} at once",
                    key.1, key.0
                ));
            }
            let resources =
                agora_core::convert::resources_from_proto(&task.resources).unwrap_or_default();
            running.entry(x.agent).or_default().add(&resources);
        }
        for (a, used) in &running {
            if !fits(used, &total) {
                return Err(format!(
                    "agent {a} runs tasks of {}, beyond its {}",
                    show(used),
                    show(&total)
                ));
            }
        }
        Ok(())
    }

    /// Liveness at the end of a run.
    pub(crate) fn check_settled(&self) -> Result<(), String> {
        let Some(master) = self.master.core.as_ref() else {
            return Err("no master".into());
        };
        let active: BTreeMap<(String, String), v1::TaskState> =
            master.tasks().into_iter().map(|(f, t, s)| ((f, t), s)).collect();
        for (s, node) in self.schedulers.iter().enumerate() {
            if !node.subscribed() {
                return Err(format!("scheduler {s} is not subscribed"));
            }
            let framework_id = node.framework_id.clone().unwrap_or_default();
            for (task_id, view) in &node.tasks {
                let at_master = active.get(&(framework_id.clone(), task_id.clone()));
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
