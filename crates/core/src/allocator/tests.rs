//! Unit tests of the allocator: fairness, weights, filters, suppression, reservations, removal,
//! and a property test that random operation sequences never over-allocate an agent.
//!
//! The sorter's share arithmetic is tested in `sorter.rs`, the role tree in `role_tree.rs`;
//! these tests drive the public API only, the way the master does. Hierarchical roles and
//! reservations are in `tests/hierarchy.rs`, quota in `tests/quota.rs`, the property tests of
//! fairness and quota in `tests/props.rs`.

mod hierarchy;
mod props;
mod quota;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("test resources are valid")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// (framework, agent) of each allocation, in order.
fn who(allocations: &[Allocation]) -> Vec<(String, String)> {
    allocations.iter().map(|a| (a.framework_id.clone(), a.agent_id.clone())).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(f, a)| (f.to_string(), a.to_string())).collect()
}

/// An allocator with `agents` (id, resources) and frameworks (id, roles), all active.
fn setup(
    config: AllocatorConfig,
    agents: &[(&str, &str)],
    frameworks: &[(&str, &[&str])],
) -> Allocator {
    let mut allocator = Allocator::new(config);
    for (id, total) in agents {
        allocator.add_agent(id, res(total), &[]);
    }
    for (id, roles) in frameworks {
        allocator.add_framework(id, &strings(roles), &[], true);
    }
    allocator
}

/// Recovers every allocation without installing filters.
fn recover_all(allocator: &mut Allocator, allocations: &[Allocation], now: Duration) {
    for a in allocations {
        allocator.recover(&a.framework_id, &a.role, &a.agent_id, &a.resources, None, now);
    }
}

/// The default configuration with agents visited in id order, so that expectations can list
/// offers in order.
fn ordered() -> AllocatorConfig {
    AllocatorConfig { shuffle_seed: None, ..AllocatorConfig::default() }
}

const AGENT: &str = "cpus:4;mem:4096;ports:[31000-32000]";

#[test]
fn the_first_framework_takes_the_whole_agent_once() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("f1", &["r"])]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(who(&offers), pairs(&[("f1", "a1")]));
    assert_eq!(offers[0].resources, res(AGENT));
    assert_eq!(offers[0].role, "r");
    assert!(allocator.allocate(secs(1.0)).is_empty(), "offered resources stay allocated");
    assert_eq!(allocator.allocated("f1"), res(AGENT));
    assert_eq!(allocator.available("a1"), Some(&Resources::new()));
    assert_eq!(allocator.role_share("r"), 1.0);
}

#[test]
fn two_frameworks_of_one_role_alternate_when_everything_comes_back() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("fa", &["r"]), ("fb", &["r"])]);
    let mut order = Vec::new();
    for cycle in 0..10 {
        let now = secs(f64::from(cycle));
        let offers = allocator.allocate(now);
        assert_eq!(offers.len(), 1, "cycle {cycle}");
        order.push(offers[0].framework_id.clone());
        recover_all(&mut allocator, &offers, now);
    }
    // With equal shares after each recovery, fewer allocations so far wins the tie.
    assert_eq!(order, strings(&["fa", "fb", "fa", "fb", "fa", "fb", "fa", "fb", "fa", "fb"]));
}

