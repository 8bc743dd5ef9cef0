//! The one task that owns the agent's state machine (DESIGN invariant 2).
//!
//! Executor API handlers, the master link and the executor watchers send it `Command`s; it
//! feeds them to the core with the current time and carries out the outputs: replies, records
//! to executor streams, calls to the master (through the link's ordered sender), executor
//! launches and kills. A timer turns into `Tick` for update retries and shutdown deadlines.
//!
//! It also owns the checkpoint store: the core's `Output::Checkpoint` is committed (durably)
//! before any later output of the same input is carried out, and every executor's process id
//! is recorded as it starts and forgotten as it ends. At start it replays the recovery: live
//! executors are watched, orphans of frameworks that do not checkpoint are killed, and the
//! core's `recover` outputs are carried out before anything else.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use agora_core::agent::{Agent, AgentConfig, CallError, ConnId, Input, Limitation, Output, ReqId};
use agora_http::{Clock, Dispatch, Streams};
use agora_proto::{Format, internal};
use bytes::Bytes;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::cgroups::Container;
use crate::checkpoint::{self, ExecutorPid, Store};
use crate::fetcher::Fetcher;
use crate::isolation::Isolator;
use crate::{launcher, master_link};

/// What a restarted agent takes over from its previous run (built by `lib.rs`).
pub(crate) struct Recovery {
    pub(crate) recovered: agora_core::agent::Recovered,
    /// Executors of checkpointing frameworks still running, with their processes.
    pub(crate) live: Vec<((String, String), ExecutorPid)>,
    /// Recorded executors that are not recovered (of frameworks that do not checkpoint, or
    /// ended meanwhile): they are killed, with whatever they left in their sessions.
    pub(crate) orphans: Vec<ExecutorPid>,
    /// Recorded processes that are no longer of interest.
    pub(crate) forget: Vec<(String, String)>,
}

/// The checkpoint side of the dispatcher.
pub(crate) struct Persistence {
    pub(crate) store: Store,
    pub(crate) recovery: Recovery,
    pub(crate) session_helper: Option<String>,
    /// The isolators in force (`--isolation`): recovered executors' cgroups are found
    /// through it, and launches get it.
    pub(crate) isolator: Arc<Isolator>,
}

/// How often the core gets a `Tick`; retries and deadlines are this precise.
const TICK: Duration = Duration::from_millis(100);

/// The most commands one batch (and its one checkpoint write) takes.
const BATCH: usize = 256;

pub(crate) enum Command {
    /// A request from a handler, with its reply channel and, for SUBSCRIBE, the stream to
    /// register before the core sees the call.
    Input {
        input: Input,
        reply: oneshot::Sender<Result<(), CallError>>,
        stream: Option<(ConnId, Format, mpsc::UnboundedSender<Bytes>)>,
    },
    /// An input nobody waits for: master events, stream closures, executor exits.
    Event(Input),
    /// The master link asks for the REGISTER call of its next connection.
    RegisterCall(oneshot::Sender<internal::AgentCall>),
    /// An executor process started with this process id (also its process group and
    /// session id). With a session helper the program waits for `confirm`, sent once the
    /// pid is durable, so no executor ever runs unrecorded.
    Launched {
        framework_id: String,
        executor_id: String,
        pid: ExecutorPid,
        confirm: Option<oneshot::Sender<()>>,
        /// Its cgroup, with cgroup isolation.
        container: Option<Container>,
        /// The byte limit `disk/du` holds its sandbox to, which resizes change.
        disk_limit: Option<Arc<AtomicU64>>,
    },
    /// The grace after SIGTERM is over: SIGKILL the executor if it is still the same process.
    HardKill { key: (String, String), pid: ExecutorPid },
    /// A read-only look at the core and the executors' processes for the operator API and
    /// the legacy endpoints; it runs after the batch so far, so it sees that batch's effects.
    Query(Box<dyn FnOnce(View<'_>) + Send>),
}

/// What a `Command::Query` sees. It borrows the dispatcher's state for the length of one
/// call, so nothing outside the dispatcher ever holds it.
pub(crate) struct View<'a> {
    pub(crate) agent: &'a Agent,
    /// Process ids of the executors that have started (session or process-group leaders).
    pub(crate) pids: &'a HashMap<(String, String), ExecutorPid>,
    /// The running executors' cgroups, under cgroup isolation.
    pub(crate) containers: &'a HashMap<(String, String), Container>,
    /// When the agent started, in the clock's seconds since the epoch.
    pub(crate) started: Duration,
    pub(crate) now: Duration,
}

/// Runs `look` against the dispatcher's state and returns its answer; `None` when the
/// dispatcher is gone.
pub(crate) async fn query<R: Send + 'static>(
    handle: &Handle,
    look: impl FnOnce(View<'_>) -> R + Send + 'static,
) -> Option<R> {
    handle
        .request(|reply| {
            Command::Query(Box::new(move |view: View<'_>| {
                let _ = reply.send(look(view));
            }))
        })
        .await
}

