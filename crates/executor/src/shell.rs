//! The IO both executors share: reading the environment the agent set (reference §3.4), the
//! subscription to the agent's executor API with its event stream turned into the cores'
//! [`AgentEvent`]s, the SIGTERM that the agent uses to end an executor, and the ordered,
//! retried sending of status updates.
//!
//! For a checkpointing framework the agent may be killed and restarted under the executor; the
//! [`Link`] then subscribes again (reference §3.4, "Disconnection rules"), carrying the tasks and
//! updates the agent has not acknowledged, and the cores only see a second SUBSCRIBED. The
//! update sender holds back meanwhile, and afterwards skips what that SUBSCRIBE carried (see
//! [`send_updates`] for why the agent then sees every task's updates in order).
//!
//! It decides nothing and knows no task: the two executors' loops in `lib.rs` own their
//! processes and feed their cores.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_client::executor::{ExecutorEnv, ExecutorSession};
use agora_client::{ClientError, Subscription};
use agora_proto::executor::event::Type as EventType;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::{Format, executor, v1};
use bytes::Bytes;
use tokio::signal::unix::{Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::check::{CheckSpec, CheckStatus};
use crate::common::{AgentEvent, TaskSpec, Update, UuidSource};
use crate::health::HealthSpec;
use crate::recovery::{Backoff, DEFAULT_BACKOFF_MAX, DEFAULT_RECOVERY_TIMEOUT, Recovery, Unacked};

/// The agent's default `--executor_shutdown_grace_period`, used when the environment lacks one.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long an exiting executor lets updates still queued reach the agent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The first pause before a failed UPDATE call is tried again, and the longest one.
const UPDATE_RETRY: Duration = Duration::from_millis(200);
const UPDATE_RETRY_MAX: Duration = Duration::from_secs(2);

/// How many times in a row an agent that keeps our subscription open may refuse one update
/// (4xx) before the sender drops it: sending it again cannot help then, and holding it back
/// would hold back every later update too.
const UPDATE_REFUSALS: u32 = 6;

/// How long one SUBSCRIBE attempt may take before the next is tried: a restarted agent that
/// accepted the connection but does not answer must not use up its own re-registration window.
const SUBSCRIBE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent told the executor through its environment.
pub(crate) struct Setup {
    pub(crate) env: ExecutorEnv,
    pub(crate) shutdown_grace: Duration,
    /// The executor's sandbox: `MESOS_SANDBOX`, else the working directory.
    pub(crate) sandbox: PathBuf,
    /// How to subscribe again after losing the agent; `None` when the framework does not
    /// checkpoint, and the executor exits instead.
    pub(crate) recovery: Option<Recovery>,
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
        let shutdown_grace = duration_or(
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD",
            env.shutdown_grace_period.as_deref(),
            DEFAULT_SHUTDOWN_GRACE,
        );
        let recovery = env.checkpoint.then(|| Recovery {
            timeout: duration_or(
                "MESOS_RECOVERY_TIMEOUT",
                env.recovery_timeout.as_deref(),
                DEFAULT_RECOVERY_TIMEOUT,
            ),
            backoff_max: duration_or(
                "MESOS_SUBSCRIPTION_BACKOFF_MAX",
                env.subscription_backoff_max.as_deref(),
                DEFAULT_BACKOFF_MAX,
            ),
        });
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
        Some(Self { env, shutdown_grace, sandbox, recovery })
    }
}

/// The duration in the environment variable `name`, or `default` when it is missing or (after
/// saying so) unreadable: a bad setting must not keep the executor from running its task.
fn duration_or(name: &str, text: Option<&str>, default: Duration) -> Duration {
    match text {
        None => default,
        Some(text) => agora_core::duration::parse(text).unwrap_or_else(|_| {
            log(&format!("cannot parse {name} '{text}'; using {default:?}"));
            default
        }),
    }
}

/// Random update uuids, as the agent expects them (16 bytes).
pub(crate) fn random_uuids() -> UuidSource {
    Box::new(|| *uuid::Uuid::new_v4().as_bytes())
}

