//! The agent's operator API (`POST /api/v1`, reference §4.3) end to end against a real
//! `agora dev`: every served call in JSON with a real task running (a busy loop whose CPU
//! time must grow between two reads), GET_STATE and GET_CONTAINERS in protobuf, a task that
//! completes, the sandbox's files, bad input answered with Mesos's codes and messages, and
//! `503` while a restarted agent waits for its executors.

use agora_proto::agent::{self, response};
use agora_proto::{Format, v1};
use agora_tests::{Cluster, Daemon, free_port, launch_tasks, test_framework};
use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const BUSY: &str = "echo hello operator; while :; do :; done";

/// A JSON call: status and body.
async fn post(cluster: &Cluster, path: &str, body: &Value) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", cluster.agent))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// A JSON call that must succeed, decoded both as JSON and as the typed Response.
async fn call(cluster: &Cluster, body: Value) -> anyhow::Result<(Value, agent::Response)> {
    let (status, text) = post(cluster, "/api/v1", &body).await?;
    ensure!(status == 200, "{body}: {status} {text}");
    let typed = agora_proto::from_json(text.as_bytes()).context("a Response")?;
    Ok((serde_json::from_str(&text)?, typed))
}

/// A protobuf call with a protobuf answer.
async fn call_protobuf(cluster: &Cluster, call: &agent::Call) -> anyhow::Result<agent::Response> {
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1", cluster.agent))
        .header("Content-Type", "application/x-protobuf")
        .header("Accept", "application/x-protobuf")
        .body(Format::Protobuf.encode(call))
        .send()
        .await?;
    ensure!(response.status() == 200, "{call:?}: {}", response.status());
    let content_type = response.headers().get("content-type").cloned();
    ensure!(content_type.is_some_and(|c| c == "application/x-protobuf"));
    Ok(Format::Protobuf.decode(&response.bytes().await?)?)
}

fn task_ids(tasks: &[v1::Task]) -> Vec<&str> {
    tasks.iter().filter_map(|t| t.task_id.as_ref()).map(|t| t.value.as_str()).collect()
}

fn cpu_secs(statistics: &v1::ResourceStatistics) -> f64 {
    statistics.cpus_user_time_secs.unwrap_or(0.0) + statistics.cpus_system_time_secs.unwrap_or(0.0)
}

/// The only container's statistics.
async fn statistics(cluster: &Cluster) -> anyhow::Result<v1::ResourceStatistics> {
    let (_, answer) = call(cluster, json!({"type": "GET_CONTAINERS"})).await?;
    let containers = answer.get_containers.context("get_containers")?.containers;
    ensure!(containers.len() == 1, "{containers:?}");
    containers[0].resource_statistics.context("statistics")
}

