//! The agent's legacy endpoints end to end against a real `agora dev` with a task running:
//! `/state` and `/slave(1)/state` (+ `.json`), `/flags`, `/monitor/statistics` (+ `.json`),
//! `/containers`, `/metrics/snapshot` and Prometheus `GET /metrics`, in Mesos's JSON shapes
//! (reference §4.4): flat resources with the four scalars always there, ranges as strings,
//! `slave` naming.

use agora_proto::v1;
use agora_tests::{Cluster, launch_tasks, test_framework};
use anyhow::{Context, ensure};
use serde_json::Value;

async fn get(cluster: &Cluster, path: &str) -> anyhow::Result<(u16, String, String)> {
    let response = reqwest::get(format!("http://{}{path}", cluster.agent)).await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((status, content_type, response.text().await?))
}

async fn json(cluster: &Cluster, path: &str) -> anyhow::Result<Value> {
    let (status, _, text) = get(cluster, path).await?;
    ensure!(status == 200, "{path}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

fn assert_flat(resources: &Value) {
    for key in ["cpus", "gpus", "mem", "disk"] {
        assert!(resources[key].is_number(), "{key} in {resources}");
    }
}

#[tokio::test]
async fn legacy_endpoints_have_mesos_shapes() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let (_session, _events, fid) = launch_tasks(
        &cluster.master,
        test_framework("legacy"),
        "cpus:0.25;mem:48",
        &[("sleeper", "sleep 600")],
        &[("sleeper", v1::TaskState::TaskRunning)],
    )
    .await?;

    // /state under every spelling.
    let state = json(&cluster, "/state").await?;
    for path in ["/state.json", "/slave(1)/state", "/slave(1)/state.json"] {
        let other = json(&cluster, path).await?;
        assert_eq!(other["id"], state["id"], "{path}");
    }
    for key in [
        "version",
        "build_date",
        "start_time",
        "id",
        "pid",
        "hostname",
        "capabilities",
        "resources",
        "reserved_resources",
        "unreserved_resources",
        "reserved_resources_full",
        "unreserved_resources_full",
        "attributes",
        "master_hostname",
        "flags",
        "frameworks",
        "completed_frameworks",
    ] {
        assert!(state.get(key).is_some(), "{key} missing from {state}");
    }
    assert_eq!(state["version"], "1.11.0");
    assert!(state["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(state["pid"], format!("slave(1)@{}", cluster.agent));
    assert_flat(&state["resources"]);
    assert_eq!(state["resources"]["cpus"], 4.0);
    assert_eq!(state["resources"]["ports"], "[31000-32000]");
    assert!(state["flags"]["work_dir"].is_string());
    let framework = &state["frameworks"][0];
    assert_eq!(framework["id"], fid.as_str());
    assert_eq!(framework["name"], "legacy");
    let executor = &framework["executors"][0];
    assert_eq!(executor["id"], "sleeper");
    assert!(executor["directory"].as_str().is_some_and(|d| d.contains("/runs/")), "{executor}");
    assert!(executor["container"].as_str().is_some_and(|c| !c.is_empty()));
    assert_flat(&executor["resources"]);
    let task = &executor["tasks"][0];
    assert_eq!(task["id"], "sleeper");
    assert_eq!(task["state"], "TASK_RUNNING");
    assert_eq!(task["framework_id"], fid.as_str());
    assert_eq!(task["slave_id"], state["id"]);
    assert_flat(&task["resources"]);
    assert_eq!(task["resources"]["cpus"], 0.25);
    assert_eq!(task["resources"]["mem"], 48.0);
    assert!(task["statuses"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(executor["queued_tasks"].is_array() && executor["completed_tasks"].is_array());

    // Flags, under both spellings.
    for path in ["/flags", "/slave(1)/flags"] {
        let flags = json(&cluster, path).await?;
        assert!(flags["flags"]["work_dir"].is_string(), "{path}: {flags}");
        assert!(flags["flags"]["executor_registration_timeout"].is_string());
    }

    // Usage: one entry per running executor.
    for path in ["/monitor/statistics", "/monitor/statistics.json"] {
        let entries = json(&cluster, path).await?;
        let entry = &entries.as_array().context("an array")?[0];
        for key in ["framework_id", "executor_id", "executor_name", "source", "statistics"] {
            assert!(entry.get(key).is_some(), "{key} missing from {entry}");
        }
        assert_eq!(entry["executor_id"], "sleeper");
        assert!(entry["statistics"]["mem_rss_bytes"].as_u64().is_some_and(|m| m > 0), "{entry}");
        assert!(entry["statistics"]["timestamp"].is_number());
        assert!(entry["statistics"]["cpus_limit"].as_f64().is_some_and(|c| c >= 0.25));
    }
    let containers = json(&cluster, "/containers").await?;
    let container = &containers.as_array().context("an array")?[0];
    assert_eq!(container["container_id"], executor["container"]);
    assert!(container["status"]["executor_pid"].as_u64().is_some());
    assert!(container["statistics"]["processes"].as_u64().is_some_and(|p| p >= 1));

    // Metrics, as Mesos's flat object and as Prometheus text with the same numbers.
    let snapshot = json(&cluster, "/metrics/snapshot").await?;
    let names = [
        "slave/uptime_secs",
        "slave/registered",
        "slave/cpus_total",
        "slave/cpus_used",
        "slave/cpus_percent",
        "slave/mem_total",
        "slave/disk_total",
        "slave/gpus_total",
        "slave/executors_registering",
        "slave/executors_running",
        "slave/executors_terminating",
        "slave/executors_terminated",
        "slave/tasks_staging",
        "slave/tasks_starting",
        "slave/tasks_running",
        "slave/tasks_killing",
        "slave/tasks_finished",
        "slave/tasks_failed",
        "slave/tasks_killed",
        "slave/tasks_lost",
        "slave/frameworks_active",
        "slave/recovery_errors",
        "slave/valid_status_updates",
        "slave/invalid_status_updates",
        "system/cpus_total",
        "system/load_1min",
        "system/mem_total_bytes",
        "system/mem_free_bytes",
    ];
    for name in names {
        assert!(snapshot[name].is_number(), "{name} missing from {snapshot}");
    }
    assert_eq!(snapshot["slave/registered"], 1.0);
    assert_eq!(snapshot["slave/tasks_running"], 1.0);
    assert_eq!(snapshot["slave/executors_running"], 1.0);
    assert_eq!(snapshot["slave/frameworks_active"], 1.0);
    assert!(snapshot["slave/cpus_used"].as_f64().is_some_and(|c| c >= 0.25));
    assert!(snapshot["slave/valid_status_updates"].as_f64().is_some_and(|v| v >= 2.0));

    let (status, content_type, text) = get(&cluster, "/metrics").await?;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    for name in ["slave_tasks_running", "slave_registered", "system_cpus_total"] {
        assert_eq!(
            text.lines().filter(|l| *l == format!("# TYPE {name} gauge")).count(),
            1,
            "{name} in {text}"
        );
    }
    assert!(text.lines().any(|l| l == "slave_tasks_running 1"), "{text}");
    assert!(text.lines().any(|l| l == "slave_frameworks_active 1"), "{text}");
    assert!(!text.contains('/'), "names are mapped: {text}");
    Ok(())
}
