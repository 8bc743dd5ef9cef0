//! The agent state machine: frameworks, executors and tasks on one machine, and the status
//! update streams that carry every task state change to the master until it is acknowledged.
//!
//! Inputs are events from the master's stream, executor API calls, executor process exits and
//! timer ticks; outputs are calls to the master, events to executors and orders to launch or
//! kill executor processes. The `agent` crate owns the processes, the sandbox directories and
//! the HTTP connections. Executor API calls live in `agent/executor_api.rs`, status updates in
//! `agent/updates.rs`, launching (which executor takes a task or a task group, sandboxes,
//! environments, volumes, LAUNCH and LAUNCH_GROUP) in `agent/launch.rs`, the REGISTER report
//! in `agent/register.rs`, the checkpoint and recovery after a restart in
//! `agent/checkpoint.rs`. Losing the master kills nothing: the agent re-registers with the
//! tasks it runs.

mod checkpoint;
mod executor_api;
mod launch;
mod register;
mod updates;
mod view;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use agora_proto::internal::agent_event::Type as MasterEventType;
use agora_proto::v1::task_status::{Reason, Source};
use agora_proto::v1::{self, TaskState};
use agora_proto::{executor, internal};

pub use crate::call::CallError;
use crate::ids::UuidGen;
use crate::status::is_terminal;
pub use checkpoint::{CheckpointKey, CheckpointRecord, Liveness, Recovered};
use updates::UpdateStream;
pub use view::{ContainerView, scalar_sum};

/// An executor API stream, numbered by the shell.
pub type ConnId = u64;
/// A request awaiting its `Output::Reply`, numbered by the shell.
pub type ReqId = u64;

/// How the agent starts one of its built-in executors (our own binary in an executor mode):
/// the command executor, or the default executor that runs task groups.
#[derive(Debug, Clone)]
pub struct CommandExecutor {
    pub program: String,
    pub arguments: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// hostname, port, resources and attributes; the id comes from the master.
    pub agent_info: v1::AgentInfo,
    /// `ip:port` of this agent's HTTP server, handed to executors.
    pub endpoint: String,
    pub work_dir: String,
    pub command_executor: CommandExecutor,
    /// What runs an ExecutorInfo of type DEFAULT (which carries no command of its own).
    pub default_executor: CommandExecutor,
    pub executor_shutdown_grace_period: Duration,
    /// How long a launched executor has to subscribe before it is killed and its tasks fail
    /// with REASON_EXECUTOR_REGISTRATION_TIMEOUT (`--executor_registration_timeout`).
    pub executor_registration_timeout: Duration,
    /// How long an executor found alive after an agent restart has to subscribe again
    /// (`--executor_reregistration_timeout`); it also bounds the executors' own backoff.
    pub executor_reregistration_timeout: Duration,
    /// How long a checkpointing executor keeps trying to reach a restarting agent
    /// (`--recovery_timeout`, handed to executors as `MESOS_RECOVERY_TIMEOUT`).
    pub recovery_timeout: Duration,
    /// First retry of an unacknowledged status update; doubles up to the maximum.
    pub status_update_retry_min: Duration,
    pub status_update_retry_max: Duration,
    pub seed: u64,
}

#[expect(
    clippy::large_enum_variant,
    reason = "built and consumed at once, never stored in bulk; boxing would add an allocation per message"
)]
#[derive(Debug, Clone)]
pub enum Input {
    /// An event from the master's stream.
    Master(internal::AgentEvent),
    /// The master's stream broke; the shell reconnects and registers again.
    MasterDisconnected,
    /// An executor SUBSCRIBE whose stream the shell has opened as `conn`.
    ExecutorSubscribe {
        req: ReqId,
        conn: ConnId,
        call: executor::Call,
    },
    ExecutorCall {
        req: ReqId,
        call: executor::Call,
    },
    ExecutorClosed {
        conn: ConnId,
    },
    ExecutorLaunchFailed {
        framework_id: String,
        executor_id: String,
        message: String,
    },
    /// The executor's container went over a limit the isolation enforces (the shell saw the
    /// OOM killer at work in its cgroup, say) and is being destroyed: its unfinished tasks,
    /// and those the executor reports ending from now on, fail with that limitation's reason.
    ContainerLimited {
        framework_id: String,
        executor_id: String,
        limitation: Limitation,
        message: String,
    },
    /// The executor process ended with this raw wait status (`None` if unknown).
    ExecutorExited {
        framework_id: String,
        executor_id: String,
        status: Option<i32>,
    },
    Tick,
}