#[tokio::test]
async fn every_call_answers_in_json_about_a_running_task() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let (_session, _events, fid) = launch_tasks(
        &cluster.master,
        test_framework("operator"),
        "cpus:0.5;mem:64",
        &[("busy", BUSY)],
        &[("busy", v1::TaskState::TaskRunning)],
    )
    .await?;

    let (raw, answer) = call(&cluster, json!({"type": "GET_HEALTH"})).await?;
    assert_eq!(raw, json!({"type": "GET_HEALTH", "get_health": {"healthy": true}}));
    assert_eq!(answer.r#type(), response::Type::GetHealth);

    let (_, answer) = call(&cluster, json!({"type": "GET_FLAGS"})).await?;
    let flags = answer.get_flags.context("get_flags")?.flags;
    let work_dir = flags.iter().find(|f| f.name == "work_dir").context("work_dir flag")?;
    assert!(work_dir.value.as_deref().is_some_and(|v| !v.is_empty()));

    let (_, answer) = call(&cluster, json!({"type": "GET_VERSION"})).await?;
    assert_eq!(answer.get_version.context("get_version")?.version_info.version, "1.11.0");

    let (_, answer) = call(&cluster, json!({"type": "GET_METRICS", "get_metrics": {}})).await?;
    let metrics = answer.get_metrics.context("get_metrics")?.metrics;
    let metric = |name: &str| metrics.iter().find(|m| m.name == name).and_then(|m| m.value);
    assert_eq!(metric("slave/tasks_running"), Some(1.0));
    assert_eq!(metric("slave/registered"), Some(1.0));
    assert_eq!(metric("slave/cpus_total"), Some(4.0));
    assert!(metric("system/mem_total_bytes").is_some_and(|v| v > 0.0));

    let (raw, _) = call(&cluster, json!({"type": "GET_LOGGING_LEVEL"})).await?;
    assert_eq!(raw["get_logging_level"]["level"], 0);
    let set = json!({"type": "SET_LOGGING_LEVEL",
                     "set_logging_level": {"level": 2, "duration": {"nanoseconds": 600_000_000_000_u64}}});
    let (status, text) = post(&cluster, "/api/v1", &set).await?;
    assert_eq!((status, text.as_str()), (200, ""));
    let (raw, _) = call(&cluster, json!({"type": "GET_LOGGING_LEVEL"})).await?;
    assert_eq!(raw["get_logging_level"]["level"], 2);

    // The sandbox's files, by the same virtual paths as /files.
    let root = format!("/frameworks/{fid}/executors/busy/runs/latest");
    let (_, answer) =
        call(&cluster, json!({"type": "LIST_FILES", "list_files": {"path": root}})).await?;
    let files = answer.list_files.context("list_files")?.file_infos;
    let stdout =
        files.iter().find(|f| f.path == format!("{root}/stdout")).context("stdout is listed")?;
    assert!(stdout.mode.is_some_and(|m| m & 0o170_000 == 0o100_000), "a regular file: {stdout:?}");
    assert!(stdout.mtime.is_some() && stdout.uid.is_some());
    let read =
        json!({"type": "READ_FILE", "read_file": {"path": format!("{root}/stdout"), "offset": 0}});
    let mut contents = Vec::new();
    for _ in 0..100 {
        let (_, answer) = call(&cluster, read.clone()).await?;
        let file = answer.read_file.context("read_file")?;
        contents = file.data.to_vec();
        if contents.starts_with(b"hello operator") {
            assert_eq!(file.size, contents.len() as u64);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(contents.starts_with(b"hello operator"), "{}", String::from_utf8_lossy(&contents));
    let part = json!({"type": "READ_FILE",
                      "read_file": {"path": format!("{root}/stdout"), "offset": 6, "length": 8}});
    let (_, answer) = call(&cluster, part).await?;
    let file = answer.read_file.context("read_file")?;
    assert_eq!((&file.data[..], file.size), (&b"operator"[..], contents.len() as u64));

    // State: the task is launched and running, on its command executor.
    let (raw, answer) = call(&cluster, json!({"type": "GET_TASKS"})).await?;
    let tasks = answer.get_tasks.context("get_tasks")?;
    assert_eq!(task_ids(&tasks.launched_tasks), ["busy"]);
    assert_eq!(tasks.launched_tasks[0].state(), v1::TaskState::TaskRunning);
    assert!(tasks.queued_tasks.is_empty() && tasks.completed_tasks.is_empty());
    assert_eq!(raw["get_tasks"]["launched_tasks"][0]["state"], "TASK_RUNNING");

    let (_, answer) = call(&cluster, json!({"type": "GET_STATE"})).await?;
    let state = answer.get_state.context("get_state")?;
    assert_eq!(task_ids(&state.get_tasks.context("tasks")?.launched_tasks), ["busy"]);
    assert_eq!(state.get_executors.context("executors")?.executors.len(), 1);
    assert_eq!(state.get_frameworks.context("frameworks")?.frameworks.len(), 1);

    let (_, answer) = call(&cluster, json!({"type": "GET_FRAMEWORKS"})).await?;
    let frameworks = answer.get_frameworks.context("get_frameworks")?.frameworks;
    assert_eq!(frameworks[0].framework_info.name, "operator");
    assert_eq!(frameworks[0].framework_info.id.as_ref().map(|f| f.value.as_str()), Some(&fid[..]));

    let (_, answer) = call(&cluster, json!({"type": "GET_EXECUTORS"})).await?;
    let executors = answer.get_executors.context("get_executors")?;
    assert_eq!(executors.executors[0].executor_info.executor_id.value, "busy");

    let (_, answer) = call(&cluster, json!({"type": "GET_AGENT"})).await?;
    let info = answer.get_agent.context("get_agent")?.agent_info.context("agent_info")?;
    assert!(info.id.is_some(), "the agent is registered");
    assert!(info.resources.iter().any(|r| r.name == "cpus"));

    // The container: its limits are the executor's plus the task's, and its usage is real.
    let (_, answer) = call(&cluster, json!({"type": "GET_CONTAINERS"})).await?;
    let container = &answer.get_containers.context("get_containers")?.containers[0];
    assert_eq!(container.framework_id.as_ref().map(|f| f.value.as_str()), Some(&fid[..]));
    assert_eq!(container.executor_id.as_ref().map(|e| e.value.as_str()), Some("busy"));
    assert!(!container.container_id.value.is_empty());
    let status = container.container_status.as_ref().context("container_status")?;
    assert!(status.executor_pid.is_some_and(|pid| pid > 0));
    let first = container.resource_statistics.context("statistics")?;
    assert!(first.cpus_limit.is_some_and(|c| c >= 0.5), "{first:?}");
    assert!(first.mem_limit_bytes.is_some_and(|m| m >= 64 << 20), "{first:?}");
    assert!(first.mem_rss_bytes.is_some_and(|m| m > 0), "{first:?}");
    assert!(first.processes.is_some_and(|p| p >= 2), "executor and task: {first:?}");
    assert!(first.threads >= first.processes, "{first:?}");
    assert!(first.disk_used_bytes.is_some(), "{first:?}");
    assert!(first.timestamp > 0.0);
    // The busy loop only ever adds CPU time.
    let mut later = first;
    for _ in 0..600 {
        later = statistics(&cluster).await?;
        if cpu_secs(&later) > cpu_secs(&first) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(cpu_secs(&later) > cpu_secs(&first), "{first:?} then {later:?}");
    assert!(later.timestamp >= first.timestamp);
    Ok(())
}

#[tokio::test]
async fn state_and_containers_in_protobuf_and_a_completed_task() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let (_session, _events, _fid) = launch_tasks(
        &cluster.master,
        test_framework("protobuf"),
        "cpus:0.1;mem:32",
        &[("sleeper", "sleep 600"), ("quick", "true")],
        &[("sleeper", v1::TaskState::TaskRunning), ("quick", v1::TaskState::TaskFinished)],
    )
    .await?;

    let mut get_state = agent::Call::default();
    get_state.set_type(agent::call::Type::GetState);
    let mut get_containers = agent::Call::default();
    get_containers.set_type(agent::call::Type::GetContainers);

    // The finished task's acknowledgement reaches the agent on its own time: poll.
    let mut tasks = response::GetTasks::default();
    for _ in 0..300 {
        let answer = call_protobuf(&cluster, &get_state).await?;
        assert_eq!(answer.r#type(), response::Type::GetState);
        tasks = answer.get_state.context("get_state")?.get_tasks.context("get_tasks")?;
        if !tasks.completed_tasks.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(task_ids(&tasks.launched_tasks), ["sleeper"]);
    assert_eq!(task_ids(&tasks.completed_tasks), ["quick"]);
    assert_eq!(tasks.completed_tasks[0].state(), v1::TaskState::TaskFinished);

    // The quick task's executor ends once its task is over: one container is left, and the
    // ended executor is listed as completed.
    let mut containers = Vec::new();
    for _ in 0..300 {
        let answer = call_protobuf(&cluster, &get_containers).await?;
        containers = answer.get_containers.context("get_containers")?.containers;
        if containers.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].executor_id.as_ref().map(|e| e.value.as_str()), Some("sleeper"));
    let statistics = containers[0].resource_statistics.as_ref().context("statistics")?;
    assert!(statistics.mem_rss_bytes.is_some_and(|m| m > 0));
    let executors = call_protobuf(&cluster, &get_state)
        .await?
        .get_state
        .and_then(|s| s.get_executors)
        .context("get_executors")?;
    let completed: Vec<&str> = executors
        .completed_executors
        .iter()
        .map(|e| e.executor_info.executor_id.value.as_str())
        .collect();
    assert_eq!(completed, ["quick"]);

    // A JSON request may ask for a protobuf answer, and `/slave(1)/api/v1` is the same API.
    let response = reqwest::Client::new()
        .post(format!("http://{}/slave(1)/api/v1", cluster.agent))
        .header("Content-Type", "application/json")
        .header("Accept", "application/x-protobuf")
        .body(r#"{"type":"GET_HEALTH"}"#)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let answer: agent::Response = Format::Protobuf.decode(&response.bytes().await?)?;
    assert_eq!(answer.get_health.map(|h| h.healthy), Some(true));
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_mesos_status_codes_and_messages() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"type": "UNKNOWN"}), 501, "UNKNOWN"),
        (json!({"type": "LAUNCH_CONTAINER", "launch_container": {}}), 501, "LAUNCH_CONTAINER"),
        (json!({"type": "GET_RESOURCE_PROVIDERS"}), 501, "GET_RESOURCE_PROVIDERS"),
        (json!({}), 400, "Expecting 'type' to be present"),
        (json!({"type": "LIST_FILES"}), 400, "Expecting 'list_files' to be present"),
        (json!({"type": "READ_FILE"}), 400, "Expecting 'read_file' to be present"),
        (json!({"type": "GET_METRICS"}), 400, "Expecting 'get_metrics' to be present"),
        (json!({"type": "SET_LOGGING_LEVEL"}), 400, "Expecting 'set_logging_level' to be present"),
        (
            json!({"type": "READ_FILE", "read_file": {"path": "/nowhere/stdout", "offset": 0}}),
            404,
            "/nowhere/stdout",
        ),
        (json!({"type": "LIST_FILES", "list_files": {"path": "/nowhere"}}), 404, "/nowhere"),
        (json!({"type": "READ_FILE", "read_file": {"path": "/x"}}), 400, "offset"),
    ];
    for (body, code, message) in cases {
        let (status, text) = post(&cluster, "/api/v1", &body).await?;
        if status != code || !text.contains(message) {
            bail!("{body}: expected {code} mentioning {message:?}, got {status} {text:?}");
        }
    }

    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1", cluster.agent);
    let get = client.get(&url).send().await?;
    assert_eq!(get.status(), 405);
    let send = |content_type: &'static str, accept: &'static str, body: &'static str| {
        client
            .post(&url)
            .header("Content-Type", content_type)
            .header("Accept", accept)
            .body(body)
            .send()
    };
    assert_eq!(send("text/plain", "application/json", "{}").await?.status(), 415);
    let not_acceptable = send("application/json", "text/html", r#"{"type":"GET_HEALTH"}"#).await?;
    assert_eq!(not_acceptable.status(), 406);
    let garbage = send("application/json", "application/json", "{not json").await?;
    assert_eq!(garbage.status(), 400);
    assert!(garbage.text().await?.contains("Failed to parse body into"));
    Ok(())
}

