//! Task-level scheduler calls that do not consume offers: KILL, ACKNOWLEDGE and RECONCILE
//! (reference §1.3, §5.6, §5.8, §10 items 8 and 12).
//!
//! Answers synthesized here carry no uuid: schedulers must not acknowledge them, and nothing
//! retries them.

use std::time::Duration;

use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};
use agora_proto::{internal, scheduler as sched};

use super::scheduler::invalid;
use super::{CallError, Master, Output, Task, has_capability};
use crate::status::Synthesized;

impl Master {
    pub(super) fn kill(
        &mut self,
        framework_id: &str,
        kill: sched::call::Kill,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let marked = self.frameworks.get_mut(framework_id).and_then(|f| {
            let mut task = f.tasks.get_mut(&kill.task_id.value)?;
            let policy = kill.kill_policy.or(task.info.kill_policy);
            task.kill = Some(policy);
            Some((task.agent_id.clone(), policy))
        });
        match marked {
            Some((agent_id, policy)) => {
                self.send_kill(framework_id, &agent_id, &kill.task_id.value, policy, out);
            }
            // Mesos answers a kill of an unknown task with explicit reconciliation (silence
            // while the task's agent may still re-register).
            None => {
                let status = self.reconcile_unknown(
                    framework_id,
                    &kill.task_id.value,
                    kill.agent_id.as_ref(),
                    now,
                );
                if let Some(status) = status {
                    self.send_update(framework_id, status, out);
                }
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
    pub(super) fn acknowledge(
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
            && let Some(mut task) = self
                .frameworks
                .get_mut(framework_id)
                .and_then(|f| f.tasks.get_mut(&ack.task_id.value))
        {
            task.changed();
            task.status_update_state = None;
            task.status_update_uuid = None;
        }
        Ok(())
    }

    pub(super) fn forward_acknowledgement(
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
    pub(super) fn reconcile(
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
                .filter_map(|(task_id, agent_id)| match framework.tasks.get(&task_id.value) {
                    Some(task) => Some(reconciled(task, now)),
                    None => self.reconcile_unknown(framework_id, &task_id.value, agent_id, now),
                })
                .collect()
        };
        for status in statuses {
            self.send_update(framework_id, status, out);
        }
    }

    /// The answer for a task the master does not know; none while the task could be on an
    /// agent that has not re-registered since the master restarted (the scheduler retries).
    pub(super) fn reconcile_unknown(
        &self,
        framework_id: &str,
        task_id: &str,
        agent_id: Option<&v1::AgentId>,
        now: Duration,
    ) -> Option<v1::TaskStatus> {
        let recovering = match agent_id {
            Some(a) => self.recovered_agents.contains_key(&a.value),
            None => !self.recovered_agents.is_empty(),
        };
        if recovering {
            return None;
        }
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|f| has_capability(&f.info, Capability::PartitionAware));
        let unreachable = agent_id.and_then(|a| self.unreachable_agents.get(&a.value));
        let agent_known = agent_id.is_some_and(|a| self.agents.contains_key(&a.value));
        let (state, message) = match (unreachable.is_some(), agent_known, partition_aware) {
            (true, _, true) => (TaskState::TaskUnreachable, "Task is unreachable"),
            (true, _, false) => (TaskState::TaskLost, "Task is unreachable"),
            (false, true, true) => (TaskState::TaskGone, "Task is unknown to the agent"),
            (false, true, false) => (TaskState::TaskLost, "Task is unknown to the agent"),
            (false, false, true) => (TaskState::TaskUnknown, "Task is unknown"),
            (false, false, false) => (TaskState::TaskLost, "Task is unknown"),
        };
        let mut status = Synthesized {
            task_id,
            state,
            source: Source::Master,
            reason: Some(Reason::Reconciliation),
            message: message.into(),
            agent_id: agent_id.map(|a| a.value.as_str()),
            executor_id: None,
        }
        .build(now);
        status.unreachable_time = unreachable.and_then(|a| a.unreachable_time);
        Some(status)
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
