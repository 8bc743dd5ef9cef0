//! What an executor's container uses, as Mesos's `ResourceStatistics`, for GET_CONTAINERS and
//! `/monitor/statistics`: CPU time, resident memory, processes and threads summed over the
//! executor's process tree, read from `/proc`, and the sandbox's disk use.
//!
//! The tree is the executor's session (the launcher makes every executor a session leader, or
//! at least a process-group leader), which is what the agent kills when the executor ends, so
//! what is measured is what the container holds. This is the stand-in until the cgroups
//! isolator lands: it will read the same figures (and throttling, memory limits) from the
//! container's cgroup instead, behind the same `Processes::statistics`. Nothing here changes any
//! state; every read is best effort, since processes come and go while they are read.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_proto::v1;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ, which Linux fixes at 100 on every
/// architecture for userspace compatibility (whatever the kernel's own HZ).
const USER_HZ: f64 = 100.0;

/// The limits the container was given: its executor's resources plus its live tasks'.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    pub(crate) cpus: f64,
    /// `mem` in MB, as resources count it.
    pub(crate) mem_mb: f64,
    /// `disk` in MB; 0 when none was asked for.
    pub(crate) disk_mb: f64,
}

/// The figures of one process, as `/proc` gives them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Process {
    session: i32,
    group: i32,
    /// User and system time in ticks, including waited-for children's.
    user_ticks: u64,
    system_ticks: u64,
    threads: u64,
}

/// Every process on the machine with its figures, read once for a round of measurements.
pub(crate) struct Processes(Vec<(i32, Process)>);

impl Processes {
    /// Every process `/proc` lists; those that vanish while read are skipped.
    pub(crate) fn read() -> Self {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self(Vec::new());
        };
        let processes = entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some((pid, parse_stat(&stat)?))
            })
            .collect();
        Self(processes)
    }

    /// Measures the container whose executor leads session (or process group) `leader`;
    /// `None` when the executor's process is not known (still starting), which leaves the
    /// process figures out.
    pub(crate) fn statistics(
        &self,
        leader: Option<i32>,
        sandbox: &Path,
        limits: Limits,
    ) -> v1::ResourceStatistics {
        let timestamp =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut stats = v1::ResourceStatistics {
            timestamp,
            cpus_limit: Some(limits.cpus),
            mem_limit_bytes: Some(mb_to_bytes(limits.mem_mb)),
            disk_used_bytes: Some(disk_used(sandbox)),
            ..Default::default()
        };
        if limits.disk_mb > 0.0 {
            stats.disk_limit_bytes = Some(mb_to_bytes(limits.disk_mb));
        }
        let Some(leader) = leader else {
            return stats;
        };
        let (mut user, mut system, mut rss, mut processes, mut threads) = (0, 0, 0, 0, 0);
        for (pid, process) in &self.0 {
            if process.session != leader && process.group != leader {
                continue;
            }
            user += process.user_ticks;
            system += process.system_ticks;
            threads += process.threads;
            processes += 1;
            rss += resident_bytes(*pid).unwrap_or(0);
        }
        stats.cpus_user_time_secs = Some(user as f64 / USER_HZ);
        stats.cpus_system_time_secs = Some(system as f64 / USER_HZ);
        stats.mem_rss_bytes = Some(rss);
        stats.processes = Some(u32::try_from(processes).unwrap_or(u32::MAX));
        stats.threads = Some(u32::try_from(threads).unwrap_or(u32::MAX));
        stats
    }
}

