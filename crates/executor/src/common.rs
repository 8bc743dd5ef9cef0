//! What the two executor cores share: their timing knobs, the agent's events in the cores'
//! terms, status updates with their uuids and the record of those the agent has not
//! acknowledged yet, the SIGTERM-then-SIGKILL escalation of one kill, the mapping of a
//! process's end to a terminal task state (reference §3.5), and the validation of a task's
//! health check and generalized check at launch with the TASK_RUNNING updates that carry
//! their results (§7.7).
//!
//! Like the cores themselves (`state.rs` for the command executor, `group.rs` for the default
//! executor) it does no IO: time is an `Instant` handed in, uuids come from an injected
//! generator. Which task to kill, and when to exit, is each core's own business.

use std::time::{Duration, Instant};

use agora_proto::v1;
use agora_proto::v1::TaskState;
use agora_proto::v1::task_status::Reason;

use crate::check::{CheckSpec, CheckStatus, Checker};
use crate::health::{HealthChecker, HealthSpec, Probe};
use crate::process::Termination;

/// The kill grace period when neither the KILL event nor the task names one (Mesos's default).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// How long an executor waits for the agent to acknowledge its terminal updates before it
/// exits anyway (Mesos's HTTP-mode fail-safe).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// The part of the shutdown grace period kept back for the terminal updates and their acks, and
/// the ack fail-safe after a SHUTDOWN: the agent destroys the container once the whole grace
/// period has passed, so waiting longer would gain nothing.
pub const SHUTDOWN_RESERVE: Duration = Duration::from_secs(1);

/// The longest grace period honoured; it keeps `Instant` arithmetic far from overflow when a
/// kill policy from the wire names centuries.
const MAX_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Timing knobs of a core; the IO shell fills them from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Grace period of a KILL without a kill policy on the event or the task.
    pub default_kill_grace: Duration,
    /// Grace period of the kills that a SHUTDOWN starts.
    pub shutdown_kill_grace: Duration,
    /// Fail-safe wait for the terminal updates' acks.
    pub ack_timeout: Duration,
    /// Fail-safe wait for the terminal updates' acks once a SHUTDOWN has arrived.
    pub shutdown_ack_timeout: Duration,
}

impl Config {
    /// The defaults of reference §3.5 for an executor whose shutdown grace period
    /// (`MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`) is `shutdown_grace_period`.
    pub fn new(shutdown_grace_period: Duration) -> Self {
        Self {
            default_kill_grace: DEFAULT_KILL_GRACE,
            shutdown_kill_grace: shutdown_grace_period.saturating_sub(SHUTDOWN_RESERVE),
            ack_timeout: ACK_TIMEOUT,
            shutdown_ack_timeout: SHUTDOWN_RESERVE,
        }
    }

    /// The grace period of a kill: the KILL event's policy overrides the task's own, and the
    /// default applies when neither names one.
    pub fn kill_grace(&self, event: Option<Duration>, task: Option<Duration>) -> Duration {
        event.or(task).unwrap_or(self.default_kill_grace).min(MAX_GRACE)
    }
}

/// A task as a LAUNCH or LAUNCH_GROUP event delivers it, in the cores' terms.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub task_id: String,
    /// Opaque to the cores: they hand it back to the shell to start.
    pub command: Option<v1::CommandInfo>,
    /// The task's own kill policy.
    pub kill_grace: Option<Duration>,
    /// The task's health check, or why it cannot be run. (Boxed: it is large and rare.)
    pub health: Option<Result<Box<HealthSpec>, String>>,
    /// The task's generalized check, or why it cannot be run. (Boxed for the same reason.)
    pub check: Option<Result<Box<CheckSpec>, String>>,
}

/// The agent's events that the cores act on.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// SUBSCRIBED; `task_killing_state` says whether the framework wants TASK_KILLING updates.
    Subscribed {
        task_killing_state: bool,
    },
    Launch(TaskSpec),
    LaunchGroup(Vec<TaskSpec>),
    /// KILL; `grace` is the event's kill policy, which overrides the task's.
    Kill {
        task_id: String,
        grace: Option<Duration>,
    },
    /// ACKNOWLEDGED of the update with this uuid.
    Acknowledged {
        uuid: Vec<u8>,
    },
    /// SHUTDOWN: kill every task, report them, exit.
    Shutdown,
    Error {
        message: String,
    },
}

