//! What makes a master restart harmless: the registry operations the master emits
//! (`RegistryOp`), starting from the registry's snapshot (`Master::recover`), rebuilding tasks,
//! executors and frameworks from what re-registering agents report, and the deadline after
//! which agents that did not come back count as unreachable (reference §5.2, §5.7, §5.8).
//!
//! Nothing here touches a disk: the shell stores the operations and hands the snapshot back.
//! Tasks, executors, offers and connections are soft state, as in Mesos; only the records of
//! `agora.internal.v1.Registry` are durable. Operator calls for weights and quota end here too,
//! because all they do is change the registry (quota is recorded but not enforced yet).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use agora_proto::internal;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};

use super::scheduler::{framework_roles, framework_spec};
use super::{
    AllocatorConfig, CallError, ExecutorRecord, Framework, Master, MasterConfig, Output, Task,
    has_capability, task_table, time_info,
};
use crate::allocator::QuotaConfig;
use crate::convert;
use crate::ids::validate_id;
use crate::offer_constraints::OfferConstraints;
use crate::resources::Scalar;
use crate::status::{Synthesized, is_terminal};

/// A change to the registry. The shell applies every operation of one batch of inputs in a
/// single durable write before it delivers the batch's other outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryOp {
    /// A new agent was admitted.
    AdmitAgent(internal::RegistryAgent),
    /// A known agent's record changed (new info or resources, unreachable, reachable again).
    UpdateAgent(internal::RegistryAgent),
    AddFramework(internal::RegistryFramework),
    UpdateFramework(internal::RegistryFramework),
    /// The framework was removed; its record stays, with `removed_time`, so that its id stays
    /// refused.
    RemoveFramework(internal::RegistryFramework),
    /// A removed framework fell out of the bounded list of refused ids.
    ForgetFramework(String),
    /// Sets the weights of the roles named; other roles keep theirs.
    UpdateWeights(Vec<v1::WeightInfo>),
    UpdateQuota(internal::RegistryQuota),
    RemoveQuota(String),
}

impl Master {
    /// A master started from the registry's snapshot at `now`.
    ///
    /// Frameworks of the registry are known but inactive until their scheduler subscribes
    /// again; their failover timeout counts from `now`. Admitted agents are "recovered": they
    /// have `agent_reregister_timeout` to re-register with their tasks, and until then
    /// reconciliation says nothing about tasks that could be on them. Removed frameworks stay
    /// refused.
    pub fn recover(config: MasterConfig, registry: internal::Registry, now: Duration) -> Self {
        let mut weights = BTreeMap::new();
        for weight in &registry.weights {
            if let Some(role) = &weight.role {
                weights.insert(role.clone(), weight.weight);
            }
        }
        let mut allocator: AllocatorConfig = config.allocator.clone();
        allocator.weights.extend(weights.clone());
        let timeout = config.agent_reregister_timeout;
        let mut master = Master::empty(config, allocator);
        master.weights = weights;
        master.start_time = now;
        for quota in &registry.quotas {
            // A record that no longer fits the allocator's rules (it was valid when written)
            // stays in the registry for the operator to see and fix; it is not enforced.
            let _ = master.allocator.update_quota(&quota.role, quota_config(quota));
        }
        master.quotas = registry.quotas.into_iter().map(|q| (q.role.clone(), q)).collect();

        let (mut removed, live): (Vec<_>, Vec<_>) =
            registry.frameworks.into_iter().partition(|f| f.removed_time.is_some());
        removed.sort_by_key(|f| f.removed_time.map(|t| t.nanoseconds));
        for record in removed {
            if let Some(id) = record.framework_info.id {
                // Recovery emits nothing; ids beyond the bound were forgotten when removed.
                master.remember_removed(&id.value);
            }
        }
        for record in live {
            master.learn_framework(record.framework_info, now);
        }
        for record in registry.agents {
            let Some(id) = record.agent_info.id.as_ref().map(|a| a.value.clone()) else {
                continue;
            };
            if record.gone_time.is_some() {
                master.gone_agents.insert(id);
            } else if record.unreachable_time.is_some() {
                master.unreachable_agents.insert(id, record);
            } else {
                master.recovered_agents.insert(id, record);
            }
        }
        if !master.recovered_agents.is_empty() {
            master.reregister_deadline = Some(now + timeout);
        }
        master
    }

