//! Tests against this machine's real cgroups: they need root and a cgroup v1 hierarchy (or,
//! for the v2 test, a writable cgroup2 mount with its core files) and say plainly why they
//! skip otherwise. Each test works under a root of its own (`agora-test-<uuid>`) in every
//! hierarchy, removed when the test ends whether it passed or not.

use std::io::Write;
use std::process::{Child, Command};

use super::{Cgroups, Layout, Limits};

/// Why these tests cannot run here, if they cannot.
fn unavailable(version: u8) -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not running as root".into());
    }
    match (Layout::detect(), version) {
        (Some(Layout::V1 { .. }), 1) => None,
        (_, 2) if unified().is_some() => None,
        (layout, _) => Some(format!("no cgroup v{version} hierarchy (found {layout:?})")),
    }
}

/// A cgroup2 mount, also the one beside the v1 hierarchies on a hybrid machine.
fn unified() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split_whitespace().nth(4).map(std::path::PathBuf::from))
}

macro_rules! require {
    ($version:expr) => {
        if let Some(reason) = unavailable($version) {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("privileged cgroup test must run in CI but cannot: {reason}");
            }
            eprintln!("SKIPPED privileged cgroup test: {reason}");
            return;
        }
    };
}

/// A test's own root in every hierarchy, with whatever is left in it killed and removed on
/// drop.
struct TestRoot {
    cgroups: Cgroups,
    children: Vec<Child>,
}

impl TestRoot {
    fn new(layout: Layout) -> Self {
        let root = format!("agora-test-{}", uuid::Uuid::new_v4().simple());
        Self { cgroups: Cgroups::new(layout, root), children: Vec::new() }
    }