#[test]
fn drf_spreads_agents_over_the_frameworks_of_a_role() {
    let agents = [("a1", AGENT), ("a2", AGENT), ("a3", AGENT), ("a4", AGENT)];
    let mut allocator = setup(ordered(), &agents, &[("fa", &["r"]), ("fb", &["r"])]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(who(&offers), pairs(&[("fa", "a1"), ("fb", "a2"), ("fa", "a3"), ("fb", "a4")]));
}

#[test]
fn the_dominant_resource_decides() {
    // fa already holds half of the memory, fb a quarter of the cpus: fb's share is lower.
    let mut allocator = Allocator::new(ordered());
    let used = [
        ("fa".to_string(), "r".to_string(), res("cpus:0.5;mem:4096")),
        ("fb".to_string(), "r".to_string(), res("cpus:2;mem:256")),
    ];
    allocator.add_agent("a0", res("cpus:8;mem:8192"), &used);
    allocator.add_framework("fa", &strings(&["r"]), &[], true);
    allocator.add_framework("fb", &strings(&["r"]), &[], true);
    assert_eq!(allocator.available("a0"), Some(&res("cpus:5.5;mem:3840")));
    assert_eq!(allocator.allocated("fa"), res("cpus:0.5;mem:4096"));
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(who(&offers), pairs(&[("fb", "a0")]));
    assert_eq!(offers[0].resources, res("cpus:5.5;mem:3840"));
}

#[test]
fn weights_two_to_one_give_two_thirds_of_the_agents() {
    let mut config = ordered();
    config.weights.insert("heavy".into(), 2.0);
    let agents: Vec<(String, &str)> =
        (0..30).map(|i| (format!("a{i:02}"), "cpus:1;mem:1024")).collect();
    let agent_refs: Vec<(&str, &str)> = agents.iter().map(|(id, r)| (id.as_str(), *r)).collect();
    let mut allocator = setup(config, &agent_refs, &[("fh", &["heavy"]), ("fl", &["light"])]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(offers.len(), 30);
    let heavy = offers.iter().filter(|a| a.role == "heavy").count();
    assert!((19..=21).contains(&heavy), "heavy got {heavy} of 30 agents");
    let (h, l) = (allocator.role_share("heavy"), allocator.role_share("light"));
    assert!((h - l).abs() < 0.05, "weighted shares {h} and {l} end up close");
}

#[test]
fn excluded_resources_do_not_count_for_fairness() {
    // fa holds every GPU but almost no cpus or memory.
    let run = |excluded: &[&str]| {
        let config = AllocatorConfig { fair_sharing_excluded: strings(excluded), ..ordered() };
        let mut allocator = Allocator::new(config);
        let used = [("fa".to_string(), "r".to_string(), res("gpus:4;cpus:0.1;mem:1"))];
        allocator.add_agent("z-gpu", res("gpus:4;cpus:0.1;mem:1"), &used);
        allocator.add_agent("a-x", res("cpus:1;mem:100"), &[]);
        allocator.add_agent("b-y", res("cpus:1;mem:100"), &[]);
        allocator.add_framework("fa", &strings(&["r"]), &[], true);
        allocator.add_framework("fb", &strings(&["r"]), &[], true);
        who(&allocator.allocate(secs(0.0)))
    };
    assert_eq!(run(&[]), pairs(&[("fb", "a-x"), ("fb", "b-y")]));
    assert_eq!(run(&["gpus"]), pairs(&[("fb", "a-x"), ("fa", "b-y")]));
}

#[test]
fn a_refuse_filter_blocks_until_it_expires() {
    let cases = [(None, true), (Some(secs(0.0)), true), (Some(secs(5.0)), false)];
    for (refuse, offered_at_once) in cases {
        let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("f1", &["r"])]);
        let offers = allocator.allocate(secs(0.0));
        let a = &offers[0];
        allocator.recover("f1", "r", "a1", &a.resources, refuse, secs(0.0));
        assert_eq!(!allocator.allocate(secs(1.0)).is_empty(), offered_at_once, "{refuse:?}");
        if !offered_at_once {
            assert!(allocator.allocate(secs(4.999)).is_empty());
            assert_eq!(who(&allocator.allocate(secs(5.0))), pairs(&[("f1", "a1")]));
        }
    }
}

#[test]
fn a_larger_offer_passes_a_filter() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("f1", &["r"])]);
    allocator.allocate(secs(0.0));
    // The framework launches a task on part of the offer and declines the rest for an hour.
    let task = res("cpus:1;mem:1024;ports:[31000-31000]");
    let declined = res(AGENT) - &task;
    allocator.recover("f1", "r", "a1", &declined, Some(secs(3600.0)), secs(0.0));
    assert!(allocator.allocate(secs(1.0)).is_empty(), "the declined part is filtered");
    // The task ends: the whole agent is free, which is more than was refused.
    allocator.recover("f1", "r", "a1", &task, None, secs(2.0));
    let offers = allocator.allocate(secs(3.0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, res(AGENT));
}

