//! The agent's files API (`/files/browse`, `/files/read`, `/files/download`, `/files/debug`)
//! and sandbox garbage collection (`--gc_delay`) end to end against a real `agora dev`: real
//! sandboxes written by real tasks, read over HTTP, including every way of reaching outside
//! them, which must be refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_proto::scheduler::Event;
use agora_proto::{Format, v1};
use agora_tests::{Cluster, ClusterOptions, command_task, next_offers, next_update};
use anyhow::{Context, bail};
use serde_json::Value;

fn framework(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo { user: "root".into(), name: name.into(), ..Default::default() }
}

/// Launches `tasks` (id, command) on the first offer and acknowledges updates until every
/// task in `until` has reached the state it is paired with.
async fn launch(
    cluster: &Cluster,
    tasks: &[(&str, &str)],
    until: &[(&str, v1::TaskState)],
) -> anyhow::Result<(SchedulerSession, Subscription<Event>, String)> {
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework("files"), Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let infos = tasks
        .iter()
        .map(|(id, command)| command_task(id, &offer.agent_id, "cpus:0.1;mem:32", command))
        .collect();
    session.launch(vec![offer.id.clone()], infos, Some(0.0)).await?;
    let mut states: HashMap<String, v1::TaskState> = HashMap::new();
    while until.iter().any(|(id, state)| states.get(*id) != Some(state)) {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.state() == v1::TaskState::TaskFailed {
            bail!("a task failed: {status:?}");
        }
        states.insert(status.task_id.value.clone(), status.state());
    }
    let fid = session.framework_id.value.clone();
    Ok((session, events, fid))
}

