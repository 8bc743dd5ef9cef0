//! Executor processes: the sandbox directory in the Mesos layout (reference §7.3), the process
//! itself with the sandbox's `stdout`/`stderr`, its own process group, and the watcher that
//! reports its exit.
//!
//! A launch runs as its own task and reports back to the dispatcher: `Launched` with the pid,
//! then `ExecutorExited` with the raw wait status, or `ExecutorLaunchFailed`. The fetcher runs
//! first, in the same task, so a slow download holds up only its own executor; a failed fetch
//! is a failed launch and the executor never starts. Either way the sandbox is handed to `gc`
//! for removal after `--gc_delay`.
//!
//! With cgroup isolation (`isolation.rs`) the container's cgroup is made and limited before
//! the executor starts, the helper joins it before it execs, its OOM counter is watched while
//! the executor runs (an OOM kill is reported as a memory limitation and destroys the
//! container), and the cgroup is destroyed when the executor ends: every process in it is
//! killed, those that left the executor's session included. The helper also builds the rest
//! of the container (PID namespace, rlimits, user: `isolation.rs` decides, `agora
//! session-exec` does); a sandbox whose executor runs as another user is chowned to it. With
//! `disk/du` the sandbox is measured every `--container_disk_watch_interval` while the
//! executor runs, and with `--enforce_container_disk_quota` a container over its `disk` is
//! reported as a disk limitation and killed like an OOM-killed one (recovered executors are
//! not measured).
//!
//! With a session helper (the `agora` binary's `session-exec`), each executor leads a session
//! of its own, which every process it starts stays in unless it calls `setsid` itself: the
//! hard kill takes the whole session, tasks that moved to process groups of their own included,
//! and whatever an executor leaves in its session when it ends (SIGKILLed, or crashed) is
//! killed too, so no task outlives its executor. `watch` follows an executor a previous agent run started (no longer our child, so it is
//! polled through `/proc`).

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use agora_core::agent::{Input, Launch, Limitation, VolumeLink};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::cgroups::Container;
use crate::checkpoint::{ExecutorPid, is_alive};
use crate::dispatcher::Command;
use crate::fetcher::Fetcher;
use crate::gc;
use crate::isolation::{DiskWatch, Isolator};

