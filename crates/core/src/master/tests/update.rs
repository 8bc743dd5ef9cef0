//! Master tests of UPDATE_FRAMEWORK and `--offer_timeout`: what may change, what a change does
//! to outstanding offers and suppression, and offers that expire.

use std::collections::BTreeSet;

use super::*;

fn update(info: v1::FrameworkInfo, suppressed: &[&str]) -> sched::Call {
    let mut c = call(CallType::UpdateFramework);
    c.update_framework = Some(sched::call::UpdateFramework {
        framework_info: Some(info),
        suppressed_roles: suppressed.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    });
    c
}

fn multi_role(roles: &[&str]) -> v1::FrameworkInfo {
    let mut info = with_capabilities(framework("f"), &[Capability::MultiRole]);
    info.roles = roles.iter().map(|r| r.to_string()).collect();
    info
}

fn with_id(mut info: v1::FrameworkInfo, id: &str) -> v1::FrameworkInfo {
    info.id = Some(v1::FrameworkId { value: id.into() });
    info
}

#[test]
fn update_framework_refuses_what_cannot_change() {
    let mut h = Harness::new();
    let (_, fid) = h.subscribe(framework("f"));
    let mut other_user = with_id(framework("f"), &fid);
    other_user.user = "bob".into();
    let mut principal = with_id(framework("f"), &fid);
    principal.principal = Some("p".into());
    let mut checkpoint = with_id(framework("f"), &fid);
    checkpoint.checkpoint = Some(true);
    let cases = [
        (framework("f"), vec![], "framework_info.id"),
        (with_id(framework("f"), "someone-else"), vec![], "framework_info.id"),
        (other_user, vec![], "FrameworkInfo.user"),
        (principal, vec![], "FrameworkInfo.principal"),
        (checkpoint, vec![], "FrameworkInfo.checkpoint"),
        (with_id(framework("f"), &fid), vec!["nope"], "Suppressed role 'nope'"),
    ];
    for (info, suppressed, expected) in cases {
        let (result, out) = h.call(&fid, update(info, &suppressed));
        assert!(
            matches!(&result, Err(CallError::BadRequest(m)) if m.contains(expected)),
            "{expected}: {result:?}"
        );
        assert!(out.iter().all(|o| matches!(o, Output::Reply { .. })), "{out:?}");
    }
}

#[test]
fn update_framework_changes_the_name_and_keeps_tasks_and_stream() {
    let mut c = cluster(framework("f"));
    let offer_id = c.offer.id.value.clone();
    let agent_id = c.offer.agent_id.value.clone();
    let launch_one = accept(&[&offer_id], vec![launch(vec![task("t", &agent_id, "cpus:1")])], None);
    assert_eq!(c.h.call(&c.fid, launch_one).0, Ok(()));
    let mut info = with_id(framework("renamed"), &c.fid);
    info.webui_url = Some("http://ui".into());
    let (result, _) = c.h.call(&c.fid, update(info, &[]));
    assert_eq!(result, Ok(()));
    assert_eq!(c.h.master.tasks().len(), 1);
    // The stream is the same: other calls keep working on it.
    assert_eq!(c.h.call(&c.fid, call(CallType::Revive)).0, Ok(()));
}

#[test]
fn update_framework_rescinds_offers_of_dropped_roles_and_unsuppresses() {
    let mut h = Harness::new();
    let (fconn, fid) = h.subscribe(multi_role(&["a", "b"]));
    let (_, out) = h.register(register_call("cpus:2;mem:512;cpus(b):1;mem(b):64", "", None));
    let roles: BTreeSet<String> = offers(&out, fconn)
        .iter()
        .filter_map(|o| o.allocation_info.as_ref()?.role.clone())
        .collect();
    assert!(roles.contains("b"), "{roles:?}");

    // Dropping role b rescinds its offer; suppressing a stops new offers for a.
    let (result, out) = h.call(&fid, update(with_id(multi_role(&["a"]), &fid), &["a"]));
    assert_eq!(result, Ok(()));
    assert_eq!(kinds(&out, fconn), vec![EventType::Rescind]);
    let a_offer = outstanding_offer(&h, &fid).expect("the offer for a stays");
    assert_eq!(h.call(&fid, decline(&[&a_offer], Some(0.0))).0, Ok(()));
    h.advance(10.0);
    assert!(offers(&h.tick(), fconn).is_empty(), "a is suppressed");

    // Unsuppressing a through UPDATE_FRAMEWORK brings the offers back at once.
    let (result, out) = h.call(&fid, update(with_id(multi_role(&["a"]), &fid), &[]));
    assert_eq!(result, Ok(()));
    assert_eq!(offers(&out, fconn).len(), 1);
}

