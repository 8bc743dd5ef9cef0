//! The resource allocator: decides which framework is offered which agent's free resources.
//!
//! It is the hierarchical Dominant Resource Fairness allocator of reference §6: roles form a
//! tree (`eng/web`), siblings are ordered by weighted dominant share with ties broken by fewer
//! allocations and then name, frameworks within a role likewise, and the first eligible
//! framework takes everything on an agent its role may use (coarse-grained whole-agent offers).
//! Top-level roles may have quota guarantees and limits; a cycle first serves unsatisfied
//! guarantees (stage 1), then everyone within limits and the headroom guarantees hold back
//! (stage 2). Reserved resources go only to their role and its descendants. Refuse filters,
//! suppression, deactivation and the minimum allocatable quantities (global and per framework
//! and role) decide who is eligible.
//!
//! The public API speaks in id strings, as the master does; framework membership is handled in
//! `allocator/frameworks.rs`, the cycle in `allocator/cycle.rs`; inside, ids are dense indices
//! (`allocator/index.rs`), orders are maintained incrementally (`allocator/sorter.rs`,
//! `allocator/role_tree.rs`) and filters answer per agent with a cached bit set
//! (`allocator/filters.rs`), so that a cycle costs about one offer decision per agent and
//! role rather than one per agent and framework. It is sans-IO: time arrives as the `now`
//! argument (time since an arbitrary epoch), the agent shuffle comes from a seed in the
//! configuration, and nothing runs on a timer; the master decides when to call
//! [`Allocator::allocate`] (every allocation interval) or [`Allocator::allocate_agents`]
//! (an agent added or changed).
//!
//! Deliberately absent: revocable and shared resources, offer constraints, agent capabilities
//! (MULTI_ROLE, HIERARCHICAL_ROLE, GPU), maintenance and inverse offers, the random sorter,
//! the quota pause after a master failover, and quota on nested roles.

mod cycle;
mod filters;
mod frameworks;
mod index;
mod quota;
mod role_tree;
mod sorter;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::offer_constraints::{AgentDescription, OfferConstraints};
use crate::resources::{Resource, Resources, Scalar, UNRESERVED, Value};
use filters::RoleFilters;
use index::{FastMap, Interner, ScalarParts, SplitMix64};
use quota::QuotaBook;
pub use quota::QuotaConfig;
use role_tree::{RoleTree, sane_weight};
use sorter::Totals;

/// Static allocator settings (master flags).
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatorConfig {
    /// An offer must hold at least one of these quantity sets (`--min_allocatable_resources`);
    /// an empty list accepts any non-empty offer.
    pub min_allocatable: Vec<Resources>,
    /// Role weights (`--weights`); absent roles weigh 1.0.
    pub weights: BTreeMap<String, f64>,
    /// Resource names ignored by fair sharing (`--fair_sharing_excluded_resource_names`).
    pub fair_sharing_excluded: Vec<String>,
    /// Seed of the agent shuffle at the start of each stage; `None` visits agents in id
    /// order, which makes tests easy to read.
    pub shuffle_seed: Option<u64>,
}

impl Default for AllocatorConfig {
    /// Mesos's defaults: `cpus:0.01|mem:32`, no weights, nothing excluded; a fixed seed.
    fn default() -> AllocatorConfig {
        let single = |name: &str, milli: i64| {
            let mut r = Resources::new();
            r.push(Resource::new(name, UNRESERVED, Value::Scalar(Scalar::from_milli(milli))))
                .expect("a one-entry collection has no type conflict");
            r
        };
        AllocatorConfig {
            min_allocatable: vec![single("cpus", 10), single("mem", 32_000)],
            weights: BTreeMap::new(),
            fair_sharing_excluded: Vec::new(),
            shuffle_seed: Some(0x5eed),
        }
    }
}

/// One decision of [`Allocator::allocate`]: offer `resources` of `agent_id` to `framework_id`
/// for `role`. A cycle returns at most one per (framework, role, agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Who receives the offer.
    pub framework_id: String,
    /// The role the resources are allocated to.
    pub role: String,
    /// Where the resources are.
    pub agent_id: String,
    /// What is offered; it counts as allocated until recovered.
    pub resources: Resources,
}

