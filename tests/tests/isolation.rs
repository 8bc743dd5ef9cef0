//! Isolation end to end against a real `agora dev` started with
//! `--isolation=cgroups/cpu,cgroups/mem,cgroups/pids` (plus other isolators where a test needs
//! them): a task over its memory ends TASK_FAILED with REASON_CONTAINER_LIMITATION_MEMORY, a
//! daemon that double-forked into a session of its own dies with its task (when the task ends
//! and when it is killed), a fork bomb stops at `--cgroups_pids_max`, with
//! `--cgroups_enable_cfs` a busy loop gets Mesos's quota and is throttled (which
//! `/monitor/statistics` reports) while a neighbour still finishes its work; with
//! `namespaces/pid` a task sees only its container's processes, with `posix/rlimits` it gets
//! its ContainerInfo's rlimits, with `--switch_user` it runs as its command's user, and with
//! `disk/du` and `--enforce_container_disk_quota` a task writing past its disk fails with
//! REASON_CONTAINER_LIMITATION_DISK (with cgroups and without), and a default executor's
//! memory limit grows and shrinks with the task groups it runs.
//!
//! Privileged: they need root and cgroup v1 hierarchies for memory and pids, and skip saying
//! why otherwise (in CI they must run). Each test's agent keeps its containers under a
//! `--cgroups_root` of its own, removed when the test ends.

use std::path::{Path, PathBuf};

use agora_client::Subscription;
use agora_client::scheduler::SchedulerSession;
use agora_core::status::is_terminal;
use agora_proto::scheduler::Event;
use agora_proto::v1::TaskState;
use agora_proto::v1::task_status::Reason;
use agora_proto::{Format, v1};
use agora_tests::{
    Cluster, ClusterOptions, alive, command_task, eventually, next_offers, next_update,
    pids_running, required_in_ci, task_pid,
};
use anyhow::Context;

const PIDS_MAX: u64 = 64;

/// The v1 mount points of the controllers the agent uses, if this machine can run these
/// tests; otherwise why not.
fn hierarchies() -> Result<Vec<PathBuf>, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("not running as root".into());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for controller in ["cpu", "cpuacct", "memory", "pids", "freezer"] {
        let mount = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            (right.next()? == "cgroup" && right.nth(1)?.split(',').any(|o| o == controller))
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        });
        match mount {
            Some(mount) => found.push(mount),
            None => return Err(format!("no cgroup v1 hierarchy for {controller}")),
        }
    }
    Ok(found)
}

/// A cgroup root of the test's own under every hierarchy, removed (with any container left in
/// it) when the test ends.
struct CgroupRoot {
    name: String,
    mounts: Vec<PathBuf>,
}

