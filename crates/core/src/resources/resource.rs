//! One resource entry and everything that qualifies it: the reservation stack (static, dynamic
//! and refined reservations), the disk info of persistent volumes and disk sources, and the
//! revocable and shared flags.
//!
//! The stack is the post-refinement form of reference §2.6 (empty means unreserved, the last
//! element is the current reservation); the pre-refinement wire form is a view that
//! `crate::convert` computes. [`Resource::validate`] holds the rules every entry must obey,
//! whichever way it arrived, so that the wire reader and the offer operations share one
//! definition. Arithmetic over many entries lives in `resources.rs`; wire types never appear
//! here.

use std::fmt;

use super::parse::role_problem;
use super::{UNRESERVED, Value, ValueKind};

/// Whether a reservation was made by the operator at agent start or by an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservationKind {
    /// From the agent's `--resources` (`cpus(role):4`); lasts as long as the flag says so.
    Static,
    /// Made by a RESERVE operation and checkpointed by the agent until UNRESERVE.
    Dynamic,
}

/// A key with an optional value, as in `mesos.v1.Label`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// The key (required on the wire).
    pub key: String,
    /// The value, when there is one.
    pub value: Option<String>,
}

/// A list of labels, kept sorted so that two reservations carrying the same labels in another
/// order are the same reservation (and merge).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Sorts `labels` into the canonical order; duplicates are kept, as the wire allows them.
    pub fn new(labels: impl IntoIterator<Item = Label>) -> Labels {
        let mut labels: Vec<Label> = labels.into_iter().collect();
        labels.sort();
        Labels(labels)
    }

    /// The labels in canonical order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Label> for Labels {
    fn from_iter<I: IntoIterator<Item = Label>>(iter: I) -> Labels {
        Labels::new(iter)
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, label) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match &label.value {
                Some(value) => write!(f, "{}:{value}", label.key)?,
                None => f.write_str(&label.key)?,
            }
        }
        f.write_str("}")
    }
}

/// One level of a reservation stack.
///
/// The field order is the sort order of entries in [`super::Resources`]: by role first, so that
/// printed collections read role by role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reservation {
    /// The role holding the reservation (never `*`).
    pub role: String,
    /// Static or dynamic.
    pub kind: ReservationKind,
    /// Who made a dynamic reservation, when known.
    pub principal: Option<String>,
    /// Free-form labels set by whoever reserved; part of the reservation's identity.
    pub labels: Labels,
}

impl Reservation {
    /// A static reservation for `role`.
    pub fn new_static(role: impl Into<String>) -> Reservation {
        Reservation {
            role: role.into(),
            kind: ReservationKind::Static,
            principal: None,
            labels: Labels::default(),
        }
    }

    /// A dynamic reservation for `role`, made by `principal`.
    pub fn new_dynamic(role: impl Into<String>, principal: Option<&str>) -> Reservation {
        Reservation {
            role: role.into(),
            kind: ReservationKind::Dynamic,
            principal: principal.map(str::to_string),
            labels: Labels::default(),
        }
    }

    /// The same reservation carrying `labels`.
    pub fn with_labels(mut self, labels: Labels) -> Reservation {
        self.labels = labels;
        self
    }
}

impl fmt::Display for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ReservationKind::Static => "STATIC",
            ReservationKind::Dynamic => "DYNAMIC",
        };
        write!(f, "({kind},{}", self.role)?;
        if let Some(principal) = &self.principal {
            write!(f, ",{principal}")?;
        }
        if !self.labels.is_empty() {
            write!(f, ",{}", self.labels)?;
        }
        f.write_str(")")
    }
}

/// The identity of a persistent volume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Persistence {
    /// Unique among the volumes of one agent.
    pub id: String,
    /// Who created the volume, when known.
    pub principal: Option<String>,
}

/// Whether a task may write to a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VolumeMode {
    /// Read-write, the only mode persistent volumes support.
    Rw,
    /// Read-only.
    Ro,
}

/// Where a persistent volume appears inside a container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Volume {
    /// The path in the container (relative paths are below the sandbox).
    pub container_path: String,
    /// The access mode.
    pub mode: VolumeMode,
}

/// The kind of disk a `disk` resource comes from (`DiskInfo.Source.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskSourceKind {
    /// Unspecified.
    Unknown,
    /// A directory on a shared filesystem; divisible like the root disk.
    Path,
    /// A whole mounted filesystem, used all or nothing.
    Mount,
    /// A whole block device.
    Block,
    /// A raw device.
    Raw,
}