pub(crate) type Handle = Dispatch<Command>;

/// Sends an input and waits for the core's answer to it.
pub(crate) async fn submit(
    handle: &Handle,
    input: Input,
    stream: Option<(ConnId, Format, mpsc::UnboundedSender<Bytes>)>,
) -> Result<(), CallError> {
    handle
        .request(|reply| Command::Input { input, reply, stream })
        .await
        .unwrap_or_else(|| Err(CallError::Forbidden("The agent is shutting down".into())))
}

pub(crate) fn spawn(
    config: AgentConfig,
    masters: master_link::Masters,
    backoff: master_link::Backoff,
    gc_delay: Duration,
    fetcher: Fetcher,
    persistence: Persistence,
) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = Dispatch::new(tx);
    let Persistence { store, recovery, session_helper, isolator } = persistence;
    let mut dispatcher = Dispatcher {
        agent: Agent::new(config),
        handle: handle.clone(),
        to_master: mpsc::unbounded_channel().0,
        pending: HashMap::new(),
        streams: Streams::default(),
        pids: HashMap::new(),
        pending_kills: HashSet::new(),
        launching: HashSet::new(),
        clock: Clock::start(),
        started: Duration::ZERO,
        gc_delay,
        fetcher: Arc::new(fetcher),
        store,
        session_helper: session_helper.map(Arc::new),
        isolator,
        containers: HashMap::new(),
        disk_limits: HashMap::new(),
    };
    dispatcher.started = dispatcher.clock.now();
    dispatcher.recover(recovery);
    // The master link starts after recovery, so its first REGISTER reports what was recovered.
    dispatcher.to_master = master_link::spawn(masters, handle.clone(), backoff);
    tokio::spawn(dispatcher.run(rx));
    handle
}

struct Dispatcher {
    agent: Agent,
    handle: Handle,
    to_master: mpsc::UnboundedSender<internal::AgentCall>,
    pending: HashMap<ReqId, oneshot::Sender<Result<(), CallError>>>,
    streams: Streams,
    pids: HashMap<(String, String), ExecutorPid>,
    /// Kills ordered before the executor's process id was known.
    pending_kills: HashSet<(String, String)>,
    /// Executors whose launch is under way (fetching or starting), until their pid or their
    /// end is known: only for those can a kill wait for the pid.
    launching: HashSet<(String, String)>,
    clock: Clock,
    /// When the agent started (for `slave/uptime_secs` and `/state`'s `start_time`).
    started: Duration,
    /// How long a finished executor's sandbox stays (`--gc_delay`).
    gc_delay: Duration,
    fetcher: Arc<Fetcher>,
    store: Store,
    session_helper: Option<Arc<String>>,
    isolator: Arc<Isolator>,
    /// The cgroups of running executors, for checking an executor's report of a task's end
    /// against its container's OOM counter.
    containers: HashMap<(String, String), Container>,
    /// The `disk/du` limits of running executors, shared with their watchers.
    disk_limits: HashMap<(String, String), Arc<AtomicU64>>,
}