    /// Adds a framework the master learns of without its scheduler (from the registry or an
    /// agent's report): inactive, with its failover timeout running from `now`.
    fn learn_framework(&mut self, info: v1::FrameworkInfo, now: Duration) {
        let Some(id) = info.id.as_ref().map(|f| f.value.clone()) else {
            return;
        };
        if self.frameworks.contains_key(&id) || self.removed_frameworks.contains(&id) {
            return;
        }
        let roles = framework_roles(&info).unwrap_or_default();
        self.allocator.set_framework(
            &id,
            &framework_spec(&info, &roles, &[], false, OfferConstraints::default()),
        );
        self.frameworks.insert(
            id.clone(),
            Framework {
                id,
                info,
                conn: None,
                stream_id: None,
                disconnected_at: Some(now),
                offers: Default::default(),
                tasks: Default::default(),
                completed_tasks: Default::default(),
                executors: Default::default(),
                recovered: true,
                registered_time: None,
                view: Default::default(),
            },
        );
    }

    /// The registry side of a (re-)registration: admits a new agent, records what changed
    /// about a known one, and takes it out of the recovered and unreachable sets.
    pub(super) fn record_agent(&mut self, record: &internal::RegistryAgent, out: &mut Vec<Output>) {
        let Some(id) = record.agent_info.id.as_ref().map(|a| a.value.as_str()) else {
            return;
        };
        let previous = self
            .agents
            .get(id)
            .map(|a| a.record.clone())
            .or_else(|| self.recovered_agents.remove(id))
            .or_else(|| self.unreachable_agents.remove(id));
        if self.recovered_agents.is_empty() {
            self.reregister_deadline = None;
        }
        match previous {
            None => out.push(Output::Persist(RegistryOp::AdmitAgent(record.clone()))),
            Some(previous) if previous != *record => {
                out.push(Output::Persist(RegistryOp::UpdateAgent(record.clone())));
            }
            Some(_) => {}
        }
    }

    /// Rebuilds what a registering agent reports and the master does not know: frameworks
    /// (inactive until their scheduler subscribes), tasks and custom executors. The master's
    /// own records win where it has them; removed frameworks are left out (the agent is told
    /// to shut them down).
    pub(super) fn adopt_reported(
        &mut self,
        agent_id: &str,
        register: &internal::agent_call::Register,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        for info in &register.frameworks {
            let Some(id) = info.id.as_ref().map(|f| f.value.as_str()) else {
                continue;
            };
            if validate_id(id).is_err()
                || self.frameworks.contains_key(id)
                || self.removed_frameworks.contains(id)
            {
                continue;
            }
            out.push(Output::Persist(RegistryOp::AddFramework(internal::RegistryFramework {
                framework_info: info.clone(),
                removed_time: None,
            })));
            self.learn_framework(info.clone(), now);
        }
        let mut duplicates = Vec::new();
        for task in &register.tasks {
            let Some(task_id) = task.task_id.as_ref() else {
                continue;
            };
            let Some(framework) =
                task.framework_id.as_ref().and_then(|f| self.frameworks.get_mut(&f.value))
            else {
                continue;
            };
            if let Some(known) = framework.tasks.get(&task_id.value) {
                // The id belongs to a task on another agent (the scheduler relaunched it after
                // this agent was given up): this copy must not run on.
                if known.agent_id != agent_id && !is_terminal(task.state()) {
                    duplicates.push((framework.id.clone(), task_id.value.clone()));
                }
                continue;
            }
            // A task that is over and has no update waiting for its acknowledgement is done
            // with: adopting it would bring a finished task back to life.
            if is_terminal(task.state()) && task.status_update_state.is_none() {
                continue;
            }
            let Ok(resources) = convert::resources_from_proto(&task.resources) else {
                continue;
            };
            let state = task.state();
            let record = Task {
                info: task_info(task, agent_id),
                agent_id: agent_id.to_string(),
                role: role_of(&framework.info, &task.resources),
                resources,
                state,
                status_update_state: task
                    .status_update_state
                    .and_then(|s| TaskState::try_from(s).ok()),
                status_update_uuid: task.status_update_uuid.clone(),
                latest_status: task.statuses.last().cloned(),
                // A task the agent knows to be over holds nothing any more.
                released: is_terminal(state),
                kill: None,
                view: Default::default(),
            };
            framework.tasks.insert(task_id.value.clone(), record);
        }
        for executor in &register.executors {
            let Some(framework) =
                executor.framework_id.as_ref().and_then(|f| self.frameworks.get_mut(&f.value))
            else {
                continue;
            };
            let key = (agent_id.to_string(), executor.executor_id.value.clone());
            if framework.executors.contains_key(&key) {
                continue;
            }
            let Ok(resources) = convert::resources_from_proto(&executor.resources) else {
                continue;
            };
            let role = role_of(&framework.info, &executor.resources);
            framework
                .executors
                .insert(key, ExecutorRecord { role, resources, info: executor.clone() });
        }
        self.adopt_completed(agent_id, register);
        for (framework_id, task_id) in duplicates {
            self.send_kill(&framework_id, agent_id, &task_id, None, out);
        }
    }