/// A resource limit a container was found over (reference §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limitation {
    Memory,
    Disk,
}

impl Limitation {
    fn reason(self) -> Reason {
        match self {
            Limitation::Memory => Reason::ContainerLimitationMemory,
            Limitation::Disk => Reason::ContainerLimitationDisk,
        }
    }

    /// `TaskStatus.limitation`: which resource was exceeded (by name; Mesos also gives the
    /// amount, which a scheduler rarely needs).
    fn proto(self) -> v1::TaskResourceLimitation {
        let name = match self {
            Limitation::Memory => "mem",
            Limitation::Disk => "disk",
        };
        let mut resource = v1::Resource { name: name.to_string(), ..Default::default() };
        resource.set_type(v1::value::Type::Scalar);
        v1::TaskResourceLimitation { resources: vec![resource] }
    }
}

/// An order to start an executor process in a fresh sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub framework_id: String,
    pub executor_id: String,
    pub container_id: String,
    /// Absolute path of the sandbox, `<work_dir>/slaves/<agent>/frameworks/<f>/executors/<e>/runs/<c>`.
    pub sandbox: String,
    pub command: v1::CommandInfo,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    /// Persistent volumes of the executor and the work it starts with, linked into the sandbox.
    pub volumes: Vec<VolumeLink>,
    /// The container's `cpus` and `mem` (MB): the executor's resources plus those of the work
    /// it starts with, what isolation limits it to (`None`: not asked for).
    pub cpus: Option<f64>,
    pub mem_mb: Option<f64>,
    /// The container's `disk` (MB) outside persistent volumes, what `disk/du` holds it to.
    pub disk_mb: Option<f64>,
    /// The resource limits the container asks for (`ContainerInfo.rlimit_info`: the task's
    /// for a command task, else the executor's), applied by `posix/rlimits`.
    pub rlimits: Option<v1::RLimitInfo>,
}

/// A persistent volume made visible in a sandbox: the shell creates `host_path` if needed and
/// links `<sandbox>/<container_path>` to it (Mesos's `filesystem/posix` behaviour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeLink {
    /// `<work_dir>/volumes/roles/<role>/<persistence id>`.
    pub host_path: String,
    /// Relative to the sandbox.
    pub container_path: String,
}

#[expect(
    clippy::large_enum_variant,
    reason = "built and consumed at once, never stored in bulk; boxing would add an allocation per message"
)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The answer to request `req`; every request gets exactly one.
    Reply {
        req: ReqId,
        result: Result<(), CallError>,
    },
    /// Make these records durable (`None`: delete the record) before carrying out any of the
    /// outputs that follow. Always the first output when present.
    Checkpoint(Vec<(CheckpointKey, Option<CheckpointRecord>)>),
    ToMaster(internal::AgentCall),
    ToExecutor {
        conn: ConnId,
        event: executor::Event,
    },
    CloseExecutor {
        conn: ConnId,
    },
    LaunchExecutor(Box<Launch>),
    /// Delete the data of destroyed persistent volumes (their host paths).
    DestroyVolumes {
        paths: Vec<String>,
    },
    /// Link persistent volumes of a task that joins a running executor into its sandbox.
    AttachVolumes {
        sandbox: String,
        volumes: Vec<VolumeLink>,
    },
    /// Set the limits of a running executor's container to this size (its executor's
    /// resources plus its live tasks'), after tasks joined it or ended.
    ResizeContainer {
        framework_id: String,
        executor_id: String,
        cpus: Option<f64>,
        mem_mb: Option<f64>,
        disk_mb: Option<f64>,
    },
    /// Kill the executor's whole process group.
    KillExecutor {
        framework_id: String,
        executor_id: String,
    },
}

