//! A command executor's shell: the real `CommandExecutor` core, its subscription to the agent
//! over loopback, and the one task process it runs, like `crates/executor/src/lib.rs` and
//! `shell.rs`.
//!
//! The task's process is simulated: `sleep <secs>` ends with status 0 after that much virtual
//! time, any other command fails to start, and a signal ends it at once. For a checkpointing
//! framework a lost agent is subscribed to again (carrying what is unacknowledged) until the
//! recovery timeout, as the real link does; other executors tell the core they are
//! disconnected. Health checks and the default executor (task groups) are not simulated.

use std::time::Duration;

use agora_core::agent::{Input as AgentInput, Launch};
use agora_executor::common::Config;
use agora_executor::process::Termination;
use agora_executor::state::{CommandExecutor, Input, Output};
use agora_proto::executor::call::Type as CallType;
use agora_proto::executor::event::Type as EventType;
use agora_proto::{executor, v1};
use bytes::Bytes;

use crate::invariants::Load;
use crate::nodes::agent::LOOPBACK;
use crate::sim::{ConnId, Event, Sim};

/// The first re-subscription attempts come quickly, then every this often.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct ExecNode {
    pub(crate) agent: usize,
    pub(crate) framework_id: String,
    pub(crate) executor_id: String,
    checkpoint: bool,
    core: CommandExecutor,
    pub(crate) alive: bool,
    /// The agent incarnation the current subscription talks to.
    agent_inc: u64,
    conn: Option<ConnId>,
    subscribe_req: Option<u64>,
    subscribed: bool,
    /// The first subscription succeeded once.
    ever_subscribed: bool,
    /// While re-subscribing: when to give up.
    resubscribe_until: Option<Duration>,
    generation: u64,
    /// Whether the task's process runs.
    pub(crate) running: bool,
    pub(crate) task: Option<v1::TaskInfo>,
    /// The task's cpus and memory, read once at launch for the invariants.
    load: Load,
    /// Whether the agent acknowledged an update of the task.
    task_acked: bool,
    /// Updates sent and not acknowledged, numbered in sending order.
    unacked: Vec<(u64, v1::TaskStatus)>,
    next_seq: u64,
    /// The last number the pending SUBSCRIBE carries.
    covered: u64,
    recovery_timeout: Duration,
}

/// The seconds of a `sleep <secs>` command, the only task the simulated processes run.
fn sleep_seconds(command: &v1::CommandInfo) -> Option<u64> {
    command.value.as_deref()?.strip_prefix("sleep ")?.trim().parse().ok()
}

fn grace(policy: Option<&v1::KillPolicy>) -> Option<Duration> {
    let nanos = policy?.grace_period.as_ref()?.nanoseconds;
    Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

/// The core's view of an agent event, as the real shell's `translate` has it.
fn translate(event: executor::Event) -> Option<Input> {
    match event.r#type() {
        EventType::Subscribed => Some(Input::Subscribed { task_killing_state: false }),
        EventType::Launch => {
            let task = event.launch?.task;
            Some(Input::Launch {
                kill_grace: grace(task.kill_policy.as_ref()),
                task_id: task.task_id.value,
                command: task.command,
                health: None,
                check: None,
            })
        }
        EventType::LaunchGroup => Some(Input::LaunchGroup {
            task_ids: event
                .launch_group?
                .task_group
                .tasks
                .into_iter()
                .map(|t| t.task_id.value)
                .collect(),
        }),
        EventType::Kill => {
            let kill = event.kill?;
            Some(Input::Kill {
                task_id: kill.task_id.value,
                grace: grace(kill.kill_policy.as_ref()),
            })
        }
        EventType::Acknowledged => {
            Some(Input::Acknowledged { uuid: event.acknowledged?.uuid.to_vec() })
        }
        EventType::Shutdown => Some(Input::Shutdown),
        EventType::Error => {
            Some(Input::Error { message: event.error.map(|e| e.message).unwrap_or_default() })
        }
        EventType::Message | EventType::Heartbeat | EventType::Unknown => None,
    }
}