/// One status update a core wants sent; the shell adds the executor id and the timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub uuid: [u8; 16],
    pub task_id: String,
    pub state: TaskState,
    pub message: Option<String>,
    /// The task's health, for updates that report it.
    pub healthy: Option<bool>,
    /// The latest result of the task's check, on the TASK_RUNNING updates of a checked task.
    pub check_status: Option<CheckStatus>,
    pub reason: Option<Reason>,
}

/// A source of update uuids (16 random bytes in production, a counter in tests).
pub type UuidSource = Box<dyn FnMut() -> [u8; 16] + Send>;

/// Makes updates and remembers those the agent has not acknowledged yet.
pub struct Reporter {
    uuids: UuidSource,
    unacknowledged: Vec<Update>,
}

impl Reporter {
    pub fn new(uuids: UuidSource) -> Self {
        Self { uuids, unacknowledged: Vec::new() }
    }

    /// A new update with a fresh uuid, recorded as unacknowledged and appended to a core's
    /// outputs; returns its uuid.
    pub fn send<O: From<Update>>(
        &mut self,
        out: &mut Vec<O>,
        task_id: String,
        state: TaskState,
        message: Option<String>,
    ) -> [u8; 16] {
        let update = Update {
            uuid: [0; 16],
            task_id,
            state,
            message,
            healthy: None,
            check_status: None,
            reason: None,
        };
        self.push(out, update)
    }

    /// Like [`Reporter::send`], for an update with more than a state and a message: it gets a
    /// fresh uuid in place of its own.
    pub fn push<O: From<Update>>(&mut self, out: &mut Vec<O>, mut update: Update) -> [u8; 16] {
        let uuid = (self.uuids)();
        update.uuid = uuid;
        self.unacknowledged.push(update.clone());
        out.push(O::from(update));
        uuid
    }

    /// Retires the update the agent acknowledged; unknown uuids change nothing.
    pub fn acknowledge(&mut self, uuid: &[u8]) {
        self.unacknowledged.retain(|u| u.uuid.as_slice() != uuid);
    }

    /// Updates sent and not yet acknowledged by the agent, oldest first.
    pub fn unacknowledged(&self) -> &[Update] {
        &self.unacknowledged
    }
}

/// One kill under way: SIGTERM went out (or goes out once the process exists), SIGKILL follows
/// at the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killing {
    deadline: Instant,
    /// SIGKILL was sent; nothing more to escalate.
    escalated: bool,
}

impl Killing {
    pub fn new(now: Instant, grace: Duration) -> Self {
        Self { deadline: now + grace.min(MAX_GRACE), escalated: false }
    }

    /// A KILL of `task_id`, whose kill is `slot`: the first one starts the kill, a later one
    /// can only bring the SIGKILL forward. Returns the line to log, if any, and whether this
    /// was the first kill (the one that reports TASK_KILLING and sends SIGTERM).
    pub fn begin(
        slot: &mut Option<Self>,
        task_id: &str,
        now: Instant,
        grace: Duration,
    ) -> (Option<String>, bool) {
        match slot {
            Some(killing) => {
                let line = killing
                    .shorten(now, grace)
                    .then(|| format!("kill grace period of task {task_id} shortened to {grace:?}"));
                (line, false)
            }
            None => {
                *slot = Some(Self::new(now, grace));
                (Some(format!("killing task {task_id} with a grace period of {grace:?}")), true)
            }
        }
    }

    /// A later kill can only bring the SIGKILL forward, never postpone it; returns whether
    /// this one did.
    pub fn shorten(&mut self, now: Instant, grace: Duration) -> bool {
        let deadline = now + grace.min(MAX_GRACE);
        let sooner = !self.escalated && deadline < self.deadline;
        if sooner {
            self.deadline = deadline;
        }
        sooner
    }