#[derive(Debug)]
struct Framework {
    info: v1::FrameworkInfo,
    executors: BTreeMap<String, Executor>,
    /// Set by SHUTDOWN_FRAMEWORK: the master has removed the framework and will acknowledge
    /// none of its updates, so the agent generates and forwards none (as Mesos does).
    terminating: bool,
}

#[derive(Debug)]
struct Executor {
    info: v1::ExecutorInfo,
    container_id: String,
    sandbox: String,
    conn: Option<ConnId>,
    /// Tasks not yet handed to the executor (it has not subscribed), those of task groups
    /// included.
    queued: VecDeque<v1::TaskInfo>,
    /// The task ids of each task group given to this executor: a group is delivered, and
    /// killed before delivery, as a whole.
    groups: Vec<BTreeSet<String>>,
    /// Tasks handed over, with the latest state the executor reported.
    launched: BTreeMap<String, LaunchedTask>,
    /// Set once the agent asked it to shut down: when to kill it if it has not exited.
    kill_at: Option<Duration>,
    /// Whether the kill was ordered; it is ordered once.
    killed: bool,
    /// Synthesized by the agent for a command task; its exits are not reported to the master.
    command: bool,
    /// Tasks the master asked to kill; if the executor dies first they end TASK_KILLED.
    kill_requested: BTreeSet<String>,
    /// Until it first subscribes: when it must have done so.
    register_by: Option<Duration>,
    /// Killed for not subscribing in time: its tasks fail with that reason.
    registration_timed_out: bool,
    /// Found alive by a restarted agent: its deadline is for subscribing again.
    recovered: bool,
    /// The limit its container went over, with the message its tasks end with (not
    /// checkpointed: the container is destroyed at once).
    limitation: Option<(Limitation, String)>,
    /// The container's size as last ordered, so that a resize goes out only when it changes.
    size: launch::Size,
}

/// A task handed to its executor.
#[derive(Debug)]
struct LaunchedTask {
    info: v1::TaskInfo,
    state: TaskState,
    /// The newest status the executor sent.
    latest: Option<v1::TaskStatus>,
}

impl LaunchedTask {
    fn new(info: v1::TaskInfo) -> Self {
        Self { info, state: TaskState::TaskStaging, latest: None }
    }
}

/// The agent's state. See the module documentation.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    agent_id: Option<String>,
    registered: bool,
    uuids: UuidGen,
    frameworks: BTreeMap<String, Framework>,
    executor_conns: BTreeMap<ConnId, (String, String)>,
    /// Status update streams by (framework id, task id).
    streams: BTreeMap<(String, String), UpdateStream>,
    /// Dynamic reservations and persistent volumes, as the master last sent them.
    checkpointed: Vec<v1::Resource>,
    /// Frameworks whose executors, tasks and update streams are checkpointed.
    checkpointing: BTreeSet<String>,
    /// Checkpoint records changed by the input being handled.
    dirty: BTreeSet<CheckpointKey>,
    /// Completed tasks, executors and frameworks, and the metrics' counters.
    history: view::History,
}

impl Agent {
    pub fn new(config: AgentConfig) -> Self {
        Self {
            uuids: UuidGen::new(config.seed),
            config,
            agent_id: None,
            registered: false,
            frameworks: BTreeMap::new(),
            executor_conns: BTreeMap::new(),
            streams: BTreeMap::new(),
            checkpointed: Vec::new(),
            checkpointing: BTreeSet::new(),
            dirty: BTreeSet::new(),
            history: view::History::default(),
        }
    }