/// A call to an agent at `addr`: status and body.
async fn post_to(addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn a_restarted_agent_answers_503_until_its_executors_are_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let master_args = ["--port", "0", "--registry", "in_memory", "--allocation_interval", "100ms"];
    let master = Daemon::master(&master_args)?;
    let port = free_port()?.to_string();
    let work_dir = dir.path().join("agent").to_string_lossy().into_owned();
    let agent_args = [
        "--master",
        &master.addr,
        "--port",
        &port,
        "--work_dir",
        &work_dir,
        "--resources",
        "cpus:2;mem:1024;disk:1024",
        "--registration_backoff_factor",
        "100ms",
        // The longest Mesos allows: the stopped executor below cannot come back before the
        // test has looked.
        "--executor_reregistration_timeout",
        "15secs",
        "--recovery_timeout",
        "1mins",
    ];
    let agent = Daemon::agent(&agent_args)?;
    let mut framework = test_framework("recovering");
    framework.checkpoint = Some(true);
    framework.failover_timeout = Some(3600.0);
    let (session, mut events, _) = launch_tasks(
        &master.addr,
        framework,
        "cpus:0.1;mem:32",
        &[("survivor", "sleep 600")],
        &[("survivor", v1::TaskState::TaskRunning)],
    )
    .await?;
    let (status, text) = post_to(&agent.addr, "/api/v1", r#"{"type":"GET_CONTAINERS"}"#).await?;
    ensure!(status == 200, "{status} {text}");
    let answer: agent::Response = agora_proto::from_json(text.as_bytes())?;
    let containers = answer.get_containers.context("get_containers")?.containers;
    let pid = containers[0]
        .container_status
        .as_ref()
        .and_then(|s| s.executor_pid)
        .context("the executor's pid")?;
    let executor = Pid::from_raw(i32::try_from(pid)?);

    // A stopped executor cannot subscribe again: the restarted agent keeps recovering.
    kill(executor, Signal::SIGSTOP)?;
    let addr = agent.addr.clone();
    agent.kill()?;
    let agent = Daemon::agent(&agent_args)?;
    assert_eq!(agent.addr, addr);
    for (path, body) in
        [("/api/v1", r#"{"type":"GET_HEALTH"}"#), ("/api/v1", r#"{"type":"GET_STATE"}"#)]
    {
        let (status, text) = post_to(&agent.addr, path, body).await?;
        assert_eq!((status, text.as_str()), (503, "Agent has not finished recovery"), "{body}");
    }
    let state = reqwest::get(format!("http://{}/state", agent.addr)).await?;
    assert_eq!(state.status(), 503);

    // Once it runs again it subscribes, and the agent answers.
    kill(executor, Signal::SIGCONT)?;
    let mut answered = (0, String::new());
    for _ in 0..300 {
        answered = post_to(&agent.addr, "/api/v1", r#"{"type":"GET_TASKS"}"#).await?;
        if answered.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ensure!(answered.0 == 200, "{answered:?}");
    let tasks: agent::Response = agora_proto::from_json(answered.1.as_bytes())?;
    let tasks = tasks.get_tasks.context("get_tasks")?;
    assert_eq!(task_ids(&tasks.launched_tasks), ["survivor"]);

    // Nothing is left running.
    session.kill(v1::TaskId { value: "survivor".into() }).await?;
    loop {
        let status = agora_tests::next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.state() == v1::TaskState::TaskKilled {
            break;
        }
    }
    Ok(())
}
