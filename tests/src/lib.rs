//! Harness for the integration tests: starts the real `agora` binary on 127.0.0.1 with free
//! ports and a temporary work directory, and stops exactly the processes it started.
//!
//! It also has the event helpers the scheduler tests share. The tests themselves live in
//! `tests/tests/`. The binary is found next to the test
//! executable's `target/<profile>/` directory (the README's test command builds it first), or
//! through `AGORA_BIN`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod zookeeper;

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_core::convert;
use agora_core::resources::Resources;
use agora_proto::scheduler::{Event, event};
use agora_proto::v1;
use anyhow::{Context, bail, ensure};

/// Path of the `agora` binary under test.
pub fn agora_bin() -> PathBuf {
    if let Ok(path) = std::env::var("AGORA_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/agora
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join("agora");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build --bin agora`) or set AGORA_BIN",
        bin.display()
    );
    bin
}

/// A running `agora dev`: one master and one agent.
pub struct Cluster {
    child: Child,
    pub master: String,
    pub agent: String,
    pub work_dir: tempfile::TempDir,
    /// Everything the process printed on stdout after the addresses.
    pub stdout: mpsc::Receiver<String>,
}

/// Knobs for `agora dev` that tests change.
pub struct ClusterOptions {
    pub resources: String,
    pub heartbeat_interval: String,
    pub extra: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            resources: "cpus:4;mem:4096;disk:4096;ports:[31000-32000]".into(),
            heartbeat_interval: "1secs".into(),
            extra: Vec::new(),
        }
    }
}

impl Cluster {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(ClusterOptions::default())
    }

    pub fn start_with(options: ClusterOptions) -> anyhow::Result<Self> {
        let work_dir = tempfile::tempdir().context("tempdir")?;
        let child = Command::new(agora_bin())
            .args(["dev", "--port", "0", "--agent_port", "0"])
            .arg("--work_dir")
            .arg(work_dir.path())
            .args(["--resources", &options.resources])
            // Short intervals keep the tests fast; the values are flags, not test assertions.
            .args(["--allocation_interval", "100ms"])
            .args(["--heartbeat_interval", &options.heartbeat_interval])
            .args(["--status_update_retry_interval", "500ms"])
            .args(&options.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start agora dev")?;
        let (mut child, rx) = read_lines(child)?;
        let mut master = None;
        let mut agent = None;
        while master.is_none() || agent.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("agora dev did not report its addresses");
                }
            };
            let address = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_string)
            };
            if let Some(a) = address("agora master listening on http://") {
                master = Some(a);
            } else if let Some(a) = address("agora agent listening on http://") {
                agent = Some(a);
            }
        }
        Ok(Self {
            child,
            master: master.context("master address")?,
            agent: agent.context("agent address")?,
            work_dir,
            stdout: rx,
        })
    }

    /// `http://<master><path>`.
    pub fn master_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.master)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM first so the daemons stop cleanly; the executors they started exit when their
        // agent stream closes.
        terminate(&mut self.child);
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within five seconds.
fn terminate(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Takes a child's piped stdout and hands its lines over a channel.
fn read_lines(mut child: Child) -> anyhow::Result<(Child, mpsc::Receiver<String>)> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// One `agora master` or `agora agent` process on its own, for tests that stop and restart
/// daemons separately. Dropping it stops it like `Cluster`.
pub struct Daemon {
    child: Child,
    /// `host:port` the daemon listens on.
    pub addr: String,
    /// What the daemon prints on stdout after its address line.
    stdout: mpsc::Receiver<String>,
}

impl Daemon {
    /// `agora master <args>`.
    pub fn master<S: AsRef<OsStr>>(args: &[S]) -> anyhow::Result<Self> {
        Self::start("master", args, "agora master listening on http://")
    }

    /// `agora agent <args>`.
    pub fn agent<S: AsRef<OsStr>>(args: &[S]) -> anyhow::Result<Self> {
        Self::start("agent", args, "agora agent listening on http://")
    }

    fn start<S: AsRef<OsStr>>(mode: &str, args: &[S], ready: &str) -> anyhow::Result<Self> {
        let child = Command::new(agora_bin())
            .arg(mode)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start agora {mode}"))?;
        let (mut child, rx) = read_lines(child)?;
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
                let _ = child.kill();
                let _ = child.wait();
                bail!("agora {mode} did not report its address");
            };
            if let Some(addr) = line.strip_prefix(ready).and_then(|r| r.split_whitespace().next()) {
                return Ok(Self { child, addr: addr.to_string(), stdout: rx });
            }
        }
    }

    /// The next line the daemon prints that starts with `prefix`.
    pub fn line_starting(&self, prefix: &str) -> anyhow::Result<String> {
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(60))
                .with_context(|| format!("no line starting with {prefix:?}"))?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL: the daemon dies at once, without any chance to clean up.
    pub fn kill(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a daemon that must come back on the
/// same address.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Whether a gated tier must run: in CI (`CI=true`) a missing prerequisite is a failure, not
/// a skip, so a gated test can never pass without running there.
pub fn required_in_ci(what: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{what} must run in CI but cannot: {reason}");
    }
    eprintln!("SKIPPED {what}: {reason}");
}

/// The next event that is not a heartbeat. Heartbeats do not count: the 30 s deadline is for
/// the next event that says something.
pub async fn next_event(events: &mut Subscription<Event>) -> anyhow::Result<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .context("no event other than heartbeats within 30 s")??
            .context("stream closed")?;
        if event.r#type() != event::Type::Heartbeat {
            return Ok(event);
        }
    }
}