#[test]
fn offers_expire_after_the_offer_timeout() {
    let mut h =
        Harness::with(MasterConfig { offer_timeout: Some(Duration::from_secs(30)), ..config() });
    let (fconn, _) = h.subscribe(framework("f"));
    let (_, out) = h.register(register_call(AGENT_RESOURCES, "", None));
    let offer = offers(&out, fconn).pop().expect("offer");
    h.advance(29.0);
    assert!(kinds(&h.tick(), fconn).is_empty());
    h.advance(1.0);
    let out = h.tick();
    let rescinds: Vec<String> = events(&out, fconn)
        .into_iter()
        .filter_map(|e| e.rescind?.offer_id.map(|o| o.value))
        .collect();
    assert_eq!(rescinds, vec![offer.id.value.clone()]);
    // No filter: the same resources come back in the same cycle under a new id.
    let again = offers(&out, fconn).pop().expect("offered again");
    assert_ne!(again.id.value, offer.id.value);
}

fn rack_constraint(role: &str, rack: &str) -> sched::OfferConstraints {
    use sched::attribute_constraint::{Predicate, Selector, predicate, selector};
    let constraint = sched::AttributeConstraint {
        selector: Some(Selector {
            selector: Some(selector::Selector::AttributeName("rack".into())),
        }),
        predicate: Some(Predicate {
            predicate: Some(predicate::Predicate::TextEquals(predicate::TextEquals {
                value: Some(rack.into()),
            })),
        }),
    };
    let mut out = sched::OfferConstraints::default();
    out.role_constraints.insert(
        role.into(),
        sched::offer_constraints::RoleConstraints {
            groups: vec![sched::offer_constraints::role_constraints::Group {
                attribute_constraints: vec![constraint],
            }],
        },
    );
    out
}

#[test]
fn offer_constraints_choose_the_agents_and_update_framework_changes_them() {
    let mut h = Harness::new();
    let mut subscribe = subscribe_call(framework("f"));
    if let Some(s) = subscribe.subscribe.as_mut() {
        s.offer_constraints = Some(rack_constraint("*", "r2"));
    }
    let (fconn, _, out) = h.subscribe_raw(subscribe);
    let fid = events(&out, fconn)
        .into_iter()
        .find_map(|e| e.subscribed)
        .expect("SUBSCRIBED")
        .framework_id
        .value;
    let (_, out) = h.register(register_call(AGENT_RESOURCES, "rack:r1", Some("a1")));
    assert!(offers(&out, fconn).is_empty(), "rack r1 is excluded");
    let (_, out) = h.register(register_call(AGENT_RESOURCES, "rack:r2", Some("a2")));
    let offer = offers(&out, fconn).pop().expect("rack r2 is wanted");
    assert_eq!(offer.agent_id.value, "a2");

    // UPDATE_FRAMEWORK replaces the constraints: now r1 is wanted.
    let mut c = update(with_id(framework("f"), &fid), &[]);
    if let Some(u) = c.update_framework.as_mut() {
        u.offer_constraints = Some(rack_constraint("*", "r1"));
    }
    let (result, out) = h.call(&fid, c);
    assert_eq!(result, Ok(()));
    assert!(offers(&out, fconn).iter().all(|o| o.agent_id.value == "a1"), "{out:?}");

    // Constraints for a role the framework is not in are refused.
    let mut c = update(with_id(framework("f"), &fid), &[]);
    if let Some(u) = c.update_framework.as_mut() {
        u.offer_constraints = Some(rack_constraint("other", "r1"));
    }
    let (result, _) = h.call(&fid, c);
    assert!(matches!(result, Err(CallError::BadRequest(m)) if m.contains("not one of")));

    // And on SUBSCRIBE they end the new stream with an ERROR.
    let mut subscribe = subscribe_call(framework("g"));
    if let Some(s) = subscribe.subscribe.as_mut() {
        s.offer_constraints = Some(rack_constraint("other", "r1"));
    }
    let (conn, _, out) = h.subscribe_raw(subscribe);
    assert_eq!(errors(&out, conn).len(), 1, "{out:?}");
}
