//! `agora-executor` is Agora's command executor (Mesos's `mesos-executor`, reference §3.5): the
//! process the agent starts for a task that carries a `CommandInfo` and no executor of its own.
//! It subscribes to the agent's executor API, runs that one task as a child process in its own
//! process group, reports STARTING, RUNNING and the terminal state, kills the task on KILL or
//! SHUTDOWN with SIGTERM and then SIGKILL after the grace period, and exits once the agent has
//! acknowledged the terminal update.
//!
//! This file is the IO shell: the environment, the event stream, the child process, timers and
//! the ordered sending of updates. Every decision lives in the sans-IO core of `state.rs`; the
//! process plumbing in `process.rs`. It does not re-subscribe after losing the agent (which
//! checkpointing frameworks would want), run health checks or task groups.

pub mod process;
pub mod state;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_client::ClientError;
use agora_client::executor::{ExecutorEnv, ExecutorSession};
use agora_proto::executor::event::Type as EventType;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::{Format, executor, v1};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::process::{Termination, signal_group};
use crate::state::{CommandExecutor, Config, Input, Output, Update};

/// The agent's default `--executor_shutdown_grace_period`, used when the environment lacks one.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long an exiting executor lets updates still queued reach the agent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the command executor until its task has been reported and acknowledged; returns the
/// process exit code (0 after the terminal update's ack, non-zero otherwise).
pub async fn run_command_executor() -> i32 {
    let env = match ExecutorEnv::from_env() {
        Ok(env) => env,
        Err(reason) => {
            eprintln!("agora executor: {reason}");
            return 1;
        }
    };
    let shutdown_grace = match env
        .shutdown_grace_period
        .as_deref()
        .map(|t| agora_core::duration::parse(t).ok())
    {
        None => DEFAULT_SHUTDOWN_GRACE,
        Some(Some(grace)) => grace,
        Some(None) => {
            let text = env.shutdown_grace_period.as_deref().unwrap_or_default();
            log(&format!(
                "cannot parse MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD '{text}'; using {DEFAULT_SHUTDOWN_GRACE:?}"
            ));
            DEFAULT_SHUTDOWN_GRACE
        }
    };
    let sandbox = match &env.sandbox {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match std::env::current_dir() {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("agora executor: no MESOS_SANDBOX and no current directory: {e}");
                return 1;
            }
        },
    };
    let uuids = Box::new(|| *uuid::Uuid::new_v4().as_bytes());
    let core = CommandExecutor::new(Config::new(shutdown_grace), uuids);
    Shell::new(env, sandbox).run(core).await
}

/// The IO side of one executor run.
struct Shell {
    env: ExecutorEnv,
    sandbox: PathBuf,
    session: Arc<ExecutorSession>,
    /// The task's process while it runs.
    child: Option<tokio::process::Child>,
    /// The task's process group, kept after the leader's exit to clear what it left behind.
    pgid: Option<u32>,
}

impl Shell {
    fn new(env: ExecutorEnv, sandbox: PathBuf) -> Self {
        let session = Arc::new(ExecutorSession::new(&env, Format::Protobuf));
        Self { env, sandbox, session, child: None, pgid: None }
    }

