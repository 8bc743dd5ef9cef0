//! The coordination service of a run with several masters: a small deterministic model of
//! the ZooKeeper ensemble that `crates/leader` and `crates/master/src/registry/zk.rs` use.
//! It holds sessions that expire on the virtual clock, one ephemeral sequential candidacy
//! node per session (the lowest leads, as `agora_leader::leader_node` chooses), the masters it
//! cannot hear from, and the fencing rule of the registry: a write is accepted only from a
//! master that reaches the service over a session whose candidacy node still exists.
//!
//! It decides nothing on the masters' behalf and holds no registry records itself (the store
//! is `Registry` in `nodes/election.rs`); it only says who leads, whose session is gone, and
//! whether a write gets through. The ensemble itself never fails, answers at once and is never
//! stale for a client that has seen a change (ZooKeeper's ordering per session).

use std::collections::BTreeMap;
use std::time::Duration;

/// Mesos's ZooKeeper session timeout (`agora_leader::DEFAULT_SESSION_TIMEOUT`).
pub(crate) const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// One master's session with the ensemble.
#[derive(Debug, Clone)]
struct Session {
    master: usize,
    /// The sequence of its `json.info_` node.
    node: u64,
    /// Since when the ensemble has not heard from the session's process, if it died (a
    /// crash leaves the session up until it times out).
    orphaned_at: Option<Duration>,
}

/// Why a registry write did not get through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The writer cannot reach the ensemble (a connection loss: the write fails).
    Unreachable,
    /// The writer's session, and with it its candidacy node, is gone: the version check that
    /// starts every registry multi-op fails.
    Fenced,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Coord {
    next_session: u64,
    next_node: u64,
    sessions: BTreeMap<u64, Session>,
    /// Live candidacy nodes: sequence → session.
    nodes: BTreeMap<u64, u64>,
    /// Masters cut off from the ensemble: since when, until when.
    cut: BTreeMap<usize, (Duration, Duration)>,
    /// Leadership changes so far.
    pub(crate) changes: u64,
}

impl Coord {
    /// The session (and the master) whose node is the lowest.
    pub(crate) fn leader(&self) -> Option<(u64, usize)> {
        let (_, &session) = self.nodes.first_key_value()?;
        Some((session, self.sessions[&session].master))
    }

    /// The leading master.
    pub(crate) fn leading_master(&self) -> Option<usize> {
        self.leader().map(|(_, m)| m)
    }

    /// The sequence of the node of `session`, while it lives.
    pub(crate) fn node_of(&self, session: u64) -> Option<u64> {
        self.sessions.get(&session).map(|s| s.node)
    }

    pub(crate) fn alive(&self, session: u64) -> bool {
        self.sessions.contains_key(&session)
    }

    /// A master process opens a session and enters the election; returns the session and
    /// whether the leader changed.
    pub(crate) fn open(&mut self, master: usize) -> (u64, bool) {
        let before = self.leader();
        self.next_session += 1;
        self.next_node += 1;
        let session = self.next_session;
        self.sessions.insert(session, Session { master, node: self.next_node, orphaned_at: None });
        self.nodes.insert(self.next_node, session);
        (session, self.changed(before))
    }

