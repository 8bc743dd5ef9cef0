//! The scheduler side of the master: SUBSCRIBE and every other `scheduler::Call`, validated in
//! the order Mesos checks them, and the launch validation of `src/master/validation.cpp`
//! (reference §1.1, §1.3, §5.5).
//!
//! Errors a client must see synchronously become `CallError`s (400/403); problems with tasks
//! travel asynchronously as TASK_ERROR / TASK_LOST / TASK_DROPPED updates while the call itself
//! succeeds, as Mesos does. Not here yet: UPDATE_FRAMEWORK, operation
//! feedback and offer operations other than LAUNCH.

use std::collections::BTreeSet;
use std::time::Duration;

use agora_proto::scheduler::call::Type as CallType;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};
use agora_proto::{internal, scheduler as sched};

use super::{
    CallError, ConnId, ExecutorRecord, Framework, Master, Output, ReqId, Task, error_event, event,
    has_capability,
};
use crate::convert;
use crate::ids::validate_id;
use crate::resources::Resources;
use crate::status::Synthesized;

fn invalid(message: impl std::fmt::Display) -> CallError {
    CallError::BadRequest(format!("Failed to validate scheduler::Call: {message}"))
}

/// Checks that the payload the call type needs is present (Mesos `validation::scheduler::call`).
/// The HTTP shell also calls it on SUBSCRIBE, because Mesos validates the call before it looks
/// at `Accept` (reference §1.1 steps 6 and 7).
pub fn validate_call(call: &sched::Call) -> Result<(), CallError> {
    let Some(kind) = call.r#type.and_then(|t| CallType::try_from(t).ok()) else {
        return Err(invalid("Expecting 'type' to be present"));
    };
    if kind != CallType::Subscribe && call.framework_id.is_none() {
        return Err(invalid("Expecting 'framework_id' to be present"));
    }
    let present = match kind {
        CallType::Subscribe => Some(("subscribe", call.subscribe.is_some())),
        CallType::Accept => Some(("accept", call.accept.is_some())),
        CallType::Decline => Some(("decline", call.decline.is_some())),
        CallType::Kill => Some(("kill", call.kill.is_some())),
        CallType::Shutdown => Some(("shutdown", call.shutdown.is_some())),
        CallType::Acknowledge => Some(("acknowledge", call.acknowledge.is_some())),
        CallType::Reconcile => Some(("reconcile", call.reconcile.is_some())),
        CallType::Message => Some(("message", call.message.is_some())),
        CallType::Request => Some(("request", call.request.is_some())),
        CallType::AcceptInverseOffers => {
            Some(("accept_inverse_offers", call.accept_inverse_offers.is_some()))
        }
        CallType::DeclineInverseOffers => {
            Some(("decline_inverse_offers", call.decline_inverse_offers.is_some()))
        }
        CallType::UpdateFramework => Some(("update_framework", call.update_framework.is_some())),
        CallType::Unknown => return Err(invalid("Expecting 'type' to be present")),
        _ => None,
    };
    match present {
        Some((field, false)) => Err(invalid(format!("Expecting '{field}' to be present"))),
        _ => Ok(()),
    }
}

/// The roles a framework subscribes with, per the MULTI_ROLE rules of reference §2.2.
#[expect(deprecated, reason = "the single `role` is how non-MULTI_ROLE frameworks name theirs")]
fn framework_roles(info: &v1::FrameworkInfo) -> Result<Vec<String>, String> {
    let roles: Vec<String> = if has_capability(info, Capability::MultiRole) {
        if info.role.is_some() {
            return Err(
                "'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable"
                    .into(),
            );
        }
        let unique: BTreeSet<&String> = info.roles.iter().collect();
        if unique.len() != info.roles.len() {
            return Err("'FrameworkInfo.roles' contains duplicate items".into());
        }
        info.roles.clone()
    } else {
        if !info.roles.is_empty() {
            return Err("'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable".into());
        }
        vec![info.role().to_string()]
    };
    for role in &roles {
        validate_role(role)?;
    }
    Ok(roles)
}

