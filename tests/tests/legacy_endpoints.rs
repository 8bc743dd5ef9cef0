//! The master's legacy JSON endpoints against the real `agora` binary: `/master/state` and its
//! aliases in Mesos's shape (flat resources, `slave_id`, statuses arrays), `/master/tasks`
//! paging and order, the filters of `/master/frameworks` and `/slaves`, `/master/roles`,
//! `/master/flags`, `/master/redirect`, `/master/state-summary`, and the metrics in both
//! formats.

use agora_client::scheduler::SchedulerSession;
use agora_proto::{Format, v1};
use agora_tests::{Cluster, command_task, next_offers, next_update};
use anyhow::{Context, ensure};
use serde_json::Value;

async fn get(cluster: &Cluster, path: &str) -> anyhow::Result<Value> {
    let response = reqwest::get(cluster.master_url(path)).await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "{path}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

fn ids(tasks: &Value) -> Vec<String> {
    tasks
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| t["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn legacy_endpoints_have_mesos_shapes() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let info =
        v1::FrameworkInfo { user: "root".into(), name: "legacy".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, info, Format::Json).await?;
    let framework_id = session.framework_id.value.clone();

    // Three tasks that finish one after the other, and one that keeps running.
    for (id, command) in [("t1", "true"), ("t2", "true"), ("t3", "true"), ("t4", "sleep 60")] {
        let offer = next_offers(&mut events).await?.remove(0);
        let task = command_task(id, &offer.agent_id, "cpus:0.1;mem:32", command);
        session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
        loop {
            let status = next_update(&session, &mut events).await?;
            session.acknowledge(&status).await?;
            let state = status.state();
            if state == v1::TaskState::TaskFinished
                || state == v1::TaskState::TaskRunning && id == "t4"
            {
                break;
            }
        }
    }

    let state = get(&cluster, "/master/state").await?;
    for key in [
        "version",
        "start_time",
        "elected_time",
        "id",
        "pid",
        "hostname",
        "activated_slaves",
        "deactivated_slaves",
        "leader",
        "leader_info",
        "flags",
        "slaves",
        "frameworks",
        "completed_frameworks",
        "orphan_tasks",
        "unregistered_frameworks",
    ] {
        ensure!(state.get(key).is_some(), "/master/state lacks {key}: {state}");
    }
    assert_eq!(state["activated_slaves"], 1);
    let slave = &state["slaves"][0];
    let resources = &slave["resources"];
    assert_eq!(resources["cpus"].as_f64(), Some(4.0), "{slave}");
    assert_eq!(resources["gpus"].as_f64(), Some(0.0));
    assert_eq!(resources["mem"].as_f64(), Some(4096.0));
    assert_eq!(resources["disk"].as_f64(), Some(4096.0));
    assert_eq!(resources["ports"], "[31000-32000]");
    assert!(slave["used_resources"]["cpus"].as_f64().is_some_and(|c| c > 0.0), "{slave}");
    let slave_id = slave["id"].as_str().context("slave id")?.to_string();

    let framework = &state["frameworks"][0];
    assert_eq!(framework["id"], framework_id.as_str());
    assert_eq!(framework["name"], "legacy");
    assert_eq!(framework["active"], true);
    assert_eq!(ids(&framework["tasks"]), ["t4"]);
    let running = &framework["tasks"][0];
    assert_eq!(running["slave_id"], slave_id.as_str());
    assert_eq!(running["framework_id"], framework_id.as_str());
    assert_eq!(running["state"], "TASK_RUNNING");
    assert_eq!(running["resources"]["cpus"].as_f64(), Some(0.1));
    assert_eq!(running["resources"]["gpus"].as_f64(), Some(0.0));
    assert_eq!(running["statuses"][0]["state"], "TASK_RUNNING");
    assert!(running["statuses"][0]["timestamp"].as_f64().is_some());
    let mut completed = ids(&framework["completed_tasks"]);
    completed.sort();
    assert_eq!(completed, ["t1", "t2", "t3"]);

    for alias in ["/state", "/state.json", "/master/state.json"] {
        let other = get(&cluster, alias).await?;
        assert_eq!(other["id"], state["id"], "{alias}");
        assert_eq!(other["frameworks"][0]["id"], framework_id.as_str(), "{alias}");
    }

    // /master/tasks: newest first by default, paged.
    let all = ids(&get(&cluster, "/master/tasks").await?["tasks"]);
    assert_eq!(all, ["t4", "t3", "t2", "t1"]);
    let asc = ids(&get(&cluster, "/tasks?order=asc").await?["tasks"]);
    assert_eq!(asc, ["t1", "t2", "t3", "t4"]);
    let page = ids(&get(&cluster, "/master/tasks?limit=2&offset=1&order=asc").await?["tasks"]);
    assert_eq!(page, ["t2", "t3"]);
    let one = ids(&get(&cluster, "/master/tasks?task_id=t2").await?["tasks"]);
    assert_eq!(one, ["t2"]);
    let none = get(&cluster, "/master/tasks?framework_id=nope").await?;
    assert_eq!(ids(&none["tasks"]), Vec::<String>::new());
    let bad = reqwest::get(cluster.master_url("/master/tasks?limit=x")).await?;
    assert_eq!(bad.status().as_u16(), 400);

    let frameworks =
        get(&cluster, &format!("/master/frameworks?framework_id={framework_id}")).await?;
    assert_eq!(frameworks["frameworks"].as_array().map(Vec::len), Some(1));
    assert!(frameworks["completed_frameworks"].is_array());
    let frameworks = get(&cluster, "/master/frameworks?framework_id=nope").await?;
    assert_eq!(frameworks["frameworks"].as_array().map(Vec::len), Some(0));

    for path in ["/master/slaves", "/slaves"] {
        let slaves = get(&cluster, path).await?;
        assert_eq!(slaves["slaves"][0]["id"], slave_id.as_str(), "{path}");
        assert!(slaves["recovered_slaves"].is_array());
    }
    let slaves = get(&cluster, "/slaves?slave_id=nope").await?;
    assert_eq!(slaves["slaves"].as_array().map(Vec::len), Some(0));

    let roles = get(&cluster, "/master/roles").await?;
    assert_eq!(roles["roles"][0]["name"], "*", "{roles}");
    assert_eq!(roles["roles"][0]["frameworks"][0], framework_id.as_str());
    assert!(roles["roles"][0]["resources"]["cpus"].as_f64().is_some());

    let flags = get(&cluster, "/master/flags").await?;
    assert_eq!(flags["flags"]["heartbeat_interval"], "1secs");

    let summary = get(&cluster, "/master/state-summary").await?;
    assert_eq!(summary["slaves"][0]["TASK_RUNNING"], 1, "{summary}");
    assert_eq!(summary["slaves"][0]["TASK_FINISHED"], 3);
    assert_eq!(summary["frameworks"][0]["slave_ids"][0], slave_id.as_str());

    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(cluster.master_url("/master/redirect"))
        .send()
        .await?;
    assert_eq!(redirect.status().as_u16(), 307);
    let location = redirect.headers().get("location").context("Location")?.to_str()?.to_string();
    let port = cluster.master.rsplit(':').next().context("port")?;
    assert!(location.starts_with("//") && location.ends_with(&format!(":{port}")), "{location}");

    // Metrics: Mesos's names, in JSON and in Prometheus's text format.
    let metrics = get(&cluster, "/metrics/snapshot").await?;
    assert_eq!(metrics["master/tasks_running"], 1, "{metrics}");
    assert_eq!(metrics["master/tasks_finished"], 3);
    assert_eq!(metrics["master/slaves_active"], 1);
    assert_eq!(metrics["master/frameworks_active"], 1);
    assert_eq!(metrics["master/elected"], 1);
    assert_eq!(metrics["master/slave_registrations"], 1);
    assert_eq!(metrics["master/cpus_total"], 4);
    for name in [
        "master/uptime_secs",
        "master/mem_percent",
        "master/outstanding_offers",
        "master/tasks_gone_by_operator",
        "master/valid_status_updates",
        "allocator/mesos/allocation_runs",
        "system/cpus_total",
        "system/mem_total_bytes",
    ] {
        ensure!(metrics.get(name).is_some(), "/metrics/snapshot lacks {name}");
    }
    let text = reqwest::get(cluster.master_url("/metrics")).await?.text().await?;
    assert!(text.contains("# TYPE master_tasks_running gauge\nmaster_tasks_running 1\n"), "{text}");
    assert!(text.contains("# TYPE master_slave_registrations counter\n"), "{text}");
    Ok(())
}
