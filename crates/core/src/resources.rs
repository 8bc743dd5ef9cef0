//! Resource domain types and their arithmetic: what an agent has, what a framework holds.
//!
//! A [`Resources`] value is a normalized bag of named quantities (scalars such as `cpus`, range
//! lists such as `ports`, string sets). Each entry carries a reservation stack (unreserved,
//! static, dynamic, or refined for child roles), optional disk info (persistent volumes, disk
//! sources) and the revocable and shared flags; entries merge only when all of those are equal,
//! and persistent volumes and whole-disk sources are used all or nothing. The allocator, the
//! master and the offer operations (`crate::operations`) do their bookkeeping with `+`, `-`,
//! `contains` and the role filters. The text syntax of `--resources`
//! (`cpus:4;mem(ads):1024;ports:[31000-32000]`) is parsed in `resources/parse.rs` and printed by
//! `Display`; one entry and its rules live in `resources/resource.rs`.
//!
//! Deliberately absent: the counting of shared volumes (a shared volume is kept apart from
//! other entries but counted like an exclusive one), resource providers, and every conversion
//! to or from `agora-proto` (`crate::convert` owns that boundary, so this module stays free of
//! wire types).

mod parse;
mod ranges;
mod resource;
mod scalar;
mod tally;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

pub use parse::{ParseError, RangeProblem, ResourceProblem, ValueProblem};
pub(crate) use parse::{TextValueError, parse_ranges_text};
pub use ranges::{InvertedRange, Ranges};
pub use resource::{
    DiskInfo, DiskSource, DiskSourceKind, InvalidResource, Label, Labels, Persistence, Reservation,
    ReservationKind, Resource, Volume, VolumeMode,
};
pub use scalar::Scalar;
pub use tally::Tally;

/// The role of unreserved resources.
pub const UNRESERVED: &str = "*";

/// A set of strings, the third value type of resources.
pub type Set = BTreeSet<String>;

/// The value of one resource entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A fixed-point quantity (`cpus:1.5`).
    Scalar(Scalar),
    /// Inclusive integer intervals (`ports:[31000-32000]`).
    Ranges(Ranges),
    /// Distinct strings (`disks:{sda,sdb}`).
    Set(Set),
}

/// Which variant a [`Value`] is; one resource name keeps one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueKind {
    /// [`Value::Scalar`].
    Scalar,
    /// [`Value::Ranges`].
    Ranges,
    /// [`Value::Set`].
    Set,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Scalar => "a scalar",
            ValueKind::Ranges => "ranges",
            ValueKind::Set => "a set",
        })
    }
}

