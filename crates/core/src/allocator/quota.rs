//! Quota bookkeeping: guarantees and limits of top-level roles, what each has consumed, and
//! the cluster headroom that guarantees hold back (reference §6.3 step 2, §6.5).
//!
//! A role's consumed quota is everything allocated to its subtree (offers included) plus every
//! reservation of its subtree, allocated or not; the role tree keeps those two sums on the
//! top-level node. The *required headroom* is the sum over roles of their unsatisfied
//! guarantees; the *available headroom* is the unreserved scalar capacity nobody holds. Offers
//! of unreserved scalars are shrunk so that they never exceed a role's limit and never eat
//! into the headroom other roles' guarantees need. This module computes those bounds; the
//! allocation cycle applies them. Only scalar resources have quota; names without a limit are
//! unlimited.

use std::collections::BTreeMap;

use crate::resources::Scalar;

use super::index::{FastMap, Quantities};
use super::role_tree::RoleNode;

/// One role's quota (`QuotaConfig`): guarantees and limits by resource name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaConfig {
    /// What the role is promised: held back from others until the role consumes it.
    pub guarantees: BTreeMap<String, Scalar>,
    /// The most the role may consume; absent names are unlimited.
    pub limits: BTreeMap<String, Scalar>,
}

impl QuotaConfig {
    /// True when the quota neither guarantees nor limits anything (the role has no quota).
    pub fn is_empty(&self) -> bool {
        self.guarantees.values().all(|g| !g.is_positive()) && self.limits.is_empty()
    }
}

/// The interned form of one role's quota.
#[derive(Debug, Clone, Default)]
struct Entry {
    guarantees: Vec<(usize, i64)>,
    limits: Vec<(usize, i64)>,
    /// Guarantees minus consumption, floored at zero, as last computed.
    unsatisfied: Quantities,
}

/// Quota and headroom state (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(crate) struct QuotaBook {
    /// By top-level role index.
    entries: FastMap<u32, Entry>,
    /// The configured quotas by role name, as given.
    pub(crate) configs: BTreeMap<String, QuotaConfig>,
    /// Sum of every role's unsatisfied guarantees.
    required: Quantities,
    /// Unreserved scalars of all agents.
    pub(crate) unreserved_total: Quantities,
    /// Unreserved scalars allocated (offered or in use) anywhere.
    pub(crate) unreserved_allocated: Quantities,
}

/// What `node` (a top-level role) has consumed of `name`.
fn consumed(node: &RoleNode, name: usize) -> i64 {
    node.reserved.get(name).saturating_add(node.unreserved_allocated.get(name))
}

impl QuotaBook {
    /// True when no role has quota: the cycle then skips every quota computation.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when some role has a guarantee: only then does stage 1 run.
    pub(crate) fn has_guarantees(&self) -> bool {
        self.entries.values().any(|e| !e.guarantees.is_empty())
    }

    /// Sets (or with an empty config, removes) the quota of the top-level role `top`.
    pub(crate) fn set(
        &mut self,
        top: u32,
        node: &RoleNode,
        guarantees: Vec<(usize, i64)>,
        limits: Vec<(usize, i64)>,
    ) {
        if let Some(old) = self.entries.remove(&top) {
            self.required.sub(&old.unsatisfied.iter().collect::<Vec<_>>());
        }
        if guarantees.is_empty() && limits.is_empty() {
            return;
        }
        self.entries.insert(top, Entry { guarantees, limits, unsatisfied: Quantities::default() });
        self.refresh(top, node);
    }

    /// Recomputes the unsatisfied guarantees of `top` after its consumption changed.
    pub(crate) fn refresh(&mut self, top: u32, node: &RoleNode) {
        let Some(entry) = self.entries.get_mut(&top) else { return };
        let old: Vec<(usize, i64)> = entry.unsatisfied.iter().collect();
        self.required.sub(&old);
        let mut unsatisfied = Quantities::default();
        let parts: Vec<(usize, i64)> = entry
            .guarantees
            .iter()
            .map(|&(name, g)| (name, (g - consumed(node, name)).max(0)))
            .filter(|(_, u)| *u > 0)
            .collect();
        unsatisfied.add(&parts);
        self.required.add(&parts);
        entry.unsatisfied = unsatisfied;
    }

    /// The unsatisfied guarantees of `top`, when it has some.
    pub(crate) fn unsatisfied(&self, top: u32) -> Option<&Quantities> {
        self.entries.get(&top).map(|e| &e.unsatisfied).filter(|u| !u.is_zero())
    }

    /// How much more of `name` the role may consume before its limit (`None`: no limit).
    pub(crate) fn limit_room(&self, top: u32, node: &RoleNode, name: usize) -> Option<i64> {
        let entry = self.entries.get(&top)?;
        let &(_, limit) = entry.limits.iter().find(|(n, _)| *n == name)?;
        Some((limit - consumed(node, name)).max(0))
    }

    /// Unreserved capacity of `name` nobody holds, minus what guarantees still need.
    pub(crate) fn surplus(&self, name: usize) -> i64 {
        let available =
            self.unreserved_total.get(name).saturating_sub(self.unreserved_allocated.get(name));
        (available - self.required.get(name)).max(0)
    }

    /// The bound on an unreserved scalar offered to a role of `top` outside its guarantee
    /// (stage 2, and stage 1 for names the role has no guarantee for): its limit room and the
    /// surplus headroom. `None` means unbounded.
    pub(crate) fn free_bound(&self, top: u32, node: &RoleNode, name: usize) -> Option<i64> {
        let surplus = (self.required.get(name) > 0).then(|| self.surplus(name));
        min_opt(self.limit_room(top, node, name), surplus)
    }

    /// The bound on an unreserved scalar offered to `top` in stage 1 for a name it has an
    /// unsatisfied guarantee for: what is still unsatisfied, within its limit.
    pub(crate) fn guarantee_bound(&self, top: u32, node: &RoleNode, name: usize) -> Option<i64> {
        let unsatisfied = self.entries.get(&top)?.unsatisfied.get(name);
        (unsatisfied > 0).then(|| {
            self.limit_room(top, node, name).map_or(unsatisfied, |room| room.min(unsatisfied))
        })
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
