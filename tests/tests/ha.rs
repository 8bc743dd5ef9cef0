//! High availability with a real ZooKeeper: three `agora master --zk` processes elect one
//! leader; standbys redirect to it; an agent and an unmodified pymesos framework find it
//! through the same `zk://` URL. Then the leader is SIGKILLed while tasks run: a standby takes
//! over (after recovering the registry from ZooKeeper), the agent re-registers with its tasks,
//! the framework subscribes again, no running task notices, and the tasks that finished
//! before are still known.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agora_tests::zookeeper::{self, ZooKeeper};
use agora_tests::{Daemon, alive, required_in_ci};
use anyhow::{Context, bail, ensure};

fn master(url: &str) -> anyhow::Result<Daemon> {
    Daemon::master(&[
        "--port",
        "0",
        "--zk",
        url,
        "--zk_session_timeout",
        "2secs",
        "--quorum",
        "2",
        "--allocation_interval",
        "100ms",
        "--heartbeat_interval",
        "1secs",
        "--agent_reregister_timeout",
        "30secs",
    ])
}

/// An agent that finds the leading master through `url`.
fn agent(url: &str, work_dir: &Path, resources: &str) -> anyhow::Result<Daemon> {
    Daemon::agent(&[
        "--master",
        url,
        "--port",
        "0",
        "--work_dir",
        &work_dir.to_string_lossy(),
        "--resources",
        resources,
        "--registration_backoff_factor",
        "100ms",
        "--registration_backoff_max",
        "500ms",
        "--status_update_retry_interval",
        "500ms",
    ])
}

/// `GET path` as one HTTP/1.0 request, so that a redirect is seen rather than followed:
/// (status, Location).
fn get(addr: &str, path: &str) -> anyhow::Result<(u16, Option<String>)> {
    fetch(addr, path).map(|(status, location, _)| (status, location))
}

/// Like `get`, with the body.
fn fetch(addr: &str, path: &str) -> anyhow::Result<(u16, Option<String>, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line from {addr}: {text:?}"))?;
    let location = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location").then(|| value.trim().to_string())
    });
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_string();
    Ok((status, location, body))
}

