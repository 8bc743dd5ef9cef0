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