impl ExecNode {
    /// The tasks whose processes run now, with what each uses.
    pub(crate) fn running_tasks(&self) -> impl Iterator<Item = (&str, Load)> {
        self.task
            .as_ref()
            .filter(|_| self.running)
            .map(|task| (task.task_id.value.as_str(), self.load))
            .into_iter()
    }
}

impl Sim {
    pub(crate) fn spawn_executor(&mut self, a: usize, launch: Launch) {
        let checkpoint = launch.env.iter().any(|(k, v)| k == "MESOS_CHECKPOINT" && v == "1");
        let mut uuids = self.rng.fork();
        let core = CommandExecutor::new(
            Config::new(Duration::from_secs(5)),
            Box::new(move || uuids.uuid()),
        );
        let e = self.executors.len();
        self.trace(|| format!("agent {a}: launches executor {e} ({})", launch.executor_id));
        self.executors.push(ExecNode {
            agent: a,
            framework_id: launch.framework_id,
            executor_id: launch.executor_id,
            checkpoint,
            core,
            alive: true,
            agent_inc: self.agents[a].inc,
            conn: None,
            subscribe_req: None,
            subscribed: false,
            ever_subscribed: false,
            resubscribe_until: None,
            generation: 0,
            running: false,
            task: None,
            load: Load::default(),
            task_acked: false,
            unacked: Vec::new(),
            next_seq: 0,
            covered: 0,
            recovery_timeout: self.agents[a].recovery_timeout(),
        });
        self.after(Duration::from_millis(10), Event::ExecutorRetry(e));
    }

    /// The live executor `executor_id` of `framework_id` on agent `a`.
    pub(crate) fn live_executor(
        &self,
        a: usize,
        framework_id: &str,
        executor_id: &str,
    ) -> Option<usize> {
        self.executors.iter().position(|x| {
            x.alive
                && x.agent == a
                && x.framework_id == framework_id
                && x.executor_id == executor_id
        })
    }

    pub(crate) fn live_executors_of(&self, a: usize) -> Vec<usize> {
        (0..self.executors.len())
            .filter(|&e| self.executors[e].alive && self.executors[e].agent == a)
            .collect()
    }

    fn call(&self, e: usize, kind: CallType) -> executor::Call {
        let x = &self.executors[e];
        let mut call = executor::Call {
            framework_id: v1::FrameworkId { value: x.framework_id.clone() },
            executor_id: v1::ExecutorId { value: x.executor_id.clone() },
            ..Default::default()
        };
        call.set_type(kind);
        call
    }

    /// Sends a SUBSCRIBE (again), carrying what the agent has not acknowledged.
    pub(crate) fn executor_retry(&mut self, e: usize) {
        let x = &self.executors[e];
        if !x.alive || x.subscribed || x.subscribe_req.is_some() {
            return;
        }
        if x.resubscribe_until.is_some_and(|until| self.now >= until) {
            self.trace(|| format!("executor {e}: the agent did not come back"));
            self.executor_input(e, Input::Disconnected { reason: "agent gone".into() });
            return;
        }
        let mut call = self.call(e, CallType::Subscribe);
        let x = &self.executors[e];
        let tasks = if x.task_acked { vec![] } else { x.task.iter().cloned().collect() };
        call.subscribe = Some(executor::call::Subscribe {
            unacknowledged_tasks: tasks,
            unacknowledged_updates: x
                .unacked
                .iter()
                .map(|(_, status)| executor::call::Update { status: status.clone() })
                .collect(),
        });
        let covered = x.unacked.last().map_or(x.covered, |(seq, _)| *seq);
        let (a, conn, req) = (x.agent, self.id(), self.id());
        let inc = self.agents[a].inc;
        let x = &mut self.executors[e];
        x.covered = covered;
        x.conn = Some(conn);
        x.subscribe_req = Some(req);
        x.agent_inc = inc;
        let input = AgentInput::ExecutorSubscribe { req, conn, call };
        self.after(LOOPBACK, Event::FromExecutor { a, inc, e, input });
    }

