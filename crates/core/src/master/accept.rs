//! ACCEPT: the offer-level checks, the offer operations applied in order against the offered
//! resources, and the per-task launch validation of `src/master/validation.cpp` (reference
//! §1.3 ACCEPT, §2.7, §5.5, §10 item 10).
//!
//! Problems with tasks travel asynchronously as TASK_ERROR / TASK_LOST / TASK_DROPPED updates
//! while the call itself succeeds, as Mesos does. What is left of the offers after the
//! operations goes back to the allocator with the call's refuse filter.

use std::collections::BTreeSet;
use std::time::Duration;

use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};
use agora_proto::{internal, scheduler as sched};

use super::{ExecutorRecord, Master, Output, Task, has_capability, task_table};
use crate::convert;
use crate::ids::validate_id;
use crate::operations::{self, AgentView, FrameworkView};
use crate::resources::Resources;
use crate::status::Synthesized;

impl Master {
    pub(super) fn accept(
        &mut self,
        framework_id: &str,
        accept: sched::call::Accept,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let refuse = self.refuse_duration(accept.filters.as_ref());
        let offer_error = self.validate_offers(framework_id, &accept.offer_ids);
        // Every named offer of this framework is used up by the call, valid or not.
        let mut offers = Vec::new();
        for offer_id in &accept.offer_ids {
            if self.offers.get(&offer_id.value).is_some_and(|o| o.framework_id == framework_id)
                && let Some(offer) = self.offers.remove(&offer_id.value)
            {
                if let Some(f) = self.frameworks.get_mut(framework_id) {
                    f.offers.remove(&offer_id.value);
                }
                self.offers_changed_on(&offer.agent_id);
                offers.push(offer);
            }
        }
        let tasks = accept.operations.iter().flat_map(launch_tasks);
        if let Some(message) = offer_error {
            let partition_aware = self
                .frameworks
                .get(framework_id)
                .is_some_and(|f| has_capability(&f.info, Capability::PartitionAware));
            let state = if partition_aware { TaskState::TaskDropped } else { TaskState::TaskLost };
            let statuses: Vec<v1::TaskStatus> = tasks
                .map(|task| {
                    Synthesized {
                        task_id: &task.task_id.value,
                        state,
                        source: Source::Master,
                        reason: Some(Reason::InvalidOffers),
                        message: message.clone(),
                        agent_id: None,
                        executor_id: None,
                    }
                    .build(now)
                })
                .collect();
            for status in statuses {
                self.send_update(framework_id, status, out);
            }
            for offer in offers {
                self.allocator.recover(
                    framework_id,
                    &offer.role,
                    &offer.agent_id,
                    &offer.resources,
                    refuse,
                    now,
                );
            }
            return;
        }
        let Some(first) = offers.first() else { return };
        let agent_id = first.agent_id.clone();
        let role = first.role.clone();
        let mut available = Resources::new();
        for offer in &offers {
            available += &offer.resources;
        }
        let at = Placement { framework_id, agent_id: &agent_id, role: &role };
        let mut converted = false;
        // The agent must hold the reservations and volumes before the tasks that use them
        // arrive, so launches wait until the checkpoint is out.
        let mut launches = Vec::new();
        for operation in accept.operations {
            // `scheduler_call` refuses calls with operations Agora does not implement.
            if let Some(launch) = operation.launch {
                for task in launch.task_infos {
                    self.launch_one(&at, task, &mut available, now, &mut launches);
                }
            } else if let Some(group) = operation.launch_group {
                self.launch_group(&at, group, &mut available, now, &mut launches);
            } else {
                converted |= self.convert_resources(&at, &operation, &mut available);
            }
        }
        if converted {
            self.checkpoint_resources(&agent_id, out);
        }
        out.append(&mut launches);
        self.allocator.recover(framework_id, &role, &agent_id, &available, refuse, now);
    }

