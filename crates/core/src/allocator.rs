//! The resource allocator: decides which framework is offered which agent's free resources.
//!
//! This first version implements Dominant Resource Fairness over flat roles: roles are ordered
//! by their weighted dominant share, frameworks within a role by theirs, and the first eligible
//! framework takes everything on an agent that its role may use (coarse-grained whole-agent
//! offers). It honours refuse filters, suppression, deactivation, static reservations and the
//! minimum allocatable quantities. It is sans-IO: time arrives as the `now` argument (time
//! since an arbitrary epoch), agents are visited in id order instead of a random shuffle, and
//! nothing here runs on a timer; the master decides when to call [`Allocator::allocate`].
//!
//! Deliberately absent for now: hierarchical roles, quota and headroom, revocable and shared
//! resources, per-framework offer filters and constraints, maintenance and inverse offers. The
//! per-role sorters in `allocator/sorter.rs` are where a role tree will plug in.

mod sorter;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::resources::{Resource, Resources, Scalar, UNRESERVED, Value};
use sorter::{DrfSorter, Quantities, ShareContext, scalar_quantities};

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
}

impl Default for AllocatorConfig {
    /// Mesos's defaults: `cpus:0.01|mem:32`, no weights, nothing excluded.
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
        }
    }
}

/// One decision of [`Allocator::allocate`]: offer `resources` of `agent_id` to `framework_id`
/// for `role`.
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

/// An agent as the allocator sees it.
#[derive(Debug, Clone)]
struct Agent {
    total: Resources,
    /// Allocated (offered or in use) resources by (framework, role).
    allocated: BTreeMap<(String, String), Resources>,
    /// `total` minus everything in `allocated`, kept up to date to avoid recomputing it for
    /// every allocation decision.
    available: Resources,
}

/// "Do not offer me these resources of this agent for this role again until `expires`."
#[derive(Debug, Clone)]
struct RefuseFilter {
    role: String,
    agent_id: String,
    resources: Resources,
    expires: Duration,
}

/// A framework as the allocator sees it.
#[derive(Debug, Clone)]
struct Framework {
    roles: BTreeSet<String>,
    suppressed: BTreeSet<String>,
    active: bool,
    filters: Vec<RefuseFilter>,
}

impl Framework {
    /// True when the framework competes for offers in `role` right now.
    fn wants(&self, role: &str) -> bool {
        self.active && self.roles.contains(role) && !self.suppressed.contains(role)
    }

    /// True when an unexpired filter refuses `candidate` on this agent for this role: a filter
    /// blocks any offer that is a subset of what was refused, so a larger offer gets through.
    fn refuses(&self, role: &str, agent_id: &str, candidate: &Resources, now: Duration) -> bool {
        self.filters.iter().any(|f| {
            f.role == role
                && f.agent_id == agent_id
                && f.expires > now
                && f.resources.contains(candidate)
        })
    }

    /// The given roles, or all of the framework's roles when none are given.
    fn select_roles(&self, roles: &[String]) -> BTreeSet<String> {
        if roles.is_empty() { self.roles.clone() } else { roles.iter().cloned().collect() }
    }
}

/// The DRF allocator state (see the module documentation).
#[derive(Debug, Clone)]
pub struct Allocator {
    config: AllocatorConfig,
    excluded: BTreeSet<String>,
    agents: BTreeMap<String, Agent>,
    frameworks: BTreeMap<String, Framework>,
    /// Scalar totals of all agents, the share denominators.
    totals: Quantities,
    /// Orders roles.
    role_sorter: DrfSorter,
    /// Orders the frameworks of each role by their allocation in that role.
    framework_sorters: BTreeMap<String, DrfSorter>,
}

impl Allocator {
    /// An allocator with no agents and no frameworks.
    pub fn new(config: AllocatorConfig) -> Allocator {
        Allocator {
            excluded: config.fair_sharing_excluded.iter().cloned().collect(),
            config,
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            totals: Quantities::new(),
            role_sorter: DrfSorter::default(),
            framework_sorters: BTreeMap::new(),
        }
    }

    /// Adds an agent with its `total` resources and what frameworks already use on it (an
    /// agent re-registering after a master failover). Adding a known id replaces the agent.
    ///
    /// Frameworks in `used` need not be added yet: their usage counts for fairness at once and
    /// is theirs when they re-subscribe.
    pub fn add_agent(
        &mut self,
        agent_id: &str,
        total: Resources,
        used: &[(String, String, Resources)],
    ) {
        self.remove_agent(agent_id);
        for (name, amount) in scalar_quantities(&total) {
            *self.totals.entry(name).or_default() += amount;
        }
        let mut agent = Agent { available: total.clone(), total, allocated: BTreeMap::new() };
        for (framework_id, role, resources) in used {
            agent.available -= resources;
            agent.allocated.entry((framework_id.clone(), role.clone())).or_default().add(resources);
            self.role_sorter.used(role, resources);
            self.framework_sorters.entry(role.clone()).or_default().used(framework_id, resources);
        }
        self.agents.insert(agent_id.to_string(), agent);
    }