impl Dispatcher {
    fn recover(&mut self, recovery: Recovery) {
        let Recovery { recovered, live, orphans, forget } = recovery;
        for pid in orphans {
            tracing::info!(
                pid = pid.pid,
                "killing an executor that is not recovered, or its remains"
            );
            launcher::kill_tree(pid);
        }
        for (framework_id, executor_id) in forget {
            self.record_pid(&framework_id, &executor_id, None);
        }
        let sandboxes: HashMap<(String, String), String> = recovered
            .executors
            .iter()
            .map(|(e, _)| {
                (
                    (e.framework_id.clone(), e.executor_info.executor_id.value.clone()),
                    e.sandbox.clone(),
                )
            })
            .collect();
        // The sandboxes of executors that did not survive the restart go like any other
        // ended executor's (the timers of the previous run died with it).
        for (key, sandbox) in &sandboxes {
            if !live.iter().any(|(k, _)| k == key) {
                crate::gc::schedule(std::path::PathBuf::from(sandbox), self.gc_delay);
            }
        }
        for (key, pid) in live {
            tracing::info!(framework_id = %key.0, executor_id = %key.1, pid = pid.pid, "recovered a running executor");
            let sandbox = sandboxes.get(&key).cloned().unwrap_or_default();
            // The sandbox's last component is the container id, which names its cgroup.
            let container = std::path::Path::new(&sandbox)
                .file_name()
                .and_then(|id| id.to_str())
                .and_then(|id| self.isolator.container(id))
                .filter(|c| c.dirs().iter().any(|d| d.exists()));
            if let Some(container) = &container {
                self.containers.insert(key.clone(), container.clone());
            }
            tokio::spawn(launcher::watch(
                key.clone(),
                pid,
                sandbox,
                container,
                self.handle.tx.clone(),
                self.gc_delay,
            ));
            self.pids.insert(key, pid);
        }
        let outputs = self.agent.recover(recovered, self.clock.now());
        self.apply(outputs);
    }