    /// RESERVE, UNRESERVE, CREATE or DESTROY applied to what is left of the offers. Like
    /// Mesos without operation feedback, an invalid operation is dropped and changes nothing;
    /// a valid one changes the offer, the agent's total and the framework's allocation in
    /// the same way. Returns whether anything changed.
    fn convert_resources(
        &mut self,
        at: &Placement<'_>,
        operation: &v1::offer::Operation,
        available: &mut Resources,
    ) -> bool {
        let Ok(operation) = convert::operation_from_proto(operation) else {
            return false;
        };
        let (Some(framework), Some(agent)) =
            (self.frameworks.get(at.framework_id), self.agents.get(at.agent_id))
        else {
            return false;
        };
        // Resources are reserved for the role the offer is allocated to: reserving for another
        // of the framework's roles would leave them allocated to the wrong role.
        let roles = [at.role.to_string()];
        let view = FrameworkView {
            roles: &roles,
            principal: framework.info.principal.as_deref(),
            shared_resources: has_capability(&framework.info, Capability::SharedResources),
        };
        let in_use = self.volumes_in_use(at.agent_id);
        let agent_view = AgentView { total: &agent.total, volumes_in_use: &in_use };
        let Ok(applied) = operations::apply(available, &view, &agent_view, &operation) else {
            return false;
        };
        let conversion = applied.conversion;
        let Some(total) = conversion.apply_to(&agent.total) else {
            return false;
        };
        *available = applied.offered;
        if let Some(agent) = self.agents.get_mut(at.agent_id) {
            agent.total = total;
        }
        // The offer's resources are allocated to this framework and role, so this succeeds;
        // should it not, the agent's new total still reaches the allocator.
        let updated = self.allocator.update_allocation(
            at.framework_id,
            at.role,
            at.agent_id,
            &conversion.consumed,
            &conversion.converted,
        );
        if updated.is_err()
            && let Some(agent) = self.agents.get(at.agent_id)
        {
            let _ = self.allocator.update_agent(at.agent_id, agent.total.clone());
        }
        true
    }