impl Drop for CgroupRoot {
    /// An executor may still be on its way out when the test ends (its task's last update
    /// arrives before it exits): whatever is left is killed and waited for, a bounded number
    /// of rounds, so that the directories can go.
    fn drop(&mut self) {
        for _ in 0..1000 {
            let mut left = false;
            for mount in &self.mounts {
                let root = mount.join(&self.name);
                if let Ok(entries) = std::fs::read_dir(&root) {
                    for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
                        let procs = std::fs::read_to_string(dir.join("cgroup.procs"));
                        for pid in procs.iter().flat_map(|t| t.lines()) {
                            if let Ok(pid) = pid.trim().parse::<i32>() {
                                let _ = nix::sys::signal::kill(
                                    nix::unistd::Pid::from_raw(pid),
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                            }
                        }
                        let _ = std::fs::remove_dir(&dir);
                    }
                }
                left |= std::fs::remove_dir(&root).is_err() && root.exists();
            }
            if !left {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// The cluster and its cgroup root, stopped in that order (fields drop in order).
struct Isolated {
    cluster: Cluster,
    root: CgroupRoot,
}

/// The cgroup isolators every test's agent runs.
const CGROUPS: &str = "cgroups/cpu,cgroups/mem,cgroups/pids";

/// An isolated cluster, or `None` (after saying why) when this machine cannot have one.
fn isolated_cluster(what: &str, flags: &[&str]) -> anyhow::Result<Option<Isolated>> {
    isolated_cluster_with(what, CGROUPS, flags)
}

/// An isolated cluster with the isolators of `isolation`.
fn isolated_cluster_with(
    what: &str,
    isolation: &str,
    flags: &[&str],
) -> anyhow::Result<Option<Isolated>> {
    let mounts = match hierarchies() {
        Ok(mounts) => mounts,
        Err(reason) => {
            required_in_ci(what, &reason);
            return Ok(None);
        }
    };
    let root = CgroupRoot { name: format!("agora-test-{}", uuid::Uuid::new_v4().simple()), mounts };
    let options = ClusterOptions {
        extra: vec![
            format!("--isolation={isolation}"),
            format!("--cgroups_root={}", root.name),
            format!("--cgroups_pids_max={PIDS_MAX}"),
        ]
        .into_iter()
        .chain(flags.iter().map(|f| f.to_string()))
        .collect(),
        ..ClusterOptions::default()
    };
    Ok(Some(Isolated { cluster: Cluster::start_with(options)?, root }))
}

/// Launches `task` on the first offer.
async fn launch(
    cluster: &Cluster,
    task: impl FnOnce(&v1::AgentId) -> v1::TaskInfo,
) -> anyhow::Result<(SchedulerSession, Subscription<Event>)> {
    let framework =
        v1::FrameworkInfo { user: "root".into(), name: "isolation".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, framework, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    session.launch(vec![offer.id.clone()], vec![task(&offer.agent_id)], Some(0.0)).await?;
    Ok((session, events))
}

/// The task's next update in state `until` or a terminal one (acknowledging every one).
async fn wait_for(
    session: &SchedulerSession,
    events: &mut Subscription<Event>,
    until: TaskState,
) -> anyhow::Result<v1::TaskStatus> {
    loop {
        let status = next_update(session, events).await?;
        session.acknowledge(&status).await?;
        if status.state() == until || is_terminal(status.state()) {
            return Ok(status);
        }
    }
}

/// Launches `task` on the first offer and returns its final status.
async fn run_to_the_end(
    cluster: &Cluster,
    task: impl FnOnce(&v1::AgentId) -> v1::TaskInfo,
) -> anyhow::Result<v1::TaskStatus> {
    let (session, mut events) = launch(cluster, task).await?;
    wait_for(&session, &mut events, TaskState::TaskFinished).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_over_its_memory_fails_with_the_memory_limitation() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: memory limit", &[])? else {
        return Ok(());
    };
    // `tail` keeps the endless line of /dev/zero in memory until the kernel stops it.
    let status = run_to_the_end(&isolated.cluster, |agent| {
        command_task("hog", agent, "cpus:0.1;mem:32", "exec tail /dev/zero")
    })
    .await?;
    assert_eq!(status.state(), TaskState::TaskFailed, "{status:?}");
    assert_eq!(status.reason(), Reason::ContainerLimitationMemory, "{status:?}");
    assert!(status.message().contains("Memory limit exceeded"), "{status:?}");
    let limited = status.limitation.as_ref().context("the limitation is named")?;
    assert_eq!(limited.resources[0].name, "mem");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_double_forked_daemon_dies_with_its_task() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: daemons", &[])? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("daemon.pid");
    // The daemon leaves the task's session (and process group) and its parent exits: only
    // the cgroup still knows it belongs to the task.
    let command = format!(
        "setsid sh -c 'echo $$ > {file}.tmp && mv {file}.tmp {file} && exec sleep 1000' & \
         while [ ! -e {file} ]; do sleep 0.05; done; exit 0",
        file = pid_file.display()
    );
    let status = run_to_the_end(&isolated.cluster, |agent| {
        command_task("daemon", agent, "cpus:0.1;mem:64", &command)
    })
    .await?;
    assert_eq!(status.state(), TaskState::TaskFinished, "{status:?}");
    let daemon = task_pid(dir.path(), "daemon").await?;
    eventually("the daemon is gone", || !alive(daemon)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_stops_at_the_pids_limit() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: pids limit", &[])? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let count = dir.path().join("count");
    // Starts 1000 sleepers, counting each one started; the shell gives up at the first fork
    // the pids limit refuses.
    let command = format!(
        "i=0; while [ $i -lt 1000 ]; do sleep 1000 & i=$((i+1)); echo $i > {count}; done",
        count = count.display()
    );
    let status = run_to_the_end(&isolated.cluster, |agent| {
        command_task("bomb", agent, "cpus:0.1;mem:64", &command)
    })
    .await?;
    assert_eq!(status.state(), TaskState::TaskFailed, "the shell could not fork: {status:?}");
    let started: u64 = std::fs::read_to_string(&count)?.trim().parse()?;
    assert!(started > 0 && started < PIDS_MAX, "{started} sleepers started");
    // The sleepers ended with the container.
    let sleepers = || {
        pids_running(&["sleep", "1000"])
            .into_iter()
            .filter(|pid| in_root(*pid, &isolated.root.name))
            .count()
    };
    eventually("the sleepers are gone", || sleepers() == 0).await?;
    Ok(())
}

/// Whether process `pid` is in a cgroup under `root` (in any hierarchy).
fn in_root(pid: i32, root: &str) -> bool {
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("cgroup"))
        .is_ok_and(|text| text.lines().any(|l| l.contains(&format!("/{root}/"))))
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_task_kills_the_daemon_it_double_forked() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: kill", &[])? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("daemon.pid");
    let command = format!(
        "setsid sh -c 'echo $$ > {file}.tmp && mv {file}.tmp {file} && exec sleep 1000' & \
         exec sleep 1000",
        file = pid_file.display()
    );
    let (session, mut events) = launch(&isolated.cluster, |agent| {
        command_task("killed", agent, "cpus:0.1;mem:64", &command)
    })
    .await?;
    let running = wait_for(&session, &mut events, TaskState::TaskRunning).await?;
    assert_eq!(running.state(), TaskState::TaskRunning, "{running:?}");
    let daemon = task_pid(dir.path(), "daemon").await?;
    session.kill(v1::TaskId { value: "killed".into() }).await?;
    let status = wait_for(&session, &mut events, TaskState::TaskKilled).await?;
    assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");
    eventually("the daemon is gone", || !alive(daemon)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_task_is_throttled_to_its_cpus_with_cfs() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: cfs", &["--cgroups_enable_cfs"])? else {
        return Ok(());
    };
    let (session, mut events) = launch(&isolated.cluster, |agent| {
        command_task("busy", agent, "cpus:0.4;mem:64", "while :; do :; done")
    })
    .await?;
    let running = wait_for(&session, &mut events, TaskState::TaskRunning).await?;
    assert_eq!(running.state(), TaskState::TaskRunning, "{running:?}");
    // The task's cgroup in the cpu hierarchy: the only container under the test's root.
    let cpu = hierarchies().map_err(anyhow::Error::msg)?.remove(0).join(&isolated.root.name);
    let container = std::fs::read_dir(&cpu)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .context("the task's cpu cgroup")?;
    let read = |file: &str| std::fs::read_to_string(container.join(file)).unwrap_or_default();
    // 0.4 cpus for the task and Mesos's 0.1 for the command executor, per 100 ms.
    assert_eq!(read("cpu.cfs_quota_us").trim(), "50000");
    assert_eq!(read("cpu.shares").trim(), "512");
    eventually("the busy loop is throttled", || {
        read("cpu.stat").lines().any(|l| {
            l.strip_prefix("nr_throttled ").and_then(|n| n.trim().parse::<u64>().ok()) > Some(0)
        })
    })
    .await?;
    // /monitor/statistics reports the same container, from the same files.
    let url = format!("http://{}/monitor/statistics", isolated.cluster.agent);
    let entries: serde_json::Value =
        serde_json::from_str(&reqwest::get(&url).await?.text().await?)?;
    let entry = entries
        .as_array()
        .and_then(|a| a.iter().find(|e| e["executor_id"] == "busy"))
        .with_context(|| format!("no entry for the task's executor in {entries}"))?;
    let statistics = &entry["statistics"];
    assert_eq!(statistics["cpus_limit"], 0.5, "{entry}");
    assert_eq!(statistics["mem_limit_bytes"], 96u64 << 20, "64 MB and the executor's 32: {entry}");
    assert!(statistics["cpus_user_time_secs"].as_f64() > Some(0.0), "{entry}");
    assert!(statistics["cpus_nr_throttled"].as_u64() > Some(0), "{entry}");
    assert!(statistics["mem_rss_bytes"].as_u64() > Some(0), "{entry}");
    assert!(statistics["timestamp"].as_f64() > Some(0.0), "{entry}");
    session.kill(v1::TaskId { value: "busy".into() }).await?;
    let status = wait_for(&session, &mut events, TaskState::TaskKilled).await?;
    assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");
    Ok(())
}

/// The file `name` of executor `executor_id`'s latest sandbox, under the cluster's work dir.
fn sandbox_file(cluster: &Cluster, executor_id: &str, name: &str) -> anyhow::Result<String> {
    let suffix = Path::new("executors").join(executor_id).join("runs/latest").join(name);
    let mut stack = vec![cluster.work_dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        let candidate = dir.join(&suffix);
        if candidate.is_file() {
            return Ok(std::fs::read_to_string(candidate)?);
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    anyhow::bail!("no {name} in a sandbox of {executor_id}")
}

/// The value after `key=` on a line of `text`.
fn value_of(text: &str, key: &str) -> anyhow::Result<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .with_context(|| format!("no {key}= in {text:?}"))?
        .trim()
        .parse()
        .with_context(|| format!("{key} in {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_in_a_pid_namespace_sees_only_its_container() -> anyhow::Result<()> {
    let isolation = format!("{CGROUPS},namespaces/pid");
    let Some(isolated) = isolated_cluster_with("isolation: pid namespace", &isolation, &[])? else {
        return Ok(());
    };
    let command = "echo pid=$$; echo procs=$(ls /proc | grep -c '^[0-9]'); \
                   echo init=$(tr '\\0' ' ' < /proc/1/cmdline)";
    let status = run_to_the_end(&isolated.cluster, |agent| {
        command_task("ns", agent, "cpus:0.1;mem:64", command)
    })
    .await?;
    assert_eq!(status.state(), TaskState::TaskFinished, "{status:?}");
    let stdout = sandbox_file(&isolated.cluster, "ns", "stdout")?;
    // pid 1 is the command executor; the task's shell, `ls`, `grep` and the subshell follow.
    let pid = value_of(&stdout, "pid")?;
    let procs = value_of(&stdout, "procs")?;
    assert!(pid > 1 && pid < 10, "the task's shell is among the first of its namespace: {stdout}");
    assert!(procs < 10, "/proc shows only the container: {stdout}");
    let init = stdout.lines().find_map(|l| l.strip_prefix("init=")).context("init=")?;
    assert!(init.contains("executor"), "the executor is pid 1: {stdout}");
    let host = std::fs::read_dir("/proc")?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()))
        .count();
    assert!(host > procs as usize, "the host's /proc is untouched ({host} processes)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_task_in_a_pid_namespace_kills_its_daemons() -> anyhow::Result<()> {
    let isolation = format!("{CGROUPS},namespaces/pid");
    let Some(isolated) = isolated_cluster_with("isolation: pid namespace kill", &isolation, &[])?
    else {
        return Ok(());
    };
    // The daemon's host pid is only known from outside: the test finds it by its command line.
    let command = "setsid sh -c 'exec sleep 1001' & exec sleep 1000";
    let (session, mut events) = launch(&isolated.cluster, |agent| {
        command_task("killed", agent, "cpus:0.1;mem:64", command)
    })
    .await?;
    let running = wait_for(&session, &mut events, TaskState::TaskRunning).await?;
    assert_eq!(running.state(), TaskState::TaskRunning, "{running:?}");
    let daemons = || {
        pids_running(&["sleep", "1001"])
            .into_iter()
            .filter(|pid| in_root(*pid, &isolated.root.name))
            .count()
    };
    eventually("the daemon runs", || daemons() == 1).await?;
    session.kill(v1::TaskId { value: "killed".into() }).await?;
    let status = wait_for(&session, &mut events, TaskState::TaskKilled).await?;
    assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");
    eventually("the daemon is gone", || daemons() == 0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_gets_the_rlimits_of_its_container() -> anyhow::Result<()> {
    let isolation = format!("{CGROUPS},posix/rlimits");
    let Some(isolated) = isolated_cluster_with("isolation: rlimits", &isolation, &[])? else {
        return Ok(());
    };
    let status = run_to_the_end(&isolated.cluster, |agent| {
        let mut task = command_task(
            "limited",
            agent,
            "cpus:0.1;mem:64",
            "echo soft=$(ulimit -Sn); echo hard=$(ulimit -Hn)",
        );
        let nofile = v1::r_limit_info::RLimit {
            r#type: Some(v1::r_limit_info::r_limit::Type::RlmtNofile as i32),
            soft: Some(64),
            hard: Some(128),
        };
        let mut container = v1::ContainerInfo {
            rlimit_info: Some(v1::RLimitInfo { rlimits: vec![nofile] }),
            ..Default::default()
        };
        container.set_type(v1::container_info::Type::Mesos);
        task.container = Some(container);
        task
    })
    .await?;
    assert_eq!(status.state(), TaskState::TaskFinished, "{status:?}");
    let stdout = sandbox_file(&isolated.cluster, "limited", "stdout")?;
    assert_eq!((value_of(&stdout, "soft")?, value_of(&stdout, "hard")?), (64, 128), "{stdout}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_runs_as_its_commands_user() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: switch user", &["--switch_user"])? else {
        return Ok(());
    };
    // The sandbox is nobody's, but the way to it goes through the test's work directory,
    // which is root's alone.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        isolated.cluster.work_dir.path(),
        std::fs::Permissions::from_mode(0o755),
    )?;
    let with_user = |id: &str, user: &str, agent: &v1::AgentId| {
        let mut task =
            command_task(id, agent, "cpus:0.1;mem:64", "echo user=$(id -un) > whoami; id -un");
        if let Some(command) = task.command.as_mut() {
            command.user = Some(user.into());
        }
        task
    };
    let status =
        run_to_the_end(&isolated.cluster, |agent| with_user("nobody", "nobody", agent)).await?;
    assert_eq!(status.state(), TaskState::TaskFinished, "{status:?}");
    assert_eq!(sandbox_file(&isolated.cluster, "nobody", "stdout")?.trim(), "nobody");
    assert_eq!(sandbox_file(&isolated.cluster, "nobody", "whoami")?.trim(), "user=nobody");
    // A user the machine does not have fails the task, saying so.
    let status = run_to_the_end(&isolated.cluster, |agent| {
        with_user("stranger", "agora-no-such-user", agent)
    })
    .await?;
    assert_eq!(status.state(), TaskState::TaskFailed, "{status:?}");
    assert!(status.message().contains("agora-no-such-user"), "{status:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_writing_past_its_disk_fails_with_the_disk_limitation() -> anyhow::Result<()> {
    disk_quota("isolation: disk quota", &format!("{CGROUPS},filesystem/posix,disk/du")).await
}

/// Without cgroups the container is the executor's session, which is what gets killed.
#[tokio::test(flavor = "multi_thread")]
async fn without_cgroups_a_task_writing_past_its_disk_still_fails() -> anyhow::Result<()> {
    disk_quota("isolation: disk quota without cgroups", "filesystem/posix,disk/du").await
}

/// A task with `disk:10` that writes 30 MB and waits fails with the disk limitation.
async fn disk_quota(what: &str, isolation: &str) -> anyhow::Result<()> {
    let flags = ["--container_disk_watch_interval=100ms", "--enforce_container_disk_quota"];
    let Some(isolated) = isolated_cluster_with(what, isolation, &flags)? else {
        return Ok(());
    };
    let status = run_to_the_end(&isolated.cluster, |agent| {
        command_task(
            "writer",
            agent,
            "cpus:0.1;mem:64;disk:10",
            "dd if=/dev/zero of=big bs=1M count=30 && exec sleep 1000",
        )
    })
    .await?;
    assert_eq!(status.state(), TaskState::TaskFailed, "{status:?}");
    assert_eq!(status.reason(), Reason::ContainerLimitationDisk, "{status:?}");
    assert!(status.message().contains("Disk usage"), "{status:?}");
    let limited = status.limitation.as_ref().context("the limitation is named")?;
    assert_eq!(limited.resources[0].name, "disk");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_task_leaves_cpu_to_its_neighbour() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: neighbours", &["--cgroups_enable_cfs"])?
    else {
        return Ok(());
    };
    let framework =
        v1::FrameworkInfo { user: "root".into(), name: "neighbours".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&isolated.cluster.master, framework, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let tasks = vec![
        command_task("busy", &offer.agent_id, "cpus:0.5;mem:64", "while :; do :; done"),
        // A bounded amount of CPU work: it ends only if it gets CPU beside the busy loop.
        command_task(
            "job",
            &offer.agent_id,
            "cpus:0.5;mem:64",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
        ),
    ];
    session.launch(vec![offer.id.clone()], tasks, Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.task_id.value == "job" && is_terminal(status.state()) {
            assert_eq!(status.state(), TaskState::TaskFinished, "{status:?}");
            break;
        }
        anyhow::ensure!(!is_terminal(status.state()), "the busy loop ended: {status:?}");
    }
    let url = format!("http://{}/monitor/statistics", isolated.cluster.agent);
    let mut throttled = 0;
    for _ in 0..1200 {
        let entries: serde_json::Value =
            serde_json::from_str(&reqwest::get(&url).await?.text().await?)?;
        throttled = entries
            .as_array()
            .and_then(|a| a.iter().find(|e| e["executor_id"] == "busy"))
            .and_then(|e| e["statistics"]["cpus_nr_throttled"].as_u64())
            .unwrap_or(0);
        if throttled > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(throttled > 0, "the busy loop is throttled to its quota");
    session.kill(v1::TaskId { value: "busy".into() }).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.task_id.value == "busy" && is_terminal(status.state()) {
            assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_containers_limits_follow_the_task_groups_of_its_executor() -> anyhow::Result<()> {
    let Some(isolated) = isolated_cluster("isolation: resize", &[])? else {
        return Ok(());
    };
    let framework =
        v1::FrameworkInfo { user: "root".into(), name: "resize".into(), ..Default::default() };
    let (session, mut events) =
        SchedulerSession::subscribe(&isolated.cluster.master, framework, Format::Json).await?;
    let resources = agora_core::resources::Resources::parse("cpus:0.1;mem:32")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut executor = v1::ExecutorInfo {
        executor_id: v1::ExecutorId { value: "grouped".into() },
        resources: agora_core::convert::resources_to_proto(&resources, None),
        ..Default::default()
    };
    executor.set_type(v1::executor_info::Type::Default);
    // The executor's memory cgroup: the only container under the test's root.
    let memory = hierarchies().map_err(anyhow::Error::msg)?.remove(2).join(&isolated.root.name);
    let limit_mb = || -> u64 {
        std::fs::read_dir(&memory)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .and_then(|dir| std::fs::read_to_string(dir.join("memory.limit_in_bytes")).ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map_or(0, |bytes| bytes >> 20)
    };
    for (id, expected) in [("first", 96), ("second", 160)] {
        let offer = next_offers(&mut events).await?.remove(0);
        let task = command_task(id, &offer.agent_id, "cpus:0.1;mem:64", "exec sleep 1000");
        session
            .launch_group(vec![offer.id.clone()], executor.clone(), vec![task], Some(0.0))
            .await?;
        let running = wait_for(&session, &mut events, TaskState::TaskRunning).await?;
        assert_eq!(running.state(), TaskState::TaskRunning, "{running:?}");
        eventually(&format!("the container has {expected} MB"), || limit_mb() == expected).await?;
    }
    // The second group's end gives its memory back.
    session.kill(v1::TaskId { value: "second".into() }).await?;
    let status = wait_for(&session, &mut events, TaskState::TaskKilled).await?;
    assert_eq!((status.task_id.value.as_str(), status.state()), ("second", TaskState::TaskKilled));
    eventually("the container is back to 96 MB", || limit_mb() == 96).await?;
    session.kill(v1::TaskId { value: "first".into() }).await?;
    let status = wait_for(&session, &mut events, TaskState::TaskKilled).await?;
    assert_eq!(status.state(), TaskState::TaskKilled, "{status:?}");
    Ok(())
}
