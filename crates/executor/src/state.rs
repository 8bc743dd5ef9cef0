//! The command executor's decision core: given agent events, the outcome of spawning the task,
//! the task's exit and the passing of time, it decides which status updates to send, which
//! signals to deliver to the task's process group, when the next timer is due and when the
//! executor exits (reference §3.5). It also carries the task's health check (§7.7): it asks
//! for probes when the checker in `health.rs` says one is due, reports health changes as
//! TASK_RUNNING updates with `healthy` set, and kills the task once failures add up. Its
//! generalized check (`TaskInfo.check`) runs beside that on the checker in `check.rs`: each
//! changed result goes out as a TASK_RUNNING update with reason TASK_CHECK_STATUS_UPDATED, and
//! every TASK_RUNNING update of a checked task carries the latest result (an empty one on the
//! first); checks never kill, and stop once the task is being killed.
//!
//! It does no IO: it never touches processes, sockets or the clock. Time enters as the `now`
//! argument of [`CommandExecutor::handle`], update uuids come from an injected generator, and
//! wire types appear only as the opaque `CommandInfo` it hands back in [`Output::Spawn`]. The IO
//! loop in `lib.rs` turns events into [`Input`]s and carries out the [`Output`]s. What it shares
//! with the default executor's core (timing, updates, kill escalation) is in `common.rs`.

use std::time::{Duration, Instant};

use agora_proto::v1;
use agora_proto::v1::TaskState;
use agora_proto::v1::task_status::Reason;
use nix::sys::signal::Signal;

use crate::check::{CheckSpec, CheckStatus};
use crate::common::{
    AgentEvent, Checks, Config, DueProbe, Killing, Reporter, Update, UuidSource, Watchers, running,
    terminal_state,
};
use crate::health::{HealthSpec, Probe, Verdict};
use crate::process::Termination;

/// The message of the update that refuses a second task.
pub const MULTIPLE_TASKS: &str = "Attempted to run multiple tasks using a command executor";

/// What happened, in the core's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// SUBSCRIBED; `task_killing_state` says whether the framework wants TASK_KILLING updates.
    Subscribed { task_killing_state: bool },
    /// LAUNCH of one task; `kill_grace` is the task's own kill policy, `health` its health
    /// check and `check` its generalized check (or why they cannot run).
    Launch {
        task_id: String,
        command: Option<v1::CommandInfo>,
        kill_grace: Option<Duration>,
        health: Option<Result<Box<HealthSpec>, String>>,
        check: Option<Result<Box<CheckSpec>, String>>,
    },
    /// LAUNCH_GROUP, which a command executor cannot run.
    LaunchGroup { task_ids: Vec<String> },
    /// KILL; `grace` is the event's kill policy, which overrides the task's.
    Kill { task_id: String, grace: Option<Duration> },
    /// ACKNOWLEDGED of the update with this uuid.
    Acknowledged { uuid: Vec<u8> },
    /// SHUTDOWN: kill the task, report it, exit.
    Shutdown,
    /// ERROR from the agent.
    Error { message: String },
    /// The event stream ended or broke, or the executor was told to terminate.
    Disconnected { reason: String },
    /// The task's process was forked (the answer to [`Output::Spawn`]).
    Spawned,
    /// The task's process could not be started (the answer to [`Output::Spawn`]).
    SpawnFailed { message: String },
    /// The task's process ended.
    Exited(Termination),
    /// The result of the probe of [`Output::Probe`]: `Ok` for healthy, else why not.
    Probed(Result<(), String>),
    /// The outcome of the check probe of [`Output::Check`]: the result, or why there is none.
    Checked(Result<CheckStatus, String>),
    /// The deadline of [`CommandExecutor::next_deadline`] may have passed.
    Tick,
}