    /// Runs `script` in container `c`: the shell waits for a line on stdin, sent once it
    /// has been moved in, so that everything it starts is inside too.
    fn spawn_in(&mut self, c: &super::Container, script: &str) -> i32 {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read _; {script}"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = i32::try_from(child.id()).expect("pids fit i32");
        c.add(pid).expect("add");
        let mut gate = child.stdin.take().expect("piped");
        gate.write_all(b"\n").expect("go-ahead");
        self.children.push(child);
        pid
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dirs: Vec<std::path::PathBuf> = match &self.cgroups.layout {
            Layout::V1 { controllers } => {
                controllers.values().map(|m| m.join(&self.cgroups.root)).collect()
            }
            Layout::V2 { root } => vec![root.join(&self.cgroups.root)],
        };
        for dir in dirs {
            // Children first: containers a failed test left behind.
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.path().is_dir() {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Waits (polling, for as long as it takes) until `done` holds.
fn eventually(mut done: impl FnMut() -> bool) {
    while !done() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn reap(root: &mut TestRoot) {
    for child in &mut root.children {
        let _ = child.wait();
    }
}

#[test]
fn v1_a_busy_process_is_measured_limited_frozen_killed_and_removed() {
    require!(1);
    let layout = Layout::detect().expect("checked above");
    let mut root = TestRoot::new(layout);
    let c = root.cgroups.container("c1", &["cpu", "cpuacct", "memory", "pids"]);
    c.create().expect("create");
    let limits =
        Limits { pids_max: Some(100), ..Limits::for_resources(Some(0.5), Some(64.0), true) };
    c.set_limits(&limits).expect("limits");
    let pid = root.spawn_in(&c, "exec sh -c 'while :; do :; done'");
    assert_eq!(c.procs().expect("procs"), vec![pid]);
    eventually(|| {
        let s = c.stats().expect("stats");
        s.cpus_user_time_secs.unwrap_or(0.0) + s.cpus_system_time_secs.unwrap_or(0.0) > 0.0
            && s.cpus_nr_throttled.unwrap_or(0) > 0
    });
    let s = c.stats().expect("stats");
    assert_eq!(s.cpus_limit, Some(0.5));
    assert_eq!(s.mem_limit_bytes, Some(64 << 20));
    assert_eq!(s.pids_current, Some(1));
    assert!(s.mem_total_bytes.unwrap_or(0) > 0, "{s:?}");
    assert_eq!(c.oom_kills(), 0);
    assert!(c.freeze(true).expect("freeze"));
    c.freeze(false).expect("thaw");
    c.destroy().expect("destroy");
    reap(&mut root);
    for dir in c.dirs() {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

#[test]
fn v1_a_double_forked_daemon_in_its_own_session_dies_with_the_cgroup() {
    require!(1);
    let mut root = TestRoot::new(Layout::detect().expect("checked above"));
    let c = root.cgroups.container("c1", &["memory", "pids"]);
    c.create().expect("create");
    let pid = root.spawn_in(&c, "setsid sh -c 'sleep 1000 & sleep 1000' & exit 0");
    eventually(|| {
        let procs = c.procs().expect("procs");
        procs.len() >= 2 && !procs.contains(&pid)
    });
    let daemons = c.procs().expect("procs");
    c.destroy().expect("destroy");
    reap(&mut root);
    for daemon in daemons {
        assert!(
            crate::checkpoint::process_start_time(daemon).is_none(),
            "daemon {daemon} outlived its cgroup"
        );
    }
}

#[test]
fn v1_the_oom_killer_is_counted() {
    require!(1);
    let mut root = TestRoot::new(Layout::detect().expect("checked above"));
    let c = root.cgroups.container("c1", &["memory"]);
    c.create().expect("create");
    c.set_limits(&Limits { memory_bytes: Some(32 << 20), ..Limits::default() }).expect("limits");
    // Swap would only slow the OOM down; the limit counts memory+swap where it can.
    let memory = c.dir("memory").expect("a memory hierarchy");
    let _ = std::fs::write(memory.join("memory.memsw.limit_in_bytes"), (32u64 << 20).to_string());
    // Doubles a string until the kernel kills it.
    root.spawn_in(&c, "exec python3 -c 'x = \"a\" * 1024\nwhile True: x = x + x'");
    eventually(|| c.oom_kills() > 0);
    c.destroy().expect("destroy");
    reap(&mut root);
}

#[test]
fn v2_core_files_freeze_and_kill() {
    require!(2);
    let mut root = TestRoot::new(Layout::V2 { root: unified().expect("checked above") });
    let c = root.cgroups.container("c1", &[]);
    c.create().expect("create");
    root.spawn_in(&c, "sleep 1000 & sleep 1000");
    assert!(c.freeze(true).expect("freeze"), "this kernel has cgroup.freeze");
    c.freeze(false).expect("thaw");
    let s = c.stats().expect("stats");
    assert!(s.cpus_user_time_secs.is_some(), "cpu.stat is a core file: {s:?}");
    c.destroy().expect("destroy");
    reap(&mut root);
    assert!(!c.dirs()[0].exists());
}

/// `populated` from a v2 cgroup's `cgroup.events`.
fn populated(dir: &std::path::Path) -> Option<bool> {
    let events = std::fs::read_to_string(dir.join("cgroup.events")).expect("cgroup.events");
    events.lines().find_map(|l| l.strip_prefix("populated ")).map(|v| v.trim() == "1")
}

#[test]
fn v2_a_process_moved_in_is_populated_and_its_daemons_die_with_the_cgroup() {
    require!(2);
    let mut root = TestRoot::new(Layout::V2 { root: unified().expect("checked above") });
    let c = root.cgroups.container("c1", &[]);
    c.create().expect("create");
    let dir = c.dirs().remove(0);
    assert_eq!(populated(&dir), Some(false), "a new cgroup is empty");
    // Moved in through cgroup.procs (`spawn_in`), then a daemon leaves its session.
    let pid = root.spawn_in(&c, "setsid sh -c 'sleep 1000 & sleep 1000' & exec sleep 1000");
    let member = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup of pid");
    let expected = format!("0::/{}/c1", root.cgroups.root);
    assert!(member.lines().any(|l| l == expected), "{member}");
    eventually(|| c.procs().expect("procs").len() >= 3);
    assert_eq!(populated(&dir), Some(true));
    let members = c.procs().expect("procs");
    // `kill_all` uses cgroup.kill where the kernel has it, and signals each member otherwise;
    // either way every member must go.
    let has_kill = dir.join("cgroup.kill").exists();
    eprintln!("cgroup.kill {}", if has_kill { "present: used" } else { "absent: signalling" });
    c.kill_all().expect("kill");
    c.wait_empty().expect("empty");
    reap(&mut root);
    eventually(|| populated(&dir) == Some(false));
    for member in members {
        assert!(
            crate::checkpoint::process_start_time(member).is_none(),
            "{member} outlived its cgroup"
        );
    }
    c.remove().expect("remove");
    assert!(!dir.exists());
}
