//! The IO both executors share: reading the environment the agent set (reference §3.4), the
//! subscription to the agent's executor API with its event stream turned into the cores'
//! [`AgentEvent`]s, the SIGTERM that the agent uses to end an executor, and the ordered,
//! retried sending of status updates.
//!
//! It decides nothing and knows no task: the two executors' loops in `lib.rs` own their
//! processes and feed their cores.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_client::executor::{ExecutorEnv, ExecutorSession};
use agora_client::{ClientError, Subscription};
use agora_proto::executor::event::Type as EventType;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::{Format, executor, v1};
use bytes::Bytes;
use tokio::signal::unix::{Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::{AgentEvent, TaskSpec, Update, UuidSource};
use crate::health::HealthSpec;

/// The agent's default `--executor_shutdown_grace_period`, used when the environment lacks one.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long an exiting executor lets updates still queued reach the agent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a failed UPDATE call is tried again, and the first pause between tries.
const UPDATE_ATTEMPTS: u32 = 6;
const UPDATE_RETRY: Duration = Duration::from_millis(200);

/// What the agent told the executor through its environment.
pub(crate) struct Setup {
    pub(crate) env: ExecutorEnv,
    pub(crate) shutdown_grace: Duration,
    /// The executor's sandbox: `MESOS_SANDBOX`, else the working directory.
    pub(crate) sandbox: PathBuf,
}

impl Setup {
    /// Reads the environment; `None` (after saying why on stderr) if the executor cannot run.
    pub(crate) fn from_env() -> Option<Self> {
        let env = match ExecutorEnv::from_env() {
            Ok(env) => env,
            Err(reason) => {
                log(&reason);
                return None;
            }
        };
        let shutdown_grace = match env.shutdown_grace_period.as_deref() {
            None => DEFAULT_SHUTDOWN_GRACE,
            Some(text) => agora_core::duration::parse(text).unwrap_or_else(|_| {
                log(&format!(
                    "cannot parse MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD '{text}'; using {DEFAULT_SHUTDOWN_GRACE:?}"
                ));
                DEFAULT_SHUTDOWN_GRACE
            }),
        };
        let sandbox = match &env.sandbox {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::current_dir() {
                Ok(dir) => dir,
                Err(e) => {
                    log(&format!("no MESOS_SANDBOX and no current directory: {e}"));
                    return None;
                }
            },
        };
        Some(Self { env, shutdown_grace, sandbox })
    }
}

/// Random update uuids, as the agent expects them (16 bytes).
pub(crate) fn random_uuids() -> UuidSource {
    Box::new(|| *uuid::Uuid::new_v4().as_bytes())
}

/// What came from the agent's side.
pub(crate) enum Incoming {
    Event(AgentEvent),
    /// The event stream ended or broke, or the executor was told to terminate.
    Disconnected(String),
}

/// The executor's subscription: the event stream in, status updates out.
pub(crate) struct Link {
    executor_id: String,
    events: Subscription<executor::Event>,
    updates: mpsc::UnboundedSender<v1::TaskStatus>,
    sender: JoinHandle<()>,
    terminate: Option<Signal>,
}

impl Link {
    /// Subscribes to the agent; the error says why not.
    pub(crate) async fn open(env: &ExecutorEnv) -> Result<Self, ClientError> {
        log(&format!(
            "executor {} of framework {} subscribing to {}",
            env.executor_id, env.framework_id, env.agent_endpoint
        ));
        let session = Arc::new(ExecutorSession::new(env, Format::Protobuf));
        // Nothing is ever unacknowledged here: this executor subscribes once, and exits when
        // it loses the agent instead of subscribing again.
        let events = session.subscribe(vec![], vec![]).await?;
        // Updates go out one by one from their own task, so they reach the agent in the order
        // the core decided them while the loop keeps reading events.
        let (updates, queue) = mpsc::unbounded_channel();
        let sender = tokio::spawn(send_updates(session, queue));
        let terminate = match tokio::signal::unix::signal(SignalKind::terminate()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                log(&format!("cannot watch SIGTERM: {e}"));
                None
            }
        };
        Ok(Self { executor_id: env.executor_id.clone(), events, updates, sender, terminate })
    }

    /// The next event a core acts on, or the end of the link. Events the cores have no use
    /// for are skipped here.
    pub(crate) async fn next(&mut self) -> Incoming {
        loop {
            tokio::select! {
                event = self.events.next() => match event {
                    Ok(Some(event)) => {
                        if let Some(event) = translate(event) {
                            return Incoming::Event(event);
                        }
                    }
                    Ok(None) => {
                        return Incoming::Disconnected("the agent closed the event stream".into());
                    }
                    Err(e) => return Incoming::Disconnected(e.to_string()),
                },
                // The agent ends an executor it gives up on by signalling it; the tasks must
                // not outlive it unreported.
                () = received(&mut self.terminate) => {
                    return Incoming::Disconnected("received SIGTERM".into());
                }
            }
        }
    }

    /// Queues an update for the agent, stamped now.
    pub(crate) fn send(&self, update: Update) {
        let timestamp =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut status = v1::TaskStatus {
            task_id: v1::TaskId { value: update.task_id },
            message: update.message,
            timestamp: Some(timestamp),
            executor_id: Some(v1::ExecutorId { value: self.executor_id.clone() }),
            uuid: Some(Bytes::copy_from_slice(&update.uuid)),
            ..Default::default()
        };
        status.set_state(update.state);
        status.set_source(v1::task_status::Source::Executor);
        status.healthy = update.healthy;
        if let Some(reason) = update.reason {
            status.set_reason(reason);
        }
        // The sender only stops once `updates` is dropped, in `close`.
        let _ = self.updates.send(status);
    }

    /// Lets the updates still queued reach the agent, for a little while.
    pub(crate) async fn close(self) {
        drop(self.updates);
        if tokio::time::timeout(FLUSH_TIMEOUT, self.sender).await.is_err() {
            log("gave up sending the remaining status updates");
        }
    }
}

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