    /// Removes an agent; its allocations disappear with it, and so do filters about it.
    pub fn remove_agent(&mut self, agent_id: &str) {
        let Some(agent) = self.agents.remove(agent_id) else {
            return;
        };
        for (name, amount) in scalar_quantities(&agent.total) {
            if let Some(total) = self.totals.get_mut(&name) {
                *total = total.saturating_sub_to_zero(amount);
                if total.is_zero() {
                    self.totals.remove(&name);
                }
            }
        }
        for ((framework_id, role), resources) in &agent.allocated {
            self.untrack(framework_id, role, resources);
        }
        for framework in self.frameworks.values_mut() {
            framework.filters.retain(|f| f.agent_id != agent_id);
        }
    }

    /// Adds a framework subscribed to `roles`, or updates a known one as a re-subscription
    /// does: roles, suppressed roles and activity are replaced, filters of dropped roles go.
    pub fn add_framework(
        &mut self,
        framework_id: &str,
        roles: &[String],
        suppressed_roles: &[String],
        active: bool,
    ) {
        let roles: BTreeSet<String> = roles.iter().cloned().collect();
        let suppressed = suppressed_roles.iter().cloned().collect();
        let mut filters =
            self.frameworks.remove(framework_id).map(|f| f.filters).unwrap_or_default();
        filters.retain(|f| roles.contains(&f.role));
        self.frameworks
            .insert(framework_id.to_string(), Framework { roles, suppressed, active, filters });
    }

    /// Removes a framework; everything allocated to it returns to its agents.
    pub fn remove_framework(&mut self, framework_id: &str) {
        self.frameworks.remove(framework_id);
        let mut freed = Vec::new();
        for agent in self.agents.values_mut() {
            let keys: Vec<(String, String)> =
                agent.allocated.keys().filter(|(fw, _)| fw == framework_id).cloned().collect();
            for key in keys {
                if let Some(resources) = agent.allocated.remove(&key) {
                    agent.available += &resources;
                    freed.push((key.1, resources));
                }
            }
        }
        for (role, resources) in freed {
            self.untrack(framework_id, &role, &resources);
        }
        // Forget the framework, and roles nobody uses any more, so that the sorters do not
        // grow with every framework that ever subscribed.
        let in_use: BTreeSet<&String> = self.frameworks.values().flat_map(|f| &f.roles).collect();
        self.framework_sorters.retain(|role, sorter| {
            sorter.remove(framework_id);
            in_use.contains(role) || !sorter.is_empty()
        });
        let idle: Vec<String> = self
            .role_sorter
            .clients()
            .filter(|role| !in_use.contains(role) && !self.framework_sorters.contains_key(*role))
            .cloned()
            .collect();
        for role in idle {
            self.role_sorter.remove(&role);
        }
    }

