//! `--isolation`: which of Mesos's isolators the agent runs (reference §7.5), and the cgroup
//! side of a container's life: its cgroup made and limited before the executor starts, its
//! OOM kills noticed, and the cgroup destroyed (every process in it killed) when the executor
//! ends.
//!
//! Supported names: `posix/cpu` and `posix/mem` (usage only, the default, which enforces
//! nothing), `cgroups/cpu` (shares, and a CFS quota with `--cgroups_enable_cfs`),
//! `cgroups/mem` (a memory limit; an OOM kill fails the tasks with
//! REASON_CONTAINER_LIMITATION_MEMORY), `cgroups/pids` (`--cgroups_pids_max`), and
//! `cgroups/all` for those three. A machine without a usable cgroup hierarchy falls back to
//! posix isolation, and says so in the log.
//!
//! The rest is carried out by the launch helper (`agora session-exec`), to which this module
//! only passes what it decided: `namespaces/pid` (the executor is pid 1 of a PID namespace of
//! its own, with its own `/proc`), `posix/rlimits` (the container's `RLimitInfo`, checked
//! here), and with `--switch_user` the user the executor runs as (the command's, else the
//! framework's; an unknown user fails the launch). `filesystem/posix` is the sandbox as the
//! working directory with persistent volumes linked in (always done, by `launcher.rs`);
//! `disk/du` measures the sandbox every `--container_disk_watch_interval` and, with
//! `--enforce_container_disk_quota`, has `launcher.rs` kill a container over its `disk`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use agora_core::agent::Launch;

use crate::cgroups::{Cgroups, Container, Layout, Limits};

/// The isolators Mesos names that this agent knows.
const KNOWN: [&str; 10] = [
    "posix/cpu",
    "posix/mem",
    "cgroups/cpu",
    "cgroups/mem",
    "cgroups/pids",
    "cgroups/all",
    "namespaces/pid",
    "posix/rlimits",
    "filesystem/posix",
    "disk/du",
];

/// `--isolation` and the flags that tune it.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationOptions {
    /// Comma-separated isolator names (Mesos's `--isolation`).
    pub isolation: String,
    /// The directory under each hierarchy that holds containers' cgroups (Mesos's
    /// `--cgroups_root`, whose default is `mesos`).
    pub cgroups_root: String,
    /// `--cgroups_enable_cfs`: a hard CPU cap of `cpus` per period, not only shares.
    pub cgroups_enable_cfs: bool,
    /// The most processes (threads included) a container may have with `cgroups/pids`
    /// (`None`: unlimited, only counted).
    pub cgroups_pids_max: Option<u64>,
    /// `--switch_user`: run executors as the task's or the framework's user (Mesos's default).
    pub switch_user: bool,
    /// `--container_disk_watch_interval`: how often `disk/du` measures a sandbox.
    pub container_disk_watch_interval: Duration,
    /// `--enforce_container_disk_quota`: kill a container over its `disk` (`disk/du`).
    pub enforce_container_disk_quota: bool,
}

impl Default for IsolationOptions {
    fn default() -> Self {
        Self {
            isolation: "posix/cpu,posix/mem".into(),
            cgroups_root: "agora".into(),
            cgroups_enable_cfs: false,
            cgroups_pids_max: None,
            switch_user: true,
            container_disk_watch_interval: Duration::from_secs(15),
            enforce_container_disk_quota: false,
        }
    }
}

/// How `disk/du` watches a container's sandbox.
#[derive(Debug, Clone)]
pub(crate) struct DiskWatch {
    pub(crate) interval: Duration,
    /// The most bytes the sandbox may take (its `disk`; `u64::MAX` without one). Shared with
    /// the dispatcher, which changes it when tasks join the executor or end.
    pub(crate) limit_bytes: Arc<AtomicU64>,
    /// Kill the container past the limit, rather than only say so.
    pub(crate) enforce: bool,
}

/// The byte limit of `disk_mb` MB (`u64::MAX`: none).
pub(crate) fn disk_limit_bytes(disk_mb: Option<f64>) -> u64 {
    // Whole bytes, as the resource's MB are fixed-point.
    disk_mb.map_or(u64::MAX, |mb| (mb * 1024.0 * 1024.0).round() as u64)
}

/// The isolators in force, built once at start.
#[derive(Debug, Clone)]
pub(crate) struct Isolator {
    /// `None` with posix isolation only, or when the machine has no usable cgroups.
    cgroups: Option<Cgroups>,
    /// The v1 controllers a container gets.
    controllers: Vec<&'static str>,
    cfs: bool,
    pids_max: Option<u64>,
    /// The isolators the launch helper carries out, and `disk/du`.
    helper: HelperIsolation,
}

