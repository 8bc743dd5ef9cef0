//! The master's operator API (`POST /api/v1`) against the real `agora` binary: every served
//! query in JSON (GET_STATE also in protobuf), the mutating calls (reservations and volumes,
//! TEARDOWN, MARK_AGENT_GONE) with Mesos's status codes, bad input, and the SUBSCRIBE event
//! stream (SUBSCRIBED, then task, agent and framework events in the order they happen).

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_proto::master::{self, event::Type as EventType};
use agora_proto::scheduler::Event;
use agora_proto::{Format, v1};
use agora_tests::{Cluster, Daemon, command_task, next_offers, next_update, operator_post};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

fn framework(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo { user: "root".into(), name: name.into(), ..Default::default() }
}

/// Posts a JSON query and parses its 200 answer.
async fn query(master: &str, kind: &str) -> anyhow::Result<Value> {
    let (status, text) = operator_post(master, &json!({ "type": kind })).await?;
    ensure!(status == 200, "{kind}: {status} {text}");
    let value: Value = serde_json::from_str(&text)?;
    ensure!(value["type"] == kind, "{kind}: {value}");
    Ok(value)
}

/// Acknowledges updates until the task runs.
async fn wait_running(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
) -> anyhow::Result<()> {
    loop {
        let status = next_update(session, events).await?;
        session.acknowledge(&status).await?;
        match status.state() {
            v1::TaskState::TaskRunning => return Ok(()),
            v1::TaskState::TaskStarting => {}
            other => bail!("the task went {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_query_answers_in_json_and_get_state_in_protobuf() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let m = cluster.master.as_str();
    let (session, mut events) =
        SchedulerSession::subscribe(m, framework("queries"), Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = command_task("long", &offer.agent_id, "cpus:0.5;mem:64", "sleep 60");
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    wait_running(&session, &mut events).await?;

    assert_eq!(query(m, "GET_HEALTH").await?["get_health"]["healthy"], true);
    let flags = query(m, "GET_FLAGS").await?;
    let flags = flags["get_flags"]["flags"].as_array().context("flags")?.clone();
    assert!(flags.contains(&json!({"name": "heartbeat_interval", "value": "1secs"})), "{flags:?}");
    let version = query(m, "GET_VERSION").await?;
    assert_eq!(version["get_version"]["version_info"]["version"], "1.11.0");
    let metrics = query(m, "GET_METRICS").await?;
    let metrics = metrics["get_metrics"]["metrics"].as_array().context("metrics")?.clone();
    let value =
        |name: &str| metrics.iter().find(|m| m["name"] == name).and_then(|m| m["value"].as_f64());
    assert_eq!(value("master/tasks_running"), Some(1.0), "{metrics:?}");
    assert!(metrics.iter().any(|m| m["name"] == "master/uptime_secs"));

    let (status, _) = operator_post(
        m,
        &json!({"type": "SET_LOGGING_LEVEL",
                "set_logging_level": {"level": 2, "duration": {"nanoseconds": 1_000_000_000}}}),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(query(m, "GET_LOGGING_LEVEL").await?["get_logging_level"]["level"], 2);

    let state = query(m, "GET_STATE").await?;
    let tasks = &state["get_state"]["get_tasks"]["tasks"];
    assert_eq!(tasks[0]["task_id"]["value"], "long", "{state}");
    assert_eq!(tasks[0]["state"], "TASK_RUNNING");
    assert_eq!(tasks[0]["statuses"][0]["state"], "TASK_RUNNING");
    assert_eq!(state["get_state"]["get_agents"]["agents"][0]["active"], true);
    assert_eq!(state["get_state"]["get_frameworks"]["frameworks"][0]["active"], true);

    let agents = query(m, "GET_AGENTS").await?;
    let agent = &agents["get_agents"]["agents"][0];
    assert_eq!(agent["agent_info"]["id"]["value"], offer.agent_id.value);
    assert!(agent["allocated_resources"].as_array().is_some_and(|r| !r.is_empty()), "{agent}");
    let frameworks = query(m, "GET_FRAMEWORKS").await?;
    assert_eq!(frameworks["get_frameworks"]["frameworks"][0]["framework_info"]["name"], "queries");
    query(m, "GET_EXECUTORS").await?;
    let tasks = query(m, "GET_TASKS").await?;
    assert_eq!(tasks["get_tasks"]["tasks"].as_array().map(Vec::len), Some(1));
    let roles = query(m, "GET_ROLES").await?;
    assert_eq!(roles["get_roles"]["roles"][0]["name"], "*", "{roles}");
    let (status, _) = operator_post(
        m,
        &json!({"type": "UPDATE_WEIGHTS",
                "update_weights": {"weight_infos": [{"role": "heavy", "weight": 3.0}]}}),
    )
    .await?;
    assert_eq!(status, 200);
    let weights = query(m, "GET_WEIGHTS").await?;
    let weight = &weights["get_weights"]["weight_infos"][0];
    assert_eq!((weight["role"].as_str(), weight["weight"].as_f64()), (Some("heavy"), Some(3.0)));
    let (status, _) = operator_post(
        m,
        &json!({"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "capped", "limits": {"cpus": {"value": 1.0}}}]}}),
    )
    .await?;
    assert_eq!(status, 200);
    let quota = query(m, "GET_QUOTA").await?;
    assert_eq!(quota["get_quota"]["status"]["configs"][0]["role"], "capped", "{quota}");
    let master_info = query(m, "GET_MASTER").await?;
    assert_eq!(
        master_info["get_master"]["master_info"]["port"],
        cluster.master.rsplit(':').next().and_then(|p| p.parse::<u64>().ok()).context("port")?
    );

    // Without --log_dir the master keeps no log file: every virtual path is unknown.
    for call in [
        json!({"type": "LIST_FILES", "list_files": {"path": "/master/log"}}),
        json!({"type": "READ_FILE", "read_file": {"path": "/master/log", "offset": 0}}),
    ] {
        let (status, text) = operator_post(m, &call).await?;
        assert_eq!(status, 404, "{call}: {text}");
    }

    // GET_STATE in protobuf.
    let mut call = master::Call::default();
    call.set_type(master::call::Type::GetState);
    let bytes = agora_client::http::call(
        &agora_client::http::client(),
        &cluster.master_url("/api/v1"),
        Format::Protobuf,
        None,
        &call,
    )
    .await?;
    let response: master::Response = Format::Protobuf.decode(&bytes)?;
    assert_eq!(response.r#type(), master::response::Type::GetState);
    let state = response.get_state.context("get_state")?;
    let tasks = state.get_tasks.context("get_tasks")?.tasks;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state(), v1::TaskState::TaskRunning);
    Ok(())
}

fn cpus(value: f64, role: Option<&str>) -> Value {
    let mut r = json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": value}});
    if let Some(role) = role {
        r["reservations"] = json!([{"type": "DYNAMIC", "role": role}]);
    }
    r
}

fn volume(role: &str) -> Value {
    json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
           "reservations": [{"type": "DYNAMIC", "role": role}],
           "disk": {"persistence": {"id": "vol1"}, "volume": {"mode": "RW", "container_path": "data"}}})
}

/// The flat amount of `name` reserved for `role` in the agent of GET_AGENTS.
async fn reserved(master: &str, name: &str, role: &str) -> anyhow::Result<f64> {
    let agents = query(master, "GET_AGENTS").await?;
    let total = agents["get_agents"]["agents"][0]["total_resources"].as_array().cloned();
    Ok(total
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            // Either reservation format: the `reservations` stack or the older `role`.
            let stacked = r["reservations"].as_array().and_then(|s| s.last()).map(|x| &x["role"]);
            r["name"] == name && (stacked == Some(&json!(role)) || r["role"] == role)
        })
        .filter(|r| r["disk"].is_null() || name != "disk")
        .filter_map(|r| r["scalar"]["value"].as_f64())
        .sum())
}

#[tokio::test]
async fn mutating_calls_and_bad_input_get_mesos_status_codes() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let m = cluster.master.as_str();
    // A framework holds offers on the agent: the operation must rescind them first.
    let (session, mut events) =
        SchedulerSession::subscribe(m, framework("holder"), Format::Json).await?;
    let agent_id = next_offers(&mut events).await?.remove(0).agent_id.value;

    let reserve = |resources: Value, agent: &str| {
        json!({"type": "RESERVE_RESOURCES",
               "reserve_resources": {"agent_id": {"value": agent}, "resources": resources}})
    };
    let (status, text) =
        operator_post(m, &reserve(json!([cpus(1.0, Some("ops"))]), &agent_id)).await?;
    assert_eq!(status, 202, "{text}");
    assert_eq!(reserved(m, "cpus", "ops").await?, 1.0);

    // More than the agent has: 409. An unknown agent: 400, as Mesos.
    let (status, text) =
        operator_post(m, &reserve(json!([cpus(100.0, Some("ops"))]), &agent_id)).await?;
    assert_eq!(status, 409, "{text}");
    let (status, text) =
        operator_post(m, &reserve(json!([cpus(1.0, Some("ops"))]), "nobody")).await?;
    assert_eq!((status, text.as_str()), (400, "No agent found with specified ID"));

    let (status, text) = operator_post(
        m,
        &json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
            "agent_id": {"value": agent_id}, "resources": [cpus(1.0, Some("ops"))]}}),
    )
    .await?;
    assert_eq!(status, 202, "{text}");
    assert_eq!(reserved(m, "cpus", "ops").await?, 0.0);

    // A persistent volume on reserved disk, created and destroyed.
    let disk = json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
                      "reservations": [{"type": "DYNAMIC", "role": "db"}]});
    let (status, text) = operator_post(m, &reserve(json!([disk]), &agent_id)).await?;
    assert_eq!(status, 202, "{text}");
    let volumes = |kind: &str, field: &str| json!({"type": kind, field: {"agent_id": {"value": agent_id}, "volumes": [volume("db")]}});
    let (status, text) = operator_post(m, &volumes("CREATE_VOLUMES", "create_volumes")).await?;
    assert_eq!(status, 202, "{text}");
    let state = query(m, "GET_AGENTS").await?.to_string();
    assert!(state.contains("vol1"), "{state}");
    let (status, text) = operator_post(m, &volumes("CREATE_VOLUMES", "create_volumes")).await?;
    assert_eq!(status, 400, "a persistence id is unique on its agent: {text}");
    assert!(text.contains("not unique"), "{text}");
    let (status, text) = operator_post(m, &volumes("DESTROY_VOLUMES", "destroy_volumes")).await?;
    assert_eq!(status, 202, "{text}");
    assert!(!query(m, "GET_AGENTS").await?.to_string().contains("vol1"));

    // Bad input.
    for (body, code, message) in [
        (json!({"type": "RESERVE_RESOURCES"}), 400, "Expecting 'reserve_resources' to be present"),
        (json!({"type": "TEARDOWN"}), 400, "Expecting 'teardown' to be present"),
        (json!({"type": "NO_SUCH_CALL"}), 400, ""),
        (json!({}), 400, "Expecting 'type' to be present"),
        (json!({"type": "UNKNOWN"}), 501, ""),
        (json!({"type": "GET_MAINTENANCE_STATUS"}), 501, "GET_MAINTENANCE_STATUS"),
        (
            json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "nope"}}}),
            400,
            "No framework found with specified ID",
        ),
        (
            json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "nope"}}}),
            404,
            "Agent 'nope' not found",
        ),
    ] {
        let (status, text) = operator_post(m, &body).await?;
        assert_eq!(status, code, "{body}: {text}");
        assert!(text.contains(message), "{body}: {text}");
    }

    // TEARDOWN removes the framework.
    let framework_id = session.framework_id.value.clone();
    let (status, text) = operator_post(
        m,
        &json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": framework_id}}}),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    let frameworks = query(m, "GET_FRAMEWORKS").await?;
    assert_eq!(frameworks["get_frameworks"]["frameworks"], Value::Null, "{frameworks}");

    // MARK_AGENT_GONE is idempotent.
    let gone =
        json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}});
    assert_eq!(operator_post(m, &gone).await?.0, 200);
    assert_eq!(operator_post(m, &gone).await?.0, 200);
    let agents = query(m, "GET_AGENTS").await?;
    assert_eq!(agents["get_agents"]["agents"], Value::Null, "{agents}");
    Ok(())
}