/// What the allocator needs to know of a framework (from its `FrameworkInfo` and SUBSCRIBE).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameworkSpec {
    /// The roles it subscribes to.
    pub roles: Vec<String>,
    /// The roles it does not want offers for (exactly this set replaces the previous one).
    pub suppressed_roles: Vec<String>,
    /// False while its scheduler is disconnected.
    pub active: bool,
    /// `offer_filters[role].min_allocatable_resources`: per role, the quantity sets that
    /// replace the global minimum (an empty list accepts any non-empty offer).
    pub min_allocatable: BTreeMap<String, Vec<Resources>>,
    /// What the framework can handle in an offer.
    pub capabilities: FrameworkCapabilities,
    /// The agents it wants offers from, per role (SUBSCRIBE's `offer_constraints`).
    pub offer_constraints: OfferConstraints,
}

/// The FrameworkInfo capabilities that decide what may be offered to a framework (reference
/// §6.3 "the framework lacks capability for this agent").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameworkCapabilities {
    /// GPU_RESOURCES: without it a framework is not offered resources of agents with GPUs
    /// (Mesos's `--filter_gpu_resources`, on by default), so that GPU machines stay free for
    /// the frameworks that need them.
    pub gpu_resources: bool,
    /// RESERVATION_REFINEMENT: without it a framework cannot read refined reservations and is
    /// not offered resources that include them.
    pub reservation_refinement: bool,
}

/// A request the allocator cannot carry out; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocatorError {
    /// The agent is not known.
    #[error("unknown agent '{0}'")]
    UnknownAgent(String),
    /// The framework holds no such allocation.
    #[error("framework '{framework}' holds no '{resources}' for role '{role}' on agent '{agent}'")]
    NotAllocated {
        /// The framework.
        framework: String,
        /// The role.
        role: String,
        /// The agent.
        agent: String,
        /// What was to be converted.
        resources: String,
    },
    /// An allocation update would change quantities, not just their form.
    #[error("an allocation update must keep quantities: '{from}' and '{to}' differ")]
    QuantitiesDiffer {
        /// The old form.
        from: String,
        /// The new form.
        to: String,
    },
    /// Quota is only for top-level roles.
    #[error("quota can only be set on top-level roles, not '{0}'")]
    NestedQuotaRole(String),
    /// A guarantee above the limit can never be met.
    #[error("the guarantee of '{name}' for role '{role}' exceeds its limit")]
    GuaranteeAboveLimit {
        /// The role.
        role: String,
        /// The resource name.
        name: String,
    },
}

/// An agent as the allocator sees it.
#[derive(Debug, Clone)]
struct Agent {
    total: Resources,
    /// `total` minus everything in `allocated`, kept up to date to avoid recomputing it for
    /// every allocation decision.
    available: Resources,
    /// Allocated (offered or in use) resources by (framework, role) index.
    allocated: BTreeMap<(u32, u32), Resources>,
    /// False while the agent is deactivated or draining: no offers.
    active: bool,
    /// Refuse filters by role index; agents hold filters for few roles, so a list is enough.
    filters: Vec<(u32, RoleFilters)>,
    /// Hostname and attributes, for offer constraints.
    description: Arc<AgentDescription>,
    /// Taken from `Allocator::stamps` on every mutable access (`agent_mut`), so that the
    /// master's cached view of the agent can tell that its allocation may have changed.
    stamp: u64,
}

/// A framework as the allocator sees it.
#[derive(Debug, Clone)]
struct Framework {
    id: Arc<str>,
    /// False for a framework known only from an agent's running tasks (it has not subscribed
    /// since the master started); it is forgotten when those allocations end.
    added: bool,
    /// Subscribed roles (indices), sorted.
    roles: Vec<u32>,
    /// Suppressed roles (indices), sorted.
    suppressed: Vec<u32>,
    active: bool,
    min_allocatable: BTreeMap<String, Vec<Resources>>,
    capabilities: FrameworkCapabilities,
    offer_constraints: OfferConstraints,
    /// On how many (agent, role) pairs it holds something. Where exactly is only in the
    /// agents' records: an index here would be touched by every allocation decision, and only
    /// framework removal, which is rare, would read it.
    allocations: usize,
}

