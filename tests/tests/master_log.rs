//! The master's log file and the run-time log level against the real `agora` binary: with
//! `--log_dir` the master writes its log there, `/master/state` and the flags report the
//! directory, the operator API's LIST_FILES and READ_FILE and the legacy `/files/*` endpoints
//! show it at `/master/log`; SET_LOGGING_LEVEL really turns debug lines on in that file and
//! they stop once its duration is over; an agent's `--log_dir` shows its log at `/slave/log`;
//! and `?jsonp=` wraps the JSON endpoints of master and agent.

use agora_proto::Format;
use agora_proto::master;
use agora_tests::{Cluster, ClusterOptions, operator_post};
use anyhow::{Context, ensure};
use serde_json::{Value, json};

async fn get(url: &str) -> anyhow::Result<(u16, Option<String>, String)> {
    let response = reqwest::get(url).await?;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((status, content_type, response.text().await?))
}

/// READ_FILE in protobuf (its data is bytes): the size and the data from `offset`.
async fn read_file(cluster: &Cluster, path: &str, offset: u64) -> anyhow::Result<(u64, String)> {
    let mut call = master::Call::default();
    call.set_type(master::call::Type::ReadFile);
    call.read_file = Some(master::call::ReadFile { path: path.into(), offset, length: None });
    let bytes = agora_client::http::call(
        &agora_client::http::client(),
        &cluster.master_url("/api/v1"),
        Format::Protobuf,
        None,
        &call,
    )
    .await?;
    let response: master::Response = Format::Protobuf.decode(&bytes)?;
    ensure!(response.r#type() == master::response::Type::ReadFile, "{response:?}");
    let read = response.read_file.context("read_file")?;
    Ok((read.size, String::from_utf8_lossy(&read.data).into_owned()))
}

async fn level(addr: &str) -> anyhow::Result<u64> {
    let (status, text) = operator_post(addr, &json!({"type": "GET_LOGGING_LEVEL"})).await?;
    ensure!(status == 200, "GET_LOGGING_LEVEL: {status} {text}");
    let value: Value = serde_json::from_str(&text)?;
    value["get_logging_level"]["level"].as_u64().context("level")
}

#[tokio::test]
async fn the_master_log_is_a_file_the_files_api_shows_and_its_level_changes() -> anyhow::Result<()>
{
    let log_dir = tempfile::tempdir()?;
    let log_dir_text = log_dir.path().to_string_lossy().into_owned();
    let cluster = Cluster::start_with(ClusterOptions {
        extra: vec!["--log_dir".into(), log_dir_text.clone()],
        ..ClusterOptions::default()
    })?;
    let m = cluster.master.as_str();

    // The directory is reported where Mesos reports it.
    let (_, _, state) = get(&cluster.master_url("/master/state")).await?;
    let state: Value = serde_json::from_str(&state)?;
    assert_eq!(state["log_dir"], log_dir_text.as_str());
    assert_eq!(state["flags"]["log_dir"], log_dir_text.as_str());

    // The log is the file under --log_dir, at /master/log through every files interface.
    let on_disk = std::fs::read_to_string(log_dir.path().join("agora-master.log"))?;
    assert!(on_disk.contains("master listening"), "{on_disk}");
    let (size, data) = read_file(&cluster, "/master/log", 0).await?;
    assert!(size > 0 && data.contains("master listening"), "{size} {data}");
    let (status, text) =
        operator_post(m, &json!({"type": "LIST_FILES", "list_files": {"path": "/master/log"}}))
            .await?;
    // A file lists as nothing, as in Mesos; it exists, so the answer is no 404.
    assert_eq!(status, 200, "{text}");
    let (status, _, text) =
        get(&cluster.master_url("/files/read?path=/master/log&offset=0")).await?;
    assert_eq!(status, 200, "{text}");
    let read: Value = serde_json::from_str(&text)?;
    assert!(read["data"].as_str().is_some_and(|d| d.contains("master listening")), "{read}");
    let response = reqwest::get(cluster.master_url("/files/download?path=/master/log")).await?;
    assert_eq!(response.status().as_u16(), 200);
    let disposition = response.headers().get("content-disposition").cloned();
    assert_eq!(
        disposition.as_ref().and_then(|v| v.to_str().ok()),
        Some("attachment; filename=\"log\"")
    );
    assert!(response.text().await?.contains("master listening"));
    let (status, _, text) = get(&cluster.master_url("/files/browse?path=/master/log")).await?;
    assert_eq!((status, text.as_str()), (200, "[]"));
    // Bad input gets Mesos's codes.
    for (url, code) in [
        ("/files/read?path=/master/nope&offset=0", 404),
        ("/files/read?path=/master/log&offset=-2", 400),
        ("/files/read?offset=0", 400),
        ("/files/read?path=/master/log&offset=x", 400),
    ] {
        let (status, _, text) = get(&cluster.master_url(url)).await?;
        assert_eq!(status, code, "{url}: {text}");
    }

    // Level 1 turns the master's debug lines on, in the file too ...
    assert_eq!(level(m).await?, 0);
    let before = std::fs::metadata(log_dir.path().join("agora-master.log"))?.len();
    let (status, text) = operator_post(
        m,
        &json!({"type": "SET_LOGGING_LEVEL",
                "set_logging_level": {"level": 1, "duration": {"nanoseconds": 2_000_000_000u64}}}),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    operator_post(m, &json!({"type": "GET_HEALTH"})).await?;
    let (_, raised) = read_file(&cluster, "/master/log", before).await?;
    assert!(raised.contains("DEBUG") && raised.contains("operator call"), "{raised}");
    // ... until its duration is over: then the level is 0 and debug lines stop.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while level(m).await? != 0 {
        ensure!(tokio::time::Instant::now() < deadline, "the level never reverted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (reverted_at, _) = read_file(&cluster, "/master/log", 0).await?;
    operator_post(m, &json!({"type": "GET_HEALTH"})).await?;
    let (_, after) = read_file(&cluster, "/master/log", reverted_at).await?;
    assert!(!after.contains("DEBUG"), "{after}");

    // The agent of `agora dev` shares the process's filter and reports its own level.
    let a = cluster.agent.as_str();
    let (status, text) = operator_post(
        a,
        &json!({"type": "SET_LOGGING_LEVEL",
                "set_logging_level": {"level": 2, "duration": {"nanoseconds": 60_000_000_000u64}}}),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(level(a).await?, 2);
    let (status, text) = operator_post(
        m,
        &json!({"type": "SET_LOGGING_LEVEL",
                "set_logging_level": {"level": 1, "duration": {"nanoseconds": -1}}}),
    )
    .await?;
    assert_eq!(status, 400, "{text}");
    Ok(())
}

/// `cb(<json>);` as `text/javascript`: the JSON inside.
fn unwrap_jsonp(content_type: Option<&str>, body: &str) -> anyhow::Result<Value> {
    ensure!(content_type == Some("text/javascript"), "{content_type:?}");
    let inner = body
        .strip_prefix("cb(")
        .and_then(|b| b.strip_suffix(");"))
        .with_context(|| format!("not JSONP: {body}"))?;
    Ok(serde_json::from_str(inner)?)
}

#[tokio::test]
async fn jsonp_wraps_the_json_endpoints_of_master_and_agent() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let agent = |path: &str| format!("http://{}{path}", cluster.agent);
    for (url, key) in [
        (cluster.master_url("/master/state?jsonp=cb"), "frameworks"),
        (cluster.master_url("/state.json?jsonp=cb"), "slaves"),
        (cluster.master_url("/master/frameworks?jsonp=cb"), "completed_frameworks"),
        (cluster.master_url("/master/slaves?jsonp=cb"), "slaves"),
        (cluster.master_url("/master/tasks?jsonp=cb"), "tasks"),
        (cluster.master_url("/master/flags?jsonp=cb"), "flags"),
        (cluster.master_url("/metrics/snapshot?jsonp=cb"), "master/uptime_secs"),
        (agent("/state?jsonp=cb"), "frameworks"),
        (agent("/slave(1)/flags?jsonp=cb"), "flags"),
        (agent("/metrics/snapshot?jsonp=cb"), "slave/uptime_secs"),
    ] {
        let (status, content_type, body) = get(&url).await?;
        assert_eq!(status, 200, "{url}: {body}");
        let value = unwrap_jsonp(content_type.as_deref(), &body)?;
        assert!(value.get(key).is_some(), "{url}: {value}");
    }
    // Without the parameter, and on errors, the answers are as before.
    let (status, content_type, _) = get(&cluster.master_url("/master/state")).await?;
    assert_eq!((status, content_type.as_deref()), (200, Some("application/json")));
    let (status, _, body) = get(&cluster.master_url("/master/tasks?limit=x&jsonp=cb")).await?;
    assert_eq!(status, 400, "{body}");
    assert!(!body.starts_with("cb("), "{body}");
    Ok(())
}

#[tokio::test]
async fn an_agent_with_a_log_dir_shows_its_log_at_slave_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log_dir = dir.path().join("logs").to_string_lossy().into_owned();
    let master = agora_tests::Daemon::master(&["--port", "0", "--registry", "in_memory"])?;
    let work_dir = dir.path().join("agent").to_string_lossy().into_owned();
    let agent = agora_tests::Daemon::agent(&[
        "--master",
        &master.addr,
        "--port",
        "0",
        "--work_dir",
        &work_dir,
        "--resources",
        "cpus:1;mem:256;disk:256",
        "--log_dir",
        &log_dir,
    ])?;
    let a = agent.addr.as_str();
    let (status, _, text) = get(&format!("http://{a}/files/read?path=/slave/log&offset=0")).await?;
    assert_eq!(status, 200, "{text}");
    let read: Value = serde_json::from_str(&text)?;
    assert!(read["data"].as_str().is_some_and(|d| d.contains("agent listening")), "{read}");
    let (status, text) = operator_post(
        a,
        &json!({"type": "READ_FILE", "read_file": {"path": "/slave/log", "offset": 0}}),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    let read: Value = serde_json::from_str(&text)?;
    assert!(read["read_file"]["size"].as_u64().is_some_and(|s| s > 0), "{read}");
    let (_, _, state) = get(&format!("http://{a}/state")).await?;
    let state: Value = serde_json::from_str(&state)?;
    assert_eq!(state["log_dir"], log_dir.as_str());
    assert_eq!(state["flags"]["log_dir"], log_dir.as_str());
    // The master has no --log_dir here: its log is not a file.
    let (status, _, _) =
        get(&format!("http://{}/files/read?path=/master/log&offset=0", master.addr)).await?;
    assert_eq!(status, 404);
    Ok(())
}
