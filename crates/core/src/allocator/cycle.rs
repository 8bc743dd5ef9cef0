//! One allocation cycle (reference §6.3): which framework gets what on which agent.
//!
//! Agents are visited in shuffled order (from the configured seed). When some role has an
//! unsatisfied quota guarantee, stage 1 offers those roles what helps their guarantee
//! (reservations and non-scalars come along; unreserved scalars are bounded by what is still
//! unsatisfied and by the role's limit). Stage 2, after a reshuffle, visits every agent and
//! every role with eligible frameworks in DRF order and offers the role everything on the agent
//! that it may use, unreserved scalars shrunk to its quota limit and to the headroom the
//! guarantees need; the first eligible framework takes it. Decisions about the same
//! (framework, role, agent) in one cycle merge into one offer.
//!
//! Finding that framework is the hot path. Frameworks whose refuse filters cover the candidate
//! are known per (agent, role) as a cached bit set (`filters.rs`), so a framework is skipped
//! with one bit test; when many blocked frameworks lead the order, the few unblocked eligible
//! ones are found by set difference instead of walking past the blocked ones. This module owns
//! no state of its own between cycles.

use std::time::Duration;

use crate::resources::{Resource, Resources, Scalar, Value};

use super::index::{BitSet, FastMap};
use super::role_tree::RoleNode;
use super::{Allocation, Allocator, nanos, reservation_role};

/// How many leading frameworks of a role are tried one by one before looking at the set of
/// unblocked ones directly.
const SCAN: usize = 16;

/// The decisions of one cycle.
#[derive(Debug, Default)]
struct Cycle {
    /// (framework, role, agent, resources) in decision order.
    made: Vec<(u32, u32, u32, Resources)>,
    /// Position in `made` of each (framework, role, agent); kept only once stage 1 decided
    /// something, because only then can stage 2 add to an existing decision.
    index: FastMap<(u32, u32, u32), usize>,
    merging: bool,
}

impl Cycle {
    fn push(&mut self, f: u32, r: u32, a: u32, resources: Resources) {
        if self.merging {
            if let Some(&i) = self.index.get(&(f, r, a)) {
                self.made[i].3 += resources;
                return;
            }
            self.index.insert((f, r, a), self.made.len());
        }
        self.made.push((f, r, a, resources));
    }
}

/// True when `offer` holds at least one of the quantity sets (none: any offer).
fn meets(minimums: &[Resources], offer: &Resources) -> bool {
    minimums.is_empty() || minimums.iter().any(|min| offer.contains_quantities(min))
}

/// [`meets`] for quantity sets prepared once (the global minimum, checked for every agent).
fn meets_prepared(minimums: &[Vec<(String, Scalar)>], offer: &Resources) -> bool {
    minimums.is_empty()
        || minimums.iter().any(|min| min.iter().all(|(name, q)| offer.quantity(name) >= *q))
}

/// True when a role at `path` may use every entry of `available` (nothing in it is reserved
/// for another role), so that the offer is all of it.
fn usable_whole(available: &Resources, path: &str) -> bool {
    available.iter().all(|entry| {
        reservation_role(entry).is_none_or(|role| {
            role == path || path.strip_prefix(role).is_some_and(|rest| rest.starts_with('/'))
        })
    })
}

/// Adds a copy of `entry` with a new scalar amount; entries of one collection never conflict,
/// and one that did would only make the offer smaller.
fn push_scaled(out: &mut Resources, entry: &Resource, milli: i64) {
    if milli > 0 {
        let mut entry = entry.clone();
        entry.value = Value::Scalar(Scalar::from_milli(milli));
        let _ = out.push(entry);
    }
}

impl Allocator {
    /// Runs stage 1 (if any guarantee is configured) and stage 2 over `agents`.
    pub(super) fn run_cycle(&mut self, mut agents: Vec<u32>, now: Duration) -> Vec<Allocation> {
        let now = nanos(now);
        if self.totals_dirty {
            self.roles.resort(&self.totals);
            self.totals_dirty = false;
        }
        let mut cycle = Cycle { made: Vec::with_capacity(agents.len()), ..Cycle::default() };
        let mut order = Vec::new();
        if self.quota.has_guarantees() {
            self.order_agents(&mut agents);
            self.stage_one(&agents, now, &mut order, &mut cycle);
        }
        self.order_agents(&mut agents);
        self.stage_two(&agents, now, &mut order, &mut cycle);
        cycle
            .made
            .into_iter()
            .map(|(f, r, a, resources)| Allocation {
                // `String::from` copies; `to_string` would go through the formatter.
                framework_id: String::from(&**self.framework_ids.name(f)),
                role: String::from(&*self.roles.node(r).path),
                agent_id: String::from(&**self.agent_ids.name(a)),
                resources,
            })
            .collect()
    }