fn validate_role(role: &str) -> Result<(), String> {
    if role == "*" {
        return Ok(());
    }
    let bad = role.is_empty()
        || role.starts_with('-')
        || role.split('/').any(|part| part.is_empty() || part == "." || part == "..")
        || role.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\' || c == '*');
    if bad { Err(format!("Role '{role}' is invalid")) } else { Ok(()) }
}

impl Master {
    pub(super) fn subscribe(
        &mut self,
        req: ReqId,
        conn: ConnId,
        stream_id: String,
        call: sched::Call,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if let Err(e) = validate_call(&call) {
            out.push(Output::Reply { req, result: Err(e) });
            return;
        }
        let Some(subscribe) = call.subscribe else {
            out.push(Output::Reply {
                req,
                result: Err(invalid("Expecting 'subscribe' to be present")),
            });
            return;
        };
        let mut info = subscribe.framework_info;
        if let (Some(top), Some(inner)) = (&call.framework_id, &info.id)
            && top.value != inner.value
        {
            let e = invalid("'framework_id' differs from 'subscribe.framework_info.id'");
            out.push(Output::Reply { req, result: Err(e) });
            return;
        }
        let requested_id = info.id.clone().or(call.framework_id).map(|id| id.value);
        out.push(Output::Reply { req, result: Ok(()) });

        // From here on errors travel on the stream, which then closes (reference §1.2 step 3).
        let fail = |out: &mut Vec<Output>, message: String| {
            out.push(Output::ToScheduler { conn, event: error_event(message) });
            out.push(Output::CloseScheduler { conn });
        };
        let roles = match framework_roles(&info) {
            Ok(roles) => roles,
            Err(message) => return fail(out, message),
        };
        if let Some(role) = subscribe.suppressed_roles.iter().find(|r| !roles.contains(r)) {
            return fail(
                out,
                format!("Suppressed role '{role}' is not one of the framework's roles"),
            );
        }
        if let Some(id) = &requested_id {
            if let Err(e) = validate_id(id) {
                return fail(out, format!("Invalid framework id: {e}"));
            }
            if self.removed_frameworks.contains(id) {
                return fail(out, "Framework has been removed".into());
            }
        }

        let id = match requested_id {
            Some(id) => id,
            None => {
                let id = format!("{}-{:04}", self.config.master_info.id, self.next_framework);
                self.next_framework += 1;
                id
            }
        };
        info.id = Some(v1::FrameworkId { value: id.clone() });

        if let Some(framework) = self.frameworks.get_mut(&id) {
            // Failover: the newest subscription wins and the old stream learns why it ends.
            if let Some(old) = framework.conn.take() {
                self.scheduler_conns.remove(&old);
                out.push(Output::ToScheduler {
                    conn: old,
                    event: error_event("Framework failed over"),
                });
                out.push(Output::CloseScheduler { conn: old });
            }
            // `user` and `checkpoint` cannot change on re-subscription; Mesos silently keeps them.
            info.user = framework.info.user.clone();
            info.checkpoint = framework.info.checkpoint;
            framework.info = info.clone();
            framework.conn = Some(conn);
            framework.stream_id = Some(stream_id);
            framework.disconnected_at = None;
            let offers: Vec<String> = framework.offers.iter().cloned().collect();
            for offer_id in offers {
                self.remove_offer(&offer_id, None, false, now, out);
            }
            // A re-subscription may change the roles (reference §1.3, SUBSCRIBE); this also
            // activates the framework.
            self.allocator.add_framework(&id, &roles, &[], true);
            self.allocator.revive(&id, &[]);
            if !subscribe.suppressed_roles.is_empty() {
                self.allocator.suppress(&id, &subscribe.suppressed_roles);
            }
        } else {
            self.allocator.add_framework(&id, &roles, &subscribe.suppressed_roles, true);
            self.frameworks.insert(
                id.clone(),
                Framework {
                    id: id.clone(),
                    info,
                    conn: Some(conn),
                    stream_id: Some(stream_id),
                    disconnected_at: None,
                    offers: BTreeSet::new(),
                    tasks: Default::default(),
                    completed_tasks: Default::default(),
                    executors: Default::default(),
                },
            );
        }
        self.scheduler_conns.insert(conn, id.clone());

        let mut subscribed = event(sched::event::Type::Subscribed);
        subscribed.subscribed = Some(sched::event::Subscribed {
            framework_id: v1::FrameworkId { value: id },
            heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
            master_info: Some(self.config.master_info.clone()),
        });
        out.push(Output::ToScheduler { conn, event: subscribed });
        out.push(Output::ToScheduler { conn, event: event(sched::event::Type::Heartbeat) });
        self.allocate(now, out);
    }