/// The next operator event that is not a heartbeat.
async fn next(events: &mut Subscription<master::Event>) -> anyhow::Result<master::Event> {
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), events.next())
            .await
            .context("no operator event within 30 s")??
            .context("the operator stream closed")?;
        if event.r#type() != EventType::Heartbeat {
            return Ok(event);
        }
    }
}

#[tokio::test]
async fn the_event_stream_reports_changes_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let master_dir = dir.path().join("master");
    let master = Daemon::master(&[
        "--ip",
        "127.0.0.1",
        "--port",
        "0",
        "--work_dir",
        &master_dir.to_string_lossy(),
        "--allocation_interval",
        "100ms",
        "--heartbeat_interval",
        "1secs",
    ])?;
    let m = master.addr.clone();
    let mut subscribe = master::Call::default();
    subscribe.set_type(master::call::Type::Subscribe);
    let mut stream: Subscription<master::Event> = Subscription::open(
        &agora_client::http::client(),
        &format!("http://{m}/api/v1"),
        Format::Json,
        &subscribe,
    )
    .await?;
    let first = stream.next().await?.context("SUBSCRIBED")?;
    assert_eq!(first.r#type(), EventType::Subscribed);
    let subscribed = first.subscribed.context("subscribed")?;
    assert_eq!(subscribed.heartbeat_interval_seconds, Some(1.0));
    assert!(subscribed.get_state.is_some());
    // A heartbeat comes on its own.
    let beat = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
        .await
        .context("a heartbeat")??
        .context("stream open")?;
    assert_eq!(beat.r#type(), EventType::Heartbeat);

    let agent_dir = dir.path().join("agent");
    let agent = Daemon::agent(&[
        "--master",
        &m,
        "--port",
        "0",
        "--work_dir",
        &agent_dir.to_string_lossy(),
        "--resources",
        "cpus:2;mem:1024;disk:1024;ports:[31000-32000]",
        "--registration_backoff_factor",
        "100ms",
    ])?;
    let added = next(&mut stream).await?;
    assert_eq!(added.r#type(), EventType::AgentAdded, "{added:?}");
    let agent_id = added.agent_added.context("agent_added")?.agent.agent_info.id.context("id")?;

    let (session, mut events) =
        SchedulerSession::subscribe(&m, framework("watched"), Format::Json).await?;
    let event = next(&mut stream).await?;
    assert_eq!(event.r#type(), EventType::FrameworkAdded, "{event:?}");

    let offer = next_offers(&mut events).await?.remove(0);
    let task = command_task("short", &offer.agent_id, "cpus:0.1;mem:32", "true");
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    let mut seen = Vec::new();
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if agora_core::status::is_terminal(status.state()) {
            break;
        }
    }
    // Everything about the task up to its end is on the operator stream, in order.
    while seen.last() != Some(&"TASK_FINISHED".to_string()) {
        let event = next(&mut stream).await?;
        match event.r#type() {
            EventType::TaskAdded => {
                let task = event.task_added.context("task_added")?.task;
                assert_eq!(task.task_id.map(|t| t.value).as_deref(), Some("short"));
                seen.push("ADDED".to_string());
            }
            EventType::TaskUpdated => {
                let updated = event.task_updated.context("task_updated")?;
                seen.push(updated.status.state().as_str_name().to_string());
            }
            // Offers come and go; the framework's offers change nothing here.
            EventType::FrameworkUpdated => {}
            other => bail!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("ADDED"), "{seen:?}");
    assert!(seen.contains(&"TASK_RUNNING".to_string()), "{seen:?}");

    let (status, _) = operator_post(
        &m,
        &json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id.value}}}),
    )
    .await?;
    assert_eq!(status, 200);
    loop {
        let event = next(&mut stream).await?;
        if event.r#type() == EventType::AgentRemoved {
            assert_eq!(event.agent_removed.context("agent_removed")?.agent_id, agent_id);
            break;
        }
    }
    drop(agent);
    Ok(())
}

