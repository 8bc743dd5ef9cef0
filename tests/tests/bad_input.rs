//! Bad input gets the answer a Mesos client expects and changes nothing (issue 2, "Bad
//! input"): malformed bodies, unsupported content types, missing or wrong stream ids, unknown
//! frameworks, tasks that ask for too much or use stale offers, and an agent started with a
//! resource string that does not parse.

use std::process::Command;

use agora_client::scheduler::SchedulerSession;
use agora_proto::scheduler::{Call, call};
use agora_proto::{Format, v1};
use agora_tests::{Cluster, agora_bin, command_task, next_offers, next_update};

async fn post(
    url: &str,
    content_type: Option<&str>,
    stream_id: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> anyhow::Result<(u16, String)> {
    let mut request = agora_client::http::client().post(url).body(body);
    if let Some(ct) = content_type {
        request = request.header("Content-Type", ct);
    }
    if let Some(id) = stream_id {
        request = request.header("Mesos-Stream-Id", id);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn transport_level_refusals() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let url = cluster.master_url("/api/v1/scheduler");
    let subscribe =
        r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}"#;
    // (case, Content-Type, Mesos-Stream-Id, body, expected status, expected text)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Some("application/json"),
            None,
            b"{not json".to_vec(),
            400,
            "Failed to parse",
        ),
        (
            "malformed protobuf",
            Some("application/x-protobuf"),
            None,
            vec![0xff, 0xff, 0xff],
            400,
            "Failed to parse",
        ),
        ("missing content type", None, None, subscribe.as_bytes().to_vec(), 400, "Content-Type"),
        (
            "unsupported content type",
            Some("text/plain"),
            None,
            subscribe.as_bytes().to_vec(),
            415,
            "Content-Type",
        ),
        (
            "missing required field",
            Some("application/json"),
            None,
            br#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}"#.to_vec(),
            400,
            "Missing required fields: subscribe.framework_info.user",
        ),
        (
            "subscribe with a stream id",
            Some("application/json"),
            Some("abc"),
            subscribe.as_bytes().to_vec(),
            400,
            "Mesos-Stream-Id",
        ),
        (
            "unknown framework",
            Some("application/json"),
            Some("abc"),
            br#"{"type":"TEARDOWN","framework_id":{"value":"nope"}}"#.to_vec(),
            400,
            "Framework cannot be found",
        ),
        (
            "no framework id",
            Some("application/json"),
            Some("abc"),
            br#"{"type":"TEARDOWN"}"#.to_vec(),
            400,
            "framework_id",
        ),
    ];
    for (name, content_type, stream_id, body, status, needle) in cases {
        let (got, text) = post(&url, content_type, stream_id, body).await?;
        assert_eq!(got, status, "{name}: {text}");
        assert!(text.contains(needle), "{name}: {text}");
    }
    let not_acceptable = agora_client::http::client()
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Accept", "text/html")
        .body(subscribe)
        .send()
        .await?;
    assert_eq!(not_acceptable.status(), 406);
    let get = reqwest::get(&url).await?;
    assert_eq!(get.status(), 405);
    Ok(())
}