    /// The process of `session` died: the ensemble keeps the session until it times out.
    pub(crate) fn orphan(&mut self, session: u64, now: Duration) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.orphaned_at = Some(now);
        }
    }

    /// Cuts `master` off from the ensemble from `now` until `until`.
    pub(crate) fn cut_off(&mut self, master: usize, now: Duration, until: Duration) {
        // A cut that overlaps one under way extends it: the silence started with the first.
        let (since, until) = match self.cut.get(&master) {
            Some(&(since, end)) if now < end => (since, end.max(until)),
            _ => (now, until),
        };
        self.cut.insert(master, (since, until));
    }

    /// When the cut of `master` ends, if it is cut off now.
    pub(crate) fn cut_until(&self, master: usize, now: Duration) -> Option<Duration> {
        self.cut.get(&master).map(|&(_, until)| until).filter(|until| now < *until)
    }

    /// Every master reaches the ensemble again for the rest of the run.
    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Expires `session` if the ensemble has not heard from it for a whole session timeout
    /// by `now`; returns whether it expired and whether the leader changed.
    pub(crate) fn try_expire(&mut self, session: u64, now: Duration) -> (bool, bool) {
        let Some(s) = self.sessions.get(&session) else { return (false, false) };
        let silent_since = match (s.orphaned_at, self.cut.get(&s.master)) {
            (Some(at), _) => Some(at),
            (None, Some(&(since, until))) if now < until => Some(since),
            _ => None,
        };
        if silent_since.is_none_or(|since| now < since + SESSION_TIMEOUT) {
            return (false, false);
        }
        let before = self.leader();
        let node = s.node;
        self.sessions.remove(&session);
        self.nodes.remove(&node);
        (true, self.changed(before))
    }

    /// Whether a registry write of `master` over `session` gets through at `now`.
    pub(crate) fn admit_write(
        &self,
        master: usize,
        session: u64,
        now: Duration,
    ) -> Result<(), Refusal> {
        if self.cut_until(master, now).is_some() {
            return Err(Refusal::Unreachable);
        }
        if !self.alive(session) {
            return Err(Refusal::Fenced);
        }
        Ok(())
    }

    fn changed(&mut self, before: Option<(u64, usize)>) -> bool {
        let changed = self.leader() != before;
        if changed {
            self.changes += 1;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_node_leads_and_a_silent_session_expires_only_after_the_timeout() {
        let mut coord = Coord::default();
        let (a, changed) = coord.open(0);
        assert!(changed);
        let (b, changed) = coord.open(1);
        assert!(!changed);
        assert_eq!(coord.leading_master(), Some(0));

        let t0 = Duration::from_secs(100);
        coord.cut_off(0, t0, t0 + Duration::from_secs(30));
        assert_eq!(coord.admit_write(0, a, t0), Err(Refusal::Unreachable));
        assert_eq!(coord.try_expire(a, t0 + Duration::from_secs(9)), (false, false));
        assert_eq!(coord.try_expire(a, t0 + SESSION_TIMEOUT), (true, true));
        assert_eq!(coord.leading_master(), Some(1));
        assert_eq!(coord.admit_write(1, b, t0 + SESSION_TIMEOUT), Ok(()));
        // Reconnected, the deposed master's writes fail the fence.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(coord.admit_write(0, a, later), Err(Refusal::Fenced));

        // A crashed leader's session lingers for a timeout, then the next node leads.
        let (c, _) = coord.open(0);
        coord.orphan(b, later);
        assert_eq!(coord.try_expire(b, later + Duration::from_secs(1)), (false, false));
        assert_eq!(coord.try_expire(b, later + SESSION_TIMEOUT), (true, true));
        assert_eq!(coord.leader(), Some((c, 0)));
        assert_eq!(coord.changes, 3);
    }

    #[test]
    fn a_cut_that_heals_in_time_keeps_the_session() {
        let mut coord = Coord::default();
        let (a, _) = coord.open(0);
        let t0 = Duration::from_secs(5);
        coord.cut_off(0, t0, t0 + Duration::from_secs(4));
        assert_eq!(coord.try_expire(a, t0 + SESSION_TIMEOUT), (false, false));
        assert!(coord.alive(a));
    }

    #[test]
    fn an_overlapping_cut_extends_the_silence_it_joins() {
        let mut coord = Coord::default();
        let (a, _) = coord.open(0);
        let t0 = Duration::from_secs(5);
        coord.cut_off(0, t0, t0 + Duration::from_secs(30));
        coord.cut_off(0, t0 + Duration::from_secs(8), t0 + Duration::from_secs(12));
        assert_eq!(
            coord.cut_until(0, t0 + Duration::from_secs(20)),
            Some(t0 + Duration::from_secs(30))
        );
        assert_eq!(coord.try_expire(a, t0 + SESSION_TIMEOUT), (true, true));
    }
}
