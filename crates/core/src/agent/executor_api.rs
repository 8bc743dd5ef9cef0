//! The executor side of the agent: SUBSCRIBE (which takes back what the executor holds
//! unacknowledged and delivers queued tasks and task groups), UPDATE (validated as reference
//! §3.2 says, acknowledged to the executor, then queued for the master) and the other executor
//! calls.
//!
//! Launching and killing executor processes is not here; `agent.rs` and `agent/launch.rs`
//! decide that and the shell carries it out.

use std::time::Duration;

use agora_proto::executor::call::Type as ExecutorCallType;
use agora_proto::v1::task_status::Source;
use agora_proto::v1::{self, TaskState};
use agora_proto::{executor, internal};

use super::{Agent, CallError, CheckpointKey, ConnId, Output};

impl Agent {
    /// SUBSCRIBE: the stream `conn` becomes the executor's. A re-subscribing executor sends the
    /// updates the agent never acknowledged, which are taken as if sent again (duplicates are
    /// dropped by uuid), and the tasks it holds without an acknowledged update, which are not
    /// delivered twice.
    pub(super) fn executor_subscribe(
        &mut self,
        conn: ConnId,
        call: executor::Call,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        if call.r#type() != ExecutorCallType::Subscribe {
            return Err(CallError::BadRequest("Expecting a SUBSCRIBE call".into()));
        }
        let framework_id = call.framework_id.value.clone();
        let executor_id = call.executor_id.value.clone();
        let subscribe = call.subscribe.unwrap_or_default();
        // Every resent update is checked before anything changes, so a bad one refuses the
        // whole call instead of leaving it half done.
        let updates = subscribe
            .unacknowledged_updates
            .into_iter()
            .map(|u| validate_executor_update(u.status, &executor_id))
            .collect::<Result<Vec<_>, _>>()?;
        let agent_info = {
            let mut info = self.config.agent_info.clone();
            info.id = self.agent_id.as_ref().map(|id| v1::AgentId { value: id.clone() });
            info
        };
        let Some(framework) = self.frameworks.get_mut(&framework_id) else {
            return Err(CallError::BadRequest("Framework cannot be found".into()));
        };
        let framework_info = framework.info.clone();
        let Some(executor) = framework.executors.get_mut(&executor_id) else {
            return Err(CallError::BadRequest("Executor cannot be found".into()));
        };
        if executor.kill_at.is_some() {
            return Err(CallError::Forbidden("Executor is terminating".into()));
        }
        executor.register_by = None;
        if let Some(old) = executor.conn.replace(conn) {
            self.executor_conns.remove(&old);
            out.push(Output::CloseExecutor { conn: old });
        }
        let mut e = executor::Event::default();
        e.set_type(executor::event::Type::Subscribed);
        e.subscribed = Some(executor::event::Subscribed {
            executor_info: executor.info.clone(),
            framework_info,
            agent_info,
            container_id: Some(v1::ContainerId {
                value: executor.container_id.clone(),
                parent: None,
            }),
        });
        out.push(Output::ToExecutor { conn, event: e });
        // A task the agent handed over just before it restarted, which the executor never
        // got: its LAUNCH died with the agent. It cannot be delivered again safely (the
        // executor may hold it under an acknowledged update), so it is reported lost.
        let vanished: Vec<String> = if executor.recovered {
            executor
                .launched
                .iter()
                .filter(|(id, task)| {
                    task.state == TaskState::TaskStaging
                        && !subscribe.unacknowledged_tasks.iter().any(|t| t.task_id.value == **id)
                })
                .map(|(id, _)| id.clone())
                .collect()
        } else {
            Vec::new()
        };
        for id in &vanished {
            executor.launched.remove(id);
        }
        executor.recovered = false;
        executor.accept_unacknowledged(&subscribe.unacknowledged_tasks);
        executor.deliver_queued(conn, out);
        self.executor_conns.insert(conn, (framework_id.clone(), executor_id.clone()));
        // Queued tasks may have been handed over.
        self.mark_executor(&framework_id, &executor_id);
        for task_id in vanished {
            let state = if self.partition_aware(&framework_id) {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            let status = self.agent_status(
                &framework_id,
                &task_id,
                Some(&executor_id),
                state,
                v1::task_status::Reason::AgentRestarted,
                "Task launched during agent restart",
                now,
            );
            self.enqueue_update(&framework_id, status, now, out);
        }
        for status in updates {
            self.executor_update(&framework_id, &executor_id, conn, status, now, out);
        }
        Ok(())
    }

