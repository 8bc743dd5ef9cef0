//! Executor processes: the sandbox directory in the Mesos layout (reference §7.3), the process
//! itself with the sandbox's `stdout`/`stderr`, its own process group, and the watcher that
//! reports its exit.
//!
//! A launch runs as its own task and reports back to the dispatcher: `Launched` with the pid,
//! then `ExecutorExited` with the raw wait status, or `ExecutorLaunchFailed`. The fetcher runs
//! first, in the same task, so a slow download holds up only its own executor; a failed fetch
//! is a failed launch and the executor never starts. Either way the sandbox is handed to `gc`
//! for removal after `--gc_delay`. Isolation (cgroups, namespaces,
//! switching user) is not done here yet.

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use agora_core::agent::{Input, Launch, VolumeLink};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::dispatcher::Command;
use crate::fetcher::Fetcher;
use crate::gc;

/// Fetches the executor's URIs, starts the executor of `launch`, waits for it to end and
/// schedules its sandbox's removal `gc_delay` later.
pub(crate) async fn run(
    launch: Launch,
    fetcher: Arc<Fetcher>,
    tx: mpsc::UnboundedSender<Command>,
    gc_delay: Duration,
) {
    let framework_id = launch.framework_id.clone();
    let executor_id = launch.executor_id.clone();
    let fetched = fetcher
        .fetch_all(&launch.command.uris, Path::new(&launch.sandbox), launch.user.as_deref())
        .await;
    let mut child = match fetched.and_then(|()| spawn(&launch)) {
        Ok(child) => child,
        Err(message) => {
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
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = tx.send(Command::Launched {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            pid,
        });
    }
    tracing::info!(%framework_id, %executor_id, sandbox = %launch.sandbox, "executor started");
    let status = child.wait().await.ok().map(|s| s.into_raw());
    tracing::info!(%framework_id, %executor_id, ?status, "executor exited");
    gc::schedule(PathBuf::from(&launch.sandbox), gc_delay);
    let _ = tx.send(Command::Event(Input::ExecutorExited { framework_id, executor_id, status }));
}

fn spawn(launch: &Launch) -> Result<tokio::process::Child, String> {
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
    let mut process = if command.shell() {
        let mut p = std::process::Command::new("/bin/sh");
        p.arg("-c").arg(&value);
        p
    } else {
        if value.is_empty() {
            return Err("the executor's CommandInfo has no value".into());
        }
        let mut p = std::process::Command::new(&value);
        // With shell=false the arguments are the whole argv, argv[0] included.
        if let Some((first, rest)) = command.arguments.split_first() {
            p.arg0(first).args(rest);
        }
        p
    };
    process
        .current_dir(sandbox)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group, so that killing the executor reaches everything it started
        // and an executor that kills its own group cannot reach the agent.
        .process_group(0);
    tokio::process::Command::from(process)
        .spawn()
        .map_err(|e| format!("cannot start '{value}': {e}"))
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
