//! The read-only views of the master that the operator API and the legacy endpoints answer
//! from: the `mesos.v1.master.Response` payloads (GET_STATE, GET_AGENTS, GET_FRAMEWORKS,
//! GET_EXECUTORS, GET_TASKS, GET_ROLES, GET_WEIGHTS, GET_QUOTA) and the master's own metrics.
//!
//! These functions only read the state and copy it into wire types, so that the shell's
//! dispatcher spends as little of its time as possible on a query: encoding the snapshot (JSON
//! or protobuf, or the legacy JSON shapes) happens outside it. Nothing here changes the master
//! (a task's cached wire form is filled in, which shows nothing new). Tasks, the bulk of a
//! large state, are shared rather than copied: `state_view` hands out `Arc<v1::Task>`s that the
//! core keeps between snapshots (completed tasks for good, unfinished ones until they change),
//! and only `StateView::into_proto` copies them into a `GetState`, outside the dispatcher.
//! Agents and frameworks are shared the same way: each keeps its view until it changes (see
//! `shown.rs` for why no change can be missed), so a snapshot of 20,000 agents rebuilds only
//! those whose resources, allocation or offers changed since the previous one.
//! A task's `statuses` holds only its latest status, because the master keeps no more.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agora_proto::master::response;
use agora_proto::v1::quota;
use agora_proto::{master, v1};

use super::{Agent, Framework, Master, Task};
use crate::convert;
use crate::resources::Resources;

/// Counters of things that happened, for the Mesos metric names (reference §4.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub slave_registrations: u64,
    pub slave_reregistrations: u64,
    pub slave_removals: u64,
    pub valid_status_updates: u64,
    pub invalid_status_updates: u64,
    pub allocation_runs: u64,
}

/// GET_STATE's content with the tasks shared with the core: what the dispatcher copies out
/// for `/master/state` and GET_STATE, cheap to take and encoded elsewhere.
#[derive(Debug, Clone, Default)]
pub struct StateView {
    /// Unfinished tasks (GET_TASKS' `tasks`).
    pub tasks: Vec<Arc<v1::Task>>,
    /// Each framework's bounded list of completed tasks (GET_TASKS' `completed_tasks`).
    pub completed_tasks: Vec<Arc<v1::Task>>,
    pub executors: response::GetExecutors,
    /// GET_FRAMEWORKS' `frameworks`, shared with the core.
    pub frameworks: Vec<Arc<response::get_frameworks::Framework>>,
    /// GET_FRAMEWORKS' `completed_frameworks` (removed frameworks, oldest first).
    pub completed_frameworks: Vec<Arc<response::get_frameworks::Framework>>,
    /// GET_AGENTS' `agents`, shared with the core.
    pub agents: Vec<Arc<response::get_agents::Agent>>,
    /// GET_AGENTS' `recovered_agents`.
    pub recovered_agents: Vec<v1::AgentInfo>,
}

impl StateView {
    /// The tasks as GET_TASKS, copied out of their shared form.
    pub fn get_tasks(&self) -> response::GetTasks {
        let copy = |tasks: &[Arc<v1::Task>]| tasks.iter().map(|t| v1::Task::clone(t)).collect();
        response::GetTasks {
            pending_tasks: Vec::new(),
            tasks: copy(&self.tasks),
            completed_tasks: copy(&self.completed_tasks),
            orphan_tasks: Vec::new(),
            unreachable_tasks: Vec::new(),
        }
    }

    /// The frameworks as GET_FRAMEWORKS, copied out of their shared form.
    pub fn get_frameworks(&self) -> response::GetFrameworks {
        response::GetFrameworks {
            frameworks: self.frameworks.iter().map(|f| f.as_ref().clone()).collect(),
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|f| f.as_ref().clone())
                .collect(),
            recovered_frameworks: Vec::new(),
        }
    }

    /// The agents as GET_AGENTS, copied out of their shared form.
    pub fn get_agents(&self) -> response::GetAgents {
        response::GetAgents {
            agents: self.agents.iter().map(|a| a.as_ref().clone()).collect(),
            recovered_agents: self.recovered_agents.clone(),
        }
    }

    /// The GET_STATE message.
    pub fn into_proto(self) -> response::GetState {
        response::GetState {
            get_tasks: Some(self.get_tasks()),
            get_frameworks: Some(self.get_frameworks()),
            get_agents: Some(self.get_agents()),
            get_executors: Some(self.executors),
        }
    }
}