    /// Completed tasks the agent reports that this master does not know (it was elected
    /// after they ended) join their framework's bounded completed list, so that a failover
    /// does not erase the recent past from the state endpoints. Known tasks, active or
    /// completed, are left alone.
    fn adopt_completed(&mut self, agent_id: &str, register: &internal::agent_call::Register) {
        let limit = self.config.max_completed_tasks_per_framework;
        // The completed tasks each framework already has from this agent, looked up once.
        let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for task in &register.completed_tasks {
            let (Some(task_id), Some(framework_id)) = (&task.task_id, &task.framework_id) else {
                continue;
            };
            if !is_terminal(task.state()) {
                continue;
            }
            let Some(framework) = self.frameworks.get(&framework_id.value) else {
                continue;
            };
            let completed = known.entry(framework_id.value.clone()).or_insert_with(|| {
                framework
                    .completed_tasks
                    .iter()
                    .filter(|t| t.agent_id.as_ref().is_some_and(|a| a.value == agent_id))
                    .filter_map(|t| Some(t.task_id.as_ref()?.value.clone()))
                    .collect()
            });
            if framework.tasks.contains_key(&task_id.value)
                || !completed.insert(task_id.value.clone())
            {
                continue;
            }
            let Some(framework) = self.frameworks.get_mut(&framework_id.value) else {
                continue;
            };
            let mut task = task.clone();
            task.agent_id = Some(v1::AgentId { value: agent_id.to_string() });
            framework.completed_tasks.push_back(Arc::new(task));
            while framework.completed_tasks.len() > limit {
                framework.completed_tasks.pop_front();
            }
        }
    }

    /// After a restart, agents that did not re-register by the deadline become unreachable:
    /// durable in the registry, reported to every connected framework as FAILURE, and from
    /// then on reconciliation answers TASK_UNREACHABLE (or TASK_LOST) for their tasks. They
    /// may still come back.
    pub(super) fn expire_reregistrations(&mut self, now: Duration, out: &mut Vec<Output>) {
        if self.reregister_deadline.is_none_or(|deadline| now < deadline) {
            return;
        }
        self.reregister_deadline = None;
        for (id, mut record) in std::mem::take(&mut self.recovered_agents) {
            record.unreachable_time = Some(time_info(now));
            out.push(Output::Persist(RegistryOp::UpdateAgent(record.clone())));
            self.announce_agent_failure(&id, out);
            self.unreachable_agents.insert(id, record);
        }
    }

