//! Control groups for containers (reference §7.5): finding the hierarchies this machine has,
//! one cgroup per container under a configurable root, its limits, its members, its
//! statistics, its OOM kills, and its end (freeze, kill every member, wait, remove).
//!
//! Both versions are supported. A machine with any v1 controller hierarchy we use (cpu,
//! cpuacct, memory, pids, freezer) is treated as v1, as Mesos does on hybrid machines, whose
//! cgroup2 mount then has none of those controllers; a machine with only a cgroup2 mount is v2.
//! The file formats of each version live in `v1.rs` and `v2.rs`; this file owns the layout,
//! the container's directories and the kill sequence, and works on any root directory, so the
//! unit tests run against a fake tree in a temp dir.
//!
//! This module does not decide which isolators run or what limits a container gets: the
//! launcher does, from `--isolation` and the container's resources. It does no namespaces.

mod v1;
mod v2;

#[cfg(test)]
mod privileged_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The v1 controllers a container may use (the freezer only to kill it cleanly).
pub const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "freezer"];

/// How long `destroy` waits for the members of a killed cgroup to be gone before it gives up.
/// A process in uninterruptible sleep can take a while to die; the cgroup is then left for the
/// next attempt rather than blocking the agent.
const EMPTY_WAIT: Duration = Duration::from_secs(10);
const EMPTY_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write '{value}' to {path}: {source}")]
    Write { path: PathBuf, value: String, source: std::io::Error },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("{path} still has processes after they were killed")]
    NotEmpty { path: PathBuf },
    #[error("no hierarchy for controller {0}")]
    NoController(String),
    #[error("unexpected content in {path}: {content}")]
    Parse { path: PathBuf, content: String },
}

/// The cgroup hierarchies of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One mount per controller (or per group of controllers mounted together).
    V1 { controllers: BTreeMap<String, PathBuf> },
    /// The unified hierarchy.
    V2 { root: PathBuf },
}

impl Layout {
    /// Detects the layout of this machine from `/proc/self/mountinfo`; `None` when there is
    /// no usable hierarchy (the caller falls back to posix isolation).
    pub fn detect() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Self::from_mountinfo(&text)
    }

    /// The layout described by the text of a mountinfo file (`proc(5)`): cgroup mounts carry
    /// their controllers in the super options (`rw,cpu,cpuacct`), a cgroup2 mount has none.
    pub fn from_mountinfo(text: &str) -> Option<Self> {
        let mut controllers = BTreeMap::new();
        let mut unified = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let Some(mount_point) = left.split_whitespace().nth(4) else { continue };
            let mut right = right.split_whitespace();
            let (Some(fstype), _source, Some(options)) = (right.next(), right.next(), right.next())
            else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mount_point));
            match fstype {
                "cgroup" => {
                    for option in options.split(',') {
                        if V1_CONTROLLERS.contains(&option) {
                            controllers.entry(option.to_string()).or_insert(mount_point.clone());
                        }
                    }
                }
                "cgroup2" if unified.is_none() => unified = Some(mount_point),
                _ => {}
            }
        }
        if !controllers.is_empty() {
            Some(Layout::V1 { controllers })
        } else {
            unified.map(|root| Layout::V2 { root })
        }
    }

    pub fn version(&self) -> u8 {
        match self {
            Layout::V1 { .. } => 1,
            Layout::V2 { .. } => 2,
        }
    }
}

/// Mountinfo escapes space, tab, newline and backslash as three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && field.is_char_boundary(i + 4)
            && let Ok(code) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a container's cgroup is limited to; `None` leaves a knob alone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// v1 `cpu.shares` (v2: converted to `cpu.weight`).
    pub cpu_shares: Option<u64>,
    /// CFS quota per period, in microseconds (`None`: no hard cap).
    pub cfs_quota_us: Option<u64>,
    pub cfs_period_us: u64,
    pub memory_bytes: Option<u64>,
    /// `pids.max`; `None` leaves it unlimited.
    pub pids_max: Option<u64>,
}

/// Mesos's CFS period: 100 ms.
pub const CFS_PERIOD_US: u64 = 100_000;
/// Mesos's smallest quota: 1 ms per period.
const MIN_CFS_QUOTA_US: u64 = 1_000;
/// Mesos's smallest shares and memory limit.
const MIN_SHARES: u64 = 2;
const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

impl Limits {
    /// The limits Mesos gives a container with `cpus` and `mem_mb` (reference §7.5):
    /// `cpu.shares = 1024 × cpus` (at least 2), with `cfs` a quota of `cpus × period` (at least
    /// 1 ms), and a memory limit of `mem` (at least 32 MB).
    pub fn for_resources(cpus: Option<f64>, mem_mb: Option<f64>, cfs: bool) -> Self {
        let cpus = cpus.filter(|c| c.is_finite() && *c > 0.0);
        Limits {
            cpu_shares: cpus.map(|c| ((c * 1024.0) as u64).max(MIN_SHARES)),
            cfs_quota_us: cpus
                .filter(|_| cfs)
                .map(|c| ((c * CFS_PERIOD_US as f64) as u64).max(MIN_CFS_QUOTA_US)),
            cfs_period_us: CFS_PERIOD_US,
            memory_bytes: mem_mb
                .filter(|m| m.is_finite() && *m > 0.0)
                .map(|m| ((m * 1024.0 * 1024.0) as u64).max(MIN_MEMORY_BYTES)),
            pids_max: None,
        }
    }
}

