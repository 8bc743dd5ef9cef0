//! Unit tests of resource arithmetic, role filters, defaults and the display/parse round trip,
//! and of what reservations, volumes and flags change in them: merging, indivisible entries,
//! hierarchical role filters and the validation rules of one entry.
//!
//! Parser error messages are tested next to the parser in `parse.rs`, range algebra in
//! `ranges.rs`, the wire formats in `convert`, the operations in `operations`; this file covers
//! the collection-level behaviour the allocator and the operations rely on.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("test resources are valid")
}

#[test]
fn point_one_plus_point_two_cpus_is_point_three() {
    let sum = res("cpus:0.1") + res("cpus:0.2");
    assert_eq!(sum, res("cpus:0.3"));
    assert_eq!(sum.cpus(), Scalar::from_milli(300));
    assert_eq!(sum.to_string(), "cpus:0.3");
}

#[test]
fn addition_and_subtraction_table() {
    // (left, right, left + right, left - right saturating, checked_sub is defined)
    let cases = [
        ("cpus:2;mem:512", "cpus:1", "cpus:3;mem:512", "cpus:1;mem:512", true),
        ("cpus:1", "cpus:2", "cpus:3", "", false),
        ("cpus:1", "cpus:1", "cpus:2", "", true),
        ("cpus:1", "cpus(ads):1", "cpus:1;cpus(ads):1", "cpus:1", false),
        ("cpus(ads):2", "cpus(ads):0.5", "cpus(ads):2.5", "cpus(ads):1.5", true),
        ("ports:[1-10]", "ports:[3-4]", "ports:[1-10]", "ports:[1-2,5-10]", true),
        ("ports:[1-10]", "ports:[9-12]", "ports:[1-12]", "ports:[1-8]", false),
        ("disks:{a,b}", "disks:{b}", "disks:{a,b}", "disks:{a}", true),
        ("disks:{a}", "disks:{c}", "disks:{a,c}", "disks:{a}", false),
        ("", "mem:1", "mem:1", "", false),
        ("mem:1", "", "mem:1", "mem:1", true),
    ];
    for (left, right, sum, diff, contained) in cases {
        let (l, r) = (res(left), res(right));
        assert_eq!(&l + &r, res(sum), "{left} + {right}");
        assert_eq!(&l - &r, res(diff), "{left} - {right}");
        assert_eq!(l.contains(&r), contained, "{left} contains {right}");
        let checked = l.checked_sub(&r);
        assert_eq!(checked, contained.then(|| res(diff)), "{left} checked_sub {right}");
        let mut acc = l.clone();
        acc += &r;
        acc -= &r;
        // Adding then removing the same thing restores the start only for disjoint ranges and
        // sets, which is why the saturating sum is compared with `contains` instead.
        assert!(l.contains(&acc), "{left} + {right} - {right} stays within {left}");
    }
}

#[test]
fn zero_and_empty_entries_are_dropped() {
    let mut r = res("cpus:1;mem:10");
    r -= res("cpus:1");
    assert_eq!(r, res("mem:10"));
    assert_eq!(r.iter().count(), 1);
    r -= res("mem:20");
    assert!(r.is_empty());
    let mut p = res("ports:[1-2]");
    p -= res("ports:[1-2]");
    assert!(p.is_empty());
}

#[test]
fn accessors_sum_over_roles() {
    let r = res("cpus:2;cpus(ads):1.5;mem:1024;disk(ads):20;ports:[1-2];ports(ads):[5-5]");
    assert_eq!(r.cpus(), Scalar::from_milli(3500));
    assert_eq!(r.mem(), Scalar::from_int(1024));
    assert_eq!(r.disk(), Scalar::from_int(20));
    assert_eq!(r.scalar("gpus"), Scalar::ZERO);
    assert_eq!(r.ports(), Ranges::try_from_intervals([(1, 2), (5, 5)]).expect("valid"));
    assert_eq!(r.quantity("ports"), Scalar::from_int(3));
    assert_eq!(r.quantities().get("cpus"), Some(&Scalar::from_milli(3500)));
}

