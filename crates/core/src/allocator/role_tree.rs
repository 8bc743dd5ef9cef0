//! The hierarchical role tree: which roles exist, how their allocations add up, and in which
//! order roles and their frameworks are visited.
//!
//! Roles are paths (`eng/web/frontend`); every path prefix is a node. Each node has a
//! [`Sorter`] over its children, in which the node's own frameworks appear as a virtual leaf
//! ([`SELF`]) beside its child roles, as in Mesos's hierarchical sorter; so `eng`'s own
//! frameworks compete with `eng/web` inside `eng`, and `eng` as a whole competes with its
//! siblings. An allocation to a role counts toward that role and all its ancestors. The visit
//! order is the pre-order flattening of the tree with children sorted within their parent,
//! restricted to subtrees that hold a framework eligible for offers. Each node also has the
//! framework sorter of the role and the bit set of its eligible frameworks.
//!
//! Top-level nodes carry the bookkeeping that quota needs (reservations and unreserved
//! allocations of their subtree); `quota.rs` interprets it. Nodes are never removed: a role
//! name costs a few hundred bytes, and keeping them keeps indices stable for filters and quota.
//! This module does not know agents, filters or resources beyond scalar quantities.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::index::{BitSet, Interner, Quantities};
use super::sorter::{Sorter, Totals};

/// The id of a node's own frameworks in the node's children sorter.
pub(crate) const SELF: u32 = u32::MAX;

/// One role.
#[derive(Debug, Clone)]
pub(crate) struct RoleNode {
    /// The full role path.
    pub(crate) path: Arc<str>,
    /// The parent node; `None` for top-level roles.
    pub(crate) parent: Option<u32>,
    /// The top-level ancestor (itself for a top-level role), the holder of quota.
    pub(crate) top: u32,
    /// The weight configured for this path.
    pub(crate) weight: f64,
    /// The node's own frameworks ([`SELF`]) and its child roles.
    pub(crate) children: Sorter,
    /// The frameworks allocated to or subscribed to this role.
    pub(crate) frameworks: Sorter,
    /// Frameworks subscribed, active and not suppressed in this role.
    pub(crate) eligible: BitSet,
    /// How many bits `eligible` has.
    pub(crate) eligible_count: u32,
    /// How many eligible frameworks have their own `min_allocatable_resources` for this role.
    pub(crate) overrides: u32,
    /// Roles in this subtree (itself included) with at least one eligible framework.
    active_roles: u32,
    /// For a top-level role: scalar reservations for any role of the subtree, allocated or not.
    pub(crate) reserved: Quantities,
    /// For a top-level role: unreserved scalars allocated to any role of the subtree.
    pub(crate) unreserved_allocated: Quantities,
}

/// All roles (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(crate) struct RoleTree {
    ids: Interner,
    nodes: Vec<Option<RoleNode>>,
    /// The top-level roles.
    root: Sorter,
}

/// The weight to use for a configured value: invalid weights fall back to 1.0 rather than
/// making shares infinite or negative.
pub(crate) fn sane_weight(weight: Option<f64>) -> f64 {
    match weight {
        Some(w) if w.is_finite() && w > 0.0 => w,
        _ => 1.0,
    }
}

impl RoleTree {
    /// The node index of `path`, if the role is known.
    pub(crate) fn get(&self, path: &str) -> Option<u32> {
        self.ids.get(path)
    }

    /// The node index of `path`, creating it and its ancestors with weights from `weights`.
    pub(crate) fn intern(&mut self, path: &str, weights: &BTreeMap<String, f64>) -> u32 {
        if let Some(idx) = self.ids.get(path) {
            return idx;
        }
        let parent = path.rfind('/').map(|cut| self.intern(&path[..cut], weights));
        let (idx, _) = self.ids.intern(path);
        let name = self.ids.name(idx).clone();
        let weight = sane_weight(weights.get(path).copied());
        let top = parent.map_or(idx, |p| self.node(p).top);
        let mut children = Sorter::default();
        children.ensure(SELF, &name, weight);
        let node = RoleNode {
            path: name.clone(),
            parent,
            top,
            weight,
            children,
            frameworks: Sorter::default(),
            eligible: BitSet::default(),
            eligible_count: 0,
            overrides: 0,
            active_roles: 0,
            reserved: Quantities::default(),
            unreserved_allocated: Quantities::default(),
        };
        if self.nodes.len() <= idx as usize {
            self.nodes.resize(idx as usize + 1, None);
        }
        self.nodes[idx as usize] = Some(node);
        self.parent_sorter(parent).ensure(idx, &name, weight);
        idx
    }