/// Usage figures of a container, in the units of Mesos's ResourceStatistics (reference §4.4);
/// what a hierarchy does not have stays `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub cpus_user_time_secs: Option<f64>,
    pub cpus_system_time_secs: Option<f64>,
    pub cpus_nr_periods: Option<u64>,
    pub cpus_nr_throttled: Option<u64>,
    pub cpus_throttled_time_secs: Option<f64>,
    /// The CFS quota as cpus (quota / period), when there is one.
    pub cpus_limit: Option<f64>,
    pub mem_rss_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub mem_limit_bytes: Option<u64>,
    pub pids_current: Option<u64>,
    /// Processes the kernel's OOM killer killed in this cgroup.
    pub oom_kills: Option<u64>,
}

/// Where containers' cgroups go: a layout plus the name of the directory under each hierarchy
/// that holds them (Mesos: `mesos`; ours: `--cgroups_root`, `agora` by default).
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub layout: Layout,
    pub root: String,
}

impl Cgroups {
    pub fn new(layout: Layout, root: impl Into<String>) -> Self {
        Self { layout, root: root.into() }
    }

    /// The cgroup of container `id` with the controllers `wanted` (v1 names; the freezer is
    /// added when the machine has one, for killing). Nothing is created yet.
    pub fn container(&self, id: &str, wanted: &[&str]) -> Container {
        match &self.layout {
            Layout::V1 { controllers } => {
                let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
                for name in wanted.iter().copied().chain(["freezer"]) {
                    if let Some(mount) = controllers.get(name) {
                        dirs.insert(name.to_string(), mount.join(&self.root).join(id));
                    }
                }
                Container { version: Version::V1 { dirs } }
            }
            Layout::V2 { root } => Container {
                version: Version::V2 {
                    parent: root.join(&self.root),
                    dir: root.join(&self.root).join(id),
                    controllers: wanted
                        .iter()
                        .filter_map(|c| match *c {
                            "cpu" | "cpuacct" => Some("cpu"),
                            "memory" => Some("memory"),
                            "pids" => Some("pids"),
                            _ => None,
                        })
                        .collect(),
                },
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    /// One directory per controller (controllers mounted together share a directory).
    V1 {
        dirs: BTreeMap<String, PathBuf>,
    },
    V2 {
        parent: PathBuf,
        dir: PathBuf,
        controllers: Vec<&'static str>,
    },
}

/// One container's cgroup (a directory per v1 hierarchy, or one v2 directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    version: Version,
}

impl Container {
    /// Every directory of this cgroup, each once.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.version {
            Version::V1 { dirs } => {
                let mut out: Vec<PathBuf> = dirs.values().cloned().collect();
                out.sort();
                out.dedup();
                out
            }
            Version::V2 { dir, .. } => vec![dir.clone()],
        }
    }