    pub(super) fn executor_call(
        &mut self,
        call: executor::Call,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let framework_id = call.framework_id.value.clone();
        let executor_id = call.executor_id.value.clone();
        // The call is validated before the agent looks for its sender (reference §3.1).
        let kind = call.r#type();
        let status = match (kind, call.update) {
            (ExecutorCallType::Update, Some(update)) => {
                Some(validate_executor_update(update.status, &executor_id)?)
            }
            (ExecutorCallType::Update, None) => {
                return Err(CallError::BadRequest("Expecting 'update' to be present".into()));
            }
            _ => None,
        };
        let Some(framework) = self.frameworks.get(&framework_id) else {
            return Err(CallError::BadRequest("Framework cannot be found".into()));
        };
        let Some(executor) = framework.executors.get(&executor_id) else {
            return Err(CallError::BadRequest("Executor cannot be found".into()));
        };
        let Some(conn) = executor.conn else {
            return Err(CallError::Forbidden("Executor is not subscribed".into()));
        };
        match kind {
            ExecutorCallType::Update => {
                if let Some(status) = status {
                    self.executor_update(&framework_id, &executor_id, conn, status, now, out);
                }
                Ok(())
            }
            ExecutorCallType::Message => {
                let Some(message) = call.message else {
                    return Err(CallError::BadRequest("Expecting 'message' to be present".into()));
                };
                // Best effort, as in Mesos: without a master the message is dropped.
                if self.registered {
                    let mut forward = internal::AgentCall::default();
                    forward.set_type(internal::agent_call::Type::ExecutorMessage);
                    forward.agent_id =
                        self.agent_id.as_ref().map(|a| v1::AgentId { value: a.clone() });
                    forward.executor_message = Some(internal::agent_call::ExecutorMessage {
                        framework_id: v1::FrameworkId { value: framework_id },
                        executor_id: v1::ExecutorId { value: executor_id },
                        data: message.data,
                    });
                    out.push(Output::ToMaster(forward));
                }
                Ok(())
            }
            ExecutorCallType::Heartbeat => Ok(()),
            ExecutorCallType::Subscribe => {
                Err(CallError::BadRequest("SUBSCRIBE must be sent as a streaming request".into()))
            }
            ExecutorCallType::Unknown => {
                Err(CallError::BadRequest("Expecting 'type' to be present".into()))
            }
        }
    }

    fn executor_update(
        &mut self,
        framework_id: &str,
        executor_id: &str,
        conn: ConnId,
        mut status: v1::TaskStatus,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        status.agent_id = self.agent_id.as_ref().map(|a| v1::AgentId { value: a.clone() });
        status.executor_id = Some(v1::ExecutorId { value: executor_id.to_string() });
        if status.timestamp.is_none() {
            status.timestamp = Some(now.as_secs_f64());
        }
        let limited =
            self.executor_mut(framework_id, executor_id).and_then(|e| e.limitation.clone());
        if let Some((limitation, message)) = limited
            && crate::status::is_terminal(status.state())
            && status.state() != TaskState::TaskFinished
        {
            // The task died of its container's limit (the OOM killer took it, say), whatever
            // the executor saw: it fails with the limitation, as in Mesos.
            status.set_state(TaskState::TaskFailed);
            status.set_reason(limitation.reason());
            status.set_source(Source::Agent);
            status.message = Some(message);
            status.limitation = Some(limitation.proto());
        }
        let task_id = status.task_id.clone();
        let uuid = status.uuid.clone().unwrap_or_default();
        if let Some(executor) = self.executor_mut(framework_id, executor_id)
            && let Some(task) = executor.launched.get_mut(&task_id.value)
        {
            task.state = status.state();
            task.latest = Some(status.clone());
        }
        self.mark(CheckpointKey::Task(framework_id.into(), task_id.value.clone()));
        self.enqueue_update(framework_id, status, now, out);
        // Accepted: it is checkpointed (for a checkpointing framework) before this
        // acknowledgement leaves, so the executor may stop retrying it.
        let mut e = executor::Event::default();
        e.set_type(executor::event::Type::Acknowledged);
        e.acknowledged = Some(executor::event::Acknowledged { task_id, uuid });
        out.push(Output::ToExecutor { conn, event: e });
    }
}

/// The executor UPDATE checks of reference §3.2.
fn validate_executor_update(
    status: v1::TaskStatus,
    executor_id: &str,
) -> Result<v1::TaskStatus, CallError> {
    let bad =
        |m: &str| Err(CallError::BadRequest(format!("Failed to validate executor::Call: {m}")));
    match &status.uuid {
        None => return bad("'TaskStatus.uuid' must be present"),
        Some(uuid) if uuid.len() != 16 => return bad("'TaskStatus.uuid' must be a valid UUID"),
        Some(_) => {}
    }
    if status.source() != Source::Executor {
        return bad("'TaskStatus.source' must be SOURCE_EXECUTOR");
    }
    if status.state() == TaskState::TaskStaging {
        return bad("'TaskStatus.state' must not be TASK_STAGING");
    }
    if let Some(id) = &status.executor_id
        && id.value != executor_id
    {
        return bad("'TaskStatus.executor_id' does not match the call's 'executor_id'");
    }
    if status.task_id.value.is_empty() {
        return bad("'TaskStatus.task_id' must be present");
    }
    Ok(status)
}