/// What the launch helper is asked to do for every container, and `disk/du`'s settings.
#[derive(Debug, Clone, Default)]
struct HelperIsolation {
    pid_namespace: bool,
    rlimits: bool,
    switch_user: bool,
    disk: Option<(Duration, bool)>,
}

impl Isolator {
    /// No isolation at all (the agent's tests and posix-only agents).
    pub(crate) fn posix() -> Self {
        Self {
            cgroups: None,
            controllers: Vec::new(),
            cfs: false,
            pids_max: None,
            helper: HelperIsolation::default(),
        }
    }

    /// Parses `--isolation` and, when cgroup isolators are asked for, finds the machine's
    /// hierarchies and makes sure the root directory can be created in each; without them
    /// the agent runs with posix isolation and logs why.
    pub(crate) fn new(options: &IsolationOptions) -> Result<Self, String> {
        Self::with_layout(options, Layout::detect)
    }

    /// `new` with the machine's cgroup layout found by `detect` (a fake one in tests).
    fn with_layout(
        options: &IsolationOptions,
        detect: impl FnOnce() -> Option<Layout>,
    ) -> Result<Self, String> {
        let names = parse(&options.isolation)?;
        let all = names.contains("cgroups/all");
        let mut controllers = Vec::new();
        if all || names.contains("cgroups/cpu") {
            controllers.extend(["cpu", "cpuacct"]);
        }
        if all || names.contains("cgroups/mem") {
            controllers.push("memory");
        }
        if all || names.contains("cgroups/pids") {
            controllers.push("pids");
        }
        let switch_user = options.switch_user && nix::unistd::Uid::effective().is_root();
        if options.switch_user && !switch_user {
            tracing::warn!(
                "--switch_user needs an agent running as root: executors run as the agent's user"
            );
        }
        let helper = HelperIsolation {
            pid_namespace: names.contains("namespaces/pid"),
            rlimits: names.contains("posix/rlimits"),
            switch_user,
            disk: names.contains("disk/du").then_some((
                options.container_disk_watch_interval,
                options.enforce_container_disk_quota,
            )),
        };
        let posix = Self { helper, ..Self::posix() };
        if controllers.is_empty() {
            return Ok(posix);
        }
        let Some(layout) = detect() else {
            tracing::warn!(
                isolation = %options.isolation,
                "no cgroup hierarchy is mounted: falling back to posix isolation (no limits are enforced)"
            );
            return Ok(posix);
        };
        if let Err(reason) = usable(&layout, &options.cgroups_root, &controllers) {
            tracing::warn!(
                isolation = %options.isolation,
                "cannot use cgroups ({reason}): falling back to posix isolation (no limits are enforced)"
            );
            return Ok(posix);
        }
        tracing::info!(
            version = layout.version(),
            root = %options.cgroups_root,
            ?controllers,
            "cgroup isolation"
        );
        Ok(Self {
            cgroups: Some(Cgroups::new(layout, options.cgroups_root.clone())),
            controllers,
            cfs: options.cgroups_enable_cfs,
            pids_max: options.cgroups_pids_max,
            helper: posix.helper,
        })
    }

    /// The limits of a container of `cpus` and `mem_mb`, for the controllers in force.
    fn limits(&self, cpus: Option<f64>, mem_mb: Option<f64>) -> Limits {
        let mut limits = Limits::for_resources(cpus, mem_mb, self.cfs);
        if !self.controllers.contains(&"cpu") {
            limits.cpu_shares = None;
            limits.cfs_quota_us = None;
        }
        if !self.controllers.contains(&"memory") {
            limits.memory_bytes = None;
        }
        limits.pids_max = self.pids_max;
        limits
    }

    /// Gives a running container new limits (tasks joined its executor or ended). A memory
    /// limit below what the container uses already is refused by the kernel; the container
    /// then keeps its old one, which is only more generous, and the refusal is logged.
    pub(crate) fn resize(&self, container: &Container, cpus: Option<f64>, mem_mb: Option<f64>) {
        if let Err(e) = container.set_limits(&self.limits(cpus, mem_mb)) {
            tracing::warn!(?cpus, ?mem_mb, "cannot resize a container: {e}");
        }
    }