    pub(super) fn scheduler_closed(&mut self, conn: ConnId, now: Duration, out: &mut Vec<Output>) {
        let Some(id) = self.scheduler_conns.remove(&conn) else {
            return;
        };
        let Some(framework) = self.frameworks.get_mut(&id) else {
            return;
        };
        if framework.conn != Some(conn) {
            return;
        }
        framework.conn = None;
        framework.stream_id = None;
        framework.disconnected_at = Some(now);
        let offers: Vec<String> = framework.offers.iter().cloned().collect();
        for offer_id in offers {
            self.remove_offer(&offer_id, None, false, now, out);
        }
        self.allocator.deactivate_framework(&id);
        self.expire_failovers(now, out);
    }

    /// Every call but SUBSCRIBE, checked in the order of reference §1.1.
    pub(super) fn scheduler_call(
        &mut self,
        stream_id: Option<String>,
        call: sched::Call,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        validate_call(&call)?;
        if call.r#type() == CallType::Subscribe {
            return Err(invalid("SUBSCRIBE must be sent as a streaming request"));
        }
        let framework_id = call.framework_id.as_ref().map(|f| f.value.clone()).unwrap_or_default();
        let Some(framework) = self.frameworks.get(&framework_id) else {
            return Err(CallError::BadRequest("Framework cannot be found".into()));
        };
        if framework.conn.is_none() {
            return Err(CallError::Forbidden("Framework is not subscribed".into()));
        }
        let Some(given) = stream_id else {
            return Err(CallError::BadRequest(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
            ));
        };
        if framework.stream_id.as_deref() != Some(given.as_str()) {
            return Err(CallError::BadRequest(format!(
                "The stream ID '{given}' included in this request didn't match the stream ID \
                 currently associated with framework ID {framework_id}"
            )));
        }