    pub fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }

    /// Executors the agent runs, as (framework id, executor id, sandbox).
    pub fn executors(&self) -> Vec<(String, String, String)> {
        self.frameworks
            .iter()
            .flat_map(|(f, fw)| {
                fw.executors.iter().map(|(e, ex)| (f.clone(), e.clone(), ex.sandbox.clone()))
            })
            .collect()
    }

    /// Number of status updates not yet acknowledged by the master.
    pub fn pending_updates(&self) -> usize {
        self.streams.values().map(UpdateStream::len).sum()
    }

    pub fn handle(&mut self, input: Input, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Master(event) => self.master_event(event, now, &mut out),
            Input::MasterDisconnected => self.master_disconnected(),
            Input::ExecutorSubscribe { req, conn, call } => {
                let result = self.executor_subscribe(conn, call, now, &mut out);
                // The reply goes first so the shell answers 200 before the stream's events.
                out.insert(0, Output::Reply { req, result });
            }
            Input::ExecutorCall { req, call } => {
                let update = call.r#type() == executor::call::Type::Update;
                let result = self.executor_call(call, now, &mut out);
                if update {
                    // A task that ended gives its resources back to nobody but the agent.
                    self.resize_containers(&mut out);
                    match result {
                        Ok(()) => self.history.valid_status_updates += 1,
                        Err(_) => self.history.invalid_status_updates += 1,
                    }
                }
                out.push(Output::Reply { req, result });
            }
            Input::ExecutorClosed { conn } => {
                if let Some((f, e)) = self.executor_conns.remove(&conn)
                    && let Some(executor) = self.executor_mut(&f, &e)
                    && executor.conn == Some(conn)
                {
                    executor.conn = None;
                }
            }
            Input::ExecutorLaunchFailed { framework_id, executor_id, message } => {
                self.executor_gone(
                    &framework_id,
                    &executor_id,
                    None,
                    Reason::ContainerLaunchFailed,
                    &format!("Failed to launch container: {message}"),
                    now,
                    &mut out,
                );
            }
            Input::ContainerLimited { framework_id, executor_id, limitation, message } => {
                if let Some(executor) = self.executor_mut(&framework_id, &executor_id)
                    && executor.limitation.is_none()
                {
                    executor.limitation = Some((limitation, message));
                }
            }
            Input::ExecutorExited { framework_id, executor_id, status } => {
                let limited = self
                    .executor_mut(&framework_id, &executor_id)
                    .and_then(|e| e.limitation.clone());
                if let Some((limitation, message)) = limited {
                    self.executor_gone(
                        &framework_id,
                        &executor_id,
                        status,
                        limitation.reason(),
                        &message,
                        now,
                        &mut out,
                    );
                    self.flush_checkpoint(&mut out);
                    return out;
                }
                let (timed_out, recovered) = self
                    .executor_mut(&framework_id, &executor_id)
                    .map_or((false, false), |e| (e.registration_timed_out, e.recovered));
                let (reason, message) = if timed_out && recovered {
                    let timeout = self.config.executor_reregistration_timeout;
                    (
                        Reason::ExecutorReregistrationTimeout,
                        format!(
                            "Executor did not re-register within {} of the agent's restart",
                            crate::duration::format(timeout)
                        ),
                    )
                } else if timed_out {
                    let timeout = self.config.executor_registration_timeout;
                    (
                        Reason::ExecutorRegistrationTimeout,
                        format!(
                            "Executor did not register within {}",
                            crate::duration::format(timeout)
                        ),
                    )
                } else {
                    let message = match status {
                        Some(s) => format!("Executor terminated ({})", describe_wait_status(s)),
                        None => "Executor terminated".to_string(),
                    };
                    (Reason::ExecutorTerminated, message)
                };
                self.executor_gone(
                    &framework_id,
                    &executor_id,
                    status,
                    reason,
                    &message,
                    now,
                    &mut out,
                );
            }
            Input::Tick => self.tick(now, &mut out),
        }
        self.flush_checkpoint(&mut out);
        out
    }

    /// Losing the master kills nothing: executors keep running and their updates wait, and
    /// the next REGISTER reports them to whichever master comes back (a restarted one
    /// rebuilds its view of this agent from it).
    fn master_disconnected(&mut self) {
        self.registered = false;
    }

    /// Whether the framework takes the partition-aware task states (the agent knows only the
    /// frameworks it runs executors for).
    fn partition_aware(&self, framework_id: &str) -> bool {
        self.frameworks.get(framework_id).is_some_and(|f| {
            f.info
                .capabilities
                .iter()
                .any(|c| c.r#type() == v1::framework_info::capability::Type::PartitionAware)
        })
    }

    fn executor_mut(&mut self, framework_id: &str, executor_id: &str) -> Option<&mut Executor> {
        self.frameworks.get_mut(framework_id)?.executors.get_mut(executor_id)
    }

    fn master_event(&mut self, event: internal::AgentEvent, now: Duration, out: &mut Vec<Output>) {
        match event.r#type() {
            MasterEventType::Registered => {
                if let Some(registered) = event.registered {
                    self.agent_id = Some(registered.agent_id.value);
                    self.registered = true;
                    self.mark(CheckpointKey::Agent);
                    // The master may have missed updates while we were away: send every head again.
                    for stream in self.streams.values_mut() {
                        stream.reset_backoff(now, self.config.status_update_retry_min);
                    }
                    self.resend_due(now, out);
                }
            }
            MasterEventType::RunTask => {
                if let Some(run) = event.run_task {
                    self.run_task(run.framework_info, run.task, now, out);
                }
            }
            MasterEventType::KillTask => {
                if let Some(kill) = event.kill_task {
                    self.kill_task(
                        &kill.framework_id.value,
                        kill.task_id,
                        kill.kill_policy,
                        now,
                        out,
                    );
                }
            }
            MasterEventType::Acknowledge => {
                if let Some(ack) = event.acknowledge {
                    self.acknowledge(
                        &ack.framework_id.value,
                        &ack.task_id.value,
                        &ack.uuid,
                        now,
                        out,
                    );
                }
            }
            MasterEventType::ShutdownFramework => {
                if let Some(shutdown) = event.shutdown_framework {
                    self.shutdown_framework(&shutdown.framework_id.value, now, out);
                }
            }
            MasterEventType::FrameworkMessage => {
                if let Some(message) = event.framework_message {
                    self.framework_message(message, out);
                }
            }
            MasterEventType::ShutdownExecutor => {
                if let Some(shutdown) = event.shutdown_executor {
                    let framework_id = shutdown.framework_id.value;
                    self.shutdown_executor(&framework_id, &shutdown.executor_id.value, now, out);
                }
            }
            MasterEventType::CheckpointResources => {
                if let Some(checkpoint) = event.checkpoint_resources {
                    // A volume that is no longer checkpointed was destroyed: its data goes, as
                    // in Mesos, so that a later volume with the same id starts empty.
                    let work_dir = &self.config.work_dir;
                    if let (Some(kept), Some(had)) = (
                        launch::volume_paths(work_dir, &checkpoint.resources),
                        launch::volume_paths(work_dir, &self.checkpointed),
                    ) {
                        let gone: Vec<String> =
                            had.into_iter().filter(|path| !kept.contains(path)).collect();
                        if !gone.is_empty() {
                            out.push(Output::DestroyVolumes { paths: gone });
                        }
                    }
                    self.checkpointed = checkpoint.resources;
                    self.mark(CheckpointKey::Agent);
                }
            }
            MasterEventType::RunTaskGroup => {
                if let Some(run) = event.run_task_group {
                    self.run_task_group(run.framework_info, run.executor, run.task_group, now, out);
                }
            }
            // The master's health check: answered at once, on the ordered call path.
            MasterEventType::Ping => {
                let mut call = internal::AgentCall::default();
                call.set_type(internal::agent_call::Type::Pong);
                call.agent_id = self.agent_id.as_ref().map(|a| v1::AgentId { value: a.clone() });
                out.push(Output::ToMaster(call));
            }
            MasterEventType::Heartbeat | MasterEventType::Error | MasterEventType::Unknown => {}
        }
    }

    /// Hands a framework's message to its executor; like Mesos, a message for an executor
    /// that is not subscribed is dropped.
    fn framework_message(
        &mut self,
        message: internal::agent_event::FrameworkMessage,
        out: &mut Vec<Output>,
    ) {
        let Some(conn) = self
            .executor_mut(&message.framework_id.value, &message.executor_id.value)
            .and_then(|e| e.conn)
        else {
            return;
        };
        let mut e = executor::Event::default();
        e.set_type(executor::event::Type::Message);
        e.message = Some(executor::event::Message { data: message.data });
        out.push(Output::ToExecutor { conn, event: e });
    }

    fn kill_task(
        &mut self,
        framework_id: &str,
        task_id: v1::TaskId,
        kill_policy: Option<v1::KillPolicy>,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let found = self.frameworks.get_mut(framework_id).and_then(|framework| {
            framework.executors.iter_mut().find(|(_, e)| {
                e.launched.contains_key(&task_id.value)
                    || e.queued.iter().any(|t| t.task_id == task_id)
            })
        });
        let Some((executor_id, executor)) = found else {
            // A task that ended and whose terminal update waits for its acknowledgement is
            // not unknown: the kill has nothing left to do, and a second terminal state
            // must not follow the first.
            let key = (framework_id.to_string(), task_id.value.clone());
            if self
                .streams
                .get(&key)
                .and_then(UpdateStream::latest)
                .is_some_and(|s| is_terminal(s.state()))
            {
                return;
            }
            // The agent does not have the task (it never arrived, or the agent restarted):
            // answer so that the kill ends it, as Mesos does, instead of leaving it staging.
            let state = if self.partition_aware(framework_id) {
                TaskState::TaskDropped
            } else {
                TaskState::TaskLost
            };
            let status = self.agent_status(
                framework_id,
                &task_id.value,
                None,
                state,
                Reason::TaskUnknown,
                "Task is unknown to the agent",
                now,
            );
            self.enqueue_update(framework_id, status, now, out);
            return;
        };
        let executor_id = executor_id.clone();
        // The default executor kills a whole task group when one of its tasks is killed.
        let group = executor.group_of(&task_id.value);
        if executor.queued.iter().any(|t| t.task_id == task_id) {
            // Never handed to the executor: it is killed during launch, and the rest of its
            // task group with it (a group runs whole or not at all).
            executor.queued.retain(|t| !group.contains(&t.task_id.value));
            executor.groups.retain(|g| !g.contains(&task_id.value));
            let idle = executor.queued.is_empty() && executor.launched.is_empty();
            self.mark(CheckpointKey::Executor(framework_id.into(), executor_id.clone()));
            for doomed in &group {
                self.mark(CheckpointKey::Task(framework_id.into(), doomed.clone()));
                let status = self.agent_status(
                    framework_id,
                    doomed,
                    Some(&executor_id),
                    TaskState::TaskKilled,
                    Reason::TaskKilledDuringLaunch,
                    "Killed before delivery to the executor",
                    now,
                );
                self.enqueue_update(framework_id, status, now, out);
            }
            if idle {
                self.shutdown_executor(framework_id, &executor_id, now, out);
            }
            return;
        }
        executor.kill_requested.extend(group);
        let conn = executor.conn;
        self.mark(CheckpointKey::Executor(framework_id.into(), executor_id.clone()));
        let Some(conn) = conn else {
            // The executor is not connected and cannot hear the kill: end it, and the task
            // with it (it ends TASK_KILLED because the kill was asked for).
            self.shutdown_executor(framework_id, &executor_id, now, out);
            return;
        };
        {
            let mut e = executor::Event::default();
            e.set_type(executor::event::Type::Kill);
            e.kill = Some(executor::event::Kill { task_id, kill_policy });
            out.push(Output::ToExecutor { conn, event: e });
        }
    }

    fn shutdown_framework(&mut self, framework_id: &str, now: Duration, out: &mut Vec<Output>) {
        // The master forgot the framework: nobody will acknowledge its updates any more.
        let dropped: Vec<String> = self
            .streams
            .keys()
            .filter(|(f, _)| f == framework_id)
            .map(|(_, t)| t.clone())
            .collect();
        self.streams.retain(|(f, _), _| f != framework_id);
        for task_id in dropped {
            self.mark(CheckpointKey::Task(framework_id.into(), task_id));
        }
        self.mark(CheckpointKey::Framework(framework_id.into()));
        let executors: Vec<String> = self
            .frameworks
            .get_mut(framework_id)
            .map(|f| {
                f.terminating = true;
                f.executors.keys().cloned().collect()
            })
            .unwrap_or_default();
        for executor_id in executors {
            self.shutdown_executor(framework_id, &executor_id, now, out);
        }
    }

    /// Asks an executor to shut down and arms the kill that follows the grace period; an
    /// executor that never subscribed is killed at once.
    fn shutdown_executor(
        &mut self,
        framework_id: &str,
        executor_id: &str,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let default_grace = self.config.executor_shutdown_grace_period;
        let Some(executor) = self.executor_mut(framework_id, executor_id) else {
            return;
        };
        if executor.kill_at.is_some() {
            return;
        }
        let grace = shutdown_grace(&executor.info, default_grace);
        let recorded = CheckpointKey::Executor(framework_id.into(), executor_id.into());
        match executor.conn {
            Some(conn) => {
                executor.kill_at = Some(now + grace);
                let mut e = executor::Event::default();
                e.set_type(executor::event::Type::Shutdown);
                out.push(Output::ToExecutor { conn, event: e });
            }
            None => {
                executor.kill_at = Some(now);
                executor.killed = true;
                out.push(Output::KillExecutor {
                    framework_id: framework_id.to_string(),
                    executor_id: executor_id.to_string(),
                });
            }
        }
        self.mark(recorded);
    }

    /// Handles the end of an executor: every task it left unfinished fails, and the master
    /// learns that the executor exited.
    #[expect(clippy::too_many_arguments, reason = "one call site per cause, each reads best flat")]
    fn executor_gone(
        &mut self,
        framework_id: &str,
        executor_id: &str,
        wait_status: Option<i32>,
        reason: Reason,
        message: &str,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        // After a reboot the tasks are lost rather than failed: nothing they did survived.
        let lost = if self.partition_aware(framework_id) {
            TaskState::TaskGone
        } else {
            TaskState::TaskLost
        };
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        let Some(executor) = framework.executors.remove(executor_id) else {
            return;
        };
        let terminating = framework.terminating;
        let mut shown = executor.info.clone();
        shown.framework_id = Some(v1::FrameworkId { value: framework_id.to_string() });
        self.history.executor_completed(shown);
        if framework.executors.is_empty() {
            if let Some(gone) = self.frameworks.remove(framework_id) {
                self.history.framework_completed(gone.info);
            }
            self.mark(CheckpointKey::Framework(framework_id.into()));
        }
        self.mark(CheckpointKey::Executor(framework_id.into(), executor_id.into()));
        for task_id in
            executor.queued.iter().map(|t| &t.task_id.value).chain(executor.launched.keys())
        {
            self.mark(CheckpointKey::Task(framework_id.into(), task_id.clone()));
        }
        if let Some(conn) = executor.conn {
            self.executor_conns.remove(&conn);
            out.push(Output::CloseExecutor { conn });
        }
        let unfinished: Vec<String> = executor
            .queued
            .iter()
            .map(|t| t.task_id.value.clone())
            .chain(
                executor
                    .launched
                    .iter()
                    .filter(|(_, task)| !is_terminal(task.state))
                    .map(|(id, _)| id.clone()),
            )
            .collect();
        for task_id in unfinished.into_iter().filter(|_| !terminating) {
            let state = if executor.kill_requested.contains(&task_id) {
                TaskState::TaskKilled
            } else if reason == Reason::AgentRestarted {
                lost
            } else {
                TaskState::TaskFailed
            };
            let mut status = self.agent_status(
                framework_id,
                &task_id,
                Some(executor_id),
                state,
                reason,
                message,
                now,
            );
            if let Some((limitation, _)) = &executor.limitation
                && state == TaskState::TaskFailed
            {
                status.limitation = Some(limitation.proto());
            }
            self.enqueue_update(framework_id, status, now, out);
        }
        // Like Mesos, only custom executors' exits reach the master (and the scheduler as
        // FAILURE); a command executor's exit is its task's terminal update.
        if self.registered && !executor.command {
            let mut call = internal::AgentCall::default();
            call.set_type(internal::agent_call::Type::ExecutorExited);
            call.agent_id = self.agent_id.as_ref().map(|a| v1::AgentId { value: a.clone() });
            call.executor_exited = Some(internal::agent_call::ExecutorExited {
                framework_id: v1::FrameworkId { value: framework_id.to_string() },
                executor_id: v1::ExecutorId { value: executor_id.to_string() },
                status: wait_status,
            });
            out.push(Output::ToMaster(call));
        }
    }

    fn tick(&mut self, now: Duration, out: &mut Vec<Output>) {
        self.resend_due(now, out);
        let mut overdue = Vec::new();
        let mut changed = Vec::new();
        for (framework_id, framework) in &mut self.frameworks {
            for (executor_id, executor) in &mut framework.executors {
                if executor.conn.is_none()
                    && !executor.killed
                    && executor.register_by.is_some_and(|at| at <= now)
                {
                    // Never subscribed in time: killed at once, no grace (it is not listening).
                    executor.registration_timed_out = true;
                    executor.kill_at = Some(now);
                    changed
                        .push(CheckpointKey::Executor(framework_id.clone(), executor_id.clone()));
                }
                if !executor.killed && executor.kill_at.is_some_and(|at| at <= now) {
                    // (`killed` is not checkpointed: a restarted agent kills again.)
                    executor.killed = true;
                    overdue.push((framework_id.clone(), executor_id.clone()));
                }
            }
        }
        for key in changed {
            self.mark(key);
        }
        for (framework_id, executor_id) in overdue {
            out.push(Output::KillExecutor { framework_id, executor_id });
        }
    }

    /// A status update the agent itself generates; unlike the master's it carries a uuid and
    /// goes through the update stream, so it is retried until acknowledged.
    #[expect(clippy::too_many_arguments, reason = "mirrors the fields of the status it builds")]
    fn agent_status(
        &mut self,
        _framework_id: &str,
        task_id: &str,
        executor_id: Option<&str>,
        state: TaskState,
        reason: Reason,
        message: &str,
        now: Duration,
    ) -> v1::TaskStatus {
        let mut status = crate::status::Synthesized {
            task_id,
            state,
            source: Source::Agent,
            reason: Some(reason),
            message: message.to_string(),
            agent_id: self.agent_id.as_deref(),
            executor_id,
        }
        .build(now);
        status.uuid = Some(bytes::Bytes::copy_from_slice(&self.uuids.next_bytes()));
        status
    }
}

/// The executor's own shutdown grace period, else the agent's.
fn shutdown_grace(executor: &v1::ExecutorInfo, default: Duration) -> Duration {
    executor
        .shutdown_grace_period
        .as_ref()
        .map_or(default, |d| Duration::from_nanos(u64::try_from(d.nanoseconds).unwrap_or(0)))
}

/// A raw wait status in words: `exited with status 1` or `terminated by signal 9`.
pub fn describe_wait_status(status: i32) -> String {
    let signal = status & 0x7f;
    if signal == 0 {
        format!("exited with status {}", (status >> 8) & 0xff)
    } else {
        format!("terminated by signal {signal}")
    }
}

#[cfg(test)]
mod tests;
