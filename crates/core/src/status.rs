//! Task states and the status updates the state machines synthesize themselves.
//!
//! Executors produce most updates; this module covers the rest: the master's answers to invalid
//! launches and reconciliation, and the agent's reports for executors that died. It does not
//! decide when to send them; the master and agent machines do.

use std::time::Duration;

use agora_proto::v1::{self, TaskState, task_status};

/// The terminal states of `protobuf::isTerminalState` in Mesos.
pub fn is_terminal(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::TaskFinished
            | TaskState::TaskFailed
            | TaskState::TaskKilled
            | TaskState::TaskError
            | TaskState::TaskLost
            | TaskState::TaskDropped
            | TaskState::TaskGone
            | TaskState::TaskGoneByOperator
    )
}

/// What a synthesized update says about a task.
#[derive(Debug, Clone)]
pub struct Synthesized<'a> {
    pub task_id: &'a str,
    pub state: TaskState,
    pub source: task_status::Source,
    pub reason: Option<task_status::Reason>,
    pub message: String,
    pub agent_id: Option<&'a str>,
    pub executor_id: Option<&'a str>,
}

impl Synthesized<'_> {
    /// Builds the wire status, stamped with `now` (seconds since the Unix epoch). It carries no
    /// uuid: such updates are never acknowledged, which is what clients expect of them.
    pub fn build(&self, now: Duration) -> v1::TaskStatus {
        let mut status = v1::TaskStatus {
            task_id: v1::TaskId { value: self.task_id.to_string() },
            message: Some(self.message.clone()),
            agent_id: self.agent_id.map(|a| v1::AgentId { value: a.to_string() }),
            executor_id: self.executor_id.map(|e| v1::ExecutorId { value: e.to_string() }),
            timestamp: Some(now.as_secs_f64()),
            ..Default::default()
        };
        status.set_state(self.state);
        status.set_source(self.source);
        if let Some(reason) = self.reason {
            status.set_reason(reason);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states() {
        assert!(is_terminal(TaskState::TaskFinished));
        assert!(is_terminal(TaskState::TaskGoneByOperator));
        assert!(!is_terminal(TaskState::TaskRunning));
        assert!(!is_terminal(TaskState::TaskStaging));
        assert!(!is_terminal(TaskState::TaskUnreachable));
    }

    #[test]
    fn synthesized_status_has_no_uuid() {
        let s = Synthesized {
            task_id: "t",
            state: TaskState::TaskError,
            source: task_status::Source::Master,
            reason: Some(task_status::Reason::TaskInvalid),
            message: "bad".into(),
            agent_id: Some("a"),
            executor_id: None,
        }
        .build(Duration::from_secs(10));
        assert!(s.uuid.is_none());
        assert_eq!(s.state(), TaskState::TaskError);
        assert_eq!(s.reason(), task_status::Reason::TaskInvalid);
        assert_eq!(s.timestamp, Some(10.0));
    }
}
