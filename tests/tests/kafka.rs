//! The Kafka framework end to end: a real `agora` master and three agents standing in for three
//! hosts (distinct ports, work dirs, hostnames 127.0.0.1-3 and `rack` attributes), the real
//! `agora-kafka` scheduler and CLI, real tansu brokers, and kafka-python unmodified.
//!
//! The broker tests need tansu (`AGORA_TANSU`, set by scripts/test.sh) and the compat venv with
//! kafka-python (`AGORA_COMPAT_PYTHON`); without them they say why and skip, except in CI where
//! that is a failure. The bad-input test needs neither. Waits poll for a state with a generous
//! deadline; nothing asserts on timing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use agora_tests::zookeeper::{self, ZooKeeper};
use agora_tests::{Daemon, agora_bin, free_port, required_in_ci};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

fn kafka_bin() -> PathBuf {
    let bin = agora_bin().with_file_name("agora-kafka");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build --bin agora-kafka`)",
        bin.display()
    );
    bin
}

/// tansu and the venv python, or why the broker tests cannot run.
fn prerequisites(what: &str) -> Option<(String, String)> {
    let tansu = std::env::var("AGORA_TANSU").ok().filter(|t| Path::new(t).exists());
    let python = std::env::var("AGORA_COMPAT_PYTHON").ok().filter(|p| {
        Command::new(p).args(["-c", "import kafka"]).output().is_ok_and(|o| o.status.success())
    });
    match (tansu, python) {
        (Some(t), Some(p)) => Some((t, p)),
        (None, _) => {
            required_in_ci(
                what,
                "AGORA_TANSU does not name a tansu binary (scripts/setup-tansu.sh installs it)",
            );
            None
        }
        (_, None) => {
            required_in_ci(
                what,
                "AGORA_COMPAT_PYTHON has no kafka-python (scripts/setup-python.sh installs it)",
            );
            None
        }
    }
}

/// The masters (one, or three behind ZooKeeper) and one agent per (hostname, rack), each agent
/// offering one port of its own.
struct Hosts {
    dir: tempfile::TempDir,
    /// What agents and the scheduler are given as `--master`: an address or a `zk://` URL.
    master_url: String,
    masters: Vec<Daemon>,
    agents: Vec<Daemon>,
    /// Each agent's arguments, to start it again on the same address and work dir.
    agent_args: Vec<Vec<String>>,
}

impl Hosts {
    fn start(hosts: &[(&str, &str)]) -> anyhow::Result<Hosts> {
        let master = Daemon::master(&[
            "--port",
            "0",
            "--registry",
            "in_memory",
            "--allocation_interval",
            "100ms",
            "--heartbeat_interval",
            "1secs",
        ])?;
        Self::with_masters(master.addr.clone(), vec![master], hosts)
    }

    /// Three masters electing a leader through `zk_url`, which everyone else follows.
    fn start_ha(zk_url: &str, hosts: &[(&str, &str)]) -> anyhow::Result<Hosts> {
        let mut masters = Vec::new();
        for _ in 0..3 {
            masters.push(Daemon::master(&[
                "--port",
                "0",
                "--zk",
                zk_url,
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
            ])?);
        }
        Self::with_masters(zk_url.to_string(), masters, hosts)
    }

    fn with_masters(
        master_url: String,
        masters: Vec<Daemon>,
        hosts: &[(&str, &str)],
    ) -> anyhow::Result<Hosts> {
        let dir = tempfile::tempdir()?;
        let mut agents = Vec::new();
        let mut agent_args = Vec::new();
        for (hostname, rack) in hosts {
            let work = dir.path().join(format!("agent-{hostname}"));
            // One broker port per host: brokers on different "hosts" of this one machine must
            // not ask for the same port.
            let broker_port = free_port()?;
            let args: Vec<String> = [
                "--master",
                &master_url,
                "--port",
                &free_port()?.to_string(),
                "--work_dir",
                &work.to_string_lossy(),
                "--hostname",
                hostname,
                "--attributes",
                &format!("rack:{rack}"),
                "--resources",
                &format!("cpus:2;mem:2048;disk:1024;ports:[{broker_port}-{broker_port}]"),
                "--status_update_retry_interval",
                "500ms",
                "--registration_backoff_factor",
                "100ms",
                // A restarted agent waits this long for the brokers' executors to come back:
                // generous, for a loaded machine.
                "--executor_reregistration_timeout",
                "10secs",
                // How long an executor whose agent is gone keeps trying (its broker runs
                // meanwhile): bounds what a test that ends with running brokers leaves behind.
                "--recovery_timeout",
                "1mins",
            ]
            .into_iter()
            .map(String::from)
            .collect();
            agents.push(Daemon::agent(&args)?);
            agent_args.push(args);
        }
        Ok(Hosts { dir, master_url, masters, agents, agent_args })
    }

