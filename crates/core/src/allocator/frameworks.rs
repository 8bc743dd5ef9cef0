//! Framework membership of the allocator: subscription to roles, suppression, activity, the
//! per-role minimum allocatable overrides, and the filters these changes clear (reference
//! §6.4). It translates each change into eligibility bits of the role tree; it does not
//! allocate and does not touch agents except to drop filters.

use super::{Allocator, FrameworkSpec};

impl Allocator {
    /// Adds a framework subscribed to `roles`, or updates a known one as a re-subscription
    /// does: roles, suppressed roles and activity are replaced, filters of dropped roles go.
    /// Per-role minimum allocatable overrides, capabilities and offer constraints stay as they were (see
    /// [`Allocator::set_framework`]).
    pub fn add_framework(
        &mut self,
        framework_id: &str,
        roles: &[String],
        suppressed_roles: &[String],
        active: bool,
    ) {
        let (min_allocatable, capabilities, offer_constraints) = self
            .framework_ids
            .get(framework_id)
            .and_then(|f| self.frameworks[f as usize].as_ref())
            .map(|f| (f.min_allocatable.clone(), f.capabilities, f.offer_constraints.clone()))
            .unwrap_or_default();
        let spec = FrameworkSpec {
            roles: roles.to_vec(),
            suppressed_roles: suppressed_roles.to_vec(),
            active,
            min_allocatable,
            capabilities,
            offer_constraints,
        };
        self.set_framework(framework_id, &spec);
    }

    /// Adds or updates a framework (SUBSCRIBE, UPDATE_FRAMEWORK): everything in `spec`
    /// replaces what was known. Filters go for dropped roles, for roles that stop being
    /// suppressed, and all of them when the framework becomes inactive (reference §6.4).
    pub fn set_framework(&mut self, framework_id: &str, spec: &FrameworkSpec) {
        let f = self.intern_framework(framework_id);
        let mut roles: Vec<u32> =
            spec.roles.iter().map(|r| self.roles.intern(r, &self.config.weights)).collect();
        roles.sort_unstable();
        roles.dedup();
        let mut suppressed: Vec<u32> = spec
            .suppressed_roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .filter(|r| roles.binary_search(r).is_ok())
            .collect();
        suppressed.sort_unstable();
        suppressed.dedup();
        let framework = self.framework_mut(f);
        let old_roles = std::mem::replace(&mut framework.roles, roles.clone());
        let old_suppressed = std::mem::replace(&mut framework.suppressed, suppressed.clone());
        let old_overrides = std::mem::take(&mut framework.min_allocatable);
        let was_active = framework.active;
        framework.added = true;
        framework.active = spec.active;
        framework.min_allocatable = spec.min_allocatable.clone();
        framework.capabilities = spec.capabilities;
        let was_constrained = !framework.offer_constraints.is_empty();
        framework.offer_constraints = spec.offer_constraints.clone();
        let name = framework.id.clone();
        match (was_constrained, !spec.offer_constraints.is_empty()) {
            (false, true) => self.constrained += 1,
            (true, false) => self.constrained -= 1,
            _ => {}
        }

        let dropped: Vec<u32> =
            old_roles.iter().copied().filter(|r| roles.binary_search(r).is_err()).collect();
        let unsuppressed: Vec<u32> = old_suppressed
            .iter()
            .copied()
            .filter(|r| roles.binary_search(r).is_ok() && suppressed.binary_search(r).is_err())
            .collect();
        if was_active && !spec.active {
            self.clear_filters(f, None);
        } else {
            self.clear_filters(f, Some(&[dropped.as_slice(), &unsuppressed].concat()));
        }
        for &r in &old_roles {
            if old_overrides.contains_key(&*self.roles.node(r).path) {
                self.roles.node_mut(r).overrides -= 1;
            }
        }
        for &r in &roles {
            let node = self.roles.node_mut(r);
            node.frameworks.ensure(f, &name, 1.0);
            if spec.min_allocatable.contains_key(&*node.path) {
                node.overrides += 1;
            }
        }
        for &r in &dropped {
            self.roles.set_eligible(r, f, false);
            self.forget_if_unused(f, Some(r));
        }
        self.refresh_eligibility(f);
    }

