//! Dominant Resource Fairness ordering of one set of allocation clients: the frameworks of a
//! role, or the children of a role-tree node.
//!
//! A [`Sorter`] remembers, per client, the scalar quantities allocated to it (offers included)
//! and how many allocations it received, and keeps its *active* clients in a B-tree ordered by
//! (weighted dominant share, allocation count, name). The order is maintained incrementally: an
//! allocation moves one client, which costs a logarithmic re-insertion instead of the full
//! re-sort Mesos's sorter paid for every allocation decision. Inactive clients (suppressed or
//! disconnected frameworks, roles without eligible frameworks) keep their allocations but are
//! not in the order, which is the "deactivated" state of Mesos's sorter.
//!
//! It keeps only scalar quantities because shares are defined on scalars. It does not know
//! agents, filters, quota or the role tree: callers decide who is active and what was
//! allocated, and read the order.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::index::{FastMap, Quantities};

/// Cluster totals and the names excluded from fairness: everything a share needs besides the
/// client's own allocation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    /// Scalar totals of all agents, the share denominators.
    pub(crate) amounts: Quantities,
    /// Name indices that do not count (`--fair_sharing_excluded_resource_names`).
    pub(crate) excluded: Vec<bool>,
}

impl Totals {
    /// The dominant share of `allocated`: the largest `allocated / total` over the names that
    /// count; names with a zero total are skipped because nothing of them can be shared.
    pub(crate) fn dominant_share(&self, allocated: &Quantities) -> f64 {
        allocated
            .iter()
            .filter(|(idx, _)| !self.excluded.get(*idx).copied().unwrap_or(false))
            .filter_map(|(idx, amount)| {
                let total = self.amounts.get(idx);
                (total > 0).then(|| amount as f64 / total as f64)
            })
            .fold(0.0_f64, f64::max)
    }
}

/// The position of a client in the order: ascending share, then fewer allocations, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OrderKey {
    /// The weighted share's bits; shares are finite and non-negative, and for such floats the
    /// bit patterns order like the numbers.
    share: u64,
    count: u64,
    name: Arc<str>,
    /// The client, for the reader of the order; unique, so it never decides a comparison that
    /// the name has not decided already.
    pub(crate) id: u32,
}

/// One client's bookkeeping.
#[derive(Debug, Clone)]
struct Client {
    allocated: Quantities,
    weight: f64,
    active: bool,
    key: OrderKey,
}

impl Client {
    /// Recomputes the key from the allocation and the totals.
    fn rekey(&mut self, totals: &Totals) {
        let share = (totals.dominant_share(&self.allocated) / self.weight).max(0.0);
        self.key.share = share.to_bits();
    }
}

/// The DRF state of one set of clients (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(crate) struct Sorter {
    clients: FastMap<u32, Client>,
    order: BTreeSet<OrderKey>,
}

impl Sorter {
    /// Adds an inactive client with nothing allocated, unless it is known.
    pub(crate) fn ensure(&mut self, id: u32, name: &Arc<str>, weight: f64) {
        self.clients.entry(id).or_insert_with(|| Client {
            allocated: Quantities::default(),
            weight,
            active: false,
            key: OrderKey { share: 0.0_f64.to_bits(), count: 0, name: name.clone(), id },
        });
    }