    /// SIGKILLs agent `i` and starts it again on the same address and work dir.
    fn restart_agent(&mut self, i: usize) -> anyhow::Result<()> {
        let fresh = Daemon::agent(&self.agent_args[i])?;
        let old = std::mem::replace(&mut self.agents[i], fresh);
        drop(old);
        Ok(())
    }

    /// The first master's address (the only one without ZooKeeper).
    fn master_addr(&self) -> &str {
        &self.masters[0].addr
    }
}

/// The `agora-kafka scheduler` process; dropping it stops it.
struct Scheduler {
    child: Child,
    api: String,
}

impl Scheduler {
    fn start(hosts: &Hosts, tansu: &str) -> anyhow::Result<Scheduler> {
        let file = format!("file:{}", hosts.dir.path().join("kafka-mesos.json").display());
        Self::start_with(hosts, tansu, &["--storage".into(), file])
    }

    fn start_with(hosts: &Hosts, tansu: &str, storage: &[String]) -> anyhow::Result<Scheduler> {
        let mut child = Command::new(kafka_bin())
            .arg("scheduler")
            .args(["--master", &hosts.master_url, "--api", "http://127.0.0.1:0"])
            .args(storage)
            .args(["--framework-name", "kafka", "--framework-timeout", "1h", "--user", "root"])
            .args(["--tansu", tansu])
            .current_dir(hosts.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start agora-kafka scheduler")?;
        let stdout = child.stdout.take().context("piped")?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let line = lines.next().context("the scheduler printed nothing")??;
        let api = line
            .strip_prefix("agora-kafka api listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .to_string();
        // Keep draining stdout so the scheduler never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Ok(Scheduler { child, api })
    }

    /// `agora-kafka --api <api> <args>`.
    fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(kafka_bin()).arg("--api").arg(&self.api).args(args).output()?)
    }