impl Value {
    /// The variant of this value.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Scalar(_) => ValueKind::Scalar,
            Value::Ranges(_) => ValueKind::Ranges,
            Value::Set(_) => ValueKind::Set,
        }
    }

    /// True for a zero (or negative) scalar, empty ranges or an empty set: such entries are
    /// dropped from [`Resources`] so that equality never depends on leftover zeros.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(s) => !s.is_positive(),
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }

    /// How much of the resource this is: the scalar itself, or the number of range or set items.
    pub fn quantity(&self) -> Scalar {
        match self {
            Value::Scalar(s) => *s,
            Value::Ranges(r) => Scalar::from_int(i64::try_from(r.len()).unwrap_or(i64::MAX)),
            Value::Set(s) => Scalar::from_int(i64::try_from(s.len()).unwrap_or(i64::MAX)),
        }
    }

    /// Adds `other` into `self`; values of different kinds are left alone and reported.
    fn merge(&mut self, other: &Value) -> bool {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => *a += *b,
            (Value::Ranges(a), Value::Ranges(b)) => *a = a.union(b),
            (Value::Set(a), Value::Set(b)) => a.extend(b.iter().cloned()),
            _ => return false,
        }
        true
    }

    /// Removes what `other` holds from `self`, stopping at zero.
    fn remove(&mut self, other: &Value) {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => *a = a.saturating_sub_to_zero(*b),
            (Value::Ranges(a), Value::Ranges(b)) => *a = a.difference(b),
            (Value::Set(a), Value::Set(b)) => a.retain(|item| !b.contains(item)),
            _ => {}
        }
    }

    /// True when `self` holds at least everything `other` holds (same kind only).
    pub fn contains(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => a >= b,
            (Value::Ranges(a), Value::Ranges(b)) => a.contains(b),
            (Value::Set(a), Value::Set(b)) => a.is_superset(b),
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(s) => s.fmt(f),
            Value::Ranges(r) => r.fmt(f),
            Value::Set(items) => {
                f.write_str("{")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(item)?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A resource name that [`Resources::push`] refused because the collection already holds it
/// with another value type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource '{name}' is {existing} and cannot also be {new}")]
pub struct TypeConflict {
    /// The resource name.
    pub name: String,
    /// The kind already present.
    pub existing: ValueKind,
    /// The kind that was pushed.
    pub new: ValueKind,
}

/// A normalized collection of resources.
///
/// Invariants: entries are sorted by their identity (name, reservation stack, disk info, flags,
/// kind), no two share an identity, and no entry is empty. Input that went through
/// [`Resources::parse`] or [`Resources::push`] also keeps one kind per name; adding two
/// collections that disagree on a kind keeps both entries rather than losing one, so
/// arithmetic never fails. Adding the same persistent volume twice (which an agent's
/// consistent bookkeeping never does) adds up its size like any other entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    entries: Vec<Resource>,
}

impl Resources {
    /// No resources.
    pub const fn new() -> Resources {
        Resources { entries: Vec::new() }
    }

    /// Parses the `--resources` text syntax (`cpus:4;mem(ads):1024;ports:[31000-32000]`).
    pub fn parse(text: &str) -> Result<Resources, ParseError> {
        parse::parse_resources(text)
    }

    /// The entries in (name, reservations, disk info, flags, kind) order.
    pub fn iter(&self) -> std::slice::Iter<'_, Resource> {
        self.entries.iter()
    }

    /// True when there is nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where an entry with this key is, or would be inserted.
    fn position(&self, resource: &Resource) -> Result<usize, usize> {
        let key = resource.key();
        self.entries.binary_search_by(|entry| entry.key().cmp(&key))
    }

    /// Adds one entry, merging it with an entry of the same key.
    fn insert(&mut self, resource: &Resource) {
        if resource.value.is_empty() {
            return;
        }
        match self.position(resource) {
            Ok(idx) => {
                let merged = self.entries[idx].value.merge(&resource.value);
                debug_assert!(merged, "entries with equal keys have equal kinds");
            }
            Err(idx) => self.entries.insert(idx, resource.clone()),
        }
    }

    /// The kind this collection already uses for `name`, if any.
    pub fn kind_of(&self, name: &str) -> Option<ValueKind> {
        self.entries.iter().find(|entry| entry.name == name).map(|entry| entry.value.kind())
    }

    /// Adds one resource, refusing a value type that differs from the one already used for
    /// that name (wire input must be checked this way; the text parser does it too).
    pub fn push(&mut self, resource: Resource) -> Result<(), TypeConflict> {
        if let Some(existing) = self.kind_of(&resource.name)
            && existing != resource.value.kind()
        {
            return Err(TypeConflict { name: resource.name, existing, new: resource.value.kind() });
        }
        self.insert(&resource);
        Ok(())
    }

    /// Adds everything in `other`.
    pub fn add(&mut self, other: &Resources) {
        for resource in &other.entries {
            self.insert(resource);
        }
    }

    /// Removes what `other` holds, entry by entry, ignoring whatever is not there. A part of
    /// an indivisible entry (a persistent volume, a mounted disk) counts as "not there": such
    /// an entry goes only as a whole.
    pub fn remove(&mut self, other: &Resources) {
        for resource in &other.entries {
            self.remove_one(resource);
        }
    }

    /// [`Resources::remove`] of one entry.
    fn remove_one(&mut self, resource: &Resource) {
        let Ok(idx) = self.position(resource) else { return };
        let entry = &mut self.entries[idx];
        if entry.is_indivisible() {
            if entry.value == resource.value {
                self.entries.remove(idx);
            }
            return;
        }
        entry.value.remove(&resource.value);
        if entry.value.is_empty() {
            self.entries.remove(idx);
        }
    }

    /// `self - other` when `self` contains `other`, else `None`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        if !self.contains(other) {
            return None;
        }
        let mut out = self.clone();
        out.remove(other);
        Some(out)
    }

    /// True when `self` holds at least `other`, entry identity by entry identity: reserved
    /// resources never stand in for unreserved ones or for another reservation, and an
    /// indivisible entry (a persistent volume, a mounted disk) contains only itself, whole.
    pub fn contains(&self, other: &Resources) -> bool {
        other.entries.iter().all(|resource| match self.position(resource) {
            Ok(idx) if self.entries[idx].is_indivisible() => {
                self.entries[idx].value == resource.value
            }
            Ok(idx) => self.entries[idx].value.contains(&resource.value),
            Err(_) => false,
        })
    }

    /// The sum of the scalar `name` over all roles (zero when absent).
    pub fn scalar(&self, name: &str) -> Scalar {
        self.entries
            .iter()
            .filter(|entry| entry.name == name)
            .filter_map(|entry| match entry.value {
                Value::Scalar(s) => Some(s),
                _ => None,
            })
            .sum()
    }

    /// All `cpus`, over all roles.
    pub fn cpus(&self) -> Scalar {
        self.scalar("cpus")
    }

    /// All `mem` in MB, over all roles.
    pub fn mem(&self) -> Scalar {
        self.scalar("mem")
    }

    /// All `disk` in MB, over all roles.
    pub fn disk(&self) -> Scalar {
        self.scalar("disk")
    }

    /// All `ports`, over all roles.
    pub fn ports(&self) -> Ranges {
        self.entries.iter().filter(|entry| entry.name == "ports").fold(
            Ranges::new(),
            |acc, entry| match &entry.value {
                Value::Ranges(r) => acc.union(r),
                _ => acc,
            },
        )
    }

    /// The entries that pass `keep` (a sub-collection keeps the invariants).
    pub fn filter(&self, keep: impl Fn(&Resource) -> bool) -> Resources {
        Resources { entries: self.entries.iter().filter(|e| keep(e)).cloned().collect() }
    }

    /// The resources whose current reservation is for exactly `role`.
    pub fn reserved(&self, role: &str) -> Resources {
        self.filter(|r| r.is_reserved() && r.role() == role)
    }

    /// The unreserved resources.
    pub fn unreserved(&self) -> Resources {
        self.filter(|r| !r.is_reserved())
    }

    /// What a framework in `role` may be offered: unreserved resources plus those reserved
    /// for `role` or for one of its ancestors (hierarchical roles: `eng` reservations serve
    /// `eng/web`). Refined reservations for a child role are not the parent's.
    pub fn allocatable_to(&self, role: &str) -> Resources {
        self.filter(|r| !r.is_reserved() || r.role() == role || is_strict_subrole(role, r.role()))
    }

    /// The persistent volumes.
    pub fn persistent_volumes(&self) -> Resources {
        self.filter(Resource::is_persistent_volume)
    }

    /// What an agent must checkpoint: dynamically reserved resources and persistent volumes.
    pub fn checkpointed(&self) -> Resources {
        self.filter(Resource::needs_checkpointing)
    }

    /// The entries a framework without RESERVATION_REFINEMENT may see: at most one
    /// reservation level.
    pub fn without_refinements(&self) -> Resources {
        self.filter(|r| !r.is_refined())
    }

    /// The persistence ids of the persistent volumes.
    pub fn persistence_ids(&self) -> BTreeSet<&str> {
        self.entries.iter().filter_map(Resource::persistence_id).collect()
    }

    /// The quantity of `name` over all roles; range and set items count one each.
    pub fn quantity(&self, name: &str) -> Scalar {
        self.entries.iter().filter(|e| e.name == name).map(|e| e.value.quantity()).sum()
    }

    /// Every name with its quantity over all roles.
    pub fn quantities(&self) -> BTreeMap<String, Scalar> {
        let mut out: BTreeMap<String, Scalar> = BTreeMap::new();
        for entry in &self.entries {
            *out.entry(entry.name.clone()).or_default() += entry.value.quantity();
        }
        out
    }

    /// True when, for every name of `required`, `self` has at least that quantity regardless
    /// of roles and of which range or set items: the `min_allocatable_resources` test.
    pub fn contains_quantities(&self, required: &Resources) -> bool {
        required.quantities().iter().all(|(name, needed)| self.quantity(name) >= *needed)
    }

    /// Adds the entries of `detected` whose names `self` does not mention at all, so that an
    /// operator's `--resources` overrides auto-detection name by name.
    pub fn with_defaults(mut self, detected: &Resources) -> Resources {
        let given: BTreeSet<String> = self.entries.iter().map(|e| e.name.clone()).collect();
        for entry in &detected.entries {
            if !given.contains(&entry.name) {
                self.insert(entry);
            }
        }
        self
    }
}