impl Master {
    /// GET_STATE: tasks, executors, frameworks and agents in one snapshot.
    pub fn get_state(&self) -> response::GetState {
        self.state_view().into_proto()
    }

    /// GET_STATE's content with shared tasks, agents and frameworks: a pointer each, not a
    /// copy (views are built here only for what changed since the last snapshot).
    pub fn state_view(&self) -> StateView {
        let (tasks, completed_tasks) = self.task_views();
        StateView {
            tasks,
            completed_tasks,
            executors: self.get_executors(),
            frameworks: self.framework_views(),
            completed_frameworks: self.completed_framework_views(),
            agents: self.agent_views(),
            recovered_agents: self.recovered_agent_infos(),
        }
    }

    /// Every registered agent's shared view, rebuilt only if the agent, its offers or its
    /// allocation changed since it was built.
    pub fn agent_views(&self) -> Vec<Arc<response::get_agents::Agent>> {
        // What is offered per agent, summed over all offers only if some view is stale.
        let offered = OnceLock::new();
        self.agents.values().map(|agent| self.shared_agent_view(agent, &offered)).collect()
    }

    /// An agent's shared view; `offered` is what is offered per agent, summed on first use.
    fn shared_agent_view<'a>(
        &'a self,
        agent: &Agent,
        offered: &OnceLock<BTreeMap<&'a str, Resources>>,
    ) -> Arc<response::get_agents::Agent> {
        // An agent the allocator does not hold (its stream broke) cannot change there; when
        // it comes back the allocator stamps it anew.
        let stamp = self.allocator.agent_stamp(&agent.id).unwrap_or(u64::MAX);
        let usage = || {
            let offered = offered.get_or_init(|| self.offered_by_agent());
            let offers = offered.get(agent.id.as_str()).cloned().unwrap_or_default();
            (self.used_on(&agent.id) - &offers, offers)
        };
        agent.view.get(
            (stamp, agent.offers_changed),
            || {
                let (allocated, offers) = usage();
                self.agent_view(agent, &allocated, &offers)
            },
            // Only the allocation or the offers changed (any change of the agent itself drops
            // its view): the rest stays, rather than converting the agent's info and total
            // again, which under churn is most of a snapshot's time.
            |view| {
                let (allocated, offers) = usage();
                view.allocated_resources = convert::resources_to_proto(&allocated, None);
                view.offered_resources = convert::resources_to_proto(&offers, None);
            },
        )
    }

    /// Every framework's shared view, rebuilt only if the framework changed since.
    pub fn framework_views(&self) -> Vec<Arc<response::get_frameworks::Framework>> {
        self.frameworks.values().map(|f| self.shared_framework_view(f)).collect()
    }

    /// A framework's shared view. Its stamp never changes: any change of a framework drops its
    /// view.
    fn shared_framework_view(&self, f: &Framework) -> Arc<response::get_frameworks::Framework> {
        f.view.get(
            FRAMEWORK_STAMP,
            || self.framework_view(f),
            |view| *view = self.framework_view(f),
        )
    }

    /// Panics unless every cached agent and framework view equals one built afresh; the core's
    /// test harness calls it after every input, so that each test proves the caches follow
    /// the changes it makes.
    #[cfg(test)]
    pub(super) fn assert_views_fresh(&self) {
        let usage = self.agent_usage();
        let empty = (Resources::new(), Resources::new());
        for (cached, agent) in self.agent_views().iter().zip(self.agents.values()) {
            let (allocated, offered) = usage.get(agent.id.as_str()).unwrap_or(&empty);
            assert_eq!(**cached, self.agent_view(agent, allocated, offered), "agent {}", agent.id);
        }
        for (cached, framework) in self.framework_views().iter().zip(self.frameworks.values()) {
            assert_eq!(**cached, self.framework_view(framework), "framework {}", framework.id);
            framework.tasks.assert_indexed();
        }
    }

    fn recovered_agent_infos(&self) -> Vec<v1::AgentInfo> {
        self.recovered_agents
            .values()
            .chain(self.unreachable_agents.values())
            .map(|a| a.agent_info.clone())
            .collect()
    }

    /// The shared wire forms of unfinished and completed tasks; an unfinished task's is built
    /// here if it changed since the last snapshot.
    pub fn task_views(&self) -> (Vec<Arc<v1::Task>>, Vec<Arc<v1::Task>>) {
        let mut tasks = Vec::with_capacity(self.frameworks.values().map(|f| f.tasks.len()).sum());
        let mut completed =
            Vec::with_capacity(self.frameworks.values().map(|f| f.completed_tasks.len()).sum());
        for framework in self.frameworks.values() {
            tasks.extend(
                framework.tasks.values().map(|t| {
                    Arc::clone(t.view.get_or_init(|| Arc::new(task_view(&framework.id, t))))
                }),
            );
            completed.extend(framework.completed_tasks.iter().cloned());
        }
        // Removed frameworks' tasks are completed tasks too (GET_TASKS, and each completed
        // framework's `completed_tasks` in `/master/state`).
        completed.extend(self.completed_frameworks.iter().flat_map(|f| f.tasks.iter().cloned()));
        (tasks, completed)
    }

    /// GET_AGENTS: registered agents with their total, allocated and offered resources, and
    /// the agents of the registry that have not come back since this master started.
    pub fn get_agents(&self) -> response::GetAgents {
        StateView {
            agents: self.agent_views(),
            recovered_agents: self.recovered_agent_infos(),
            ..Default::default()
        }
        .get_agents()
    }

    /// One agent as GET_AGENTS and AGENT_ADDED show it.
    pub fn agent_info_view(&self, agent_id: &str) -> Option<response::get_agents::Agent> {
        let agent = self.agents.get(agent_id)?;
        Some(self.shared_agent_view(agent, &OnceLock::new()).as_ref().clone())
    }

    fn agent_view(
        &self,
        agent: &Agent,
        allocated: &Resources,
        offered: &Resources,
    ) -> response::get_agents::Agent {
        let total = convert::resources_to_proto(&agent.total, None);
        let mut info = agent.info.clone();
        info.resources = total.clone();
        response::get_agents::Agent {
            agent_info: info,
            active: agent.conn.is_some(),
            version: crate::master::MESOS_VERSION.to_string(),
            pid: Some(format!("slave(1)@{}", agent.endpoint)),
            registered_time: agent.registered_time.map(super::time_info),
            reregistered_time: agent.reregistered_time.map(super::time_info),
            total_resources: total,
            allocated_resources: convert::resources_to_proto(allocated, None),
            offered_resources: convert::resources_to_proto(offered, None),
            capabilities: Vec::new(),
            deactivated: Some(false),
            drain_info: None,
            estimated_drain_start_time: None,
        }
    }

    /// (allocated, offered) per agent. The allocator knows what each agent has not allocated,
    /// so allocated is total less available less offered: a pass over agents and offers, not
    /// over every task.
    fn agent_usage(&self) -> BTreeMap<&str, (Resources, Resources)> {
        let mut offered = self.offered_by_agent();
        let mut usage = BTreeMap::new();
        for id in self.agents.keys() {
            let offers = offered.remove(id.as_str()).unwrap_or_default();
            let used = self.used_on(id);
            usage.insert(id.as_str(), (used - &offers, offers));
        }
        usage
    }

    /// What is offered on each agent with outstanding offers.
    fn offered_by_agent(&self) -> BTreeMap<&str, Resources> {
        let mut offered: BTreeMap<&str, Resources> = BTreeMap::new();
        for offer in self.offers.values() {
            *offered.entry(offer.agent_id.as_str()).or_default() += &offer.resources;
        }
        offered
    }

    /// What the allocator holds on an agent (offered or in use).
    fn used_on(&self, agent_id: &str) -> Resources {
        match (self.allocator.total(agent_id), self.allocator.available(agent_id)) {
            (Some(total), Some(available)) => total - available,
            _ => Resources::new(),
        }
    }

    /// GET_FRAMEWORKS: frameworks the master knows (connected or not), and the bounded list of
    /// removed ones (`completed_frameworks`, newest last).
    pub fn get_frameworks(&self) -> response::GetFrameworks {
        StateView {
            frameworks: self.framework_views(),
            completed_frameworks: self.completed_framework_views(),
            ..Default::default()
        }
        .get_frameworks()
    }

    /// The removed frameworks kept for the state endpoints, oldest first.
    pub fn completed_framework_views(&self) -> Vec<Arc<response::get_frameworks::Framework>> {
        self.completed_frameworks.iter().map(|f| Arc::new(f.view.clone())).collect()
    }

    /// One framework as GET_FRAMEWORKS and FRAMEWORK_ADDED/UPDATED show it.
    pub fn framework_info_view(&self, id: &str) -> Option<response::get_frameworks::Framework> {
        let f = self.frameworks.get(id)?;
        Some(self.shared_framework_view(f).as_ref().clone())
    }

    pub(super) fn framework_view(
        &self,
        framework: &Framework,
    ) -> response::get_frameworks::Framework {
        let mut allocated = framework.tasks.held();
        for executor in framework.executors.values() {
            allocated += &executor.resources;
        }
        let mut offered = Resources::new();
        let mut offers = Vec::new();
        for offer_id in &framework.offers {
            if let Some(offer) = self.offers.get(offer_id) {
                offered += &offer.resources;
                offers.push(v1::Offer {
                    id: v1::OfferId { value: offer_id.clone() },
                    framework_id: v1::FrameworkId { value: framework.id.clone() },
                    agent_id: v1::AgentId { value: offer.agent_id.clone() },
                    hostname: self
                        .agents
                        .get(&offer.agent_id)
                        .map(|a| a.info.hostname.clone())
                        .unwrap_or_default(),
                    resources: convert::resources_to_proto(&offer.resources, None),
                    ..Default::default()
                });
            }
        }
        let mut info = framework.info.clone();
        info.id = Some(v1::FrameworkId { value: framework.id.clone() });
        response::get_frameworks::Framework {
            framework_info: info,
            active: framework.conn.is_some(),
            connected: framework.conn.is_some(),
            registered_time: framework.registered_time.map(super::time_info),
            reregistered_time: None,
            unregistered_time: framework.disconnected_at.map(super::time_info),
            offers,
            inverse_offers: Vec::new(),
            allocated_resources: convert::resources_to_proto(&allocated, None),
            offered_resources: convert::resources_to_proto(&offered, None),
            recovered: framework.recovered,
        }
    }

    /// GET_EXECUTORS: the custom and default executors the master knows of.
    pub fn get_executors(&self) -> response::GetExecutors {
        let executors = self
            .frameworks
            .values()
            .flat_map(|f| f.executors.iter())
            .map(|((agent_id, _), record)| response::get_executors::Executor {
                executor_info: record.info.clone(),
                agent_id: v1::AgentId { value: agent_id.clone() },
            })
            .collect();
        response::GetExecutors { executors, orphan_executors: Vec::new() }
    }

    /// GET_TASKS: unfinished tasks and each framework's bounded list of completed ones; tasks
    /// on unreachable agents are among `tasks` (the master does not move them).
    pub fn get_tasks(&self) -> response::GetTasks {
        let (tasks, completed_tasks) = self.task_views();
        StateView { tasks, completed_tasks, ..Default::default() }.get_tasks()
    }

    /// One task as TASK_ADDED shows it.
    pub fn task_info_view(&self, framework_id: &str, task_id: &str) -> Option<v1::Task> {
        let framework = self.frameworks.get(framework_id)?;
        framework.tasks.get(task_id).map(|t| task_view(framework_id, t))
    }

    /// The weight of a role: UPDATE_WEIGHTS wins over `--weights`; 1.0 otherwise.
    fn weight(&self, role: &str) -> f64 {
        self.weights
            .get(role)
            .or_else(|| self.config.allocator.weights.get(role))
            .copied()
            .unwrap_or(1.0)
    }

    /// GET_ROLES: every role with a framework, a weight, a quota or a reservation, with its
    /// weight, frameworks and the resources allocated to it.
    pub fn get_roles(&self) -> response::GetRoles {
        let mut roles: BTreeMap<String, (BTreeSet<String>, Resources)> = BTreeMap::new();
        for framework in self.frameworks.values() {
            for role in super::scheduler::framework_roles(&framework.info).unwrap_or_default() {
                roles.entry(role).or_default().0.insert(framework.id.clone());
            }
            for task in framework.tasks.values().filter(|t| !t.released) {
                roles.entry(task.role.clone()).or_default().1 += &task.resources;
            }
        }
        for role in self.weights.keys().chain(self.config.allocator.weights.keys()) {
            roles.entry(role.clone()).or_default();
        }
        for role in self.quotas.keys() {
            roles.entry(role.clone()).or_default();
        }
        for agent in self.agents.values() {
            for resource in &agent.total {
                if resource.is_reserved() {
                    roles.entry(resource.role().to_string()).or_default();
                }
            }
        }
        let roles = roles
            .into_iter()
            .map(|(name, (frameworks, resources))| v1::Role {
                weight: self.weight(&name),
                frameworks: frameworks.into_iter().map(|value| v1::FrameworkId { value }).collect(),
                resources: convert::resources_to_proto(&resources, None),
                name,
            })
            .collect();
        response::GetRoles { roles }
    }

    /// GET_WEIGHTS: the weights set by UPDATE_WEIGHTS, over those of `--weights`.
    pub fn get_weights(&self) -> response::GetWeights {
        let mut weights = self.config.allocator.weights.clone();
        weights.extend(self.weights.iter().map(|(r, w)| (r.clone(), *w)));
        let weight_infos = weights
            .into_iter()
            .map(|(role, weight)| v1::WeightInfo { weight, role: Some(role) })
            .collect();
        response::GetWeights { weight_infos }
    }

    /// GET_QUOTA: the quota configurations of the registry.
    pub fn get_quota(&self) -> response::GetQuota {
        let configs = self
            .quotas
            .values()
            .map(|q| quota::QuotaConfig {
                role: q.role.clone(),
                guarantees: q.guarantees.clone(),
                limits: q.limits.clone(),
            })
            .collect();
        response::GetQuota { status: master::QuotaStatus { configs } }
    }

    /// The master's own metrics under Mesos's names (reference §4.5), in name order. The shell
    /// adds the `system/` ones and the uptime, which need the operating system and a clock.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut m: BTreeMap<String, f64> = BTreeMap::new();
        let mut total = Resources::new();
        for agent in self.agents.values() {
            total += &agent.total;
        }
        let mut used = Resources::new();
        for (allocated, _) in self.agent_usage().values() {
            used += allocated;
        }
        for name in ["cpus", "mem", "disk", "gpus"] {
            let t = total.quantity(name).as_f64();
            let u = used.quantity(name).as_f64();
            m.insert(format!("master/{name}_total"), t);
            m.insert(format!("master/{name}_used"), u);
            m.insert(format!("master/{name}_percent"), if t > 0.0 { u / t } else { 0.0 });
        }
        let connected = self.agents.values().filter(|a| a.conn.is_some()).count();
        let disconnected = self.agents.len() - connected;
        m.insert("master/slaves_active".into(), connected as f64);
        m.insert("master/slaves_inactive".into(), disconnected as f64);
        m.insert("master/slaves_connected".into(), connected as f64);
        m.insert("master/slaves_disconnected".into(), disconnected as f64);
        m.insert("master/slaves_unreachable".into(), self.unreachable_agents.len() as f64);
        let active = self.frameworks.values().filter(|f| f.conn.is_some()).count();
        let inactive = self.frameworks.len() - active;
        m.insert("master/frameworks_active".into(), active as f64);
        m.insert("master/frameworks_inactive".into(), inactive as f64);
        m.insert("master/frameworks_connected".into(), active as f64);
        m.insert("master/frameworks_disconnected".into(), inactive as f64);
        m.insert("master/outstanding_offers".into(), self.offers.len() as f64);
        let mut states: BTreeMap<v1::TaskState, u64> = BTreeMap::new();
        for framework in self.frameworks.values() {
            for task in framework.tasks.values() {
                *states.entry(task.state).or_default() += 1;
            }
            for task in &framework.completed_tasks {
                *states.entry(task.state()).or_default() += 1;
            }
        }
        for state in TASK_STATES {
            let name = state.as_str_name().trim_start_matches("TASK_").to_ascii_lowercase();
            let count = states.get(&state).copied().unwrap_or(0);
            m.insert(format!("master/tasks_{name}"), count as f64);
        }
        let c = &self.counters;
        m.insert("master/slave_registrations".into(), c.slave_registrations as f64);
        m.insert("master/slave_reregistrations".into(), c.slave_reregistrations as f64);
        m.insert("master/slave_removals".into(), c.slave_removals as f64);
        m.insert("master/valid_status_updates".into(), c.valid_status_updates as f64);
        m.insert("master/invalid_status_updates".into(), c.invalid_status_updates as f64);
        m.insert("allocator/mesos/allocation_runs".into(), c.allocation_runs as f64);
        m.insert("master/elected".into(), 1.0);
        m.insert(
            "master/operator_event_stream_subscribers".into(),
            self.operator_conns.len() as f64,
        );
        m.into_iter().collect()
    }

    /// When this master started, for GET_MASTER and `/master/state`.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }
}