    pub(crate) fn executor_reply(&mut self, e: usize, req: u64, ok: bool) {
        let x = &mut self.executors[e];
        if !x.alive || x.subscribe_req != Some(req) {
            return;
        }
        x.subscribe_req = None;
        if ok {
            x.subscribed = true;
            x.ever_subscribed = true;
            x.resubscribe_until = None;
            // Updates made while the SUBSCRIBE was under way are not in it.
            let covered = x.covered;
            let later: Vec<v1::TaskStatus> = x
                .unacked
                .iter()
                .filter(|(seq, _)| *seq > covered)
                .map(|(_, s)| s.clone())
                .collect();
            for status in later {
                self.send_update(e, status);
            }
            return;
        }
        x.conn = None;
        if x.checkpoint && x.ever_subscribed {
            self.after(RESUBSCRIBE_EVERY, Event::ExecutorRetry(e));
        } else {
            // The real executor exits when its first subscription fails.
            self.trace(|| format!("executor {e}: cannot subscribe, exits"));
            self.executor_exit(e, 1);
        }
    }

    pub(crate) fn executor_event(
        &mut self,
        e: usize,
        conn: ConnId,
        event: Option<executor::Event>,
    ) {
        let x = &mut self.executors[e];
        if !x.alive || x.conn != Some(conn) {
            return;
        }
        let Some(event) = event else {
            x.subscribed = false;
            x.conn = None;
            x.subscribe_req = None;
            if x.checkpoint && x.ever_subscribed {
                x.resubscribe_until = Some(self.now + x.recovery_timeout);
                self.trace(|| format!("executor {e}: lost the agent, subscribing again"));
                self.after(Duration::from_millis(100), Event::ExecutorRetry(e));
            } else {
                self.executor_input(e, Input::Disconnected { reason: "stream closed".into() });
            }
            return;
        };
        // The books of what is unacknowledged, kept from the raw events as the real link does.
        if let Some(launch) = &event.launch {
            x.task = Some(launch.task.clone());
            x.load = Load::of_proto(&launch.task.resources);
        }
        if let Some(ack) = &event.acknowledged {
            x.unacked.retain(|(_, s)| s.uuid.as_ref() != Some(&ack.uuid));
            x.task_acked = true;
        }
        if let Some(input) = translate(event) {
            self.executor_input(e, input);
        }
    }

    pub(crate) fn executor_tick(&mut self, e: usize) {
        if self.executors[e].alive {
            self.executor_input(e, Input::Tick);
        }
    }

    pub(crate) fn process_exit(&mut self, e: usize, generation: u64, termination: Termination) {
        let x = &mut self.executors[e];
        if !x.alive || !x.running || x.generation != generation {
            return;
        }
        x.running = false;
        self.trace(|| format!("executor {e}: task process ends: {termination}"));
        self.executor_input(e, Input::Exited(termination));
    }

