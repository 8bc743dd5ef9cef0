//! The cgroup v1 control files: limits (`cpu.shares`, `cpu.cfs_*`, `memory.limit_in_bytes`,
//! `pids.max`), statistics (`cpuacct.stat`, `cpu.stat`, `memory.stat`, `pids.current`), OOM
//! kills (`memory.oom_control`) and the freezer. Each controller has its own directory, given
//! by the caller; nothing here knows where the hierarchies are mounted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CgroupError, Limits, Stats, keyed, read, write};

pub(super) fn set_limits(
    dirs: &BTreeMap<String, PathBuf>,
    limits: &Limits,
) -> Result<(), CgroupError> {
    let dir = |name: &str| dirs.get(name).ok_or_else(|| CgroupError::NoController(name.into()));
    if let Some(shares) = limits.cpu_shares {
        write(&dir("cpu")?.join("cpu.shares"), &shares.to_string())?;
    }
    if let Some(quota) = limits.cfs_quota_us {
        let cpu = dir("cpu")?;
        write(&cpu.join("cpu.cfs_period_us"), &limits.cfs_period_us.to_string())?;
        write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
    }
    if let Some(bytes) = limits.memory_bytes {
        let memory = dir("memory")?;
        // Mesos sets the soft limit to the same value, so that memory pressure reclaims from
        // the containers above their share first.
        write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
        write(&memory.join("memory.soft_limit_in_bytes"), &bytes.to_string())?;
    }
    if let Some(pids) = dirs.get("pids") {
        let value = limits.pids_max.map_or_else(|| "max".to_string(), |n| n.to_string());
        write(&pids.join("pids.max"), &value)?;
    }
    Ok(())
}

/// Clock ticks per second, the unit of `cpuacct.stat`: USER_HZ, which the kernel's
/// user-space ABI fixes at 100 whatever its internal tick rate.
fn clock_ticks() -> f64 {
    100.0
}

pub(super) fn stats(dirs: &BTreeMap<String, PathBuf>) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    if let Some(dir) = dirs.get("cpuacct") {
        let text = read(&dir.join("cpuacct.stat"))?;
        let fields = keyed(&text);
        let ticks = clock_ticks();
        stats.cpus_user_time_secs = fields.get("user").map(|t| *t as f64 / ticks);
        stats.cpus_system_time_secs = fields.get("system").map(|t| *t as f64 / ticks);
    }
    if let Some(dir) = dirs.get("cpu") {
        let text = read(&dir.join("cpu.stat"))?;
        let fields = keyed(&text);
        stats.cpus_nr_periods = fields.get("nr_periods").copied();
        stats.cpus_nr_throttled = fields.get("nr_throttled").copied();
        stats.cpus_throttled_time_secs =
            fields.get("throttled_time").map(|ns| Duration::from_nanos(*ns).as_secs_f64());
        let quota = read(&dir.join("cpu.cfs_quota_us"))?;
        let period = read(&dir.join("cpu.cfs_period_us"))?;
        if let (Ok(quota), Ok(period)) = (quota.trim().parse::<i64>(), period.trim().parse::<i64>())
            && quota > 0
            && period > 0
        {
            stats.cpus_limit = Some(quota as f64 / period as f64);
        } else if let Ok(shares) = read(&dir.join("cpu.shares"))
            && let Ok(shares) = shares.trim().parse::<u64>()
        {
            // Without a quota the container's cpus are what its shares stand for (1024 each).
            stats.cpus_limit = Some(shares as f64 / 1024.0);
        }
    }
    if let Some(dir) = dirs.get("memory") {
        let text = read(&dir.join("memory.stat"))?;
        let fields = keyed(&text);
        // `total_rss` counts the cgroup's descendants too; a container has none of its own,
        // but nested cgroups would still be its memory.
        stats.mem_rss_bytes = fields.get("total_rss").or_else(|| fields.get("rss")).copied();
        stats.mem_total_bytes = parse(&dir.join("memory.usage_in_bytes"))?;
        stats.mem_limit_bytes = parse(&dir.join("memory.limit_in_bytes"))?;
        stats.oom_kills = oom_kills(dir);
    }
    if let Some(dir) = dirs.get("pids") {
        stats.pids_current = parse(&dir.join("pids.current"))?;
    }
    Ok(stats)
}

/// A single number, or `None` for v1's "no limit" sentinels ("max", a huge value).
fn parse(path: &Path) -> Result<Option<u64>, CgroupError> {
    let text = read(path)?;
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| CgroupError::Parse { path: path.to_path_buf(), content: text.to_string() })
}

/// `oom_kill` of `memory.oom_control` (kernels since 4.13).
pub(super) fn oom_kills(memory: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(memory.join("memory.oom_control")).ok()?;
    keyed(&text).get("oom_kill").copied()
}

/// How long a freeze may take before the sweep goes on without it (a member in
/// uninterruptible sleep keeps the state at FREEZING).
const FREEZE_WAIT: Duration = Duration::from_secs(1);

