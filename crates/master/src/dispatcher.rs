//! The one task that owns the master's state machine (DESIGN invariant 2), and where the
//! registry's group commit happens.
//!
//! HTTP handlers send it `Command`s over a channel; it feeds them to the core with the current
//! time, keeps the senders of every open stream, and carries out the outputs: replies to
//! waiting handlers, records to streams, stream closures. Three interval timers become
//! `AllocationTick`, `HeartbeatTick` and `PingTick`.
//!
//! Inputs are handled in batches: everything already queued when the dispatcher wakes up goes
//! through the core together, the batch's `Persist` operations are committed to the registry in
//! one durable write, and only then are the batch's replies and events delivered. So nothing is
//! promised before it is durable, and one fsync covers as many changes as arrived meanwhile. A
//! failed commit is fatal: the master stops without delivering anything of that batch.

use std::collections::HashMap;
use std::time::Duration;

use agora_core::master::{
    CallError, ConnId, Input, Master, MasterConfig, Output, RegistryOp, ReqId,
};
use agora_http::{Clock, Dispatch, Streams};
use agora_proto::{Format, internal};
use bytes::Bytes;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::registry::Backend;

/// The most inputs one batch takes, so that a flood of requests cannot hold back the replies
/// of the first ones for long.
const MAX_BATCH: usize = 1024;

/// A message to the dispatcher.
pub(crate) enum Command {
    /// An input, with the handler's reply channel and, for streaming calls, the stream to
    /// register under the input's connection id before the core sees the input.
    Input {
        input: Input,
        reply: oneshot::Sender<Result<(), CallError>>,
        stream: Option<StreamSender>,
    },
    /// A streaming response body went away.
    Closed(Input),
    /// A read-only query of the core (the operator API's GET_* calls, the state endpoints).
    /// It runs after its batch is durable, so that it reveals nothing not yet promised; it
    /// should copy what it needs and leave the encoding to the handler.
    Read(Read),
}

/// A query run against the core with the current time; it sends its own answer.
pub(crate) type Read = Box<dyn FnOnce(&Master, Duration) + Send>;

/// Runs `query` on the core and waits for its answer; `None` when the master is shutting down.
pub(crate) async fn read<R: Send + 'static>(
    handle: &Handle,
    query: impl FnOnce(&Master, Duration) -> R + Send + 'static,
) -> Option<R> {
    handle
        .request(|reply| {
            Command::Read(Box::new(move |master: &Master, now: Duration| {
                let _ = reply.send(query(master, now));
            }))
        })
        .await
}

pub(crate) struct StreamSender {
    pub(crate) conn: ConnId,
    pub(crate) format: Format,
    pub(crate) tx: mpsc::UnboundedSender<Bytes>,
}

/// What handlers hold to reach the dispatcher.
pub(crate) type Handle = Dispatch<Command>;

/// Sends an input and waits for the core's answer to it.
pub(crate) async fn submit(
    handle: &Handle,
    input: Input,
    stream: Option<StreamSender>,
) -> Result<(), CallError> {
    handle
        .request(|reply| Command::Input { input, reply, stream })
        .await
        .unwrap_or_else(|| Err(CallError::Forbidden("The master is shutting down".into())))
}

/// Starts the dispatcher on a master recovered from `snapshot`. `store` is `None` for
/// `--registry=in_memory`. The receiver gets the reason if the dispatcher has to stop.
#[cfg(test)]
pub(crate) fn spawn(
    config: MasterConfig,
    snapshot: internal::Registry,
    store: Option<Backend>,
) -> (Handle, oneshot::Receiver<String>) {
    let (handle, rx) = channel();
    (handle, start(rx, config, snapshot, store))
}

/// The dispatcher's channel, made before the dispatcher exists: a master in high
/// availability mode serves HTTP (as a standby) long before it is elected and recovered.
pub(crate) fn channel() -> (Handle, mpsc::UnboundedReceiver<Command>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Dispatch::new(tx), rx)
}

/// Starts the dispatcher on the receiving end of `channel`; the returned receiver gets the
/// reason if the dispatcher has to stop.
pub(crate) fn start(
    rx: mpsc::UnboundedReceiver<Command>,
    config: MasterConfig,
    snapshot: internal::Registry,
    store: Option<Backend>,
) -> oneshot::Receiver<String> {
    let (fatal_tx, fatal_rx) = oneshot::channel();
    let allocation_interval = config.allocation_interval;
    let heartbeat_interval = config.heartbeat_interval;
    let ping_interval = config.agent_ping_timeout;
    let clock = Clock::start();
    let dispatcher = Dispatcher {
        master: Master::recover(config, snapshot, clock.now()),
        clock,
        store,
        pending: HashMap::new(),
        streams: Streams::default(),
    };
    tokio::spawn(async move {
        if let Err(reason) =
            dispatcher.run(rx, allocation_interval, heartbeat_interval, ping_interval).await
        {
            tracing::error!(%reason, "the master stops");
            let _ = fatal_tx.send(reason);
        }
    });
    fatal_rx
}

struct Dispatcher {
    master: Master,
    clock: Clock,
    store: Option<Backend>,
    pending: HashMap<ReqId, oneshot::Sender<Result<(), CallError>>>,
    streams: Streams,
}