    /// Persistence ids of the volumes that tasks or executors on the agent hold now: those
    /// cannot be destroyed.
    pub(super) fn volumes_in_use(&self, agent_id: &str) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for framework in self.frameworks.values() {
            for (_, task) in framework.tasks.on_agent(agent_id).filter(|(_, t)| !t.released) {
                ids.extend(task.resources.persistence_ids().into_iter().map(str::to_string));
            }
            for (_, executor) in task_table::on_agent(&framework.executors, agent_id) {
                ids.extend(executor.resources.persistence_ids().into_iter().map(str::to_string));
            }
        }
        ids
    }

    /// Persists the agent's complete set of dynamic reservations and persistent volumes and
    /// tells the agent, which keeps them and reports them when it registers again.
    pub(super) fn checkpoint_resources(&mut self, agent_id: &str, out: &mut Vec<Output>) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let resources = convert::resources_to_proto(&agent.total.checkpointed(), None);
        let mut record = agent.record.clone();
        record.checkpointed_resources = resources;
        self.record_agent(&record, out);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.record = record;
        }
        self.send_checkpoint(agent_id, out);
    }

    /// Sends the agent the checkpointed resources of the master's record.
    pub(super) fn send_checkpoint(&self, agent_id: &str, out: &mut Vec<Output>) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let resources = agent.record.checkpointed_resources.clone();
        let mut e = internal::AgentEvent::default();
        e.set_type(internal::agent_event::Type::CheckpointResources);
        e.checkpoint_resources = Some(internal::agent_event::CheckpointResources { resources });
        self.to_agent(agent_id, e, out);
    }

    /// The offer-level checks of reference §5.5; the first failure is the message every task
    /// of the call is dropped with.
    fn validate_offers(&self, framework_id: &str, offer_ids: &[v1::OfferId]) -> Option<String> {
        if offer_ids.is_empty() {
            return Some("No offers specified".into());
        }
        let mut seen = BTreeSet::new();
        let mut agent: Option<&str> = None;
        let mut role: Option<&str> = None;
        for id in offer_ids {
            if !seen.insert(&id.value) {
                return Some(format!("Duplicate offer {} in the same call", id.value));
            }
            let Some(offer) = self.offers.get(&id.value) else {
                return Some(format!("Offer {} is no longer valid", id.value));
            };
            if offer.framework_id != framework_id {
                return Some(format!("Offer {} has invalid framework", id.value));
            }
            if agent.is_some_and(|a| a != offer.agent_id) {
                return Some("Aggregated offers must belong to one single agent".into());
            }
            if role.is_some_and(|r| r != offer.role) {
                return Some("Aggregated offers must be allocated to the same role".into());
            }
            agent = Some(&offer.agent_id);
            role = Some(&offer.role);
            if self.agents.get(&offer.agent_id).is_none_or(|a| a.conn.is_none()) {
                return Some(format!("Agent {} is not available", offer.agent_id));
            }
        }
        None
    }

    /// One task of a LAUNCH: validated against what is left of the offers, then launched or
    /// answered with TASK_ERROR.
    fn launch_one(
        &mut self,
        at: &Placement<'_>,
        task: v1::TaskInfo,
        available: &mut Resources,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        match self.validate_task(at, &task, available) {
            Ok((consumed, new_executor)) => {
                *available -= &consumed;
                let executor = task.executor.clone();
                self.record_launch(at, vec![task.clone()], executor, new_executor);
                self.emit_task_added(at.framework_id, &task.task_id.value, out);
                let framework_info = self.framework_info(at.framework_id);
                let mut e = internal::AgentEvent::default();
                e.set_type(internal::agent_event::Type::RunTask);
                e.run_task = Some(internal::agent_event::RunTask {
                    framework_info,
                    task: self.stamped(at.framework_id, task),
                });
                self.to_agent(at.agent_id, e, out);
            }
            Err(message) => {
                let status = task_error(&task, at.agent_id, Reason::TaskInvalid, message, now);
                self.send_update(at.framework_id, status, out);
            }
        }
    }

    /// A LAUNCH_GROUP: the group is launched atomically on its executor, or every task of it
    /// gets TASK_ERROR with REASON_TASK_GROUP_INVALID (reference §5.5).
    fn launch_group(
        &mut self,
        at: &Placement<'_>,
        group: v1::offer::operation::LaunchGroup,
        available: &mut Resources,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let mut executor = group.executor;
        let tasks = group.task_group.tasks;
        match self.validate_group(at, &executor, &tasks, available) {
            Ok((consumed, new_executor)) => {
                *available -= &consumed;
                executor
                    .framework_id
                    .get_or_insert_with(|| v1::FrameworkId { value: at.framework_id.to_string() });
                self.record_launch(at, tasks.clone(), Some(executor.clone()), new_executor);
                for task in &tasks {
                    self.emit_task_added(at.framework_id, &task.task_id.value, out);
                }
                let framework_info = self.framework_info(at.framework_id);
                let mut e = internal::AgentEvent::default();
                e.set_type(internal::agent_event::Type::RunTaskGroup);
                e.run_task_group = Some(internal::agent_event::RunTaskGroup {
                    framework_info,
                    executor,
                    task_group: v1::TaskGroupInfo { tasks },
                });
                self.to_agent(at.agent_id, e, out);
            }
            Err(message) => {
                for task in &tasks {
                    let status = task_error(
                        task,
                        at.agent_id,
                        Reason::TaskGroupInvalid,
                        message.clone(),
                        now,
                    );
                    self.send_update(at.framework_id, status, out);
                }
            }
        }
    }

    /// The checks of reference §5.5 every task passes, LAUNCH or LAUNCH_GROUP alike; returns
    /// the task's own resources.
    fn validate_task_basics(
        &self,
        at: &Placement<'_>,
        task: &v1::TaskInfo,
    ) -> Result<Resources, String> {
        let framework = self.frameworks.get(at.framework_id).ok_or("Unknown framework")?;
        let task_id = &task.task_id.value;
        validate_id(task_id).map_err(|e| format!("Task ID '{task_id}' is invalid: {e}"))?;
        if framework.tasks.contains_key(task_id) {
            return Err(format!("Task has duplicate ID: {task_id}"));
        }
        if task.agent_id.value != at.agent_id {
            return Err(format!(
                "Task uses invalid agent: {} (offered agent is {})",
                task.agent_id.value, at.agent_id
            ));
        }
        if let Some(policy) = &task.kill_policy
            && policy.grace_period.as_ref().is_some_and(|g| g.nanoseconds < 0)
        {
            return Err("Task's 'kill_policy.grace_period' must be non-negative".into());
        }
        let resources = convert::resources_from_proto(&task.resources)
            .map_err(|e| format!("Task uses invalid resources: {e}"))?;
        if resources.is_empty() {
            return Err("Task uses no resources".into());
        }
        self.check_allocation_role(at, &task.resources)?;
        Ok(resources)
    }

    /// The per-task checks of reference §5.5 for LAUNCH. On success returns what the task
    /// consumes from the offer and the executor record if it starts a new custom executor.
    fn validate_task(
        &self,
        at: &Placement<'_>,
        task: &v1::TaskInfo,
        available: &Resources,
    ) -> Result<(Resources, Option<(String, ExecutorRecord)>), String> {
        let mut total = self.validate_task_basics(at, task)?;
        // Exactly one of CommandInfo and ExecutorInfo (step 6 of reference §5.5).
        if task.command.is_some() == task.executor.is_some() {
            return Err("Task should have at least one (but not both) of CommandInfo or \
                        ExecutorInfo present"
                .into());
        }
        let mut new_executor = None;
        if let Some(executor) = &task.executor {
            if executor.command.is_none() {
                return Err("Executor must have a CommandInfo".into());
            }
            new_executor = self.validate_executor(at, executor)?;
            if let Some((_, record)) = &new_executor {
                total += &record.resources;
            }
        }
        if !available.contains(&total) {
            return Err(format!(
                "Total resources {total} required by task and its executor is more than \
                 available {available}"
            ));
        }
        Ok((total, new_executor))
    }

    /// The checks of a task group and its executor: a DEFAULT executor (Agora's own) or a
    /// CUSTOM one, tasks without executors of their own and with a command, unique ids, and
    /// everything new fitting in what is left of the offers.
    fn validate_group(
        &self,
        at: &Placement<'_>,
        executor: &v1::ExecutorInfo,
        tasks: &[v1::TaskInfo],
        available: &Resources,
    ) -> Result<(Resources, Option<(String, ExecutorRecord)>), String> {
        use v1::executor_info::Type as ExecutorType;
        match executor.r#type() {
            ExecutorType::Default if executor.command.is_some() => {
                return Err("'ExecutorInfo.command' must not be set for 'DEFAULT' executor".into());
            }
            ExecutorType::Custom if executor.command.is_none() => {
                return Err("'ExecutorInfo.command' must be set for 'CUSTOM' executor".into());
            }
            ExecutorType::Unknown => {
                return Err("'ExecutorInfo.type' must be 'DEFAULT' or 'CUSTOM'".into());
            }
            _ => {}
        }
        if tasks.is_empty() {
            return Err("Task group is empty".into());
        }
        let mut total = Resources::new();
        let mut ids = BTreeSet::new();
        for task in tasks {
            let task_id = &task.task_id.value;
            total += &self.validate_task_basics(at, task)?;
            if !ids.insert(task_id) {
                return Err(format!("Task group has duplicate task ID: {task_id}"));
            }
            if task.executor.is_some() {
                return Err(format!("'TaskInfo.executor' must not be set for task {task_id}"));
            }
            if task.command.is_none() {
                return Err(format!("Task {task_id} of the group must have a CommandInfo"));
            }
        }
        let new_executor = self.validate_executor(at, executor)?;
        if let Some((_, record)) = &new_executor {
            let resources = &record.resources;
            if executor.r#type() == ExecutorType::Default
                && (resources.cpus().is_zero() || resources.mem().is_zero())
            {
                return Err("Default executor must have 'cpus' and 'mem' resources".into());
            }
            total += resources;
        }
        if !available.contains(&total) {
            return Err(format!(
                "Total resources {total} required by task group and its executor is more than \
                 available {available}"
            ));
        }
        Ok((total, new_executor))
    }

    /// Executor checks shared by LAUNCH and LAUNCH_GROUP: a valid id, the right framework,
    /// valid resources, and for an executor already on the agent, the very same ExecutorInfo.
    /// Returns the record to create when the executor is new.
    fn validate_executor(
        &self,
        at: &Placement<'_>,
        executor: &v1::ExecutorInfo,
    ) -> Result<Option<(String, ExecutorRecord)>, String> {
        let framework = self.frameworks.get(at.framework_id).ok_or("Unknown framework")?;
        let executor_id = &executor.executor_id.value;
        validate_id(executor_id)
            .map_err(|e| format!("Executor ID '{executor_id}' is invalid: {e}"))?;
        if let Some(fid) = &executor.framework_id
            && fid.value != at.framework_id
        {
            return Err(format!(
                "ExecutorInfo has an invalid FrameworkID (Actual: {} vs Expected: {})",
                fid.value, at.framework_id
            ));
        }
        let resources = convert::resources_from_proto(&executor.resources)
            .map_err(|e| format!("Executor uses invalid resources: {e}"))?;
        self.check_allocation_role(at, &executor.resources)?;
        let key = (at.agent_id.to_string(), executor_id.clone());
        match framework.executors.get(&key) {
            Some(running) => {
                let mut given = executor.clone();
                given
                    .framework_id
                    .get_or_insert_with(|| v1::FrameworkId { value: at.framework_id.to_string() });
                if running.info != given {
                    return Err(format!(
                        "ExecutorInfo is not compatible with the running executor '{executor_id}'"
                    ));
                }
                Ok(None)
            }
            None => Ok(Some((
                executor_id.clone(),
                ExecutorRecord { role: at.role.to_string(), resources, info: executor.clone() },
            ))),
        }
    }

    /// MULTI_ROLE frameworks echo the offer's `allocation_info` on every resource they use;
    /// others may leave it out, but none may name another role (reference §10 item 13).
    fn check_allocation_role(
        &self,
        at: &Placement<'_>,
        resources: &[v1::Resource],
    ) -> Result<(), String> {
        let multi_role = self
            .frameworks
            .get(at.framework_id)
            .is_some_and(|f| has_capability(&f.info, Capability::MultiRole));
        for resource in resources {
            match resource.allocation_info.as_ref().and_then(|a| a.role.as_deref()) {
                Some(role) if role != at.role => {
                    return Err(format!(
                        "Resource '{}' is allocated to role '{role}', but the offers are \
                         allocated to role '{}'",
                        resource.name, at.role
                    ));
                }
                None if multi_role => {
                    return Err(format!(
                        "Resource '{}' lacks 'allocation_info', which a MULTI_ROLE framework \
                         must copy from the offer",
                        resource.name
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Books launched tasks (and a new executor) into the framework: tasks start as
    /// TASK_STAGING, and each holds its own resources; an executor's are held by its record.
    fn record_launch(
        &mut self,
        at: &Placement<'_>,
        tasks: Vec<v1::TaskInfo>,
        executor: Option<v1::ExecutorInfo>,
        new_executor: Option<(String, ExecutorRecord)>,
    ) {
        let Some(framework) = self.frameworks.get_mut(at.framework_id) else {
            return;
        };
        if let Some((executor_id, mut record)) = new_executor {
            if let Some(mut info) = executor {
                info.framework_id
                    .get_or_insert_with(|| v1::FrameworkId { value: at.framework_id.to_string() });
                record.info = info;
            }
            framework.executors.insert((at.agent_id.to_string(), executor_id), record);
        }
        for task in tasks {
            let resources = convert::resources_from_proto(&task.resources).unwrap_or_default();
            framework.tasks.insert(
                task.task_id.value.clone(),
                Task {
                    info: task,
                    agent_id: at.agent_id.to_string(),
                    role: at.role.to_string(),
                    resources,
                    state: TaskState::TaskStaging,
                    status_update_state: None,
                    status_update_uuid: None,
                    latest_status: None,
                    released: false,
                    kill: None,
                    view: Default::default(),
                },
            );
        }
    }

    /// The task as the agent gets it: a custom executor carries the framework id.
    fn stamped(&self, framework_id: &str, mut task: v1::TaskInfo) -> v1::TaskInfo {
        if let Some(executor) = task.executor.as_mut() {
            executor
                .framework_id
                .get_or_insert_with(|| v1::FrameworkId { value: framework_id.to_string() });
        }
        task
    }

    fn framework_info(&self, framework_id: &str) -> v1::FrameworkInfo {
        self.frameworks.get(framework_id).map(|f| f.info.clone()).unwrap_or_default()
    }

    /// Sends an event to an agent if it is connected; a disconnected agent learns of its
    /// tasks when it registers again.
    pub(super) fn to_agent(
        &self,
        agent_id: &str,
        event: internal::AgentEvent,
        out: &mut Vec<Output>,
    ) {
        if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
            out.push(Output::ToAgent { conn, event });
        }
    }
}

/// Where the operations of one ACCEPT happen: the framework, the offers' agent and role.
struct Placement<'a> {
    framework_id: &'a str,
    agent_id: &'a str,
    role: &'a str,
}

/// The TASK_ERROR answer for a task that failed validation.
fn task_error(
    task: &v1::TaskInfo,
    agent_id: &str,
    reason: Reason,
    message: String,
    now: Duration,
) -> v1::TaskStatus {
    Synthesized {
        task_id: &task.task_id.value,
        state: TaskState::TaskError,
        source: Source::Master,
        reason: Some(reason),
        message,
        agent_id: Some(agent_id),
        executor_id: None,
    }
    .build(now)
}

fn launch_tasks(operation: &v1::offer::Operation) -> Vec<&v1::TaskInfo> {
    match (&operation.launch, &operation.launch_group) {
        (Some(launch), _) => launch.task_infos.iter().collect(),
        (None, Some(group)) => group.task_group.tasks.iter().collect(),
        _ => Vec::new(),
    }
}
