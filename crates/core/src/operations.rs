//! The offer operations that change resources rather than use them (RESERVE, UNRESERVE,
//! CREATE, DESTROY) and the consumption of offered resources by LAUNCH, as pure functions.
//!
//! Each operation takes what is left of an offer, checks the rules of reference §2.7 and of
//! Mesos's operation validation, and returns the new offered resources together with a
//! [`Conversion`]: what was consumed and what replaced it, which is exactly what the master
//! must apply to the agent's total, persist (the checkpointed part: dynamic reservations and
//! persistent volumes) and send to the agent. Operations in one ACCEPT apply in order;
//! [`OfferSession`] threads the remaining offer and the agent's total through a sequence so
//! that RESERVE, CREATE and LAUNCH on the result work in a single call. A failing operation
//! changes nothing, so the caller may report it and go on with the next one.
//!
//! Deliberately absent: wire types (`crate::convert::operation_from_proto` builds an
//! [`Operation`]), authorization (ACLs), RESERVE with an explicit `source`, GROW/SHRINK_VOLUME
//! and the CREATE/DESTROY_DISK operations of resource providers, and any master state.

use std::collections::BTreeSet;
use std::fmt;

use crate::resources::{InvalidResource, ReservationKind, Resource, Resources, VolumeMode};

/// A resource-changing offer operation, already converted from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Push a dynamic reservation onto each resource (the target form is given).
    Reserve {
        /// The resources as they should be after the reservation.
        resources: Resources,
    },
    /// Pop the current dynamic reservation of each resource (the reserved form is given).
    Unreserve {
        /// The reserved resources to release.
        resources: Resources,
    },
    /// Turn reserved disk into persistent volumes (the volumes are given).
    Create {
        /// The volumes, with their disk info.
        volumes: Resources,
    },
    /// Turn persistent volumes back into reserved disk.
    Destroy {
        /// The volumes to destroy.
        volumes: Resources,
    },
}

impl Operation {
    /// The operation type, for messages.
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::Reserve { .. } => OperationKind::Reserve,
            Operation::Unreserve { .. } => OperationKind::Unreserve,
            Operation::Create { .. } => OperationKind::Create,
            Operation::Destroy { .. } => OperationKind::Destroy,
        }
    }
}

/// The operation types this module knows, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// `RESERVE`.
    Reserve,
    /// `UNRESERVE`.
    Unreserve,
    /// `CREATE`.
    Create,
    /// `DESTROY`.
    Destroy,
    /// `LAUNCH` (and `LAUNCH_GROUP`), which only consume.
    Launch,
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperationKind::Reserve => "RESERVE",
            OperationKind::Unreserve => "UNRESERVE",
            OperationKind::Create => "CREATE",
            OperationKind::Destroy => "DESTROY",
            OperationKind::Launch => "LAUNCH",
        })
    }
}

/// What the operations need to know about the framework that sent them.
#[derive(Debug, Clone, Copy)]
pub struct FrameworkView<'a> {
    /// The roles the framework is subscribed to; reservations may only be made for them.
    pub roles: &'a [String],
    /// `FrameworkInfo.principal`; when set, reservations and volumes must carry it.
    pub principal: Option<&'a str>,
    /// True with the SHARED_RESOURCES capability, which shared volumes need.
    pub shared_resources: bool,
}

/// What the operations need to know about the agent beyond the offer.
#[derive(Debug, Clone, Copy)]
pub struct AgentView<'a> {
    /// Everything the agent has, offered or not: persistence ids must be unique among it.
    pub total: &'a Resources,
    /// The persistence ids of volumes used by a task or executor that has not terminated.
    pub volumes_in_use: &'a BTreeSet<String>,
}

/// The effect of an operation on an agent's resources: `consumed` is replaced by `converted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversion {
    /// What the operation took (from the offer, hence from the agent).
    pub consumed: Resources,
    /// What it gave back in its place.
    pub converted: Resources,
}

impl Conversion {
    /// `resources` with the conversion applied, or `None` when they lack what it consumes.
    pub fn apply_to(&self, resources: &Resources) -> Option<Resources> {
        resources.checked_sub(&self.consumed).map(|rest| rest + &self.converted)
    }

    /// The checkpointed resources the agent must forget.
    pub fn checkpoint_removed(&self) -> Resources {
        self.consumed.checkpointed()
    }

    /// The checkpointed resources the agent must add.
    pub fn checkpoint_added(&self) -> Resources {
        self.converted.checkpointed()
    }

    /// An agent's checkpointed resources after the conversion.
    pub fn apply_to_checkpointed(&self, checkpointed: &Resources) -> Resources {
        (checkpointed - &self.checkpoint_removed()) + &self.checkpoint_added()
    }
}

