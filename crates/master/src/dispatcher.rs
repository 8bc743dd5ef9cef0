//! The one task that owns the master's state machine (DESIGN invariant 2).
//!
//! HTTP handlers send it `Command`s over a channel; it feeds them to the core with the current
//! time, keeps the senders of every open stream, and carries out the outputs: replies to
//! waiting handlers, records to streams, stream closures. Two interval timers become
//! `AllocationTick` and `HeartbeatTick`.

use std::collections::HashMap;
use std::time::Duration;

use agora_core::master::{CallError, ConnId, Input, Master, MasterConfig, Output, ReqId};
use agora_http::{Clock, Dispatch, Streams};
use agora_proto::Format;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

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

pub(crate) fn spawn(config: MasterConfig) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let allocation_interval = config.allocation_interval;
    let heartbeat_interval = config.heartbeat_interval;
    let dispatcher = Dispatcher {
        master: Master::new(config),
        clock: Clock::start(),
        pending: HashMap::new(),
        streams: Streams::default(),
    };
    tokio::spawn(dispatcher.run(rx, allocation_interval, heartbeat_interval));
    Dispatch::new(tx)
}

struct Dispatcher {
    master: Master,
    clock: Clock,
    pending: HashMap<ReqId, oneshot::Sender<Result<(), CallError>>>,
    streams: Streams,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        allocation_interval: Duration,
        heartbeat_interval: Duration,
    ) {
        let mut allocation = tokio::time::interval(allocation_interval);
        allocation.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + heartbeat_interval,
            heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let input = tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Input { input, reply, stream }) => {
                        if let Some(s) = stream {
                            self.streams.insert(s.conn, s.format, s.tx);
                        }
                        if let Some(req) = request_id(&input) {
                            self.pending.insert(req, reply);
                        }
                        input
                    }
                    Some(Command::Closed(input)) => {
                        if let Input::SchedulerClosed { conn } | Input::AgentClosed { conn } = &input {
                            self.streams.remove(*conn);
                        }
                        input
                    }
                    None => return,
                },
                _ = allocation.tick() => Input::AllocationTick,
                _ = heartbeat.tick() => Input::HeartbeatTick,
            };
            let outputs = self.master.handle(input, self.clock.now());
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
                Output::ToScheduler { conn, event } => self.streams.send(conn, &event),
                Output::ToAgent { conn, event } => self.streams.send(conn, &event),
                Output::CloseScheduler { conn } | Output::CloseAgent { conn } => {
                    // Dropping the sender ends the response body once it drained.
                    self.streams.remove(conn);
                }
            }
        }
    }
}

fn request_id(input: &Input) -> Option<ReqId> {
    match input {
        Input::Subscribe { req, .. }
        | Input::SchedulerCall { req, .. }
        | Input::AgentRegister { req, .. }
        | Input::AgentCall { req, .. } => Some(*req),
        _ => None,
    }
}