impl Dispatcher {
    /// Runs until every handle is gone (`Ok`) or the registry fails (`Err`).
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        allocation_interval: Duration,
        heartbeat_interval: Duration,
        ping_interval: Duration,
    ) -> Result<(), String> {
        let mut allocation = tokio::time::interval(allocation_interval);
        allocation.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + heartbeat_interval,
            heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut open = true;
        while open {
            let mut reads = Vec::new();
            let first = tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.accept(command, &mut reads),
                    None => return Ok(()),
                },
                _ = allocation.tick() => Some(Input::AllocationTick),
                _ = heartbeat.tick() => Some(Input::HeartbeatTick),
                _ = ping.tick() => Some(Input::PingTick),
            };
            let mut batch: Vec<Input> = first.into_iter().collect();
            while batch.len() + reads.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(command) => batch.extend(self.accept(command, &mut reads)),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let mut ops = Vec::new();
            let mut outputs = Vec::new();
            for input in batch {
                for output in self.master.handle(input, self.clock.now()) {
                    match output {
                        Output::Persist(op) => ops.push(op),
                        other => outputs.push(other),
                    }
                }
            }
            self.persist(ops).await?;
            self.apply(outputs);
            let now = self.clock.now();
            for read in reads {
                read(&self.master, now);
            }
        }
        Ok(())
    }

    /// Registers what a command brings along (a stream, a reply channel) and returns its input;
    /// a read is set aside for the end of the batch.
    fn accept(&mut self, command: Command, reads: &mut Vec<Read>) -> Option<Input> {
        Some(match command {
            Command::Read(read) => {
                reads.push(read);
                return None;
            }
            Command::Input { input, reply, stream } => {
                if let Some(s) = stream {
                    self.streams.insert(s.conn, s.format, s.tx);
                }
                if let Some(req) = input.req() {
                    self.pending.insert(req, reply);
                }
                input
            }
            Command::Closed(input) => {
                if let Input::SchedulerClosed { conn }
                | Input::AgentClosed { conn }
                | Input::OperatorClosed { conn } = &input
                {
                    self.streams.remove(*conn);
                }
                input
            }
        })
    }

    /// Makes a batch's registry operations durable in one write.
    async fn persist(&self, ops: Vec<RegistryOp>) -> Result<(), String> {
        let Some(store) = self.store.clone().filter(|_| !ops.is_empty()) else {
            return Ok(());
        };
        let count = ops.len();
        // The dispatcher has to wait: nothing of this batch may be delivered before the write
        // is durable. Meanwhile the HTTP handlers' requests queue up for the next batch; that
        // is what makes the group commit pay.
        store.commit(ops).await.map_err(|e| format!("cannot write the registry: {e}"))?;
        tracing::debug!(ops = count, "registry commit");
        Ok(())
    }

    fn apply(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Reply { req, result } => {
                    if let Some(reply) = self.pending.remove(&req) {
                        let _ = reply.send(result);
                    }
                }
                Output::ToScheduler { conn, event } => self.streams.send(conn, &event),
                Output::ToAgent { conn, event } => self.streams.send(conn, &event),
                Output::ToOperator { conn, event } => self.streams.send(conn, &*event),
                Output::CloseScheduler { conn }
                | Output::CloseAgent { conn }
                | Output::CloseOperator { conn } => {
                    // Dropping the sender ends the response body once it drained.
                    self.streams.remove(conn);
                }
                // Split off by `run` before anything is applied.
                Output::Persist(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Store;
    use agora_core::allocator::AllocatorConfig;
    use agora_proto::{scheduler, v1};
    use std::sync::Arc;

    fn config() -> MasterConfig {
        MasterConfig {
            master_info: v1::MasterInfo { id: "m1".into(), ..Default::default() },
            allocation_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(15),
            offer_timeout: None,
            allocator: AllocatorConfig::default(),
            max_completed_tasks_per_framework: 10,
            max_completed_frameworks: 10,
            agent_reregister_timeout: Duration::from_secs(600),
            agent_ping_timeout: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            max_operator_event_stream_subscribers: 1000,
        }
    }

    fn subscribe(name: &str) -> scheduler::Call {
        let mut call = scheduler::Call {
            subscribe: Some(scheduler::call::Subscribe {
                framework_info: v1::FrameworkInfo {
                    user: "alice".into(),
                    name: name.into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        call.set_type(scheduler::call::Type::Subscribe);
        call
    }

    #[tokio::test]
    async fn queued_inputs_share_one_durable_commit_that_precedes_their_replies()
    -> Result<(), crate::registry::RegistryError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::registry::FILE_NAME);
        let (store, snapshot) = Store::open(&path, &config().master_info)?;
        let store = Arc::new(store);
        let (handle, _fatal) =
            spawn(config(), snapshot, Some(crate::registry::Backend::Embedded(store.clone())));
        let before = store.commits();

        // Three subscriptions are queued before the dispatcher gets to run (this runtime has one
        // thread): they go through the core as one batch.
        let mut streams = Vec::new();
        let requests = (0..3).map(|i| {
            let (tx, rx) = mpsc::unbounded_channel();
            streams.push(rx);
            let conn = handle.next_id();
            let input = Input::Subscribe {
                req: handle.next_id(),
                conn,
                stream_id: format!("s{i}"),
                call: subscribe(&format!("f{i}")),
            };
            submit(&handle, input, Some(StreamSender { conn, format: Format::Json, tx }))
        });
        let replies = futures::future::join_all(requests).await;
        assert!(replies.iter().all(Result::is_ok), "{replies:?}");
        // By the time anyone heard back, all three frameworks were on disk, in one commit.
        assert_eq!(store.read()?.frameworks.len(), 3);
        assert_eq!(store.commits() - before, 1);
        for stream in &mut streams {
            assert!(stream.try_recv().is_ok(), "SUBSCRIBED was delivered");
        }
        Ok(())
    }
}