#[test]
fn filters_are_per_agent_and_per_framework() {
    let agents = [("a1", AGENT), ("a2", AGENT)];
    let mut allocator = setup(ordered(), &agents, &[("f1", &["r"])]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(offers.len(), 2);
    allocator.recover("f1", "r", "a1", &offers[0].resources, Some(secs(60.0)), secs(0.0));
    allocator.recover("f1", "r", "a2", &offers[1].resources, None, secs(0.0));
    assert_eq!(who(&allocator.allocate(secs(1.0))), pairs(&[("f1", "a2")]));
    // Another framework of the same role is not bound by f1's filter.
    allocator.add_framework("f2", &strings(&["r"]), &[], true);
    assert_eq!(who(&allocator.allocate(secs(2.0))), pairs(&[("f2", "a1")]));
}

#[test]
fn suppress_and_revive() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("f1", &["r"]), ("f2", &["r"])]);
    allocator.suppress("f1", &[]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(who(&offers), pairs(&[("f2", "a1")]));
    recover_all(&mut allocator, &offers, secs(0.0));
    allocator.suppress("f2", &strings(&["r"]));
    assert!(allocator.allocate(secs(1.0)).is_empty(), "everyone is suppressed");
    allocator.revive("f1", &[]);
    let offers = allocator.allocate(secs(2.0));
    assert_eq!(who(&offers), pairs(&[("f1", "a1")]));
    // Revive also clears the filters of the revived roles.
    allocator.recover("f1", "r", "a1", &offers[0].resources, Some(secs(600.0)), secs(2.0));
    assert!(allocator.allocate(secs(3.0)).is_empty());
    allocator.revive("f1", &strings(&["r"]));
    assert_eq!(who(&allocator.allocate(secs(4.0))), pairs(&[("f1", "a1")]));
}

#[test]
fn suppressing_one_role_keeps_the_others() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("f1", &["r1", "r2"])]);
    allocator.suppress("f1", &strings(&["r1"]));
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].role, "r2");
}

#[test]
fn inactive_frameworks_get_nothing_and_lose_their_filters() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[]);
    allocator.add_framework("f1", &strings(&["r"]), &[], false);
    assert!(allocator.allocate(secs(0.0)).is_empty());
    allocator.activate_framework("f1");
    let offers = allocator.allocate(secs(1.0));
    assert_eq!(offers.len(), 1);
    allocator.recover("f1", "r", "a1", &offers[0].resources, Some(secs(600.0)), secs(1.0));
    allocator.deactivate_framework("f1");
    assert!(allocator.allocate(secs(2.0)).is_empty());
    allocator.activate_framework("f1");
    assert_eq!(who(&allocator.allocate(secs(3.0))), pairs(&[("f1", "a1")]), "the filter is gone");
}

#[test]
fn removing_an_agent_frees_its_allocations() {
    let agents = [("a1", AGENT), ("a2", AGENT)];
    let mut allocator = setup(ordered(), &agents, &[("f1", &["r"])]);
    assert_eq!(allocator.allocate(secs(0.0)).len(), 2);
    allocator.remove_agent("a1");
    assert_eq!(allocator.allocated("f1"), res(AGENT));
    assert_eq!(allocator.available("a1"), None);
    // A late recovery for the removed agent is harmless.
    allocator.recover("f1", "r", "a1", &res(AGENT), Some(secs(5.0)), secs(1.0));
    assert_eq!(allocator.role_share("r"), 1.0);
    allocator.add_agent("a1", res(AGENT), &[]);
    assert_eq!(who(&allocator.allocate(secs(2.0))), pairs(&[("f1", "a1")]));
}

#[test]
fn removing_a_framework_frees_its_allocations() {
    let mut allocator = setup(ordered(), &[("a1", AGENT)], &[("f1", &["r"])]);
    allocator.allocate(secs(0.0));
    allocator.remove_framework("f1");
    assert_eq!(allocator.allocated("f1"), Resources::new());
    assert_eq!(allocator.available("a1"), Some(&res(AGENT)));
    assert_eq!(allocator.role_share("r"), 0.0);
    allocator.add_framework("f2", &strings(&["other"]), &[], true);
    let offers = allocator.allocate(secs(1.0));
    assert_eq!(who(&offers), pairs(&[("f2", "a1")]));
    assert_eq!(offers[0].resources, res(AGENT));
}

#[test]
fn reserved_resources_go_only_to_their_role() {
    let agent = "cpus:2;mem:1024;cpus(ads):4;mem(ads):2048";
    let mut allocator = setup(ordered(), &[("a1", agent)], &[("web", &["web"])]);
    let offers = allocator.allocate(secs(0.0));
    assert_eq!(offers[0].resources, res("cpus:2;mem:1024"));
    recover_all(&mut allocator, &offers, secs(0.0));
    allocator.add_framework("ads", &strings(&["ads"]), &[], true);
    allocator.suppress("web", &[]);
    let offers = allocator.allocate(secs(1.0));
    assert_eq!(who(&offers), pairs(&[("ads", "a1")]));
    assert_eq!(offers[0].resources, res(agent), "the reservation role also gets unreserved");
    recover_all(&mut allocator, &offers, secs(1.0));
    allocator.revive("web", &[]);
    // Both compete: whoever goes first, web never sees the reservation.
    for offer in allocator.allocate(secs(2.0)) {
        let foreign = offer.resources.iter().any(|r| r.is_reserved() && r.role() != offer.role);
        assert!(!foreign, "{} got {}", offer.framework_id, offer.resources);
    }
}

