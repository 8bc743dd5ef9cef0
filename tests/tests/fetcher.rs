//! The fetcher end to end against a real `agora dev`: command tasks whose URIs come from a
//! small HTTP server on 127.0.0.1 find an executable script and an extracted tarball in their
//! sandbox, a cached tarball is downloaded once for two tasks, and a task whose URI cannot be
//! fetched ends TASK_FAILED with REASON_CONTAINER_LAUNCH_FAILED without its executor starting.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};

use agora_client::scheduler::SchedulerSession;
use agora_core::status::is_terminal;
use agora_proto::v1::TaskState;
use agora_proto::v1::command_info::Uri;
use agora_proto::{Format, v1};
use agora_tests::{Cluster, command_task, free_port, next_offers, next_update};
use anyhow::{Context, ensure};

const SCRIPT: &str = "#!/bin/sh\necho fetched\n";
const DATA: &str = "hello from tarball";

/// Serves fixed files over HTTP/1.0 from a thread and counts the requests for each path.
struct FileServer {
    addr: SocketAddr,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl FileServer {
    fn start(files: BTreeMap<String, Vec<u8>>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let counted = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // The headers are read and ignored.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                *counted.lock().expect("not poisoned").entry(path.clone()).or_insert(0) += 1;
                let mut stream = &stream;
                let _ = match files.get(&path) {
                    Some(body) => stream
                        .write_all(
                            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                                .as_bytes(),
                        )
                        .and_then(|()| stream.write_all(body)),
                    None => {
                        stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    }
                };
            }
        });
        Ok(Self { addr, hits })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().expect("not poisoned").get(path).copied().unwrap_or(0)
    }
}

/// A gzipped tarball holding `data/file`, made with the system's tar.
fn tarball() -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("data"))?;
    std::fs::write(dir.path().join("data/file"), format!("{DATA}\n"))?;
    let archive = dir.path().join("bundle.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg("data")
        .status()
        .context("cannot run tar")?;
    ensure!(status.success(), "tar failed: {status}");
    Ok(std::fs::read(archive)?)
}

fn uri(value: String, executable: bool, cache: bool, output_file: Option<&str>) -> Uri {
    Uri {
        value,
        executable: Some(executable),
        cache: Some(cache),
        output_file: output_file.map(str::to_string),
        ..Default::default()
    }
}

fn with_uris(mut task: v1::TaskInfo, uris: Vec<Uri>) -> v1::TaskInfo {
    if let Some(command) = task.command.as_mut() {
        command.uris = uris;
    }
    task
}

#[tokio::test(flavor = "multi_thread")]
async fn uris_are_fetched_into_the_sandbox_and_failures_fail_the_task() -> anyhow::Result<()> {
    let server = FileServer::start(BTreeMap::from([
        ("/script".to_string(), SCRIPT.as_bytes().to_vec()),
        ("/bundle.tar.gz".to_string(), tarball()?),
    ]))?;
    let unreachable = format!("http://127.0.0.1:{}/missing.tgz", free_port()?);

    let cluster = Cluster::start()?;
    let framework =
        v1::FrameworkInfo { user: "root".into(), name: "fetcher".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task =
        |id: &str, command: &str| command_task(id, &offer.agent_id, "cpus:0.1;mem:32", command);
    let tasks = vec![
        with_uris(
            task(
                "script-and-tarball",
                &format!(
                    "test -x ./script && test \"$(./script)\" = fetched \
                     && grep -qx '{DATA}' data/file && test -f bundle.tar.gz"
                ),
            ),
            vec![
                uri(server.url("/script"), true, false, None),
                uri(server.url("/bundle.tar.gz"), false, true, None),
            ],
        ),
        with_uris(
            task("cached-and-renamed", &format!("grep -qx '{DATA}' data/file && test -f b.tgz")),
            vec![uri(server.url("/bundle.tar.gz"), false, true, Some("b.tgz"))],
        ),
        with_uris(task("unreachable", "true"), vec![uri(unreachable.clone(), false, false, None)]),
    ];
    session.launch(vec![offer.id.clone()], tasks, Some(0.0)).await?;

    let mut seen: BTreeMap<String, Vec<v1::TaskStatus>> = BTreeMap::new();
    while seen.len() < 3 || !seen.values().all(|s| s.last().is_some_and(|s| is_terminal(s.state())))
    {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        seen.entry(status.task_id.value.clone()).or_default().push(status);
    }
    let last = |id: &str| seen[id].last().cloned().context("an update");

    for id in ["script-and-tarball", "cached-and-renamed"] {
        let status = last(id)?;
        ensure!(status.state() == TaskState::TaskFinished, "{id} did not finish: {status:?}");
    }
    assert_eq!(server.hits("/script"), 1);
    assert_eq!(server.hits("/bundle.tar.gz"), 1, "the cached tarball is downloaded once");

    let failed = &seen["unreachable"];
    let states: Vec<_> = failed.iter().map(|s| s.state()).collect();
    assert_eq!(states, vec![TaskState::TaskFailed], "the executor never started");
    let status = &failed[0];
    assert_eq!(status.reason(), v1::task_status::Reason::ContainerLaunchFailed);
    assert_eq!(status.source(), v1::task_status::Source::Agent);
    let message = status.message();
    assert!(message.contains(&format!("Failed to fetch '{unreachable}'")), "{message}");
    Ok(())
}
