//! Unit tests of the offer operations: whole ACCEPT sequences, the conversions they produce for
//! the agent's checkpoint, and one table of every refusal with its message.

use std::collections::BTreeSet;

use super::*;
use crate::resources::{DiskInfo, Reservation};

fn res(text: &str) -> Resources {
    Resources::parse(text).expect("test resources are valid")
}

/// The single entry of `text` (`cpus(eng):4`).
fn one(text: &str) -> Resource {
    res(text).iter().next().cloned().expect("test text has one non-empty entry")
}

/// `text` with a dynamic reservation for `role` by alice pushed on top.
fn dynamic(text: &str, role: &str) -> Resource {
    one(text).pushed(Reservation::new_dynamic(role, Some("alice")))
}

/// Persistent volume `id` (made by alice) on the reserved disk of `disk`.
fn volume(disk: Resource, id: &str) -> Resource {
    disk.with_disk(DiskInfo::persistent_volume(id, Some("alice"), "data"))
}

fn all(entries: impl IntoIterator<Item = Resource>) -> Resources {
    entries.into_iter().collect()
}

fn roles() -> Vec<String> {
    vec!["eng".to_string(), "eng/web".to_string()]
}

fn alice(roles: &[String]) -> FrameworkView<'_> {
    FrameworkView { roles, principal: Some("alice"), shared_resources: false }
}

#[test]
fn reserve_then_create_then_launch_in_one_accept() {
    let roles = roles();
    let framework = alice(&roles);
    let offered = res("cpus:4;mem:1024;disk:1000");
    // The agent also has a volume that a running task holds, so it is not offered.
    let in_use = volume(dynamic("disk:10", "eng"), "busy");
    let agent_total = &offered + &Resources::from(in_use.clone());
    let used = BTreeSet::from(["busy".to_string()]);
    let mut session = OfferSession::new(offered, agent_total);

    let reserved = all([dynamic("cpus:2", "eng"), dynamic("disk:500", "eng")]);
    session
        .apply(&framework, &used, &Operation::Reserve { resources: reserved.clone() })
        .expect("reserve unreserved resources for a role of the framework");
    let v1 = volume(dynamic("disk:500", "eng"), "v1");
    let create = Operation::Create { volumes: v1.clone().into() };
    session.apply(&framework, &used, &create).expect("create a volume on the reserved disk");
    // The same id again, even though the first volume is about to be used, is refused.
    let again = Operation::Create { volumes: volume(dynamic("disk:1", "eng"), "busy").into() };
    let err = session.apply(&framework, &used, &again).expect_err("duplicate id");
    assert_eq!(err.to_string(), "Invalid CREATE operation: persistence ID 'busy' is not unique");

    let task = all([dynamic("cpus:1", "eng"), v1.clone()]);
    session.launch(&task).expect("the task uses the new reservation and volume");
    assert!(session.agent_total().contains(&v1.clone().into()));
    assert!(session.agent_total().contains(&in_use.into()));

    let (left, conversions) = session.finish();
    assert_eq!(left, res("cpus:2;mem:1024;disk:500") + Resources::from(dynamic("cpus:1", "eng")));
    assert_eq!(conversions.len(), 2, "the failed CREATE left no trace");
    assert_eq!(conversions[0].checkpoint_added(), reserved);
    assert_eq!(conversions[0].checkpoint_removed(), Resources::new());
    assert_eq!(conversions[1].checkpoint_removed(), Resources::from(dynamic("disk:500", "eng")));
    assert_eq!(conversions[1].checkpoint_added(), Resources::from(v1.clone()));
    let checkpointed = conversions
        .iter()
        .fold(Resources::new(), |acc, conversion| conversion.apply_to_checkpointed(&acc));
    assert_eq!(checkpointed, all([dynamic("cpus:2", "eng"), v1]));
}