    /// Records (or forgets) an executor's process; an agent that cannot checkpoint stops.
    fn record_pid(&self, framework_id: &str, executor_id: &str, pid: Option<ExecutorPid>) {
        if let Err(e) = self.store.set_pid(framework_id, executor_id, pid) {
            checkpoint_failed(&e);
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let mut outputs = Vec::new();
            let ticked = tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => {
                        self.take(command, &mut outputs);
                        false
                    }
                    None => return,
                },
                _ = tick.tick() => true,
            };
            // Group commit: what is already waiting joins this batch, so that one durable
            // write covers the checkpoint records of all of it.
            for _ in 0..BATCH {
                let Ok(command) = rx.try_recv() else { break };
                self.take(command, &mut outputs);
            }
            // The tick comes after what was waiting, so that a deadline never beats a call
            // (an executor's SUBSCRIBE, say) that arrived before it was handled.
            if ticked {
                outputs.extend(self.agent.handle(Input::Tick, self.clock.now()));
            }
            self.apply(outputs);
        }
    }

    /// Feeds one command to the core, adding its outputs to the batch; commands the dispatcher
    /// answers itself first carry out the batch so far, so they see its effects.
    fn take(&mut self, command: Command, outputs: &mut Vec<Output>) {
        let input = match command {
            Command::Input { input, reply, stream } => {
                if let Some((conn, format, tx)) = stream {
                    self.streams.insert(conn, format, tx);
                }
                if let Input::ExecutorSubscribe { req, .. } | Input::ExecutorCall { req, .. } =
                    &input
                {
                    self.pending.insert(*req, reply);
                }
                if let Input::ExecutorCall { call, .. } = &input {
                    self.check_oom(call, outputs);
                }
                input
            }
            Command::Event(input) => {
                match &input {
                    Input::ExecutorExited { framework_id, executor_id, .. }
                    | Input::ExecutorLaunchFailed { framework_id, executor_id, .. } => {
                        let key = (framework_id.clone(), executor_id.clone());
                        if self.pids.remove(&key).is_some() {
                            self.record_pid(&key.0, &key.1, None);
                        }
                        self.containers.remove(&key);
                        self.disk_limits.remove(&key);
                        self.pending_kills.remove(&key);
                        self.launching.remove(&key);
                    }
                    Input::ExecutorClosed { conn } => {
                        self.streams.remove(*conn);
                    }
                    _ => {}
                }
                input
            }
            Command::RegisterCall(reply) => {
                self.apply(std::mem::take(outputs));
                let _ = reply.send(self.agent.register_call());
                return;
            }
            Command::Launched {
                framework_id,
                executor_id,
                pid,
                confirm,
                container,
                disk_limit,
            } => {
                self.apply(std::mem::take(outputs));
                self.record_pid(&framework_id, &executor_id, Some(pid));
                let key = (framework_id, executor_id);
                if let Some(container) = container {
                    self.containers.insert(key.clone(), container);
                }
                if let Some(limit) = disk_limit {
                    self.disk_limits.insert(key.clone(), limit);
                }
                self.launching.remove(&key);
                let doomed = self.pending_kills.remove(&key);
                match confirm {
                    // Killed before it started: without the go-ahead the helper exits and
                    // the executor program never runs.
                    Some(confirm) if doomed => drop(confirm),
                    // Durable now: the executor program may start.
                    Some(confirm) => {
                        let _ = confirm.send(());
                    }
                    None if doomed => self.kill(key.clone(), pid),
                    None => {}
                }
                self.pids.insert(key, pid);
                return;
            }
            Command::Query(look) => {
                self.apply(std::mem::take(outputs));
                look(View {
                    agent: &self.agent,
                    pids: &self.pids,
                    containers: &self.containers,
                    started: self.started,
                    now: self.clock.now(),
                });
                return;
            }
            Command::HardKill { key, pid } => {
                if self.pids.get(&key) == Some(&pid) {
                    launcher::kill_tree(pid);
                    // Its cgroup holds what left the session too.
                    if let Some(container) = self.containers.get(&key) {
                        tokio::spawn(launcher::destroy(container.clone()));
                    }
                }
                return;
            }
        };
        outputs.extend(self.agent.handle(input, self.clock.now()));
    }

    /// Carries out a batch of outputs: every checkpoint record first, in one durable write
    /// (each record is the whole current state of its key, so later ones simply win), then
    /// the rest in order.
    fn apply(&mut self, outputs: Vec<Output>) {
        let mut records = Vec::new();
        let mut rest = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                Output::Checkpoint(batch) => records.extend(batch),
                other => rest.push(other),
            }
        }
        if !records.is_empty()
            && let Err(e) = self.store.commit(&records)
        {
            checkpoint_failed(&e);
        }
        for output in rest {
            match output {
                Output::Checkpoint(_) => {}
                Output::Reply { req, result } => {
                    if let Some(reply) = self.pending.remove(&req) {
                        let _ = reply.send(result);
                    }
                }
                Output::ToMaster(call) => {
                    let _ = self.to_master.send(call);
                }
                Output::ToExecutor { conn, event } => {
                    self.streams.send(conn, &event);
                }
                Output::CloseExecutor { conn } => {
                    self.streams.remove(conn);
                }
                Output::LaunchExecutor(launch) => {
                    // The launch task fetches the executor's URIs first, off the dispatcher.
                    let fetcher = Arc::clone(&self.fetcher);
                    let tx = self.handle.tx.clone();
                    let helper = self.session_helper.clone();
                    let isolator = Arc::clone(&self.isolator);
                    let key = (launch.framework_id.clone(), launch.executor_id.clone());
                    // A kill left over from an earlier executor with the same id must not
                    // reach this one.
                    self.pending_kills.remove(&key);
                    self.launching.insert(key);
                    tokio::spawn(launcher::run(
                        *launch,
                        fetcher,
                        helper,
                        isolator,
                        tx,
                        self.gc_delay,
                    ));
                }
                Output::DestroyVolumes { paths } => {
                    // Moved aside at once, in order with the launches that follow (a new
                    // volume with the same id must start empty), then deleted off the
                    // dispatcher's task, since a volume may be large.
                    let mut doomed = Vec::new();
                    for path in paths {
                        let trash = format!("{path}.destroyed-{}", self.clock.now().as_nanos());
                        match std::fs::rename(&path, &trash) {
                            Ok(()) => doomed.push(trash),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => tracing::warn!(%path, "cannot remove destroyed volume: {e}"),
                        }
                    }
                    tokio::task::spawn_blocking(move || {
                        for path in doomed {
                            if let Err(e) = std::fs::remove_dir_all(&path) {
                                tracing::warn!(%path, "cannot delete destroyed volume: {e}");
                            }
                        }
                    });
                }
                Output::AttachVolumes { sandbox, volumes } => {
                    if let Err(e) = launcher::link_volumes(std::path::Path::new(&sandbox), &volumes)
                    {
                        tracing::warn!(%sandbox, "cannot attach volumes: {e}");
                    }
                }
                Output::ResizeContainer { framework_id, executor_id, cpus, mem_mb, disk_mb } => {
                    let key = (framework_id, executor_id);
                    if let Some(container) = self.containers.get(&key) {
                        self.isolator.resize(container, cpus, mem_mb);
                    }
                    if let Some(limit) = self.disk_limits.get(&key) {
                        let bytes = crate::isolation::disk_limit_bytes(disk_mb);
                        limit.store(bytes, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Output::KillExecutor { framework_id, executor_id } => {
                    let key = (framework_id, executor_id);
                    match self.pids.get(&key) {
                        Some(&pid) => self.kill(key, pid),
                        // Still starting: killed as soon as its pid is known.
                        None if self.launching.contains(&key) => {
                            self.pending_kills.insert(key);
                        }
                        // Already gone (its exit is in this very batch).
                        None => {}
                    }
                }
            }
        }
    }

    /// Before an executor's report of a task's end reaches the core, checks its container's
    /// OOM counter: the kernel counts the kill before the victim is even gone, so a task the
    /// OOM killer took is always known as such by the time its executor reports it, and it
    /// fails with the memory limitation rather than as a plain signal death.
    fn check_oom(&mut self, call: &agora_proto::executor::Call, outputs: &mut Vec<Output>) {
        let Some(status) = call.update.as_ref().map(|u| &u.status) else { return };
        if !agora_core::status::is_terminal(status.state()) {
            return;
        }
        let key = (call.framework_id.value.clone(), call.executor_id.value.clone());
        let Some(container) = self.containers.get(&key) else { return };
        if container.oom_kills() > 0 {
            let input = Input::ContainerLimited {
                framework_id: key.0,
                executor_id: key.1,
                limitation: Limitation::Memory,
                message: crate::isolation::oom_message(container),
            };
            outputs.extend(self.agent.handle(input, self.clock.now()));
        }
    }

    /// SIGTERM now, SIGKILL after the grace period unless the executor exited meanwhile (its
    /// process id may then belong to somebody else).
    fn kill(&self, key: (String, String), pid: ExecutorPid) {
        // A recovered executor is not our child: its pid is checked before every signal.
        if !checkpoint::is_alive(pid) {
            return;
        }
        launcher::signal_group(pid.pid, Signal::SIGTERM);
        let tx = self.handle.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(launcher::TERM_GRACE).await;
            let _ = tx.send(Command::HardKill { key, pid });
        });
    }
}

/// An agent that cannot write its checkpoint must not acknowledge or forward anything more:
/// what it says could not be recovered. Like Mesos, it stops; started again, it recovers from
/// the last durable state.
fn checkpoint_failed(error: &checkpoint::CheckpointError) -> ! {
    tracing::error!("cannot write the agent's checkpoint, stopping: {error}");
    eprintln!("agora agent: cannot write the checkpoint, stopping: {error}");
    std::process::exit(1)
}
