//! Unit tests of the wire conversions: both reservation formats read and written, round trips,
//! refusals with their messages, disk info, allocation info, operations and attributes.

#![expect(deprecated, reason = "checks the pre-refinement `role` clients read")]

use agora_proto::v1::resource::{DiskInfo as WireDiskInfo, ReservationInfo, disk_info};

use super::*;
use crate::resources::{
    DiskInfo, DiskSource, DiskSourceKind, Label, Labels, Reservation, ReservationKind,
};

type Kind = v1::resource::reservation_info::Type;

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("test resources are valid")
}

fn one(text: &str) -> Resource {
    res(text).iter().next().cloned().expect("test text has one non-empty entry")
}

fn dynamic(text: &str, role: &str, principal: Option<&str>) -> Resource {
    one(text).pushed(Reservation::new_dynamic(role, principal))
}

/// A wire `cpus:1` to be shaped by each case.
fn wire_cpus() -> v1::Resource {
    resources_to_proto(&res("cpus:1"), None).remove(0)
}

fn info(kind: Option<Kind>, role: Option<&str>, principal: Option<&str>) -> ReservationInfo {
    ReservationInfo {
        principal: principal.map(str::to_string),
        labels: None,
        role: role.map(str::to_string),
        r#type: kind.map(|k| k as i32),
    }
}

/// Every kind of entry the domain can hold, one of each.
fn zoo() -> Resources {
    let labelled = Reservation::new_dynamic("eng/web", Some("alice")).with_labels(Labels::new([
        Label { key: "team".into(), value: Some("web".into()) },
        Label { key: "flag".into(), value: None },
    ]));
    let mut shared = dynamic("disk:64", "eng", Some("alice"))
        .with_disk(DiskInfo::persistent_volume("v2", Some("alice"), "shared"));
    shared.shared = true;
    let mut revocable = one("cpus:0.5");
    revocable.revocable = true;
    let mount = DiskSource {
        kind: DiskSourceKind::Mount,
        root: Some("/mnt/ssd".into()),
        id: Some("ssd0".into()),
        metadata: Labels::new([Label { key: "k".into(), value: Some("v".into()) }]),
        profile: Some("fast".into()),
        vendor: Some("acme".into()),
    };
    [
        one("cpus:2.5"),
        one("ports:[31000-31005,31010-31020]"),
        one("disks:{a,b}"),
        one("cpus(ads):1"),
        dynamic("mem:512", "eng", Some("alice")),
        dynamic("mem:256", "eng", None),
        one("cpus(eng):2").pushed(labelled),
        dynamic("disk:100", "eng", Some("alice")).with_disk(DiskInfo::persistent_volume(
            "v1",
            Some("alice"),
            "data",
        )),
        shared,
        revocable,
        one("disk(eng):1000").with_disk(DiskInfo { source: Some(mount), ..DiskInfo::default() }),
    ]
    .into_iter()
    .collect()
}

#[test]
fn every_format_round_trips() {
    let zoo = zoo();
    assert_eq!(resources_from_proto(&resources_to_proto(&zoo, None)), Ok(zoo.clone()));
    let post = resources_for_framework(&zoo, ResourceFormat::PostRefinement, None).expect("any");
    assert_eq!(resources_from_proto(&post), Ok(zoo.clone()));
    let plain = zoo.without_refinements();
    assert_eq!(plain.iter().count(), zoo.iter().count() - 1);
    let pre = resources_for_framework(&plain, ResourceFormat::PreRefinement, None).expect("flat");
    assert_eq!(resources_from_proto(&pre), Ok(plain));
    assert!(pre.iter().all(|r| r.reservations.is_empty()), "no stack in the old format");
}

