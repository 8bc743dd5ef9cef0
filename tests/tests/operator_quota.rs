//! The first operator calls of the master's `POST /api/v1` against a real `agora dev`:
//! UPDATE_QUOTA limits what a role is offered, UPDATE_WEIGHTS is taken, bad configurations get
//! a 400 and change nothing, and calls not served yet get a 501 that names them.

use agora_client::scheduler::SchedulerSession;
use agora_proto::{Format, v1};
use agora_tests::{Cluster, next_offers};

async fn post(cluster: &Cluster, body: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::new()
        .post(cluster.master_url("/api/v1"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

fn framework(role: &str) -> v1::FrameworkInfo {
    let mut info =
        v1::FrameworkInfo { user: "root".into(), name: role.into(), ..Default::default() };
    #[expect(deprecated, reason = "a single-role framework names its role this way")]
    {
        info.role = Some(role.into());
    }
    info
}

#[tokio::test]
async fn quota_limits_what_a_role_is_offered() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let limit = r#"{"type":"UPDATE_QUOTA","update_quota":{"quota_configs":[
        {"role":"capped","limits":{"cpus":{"value":1}}}]}}"#;
    assert_eq!(post(&cluster, limit).await?.0, 200);

    let (_session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework("capped"), Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let cpus: f64 = offer
        .resources
        .iter()
        .filter(|r| r.name == "cpus")
        .filter_map(|r| r.scalar.as_ref().map(|s| s.value))
        .sum();
    assert_eq!(cpus, 1.0, "the role's limit caps its offer: {offer:?}");

    let weights = r#"{"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[
        {"role":"capped","weight":2.5}]}}"#;
    assert_eq!(post(&cluster, weights).await?.0, 200);

    for (body, status, expected) in [
        (
            r#"{"type":"UPDATE_QUOTA","update_quota":{"quota_configs":[{"role":"x",
                "guarantees":{"cpus":{"value":2}},"limits":{"cpus":{"value":1}}}]}}"#,
            400,
            "exceeds its limit",
        ),
        (
            r#"{"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[{"role":"x","weight":-1}]}}"#,
            400,
            "must be positive",
        ),
        (r#"{"type":"GET_MAINTENANCE_STATUS"}"#, 501, "GET_MAINTENANCE_STATUS"),
    ] {
        let (got, text) = post(&cluster, body).await?;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(expected), "{body}: {text}");
    }
    Ok(())
}