#[test]
fn role_filters() {
    let r = res("cpus:2;cpus(ads):1;mem(web):64;mem:32");
    assert_eq!(r.unreserved(), res("cpus:2;mem:32"));
    assert_eq!(r.reserved("ads"), res("cpus(ads):1"));
    assert_eq!(r.reserved("nobody"), Resources::new());
    assert_eq!(r.allocatable_to("ads"), res("cpus:2;cpus(ads):1;mem:32"));
    assert_eq!(r.allocatable_to("web"), res("cpus:2;mem:32;mem(web):64"));
    // Reservations of ancestors count, those of descendants and of look-alike names do not.
    let h = res("cpus:1;cpus(eng):2;cpus(eng/web):3;cpus(engine):4;cpus(eng/web/x):5");
    assert_eq!(h.allocatable_to("eng/web"), res("cpus:1;cpus(eng):2;cpus(eng/web):3"));
    assert_eq!(h.allocatable_to("eng"), res("cpus:1;cpus(eng):2"));
    assert!(r.iter().filter(|e| e.role() == "ads").all(Resource::is_reserved));
}

#[test]
fn min_allocatable_quantities_ignore_roles() {
    let offer = res("cpus(ads):0.005;cpus:0.005;ports:[1-3]");
    assert!(offer.contains_quantities(&res("cpus:0.01")));
    assert!(!offer.contains_quantities(&res("cpus:0.011")));
    assert!(offer.contains_quantities(&res("ports:[7-9]")));
    assert!(!offer.contains_quantities(&res("mem:32")));
    assert!(offer.contains_quantities(&Resources::new()));
}

#[test]
fn push_refuses_a_second_value_type_for_a_name() {
    let mut r = Resources::new();
    r.push(Resource::new("cpus", UNRESERVED, Value::Scalar(Scalar::from_int(1)))).expect("first");
    r.push(Resource::new("cpus", "ads", Value::Scalar(Scalar::from_int(1)))).expect("same kind");
    let err = r
        .push(Resource::new("cpus", "ads", Value::Set(Set::from(["x".to_string()]))))
        .expect_err("kind conflict");
    assert_eq!(err.to_string(), "resource 'cpus' is a scalar and cannot also be a set");
    assert_eq!(r, res("cpus:1;cpus(ads):1"));
    assert_eq!(r.kind_of("cpus"), Some(ValueKind::Scalar));
}

#[test]
fn default_agent_resources_arithmetic() {
    // (cpus, mem total MB, disk total MB, expected)
    let cases = [
        (8, 16384, 102400, "cpus:8;mem:15360;disk:97280"),
        (2, 2048, 10240, "cpus:2;mem:1024;disk:5120"),
        (1, 2047, 10239, "cpus:1;mem:1023;disk:5119"),
        (1, 1001, 3, "cpus:1;mem:500;disk:1"),
        (0, 0, 0, "cpus:1;mem:1024;disk:10240"),
    ];
    for (cpus, mem, disk, expected) in cases {
        let expected = res(expected) + res("ports:[31000-32000]");
        assert_eq!(default_agent_resources(cpus, mem, disk), expected, "{cpus} {mem} {disk}");
    }
}

#[test]
fn with_defaults_fills_only_missing_names() {
    let detected = default_agent_resources(4, 8192, 51200);
    let given = res("cpus(ads):2;mem:100").with_defaults(&detected);
    assert_eq!(given, res("cpus(ads):2;mem:100;disk:46080;ports:[31000-32000]"));
    assert_eq!(Resources::new().with_defaults(&detected), detected);
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["cpus", "mem", "disk", "gpus"]).prop_map(str::to_string)
}

fn role() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["*", "ads", "web"]).prop_map(str::to_string)
}