/// The one master that serves `/master/state` (the others redirect or refuse), waiting up
/// to a minute for there to be exactly one.
fn leader<'a>(masters: &[&'a Daemon]) -> anyhow::Result<&'a Daemon> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let serving: Vec<&Daemon> = masters
            .iter()
            .copied()
            .filter(|m| get(&m.addr, "/master/state").is_ok_and(|(status, _)| status == 200))
            .collect();
        if let [one] = serving.as_slice() {
            return Ok(one);
        }
        if Instant::now() > deadline {
            bail!("{} masters serve instead of one", serving.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pids of `sleep 600` processes whose working directory is under `dir` (the long tasks).
fn long_task_pids(dir: &Path) -> Vec<i32> {
    agora_tests::pids_running(&["sleep", "600"])
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// A child process killed (by its PID) when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let body = std::process::Command::new("curl")
        .args(["-sf", &format!("http://{addr}{path}")])
        .output()
        .context("curl")?;
    ensure!(body.status.success(), "GET {path} on {addr} failed");
    Ok(serde_json::from_slice(&body.stdout)?)
}

#[test]
fn a_pymesos_framework_rides_through_the_leaders_death() -> anyhow::Result<()> {
    if !zookeeper::available("the master failover test") {
        return Ok(());
    }
    let Some(python) = std::env::var_os("AGORA_COMPAT_PYTHON") else {
        required_in_ci("the master failover test", "AGORA_COMPAT_PYTHON is not set");
        return Ok(());
    };
    let zk = ZooKeeper::start()?;
    let url = zk.url("/agora/ha");
    let m1 = master(&url)?;
    let m2 = master(&url)?;
    let m3 = master(&url)?;
    let first = leader(&[&m1, &m2, &m3])?;

    // Standbys send clients to the leader: the scheduler API with Location http://HOST:PORT
    // (the form every Mesos client understands), other paths with their path.
    for standby in [&m1, &m2, &m3].into_iter().filter(|m| m.addr != first.addr) {
        let (status, location) = get(&standby.addr, "/master/state?jsonp=x")?;
        assert_eq!(status, 307);
        assert_eq!(
            location.as_deref(),
            Some(format!("http://{}/master/state?jsonp=x", first.addr).as_str())
        );
        let (status, location) = get(&standby.addr, "/master/redirect")?;
        assert_eq!((status, location), (307, Some(format!("//{}", first.addr))));
        assert_eq!(get(&standby.addr, "/health")?.0, 200);
        // Monitoring reads every master's metrics: a standby answers, not elected.
        let (status, _, body) = fetch(&standby.addr, "/metrics/snapshot")?;
        assert_eq!(status, 200);
        let metrics: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(metrics["master/elected"], 0, "{body}");
        assert!(metrics["master/uptime_secs"].is_number(), "{body}");
    }
    let (status, _, body) = fetch(&first.addr, "/metrics/snapshot")?;
    assert_eq!(status, 200);
    let metrics: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(metrics["master/elected"], 1, "{body}");

    let dir = tempfile::tempdir()?;
    let agent_dir = dir.path().join("agent");
    let _agent = agent(&url, &agent_dir, "cpus:4;mem:4096;disk:4096;ports:[31000-32000]")?;

    let mut framework = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/pymesos_ha.py"))
        .args(["--master", &url, "--long", "5", "--short", "3", "--timeout", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the pymesos framework")?;
    let stdout = framework.stdout.take().context("framework stdout")?;
    // Whatever happens below, the framework does not outlive the test.
    let framework = KillOnDrop(framework);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("framework: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str| -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .with_context(|| format!("no {what:?} from the framework"))?;
            ensure!(!line.contains("FAIL"), "the framework failed: {line}");
            if line.contains(what) {
                return Ok(line);
            }
        }
    };
    wait_for("READY")?;
    let before = long_task_pids(&agent_dir);
    assert_eq!(before.len(), 5, "the long tasks' processes: {before:?}");

    // The leader dies without a word; its ZooKeeper session expires after 2 s.
    let killed = first.addr.clone();
    let survivors: Vec<Daemon> = [m1, m2, m3]
        .into_iter()
        .filter_map(|m| {
            if m.addr == killed {
                m.kill().ok();
                None
            } else {
                Some(m)
            }
        })
        .collect();
    let second = leader(&[&survivors[0], &survivors[1]])?;
    assert_ne!(second.addr, killed);
    wait_for("RESUBSCRIBED")?;
    wait_for("PASS")?;
    let mut framework = framework;
    let status = framework.0.wait()?;
    assert!(status.success(), "the framework exited with {status}");

    // Nothing was killed: the very same processes run, and the new leader knows them.
    for pid in &before {
        assert!(alive(*pid), "long task process {pid} died in the failover");
    }
    assert_eq!(long_task_pids(&agent_dir), before);
    let state = json(&second.addr, "/master/state")?;
    let frameworks = state["frameworks"].as_array().context("frameworks")?;
    assert_eq!(frameworks.len(), 1, "{frameworks:?}");
    let running: Vec<&str> = frameworks[0]["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(running.len(), 5, "running tasks on the new leader: {running:?}");
    // Tasks that finished before the failover are still known: the agent reports its recent
    // completed tasks when it registers with the new leader.
    let mut finished: Vec<&str> = frameworks[0]["completed_tasks"]
        .as_array()
        .context("completed_tasks")?
        .iter()
        .filter(|t| t["state"] == "TASK_FINISHED")
        .filter_map(|t| t["id"].as_str())
        .collect();
    finished.sort();
    assert_eq!(finished, ["after-1", "short-0", "short-1", "short-2"]);
    assert_eq!(state["activated_slaves"], 1);
    let standby = survivors.iter().find(|m| m.addr != second.addr).context("a standby")?;
    assert_eq!(
        get(&standby.addr, "/master/state")?,
        (307, Some(format!("http://{}/master/state", second.addr)))
    );

    // The framework left without tearing down (its tasks would survive the test): the
    // operator ends it through the new leader, and its tasks go with it.
    let id = frameworks[0]["id"].as_str().context("framework id")?;
    let teardown =
        format!(r#"{{"type":"TEARDOWN","teardown":{{"framework_id":{{"value":"{id}"}}}}}}"#);
    let posted = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "Content-Type: application/json", "-d", &teardown])
        .arg(format!("http://{}/api/v1", second.addr))
        .status()?;
    ensure!(posted.success(), "TEARDOWN through the new leader failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while before.iter().any(|pid| alive(*pid)) {
        ensure!(Instant::now() < deadline, "the long tasks outlived their framework's teardown");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Runs `agora <args>` to completion: (success, stdout, stderr).
fn agora(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(agora_tests::agora_bin())
        .args(args)
        .env_remove("AGORA_MASTER")
        .stdin(Stdio::null())
        .output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn a_cluster_on_a_zookeeper_ensemble_carries_on_when_a_member_dies() -> anyhow::Result<()> {
    if !zookeeper::available("the ZooKeeper ensemble test") {
        return Ok(());
    }
    let mut ensemble = zookeeper::Ensemble::start(3)?;
    let url = ensemble.url("/agora/ensemble");
    let m1 = master(&url)?;
    let m2 = master(&url)?;
    let first = leader(&[&m1, &m2])?.addr.clone();
    let dir = tempfile::tempdir()?;
    let agent_dir = dir.path().join("agent");
    let _agent = agent(&url, &agent_dir, "cpus:2;mem:1024;disk:1024")?;

    // The CLI and `agora execute` find the leader through the same URL.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, stdout, stderr) = agora(&["agent", "list", "--master", &url])?;
        if ok && stdout.lines().count() >= 2 {
            break;
        }
        ensure!(Instant::now() < deadline, "no agent listed through zk: {stdout}{stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = |name: &str| -> anyhow::Result<()> {
        let (ok, stdout, stderr) = agora(&[
            "execute",
            "--master",
            &url,
            "--name",
            name,
            "--command",
            "echo ran-$MESOS_TASK_ID",
            "--resources",
            "cpus:0.1;mem:32",
        ])?;
        ensure!(ok, "agora execute {name} failed:\n{stdout}\n{stderr}");
        Ok(())
    };
    run("before")?;

    // One ensemble member dies (the one the first client connected to is as likely as any):
    // sessions move to the others, nobody loses the lead, work goes on.
    ensemble.servers[0].kill();
    run("after")?;
    let (ok, stdout, stderr) = agora(&["task", "list", "--all", "--master", &url, "--json"])?;
    ensure!(ok, "task list failed: {stderr}");
    assert!(stdout.contains("before") && stdout.contains("after"), "{stdout}");
    assert_eq!(leader(&[&m1, &m2])?.addr, first, "the lead moved although no master died");
    Ok(())
}