/// True when `role` lies strictly below `ancestor` in the role tree (`eng/web/api` below `eng`
/// and `eng/web`); `*` is nobody's ancestor.
pub fn is_strict_subrole(role: &str, ancestor: &str) -> bool {
    ancestor != UNRESERVED && role.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('/'))
}

/// The resources an agent offers when the operator does not name them.
///
/// `0` for a total means "could not be detected" and selects the documented fallback (1 CPU,
/// 1024 MB of memory, 10240 MB of disk). Memory keeps 1 GB for the system when the machine has
/// at least 2 GB, otherwise half; disk keeps 5 GB when the filesystem has at least 10 GB,
/// otherwise half. Ports are always `[31000-32000]`.
pub fn default_agent_resources(cpus: usize, mem_total_mb: u64, disk_total_mb: u64) -> Resources {
    let cpus = if cpus == 0 { 1 } else { cpus };
    let mem = match mem_total_mb {
        0 => 1024,
        total if total >= 2048 => total - 1024,
        total => total / 2,
    };
    let disk = match disk_total_mb {
        0 => 10240,
        total if total >= 10240 => total - 5120,
        total => total / 2,
    };
    let whole = |n: u64| Value::Scalar(Scalar::from_int(i64::try_from(n).unwrap_or(i64::MAX)));
    let mut out = Resources::new();
    for resource in [
        Resource::new("cpus", UNRESERVED, whole(cpus as u64)),
        Resource::new("mem", UNRESERVED, whole(mem)),
        Resource::new("disk", UNRESERVED, whole(disk)),
        Resource::new("ports", UNRESERVED, Value::Ranges(Ranges::interval(31000, 32000))),
    ] {
        out.insert(&resource);
    }
    out
}