#[test]
fn each_format_writes_its_own_fields() {
    let cases = [
        // (resource, pre-refinement (role, reservation principal), post-refinement stack)
        (one("cpus:1"), Some((None, None)), vec![]),
        (one("cpus(ads):1"), Some((Some("ads"), None)), vec![(Kind::Static, "ads", None)]),
        (
            dynamic("cpus:1", "eng", Some("alice")),
            Some((Some("eng"), Some(Some("alice")))),
            vec![(Kind::Dynamic, "eng", Some("alice"))],
        ),
        (
            dynamic("cpus:1", "eng", None),
            Some((Some("eng"), Some(None))),
            vec![(Kind::Dynamic, "eng", None)],
        ),
        (
            one("cpus(eng):1").pushed(Reservation::new_dynamic("eng/web", None)),
            None,
            vec![(Kind::Static, "eng", None), (Kind::Dynamic, "eng/web", None)],
        ),
    ];
    for (resource, pre, post) in cases {
        let resources = Resources::from(resource.clone());
        let written = resources_for_framework(&resources, ResourceFormat::PreRefinement, None);
        match pre {
            Some((role, reservation)) => {
                let wire = written.expect("representable").remove(0);
                assert_eq!(wire.role.as_deref(), role, "{resource}");
                assert_eq!(
                    wire.reservation.map(|r| r.principal),
                    reservation.map(|p| p.map(str::to_string)),
                    "{resource}"
                );
                assert!(wire.reservations.is_empty());
                assert!(shown_without_refinement(&resource));
            }
            None => {
                assert_eq!(
                    written,
                    Err(ConvertError::NeedsRefinement { resource: Box::new(resource.clone()) })
                );
                assert!(!shown_without_refinement(&resource));
            }
        }
        let wire = resources_for_framework(&resources, ResourceFormat::PostRefinement, None)
            .expect("always representable")
            .remove(0);
        let stack: Vec<_> = wire
            .reservations
            .iter()
            .map(|r| (r.r#type(), r.role.clone().unwrap_or_default(), r.principal.clone()))
            .collect();
        let expected: Vec<_> =
            post.iter().map(|(k, role, p)| (*k, role.to_string(), p.map(str::to_string))).collect();
        assert_eq!(stack, expected, "{resource}");
        let legacy = resource.is_reserved().then(|| resource.role().to_string());
        assert_eq!(wire.role, legacy, "the legacy role names the current reservation");
        assert_eq!(wire.reservation, None);
    }
}

#[test]
fn the_two_formats_read_the_same() {
    let static_pre = v1::Resource { role: Some("ads".into()), ..wire_cpus() };
    let static_post = v1::Resource {
        reservations: vec![info(Some(Kind::Static), Some("ads"), None)],
        ..wire_cpus()
    };
    let dynamic_pre = v1::Resource {
        role: Some("eng".into()),
        reservation: Some(info(None, None, Some("alice"))),
        ..wire_cpus()
    };
    let dynamic_post = v1::Resource {
        reservations: vec![info(Some(Kind::Dynamic), Some("eng"), Some("alice"))],
        ..wire_cpus()
    };
    let with_legacy_role = v1::Resource { role: Some("eng".into()), ..dynamic_post.clone() };
    let cases = [
        (static_pre, one("cpus(ads):1")),
        (static_post, one("cpus(ads):1")),
        (dynamic_pre, dynamic("cpus:1", "eng", Some("alice"))),
        (dynamic_post, dynamic("cpus:1", "eng", Some("alice"))),
        (with_legacy_role, dynamic("cpus:1", "eng", Some("alice"))),
        (v1::Resource { role: Some("*".into()), ..wire_cpus() }, one("cpus:1")),
    ];
    for (wire, expected) in cases {
        assert_eq!(resource_from_proto(&wire), Ok(expected), "{wire:?}");
    }
}

#[test]
fn malformed_resources_are_refused_with_a_clear_message() {
    let both = v1::Resource {
        reservation: Some(info(None, None, None)),
        reservations: vec![info(Some(Kind::Dynamic), Some("eng"), None)],
        ..wire_cpus()
    };
    let untyped = v1::Resource { reservations: vec![info(None, Some("eng"), None)], ..wire_cpus() };
    let unknown = v1::Resource {
        reservations: vec![info(Some(Kind::Unknown), Some("eng"), None)],
        ..wire_cpus()
    };
    let roleless =
        v1::Resource { reservations: vec![info(Some(Kind::Static), None, None)], ..wire_cpus() };
    let mismatch = v1::Resource {
        role: Some("ops".into()),
        reservations: vec![info(Some(Kind::Static), Some("eng"), None)],
        ..wire_cpus()
    };
    let star = v1::Resource { reservation: Some(info(None, None, None)), ..wire_cpus() };
    let typed_pre = v1::Resource {
        role: Some("eng".into()),
        reservation: Some(info(Some(Kind::Dynamic), None, None)),
        ..wire_cpus()
    };
    let static_refined = v1::Resource {
        reservations: vec![
            info(Some(Kind::Static), Some("eng"), None),
            info(Some(Kind::Static), Some("eng/web"), None),
        ],
        ..wire_cpus()
    };
    let not_child = v1::Resource {
        reservations: vec![
            info(Some(Kind::Static), Some("eng"), None),
            info(Some(Kind::Dynamic), Some("ops"), None),
        ],
        ..wire_cpus()
    };
    let bad_role = v1::Resource { role: Some("-x".into()), ..wire_cpus() };
    let mut negative = wire_cpus();
    negative.scalar = Some(value::Scalar { value: -1.0 });
    let mut missing = wire_cpus();
    missing.scalar = None;
    let mut inverted = resources_to_proto(&res("ports:[1-2]"), None).remove(0);
    inverted.ranges = Some(value::Ranges { range: vec![value::Range { begin: 5, end: 1 }] });
    let volume = |disk: WireDiskInfo| v1::Resource {
        name: "disk".into(),
        disk: Some(disk),
        role: Some("eng".into()),
        ..wire_cpus()
    };
    let persistence = Some(disk_info::Persistence { id: "v1".into(), principal: None });
    let good_volume =
        || v1::Volume { container_path: "data".into(), mode: 1, ..Default::default() };
    let host_path = volume(WireDiskInfo {
        persistence: persistence.clone(),
        volume: Some(v1::Volume { host_path: Some("/x".into()), ..good_volume() }),
        source: None,
    });
    let no_volume = volume(WireDiskInfo { persistence: persistence.clone(), ..Default::default() });
    let unreserved_volume = v1::Resource {
        role: None,
        ..volume(WireDiskInfo { persistence, volume: Some(good_volume()), source: None })
    };
    let cpus_disk = v1::Resource { name: "cpus".into(), ..volume(WireDiskInfo::default()) };
    let provider = v1::Resource {
        provider_id: Some(v1::ResourceProviderId { value: "p".into() }),
        ..wire_cpus()
    };
    let mut text = wire_cpus();
    text.set_type(value::Type::Text);
    let cases = [
        (v1::Resource { name: String::new(), ..wire_cpus() }, "a resource has an empty name"),
        (both, "resource 'cpus' must not set both 'reservation' and 'reservations'"),
        (
            untyped,
            "resource 'cpus' has a reservation in 'reservations' whose 'type' is not STATIC or \
             DYNAMIC",
        ),
        (
            unknown,
            "resource 'cpus' has a reservation in 'reservations' whose 'type' is not STATIC or \
             DYNAMIC",
        ),
        (roleless, "resource 'cpus' has a reservation in 'reservations' without 'role'"),
        (
            mismatch,
            "resource 'cpus' has 'role' 'ops' but its current reservation in 'reservations' is \
             for 'eng'",
        ),
        (
            star,
            "resource 'cpus' has a 'reservation' for role '*', which cannot be dynamically \
             reserved",
        ),
        (
            typed_pre,
            "resource 'cpus' must not set 'type' or 'role' in 'reservation'; use 'reservations' \
             for that",
        ),
        (
            static_refined,
            "resource 'cpus' is invalid: invalid refined reservation: a refined reservation \
             (role 'eng/web') cannot be STATIC",
        ),
        (
            not_child,
            "resource 'cpus' is invalid: invalid refined reservation: role 'ops' is not a \
             refinement of 'eng'",
        ),
        (
            bad_role,
            "resource 'cpus' is invalid: invalid reservation role '-x': a role cannot start \
             with '-'",
        ),
        (negative, "resource 'cpus' has an invalid scalar value -1"),
        (missing, "resource 'cpus' is SCALAR but has no 'scalar'"),
        (inverted, "resource 'ports' has an invalid range 5-1: begin is greater than end"),
        (text, "resource 'cpus' cannot be TEXT"),
        (
            host_path,
            "resource 'disk' has a volume with 'host_path' set, which must be unset for a \
             persistent volume",
        ),
        (
            no_volume,
            "resource 'disk' is invalid: expecting 'volume' to be set for persistent volume",
        ),
        (
            unreserved_volume,
            "resource 'disk' is invalid: persistent volumes cannot be created from unreserved \
             resources",
        ),
        (cpus_disk, "resource 'cpus' is invalid: DiskInfo should not be set for 'cpus' resource"),
        (provider, "resource 'cpus' names a resource provider, which Agora does not support"),
    ];
    for (wire, expected) in cases {
        let got = resources_from_proto(std::slice::from_ref(&wire)).map_err(|e| e.to_string());
        assert_eq!(got, Err(expected.to_string()), "{wire:?}");
    }
    let mut mixed = resources_to_proto(&res("cpus:1"), None);
    mixed.extend(resources_to_proto(&res("cpus:[1-2]"), None));
    assert_eq!(
        resources_from_proto(&mixed).map_err(|e| e.to_string()),
        Err("resource 'cpus' is a scalar and cannot also be ranges".to_string())
    );
}

#[test]
fn allocation_info_is_attached_when_asked() {
    let resources = zoo();
    let info = v1::resource::AllocationInfo { role: Some("dev".into()) };
    let wire = resources_to_proto(&resources, Some(&info));
    assert!(wire.iter().all(|r| r.allocation_info.as_ref() == Some(&info)));
    let wire = resources_for_framework(&resources, ResourceFormat::PostRefinement, Some("dev"))
        .expect("post-refinement writes everything");
    assert!(wire.iter().all(|r| r.allocation_info.as_ref() == Some(&info)));
    let wire = resources_for_framework(&resources, ResourceFormat::PostRefinement, None)
        .expect("post-refinement writes everything");
    assert!(wire.iter().all(|r| r.allocation_info.is_none()));
}

#[test]
fn the_format_follows_the_framework_capability() {
    use v1::framework_info::{Capability, capability::Type};
    let mut framework = v1::FrameworkInfo::default();
    assert_eq!(ResourceFormat::for_framework(&framework), ResourceFormat::PreRefinement);
    framework.capabilities.push(Capability { r#type: Some(Type::MultiRole as i32) });
    assert_eq!(ResourceFormat::for_framework(&framework), ResourceFormat::PreRefinement);
    framework.capabilities.push(Capability { r#type: Some(Type::ReservationRefinement as i32) });
    assert_eq!(ResourceFormat::for_framework(&framework), ResourceFormat::PostRefinement);
}

#[test]
fn disk_sources_keep_their_root_where_the_type_says() {
    let resources = zoo();
    let wire = resources_to_proto(&resources, None);
    let mount = wire
        .iter()
        .find_map(|r| r.disk.as_ref().and_then(|d| d.source.as_ref()))
        .expect("the zoo has a mount disk");
    assert_eq!(mount.r#type(), disk_info::source::Type::Mount);
    assert_eq!(mount.mount.as_ref().and_then(|m| m.root.as_deref()), Some("/mnt/ssd"));
    assert_eq!(mount.path, None);
    let volume = wire
        .iter()
        .find_map(|r| r.disk.as_ref().and_then(|d| d.volume.as_ref()))
        .expect("the zoo has volumes");
    assert_eq!(volume.mode(), v1::volume::Mode::Rw);
    assert!(
        resources.iter().any(|r| r.reservations.iter().any(|x| x.kind == ReservationKind::Dynamic))
    );
}

#[test]
fn operations_from_the_wire() {
    use v1::offer::{Operation as Wire, operation};
    let reserved = Resources::from(dynamic("cpus:1", "eng", Some("alice")));
    let volume = Resources::from(
        dynamic("disk:10", "eng", None).with_disk(DiskInfo::persistent_volume("v", None, "d")),
    );
    let wire = |kind: operation::Type| Wire { r#type: Some(kind as i32), ..Default::default() };
    let cases = [
        (
            Wire {
                reserve: Some(operation::Reserve {
                    resources: resources_to_proto(&reserved, None),
                    source: vec![],
                }),
                ..wire(operation::Type::Reserve)
            },
            Ok(Operation::Reserve { resources: reserved.clone() }),
        ),
        (
            Wire {
                unreserve: Some(operation::Unreserve {
                    resources: resources_to_proto(&reserved, None),
                }),
                ..wire(operation::Type::Unreserve)
            },
            Ok(Operation::Unreserve { resources: reserved.clone() }),
        ),
        (
            Wire {
                create: Some(operation::Create { volumes: resources_to_proto(&volume, None) }),
                ..wire(operation::Type::Create)
            },
            Ok(Operation::Create { volumes: volume.clone() }),
        ),
        (
            Wire {
                destroy: Some(operation::Destroy { volumes: resources_to_proto(&volume, None) }),
                ..wire(operation::Type::Destroy)
            },
            Ok(Operation::Destroy { volumes: volume.clone() }),
        ),
        (
            wire(operation::Type::Create),
            Err("Expecting 'create' to be present in a CREATE operation".to_string()),
        ),
        (
            Wire {
                reserve: Some(operation::Reserve {
                    resources: resources_to_proto(&reserved, None),
                    source: resources_to_proto(&res("cpus:1"), None),
                }),
                ..wire(operation::Type::Reserve)
            },
            Err("RESERVE with 'source' is not supported".to_string()),
        ),
        (
            wire(operation::Type::Launch),
            Err("operation type LAUNCH is not a supported resource operation".to_string()),
        ),
    ];
    for (operation, expected) in cases {
        let got = operation_from_proto(&operation).map_err(|e| e.to_string());
        assert_eq!(got, expected, "{operation:?}");
    }
}

#[test]
fn attributes_keep_their_types() {
    let attributes = Attributes::parse("rack:r1;level:3;ports:[1-2]").expect("valid");
    let wire = attributes_to_proto(&attributes);
    assert_eq!(wire[0].r#type(), value::Type::Text);
    assert_eq!(wire[1].r#type(), value::Type::Scalar);
    assert_eq!(wire[2].r#type(), value::Type::Ranges);
}
