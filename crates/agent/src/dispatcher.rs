//! The one task that owns the agent's state machine (DESIGN invariant 2).
//!
//! Executor API handlers, the master link and the executor watchers send it `Command`s; it
//! feeds them to the core with the current time and carries out the outputs: replies, records
//! to executor streams, calls to the master (through the link's ordered sender), executor
//! launches and kills. A timer turns into `Tick` for update retries and shutdown deadlines.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use agora_core::agent::{Agent, AgentConfig, CallError, ConnId, Input, Output, ReqId};
use agora_http::{Clock, Dispatch, Streams};
use agora_proto::{Format, internal};
use bytes::Bytes;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::fetcher::Fetcher;
use crate::{launcher, master_link};

/// How often the core gets a `Tick`; retries and deadlines are this precise.
const TICK: Duration = Duration::from_millis(100);

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
    /// An executor process started with this process id (also its process group id).
    Launched { framework_id: String, executor_id: String, pid: i32 },
    /// The grace after SIGTERM is over: SIGKILL the executor if it is still the same process.
    HardKill { key: (String, String), pid: i32 },
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
    master: String,
    backoff: master_link::Backoff,
    gc_delay: Duration,
    fetcher: Fetcher,
) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = Dispatch::new(tx);
    let to_master = master_link::spawn(master, handle.clone(), backoff);
    let dispatcher = Dispatcher {
        agent: Agent::new(config),
        handle: handle.clone(),
        to_master,
        pending: HashMap::new(),
        streams: Streams::default(),
        pids: HashMap::new(),
        pending_kills: HashSet::new(),
        clock: Clock::start(),
        gc_delay,
        fetcher: Arc::new(fetcher),
    };
    tokio::spawn(dispatcher.run(rx));
    handle
}

struct Dispatcher {
    agent: Agent,
    handle: Handle,
    to_master: mpsc::UnboundedSender<internal::AgentCall>,
    pending: HashMap<ReqId, oneshot::Sender<Result<(), CallError>>>,
    streams: Streams,
    pids: HashMap<(String, String), i32>,
    /// Kills ordered before the executor's process id was known.
    pending_kills: HashSet<(String, String)>,
    clock: Clock,
    /// How long a finished executor's sandbox stays (`--gc_delay`).
    gc_delay: Duration,
    fetcher: Arc<Fetcher>,
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let input = tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Input { input, reply, stream }) => {
                        if let Some((conn, format, tx)) = stream {
                            self.streams.insert(conn, format, tx);
                        }
                        if let Input::ExecutorSubscribe { req, .. } | Input::ExecutorCall { req, .. } = &input {
                            self.pending.insert(*req, reply);
                        }
                        input
                    }
                    Some(Command::Event(input)) => {
                        match &input {
                            Input::ExecutorExited { framework_id, executor_id, .. }
                            | Input::ExecutorLaunchFailed { framework_id, executor_id, .. } => {
                                let key = (framework_id.clone(), executor_id.clone());
                                self.pids.remove(&key);
                                self.pending_kills.remove(&key);
                            }
                            Input::ExecutorClosed { conn } => {
                                self.streams.remove(*conn);
                            }
                            _ => {}
                        }
                        input
                    }
                    Some(Command::RegisterCall(reply)) => {
                        let _ = reply.send(self.agent.register_call());
                        continue;
                    }
                    Some(Command::Launched { framework_id, executor_id, pid }) => {
                        let key = (framework_id, executor_id);
                        if self.pending_kills.remove(&key) {
                            self.kill(key.clone(), pid);
                        }
                        self.pids.insert(key, pid);
                        continue;
                    }
                    Some(Command::HardKill { key, pid }) => {
                        if self.pids.get(&key) == Some(&pid) {
                            launcher::signal_group(pid, Signal::SIGKILL);
                        }
                        continue;
                    }
                    None => return,
                },
                _ = tick.tick() => Input::Tick,
            };
            let outputs = self.agent.handle(input, self.clock.now());
            self.apply(outputs);
        }
    }

    fn apply(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
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
                    tokio::spawn(launcher::run(*launch, fetcher, tx, self.gc_delay));
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
                Output::KillExecutor { framework_id, executor_id } => {
                    let key = (framework_id, executor_id);
                    match self.pids.get(&key) {
                        Some(&pid) => self.kill(key, pid),
                        None => {
                            self.pending_kills.insert(key);
                        }
                    }
                }
            }
        }
    }

    /// SIGTERM now, SIGKILL after the grace period unless the executor exited meanwhile (its
    /// process id may then belong to somebody else).
    fn kill(&self, key: (String, String), pid: i32) {
        launcher::signal_group(pid, Signal::SIGTERM);
        let tx = self.handle.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(launcher::TERM_GRACE).await;
            let _ = tx.send(Command::HardKill { key, pid });
        });
    }
}
