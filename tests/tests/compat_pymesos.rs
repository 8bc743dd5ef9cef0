//! Compat tier: unmodified pymesos 0.3.15 drives a real `agora dev`. Its scheduler launches 20
//! command tasks across several offers and sees each finish and get acknowledged; then a
//! pymesos `MesosExecutorDriver` runs as a custom executor and finishes its task.
//!
//! Needs the venv that `scripts/setup-python.sh` builds, named by `AGORA_COMPAT_PYTHON`
//! (the README's test command sets it). Without it the test says why it did not run, and in CI
//! it fails instead.

use std::path::Path;
use std::process::Command;

use agora_tests::{Cluster, ClusterOptions, required_in_ci};

#[test]
fn pymesos_scheduler_and_executor() -> anyhow::Result<()> {
    let Some(python) = std::env::var_os("AGORA_COMPAT_PYTHON") else {
        required_in_ci(
            "the pymesos compat test",
            "AGORA_COMPAT_PYTHON is not set (run scripts/setup-python.sh)",
        );
        return Ok(());
    };
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
    let cluster = Cluster::start_with(ClusterOptions {
        resources: "cpus:2;mem:2048;disk:1024;ports:[31000-32000]".into(),
        ..Default::default()
    })?;
    let output = Command::new(&python)
        .arg(scripts.join("pymesos_scheduler.py"))
        .args(["--master", &cluster.master, "--tasks", "20", "--per-offer", "3"])
        .arg("--executor-python")
        .arg(&python)
        .args(["--timeout", "150"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pymesos scheduler failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    println!("{stdout}");
    Ok(())
}