/// Random resources where each name keeps one kind: scalars for the usual names, ranges for
/// `ports`, sets for `disks`.
fn resources() -> impl Strategy<Value = Resources> {
    let scalar = (name(), role(), 0i64..5000)
        .prop_map(|(n, r, milli)| Resource::new(n, r, Value::Scalar(Scalar::from_milli(milli))));
    let ports = (role(), 0u64..100, 0u64..20)
        .prop_map(|(r, b, w)| Resource::new("ports", r, Value::Ranges(Ranges::interval(b, b + w))));
    let disks = (role(), prop::collection::btree_set("[a-d]", 0..3))
        .prop_map(|(r, items)| Resource::new("disks", r, Value::Set(items)));
    prop::collection::vec(prop_oneof![scalar, ports, disks], 0..8).prop_map(|entries| {
        let mut out = Resources::new();
        for entry in entries {
            out.push(entry).expect("the generator keeps one kind per name");
        }
        out
    })
}

proptest! {
    #[test]
    fn display_then_parse_is_identity(r in resources()) {
        prop_assert_eq!(Resources::parse(&r.to_string()).expect("display output parses"), r);
    }

    #[test]
    fn arithmetic_laws(a in resources(), b in resources()) {
        let sum = &a + &b;
        prop_assert!(sum.contains(&a) && sum.contains(&b));
        prop_assert_eq!(&b + &a, sum.clone());
        prop_assert!(a.contains(&(&a - &b)));
        prop_assert!(a.contains(&Resources::new()));
        // What is contained can be taken out and put back exactly.
        let part = &a - &b;
        let rest = a.checked_sub(&part).expect("a contains a - b");
        prop_assert_eq!(rest + &part, a.clone());
        prop_assert_eq!(a.checked_sub(&b).is_some(), a.contains(&b));
        for name in ["cpus", "mem", "disk", "gpus"] {
            prop_assert_eq!(sum.scalar(name), a.scalar(name) + b.scalar(name));
        }
    }
}

/// The single entry of `text` (`cpus(eng):4`).
fn one(text: &str) -> Resource {
    res(text).iter().next().cloned().expect("test text has one non-empty entry")
}

/// `text` with a dynamic reservation for `role` by `principal` pushed on top.
fn dynamic(text: &str, role: &str, principal: Option<&str>) -> Resource {
    one(text).pushed(Reservation::new_dynamic(role, principal))
}

/// A persistent volume `id` made of the (reserved) disk of `text`.
fn volume(text: &str, id: &str) -> Resource {
    one(text).with_disk(DiskInfo::persistent_volume(id, None, "data"))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| Label { key: k.to_string(), value: Some(v.to_string()) }).collect()
}

fn mount_disk(text: &str, root: &str) -> Resource {
    one(text).with_disk(DiskInfo {
        source: Some(DiskSource {
            kind: DiskSourceKind::Mount,
            root: Some(root.into()),
            id: None,
            metadata: Labels::default(),
            profile: None,
            vendor: None,
        }),
        ..DiskInfo::default()
    })
}

#[test]
fn entries_merge_only_when_everything_but_the_amount_is_equal() {
    let eng = |p| Reservation::new_dynamic("eng", p);
    let tagged = |pairs: &[(&str, &str)]| eng(Some("alice")).with_labels(labels(pairs));
    let mut revocable = one("cpus:1");
    revocable.revocable = true;
    // (left, right, number of entries in left + right)
    let cases = [
        (dynamic("cpus:1", "eng", Some("alice")), dynamic("cpus:2", "eng", Some("alice")), 1),
        (
            one("cpus:1").pushed(tagged(&[("a", "1"), ("b", "2")])),
            one("cpus:1").pushed(tagged(&[("b", "2"), ("a", "1")])),
            1,
        ),
        (
            one("cpus:1").pushed(tagged(&[("a", "1")])),
            one("cpus:1").pushed(tagged(&[("a", "2")])),
            2,
        ),
        (dynamic("cpus:1", "eng", Some("alice")), dynamic("cpus:1", "eng", Some("bob")), 2),
        (dynamic("cpus:1", "eng", None), one("cpus(eng):1"), 2),
        (dynamic("cpus:1", "eng", None), dynamic("cpus:1", "web", None), 2),
        (one("cpus(eng):1").pushed(eng(None)), dynamic("cpus:1", "eng", None), 2),
        (volume("disk(eng):10", "v1"), one("disk(eng):10"), 2),
        (volume("disk(eng):10", "v1"), volume("disk(eng):10", "v2"), 2),
        (revocable, one("cpus:1"), 2),
        (mount_disk("disk(eng):10", "/mnt/a"), mount_disk("disk(eng):10", "/mnt/b"), 2),
    ];
    for (left, right, entries) in cases {
        let sum = Resources::from(left.clone()) + Resources::from(right.clone());
        assert_eq!(sum.iter().count(), entries, "{left} + {right} = {sum}");
        assert_eq!(sum.disk() + sum.cpus(), left.value.quantity() + right.value.quantity());
        assert!(sum.contains(&left.into()) && sum.contains(&right.into()));
    }
}

