//! Refuse filters of one (agent, role): "do not offer me a subset of these resources here
//! before that time", and the set of frameworks they block for the current candidate offer.
//!
//! Frameworks decline whole agents again and again, so this store is built for two costs: an
//! allocation cycle must learn in constant time per framework whether it is blocked on this
//! agent, and thousands of filters that refuse the same leftovers must not hold thousands of
//! copies of them. Refused resource sets are therefore kept once per distinct value (most
//! declines on an agent refuse exactly its free resources), filters are 16-byte entries sorted
//! by framework, and the blocked set for a candidate is cached as a bit set that stays valid
//! until the candidate changes or a blocking filter expires; new filters are folded into it as
//! they arrive.
//!
//! Expired filters are dropped when the cache is rebuilt or when the same framework refuses
//! again, not by a timer. This module does not know the allocator; times are nanoseconds on the
//! caller's clock.

use std::hash::{Hash, Hasher};

use crate::resources::Resources;

use super::index::{BitSet, FxHasher};

/// The fingerprint of a candidate offer.
fn fingerprint(resources: &Resources) -> u64 {
    let mut hasher = FxHasher::default();
    resources.hash(&mut hasher);
    hasher.finish()
}

/// One filter.
#[derive(Debug, Clone, Copy)]
struct Entry {
    framework: u32,
    /// Index into `RoleFilters::groups`.
    group: u32,
    /// The filter refuses until this time (exclusive).
    expires: u64,
}

/// The blocked set for one candidate.
#[derive(Debug, Clone)]
struct Cache {
    /// A 64-bit fingerprint of the candidate rather than a copy: comparing a copy would touch
    /// twice the memory on every decision, and a cycle over a large cluster is bound by memory
    /// latency. Two different candidates of one (agent, role) colliding has probability 2^-64;
    /// the damage would be one wrong skip or offer until the candidate changes.
    candidate: u64,
    blocked: BitSet,
    count: usize,
    /// The earliest expiry among blocking filters: the set is exact until then.
    until: u64,
}

/// The filters of one (agent, role) (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(crate) struct RoleFilters {
    entries: Vec<Entry>,
    /// Distinct refused resource sets and how many entries use each.
    groups: Vec<(Resources, u32)>,
    cache: Option<Cache>,
}

impl RoleFilters {
    /// True when no filter is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many filters are stored.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The range of `entries` that belongs to `framework`.
    fn span(&self, framework: u32) -> std::ops::Range<usize> {
        let start = self.entries.partition_point(|e| e.framework < framework);
        let end = start + self.entries[start..].partition_point(|e| e.framework == framework);
        start..end
    }

    /// Installs a filter refusing subsets of `refused` for `framework` until `expires`.
    ///
    /// The framework's filters that expired, or that the new one makes redundant (smaller and
    /// shorter), go; a new filter that an existing one already covers is not stored.
    pub(crate) fn insert(&mut self, framework: u32, refused: &Resources, expires: u64, now: u64) {
        let span = self.span(framework);
        let mut keep = Vec::with_capacity(span.len());
        for entry in &self.entries[span.clone()] {
            let old = &self.groups[entry.group as usize].0;
            if entry.expires <= now {
                continue;
            }
            if entry.expires >= expires && old.contains(refused) {
                return; // Covered: nothing to do, nothing dropped.
            }
            if entry.expires <= expires && refused.contains(old) {
                continue;
            }
            keep.push(*entry);
        }
        let group = self.group_of(refused);
        keep.push(Entry { framework, group, expires });
        for dropped in
            self.entries[span.clone()].iter().filter(|e| !keep.iter().any(|k| same(k, e)))
        {
            self.groups[dropped.group as usize].1 -= 1;
        }
        self.groups[group as usize].1 += 1;
        self.entries.splice(span, keep);
        if let Some(cache) = &mut self.cache {
            // A shorter filter dropped above may have been blocking: the cache is then merely
            // conservative about its end, which only makes the next rebuild come earlier. The
            // new filter joins the cached set only when it certainly covers the candidate;
            // otherwise the cache is rebuilt on its next use.
            if cache.candidate == fingerprint(refused) {
                if cache.blocked.insert(framework) {
                    cache.count += 1;
                }
                cache.until = cache.until.min(expires);
            } else {
                self.cache = None;
            }
        }
    }

    /// The group index of `refused`, reusing an equal or an unused group.
    fn group_of(&mut self, refused: &Resources) -> u32 {
        if let Some(i) = self.groups.iter().position(|(r, _)| r == refused) {
            return i as u32;
        }
        if let Some(i) = self.groups.iter().position(|(_, uses)| *uses == 0) {
            self.groups[i].0 = refused.clone();
            return i as u32;
        }
        self.groups.push((refused.clone(), 0));
        (self.groups.len() - 1) as u32
    }

