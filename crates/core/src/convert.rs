//! Conversions between the wire's `mesos.v1.Resource` / `Attribute` / `Offer.Operation` and
//! the core's domain types, applied where a message enters or leaves the state machines.
//!
//! Incoming resources may use either reservation format of reference §2.6; both become one
//! reservation stack on the domain side, with disk info (persistent volumes, disk sources) and
//! the revocable and shared flags. What the domain cannot express (resource providers, volume
//! images, and the like) or what breaks the rules is refused with a message naming the
//! resource, never silently flattened. Outgoing resources are written per framework
//! ([`resources_for_framework`]): the post-refinement stack (plus the legacy `role`) for
//! RESERVATION_REFINEMENT frameworks, the pre-refinement `role` + `reservation` for the others,
//! who are never shown a resource with more than one reservation level. The per-resource work
//! is in `convert/resource.rs`; deciding which resources a framework may see is the master's.

mod resource;

use agora_proto::v1::{self, value};

use crate::attributes::{AttributeValue, Attributes};
use crate::operations::Operation;
use crate::resources::{InvalidResource, InvertedRange, Ranges, Resource, Resources, TypeConflict};

/// Why wire input could not become domain values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// `Resource.name` is empty.
    #[error("a resource has an empty name")]
    EmptyName,
    /// The wire shape of a resource is wrong.
    #[error("resource '{name}' {problem}")]
    Malformed {
        /// The resource name.
        name: String,
        /// What is wrong.
        problem: WireProblem,
    },
    /// The resource is well-formed but breaks a rule of reservations or volumes.
    #[error("resource '{name}' is invalid: {source}")]
    Invalid {
        /// The resource name.
        name: String,
        /// The rule it breaks.
        source: InvalidResource,
    },
    /// One name used with two value types in one list.
    #[error(transparent)]
    TypeConflict(#[from] TypeConflict),
    /// A refined resource cannot be written for a framework without RESERVATION_REFINEMENT.
    #[error(
        "resource {resource} has more than one reservation level, which a framework without \
         RESERVATION_REFINEMENT cannot read"
    )]
    NeedsRefinement {
        /// The resource.
        resource: Box<Resource>,
    },
    /// An `Offer.Operation` lacks the sub-message of its type.
    #[error("Expecting '{field}' to be present in a {kind} operation")]
    MissingOperation {
        /// The operation type.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// An operation type this conversion does not cover (LAUNCH is handled with its tasks).
    #[error("operation type {0} is not a supported resource operation")]
    UnsupportedOperation(&'static str),
    /// RESERVE with an explicit `source` (reservation updates) is not implemented.
    #[error("RESERVE with 'source' is not supported")]
    ReserveSource,
}

/// What is wrong with the wire shape of one resource; read after "resource 'name' ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireProblem {
    /// The value field of the declared type is absent.
    #[error("is {kind} but has no '{field}'")]
    MissingValue {
        /// The declared type.
        kind: &'static str,
        /// The absent field.
        field: &'static str,
    },
    /// A negative, non-finite or huge scalar.
    #[error("has an invalid scalar value {0}")]
    BadScalar(String),
    /// An interval with begin after end.
    #[error("has an {0}")]
    Ranges(InvertedRange),
    /// Resources are never TEXT.
    #[error("cannot be TEXT")]
    Text,
    /// Both reservation formats at once.
    #[error("must not set both 'reservation' and 'reservations'")]
    BothFormats,
    /// A post-refinement reservation without a usable type.
    #[error("has a reservation in 'reservations' whose 'type' is not STATIC or DYNAMIC")]
    ReservationType,
    /// A post-refinement reservation without a role.
    #[error("has a reservation in 'reservations' without 'role'")]
    ReservationRole,
    /// The legacy `role` next to `reservations` names another role than the current one.
    #[error("has 'role' '{role}' but its current reservation in 'reservations' is for '{current}'")]
    LegacyRoleMismatch {
        /// The legacy `role`.
        role: String,
        /// The role of the last reservation.
        current: String,
    },
    /// A dynamic reservation for `*`.
    #[error("has a 'reservation' for role '*', which cannot be dynamically reserved")]
    DynamicStar,
    /// The pre-refinement `reservation` carries fields of the post-refinement format.
    #[error("must not set 'type' or 'role' in 'reservation'; use 'reservations' for that")]
    PreRefinementFields,
    /// A persistent volume names a host path.
    #[error("has a volume with 'host_path' set, which must be unset for a persistent volume")]
    VolumeHostPath,
    /// A persistent volume with an image or a volume source.
    #[error("has a volume with 'image' or 'source', which persistent volumes do not support")]
    VolumeExtras,
    /// An unknown volume mode number.
    #[error("has a volume with an invalid 'mode' {0}")]
    VolumeMode(i32),
    /// An unknown disk source type number.
    #[error("has a disk source with an invalid 'type' {0}")]
    SourceType(i32),
    /// Resource providers are not implemented.
    #[error("names a resource provider, which Agora does not support")]
    ProviderId,
}

/// How reservations are written for a framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceFormat {
    /// `role` plus, for a dynamic reservation, `reservation` (principal and labels): what
    /// frameworks without RESERVATION_REFINEMENT read. Cannot express refined reservations.
    PreRefinement,
    /// The `reservations` stack, plus the legacy `role` holding the current reservation's
    /// role for clients that still look there.
    PostRefinement,
}

