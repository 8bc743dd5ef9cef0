//! Dominant Resource Fairness ordering of allocation clients (roles, or frameworks in a role).
//!
//! A [`DrfSorter`] remembers, per client, the scalar quantities allocated to it (offers
//! included) and how many allocations it received, and orders any subset of clients by
//! (weighted dominant share, allocation count, name). It keeps only scalar quantities because
//! shares are defined on scalars, and because ranges from different agents cannot be summed
//! without losing multiplicity. It does not know agents, filters or suppression: the allocator
//! decides who is eligible and asks the sorter only for the order. Hierarchical role trees
//! will nest sorters; this flat one is the leaf building block.

use std::collections::{BTreeMap, BTreeSet};

use crate::resources::{Resources, Scalar, Value};

/// Scalar quantities by resource name.
pub(crate) type Quantities = BTreeMap<String, Scalar>;

/// The scalar entries of `resources`, summed over roles.
pub(crate) fn scalar_quantities(resources: &Resources) -> Quantities {
    let mut out = Quantities::new();
    for entry in resources {
        if let Value::Scalar(amount) = entry.value {
            *out.entry(entry.name.clone()).or_default() += amount;
        }
    }
    out
}

/// One client's bookkeeping.
#[derive(Debug, Clone, Default)]
struct Client {
    /// Scalar quantities currently allocated, offers included.
    allocated: Quantities,
    /// How many allocations the client has received; the first tie-breaker after the share.
    count: u64,
}

/// The DRF state of one set of clients.
#[derive(Debug, Clone, Default)]
pub(crate) struct DrfSorter {
    clients: BTreeMap<String, Client>,
}

/// Everything a share computation needs besides the client itself.
pub(crate) struct ShareContext<'a> {
    /// Cluster-wide scalar totals, the denominators of the shares.
    pub(crate) totals: &'a Quantities,
    /// Names that do not count towards fairness (`--fair_sharing_excluded_resource_names`).
    pub(crate) excluded: &'a BTreeSet<String>,
}

impl DrfSorter {
    /// Records a new allocation to `client`: it counts for the share and as one allocation.
    pub(crate) fn allocated(&mut self, client: &str, resources: &Resources) {
        let entry = self.clients.entry(client.to_string()).or_default();
        add_quantities(&mut entry.allocated, resources);
        entry.count += 1;
    }

    /// Records resources the client already uses (an agent re-registering with running tasks):
    /// they count for the share but are not a new allocation decision.
    pub(crate) fn used(&mut self, client: &str, resources: &Resources) {
        let entry = self.clients.entry(client.to_string()).or_default();
        add_quantities(&mut entry.allocated, resources);
    }

    /// Records resources given back by `client`.
    pub(crate) fn unallocated(&mut self, client: &str, resources: &Resources) {
        if let Some(entry) = self.clients.get_mut(client) {
            for (name, amount) in scalar_quantities(resources) {
                if let Some(held) = entry.allocated.get_mut(&name) {
                    *held = held.saturating_sub_to_zero(amount);
                    if held.is_zero() {
                        entry.allocated.remove(&name);
                    }
                }
            }
        }
    }

    /// Forgets `client` entirely (a removed framework); its allocations must be gone already.
    pub(crate) fn remove(&mut self, client: &str) {
        self.clients.remove(client);
    }

    /// True when no client is known.
    pub(crate) fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The known clients, in name order.
    pub(crate) fn clients(&self) -> impl Iterator<Item = &String> {
        self.clients.keys()
    }

    /// The dominant share of `client` divided by `weight`.
    ///
    /// The share is the largest `allocated / total` over the scalar names that count; names
    /// with a zero cluster total are skipped because nothing of them can be shared.
    pub(crate) fn share(&self, client: &str, weight: f64, ctx: &ShareContext<'_>) -> f64 {
        let Some(entry) = self.clients.get(client) else {
            return 0.0;
        };
        let dominant = entry
            .allocated
            .iter()
            .filter(|(name, _)| !ctx.excluded.contains(*name))
            .filter_map(|(name, amount)| {
                let total = ctx.totals.get(name).copied().unwrap_or_default();
                total.is_positive().then(|| amount.milli() as f64 / total.milli() as f64)
            })
            .fold(0.0_f64, f64::max);
        dominant / weight
    }