    /// The `cgroup.procs` files a process writes its pid to in order to join (the launch
    /// helper does that before it execs the executor).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The directory of `controller` (v1 name; on v2 the one directory).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        match &self.version {
            Version::V1 { dirs } => dirs.get(controller).map(PathBuf::as_path),
            Version::V2 { dir, .. } => Some(dir),
        }
    }

    /// Creates the directories (and, on v2, delegates the controllers down to them).
    pub fn create(&self) -> Result<(), CgroupError> {
        if let Version::V2 { parent, controllers, .. } = &self.version {
            v2::delegate(parent, controllers)?;
        }
        for dir in self.dirs() {
            std::fs::create_dir_all(&dir)
                .map_err(|source| CgroupError::Create { path: dir, source })?;
        }
        Ok(())
    }

    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        match &self.version {
            Version::V1 { dirs } => v1::set_limits(dirs, limits),
            Version::V2 { dir, .. } => v2::set_limits(dir, limits),
        }
    }

    /// Moves process `pid` into every directory of the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for file in self.procs_files() {
            write(&file, &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the cgroup (in any of its directories).
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        for file in self.procs_files() {
            match std::fs::read_to_string(&file) {
                Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                // A directory already removed has nobody in it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Read { path: file, source }),
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match &self.version {
            Version::V1 { dirs } => v1::stats(dirs),
            Version::V2 { dir, .. } => v2::stats(dir),
        }
    }

    /// How many processes the OOM killer has killed in this cgroup (0 without a memory
    /// controller). Polled: an increase means the container hit its memory limit.
    pub fn oom_kills(&self) -> u64 {
        match &self.version {
            Version::V1 { dirs } => dirs.get("memory").and_then(|d| v1::oom_kills(d)),
            Version::V2 { dir, .. } => v2::oom_kills(dir),
        }
        .unwrap_or(0)
    }

    /// Stops every member where it is, so none can fork while the cgroup is swept. `false`
    /// when this hierarchy cannot freeze.
    pub fn freeze(&self, frozen: bool) -> Result<bool, CgroupError> {
        match &self.version {
            Version::V1 { dirs } => match dirs.get("freezer") {
                Some(dir) => v1::freeze(dir, frozen).map(|()| true),
                None => Ok(false),
            },
            Version::V2 { dir, .. } => v2::freeze(dir, frozen),
        }
    }

    /// SIGKILLs every member: at once through `cgroup.kill` where the kernel has it (v2),
    /// else frozen, killed one by one and thawed (so the SIGKILLs are delivered), swept
    /// again while anybody is left (a member of a hierarchy without a freezer may fork while
    /// it is swept).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        if let Version::V2 { dir, .. } = &self.version
            && v2::kill(dir)?
        {
            return Ok(());
        }
        let frozen = self.freeze(true)?;
        for pid in self.procs()? {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if frozen {
            self.freeze(false)?;
        }
        Ok(())
    }

    /// Waits until no process is left, killing again what still is (bounded by
    /// `EMPTY_WAIT`).
    pub fn wait_empty(&self) -> Result<(), CgroupError> {
        let deadline = std::time::Instant::now() + EMPTY_WAIT;
        loop {
            let left = self.procs()?;
            if left.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                let path = self.dirs().into_iter().next().unwrap_or_default();
                return Err(CgroupError::NotEmpty { path });
            }
            self.kill_all()?;
            std::thread::sleep(EMPTY_POLL);
        }
    }

    /// Kills every member, waits until they are gone and removes the directories: the end of
    /// a container, whatever its processes did (double-forked daemons and new sessions
    /// included). Blocking; call it off the async runtime.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.kill_all()?;
        self.wait_empty()?;
        self.remove()
    }

    /// Removes the (empty) directories; ones already gone are fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            remove_dir(&dir)?;
        }
        Ok(())
    }
}

/// Removes a cgroup directory. On a cgroup filesystem `rmdir` is the way even though the
/// directory lists control files; anywhere else (a test's fake tree) the files are real and
/// go too.
fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    let on_cgroupfs = nix::sys::statfs::statfs(dir).is_ok_and(|s| {
        let kind = s.filesystem_type();
        kind == nix::sys::statfs::CGROUP_SUPER_MAGIC
            || kind == nix::sys::statfs::CGROUP2_SUPER_MAGIC
    });
    let result = if on_cgroupfs { std::fs::remove_dir(dir) } else { std::fs::remove_dir_all(dir) };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Remove { path: dir.to_path_buf(), source }),
    }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })
}

/// The `key value` lines of a flat-keyed file (`cpu.stat`, `memory.stat`, `memory.events`).
pub(crate) fn keyed(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key, value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_machines_are_v1_and_joint_mounts_serve_each_controller() {
        let Some(Layout::V1 { controllers }) = Layout::from_mountinfo(HYBRID) else {
            panic!("not v1");
        };
        assert_eq!(controllers["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(controllers["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(controllers["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(!controllers.contains_key("pids"));
        assert!(!controllers.contains_key("name=systemd"));
    }

    #[test]
    fn unified_only_machines_are_v2_and_none_is_none() {
        let text = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Layout::from_mountinfo(text),
            Some(Layout::V2 { root: PathBuf::from("/sys/fs/cgroup") })
        );
        assert_eq!(Layout::from_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), None);
        assert_eq!(Layout::from_mountinfo("garbage\n\n - \n"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        let text = "1 1 0:1 / /tmp/a\\040b rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            Layout::from_mountinfo(text),
            Some(Layout::V2 { root: PathBuf::from("/tmp/a b") })
        );
    }

    #[test]
    fn this_machine_has_a_layout_or_none_without_panicking() {
        let _ = Layout::detect();
    }

    #[test]
    fn limits_follow_mesos_formulas() {
        let l = Limits::for_resources(Some(0.5), Some(64.0), true);
        assert_eq!(l.cpu_shares, Some(512));
        assert_eq!(l.cfs_quota_us, Some(50_000));
        assert_eq!(l.memory_bytes, Some(64 << 20));
        let tiny = Limits::for_resources(Some(0.001), Some(1.0), true);
        assert_eq!(tiny.cpu_shares, Some(2));
        assert_eq!(tiny.cfs_quota_us, Some(1_000));
        assert_eq!(tiny.memory_bytes, Some(32 << 20));
        let no_cfs = Limits::for_resources(Some(2.0), None, false);
        assert_eq!(no_cfs.cfs_quota_us, None);
        assert_eq!(no_cfs.memory_bytes, None);
    }
}