#[test]
fn refined_reservations_push_and_pop_one_level() {
    let roles = roles();
    let framework = alice(&roles);
    let used = BTreeSet::new();
    let offered = res("cpus(eng):4;mem:64");
    let refined = one("cpus(eng):3").pushed(Reservation::new_dynamic("eng/web", Some("alice")));
    let mut session = OfferSession::new(offered.clone(), offered.clone());
    let reserve = Operation::Reserve { resources: refined.clone().into() };
    let conversion = session.apply(&framework, &used, &reserve).expect("refine for a child role");
    assert_eq!(conversion.consumed, res("cpus(eng):3"));
    assert_eq!(session.offered(), &(res("cpus(eng):1;mem:64") + Resources::from(refined.clone())));
    let unreserve = Operation::Unreserve { resources: refined.clone().into() };
    let conversion = session.apply(&framework, &used, &unreserve).expect("pop the refinement");
    assert_eq!(conversion.checkpoint_removed(), Resources::from(refined));
    assert_eq!(conversion.checkpoint_added(), Resources::new(), "a static reservation is left");
    assert_eq!(session.offered(), &offered);
    assert_eq!(session.agent_total(), &offered);
}

#[test]
fn successful_operations_and_their_checkpoint_changes() {
    let roles = roles();
    let framework = alice(&roles);
    let used = BTreeSet::new();
    let static_volume = volume(one("disk(eng):100"), "s1");
    let dynamic_volume = volume(dynamic("disk:100", "eng"), "d1");
    // (offered, operation, offered afterwards, checkpoint removed, checkpoint added)
    let cases = [
        (
            res("cpus:2"),
            Operation::Reserve { resources: dynamic("cpus:2", "eng").into() },
            Resources::from(dynamic("cpus:2", "eng")),
            Resources::new(),
            Resources::from(dynamic("cpus:2", "eng")),
        ),
        (
            all([dynamic("cpus:2", "eng"), dynamic("cpus:1", "eng")]),
            Operation::Unreserve { resources: dynamic("cpus:1", "eng").into() },
            res("cpus:1") + Resources::from(dynamic("cpus:2", "eng")),
            Resources::from(dynamic("cpus:1", "eng")),
            Resources::new(),
        ),
        (
            res("disk(eng):150"),
            Operation::Create { volumes: static_volume.clone().into() },
            res("disk(eng):50") + Resources::from(static_volume.clone()),
            Resources::new(),
            Resources::from(static_volume.clone()),
        ),
        (
            Resources::from(static_volume.clone()),
            Operation::Destroy { volumes: static_volume.clone().into() },
            res("disk(eng):100"),
            Resources::from(static_volume),
            Resources::new(),
        ),
        (
            Resources::from(dynamic_volume.clone()),
            Operation::Destroy { volumes: dynamic_volume.clone().into() },
            Resources::from(dynamic("disk:100", "eng")),
            Resources::from(dynamic_volume),
            Resources::from(dynamic("disk:100", "eng")),
        ),
    ];
    for (offered, operation, after, removed, added) in cases {
        let agent = AgentView { total: &offered, volumes_in_use: &used };
        let applied = apply(&offered, &framework, &agent, &operation)
            .unwrap_or_else(|e| panic!("{operation:?} on {offered}: {e}"));
        assert_eq!(applied.offered, after, "{operation:?}");
        assert_eq!(applied.conversion.checkpoint_removed(), removed, "{operation:?}");
        assert_eq!(applied.conversion.checkpoint_added(), added, "{operation:?}");
        assert_eq!(applied.conversion.apply_to(&offered), Some(after), "{operation:?}");
    }
}

