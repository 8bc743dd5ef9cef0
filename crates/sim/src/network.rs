//! The simulated network between the master and its clients (agents and schedulers): how
//! long a message takes, whether a stream breaks, whether a request is lost, and which agents
//! are cut off from the master.
//!
//! Connections are modelled like TCP: a stream delivers in order (a message never overtakes an
//! earlier one on the same stream), and a message the network drops breaks the whole stream,
//! so both ends see it close; a plain request may simply be lost, and its sender never hears
//! back. Separate requests race each other. A partitioned agent loses every request to or
//! from the master, and its stream's messages wait (TCP retransmits) until the partition
//! heals, so that only the heartbeat and ping timeouts of both ends notice it. Executors talk to their agent over loopback,
//! which this module does not model (no delay, no loss). A scheduler's call may arrive twice,
//! as when its HTTP client retries. Streams never duplicate (TCP does not). With
//! `Options::duplicate_updates`, status updates also arrive twice where the real senders
//! produce copies: an agent's STATUS_UPDATE is followed on its ordered channel by a copy (the
//! update manager re-sends the head of a stream until it is acknowledged, at once after a
//! re-registration, so the master may get it again before the acknowledgement); an
//! executor's UPDATE is followed by a copy (its sender retries an UPDATE whose answer it did
//! not get, and the first attempt may have reached the agent). Other agent calls are never
//! duplicated: the agent's link does not retry them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::rng::Rng;

/// The knobs of one run, drawn from its seed.
#[derive(Debug, Clone)]
pub(crate) struct NetConfig {
    pub(crate) min_delay: Duration,
    pub(crate) max_delay: Duration,
    /// Chance that a message on a stream is dropped, which breaks the stream.
    pub(crate) stream_drop: f64,
    /// Chance that a request never arrives.
    pub(crate) request_loss: f64,
    /// Chance that a scheduler's call arrives twice (its client retried a call whose answer
    /// it did not get in time).
    pub(crate) duplicate: f64,
    /// Chance that a status update (an agent's or an executor's) is sent a second time.
    pub(crate) duplicate_update: f64,
}

impl NetConfig {
    pub(crate) fn draw(rng: &mut Rng) -> Self {
        let min_ms = rng.range(0, 5);
        Self {
            min_delay: Duration::from_millis(min_ms),
            max_delay: Duration::from_millis(rng.range(min_ms + 1, 400)),
            stream_drop: rng.unit() * 0.004,
            request_loss: rng.unit() * 0.03,
            duplicate: rng.unit() * 0.05,
            duplicate_update: 0.0,
        }
    }
}

/// Which ordered channel a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Channel {
    /// A stream, by its connection id.
    Stream(u64),
    /// An agent's calls to the master, which its link sends one at a time.
    AgentCalls(usize),
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Network {
    rng: Rng,
    /// The update duplication decisions have a generator of their own, so that turning them on
    /// leaves every other decision of a seed where it was (pinned seeds keep their meaning).
    dup_rng: Rng,
    config: NetConfig,
    /// Agents cut off from the master, until when.
    partitions: BTreeMap<usize, Duration>,
    /// When the last message on each ordered channel arrives.
    last: BTreeMap<Channel, Duration>,
    healed: bool,
}

impl Network {
    pub(crate) fn new(rng: Rng, config: NetConfig) -> Self {
        Self {
            rng,
            dup_rng: Rng::new(0),
            config,
            partitions: BTreeMap::new(),
            last: BTreeMap::new(),
            healed: false,
        }
    }

    /// Lets status updates be duplicated, with a chance drawn from `rng` (see the module
    /// documentation).
    pub(crate) fn duplicate_updates(&mut self, mut rng: Rng) {
        self.config.duplicate_update = rng.unit() * 0.1;
        self.dup_rng = rng;
    }

    pub(crate) fn config(&self) -> &NetConfig {
        &self.config
    }