/// Replaces the `/proc` figures by what a container's cgroup measured, where it measured
/// something: the cgroup also holds processes that left the executor's session.
pub(crate) fn overlay(stats: &mut v1::ResourceStatistics, cgroup: &crate::cgroups::Stats) {
    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let fields = [
        (&mut stats.cpus_user_time_secs, cgroup.cpus_user_time_secs),
        (&mut stats.cpus_system_time_secs, cgroup.cpus_system_time_secs),
        (&mut stats.cpus_throttled_time_secs, cgroup.cpus_throttled_time_secs),
        (&mut stats.cpus_limit, cgroup.cpus_limit),
    ];
    for (field, value) in fields {
        if value.is_some() {
            *field = value;
        }
    }
    let bytes = [
        (&mut stats.mem_rss_bytes, cgroup.mem_rss_bytes),
        (&mut stats.mem_total_bytes, cgroup.mem_total_bytes),
        (&mut stats.mem_limit_bytes, cgroup.mem_limit_bytes),
    ];
    for (field, value) in bytes {
        if value.is_some() {
            *field = value;
        }
    }
    let counts = [
        (&mut stats.cpus_nr_periods, cgroup.cpus_nr_periods),
        (&mut stats.cpus_nr_throttled, cgroup.cpus_nr_throttled),
        (&mut stats.processes, cgroup.pids_current),
    ];
    for (field, value) in counts {
        if let Some(value) = value {
            *field = Some(small(value));
        }
    }
}

fn mb_to_bytes(mb: f64) -> u64 {
    // Resources are never negative, and a limit beyond u64 is no limit at all.
    (mb * 1024.0 * 1024.0) as u64
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (the state), so field N is `fields[N - 3]`.
    let number = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let ticks = |n: usize| number(n).and_then(|v| u64::try_from(v).ok());
    Some(Process {
        group: i32::try_from(number(5)?).ok()?,
        session: i32::try_from(number(6)?).ok()?,
        // utime + cutime, stime + cstime: a finished child's time moves to its parent.
        user_ticks: ticks(14)? + ticks(16).unwrap_or(0),
        system_ticks: ticks(15)? + ticks(17).unwrap_or(0),
        threads: ticks(20)?,
    })
}

/// `VmRSS` of `/proc/<pid>/status` in bytes (absent for kernel threads and zombies).
fn resident_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the sandbox takes on disk, as `du` counts it: allocated blocks, each file once per
/// visit, links not followed (persistent volumes are linked in and are not the sandbox's).
pub(crate) fn disk_used(sandbox: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![sandbox.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        total += metadata.blocks() * 512;
        if metadata.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "4242 (my (odd) name) S 1 4240 4241 0 -1 4194560 100 0 0 0 \
                    250 30 7 3 20 0 5 0 123456 1000000 300 18446744073709551615";
        let process = parse_stat(stat).expect("parses");
        assert_eq!(
            process,
            Process { group: 4240, session: 4241, user_ticks: 257, system_ticks: 33, threads: 5 }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn rss_is_read_in_bytes() {
        assert_eq!(
            parse_rss("Name:\tsleep\nVmRSS:\t    1536 kB\nThreads:\t1\n"),
            Some(1536 * 1024)
        );
        assert_eq!(parse_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn this_process_tree_is_measured() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("stdout"), vec![b'x'; 64 * 1024]).expect("write");
        // The test runs in some session; measuring it finds at least this process.
        let me = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let session = parse_stat(&me).expect("parses").session;
        let limits = Limits { cpus: 1.5, mem_mb: 64.0, disk_mb: 0.0 };
        let processes = Processes::read();
        let stats = processes.statistics(Some(session), dir.path(), limits);
        assert!(stats.timestamp > 0.0);
        assert_eq!(stats.cpus_limit, Some(1.5));
        assert_eq!(stats.mem_limit_bytes, Some(64 << 20));
        assert_eq!(stats.disk_limit_bytes, None);
        assert!(stats.mem_rss_bytes.unwrap_or(0) > 0);
        assert!(stats.processes.unwrap_or(0) >= 1);
        assert!(stats.threads.unwrap_or(0) >= 1);
        assert!(stats.disk_used_bytes.unwrap_or(0) >= 64 * 1024);
        let unknown = processes.statistics(None, dir.path(), limits);
        assert_eq!((unknown.mem_rss_bytes, unknown.processes), (None, None));
    }
}
