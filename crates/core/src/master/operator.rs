//! The mutating calls of the operator API (reference §4.2) and its event stream.
//!
//! RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES and DESTROY_VOLUMES reuse the pure
//! offer operations of `operations.rs` against the agent's unallocated resources, after the
//! agent's outstanding offers are rescinded (as Mesos does, so that no offer holds what the
//! operation changes). TEARDOWN removes a framework as its failover timeout would;
//! MARK_AGENT_GONE ends an agent's tasks for good and refuses the agent from then on.
//!
//! Operator stream events (TASK_ADDED, TASK_UPDATED, AGENT_ADDED, ...) are built here and sent
//! to every open operator stream as `Output::ToOperator`, in the order the changes happen;
//! the places that change the state call the `emit_*` functions. Not here: the read-only
//! queries (`view.rs`) and the encoding of anything (the shell).

use std::collections::BTreeSet;
use std::time::Duration;

use agora_proto::internal;
use agora_proto::master::{self as operator, event};
use agora_proto::scheduler as sched;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};

use super::{CallError, ConnId, Master, Output, RegistryOp, ReqId, has_capability, time_info};
use crate::convert;
use crate::operations::{self, AgentView, FrameworkView, OperationError};
use crate::status::Synthesized;

fn new_event(kind: event::Type) -> operator::Event {
    let mut e = operator::Event::default();
    e.set_type(kind);
    e
}

impl Master {
    /// Opens an operator stream: SUBSCRIBED with the whole state, then a first heartbeat.
    pub(super) fn operator_subscribe(&mut self, req: ReqId, conn: ConnId, out: &mut Vec<Output>) {
        out.push(Output::Reply { req, result: Ok(()) });
        // Beyond the cap the oldest subscriber goes, as in Mesos; the shell numbers
        // connections in the order they open, so the oldest is the smallest.
        while self.operator_conns.len() >= self.config.max_operator_event_stream_subscribers {
            let Some(oldest) = self.operator_conns.pop_first() else {
                break;
            };
            out.push(Output::CloseOperator { conn: oldest });
        }
        self.operator_conns.insert(conn);
        let mut subscribed = new_event(event::Type::Subscribed);
        subscribed.subscribed = Some(event::Subscribed {
            get_state: Some(self.get_state()),
            heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
        });
        out.push(Output::ToOperator { conn, event: Box::new(subscribed) });
        out.push(Output::ToOperator { conn, event: Box::new(new_event(event::Type::Heartbeat)) });
    }

    /// Sends `event` to every open operator stream.
    pub(super) fn operator_event(&self, event: &operator::Event, out: &mut Vec<Output>) {
        for &conn in &self.operator_conns {
            out.push(Output::ToOperator { conn, event: Box::new(event.clone()) });
        }
    }

    pub(super) fn emit_task_added(&self, framework_id: &str, task_id: &str, out: &mut Vec<Output>) {
        if self.operator_conns.is_empty() {
            return;
        }
        if let Some(task) = self.task_info_view(framework_id, task_id) {
            let mut e = new_event(event::Type::TaskAdded);
            e.task_added = Some(event::TaskAdded { task });
            self.operator_event(&e, out);
        }
    }

    pub(super) fn emit_task_updated(
        &self,
        framework_id: &str,
        status: &v1::TaskStatus,
        state: TaskState,
        out: &mut Vec<Output>,
    ) {
        if self.operator_conns.is_empty() {
            return;
        }
        let mut e = new_event(event::Type::TaskUpdated);
        e.task_updated = Some(event::TaskUpdated {
            framework_id: v1::FrameworkId { value: framework_id.to_string() },
            status: status.clone(),
            state: state as i32,
        });
        self.operator_event(&e, out);
    }

    pub(super) fn emit_agent_added(&self, agent_id: &str, out: &mut Vec<Output>) {
        if self.operator_conns.is_empty() {
            return;
        }
        if let Some(agent) = self.agent_info_view(agent_id) {
            let mut e = new_event(event::Type::AgentAdded);
            e.agent_added = Some(event::AgentAdded { agent });
            self.operator_event(&e, out);
        }
    }

    pub(super) fn emit_agent_removed(&self, agent_id: &str, out: &mut Vec<Output>) {
        let mut e = new_event(event::Type::AgentRemoved);
        e.agent_removed =
            Some(event::AgentRemoved { agent_id: v1::AgentId { value: agent_id.to_string() } });
        self.operator_event(&e, out);
    }