/// GET on the agent: status and body.
async fn get(cluster: &Cluster, endpoint: &str, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let url = format!("http://{}{endpoint}?path={path}", cluster.agent);
    let response = reqwest::get(&url).await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

async fn json(cluster: &Cluster, endpoint: &str, path: &str) -> anyhow::Result<Value> {
    let (status, body) = get(cluster, endpoint, path).await?;
    if status != 200 {
        bail!("{endpoint}?path={path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Waits until the task's stdout says `ready` (its files are all written by then).
async fn wait_ready(cluster: &Cluster, root: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        let read = json(cluster, "/files/read", &format!("{root}/stdout&offset=0")).await?;
        if read["data"].as_str().is_some_and(|d| d.contains("ready")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the task never became ready")
}

#[tokio::test]
async fn browse_read_download_and_debug_stay_inside_the_sandboxes() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let command = "mkdir sub && printf 'hello files\\n' > sub/note.txt && \
                   ln -s /etc/passwd escape && ln -s .. up && echo ready && sleep 60";
    let (_session, _events, fid) =
        launch(&cluster, &[("files", command)], &[("files", v1::TaskState::TaskRunning)]).await?;
    let root = format!("/frameworks/{fid}/executors/files/runs/latest");
    wait_ready(&cluster, &root).await?;

    // Debug: the virtual path maps to the sandbox, which is also attached at its host path.
    let debug = json(&cluster, "/files/debug", "").await?;
    let sandbox = debug[&root].as_str().context("the virtual path is attached")?.to_string();
    assert_eq!(debug[&sandbox].as_str(), Some(sandbox.as_str()), "{debug}");
    assert!(sandbox.starts_with(&cluster.work_dir.path().canonicalize()?.to_string_lossy()[..]));

    // Browse: Mesos's fields, paths under the requested one, sorted.
    let listing = json(&cluster, "/files/browse", &root).await?;
    let entries = listing.as_array().context("browse answers an array")?;
    let paths: Vec<&str> = entries.iter().filter_map(|e| e["path"].as_str()).collect();
    let expected: Vec<String> = ["escape", "stderr", "stdout", "sub", "up"]
        .iter()
        .map(|name| format!("{root}/{name}"))
        .collect();
    assert_eq!(paths, expected);
    for entry in entries {
        for key in ["nlink", "size", "mtime"] {
            assert!(entry[key].is_u64(), "{key} in {entry}");
        }
        for key in ["mode", "uid", "gid"] {
            assert!(entry[key].is_string(), "{key} in {entry}");
        }
    }
    assert!(entries[3]["mode"].as_str().is_some_and(|m| m.starts_with("drwx")));
    // The link that points out is shown as a link, not as the file it points to.
    assert!(entries[0]["mode"].as_str().is_some_and(|m| m.starts_with('l')));
    let sub = json(&cluster, "/files/browse", &format!("{root}/sub")).await?;
    assert_eq!(sub[0]["path"], format!("{root}/sub/note.txt"));
    assert_eq!(sub[0]["size"], 12);
    assert!(sub[0]["mode"].as_str().is_some_and(|m| m.starts_with("-rw")));
    // The same directory by its host path.
    let by_host = json(&cluster, "/files/browse", &format!("{sandbox}/sub")).await?;
    assert_eq!(by_host[0]["path"], format!("{sandbox}/sub/note.txt"));

    // Read: the size probe, slices, the end, and the refusals.
    let note = format!("{root}/sub/note.txt");
    let read = |query: String| {
        let cluster = &cluster;
        async move { json(cluster, "/files/read", &query).await }
    };
    assert_eq!(read(note.clone()).await?, serde_json::json!({"offset": 12, "data": ""}));
    assert_eq!(
        read(format!("{note}&offset=-1")).await?,
        serde_json::json!({"offset": 12, "data": ""})
    );
    assert_eq!(
        read(format!("{note}&offset=6&length=5")).await?,
        serde_json::json!({"offset": 6, "data": "files"})
    );
    assert_eq!(
        read(format!("{note}&offset=0")).await?,
        serde_json::json!({"offset": 0, "data": "hello files\n"})
    );
    assert_eq!(
        read(format!("{note}&offset=50")).await?,
        serde_json::json!({"offset": 12, "data": ""})
    );
    for (query, code) in [
        (format!("{note}&offset=-2"), 400),
        (format!("{note}&offset=0&length=-2"), 400),
        (format!("{note}&offset=abc"), 400),
        (format!("{root}/sub&offset=0"), 400),
        (format!("{root}/missing&offset=0"), 404),
    ] {
        assert_eq!(get(&cluster, "/files/read", &query).await?.0, code, "{query}");
    }
    let no_path = reqwest::get(format!("http://{}/files/read", cluster.agent)).await?;
    assert_eq!(no_path.status().as_u16(), 400);

    // Download: the bytes as an attachment.
    let response =
        reqwest::get(format!("http://{}/files/download?path={note}", cluster.agent)).await?;
    assert_eq!(response.status().as_u16(), 200);
    let header =
        |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header("content-disposition").as_deref(), Some("attachment; filename=\"note.txt\""));
    assert_eq!(header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(&response.bytes().await?[..], b"hello files\n");
    assert_eq!(get(&cluster, "/files/download", &format!("{root}/sub")).await?.0, 400);
    assert_eq!(get(&cluster, "/files/download", &format!("{root}/nope")).await?.0, 404);

    // Nothing outside the sandbox, whichever way it is asked for.
    let work_dir = cluster.work_dir.path().canonicalize()?.to_string_lossy().into_owned();
    let refused = [
        (format!("{root}/../../../../../../../../etc/passwd"), 400),
        (format!("{root}/sub/../sub/note.txt"), 400),
        (format!("{sandbox}/../latest/stdout"), 400),
        (format!("{root}/escape"), 400),
        (format!("{root}/up"), 400),
        ("/etc/passwd".to_string(), 404),
        (format!("{work_dir}/agent/slaves"), 404),
        (format!("{work_dir}/master"), 404),
    ];
    for (path, code) in &refused {
        let read_query = format!("{path}&offset=0");
        assert_eq!(get(&cluster, "/files/read", &read_query).await?.0, *code, "read {path}");
        assert_eq!(get(&cluster, "/files/download", path).await?.0, *code, "download {path}");
        assert_eq!(get(&cluster, "/files/browse", path).await?.0, *code, "browse {path}");
    }
    Ok(())
}

/// The sandbox behind a task's `runs/latest`, found on disk.
fn sandbox_of(cluster: &Cluster, fid: &str, executor: &str) -> anyhow::Result<PathBuf> {
    let slaves = cluster.work_dir.path().join("agent/slaves");
    for agent in std::fs::read_dir(&slaves)? {
        let latest =
            agent?.path().join(format!("frameworks/{fid}/executors/{executor}/runs/latest"));
        if let Ok(real) = latest.canonicalize() {
            return Ok(real);
        }
    }
    bail!("no sandbox for {executor}")
}

#[tokio::test]
async fn ended_executors_sandboxes_are_collected_after_gc_delay() -> anyhow::Result<()> {
    let options =
        ClusterOptions { extra: vec!["--gc_delay".into(), "2secs".into()], ..Default::default() };
    let cluster = Cluster::start_with(options)?;
    let (_session, _events, fid) = launch(
        &cluster,
        &[("short", "echo done"), ("long", "sleep 60")],
        &[("short", v1::TaskState::TaskFinished), ("long", v1::TaskState::TaskRunning)],
    )
    .await?;
    let short = sandbox_of(&cluster, &fid, "short")?;
    let long = sandbox_of(&cluster, &fid, "long")?;
    let short_stdout = format!("/frameworks/{fid}/executors/short/runs/latest/stdout&offset=0");
    let long_stdout = format!("/frameworks/{fid}/executors/long/runs/latest/stdout&offset=0");

    let mut waited = Duration::ZERO;
    while short.exists() {
        if waited > Duration::from_secs(30) {
            bail!("the ended executor's sandbox {} is still there", short.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    // Gone from the files API too, while the running executor's sandbox stays, even after
    // another delay has passed.
    assert_eq!(get(&cluster, "/files/read", &short_stdout).await?.0, 404);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(long.is_dir(), "the running executor's sandbox was removed");
    assert_eq!(get(&cluster, "/files/read", &long_stdout).await?.0, 200);
    Ok(())
}