/// The result of one successful operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What is left of the offer for the operations that follow.
    pub offered: Resources,
    /// The change to the agent's resources.
    pub conversion: Conversion,
}

/// Who made a reservation or volume, for messages: `principal 'x'` or `no principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenPrincipal(pub Option<String>);

impl fmt::Display for GivenPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(principal) => write!(f, "principal '{principal}'"),
            None => f.write_str("no principal"),
        }
    }
}

/// Why an operation was refused; the messages follow Mesos's where frameworks may match them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    /// A resource of the operation breaks the rules of reservations or volumes.
    #[error("Invalid {kind} operation: resource {resource} is invalid: {source}")]
    InvalidResource {
        /// The operation.
        kind: OperationKind,
        /// The offending resource.
        resource: Box<Resource>,
        /// The rule it breaks.
        source: InvalidResource,
    },
    /// What the operation needs is not (or no longer) in the offer.
    #[error(
        "Invalid {kind} operation: {needed} is not available in the offered resources {offered}"
    )]
    NotOffered {
        /// The operation.
        kind: OperationKind,
        /// What it needed from the offer.
        needed: Resources,
        /// What the offer had left.
        offered: Resources,
    },
    /// RESERVE needs a dynamic reservation on top, UNRESERVE one to pop.
    #[error("Invalid {kind} operation: resource {resource} is not dynamically reserved")]
    NotDynamicallyReserved {
        /// The operation.
        kind: OperationKind,
        /// The offending resource.
        resource: Box<Resource>,
    },
    /// A framework may only reserve for its own roles.
    #[error(
        "Invalid RESERVE operation: role '{role}' of resource {resource} is not one of the \
         framework's roles {roles:?}"
    )]
    RoleNotSubscribed {
        /// The role of the new reservation.
        role: String,
        /// The resource asking for it.
        resource: Box<Resource>,
        /// The framework's roles.
        roles: Vec<String>,
    },
    /// The reservation's principal is not the framework's.
    #[error(
        "Invalid RESERVE operation: a reserve operation was attempted by principal \
         '{framework}', but there is a reserved resource in the request with {given} set in \
         `ReservationInfo`"
    )]
    ReservationPrincipal {
        /// The framework's principal.
        framework: String,
        /// The reservation's.
        given: GivenPrincipal,
    },
    /// Volumes exist only on reserved disk, so reserving one makes no sense.
    #[error("Invalid RESERVE operation: a persistent volume {resource} must already be reserved")]
    ReserveVolume {
        /// The volume.
        resource: Box<Resource>,
    },
    /// A volume must go before its reservation does.
    #[error(
        "Invalid UNRESERVE operation: a dynamically reserved persistent volume {resource} \
         cannot be unreserved directly. Please destroy the persistent volume first then \
         unreserve the resource"
    )]
    UnreserveVolume {
        /// The volume.
        resource: Box<Resource>,
    },
    /// CREATE and DESTROY take persistent volumes only.
    #[error("Invalid {kind} operation: {resource} is not a persistent volume")]
    NotAVolume {
        /// The operation.
        kind: OperationKind,
        /// The offending resource.
        resource: Box<Resource>,
    },
    /// Persistent volumes are always writable.
    #[error("Invalid CREATE operation: read-only persistent volume {resource} not supported")]
    ReadOnlyVolume {
        /// The volume.
        resource: Box<Resource>,
    },
    /// Shared volumes need a framework that knows about them.
    #[error(
        "Invalid CREATE operation: shared volume {resource} needs the SHARED_RESOURCES \
         capability"
    )]
    SharedWithoutCapability {
        /// The volume.
        resource: Box<Resource>,
    },
    /// The volume's principal is not the framework's.
    #[error(
        "Invalid CREATE operation: create volume operation has been attempted by principal \
         '{framework}', but there is a volume in the operation with {given} set in \
         'DiskInfo.Persistence'"
    )]
    VolumePrincipal {
        /// The framework's principal.
        framework: String,
        /// The volume's.
        given: GivenPrincipal,
    },
    /// Persistence ids name directories on the agent, so they must be unique there.
    #[error("Invalid CREATE operation: persistence ID '{id}' is not unique")]
    DuplicatePersistenceId {
        /// The id.
        id: String,
    },
    /// A volume a live task or executor uses cannot be destroyed under it.
    #[error("Invalid DESTROY operation: persistent volume '{id}' is in use")]
    VolumeInUse {
        /// The volume's persistence id.
        id: String,
    },
    /// A LAUNCH needs more than what is left of the offer.
    #[error(
        "Total resources {required} required by task and its executor is more than available \
         {available}"
    )]
    Insufficient {
        /// What the task (and a new executor) need.
        required: Resources,
        /// What the offer had left.
        available: Resources,
    },
}

