//! Resource domain types and their arithmetic: what an agent has, what a framework holds.
//!
//! A [`Resources`] value is a normalized bag of named quantities (scalars such as `cpus`, range
//! lists such as `ports`, string sets), each unreserved (role `*`) or statically reserved for one
//! role. The allocator and the master do all their bookkeeping with `+`, `-`, `contains` and
//! `allocatable_to`. The text syntax of `--resources` (`cpus:4;mem(ads):1024;ports:[31000-32000]`)
//! is parsed in `resources/parse.rs` and printed by `Display`.
//!
//! Deliberately absent for now: dynamic and refined reservations, persistent volumes, disk
//! sources, revocable and shared resources, and every conversion to or from `agora-proto`
//! (the master owns that boundary so that this module stays free of wire types).

mod parse;
mod ranges;
mod scalar;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

pub use parse::{ParseError, RangeProblem, ResourceProblem, ValueProblem};
pub(crate) use parse::{TextValueError, parse_ranges_text};
pub use ranges::{InvertedRange, Ranges};
pub use scalar::Scalar;

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

/// One named, possibly reserved, resource value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The resource name (`cpus`, `mem`, `ports`, ...).
    pub name: String,
    /// [`UNRESERVED`] (`*`), or the role holding a static reservation.
    pub role: String,
    /// The amount.
    pub value: Value,
}

impl Resource {
    /// A resource reserved for `role` (pass [`UNRESERVED`] for none).
    pub fn new(name: impl Into<String>, role: impl Into<String>, value: Value) -> Resource {
        Resource { name: name.into(), role: role.into(), value }
    }

    /// True unless the role is [`UNRESERVED`].
    pub fn is_reserved(&self) -> bool {
        self.role != UNRESERVED
    }

    /// The identity under which entries merge: equal keys add up.
    fn key(&self) -> (&str, &str, ValueKind) {
        (&self.name, &self.role, self.value.kind())
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_reserved() {
            write!(f, "{}({}):{}", self.name, self.role, self.value)
        } else {
            write!(f, "{}:{}", self.name, self.value)
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
/// Invariants: entries are sorted by (name, role, kind), no two share that key, and no entry is
/// empty. Input that went through [`Resources::parse`] or [`Resources::push`] also keeps one
/// kind per name; adding two collections that disagree on a kind keeps both entries rather
/// than losing one, so arithmetic never fails.
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

    /// The entries in (name, role, kind) order.
    pub fn iter(&self) -> std::slice::Iter<'_, Resource> {
        self.entries.iter()
    }

    /// True when there is nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where an entry with this key is, or would be inserted.
    fn position(&self, key: (&str, &str, ValueKind)) -> Result<usize, usize> {
        self.entries.binary_search_by(|entry| entry.key().cmp(&key))
    }

    /// Adds one entry, merging it with an entry of the same key.
    fn insert(&mut self, resource: &Resource) {
        if resource.value.is_empty() {
            return;
        }
        match self.position(resource.key()) {
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

    /// Removes what `other` holds, entry by entry, ignoring whatever is not there.
    pub fn remove(&mut self, other: &Resources) {
        for resource in &other.entries {
            if let Ok(idx) = self.position(resource.key()) {
                self.entries[idx].value.remove(&resource.value);
                if self.entries[idx].value.is_empty() {
                    self.entries.remove(idx);
                }
            }
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

    /// True when `self` holds at least `other`, per (name, role): reserved resources never
    /// stand in for unreserved ones or for another role's.
    pub fn contains(&self, other: &Resources) -> bool {
        other.entries.iter().all(|resource| match self.position(resource.key()) {
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

    /// The entries whose role passes `keep`.
    fn filter_roles(&self, keep: impl Fn(&str) -> bool) -> Resources {
        Resources { entries: self.entries.iter().filter(|e| keep(&e.role)).cloned().collect() }
    }

    /// The resources reserved for exactly `role`.
    pub fn reserved(&self, role: &str) -> Resources {
        self.filter_roles(|r| r == role)
    }

    /// The unreserved resources.
    pub fn unreserved(&self) -> Resources {
        self.filter_roles(|r| r == UNRESERVED)
    }

    /// What a framework in `role` may be offered: unreserved resources plus the reservations
    /// of `role` and of its ancestors (a framework of `eng/web` may use what is reserved for
    /// `eng`, as with Mesos's hierarchical roles).
    pub fn allocatable_to(&self, role: &str) -> Resources {
        self.filter_roles(|r| {
            r == UNRESERVED
                || r == role
                || role.strip_prefix(r).is_some_and(|rest| rest.starts_with('/'))
        })
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