/// Resource names interned to indices, with the excluded flags kept beside the totals.
#[derive(Debug, Clone, Default)]
struct Names {
    ids: FastMap<String, usize>,
    excluded: BTreeSet<String>,
}

impl Names {
    fn idx(&mut self, totals: &mut Totals, name: &str) -> usize {
        if let Some(&idx) = self.ids.get(name) {
            return idx;
        }
        let idx = self.ids.len();
        self.ids.insert(name.to_string(), idx);
        totals.excluded.push(self.excluded.contains(name));
        idx
    }

    /// The scalar parts of `resources`: all of them, and the unreserved ones.
    fn parts(&mut self, totals: &mut Totals, resources: &Resources) -> (ScalarParts, ScalarParts) {
        let mut all = ScalarParts::new();
        let mut unreserved = ScalarParts::new();
        for entry in resources {
            if let Value::Scalar(amount) = entry.value {
                let idx = self.idx(totals, &entry.name);
                all.push((idx, amount.milli()));
                if reservation_role(entry).is_none() {
                    unreserved.push((idx, amount.milli()));
                }
            }
        }
        (all, unreserved)
    }
}

/// The role an entry is reserved for, `None` when unreserved. Every look at how a resource
/// records its reservation goes through here, so that a richer reservation model changes one
/// function.
fn reservation_role(entry: &Resource) -> Option<&str> {
    entry.is_reserved().then_some(entry.role())
}

/// Nanoseconds on the caller's clock, saturating (a filter of centuries never expires).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The DRF allocator state (see the module documentation).
#[derive(Debug, Clone)]
pub struct Allocator {
    config: AllocatorConfig,
    names: Names,
    totals: Totals,
    /// The totals changed since shares were last computed.
    totals_dirty: bool,
    agent_ids: Interner,
    agents: Vec<Option<Agent>>,
    framework_ids: Interner,
    frameworks: Vec<Option<Framework>>,
    roles: RoleTree,
    quota: QuotaBook,
    rng: Option<SplitMix64>,
    /// `config.min_allocatable` as (name, quantity) lists, checked once per agent and role.
    min_quantities: Vec<Vec<(String, Scalar)>>,
    /// How many frameworks have offer constraints: while none do, picking a framework never
    /// looks at agent descriptions.
    constrained: usize,
    /// The last stamp handed to an agent; never reused, so an agent removed and added again
    /// cannot match a view of its former self.
    stamps: u64,
}

impl Allocator {
    /// An allocator with no agents and no frameworks.
    pub fn new(config: AllocatorConfig) -> Allocator {
        let names = Names {
            ids: FastMap::default(),
            excluded: config.fair_sharing_excluded.iter().cloned().collect(),
        };
        let min_quantities = config
            .min_allocatable
            .iter()
            .map(|min| min.quantities().into_iter().collect())
            .collect();
        Allocator {
            min_quantities,
            rng: config.shuffle_seed.map(SplitMix64::new),
            config,
            names,
            totals: Totals::default(),
            totals_dirty: false,
            agent_ids: Interner::default(),
            agents: Vec::new(),
            framework_ids: Interner::default(),
            frameworks: Vec::new(),
            roles: RoleTree::default(),
            quota: QuotaBook::default(),
            constrained: 0,
            stamps: 0,
        }
    }

    fn agent(&self, idx: u32) -> &Agent {
        self.agents[idx as usize].as_ref().expect("callers only hold live agent indices")
    }

    /// Every change of an agent goes through here, and stamps it as changed.
    fn agent_mut(&mut self, idx: u32) -> &mut Agent {
        self.stamps += 1;
        let stamp = self.stamps;
        let agent =
            self.agents[idx as usize].as_mut().expect("callers only hold live agent indices");
        agent.stamp = stamp;
        agent
    }

    fn framework_mut(&mut self, idx: u32) -> &mut Framework {
        self.frameworks[idx as usize].as_mut().expect("callers only hold live framework indices")
    }

    /// The index of a framework, creating a placeholder for one never seen.
    fn intern_framework(&mut self, id: &str) -> u32 {
        let (idx, new) = self.framework_ids.intern(id);
        if new {
            if self.frameworks.len() <= idx as usize {
                self.frameworks.resize(idx as usize + 1, None);
            }
            self.frameworks[idx as usize] = Some(Framework {
                id: self.framework_ids.name(idx).clone(),
                added: false,
                roles: Vec::new(),
                suppressed: Vec::new(),
                active: false,
                min_allocatable: BTreeMap::new(),
                capabilities: FrameworkCapabilities::default(),
                offer_constraints: OfferConstraints::default(),
                allocations: 0,
            });
        }
        idx
    }

