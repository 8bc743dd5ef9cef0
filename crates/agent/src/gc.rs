//! Sandbox garbage collection (`--gc_delay`, reference §7.1): once an executor has ended, its
//! sandbox is removed when the delay has passed.
//!
//! The launcher schedules the removal when the executor process exits; a timer task waits and
//! then deletes the run directory and the `runs/latest` link if it still points there. A run
//! that is still going is never scheduled, so its sandbox stays. Deliberately not done (yet):
//! Mesos's shortening of the delay as the disk fills (`--gc_disk_headroom`), and collecting
//! sandboxes left by a previous agent process, whose timers die with it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Removes `sandbox` after `delay`, off the async threads since a sandbox may be large.
pub(crate) fn schedule(sandbox: PathBuf, delay: Duration) {
    tracing::debug!(sandbox = %sandbox.display(), ?delay, "sandbox scheduled for removal");
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let removed = tokio::task::spawn_blocking(move || remove(&sandbox)).await;
        if let Err(e) = removed {
            tracing::warn!("sandbox removal did not finish: {e}");
        }
    });
}

/// Deletes a run directory, and `runs/latest` if it names that run (a newer run of the same
/// executor keeps its link). A sandbox that is already gone is not an error.
pub(crate) fn remove(sandbox: &Path) {
    if let (Some(runs), Some(run)) = (sandbox.parent(), sandbox.file_name()) {
        let latest = runs.join("latest");
        if std::fs::read_link(&latest).is_ok_and(|target| target.as_os_str() == run)
            && let Err(e) = std::fs::remove_file(&latest)
        {
            tracing::warn!(link = %latest.display(), "cannot remove link: {e}");
        }
    }
    match std::fs::remove_dir_all(sandbox) {
        Ok(()) => tracing::info!(sandbox = %sandbox.display(), "sandbox garbage collected"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(sandbox = %sandbox.display(), "cannot remove sandbox: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_the_run_and_its_latest_link_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = dir.path().join("runs");
        for run in ["c0", "c1"] {
            std::fs::create_dir_all(runs.join(run)).expect("mkdir");
            std::fs::write(runs.join(run).join("stdout"), "x").expect("write");
        }
        std::os::unix::fs::symlink("c1", runs.join("latest")).expect("link");
        remove(&runs.join("c0"));
        assert!(!runs.join("c0").exists());
        assert!(runs.join("latest/stdout").exists(), "the newer run keeps its link");
        remove(&runs.join("c1"));
        assert!(!runs.join("c1").exists());
        assert!(std::fs::symlink_metadata(runs.join("latest")).is_err());
        // Twice is harmless.
        remove(&runs.join("c1"));
    }

    #[tokio::test]
    async fn scheduled_removal_waits_for_the_delay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("runs/c0");
        std::fs::create_dir_all(&run).expect("mkdir");
        schedule(run.clone(), Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(run.exists());
        for _ in 0..100 {
            if !run.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sandbox was not removed");
    }
}