/// Fetches the executor's URIs, starts the executor of `launch`, waits for it to end and
/// schedules its sandbox's removal `gc_delay` later.
pub(crate) async fn run(
    launch: Launch,
    fetcher: Arc<Fetcher>,
    helper: Option<Arc<String>>,
    isolator: Arc<Isolator>,
    tx: mpsc::UnboundedSender<Command>,
    gc_delay: Duration,
) {
    let framework_id = launch.framework_id.clone();
    let executor_id = launch.executor_id.clone();
    let fetched = fetcher
        .fetch_all(&launch.command.uris, Path::new(&launch.sandbox), launch.user.as_deref())
        .await;
    let mut container = None;
    let spawned = fetched.and_then(|()| {
        // Checked before the cgroup exists, so a refused user or rlimit leaves nothing behind.
        let helper_args = match &helper {
            Some(_) => isolator.helper_args(&launch)?,
            None => Vec::new(),
        };
        if helper.is_some()
            && let Some(user) = isolator.user(&launch)?
        {
            chown_sandbox(Path::new(&launch.sandbox), &user)?;
        }
        container = isolator.prepare(&launch)?;
        let helper = helper.as_deref().map(|h| (h.as_str(), helper_args.as_slice()));
        spawn(&launch, helper, container.as_ref())
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(message) => {
            if let Some(container) = container.take() {
                destroy(container).await;
            }
            tracing::warn!(%framework_id, %executor_id, %message, "executor launch failed");
            gc::schedule(PathBuf::from(&launch.sandbox), gc_delay);
            let _ = tx.send(Command::Event(Input::ExecutorLaunchFailed {
                framework_id,
                executor_id,
                message,
            }));
            return;
        }
    };
    let disk = isolator.disk_watch(&launch);
    let mut recorded = None;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // Read while the child is unreaped, so the pid cannot name anybody else yet.
        let start_time = crate::checkpoint::process_start_time(pid).unwrap_or(u64::MAX);
        recorded = Some(ExecutorPid { pid, start_time });
        let (confirm, confirmed) = tokio::sync::oneshot::channel();
        if helper.is_none()
            && let Some(container) = &container
            && let Err(e) = container.add(pid)
        {
            // Without the helper the executor runs already; it is only unlimited.
            tracing::warn!(%framework_id, %executor_id, "cannot move the executor into its cgroup: {e}");
        }
        let _ = tx.send(Command::Launched {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            pid: ExecutorPid { pid, start_time },
            confirm: helper.is_some().then_some(confirm),
            container: container.clone(),
            disk_limit: disk.as_ref().map(|d| Arc::clone(&d.limit_bytes)),
        });
        if let Some(mut gate) = child.stdin.take() {
            // The helper execs the executor only after this byte: its pid is durable by now.
            // Without it (the agent is going away) the helper exits without running it.
            if confirmed.await.is_ok() {
                use tokio::io::AsyncWriteExt;
                let _ = gate.write_all(b"\n").await;
            }
        }
    }
    tracing::info!(%framework_id, %executor_id, sandbox = %launch.sandbox, "executor started");
    let watched = Watched {
        container: container.as_ref(),
        disk: disk.map(|watch| (watch, Path::new(&launch.sandbox))),
        pid: recorded,
        framework_id: &framework_id,
        executor_id: &executor_id,
        tx: &tx,
    };
    let status = supervise(&mut child, watched).await;
    tracing::info!(%framework_id, %executor_id, ?status, "executor exited");
    if let Some(container) = container {
        // The executor itself may have been the OOM killer's victim.
        report_oom(&container, &framework_id, &executor_id, &tx);
        // Whatever the executor left (double-forked daemons, new sessions) ends with it.
        destroy(container).await;
    }
    if let Some(pid) = recorded.filter(|_| helper.is_some()) {
        sweep_remains(pid);
    }
    gc::schedule(PathBuf::from(&launch.sandbox), gc_delay);
    let _ = tx.send(Command::Event(Input::ExecutorExited { framework_id, executor_id, status }));
}

/// How often a running container's OOM counter is read. An executor's report of a task's
/// end is checked against the counter as it arrives too (in the dispatcher), so this only
/// bounds how long an OOM-killed task's siblings keep running.
const OOM_POLL: Duration = Duration::from_millis(100);

/// What `supervise` watches while an executor runs.
struct Watched<'a> {
    container: Option<&'a Container>,
    /// `disk/du`: the limit and the sandbox it holds.
    disk: Option<(DiskWatch, &'a Path)>,
    /// The executor's process, for killing it without a cgroup.
    pid: Option<ExecutorPid>,
    framework_id: &'a str,
    executor_id: &'a str,
    tx: &'a mpsc::UnboundedSender<Command>,
}

