//! One `mesos.v1.Resource` to and from one domain [`Resource`]: the value, both reservation
//! formats of reference §2.6, disk info, labels and flags.
//!
//! Reading accepts the pre-refinement format (`role`, plus `reservation` for a dynamic one)
//! and the post-refinement format (`reservations`, optionally with a `role` that repeats the
//! current reservation's role, as our own post-refinement output does), and refuses a resource
//! that mixes `reservation` with `reservations` or is otherwise malformed. Writing produces the
//! format the caller names. Context-free rules (roles, refinement, volumes) are checked by
//! [`Resource::validate`] after reading, so the wire reader and the offer operations agree.
//! Collections, allocation info and framework capabilities are `convert.rs`'s business.

use agora_proto::v1::resource::{DiskInfo as WireDiskInfo, ReservationInfo, disk_info};
use agora_proto::v1::{self, value};

use super::{ConvertError, ResourceFormat, WireProblem, ranges_to_proto};
use crate::resources::{
    DiskInfo, DiskSource, DiskSourceKind, Label, Labels, Persistence, Ranges, Reservation,
    ReservationKind, Resource, Scalar, UNRESERVED, Value, Volume, VolumeMode,
};

type ReservationType = v1::resource::reservation_info::Type;
type SourceType = disk_info::source::Type;

/// Reads and validates one wire resource.
pub(super) fn read(r: &v1::Resource) -> Result<Resource, ConvertError> {
    if r.name.is_empty() {
        return Err(ConvertError::EmptyName);
    }
    let fail = |problem| ConvertError::Malformed { name: r.name.clone(), problem };
    if r.provider_id.is_some() {
        return Err(fail(WireProblem::ProviderId));
    }
    let resource = Resource {
        name: r.name.clone(),
        value: read_value(r).map_err(fail)?,
        reservations: read_reservations(r).map_err(fail)?,
        disk: r.disk.as_ref().map(read_disk).transpose().map_err(fail)?.map(Box::new),
        revocable: r.revocable.is_some(),
        shared: r.shared.is_some(),
    };
    resource.validate().map_err(|source| ConvertError::Invalid { name: r.name.clone(), source })?;
    Ok(resource)
}

fn read_value(r: &v1::Resource) -> Result<Value, WireProblem> {
    let missing = |kind, field| WireProblem::MissingValue { kind, field };
    match r.r#type() {
        value::Type::Scalar => {
            let scalar = r.scalar.as_ref().ok_or(missing("SCALAR", "scalar"))?;
            if !scalar.value.is_finite() || scalar.value < 0.0 || scalar.value > Scalar::MAX_WHOLE {
                return Err(WireProblem::BadScalar(scalar.value.to_string()));
            }
            Ok(Value::Scalar(Scalar::from_f64(scalar.value)))
        }
        value::Type::Ranges => {
            let ranges = r.ranges.as_ref().ok_or(missing("RANGES", "ranges"))?;
            Ranges::try_from_intervals(ranges.range.iter().map(|x| (x.begin, x.end)))
                .map(Value::Ranges)
                .map_err(WireProblem::Ranges)
        }
        value::Type::Set => {
            let set = r.set.as_ref().ok_or(missing("SET", "set"))?;
            Ok(Value::Set(set.item.iter().cloned().collect()))
        }
        value::Type::Text => Err(WireProblem::Text),
    }
}

