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

use super::{ExecutorRecord, Master, Output, Task, has_capability};
use crate::convert;
use crate::ids::validate_id;
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
        for operation in accept.operations {
            // `scheduler_call` refuses calls with operations other than LAUNCH.
            let launch = operation.launch.unwrap_or_default();
            for task in launch.task_infos {
                match self.validate_task(framework_id, &agent_id, &task, &available) {
                    Ok((consumed, new_executor)) => {
                        available -= &consumed;
                        self.launch(framework_id, &agent_id, &role, task, new_executor, out);
                    }
                    Err(message) => {
                        let status = Synthesized {
                            task_id: &task.task_id.value,
                            state: TaskState::TaskError,
                            source: Source::Master,
                            reason: Some(Reason::TaskInvalid),
                            message,
                            agent_id: Some(&agent_id),
                            executor_id: None,
                        }
                        .build(now);
                        self.send_update(framework_id, status, out);
                    }
                }
            }
        }
        self.allocator.recover(framework_id, &role, &agent_id, &available, refuse, now);
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

    /// The per-task checks of reference §5.5 that apply to LAUNCH. On success returns what the
    /// task consumes from the offer and the executor record if it starts a new custom executor.
    fn validate_task(
        &self,
        framework_id: &str,
        agent_id: &str,
        task: &v1::TaskInfo,
        available: &Resources,
    ) -> Result<(Resources, Option<(String, ExecutorRecord)>), String> {
        let framework = self.frameworks.get(framework_id).ok_or("Unknown framework")?;
        let task_id = &task.task_id.value;
        validate_id(task_id).map_err(|e| format!("Task ID '{task_id}' is invalid: {e}"))?;
        if framework.tasks.contains_key(task_id) {
            return Err(format!("Task has duplicate ID: {task_id}"));
        }
        if task.agent_id.value != agent_id {
            return Err(format!(
                "Task uses invalid agent: {} (offered agent is {agent_id})",
                task.agent_id.value
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
        // Exactly one of CommandInfo and ExecutorInfo (step 6 of reference §5.5).
        if task.command.is_some() == task.executor.is_some() {
            return Err("Task should have at least one (but not both) of CommandInfo or \
                        ExecutorInfo present"
                .into());
        }
        let mut total = resources.clone();
        let mut new_executor = None;
        if let Some(executor) = &task.executor {
            let executor_id = &executor.executor_id.value;
            validate_id(executor_id)
                .map_err(|e| format!("Executor ID '{executor_id}' is invalid: {e}"))?;
            if let Some(fid) = &executor.framework_id
                && fid.value != framework_id
            {
                return Err(format!(
                    "ExecutorInfo has an invalid FrameworkID (Actual: {} vs Expected: {framework_id})",
                    fid.value
                ));
            }
            if executor.command.is_none() {
                return Err("Executor must have a CommandInfo".into());
            }
            let executor_resources = convert::resources_from_proto(&executor.resources)
                .map_err(|e| format!("Executor uses invalid resources: {e}"))?;
            let key = (agent_id.to_string(), executor_id.clone());
            match framework.executors.get(&key) {
                Some(running) => {
                    let mut given = executor.clone();
                    given
                        .framework_id
                        .get_or_insert_with(|| v1::FrameworkId { value: framework_id.to_string() });
                    if running.info != given {
                        return Err(format!(
                            "ExecutorInfo is not compatible with the running executor \
                             '{executor_id}'"
                        ));
                    }
                }
                None => {
                    total += &executor_resources;
                    new_executor = Some((
                        executor_id.clone(),
                        ExecutorRecord {
                            role: String::new(),
                            resources: executor_resources,
                            info: executor.clone(),
                        },
                    ));
                }
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

    fn launch(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        mut task: v1::TaskInfo,
        new_executor: Option<(String, ExecutorRecord)>,
        out: &mut Vec<Output>,
    ) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if let Some(executor) = task.executor.as_mut()
            && executor.framework_id.is_none()
        {
            executor.framework_id = Some(v1::FrameworkId { value: framework_id.to_string() });
        }
        if let Some((executor_id, mut record)) = new_executor {
            record.role = role.to_string();
            if let Some(info) = &task.executor {
                record.info = info.clone();
            }
            framework.executors.insert((agent_id.to_string(), executor_id), record);
        }
        // The task's own resources; an executor's are tracked with the executor.
        let resources = convert::resources_from_proto(&task.resources).unwrap_or_default();
        framework.tasks.insert(
            task.task_id.value.clone(),
            Task {
                info: task.clone(),
                agent_id: agent_id.to_string(),
                role: role.to_string(),
                resources,
                state: TaskState::TaskStaging,
                status_update_state: None,
                status_update_uuid: None,
                latest_status: None,
                released: false,
                kill: None,
            },
        );
        let framework_info = framework.info.clone();
        if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
            let mut e = internal::AgentEvent::default();
            e.set_type(internal::agent_event::Type::RunTask);
            e.run_task = Some(internal::agent_event::RunTask { framework_info, task });
            out.push(Output::ToAgent { conn, event: e });
        }
    }
}

fn launch_tasks(operation: &v1::offer::Operation) -> Vec<&v1::TaskInfo> {
    match (&operation.launch, &operation.launch_group) {
        (Some(launch), _) => launch.task_infos.iter().collect(),
        (None, Some(group)) => group.task_group.tasks.iter().collect(),
        _ => Vec::new(),
    }
}
