//! The master's maps of agents and frameworks, which forget an entry's cached operator view
//! whenever the entry is borrowed mutably, and the cache itself.
//!
//! A snapshot of a large master (`Master::state_view`) should copy a pointer per agent and per
//! framework, not rebuild 20,000 agents' resources; so each entry keeps its wire view once
//! built. The risk of such a cache is a change that forgets to invalidate it. Here the map
//! hands out `&mut` only through methods that invalidate first (reading goes through `Deref`),
//! so no code path of the core can change an agent or a framework and keep its old view; the
//! compiler rejects any other mutable access. What an entry's view also shows but the entry
//! does not own (an agent's allocation, held by the allocator) is checked by the stamp the
//! cache is built with. This module does not build views: `view.rs` does.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

/// A value whose cached view must be forgotten when it changes.
pub(super) trait Viewed {
    fn changed(&mut self);
}

/// A view built on demand from a shared borrow and kept until its owner changes (`clear`) or
/// the stamp it was built with no longer matches. The lock is only ever taken by the one
/// thread that holds the master, so it is never contended; it is there because building
/// happens through `&self`.
#[derive(Debug)]
pub(super) struct Cached<T, S = u64> {
    slot: Mutex<Option<(S, Arc<T>)>>,
}

impl<T, S> Default for Cached<T, S> {
    fn default() -> Self {
        Cached { slot: Mutex::new(None) }
    }
}

impl<T: Clone, S: PartialEq> Cached<T, S> {
    /// The view built with `stamp`: the cached one, or one `build` makes now if there is none,
    /// or, if only the stamp changed (the owner did not: `clear` would have dropped the view),
    /// the stale one brought up to date by `refresh`, which must redo everything the stamp
    /// covers. A stale view no snapshot holds any more is refreshed in place; one still held
    /// is copied first, so that what a snapshot holds never changes under it.
    pub(super) fn get(
        &self,
        stamp: S,
        build: impl FnOnce() -> T,
        refresh: impl FnOnce(&mut T),
    ) -> Arc<T> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *slot {
            Some((built, view)) if *built == stamp => Arc::clone(view),
            Some((built, view)) => {
                refresh(Arc::make_mut(view));
                *built = stamp;
                Arc::clone(view)
            }
            None => {
                let view = Arc::new(build());
                *slot = Some((stamp, Arc::clone(&view)));
                view
            }
        }
    }

    /// Forgets the view.
    pub(super) fn clear(&mut self) {
        *self.slot.get_mut().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Entries by id; every mutable access forgets the entry's view first.
#[derive(Debug)]
pub(super) struct Shown<V>(BTreeMap<String, V>);

impl<V> Default for Shown<V> {
    fn default() -> Self {
        Shown(BTreeMap::new())
    }
}

impl<V> Deref for Shown<V> {
    type Target = BTreeMap<String, V>;

    fn deref(&self) -> &BTreeMap<String, V> {
        &self.0
    }
}

impl<V: Viewed> Shown<V> {
    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut V> {
        let entry = self.0.get_mut(id)?;
        entry.changed();
        Some(entry)
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        for v in self.0.values_mut() {
            v.changed();
        }
        self.0.values_mut()
    }

    /// Mutable access to every entry for changes of fields its view does not show (an agent's
    /// ping bookkeeping), which would otherwise throw every view away on every ping tick.
    pub(super) fn values_mut_unshown(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.values_mut()
    }

    /// [`Shown::values_mut_unshown`] for one entry.
    pub(super) fn get_mut_unshown(&mut self, id: &str) -> Option<&mut V> {
        self.0.get_mut(id)
    }

    pub(super) fn insert(&mut self, id: String, value: V) -> Option<V> {
        self.0.insert(id, value)
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<V> {
        self.0.remove(id)
    }
}
