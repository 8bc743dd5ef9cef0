//! What an executor of a checkpointing framework needs to subscribe to a restarted agent again
//! (reference §3.2 SUBSCRIBE, §3.4 "Disconnection rules"), without IO: the bookkeeping of the
//! tasks and status updates the agent has not acknowledged yet, which the next SUBSCRIBE must
//! carry, and the schedule of the pauses between subscription attempts.
//!
//! It does not subscribe, send or sleep: `shell.rs` does, and asks this module what to send and
//! how long to wait. It knows nothing of the cores either; it sees the agent's raw events.

use std::collections::VecDeque;
use std::time::Duration;

use agora_proto::executor::call;
use agora_proto::v1;

/// The agent's default `--recovery_timeout`, used when `MESOS_RECOVERY_TIMEOUT` is missing or bad.
pub(crate) const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The agent's default `--executor_reregistration_timeout`, the default of
/// `MESOS_SUBSCRIPTION_BACKOFF_MAX`.
pub(crate) const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The first pause before subscribing again. Short, because a restarted agent waits only
/// `--executor_reregistration_timeout` (2 s by default) for its executors to come back.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The shortest pause ever taken, so that a zero maximum cannot make the retries spin.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// How a checkpointing executor re-subscribes: `None` in [`crate::shell::Setup`] when the
/// framework does not checkpoint and the executor exits when it loses the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// How long after losing the agent the executor keeps trying before it gives up.
    pub(crate) timeout: Duration,
    /// The longest pause between two attempts.
    pub(crate) backoff_max: Duration,
}

/// The pauses before successive subscription attempts: 100 ms, doubling, capped at the maximum.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses double up to half of `max` (MESOS_SUBSCRIPTION_BACKOFF_MAX, which the agent
    /// sets to its re-registration timeout): then at least two attempts fall inside the
    /// window a restarted agent waits, whenever it opens.
    pub(crate) fn new(max: Duration) -> Self {
        let max = (max / 2).max(MIN_BACKOFF);
        Self { next: FIRST_BACKOFF.min(max), max }
    }

    /// The pause before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

/// The tasks and updates the agent has not acknowledged, in the order they arrived or were sent.
///
/// Every update also gets a sequence number (1, 2, ...) in the order it was queued. A SUBSCRIBE
/// built from [`Unacked::snapshot`] delivers every update queued so far, so the sender needs to
/// send only those with a greater number afterwards (see `shell::send_updates`).
#[derive(Debug, Default)]
pub(crate) struct Unacked {
    tasks: Vec<v1::TaskInfo>,
    updates: VecDeque<(u64, v1::TaskStatus)>,
    /// The sequence number of the last update queued; 0 before the first.
    last_seq: u64,
}

/// What a SUBSCRIBE carries, and the last update it covers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) tasks: Vec<v1::TaskInfo>,
    pub(crate) updates: Vec<call::Update>,
    /// Every update numbered up to this one has reached the agent once the SUBSCRIBE succeeds:
    /// it was acknowledged before, or the SUBSCRIBE carries it.
    pub(crate) covered: u64,
}

impl Unacked {
    /// A task arrived in a LAUNCH or LAUNCH_GROUP. A task id seen again (a LAUNCH the agent sent
    /// twice) keeps its first TaskInfo.
    pub(crate) fn launched(&mut self, task: &v1::TaskInfo) {
        if !self.tasks.iter().any(|t| t.task_id == task.task_id) {
            self.tasks.push(task.clone());
        }
    }

    /// An update was queued for the agent; answers its sequence number.
    pub(crate) fn queued(&mut self, status: v1::TaskStatus) -> u64 {
        self.last_seq += 1;
        self.updates.push_back((self.last_seq, status));
        self.last_seq
    }

    /// The agent acknowledged the update `uuid` of task `task_id`. A task counts as
    /// acknowledged once any of its updates is (reference §3.2).
    pub(crate) fn acknowledged(&mut self, task_id: &v1::TaskId, uuid: &[u8]) {
        self.tasks.retain(|t| &t.task_id != task_id);
        self.updates.retain(|(_, status)| status.uuid.as_deref() != Some(uuid));
    }

    /// The agent refused the update `uuid` for good: no later SUBSCRIBE may send it, after
    /// updates it accepted since. Its task stays unacknowledged.
    pub(crate) fn refused(&mut self, uuid: &[u8]) {
        self.updates.retain(|(_, status)| status.uuid.as_deref() != Some(uuid));
    }