/// What came from the agent's side.
pub(crate) enum Incoming {
    Event(AgentEvent),
    /// The event stream ended or broke (and, when checkpointing, the agent did not come back
    /// within the recovery timeout), or the executor was told to terminate.
    Disconnected(String),
}

/// Where the subscription stands, as the update sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Subscribed for the `epoch`th time (0 is the first subscription). Every update numbered
    /// up to `covered` has reached the agent through a SUBSCRIBE, or was acknowledged.
    Subscribed { epoch: u64, covered: u64 },
    /// The agent was lost and the link is subscribing again.
    Resubscribing,
}

/// A re-subscription under way. It lives in the [`Link`], not in a future, because `next` is
/// one branch of the loops' `select!` and is dropped whenever another branch wins.
struct Resubscribing {
    /// When the recovery timeout runs out.
    deadline: Instant,
    backoff: Backoff,
    /// When the next attempt may start.
    next_try: Instant,
    /// The SUBSCRIBE under way (its own task, so that losing a `select!` does not abort it),
    /// with the last update its snapshot covers.
    attempt: Option<JoinHandle<Result<Subscription<executor::Event>, String>>>,
    covered: u64,
    failures: u32,
}

/// The executor's subscription: the event stream in, status updates out.
pub(crate) struct Link {
    executor_id: String,
    session: Arc<ExecutorSession>,
    recovery: Option<Recovery>,
    /// The event stream; `None` while re-subscribing and after losing the agent for good.
    events: Option<Subscription<executor::Event>>,
    resubscribing: Option<Resubscribing>,
    /// Why the agent is lost for good, once it is.
    gone: Option<String>,
    /// Shared with the sender, which drops the updates the agent refused for good.
    unacked: Arc<Mutex<Unacked>>,
    state: watch::Sender<LinkState>,
    /// The number of successful subscriptions after the first.
    epoch: u64,
    updates: mpsc::UnboundedSender<(u64, v1::TaskStatus)>,
    sender: JoinHandle<()>,
    terminate: Option<Signal>,
}