pub(super) fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let state = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    write(&state, want)?;
    if !frozen {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + FREEZE_WAIT;
    while read(&state)?.trim() != want && std::time::Instant::now() < deadline {
        // Writing again makes the kernel retry the members it could not freeze yet.
        std::thread::sleep(Duration::from_millis(1));
        write(&state, want)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Cgroups, Layout, Limits};
    use std::collections::BTreeMap;
    use std::path::Path;

    /// A fake v1 tree: one "mount" per controller, cpu and cpuacct sharing one, with the
    /// files the kernel would have in a new cgroup.
    fn fake(root: &Path) -> Cgroups {
        let mut controllers = BTreeMap::new();
        for (name, mount) in [
            ("cpu", "cpu,cpuacct"),
            ("cpuacct", "cpu,cpuacct"),
            ("memory", "memory"),
            ("pids", "pids"),
            ("freezer", "freezer"),
        ] {
            controllers.insert(name.to_string(), root.join(mount));
        }
        Cgroups::new(Layout::V1 { controllers }, "agora")
    }

    fn put(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).expect("write fake file");
    }

    #[test]
    fn a_container_gets_a_directory_per_hierarchy_with_its_limits() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cgroups = fake(tmp.path());
        let c = cgroups.container("c1", &["cpu", "cpuacct", "memory", "pids"]);
        c.create().expect("create");
        let dirs = c.dirs();
        assert_eq!(dirs.len(), 4, "cpu and cpuacct share one directory: {dirs:?}");
        let limits =
            Limits { pids_max: Some(50), ..Limits::for_resources(Some(0.5), Some(64.0), true) };
        c.set_limits(&limits).expect("limits");
        let cpu = tmp.path().join("cpu,cpuacct/agora/c1");
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
        let memory = tmp.path().join("memory/agora/c1");
        assert_eq!(read(&memory.join("memory.limit_in_bytes")), (64u64 << 20).to_string());
        assert_eq!(read(&tmp.path().join("pids/agora/c1/pids.max")), "50");
        assert_eq!(
            c.procs_files()[0],
            tmp.path().join("cpu,cpuacct/agora/c1/cgroup.procs"),
            "the helper joins through these files"
        );
    }

    #[test]
    fn statistics_are_read_in_mesos_units() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cgroups = fake(tmp.path());
        let c = cgroups.container("c1", &["cpu", "cpuacct", "memory", "pids"]);
        c.create().expect("create");
        let cpu = tmp.path().join("cpu,cpuacct/agora/c1");
        let ticks = super::clock_ticks() as u64;
        put(&cpu, "cpuacct.stat", &format!("user {}\nsystem {}\n", 3 * ticks, ticks / 2));
        put(&cpu, "cpu.stat", "nr_periods 10\nnr_throttled 4\nthrottled_time 2500000000\n");
        put(&cpu, "cpu.cfs_quota_us", "50000\n");
        put(&cpu, "cpu.cfs_period_us", "100000\n");
        let memory = tmp.path().join("memory/agora/c1");
        put(&memory, "memory.stat", "cache 5\nrss 4096\ntotal_rss 8192\n");
        put(&memory, "memory.usage_in_bytes", "10000\n");
        put(&memory, "memory.limit_in_bytes", "67108864\n");
        put(&memory, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        put(&tmp.path().join("pids/agora/c1"), "pids.current", "7\n");
        let s = c.stats().expect("stats");
        assert_eq!(s.cpus_user_time_secs, Some(3.0));
        assert_eq!(s.cpus_system_time_secs, Some((ticks / 2) as f64 / ticks as f64));
        assert_eq!(s.cpus_nr_periods, Some(10));
        assert_eq!(s.cpus_nr_throttled, Some(4));
        assert_eq!(s.cpus_throttled_time_secs, Some(2.5));
        assert_eq!(s.cpus_limit, Some(0.5));
        assert_eq!(s.mem_rss_bytes, Some(8192));
        assert_eq!(s.mem_total_bytes, Some(10000));
        assert_eq!(s.mem_limit_bytes, Some(64 << 20));
        assert_eq!(s.pids_current, Some(7));
        assert_eq!(s.oom_kills, Some(2));
        assert_eq!(c.oom_kills(), 2);
    }

    #[test]
    fn freeze_kill_and_remove_work_on_a_tree_with_nobody_in_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cgroups = fake(tmp.path());
        let c = cgroups.container("c1", &["memory"]);
        c.create().expect("create");
        let freezer = tmp.path().join("freezer/agora/c1");
        assert!(c.freeze(true).expect("freeze"));
        assert_eq!(std::fs::read_to_string(freezer.join("freezer.state")).expect("read"), "FROZEN");
        put(&freezer, "cgroup.procs", "");
        put(&tmp.path().join("memory/agora/c1"), "cgroup.procs", "");
        c.destroy().expect("destroy");
        assert!(!freezer.exists());
        assert!(!tmp.path().join("memory/agora/c1").exists());
        assert_eq!(c.oom_kills(), 0, "a missing counter reads as none");
        c.remove().expect("removing twice is fine");
    }

    #[test]
    fn a_missing_controller_is_an_error_for_its_limit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cgroups = fake(tmp.path());
        let c = cgroups.container("c1", &["cpu"]);
        c.create().expect("create");
        let err = c.set_limits(&Limits { memory_bytes: Some(1 << 30), ..Limits::default() });
        assert!(matches!(err, Err(super::CgroupError::NoController(name)) if name == "memory"));
    }
}