    /// Drops every filter of `framework`.
    pub(crate) fn remove_framework(&mut self, framework: u32) {
        let span = self.span(framework);
        if span.is_empty() {
            return;
        }
        for entry in self.entries.drain(span) {
            self.groups[entry.group as usize].1 -= 1;
        }
        if let Some(cache) = &mut self.cache
            && cache.blocked.remove(framework)
        {
            cache.count -= 1;
        }
    }

    /// The frameworks whose filters refuse `candidate` at `now`, and how many there are.
    pub(crate) fn blocked(&mut self, candidate: &Resources, now: u64) -> (&BitSet, usize) {
        let print = fingerprint(candidate);
        let fresh = self.cache.as_ref().is_some_and(|c| now < c.until && c.candidate == print);
        if !fresh {
            self.rebuild(candidate, print, now);
        }
        let cache = self.cache.as_ref().expect("rebuilt above");
        (&cache.blocked, cache.count)
    }

    /// Drops expired filters and recomputes the blocked set for `candidate`.
    fn rebuild(&mut self, candidate: &Resources, print: u64, now: u64) {
        let groups = &mut self.groups;
        self.entries.retain(|e| {
            let live = e.expires > now;
            if !live {
                groups[e.group as usize].1 -= 1;
            }
            live
        });
        let covers: Vec<bool> =
            groups.iter().map(|(r, uses)| *uses > 0 && r.contains(candidate)).collect();
        let mut cache = self.cache.take().unwrap_or_else(|| Cache {
            candidate: 0,
            blocked: BitSet::default(),
            count: 0,
            until: u64::MAX,
        });
        cache.blocked.clear();
        cache.count = 0;
        cache.until = u64::MAX;
        cache.candidate = print;
        for entry in &self.entries {
            if covers[entry.group as usize] {
                if cache.blocked.insert(entry.framework) {
                    cache.count += 1;
                }
                cache.until = cache.until.min(entry.expires);
            }
        }
        self.cache = Some(cache);
    }
}

fn same(a: &Entry, b: &Entry) -> bool {
    a.framework == b.framework && a.group == b.group && a.expires == b.expires
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Resources {
        Resources::parse(text).expect("test resources are valid")
    }

    fn blocked(filters: &mut RoleFilters, candidate: &str, now: u64) -> Vec<u32> {
        let (set, count) = filters.blocked(&res(candidate), now);
        let out: Vec<u32> = (0..8).filter(|i| set.contains(*i)).collect();
        assert_eq!(out.len(), count);
        out
    }

    #[test]
    fn filters_block_subsets_until_they_expire() {
        let mut f = RoleFilters::default();
        f.insert(1, &res("cpus:2;mem:100"), 50, 0);
        f.insert(2, &res("cpus:2;mem:100"), 100, 0);
        f.insert(3, &res("cpus:1"), 100, 0);
        assert_eq!(f.groups.len(), 2, "equal refusals share one copy");
        assert_eq!(blocked(&mut f, "cpus:2;mem:100", 10), [1, 2]);
        assert_eq!(blocked(&mut f, "cpus:1", 10), [1, 2, 3]);
        assert_eq!(blocked(&mut f, "cpus:3", 10), Vec::<u32>::new());
        // A filter arriving while the cache is valid joins it.
        f.insert(4, &res("cpus:3;mem:1"), 100, 10);
        assert_eq!(blocked(&mut f, "cpus:3", 10), [4]);
        assert_eq!(blocked(&mut f, "cpus:2;mem:100", 49), [1, 2]);
        assert_eq!(blocked(&mut f, "cpus:2;mem:100", 50), [2], "expiry is exclusive");
        assert_eq!(f.len(), 3, "the expired filter was dropped");
        f.remove_framework(2);
        assert_eq!(blocked(&mut f, "cpus:2;mem:100", 50), Vec::<u32>::new());
        f.remove_framework(3);
        f.remove_framework(4);
        assert!(f.is_empty());
    }

    #[test]
    fn a_framework_keeps_only_useful_filters() {
        let mut f = RoleFilters::default();
        f.insert(1, &res("cpus:2"), 100, 0);
        f.insert(1, &res("cpus:1"), 50, 0);
        assert_eq!(f.len(), 1, "smaller and shorter is covered");
        f.insert(1, &res("cpus:4"), 200, 0);
        assert_eq!(f.len(), 1, "larger and longer replaces");
        f.insert(1, &res("mem:4"), 300, 0);
        assert_eq!(f.len(), 2, "unrelated filters coexist");
        assert_eq!(blocked(&mut f, "cpus:3", 150), [1]);
        assert_eq!(blocked(&mut f, "cpus:3", 250), Vec::<u32>::new());
        assert_eq!(blocked(&mut f, "mem:1", 250), [1]);
    }
}