    async fn run(mut self, mut core: CommandExecutor) -> i32 {
        log(&format!(
            "executor {} of framework {} subscribing to {}",
            self.env.executor_id, self.env.framework_id, self.env.agent_endpoint
        ));
        let mut events = match self.session.subscribe(vec![], vec![]).await {
            Ok(events) => events,
            Err(e) => {
                eprintln!("agora executor: cannot subscribe: {e}");
                return 1;
            }
        };
        // Updates go out one by one from their own task, so they reach the agent in the order
        // the core decided them while the loop keeps reading events.
        let (updates, queue) = mpsc::unbounded_channel();
        let sender = tokio::spawn(send_updates(Arc::clone(&self.session), queue));
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    log(&format!("cannot watch SIGTERM: {e}"));
                    None
                }
            };

        loop {
            let deadline = core.next_deadline();
            let input = tokio::select! {
                event = events.next() => match event {
                    Ok(Some(event)) => match translate(event) {
                        Some(input) => input,
                        None => continue,
                    },
                    Ok(None) => Input::Disconnected {
                        reason: "the agent closed the event stream".into(),
                    },
                    Err(e) => Input::Disconnected { reason: e.to_string() },
                },
                termination = wait(&mut self.child) => {
                    self.child = None;
                    Input::Exited(termination)
                }
                () = sleep_until(deadline) => Input::Tick,
                // The agent ends an executor it gives up on by signalling it; the task must
                // not outlive it unreported.
                () = received(&mut terminate) => Input::Disconnected {
                    reason: "received SIGTERM".into(),
                },
            };
            let mut inputs = VecDeque::from([input]);
            while let Some(input) = inputs.pop_front() {
                for output in core.handle(input, Instant::now()) {
                    match output {
                        Output::Send(update) => {
                            // The sender only stops when `updates` is dropped, below.
                            let _ = updates.send(self.status(update));
                        }
                        Output::Spawn(command) => inputs.push_back(self.spawn(command)),
                        Output::Signal(signal) => {
                            if let Some(pgid) = self.pgid
                                && let Err(e) = signal_group(pgid, signal)
                            {
                                log(&format!("cannot send {signal} to process group {pgid}: {e}"));
                            }
                        }
                        Output::Log(line) => log(&line),
                        Output::Exit(code) => {
                            drop(updates);
                            if tokio::time::timeout(FLUSH_TIMEOUT, sender).await.is_err() {
                                log("gave up sending the remaining status updates");
                            }
                            return code;
                        }
                    }
                }
            }
        }
    }

    /// Starts the task and tells the core how that went.
    fn spawn(&mut self, command: Option<v1::CommandInfo>) -> Input {
        let Some(command) = command else {
            return Input::SpawnFailed { message: "the task has no CommandInfo".into() };
        };
        match process::spawn(&command, &self.sandbox) {
            Ok(child) => {
                self.pgid = child.id();
                if let Some(pid) = self.pgid {
                    log(&format!("forked task process {pid}"));
                }
                self.child = Some(child);
                Input::Spawned
            }
            Err(message) => Input::SpawnFailed { message },
        }
    }

    /// The wire form of an update, stamped now.
    fn status(&self, update: Update) -> v1::TaskStatus {
        let timestamp =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut status = v1::TaskStatus {
            task_id: v1::TaskId { value: update.task_id },
            message: update.message,
            timestamp: Some(timestamp),
            executor_id: Some(v1::ExecutorId { value: self.env.executor_id.clone() }),
            uuid: Some(Bytes::copy_from_slice(&update.uuid)),
            ..Default::default()
        };
        status.set_state(update.state);
        status.set_source(v1::task_status::Source::Executor);
        status
    }
}

/// How often a failed UPDATE call is tried again, and the first pause between tries.
const UPDATE_ATTEMPTS: u32 = 6;
const UPDATE_RETRY: Duration = Duration::from_millis(200);