    /// Adds an agent with its `total` resources and what frameworks already use on it (an
    /// agent re-registering after a master failover). Adding a known id replaces the agent.
    ///
    /// Frameworks in `used` need not be added yet: their usage counts for fairness at once and
    /// is theirs when they subscribe.
    pub fn add_agent(
        &mut self,
        agent_id: &str,
        total: Resources,
        used: &[(String, String, Resources)],
    ) {
        self.remove_agent(agent_id);
        let (a, _) = self.agent_ids.intern(agent_id);
        if self.agents.len() <= a as usize {
            self.agents.resize(a as usize + 1, None);
        }
        self.track_total(&total, true);
        self.agents[a as usize] = Some(Agent {
            available: total.clone(),
            total,
            allocated: BTreeMap::new(),
            active: true,
            filters: Vec::new(),
            description: Arc::default(),
            stamp: 0,
        });
        // Stamped through `agent_mut`, like every later change.
        self.agent_mut(a);
        for (framework_id, role, resources) in used {
            let f = self.intern_framework(framework_id);
            let r = self.roles.intern(role, &self.config.weights);
            self.hold(f, r, a, resources, false);
        }
    }

    /// Replaces the total resources of an agent (its resources or reservations changed).
    /// Allocations stay; what is free is recomputed.
    pub fn update_agent(&mut self, agent_id: &str, total: Resources) -> Result<(), AllocatorError> {
        let a =
            self.agent_ids.get(agent_id).ok_or(AllocatorError::UnknownAgent(agent_id.into()))?;
        let old = std::mem::take(&mut self.agent_mut(a).total);
        self.track_total(&old, false);
        self.track_total(&total, true);
        let agent = self.agent_mut(a);
        let mut available = total.clone();
        for held in agent.allocated.values() {
            available -= held;
        }
        agent.total = total;
        agent.available = available;
        Ok(())
    }

    /// Removes an agent; its allocations and filters disappear with it.
    pub fn remove_agent(&mut self, agent_id: &str) {
        let Some(a) = self.agent_ids.get(agent_id) else { return };
        let Some(agent) = self.agents[a as usize].take() else { return };
        self.agent_ids.release(a);
        for (&(f, r), resources) in &agent.allocated {
            self.untrack(f, r, resources);
            self.framework_mut(f).allocations -= 1;
            self.forget_if_unused(f, Some(r));
        }
        self.track_total(&agent.total, false);
    }

    /// Sets the hostname and attributes that frameworks' offer constraints are checked against.
    pub fn describe_agent(&mut self, agent_id: &str, description: AgentDescription) {
        if let Some(a) = self.agent_ids.get(agent_id) {
            self.agent_mut(a).description = Arc::new(description);
        }
    }

    /// Stops offers of an agent's resources (deactivated or draining) or resumes them.
    pub fn set_agent_active(&mut self, agent_id: &str, active: bool) {
        if let Some(a) = self.agent_ids.get(agent_id) {
            self.agent_mut(a).active = active;
        }
    }