/// The disk behind a `disk` resource other than the agent's work directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskSource {
    /// Which kind of disk.
    pub kind: DiskSourceKind,
    /// The directory (`path.root` or `mount.root` on the wire, per `kind`).
    pub root: Option<String>,
    /// A resource provider's identifier of the disk.
    pub id: Option<String>,
    /// A resource provider's metadata about the disk.
    pub metadata: Labels,
    /// The storage profile.
    pub profile: Option<String>,
    /// The storage vendor.
    pub vendor: Option<String>,
}

/// What makes a `disk` resource more than a quantity.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskInfo {
    /// Set on persistent volumes.
    pub persistence: Option<Persistence>,
    /// Set on persistent volumes (required with `persistence`).
    pub volume: Option<Volume>,
    /// Set on disks other than the work directory.
    pub source: Option<DiskSource>,
}

impl DiskInfo {
    /// The disk info of a read-write persistent volume.
    pub fn persistent_volume(
        id: impl Into<String>,
        principal: Option<&str>,
        container_path: impl Into<String>,
    ) -> DiskInfo {
        DiskInfo {
            persistence: Some(Persistence {
                id: id.into(),
                principal: principal.map(str::to_string),
            }),
            volume: Some(Volume { container_path: container_path.into(), mode: VolumeMode::Rw }),
            source: None,
        }
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.persistence.is_none() && self.volume.is_none() && self.source.is_none()
    }
}

impl fmt::Display for DiskInfo {
    /// `[MOUNT:/mnt/a,id:container_path]`; the parts that are absent are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        if let Some(source) = &self.source {
            let kind = match source.kind {
                DiskSourceKind::Unknown => "UNKNOWN",
                DiskSourceKind::Path => "PATH",
                DiskSourceKind::Mount => "MOUNT",
                DiskSourceKind::Block => "BLOCK",
                DiskSourceKind::Raw => "RAW",
            };
            f.write_str(kind)?;
            if let Some(root) = &source.root {
                write!(f, ":{root}")?;
            }
            if self.persistence.is_some() {
                f.write_str(",")?;
            }
        }
        if let Some(persistence) = &self.persistence {
            f.write_str(&persistence.id)?;
            if let Some(volume) = &self.volume {
                write!(f, ":{}", volume.container_path)?;
                if volume.mode == VolumeMode::Ro {
                    f.write_str(":RO")?;
                }
            }
        }
        f.write_str("]")
    }
}

/// Why a resource entry breaks the rules of reservations, volumes or flags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResource {
    /// A reservation names an invalid role (or `*`, which means unreserved).
    #[error("invalid reservation role '{role}': {reason}")]
    BadRole {
        /// The role as given.
        role: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Only the first reservation of a stack may be static.
    #[error("invalid refined reservation: a refined reservation (role '{role}') cannot be STATIC")]
    StaticRefinement {
        /// The role of the offending reservation.
        role: String,
    },
    /// Each reservation after the first must be for a child role of the one before.
    #[error("invalid refined reservation: role '{child}' is not a refinement of '{parent}'")]
    NotARefinement {
        /// The role of the previous reservation.
        parent: String,
        /// The role that should have been below it.
        child: String,
    },
    /// Disk info on something other than `disk`.
    #[error("DiskInfo should not be set for '{name}' resource")]
    DiskInfoOnNonDisk {
        /// The resource name.
        name: String,
    },
    /// Disk info with nothing in it.
    #[error("DiskInfo is set but empty")]
    EmptyDiskInfo,
    /// A volume that is not persistent.
    #[error("non-persistent volume not supported")]
    VolumeWithoutPersistence,
    /// Persistence without the volume that says where to mount it.
    #[error("expecting 'volume' to be set for persistent volume")]
    PersistenceWithoutVolume,
    /// A persistence id that cannot name a directory.
    #[error("persistence ID '{id}' is invalid: {reason}")]
    BadPersistenceId {
        /// The id as given.
        id: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A container path that is empty or climbs out of its parent.
    #[error(
        "invalid container_path '{0}' for persistent volume: it must be non-empty and free of '..'"
    )]
    BadContainerPath(String),
    /// Volumes stay on their disk, so they cannot be offered to everyone.
    #[error("persistent volumes cannot be created from unreserved resources")]
    UnreservedVolume,
    /// Revocable resources can vanish, which neither reservations nor volumes can survive.
    #[error("{what} cannot be created from revocable resources")]
    Revocable {
        /// "dynamically reserved resources" or "persistent volumes".
        what: &'static str,
    },
    /// Sharing only means something for volumes.
    #[error("only persistent volumes can be shared")]
    SharedNotVolume,
}