/// Applies one operation to the remaining offered resources.
pub fn apply(
    offered: &Resources,
    framework: &FrameworkView<'_>,
    agent: &AgentView<'_>,
    operation: &Operation,
) -> Result<Applied, OperationError> {
    match operation {
        Operation::Reserve { resources } => reserve(offered, framework, resources),
        Operation::Unreserve { resources } => unreserve(offered, resources),
        Operation::Create { volumes } => create(offered, framework, agent.total, volumes),
        Operation::Destroy { volumes } => destroy(offered, agent.volumes_in_use, volumes),
    }
}

/// Checks the rules every resource of an operation obeys.
fn validate(kind: OperationKind, resource: &Resource) -> Result<(), OperationError> {
    resource.validate().map_err(|source| OperationError::InvalidResource {
        kind,
        resource: Box::new(resource.clone()),
        source,
    })
}

/// Takes `needed` out of `offered` and puts `converted` in, or says the offer lacks it.
fn convert(
    kind: OperationKind,
    offered: &Resources,
    needed: Resources,
    converted: Resources,
) -> Result<Applied, OperationError> {
    let rest = offered.checked_sub(&needed).ok_or_else(|| OperationError::NotOffered {
        kind,
        needed: needed.clone(),
        offered: offered.clone(),
    })?;
    Ok(Applied {
        offered: rest + &converted,
        conversion: Conversion { consumed: needed, converted },
    })
}

/// RESERVE: `resources` is the target form, each entry carrying a new dynamic reservation on
/// top of what the offer has (unreserved resources, or resources reserved for a parent role).
pub fn reserve(
    offered: &Resources,
    framework: &FrameworkView<'_>,
    resources: &Resources,
) -> Result<Applied, OperationError> {
    let kind = OperationKind::Reserve;
    let mut sources = Resources::new();
    for resource in resources {
        validate(kind, resource)?;
        let dynamic = resource.reservation().filter(|r| r.kind == ReservationKind::Dynamic);
        let (Some(reservation), Some(source)) = (dynamic, resource.popped()) else {
            return Err(OperationError::NotDynamicallyReserved {
                kind,
                resource: Box::new(resource.clone()),
            });
        };
        if !framework.roles.contains(&reservation.role) {
            return Err(OperationError::RoleNotSubscribed {
                role: reservation.role.clone(),
                resource: Box::new(resource.clone()),
                roles: framework.roles.to_vec(),
            });
        }
        if let Some(principal) = framework.principal
            && reservation.principal.as_deref() != Some(principal)
        {
            return Err(OperationError::ReservationPrincipal {
                framework: principal.to_string(),
                given: GivenPrincipal(reservation.principal.clone()),
            });
        }
        if resource.is_persistent_volume() {
            return Err(OperationError::ReserveVolume { resource: Box::new(resource.clone()) });
        }
        sources.add(&Resources::from(source));
    }
    convert(kind, offered, sources, resources.clone())
}

/// UNRESERVE: pops the current dynamic reservation of each resource, which the offer must
/// hold as given.
pub fn unreserve(offered: &Resources, resources: &Resources) -> Result<Applied, OperationError> {
    let kind = OperationKind::Unreserve;
    let mut released = Resources::new();
    for resource in resources {
        validate(kind, resource)?;
        let popped = resource.popped().filter(|_| resource.is_dynamically_reserved());
        let Some(popped) = popped else {
            return Err(OperationError::NotDynamicallyReserved {
                kind,
                resource: Box::new(resource.clone()),
            });
        };
        if resource.is_persistent_volume() {
            return Err(OperationError::UnreserveVolume { resource: Box::new(resource.clone()) });
        }
        released.add(&Resources::from(popped));
    }
    convert(kind, offered, resources.clone(), released)
}