#[tokio::test]
async fn stream_id_rules_and_bad_tasks_change_nothing() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let info = v1::FrameworkInfo { user: "root".into(), name: "bad".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, info, Format::Json).await?;
    let url = cluster.master_url("/api/v1/scheduler");
    let framework_id = session.framework_id.value.clone();
    let revive = format!(r#"{{"type":"REVIVE","framework_id":{{"value":"{framework_id}"}}}}"#);
    let (status, text) = post(&url, Some("application/json"), None, revive.clone()).await?;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Mesos-Stream-Id"), "{text}");
    let (status, text) =
        post(&url, Some("application/json"), Some("wrong"), revive.clone()).await?;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("didn't match"), "{text}");
    let bad_ack = format!(
        r#"{{"type":"ACKNOWLEDGE","framework_id":{{"value":"{framework_id}"}},"acknowledge":{{"agent_id":{{"value":"a"}},"task_id":{{"value":"t"}},"uuid":"AAEC"}}}}"#
    );
    let (status, text) =
        post(&url, Some("application/json"), Some(&session.stream_id), bad_ack).await?;
    assert_eq!(status, 400, "{text}");

    // A task asking for more than its offer: TASK_ERROR on the stream, 202 for the call.
    let offer = next_offers(&mut events).await?.remove(0);
    let greedy = command_task("greedy", &offer.agent_id, "cpus:1000;mem:32", "true");
    session.launch(vec![offer.id.clone()], vec![greedy], Some(0.0)).await?;
    let status = next_update(&session, &mut events).await?;
    assert_eq!(status.state(), v1::TaskState::TaskError);
    assert_eq!(status.reason(), v1::task_status::Reason::TaskInvalid);
    assert!(status.message().contains("more than available"), "{}", status.message());
    assert!(status.uuid.is_none(), "master-generated updates carry no uuid");

    // The same (now used) offer again: the task is lost with REASON_INVALID_OFFERS.
    let stale = command_task("stale", &offer.agent_id, "cpus:0.1;mem:32", "true");
    session.launch(vec![offer.id.clone()], vec![stale], Some(0.0)).await?;
    let status = next_update(&session, &mut events).await?;
    assert_eq!(status.state(), v1::TaskState::TaskLost);
    assert_eq!(status.reason(), v1::task_status::Reason::InvalidOffers);

    // Unsupported offer operations are refused whole.
    let mut grow = v1::offer::Operation::default();
    grow.set_type(v1::offer::operation::Type::GrowVolume);
    let mut accept = Call {
        accept: Some(call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![grow],
            filters: None,
        }),
        ..Default::default()
    };
    accept.set_type(call::Type::Accept);
    let refused = session.call(accept).await;
    assert!(refused.is_err(), "GROW_VOLUME is not supported and must say so");

    // Reserving for a role the framework is not in is dropped (202, nothing reserved), and a
    // task counting on that reservation fails validation.
    let offer = next_offers(&mut events).await?.remove(0);
    let mut foreign = v1::Resource {
        name: "cpus".into(),
        scalar: Some(v1::value::Scalar { value: 0.5 }),
        reservations: vec![v1::resource::ReservationInfo {
            role: Some("not-mine".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    foreign.set_type(v1::value::Type::Scalar);
    foreign.reservations[0].set_type(v1::resource::reservation_info::Type::Dynamic);
    let mut reserve = v1::offer::Operation::default();
    reserve.set_type(v1::offer::operation::Type::Reserve);
    reserve.reserve =
        Some(v1::offer::operation::Reserve { resources: vec![foreign.clone()], source: vec![] });
    let mut needs_it = command_task("needs-it", &offer.agent_id, "mem:32", "true");
    needs_it.resources.push(foreign);
    let mut launch = v1::offer::Operation::default();
    launch.set_type(v1::offer::operation::Type::Launch);
    launch.launch = Some(v1::offer::operation::Launch { task_infos: vec![needs_it] });
    let mut accept = Call {
        accept: Some(call::Accept {
            offer_ids: vec![offer.id.clone()],
            operations: vec![reserve, launch],
            filters: Some(v1::Filters { refuse_seconds: Some(0.0) }),
        }),
        ..Default::default()
    };
    accept.set_type(call::Type::Accept);
    session.call(accept).await?;
    let status = next_update(&session, &mut events).await?;
    assert_eq!(status.task_id.value, "needs-it");
    assert_eq!(status.state(), v1::TaskState::TaskError);

    // Nothing else changed: the framework still gets offers and runs a valid task.
    let offer = next_offers(&mut events).await?.remove(0);
    let good = command_task("good", &offer.agent_id, "cpus:0.1;mem:32", "true");
    session.launch(vec![offer.id.clone()], vec![good], Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.state() == v1::TaskState::TaskFinished {
            break;
        }
        assert!(!agora_core::status::is_terminal(status.state()), "{status:?}");
    }
    Ok(())
}

#[test]
fn an_agent_with_a_bad_resource_string_refuses_to_start() -> anyhow::Result<()> {
    let work_dir = tempfile::tempdir()?;
    let output = Command::new(agora_bin())
        .args(["agent", "--master", "127.0.0.1:1", "--port", "0", "--resources", "cpus:4;mem:lots"])
        .arg("--work_dir")
        .arg(work_dir.path())
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("mem:lots"), "{stderr}");
    assert!(stderr.contains("'lots'"), "{stderr}");
    Ok(())
}