    /// FRAMEWORK_ADDED for a new framework, FRAMEWORK_UPDATED for a known one.
    pub(super) fn emit_framework(&self, framework_id: &str, added: bool, out: &mut Vec<Output>) {
        if self.operator_conns.is_empty() {
            return;
        }
        let Some(framework) = self.framework_info_view(framework_id) else {
            return;
        };
        let e = if added {
            let mut e = new_event(event::Type::FrameworkAdded);
            e.framework_added = Some(event::FrameworkAdded { framework });
            e
        } else {
            let mut e = new_event(event::Type::FrameworkUpdated);
            e.framework_updated = Some(event::FrameworkUpdated { framework });
            e
        };
        self.operator_event(&e, out);
    }

    pub(super) fn emit_framework_removed(&self, info: &v1::FrameworkInfo, out: &mut Vec<Output>) {
        let mut e = new_event(event::Type::FrameworkRemoved);
        e.framework_removed = Some(event::FrameworkRemoved { framework_info: info.clone() });
        self.operator_event(&e, out);
    }

    /// RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES or DESTROY_VOLUMES on an agent's
    /// unallocated resources. 400 for an agent the master does not know (as Mesos) or an
    /// invalid operation, 409 when the agent does not have what it needs.
    pub(super) fn operator_operation(
        &mut self,
        agent_id: &str,
        operation: &v1::offer::Operation,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        if !self.agents.contains_key(agent_id) {
            return Err(CallError::BadRequest("No agent found with specified ID".into()));
        }
        let operation = convert::operation_from_proto(operation)
            .map_err(|e| CallError::BadRequest(format!("Invalid operation: {e}")))?;
        // The operator may reserve for any role: the roles the operation names are the
        // framework-side check's allowed set.
        let roles: Vec<String> = match &operation {
            operations::Operation::Reserve { resources } => resources
                .iter()
                .filter(|r| r.is_reserved())
                .map(|r| r.role().to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let view = FrameworkView { roles: &roles, principal: None, shared_resources: true };
        // Offers on the agent hold resources the operation may need: they go first.
        self.rescind_agent_offers(agent_id, now, out);
        let in_use = self.volumes_in_use(agent_id);
        let Some(agent) = self.agents.get(agent_id) else {
            return Err(CallError::BadRequest("No agent found with specified ID".into()));
        };
        let available = self.allocator.available(agent_id).cloned().unwrap_or_default();
        let agent_view = AgentView { total: &agent.total, volumes_in_use: &in_use };
        let applied =
            operations::apply(&available, &view, &agent_view, &operation).map_err(|e| match e {
                OperationError::NotOffered { .. } => CallError::Conflict(format!(
                    "Unable to apply the operation: {}",
                    e.to_string().replace("offered resources", "agent's unallocated resources")
                )),
                other => CallError::BadRequest(other.to_string()),
            })?;
        let Some(total) = applied.conversion.apply_to(&agent.total) else {
            return Err(CallError::Conflict(
                "Unable to apply the operation to the agent's resources".into(),
            ));
        };
        self.allocator
            .update_agent(agent_id, total.clone())
            .map_err(|e| CallError::Conflict(format!("Unable to apply the operation: {e}")))?;
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.total = total;
        }
        self.checkpoint_resources(agent_id, out);
        self.allocate_agent(agent_id, now, out);
        Ok(())
    }

    /// TEARDOWN: the framework is removed, its tasks killed by its agents.
    /// Kills a running task for the operator, exactly as its framework's KILL would (the
    /// task's kill policy applies and the framework hears TASK_KILLED through its update
    /// stream). `framework_id` may be left out when only one framework has a task of that id.
    pub(super) fn operator_kill(
        &mut self,
        task_id: &str,
        framework_id: Option<&str>,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let owners: Vec<String> = self
            .frameworks
            .iter()
            .filter(|(id, f)| {
                framework_id.is_none_or(|wanted| wanted == id.as_str())
                    && f.tasks.get(task_id).is_some_and(|t| !crate::status::is_terminal(t.state))
            })
            .map(|(id, _)| id.clone())
            .collect();
        match owners.as_slice() {
            [] => Err(CallError::NotFound(format!("No running task '{task_id}' found"))),
            [framework_id] => {
                let kill = sched::call::Kill {
                    task_id: v1::TaskId { value: task_id.to_string() },
                    agent_id: None,
                    kill_policy: None,
                };
                self.kill(framework_id, kill, now, out);
                Ok(())
            }
            several => Err(CallError::BadRequest(format!(
                "Task id '{task_id}' is used by several frameworks ({}); name one with                  'framework_id'",
                several.join(", ")
            ))),
        }
    }

    pub(super) fn teardown(
        &mut self,
        framework_id: &str,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        if !self.frameworks.contains_key(framework_id) {
            return Err(CallError::BadRequest("No framework found with specified ID".into()));
        }
        self.remove_framework(framework_id, now, out);
        Ok(())
    }

    /// MARK_AGENT_GONE: the agent's tasks end (TASK_GONE_BY_OPERATOR for partition-aware
    /// frameworks, TASK_LOST for the others), the agent is told to stop them and refused from
    /// then on, also by a restarted master (the registry records it). Marking an agent gone
    /// twice succeeds.
    pub(super) fn mark_agent_gone(
        &mut self,
        agent_id: &str,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        if self.gone_agents.contains(agent_id) {
            return Ok(());
        }
        let known = self.agents.contains_key(agent_id)
            || self.unreachable_agents.contains_key(agent_id)
            || self.recovered_agents.contains_key(agent_id);
        if !known {
            return Err(CallError::NotFound(format!("Agent '{agent_id}' not found")));
        }
        // The registry keeps the agent's record, marked gone, so that a restarted master
        // refuses it too; the reply waits for that write like every other promise.
        let record = self
            .agents
            .get(agent_id)
            .map(|a| a.record.clone())
            .or_else(|| self.unreachable_agents.get(agent_id).cloned())
            .or_else(|| self.recovered_agents.get(agent_id).cloned());
        if let Some(mut record) = record {
            record.gone_time = Some(time_info(now));
            out.push(Output::Persist(RegistryOp::UpdateAgent(record)));
        }
        self.gone_agents.insert(agent_id.to_string());
        self.rescind_agent_offers(agent_id, now, out);
        self.unreachable_agents.remove(agent_id);
        self.recovered_agents.remove(agent_id);
        let agent = self.agents.remove(agent_id);
        self.allocator.remove_agent(agent_id);
        self.counters.slave_removals += 1;

        let mut ended = Vec::new();
        let mut frameworks = BTreeSet::new();
        for framework in self.frameworks.values_mut() {
            let partition_aware = has_capability(&framework.info, Capability::PartitionAware);
            for (task_id, _) in framework.tasks.on_agent(agent_id) {
                frameworks.insert(framework.id.clone());
                ended.push((framework.id.clone(), task_id.clone(), partition_aware));
            }
            framework.executors.retain(|(executor_agent, _), _| executor_agent != agent_id);
        }
        if let Some(conn) = agent.as_ref().and_then(|a| a.conn) {
            for framework_id in frameworks {
                let mut e = internal::AgentEvent::default();
                e.set_type(internal::agent_event::Type::ShutdownFramework);
                e.shutdown_framework = Some(internal::agent_event::ShutdownFramework {
                    framework_id: v1::FrameworkId { value: framework_id },
                });
                out.push(Output::ToAgent { conn, event: e });
            }
            let mut e = internal::AgentEvent::default();
            e.set_type(internal::agent_event::Type::Error);
            e.error =
                Some(internal::agent_event::Error { message: "Agent has been marked gone".into() });
            out.push(Output::ToAgent { conn, event: e });
            self.agent_conns.remove(&conn);
            out.push(Output::CloseAgent { conn });
        }
        for (framework_id, task_id, partition_aware) in ended {
            let state =
                if partition_aware { TaskState::TaskGoneByOperator } else { TaskState::TaskLost };
            let status = Synthesized {
                task_id: &task_id,
                state,
                source: Source::Master,
                reason: Some(Reason::AgentRemovedByOperator),
                message: "Agent marked gone by operator".into(),
                agent_id: Some(agent_id),
                executor_id: None,
            }
            .build(now);
            self.apply_status(&framework_id, &status, None, now, out);
            self.complete_task(&framework_id, &task_id);
            self.send_update(&framework_id, status, out);
        }
        self.announce_agent_failure(agent_id, out);
        self.emit_agent_removed(agent_id, out);
        Ok(())
    }

    /// Whether the operator marked the agent gone; such an agent may not register again.
    pub(super) fn is_gone_agent(&self, agent_id: &str) -> bool {
        self.gone_agents.contains(agent_id)
    }
}
