//! Compat tier: scenarios that unmodified pymesos 0.3.15 drives against a real `agora dev`, one
//! test and one fresh cluster per scenario: scheduler failover to a new process, task
//! reconciliation, revive/suppress, and task groups. What each scenario checks is described in
//! `tests/compat/pymesos_scenarios.py`; framework messages are covered by `compat_pymesos.rs`.
//!
//! Needs the venv that `scripts/setup-python.sh` builds, named by `AGORA_COMPAT_PYTHON`
//! (the README's test command sets it). Without it each test says why it did not run, and in CI
//! it fails instead. A failing scenario fails its test with the script's stdout and stderr.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use agora_tests::{Cluster, required_in_ci};

/// Each script run's own time limit; its watchdog kills it 30 s after that.
const SCENARIO_TIMEOUT_SECS: &str = "120";

/// The venv's python, or `None` after `required_in_ci` said why the test cannot run.
fn compat_python(test: &str) -> Option<OsString> {
    let python = std::env::var_os("AGORA_COMPAT_PYTHON");
    if python.is_none() {
        required_in_ci(test, "AGORA_COMPAT_PYTHON is not set (run scripts/setup-python.sh)");
    }
    python
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compat").join("pymesos_scenarios.py")
}

/// Runs one scenario of the script against `cluster` and fails with its output unless it
/// passed.
fn run_scenario(
    python: &OsString,
    cluster: &Cluster,
    scenario: &str,
    extra: &[&OsStr],
) -> anyhow::Result<()> {
    let output = Command::new(python)
        .arg(script())
        .arg(scenario)
        .args(["--master", &cluster.master, "--timeout", SCENARIO_TIMEOUT_SECS])
        .args(extra)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pymesos scenario {scenario} failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    println!("--- {scenario}\n{stdout}");
    Ok(())
}

#[test]
fn pymesos_failover_to_a_new_scheduler_process() -> anyhow::Result<()> {
    let Some(python) = compat_python("the pymesos failover compat test") else {
        return Ok(());
    };
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("framework.json");
    // The first process launches a task and dies without TEARDOWN; the second takes over
    // with the FrameworkID the first one left in the state file.
    run_scenario(&python, &cluster, "failover-first", &["--state-file".as_ref(), state.as_ref()])?;
    assert!(state.exists(), "failover-first passed but wrote no {}", state.display());
    run_scenario(&python, &cluster, "failover-second", &["--state-file".as_ref(), state.as_ref()])
}

#[test]
fn pymesos_reconciliation() -> anyhow::Result<()> {
    let Some(python) = compat_python("the pymesos reconciliation compat test") else {
        return Ok(());
    };
    let cluster = Cluster::start()?;
    run_scenario(&python, &cluster, "reconcile", &[])
}

#[test]
fn pymesos_revive_and_suppress() -> anyhow::Result<()> {
    let Some(python) = compat_python("the pymesos revive/suppress compat test") else {
        return Ok(());
    };
    // The harness runs `agora dev` with `--allocation_interval 100ms`, so the script's 3 s
    // windows without offers span about 30 allocation cycles.
    let cluster = Cluster::start()?;
    run_scenario(&python, &cluster, "revive-suppress", &["--quiet-secs".as_ref(), "3".as_ref()])
}

#[test]
fn pymesos_task_groups() -> anyhow::Result<()> {
    let Some(python) = compat_python("the pymesos task group compat test") else {
        return Ok(());
    };
    let cluster = Cluster::start()?;
    run_scenario(&python, &cluster, "task-group", &[])
}
