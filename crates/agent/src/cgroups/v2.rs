//! The cgroup v2 control files: delegating controllers down (`cgroup.subtree_control`),
//! limits (`cpu.weight`, `cpu.max`, `memory.max`, `pids.max`), statistics (`cpu.stat`,
//! `memory.stat`, `memory.current`, `pids.current`), OOM kills (`memory.events`), freezing
//! (`cgroup.freeze`, confirmed by `cgroup.events`) and `cgroup.kill`.
//!
//! A v2 cgroup has only the controllers its parent delegates; the core files (procs, kill,
//! freeze, events, the usage part of cpu.stat) are always there, and everything else is read
//! only when present, so a hierarchy without controllers still reports what it has.

use std::path::Path;
use std::time::Duration;

use super::{CgroupError, Limits, Stats, keyed, read, write};

/// Makes `controllers` available to the cgroups under `parent` (writing `+name` to the
/// `cgroup.subtree_control` of the hierarchy's root and of `parent`). Controllers the
/// hierarchy does not have are skipped: their limits fail later, by name.
pub(super) fn delegate(parent: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    std::fs::create_dir_all(parent)
        .map_err(|source| CgroupError::Create { path: parent.to_path_buf(), source })?;
    let Some(root) = parent.parent() else { return Ok(()) };
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    for level in [root, parent] {
        for controller in controllers {
            if available.split_whitespace().any(|c| c == *controller) {
                write(&level.join("cgroup.subtree_control"), &format!("+{controller}"))?;
            }
        }
    }
    Ok(())
}

/// v1 shares to v2 weight, the mapping systemd and runc use: [2, 262144] onto [1, 10000].
pub(super) fn weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + (shares - 2) * 9_999 / 262_142
}

pub(super) fn set_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    if let Some(shares) = limits.cpu_shares {
        write(&dir.join("cpu.weight"), &weight(shares).to_string())?;
    }
    if let Some(quota) = limits.cfs_quota_us {
        write(&dir.join("cpu.max"), &format!("{quota} {}", limits.cfs_period_us))?;
    }
    if let Some(bytes) = limits.memory_bytes {
        write(&dir.join("memory.max"), &bytes.to_string())?;
    }
    if let Some(pids) = limits.pids_max {
        write(&dir.join("pids.max"), &pids.to_string())?;
    }
    Ok(())
}

/// A file that may be missing (its controller is not delegated here).
fn optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read { path: path.to_path_buf(), source }),
    }
}

fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

pub(super) fn stats(dir: &Path) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    if let Some(text) = optional(&dir.join("cpu.stat"))? {
        let fields = keyed(&text);
        let secs = |key: &str| fields.get(key).map(|us| Duration::from_micros(*us).as_secs_f64());
        stats.cpus_user_time_secs = secs("user_usec");
        stats.cpus_system_time_secs = secs("system_usec");
        stats.cpus_nr_periods = fields.get("nr_periods").copied();
        stats.cpus_nr_throttled = fields.get("nr_throttled").copied();
        stats.cpus_throttled_time_secs = secs("throttled_usec");
    }
    if let Some(text) = optional(&dir.join("cpu.max"))? {
        let mut parts = text.split_whitespace();
        if let (Some(Ok(quota)), Some(Ok(period))) =
            (parts.next().map(str::parse::<f64>), parts.next().map(str::parse::<f64>))
            && period > 0.0
        {
            stats.cpus_limit = Some(quota / period);
        }
    }
    if let Some(text) = optional(&dir.join("memory.stat"))? {
        // v2 has no "rss": anonymous memory is what v1 counted as rss.
        stats.mem_rss_bytes = keyed(&text).get("anon").copied();
    }
    stats.mem_total_bytes = optional(&dir.join("memory.current"))?.as_deref().and_then(number);
    stats.mem_limit_bytes = optional(&dir.join("memory.max"))?.as_deref().and_then(number);
    stats.pids_current = optional(&dir.join("pids.current"))?.as_deref().and_then(number);
    stats.oom_kills = oom_kills(dir);
    Ok(stats)
}

/// `oom_kill` of `memory.events`.
pub(super) fn oom_kills(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("memory.events")).ok()?;
    keyed(&text).get("oom_kill").copied()
}

/// How long a freeze may take before the sweep goes on without it.
const FREEZE_WAIT: Duration = Duration::from_secs(1);

