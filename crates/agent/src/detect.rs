//! Measures the machine for the resources `--resources` leaves out (reference §7.2): online
//! CPUs, total memory and the size of the filesystem holding the work directory.
//!
//! The arithmetic (memory minus 1 GB, disk minus 5 GB, default ports) lives in the core's
//! `default_agent_resources`; this module only reads the numbers, falling back to Mesos's
//! defaults when a number cannot be read.

use std::path::Path;

use agora_core::resources::{Resources, default_agent_resources};

pub(crate) fn resources(work_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_mb = total_memory_mb().unwrap_or(2048);
    let disk_mb = filesystem_mb(work_dir).unwrap_or(10 * 1024 + 5 * 1024);
    default_agent_resources(cpus, mem_mb, disk_mb)
}

fn total_memory_mb() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn filesystem_mb(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks().saturating_mul(stat.fragment_size()) / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_cpus_mem_disk_and_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let detected = resources(dir.path());
        assert!(detected.cpus().as_f64() >= 1.0);
        assert!(detected.mem().as_f64() > 0.0);
        assert!(detected.disk().as_f64() > 0.0);
        assert!(!detected.ports().is_empty());
    }
}
