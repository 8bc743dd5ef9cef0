//! Table-driven tests of quota: guarantees served first (stage 1), headroom held back for
//! guarantees nobody can use yet, limits, reservations counting as consumption, and the
//! validation of quota updates.

use super::*;

fn quantities(text: &str) -> BTreeMap<String, Scalar> {
    if text.is_empty() { BTreeMap::new() } else { res(text).quantities() }
}

fn quota(guarantees: &str, limits: &str) -> QuotaConfig {
    QuotaConfig { guarantees: quantities(guarantees), limits: quantities(limits) }
}

/// The cpus offered to each role in `offers`.
fn cpus_per_role(offers: &[Allocation]) -> BTreeMap<String, Scalar> {
    let mut out = BTreeMap::new();
    for offer in offers {
        *out.entry(offer.role.clone()).or_default() += offer.resources.cpus();
    }
    out
}

const SMALL: &str = "cpus:2;mem:512";

fn four_agents(frameworks: &[(&str, &[&str])]) -> Allocator {
    setup(ordered(), &[("a1", SMALL), ("a2", SMALL), ("a3", SMALL), ("a4", SMALL)], frameworks)
}

#[test]
fn guarantees_are_served_before_fair_sharing() {
    // Without quota `a` (first by name) and `q` alternate; with a guarantee of 4 cpus `q` gets
    // two whole agents in stage 1 before `a` sees anything.
    let cases = [
        ("", vec![("fa", "a1"), ("fq", "a2"), ("fa", "a3"), ("fq", "a4")]),
        ("cpus:4", vec![("fq", "a1"), ("fq", "a2"), ("fa", "a3"), ("fa", "a4")]),
    ];
    for (guarantee, expected) in cases {
        let mut allocator = four_agents(&[("fa", &["a"]), ("fq", &["q"])]);
        allocator.update_quota("q", quota(guarantee, "")).expect("valid quota");
        assert_eq!(who(&allocator.allocate(secs(0.0))), pairs(&expected), "{guarantee}");
    }
}

#[test]
fn stage_one_offers_only_what_helps_the_guarantee() {
    // A guarantee of 3 cpus: the second agent contributes only 1 cpu in stage 1, and stage 2
    // adds nothing more for `q` on that agent (its remaining cpu goes to `a` or stays).
    let mut allocator = four_agents(&[("fq", &["q"])]);
    allocator.update_quota("q", quota("cpus:3", "cpus:3")).expect("valid quota");
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(cpus_per_role(&offers).get("q"), Some(&Scalar::from_int(3)));
    assert_eq!(allocator.consumed_quota("q").get("cpus"), Some(&Scalar::from_int(3)));
    assert!(allocator.allocate(secs(1.0)).iter().all(|o| o.resources.cpus().is_zero()));
}

#[test]
fn headroom_is_held_back_for_guarantees_nobody_uses_yet() {
    // (guarantee of idle role `q`, cpus that role `a` may get out of 8).
    let cases = [("", 8), ("cpus:4", 4), ("cpus:8", 0), ("cpus:20", 0), ("mem:2048", 8)];
    for (guarantee, expected) in cases {
        let mut allocator = four_agents(&[("fa", &["a"])]);
        allocator.update_quota("q", quota(guarantee, "")).expect("valid quota");
        let offers = allocator.allocate(secs(0.0));
        let got = cpus_per_role(&offers).get("a").copied().unwrap_or_default();
        assert_eq!(got, Scalar::from_int(expected), "guarantee {guarantee}");
    }
}

#[test]
fn limits_cap_consumption_including_reservations() {
    // (agents, limit of `a`, cpus offered to `a`).
    let cases = [
        (vec![SMALL, SMALL, SMALL], "cpus:3", 3),
        (vec![SMALL, SMALL, SMALL], "cpus:100", 6),
        (vec![SMALL, SMALL, "cpus(a):2;mem:64"], "cpus:3", 3),
        (vec!["cpus(a):4;mem:64", SMALL], "cpus:3", 4),
    ];
    for (agent_resources, limit, expected) in cases {
        let ids: Vec<String> = (0..agent_resources.len()).map(|i| format!("a{i}")).collect();
        let agents: Vec<(&str, &str)> =
            ids.iter().map(String::as_str).zip(agent_resources.iter().copied()).collect();
        let mut allocator = setup(ordered(), &agents, &[("fa", &["a"])]);
        allocator.update_quota("a", quota("", limit)).expect("valid quota");
        let offers = allocator.allocate(secs(0.0));
        let got = cpus_per_role(&offers).get("a").copied().unwrap_or_default();
        // Reservations are always offered to their role; only unreserved cpus are capped.
        assert_eq!(got, Scalar::from_int(expected), "{agent_resources:?} limit {limit}");
    }
}

#[test]
fn reservations_satisfy_guarantees() {
    // `q` has 4 cpus reserved: its guarantee is met without holding anything back.
    let mut allocator = setup(
        ordered(),
        &[("a1", "cpus(q):4;mem:64"), ("a2", SMALL), ("a3", SMALL)],
        &[("fa", &["a"])],
    );
    allocator.update_quota("q", quota("cpus:4", "")).expect("valid quota");
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(cpus_per_role(&offers).get("a"), Some(&Scalar::from_int(4)));
    assert_eq!(allocator.consumed_quota("q").get("cpus"), Some(&Scalar::from_int(4)));
}

#[test]
fn nested_roles_consume_their_top_level_quota() {
    let mut allocator = four_agents(&[("fx", &["q/x"]), ("fa", &["a"])]);
    allocator.update_quota("q", quota("cpus:4", "cpus:4")).expect("valid quota");
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(cpus_per_role(&offers).get("q/x"), Some(&Scalar::from_int(4)));
    assert_eq!(allocator.consumed_quota("q").get("cpus"), Some(&Scalar::from_int(4)));
    assert_eq!(allocator.quota("q"), Some(&quota("cpus:4", "cpus:4")));
    allocator.update_quota("q", QuotaConfig::default()).expect("removing quota is valid");
    assert_eq!(allocator.quota("q"), None);
}

#[test]
fn invalid_quota_is_refused() {
    let mut allocator = Allocator::new(ordered());
    assert!(matches!(
        allocator.update_quota("a/b", quota("cpus:1", "")),
        Err(AllocatorError::NestedQuotaRole(_))
    ));
    assert!(matches!(
        allocator.update_quota("a", quota("cpus:2", "cpus:1")),
        Err(AllocatorError::GuaranteeAboveLimit { .. })
    ));
    assert!(allocator.update_quota("*", quota("cpus:1", "cpus:1")).is_ok());
}