#[test]
fn indivisible_entries_are_used_whole() {
    for whole in [volume("disk(eng):100", "v1"), mount_disk("disk(eng):100", "/mnt/a")] {
        let name = whole.to_string();
        let mut part = whole.clone();
        part.value = Value::Scalar(Scalar::from_int(40));
        let (whole, part) = (Resources::from(whole), Resources::from(part));
        let offer = &whole + &res("cpus:1");
        assert!(offer.contains(&whole), "{name}");
        assert!(!offer.contains(&part), "{name}: a part is not contained");
        assert_eq!(offer.checked_sub(&part), None, "{name}: a part cannot be subtracted");
        assert_eq!(&offer - &part, offer, "{name}: saturating removal leaves it alone");
        assert_eq!(offer.checked_sub(&whole), Some(res("cpus:1")), "{name}: the whole goes");
    }
    // Plain disk stays divisible, reserved or not.
    let plain = Resources::from(dynamic("disk:100", "eng", None));
    let part = Resources::from(dynamic("disk:40", "eng", None));
    assert_eq!(plain.checked_sub(&part), Some(Resources::from(dynamic("disk:60", "eng", None))));
}

#[test]
fn hierarchical_role_filters() {
    let r: Resources = [
        one("cpus:1"),
        one("cpus(eng):2"),
        dynamic("cpus(eng):4", "eng/web", None),
        dynamic("mem:8", "eng/web/api", None),
        one("mem(engineering):16"),
        dynamic("disk:32", "ops", Some("p")),
    ]
    .into_iter()
    .collect();
    // (role, what it may be offered)
    let cases: [(&str, Vec<Resource>); 5] = [
        ("eng", vec![one("cpus:1"), one("cpus(eng):2")]),
        (
            "eng/web",
            vec![one("cpus:1"), one("cpus(eng):2"), dynamic("cpus(eng):4", "eng/web", None)],
        ),
        (
            "eng/web/api",
            vec![
                one("cpus:1"),
                one("cpus(eng):2"),
                dynamic("cpus(eng):4", "eng/web", None),
                dynamic("mem:8", "eng/web/api", None),
            ],
        ),
        ("engineering", vec![one("cpus:1"), one("mem(engineering):16")]),
        ("ops", vec![one("cpus:1"), dynamic("disk:32", "ops", Some("p"))]),
    ];
    for (role, expected) in cases {
        assert_eq!(r.allocatable_to(role), expected.into_iter().collect(), "role {role}");
    }
    assert_eq!(r.reserved("eng"), res("cpus(eng):2"));
    assert_eq!(r.reserved("eng/web"), Resources::from(dynamic("cpus(eng):4", "eng/web", None)));
    assert_eq!(r.unreserved(), res("cpus:1"));
    assert!(is_strict_subrole("a/b", "a") && !is_strict_subrole("a", "a"));
    assert!(!is_strict_subrole("ab", "a") && !is_strict_subrole("a", "*"));
    assert_eq!(r.without_refinements().iter().count(), 5);
    assert_eq!(r.checkpointed().iter().count(), 3, "the dynamic reservations");
}

