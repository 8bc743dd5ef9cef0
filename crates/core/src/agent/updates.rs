//! The agent's status update manager (reference §5.6): one stream per task, in order, with only
//! the head in flight to the master, retried from `status_update_retry_min` doubling up to
//! `status_update_retry_max` until the scheduler's acknowledgement comes back through the master.
//!
//! Duplicate updates (same uuid) are dropped. Every change to a stream marks its task's record
//! for the checkpoint (`checkpoint.rs`), which holds the pending updates and the uuids seen, so
//! a restarted agent carries on where it stopped.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use agora_proto::internal;
use agora_proto::v1::{self, TaskState};
use bytes::Bytes;

use super::{Agent, CheckpointKey, Output};
use crate::status::is_terminal;

#[derive(Debug, Default)]
pub(super) struct UpdateStream {
    pending: VecDeque<v1::TaskStatus>,
    seen: HashSet<Bytes>,
    /// When the head is due to be sent again.
    retry_at: Option<Duration>,
    backoff: Duration,
}

impl UpdateStream {
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Makes the head due now with the backoff back at its minimum.
    pub(super) fn reset_backoff(&mut self, now: Duration, min: Duration) {
        if !self.pending.is_empty() {
            self.retry_at = Some(now);
            self.backoff = min;
        }
    }

    /// The update in flight.
    pub(super) fn head(&self) -> Option<&v1::TaskStatus> {
        self.pending.front()
    }

    /// The newest update waiting.
    pub(super) fn latest(&self) -> Option<&v1::TaskStatus> {
        self.pending.back()
    }

    fn latest_state(&self) -> Option<TaskState> {
        self.pending.back().map(|s| s.state())
    }

    /// The pending updates and the uuids seen, for the task's checkpoint record.
    pub(super) fn to_checkpoint(&self) -> (Vec<v1::TaskStatus>, Vec<Bytes>) {
        (self.pending.iter().cloned().collect(), self.seen.iter().cloned().collect())
    }

    /// A stream read back from the checkpoint; its head goes out once the agent registers.
    pub(super) fn from_checkpoint(
        pending: Vec<v1::TaskStatus>,
        seen: Vec<Bytes>,
        min: Duration,
    ) -> Self {
        Self {
            pending: pending.into(),
            seen: seen.into_iter().collect(),
            retry_at: None,
            backoff: min,
        }
    }
}

impl Agent {
    /// Appends an update to its task's stream; sends it at once when it is the new head.
    pub(super) fn enqueue_update(
        &mut self,
        framework_id: &str,
        status: v1::TaskStatus,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        // The master removed a terminating framework and would never acknowledge the update,
        // which would then be retried forever.
        if self.frameworks.get(framework_id).is_some_and(|f| f.terminating) {
            return;
        }
        let key = (framework_id.to_string(), status.task_id.value.clone());
        self.mark(CheckpointKey::Task(key.0.clone(), key.1.clone()));
        let stream = self.streams.entry(key.clone()).or_default();
        if let Some(uuid) = &status.uuid
            && !stream.seen.insert(uuid.clone())
        {
            return;
        }
        let state = status.state();
        stream.pending.push_back(status);
        let first = stream.pending.len() == 1;
        if is_terminal(state) {
            self.history.terminal_update(state);
        }
        if first {
            stream.retry_at = Some(now);
            stream.backoff = self.config.status_update_retry_min;
            self.send_head(&key, now, out);
        }
    }

    /// Handles the scheduler's acknowledgement of the head update of a task's stream.
    pub(super) fn acknowledge(
        &mut self,
        framework_id: &str,
        task_id: &str,
        uuid: &Bytes,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let key = (framework_id.to_string(), task_id.to_string());
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        if stream.pending.front().and_then(|s| s.uuid.as_ref()) != Some(uuid) {
            // A stale or duplicate acknowledgement; the head stays in flight.
            return;
        }
        self.mark(CheckpointKey::Task(key.0.clone(), key.1.clone()));
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        let acked = stream.pending.pop_front();
        if stream.pending.is_empty() {
            // A terminal update acknowledged ends the task's stream for good.
            if acked.as_ref().is_some_and(|s| is_terminal(s.state())) {
                self.streams.remove(&key);
                // The task is over for everyone: its executor forgets it too, so that it is
                // neither reported again when the agent re-registers nor kept forever.
                let mut holders = Vec::new();
                let mut info = None;
                if let Some(framework) = self.frameworks.get_mut(framework_id) {
                    for (executor_id, executor) in &mut framework.executors {
                        if let Some(task) = executor.launched.get(task_id) {
                            let custom = (!executor.command).then(|| executor_id.clone());
                            info = Some((task.info.clone(), custom));
                        }
                        if executor.forget(task_id) {
                            holders.push(executor_id.clone());
                        }
                    }
                }
                // Remembered for the operator API as it ended.
                if let Some(acked) = acked {
                    let task = match info {
                        Some((info, custom)) => self.task_report(
                            framework_id,
                            custom.as_deref(),
                            &info,
                            acked.state(),
                            Some(&acked),
                        ),
                        None => self.bare_task(framework_id, &acked),
                    };
                    self.history.task_completed(task);
                }
                for executor_id in holders {
                    self.mark(CheckpointKey::Executor(framework_id.into(), executor_id));
                }
            } else {
                stream.retry_at = None;
            }
            return;
        }
        stream.retry_at = Some(now);
        stream.backoff = self.config.status_update_retry_min;
        self.send_head(&key, now, out);
    }

    /// Sends every head whose retry time has come.
    pub(super) fn resend_due(&mut self, now: Duration, out: &mut Vec<Output>) {
        let due: Vec<(String, String)> = self
            .streams
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|at| at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.send_head(&key, now, out);
        }
    }

    fn send_head(&mut self, key: &(String, String), now: Duration, out: &mut Vec<Output>) {
        let max = self.config.status_update_retry_max;
        let registered = self.registered;
        let agent_id = self.agent_id.clone();
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        let Some(head) = stream.pending.front() else {
            return;
        };
        // Keep the clock running while disconnected; registration makes every head due again.
        stream.retry_at = Some(now + stream.backoff);
        stream.backoff = (stream.backoff * 2).min(max);
        if !registered {
            return;
        }
        let mut call = internal::AgentCall::default();
        call.set_type(internal::agent_call::Type::StatusUpdate);
        call.agent_id = agent_id.map(|a| v1::AgentId { value: a });
        let mut update = internal::agent_call::StatusUpdate {
            framework_id: v1::FrameworkId { value: key.0.clone() },
            status: head.clone(),
            latest_state: None,
        };
        if let Some(latest) = stream.latest_state() {
            update.set_latest_state(latest);
        }
        call.status_update = Some(update);
        out.push(Output::ToMaster(call));
    }
}