impl Link {
    /// Subscribes to the agent; the error says why not.
    pub(crate) async fn open(
        env: &ExecutorEnv,
        recovery: Option<Recovery>,
    ) -> Result<Self, ClientError> {
        log(&format!(
            "executor {} of framework {} subscribing to {}{}",
            env.executor_id,
            env.framework_id,
            env.agent_endpoint,
            if recovery.is_some() {
                " (checkpointing: will re-subscribe if the agent restarts)"
            } else {
                ""
            }
        ));
        let session = Arc::new(ExecutorSession::new(env, Format::Protobuf));
        // The first subscription has nothing unacknowledged to carry.
        let events = session.subscribe(vec![], vec![]).await?;
        let unacked = Arc::new(Mutex::new(Unacked::default()));
        let (state, watched) = watch::channel(LinkState::Subscribed { epoch: 0, covered: 0 });
        // Updates go out one by one from their own task, so they reach the agent in the order
        // the core decided them while the loop keeps reading events.
        let (updates, queue) = mpsc::unbounded_channel();
        let sender = tokio::spawn(send_updates(session.clone(), queue, watched, unacked.clone()));
        let terminate = match tokio::signal::unix::signal(SignalKind::terminate()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                log(&format!("cannot watch SIGTERM: {e}"));
                None
            }
        };
        Ok(Self {
            executor_id: env.executor_id.clone(),
            session,
            recovery,
            events: Some(events),
            resubscribing: None,
            gone: None,
            unacked,
            state,
            epoch: 0,
            updates,
            sender,
            terminate,
        })
    }

    /// The next event a core acts on, or the end of the link. Events the cores have no use
    /// for are skipped here. With checkpointing, a lost agent is subscribed to again without
    /// the cores noticing (but for a second SUBSCRIBED); only when the recovery timeout runs
    /// out does this return `Disconnected`. Cancel-safe: every step's state lives in `self`.
    pub(crate) async fn next(&mut self) -> Incoming {
        loop {
            if let Some(reason) = &self.gone {
                return Incoming::Disconnected(reason.clone());
            }
            let lost = tokio::select! {
                event = next_event(&mut self.events) => match event {
                    Ok(Some(event)) => {
                        self.observe(&event);
                        if let Some(event) = translate(event) {
                            return Incoming::Event(event);
                        }
                        continue;
                    }
                    Ok(None) => "the agent closed the event stream".to_string(),
                    Err(e) => e.to_string(),
                },
                outcome = resubscribe(&mut self.resubscribing, &self.session, &self.unacked) => {
                    match outcome {
                        Ok((events, covered)) => self.resubscribed(events, covered),
                        Err(reason) => {
                            self.resubscribing = None;
                            self.gone = Some(reason.clone());
                            return Incoming::Disconnected(reason);
                        }
                    }
                    continue;
                }
                // The agent ends an executor it gives up on by signalling it; the tasks must
                // not outlive it unreported.
                () = received(&mut self.terminate) => {
                    return Incoming::Disconnected("received SIGTERM".into());
                }
            };
            self.events = None;
            let Some(recovery) = self.recovery else {
                self.gone = Some(lost.clone());
                return Incoming::Disconnected(lost);
            };
            log(&format!(
                "lost the agent ({lost}); subscribing again for up to {:?}",
                recovery.timeout
            ));
            // The sender holds back until the new subscription: an UPDATE now would fail, or
            // reach a restarted agent before the SUBSCRIBE that re-sends the older updates.
            self.state.send_replace(LinkState::Resubscribing);
            let now = Instant::now();
            let mut backoff = Backoff::new(recovery.backoff_max);
            self.resubscribing = Some(Resubscribing {
                deadline: now + recovery.timeout,
                next_try: now + backoff.next_delay(),
                backoff,
                attempt: None,
                covered: 0,
                failures: 0,
            });
        }
    }

    /// Keeps the books of what the agent has not acknowledged from its raw events, which
    /// carry the full TaskInfos and the acknowledged task ids that the cores never see.
    fn observe(&self, event: &executor::Event) {
        let mut unacked = lock(&self.unacked);
        match event.r#type() {
            EventType::Launch => {
                if let Some(launch) = &event.launch {
                    unacked.launched(&launch.task);
                }
            }
            EventType::LaunchGroup => {
                for task in event.launch_group.iter().flat_map(|g| &g.task_group.tasks) {
                    unacked.launched(task);
                }
            }
            EventType::Acknowledged => {
                if let Some(ack) = &event.acknowledged {
                    unacked.acknowledged(&ack.task_id, &ack.uuid);
                }
            }
            _ => {}
        }
    }

    fn resubscribed(&mut self, events: Subscription<executor::Event>, covered: u64) {
        let failures = self.resubscribing.take().map_or(0, |r| r.failures);
        log(&format!("re-subscribed to the agent (after {} failed attempts)", failures));
        self.events = Some(events);
        self.epoch += 1;
        self.state.send_replace(LinkState::Subscribed { epoch: self.epoch, covered });
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
        status.check_status = update.check_status.map(CheckStatus::to_proto);
        if let Some(reason) = update.reason {
            status.set_reason(reason);
        }
        // Booked and queued under one lock, so that a snapshot's `covered` never names an
        // update the sender has not been given yet.
        let mut unacked = lock(&self.unacked);
        let seq = unacked.queued(status.clone());
        // The sender only stops once `updates` is dropped, in `close`.
        let _ = self.updates.send((seq, status));
    }

    /// Lets the updates still queued reach the agent, for a little while.
    pub(crate) async fn close(self) {
        let Self { updates, mut sender, resubscribing, state, .. } = self;
        if let Some(attempt) = resubscribing.and_then(|r| r.attempt) {
            attempt.abort();
        }
        drop(updates);
        if tokio::time::timeout(FLUSH_TIMEOUT, &mut sender).await.is_err() {
            log("gave up sending the remaining status updates");
            sender.abort();
        }
        // The sender watched the link's state until here.
        drop(state);
    }
}