    fn executor_input(&mut self, e: usize, input: Input) {
        let mut inputs = std::collections::VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            if !self.executors[e].alive {
                return;
            }
            let now = self.instant();
            let outputs = self.executors[e].core.handle(input, now);
            for output in outputs {
                match output {
                    Output::Send(update) => {
                        let x = &self.executors[e];
                        let mut status = v1::TaskStatus {
                            task_id: v1::TaskId { value: update.task_id },
                            message: update.message,
                            timestamp: Some(self.wall().as_secs_f64()),
                            executor_id: Some(v1::ExecutorId { value: x.executor_id.clone() }),
                            uuid: Some(Bytes::copy_from_slice(&update.uuid)),
                            healthy: update.healthy,
                            ..Default::default()
                        };
                        status.set_state(update.state);
                        status.set_source(v1::task_status::Source::Executor);
                        if let Some(reason) = update.reason {
                            status.set_reason(reason);
                        }
                        let x = &mut self.executors[e];
                        x.next_seq += 1;
                        x.unacked.push((x.next_seq, status.clone()));
                        if x.subscribed {
                            self.send_update(e, status);
                        }
                    }
                    Output::Spawn(command) => {
                        let seconds = command.as_ref().and_then(sleep_seconds);
                        inputs.push_back(match seconds {
                            Some(seconds) => {
                                let x = &mut self.executors[e];
                                x.generation += 1;
                                x.running = true;
                                let generation = x.generation;
                                let termination = Termination::Exited(0);
                                self.after(
                                    Duration::from_secs(seconds),
                                    Event::ProcessExit { e, generation, termination },
                                );
                                Input::Spawned
                            }
                            None => Input::SpawnFailed { message: "not a sleep".into() },
                        });
                    }
                    Output::Signal(signal) => {
                        let x = &self.executors[e];
                        if x.running {
                            let generation = x.generation;
                            let termination = Termination::Signaled(signal as i32);
                            self.after(
                                Duration::from_millis(5),
                                Event::ProcessExit { e, generation, termination },
                            );
                        }
                    }
                    // The simulated tasks carry no health checks or checks.
                    Output::Probe { .. } | Output::Check { .. } => {}
                    Output::Log(line) => self.trace(|| format!("executor {e}: {line}")),
                    Output::Exit(code) => {
                        self.executor_exit(e, code);
                        return;
                    }
                }
            }
        }
        if let Some(deadline) = self.executors[e].core.next_deadline() {
            let at = deadline.saturating_duration_since(self.base);
            self.at(at, Event::ExecutorTick(e));
        }
    }

    fn send_update(&mut self, e: usize, status: v1::TaskStatus) {
        let mut call = self.call(e, CallType::Update);
        call.update = Some(executor::call::Update { status });
        let x = &self.executors[e];
        let (a, inc) = (x.agent, x.agent_inc);
        // The real sender retries an UPDATE whose answer it did not get before it sends the
        // next one; a first attempt that reached the agent makes the retry a copy. Queued right
        // behind the original, it keeps the order of the executor's updates.
        let copies = if self.net.update_duplicated() {
            self.summary.duplicates += 1;
            self.trace(|| format!("executor {e}: sends that update twice"));
            2
        } else {
            1
        };
        for _ in 0..copies {
            let req = self.id();
            let input = AgentInput::ExecutorCall { req, call: call.clone() };
            self.after(LOOPBACK, Event::FromExecutor { a, inc, e, input });
        }
    }

    /// The executor process ends with `code`; the agent's watcher reports it.
    fn executor_exit(&mut self, e: usize, code: i32) {
        self.trace(|| format!("executor {e}: exits with {code}"));
        self.end_executor(e, Some(code << 8), true);
    }

    /// The executor's process group is killed by `signal`; `report` says whether a running
    /// agent watches it.
    pub(crate) fn kill_executor(&mut self, e: usize, signal: i32, report: bool) {
        self.trace(|| format!("executor {e}: killed by signal {signal}"));
        self.end_executor(e, Some(signal), report);
    }

    fn end_executor(&mut self, e: usize, status: Option<i32>, report: bool) {
        let x = &mut self.executors[e];
        if !x.alive {
            return;
        }
        x.alive = false;
        x.running = false;
        x.generation += 1;
        let (a, conn) = (x.agent, x.conn.take());
        let (framework_id, executor_id) = (x.framework_id.clone(), x.executor_id.clone());
        if !report || self.agents[a].core.is_none() {
            return;
        }
        let inc = self.agents[a].inc;
        if let Some(conn) = conn {
            let input = AgentInput::ExecutorClosed { conn };
            self.after(LOOPBACK, Event::FromExecutor { a, inc, e, input });
        }
        let input = AgentInput::ExecutorExited { framework_id, executor_id, status };
        self.after(LOOPBACK, Event::FromExecutor { a, inc, e, input });
    }

    /// A fault: an executor dies (OOM, a bug) while its agent may be watching.
    pub(crate) fn kill_random_executor(&mut self) {
        let live: Vec<usize> =
            (0..self.executors.len()).filter(|&e| self.executors[e].alive).collect();
        if live.is_empty() {
            return;
        }
        let e = live[self.rng.index(live.len())];
        self.trace(|| format!("fault: executor {e} dies"));
        self.kill_executor(e, 9, true);
    }
}
