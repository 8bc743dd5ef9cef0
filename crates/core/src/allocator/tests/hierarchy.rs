//! Table-driven tests of hierarchical roles, reservations (including reservations of an
//! ancestor role), weights, per-framework minimum allocatable resources, agent updates and
//! allocation updates. Quota is in `quota.rs`; random sequences are in `props.rs`.

use std::collections::BTreeMap;

use super::*;

/// Agent ids `a00`, `a01`, ... each with `total`.
fn agents(n: usize, total: &str) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("a{i:02}"), total.to_string())).collect()
}

fn allocator_with(
    config: AllocatorConfig,
    agents: &[(String, String)],
    frameworks: &[(&str, &[&str])],
) -> Allocator {
    let refs: Vec<(&str, &str)> = agents.iter().map(|(a, r)| (a.as_str(), r.as_str())).collect();
    setup(config, &refs, frameworks)
}

/// How many offers each role received.
fn per_role(offers: &[Allocation]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for offer in offers {
        *out.entry(offer.role.clone()).or_default() += 1;
    }
    out
}

#[test]
fn a_parent_competes_as_a_whole_with_its_siblings() {
    // `a` holds two roles, `b` one: `b` still gets half of the agents, because children are
    // sorted within their parent and the parent's share is the sum of its children's.
    let mut allocator = allocator_with(
        ordered(),
        &agents(12, "cpus:1;mem:128"),
        &[("fx", &["a/x"]), ("fy", &["a/y"]), ("fb", &["b"])],
    );
    let counts = per_role(&allocator.allocate(secs(0.0)));
    assert_eq!(counts.get("b"), Some(&6), "{counts:?}");
    assert_eq!(counts.get("a/x"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("a/y"), Some(&3), "{counts:?}");
    assert!((allocator.role_share("a") - 0.5).abs() < 1e-9);
    assert!((allocator.role_share("a/x") - 0.25).abs() < 1e-9);
    assert!((allocator.framework_share("fx", "a/x") - 0.25).abs() < 1e-9);
}

#[test]
fn a_role_with_own_frameworks_competes_with_its_children() {
    let mut allocator = allocator_with(
        ordered(),
        &agents(9, "cpus:1;mem:128"),
        &[("fa", &["a"]), ("fab", &["a/b"]), ("fc", &["c"])],
    );
    let counts = per_role(&allocator.allocate(secs(0.0)));
    // `a` (its own frameworks and `a/b`) and `c` alternate; inside `a` the two alternate.
    assert_eq!(counts.get("c").copied().unwrap_or(0), 4, "{counts:?}");
    assert_eq!(counts.get("a").copied().unwrap_or(0) + counts.get("a/b").copied().unwrap_or(0), 5);
    assert!(counts.contains_key("a") && counts.contains_key("a/b"), "{counts:?}");
}

#[test]
fn reservations_reach_the_role_and_its_descendants_only() {
    // (agent resources, framework role, expected offer).
    let agent = "cpus:1;mem:64;cpus(eng):2;cpus(eng/web):3;cpus(ops):4";
    let cases = [
        ("eng", "cpus:1;mem:64;cpus(eng):2"),
        ("eng/web", "cpus:1;mem:64;cpus(eng):2;cpus(eng/web):3"),
        ("eng/web/x", "cpus:1;mem:64;cpus(eng):2;cpus(eng/web):3"),
        ("ops", "cpus:1;mem:64;cpus(ops):4"),
        ("engine", "cpus:1;mem:64"),
        ("*", "cpus:1;mem:64"),
    ];
    for (role, expected) in cases {
        let mut allocator = setup(ordered(), &[("a1", agent)], &[("f", &[role])]);
        let offers = allocator.allocate(secs(0.0));
        assert_eq!(offers.len(), 1, "{role}");
        assert_eq!(offers[0].resources, res(expected), "{role}");
    }
}

#[test]
fn reserved_leftovers_go_to_the_next_role_on_the_same_agent() {
    // `web` sorts first and takes the unreserved part; `zads` still gets its reservation on
    // the same agent in the same cycle.
    let agent = "cpus:2;mem:256;cpus(zads):1;mem(zads):64";
    let mut allocator = setup(ordered(), &[("a1", agent)], &[("w", &["web"]), ("d", &["zads"])]);
    let offers = allocator.allocate(secs(0.0));
    let got: Vec<(&str, String)> =
        offers.iter().map(|o| (o.role.as_str(), o.resources.to_string())).collect();
    assert_eq!(
        got,
        [("web", "cpus:2;mem:256".into()), ("zads", "cpus(zads):1;mem(zads):64".into())]
    );
    assert_eq!(allocator.available("a1"), Some(&Resources::new()));
}

#[test]
fn runtime_weights_change_the_split() {
    let cases = [(1.0, 20), (3.0, 30)];
    for (weight, heavy_expected) in cases {
        let mut allocator = allocator_with(
            ordered(),
            &agents(40, "cpus:1;mem:128"),
            &[("fh", &["heavy"]), ("fl", &["light"])],
        );
        allocator.update_weights([("heavy".to_string(), weight)]);
        let counts = per_role(&allocator.allocate(secs(0.0)));
        let heavy = counts.get("heavy").copied().unwrap_or(0);
        assert!(heavy.abs_diff(heavy_expected) <= 1, "weight {weight}: {counts:?}");
    }
}

#[test]
fn per_framework_minimum_overrides_the_global_one() {
    // (framework override for role r, agent resources, offered to f1?)
    let cases: [(Option<&str>, &str, bool); 5] = [
        (None, "cpus:1;mem:1024", true),
        (Some("cpus:2"), "cpus:1;mem:1024", false),
        (Some("cpus:2"), "cpus:2;mem:16", true),
        (Some(""), "disk:1", true),
        (None, "disk:1", false),
    ];
    for (min, agent, offered) in cases {
        let mut allocator = setup(ordered(), &[("a1", agent)], &[]);
        let mut spec = FrameworkSpec { roles: strings(&["r"]), active: true, ..Default::default() };
        if let Some(min) = min {
            let sets = if min.is_empty() { Vec::new() } else { vec![res(min)] };
            spec.min_allocatable.insert("r".into(), sets);
        }
        allocator.set_framework("f1", &spec);
        let got = allocator.allocate(secs(0.0));
        assert_eq!(!got.is_empty(), offered, "{min:?} on {agent}");
    }
    // The override is per framework: another framework of the role takes what f1 refuses.
    let mut allocator = setup(ordered(), &[("a1", "cpus:1;mem:1024")], &[("f2", &["r"])]);
    let mut spec = FrameworkSpec { roles: strings(&["r"]), active: true, ..Default::default() };
    spec.min_allocatable.insert("r".into(), vec![res("cpus:2")]);
    allocator.set_framework("f0", &spec);
    assert_eq!(who(&allocator.allocate(secs(0.0))), pairs(&[("f2", "a1")]));
}

#[test]
fn updating_a_framework_replaces_roles_and_suppression() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("f", &["r1", "r2"])]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(offers.len(), 1);
    allocator.recover(
        "f",
        &offers[0].role,
        "a1",
        &offers[0].resources,
        Some(secs(60.0)),
        secs(0.0),
    );
    // Suppressing the role that got the offer moves the next offer to the other one; the
    // filter of the suppressed role stays until it is unsuppressed.
    let first = offers[0].role.clone();
    let spec = FrameworkSpec {
        roles: strings(&["r1", "r2"]),
        suppressed_roles: vec![first.clone()],
        active: true,
        ..Default::default()
    };
    allocator.set_framework("f", &spec);
    let offers = allocator.allocate(secs(1.0));
    assert_eq!(offers.len(), 1);
    assert_ne!(offers[0].role, first);
    recover_all(&mut allocator, &offers, secs(1.0));
    let other = offers[0].role.clone();
    let spec = FrameworkSpec {
        roles: strings(&["r1", "r2"]),
        suppressed_roles: vec![other],
        active: true,
        ..Default::default()
    };
    allocator.set_framework("f", &spec);
    let offers = allocator.allocate(secs(2.0));
    assert_eq!(offers.len(), 1, "unsuppressing cleared the filter");
    assert_eq!(offers[0].role, first);
}