    /// The other half of a re-registration: what the master has on record for the agent but
    /// the agent did not report is gone. Such tasks end TASK_LOST (TASK_DROPPED for
    /// PARTITION_AWARE frameworks) and give their resources back; such executors are
    /// forgotten with theirs. Called before the agent's resources reach the allocator, so
    /// nothing needs recovering there.
    pub(super) fn drop_unreported(
        &mut self,
        agent_id: &str,
        register: &internal::agent_call::Register,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let reported_tasks: BTreeSet<(&str, &str)> = register
            .tasks
            .iter()
            .filter_map(|t| {
                Some((t.framework_id.as_ref()?.value.as_str(), t.task_id.as_ref()?.value.as_str()))
            })
            .collect();
        let reported_executors: BTreeSet<(&str, &str)> = register
            .executors
            .iter()
            .filter_map(|e| {
                Some((e.framework_id.as_ref()?.value.as_str(), e.executor_id.value.as_str()))
            })
            .collect();
        let mut lost: Vec<(String, String, bool)> = Vec::new();
        let mut forgotten: Vec<(String, String)> = Vec::new();
        let mut executors_gone: Vec<String> = Vec::new();
        // A read-only walk: only the frameworks that lose an executor are taken mutably below,
        // which keeps the cached views of all the others (this runs on every registration).
        for framework in self.frameworks.values() {
            let partition_aware = has_capability(&framework.info, Capability::PartitionAware);
            for (task_id, task) in framework.tasks.on_agent(agent_id) {
                if reported_tasks.contains(&(framework.id.as_str(), task_id.as_str())) {
                    continue;
                }
                if task.released {
                    forgotten.push((framework.id.clone(), task_id.clone()));
                } else {
                    lost.push((framework.id.clone(), task_id.clone(), partition_aware));
                }
            }
            let unreported = |((_, executor_id), _): (&(String, String), _)| {
                !reported_executors.contains(&(framework.id.as_str(), executor_id.as_str()))
            };
            if task_table::on_agent(&framework.executors, agent_id).any(unreported) {
                executors_gone.push(framework.id.clone());
            }
        }
        for framework_id in executors_gone {
            if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                framework.executors.retain(|(executor_agent, executor_id), _| {
                    executor_agent != agent_id
                        || reported_executors
                            .contains(&(framework_id.as_str(), executor_id.as_str()))
                });
            }
        }
        // A task that ended but whose terminal update was never acknowledged, on an agent that
        // no longer holds it (a framework that does not checkpoint loses its updates with the
        // agent process): nothing will ever carry that update again, so the master would keep
        // the task active forever. It tells the framework the terminal state it knows, with no
        // uuid (there is nothing to acknowledge), and completes the task.
        for (framework_id, task_id) in forgotten {
            let Some(task) = self.frameworks.get(&framework_id).and_then(|f| f.tasks.get(&task_id))
            else {
                continue;
            };
            let status = Synthesized {
                task_id: &task_id,
                state: task.state,
                source: Source::Master,
                reason: Some(Reason::Reconciliation),
                message: "The task ended and its agent no longer holds its updates".into(),
                agent_id: Some(agent_id),
                executor_id: None,
            }
            .build(now);
            self.complete_task(&framework_id, &task_id);
            self.send_update(&framework_id, status, out);
        }
        for (framework_id, task_id, partition_aware) in lost {
            let state = if partition_aware { TaskState::TaskDropped } else { TaskState::TaskLost };
            let status = Synthesized {
                task_id: &task_id,
                state,
                source: Source::Master,
                reason: Some(Reason::Reconciliation),
                message: "Task is unknown to the agent".into(),
                agent_id: Some(agent_id),
                executor_id: None,
            }
            .build(now);
            self.apply_status(&framework_id, &status, None, now, out);
            self.send_update(&framework_id, status, out);
        }
    }

    /// UPDATE_WEIGHTS: every weight must be a positive finite number for a valid role.
    pub(super) fn update_weights(
        &mut self,
        weights: Vec<v1::WeightInfo>,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        for weight in &weights {
            let Some(role) = &weight.role else {
                return Err(CallError::BadRequest("Every weight needs a 'role'".into()));
            };
            super::scheduler::validate_role(role).map_err(CallError::BadRequest)?;
            if !weight.weight.is_finite() || weight.weight <= 0.0 {
                return Err(CallError::BadRequest(format!(
                    "Weight of role '{role}' must be positive, got {}",
                    weight.weight
                )));
            }
        }
        for weight in &weights {
            if let Some(role) = &weight.role {
                self.weights.insert(role.clone(), weight.weight);
            }
        }
        self.allocator.update_weights(self.weights.clone());
        out.push(Output::Persist(RegistryOp::UpdateWeights(weights)));
        Ok(())
    }

    /// UPDATE_QUOTA: every config is checked first and then all are applied, or none
    /// (all-or-nothing, as Mesos answers it); enforced by the allocator and kept across
    /// restarts. A config with no guarantees and no limits removes the role's quota.
    pub(super) fn update_quota(
        &mut self,
        quotas: Vec<internal::RegistryQuota>,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        for quota in &quotas {
            super::scheduler::validate_role(&quota.role).map_err(CallError::BadRequest)?;
            if quota.role.contains('/') {
                return Err(CallError::BadRequest(format!(
                    "Quota of role '{}': only top-level roles can have quota",
                    quota.role
                )));
            }
            let amounts = quota.guarantees.iter().chain(&quota.limits);
            if let Some((name, _)) =
                amounts.into_iter().find(|(_, v)| !v.value.is_finite() || v.value < 0.0)
            {
                return Err(CallError::BadRequest(format!(
                    "Quota of role '{}' for '{name}' must be a non-negative number",
                    quota.role
                )));
            }
            if let Some((name, _)) = quota.guarantees.iter().find(|(name, guarantee)| {
                quota.limits.get(*name).is_some_and(|limit| limit.value < guarantee.value)
            }) {
                return Err(CallError::BadRequest(format!(
                    "Quota of role '{}': the guarantee for '{name}' exceeds its limit",
                    quota.role
                )));
            }
        }
        for quota in quotas {
            // Checked above: the allocator has no other reason to refuse.
            let _ = self.allocator.update_quota(&quota.role, quota_config(&quota));
            if quota.guarantees.is_empty() && quota.limits.is_empty() {
                self.quotas.remove(&quota.role);
                out.push(Output::Persist(RegistryOp::RemoveQuota(quota.role)));
            } else {
                self.quotas.insert(quota.role.clone(), quota.clone());
                out.push(Output::Persist(RegistryOp::UpdateQuota(quota)));
            }
        }
        Ok(())
    }

    /// The weights set through the registry, by role.
    pub fn weights(&self) -> &BTreeMap<String, f64> {
        &self.weights
    }

    /// The quota of every role that has one.
    pub fn quotas(&self) -> impl Iterator<Item = &internal::RegistryQuota> {
        self.quotas.values()
    }
}