impl From<Resource> for Resources {
    /// A collection of one entry (none when the value is empty).
    fn from(resource: Resource) -> Resources {
        let mut out = Resources::new();
        out.insert(&resource);
        out
    }
}

impl FromIterator<Resource> for Resources {
    /// Adds up the entries. Unlike [`Resources::push`] this does not refuse a second value
    /// type for a name, exactly like `+`; wire input goes through `push`.
    fn from_iter<I: IntoIterator<Item = Resource>>(iter: I) -> Resources {
        let mut out = Resources::new();
        for resource in iter {
            out.insert(&resource);
        }
        out
    }
}

impl<'a> IntoIterator for &'a Resources {
    type Item = &'a Resource;
    type IntoIter = std::slice::Iter<'a, Resource>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Display for Resources {
    /// Prints the text syntax that [`Resources::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            entry.fmt(f)?;
        }
        Ok(())
    }
}

impl FromStr for Resources {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Resources, ParseError> {
        Resources::parse(text)
    }
}

impl AddAssign<&Resources> for Resources {
    fn add_assign(&mut self, rhs: &Resources) {
        self.add(rhs);
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, rhs: Resources) {
        self.add(&rhs);
    }
}

impl Add<&Resources> for Resources {
    type Output = Resources;
    fn add(mut self, rhs: &Resources) -> Resources {
        Resources::add(&mut self, rhs);
        self
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, rhs: Resources) -> Resources {
        self + &rhs
    }
}

impl Add for &Resources {
    type Output = Resources;
    fn add(self, rhs: &Resources) -> Resources {
        self.clone() + rhs
    }
}

/// Saturating: removes what is there and ignores the rest (see [`Resources::checked_sub`]).
impl SubAssign<&Resources> for Resources {
    fn sub_assign(&mut self, rhs: &Resources) {
        self.remove(rhs);
    }
}

impl SubAssign for Resources {
    fn sub_assign(&mut self, rhs: Resources) {
        self.remove(&rhs);
    }
}

impl Sub<&Resources> for Resources {
    type Output = Resources;
    fn sub(mut self, rhs: &Resources) -> Resources {
        self.remove(rhs);
        self
    }
}

impl Sub for Resources {
    type Output = Resources;
    fn sub(self, rhs: Resources) -> Resources {
        self - &rhs
    }
}

impl Sub for &Resources {
    type Output = Resources;
    fn sub(self, rhs: &Resources) -> Resources {
        self.clone() - rhs
    }
}

#[cfg(test)]
mod tests;
