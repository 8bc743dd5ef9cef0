//! Unit tests of resource arithmetic, role filters, defaults and the display/parse round trip.
//!
//! Parser error messages are tested next to the parser in `parse.rs`, range algebra in
//! `ranges.rs`; this file covers the collection-level behaviour the allocator relies on.

use super::*;
use proptest::prelude::*;

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
    assert!(r.iter().filter(|e| e.role == "ads").all(Resource::is_reserved));
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