#[test]
fn offers_below_the_minimum_are_held_back() {
    let cases = [
        (ordered(), "cpus:0.005;mem:16;disk:100", false),
        (ordered(), "cpus:0.01", true),
        (ordered(), "mem:32", true),
        (
            AllocatorConfig { min_allocatable: vec![res("cpus:1;mem:64")], ..ordered() },
            "cpus:1;mem:63",
            false,
        ),
        (AllocatorConfig { min_allocatable: Vec::new(), ..ordered() }, "disk:1", true),
    ];
    for (config, agent, offered) in cases {
        let mut allocator = setup(config, &[("a1", agent)], &[("f1", &["r"])]);
        assert_eq!(!allocator.allocate(secs(0.0)).is_empty(), offered, "{agent}");
    }
}

/// One step of the random operation sequences.
#[derive(Debug, Clone)]
enum Op {
    AddAgent { agent: usize, template: usize, used_by: Option<(usize, usize)> },
    RemoveAgent(usize),
    AddFramework { framework: usize, roles: Vec<usize>, suppressed: Vec<usize>, active: bool },
    RemoveFramework(usize),
    Activate(usize),
    Deactivate(usize),
    Suppress(usize, Vec<usize>),
    Revive(usize, Vec<usize>),
    Allocate,
    Recover { pick: usize, part: usize, refuse_secs: u64 },
    Advance(u64),
}

const ROLES: [&str; 3] = ["r0", "r1", "ads"];
const TEMPLATES: [&str; 3] = [
    "cpus:4;mem:4096;ports:[31000-32000]",
    "cpus:2;mem:1024;ports:[31000-31005];cpus(ads):2;mem(ads):512;ports(ads):[5000-5009]",
    "cpus:0.5;mem:64;disk:100;ports:[31000-31004,31010-31020]",
];
const USED: &str = "cpus:0.5;mem:32;ports:[31000-31001]";

fn role_list() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..ROLES.len(), 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    let add_agent = (0..4usize, 0..TEMPLATES.len(), prop::option::of((0..3usize, 0..ROLES.len())))
        .prop_map(|(agent, template, used_by)| Op::AddAgent { agent, template, used_by });
    let add_framework = (0..3usize, role_list(), role_list(), any::<bool>()).prop_map(
        |(framework, roles, suppressed, active)| Op::AddFramework {
            framework,
            roles,
            suppressed,
            active,
        },
    );
    let recover = (any::<usize>(), 0..3usize, 0..3u64)
        .prop_map(|(pick, part, refuse_secs)| Op::Recover { pick, part, refuse_secs });
    // Allocation and recovery are weighted up so that sequences reach busy states.
    prop_oneof![
        2 => add_agent,
        1 => (0..4usize).prop_map(Op::RemoveAgent),
        2 => add_framework,
        1 => (0..3usize).prop_map(Op::RemoveFramework),
        1 => (0..3usize).prop_map(Op::Activate),
        1 => (0..3usize).prop_map(Op::Deactivate),
        1 => (0..3usize, role_list()).prop_map(|(f, r)| Op::Suppress(f, r)),
        1 => (0..3usize, role_list()).prop_map(|(f, r)| Op::Revive(f, r)),
        4 => Just(Op::Allocate),
        4 => recover,
        1 => (0..3u64).prop_map(Op::Advance),
    ]
}

/// What the test believes: totals, and every outstanding allocation as handed out.
#[derive(Default)]
struct Model {
    totals: BTreeMap<String, Resources>,
    outstanding: Vec<(String, String, String, Resources)>,
}

impl Model {
    fn held_on(&self, agent: &str) -> Resources {
        let mut out = Resources::new();
        for (_, _, _, r) in self.outstanding.iter().filter(|(_, _, a, _)| a == agent) {
            out += r;
        }
        out
    }
}

