//! The default executor's decision core (Mesos's `mesos-default-executor`, reference §3.5):
//! it runs task groups. Each LAUNCH_GROUP starts every task of the group as a process of its
//! own; each task goes STARTING, RUNNING and then to its terminal state. A group lives and dies
//! together, as in Mesos: when one of its tasks fails or is killed, the executor kills the
//! others (they end TASK_KILLED), and a KILL of any task kills the whole group. Several groups
//! may run side by side and arrive over time; SHUTDOWN kills them all. The executor exits once
//! every task it was given is over and the agent has acknowledged every terminal update (or the
//! ack fail-safe has run out).
//!
//! Like the command executor's core (`state.rs`) it does no IO: time enters as `now`, uuids
//! from an injected generator, and the loop in `lib.rs` starts and signals the processes it
//! names by task id. Each task's health check runs as in the command executor (`health.rs`
//! decides when to probe and what results mean; a kill by failed checks takes the group down
//! like any other kill), and so does each task's generalized check (`check.rs`: changed
//! results go out as TASK_RUNNING updates with reason TASK_CHECK_STATUS_UPDATED, every
//! TASK_RUNNING update of the task carries the latest one, and checks never kill). It does not run single tasks (LAUNCH), which Mesos's default executor
//! does not either.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agora_proto::v1;
use agora_proto::v1::TaskState;
use agora_proto::v1::task_status::Reason;
use nix::sys::signal::Signal;

use crate::check::{CheckSpec, CheckStatus};
use crate::common::{
    AgentEvent, Checks, Config, DueProbe, Killing, Reporter, TaskSpec, Update, UuidSource,
    Watchers, running, terminal_state,
};
use crate::health::{HealthSpec, Probe, Verdict};
use crate::process::Termination;

/// The message of the update that refuses a single task.
pub const SINGLE_TASK: &str = "The default executor only runs task groups (LAUNCH_GROUP)";

/// What happened, in the core's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// SUBSCRIBED; `task_killing_state` says whether the framework wants TASK_KILLING updates.
    Subscribed {
        task_killing_state: bool,
    },
    /// LAUNCH of a single task, which this executor refuses.
    Launch {
        task_id: String,
    },
    LaunchGroup {
        tasks: Vec<TaskSpec>,
    },
    /// KILL of one task, and so of its group; `grace` overrides that task's kill policy.
    Kill {
        task_id: String,
        grace: Option<Duration>,
    },
    Acknowledged {
        uuid: Vec<u8>,
    },
    Shutdown,
    Error {
        message: String,
    },
    /// The event stream ended or broke, or the executor was told to terminate.
    Disconnected {
        reason: String,
    },
    /// The task's process was forked (an answer to [`Output::Spawn`]).
    Spawned {
        task_id: String,
    },
    /// The task's process could not be started (an answer to [`Output::Spawn`]).
    SpawnFailed {
        task_id: String,
        message: String,
    },
    /// The task's process ended.
    Exited {
        task_id: String,
        termination: Termination,
    },
    /// The result of the task's probe of [`Output::Probe`]: `Ok` for healthy, else why not.
    Probed {
        task_id: String,
        result: Result<(), String>,
    },
    /// The outcome of the task's check probe of [`Output::Check`]: the result, or why there
    /// is none.
    Checked {
        task_id: String,
        outcome: Result<CheckStatus, String>,
    },
    /// The deadline of [`DefaultExecutor::next_deadline`] may have passed.
    Tick,
}