/// One named resource value with its reservations, disk info and flags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The resource name (`cpus`, `mem`, `ports`, ...).
    pub name: String,
    /// The reservation stack: empty when unreserved, the current reservation last.
    pub reservations: Vec<Reservation>,
    /// Set for persistent volumes and disks with a source (boxed: most entries have none,
    /// and entries are copied around a lot).
    pub disk: Option<Box<DiskInfo>>,
    /// Revocable (oversubscribed) resources may be taken back at any time.
    pub revocable: bool,
    /// Shared persistent volumes may be used by several tasks at once.
    pub shared: bool,
    /// The amount.
    pub value: Value,
}

/// The identity under which two entries merge: everything but the amount.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key<'a> {
    name: &'a str,
    reservations: &'a [Reservation],
    disk: Option<&'a DiskInfo>,
    revocable: bool,
    shared: bool,
    kind: ValueKind,
}

impl Resource {
    /// A resource statically reserved for `role`, or unreserved when `role` is
    /// [`UNRESERVED`].
    pub fn new(name: impl Into<String>, role: impl Into<String>, value: Value) -> Resource {
        let role = role.into();
        let reservations =
            if role == UNRESERVED { Vec::new() } else { vec![Reservation::new_static(role)] };
        Resource {
            name: name.into(),
            reservations,
            disk: None,
            revocable: false,
            shared: false,
            value,
        }
    }

    /// The same resource with `reservation` pushed on top of its stack.
    pub fn pushed(mut self, reservation: Reservation) -> Resource {
        self.reservations.push(reservation);
        self
    }

    /// The same resource with its current reservation removed, or `None` when unreserved.
    pub fn popped(&self) -> Option<Resource> {
        let mut out = self.clone();
        out.reservations.pop()?;
        Some(out)
    }

    /// The same resource with `disk` as its disk info.
    pub fn with_disk(mut self, disk: DiskInfo) -> Resource {
        self.disk = Some(Box::new(disk));
        self
    }

    /// The disk this volume was created from: the same resource without persistence and
    /// volume (a disk source stays).
    pub fn without_volume(&self) -> Resource {
        let mut out = self.clone();
        if let Some(disk) = &mut out.disk {
            disk.persistence = None;
            disk.volume = None;
            if disk.is_empty() {
                out.disk = None;
            }
        }
        out.shared = false;
        out
    }

    /// The role of the current reservation, or [`UNRESERVED`].
    pub fn role(&self) -> &str {
        self.reservations.last().map_or(UNRESERVED, |r| r.role.as_str())
    }