/// Applies `op` to both the allocator and the model, checking each offer against the model.
fn step(
    allocator: &mut Allocator,
    model: &mut Model,
    now: &mut Duration,
    op: &Op,
) -> Result<(), TestCaseError> {
    let fw = |i: usize| format!("f{i}");
    let ag = |i: usize| format!("a{i}");
    let roles = |list: &[usize]| list.iter().map(|&i| ROLES[i].to_string()).collect::<Vec<_>>();
    match op {
        Op::AddAgent { agent, template, used_by } => {
            let used: Vec<_> =
                used_by.iter().map(|&(f, r)| (fw(f), ROLES[r].to_string(), res(USED))).collect();
            allocator.add_agent(&ag(*agent), res(TEMPLATES[*template]), &used);
            model.outstanding.retain(|(_, _, a, _)| *a != ag(*agent));
            model.outstanding.extend(used.into_iter().map(|(f, r, x)| (f, r, ag(*agent), x)));
            model.totals.insert(ag(*agent), res(TEMPLATES[*template]));
        }
        Op::RemoveAgent(agent) => {
            allocator.remove_agent(&ag(*agent));
            model.outstanding.retain(|(_, _, a, _)| *a != ag(*agent));
            model.totals.remove(&ag(*agent));
        }
        Op::AddFramework { framework, roles: r, suppressed, active } => {
            allocator.add_framework(&fw(*framework), &roles(r), &roles(suppressed), *active);
        }
        Op::RemoveFramework(f) => {
            allocator.remove_framework(&fw(*f));
            model.outstanding.retain(|(x, _, _, _)| *x != fw(*f));
        }
        Op::Activate(f) => allocator.activate_framework(&fw(*f)),
        Op::Deactivate(f) => allocator.deactivate_framework(&fw(*f)),
        Op::Suppress(f, r) => allocator.suppress(&fw(*f), &roles(r)),
        Op::Revive(f, r) => allocator.revive(&fw(*f), &roles(r)),
        Op::Allocate => {
            for offer in allocator.allocate(*now) {
                let total = model.totals.get(&offer.agent_id).cloned().unwrap_or_default();
                let free = total.checked_sub(&model.held_on(&offer.agent_id));
                prop_assert!(free.is_some(), "the model over-allocated {}", offer.agent_id);
                let free = free.unwrap_or_default();
                prop_assert!(
                    free.contains(&offer.resources),
                    "offer {} on {} exceeds what is free: {}",
                    offer.resources,
                    offer.agent_id,
                    free
                );
                prop_assert!(
                    offer.resources.iter().all(|r| !r.is_reserved() || r.role() == offer.role)
                );
                model.outstanding.push((
                    offer.framework_id,
                    offer.role,
                    offer.agent_id,
                    offer.resources,
                ));
            }
        }
        Op::Recover { pick, part, refuse_secs } => {
            if model.outstanding.is_empty() {
                return Ok(());
            }
            let idx = pick % model.outstanding.len();
            let (f, r, a, held) = model.outstanding[idx].clone();
            // Give back everything, only the cpus, or only the ports.
            let back = match part {
                0 => held.clone(),
                1 => held.iter().filter(|x| x.name == "cpus").cloned().fold(
                    Resources::new(),
                    |mut acc, x| {
                        acc.push(x).expect("one kind per name");
                        acc
                    },
                ),
                _ => held.iter().filter(|x| x.name == "ports").cloned().fold(
                    Resources::new(),
                    |mut acc, x| {
                        acc.push(x).expect("one kind per name");
                        acc
                    },
                ),
            };
            let refuse = (*refuse_secs > 0).then(|| Duration::from_secs(*refuse_secs));
            allocator.recover(&f, &r, &a, &back, refuse, *now);
            model.outstanding[idx].3 = held - &back;
            if model.outstanding[idx].3.is_empty() {
                model.outstanding.remove(idx);
            }
        }
        Op::Advance(s) => *now += Duration::from_secs(*s),
    }
    // The allocator's own view agrees with the model after every step.
    for (agent, total) in &model.totals {
        let expected = total.checked_sub(&model.held_on(agent));
        prop_assert!(expected.is_some(), "{agent} is over-allocated");
        prop_assert_eq!(allocator.available(agent), expected.as_ref(), "available on {}", agent);
    }
    for f in 0..3 {
        let mut expected = Resources::new();
        for (_, _, _, r) in model.outstanding.iter().filter(|(x, _, _, _)| *x == fw(f)) {
            expected += r;
        }
        prop_assert_eq!(allocator.allocated(&fw(f)), expected, "allocated to {}", fw(f));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_operations_never_allocate_anything_twice(ops in prop::collection::vec(op(), 1..60)) {
        let mut allocator = Allocator::new(ordered());
        let mut model = Model::default();
        let mut now = Duration::ZERO;
        for op in &ops {
            step(&mut allocator, &mut model, &mut now, op)?;
        }
    }
}