    /// A fresh one-way delay.
    pub(crate) fn delay(&mut self) -> Duration {
        let low = self.config.min_delay.as_micros() as u64;
        let high = self.config.max_delay.as_micros() as u64;
        Duration::from_micros(self.rng.range(low, high))
    }

    /// When a message sent now on `channel` arrives: after its own delay, and never before the
    /// message sent before it on the same channel.
    pub(crate) fn arrival(&mut self, channel: Channel, now: Duration) -> Duration {
        self.arrival_after(channel, now, now)
    }

    /// Like [`Network::arrival`], for a message that cannot leave before `not_before` (a
    /// stream across a partition: TCP retransmits it once the partition heals).
    pub(crate) fn arrival_after(
        &mut self,
        channel: Channel,
        now: Duration,
        not_before: Duration,
    ) -> Duration {
        let at = now.max(not_before) + self.delay();
        let last = self.last.entry(channel).or_default();
        // Strictly after: two messages of one channel never share an instant, so the queue's
        // order (time, then sequence) keeps them in sending order either way.
        let at = at.max(*last + Duration::from_micros(1));
        *last = at;
        at
    }

    /// Whether a stream message is dropped, which breaks its stream. A partition does not
    /// break streams by itself: their messages wait for it to heal (see
    /// [`Network::partition_end`]), unless an end gives up on the stream first.
    pub(crate) fn stream_breaks(&mut self) -> bool {
        !self.healed && self.rng.chance(self.config.stream_drop)
    }

    /// When the partition that cuts `agent` off ends, if it is cut off now.
    pub(crate) fn partition_end(&self, agent: usize, now: Duration) -> Option<Duration> {
        self.partitions.get(&agent).copied().filter(|until| now < *until)
    }

    /// Whether a request to the master from `agent` (or a scheduler) is lost.
    pub(crate) fn request_lost(&mut self, agent: Option<usize>, now: Duration) -> bool {
        if self.partitioned(agent, now) {
            return true;
        }
        !self.healed && self.rng.chance(self.config.request_loss)
    }

    /// Whether a scheduler's call is sent a second time.
    pub(crate) fn duplicated(&mut self) -> bool {
        !self.healed && self.rng.chance(self.config.duplicate)
    }

    /// Whether a status update is sent a second time.
    pub(crate) fn update_duplicated(&mut self) -> bool {
        !self.healed
            && self.config.duplicate_update > 0.0
            && self.dup_rng.chance(self.config.duplicate_update)
    }

    pub(crate) fn partitioned(&self, agent: Option<usize>, now: Duration) -> bool {
        agent.and_then(|a| self.partitions.get(&a)).is_some_and(|until| now < *until)
    }

    /// Cuts `agent` off from the master until `until`.
    pub(crate) fn partition(&mut self, agent: usize, until: Duration) {
        if !self.healed {
            self.partitions.insert(agent, until);
        }
    }

    /// Ends every partition and every loss for the rest of the run.
    pub(crate) fn heal(&mut self) {
        self.healed = true;
        self.partitions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_delivers_in_order_and_a_partition_loses_everything_until_healed() {
        let mut rng = Rng::new(9);
        let config = NetConfig::draw(&mut rng);
        let mut net = Network::new(rng, config);
        let now = Duration::from_secs(1);
        let mut last = Duration::ZERO;
        for _ in 0..50 {
            let at = net.arrival(Channel::Stream(3), now);
            assert!(at > last);
            last = at;
        }
        net.partition(2, Duration::from_secs(10));
        assert!(net.request_lost(Some(2), now));
        assert_eq!(net.partition_end(2, now), Some(Duration::from_secs(10)));
        assert!(
            net.arrival_after(Channel::Stream(4), now, Duration::from_secs(10))
                > Duration::from_secs(10)
        );
        net.heal();
        assert!(!net.request_lost(Some(2), now));
        assert!(!net.stream_breaks());
    }
}