    /// Shuffles the agents, or sorts them by id when no seed is configured.
    fn order_agents(&mut self, agents: &mut [u32]) {
        match &mut self.rng {
            Some(rng) => rng.shuffle(agents),
            None => agents.sort_by(|x, y| self.agent_ids.name(*x).cmp(self.agent_ids.name(*y))),
        }
    }

    /// Stage 1: roles with unsatisfied guarantees, on every agent.
    fn stage_one(&mut self, agents: &[u32], now: u64, order: &mut Vec<u32>, cycle: &mut Cycle) {
        for &a in agents {
            if self.agent(a).available.is_empty() {
                continue;
            }
            self.roles.order(order);
            for &r in order.iter() {
                let top = self.roles.node(r).top;
                let mut served = Vec::new();
                while self.quota.unsatisfied(top).is_some() {
                    let Some(offer) = self.guarantee_offer(a, r) else { break };
                    let Some(f) = self.pick(a, r, &offer, now, &served) else { break };
                    served.push(f);
                    cycle.merging = true;
                    let offer = self.visible_to(f, offer);
                    self.hold(f, r, a, &offer, true);
                    cycle.push(f, r, a, offer);
                }
            }
        }
    }

    /// Stage 2: everyone, on every agent, within limits and surplus headroom.
    fn stage_two(&mut self, agents: &[u32], now: u64, order: &mut Vec<u32>, cycle: &mut Cycle) {
        let bounded = !self.quota.is_empty();
        for &a in agents {
            if self.agent(a).available.is_empty() {
                continue;
            }
            self.roles.order(order);
            for &r in order.iter() {
                let path = &self.roles.node(r).path;
                let agent = self.agents[a as usize].as_mut().expect("candidates are live agents");
                if agent.available.is_empty() {
                    break;
                }
                // Usually the role may use everything that is free here: then the free
                // resources move into the offer instead of being copied and subtracted, which
                // is most of the cost of a decision on a large cluster.
                let whole = !bounded && usable_whole(&agent.available, path);
                let offer = if whole {
                    std::mem::take(&mut agent.available)
                } else {
                    let offer = agent.available.allocatable_to(path);
                    if bounded { self.bound_free(r, offer) } else { offer }
                };
                if offer.is_empty() {
                    continue;
                }
                // The first eligible framework takes everything the role may use here, so the
                // role is done with this agent either way.
                match self.pick(a, r, &offer, now, &[]) {
                    Some(f) => {
                        let seen = self.visible_to(f, offer.clone());
                        if whole {
                            // What the framework cannot see stays free on the agent.
                            let rest = offer - &seen;
                            self.agent_mut(a).available = rest;
                            self.record(f, r, a, &seen, true);
                        } else {
                            self.hold(f, r, a, &seen, true);
                        }
                        cycle.push(f, r, a, seen);
                    }
                    // Putting back what was taken changes nothing: no new stamp.
                    None if whole => {
                        self.agents[a as usize]
                            .as_mut()
                            .expect("candidates are live agents")
                            .available = offer;
                    }
                    None => {}
                }
            }
        }
    }

    /// What stage 1 offers role `r` on agent `a`: its reservations and the unreserved
    /// non-scalars, plus unreserved scalars up to the unsatisfied guarantee (or, for names
    /// without a guarantee, within surplus headroom), all within the role's limit. `None` when
    /// that would not help the guarantee.
    fn guarantee_offer(&self, a: u32, r: u32) -> Option<Resources> {
        let node = self.roles.node(r);
        let top = self.roles.node(node.top);
        let allowed = self.agent(a).available.allocatable_to(&node.path);
        let mut offer = Resources::new();
        let mut helps = false;
        for entry in &allowed {
            let (Value::Scalar(amount), None) = (&entry.value, reservation_role(entry)) else {
                let _ = offer.push(entry.clone());
                continue;
            };
            let Some(&idx) = self.names.ids.get(&entry.name) else { continue };
            let milli = match self.quota.guarantee_bound(node.top, top, idx) {
                Some(bound) => {
                    let milli = bound.min(amount.milli());
                    helps |= milli > 0;
                    milli
                }
                None => self
                    .quota
                    .free_bound(node.top, top, idx)
                    .map_or(amount.milli(), |b| b.min(amount.milli())),
            };
            push_scaled(&mut offer, entry, milli);
        }
        helps.then_some(offer)
    }