impl From<AgentEvent> for Input {
    fn from(event: AgentEvent) -> Self {
        match event {
            AgentEvent::Subscribed { task_killing_state } => {
                Self::Subscribed { task_killing_state }
            }
            AgentEvent::Launch(task) => Self::Launch {
                task_id: task.task_id,
                command: task.command,
                kill_grace: task.kill_grace,
                health: task.health,
                check: task.check,
            },
            AgentEvent::LaunchGroup(tasks) => {
                Self::LaunchGroup { task_ids: tasks.into_iter().map(|t| t.task_id).collect() }
            }
            AgentEvent::Kill { task_id, grace } => Self::Kill { task_id, grace },
            AgentEvent::Acknowledged { uuid } => Self::Acknowledged { uuid },
            AgentEvent::Shutdown => Self::Shutdown,
            AgentEvent::Error { message } => Self::Error { message },
        }
    }
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this update to the agent (in order with the others).
    Send(Update),
    /// Start the task's command and answer with [`Input::Spawned`] or [`Input::SpawnFailed`]
    /// before any other input.
    Spawn(Option<v1::CommandInfo>),
    /// Deliver this signal to the task's process group (if it was ever started).
    Signal(Signal),
    /// Run this health-check probe for at most `timeout` and answer with [`Input::Probed`]
    /// when it is over (other inputs may come first).
    Probe { probe: Probe, timeout: Option<Duration> },
    /// Run this check probe for at most `timeout` and answer with [`Input::Checked`] when it
    /// is over (other inputs may come first; it may run beside a health-check probe).
    Check { probe: Probe, timeout: Option<Duration> },
    /// A line for the executor's log (the sandbox's `stderr`).
    Log(String),
    /// Exit the executor with this code; the core ignores every later input.
    Exit(i32),
}

impl From<Update> for Output {
    fn from(update: Update) -> Self {
        Self::Send(update)
    }
}

struct Task {
    id: String,
    kill_grace: Option<Duration>,
    /// Whether the process was forked; signals before that have no group to reach.
    spawned: bool,
    kill: Option<Killing>,
    /// The health check and the generalized check.
    watch: Watchers,
    /// The kill came from failed health checks: the terminal update says `healthy: false`.
    unhealthy: bool,
}

enum Phase {
    /// No task launched yet.
    Idle,
    /// The task was launched and has not ended.
    Active(Task),
    /// The terminal update was sent; waiting for its ack until `deadline`.
    Finishing { terminal: [u8; 16], deadline: Instant },
    /// `Exit` was emitted.
    Gone,
}

/// The command executor's state machine: one task, its kill escalation, the updates in flight.
pub struct CommandExecutor {
    config: Config,
    reporter: Reporter,
    phase: Phase,
    task_killing_state: bool,
    shutting_down: bool,
}

impl CommandExecutor {
    pub fn new(config: Config, uuids: UuidSource) -> Self {
        Self {
            config,
            reporter: Reporter::new(uuids),
            phase: Phase::Idle,
            task_killing_state: false,
            shutting_down: false,
        }
    }

    /// Updates sent and not yet acknowledged by the agent, oldest first.
    pub fn unacknowledged(&self) -> &[Update] {
        self.reporter.unacknowledged()
    }