#[expect(deprecated, reason = "the pre-refinement `role` is one of the two formats we must read")]
fn read_reservations(r: &v1::Resource) -> Result<Vec<Reservation>, WireProblem> {
    if !r.reservations.is_empty() {
        if r.reservation.is_some() {
            return Err(WireProblem::BothFormats);
        }
        let stack = r.reservations.iter().map(read_reservation).collect::<Result<Vec<_>, _>>()?;
        let current = stack.last().map_or(UNRESERVED, |res| res.role.as_str());
        if let Some(role) = &r.role
            && role != current
        {
            return Err(WireProblem::LegacyRoleMismatch {
                role: role.clone(),
                current: current.to_string(),
            });
        }
        return Ok(stack);
    }
    let role = r.role.as_deref().unwrap_or(UNRESERVED);
    match &r.reservation {
        None if role == UNRESERVED => Ok(Vec::new()),
        None => Ok(vec![Reservation::new_static(role)]),
        Some(_) if role == UNRESERVED => Err(WireProblem::DynamicStar),
        Some(info) if info.r#type.is_some() || info.role.is_some() => {
            Err(WireProblem::PreRefinementFields)
        }
        Some(info) => Ok(vec![Reservation {
            role: role.to_string(),
            kind: ReservationKind::Dynamic,
            principal: info.principal.clone(),
            labels: read_labels(info.labels.as_ref()),
        }]),
    }
}

fn read_reservation(info: &ReservationInfo) -> Result<Reservation, WireProblem> {
    let kind = match info.r#type.map(ReservationType::try_from) {
        Some(Ok(ReservationType::Static)) => ReservationKind::Static,
        Some(Ok(ReservationType::Dynamic)) => ReservationKind::Dynamic,
        _ => return Err(WireProblem::ReservationType),
    };
    let role = info.role.clone().ok_or(WireProblem::ReservationRole)?;
    Ok(Reservation {
        role,
        kind,
        principal: info.principal.clone(),
        labels: read_labels(info.labels.as_ref()),
    })
}

fn read_labels(labels: Option<&v1::Labels>) -> Labels {
    labels
        .map(|l| {
            l.labels.iter().map(|x| Label { key: x.key.clone(), value: x.value.clone() }).collect()
        })
        .unwrap_or_default()
}