/// Waits for the executor to end, watching its container's OOM counter and, with `disk/du`,
/// its sandbox's size meanwhile: after an OOM kill, or past its disk with the quota enforced,
/// the limitation is reported and the container killed, as Mesos does, which ends the
/// executor too.
async fn supervise(child: &mut tokio::process::Child, watched: Watched<'_>) -> Option<i32> {
    let Watched { container, disk, pid, framework_id, executor_id, tx } = watched;
    let mut poll = tokio::time::interval(OOM_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut measure =
        tokio::time::interval(disk.as_ref().map_or(Duration::from_secs(3600), |(w, _)| w.interval));
    measure.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            status = child.wait() => return status.ok().map(|s| s.into_raw()),
            _ = poll.tick(), if container.is_some() => {
                if let Some(container) = container
                    && report_oom(container, framework_id, executor_id, tx)
                {
                    tracing::info!(%framework_id, %executor_id, "container out of memory: destroying it");
                    destroy(container.clone()).await;
                    return child.wait().await.ok().map(|s| s.into_raw());
                }
            }
            _ = measure.tick(), if disk.is_some() => {
                let Some((watch, sandbox)) = &disk else { continue };
                let path = sandbox.to_path_buf();
                let used = tokio::task::spawn_blocking(move || crate::usage::disk_used(&path))
                    .await
                    .unwrap_or(0);
                let limit = watch.limit_bytes.load(std::sync::atomic::Ordering::Relaxed);
                if used <= limit {
                    continue;
                }
                let message = disk_message(used, limit);
                if !watch.enforce {
                    if !warned {
                        tracing::warn!(%framework_id, %executor_id, "{message} (not enforced)");
                        warned = true;
                    }
                    continue;
                }
                tracing::info!(%framework_id, %executor_id, "{message}: killing the container");
                let _ = tx.send(Command::Event(Input::ContainerLimited {
                    framework_id: framework_id.to_string(),
                    executor_id: executor_id.to_string(),
                    limitation: Limitation::Disk,
                    message,
                }));
                match (container, pid) {
                    (Some(container), _) => destroy(container.clone()).await,
                    (None, Some(pid)) => kill_tree(pid),
                    (None, None) => {
                        let _ = child.start_kill();
                    }
                }
                return child.wait().await.ok().map(|s| s.into_raw());
            }
        }
    }
}

/// The message tasks fail with when their container goes over its disk (Mesos's words).
fn disk_message(used: u64, limit: u64) -> String {
    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    format!("Disk usage ({:.1}MB) exceeds quota ({:.1}MB)", mb(used), mb(limit))
}

/// Gives the sandbox (and everything fetched into it) to the user its executor runs as, so
/// that the executor can write its files; links are changed themselves, never followed.
fn chown_sandbox(sandbox: &Path, user: &nix::unistd::User) -> Result<(), String> {
    let (uid, gid) = (Some(user.uid.as_raw()), Some(user.gid.as_raw()));
    std::fs::create_dir_all(sandbox)
        .map_err(|e| format!("cannot create sandbox {}: {e}", sandbox.display()))?;
    let mut stack = vec![sandbox.to_path_buf()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, uid, gid)
            .map_err(|e| format!("cannot give {} to user '{}': {e}", path.display(), user.name))?;
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir && let Ok(entries) = std::fs::read_dir(&path) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// Tells the core that the container hit its memory limit, if the OOM killer has been at
/// work in it; whether it had.
fn report_oom(
    container: &Container,
    framework_id: &str,
    executor_id: &str,
    tx: &mpsc::UnboundedSender<Command>,
) -> bool {
    if container.oom_kills() == 0 {
        return false;
    }
    let _ = tx.send(Command::Event(Input::ContainerLimited {
        framework_id: framework_id.to_string(),
        executor_id: executor_id.to_string(),
        limitation: Limitation::Memory,
        message: crate::isolation::oom_message(container),
    }));
    true
}

/// Kills everything in a container's cgroup and removes it, off the async runtime (it waits
/// for the processes to be gone).
pub(crate) async fn destroy(container: Container) {
    let result = tokio::task::spawn_blocking(move || container.destroy()).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("cannot destroy a container's cgroup: {e}"),
        Err(e) => tracing::warn!("the cgroup destruction task failed: {e}"),
    }
}

