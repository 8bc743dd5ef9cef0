//! Property tests: random operation sequences over hierarchical roles, refined reservations
//! and quota never offer anything twice nor beyond what is free, reservations reach only their
//! role's subtree, and limits hold; under contention shares converge to the weights; and
//! quota guarantees are met before fair sharing. (The flat-role model test is in
//! `../tests.rs`.)

use super::*;

const HROLES: [&str; 4] = ["a", "a/b", "c", "a/b/c"];
const HTEMPLATES: [&str; 3] = [
    "cpus:4;mem:1024;ports:[31000-31010]",
    "cpus:1;mem:256;cpus(a):2;mem(a/b):128;ports(a/b):[5000-5004]",
    "cpus:2;mem:64;cpus(c):1;disk(a/b/c):10",
];

#[derive(Debug, Clone)]
enum HOp {
    AddAgent(usize, usize),
    RemoveAgent(usize),
    Allocate(bool),
    Recover { pick: usize, refuse: bool },
    Suppress(usize, usize),
    Revive(usize),
    Limit(Option<u8>),
    Weight(usize, u8),
}

fn hop() -> impl Strategy<Value = HOp> {
    prop_oneof![
        2 => (0..5usize, 0..HTEMPLATES.len()).prop_map(|(a, t)| HOp::AddAgent(a, t)),
        1 => (0..5usize).prop_map(HOp::RemoveAgent),
        4 => any::<bool>().prop_map(HOp::Allocate),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(pick, refuse)| HOp::Recover { pick, refuse }),
        1 => (0..3usize, 0..HROLES.len()).prop_map(|(f, r)| HOp::Suppress(f, r)),
        1 => (0..3usize).prop_map(HOp::Revive),
        1 => prop::option::of(0..8u8).prop_map(HOp::Limit),
        1 => (0..HROLES.len(), 1..4u8).prop_map(|(r, w)| HOp::Weight(r, w)),
    ]
}

/// True when `reserved_for` is `role` or one of its ancestors.
fn may_use(role: &str, reserved_for: &str) -> bool {
    role == reserved_for || role.strip_prefix(reserved_for).is_some_and(|r| r.starts_with('/'))
}

/// The cpus `a`'s subtree consumes according to the model: allocations plus reservations.
fn consumed_cpus(model: &Model) -> Scalar {
    let mut out = Scalar::ZERO;
    for (_, role, _, held) in &model.outstanding {
        if may_use(role, "a") {
            out += held.unreserved().cpus();
        }
    }
    for total in model.totals.values() {
        out += total.iter().filter(|e| e.is_reserved() && may_use(e.role(), "a")).fold(
            Scalar::ZERO,
            |acc, e| match e.value {
                Value::Scalar(s) if e.name == "cpus" => acc + s,
                _ => acc,
            },
        );
    }
    out
}

fn hstep(
    allocator: &mut Allocator,
    model: &mut Model,
    limit: &mut Option<u8>,
    now: &mut Duration,
    op: &HOp,
) -> Result<(), TestCaseError> {
    let ag = |i: usize| format!("h{i}");
    match op {
        HOp::AddAgent(a, t) => {
            allocator.add_agent(&ag(*a), res(HTEMPLATES[*t]), &[]);
            model.outstanding.retain(|(_, _, x, _)| *x != ag(*a));
            model.totals.insert(ag(*a), res(HTEMPLATES[*t]));
        }
        HOp::RemoveAgent(a) => {
            allocator.remove_agent(&ag(*a));
            model.outstanding.retain(|(_, _, x, _)| *x != ag(*a));
            model.totals.remove(&ag(*a));
        }
        HOp::Allocate(all) => {
            let before = consumed_cpus(model);
            let offers = if *all {
                allocator.allocate(*now)
            } else {
                allocator.allocate_agents(&[ag(0), ag(1)], *now)
            };
            let mut seen = BTreeSet::new();
            for offer in offers {
                prop_assert!(
                    seen.insert((
                        offer.framework_id.clone(),
                        offer.role.clone(),
                        offer.agent_id.clone()
                    )),
                    "one offer per (framework, role, agent)"
                );
                let total = model.totals.get(&offer.agent_id).cloned().unwrap_or_default();
                let free = total.checked_sub(&model.held_on(&offer.agent_id)).unwrap_or_default();
                prop_assert!(
                    free.contains(&offer.resources),
                    "{} exceeds {}",
                    offer.resources,
                    free
                );
                for entry in &offer.resources {
                    prop_assert!(
                        !entry.is_reserved() || may_use(&offer.role, entry.role()),
                        "{} offered to {}",
                        entry,
                        offer.role
                    );
                }
                model.outstanding.push((
                    offer.framework_id,
                    offer.role,
                    offer.agent_id,
                    offer.resources,
                ));
            }
            if let Some(limit) = limit {
                let limit = Scalar::from_int(i64::from(*limit));
                let after = consumed_cpus(model);
                prop_assert!(
                    after <= limit.max(before),
                    "consumed {after:?} over limit {limit:?} (was {before:?})"
                );
            }
        }
        HOp::Recover { pick, refuse } => {
            if !model.outstanding.is_empty() {
                let (f, r, a, held) = model.outstanding.remove(pick % model.outstanding.len());
                let refuse = refuse.then(|| Duration::from_secs(2));
                allocator.recover(&f, &r, &a, &held, refuse, *now);
            }
        }
        HOp::Suppress(f, r) => allocator.suppress(&format!("f{f}"), &strings(&[HROLES[*r]])),
        HOp::Revive(f) => allocator.revive(&format!("f{f}"), &[]),
        HOp::Limit(l) => {
            let limits = l.map(|l| quantities_of("cpus", l)).unwrap_or_default();
            let config = QuotaConfig { guarantees: BTreeMap::new(), limits };
            allocator.update_quota("a", config).map_err(|e| TestCaseError::fail(e.to_string()))?;
            *limit = *l;
        }
        HOp::Weight(r, w) => allocator.update_weights([(HROLES[*r].to_string(), f64::from(*w))]),
    }
    *now += Duration::from_secs(1);
    for (agent, total) in &model.totals {
        let expected = total.checked_sub(&model.held_on(agent));
        prop_assert!(expected.is_some(), "{agent} is over-allocated");
        prop_assert_eq!(allocator.available(agent), expected.as_ref(), "available on {}", agent);
    }
    Ok(())
}