/// Sends queued updates in order until the queue closes. A failed call is tried again with a
/// doubling pause (the agent drops duplicates by uuid, so a retry is always safe); an update
/// that still cannot be sent stays unacknowledged, and the ack fail-safe bounds the wait for it.
async fn send_updates(
    session: Arc<ExecutorSession>,
    mut queue: mpsc::UnboundedReceiver<v1::TaskStatus>,
) {
    while let Some(status) = queue.recv().await {
        let task_id = status.task_id.value.clone();
        let state = status.state().as_str_name();
        let mut pause = UPDATE_RETRY;
        for attempt in 1..=UPDATE_ATTEMPTS {
            match session.update(status.clone()).await {
                Ok(()) => break,
                // The agent refused the update itself: sending it again cannot help.
                Err(e @ ClientError::Status { status: 400..=499, .. }) => {
                    log(&format!("the agent refused {state} of task {task_id}: {e}"));
                    break;
                }
                Err(e) if attempt == UPDATE_ATTEMPTS => {
                    log(&format!("giving up sending {state} of task {task_id}: {e}"));
                }
                Err(e) => {
                    log(&format!("cannot send {state} of task {task_id} (will retry): {e}"));
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
}

/// The core's view of one agent event; `None` for events it has no use for.
fn translate(event: executor::Event) -> Option<Input> {
    let kind = event.r#type();
    let missing = |what: &str| {
        log(&format!("ignoring a {} event without its {what}", kind.as_str_name()));
        None
    };
    match kind {
        EventType::Subscribed => {
            let Some(subscribed) = event.subscribed else {
                return missing("subscribed payload");
            };
            let framework = &subscribed.framework_info;
            log(&format!(
                "subscribed to agent {} for framework '{}'",
                subscribed.agent_info.hostname, framework.name
            ));
            let task_killing_state =
                framework.capabilities.iter().any(|c| c.r#type() == Capability::TaskKillingState);
            Some(Input::Subscribed { task_killing_state })
        }
        EventType::Launch => {
            let Some(launch) = event.launch else {
                return missing("task");
            };
            let task = launch.task;
            Some(Input::Launch {
                task_id: task.task_id.value,
                command: task.command,
                kill_grace: task.kill_policy.as_ref().and_then(grace_of),
            })
        }
        EventType::LaunchGroup => {
            let Some(group) = event.launch_group else {
                return missing("task group");
            };
            let task_ids = group.task_group.tasks.into_iter().map(|t| t.task_id.value).collect();
            Some(Input::LaunchGroup { task_ids })
        }
        EventType::Kill => {
            let Some(kill) = event.kill else {
                return missing("task id");
            };
            Some(Input::Kill {
                task_id: kill.task_id.value,
                grace: kill.kill_policy.as_ref().and_then(grace_of),
            })
        }
        EventType::Acknowledged => {
            let Some(ack) = event.acknowledged else {
                return missing("uuid");
            };
            Some(Input::Acknowledged { uuid: ack.uuid.to_vec() })
        }
        EventType::Shutdown => Some(Input::Shutdown),
        EventType::Error => {
            let message = event.error.map(|e| e.message).unwrap_or_default();
            Some(Input::Error { message })
        }
        EventType::Message => {
            let size = event.message.map_or(0, |m| m.data.len());
            log(&format!("ignoring a framework message of {size} bytes"));
            None
        }
        EventType::Heartbeat | EventType::Unknown => None,
    }
}

/// The grace period of a kill policy; a negative one means "no grace".
fn grace_of(policy: &v1::KillPolicy) -> Option<Duration> {
    let nanos = policy.grace_period.as_ref()?.nanoseconds;
    Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

/// How the child ended; never resolves without a child.
async fn wait(child: &mut Option<tokio::process::Child>) -> Termination {
    match child {
        Some(child) => match child.wait().await {
            Ok(status) => Termination::from(status),
            Err(e) => {
                log(&format!("cannot wait for the task's process: {e}"));
                Termination::Unknown
            }
        },
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves on the next delivery of a watched signal; never without a watch.
async fn received(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

/// One line on the executor's stderr, which the agent points at the sandbox's `stderr` file.
fn log(line: &str) {
    eprintln!("agora executor: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_translate_to_core_inputs() {
        let mut launch = executor::Event::default();
        launch.set_type(EventType::Launch);
        launch.launch = Some(executor::event::Launch {
            task: v1::TaskInfo {
                task_id: v1::TaskId { value: "t".into() },
                command: Some(v1::CommandInfo { value: Some("true".into()), ..Default::default() }),
                kill_policy: Some(v1::KillPolicy {
                    grace_period: Some(v1::DurationInfo { nanoseconds: 2_000_000_000 }),
                }),
                ..Default::default()
            },
        });
        match translate(launch) {
            Some(Input::Launch { task_id, command: Some(_), kill_grace }) => {
                assert_eq!(task_id, "t");
                assert_eq!(kill_grace, Some(Duration::from_secs(2)));
            }
            other => panic!("unexpected {other:?}"),
        }

        let mut kill = executor::Event::default();
        kill.set_type(EventType::Kill);
        kill.kill = Some(executor::event::Kill {
            task_id: v1::TaskId { value: "t".into() },
            kill_policy: Some(v1::KillPolicy {
                grace_period: Some(v1::DurationInfo { nanoseconds: -5 }),
            }),
        });
        assert_eq!(
            translate(kill),
            Some(Input::Kill { task_id: "t".into(), grace: Some(Duration::ZERO) })
        );

        // A payload-less event of a type that needs one, heartbeats and unknown types are
        // dropped without harm.
        let mut bare = executor::Event::default();
        bare.set_type(EventType::Kill);
        assert_eq!(translate(bare), None);
        let mut heartbeat = executor::Event::default();
        heartbeat.set_type(EventType::Heartbeat);
        assert_eq!(translate(heartbeat), None);
        assert_eq!(translate(executor::Event { r#type: Some(99), ..Default::default() }), None);

        let mut shutdown = executor::Event::default();
        shutdown.set_type(EventType::Shutdown);
        assert_eq!(translate(shutdown), Some(Input::Shutdown));
    }
}