    /// Takes back resources of a declined or rescinded offer or of finished tasks.
    ///
    /// Only what is actually allocated to (framework, role) on that agent is freed, so a
    /// duplicate or stale recovery cannot create resources. With `refuse` longer than zero, a
    /// filter stops offering a subset of `resources` of that agent to the framework for that
    /// role until `now + refuse`; the caller computes the duration (the master uses
    /// `max(refuse_seconds, allocation_interval)`, capped at 365 days).
    pub fn recover(
        &mut self,
        framework_id: &str,
        role: &str,
        agent_id: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) {
        let (Some(a), Some(f), Some(r)) = (
            self.agent_ids.get(agent_id),
            self.framework_ids.get(framework_id),
            self.roles.get(role),
        ) else {
            return;
        };
        let agent = self.agent_mut(a);
        if let Some(held) = agent.allocated.get_mut(&(f, r)) {
            let before = held.clone();
            *held -= resources;
            let freed = before - &*held;
            let emptied = held.is_empty();
            if emptied {
                agent.allocated.remove(&(f, r));
            }
            agent.available += &freed;
            self.untrack(f, r, &freed);
            if emptied {
                self.framework_mut(f).allocations -= 1;
            }
        }
        if let Some(refuse) = refuse.filter(|d| !d.is_zero())
            && self.frameworks[f as usize].as_ref().is_some_and(|fw| fw.added)
        {
            // A filter so long that it overflows the clock never expires, which is what its
            // author asked for.
            let expires = now.checked_add(refuse).map_or(u64::MAX, nanos);
            let agent = self.agent_mut(a);
            let bucket = match agent.filters.iter().position(|(x, _)| *x == r) {
                Some(i) => &mut agent.filters[i].1,
                None => {
                    agent.filters.push((r, RoleFilters::default()));
                    &mut agent.filters.last_mut().expect("just pushed").1
                }
            };
            bucket.insert(f, resources, expires, nanos(now));
        }
        self.forget_if_unused(f, Some(r));
    }