    /// Shrinks the unreserved scalars of a stage 2 offer to the role's limit and to the
    /// surplus headroom.
    fn bound_free(&self, r: u32, offer: Resources) -> Resources {
        let top_idx = self.roles.node(r).top;
        let top = self.roles.node(top_idx);
        let mut out = Resources::new();
        let mut changed = false;
        for entry in &offer {
            if let (Value::Scalar(amount), None) = (&entry.value, reservation_role(entry))
                && let Some(&idx) = self.names.ids.get(&entry.name)
                && let Some(bound) = self.quota.free_bound(top_idx, top, idx)
                && bound < amount.milli()
            {
                changed = true;
                push_scaled(&mut out, entry, bound);
                continue;
            }
            let _ = out.push(entry.clone());
        }
        if changed { out } else { offer }
    }

    /// What of `offer` framework `f` may be offered: all of it, or without refined
    /// reservations for a framework that cannot read them.
    fn visible_to(&self, f: u32, offer: Resources) -> Resources {
        let refinement = self.frameworks[f as usize]
            .as_ref()
            .is_none_or(|fw| fw.capabilities.reservation_refinement);
        if refinement || !offer.iter().any(Resource::is_refined) {
            offer
        } else {
            offer.without_refinements()
        }
    }

    /// The first framework of role `r`, in DRF order, that may take `offer` on agent `a`: not
    /// blocked by a filter, meeting its minimum allocatable quantities, able to handle what
    /// the offer holds (GPUs; refined reservations are stripped for it), accepting the agent under its offer
    /// constraints, and not in `exclude`.
    fn pick(
        &mut self,
        a: u32,
        r: u32,
        offer: &Resources,
        now: u64,
        exclude: &[u32],
    ) -> Option<u32> {
        let node = self.roles.node(r);
        let global_ok = meets_prepared(&self.min_quantities, offer);
        if !global_ok && node.overrides == 0 {
            return None;
        }
        let frameworks = &self.frameworks;
        // Only cloned (and only looked at) while some framework has offer constraints: this
        // runs for every agent and role of every cycle.
        let description = if self.constrained > 0 {
            Some(self.agents[a as usize].as_ref()?.description.clone())
        } else {
            None
        };
        let has_gpus = !offer.quantity("gpus").is_zero();
        let stripped = offer.iter().any(Resource::is_refined).then(|| offer.without_refinements());
        let min_quantities = &self.min_quantities;
        let fits = |f: u32| {
            if exclude.contains(&f) {
                return false;
            }
            if let Some(fw) = frameworks[f as usize].as_ref()
                && has_gpus
                && !fw.capabilities.gpu_resources
            {
                return false;
            }
            // A framework that cannot read refined reservations is offered the rest, if the
            // rest is worth offering (reference §6.3: such resources are stripped for it).
            if let (Some(fw), Some(stripped)) = (frameworks[f as usize].as_ref(), &stripped)
                && !fw.capabilities.reservation_refinement
                && (stripped.is_empty() || !meets_prepared(min_quantities, stripped))
            {
                return false;
            }
            if let (Some(fw), Some(description)) = (frameworks[f as usize].as_ref(), &description)
                && !fw.offer_constraints.is_empty()
                && !fw.offer_constraints.allows(&node.path, description)
            {
                return false;
            }
            let own = frameworks[f as usize].as_ref().and_then(|fw| {
                if fw.min_allocatable.is_empty() {
                    None
                } else {
                    fw.min_allocatable.get(&*node.path)
                }
            });
            own.map_or(global_ok, |min| meets(min, offer))
        };
        let agent = self.agents[a as usize].as_mut()?;
        let blocked = agent
            .filters
            .iter_mut()
            .find(|(role, _)| *role == r)
            .map(|(_, filters)| filters.blocked(offer, now))
            .filter(|(_, count)| *count > 0);
        match blocked {
            None => node.frameworks.iter().find(|&f| fits(f)),
            Some((blocked, _)) => first_unblocked(node, blocked, fits),
        }
    }
}

/// The first framework of `node` in DRF order that is not `blocked` and `fits`.
///
/// The leading frameworks are tried one by one. When they are all blocked and only few
/// eligible frameworks are unblocked, those few are compared directly, which costs a pass over
/// the eligible bit set instead of a walk past every blocked framework (in a cluster where
/// frameworks decline everything, most of them end up blocked on most agents).
fn first_unblocked(node: &RoleNode, blocked: &BitSet, fits: impl Fn(u32) -> bool) -> Option<u32> {
    let mut order = node.frameworks.iter();
    for f in order.by_ref().take(SCAN) {
        if !blocked.contains(f) && fits(f) {
            return Some(f);
        }
    }
    let unblocked = node.eligible.count_minus(blocked);
    if unblocked == 0 {
        return None;
    }
    if unblocked <= 4 * SCAN {
        return node
            .eligible
            .iter_minus(blocked)
            .filter(|&f| fits(f))
            .filter_map(|f| node.frameworks.key(f))
            .min()
            .map(|key| key.id);
    }
    order.find(|&f| !blocked.contains(f) && fits(f))
}