    /// How many allocations `client` has received.
    pub(crate) fn count(&self, client: &str) -> u64 {
        self.clients.get(client).map_or(0, |c| c.count)
    }

    /// Orders `candidates` by ascending weighted share, then fewer allocations, then name.
    pub(crate) fn sort<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a str>,
        weight: impl Fn(&str) -> f64,
        ctx: &ShareContext<'_>,
    ) -> Vec<&'a str> {
        let mut keyed: Vec<(f64, u64, &'a str)> = candidates
            .into_iter()
            .map(|client| (self.share(client, weight(client), ctx), self.count(client), client))
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then_with(|| a.2.cmp(b.2)));
        keyed.into_iter().map(|(_, _, client)| client).collect()
    }
}

/// Adds the scalar entries of `resources` into `into`.
fn add_quantities(into: &mut Quantities, resources: &Resources) {
    for (name, amount) in scalar_quantities(resources) {
        *into.entry(name).or_default() += amount;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Resources {
        Resources::parse(text).expect("test resources are valid")
    }

    #[test]
    fn share_is_the_dominant_fraction_over_weight() {
        let totals = scalar_quantities(&res("cpus:10;mem:1000;gpus:2"));
        let mut excluded = BTreeSet::new();
        let mut sorter = DrfSorter::default();
        sorter.allocated("a", &res("cpus:1;mem:500;ports:[1-100]"));
        sorter.allocated("b", &res("cpus:4;mem:100;gpus:2"));
        let ctx = ShareContext { totals: &totals, excluded: &excluded };
        assert_eq!(sorter.share("a", 1.0, &ctx), 0.5);
        assert_eq!(sorter.share("a", 2.0, &ctx), 0.25);
        assert_eq!(sorter.share("b", 1.0, &ctx), 1.0);
        assert_eq!(sorter.share("nobody", 1.0, &ctx), 0.0);
        assert_eq!(sorter.sort(["b", "a", "c"], |_| 1.0, &ctx), ["c", "a", "b"]);
        excluded.insert("gpus".to_string());
        let ctx = ShareContext { totals: &totals, excluded: &excluded };
        assert_eq!(sorter.share("b", 1.0, &ctx), 0.4);
        assert_eq!(sorter.sort(["b", "a"], |_| 1.0, &ctx), ["b", "a"]);
    }

    #[test]
    fn ties_break_on_count_then_name() {
        let totals = scalar_quantities(&res("cpus:10"));
        let excluded = BTreeSet::new();
        let ctx = ShareContext { totals: &totals, excluded: &excluded };
        let mut sorter = DrfSorter::default();
        assert_eq!(sorter.sort(["b", "a"], |_| 1.0, &ctx), ["a", "b"]);
        sorter.allocated("a", &res("cpus:1"));
        sorter.unallocated("a", &res("cpus:1"));
        assert_eq!(sorter.share("a", 1.0, &ctx), 0.0);
        assert_eq!(sorter.count("a"), 1);
        assert_eq!(sorter.sort(["a", "b"], |_| 1.0, &ctx), ["b", "a"]);
        // Used resources count for the share but not as an allocation decision.
        sorter.used("c", &res("cpus:1"));
        assert_eq!(sorter.count("c"), 0);
        assert_eq!(sorter.sort(["a", "b", "c"], |_| 1.0, &ctx), ["b", "a", "c"]);
        sorter.remove("c");
        assert_eq!(sorter.clients().collect::<Vec<_>>(), ["a"]);
        sorter.remove("a");
        assert!(sorter.is_empty());
    }
}