/// Starts the executor, through the helper (with its isolation arguments) when there is one.
fn spawn(
    launch: &Launch,
    helper: Option<(&str, &[String])>,
    container: Option<&Container>,
) -> Result<tokio::process::Child, String> {
    let sandbox = Path::new(&launch.sandbox);
    std::fs::create_dir_all(sandbox)
        .map_err(|e| format!("cannot create sandbox {}: {e}", launch.sandbox))?;
    if let Some(runs) = sandbox.parent() {
        // `runs/latest` points at the newest run, as in Mesos; a stale link is replaced.
        let latest = runs.join("latest");
        let _ = std::fs::remove_file(&latest);
        std::os::unix::fs::symlink(&launch.container_id, &latest)
            .map_err(|e| format!("cannot link {}: {e}", latest.display()))?;
    }
    link_volumes(sandbox, &launch.volumes)?;
    let stdout =
        File::create(sandbox.join("stdout")).map_err(|e| format!("cannot create stdout: {e}"))?;
    let stderr =
        File::create(sandbox.join("stderr")).map_err(|e| format!("cannot create stderr: {e}"))?;

    let command = &launch.command;
    let value = command.value.clone().unwrap_or_default();
    // (program, argv[0], the other arguments)
    let (program, arg0, rest): (String, String, Vec<String>) = if command.shell() {
        ("/bin/sh".into(), "sh".into(), vec!["-c".into(), value.clone()])
    } else {
        if value.is_empty() {
            return Err("the executor's CommandInfo has no value".into());
        }
        // With shell=false the arguments are the whole argv, argv[0] included.
        match command.arguments.split_first() {
            Some((first, rest)) => (value.clone(), first.clone(), rest.to_vec()),
            None => (value.clone(), value.clone(), Vec::new()),
        }
    };
    let path = launch.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
    let mut process = match helper {
        Some((helper, isolation)) => {
            // The helper execs the program, so a missing one must be caught here to fail
            // the launch rather than the executor.
            resolve(&program, sandbox, path.as_deref())?;
            let mut p = std::process::Command::new(helper);
            p.arg("session-exec");
            // The helper joins the container's cgroup before it execs, so that the executor
            // and all it starts are inside from their first instruction.
            for procs in container.map(Container::procs_files).unwrap_or_default() {
                p.arg("--cgroup").arg(procs);
            }
            p.args(isolation);
            p.arg(&program).arg(&arg0).args(&rest).stdin(Stdio::piped());
            p
        }
        None => {
            let mut p = std::process::Command::new(&program);
            p.arg0(&arg0).args(&rest).process_group(0).stdin(Stdio::null());
            p
        }
    };
    process
        .current_dir(sandbox)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdout(stdout)
        .stderr(stderr);
    // Its own session (through the helper) or process group, so that killing the executor
    // reaches everything it started and an executor that kills its own group cannot reach
    // the agent.
    tokio::process::Command::from(process)
        .spawn()
        .map_err(|e| format!("cannot start '{value}': {e}"))
}