/// The allocator's view of a quota record.
fn quota_config(quota: &internal::RegistryQuota) -> QuotaConfig {
    let amounts = |m: &std::collections::HashMap<String, v1::value::Scalar>| {
        m.iter().map(|(name, v)| (name.clone(), Scalar::from_f64(v.value))).collect()
    };
    QuotaConfig { guarantees: amounts(&quota.guarantees), limits: amounts(&quota.limits) }
}

/// The TaskInfo the master keeps for a task an agent reported: everything `Task` carries (the
/// command or executor is the agent's business once the task runs).
fn task_info(task: &v1::Task, agent_id: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        name: task.name.clone().unwrap_or_default(),
        task_id: task.task_id.clone().unwrap_or_default(),
        agent_id: v1::AgentId { value: agent_id.to_string() },
        resources: task.resources.clone(),
        health_check: task.health_check.clone(),
        container: task.container.clone(),
        labels: task.labels.clone(),
        discovery: task.discovery.clone(),
        kill_policy: task.kill_policy,
        limits: task.limits.clone(),
        ..Default::default()
    }
}

/// The role resources were allocated to: their `allocation_info`, else the framework's first
/// role.
fn role_of(framework: &v1::FrameworkInfo, resources: &[v1::Resource]) -> String {
    resources
        .iter()
        .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.clone()))
        .or_else(|| framework_roles(framework).ok().and_then(|roles| roles.into_iter().next()))
        .unwrap_or_else(|| "*".to_string())
}