/// CREATE: turns reserved disk of the offer into the given persistent volumes.
/// `agent_total` is everything the agent has, whose persistence ids the new ones must avoid.
pub fn create(
    offered: &Resources,
    framework: &FrameworkView<'_>,
    agent_total: &Resources,
    volumes: &Resources,
) -> Result<Applied, OperationError> {
    let kind = OperationKind::Create;
    let mut taken: BTreeSet<&str> = agent_total.persistence_ids();
    taken.extend(offered.persistence_ids());
    let mut sources = Resources::new();
    for volume in volumes {
        validate(kind, volume)?;
        let (Some(disk), Some(id)) = (&volume.disk, volume.persistence_id()) else {
            return Err(OperationError::NotAVolume { kind, resource: Box::new(volume.clone()) });
        };
        if disk.volume.as_ref().is_some_and(|v| v.mode == VolumeMode::Ro) {
            return Err(OperationError::ReadOnlyVolume { resource: Box::new(volume.clone()) });
        }
        if volume.shared && !framework.shared_resources {
            return Err(OperationError::SharedWithoutCapability {
                resource: Box::new(volume.clone()),
            });
        }
        let given = disk.persistence.as_ref().and_then(|p| p.principal.as_deref());
        if let Some(principal) = framework.principal
            && given != Some(principal)
        {
            return Err(OperationError::VolumePrincipal {
                framework: principal.to_string(),
                given: GivenPrincipal(given.map(str::to_string)),
            });
        }
        if !taken.insert(id) {
            return Err(OperationError::DuplicatePersistenceId { id: id.to_string() });
        }
        sources.add(&Resources::from(volume.without_volume()));
    }
    convert(kind, offered, sources, volumes.clone())
}

/// DESTROY: turns the given persistent volumes of the offer back into reserved disk, unless a
/// live task or executor uses one of them.
pub fn destroy(
    offered: &Resources,
    volumes_in_use: &BTreeSet<String>,
    volumes: &Resources,
) -> Result<Applied, OperationError> {
    let kind = OperationKind::Destroy;
    let mut disks = Resources::new();
    for volume in volumes {
        validate(kind, volume)?;
        let Some(id) = volume.persistence_id() else {
            return Err(OperationError::NotAVolume { kind, resource: Box::new(volume.clone()) });
        };
        // Checked before the offer so that a shared volume in use (which may still be
        // offered) gets the precise reason.
        if volumes_in_use.contains(id) {
            return Err(OperationError::VolumeInUse { id: id.to_string() });
        }
        disks.add(&Resources::from(volume.without_volume()));
    }
    convert(kind, offered, volumes.clone(), disks)
}

/// LAUNCH: what is left of `offered` once a task (and its new executor) take `required`.
pub fn consume(offered: &Resources, required: &Resources) -> Result<Resources, OperationError> {
    offered.checked_sub(required).ok_or_else(|| OperationError::Insufficient {
        required: required.clone(),
        available: offered.clone(),
    })
}

/// The operations of one ACCEPT applied in order to one agent's offered resources.
///
/// It keeps the remaining offer and the agent's total current between operations, so that a
/// CREATE sees the volumes created before it and a LAUNCH can use a volume created earlier in
/// the same call; the conversions come out in order for the master to persist and forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSession {
    offered: Resources,
    agent_total: Resources,
    conversions: Vec<Conversion>,
}

impl OfferSession {
    /// Starts from the offered resources and everything the agent has.
    pub fn new(offered: Resources, agent_total: Resources) -> OfferSession {
        OfferSession { offered, agent_total, conversions: Vec::new() }
    }

    /// What is left of the offer.
    pub fn offered(&self) -> &Resources {
        &self.offered
    }

    /// The agent's total with every successful conversion applied.
    pub fn agent_total(&self) -> &Resources {
        &self.agent_total
    }

    /// The successful conversions so far, in order.
    pub fn conversions(&self) -> &[Conversion] {
        &self.conversions
    }

    /// Applies one operation; on error nothing changes.
    pub fn apply(
        &mut self,
        framework: &FrameworkView<'_>,
        volumes_in_use: &BTreeSet<String>,
        operation: &Operation,
    ) -> Result<&Conversion, OperationError> {
        let agent = AgentView { total: &self.agent_total, volumes_in_use };
        let applied = apply(&self.offered, framework, &agent, operation)?;
        // The offer is part of the agent's total, so what the offer held the total holds.
        self.agent_total = applied.conversion.apply_to(&self.agent_total).unwrap_or_else(|| {
            (&self.agent_total - &applied.conversion.consumed) + &applied.conversion.converted
        });
        self.offered = applied.offered;
        self.conversions.push(applied.conversion);
        Ok(self.conversions.last().expect("a conversion was just pushed"))
    }

    /// Takes a task's (and its new executor's) resources out of the offer.
    pub fn launch(&mut self, required: &Resources) -> Result<(), OperationError> {
        self.offered = consume(&self.offered, required)?;
        Ok(())
    }

    /// What is left of the offer (to recover into the allocator) and the conversions.
    pub fn finish(self) -> (Resources, Vec<Conversion>) {
        (self.offered, self.conversions)
    }
}

#[cfg(test)]
mod tests;