fn quantities_of(name: &str, amount: u8) -> BTreeMap<String, Scalar> {
    BTreeMap::from([(name.to_string(), Scalar::from_int(i64::from(amount)))])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn hierarchical_roles_reservations_and_limits_hold(ops in prop::collection::vec(hop(), 1..60)) {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        let frameworks: [(&str, &[&str]); 3] = [("f0", &["a"]), ("f1", &["a/b", "a/b/c"]), ("f2", &["c", "a/b"])];
        for (id, roles) in frameworks {
            allocator.add_framework(id, &strings(roles), &[], true);
        }
        let mut model = Model::default();
        let (mut limit, mut now) = (None, Duration::ZERO);
        for op in &ops {
            hstep(&mut allocator, &mut model, &mut limit, &mut now, op)?;
        }
    }

    #[test]
    fn shares_converge_to_weights(seed in any::<u64>(), agents in 40..160usize, heavy in 1..4u8) {
        // Frameworks accept everything: each cycle hands out identical agents until none is
        // left, and DRF with weights w:1 gives the heavy role w agents per light one.
        let config = AllocatorConfig { shuffle_seed: Some(seed), ..AllocatorConfig::default() };
        let mut allocator = Allocator::new(config);
        allocator.update_weights([("heavy".to_string(), f64::from(heavy))]);
        for i in 0..agents {
            allocator.add_agent(&format!("a{i}"), res("cpus:1;mem:256"), &[]);
        }
        allocator.add_framework("h", &strings(&["heavy"]), &[], true);
        allocator.add_framework("l", &strings(&["light"]), &[], true);
        let offers = allocator.allocate(Duration::ZERO);
        prop_assert_eq!(offers.len(), agents);
        let got = offers.iter().filter(|o| o.role == "heavy").count() as f64;
        let want = agents as f64 * f64::from(heavy) / (f64::from(heavy) + 1.0);
        prop_assert!((got - want).abs() <= 1.0, "heavy got {} of {}, want {}", got, agents, want);
        let (h, l) = (allocator.role_share("heavy"), allocator.role_share("light"));
        prop_assert!((h - l).abs() <= 1.0 / agents as f64 + 1e-9, "weighted shares {} and {}", h, l);
    }

    #[test]
    fn guarantees_are_met_before_fair_sharing(
        seed in any::<u64>(),
        agents in 4..40usize,
        guarantee in 1..30u8,
        others in 1..6usize,
    ) {
        let config = AllocatorConfig { shuffle_seed: Some(seed), ..AllocatorConfig::default() };
        let mut allocator = Allocator::new(config);
        for i in 0..agents {
            allocator.add_agent(&format!("a{i}"), res("cpus:1;mem:256"), &[]);
        }
        // Other roles sort before `zq` by name and would otherwise win every tie.
        for i in 0..others {
            allocator.add_framework(&format!("o{i}"), &strings(&[&format!("o{i}")]), &[], true);
        }
        allocator.add_framework("q", &strings(&["zq"]), &[], true);
        let config = QuotaConfig { guarantees: quantities_of("cpus", guarantee), limits: BTreeMap::new() };
        allocator.update_quota("zq", config).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let offers = allocator.allocate(Duration::ZERO);
        let quota_cpus: Scalar = offers.iter().filter(|o| o.role == "zq").map(|o| o.resources.cpus()).sum();
        let expected = Scalar::from_int(i64::from(guarantee).min(agents as i64));
        prop_assert!(quota_cpus >= expected, "zq got {:?}, guarantee {}", quota_cpus, guarantee);
        let consumed = allocator.consumed_quota("zq").get("cpus").copied().unwrap_or_default();
        prop_assert_eq!(consumed, quota_cpus);
    }
}