#[tokio::test]
async fn torn_down_frameworks_are_completed_frameworks_with_their_tasks() -> anyhow::Result<()> {
    let cluster = agora_tests::Cluster::start_with(agora_tests::ClusterOptions {
        extra: vec!["--max_completed_frameworks".into(), "1".into()],
        ..agora_tests::ClusterOptions::default()
    })?;
    let m = cluster.master.as_str();
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let (session, mut events) =
            SchedulerSession::subscribe(m, framework(name), Format::Json).await?;
        let offer = next_offers(&mut events).await?.remove(0);
        let task = command_task(name, &offer.agent_id, "cpus:0.5;mem:64", "sleep 60");
        session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
        wait_running(&session, &mut events).await?;
        let id = session.framework_id.value.clone();
        let (status, text) = operator_post(
            m,
            &json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": id}}}),
        )
        .await?;
        assert_eq!(status, 200, "{text}");
        ids.push(id);
    }
    // Only the newest of the two is kept (--max_completed_frameworks=1).
    let frameworks = query(m, "GET_FRAMEWORKS").await?;
    let completed = &frameworks["get_frameworks"]["completed_frameworks"];
    assert_eq!(completed.as_array().map(Vec::len), Some(1), "{frameworks}");
    assert_eq!(completed[0]["framework_info"]["id"]["value"], ids[1].as_str());
    assert_eq!(completed[0]["active"], false);
    let state = query(m, "GET_STATE").await?;
    let completed = &state["get_state"]["get_frameworks"]["completed_frameworks"];
    assert_eq!(completed[0]["framework_info"]["name"], "second", "{state}");
    let completed_tasks = &state["get_state"]["get_tasks"]["completed_tasks"];
    assert_eq!(completed_tasks[0]["task_id"]["value"], "second", "{state}");
    assert_eq!(completed_tasks[0]["state"], "TASK_KILLED", "{state}");

    for path in ["/master/state", "/master/frameworks"] {
        let legacy: Value =
            serde_json::from_str(&reqwest::get(cluster.master_url(path)).await?.text().await?)?;
        let completed = &legacy["completed_frameworks"];
        assert_eq!(completed.as_array().map(Vec::len), Some(1), "{path}: {legacy}");
        assert_eq!(completed[0]["id"], ids[1].as_str());
        assert_eq!(completed[0]["name"], "second");
        assert_eq!(completed[0]["completed_tasks"][0]["id"], "second", "{path}: {legacy}");
        assert_eq!(completed[0]["tasks"], json!([]));
    }
    // `?framework_id=` filters the completed frameworks too.
    for (id, count) in [(ids[1].as_str(), 1), ("other", 0)] {
        let url = cluster.master_url(&format!("/master/frameworks?framework_id={id}"));
        let legacy: Value = serde_json::from_str(&reqwest::get(url).await?.text().await?)?;
        assert_eq!(legacy["completed_frameworks"].as_array().map(Vec::len), Some(count));
    }
    let flags = reqwest::get(cluster.master_url("/master/flags")).await?.text().await?;
    let flags: Value = serde_json::from_str(&flags)?;
    assert_eq!(flags["flags"]["max_completed_frameworks"], "1");
    Ok(())
}