/// The bookkeeping, even if a holder panicked: it is only ever changed by whole operations.
fn lock(unacked: &Mutex<Unacked>) -> MutexGuard<'_, Unacked> {
    unacked.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The next event of the stream; never resolves without one.
async fn next_event(
    events: &mut Option<Subscription<executor::Event>>,
) -> Result<Option<executor::Event>, ClientError> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

/// Drives a re-subscription until it succeeds (the new stream and the last update its
/// SUBSCRIBE carried) or the recovery timeout runs out (why the agent is lost); never resolves
/// when none is under way. Every failure (connection refused while the agent is down, 503
/// while it recovers, 400 or 403 while it does not know the executor yet) is tried again: only
/// the timeout ends the executor.
async fn resubscribe(
    resubscribing: &mut Option<Resubscribing>,
    session: &Arc<ExecutorSession>,
    unacked: &Mutex<Unacked>,
) -> Result<(Subscription<executor::Event>, u64), String> {
    let Some(r) = resubscribing else {
        return std::future::pending().await;
    };
    loop {
        if r.attempt.is_none() {
            sleep_until(Some(r.next_try.min(r.deadline))).await;
            if Instant::now() >= r.deadline {
                return Err(format!("the agent did not come back after {} attempts", r.failures));
            }
            // Each attempt carries what is unacknowledged when it starts; an update queued
            // later has a greater number than `covered` and is left to the sender.
            let snapshot = lock(unacked).snapshot();
            r.covered = snapshot.covered;
            let session = session.clone();
            r.attempt = Some(tokio::spawn(async move {
                let subscribing = session.subscribe(snapshot.tasks, snapshot.updates);
                match tokio::time::timeout(SUBSCRIBE_ATTEMPT_TIMEOUT, subscribing).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {SUBSCRIBE_ATTEMPT_TIMEOUT:?}")),
                }
            }));
        }
        let Some(attempt) = &mut r.attempt else {
            continue;
        };
        let result = tokio::select! {
            result = attempt => result.unwrap_or_else(|e| Err(format!("the attempt failed: {e}"))),
            () = sleep_until(Some(r.deadline)) => {
                if let Some(attempt) = r.attempt.take() {
                    attempt.abort();
                }
                return Err(format!("the agent did not come back after {} attempts", r.failures));
            }
        };
        r.attempt = None;
        match result {
            Ok(events) => return Ok((events, r.covered)),
            Err(e) => {
                r.failures += 1;
                // Refused connections are expected while the agent restarts; say so now and
                // then, not on every try.
                if r.failures == 1 || r.failures.is_multiple_of(10) {
                    log(&format!("cannot subscribe again yet (attempt {}): {e}", r.failures));
                }
                r.next_try = Instant::now() + r.backoff.next_delay();
            }
        }
    }
}