    /// When SIGKILL is due, until it was sent.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.escalated).then_some(self.deadline)
    }

    /// Whether SIGKILL must go out at `now`; it is due once, so a `true` marks it sent.
    pub fn escalate(&mut self, now: Instant) -> bool {
        let due = !self.escalated && now >= self.deadline;
        self.escalated |= due;
        due
    }
}

/// The terminal state and message of a task that ended with `termination`; `killed` says
/// whether the executor had been asked to kill it.
pub fn terminal_state(termination: Termination, killed: bool) -> (TaskState, String) {
    let message = termination.to_string();
    let state = if killed {
        TaskState::TaskKilled
    } else if termination == Termination::Exited(0) {
        TaskState::TaskFinished
    } else {
        TaskState::TaskFailed
    };
    (state, message)
}

/// A task's health check and generalized check as LAUNCH delivers them, each possibly invalid.
pub struct Checks {
    pub health: Option<Result<Box<HealthSpec>, String>>,
    pub check: Option<Result<Box<CheckSpec>, String>>,
}

pub type ValidChecks = (Option<Box<HealthSpec>>, Option<Box<CheckSpec>>);

impl Checks {
    /// Both specs, or the message of the TASK_FAILED that refuses the task.
    pub fn validate(self) -> Result<ValidChecks, String> {
        let health =
            self.health.transpose().map_err(|why| format!("Invalid health check: {why}"))?;
        let check = self.check.transpose().map_err(|why| format!("Invalid check: {why}"))?;
        Ok((health, check))
    }
}

/// A task's health check and generalized check: their specs until the task's process starts,
/// then their checkers. Both cores keep one per task, so that starting, timing, stopping and
/// reading them is written once.
#[derive(Debug, Default)]
pub struct Watchers {
    health_spec: Option<Box<HealthSpec>>,
    check_spec: Option<Box<CheckSpec>>,
    pub health: Option<Box<HealthChecker>>,
    pub check: Option<Box<Checker>>,
}

/// A probe a [`Watchers`] wants run now.
#[derive(Debug, Clone, PartialEq)]
pub enum DueProbe {
    /// For the health check; its result goes to the health checker.
    Health { probe: Probe, timeout: Option<Duration> },
    /// For the generalized check; its result goes to the check's checker.
    Check { probe: Probe, timeout: Option<Duration> },
}

impl Watchers {
    pub fn new(checks: ValidChecks) -> Self {
        let (health_spec, check_spec) = checks;
        Self { health_spec, check_spec, health: None, check: None }
    }

    /// The task's process started at `now`: the delays and grace period count from here. A
    /// task already being killed gets no checkers.
    pub fn start(&mut self, now: Instant, killing: bool) {
        let (health, check) = (self.health_spec.take(), self.check_spec.take());
        if killing {
            return;
        }
        self.health = health.map(|spec| Box::new(HealthChecker::new(*spec, now)));
        self.check = check.map(|spec| Box::new(Checker::new(*spec, now)));
    }

    /// No more probes: a task on its way out has no health left to report, nor check results
    /// (those go only on TASK_RUNNING updates).
    pub fn stop(&mut self) {
        if let Some(checker) = &mut self.health {
            checker.stop();
        }
        if let Some(checker) = &mut self.check {
            checker.stop();
        }
    }

    /// When the next probe is due.
    pub fn deadline(&self) -> Option<Instant> {
        let health = self.health.as_ref().and_then(|c| c.deadline());
        let check = self.check.as_ref().and_then(|c| c.deadline());
        health.into_iter().chain(check).min()
    }

    /// The probes due at `now`, each marked running until its result comes back.
    pub fn due(&mut self, now: Instant) -> Vec<DueProbe> {
        let mut due = Vec::new();
        if let Some(checker) = &mut self.health
            && checker.due(now)
        {
            let spec = checker.spec();
            due.push(DueProbe::Health { probe: spec.probe.clone(), timeout: spec.timeout });
        }
        if let Some(checker) = &mut self.check
            && checker.due(now)
        {
            let spec = checker.spec();
            due.push(DueProbe::Check { probe: spec.probe.clone(), timeout: spec.timeout });
        }
        due
    }

