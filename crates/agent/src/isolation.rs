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
//! posix isolation, and says so in the log. Namespaces, rlimits, disk quotas and switching
//! user are not done here.

use std::collections::BTreeSet;

use agora_core::agent::Launch;

use crate::cgroups::{Cgroups, Container, Layout, Limits};

/// The isolators Mesos names that this agent knows.
const KNOWN: [&str; 6] =
    ["posix/cpu", "posix/mem", "cgroups/cpu", "cgroups/mem", "cgroups/pids", "cgroups/all"];

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
}

impl Default for IsolationOptions {
    fn default() -> Self {
        Self {
            isolation: "posix/cpu,posix/mem".into(),
            cgroups_root: "agora".into(),
            cgroups_enable_cfs: false,
            cgroups_pids_max: None,
        }
    }
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
}

impl Isolator {
    /// No isolation at all (the agent's tests and posix-only agents).
    pub(crate) fn posix() -> Self {
        Self { cgroups: None, controllers: Vec::new(), cfs: false, pids_max: None }
    }

    /// Parses `--isolation` and, when cgroup isolators are asked for, finds the machine's
    /// hierarchies and makes sure the root directory can be created in each; without them
    /// the agent runs with posix isolation and logs why.
    pub(crate) fn new(options: &IsolationOptions) -> Result<Self, String> {
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
        let posix = Self::posix();
        if controllers.is_empty() {
            return Ok(posix);
        }
        let Some(layout) = Layout::detect() else {
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
        })
    }

    /// The cgroup of container `id` (made or not).
    pub(crate) fn container(&self, id: &str) -> Option<Container> {
        self.cgroups.as_ref().map(|c| c.container(id, &self.controllers))
    }

    /// Makes and limits the cgroup of `launch`'s container, before its executor starts.
    pub(crate) fn prepare(&self, launch: &Launch) -> Result<Option<Container>, String> {
        let Some(container) = self.container(&launch.container_id) else { return Ok(None) };
        let mut limits = Limits::for_resources(launch.cpus, launch.mem_mb, self.cfs);
        if !self.controllers.contains(&"cpu") {
            limits.cpu_shares = None;
            limits.cfs_quota_us = None;
        }
        if !self.controllers.contains(&"memory") {
            limits.memory_bytes = None;
        }
        limits.pids_max = self.pids_max;
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