/// A framework's view changes only with the framework (its tasks, executors, offers), whose
/// every change clears the cache: its stamp is a constant.
const FRAMEWORK_STAMP: u64 = 0;

/// Every task state, in `TaskState` order, for the `master/tasks_<state>` metrics.
pub const TASK_STATES: [v1::TaskState; 13] = [
    v1::TaskState::TaskStaging,
    v1::TaskState::TaskStarting,
    v1::TaskState::TaskRunning,
    v1::TaskState::TaskKilling,
    v1::TaskState::TaskFinished,
    v1::TaskState::TaskFailed,
    v1::TaskState::TaskKilled,
    v1::TaskState::TaskError,
    v1::TaskState::TaskLost,
    v1::TaskState::TaskDropped,
    v1::TaskState::TaskUnreachable,
    v1::TaskState::TaskGone,
    v1::TaskState::TaskGoneByOperator,
];

/// A task as the operator API shows it.
pub(super) fn task_view(framework_id: &str, task: &Task) -> v1::Task {
    let info = &task.info;
    let executor_id = info.executor.as_ref().map(|e| e.executor_id.clone());
    v1::Task {
        name: Some(info.name.clone()),
        task_id: Some(info.task_id.clone()),
        framework_id: Some(v1::FrameworkId { value: framework_id.to_string() }),
        executor_id,
        agent_id: Some(v1::AgentId { value: task.agent_id.clone() }),
        state: Some(task.state as i32),
        resources: info.resources.clone(),
        statuses: task.latest_status.iter().cloned().collect(),
        status_update_state: task.status_update_state.map(|s| s as i32),
        status_update_uuid: task.status_update_uuid.clone(),
        labels: info.labels.clone(),
        discovery: info.discovery.clone(),
        container: info.container.clone(),
        user: info.command.as_ref().and_then(|c| c.user.clone()),
        health_check: info.health_check.clone(),
        kill_policy: info.kill_policy,
        limits: info.limits.clone(),
    }
}