#[tokio::test]
async fn one_event_stream_subscriber_too_many_ends_the_oldest() -> anyhow::Result<()> {
    let master = Daemon::master(&[
        "--port",
        "0",
        "--registry",
        "in_memory",
        "--max_operator_event_stream_subscribers",
        "2",
    ])?;
    let mut subscribe = master::Call::default();
    subscribe.set_type(master::call::Type::Subscribe);
    let url = format!("http://{}/api/v1", master.addr);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream: Subscription<master::Event> =
            Subscription::open(&agora_client::http::client(), &url, Format::Json, &subscribe)
                .await?;
        assert_eq!(next(&mut stream).await?.r#type(), EventType::Subscribed);
        streams.push(stream);
    }
    // The first stream ends; the other two stay open (a heartbeat still comes on each).
    let mut first = streams.remove(0);
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), first.next())
            .await
            .context("the oldest stream stayed open")??;
        match event {
            None => break,
            Some(e) => ensure!(e.r#type() == EventType::Heartbeat, "{e:?}"),
        }
    }
    let metrics = query(&master.addr, "GET_METRICS").await?;
    let subscribers = metrics["get_metrics"]["metrics"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "master/operator_event_stream_subscribers"))
        .and_then(|m| m["value"].as_f64());
    assert_eq!(subscribers, Some(2.0), "{metrics}");
    Ok(())
}