/// Sends queued updates until the queue closes, one at a time and in the order they were
/// queued, so that the agent sees every task's updates in order.
///
/// Why that order holds across re-subscriptions: an update is booked in [`Unacked`] and
/// numbered when it is queued; a SUBSCRIBE carries every booked update not yet acknowledged,
/// oldest first, and the link then publishes the last number it covered. The sender only calls
/// UPDATE while the link is subscribed, and skips an update that a SUBSCRIBE covered. So the
/// agent gets a prefix of the queue (through the SUBSCRIBE, or earlier UPDATEs it accepted) and
/// then the rest in order. What it may see twice (an update it received but had not acknowledged
/// when a SUBSCRIBE re-sent it, a call that raced the SUBSCRIBE) is a copy of one it already
/// has, never an older update after a newer one, and it drops copies by uuid. An update is never given up on
/// while the executor lives, with one exception: an agent that keeps our stream open and keeps
/// refusing it (4xx) [`UPDATE_REFUSALS`] times. Such an update is also struck from the books, so
/// that no later SUBSCRIBE sends it after its successors.
async fn send_updates(
    session: Arc<ExecutorSession>,
    mut queue: mpsc::UnboundedReceiver<(u64, v1::TaskStatus)>,
    mut state: watch::Receiver<LinkState>,
    unacked: Arc<Mutex<Unacked>>,
) {
    while let Some((seq, status)) = queue.recv().await {
        let task_id = status.task_id.value.clone();
        let state_name = status.state().as_str_name();
        let mut pause = UPDATE_RETRY;
        let mut failures = 0_u32;
        // Refusals in a row within one subscription.
        let mut refusals = (0_u64, 0_u32);
        loop {
            let Some((epoch, covered)) = subscribed(&mut state).await else {
                return;
            };
            if seq <= covered {
                break;
            }
            match session.update(status.clone()).await {
                Ok(()) => break,
                Err(e @ ClientError::Status { status: 400..=499, .. }) => {
                    // A restarted agent refuses an executor that has not subscribed again yet;
                    // the link notices the broken stream and re-subscribes. Only refusals
                    // within one subscription count towards giving up.
                    refusals =
                        if refusals.0 == epoch { (epoch, refusals.1 + 1) } else { (epoch, 1) };
                    if refusals.1 >= UPDATE_REFUSALS {
                        // Checked and struck under the books' lock: a re-subscription takes
                        // its snapshot under that lock after leaving the subscribed state, so
                        // either this sees the link lost and keeps the update, or no SUBSCRIBE
                        // will carry it.
                        let mut books = lock(&unacked);
                        if *state.borrow() == (LinkState::Subscribed { epoch, covered }) {
                            if let Some(uuid) = &status.uuid {
                                books.refused(uuid);
                            }
                            drop(books);
                            log(&format!("the agent refused {state_name} of task {task_id}: {e}"));
                            break;
                        }
                    }
                    log(&format!(
                        "the agent refused {state_name} of task {task_id} (will retry): {e}"
                    ));
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(10) {
                        log(&format!(
                            "cannot send {state_name} of task {task_id} (will retry): {e}"
                        ));
                    }
                }
            }
            // A change of the link (lost, subscribed again) ends the pause early: the update
            // may be covered now.
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = changed(&mut state) => {}
            }
            pause = (pause * 2).min(UPDATE_RETRY_MAX);
        }
    }
}

/// Waits until the link is subscribed, and says in which epoch and how far its SUBSCRIBE
/// covered; `None` once the link is gone while not subscribed.
async fn subscribed(state: &mut watch::Receiver<LinkState>) -> Option<(u64, u64)> {
    let waited = match state.wait_for(|s| matches!(s, LinkState::Subscribed { .. })).await {
        Ok(current) => Some(*current),
        Err(_) => None,
    };
    match waited.unwrap_or_else(|| *state.borrow()) {
        LinkState::Subscribed { epoch, covered } => Some((epoch, covered)),
        LinkState::Resubscribing => None,
    }
}

/// Resolves when the link's state changes; never once the link is gone.
async fn changed(state: &mut watch::Receiver<LinkState>) {
    if state.changed().await.is_err() {
        std::future::pending().await
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
        check: task.check.as_ref().map(|check| CheckSpec::from_proto(check).map(Box::new)),
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
mod resubscribe_tests;

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

    #[test]
    fn a_task_check_is_parsed_or_refused_with_the_reason() {
        let mut checked = task("t", None);
        checked.check = Some(v1::CheckInfo {
            r#type: Some(v1::check_info::Type::Tcp as i32),
            tcp: Some(v1::check_info::Tcp { port: 8080 }),
            ..Default::default()
        });
        let spec = task_spec(checked.clone());
        let probe = spec.check.and_then(Result::ok).map(|c| c.probe.clone());
        assert_eq!(probe, Some(crate::health::Probe::Tcp { port: 8080 }));
        checked.check = Some(v1::CheckInfo {
            r#type: Some(v1::check_info::Type::Http as i32),
            ..Default::default()
        });
        assert!(matches!(task_spec(checked).check, Some(Err(_))));
        assert_eq!(task_spec(task("u", None)).check, None);
    }
}