    /// Runs the CLI and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli(args)?;
        ensure!(
            out.status.success(),
            "agora-kafka {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the CLI and expects a failure; returns stderr.
    fn fails(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli(args)?;
        ensure!(!out.status.success(), "agora-kafka {args:?} should have failed");
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    async fn brokers(&self) -> anyhow::Result<Vec<Value>> {
        let text = reqwest::get(format!("{}/api/broker/list", self.api)).await?.text().await?;
        let v: Value = serde_json::from_str(&text)?;
        Ok(v["brokers"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `broker list` until `check` holds for it.
    async fn until(
        &self,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let brokers = self.brokers().await?;
            if check(&brokers) {
                return Ok(brokers);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting until {what}: {brokers:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn all_running(brokers: &[Value], n: usize) -> bool {
    brokers.len() == n
        && brokers
            .iter()
            .all(|b| b["task"]["state"] == "running" && b["task"]["endpoint"].is_string())
}

fn endpoint(broker: &Value) -> String {
    broker["task"]["endpoint"].as_str().unwrap_or_default().to_string()
}

/// The pid of the tansu process advertising `endpoint`.
fn tansu_pid(endpoint: &str) -> Option<i32> {
    let advertised = format!("tcp://{endpoint}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_broker = args.first().is_some_and(|a| a.ends_with(b"tansu"))
            && args.contains(&advertised.as_bytes());
        (is_broker && agora_tests::alive(pid)).then_some(pid)
    })
}

fn produce_consume(python: &str, bootstrap: &str, topic: &str, tag: &str) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/kafka_produce_consume.py");
    let out = Command::new(python).arg(script).args([bootstrap, topic, "1000", tag]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.contains("consumed 1000"),
        "kafka-python against {bootstrap}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn brokers_spread_serve_kafka_python_fail_over_restart_and_are_adopted() -> anyhow::Result<()>
{
    let Some((tansu, python)) = prerequisites("the Kafka framework test") else { return Ok(()) };
    let hosts = Hosts::start(&[("127.0.0.1", "r1"), ("127.0.0.2", "r1"), ("127.0.0.3", "r2")])?;
    let scheduler = Scheduler::start(&hosts, &tansu)?;
    // Each broker keeps its data in a SQLite file on its host, so a broker that restarts on its
    // host (stickiness) finds its topics again.
    let data = hosts.dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let storage = format!("storage.engine=sqlite://{}/broker-$id.db", data.display());
    scheduler.ok(&[
        "broker",
        "add",
        "0..2",
        "--cpus",
        "0.5",
        "--mem",
        "256",
        "--constraints",
        "hostname=unique",
        "--options",
        &storage,
        "--failover-delay",
        "1s",
        "--failover-max-delay",
        "2s",
    ])?;
    let started = scheduler.ok(&["broker", "start", "*", "--timeout", "3m"])?;
    assert!(started.contains("brokers started:"), "{started}");
    let brokers = scheduler.until("three brokers run", |b| all_running(b, 3)).await?;
    let mut hostnames: Vec<&str> =
        brokers.iter().filter_map(|b| b["task"]["hostname"].as_str()).collect();
    hostnames.sort();
    assert_eq!(hostnames, ["127.0.0.1", "127.0.0.2", "127.0.0.3"], "hostname=unique");
    for b in &brokers {
        let host = b["task"]["hostname"].as_str().unwrap_or_default();
        assert!(
            endpoint(b).starts_with(&format!("{host}:")),
            "advertised on the agent's hostname: {b}"
        );
    }
    let listed = scheduler.ok(&["broker", "list", "*[rack=r2]"])?;
    assert_eq!(listed.lines().filter(|l| l.starts_with("  id: ")).count(), 1, "{listed}");

    // A topic added through the framework serves kafka-python through a reported endpoint.
    let added = scheduler.ok(&["topic", "add", "t1", "--partitions", "2"])?;
    assert!(added.contains("name: t1"), "{added}");
    let topics = scheduler.ok(&["topic", "list"])?;
    assert!(topics.contains("name: t1") && topics.contains("brokers: 0,1,2"), "{topics}");
    let updated = scheduler.ok(&["topic", "update", "t1", "--options", "retention.ms=86400000"])?;
    assert!(updated.contains("name: t1"), "{updated}");
    let none = scheduler.fails(&["topic", "update", "nothing*", "--options", "retention.ms=1"])?;
    assert!(none.contains("no topic matches nothing*"), "{none}");
    produce_consume(&python, &endpoint(&brokers[0]), "t1", "first")?;
    let log = scheduler.ok(&["broker", "log", "0", "--name", "server.log"])?;
    assert!(!log.starts_with("Error"), "{log}");

    // SIGKILL of a broker process: the framework starts it again after its backoff, on the
    // same host, and the endpoint answers again with the topic still there.
    let victim = brokers[1].clone();
    let pid = tansu_pid(&endpoint(&victim)).context("the tansu process of broker 1")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)?;
    let old_task = victim["task"]["id"].clone();
    let brokers = scheduler
        .until("broker 1 runs again in a new task", |b| {
            all_running(b, 3) && b[1]["task"]["id"] != old_task
        })
        .await?;
    assert_eq!(endpoint(&brokers[1]), endpoint(&victim), "sticky to its host and port");
    produce_consume(&python, &endpoint(&brokers[1]), "t1", "after-kill")?;

    // A rolling restart keeps the topic usable.
    let restarted = scheduler.ok(&["broker", "restart", "*", "--timeout", "3m"])?;
    assert!(restarted.contains("brokers restarted:"), "{restarted}");
    let brokers = scheduler.until("all run after the restart", |b| all_running(b, 3)).await?;
    produce_consume(&python, &endpoint(&brokers[2]), "t1", "after-restart")?;

    // Restarting the scheduler keeps every broker running and known.
    let before: Vec<Value> = brokers.iter().map(|b| b["task"]["id"].clone()).collect();
    let pids: Vec<Option<i32>> = brokers.iter().map(|b| tansu_pid(&endpoint(b))).collect();
    scheduler.stop()?;
    let scheduler = Scheduler::start(&hosts, &tansu)?;
    let brokers =
        scheduler.until("the restarted scheduler knows all three", |b| all_running(b, 3)).await?;
    let after: Vec<Value> = brokers.iter().map(|b| b["task"]["id"].clone()).collect();
    assert_eq!(after, before, "the same tasks");
    let pids_after: Vec<Option<i32>> = brokers.iter().map(|b| tansu_pid(&endpoint(b))).collect();
    assert_eq!(pids_after, pids, "the same broker processes");
    produce_consume(&python, &endpoint(&brokers[0]), "t1", "after-scheduler-restart")?;
    let topics = scheduler.ok(&["topic", "delete", "t1"])?;
    assert!(topics.contains("name: t1"), "{topics}");
    scheduler.ok(&["broker", "stop", "*"])?;
    scheduler.until("all stopped", |b| b.iter().all(|b| b["task"].is_null())).await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_clear_errors_from_cli_and_api() -> anyhow::Result<()> {
    let hosts = Hosts::start(&[("127.0.0.1", "r1")])?;
    let scheduler = Scheduler::start(&hosts, "tansu")?;
    scheduler.ok(&["broker", "add", "0"])?;
    let cases: &[(&[&str], &str)] = &[
        (&["broker", "start", "9"], "broker 9 not found"),
        (&["broker", "update", "0..x"], "invalid broker expression \"0..x\""),
        (&["broker", "add", "*[rack=r1"], "missing ]"),
        (&["broker", "add", "1", "--constraints", "hostname=near"], "invalid constraint \"near\""),
        (&["broker", "add", "1", "--port", "70000"], "invalid port \"70000\""),
        (&["broker", "add", "1", "--failover-delay", "soon"], "invalid period \"soon\""),
        (&["broker", "add", "0"], "broker 0 already exists"),
        (&["broker", "log", "0"], "broker 0 is not running"),
        (&["topic", "add", "t1"], "no running broker"),
        (
            &["broker", "add", "1", "--options", "num.partitions=3"],
            "unsupported broker option \"num.partitions\": tansu brokers accept storage.engine, log.dirs",
        ),
        (&["broker", "update", "0", "--bind-address", "if:"], "invalid bindAddress \"if:\""),
        (&["topic", "rebalance", "*"], "topic rebalance is not supported"),
        (&["topic", "realign", "t1"], "topic realign is not supported"),
    ];
    for (args, message) in cases {
        let stderr = scheduler.fails(args)?;
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let client = reqwest::Client::new();
    for (path, message) in [
        ("/api/broker/start?broker=5", "broker 5 not found"),
        ("/api/broker/add?broker=x", "\"x\" is not a broker id"),
        ("/api/broker/add?broker=3&constraints=rack%3Dlike%3A(", "bad pattern"),
        ("/api/broker/add?broker=3&port=0", "invalid port"),
        ("/api/broker/frobnicate?broker=0", "unknown broker command"),
        ("/api/broker/update?broker=0&options=zookeeper.connect%3Dzk%3A2181", "unsupported"),
        ("/api/broker/update?broker=0&bindAddress=10.0.*%2F8", "invalid bindAddress"),
        ("/api/topic/rebalance?topic=*", "no replicas to move"),
        ("/api/topic/frobnicate?topic=*", "unknown topic command"),
    ] {
        let response = client.post(format!("{}{path}", scheduler.api)).send().await?;
        assert_eq!(response.status().as_u16(), 400, "{path}");
        let text = response.text().await?;
        assert!(text.contains(message), "{path}: {text}");
    }
    // Nothing was added by the bad calls.
    assert_eq!(scheduler.brokers().await?.len(), 1);
    // The executor binary is served for agents to fetch; nothing else is.
    let served = client.get(format!("{}/executor/agora-kafka", scheduler.api)).send().await?;
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(served.bytes().await?.len() as u64, std::fs::metadata(kafka_bin())?.len());
    for path in ["/executor/other", "/tansu/tansu"] {
        let response = client.get(format!("{}{path}", scheduler.api)).send().await?;
        assert_eq!(response.status().as_u16(), 404, "{path}");
        assert!(response.text().await?.contains("serves /executor/agora-kafka"), "{path}");
    }

    // The API URL also comes from KM_API, or from kafka-mesos.properties in the working directory.
    let out = Command::new(kafka_bin())
        .env("KM_API", &scheduler.api)
        .args(["broker", "list"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("id: 0"), "{out:?}");
    let cwd = hosts.dir.path().join("cli");
    std::fs::create_dir_all(&cwd)?;
    std::fs::write(
        cwd.join("kafka-mesos.properties"),
        format!("# the CLI's settings\napi={}\n", scheduler.api),
    )?;
    let out = Command::new(kafka_bin())
        .env_remove("KM_API")
        .current_dir(&cwd)
        .args(["broker", "list"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("id: 0"), "{out:?}");
    let out = Command::new(kafka_bin())
        .env_remove("KM_API")
        .current_dir(hosts.dir.path().join("agent-127.0.0.1"))
        .args(["broker", "list"])
        .output()?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API URL"), "{out:?}");
    Ok(())
}

#[tokio::test]
async fn state_in_zookeeper_survives_a_scheduler_restart() -> anyhow::Result<()> {
    if !zookeeper::available("the Kafka framework's ZooKeeper storage test") {
        return Ok(());
    }
    let zk = ZooKeeper::start()?;
    let hosts = Hosts::start(&[("127.0.0.1", "r1")])?;
    let storage = [
        "--storage".to_string(),
        "zk:/kafka-mesos".into(),
        "--zk".into(),
        format!("{}/agora-kafka", zk.addr),
    ];
    let scheduler = Scheduler::start_with(&hosts, "tansu", &storage)?;
    scheduler.ok(&["broker", "add", "0..1", "--cpus", "0.5", "--constraints", "rack=like:r1"])?;
    scheduler.stop()?;
    let scheduler = Scheduler::start_with(&hosts, "tansu", &storage)?;
    let brokers = scheduler.brokers().await?;
    assert_eq!(brokers.len(), 2, "{brokers:?}");
    assert_eq!(brokers[1]["constraints"], "rack=like:r1");
    assert!(!hosts.dir.path().join("kafka-mesos.json").exists(), "nothing in a file");
    Ok(())
}

#[tokio::test]
async fn a_broker_keeps_its_topics_in_its_persistent_volume() -> anyhow::Result<()> {
    let Some((tansu, python)) = prerequisites("the Kafka framework volume test") else {
        return Ok(());
    };
    let hosts = Hosts::start(&[("127.0.0.1", "r1")])?;
    // The operator reserves disk for the framework's role and creates a volume on it.
    let (status, text) =
        agora_tests::operator_post(hosts.master_addr(), &json!({"type": "GET_AGENTS"})).await?;
    ensure!(status == 200, "GET_AGENTS: {status} {text}");
    let agents: Value = serde_json::from_str(&text)?;
    let agent_id = agents["get_agents"]["agents"][0]["agent_info"]["id"]["value"].clone();
    let disk = json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 64},
                      "reservations": [{"type": "DYNAMIC", "role": "kafka"}]});
    let mut volume = disk.clone();
    volume["disk"] = json!({"persistence": {"id": "kafka-0"}, "volume": {"mode": "RW", "container_path": "data"}});
    for call in [
        json!({"type": "RESERVE_RESOURCES", "reserve_resources": {"agent_id": {"value": agent_id}, "resources": [disk]}}),
        json!({"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": {"value": agent_id}, "volumes": [volume]}}),
    ] {
        let (status, text) = agora_tests::operator_post(hosts.master_addr(), &call).await?;
        ensure!(status == 202, "{call}: {status} {text}");
    }
    let file = format!("file:{}", hosts.dir.path().join("kafka-mesos.json").display());
    let args = ["--storage".to_string(), file, "--framework-role".into(), "kafka".into()];
    let scheduler = Scheduler::start_with(&hosts, &tansu, &args)?;
    scheduler
        .ok(&["broker", "add", "0", "--cpus", "0.5", "--mem", "256", "--volume", "kafka-0"])?;
    scheduler.ok(&["broker", "start", "0", "--timeout", "3m"])?;
    let brokers = scheduler.until("the broker runs", |b| all_running(b, 1)).await?;
    scheduler.ok(&["topic", "add", "kept"])?;
    produce_consume(&python, &endpoint(&brokers[0]), "kept", "before")?;
    // A new task of the broker (in a new sandbox) finds the topic and its records in the volume.
    scheduler.ok(&["broker", "restart", "0", "--timeout", "3m"])?;
    let brokers = scheduler.until("the broker runs again", |b| all_running(b, 1)).await?;
    let topics = scheduler.ok(&["topic", "list"])?;
    assert!(topics.contains("name: kept"), "{topics}");
    produce_consume(&python, &endpoint(&brokers[0]), "kept", "after")?;
    // The executor reports the broker's metrics from its start on: the topic it found in its
    // store, and its process's memory.
    let brokers =
        scheduler.until("the broker's metrics arrive", |b| b[0]["metrics"]["topics"] == 1).await?;
    assert_eq!(brokers[0]["metrics"]["partitions"], 1, "{}", brokers[0]);
    assert!(brokers[0]["metrics"]["rssBytes"].as_u64().is_some_and(|r| r > 0), "{}", brokers[0]);
    let listed = scheduler.ok(&["broker", "list"])?;
    assert!(listed.contains("metrics:") && listed.contains("topics: 1, partitions: 1"), "{listed}");
    let db = hosts.dir.path().join("agent-127.0.0.1/volumes/roles/kafka/kafka-0/broker.db");
    assert!(db.exists(), "{} holds the broker's store", db.display());
    scheduler.ok(&["broker", "stop", "0"])?;
    Ok(())
}

#[tokio::test]
async fn the_scheduler_waits_for_a_master_that_is_not_up_yet() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut child = Command::new(kafka_bin())
        .arg("scheduler")
        .args(["--master", &format!("127.0.0.1:{port}"), "--api", "http://127.0.0.1:0"])
        .arg("--storage")
        .arg(format!("file:{}", dir.path().join("state.json").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("piped")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines.next().context("no output")??;
    assert!(first.starts_with("agora-kafka api listening on "), "{first}");
    // Dropping it stops the scheduler, whatever happens below.
    let _scheduler = Scheduler { child, api: first };
    // Only now does the master start, on the address the scheduler was given.
    let _master = Daemon::master(&["--port", &port.to_string(), "--registry", "in_memory"])?;
    let subscribed = lines.next().context("the scheduler ended")??;
    assert!(subscribed.starts_with("agora-kafka scheduler subscribed as "), "{subscribed}");
    Ok(())
}

/// The master that serves `/master/state` itself (standbys redirect), waiting for there to be
/// exactly one.
async fn leader(masters: &[Daemon]) -> anyhow::Result<usize> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut serving = Vec::new();
        for (i, m) in masters.iter().enumerate() {
            let url = format!("http://{}/master/state", m.addr);
            if client.get(url).send().await.is_ok_and(|r| r.status().as_u16() == 200) {
                serving.push(i);
            }
        }
        if let [one] = serving.as_slice() {
            return Ok(*one);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{} masters serve instead of one", serving.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The framework `id` as `master` shows it in `/master/state`, if it knows it.
async fn framework_at(master: &str, id: &str) -> anyhow::Result<Option<Value>> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let response = client.get(format!("http://{master}/master/state")).send().await?;
    if response.status().as_u16() != 200 {
        return Ok(None);
    }
    let state: Value = serde_json::from_str(&response.text().await?)?;
    Ok(state["frameworks"].as_array().into_iter().flatten().find(|f| f["id"] == id).cloned())
}

fn task_running_in(framework: &Value, task: &Value) -> bool {
    framework["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["id"] == *task && t["state"] == "TASK_RUNNING")
}

#[tokio::test]
async fn the_scheduler_follows_the_leading_master_through_zookeeper() -> anyhow::Result<()> {
    if !zookeeper::available("the Kafka framework's zk:// master test") {
        return Ok(());
    }
    let Some((tansu, python)) = prerequisites("the Kafka framework's zk:// master test") else {
        return Ok(());
    };
    let zk = ZooKeeper::start()?;
    let mut hosts = Hosts::start_ha(&zk.url("/agora/kafka"), &[("127.0.0.1", "r1")])?;
    // The scheduler is given the zk:// URL, never a master's address.
    let scheduler = Scheduler::start(&hosts, &tansu)?;
    scheduler.ok(&["broker", "add", "0", "--cpus", "0.5", "--mem", "256"])?;
    scheduler.ok(&["broker", "start", "0", "--timeout", "3m"])?;
    let brokers = scheduler.until("the broker runs", |b| all_running(b, 1)).await?;
    let task = brokers[0]["task"]["id"].clone();
    let pid = tansu_pid(&endpoint(&brokers[0])).context("the broker's tansu process")?;
    scheduler.ok(&["topic", "add", "ha"])?;
    produce_consume(&python, &endpoint(&brokers[0]), "ha", "before")?;

    let state = std::fs::read_to_string(hosts.dir.path().join("kafka-mesos.json"))?;
    let framework_id = serde_json::from_str::<Value>(&state)?["frameworkId"]
        .as_str()
        .context("the stored FrameworkID")?
        .to_string();
    let first = leader(&hosts.masters).await?;
    let framework = framework_at(&hosts.masters[first].addr, &framework_id).await?;
    ensure!(
        framework.as_ref().is_some_and(|f| f["active"] == true && task_running_in(f, &task)),
        "the first leader runs the framework's broker: {framework:?}"
    );

    // The leader dies without a word: a standby takes over, the agent re-registers with the
    // broker's task, and the scheduler subscribes again as the same framework.
    hosts.masters.remove(first).kill()?;
    let second = leader(&hosts.masters).await?;
    let second = hosts.masters[second].addr.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let framework = framework_at(&second, &framework_id).await?;
        if framework.as_ref().is_some_and(|f| f["active"] == true && task_running_in(f, &task)) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the new leader never had the framework back with its broker: {framework:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(agora_tests::alive(pid), "the broker process survived the failover");
    let brokers = scheduler.until("the broker is still known", |b| all_running(b, 1)).await?;
    assert_eq!(brokers[0]["task"]["id"], task, "the same task");
    assert_eq!(tansu_pid(&endpoint(&brokers[0])), Some(pid), "the same broker process");
    produce_consume(&python, &endpoint(&brokers[0]), "ha", "after-failover")?;

    // Kills and launches now go through the new leader.
    scheduler.ok(&["broker", "stop", "0", "--timeout", "3m"])?;
    scheduler.until("the broker stopped", |b| b[0]["task"].is_null()).await?;
    scheduler.ok(&["broker", "start", "0", "--timeout", "3m"])?;
    let brokers = scheduler.until("the broker runs again", |b| all_running(b, 1)).await?;
    assert_ne!(brokers[0]["task"]["id"], task, "a new task");
    let framework = framework_at(&second, &framework_id).await?;
    ensure!(
        framework.as_ref().is_some_and(|f| task_running_in(f, &brokers[0]["task"]["id"])),
        "the new leader launched it: {framework:?}"
    );
    scheduler.ok(&["broker", "stop", "0"])?;
    Ok(())
}

#[tokio::test]
async fn group_by_spreads_brokers_over_racks() -> anyhow::Result<()> {
    let Some((tansu, _)) = prerequisites("the Kafka framework groupBy test") else {
        return Ok(());
    };
    let hosts = Hosts::start(&[
        ("127.0.0.1", "r1"),
        ("127.0.0.2", "r1"),
        ("127.0.0.3", "r2"),
        ("127.0.0.4", "r2"),
    ])?;
    let scheduler = Scheduler::start(&hosts, &tansu)?;
    scheduler.ok(&[
        "broker",
        "add",
        "0..3",
        "--cpus",
        "0.5",
        "--mem",
        "256",
        "--constraints",
        "rack=groupBy:2,hostname=unique",
    ])?;
    // Two brokers first: groupBy:2 puts them on different racks.
    scheduler.ok(&["broker", "start", "0..1", "--timeout", "3m"])?;
    let brokers = scheduler
        .until("two brokers run", |b| b[..2].iter().all(|b| b["task"]["state"] == "running"))
        .await?;
    let racks: Vec<&str> =
        brokers[..2].iter().filter_map(|b| b["task"]["attributes"]["rack"].as_str()).collect();
    assert_eq!(racks.len(), 2, "{brokers:#?}");
    assert_ne!(racks[0], racks[1], "groupBy:2 fills both racks first: {brokers:#?}");
    // Then two more: one per rack again, so each rack holds two.
    scheduler.ok(&["broker", "start", "2..3", "--timeout", "3m"])?;
    let brokers = scheduler.until("four brokers run", |b| all_running(b, 4)).await?;
    let mut racks: Vec<&str> =
        brokers.iter().filter_map(|b| b["task"]["attributes"]["rack"].as_str()).collect();
    racks.sort();
    assert_eq!(racks, ["r1", "r1", "r2", "r2"], "{brokers:#?}");
    let listed = scheduler.ok(&["broker", "list", "*[rack=r2]"])?;
    assert_eq!(listed.lines().filter(|l| l.starts_with("  id: ")).count(), 2, "{listed}");
    // A fifth broker has no host left (every port is taken, and hostname=unique) and says why.
    scheduler.ok(&["broker", "add", "4", "--cpus", "0.5", "--mem", "256"])?;
    scheduler.ok(&["broker", "update", "4", "--constraints", "rack=groupBy:2,hostname=unique"])?;
    scheduler.ok(&["broker", "start", "4", "--timeout", "0s"])?;
    let brokers = scheduler
        .until("broker 4 says why it waits", |b| {
            b.get(4).and_then(|b| b["reason"].as_str()).is_some_and(|r| r.contains("port"))
        })
        .await?;
    assert!(brokers[4]["task"].is_null(), "{:#}", brokers[4]);
    scheduler.ok(&["broker", "stop", "*"])?;
    Ok(())
}

/// Polls `topic list <topic>` until its output contains `text`; returns that output.
async fn until_topic(scheduler: &Scheduler, topic: &str, text: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let topics = scheduler.ok(&["topic", "list", topic])?;
        if topics.contains(text) {
            return Ok(topics);
        }
        ensure!(tokio::time::Instant::now() < deadline, "no {text:?} in the topic list: {topics}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn topics_reach_brokers_started_later_and_options_map_to_tansu() -> anyhow::Result<()> {
    let Some((tansu, python)) = prerequisites("the Kafka framework's topic memory test") else {
        return Ok(());
    };
    let hosts = Hosts::start(&[("127.0.0.1", "r1"), ("127.0.0.2", "r2")])?;
    let scheduler = Scheduler::start(&hosts, &tansu)?;
    // Broker 0 on 127.0.0.1 listens on the loopback interface found by name; broker 1 keeps a
    // SQLite store under log.dirs and advertises another name for its host.
    let common = ["--cpus", "0.5", "--mem", "256", "--failover-delay", "1s"];
    scheduler.ok(&[
        &["broker", "add", "0"][..],
        &common,
        &["--constraints", "hostname=like:127.0.0.1"],
    ]
    .concat())?;
    scheduler.ok(&["broker", "update", "0", "--bind-address", "if:lo"])?;
    scheduler.ok(&[
        &["broker", "add", "1"][..],
        &common,
        &["--constraints", "hostname=like:127.0.0.2"],
        &["--options", "log.dirs=kafka-logs-$id,advertised.host.name=localhost"],
    ]
    .concat())?;
    scheduler.ok(&["broker", "start", "0", "--timeout", "3m"])?;
    let brokers = scheduler.until("broker 0 runs", |b| b[0]["task"]["state"] == "running").await?;
    let pid = tansu_pid(&endpoint(&brokers[0])).context("broker 0's tansu")?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let listener =
        format!("tcp://127.0.0.1:{}", endpoint(&brokers[0]).rsplit(':').next().unwrap_or(""));
    assert!(
        cmdline.split(|b| *b == 0).any(|a| a == listener.as_bytes()),
        "if:lo resolved to 127.0.0.1 on the agent: {}",
        String::from_utf8_lossy(&cmdline)
    );

    // A topic added while only broker 0 runs...
    scheduler.ok(&[
        "topic",
        "add",
        "late",
        "--partitions",
        "2",
        "--options",
        "retention.ms=3600000",
    ])?;
    // ...reaches broker 1 when it starts.
    scheduler.ok(&["broker", "start", "1", "--timeout", "3m"])?;
    let brokers = scheduler.until("both run", |b| all_running(b, 2)).await?;
    assert!(
        endpoint(&brokers[1]).starts_with("localhost:"),
        "advertised.host.name: {}",
        brokers[1]
    );
    let topics = until_topic(&scheduler, "late", "brokers: 0,1").await?;
    assert!(topics.contains("options: retention.ms=3600000"), "{topics}");
    assert!(topics.contains("partitions: 0:[111], 1:[111]"), "{topics}");
    produce_consume(&python, &endpoint(&brokers[1]), "late", "on-the-late-broker")?;
    let store = hosts.dir.path().join("agent-127.0.0.2");
    let found = std::process::Command::new("find")
        .arg(&store)
        .args(["-path", "*kafka-logs-1/broker.db"])
        .output()?;
    assert!(!found.stdout.is_empty(), "broker 1's store is under log.dirs in its sandbox");

    // Broker 0 keeps its topics in memory: after a restart the framework creates them again.
    scheduler.ok(&["broker", "restart", "0", "--timeout", "3m"])?;
    let brokers = scheduler.until("both run again", |b| all_running(b, 2)).await?;
    until_topic(&scheduler, "late", "brokers: 0,1").await?;
    produce_consume(&python, &endpoint(&brokers[0]), "late", "after-memory-restart")?;

    // Deleted topics are forgotten: a restarted broker does not get them back.
    scheduler.ok(&["topic", "delete", "late"])?;
    scheduler.ok(&["broker", "restart", "0", "--timeout", "3m"])?;
    scheduler.until("both run once more", |b| all_running(b, 2)).await?;
    let topics = scheduler.ok(&["topic", "list"])?;
    assert!(!topics.contains("name: late"), "{topics}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(hosts.dir.path().join("kafka-mesos.json"))?)?;
    assert!(state.get("topics").is_none(), "{state}");
    scheduler.ok(&["broker", "stop", "*"])?;
    Ok(())
}

#[tokio::test]
async fn a_broker_keeps_running_through_an_agent_restart() -> anyhow::Result<()> {
    let Some((tansu, python)) = prerequisites("the Kafka framework's agent restart test") else {
        return Ok(());
    };
    let mut hosts = Hosts::start(&[("127.0.0.1", "r1")])?;
    let scheduler = Scheduler::start(&hosts, &tansu)?;
    scheduler.ok(&["broker", "add", "0", "--cpus", "0.5", "--mem", "256"])?;
    scheduler.ok(&["broker", "start", "0", "--timeout", "3m"])?;
    let brokers = scheduler.until("the broker runs", |b| all_running(b, 1)).await?;
    let task = brokers[0]["task"]["id"].clone();
    let pid = tansu_pid(&endpoint(&brokers[0])).context("the broker's tansu process")?;
    // The agent fetched tansu and the executor from the scheduler's API into the sandbox.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    assert!(exe.starts_with(hosts.dir.path()), "tansu runs from the sandbox: {}", exe.display());
    assert!(exe.with_file_name("agora-kafka").exists(), "the executor beside it");
    scheduler.ok(&["topic", "add", "kept"])?;
    produce_consume(&python, &endpoint(&brokers[0]), "kept", "before")?;

    // The agent dies without a word and comes back on the same address and work dir: the
    // executor (its framework checkpoints) subscribes to it again, the broker never stops.
    let agent_pid = hosts.agents[0].pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    assert!(agora_tests::alive(pid), "the broker outlives its agent");
    hosts.restart_agent(0)?;
    // A log request reaches the executor only through the agent it is subscribed to.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let out =
            scheduler.cli(&["broker", "log", "0", "--name", "server.log", "--timeout", "5s"])?;
        if out.status.success() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the executor never answered through the restarted agent: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(agora_tests::alive(pid), "the same broker process");
    let brokers = scheduler.until("the broker is still running", |b| all_running(b, 1)).await?;
    assert_eq!(brokers[0]["task"]["id"], task, "the same task");
    assert_eq!(tansu_pid(&endpoint(&brokers[0])), Some(pid));
    produce_consume(&python, &endpoint(&brokers[0]), "kept", "after-agent-restart")?;
    // And a stop goes through the restarted agent to the executor, which ends the broker.
    scheduler.ok(&["broker", "stop", "0", "--timeout", "3m"])?;
    scheduler.until("the broker stopped", |b| b[0]["task"].is_null()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while agora_tests::alive(pid) {
        ensure!(tokio::time::Instant::now() < deadline, "the broker outlived its stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