    /// The launch helper's arguments for `launch`'s container (before the program): its
    /// namespaces, rlimits and user. Fails the launch on rlimits Mesos refuses and on a user
    /// this machine does not have.
    pub(crate) fn helper_args(&self, launch: &Launch) -> Result<Vec<String>, String> {
        let mut args = Vec::new();
        if self.helper.pid_namespace {
            args.push("--pid-namespace".to_string());
        }
        if self.helper.rlimits
            && let Some(info) = &launch.rlimits
        {
            for rlimit in &info.rlimits {
                args.push("--rlimit".into());
                args.push(rlimit_arg(rlimit)?);
            }
        }
        if let Some(user) = self.user(launch)? {
            args.push("--user".into());
            args.push(user.name);
        }
        Ok(args)
    }

    /// The user `launch`'s executor is switched to, if it is not the agent's own.
    pub(crate) fn user(&self, launch: &Launch) -> Result<Option<nix::unistd::User>, String> {
        let Some(name) =
            launch.user.as_deref().filter(|n| !n.is_empty() && self.helper.switch_user)
        else {
            return Ok(None);
        };
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) if user.uid == nix::unistd::Uid::effective() => Ok(None),
            Ok(Some(user)) => Ok(Some(user)),
            Ok(None) => {
                Err(format!("Failed to switch user: user '{name}' does not exist on this agent"))
            }
            Err(e) => Err(format!("Failed to switch user: cannot look up user '{name}': {e}")),
        }
    }

    /// How `disk/du` watches `launch`'s sandbox; `None` without `disk/du`. A container
    /// without `disk` is watched too, since tasks with some may join it.
    pub(crate) fn disk_watch(&self, launch: &Launch) -> Option<DiskWatch> {
        let (interval, enforce) = self.helper.disk?;
        let limit_bytes = Arc::new(AtomicU64::new(disk_limit_bytes(launch.disk_mb)));
        Some(DiskWatch { interval, limit_bytes, enforce })
    }

    /// The cgroup of container `id` (made or not).
    pub(crate) fn container(&self, id: &str) -> Option<Container> {
        self.cgroups.as_ref().map(|c| c.container(id, &self.controllers))
    }

    /// Makes and limits the cgroup of `launch`'s container, before its executor starts.
    pub(crate) fn prepare(&self, launch: &Launch) -> Result<Option<Container>, String> {
        let Some(container) = self.container(&launch.container_id) else { return Ok(None) };
        let limits = self.limits(launch.cpus, launch.mem_mb);
        let made = container.create().and_then(|()| container.set_limits(&limits));
        if let Err(e) = made {
            // Nothing runs in it yet: removing it cannot hurt anybody.
            let _ = container.remove();
            return Err(format!("cannot set up the container's cgroup: {e}"));
        }
        Ok(Some(container))
    }
}

/// The message tasks fail with after an OOM kill in `container`.
pub(crate) fn oom_message(container: &Container) -> String {
    match container.stats().ok().and_then(|s| s.mem_limit_bytes) {
        Some(limit) => format!("Memory limit exceeded: Requested: {}MB", limit >> 20),
        None => "Memory limit exceeded".to_string(),
    }
}