#[test]
fn event_triggered_cycles_visit_only_the_given_agents() {
    let mut allocator =
        setup(ordered(), &[("a1", AGENT), ("a2", AGENT), ("a3", AGENT)], &[("f", &["r"])]);
    assert_eq!(who(&allocator.allocate_agents(&["a2", "nope"], secs(0.0))), pairs(&[("f", "a2")]));
    allocator.set_agent_active("a1", false);
    assert_eq!(who(&allocator.allocate(secs(1.0))), pairs(&[("f", "a3")]));
    allocator.set_agent_active("a1", true);
    assert_eq!(who(&allocator.allocate(secs(2.0))), pairs(&[("f", "a1")]));
}

#[test]
fn agent_updates_change_what_is_free() {
    let mut allocator = setup(ordered(), &[("a1", "cpus:2;mem:256")], &[("f", &["r"])]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(offers[0].resources, res("cpus:2;mem:256"));
    // The agent grows while the offer is outstanding: only the growth is free.
    allocator.update_agent("a1", res("cpus:3;mem:256;cpus(r):1")).expect("known agent");
    assert_eq!(allocator.available("a1"), Some(&res("cpus:1;cpus(r):1")));
    assert_eq!(allocator.allocate(secs(1.0))[0].resources, res("cpus:1;cpus(r):1"));
    assert!(matches!(
        allocator.update_agent("zz", Resources::new()),
        Err(AllocatorError::UnknownAgent(_))
    ));
}

#[test]
fn allocation_updates_convert_offered_resources() {
    let mut allocator =
        setup(ordered(), &[("a1", "cpus:4;mem:256")], &[("f", &["r"]), ("g", &["other"])]);
    allocator.suppress("g", &[]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(who(&offers), pairs(&[("f", "a1")]));
    // The framework reserves two of the offered cpus inside its ACCEPT.
    allocator
        .update_allocation("f", "r", "a1", &res("cpus:2"), &res("cpus(r):2"))
        .expect("the cpus are allocated");
    assert_eq!(allocator.total("a1"), Some(&res("cpus:2;cpus(r):2;mem:256")));
    assert_eq!(allocator.allocated("f"), res("cpus:2;cpus(r):2;mem:256"));
    assert_eq!(allocator.consumed_quota("r").get("cpus"), Some(&Scalar::from_int(4)));
    let errors = [
        allocator.update_allocation("f", "r", "a1", &res("cpus:2"), &res("cpus(r):3")),
        allocator.update_allocation("f", "r", "a1", &res("cpus:3"), &res("cpus(r):3")),
        allocator.update_allocation("g", "other", "a1", &res("mem:1"), &res("mem(r):1")),
        allocator.update_allocation("f", "r", "zz", &res("mem:1"), &res("mem(r):1")),
    ];
    assert!(matches!(errors[0], Err(AllocatorError::QuantitiesDiffer { .. })));
    assert!(matches!(errors[1], Err(AllocatorError::NotAllocated { .. })));
    assert!(matches!(errors[2], Err(AllocatorError::NotAllocated { .. })));
    assert!(matches!(errors[3], Err(AllocatorError::UnknownAgent(_))));
    // Everything comes back: the reservation stays with `r`, `other` sees only the rest.
    recover_all(&mut allocator, &offers, secs(1.0));
    allocator.recover("f", "r", "a1", &res("cpus(r):2"), None, secs(1.0));
    allocator.suppress("f", &[]);
    allocator.revive("g", &[]);
    let offers = allocator.allocate(secs(2.0));
    assert_eq!(offers[0].resources, res("cpus:2;mem:256"));
}

#[test]
fn refined_reservations_are_stripped_for_frameworks_that_cannot_read_them() {
    use crate::resources::{Reservation, Resource, Scalar, Value};
    let refined = Resource::new("cpus", "*", Value::Scalar(Scalar::from_f64(2.0)))
        .pushed(Reservation::new_dynamic("eng", None))
        .pushed(Reservation::new_dynamic("eng/web", None));
    let mut total = res("cpus:1;mem:512");
    total += &Resources::from(refined.clone());
    for refinement in [false, true] {
        let mut allocator = Allocator::new(ordered());
        allocator.add_agent("a1", total.clone(), &[]);
        let spec = FrameworkSpec {
            roles: strings(&["eng/web"]),
            active: true,
            capabilities: FrameworkCapabilities {
                reservation_refinement: refinement,
                ..Default::default()
            },
            ..Default::default()
        };
        allocator.set_framework("f", &spec);
        let offers = allocator.allocate(secs(0.0));
        assert_eq!(offers.len(), 1, "refinement {refinement}");
        let has_refined = offers[0].resources.iter().any(Resource::is_refined);
        assert_eq!(has_refined, refinement, "{}", offers[0].resources);
        assert_eq!(offers[0].resources.scalar("mem"), Scalar::from_f64(512.0));
        if !refinement {
            // What was stripped stays free, for a framework that can read it.
            let stripped = Resources::from(refined.clone());
            assert!(allocator.available("a1").is_some_and(|free| free.contains(&stripped)));
        }
    }
}