    /// When the shell must feed [`Input::Tick`] next: the kill escalation, the next health
    /// check or the ack fail-safe.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Active(task) => {
                let escalation = match (&task.kill, task.spawned) {
                    (Some(killing), true) => killing.deadline(),
                    _ => None,
                };
                escalation.into_iter().chain(task.watch.deadline()).min()
            }
            Phase::Finishing { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// Feeds one input observed at `now` and returns what to do about it.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Gone) {
            return out;
        }
        match input {
            Input::Subscribed { task_killing_state } => {
                self.task_killing_state = task_killing_state;
            }
            Input::Launch { task_id, command, kill_grace, health, check } => {
                let checks = Checks { health, check };
                self.launch(task_id, command, kill_grace, checks, now, &mut out);
            }
            Input::LaunchGroup { task_ids } => {
                for task_id in task_ids {
                    let message = "A command executor cannot run task groups".to_string();
                    self.reporter.send(&mut out, task_id, TaskState::TaskFailed, Some(message));
                }
            }
            Input::Kill { task_id, grace } => self.kill(&task_id, grace, now, &mut out),
            Input::Acknowledged { uuid } => self.acknowledged(&uuid, &mut out),
            Input::Shutdown => self.shutdown(now, &mut out),
            Input::Error { message } => {
                self.abandon(format!("the agent sent an error: {message}"), &mut out)
            }
            Input::Disconnected { reason } => {
                self.abandon(format!("lost the agent: {reason}"), &mut out)
            }
            Input::Spawned => self.spawned(now, &mut out),
            Input::SpawnFailed { message } => {
                if let Phase::Active(task) = &self.phase {
                    let task_id = task.id.clone();
                    out.push(Output::Log(format!("cannot start task {task_id}: {message}")));
                    self.finish(task_id, TaskState::TaskFailed, message, None, now, &mut out);
                }
            }
            Input::Exited(termination) => self.exited(termination, now, &mut out),
            Input::Probed(result) => self.probed(result, now, &mut out),
            Input::Checked(outcome) => self.checked(outcome, now, &mut out),
            Input::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn launch(
        &mut self,
        task_id: String,
        command: Option<v1::CommandInfo>,
        kill_grace: Option<Duration>,
        checks: Checks,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if !matches!(self.phase, Phase::Idle) {
            out.push(Output::Log(format!("refusing task {task_id}: {MULTIPLE_TASKS}")));
            self.reporter.send(out, task_id, TaskState::TaskFailed, Some(MULTIPLE_TASKS.into()));
            return;
        }
        // A task whose health or check nobody could watch is refused rather than run
        // unwatched.
        let (health, check) = match checks.validate() {
            Ok(checks) => checks,
            Err(message) => {
                out.push(Output::Log(format!("refusing task {task_id}: {message}")));
                self.finish(task_id, TaskState::TaskFailed, message, None, now, out);
                return;
            }
        };
        out.push(Output::Log(format!("starting task {task_id}")));
        self.reporter.send(out, task_id.clone(), TaskState::TaskStarting, None);
        out.push(Output::Spawn(command));
        self.phase = Phase::Active(Task {
            id: task_id,
            kill_grace,
            spawned: false,
            kill: None,
            watch: Watchers::new((health, check)),
            unhealthy: false,
        });
    }

    fn spawned(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Phase::Active(task) = &mut self.phase else {
            return;
        };
        task.spawned = true;
        let task_id = task.id.clone();
        // A kill that arrived while the process was being forked is carried out now.
        let kill_pending = task.kill.is_some();
        // The check's empty first result rides on the TASK_RUNNING update.
        task.watch.start(now, kill_pending);
        let check_status = task.watch.check_status();
        self.reporter.push(out, running(task_id, check_status, None, None));
        if kill_pending {
            out.push(Output::Signal(Signal::SIGTERM));
            self.escalate_if_due(now, out);
        }
    }

    fn kill(
        &mut self,
        task_id: &str,
        grace: Option<Duration>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Phase::Active(task) = &mut self.phase else {
            out.push(Output::Log(format!("ignoring kill of task {task_id}: it is not running")));
            return;
        };
        if task.id != task_id {
            let running = &task.id;
            out.push(Output::Log(format!(
                "ignoring kill of task {task_id}: this executor runs task {running}"
            )));
            return;
        }
        let grace = self.config.kill_grace(grace, task.kill_grace);
        let (line, first) = Killing::begin(&mut task.kill, task_id, now, grace);
        out.extend(line.map(Output::Log));
        task.watch.stop();
        if first {
            let spawned = task.spawned;
            if self.task_killing_state {
                self.reporter.send(out, task_id.to_string(), TaskState::TaskKilling, None);
            }
            if spawned {
                out.push(Output::Signal(Signal::SIGTERM));
            }
        }
        self.escalate_if_due(now, out);
    }

    fn escalate_if_due(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let Phase::Active(Task { spawned: true, kill: Some(killing), id, .. }) = &mut self.phase
            && killing.escalate(now)
        {
            out.push(Output::Log(format!(
                "task {id} outlived its kill grace period; sending SIGKILL"
            )));
            out.push(Output::Signal(Signal::SIGKILL));
        }
    }

    fn shutdown(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.shutting_down = true;
        let short_deadline = now + self.config.shutdown_ack_timeout;
        match &mut self.phase {
            Phase::Idle => {
                out.push(Output::Log("shutting down without a task".into()));
                self.exit(0, out);
            }
            Phase::Active(task) => {
                let task_id = task.id.clone();
                let grace = self.config.shutdown_kill_grace;
                out.push(Output::Log("shutting down".into()));
                self.kill(&task_id, Some(grace), now, out);
            }
            Phase::Finishing { deadline, .. } => {
                *deadline = (*deadline).min(short_deadline);
            }
            Phase::Gone => {}
        }
    }

    fn exited(&mut self, termination: Termination, now: Instant, out: &mut Vec<Output>) {
        let Phase::Active(task) = &self.phase else {
            return;
        };
        let task_id = task.id.clone();
        let killed = task.kill.is_some();
        let healthy = task.unhealthy.then_some(false);
        let (state, message) = terminal_state(termination, killed);
        out.push(Output::Log(format!("task {task_id}: {message}")));
        // The group leader is gone; whatever it left behind in its group belongs to the task
        // and ends with it, as it would when Mesos destroys the container.
        out.push(Output::Signal(Signal::SIGKILL));
        self.finish(task_id, state, message, healthy, now, out);
    }

    /// Sends the terminal update of the task (with `healthy` when health checks killed it) and
    /// starts waiting for its ack.
    fn finish(
        &mut self,
        task_id: String,
        state: TaskState,
        message: String,
        healthy: Option<bool>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let update = Update {
            uuid: [0; 16],
            task_id,
            state,
            message: Some(message),
            healthy,
            check_status: None,
            reason: None,
        };
        let terminal = self.reporter.push(out, update);
        let wait = if self.shutting_down {
            self.config.shutdown_ack_timeout
        } else {
            self.config.ack_timeout
        };
        self.phase = Phase::Finishing { terminal, deadline: now + wait };
    }

    fn acknowledged(&mut self, uuid: &[u8], out: &mut Vec<Output>) {
        self.reporter.acknowledge(uuid);
        if let Phase::Finishing { terminal, .. } = &self.phase
            && terminal.as_slice() == uuid
        {
            out.push(Output::Log("the terminal update was acknowledged; exiting".into()));
            self.exit(0, out);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        match &self.phase {
            Phase::Finishing { deadline, .. } if now >= *deadline => {
                out.push(Output::Log(
                    "the terminal update was not acknowledged in time; exiting".into(),
                ));
                self.exit(1, out);
            }
            _ => {
                self.escalate_if_due(now, out);
                let Phase::Active(task) = &mut self.phase else {
                    return;
                };
                for due in task.watch.due(now) {
                    out.push(match due {
                        DueProbe::Health { probe, timeout } => Output::Probe { probe, timeout },
                        DueProbe::Check { probe, timeout } => Output::Check { probe, timeout },
                    });
                }
            }
        }
    }

    /// A probe's result: reported when it changes what the framework knows, and the task
    /// killed (with its own kill policy) once failures reach the limit.
    fn probed(&mut self, result: Result<(), String>, now: Instant, out: &mut Vec<Output>) {
        let Phase::Active(task) = &mut self.phase else {
            return;
        };
        let check_status = task.watch.check_status();
        let Task { id, watch: Watchers { health: Some(checker), .. }, unhealthy, .. } = task else {
            return;
        };
        if let Err(why) = &result {
            out.push(Output::Log(format!("health check of task {id} failed: {why}")));
        }
        let verdict = checker.result(result.is_ok(), now);
        let healthy = match verdict {
            Verdict::Quiet => return,
            Verdict::Report { healthy } => healthy,
            Verdict::ReportAndKill => {
                *unhealthy = true;
                false
            }
        };
        let task_id = id.clone();
        let reason = Some(Reason::TaskHealthCheckStatusUpdated);
        self.reporter.push(out, running(task_id.clone(), check_status, Some(healthy), reason));
        if verdict == Verdict::ReportAndKill {
            out.push(Output::Log(format!(
                "task {task_id} failed its health check too many times in a row; killing it"
            )));
            self.kill(&task_id, None, now, out);
        }
    }

    /// A check probe's outcome: a changed result goes out on a TASK_RUNNING update; nothing
    /// else happens to the task, whatever the result.
    fn checked(
        &mut self,
        outcome: Result<CheckStatus, String>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Phase::Active(Task { id, watch: Watchers { check: Some(checker), .. }, .. }) =
            &mut self.phase
        else {
            return;
        };
        if let Err(why) = &outcome {
            out.push(Output::Log(format!("check of task {id} gave no result: {why}")));
        }
        if let Some(status) = checker.result(outcome, now) {
            let reason = Some(Reason::TaskCheckStatusUpdated);
            self.reporter.push(out, running(id.clone(), Some(status), None, reason));
        }
    }

    /// Leaves without the agent, for `why`: a task left running would be an orphan nobody
    /// reports on.
    fn abandon(&mut self, why: String, out: &mut Vec<Output>) {
        out.push(Output::Log(why));
        if let Phase::Active(Task { spawned: true, .. }) = &self.phase {
            out.push(Output::Signal(Signal::SIGKILL));
        }
        self.exit(1, out);
    }

    fn exit(&mut self, code: i32, out: &mut Vec<Output>) {
        self.phase = Phase::Gone;
        out.push(Output::Exit(code));
    }
}

#[cfg(test)]
mod tests;