    /// What a SUBSCRIBE sent now must carry, oldest first.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            tasks: self.tasks.clone(),
            updates: self
                .updates
                .iter()
                .map(|(_, status)| call::Update { status: status.clone() })
                .collect(),
            covered: self.last_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn task(id: &str) -> v1::TaskInfo {
        v1::TaskInfo { task_id: v1::TaskId { value: id.into() }, ..Default::default() }
    }

    fn status(task_id: &str, uuid: u8) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: v1::TaskId { value: task_id.into() },
            uuid: Some(Bytes::from(vec![uuid; 16])),
            ..Default::default()
        }
    }

    fn shape(snapshot: &Snapshot) -> (Vec<&str>, Vec<(&str, u8)>, u64) {
        let tasks = snapshot.tasks.iter().map(|t| t.task_id.value.as_str()).collect();
        let updates = snapshot
            .updates
            .iter()
            .map(|u| {
                let uuid = u.status.uuid.as_ref().map_or(0, |b| b[0]);
                (u.status.task_id.value.as_str(), uuid)
            })
            .collect();
        (tasks, updates, snapshot.covered)
    }

    #[test]
    fn nothing_is_unacknowledged_at_first() {
        let unacked = Unacked::default();
        assert_eq!(shape(&unacked.snapshot()), (vec![], vec![], 0));
    }

    #[test]
    fn tasks_and_updates_stay_in_order_until_acknowledged() {
        let mut unacked = Unacked::default();
        unacked.launched(&task("a"));
        unacked.launched(&task("b"));
        // A repeated LAUNCH does not list the task twice.
        unacked.launched(&task("a"));
        assert_eq!(unacked.queued(status("a", 1)), 1);
        assert_eq!(unacked.queued(status("b", 2)), 2);
        assert_eq!(unacked.queued(status("a", 3)), 3);
        assert_eq!(
            shape(&unacked.snapshot()),
            (vec!["a", "b"], vec![("a", 1), ("b", 2), ("a", 3)], 3)
        );

        // Acknowledging one update of `a` acknowledges the task, but not its other update.
        unacked.acknowledged(&v1::TaskId { value: "a".into() }, &[1; 16]);
        assert_eq!(shape(&unacked.snapshot()), (vec!["b"], vec![("b", 2), ("a", 3)], 3));

        // An ack of an unknown uuid changes nothing but the task it names.
        unacked.acknowledged(&v1::TaskId { value: "zz".into() }, &[9; 16]);
        assert_eq!(shape(&unacked.snapshot()), (vec!["b"], vec![("b", 2), ("a", 3)], 3));

        unacked.acknowledged(&v1::TaskId { value: "a".into() }, &[3; 16]);
        unacked.acknowledged(&v1::TaskId { value: "b".into() }, &[2; 16]);
        assert_eq!(shape(&unacked.snapshot()), (vec![], vec![], 3));

        // A refused update is dropped; its task stays.
        unacked.launched(&task("c"));
        unacked.queued(status("c", 5));
        unacked.refused(&[5; 16]);
        assert_eq!(shape(&unacked.snapshot()), (vec!["c"], vec![], 4));
        unacked.acknowledged(&v1::TaskId { value: "c".into() }, &[6; 16]);

        // Numbers keep growing after acks, so "covered" never goes back.
        assert_eq!(unacked.queued(status("b", 6)), 5);
        assert_eq!(shape(&unacked.snapshot()), (vec![], vec![("b", 6)], 5));
    }

    #[test]
    fn a_snapshot_carries_the_exact_statuses_sent() {
        let mut unacked = Unacked::default();
        let mut sent = status("a", 7);
        sent.message = Some("hello".into());
        sent.timestamp = Some(12.5);
        unacked.queued(sent.clone());
        assert_eq!(unacked.snapshot().updates, [call::Update { status: sent }]);
    }

    #[test]
    fn backoff_starts_quick_and_doubles_up_to_half_the_maximum() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay()).collect();
        assert_eq!(
            delays,
            [ms(100), ms(200), ms(400), ms(800), ms(1600), ms(2000), ms(2000), ms(2000)]
        );

        // A maximum under the first pause caps it too; a zero one cannot make the retries spin.
        let mut short = Backoff::new(ms(100));
        assert_eq!([short.next_delay(), short.next_delay()], [ms(50), ms(50)]);
        let mut zero = Backoff::new(Duration::ZERO);
        assert_eq!([zero.next_delay(), zero.next_delay()], [ms(10), ms(10)]);
    }
}