/// Checks that `program` can be started: a path (relative ones from the sandbox) that
/// exists, or a name found on the `PATH` it will run with (the executor's own, else ours).
fn resolve(program: &str, sandbox: &Path, path: Option<&str>) -> Result<(), String> {
    let exists = if program.contains('/') {
        sandbox.join(program).is_file()
    } else {
        let path = path.map(std::ffi::OsString::from).or_else(|| std::env::var_os("PATH"));
        path.is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    if exists { Ok(()) } else { Err(format!("cannot start '{program}': not found")) }
}

/// Follows an executor started by a previous run of the agent until it ends, then reports it
/// like any exit (without a wait status: it is not our child) and schedules its sandbox's
/// removal.
pub(crate) async fn watch(
    key: (String, String),
    pid: ExecutorPid,
    sandbox: String,
    container: Option<Container>,
    tx: mpsc::UnboundedSender<Command>,
    gc_delay: Duration,
) {
    while is_alive(pid) {
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
    let (framework_id, executor_id) = key;
    tracing::info!(%framework_id, %executor_id, pid = pid.pid, "recovered executor exited");
    sweep_remains(pid);
    if let Some(container) = container {
        report_oom(&container, &framework_id, &executor_id, &tx);
        destroy(container).await;
    }
    if !sandbox.is_empty() {
        gc::schedule(PathBuf::from(sandbox), gc_delay);
    }
    let _ =
        tx.send(Command::Event(Input::ExecutorExited { framework_id, executor_id, status: None }));
}

/// How often a recovered executor is checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// SIGKILLs an executor and everything in its session (or, for a process that leads no
/// session, its process group): the hard end of an executor, tasks that left its process
/// group included. A process that called `setsid` itself escapes; cgroups will close that.
///
/// Nothing is signalled unless `pid` is still the executor that was recorded (same start
/// time), so a recycled pid never takes an unrelated session down. The session is swept
/// until it is empty (a process may fork while it is swept), a bounded number of times.
pub(crate) fn kill_tree(pid: ExecutorPid) {
    if !is_alive(pid) {
        sweep_remains(pid);
        return;
    }
    signal_group(pid.pid, Signal::SIGKILL);
    sweep_session(pid.pid);
}

/// Kills what an executor that ended on its own left in its session (a task it started, say,
/// when the executor itself was SIGKILLed), so that no task outlives its executor. The
/// session id cannot be taken by a new session while any member is left (the kernel keeps a
/// pid number in use as long as a session refers to it), so the sweep only stops short when
/// the number names a different live process already: then the session is somebody else's.
pub(crate) fn sweep_remains(pid: ExecutorPid) {
    // A live process under that number is the executor itself (`kill_tree` is for that) or
    // one that recycled the number.
    if crate::checkpoint::process_start_time(pid.pid).is_none() {
        sweep_session(pid.pid);
    }
}

/// SIGKILLs every process of session `sid`, again until none is left (a member may fork
/// while it is swept), a bounded number of times.
fn sweep_session(sid: i32) {
    for _ in 0..KILL_SWEEPS {
        let members = session_members(sid);
        if members.is_empty() {
            return;
        }
        for member in members {
            if let Err(e) = nix::sys::signal::kill(Pid::from_raw(member), Signal::SIGKILL)
                && e != nix::errno::Errno::ESRCH
            {
                tracing::warn!(pid = member, "cannot kill a process of an executor's session: {e}");
            }
        }
    }
}

/// How many times `kill_tree` sweeps a session.
const KILL_SWEEPS: usize = 10;

/// The processes whose session id is `sid` (field 6 of `/proc/<pid>/stat`).
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 1..];
                // `rest` starts at field 3 (state): 4 ppid, 5 pgrp, 6 session. Zombies are
                // dead already; they only wait to be reaped.
                let mut fields = rest.split_whitespace();
                let state = fields.next()?;
                if state == "Z" || state == "X" {
                    return None;
                }
                fields.nth(2)?.parse::<i32>().ok()
            }) == Some(sid)
        })
        .collect()
}

/// Creates each persistent volume's directory if it is new and links it into the sandbox at
/// its container path. Paths come from validated resources (no `..`, not absolute); the link
/// is replaced if it exists, so a relaunch in the same sandbox is harmless.
pub(crate) fn link_volumes(sandbox: &Path, volumes: &[VolumeLink]) -> Result<(), String> {
    for volume in volumes {
        std::fs::create_dir_all(&volume.host_path)
            .map_err(|e| format!("cannot create volume {}: {e}", volume.host_path))?;
        let link = sandbox.join(volume.container_path.trim_start_matches('/'));
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&volume.host_path, &link)
            .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    Ok(())
}

/// How long an executor has between SIGTERM and SIGKILL.
pub(crate) const TERM_GRACE: Duration = Duration::from_secs(2);

/// Signals an executor's process group; a group that is already gone is not an error.
///
/// Executors are killed with SIGTERM first, so that one can take down the tasks it runs in
/// process groups of their own (nothing else contains them until cgroups do), and with
/// SIGKILL after `TERM_GRACE` if they are still there.
pub(crate) fn signal_group(pid: i32, signal: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pid), signal)
        && e != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, %signal, error = %e, "cannot signal executor process group");
    }
}