        match call.r#type() {
            CallType::Teardown => self.remove_framework(&framework_id, now, out),
            CallType::Accept => {
                let accept = call.accept.unwrap_or_default();
                // Only LAUNCH is implemented so far; refusing the whole call loses nothing,
                // where dropping an operation silently would.
                if let Some(op) = accept
                    .operations
                    .iter()
                    .find(|op| op.r#type() != v1::offer::operation::Type::Launch)
                {
                    return Err(CallError::BadRequest(format!(
                        "Offer operation {} is not supported by this version of Agora",
                        op.r#type().as_str_name()
                    )));
                }
                self.accept(&framework_id, accept, now, out);
            }
            CallType::Decline => {
                let decline = call.decline.unwrap_or_default();
                let refuse = self.refuse_duration(decline.filters.as_ref());
                for offer_id in decline.offer_ids {
                    if self
                        .offers
                        .get(&offer_id.value)
                        .is_some_and(|o| o.framework_id == framework_id)
                    {
                        self.remove_offer(&offer_id.value, refuse, false, now, out);
                    }
                }
            }
            CallType::Revive => {
                let roles = call.revive.map(|r| r.roles).unwrap_or_default();
                self.allocator.revive(&framework_id, &roles);
                self.allocate(now, out);
            }
            CallType::Suppress => {
                let roles = call.suppress.map(|s| s.roles).unwrap_or_default();
                self.allocator.suppress(&framework_id, &roles);
            }
            CallType::Kill => {
                let kill = call.kill.unwrap_or_default();
                self.kill(&framework_id, kill, now, out);
            }
            CallType::Acknowledge => {
                let ack = call.acknowledge.unwrap_or_default();
                let parts =
                    (ack.agent_id.value.clone(), ack.task_id.value.clone(), ack.uuid.clone());
                self.acknowledge(&framework_id, ack)?;
                self.forward_acknowledgement(&framework_id, &parts, out);
            }
            CallType::Reconcile => {
                let reconcile = call.reconcile.unwrap_or_default();
                self.reconcile(&framework_id, reconcile, now, out);
            }
            CallType::Message => {
                let message = call.message.unwrap_or_default();
                let (Some(agent_id), Some(executor_id), Some(data)) =
                    (message.agent_id, message.executor_id, message.data)
                else {
                    return Err(invalid(
                        "Expecting 'message.agent_id', 'message.executor_id' and 'message.data' \
                         to be present",
                    ));
                };
                // Best effort, as in Mesos: a message for an agent that is not connected is
                // dropped.
                if let Some(conn) = self.agents.get(&agent_id.value).and_then(|a| a.conn) {
                    let mut e = internal::AgentEvent::default();
                    e.set_type(internal::agent_event::Type::FrameworkMessage);
                    e.framework_message = Some(internal::agent_event::FrameworkMessage {
                        framework_id: v1::FrameworkId { value: framework_id.clone() },
                        executor_id,
                        data,
                    });
                    out.push(Output::ToAgent { conn, event: e });
                }
            }
            CallType::Shutdown => {
                let shutdown = call.shutdown.unwrap_or_default();
                if let Some(conn) = self.agents.get(&shutdown.agent_id.value).and_then(|a| a.conn) {
                    let mut e = internal::AgentEvent::default();
                    e.set_type(internal::agent_event::Type::ShutdownExecutor);
                    e.shutdown_executor = Some(internal::agent_event::ShutdownExecutor {
                        framework_id: v1::FrameworkId { value: framework_id.clone() },
                        executor_id: shutdown.executor_id,
                    });
                    out.push(Output::ToAgent { conn, event: e });
                }
            }
            // Mesos's allocator ignores REQUEST, and without maintenance there are no inverse
            // offers to answer, so these are accepted and have no effect, as in Mesos.
            CallType::Request | CallType::AcceptInverseOffers | CallType::DeclineInverseOffers => {}
            other => {
                return Err(CallError::BadRequest(format!(
                    "Call type {} is not supported by this version of Agora",
                    other.as_str_name()
                )));
            }
        }
        Ok(())
    }

    fn accept(
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

    fn kill(
        &mut self,
        framework_id: &str,
        kill: sched::call::Kill,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let task = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.tasks.get_mut(&kill.task_id.value));
        match task {
            Some(task) => {
                let policy = kill.kill_policy.or(task.info.kill_policy);
                task.kill = Some(policy);
                let agent_id = task.agent_id.clone();
                self.send_kill(framework_id, &agent_id, &kill.task_id.value, policy, out);
            }
            // Mesos answers a kill of an unknown task with explicit reconciliation.
            None => {
                let status = self.reconcile_unknown(
                    framework_id,
                    &kill.task_id.value,
                    kill.agent_id.as_ref(),
                    now,
                );
                self.send_update(framework_id, status, out);
            }
        }
    }

    /// Asks the agent running a task to kill it; a disconnected agent gets the kill when it
    /// registers again.
    pub(super) fn send_kill(
        &self,
        framework_id: &str,
        agent_id: &str,
        task_id: &str,
        kill_policy: Option<v1::KillPolicy>,
        out: &mut Vec<Output>,
    ) {
        if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
            let mut e = internal::AgentEvent::default();
            e.set_type(internal::agent_event::Type::KillTask);
            e.kill_task = Some(internal::agent_event::KillTask {
                framework_id: v1::FrameworkId { value: framework_id.to_string() },
                task_id: v1::TaskId { value: task_id.to_string() },
                kill_policy,
            });
            out.push(Output::ToAgent { conn, event: e });
        }
    }

    /// Validates an ACKNOWLEDGE and, when it acknowledges the terminal update in flight,
    /// completes the task.
    fn acknowledge(
        &mut self,
        framework_id: &str,
        ack: sched::call::Acknowledge,
    ) -> Result<(), CallError> {
        if ack.uuid.len() != 16 {
            return Err(invalid(format!(
                "'acknowledge.uuid' must be a 16-byte UUID, got {} bytes",
                ack.uuid.len()
            )));
        }
        let Some(framework) = self.frameworks.get(framework_id) else {
            return Ok(());
        };
        let Some(task) = framework.tasks.get(&ack.task_id.value) else {
            return Ok(());
        };
        if task.status_update_uuid.as_ref() == Some(&ack.uuid)
            && task.status_update_state.is_some_and(crate::status::is_terminal)
        {
            self.complete_task(framework_id, &ack.task_id.value);
        } else if task.status_update_uuid.as_ref() == Some(&ack.uuid)
            && let Some(task) = self
                .frameworks
                .get_mut(framework_id)
                .and_then(|f| f.tasks.get_mut(&ack.task_id.value))
        {
            task.status_update_state = None;
            task.status_update_uuid = None;
        }
        Ok(())
    }

    fn forward_acknowledgement(
        &self,
        framework_id: &str,
        (agent_id, task_id, uuid): &(String, String, bytes::Bytes),
        out: &mut Vec<Output>,
    ) {
        if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
            let mut e = internal::AgentEvent::default();
            e.set_type(internal::agent_event::Type::Acknowledge);
            e.acknowledge = Some(internal::agent_event::Acknowledge {
                framework_id: v1::FrameworkId { value: framework_id.to_string() },
                task_id: v1::TaskId { value: task_id.clone() },
                uuid: uuid.clone(),
            });
            out.push(Output::ToAgent { conn, event: e });
        }
    }

    /// Implicit (no tasks named) and explicit reconciliation, reference §5.8.
    fn reconcile(
        &mut self,
        framework_id: &str,
        reconcile: sched::call::Reconcile,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let statuses: Vec<v1::TaskStatus> = if reconcile.tasks.is_empty() {
            framework.tasks.values().map(|t| reconciled(t, now)).collect()
        } else {
            reconcile
                .tasks
                .iter()
                .filter_map(|r| Some((r.task_id.as_ref()?, r.agent_id.as_ref())))
                .map(|(task_id, agent_id)| match framework.tasks.get(&task_id.value) {
                    Some(task) => reconciled(task, now),
                    None => self.reconcile_unknown(framework_id, &task_id.value, agent_id, now),
                })
                .collect()
        };
        for status in statuses {
            self.send_update(framework_id, status, out);
        }
    }

    /// The answer for a task the master does not know.
    fn reconcile_unknown(
        &self,
        framework_id: &str,
        task_id: &str,
        agent_id: Option<&v1::AgentId>,
        now: Duration,
    ) -> v1::TaskStatus {
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| has_capability(&f.info, Capability::PartitionAware));
        let agent_known = agent_id.is_some_and(|a| self.agents.contains_key(&a.value));
        let (state, message) = match (agent_known, partition_aware) {
            (true, true) => (TaskState::TaskGone, "Task is unknown to the agent"),
            (true, false) => (TaskState::TaskLost, "Task is unknown to the agent"),
            (false, true) => (TaskState::TaskUnknown, "Task is unknown"),
            (false, false) => (TaskState::TaskLost, "Task is unknown"),
        };
        Synthesized {
            task_id,
            state,
            source: Source::Master,
            reason: Some(Reason::Reconciliation),
            message: message.into(),
            agent_id: agent_id.map(|a| a.value.as_str()),
            executor_id: None,
        }
        .build(now)
    }
}

/// The latest known state of a task, as reconciliation reports it.
fn reconciled(task: &Task, now: Duration) -> v1::TaskStatus {
    let mut status = Synthesized {
        task_id: &task.info.task_id.value,
        state: task.status_update_state.unwrap_or(task.state),
        source: Source::Master,
        reason: Some(Reason::Reconciliation),
        message: "Reconciliation: Latest task state".into(),
        agent_id: Some(&task.agent_id),
        executor_id: None,
    }
    .build(now);
    if let Some(latest) = &task.latest_status {
        status.healthy = latest.healthy;
        status.container_status = latest.container_status.clone();
        status.executor_id = latest.executor_id.clone();
    }
    status
}

fn launch_tasks(operation: &v1::offer::Operation) -> Vec<&v1::TaskInfo> {
    match (&operation.launch, &operation.launch_group) {
        (Some(launch), _) => launch.task_infos.iter().collect(),
        (None, Some(group)) => group.task_group.tasks.iter().collect(),
        _ => Vec::new(),
    }
}