#[test]
fn accessors_of_a_reserved_volume() {
    let v = volume("disk(eng):100", "v1").pushed(Reservation::new_dynamic("eng/db", Some("p")));
    assert_eq!(v.role(), "eng/db");
    assert!(v.is_reserved() && v.is_dynamically_reserved() && v.is_refined());
    assert!(v.is_persistent_volume() && v.is_indivisible() && v.needs_checkpointing());
    assert_eq!(v.persistence_id(), Some("v1"));
    assert_eq!(v.without_volume(), dynamic("disk(eng):100", "eng/db", Some("p")));
    assert_eq!(v.popped().map(|p| p.role().to_string()), Some("eng".to_string()));
    assert_eq!(one("disk:1").popped(), None);
    let volumes = Resources::from(v) + res("disk(eng):5");
    assert_eq!(volumes.persistence_ids(), BTreeSet::from(["v1"]));
    assert_eq!(volumes.persistent_volumes().iter().count(), 1);
}

#[test]
fn display_spells_out_what_the_text_syntax_cannot() {
    let mut shared = volume("disk(eng):100", "v1");
    shared.shared = true;
    let mut revocable = one("cpus:1");
    revocable.revocable = true;
    let cases = [
        (one("cpus(eng):4"), "cpus(eng):4"),
        (dynamic("cpus:4", "eng", Some("alice")), "cpus(reservations: [(DYNAMIC,eng,alice)]):4"),
        (
            one("cpus(eng):4").pushed(
                Reservation::new_dynamic("eng/web", None).with_labels(labels(&[("k", "v")])),
            ),
            "cpus(reservations: [(STATIC,eng),(DYNAMIC,eng/web,{k:v})]):4",
        ),
        (volume("disk(eng):100", "v1"), "disk(eng)[v1:data]:100"),
        (shared, "disk(eng)[v1:data]<SHARED>:100"),
        (mount_disk("disk:10", "/mnt/a"), "disk[MOUNT:/mnt/a]:10"),
        (revocable, "cpus{REV}:1"),
    ];
    for (resource, text) in cases {
        assert_eq!(resource.to_string(), text);
    }
}

#[test]
fn validation_of_stacks_volumes_and_flags() {
    let stacked = |roles: &[(&str, ReservationKind)]| {
        let mut r = one("cpus:1");
        r.reservations = roles
            .iter()
            .map(|(role, kind)| Reservation {
                role: role.to_string(),
                kind: *kind,
                principal: None,
                labels: Labels::default(),
            })
            .collect();
        r
    };
    use ReservationKind::{Dynamic, Static};
    let mut revocable_dynamic = dynamic("cpus:1", "eng", None);
    revocable_dynamic.revocable = true;
    let mut shared_cpus = one("cpus:1");
    shared_cpus.shared = true;
    let mut read_only = volume("disk(eng):1", "v1");
    if let Some(v) = read_only.disk.as_mut().and_then(|d| d.volume.as_mut()) {
        v.mode = VolumeMode::Ro;
    }
    // (resource, expected error text or "" for valid)
    let cases = [
        (stacked(&[("eng", Static), ("eng/web", Dynamic), ("eng/web/a", Dynamic)]), ""),
        (stacked(&[("eng", Dynamic), ("eng/web", Dynamic)]), ""),
        (read_only, ""),
        (
            stacked(&[("eng", Static), ("eng/web", Static)]),
            "invalid refined reservation: a refined reservation (role 'eng/web') cannot be STATIC",
        ),
        (
            stacked(&[("eng", Static), ("ops", Dynamic)]),
            "invalid refined reservation: role 'ops' is not a refinement of 'eng'",
        ),
        (
            stacked(&[("eng", Static), ("eng", Dynamic)]),
            "invalid refined reservation: role 'eng' is not a refinement of 'eng'",
        ),
        (
            stacked(&[("*", Dynamic)]),
            "invalid reservation role '*': '*' means unreserved and cannot hold a reservation",
        ),
        (
            stacked(&[("-x", Dynamic)]),
            "invalid reservation role '-x': a role cannot start with '-'",
        ),
        (volume("disk:1", "v1"), "persistent volumes cannot be created from unreserved resources"),
        (
            volume("disk(eng):1", "a/b"),
            "persistence ID 'a/b' is invalid: 'a/b' contains invalid characters",
        ),
        (
            one("mem(eng):1").with_disk(DiskInfo::persistent_volume("v", None, "d")),
            "DiskInfo should not be set for 'mem' resource",
        ),
        (one("disk(eng):1").with_disk(DiskInfo::default()), "DiskInfo is set but empty"),
        (
            one("disk(eng):1").with_disk(DiskInfo {
                persistence: DiskInfo::persistent_volume("v", None, "d").persistence,
                ..DiskInfo::default()
            }),
            "expecting 'volume' to be set for persistent volume",
        ),
        (
            one("disk(eng):1").with_disk(DiskInfo {
                volume: DiskInfo::persistent_volume("v", None, "d").volume,
                ..DiskInfo::default()
            }),
            "non-persistent volume not supported",
        ),
        (
            one("disk(eng):1").with_disk(DiskInfo::persistent_volume("v", None, "../up")),
            "invalid container_path '../up' for persistent volume: it must be non-empty and free \
             of '..'",
        ),
        (
            revocable_dynamic,
            "dynamically reserved resources cannot be created from revocable resources",
        ),
        (shared_cpus, "only persistent volumes can be shared"),
    ];
    for (resource, expected) in cases {
        let got = resource.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(got, expected, "{resource}");
    }
}

