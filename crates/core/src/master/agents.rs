//! The agent side of the master: registration, status updates and executor exits over Agora's
//! internal protocol (`agora.internal.v1`, DESIGN invariant 6), and what happens when an agent's
//! stream breaks.
//!
//! Agent health checking by pings belongs to a later stage; for now a broken stream deactivates
//! the agent and loses the tasks of frameworks that do not checkpoint, as Mesos does on a
//! disconnect (reference §5.2). Agents keep running those tasks and report them when they
//! re-register, and the master adopts them again (`recovery.rs`), as Mesos does for agents
//! that come back.

use std::time::Duration;

use agora_proto::internal::agent_call::Type as AgentCallType;
use agora_proto::v1;
use agora_proto::{internal, scheduler as sched};

use super::{
    AGENT_PROTOCOL_VERSION, Agent, CallError, ConnId, Master, Output, ReqId, event, task_table,
};
use crate::convert;
use crate::offer_constraints::AgentDescription;
use crate::resources::Resources;

fn agent_error(message: impl Into<String>) -> internal::AgentEvent {
    let mut e = internal::AgentEvent::default();
    e.set_type(internal::agent_event::Type::Error);
    e.error = Some(internal::agent_event::Error { message: message.into() });
    e
}

impl Master {
    pub(super) fn agent_register(
        &mut self,
        req: ReqId,
        conn: ConnId,
        stream_id: String,
        call: internal::AgentCall,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let is_register = call.r#type() == AgentCallType::Register;
        let Some(register) = call.register.filter(|_| is_register) else {
            let e = CallError::BadRequest("Expecting a REGISTER call with 'register' set".into());
            out.push(Output::Reply { req, result: Err(e) });
            return;
        };
        out.push(Output::Reply { req, result: Ok(()) });
        let fail = |out: &mut Vec<Output>, message: String| {
            out.push(Output::ToAgent { conn, event: agent_error(message) });
            out.push(Output::CloseAgent { conn });
        };
        if register.protocol_version != AGENT_PROTOCOL_VERSION {
            return fail(
                out,
                format!(
                    "Agent protocol version {} is not supported (this master speaks {})",
                    register.protocol_version, AGENT_PROTOCOL_VERSION
                ),
            );
        }
        let mut info = register.agent_info.clone();
        let total = match convert::resources_from_proto(&info.resources) {
            Ok(total) => total,
            Err(e) => return fail(out, format!("Invalid agent resources: {e}")),
        };
        let endpoint = register
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("{}:{}", info.hostname, info.port()));

        let id = match info.id.as_ref().map(|id| id.value.clone()) {
            Some(id) => {
                if let Err(e) = crate::ids::validate_id(&id) {
                    return fail(out, format!("Invalid agent id: {e}"));
                }
                id
            }
            None => {
                let id = format!("{}-S{}", self.config.master_info.id, self.next_agent);
                self.next_agent += 1;
                id
            }
        };
        if self.is_gone_agent(&id) {
            return fail(out, "Agent has been marked gone".into());
        }
        info.id = Some(v1::AgentId { value: id.clone() });
        // For an agent the master knows (from its registry, or from before a reconnection),
        // the master's record of reservations and volumes wins: an agent may have missed a
        // CHECKPOINT_RESOURCES while its stream was down, and is told again below. Only an
        // agent the master never knew brings its own.
        let known = self.known_checkpointed(&id);
        let checkpointed_wire =
            known.clone().unwrap_or_else(|| register.checkpointed_resources.clone());
        let checkpointed = match convert::resources_from_proto(&checkpointed_wire) {
            Ok(checkpointed) => checkpointed,
            Err(e) => return fail(out, format!("Invalid checkpointed resources: {e}")),
        };
        // The agent's flags give its resources before any operation; its dynamic reservations
        // and volumes were carved out of them.
        let Some(total) = with_checkpointed(&total, &checkpointed) else {
            return fail(
                out,
                format!("Checkpointed resources {checkpointed} exceed the agent's {total}"),
            );
        };
        let resend_checkpoint = known.is_some_and(|k| k != register.checkpointed_resources);
        let record = internal::RegistryAgent {
            agent_info: info.clone(),
            checkpointed_resources: checkpointed_wire,
            unreachable_time: None,
            gone_time: None,
        };
        // An unreachable agent that comes back brings its tasks back; their frameworks hear
        // of each (reference §5.2, REASON_AGENT_REREGISTERED).
        let was_unreachable = self.unreachable_agents.contains_key(&id);
        self.record_agent(&record, out);