    /// Removes a framework; everything allocated to it returns to its agents.
    pub fn remove_framework(&mut self, framework_id: &str) {
        let Some(f) = self.framework_ids.get(framework_id) else { return };
        self.set_framework(framework_id, &FrameworkSpec::default());
        self.clear_filters(f, None);
        let mut freed = Vec::new();
        for agent in self.agents.iter_mut().flatten() {
            let keys: Vec<(u32, u32)> =
                agent.allocated.range((f, 0)..=(f, u32::MAX)).map(|(k, _)| *k).collect();
            for key in keys {
                if let Some(resources) = agent.allocated.remove(&key) {
                    agent.available += &resources;
                    freed.push((key.1, resources));
                    // What `agent_mut` does; the loop cannot call it while it borrows the list.
                    self.stamps += 1;
                    agent.stamp = self.stamps;
                }
            }
        }
        for (r, resources) in freed {
            self.untrack(f, r, &resources);
        }
        self.framework_mut(f).allocations = 0;
        self.framework_mut(f).added = false;
        self.forget_if_unused(f, None);
    }

    /// Lets the framework receive offers again.
    pub fn activate_framework(&mut self, framework_id: &str) {
        if let Some(f) = self.framework_ids.get(framework_id) {
            self.framework_mut(f).active = true;
            self.refresh_eligibility(f);
        }
    }

    /// Stops offers to the framework (its scheduler disconnected) and clears its filters, so
    /// that a reconnecting scheduler sees everything again. Its allocations still count.
    pub fn deactivate_framework(&mut self, framework_id: &str) {
        if let Some(f) = self.framework_ids.get(framework_id) {
            self.framework_mut(f).active = false;
            self.clear_filters(f, None);
            self.refresh_eligibility(f);
        }
    }

    /// Stops offers to the framework for `roles` (all of its roles when empty).
    pub fn suppress(&mut self, framework_id: &str, roles: &[String]) {
        let Some(f) = self.framework_ids.get(framework_id) else { return };
        let roles = self.select_roles(f, roles);
        let framework = self.framework_mut(f);
        framework.suppressed.extend(roles);
        framework.suppressed.sort_unstable();
        framework.suppressed.dedup();
        self.refresh_eligibility(f);
    }

    /// Resumes offers for `roles` (all of its roles when empty) and clears their filters.
    pub fn revive(&mut self, framework_id: &str, roles: &[String]) {
        let Some(f) = self.framework_ids.get(framework_id) else { return };
        let roles = self.select_roles(f, roles);
        self.framework_mut(f).suppressed.retain(|r| !roles.contains(r));
        self.clear_filters(f, Some(&roles));
        self.refresh_eligibility(f);
    }

    /// The framework's subscribed roles among `names`, or all of them when `names` is empty.
    fn select_roles(&mut self, f: u32, names: &[String]) -> Vec<u32> {
        let framework = self.framework_mut(f);
        if names.is_empty() {
            return framework.roles.clone();
        }
        let subscribed = framework.roles.clone();
        names
            .iter()
            .filter_map(|n| self.roles.get(n))
            .filter(|r| subscribed.binary_search(r).is_ok())
            .collect()
    }

    /// Re-derives in which roles the framework competes for offers.
    pub(super) fn refresh_eligibility(&mut self, f: u32) {
        let Some(framework) = self.frameworks[f as usize].as_ref() else { return };
        let wants: Vec<(u32, bool)> = framework
            .roles
            .iter()
            .map(|&r| (r, framework.active && framework.suppressed.binary_search(&r).is_err()))
            .collect();
        for (r, eligible) in wants {
            self.roles.set_eligible(r, f, eligible);
        }
    }

    /// Drops the framework's filters in `roles` (all roles when `None`) on every agent.
    ///
    /// This walks the agents rather than keeping a per-framework index of filters: filters
    /// can number agents × frameworks, and an index would double their memory for calls
    /// (revive, deactivation) that are rare next to allocation cycles.
    pub(super) fn clear_filters(&mut self, f: u32, roles: Option<&[u32]>) {
        if roles.is_some_and(<[u32]>::is_empty) {
            return;
        }
        for agent in self.agents.iter_mut().flatten() {
            agent.filters.retain_mut(|(r, filters)| {
                if roles.is_none_or(|roles| roles.contains(r)) {
                    filters.remove_framework(f);
                }
                !filters.is_empty()
            });
        }
    }
}