fn stack() -> impl Strategy<Value = Vec<Reservation>> {
    prop::sample::select(vec![0usize, 1, 2, 3]).prop_map(|which| match which {
        0 => Vec::new(),
        1 => vec![Reservation::new_static("ads")],
        2 => vec![Reservation::new_dynamic("ads", Some("p"))],
        _ => vec![Reservation::new_static("eng"), Reservation::new_dynamic("eng/web", None)],
    })
}

/// Random resources with every kind of reservation stack, plus persistent volumes whose ids
/// start with `prefix`: an agent holds each volume once, so two collections that are added
/// up get distinct prefixes.
fn rich_resources(prefix: &'static str) -> impl Strategy<Value = Resources> {
    let scalar = (name(), stack(), 0i64..5000).prop_map(|(n, s, milli)| {
        let mut r = Resource::new(n, UNRESERVED, Value::Scalar(Scalar::from_milli(milli)));
        r.reservations = s;
        r
    });
    let ports = (stack(), 0u64..100, 0u64..20).prop_map(|(s, b, w)| {
        let mut r = Resource::new("ports", UNRESERVED, Value::Ranges(Ranges::interval(b, b + w)));
        r.reservations = s;
        r
    });
    let volumes = prop::collection::btree_set(0i64..4, 0..3).prop_map(move |ids| {
        ids.into_iter()
            .map(|i| {
                let disk = Value::Scalar(Scalar::from_int(10 * (i + 1)));
                Resource::new("disk", "eng", disk).with_disk(DiskInfo::persistent_volume(
                    format!("{prefix}{i}"),
                    None,
                    "d",
                ))
            })
            .collect::<Vec<_>>()
    });
    (prop::collection::vec(prop_oneof![scalar, ports], 0..8), volumes)
        .prop_map(|(entries, volumes)| entries.into_iter().chain(volumes).collect())
}

proptest! {
    #[test]
    fn arithmetic_laws_with_reservations_and_volumes(
        a in rich_resources("a"),
        b in rich_resources("b"),
    ) {
        let sum = &a + &b;
        prop_assert!(sum.contains(&a) && sum.contains(&b));
        prop_assert_eq!(&b + &a, sum.clone());
        prop_assert!(a.contains(&(&a - &b)));
        let part = &a - &b;
        let rest = a.checked_sub(&part).expect("a contains a - b");
        prop_assert_eq!(rest + &part, a.clone());
        prop_assert_eq!(a.checked_sub(&b).is_some(), a.contains(&b));
        prop_assert_eq!(sum.persistent_volumes(), a.persistent_volumes() + b.persistent_volumes());
        prop_assert_eq!(sum.checkpointed(), a.checkpointed() + b.checkpointed());
    }
}