#[test]
fn refused_operations_say_why() {
    let roles = roles();
    let used = BTreeSet::from(["busy".to_string()]);
    let v1 = volume(dynamic("disk:100", "eng"), "v1");
    let busy = volume(dynamic("disk:10", "eng"), "busy");
    let mut part_of_v1 = v1.clone();
    part_of_v1.value = one("disk:40").value;
    let mut read_only = volume(dynamic("disk:10", "eng"), "ro");
    if let Some(v) = read_only.disk.as_mut().and_then(|d| d.volume.as_mut()) {
        v.mode = VolumeMode::Ro;
    }
    let mut shared = volume(dynamic("disk:10", "eng"), "sh");
    shared.shared = true;
    let bobs = one("disk(eng):10").with_disk(DiskInfo::persistent_volume("b", Some("bob"), "d"));
    let reserve = |r: Resource| Operation::Reserve { resources: r.into() };
    let unreserve = |r: Resource| Operation::Unreserve { resources: r.into() };
    let create = |r: Resource| Operation::Create { volumes: r.into() };
    let destroy = |r: Resource| Operation::Destroy { volumes: r.into() };
    let offered = res("cpus:1;disk:100;disk(eng):100")
        + all([dynamic("mem:64", "eng"), v1.clone(), busy.clone()]);
    // (operation, the error message)
    let cases = [
        (
            reserve(dynamic("cpus:2", "eng")),
            "Invalid RESERVE operation: cpus:2 is not available in the offered resources \
             cpus:1;disk:100;disk(eng):100;\
             disk(reservations: [(DYNAMIC,eng,alice)])[busy:data]:10;\
             disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100;\
             mem(reservations: [(DYNAMIC,eng,alice)]):64",
        ),
        (
            reserve(dynamic("cpus:1", "ops")),
            "Invalid RESERVE operation: role 'ops' of resource \
             cpus(reservations: [(DYNAMIC,ops,alice)]):1 is not one of the framework's roles \
             [\"eng\", \"eng/web\"]",
        ),
        (
            reserve(one("cpus(eng):1")),
            "Invalid RESERVE operation: resource cpus(eng):1 is not dynamically reserved",
        ),
        (
            reserve(one("cpus:1")),
            "Invalid RESERVE operation: resource cpus:1 is not dynamically reserved",
        ),
        (
            reserve(one("cpus:1").pushed(Reservation::new_dynamic("eng", Some("bob")))),
            "Invalid RESERVE operation: a reserve operation was attempted by principal 'alice', \
             but there is a reserved resource in the request with principal 'bob' set in \
             `ReservationInfo`",
        ),
        (
            reserve(one("cpus:1").pushed(Reservation::new_dynamic("eng", None))),
            "Invalid RESERVE operation: a reserve operation was attempted by principal 'alice', \
             but there is a reserved resource in the request with no principal set in \
             `ReservationInfo`",
        ),
        (
            reserve(volume(dynamic("disk:10", "eng"), "new")),
            "Invalid RESERVE operation: a persistent volume \
             disk(reservations: [(DYNAMIC,eng,alice)])[new:data]:10 must already be reserved",
        ),
        (
            reserve(one("cpus(ops):1").pushed(Reservation::new_dynamic("eng/web", Some("alice")))),
            "Invalid RESERVE operation: resource \
             cpus(reservations: [(STATIC,ops),(DYNAMIC,eng/web,alice)]):1 is invalid: invalid \
             refined reservation: role 'eng/web' is not a refinement of 'ops'",
        ),
        (
            unreserve(one("cpus:1")),
            "Invalid UNRESERVE operation: resource cpus:1 is not dynamically reserved",
        ),
        (
            unreserve(one("disk(eng):10")),
            "Invalid UNRESERVE operation: resource disk(eng):10 is not dynamically reserved",
        ),
        (
            unreserve(dynamic("cpus:1", "eng")),
            "Invalid UNRESERVE operation: cpus(reservations: [(DYNAMIC,eng,alice)]):1 is not \
             available in the offered resources cpus:1;disk:100;disk(eng):100;\
             disk(reservations: [(DYNAMIC,eng,alice)])[busy:data]:10;\
             disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100;\
             mem(reservations: [(DYNAMIC,eng,alice)]):64",
        ),
        (
            unreserve(v1.clone()),
            "Invalid UNRESERVE operation: a dynamically reserved persistent volume \
             disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100 cannot be unreserved \
             directly. Please destroy the persistent volume first then unreserve the resource",
        ),
        (
            create(one("disk(eng):10")),
            "Invalid CREATE operation: disk(eng):10 is not a persistent volume",
        ),
        (
            create(volume(one("disk:10"), "new")),
            "Invalid CREATE operation: resource disk[new:data]:10 is invalid: persistent volumes \
             cannot be created from unreserved resources",
        ),
        (
            create(volume(one("disk(eng):10"), "v1")),
            "Invalid CREATE operation: persistence ID 'v1' is not unique",
        ),
        (
            create(volume(one("disk(eng):101"), "new")),
            "Invalid CREATE operation: disk(eng):101 is not available in the offered resources \
             cpus:1;disk:100;disk(eng):100;\
             disk(reservations: [(DYNAMIC,eng,alice)])[busy:data]:10;\
             disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100;\
             mem(reservations: [(DYNAMIC,eng,alice)]):64",
        ),
        (
            create(read_only),
            "Invalid CREATE operation: read-only persistent volume \
             disk(reservations: [(DYNAMIC,eng,alice)])[ro:data:RO]:10 not supported",
        ),
        (
            create(shared),
            "Invalid CREATE operation: shared volume \
             disk(reservations: [(DYNAMIC,eng,alice)])[sh:data]<SHARED>:10 needs the \
             SHARED_RESOURCES capability",
        ),
        (
            create(bobs),
            "Invalid CREATE operation: create volume operation has been attempted by principal \
             'alice', but there is a volume in the operation with principal 'bob' set in \
             'DiskInfo.Persistence'",
        ),
        (destroy(busy), "Invalid DESTROY operation: persistent volume 'busy' is in use"),
        (
            destroy(volume(dynamic("disk:100", "eng"), "gone")),
            "Invalid DESTROY operation: disk(reservations: [(DYNAMIC,eng,alice)])[gone:data]:100 \
             is not available in the offered resources cpus:1;disk:100;disk(eng):100;\
             disk(reservations: [(DYNAMIC,eng,alice)])[busy:data]:10;\
             disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100;\
             mem(reservations: [(DYNAMIC,eng,alice)]):64",
        ),
        (
            destroy(part_of_v1),
            "Invalid DESTROY operation: disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:40 \
             is not available in the offered resources cpus:1;disk:100;disk(eng):100;\
             disk(reservations: [(DYNAMIC,eng,alice)])[busy:data]:10;\
             disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100;\
             mem(reservations: [(DYNAMIC,eng,alice)]):64",
        ),
        (
            destroy(one("disk(eng):10")),
            "Invalid DESTROY operation: disk(eng):10 is not a persistent volume",
        ),
    ];
    for (operation, expected) in cases {
        let mut session = OfferSession::new(offered.clone(), offered.clone());
        let err =
            session.apply(&alice(&roles), &used, &operation).expect_err("every case is refused");
        assert_eq!(err.to_string(), expected, "{operation:?}");
        assert_eq!(session.offered(), &offered, "a refused operation changes nothing");
        assert!(session.conversions().is_empty());
    }
}