/// The cores' view of one agent event; `None` for events they have no use for.
fn translate(event: executor::Event) -> Option<AgentEvent> {
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
            Some(AgentEvent::Subscribed { task_killing_state })
        }
        EventType::Launch => {
            let Some(launch) = event.launch else {
                return missing("task");
            };
            Some(AgentEvent::Launch(task_spec(launch.task)))
        }
        EventType::LaunchGroup => {
            let Some(group) = event.launch_group else {
                return missing("task group");
            };
            Some(AgentEvent::LaunchGroup(
                group.task_group.tasks.into_iter().map(task_spec).collect(),
            ))
        }
        EventType::Kill => {
            let Some(kill) = event.kill else {
                return missing("task id");
            };
            Some(AgentEvent::Kill {
                task_id: kill.task_id.value,
                grace: kill.kill_policy.as_ref().and_then(grace_of),
            })
        }
        EventType::Acknowledged => {
            let Some(ack) = event.acknowledged else {
                return missing("uuid");
            };
            Some(AgentEvent::Acknowledged { uuid: ack.uuid.to_vec() })
        }
        EventType::Shutdown => Some(AgentEvent::Shutdown),
        EventType::Error => {
            let message = event.error.map(|e| e.message).unwrap_or_default();
            Some(AgentEvent::Error { message })
        }
        EventType::Message => {
            let size = event.message.map_or(0, |m| m.data.len());
            log(&format!("ignoring a framework message of {size} bytes"));
            None
        }
        EventType::Heartbeat | EventType::Unknown => None,
    }
}

fn task_spec(task: v1::TaskInfo) -> TaskSpec {
    TaskSpec {
        task_id: task.task_id.value,
        kill_grace: task.kill_policy.as_ref().and_then(grace_of),
        health: task.health_check.as_ref().map(|check| HealthSpec::from_proto(check).map(Box::new)),
        command: task.command,
    }
}

/// The grace period of a kill policy; a negative one means "no grace".
fn grace_of(policy: &v1::KillPolicy) -> Option<Duration> {
    let nanos = policy.grace_period.as_ref()?.nanoseconds;
    Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
}

/// Sleeps until `deadline`; forever without one.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves on the next delivery of a watched signal; never without a watch.
async fn received(signal: &mut Option<Signal>) {
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

/// One line on the executor's stderr, which the agent points at the sandbox's `stderr` file.
pub(crate) fn log(line: &str) {
    eprintln!("agora executor: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, grace_nanos: Option<i64>) -> v1::TaskInfo {
        v1::TaskInfo {
            task_id: v1::TaskId { value: id.into() },
            command: Some(v1::CommandInfo { value: Some("true".into()), ..Default::default() }),
            kill_policy: grace_nanos.map(|nanoseconds| v1::KillPolicy {
                grace_period: Some(v1::DurationInfo { nanoseconds }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_translate_to_core_events() {
        let mut launch = executor::Event::default();
        launch.set_type(EventType::Launch);
        launch.launch = Some(executor::event::Launch { task: task("t", Some(2_000_000_000)) });
        match translate(launch) {
            Some(AgentEvent::Launch(TaskSpec {
                task_id, command: Some(_), kill_grace, ..
            })) => {
                assert_eq!(task_id, "t");
                assert_eq!(kill_grace, Some(Duration::from_secs(2)));
            }
            other => panic!("unexpected {other:?}"),
        }

        let mut group = executor::Event::default();
        group.set_type(EventType::LaunchGroup);
        group.launch_group = Some(executor::event::LaunchGroup {
            task_group: v1::TaskGroupInfo { tasks: vec![task("a", None), task("b", Some(0))] },
        });
        let Some(AgentEvent::LaunchGroup(tasks)) = translate(group) else {
            panic!("a LAUNCH_GROUP translates to a group");
        };
        let shape: Vec<_> = tasks.iter().map(|t| (t.task_id.as_str(), t.kill_grace)).collect();
        assert_eq!(shape, [("a", None), ("b", Some(Duration::ZERO))]);

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
            Some(AgentEvent::Kill { task_id: "t".into(), grace: Some(Duration::ZERO) })
        );

        // A payload-less event of a type that needs one, heartbeats and unknown types are
        // dropped without harm.
        for kind in [EventType::Kill, EventType::LaunchGroup, EventType::Heartbeat] {
            let mut bare = executor::Event::default();
            bare.set_type(kind);
            assert_eq!(translate(bare), None, "{kind:?}");
        }
        assert_eq!(translate(executor::Event { r#type: Some(99), ..Default::default() }), None);

        let mut shutdown = executor::Event::default();
        shutdown.set_type(EventType::Shutdown);
        assert_eq!(translate(shutdown), Some(AgentEvent::Shutdown));
    }
}