/// The offers of the next OFFERS event.
pub async fn next_offers(events: &mut Subscription<Event>) -> anyhow::Result<Vec<v1::Offer>> {
    loop {
        if let Some(offers) = next_event(events).await?.offers {
            return Ok(offers.offers);
        }
    }
}

/// The next status update; offers that arrive meanwhile are declined so that the resources
/// they hold come back in later offers.
pub async fn next_update(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
) -> anyhow::Result<v1::TaskStatus> {
    loop {
        let event = next_event(events).await?;
        if let Some(offers) = event.offers {
            let ids = offers.offers.into_iter().map(|o| o.id).collect();
            session.decline(ids, Some(0.0)).await?;
        } else if let Some(status) = event.update.and_then(|u| u.status) {
            return Ok(status);
        }
    }
}

/// A command task asking for `resources`.
pub fn command_task(id: &str, agent: &v1::AgentId, resources: &str, command: &str) -> v1::TaskInfo {
    let resources = Resources::parse(resources).expect("the tests' resource strings are valid");
    v1::TaskInfo {
        name: id.into(),
        task_id: v1::TaskId { value: id.into() },
        agent_id: agent.clone(),
        resources: convert::resources_to_proto(&resources, None),
        command: Some(v1::CommandInfo { value: Some(command.into()), ..Default::default() }),
        ..Default::default()
    }
}

/// Whether process `pid` exists (a zombie counts as gone: its task is over).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.starts_with(" Z")))
}

/// Waits for `check` to hold, polling, for up to two minutes.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !check() {
        ensure!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The process id a task wrote to `<dir>/<task>.pid`.
pub async fn task_pid(dir: &Path, task: &str) -> anyhow::Result<i32> {
    let path = dir.join(format!("{task}.pid"));
    let mut pid = None;
    eventually(&format!("{task} wrote its pid"), || {
        pid = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok());
        pid.is_some()
    })
    .await?;
    pid.context("pid")
}

/// A framework called `name` that runs its tasks as root.
pub fn test_framework(name: &str) -> v1::FrameworkInfo {
    v1::FrameworkInfo { user: "root".into(), name: name.into(), ..Default::default() }
}

/// Subscribes `framework`, launches `tasks` (id, command) on its first offer, each with
/// `resources`, and acknowledges updates until every task in `until` has reached the state
/// it is paired with. Returns the session, its events and the framework id.
pub async fn launch_tasks(
    master: &str,
    framework: v1::FrameworkInfo,
    resources: &str,
    tasks: &[(&str, &str)],
    until: &[(&str, v1::TaskState)],
) -> anyhow::Result<(SchedulerSession, Subscription<Event>, String)> {
    let (session, mut events) =
        SchedulerSession::subscribe(master, framework, agora_proto::Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let infos = tasks
        .iter()
        .map(|(id, command)| command_task(id, &offer.agent_id, resources, command))
        .collect();
    session.launch(vec![offer.id.clone()], infos, Some(0.0)).await?;
    let mut states = std::collections::HashMap::new();
    while until.iter().any(|(id, state)| states.get(*id) != Some(state)) {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        anyhow::ensure!(status.state() != v1::TaskState::TaskFailed, "a task failed: {status:?}");
        states.insert(status.task_id.value.clone(), status.state());
    }
    let framework_id = session.framework_id.value.clone();
    Ok((session, events, framework_id))
}

/// Live processes whose command line is exactly `argv` (as `/proc/<pid>/cmdline` holds it), in
/// pid order: how tests find the processes their tasks started.
pub fn pids_running(argv: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted) && alive(*pid)
        })
        .collect();
    pids.sort();
    pids
}

/// Posts a JSON operator call (`POST /api/v1`) to the master at `addr`; returns the status
/// and the body.
pub async fn operator_post(addr: &str, body: &serde_json::Value) -> anyhow::Result<(u16, String)> {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}