impl From<AgentEvent> for Input {
    fn from(event: AgentEvent) -> Self {
        match event {
            AgentEvent::Subscribed { task_killing_state } => {
                Self::Subscribed { task_killing_state }
            }
            AgentEvent::Launch(task) => Self::Launch { task_id: task.task_id },
            AgentEvent::LaunchGroup(tasks) => Self::LaunchGroup { tasks },
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
    /// Start the task's command and answer with [`Input::Spawned`] or [`Input::SpawnFailed`].
    Spawn { task_id: String, command: v1::CommandInfo },
    /// Deliver this signal to the task's process group (if it was started).
    Signal { task_id: String, signal: Signal },
    /// Run this health-check probe of the task (in its sandbox) for at most `timeout` and
    /// answer with [`Input::Probed`] when it is over (other inputs may come first).
    Probe { task_id: String, probe: Probe, timeout: Option<Duration> },
    /// Run this check probe of the task (in its sandbox) for at most `timeout` and answer with
    /// [`Input::Checked`] when it is over (other inputs may come first).
    Check { task_id: String, probe: Probe, timeout: Option<Duration> },
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
    /// The LAUNCH_GROUP it came in.
    group: u64,
    kill_grace: Option<Duration>,
    /// Whether the process was forked; signals before that have no group to reach.
    spawned: bool,
    kill: Option<Killing>,
    /// The uuid of the terminal update, once sent; the task is forgotten when it is
    /// acknowledged.
    terminal: Option<[u8; 16]>,
    /// The health check and the generalized check.
    watch: Watchers,
    /// The kill came from failed health checks: the terminal update says `healthy: false`.
    unhealthy: bool,
}

impl Task {
    fn new(
        group: u64,
        kill_grace: Option<Duration>,
        health: Option<Box<HealthSpec>>,
        check: Option<Box<CheckSpec>>,
    ) -> Self {
        Self {
            group,
            kill_grace,
            spawned: false,
            kill: None,
            terminal: None,
            watch: Watchers::new((health, check)),
            unhealthy: false,
        }
    }

    fn live(&self) -> bool {
        self.terminal.is_none()
    }
}

/// The default executor's state machine: every task not yet over and acknowledged, by id.
pub struct DefaultExecutor {
    config: Config,
    reporter: Reporter,
    task_killing_state: bool,
    shutting_down: bool,
    tasks: BTreeMap<String, Task>,
    next_group: u64,
    /// Once every task is over: when to stop waiting for the acks of their terminal updates.
    finishing: Option<Instant>,
    gone: bool,
}

impl DefaultExecutor {
    pub fn new(config: Config, uuids: UuidSource) -> Self {
        Self {
            config,
            reporter: Reporter::new(uuids),
            task_killing_state: false,
            shutting_down: false,
            tasks: BTreeMap::new(),
            next_group: 0,
            finishing: None,
            gone: false,
        }
    }

    /// Updates sent and not yet acknowledged by the agent, oldest first.
    pub fn unacknowledged(&self) -> &[Update] {
        self.reporter.unacknowledged()
    }

    /// When the shell must feed [`Input::Tick`] next: the earliest kill escalation, health
    /// check or ack fail-safe.
    pub fn next_deadline(&self) -> Option<Instant> {
        let live = self.tasks.values().filter(|t| t.spawned && t.live());
        let escalations = live.clone().filter_map(|t| t.kill.as_ref().and_then(Killing::deadline));
        let probes = live.filter_map(|t| t.watch.deadline());
        escalations.chain(probes).chain(self.finishing).min()
    }

    /// Feeds one input observed at `now` and returns what to do about it.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.gone {
            return out;
        }
        match input {
            Input::Subscribed { task_killing_state } => {
                self.task_killing_state = task_killing_state;
            }
            Input::Launch { task_id } => {
                out.push(Output::Log(format!("refusing task {task_id}: {SINGLE_TASK}")));
                self.refuse(vec![task_id], SINGLE_TASK, now, &mut out);
            }
            Input::LaunchGroup { tasks } => self.launch_group(tasks, now, &mut out),
            Input::Kill { task_id, grace } => self.kill(&task_id, grace, now, &mut out),
            Input::Acknowledged { uuid } => self.acknowledged(&uuid, &mut out),
            Input::Shutdown => self.shutdown(now, &mut out),
            Input::Error { message } => {
                self.abandon(format!("the agent sent an error: {message}"), &mut out)
            }
            Input::Disconnected { reason } => {
                self.abandon(format!("lost the agent: {reason}"), &mut out)
            }
            Input::Spawned { task_id } => self.spawned(&task_id, now, &mut out),
            Input::SpawnFailed { task_id, message } => {
                if self.tasks.get(&task_id).is_some_and(Task::live) {
                    out.push(Output::Log(format!("cannot start task {task_id}: {message}")));
                    self.finish(&task_id, TaskState::TaskFailed, message, None, now, &mut out);
                }
            }
            Input::Exited { task_id, termination } => {
                self.exited(&task_id, termination, now, &mut out);
            }
            Input::Probed { task_id, result } => self.probed(&task_id, result, now, &mut out),
            Input::Checked { task_id, outcome } => self.checked(&task_id, outcome, now, &mut out),
            Input::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn launch_group(&mut self, specs: Vec<TaskSpec>, now: Instant, out: &mut Vec<Output>) {
        let ids: Vec<String> = specs.iter().map(|t| t.task_id.clone()).collect();
        if self.shutting_down {
            self.refuse(ids, "The executor is shutting down", now, out);
            return;
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != ids.len() || ids.iter().any(|id| self.tasks.contains_key(id)) {
            // Launching part of a group would break its all-or-nothing promise.
            self.refuse(ids, "Task group reuses a task ID this executor already runs", now, out);
            return;
        }
        let group = self.next_group;
        self.next_group += 1;
        self.finishing = None;
        out.push(Output::Log(format!("starting task group {}", ids.join(", "))));
        let mut commands = Vec::new();
        for spec in specs {
            // A task whose health or check nobody could watch cannot start, as one without a
            // command.
            let ((health, check), invalid) =
                match (Checks { health: spec.health, check: spec.check }).validate() {
                    Ok(checks) => (checks, None),
                    Err(why) => ((None, None), Some(why)),
                };
            let command = match (spec.command, invalid) {
                (_, Some(why)) => Err(why),
                (None, None) => Err("The task has no CommandInfo".to_string()),
                (Some(command), None) => Ok(command),
            };
            let task = Task::new(group, spec.kill_grace, health, check);
            self.tasks.insert(spec.task_id.clone(), task);
            self.reporter.send(out, spec.task_id.clone(), TaskState::TaskStarting, None);
            commands.push((spec.task_id, command));
        }
        if commands.iter().all(|(_, command)| command.is_ok()) {
            let spawns = commands.into_iter().filter_map(|(task_id, command)| {
                Some(Output::Spawn { task_id, command: command.ok()? })
            });
            out.extend(spawns);
            return;
        }
        // A task that cannot start fails, and the group never starts: the others end killed
        // without having run.
        for (task_id, command) in commands {
            let (state, message) = match command {
                Err(why) => (TaskState::TaskFailed, why),
                Ok(_) => {
                    (TaskState::TaskKilled, "Another task of the group could not start".into())
                }
            };
            self.terminate(&task_id, state, message, None, out);
        }
        self.check_finished(now);
    }

    /// Answers tasks this executor will not run with TASK_FAILED. Ids it already runs get no
    /// update (it would land in the running task's stream); the others are remembered as over,
    /// so that their updates count towards the executor's exit like any other.
    fn refuse(&mut self, ids: Vec<String>, message: &str, now: Instant, out: &mut Vec<Output>) {
        for task_id in ids {
            if self.tasks.contains_key(&task_id) {
                continue;
            }
            let uuid = self.reporter.send(
                out,
                task_id.clone(),
                TaskState::TaskFailed,
                Some(message.into()),
            );
            let group = self.next_group;
            self.next_group += 1;
            let task = Task { terminal: Some(uuid), ..Task::new(group, None, None, None) };
            self.tasks.insert(task_id, task);
        }
        self.check_finished(now);
    }

    fn spawned(&mut self, task_id: &str, now: Instant, out: &mut Vec<Output>) {
        let Some(task) = self.tasks.get_mut(task_id).filter(|t| t.live()) else {
            return;
        };
        task.spawned = true;
        // The check's empty first result rides on the TASK_RUNNING update.
        task.watch.start(now, task.kill.is_some());
        if task.kill.is_some() {
            // The group was doomed while this process was being forked: it goes at once, and
            // is never reported running.
            out.push(Output::Signal { task_id: task_id.to_string(), signal: Signal::SIGTERM });
            self.escalate_if_due(task_id, now, out);
        } else {
            let check_status = task.watch.check_status();
            self.reporter.push(out, running(task_id.to_string(), check_status, None, None));
        }
    }

    /// KILL: the named task with the event's grace period, the rest of its group with their
    /// own.
    fn kill(
        &mut self,
        task_id: &str,
        grace: Option<Duration>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(group) = self.tasks.get(task_id).filter(|t| t.live()).map(|t| t.group) else {
            out.push(Output::Log(format!("ignoring kill of task {task_id}: it is not running")));
            return;
        };
        self.kill_task(task_id, grace, now, out);
        self.kill_group(group, now, out);
    }

    /// Kills every task of `group` that is neither over nor already being killed (whose own
    /// kill keeps its grace period).
    fn kill_group(&mut self, group: u64, now: Instant, out: &mut Vec<Output>) {
        let doomed: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.group == group && t.live() && t.kill.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for task_id in doomed {
            self.kill_task(&task_id, None, now, out);
        }
    }

    /// Starts killing one live task: TASK_KILLING if the framework wants it, SIGTERM now (or
    /// once the process exists), SIGKILL after the grace period. A task already being killed
    /// can only have its SIGKILL brought forward.
    fn kill_task(
        &mut self,
        task_id: &str,
        grace: Option<Duration>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(task) = self.tasks.get_mut(task_id).filter(|t| t.live()) else {
            return;
        };
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
                let task_id = task_id.to_string();
                out.push(Output::Signal { task_id, signal: Signal::SIGTERM });
            }
        }
        self.escalate_if_due(task_id, now, out);
    }

    fn escalate_if_due(&mut self, task_id: &str, now: Instant, out: &mut Vec<Output>) {
        if let Some(task) = self.tasks.get_mut(task_id)
            && task.spawned
            && task.live()
            && let Some(killing) = &mut task.kill
            && killing.escalate(now)
        {
            out.push(Output::Log(format!(
                "task {task_id} outlived its kill grace period; sending SIGKILL"
            )));
            out.push(Output::Signal { task_id: task_id.to_string(), signal: Signal::SIGKILL });
        }
    }

    fn exited(
        &mut self,
        task_id: &str,
        termination: Termination,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(task) = self.tasks.get(task_id).filter(|t| t.live()) else {
            return;
        };
        let (state, message) = terminal_state(termination, task.kill.is_some());
        let healthy = task.unhealthy.then_some(false);
        out.push(Output::Log(format!("task {task_id}: {message}")));
        // The group leader is gone; whatever it left behind in its process group belongs to
        // the task and ends with it, as it would when Mesos destroys the container.
        out.push(Output::Signal { task_id: task_id.to_string(), signal: Signal::SIGKILL });
        self.finish(task_id, state, message, healthy, now, out);
    }

    /// Sends the terminal update of a task; a task that did not finish takes its group down.
    fn finish(
        &mut self,
        task_id: &str,
        state: TaskState,
        message: String,
        healthy: Option<bool>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.terminate(task_id, state, message, healthy, out);
        if state != TaskState::TaskFinished
            && let Some(group) = self.tasks.get(task_id).map(|t| t.group)
        {
            self.kill_group(group, now, out);
        }
        self.check_finished(now);
    }

    /// Sends the terminal update of a task (with `healthy` when health checks killed it) and
    /// marks it over.
    fn terminate(
        &mut self,
        task_id: &str,
        state: TaskState,
        message: String,
        healthy: Option<bool>,
        out: &mut Vec<Output>,
    ) {
        let task_id = task_id.to_string();
        let message = Some(message);
        let update = Update {
            uuid: [0; 16],
            task_id,
            state,
            message,
            healthy,
            check_status: None,
            reason: None,
        };
        let task_id = update.task_id.clone();
        let uuid = self.reporter.push(out, update);
        if let Some(task) = self.tasks.get_mut(&task_id) {
            task.terminal = Some(uuid);
        }
    }

    fn shutdown(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.shutting_down = true;
        out.push(Output::Log("shutting down".into()));
        let live: Vec<String> =
            self.tasks.iter().filter(|(_, t)| t.live()).map(|(id, _)| id.clone()).collect();
        let grace = Some(self.config.shutdown_kill_grace);
        for task_id in &live {
            self.kill_task(task_id, grace, now, out);
        }
        if let Some(deadline) = &mut self.finishing {
            *deadline = (*deadline).min(now + self.config.shutdown_ack_timeout);
        }
        self.check_finished(now);
        if self.tasks.is_empty() {
            self.exit(0, out);
        }
    }

    fn acknowledged(&mut self, uuid: &[u8], out: &mut Vec<Output>) {
        self.reporter.acknowledge(uuid);
        // A task whose terminal update is acknowledged is over for good; its id may come back
        // in a later group.
        self.tasks.retain(|_, t| t.terminal.is_none_or(|terminal| terminal.as_slice() != uuid));
        if self.finishing.is_some() && self.tasks.is_empty() {
            out.push(Output::Log("every task is over and acknowledged; exiting".into()));
            self.exit(0, out);
        }
    }

    /// Once every task is over, starts the wait for the acks of their terminal updates.
    fn check_finished(&mut self, now: Instant) {
        if self.finishing.is_some() || self.tasks.is_empty() || self.tasks.values().any(Task::live)
        {
            return;
        }
        let wait = if self.shutting_down {
            self.config.shutdown_ack_timeout
        } else {
            self.config.ack_timeout
        };
        self.finishing = Some(now + wait);
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for task_id in ids {
            self.escalate_if_due(&task_id, now, out);
            let Some(task) = self.tasks.get_mut(&task_id).filter(|t| t.live()) else {
                continue;
            };
            for due in task.watch.due(now) {
                let task_id = task_id.clone();
                out.push(match due {
                    DueProbe::Health { probe, timeout } => {
                        Output::Probe { task_id, probe, timeout }
                    }
                    DueProbe::Check { probe, timeout } => Output::Check { task_id, probe, timeout },
                });
            }
        }
        if self.finishing.is_some_and(|deadline| now >= deadline) {
            out.push(Output::Log("terminal updates were not acknowledged in time; exiting".into()));
            self.exit(1, out);
        }
    }

    /// A probe's result for one task: reported when it changes what the framework knows, and
    /// the task killed (with its own kill policy, and so its group) once failures reach the
    /// limit.
    fn probed(
        &mut self,
        task_id: &str,
        result: Result<(), String>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(task) = self.tasks.get_mut(task_id).filter(|t| t.live()) else {
            return;
        };
        let check_status = task.watch.check_status();
        let Some(checker) = &mut task.watch.health else {
            return;
        };
        if let Err(why) = &result {
            out.push(Output::Log(format!("health check of task {task_id} failed: {why}")));
        }
        let verdict = checker.result(result.is_ok(), now);
        let healthy = match verdict {
            Verdict::Quiet => return,
            Verdict::Report { healthy } => healthy,
            Verdict::ReportAndKill => {
                task.unhealthy = true;
                false
            }
        };
        let reason = Some(Reason::TaskHealthCheckStatusUpdated);
        let update = running(task_id.to_string(), check_status, Some(healthy), reason);
        self.reporter.push(out, update);
        if verdict == Verdict::ReportAndKill {
            out.push(Output::Log(format!(
                "task {task_id} failed its health check too many times in a row; killing it"
            )));
            self.kill(task_id, None, now, out);
        }
    }

    /// A check probe's outcome for one task: a changed result goes out on a TASK_RUNNING
    /// update; nothing else happens to the task (or its group), whatever the result.
    fn checked(
        &mut self,
        task_id: &str,
        outcome: Result<CheckStatus, String>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(task) = self.tasks.get_mut(task_id).filter(|t| t.live()) else {
            return;
        };
        let Some(checker) = &mut task.watch.check else {
            return;
        };
        if let Err(why) = &outcome {
            out.push(Output::Log(format!("check of task {task_id} gave no result: {why}")));
        }
        if let Some(status) = checker.result(outcome, now) {
            let reason = Some(Reason::TaskCheckStatusUpdated);
            self.reporter.push(out, running(task_id.to_string(), Some(status), None, reason));
        }
    }

    /// Leaves without the agent, for `why`: tasks left running would be orphans nobody
    /// reports on.
    fn abandon(&mut self, why: String, out: &mut Vec<Output>) {
        out.push(Output::Log(why));
        for (task_id, task) in &self.tasks {
            if task.spawned && task.live() {
                out.push(Output::Signal { task_id: task_id.clone(), signal: Signal::SIGKILL });
            }
        }
        self.exit(1, out);
    }

    fn exit(&mut self, code: i32, out: &mut Vec<Output>) {
        self.gone = true;
        out.push(Output::Exit(code));
    }
}

#[cfg(test)]
mod tests;
