//! Conversions between the wire's `mesos.v1.Resource` / `Attribute` and the core's domain
//! types, applied where a message enters or leaves the state machines.
//!
//! Incoming resources may use either reservation format of reference §2.6 (`role` or the
//! `reservations` stack); both become a role on the domain side. What the domain cannot express
//! yet (dynamic reservations, persistent volumes, revocable and shared resources) is refused
//! with a message rather than silently flattened. Outgoing resources use the pre-refinement
//! format, which every client understands.

use agora_proto::v1::{self, value};

use crate::attributes::{AttributeValue, Attributes};
use crate::resources::{Ranges, Resource, Resources, Scalar, UNRESERVED, Value};

/// Wire resources from domain resources; `allocation_info` is attached to every entry (for
/// MULTI_ROLE frameworks) when given.
#[expect(
    deprecated,
    reason = "the pre-refinement `role` is what clients without RESERVATION_REFINEMENT read"
)]
pub fn resources_to_proto(
    resources: &Resources,
    allocation_info: Option<&v1::resource::AllocationInfo>,
) -> Vec<v1::Resource> {
    resources
        .iter()
        .map(|r| {
            let mut out = v1::Resource {
                name: r.name.clone(),
                role: r.is_reserved().then(|| r.role.clone()),
                allocation_info: allocation_info.cloned(),
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
            out
        })
        .collect()
}

fn ranges_to_proto(ranges: &Ranges) -> value::Ranges {
    value::Ranges {
        range: ranges.intervals().iter().map(|&(begin, end)| value::Range { begin, end }).collect(),
    }
}

/// Domain resources from wire resources, or a message naming the first entry that does not fit.
#[expect(deprecated, reason = "frameworks may still send the pre-refinement `role`")]
pub fn resources_from_proto(resources: &[v1::Resource]) -> Result<Resources, String> {
    let mut out = Resources::new();
    for r in resources {
        let name = &r.name;
        if name.is_empty() {
            return Err("a resource has an empty name".into());
        }
        if r.reservation.is_some()
            || r.reservations
                .iter()
                .any(|res| res.r#type() != v1::resource::reservation_info::Type::Static)
        {
            return Err(format!("resource '{name}': dynamic reservations are not supported yet"));
        }
        if r.disk.is_some() || r.revocable.is_some() || r.shared.is_some() {
            return Err(format!(
                "resource '{name}': disk info, revocable and shared resources are not supported yet"
            ));
        }
        let role = match (r.reservations.last(), &r.role) {
            (Some(reservation), _) => reservation.role.clone().unwrap_or_else(|| UNRESERVED.into()),
            (None, Some(role)) => role.clone(),
            (None, None) => UNRESERVED.into(),
        };
        let value =
            match r.r#type() {
                value::Type::Scalar => {
                    let scalar = r.scalar.as_ref().ok_or_else(|| {
                        format!("resource '{name}' is SCALAR but has no 'scalar'")
                    })?;
                    if !scalar.value.is_finite() || scalar.value < 0.0 {
                        return Err(format!(
                            "resource '{name}' has an invalid scalar value {}",
                            scalar.value
                        ));
                    }
                    Value::Scalar(Scalar::from_f64(scalar.value))
                }
                value::Type::Ranges => {
                    let ranges = r.ranges.as_ref().ok_or_else(|| {
                        format!("resource '{name}' is RANGES but has no 'ranges'")
                    })?;
                    let ranges =
                        Ranges::try_from_intervals(ranges.range.iter().map(|x| (x.begin, x.end)))
                            .map_err(|e| format!("resource '{name}': {e}"))?;
                    Value::Ranges(ranges)
                }
                value::Type::Set => {
                    let set = r
                        .set
                        .as_ref()
                        .ok_or_else(|| format!("resource '{name}' is SET but has no 'set'"))?;
                    Value::Set(set.item.iter().cloned().collect())
                }
                value::Type::Text => return Err(format!("resource '{name}' cannot be TEXT")),
            };
        out.push(Resource::new(name.clone(), role, value)).map_err(|e| e.to_string())?;
    }
    Ok(out)
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
mod tests {
    use super::*;

    #[test]
    #[expect(deprecated, reason = "checks the pre-refinement `role` clients read")]
    fn resources_round_trip_through_the_wire() {
        let resources = Resources::parse(
            "cpus:2.5;mem:1024;ports:[31000-31005,31010-31020];disks:{a,b};cpus(ads):1",
        )
        .expect("valid");
        let wire = resources_to_proto(&resources, None);
        assert_eq!(resources_from_proto(&wire), Ok(resources));
        let ads = wire.iter().find(|r| r.role.as_deref() == Some("ads")).expect("reserved entry");
        assert_eq!(ads.name, "cpus");
    }

    #[test]
    fn allocation_info_is_attached_when_asked() {
        let resources = Resources::parse("cpus:1").expect("valid");
        let info = v1::resource::AllocationInfo { role: Some("dev".into()) };
        let wire = resources_to_proto(&resources, Some(&info));
        assert_eq!(wire[0].allocation_info, Some(info));
    }

    #[test]
    fn bad_wire_resources_are_refused_with_the_name() {
        let mut negative = resources_to_proto(&Resources::parse("cpus:1").expect("valid"), None);
        negative[0].scalar = Some(value::Scalar { value: -1.0 });
        assert!(resources_from_proto(&negative).expect_err("negative").contains("cpus"));

        let mut missing = negative.clone();
        missing[0].scalar = None;
        assert!(resources_from_proto(&missing).expect_err("missing").contains("no 'scalar'"));

        let mut inverted =
            resources_to_proto(&Resources::parse("ports:[1-2]").expect("valid"), None);
        inverted[0].ranges = Some(value::Ranges { range: vec![value::Range { begin: 5, end: 1 }] });
        assert!(resources_from_proto(&inverted).expect_err("inverted").contains("ports"));
    }

    #[test]
    fn attributes_keep_their_types() {
        let attributes = Attributes::parse("rack:r1;level:3;ports:[1-2]").expect("valid");
        let wire = attributes_to_proto(&attributes);
        assert_eq!(wire[0].r#type(), value::Type::Text);
        assert_eq!(wire[1].r#type(), value::Type::Scalar);
        assert_eq!(wire[2].r#type(), value::Type::Ranges);
    }
}