    /// What the task's TASK_RUNNING updates carry: the check's latest result, if it has one.
    pub fn check_status(&self) -> Option<CheckStatus> {
        self.check.as_ref().map(|c| c.status())
    }
}

/// A TASK_RUNNING update of `task_id`, carrying the check's latest result when the task has a
/// check (`check_status`), and `healthy` and `reason` when it reports one of them.
pub fn running(
    task_id: String,
    check_status: Option<CheckStatus>,
    healthy: Option<bool>,
    reason: Option<Reason>,
) -> Update {
    Update {
        uuid: [0; 16],
        task_id,
        state: TaskState::TaskRunning,
        message: None,
        healthy,
        check_status,
        reason,
    }
}

/// Uuids 1, 2, 3, ... in the first byte, so tests can name them.
#[cfg(test)]
pub(crate) fn counting_uuids() -> UuidSource {
    let mut next = 0u8;
    Box::new(move || {
        next += 1;
        let mut uuid = [0u8; 16];
        uuid[0] = next;
        uuid
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_grace_comes_from_the_event_then_the_task_then_the_default_within_bounds() {
        let config = Config::new(Duration::from_secs(5));
        let secs = Duration::from_secs;
        assert_eq!(config.kill_grace(Some(secs(1)), Some(secs(10))), secs(1));
        assert_eq!(config.kill_grace(None, Some(secs(10))), secs(10));
        assert_eq!(config.kill_grace(None, None), DEFAULT_KILL_GRACE);
        assert_eq!(config.kill_grace(Some(Duration::MAX), None), MAX_GRACE);
        assert_eq!(config.shutdown_kill_grace, secs(4));
        assert_eq!(Config::new(Duration::from_millis(500)).shutdown_kill_grace, Duration::ZERO);
    }

    #[test]
    fn a_kill_escalates_once_and_only_ever_sooner() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut kill = Killing::new(t0, secs(10));
        assert_eq!(kill.deadline(), Some(t0 + secs(10)));
        assert!(!kill.shorten(t0 + secs(1), secs(60)), "never later");
        assert!(kill.shorten(t0 + secs(1), secs(2)));
        assert_eq!(kill.deadline(), Some(t0 + secs(3)));
        assert!(!kill.escalate(t0 + secs(2)));
        assert!(kill.escalate(t0 + secs(3)));
        assert!(!kill.escalate(t0 + secs(4)), "SIGKILL goes out once");
        assert_eq!(kill.deadline(), None);
        assert!(!kill.shorten(t0, Duration::ZERO), "nothing left to bring forward");
    }

    #[test]
    fn only_the_first_kill_starts_one() {
        let t0 = Instant::now();
        let mut slot = None;
        let (line, first) = Killing::begin(&mut slot, "t", t0, Duration::from_secs(5));
        assert!(first && line.is_some_and(|l| l.contains("killing task t")));
        let (line, first) = Killing::begin(&mut slot, "t", t0, Duration::from_secs(9));
        assert!(!first && line.is_none(), "a longer grace changes nothing");
        let (line, first) = Killing::begin(&mut slot, "t", t0, Duration::from_secs(1));
        assert!(!first && line.is_some_and(|l| l.contains("shortened")));
        assert_eq!(slot.and_then(|k| k.deadline()), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_reporter_keeps_what_is_not_acknowledged() {
        let mut reporter = Reporter::new(counting_uuids());
        let mut out: Vec<Update> = Vec::new();
        let first = reporter.send(&mut out, "a".into(), TaskState::TaskRunning, None);
        let second = reporter.send(&mut out, "b".into(), TaskState::TaskFailed, Some("x".into()));
        assert_eq!((first[0], second[0]), (1, 2));
        reporter.acknowledge(&[9; 16]);
        reporter.acknowledge(&first);
        assert_eq!(reporter.unacknowledged(), &out[1..]);
    }
}