#[test]
fn launch_consumes_what_is_left_or_says_it_is_not_enough() {
    let v1 = volume(dynamic("disk:100", "eng"), "v1");
    let offered = res("cpus:2;mem:128") + Resources::from(v1.clone());
    // (task resources, what is left, or the error)
    let cases = [
        (res("cpus:1;mem:64"), Ok(res("cpus:1;mem:64") + Resources::from(v1.clone()))),
        (res("cpus:1") + Resources::from(v1.clone()), Ok(res("cpus:1;mem:128"))),
        (
            res("cpus:3"),
            Err("Total resources cpus:3 required by task and its executor is more than \
                 available cpus:2;disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100;mem:128"),
        ),
        (
            res("cpus(eng):1"),
            Err("Total resources cpus(eng):1 required by task and its executor is more than \
                 available cpus:2;disk(reservations: [(DYNAMIC,eng,alice)])[v1:data]:100;mem:128"),
        ),
    ];
    for (task, expected) in cases {
        let got = consume(&offered, &task).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "task {task}");
    }
    // A launch in a session that fails leaves the offer as it was.
    let mut session = OfferSession::new(offered.clone(), offered.clone());
    assert!(session.launch(&res("mem:256")).is_err());
    assert_eq!(session.offered(), &offered);
}