    /// A live node.
    pub(crate) fn node(&self, idx: u32) -> &RoleNode {
        self.nodes[idx as usize].as_ref().expect("role indices are never released")
    }

    /// A live node, mutably.
    pub(crate) fn node_mut(&mut self, idx: u32) -> &mut RoleNode {
        self.nodes[idx as usize].as_mut().expect("role indices are never released")
    }

    /// Every node index.
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes.iter().enumerate().filter(|(_, n)| n.is_some()).map(|(i, _)| i as u32)
    }

    /// The sorter in which `parent`'s children are ordered (the root's for top-level roles).
    fn parent_sorter(&mut self, parent: Option<u32>) -> &mut Sorter {
        match parent {
            Some(p) => &mut self.node_mut(p).children,
            None => &mut self.root,
        }
    }

    /// Records an allocation of `parts` to `framework` in `role`, counting it toward every
    /// ancestor; `count` as in [`Sorter::add`].
    pub(crate) fn add(
        &mut self,
        role: u32,
        framework: u32,
        parts: &[(usize, i64)],
        count: bool,
        totals: &Totals,
    ) {
        let node = self.node_mut(role);
        node.frameworks.add(framework, parts, count, totals);
        node.children.add(SELF, parts, count, totals);
        let mut child = role;
        loop {
            let parent = self.node(child).parent;
            self.parent_sorter(parent).add(child, parts, count, totals);
            match parent {
                Some(p) => child = p,
                None => break,
            }
        }
    }

    /// Records resources given back by `framework` in `role`.
    pub(crate) fn sub(
        &mut self,
        role: u32,
        framework: u32,
        parts: &[(usize, i64)],
        totals: &Totals,
    ) {
        let node = self.node_mut(role);
        node.frameworks.sub(framework, parts, totals);
        node.children.sub(SELF, parts, totals);
        let mut child = role;
        loop {
            let parent = self.node(child).parent;
            self.parent_sorter(parent).sub(child, parts, totals);
            match parent {
                Some(p) => child = p,
                None => break,
            }
        }
    }

    /// Makes `framework` eligible for offers in `role` or not; a no-op when unchanged.
    pub(crate) fn set_eligible(&mut self, role: u32, framework: u32, eligible: bool) {
        let node = self.node_mut(role);
        let changed = if eligible {
            node.eligible.insert(framework)
        } else {
            node.eligible.remove(framework)
        };
        if !changed {
            return;
        }
        node.frameworks.set_active(framework, eligible);
        let before = node.eligible_count;
        node.eligible_count = if eligible { before + 1 } else { before - 1 };
        if (before == 0) != (node.eligible_count == 0) {
            let now_active = node.eligible_count > 0;
            node.children.set_active(SELF, now_active);
            self.propagate_activity(role, now_active);
        }
    }

    /// Adjusts `active_roles` up the tree after `role` gained or lost its last eligible
    /// framework, activating or deactivating subtrees in their parents' sorters.
    fn propagate_activity(&mut self, role: u32, gained: bool) {
        let mut current = Some(role);
        while let Some(idx) = current {
            let node = self.node_mut(idx);
            let before = node.active_roles;
            node.active_roles = if gained { before + 1 } else { before - 1 };
            let flipped = (before == 0) != (node.active_roles == 0);
            let parent = node.parent;
            if flipped {
                self.parent_sorter(parent).set_active(idx, gained);
            }
            current = parent;
        }
    }

    /// Changes the weight of `path` (creating the role if needed).
    pub(crate) fn set_weight(&mut self, path: &str, weight: f64, totals: &Totals) {
        let idx = self.intern(path, &BTreeMap::new());
        let node = self.node_mut(idx);
        node.weight = weight;
        node.children.set_weight(SELF, weight, totals);
        let parent = node.parent;
        self.parent_sorter(parent).set_weight(idx, weight, totals);
    }

    /// Recomputes every share after the cluster totals changed.
    pub(crate) fn resort(&mut self, totals: &Totals) {
        self.root.resort(totals);
        for node in self.nodes.iter_mut().flatten() {
            node.children.resort(totals);
            node.frameworks.resort(totals);
        }
    }

    /// Writes the roles with eligible frameworks into `out`, in allocation order.
    pub(crate) fn order(&self, out: &mut Vec<u32>) {
        out.clear();
        for top in self.root.iter() {
            self.flatten(top, out);
        }
    }

    fn flatten(&self, idx: u32, out: &mut Vec<u32>) {
        for child in self.node(idx).children.iter() {
            if child == SELF {
                out.push(idx);
            } else {
                self.flatten(child, out);
            }
        }
    }

    /// The weighted share of a role's subtree among its siblings.
    pub(crate) fn share(&self, idx: u32, totals: &Totals) -> f64 {
        match self.node(idx).parent {
            Some(p) => self.node(p).children.share(idx, totals),
            None => self.root.share(idx, totals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals() -> Totals {
        let mut t = Totals::default();
        t.amounts.add(&[(0, 100_000)]);
        t
    }

    fn names(tree: &RoleTree) -> Vec<String> {
        let mut order = Vec::new();
        tree.order(&mut order);
        order.iter().map(|&i| tree.node(i).path.to_string()).collect()
    }

    #[test]
    fn children_sort_within_their_parent_and_allocations_count_for_ancestors() {
        let t = totals();
        let mut tree = RoleTree::default();
        let weights = BTreeMap::new();
        let roles: Vec<u32> =
            ["a/x", "a/y", "b", "a"].iter().map(|p| tree.intern(p, &weights)).collect();
        for (fw, &role) in roles.iter().enumerate() {
            let fw = fw as u32;
            tree.node_mut(role).frameworks.ensure(fw, &Arc::from("fw"), 1.0);
            tree.set_eligible(role, fw, true);
        }
        // Nothing allocated: names decide, and `a`'s own frameworks come before its children.
        assert_eq!(names(&tree), ["a", "a/x", "a/y", "b"]);
        // a/x takes 30%: `a` as a whole (30%) now sorts after `b` (0%), and inside `a` the
        // virtual leaf and a/y (0%) come before a/x.
        tree.add(roles[0], 0, &[(0, 30_000)], true, &t);
        assert_eq!(names(&tree), ["b", "a", "a/y", "a/x"]);
        assert_eq!(tree.share(tree.get("a").expect("known"), &t), 0.3);
        tree.add(roles[2], 2, &[(0, 40_000)], true, &t);
        assert_eq!(names(&tree), ["a", "a/y", "a/x", "b"]);
        // Without eligible frameworks a subtree disappears from the order.
        tree.set_eligible(roles[1], 1, false);
        tree.set_eligible(roles[0], 0, false);
        tree.set_eligible(roles[3], 3, false);
        assert_eq!(names(&tree), ["b"]);
        tree.sub(roles[0], 0, &[(0, 30_000)], &t);
        assert_eq!(tree.share(roles[3], &t), 0.0);
        tree.set_eligible(roles[1], 1, true);
        assert_eq!(names(&tree), ["a/y", "b"]);
    }

    #[test]
    fn weights_scale_shares_between_siblings() {
        let t = totals();
        let mut tree = RoleTree::default();
        let weights = BTreeMap::from([("heavy".to_string(), 3.0)]);
        let heavy = tree.intern("heavy", &weights);
        let light = tree.intern("light", &weights);
        for (fw, role) in [(0, heavy), (1, light)] {
            tree.node_mut(role).frameworks.ensure(fw, &Arc::from("fw"), 1.0);
            tree.set_eligible(role, fw, true);
        }
        tree.add(heavy, 0, &[(0, 30_000)], true, &t);
        tree.add(light, 1, &[(0, 20_000)], true, &t);
        assert_eq!(names(&tree), ["heavy", "light"]);
        tree.set_weight("heavy", 1.0, &t);
        assert_eq!(names(&tree), ["light", "heavy"]);
        assert_eq!(sane_weight(Some(-1.0)), 1.0);
        assert_eq!(sane_weight(Some(f64::NAN)), 1.0);
    }
}