    /// The current (last) reservation.
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservations.last()
    }

    /// True when some role holds a reservation.
    pub fn is_reserved(&self) -> bool {
        !self.reservations.is_empty()
    }

    /// True when the current reservation is dynamic (UNRESERVE can pop it).
    pub fn is_dynamically_reserved(&self) -> bool {
        self.reservation().is_some_and(|r| r.kind == ReservationKind::Dynamic)
    }

    /// True for more than one reservation level: frameworks without RESERVATION_REFINEMENT
    /// cannot read such a resource and are never offered it.
    pub fn is_refined(&self) -> bool {
        self.reservations.len() > 1
    }

    /// The persistence id when this is a persistent volume.
    pub fn persistence_id(&self) -> Option<&str> {
        self.disk.as_ref()?.persistence.as_ref().map(|p| p.id.as_str())
    }

    /// True for persistent volumes.
    pub fn is_persistent_volume(&self) -> bool {
        self.persistence_id().is_some()
    }

    /// True when the entry can only be used whole: persistent volumes, and disks whose
    /// source is a mounted filesystem or a device.
    pub fn is_indivisible(&self) -> bool {
        self.is_persistent_volume()
            || self.disk.as_ref().and_then(|d| d.source.as_ref()).is_some_and(|s| {
                matches!(
                    s.kind,
                    DiskSourceKind::Mount | DiskSourceKind::Block | DiskSourceKind::Raw
                )
            })
    }

    /// True for what the agent must checkpoint because it outlives a restart with other
    /// flags: dynamic reservations and persistent volumes.
    pub fn needs_checkpointing(&self) -> bool {
        self.is_dynamically_reserved() || self.is_persistent_volume()
    }

    pub(super) fn key(&self) -> Key<'_> {
        Key {
            name: &self.name,
            reservations: &self.reservations,
            disk: self.disk.as_deref(),
            revocable: self.revocable,
            shared: self.shared,
            kind: self.value.kind(),
        }
    }

    /// Checks the rules of reference §2.5–2.6 that do not depend on context: a well-formed
    /// reservation stack, coherent disk info, and flags only where they mean something.
    pub fn validate(&self) -> Result<(), InvalidResource> {
        self.validate_reservations()?;
        if let Some(disk) = &self.disk {
            self.validate_disk(disk)?;
        }
        if self.shared && !self.is_persistent_volume() {
            return Err(InvalidResource::SharedNotVolume);
        }
        if self.revocable {
            if self.is_persistent_volume() {
                return Err(InvalidResource::Revocable { what: "persistent volumes" });
            }
            if self.reservations.iter().any(|r| r.kind == ReservationKind::Dynamic) {
                return Err(InvalidResource::Revocable { what: "dynamically reserved resources" });
            }
        }
        Ok(())
    }

    fn validate_reservations(&self) -> Result<(), InvalidResource> {
        let mut parent: Option<&str> = None;
        for reservation in &self.reservations {
            let role = &reservation.role;
            let reason = if role == UNRESERVED {
                Some("'*' means unreserved and cannot hold a reservation")
            } else {
                role_problem(role)
            };
            if let Some(reason) = reason {
                return Err(InvalidResource::BadRole { role: role.clone(), reason });
            }
            if let Some(parent) = parent {
                if reservation.kind == ReservationKind::Static {
                    return Err(InvalidResource::StaticRefinement { role: role.clone() });
                }
                if !super::is_strict_subrole(role, parent) {
                    return Err(InvalidResource::NotARefinement {
                        parent: parent.to_string(),
                        child: role.clone(),
                    });
                }
            }
            parent = Some(role);
        }
        Ok(())
    }

    fn validate_disk(&self, disk: &DiskInfo) -> Result<(), InvalidResource> {
        if self.name != "disk" {
            return Err(InvalidResource::DiskInfoOnNonDisk { name: self.name.clone() });
        }
        match (&disk.persistence, &disk.volume) {
            (None, None) if disk.source.is_none() => Err(InvalidResource::EmptyDiskInfo),
            (None, None) => Ok(()),
            (None, Some(_)) => Err(InvalidResource::VolumeWithoutPersistence),
            (Some(_), None) => Err(InvalidResource::PersistenceWithoutVolume),
            (Some(persistence), Some(volume)) => {
                crate::ids::validate_id(&persistence.id).map_err(|reason| {
                    InvalidResource::BadPersistenceId { id: persistence.id.clone(), reason }
                })?;
                let path = &volume.container_path;
                if path.is_empty() || path.split('/').any(|part| part == "..") {
                    return Err(InvalidResource::BadContainerPath(path.clone()));
                }
                if !self.is_reserved() {
                    return Err(InvalidResource::UnreservedVolume);
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Resource {
    /// `cpus:4` and `cpus(role):4` for what the `--resources` syntax can express (and parse
    /// back); otherwise every reservation, the disk info and the flags are spelled out, e.g.
    /// `disk(reservations: [(STATIC,eng),(DYNAMIC,eng/db,alice)])[v1:data]:100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match self.reservations.as_slice() {
            [] => {}
            [only] if only.kind == ReservationKind::Static => write!(f, "({})", only.role)?,
            stack => {
                f.write_str("(reservations: [")?;
                for (i, reservation) in stack.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    reservation.fmt(f)?;
                }
                f.write_str("])")?;
            }
        }
        if let Some(disk) = &self.disk {
            disk.fmt(f)?;
        }
        if self.revocable {
            f.write_str("{REV}")?;
        }
        if self.shared {
            f.write_str("<SHARED>")?;
        }
        write!(f, ":{}", self.value)
    }
}