fn read_disk(disk: &WireDiskInfo) -> Result<DiskInfo, WireProblem> {
    let volume = match &disk.volume {
        None => None,
        Some(v) => {
            if v.host_path.is_some() {
                return Err(WireProblem::VolumeHostPath);
            }
            if v.image.is_some() || v.source.is_some() {
                return Err(WireProblem::VolumeExtras);
            }
            let mode = match v1::volume::Mode::try_from(v.mode) {
                Ok(v1::volume::Mode::Rw) => VolumeMode::Rw,
                Ok(v1::volume::Mode::Ro) => VolumeMode::Ro,
                Err(_) => return Err(WireProblem::VolumeMode(v.mode)),
            };
            Some(Volume { container_path: v.container_path.clone(), mode })
        }
    };
    let source = match &disk.source {
        None => None,
        Some(s) => {
            let kind = match SourceType::try_from(s.r#type) {
                Ok(SourceType::Unknown) => DiskSourceKind::Unknown,
                Ok(SourceType::Path) => DiskSourceKind::Path,
                Ok(SourceType::Mount) => DiskSourceKind::Mount,
                Ok(SourceType::Block) => DiskSourceKind::Block,
                Ok(SourceType::Raw) => DiskSourceKind::Raw,
                Err(_) => return Err(WireProblem::SourceType(s.r#type)),
            };
            // The root lives in the sub-message named after the type; the other one is
            // meaningless for that type and is not kept.
            let root = match kind {
                DiskSourceKind::Path => s.path.as_ref().and_then(|p| p.root.clone()),
                DiskSourceKind::Mount => s.mount.as_ref().and_then(|m| m.root.clone()),
                _ => None,
            };
            Some(DiskSource {
                kind,
                root,
                id: s.id.clone(),
                metadata: read_labels(s.metadata.as_ref()),
                profile: s.profile.clone(),
                vendor: s.vendor.clone(),
            })
        }
    };
    Ok(DiskInfo {
        persistence: disk
            .persistence
            .as_ref()
            .map(|p| Persistence { id: p.id.clone(), principal: p.principal.clone() }),
        volume,
        source,
    })
}

/// Writes one resource in `format`; the pre-refinement format cannot express more than one
/// reservation level and refuses such a resource.
#[expect(deprecated, reason = "the pre-refinement `role` is what most clients read")]
pub(super) fn write(r: &Resource, format: ResourceFormat) -> Result<v1::Resource, ConvertError> {
    let mut out = v1::Resource {
        name: r.name.clone(),
        disk: r.disk.as_deref().map(write_disk),
        revocable: r.revocable.then_some(v1::resource::RevocableInfo {}),
        shared: r.shared.then_some(v1::resource::SharedInfo {}),
        ..Default::default()
    };
    match &r.value {
        Value::Scalar(s) => {
            out.set_type(value::Type::Scalar);
            out.scalar = Some(value::Scalar { value: s.as_f64() });
        }
        Value::Ranges(ranges) => {
            out.set_type(value::Type::Ranges);
            out.ranges = Some(ranges_to_proto(ranges));
        }
        Value::Set(items) => {
            out.set_type(value::Type::Set);
            out.set = Some(value::Set { item: items.iter().cloned().collect() });
        }
    }
    // An unreserved resource leaves `role` unset in both formats: its default is `*`.
    out.role = r.is_reserved().then(|| r.role().to_string());
    match (format, r.reservations.as_slice()) {
        (ResourceFormat::PostRefinement, stack) => {
            out.reservations = stack.iter().map(write_reservation).collect();
        }
        (ResourceFormat::PreRefinement, []) => {}
        (ResourceFormat::PreRefinement, [only]) => {
            if only.kind == ReservationKind::Dynamic {
                out.reservation = Some(ReservationInfo {
                    principal: only.principal.clone(),
                    labels: write_labels(&only.labels),
                    role: None,
                    r#type: None,
                });
            }
        }
        (ResourceFormat::PreRefinement, _) => {
            return Err(ConvertError::NeedsRefinement { resource: Box::new(r.clone()) });
        }
    }
    Ok(out)
}

fn write_reservation(reservation: &Reservation) -> ReservationInfo {
    let kind = match reservation.kind {
        ReservationKind::Static => ReservationType::Static,
        ReservationKind::Dynamic => ReservationType::Dynamic,
    };
    ReservationInfo {
        principal: reservation.principal.clone(),
        labels: write_labels(&reservation.labels),
        role: Some(reservation.role.clone()),
        r#type: Some(kind as i32),
    }
}

/// Empty labels stay absent, as Mesos writes them.
fn write_labels(labels: &Labels) -> Option<v1::Labels> {
    (!labels.is_empty()).then(|| v1::Labels {
        labels: labels
            .iter()
            .map(|l| v1::Label { key: l.key.clone(), value: l.value.clone() })
            .collect(),
    })
}

fn write_disk(disk: &DiskInfo) -> WireDiskInfo {
    WireDiskInfo {
        persistence: disk
            .persistence
            .as_ref()
            .map(|p| disk_info::Persistence { id: p.id.clone(), principal: p.principal.clone() }),
        volume: disk.volume.as_ref().map(|v| v1::Volume {
            container_path: v.container_path.clone(),
            mode: match v.mode {
                VolumeMode::Rw => v1::volume::Mode::Rw,
                VolumeMode::Ro => v1::volume::Mode::Ro,
            } as i32,
            ..Default::default()
        }),
        source: disk.source.as_ref().map(|s| {
            let (kind, path, mount) = match s.kind {
                DiskSourceKind::Unknown => (SourceType::Unknown, None, None),
                DiskSourceKind::Path => {
                    (SourceType::Path, Some(disk_info::source::Path { root: s.root.clone() }), None)
                }
                DiskSourceKind::Mount => (
                    SourceType::Mount,
                    None,
                    Some(disk_info::source::Mount { root: s.root.clone() }),
                ),
                DiskSourceKind::Block => (SourceType::Block, None, None),
                DiskSourceKind::Raw => (SourceType::Raw, None, None),
            };
            disk_info::Source {
                r#type: kind as i32,
                path,
                mount,
                id: s.id.clone(),
                metadata: write_labels(&s.metadata),
                profile: s.profile.clone(),
                vendor: s.vendor.clone(),
            }
        }),
    }
}