/// `false` when the kernel has no `cgroup.freeze` (before 5.2).
pub(super) fn freeze(dir: &Path, frozen: bool) -> Result<bool, CgroupError> {
    let file = dir.join("cgroup.freeze");
    if !file.exists() {
        return Ok(false);
    }
    write(&file, if frozen { "1" } else { "0" })?;
    let deadline = std::time::Instant::now() + FREEZE_WAIT;
    // `cgroup.events` says when every member has actually stopped.
    while frozen && std::time::Instant::now() < deadline {
        let events = read(&dir.join("cgroup.events"))?;
        if keyed(&events).get("frozen") == Some(&1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(true)
}

/// Kills every member at once through `cgroup.kill` (kernels since 5.14); `false` without it.
pub(super) fn kill(dir: &Path) -> Result<bool, CgroupError> {
    let file = dir.join("cgroup.kill");
    if !file.exists() {
        return Ok(false);
    }
    write(&file, "1")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::{Cgroups, Layout, Limits};
    use std::path::Path;

    fn put(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).expect("write fake file");
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read")
    }

    /// A fake unified root with every controller available.
    fn fake(root: &Path) -> Cgroups {
        put(root, "cgroup.controllers", "cpuset cpu io memory pids\n");
        Cgroups::new(Layout::V2 { root: root.to_path_buf() }, "agora")
    }

    #[test]
    fn weights_map_shares_like_systemd() {
        assert_eq!(super::weight(2), 1);
        assert_eq!(super::weight(262_144), 10_000);
        assert_eq!(super::weight(1024), 39);
        assert_eq!(super::weight(0), 1);
    }

    #[test]
    fn a_container_is_one_directory_with_delegated_controllers_and_limits() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = fake(tmp.path()).container("c1", &["cpu", "cpuacct", "memory", "pids"]);
        c.create().expect("create");
        let dir = tmp.path().join("agora/c1");
        assert_eq!(c.dirs(), vec![dir.clone()]);
        // The fake file keeps the last write; the kernel keeps the set.
        assert_eq!(read(&tmp.path().join("cgroup.subtree_control")), "+pids");
        assert_eq!(read(&tmp.path().join("agora/cgroup.subtree_control")), "+pids");
        let limits =
            Limits { pids_max: Some(64), ..Limits::for_resources(Some(1.0), Some(128.0), true) };
        c.set_limits(&limits).expect("limits");
        assert_eq!(read(&dir.join("cpu.weight")), "39");
        assert_eq!(read(&dir.join("cpu.max")), "100000 100000");
        assert_eq!(read(&dir.join("memory.max")), (128u64 << 20).to_string());
        assert_eq!(read(&dir.join("pids.max")), "64");
    }

    #[test]
    fn controllers_the_hierarchy_lacks_are_not_delegated() {
        let tmp = tempfile::tempdir().expect("tempdir");
        put(tmp.path(), "cgroup.controllers", "hugetlb\n");
        let c = Cgroups::new(Layout::V2 { root: tmp.path().to_path_buf() }, "agora")
            .container("c1", &["memory"]);
        c.create().expect("create");
        assert!(!tmp.path().join("cgroup.subtree_control").exists());
    }

    #[test]
    fn statistics_are_read_in_mesos_units_and_missing_files_stay_none() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = fake(tmp.path()).container("c1", &["cpu", "memory", "pids"]);
        c.create().expect("create");
        let dir = tmp.path().join("agora/c1");
        put(
            &dir,
            "cpu.stat",
            "usage_usec 4500000\nuser_usec 4000000\nsystem_usec 500000\n\
             nr_periods 20\nnr_throttled 5\nthrottled_usec 1500000\n",
        );
        let bare = c.stats().expect("stats with cpu.stat only");
        assert_eq!(bare.cpus_user_time_secs, Some(4.0));
        assert_eq!(bare.mem_limit_bytes, None);
        assert_eq!(bare.oom_kills, None);
        put(&dir, "cpu.max", "50000 100000\n");
        put(&dir, "memory.stat", "anon 4096\nfile 10\n");
        put(&dir, "memory.current", "9000\n");
        put(&dir, "memory.max", "max\n");
        put(&dir, "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        put(&dir, "pids.current", "3\n");
        let s = c.stats().expect("stats");
        assert_eq!(s.cpus_system_time_secs, Some(0.5));
        assert_eq!(s.cpus_nr_periods, Some(20));
        assert_eq!(s.cpus_nr_throttled, Some(5));
        assert_eq!(s.cpus_throttled_time_secs, Some(1.5));
        assert_eq!(s.cpus_limit, Some(0.5));
        assert_eq!(s.mem_rss_bytes, Some(4096));
        assert_eq!(s.mem_total_bytes, Some(9000));
        assert_eq!(s.mem_limit_bytes, None, "max is no limit");
        assert_eq!(s.pids_current, Some(3));
        assert_eq!(c.oom_kills(), 1);
    }

    #[test]
    fn kill_uses_cgroup_kill_and_destroy_removes_the_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = fake(tmp.path()).container("c1", &["memory"]);
        c.create().expect("create");
        let dir = tmp.path().join("agora/c1");
        put(&dir, "cgroup.kill", "");
        put(&dir, "cgroup.procs", "");
        put(&dir, "cgroup.freeze", "0\n");
        put(&dir, "cgroup.events", "populated 0\nfrozen 1\n");
        assert!(c.freeze(true).expect("freeze"));
        assert_eq!(read(&dir.join("cgroup.freeze")), "1");
        c.kill_all().expect("kill");
        assert_eq!(read(&dir.join("cgroup.kill")), "1");
        c.destroy().expect("destroy");
        assert!(!dir.exists());
    }

    #[test]
    fn without_freeze_or_kill_files_the_sweep_still_runs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let c = fake(tmp.path()).container("c1", &[]);
        c.create().expect("create");
        put(&tmp.path().join("agora/c1"), "cgroup.procs", "");
        assert!(!c.freeze(true).expect("freeze"));
        c.destroy().expect("destroy");
    }
}
