//! The agent's link to the master over Agora's internal protocol: a REGISTER stream kept alive
//! with reconnection and backoff, and an ordered sender for every other call.
//!
//! Events from the stream go to the dispatcher as `Input::Master`; a broken stream (closed,
//! failed, or silent for five heartbeat intervals) becomes `Input::MasterDisconnected`, and the
//! next REGISTER carries the agent id and the tasks the core holds, so that a restarted master
//! finds them again. Calls that fail to send are dropped here: the core retries status updates
//! on its own clock (and sends every pending one again on registration).
//!
//! `--master` is `host:port` or a `zk://` URL; with the latter the leading master is detected
//! in ZooKeeper (`agora-leader`), and a change of leader breaks the stream, so that the agent
//! re-registers, with its tasks, with the new leader.

use std::time::Duration;

use agora_client::Subscription;
use agora_client::http::{call, client};
use agora_core::agent::Input;
use agora_proto::{Format, internal};
use tokio::sync::{mpsc, oneshot, watch};

use crate::dispatcher::{Command, Handle};

/// The wait between registration attempts: from `min`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}
/// Missed heartbeats after which the master counts as gone, as in Mesos (5 × 15 s).
const MISSED_HEARTBEATS: u32 = 5;

/// Where the master is: `host:port` as given, or whichever master ZooKeeper says leads.
pub(crate) use agora_client::leader::Masters;

/// The agent API's URL on the current master, waiting for one to be known.
async fn agent_api(masters: &mut Masters) -> Option<String> {
    let master = masters.wait_for(Option::is_some).await.ok()?.clone()?;
    Some(format!("http://{master}/api/agora/v1/agent"))
}

/// Resolves when the master address changes (never, for a fixed `--master`).
async fn master_changed(masters: &mut Masters) {
    if masters.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Starts the link; returns the sender for calls to the master.
pub(crate) fn spawn(
    masters: Masters,
    handle: Handle,
    backoff: Backoff,
) -> mpsc::UnboundedSender<internal::AgentCall> {
    let (stream_id_tx, stream_id_rx) = watch::channel(None::<String>);
    let (calls_tx, calls_rx) = mpsc::unbounded_channel();
    tokio::spawn(keep_registered(masters.clone(), handle, stream_id_tx, backoff));
    tokio::spawn(send_calls(masters, calls_rx, stream_id_rx));
    calls_tx
}

async fn keep_registered(
    mut masters: Masters,
    handle: Handle,
    stream_id: watch::Sender<Option<String>>,
    limits: Backoff,
) {
    let client = client();
    let mut backoff = limits.min;
    loop {
        let Some(url) = agent_api(&mut masters).await else { return };
        masters.mark_unchanged();
        let (reply, register) = oneshot::channel();
        if handle.tx.send(Command::RegisterCall(reply)).is_err() {
            return;
        }
        let Ok(register) = register.await else { return };
        match Subscription::<internal::AgentEvent>::open(&client, &url, Format::Protobuf, &register)
            .await
        {
            Ok(mut events) => {
                stream_id.send_replace(events.stream_id.clone());
                let mut silence = Duration::from_secs(15) * MISSED_HEARTBEATS;
                loop {
                    let next = tokio::select! {
                        next = tokio::time::timeout(silence, events.next()) => next,
                        () = master_changed(&mut masters) => {
                            tracing::info!("a new master leads; registering with it");
                            // Right away: the new leader waits for its agents.
                            backoff = Duration::ZERO;
                            break;
                        }
                    };
                    match next {
                        Ok(Ok(Some(event))) => {
                            if let Some(registered) = &event.registered {
                                backoff = limits.min;
                                if let Some(seconds) = registered.heartbeat_interval_seconds
                                    && seconds.is_finite()
                                    && seconds > 0.0
                                {
                                    silence = Duration::from_secs_f64(seconds) * MISSED_HEARTBEATS;
                                }
                                tracing::info!(agent_id = %registered.agent_id.value, "registered with the master");
                            }
                            if let Some(error) = &event.error {
                                tracing::error!(message = %error.message, "the master refused this agent");
                            }
                            if handle.tx.send(Command::Event(Input::Master(event))).is_err() {
                                return;
                            }
                        }
                        Ok(Ok(None)) => {
                            tracing::warn!("the master closed the agent stream");
                            break;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "the agent stream failed");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!("no heartbeat from the master; reconnecting");
                            break;
                        }
                    }
                }
                stream_id.send_replace(None);
                if handle.tx.send(Command::Event(Input::MasterDisconnected)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot register with the master yet"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = master_changed(&mut masters) => {}
        }
        backoff = (backoff * 2).clamp(limits.min, limits.max);
    }
}

/// Sends calls one at a time, so a task's updates reach the master in the order they were made.
async fn send_calls(
    masters: Masters,
    mut calls: mpsc::UnboundedReceiver<internal::AgentCall>,
    stream_id: watch::Receiver<Option<String>>,
) {
    let client = client();
    while let Some(message) = calls.recv().await {
        let master = masters.borrow().clone();
        let Some(master) = master else {
            tracing::warn!("no leading master known; dropping a call (the core retries updates)");
            continue;
        };
        let url = format!("http://{master}/api/agora/v1/agent");
        let id = stream_id.borrow().clone();
        if let Err(e) = call(&client, &url, Format::Protobuf, id.as_deref(), &message).await {
            tracing::warn!(error = %e, "call to the master failed");
        }
    }
}