        if let Some(old) = self.agents.get(&id).and_then(|a| a.conn) {
            // Re-registration while the old stream is open: the newest stream wins. The
            // agent's offers go first, because the allocator forgets its allocations with the
            // agent and would otherwise offer the same resources a second time.
            self.rescind_agent_offers(&id, now, out);
            self.agent_conns.remove(&old);
            self.allocator.remove_agent(&id);
            out.push(Output::CloseAgent { conn: old });
        }
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.info = info.clone();
            agent.total = total.clone();
            agent.attributes = info.attributes.clone();
            agent.endpoint = endpoint;
            agent.conn = Some(conn);
            agent.stream_id = Some(stream_id);
            agent.record = record;
            agent.awaiting_pong = false;
            agent.missed_pings = 0;
            agent.reregistered_time = Some(now);
            self.counters.slave_reregistrations += 1;
        } else {
            self.counters.slave_registrations += 1;
            self.agents.insert(
                id.clone(),
                Agent {
                    id: id.clone(),
                    attributes: info.attributes.clone(),
                    info: info.clone(),
                    total: total.clone(),
                    endpoint,
                    conn: Some(conn),
                    stream_id: Some(stream_id),
                    record,
                    awaiting_pong: false,
                    missed_pings: 0,
                    registered_time: Some(now),
                    reregistered_time: None,
                    offers_changed: 0,
                    view: Default::default(),
                },
            );
        }
        self.agent_conns.insert(conn, id.clone());
        self.adopt_reported(&id, &register, now, out);
        self.drop_unreported(&id, &register, now, out);
        if was_unreachable {
            self.announce_returned_tasks(&id, now, out);
        }

        // What the master's own records say is running there still holds the resources.
        let mut used: Vec<(String, String, Resources)> = Vec::new();
        for framework in self.frameworks.values() {
            for (_, task) in framework.tasks.on_agent(&id).filter(|(_, t)| !t.released) {
                used.push((framework.id.clone(), task.role.clone(), task.resources.clone()));
            }
            for (_, executor) in task_table::on_agent(&framework.executors, &id) {
                used.push((
                    framework.id.clone(),
                    executor.role.clone(),
                    executor.resources.clone(),
                ));
            }
        }
        self.allocator.add_agent(&id, total, &used);
        self.allocator.describe_agent(&id, AgentDescription::new(&info.hostname, &info.attributes));

        let mut e = internal::AgentEvent::default();
        e.set_type(internal::agent_event::Type::Registered);
        e.registered = Some(internal::agent_event::Registered {
            agent_id: v1::AgentId { value: id.clone() },
            master_info: self.config.master_info.clone(),
            heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
        });
        out.push(Output::ToAgent { conn, event: e });
        if resend_checkpoint {
            self.send_checkpoint(&id, out);
        }
        // Frameworks removed while the agent was away must not keep running there.
        for framework in &register.frameworks {
            let Some(framework_id) = framework.id.as_ref().map(|f| f.value.clone()) else {
                continue;
            };
            if self.removed_frameworks.contains(&framework_id) {
                let mut e = internal::AgentEvent::default();
                e.set_type(internal::agent_event::Type::ShutdownFramework);
                e.shutdown_framework = Some(internal::agent_event::ShutdownFramework {
                    framework_id: v1::FrameworkId { value: framework_id },
                });
                out.push(Output::ToAgent { conn, event: e });
            }
        }
        // Kills the agent may have missed while it was away.
        let kills: Vec<(String, String, Option<v1::KillPolicy>)> = self
            .frameworks
            .values()
            .flat_map(|f| {
                f.tasks
                    .on_agent(&id)
                    .map(|(_, t)| t)
                    .filter(|t| !t.released)
                    .filter_map(|t| Some((f.id.clone(), t.info.task_id.value.clone(), t.kill?)))
            })
            .collect();
        for (framework_id, task_id, policy) in kills {
            self.send_kill(&framework_id, &id, &task_id, policy, out);
        }
        self.emit_agent_added(&id, out);
        self.allocate_agent(&id, now, out);
    }

    pub(super) fn agent_call(
        &mut self,
        stream_id: Option<String>,
        call: internal::AgentCall,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let Some(agent_id) = call.agent_id.as_ref().map(|a| a.value.clone()) else {
            return Err(CallError::BadRequest("Expecting 'agent_id' to be present".into()));
        };
        let Some(agent) = self.agents.get(&agent_id) else {
            return Err(CallError::BadRequest(format!("Agent {agent_id} is not registered")));
        };
        if agent.conn.is_none() {
            return Err(CallError::Forbidden(format!("Agent {agent_id} is not connected")));
        }
        if stream_id.is_none() || agent.stream_id != stream_id {
            return Err(CallError::BadRequest(
                "The 'Mesos-Stream-Id' header is missing or does not match the agent's stream"
                    .into(),
            ));
        }
        match call.r#type() {
            AgentCallType::StatusUpdate => {
                let update = call.status_update.ok_or_else(|| {
                    CallError::BadRequest("Expecting 'status_update' to be present".into())
                })?;
                let framework_id = update.framework_id.value;
                let runs_elsewhere = self
                    .frameworks
                    .get(&framework_id)
                    .and_then(|f| f.tasks.get(&update.status.task_id.value))
                    .is_some_and(|t| t.agent_id != agent_id);
                if runs_elsewhere {
                    self.counters.invalid_status_updates += 1;
                    // A stale copy of a task whose id now belongs to a task on another agent
                    // (it is killed when its agent returns). Its updates must not reach the
                    // framework, and no scheduler will acknowledge them, so the master ends
                    // the agent's update stream itself.
                    if let Some(uuid) = update.status.uuid.clone() {
                        let task_id = update.status.task_id.value.clone();
                        self.forward_acknowledgement(
                            &framework_id,
                            &(agent_id, task_id, uuid),
                            out,
                        );
                    }
                    return Ok(());
                }
                let mut status = update.status;
                status.agent_id = Some(v1::AgentId { value: agent_id });
                let latest = update.latest_state.and_then(|s| v1::TaskState::try_from(s).ok());
                self.counters.valid_status_updates += 1;
                self.apply_status(&framework_id, &status, latest, now, out);
                self.send_update(&framework_id, status, out);
            }
            AgentCallType::Pong => self.pong(&agent_id),
            AgentCallType::ExecutorExited => {
                let exited = call.executor_exited.ok_or_else(|| {
                    CallError::BadRequest("Expecting 'executor_exited' to be present".into())
                })?;
                let framework_id = exited.framework_id.value;
                let executor_id = exited.executor_id.value;
                if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                    let key = (agent_id.clone(), executor_id.clone());
                    if let Some(record) = framework.executors.remove(&key) {
                        self.allocator.recover(
                            &framework_id,
                            &record.role,
                            &agent_id,
                            &record.resources,
                            None,
                            now,
                        );
                    }
                    if let Some(conn) = self.frameworks.get(&framework_id).and_then(|f| f.conn) {
                        let mut e = event(sched::event::Type::Failure);
                        e.failure = Some(sched::event::Failure {
                            agent_id: Some(v1::AgentId { value: agent_id }),
                            executor_id: Some(v1::ExecutorId { value: executor_id }),
                            status: Some(exited.status.unwrap_or_default()),
                        });
                        out.push(Output::ToScheduler { conn, event: e });
                    }
                }
            }
            AgentCallType::ExecutorMessage => {
                let message = call.executor_message.ok_or_else(|| {
                    CallError::BadRequest("Expecting 'executor_message' to be present".into())
                })?;
                let framework_id = message.framework_id.value;
                if let Some(conn) = self.frameworks.get(&framework_id).and_then(|f| f.conn) {
                    let mut e = event(sched::event::Type::Message);
                    e.message = Some(sched::event::Message {
                        agent_id: Some(v1::AgentId { value: agent_id }),
                        executor_id: Some(message.executor_id),
                        data: Some(message.data),
                    });
                    out.push(Output::ToScheduler { conn, event: e });
                }
            }
            AgentCallType::Register => {
                return Err(CallError::BadRequest(
                    "REGISTER must be sent as a streaming request".into(),
                ));
            }
            AgentCallType::Unknown => {
                return Err(CallError::BadRequest("Expecting 'type' to be present".into()));
            }
        }
        Ok(())
    }

    pub(super) fn agent_closed(&mut self, conn: ConnId, now: Duration, out: &mut Vec<Output>) {
        let Some(agent_id) = self.agent_conns.remove(&conn) else {
            return;
        };
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        if agent.conn != Some(conn) {
            return;
        }
        agent.conn = None;
        agent.stream_id = None;
        self.rescind_agent_offers(&agent_id, now, out);
        self.allocator.remove_agent(&agent_id);

        // Nothing else changes: the agent's tasks keep running (losing the master kills
        // nothing on the agent), so they are neither lost nor freed here. If the agent
        // restarted, its new REGISTER leaves out the tasks of frameworks that do not
        // checkpoint (their executors are killed) and reconciliation ends them; if it never
        // comes back, the pings make it unreachable.
    }
}

/// `total` with the checkpointed resources carved out of the unreserved or statically reserved
/// resources they came from, or `None` when they do not fit.
pub(super) fn with_checkpointed(total: &Resources, checkpointed: &Resources) -> Option<Resources> {
    let base: Resources = checkpointed
        .iter()
        .map(|r| {
            let mut r = r.without_volume();
            while r.is_dynamically_reserved() {
                r = r.popped().expect("a dynamically reserved resource has a reservation");
            }
            r
        })
        .collect();
    total.checked_sub(&base).map(|rest| rest + checkpointed)
}

impl Master {
    /// The checkpointed resources the master has on record for agent `id`, if it knows it.
    fn known_checkpointed(&self, id: &str) -> Option<Vec<v1::Resource>> {
        self.agents
            .get(id)
            .map(|a| &a.record)
            .or_else(|| self.recovered_agents.get(id))
            .or_else(|| self.unreachable_agents.get(id))
            .map(|record| record.checkpointed_resources.clone())
    }
}
