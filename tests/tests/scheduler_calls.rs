//! Scheduler calls end to end against a real `agora dev` that the other integration tests do
//! not reach: MULTI_ROLE offers carry their role, unanswered offers are rescinded after
//! `--offer_timeout`, and UPDATE_FRAMEWORK changes roles and suppression on the same stream
//! (or is refused with a 400 when it changes what cannot change).

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_proto::scheduler::{Call, Event, call, event::Type};
use agora_proto::{Format, v1};
use agora_tests::{Cluster, ClusterOptions, next_event, next_offers};
use anyhow::bail;

fn multi_role(roles: &[&str]) -> v1::FrameworkInfo {
    let mut capability = v1::framework_info::Capability::default();
    capability.set_type(v1::framework_info::capability::Type::MultiRole);
    v1::FrameworkInfo {
        user: "root".into(),
        name: "calls".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        capabilities: vec![capability],
        failover_timeout: Some(60.0),
        ..Default::default()
    }
}

fn update(info: v1::FrameworkInfo, suppressed: &[&str]) -> Call {
    let mut c = Call {
        update_framework: Some(call::UpdateFramework {
            framework_info: Some(info),
            suppressed_roles: suppressed.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.set_type(call::Type::UpdateFramework);
    c
}

/// The next RESCIND, skipping heartbeats; anything else is a failure.
async fn next_rescind(events: &mut Subscription<Event>) -> anyhow::Result<String> {
    loop {
        let event = next_event(events).await?;
        match (event.r#type(), event.rescind) {
            (Type::Heartbeat, _) => {}
            (Type::Rescind, Some(rescind)) => {
                return Ok(rescind.offer_id.map(|o| o.value).unwrap_or_default());
            }
            (other, _) => bail!("expected RESCIND, got {}", other.as_str_name()),
        }
    }
}

#[tokio::test]
async fn multi_role_offers_time_out_and_update_framework_steers_them() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(ClusterOptions {
        extra: vec!["--offer_timeout".into(), "1secs".into()],
        ..Default::default()
    })?;
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, multi_role(&["a", "b"]), Format::Json).await?;
    let framework_id = session.framework_id.clone();

    // MULTI_ROLE: the offer and each of its resources name the role it is allocated to.
    let offer = next_offers(&mut events).await?.remove(0);
    let role = offer.allocation_info.as_ref().and_then(|a| a.role.clone()).unwrap_or_default();
    assert!(role == "a" || role == "b", "{offer:?}");
    for resource in &offer.resources {
        assert_eq!(resource.allocation_info.as_ref().and_then(|a| a.role.as_deref()), Some(&*role));
    }

    // Not answered within --offer_timeout: rescinded, and offered again without a filter.
    assert_eq!(next_rescind(&mut events).await?, offer.id.value);
    let offer = next_offers(&mut events).await?.remove(0);

    // Changing the user is refused synchronously and changes nothing.
    let mut info = multi_role(&["a", "b"]);
    info.id = Some(framework_id.clone());
    info.user = "someone-else".into();
    assert!(session.call(update(info, &[])).await.is_err());

    // Keep only role a, suppressed: the outstanding offer goes (rescinded at once if it was
    // for the dropped role b, else when it times out) and none follows.
    let mut info = multi_role(&["a"]);
    info.id = Some(framework_id.clone());
    session.call(update(info.clone(), &["a"])).await?;
    assert_eq!(next_rescind(&mut events).await?, offer.id.value);
    let quiet = tokio::time::timeout(std::time::Duration::from_secs(2), next_offers(&mut events));
    assert!(quiet.await.is_err(), "no offers while role a is suppressed");

    // Unsuppressing a brings offers for a.
    session.call(update(info, &[])).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    assert_eq!(offer.allocation_info.and_then(|a| a.role).as_deref(), Some("a"));
    Ok(())
}