    /// Converts part of an allocation in place: a framework applied an operation (RESERVE,
    /// UNRESERVE, CREATE, ...) to offered resources inside an ACCEPT, so `from`, allocated to
    /// (framework, role) on the agent, becomes `to` with the same quantities. The agent's
    /// total changes the same way; what is free does not.
    pub fn update_allocation(
        &mut self,
        framework_id: &str,
        role: &str,
        agent_id: &str,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        let not_allocated = || AllocatorError::NotAllocated {
            framework: framework_id.into(),
            role: role.into(),
            agent: agent_id.into(),
            resources: from.to_string(),
        };
        let a =
            self.agent_ids.get(agent_id).ok_or(AllocatorError::UnknownAgent(agent_id.into()))?;
        let f = self.framework_ids.get(framework_id).ok_or_else(not_allocated)?;
        let r = self.roles.get(role).ok_or_else(not_allocated)?;
        if from.quantities() != to.quantities() {
            return Err(AllocatorError::QuantitiesDiffer {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        let agent = self.agent(a);
        let held = agent.allocated.get(&(f, r)).filter(|h| h.contains(from));
        let (Some(held), true) = (held, agent.total.contains(from)) else {
            return Err(not_allocated());
        };
        let held = held.clone() - from + to;
        let total = agent.total.clone() - from + to;
        // Shares do not move (same quantities), but the split between reserved and unreserved
        // does, and with it quota consumption and headroom.
        self.untrack(f, r, from);
        self.track(f, r, to, false);
        let old_total = std::mem::replace(&mut self.agent_mut(a).total, total.clone());
        self.track_total(&old_total, false);
        self.track_total(&total, true);
        self.agent_mut(a).allocated.insert((f, r), held);
        Ok(())
    }

    /// Sets the quota of a top-level role (`*` included); an empty config removes it.
    /// Guarantees must not exceed limits. Consumption is checked at the next cycle: nothing
    /// already offered is taken back here (the master rescinds offers on quota changes).
    pub fn update_quota(&mut self, role: &str, config: QuotaConfig) -> Result<(), AllocatorError> {
        if role.contains('/') {
            return Err(AllocatorError::NestedQuotaRole(role.into()));
        }
        for (name, guarantee) in &config.guarantees {
            if config.limits.get(name).is_some_and(|limit| limit < guarantee) {
                return Err(AllocatorError::GuaranteeAboveLimit {
                    role: role.into(),
                    name: name.clone(),
                });
            }
        }
        let r = self.roles.intern(role, &self.config.weights);
        let mut intern = |map: &BTreeMap<String, Scalar>, keep_zero: bool| -> ScalarParts {
            map.iter()
                .filter(|(_, v)| keep_zero || v.is_positive())
                .map(|(n, v)| (self.names.idx(&mut self.totals, n), v.milli().max(0)))
                .collect()
        };
        let guarantees = intern(&config.guarantees, false);
        let limits = intern(&config.limits, true);
        self.quota.set(r, self.roles.node(r), guarantees, limits);
        if config.is_empty() {
            self.quota.configs.remove(role);
        } else {
            self.quota.configs.insert(role.to_string(), config);
        }
        Ok(())
    }

    /// Changes role weights (UPDATE_WEIGHTS); they take effect for the next decision.
    pub fn update_weights(&mut self, weights: impl IntoIterator<Item = (String, f64)>) {
        for (role, weight) in weights {
            self.roles.set_weight(&role, sane_weight(Some(weight)), &self.totals);
            self.config.weights.insert(role, weight);
        }
    }

    /// Runs one allocation cycle over all agents and returns the offers to make.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        let agents: Vec<u32> = self
            .agents
            .iter()
            .enumerate()
            .filter(|(_, a)| a.as_ref().is_some_and(|a| a.active))
            .map(|(i, _)| i as u32)
            .collect();
        self.run_cycle(agents, now)
    }

    /// Runs one allocation cycle over the given agents only (an agent was added or changed);
    /// unknown ids are ignored.
    pub fn allocate_agents<S: AsRef<str>>(
        &mut self,
        agent_ids: &[S],
        now: Duration,
    ) -> Vec<Allocation> {
        let mut agents: Vec<u32> = agent_ids
            .iter()
            .filter_map(|id| self.agent_ids.get(id.as_ref()))
            .filter(|&a| self.agent(a).active)
            .collect();
        agents.sort_unstable();
        agents.dedup();
        self.run_cycle(agents, now)
    }

    /// Records `resources` as held by (framework, role) on an agent, counting `count` as an
    /// allocation decision.
    fn hold(&mut self, f: u32, r: u32, a: u32, resources: &Resources, count: bool) {
        self.agent_mut(a).available -= resources;
        self.record(f, r, a, resources, count);
    }

    /// [`Allocator::hold`] for resources already taken out of the agent's free resources.
    fn record(&mut self, f: u32, r: u32, a: u32, resources: &Resources, count: bool) {
        let agent = self.agent_mut(a);
        let fresh = match agent.allocated.entry((f, r)) {
            std::collections::btree_map::Entry::Occupied(mut held) => {
                held.get_mut().add(resources);
                false
            }
            // Cloning the normalized collection is cheaper than merging it entry by entry.
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(resources.clone());
                true
            }
        };
        if fresh {
            self.framework_mut(f).allocations += 1;
        }
        self.track(f, r, resources, count);
    }

    /// Adds an allocation to the sorters, quota consumption and headroom.
    fn track(&mut self, f: u32, r: u32, resources: &Resources, count: bool) {
        let (all, unreserved) = self.names.parts(&mut self.totals, resources);
        let name = self.framework_ids.name(f).clone();
        self.roles.node_mut(r).frameworks.ensure(f, &name, 1.0);
        self.roles.add(r, f, &all, count, &self.totals);
        self.track_unreserved(r, &unreserved, true);
    }

    /// Removes freed resources from the sorters, quota consumption and headroom.
    fn untrack(&mut self, f: u32, r: u32, resources: &Resources) {
        if resources.is_empty() {
            return;
        }
        let (all, unreserved) = self.names.parts(&mut self.totals, resources);
        self.roles.sub(r, f, &all, &self.totals);
        self.track_unreserved(r, &unreserved, false);
    }

    fn track_unreserved(&mut self, r: u32, unreserved: &ScalarParts, add: bool) {
        let top = self.roles.node(r).top;
        let node = self.roles.node_mut(top);
        if add {
            node.unreserved_allocated.add(unreserved);
            self.quota.unreserved_allocated.add(unreserved);
        } else {
            node.unreserved_allocated.sub(unreserved);
            self.quota.unreserved_allocated.sub(unreserved);
        }
        if !self.quota.is_empty() {
            self.quota.refresh(top, self.roles.node(top));
        }
    }

    /// Adds (or removes) an agent's total to the cluster totals, the unreserved capacity and
    /// the reservations of its roles.
    fn track_total(&mut self, total: &Resources, add: bool) {
        let (all, unreserved) = self.names.parts(&mut self.totals, total);
        if add {
            self.totals.amounts.add(&all);
            self.quota.unreserved_total.add(&unreserved);
        } else {
            self.totals.amounts.sub(&all);
            self.quota.unreserved_total.sub(&unreserved);
        }
        self.totals_dirty = true;
        for entry in total {
            let (Value::Scalar(amount), Some(role)) = (&entry.value, reservation_role(entry))
            else {
                continue;
            };
            let idx = self.names.idx(&mut self.totals, &entry.name);
            let top = self.roles.intern(role, &self.config.weights);
            let top = self.roles.node(top).top;
            let node = self.roles.node_mut(top);
            if add {
                node.reserved.add(&[(idx, amount.milli())]);
            } else {
                node.reserved.sub(&[(idx, amount.milli())]);
            }
            self.quota.refresh(top, self.roles.node(top));
        }
    }

    /// Drops the framework's client in role `r` (or in every role when `None`) once it is
    /// neither subscribed nor holding anything there, and forgets a framework that was never
    /// added or was removed once nothing references it.
    fn forget_if_unused(&mut self, f: u32, r: Option<u32>) {
        let Some(framework) = self.frameworks[f as usize].as_ref() else { return };
        let candidates: Vec<u32> = match r {
            Some(r) => vec![r],
            None => self.roles.indices().collect(),
        };
        for r in candidates {
            let subscribed = framework.roles.binary_search(&r).is_ok();
            let node = self.roles.node_mut(r);
            let idle = node.frameworks.allocated(f).is_none_or(|q| q.is_zero());
            if !subscribed && idle && node.frameworks.contains(f) {
                node.frameworks.remove(f);
            }
        }
        if !framework.added && framework.allocations == 0 {
            for r in self.roles.indices().collect::<Vec<_>>() {
                self.roles.node_mut(r).frameworks.remove(f);
            }
            self.frameworks[f as usize] = None;
            self.framework_ids.release(f);
        }
    }

    /// Everything allocated to the framework (offered or in use) over all agents and roles.
    /// Scalars are exact; ranges and sets of different agents merge into one union.
    pub fn allocated(&self, framework_id: &str) -> Resources {
        let mut out = Resources::new();
        let Some(f) = self.framework_ids.get(framework_id) else { return out };
        for agent in self.agents.iter().flatten() {
            for (_, held) in agent.allocated.range((f, 0)..=(f, u32::MAX)) {
                out += held;
            }
        }
        out
    }

    /// What the agent has not allocated, or `None` for an unknown agent.
    pub fn available(&self, agent_id: &str) -> Option<&Resources> {
        self.agent_ids.get(agent_id).map(|a| &self.agent(a).available)
    }

    /// A number that changes whenever anything about the agent changes here (its total, what
    /// is free, its allocations), or `None` for an unknown agent; for caches of views that
    /// show the agent's allocation.
    pub fn agent_stamp(&self, agent_id: &str) -> Option<u64> {
        self.agent_ids.get(agent_id).map(|a| self.agent(a).stamp)
    }

    /// What the agent has in total, or `None` for an unknown agent.
    pub fn total(&self, agent_id: &str) -> Option<&Resources> {
        self.agent_ids.get(agent_id).map(|a| &self.agent(a).total)
    }

    /// The weighted dominant share of a role's subtree among its siblings, for state
    /// endpoints and tests.
    pub fn role_share(&self, role: &str) -> f64 {
        self.roles.get(role).map_or(0.0, |r| self.roles.share(r, &self.totals))
    }

    /// The dominant share of a framework within one of its roles.
    pub fn framework_share(&self, framework_id: &str, role: &str) -> f64 {
        match (self.framework_ids.get(framework_id), self.roles.get(role)) {
            (Some(f), Some(r)) => self.roles.node(r).frameworks.share(f, &self.totals),
            _ => 0.0,
        }
    }

    /// The quota of a role, if it has one.
    pub fn quota(&self, role: &str) -> Option<&QuotaConfig> {
        self.quota.configs.get(role)
    }

    /// What a top-level role has consumed toward its quota: scalar allocations of its subtree
    /// (offers included) plus all of its subtree's reservations.
    pub fn consumed_quota(&self, role: &str) -> BTreeMap<String, Scalar> {
        let mut out = BTreeMap::new();
        let Some(r) = self.roles.get(role) else { return out };
        let node = self.roles.node(self.roles.node(r).top);
        for (name, &idx) in &self.names.ids {
            let amount = node.reserved.get(idx) + node.unreserved_allocated.get(idx);
            if amount > 0 {
                out.insert(name.clone(), Scalar::from_milli(amount));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