    /// True when the client is known.
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.clients.contains_key(&id)
    }

    /// Puts the client into the order or takes it out; its allocation is kept either way.
    pub(crate) fn set_active(&mut self, id: u32, active: bool) {
        let Some(client) = self.clients.get_mut(&id) else { return };
        if client.active == active {
            return;
        }
        client.active = active;
        if active {
            self.order.insert(client.key.clone());
        } else {
            self.order.remove(&client.key);
        }
    }

    /// Changes a client's weight.
    pub(crate) fn set_weight(&mut self, id: u32, weight: f64, totals: &Totals) {
        self.update(id, totals, |client| client.weight = weight);
    }

    /// Records an allocation to `id`; `count` says whether it is a new allocation decision
    /// (the first tie-breaker) or resources already in use (an agent re-registering).
    pub(crate) fn add(&mut self, id: u32, parts: &[(usize, i64)], count: bool, totals: &Totals) {
        self.update(id, totals, |client| {
            client.allocated.add(parts);
            if count {
                client.key.count += 1;
            }
        });
    }

    /// Records resources given back by `id`.
    pub(crate) fn sub(&mut self, id: u32, parts: &[(usize, i64)], totals: &Totals) {
        self.update(id, totals, |client| client.allocated.sub(parts));
    }

    /// Applies `change` to a client and moves it to its new place in the order.
    fn update(&mut self, id: u32, totals: &Totals, change: impl FnOnce(&mut Client)) {
        let Some(client) = self.clients.get_mut(&id) else { return };
        if client.active {
            self.order.remove(&client.key);
        }
        change(client);
        client.rekey(totals);
        if client.active {
            self.order.insert(client.key.clone());
        }
    }

    /// Forgets a client (a framework leaving the role, a removed role).
    pub(crate) fn remove(&mut self, id: u32) {
        if let Some(client) = self.clients.remove(&id)
            && client.active
        {
            self.order.remove(&client.key);
        }
    }

    /// Recomputes every share after the totals changed.
    pub(crate) fn resort(&mut self, totals: &Totals) {
        self.order.clear();
        for client in self.clients.values_mut() {
            client.rekey(totals);
            if client.active {
                self.order.insert(client.key.clone());
            }
        }
    }

    /// The active clients in DRF order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.order.iter().map(|key| key.id)
    }

    /// The current order key of a client.
    pub(crate) fn key(&self, id: u32) -> Option<&OrderKey> {
        self.clients.get(&id).map(|c| &c.key)
    }

    /// What is allocated to a client.
    pub(crate) fn allocated(&self, id: u32) -> Option<&Quantities> {
        self.clients.get(&id).map(|c| &c.allocated)
    }

    /// The weighted dominant share of a client (zero for an unknown one).
    pub(crate) fn share(&self, id: u32, totals: &Totals) -> f64 {
        self.clients.get(&id).map_or(0.0, |c| totals.dominant_share(&c.allocated) / c.weight)
    }

    /// How many allocations a client has received.
    #[cfg(test)]
    fn count(&self, id: u32) -> u64 {
        self.clients.get(&id).map_or(0, |c| c.key.count)
    }

    /// True when no client is known.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(amounts: &[(usize, i64)], excluded: &[usize]) -> Totals {
        let mut t = Totals::default();
        t.amounts.add(amounts);
        t.excluded = vec![false; 4];
        for &e in excluded {
            t.excluded[e] = true;
        }
        t
    }

    fn sorter(clients: &[(u32, &str)]) -> Sorter {
        let mut s = Sorter::default();
        for &(id, name) in clients {
            s.ensure(id, &Arc::from(name), 1.0);
            s.set_active(id, true);
        }
        s
    }

    // Names: 0 = cpus, 1 = mem, 2 = gpus.
    #[test]
    fn share_is_the_dominant_fraction_over_weight() {
        let t = totals(&[(0, 10_000), (1, 1_000_000), (2, 2_000)], &[]);
        let mut s = sorter(&[(1, "a"), (2, "b"), (3, "c")]);
        s.add(1, &[(0, 1_000), (1, 500_000)], true, &t);
        s.add(2, &[(0, 4_000), (1, 100_000), (2, 2_000)], true, &t);
        assert_eq!(s.share(1, &t), 0.5);
        assert_eq!(s.share(2, &t), 1.0);
        assert_eq!(s.share(9, &t), 0.0);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 1, 2]);
        s.set_weight(1, 2.0, &t);
        assert_eq!(s.share(1, &t), 0.25);
        let t = totals(&[(0, 10_000), (1, 1_000_000), (2, 2_000)], &[2]);
        s.resort(&t);
        assert_eq!(s.share(2, &t), 0.4);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 1, 2]);
    }

    #[test]
    fn ties_break_on_count_then_name_and_inactive_clients_leave_the_order() {
        let t = totals(&[(0, 10_000)], &[]);
        let mut s = sorter(&[(2, "b"), (1, "a")]);
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 2]);
        s.add(1, &[(0, 1_000)], true, &t);
        s.sub(1, &[(0, 1_000)], &t);
        assert_eq!((s.share(1, &t), s.count(1)), (0.0, 1));
        assert_eq!(s.iter().collect::<Vec<_>>(), [2, 1]);
        // Used resources count for the share but not as an allocation decision.
        s.ensure(3, &Arc::from("c"), 1.0);
        s.add(3, &[(0, 1)], false, &t);
        assert_eq!(s.count(3), 0);
        assert_eq!(s.iter().collect::<Vec<_>>(), [2, 1], "c is not active yet");
        s.set_active(3, true);
        assert_eq!(s.iter().collect::<Vec<_>>(), [2, 1, 3]);
        s.set_active(2, false);
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(s.allocated(3).map(|q| q.get(0)), Some(1));
        s.remove(3);
        s.remove(1);
        s.remove(2);
        assert!(s.is_empty() && s.iter().next().is_none());
    }
}