impl ResourceFormat {
    /// The format `framework` reads, from its RESERVATION_REFINEMENT capability.
    pub fn for_framework(framework: &v1::FrameworkInfo) -> ResourceFormat {
        let refinement = v1::framework_info::capability::Type::ReservationRefinement;
        if framework.capabilities.iter().any(|c| c.r#type() == refinement) {
            ResourceFormat::PostRefinement
        } else {
            ResourceFormat::PreRefinement
        }
    }
}

/// True when `resource` can be written in the pre-refinement format, i.e. shown to a framework
/// without RESERVATION_REFINEMENT; such frameworks are never offered anything else.
pub fn shown_without_refinement(resource: &Resource) -> bool {
    !resource.is_refined()
}

/// One domain resource from one wire resource, in either reservation format.
pub fn resource_from_proto(resource: &v1::Resource) -> Result<Resource, ConvertError> {
    resource::read(resource)
}

/// Domain resources from wire resources, or an error naming the first entry that does not fit.
pub fn resources_from_proto(resources: &[v1::Resource]) -> Result<Resources, ConvertError> {
    let mut out = Resources::new();
    for r in resources {
        out.push(resource::read(r)?)?;
    }
    Ok(out)
}

/// Wire resources for a framework reading `format`, with `allocation_info.role` set on every
/// entry when `allocation_role` is given (MULTI_ROLE frameworks). Fails on a refined resource
/// in the pre-refinement format: filter with [`shown_without_refinement`] first.
pub fn resources_for_framework(
    resources: &Resources,
    format: ResourceFormat,
    allocation_role: Option<&str>,
) -> Result<Vec<v1::Resource>, ConvertError> {
    let allocation_info =
        allocation_role.map(|role| v1::resource::AllocationInfo { role: Some(role.to_string()) });
    resources
        .iter()
        .map(|r| {
            let mut out = resource::write(r, format)?;
            out.allocation_info = allocation_info.clone();
            Ok(out)
        })
        .collect()
}

/// Wire resources in the most widely readable form that loses nothing: pre-refinement for
/// every entry that allows it, post-refinement for refined ones. For messages that are not
/// tied to one framework's capabilities (agent registration, state endpoints) and for callers
/// that have not chosen a format; `allocation_info` is attached to every entry when given.
pub fn resources_to_proto(
    resources: &Resources,
    allocation_info: Option<&v1::resource::AllocationInfo>,
) -> Vec<v1::Resource> {
    resources
        .iter()
        .map(|r| {
            let format = if shown_without_refinement(r) {
                ResourceFormat::PreRefinement
            } else {
                ResourceFormat::PostRefinement
            };
            // Post-refinement writes every resource; pre-refinement every unrefined one.
            let mut out =
                resource::write(r, format).expect("the format was chosen to fit the resource");
            out.allocation_info = allocation_info.cloned();
            out
        })
        .collect()
}

/// A resource-changing offer operation from the wire. LAUNCH and LAUNCH_GROUP carry tasks and
/// are the master's to unpack; the resource-provider operations are not supported.
pub fn operation_from_proto(operation: &v1::offer::Operation) -> Result<Operation, ConvertError> {
    use v1::offer::operation::Type;
    let kind = operation.r#type();
    let missing = |field| ConvertError::MissingOperation { kind: kind.as_str_name(), field };
    match kind {
        Type::Reserve => {
            let reserve = operation.reserve.as_ref().ok_or_else(|| missing("reserve"))?;
            if !reserve.source.is_empty() {
                return Err(ConvertError::ReserveSource);
            }
            Ok(Operation::Reserve { resources: resources_from_proto(&reserve.resources)? })
        }
        Type::Unreserve => {
            let unreserve = operation.unreserve.as_ref().ok_or_else(|| missing("unreserve"))?;
            Ok(Operation::Unreserve { resources: resources_from_proto(&unreserve.resources)? })
        }
        Type::Create => {
            let create = operation.create.as_ref().ok_or_else(|| missing("create"))?;
            Ok(Operation::Create { volumes: resources_from_proto(&create.volumes)? })
        }
        Type::Destroy => {
            let destroy = operation.destroy.as_ref().ok_or_else(|| missing("destroy"))?;
            Ok(Operation::Destroy { volumes: resources_from_proto(&destroy.volumes)? })
        }
        other => Err(ConvertError::UnsupportedOperation(other.as_str_name())),
    }
}

fn ranges_to_proto(ranges: &Ranges) -> value::Ranges {
    value::Ranges {
        range: ranges.intervals().iter().map(|&(begin, end)| value::Range { begin, end }).collect(),
    }
}

/// Wire attributes from parsed `--attributes`.
pub fn attributes_to_proto(attributes: &Attributes) -> Vec<v1::Attribute> {
    attributes
        .iter()
        .map(|a| {
            let mut out = v1::Attribute { name: a.name.clone(), ..Default::default() };
            match &a.value {
                AttributeValue::Scalar(s) => {
                    out.set_type(value::Type::Scalar);
                    out.scalar = Some(value::Scalar { value: s.as_f64() });
                }
                AttributeValue::Ranges(r) => {
                    out.set_type(value::Type::Ranges);
                    out.ranges = Some(ranges_to_proto(r));
                }
                AttributeValue::Text(t) => {
                    out.set_type(value::Type::Text);
                    out.text = Some(value::Text { value: t.clone() });
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests;