    /// Lets the framework receive offers again.
    pub fn activate_framework(&mut self, framework_id: &str) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.active = true;
        }
    }

    /// Stops offers to the framework (its scheduler disconnected) and clears its filters, so
    /// that a reconnecting scheduler sees everything again. Its allocations still count.
    pub fn deactivate_framework(&mut self, framework_id: &str) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.active = false;
            framework.filters.clear();
        }
    }

    /// Stops offers to the framework for `roles` (all of its roles when empty).
    pub fn suppress(&mut self, framework_id: &str, roles: &[String]) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            let roles = framework.select_roles(roles);
            framework.suppressed.extend(roles);
        }
    }

    /// The roles of the framework that are suppressed now, sorted.
    pub fn suppressed_roles(&self, framework_id: &str) -> Vec<String> {
        self.frameworks
            .get(framework_id)
            .map(|f| f.suppressed.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Resumes offers for `roles` (all of its roles when empty) and clears their filters.
    pub fn revive(&mut self, framework_id: &str, roles: &[String]) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            let roles = framework.select_roles(roles);
            framework.suppressed.retain(|r| !roles.contains(r));
            framework.filters.retain(|f| !roles.contains(&f.role));
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
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        let key = (framework_id.to_string(), role.to_string());
        if let Some(held) = agent.allocated.get_mut(&key) {
            let before = held.clone();
            *held -= resources;
            let freed = before - &*held;
            if held.is_empty() {
                agent.allocated.remove(&key);
            }
            agent.available += &freed;
            self.untrack(framework_id, role, &freed);
        }
        let Some(refuse) = refuse.filter(|d| !d.is_zero()) else {
            return;
        };
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.filters.push(RefuseFilter {
                role: role.to_string(),
                agent_id: agent_id.to_string(),
                resources: resources.clone(),
                // A filter so long that it overflows the clock never expires, which is what
                // its author asked for.
                expires: now.checked_add(refuse).unwrap_or(Duration::MAX),
            });
        }
    }

    /// An operation turned allocated `from` into `to` (same quantities, other reservations
    /// or volumes) on the agent: the allocation of (framework, role) and the agent's total
    /// change alike. Does nothing unless `from` is allocated there.
    pub fn update_allocation(
        &mut self,
        framework_id: &str,
        role: &str,
        agent_id: &str,
        from: &Resources,
        to: &Resources,
    ) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        let key = (framework_id.to_string(), role.to_string());
        let Some(held) = agent.allocated.get_mut(&key) else {
            return;
        };
        let Some(rest) = held.checked_sub(from) else {
            return;
        };
        *held = rest + to;
        agent.total = (&agent.total - from) + to;
    }

    /// Runs one allocation cycle over all agents and returns the offers to make.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        for framework in self.frameworks.values_mut() {
            framework.filters.retain(|f| f.expires > now);
        }
        // Eligibility does not change during a cycle, so it is computed once.
        let mut eligible: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (framework_id, framework) in &self.frameworks {
            for role in framework.roles.iter().filter(|r| framework.wants(r)) {
                eligible.entry(role.clone()).or_default().push(framework_id.clone());
            }
        }
        let agent_ids: Vec<String> = self.agents.keys().cloned().collect();
        let mut out = Vec::new();
        for agent_id in &agent_ids {
            // Each role takes at most one allocation per agent (the first framework takes all
            // the role may use), so sorting once per agent sees every share update in time.
            for role in self.role_order(&eligible) {
                let Some(candidates) = eligible.get(&role) else {
                    continue;
                };
                if let Some(allocation) = self.allocate_on(agent_id, &role, candidates, now) {
                    out.push(allocation);
                }
            }
        }
        out
    }

    /// Offers what `agent_id` has for `role` to the first framework of `role` that takes it.
    fn allocate_on(
        &mut self,
        agent_id: &str,
        role: &str,
        candidates: &[String],
        now: Duration,
    ) -> Option<Allocation> {
        let candidate = self.agents.get(agent_id)?.available.allocatable_to(role);
        if candidate.is_empty() || !self.meets_minimum(&candidate) {
            return None;
        }
        let ctx = ShareContext { totals: &self.totals, excluded: &self.excluded };
        let no_history = DrfSorter::default();
        let sorter = self.framework_sorters.get(role).unwrap_or(&no_history);
        let framework_id = sorter
            .sort(candidates.iter().map(String::as_str), |_| 1.0, &ctx)
            .into_iter()
            .find(|fw| {
                self.frameworks
                    .get(*fw)
                    .is_some_and(|f| !f.refuses(role, agent_id, &candidate, now))
            })?
            .to_string();
        let agent = self.agents.get_mut(agent_id).expect("the agent was found above");
        agent.available -= &candidate;
        agent
            .allocated
            .entry((framework_id.clone(), role.to_string()))
            .or_default()
            .add(&candidate);
        self.role_sorter.allocated(role, &candidate);
        self.framework_sorters
            .entry(role.to_string())
            .or_default()
            .allocated(&framework_id, &candidate);
        Some(Allocation {
            framework_id,
            role: role.to_string(),
            agent_id: agent_id.to_string(),
            resources: candidate,
        })
    }

    /// The roles with eligible frameworks, in DRF order.
    fn role_order(&self, eligible: &BTreeMap<String, Vec<String>>) -> Vec<String> {
        let ctx = ShareContext { totals: &self.totals, excluded: &self.excluded };
        self.role_sorter
            .sort(eligible.keys().map(String::as_str), |role| self.weight(role), &ctx)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The weight of `role`; invalid configured weights fall back to 1.0 rather than making
    /// shares infinite or negative.
    fn weight(&self, role: &str) -> f64 {
        match self.config.weights.get(role) {
            Some(&w) if w.is_finite() && w > 0.0 => w,
            _ => 1.0,
        }
    }

    /// True when `candidate` holds at least one of the configured minimum quantity sets.
    fn meets_minimum(&self, candidate: &Resources) -> bool {
        self.config.min_allocatable.is_empty()
            || self.config.min_allocatable.iter().any(|min| candidate.contains_quantities(min))
    }

    /// Removes freed resources from the sorters.
    fn untrack(&mut self, framework_id: &str, role: &str, resources: &Resources) {
        self.role_sorter.unallocated(role, resources);
        if let Some(sorter) = self.framework_sorters.get_mut(role) {
            sorter.unallocated(framework_id, resources);
        }
    }

    /// Everything allocated to the framework (offered or in use) over all agents and roles.
    /// Scalars are exact; ranges and sets of different agents merge into one union.
    pub fn allocated(&self, framework_id: &str) -> Resources {
        let mut out = Resources::new();
        for agent in self.agents.values() {
            for ((fw, _), resources) in &agent.allocated {
                if fw == framework_id {
                    out += resources;
                }
            }
        }
        out
    }

    /// What the agent has not allocated, or `None` for an unknown agent.
    pub fn available(&self, agent_id: &str) -> Option<&Resources> {
        self.agents.get(agent_id).map(|agent| &agent.available)
    }

    /// The weighted dominant share of a role, for state endpoints and tests.
    pub fn role_share(&self, role: &str) -> f64 {
        let ctx = ShareContext { totals: &self.totals, excluded: &self.excluded };
        self.role_sorter.share(role, self.weight(role), &ctx)
    }
}

#[cfg(test)]
mod tests;