/// The helper's `NAME=SOFT:HARD` for one of Mesos's RLimits, checked as Mesos checks them:
/// a known type, and both limits or neither (unlimited).
fn rlimit_arg(rlimit: &agora_proto::v1::r_limit_info::RLimit) -> Result<String, String> {
    use agora_proto::v1::r_limit_info::r_limit::Type;
    let kind = Type::try_from(rlimit.r#type.unwrap_or_default()).unwrap_or(Type::Unknown);
    let name = kind.as_str_name().strip_prefix("RLMT_").filter(|_| kind != Type::Unknown);
    let Some(name) = name else {
        return Err(format!("Unknown rlimit type {}", rlimit.r#type.unwrap_or_default()));
    };
    match (rlimit.soft, rlimit.hard) {
        (None, None) => Ok(format!("{name}=unlimited:unlimited")),
        (Some(soft), Some(hard)) if soft <= hard => Ok(format!("{name}={soft}:{hard}")),
        (Some(_), Some(_)) => Err(format!("Soft limit of {name} is above its hard limit")),
        _ => Err(format!("Both soft and hard limits of {name} must be set, or neither")),
    }
}

/// The isolator names of `--isolation`, each one known.
fn parse(text: &str) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !KNOWN.contains(&name) {
            return Err(format!(
                "unknown isolator '{name}' in --isolation (known: {})",
                KNOWN.join(", ")
            ));
        }
        names.insert(name.to_string());
    }
    Ok(names)
}

/// Whether the root directory can be made under every hierarchy a container needs.
fn usable(layout: &Layout, root: &str, controllers: &[&str]) -> Result<(), String> {
    let probe = Cgroups::new(layout.clone(), root).container("", controllers);
    for dir in probe.dirs() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Layout::V1 { controllers: mounted } = layout {
        for controller in controllers {
            if !mounted.contains_key(*controller) {
                return Err(format!("no {controller} hierarchy is mounted"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolator_names_are_checked() {
        assert!(parse("posix/cpu, posix/mem").is_ok());
        assert!(parse("cgroups/cpu,cgroups/mem,cgroups/pids,,").is_ok());
        let err = parse("cgroups/cpu,network/cni").expect_err("unknown");
        assert!(err.contains("network/cni"), "{err}");
        assert!(parse("namespaces/pid,posix/rlimits,filesystem/posix,disk/du").is_ok());
    }

    #[test]
    fn cgroup_isolators_fall_back_to_posix_where_cgroups_are_missing() {
        let options = IsolationOptions {
            isolation: "cgroups/cpu,cgroups/mem,namespaces/pid".into(),
            ..IsolationOptions::default()
        };
        // No hierarchy mounted at all.
        let isolator = Isolator::with_layout(&options, || None).expect("valid");
        assert!(isolator.container("c").is_none());
        assert!(isolator.helper.pid_namespace, "the helper's isolators do not need cgroups");
        // Hierarchies mounted, but not the memory one.
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut mounted = std::collections::BTreeMap::new();
        for name in ["cpu", "cpuacct", "freezer"] {
            mounted.insert(name.to_string(), tmp.path().join(name));
        }
        let layout = Layout::V1 { controllers: mounted };
        let isolator = Isolator::with_layout(&options, || Some(layout)).expect("valid");
        assert!(isolator.container("c").is_none());
    }

    #[test]
    fn rlimits_are_checked_as_mesos_checks_them() {
        use agora_proto::v1::r_limit_info::{RLimit, r_limit::Type};
        let limit = |kind: Type, soft, hard| RLimit { r#type: Some(kind as i32), soft, hard };
        assert_eq!(
            rlimit_arg(&limit(Type::RlmtNofile, Some(50), Some(100))).as_deref(),
            Ok("NOFILE=50:100")
        );
        assert_eq!(
            rlimit_arg(&limit(Type::RlmtCore, None, None)).as_deref(),
            Ok("CORE=unlimited:unlimited")
        );
        assert!(rlimit_arg(&limit(Type::RlmtNofile, Some(50), None)).is_err());
        assert!(rlimit_arg(&limit(Type::RlmtNofile, Some(500), Some(100))).is_err());
        assert!(rlimit_arg(&limit(Type::Unknown, None, None)).is_err());
    }

    #[test]
    fn posix_isolation_makes_no_cgroups() {
        let isolator = Isolator::new(&IsolationOptions::default()).expect("valid");
        assert!(isolator.container("c").is_none());
    }

    #[test]
    fn containers_get_the_controllers_of_their_isolators() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut mounted = std::collections::BTreeMap::new();
        for name in crate::cgroups::V1_CONTROLLERS {
            mounted.insert(name.to_string(), tmp.path().join(name));
        }
        let isolator = Isolator {
            cgroups: Some(Cgroups::new(Layout::V1 { controllers: mounted }, "agora")),
            controllers: vec!["memory", "pids"],
            cfs: true,
            pids_max: Some(10),
            helper: HelperIsolation::default(),
        };
        let launch = Launch {
            framework_id: "f".into(),
            executor_id: "e".into(),
            container_id: "c1".into(),
            sandbox: "/nowhere".into(),
            command: Default::default(),
            env: Vec::new(),
            user: None,
            volumes: Vec::new(),
            cpus: Some(1.0),
            mem_mb: Some(64.0),
            disk_mb: None,
            rlimits: None,
        };
        let container = isolator.prepare(&launch).expect("prepared").expect("a container");
        let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).expect("read");
        assert_eq!(read("memory/agora/c1/memory.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(read("pids/agora/c1/pids.max"), "10");
        assert!(!tmp.path().join("cpu/agora/c1").exists(), "no cgroups/cpu, no cpu cgroup");
        assert!(tmp.path().join("freezer/agora/c1").exists(), "the freezer is for killing");
        assert_eq!(container.dirs().len(), 3);
    }
}
