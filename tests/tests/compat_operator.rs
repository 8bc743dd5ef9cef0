//! Compat tier for the operator surface: the real, unmodified operator clients against a real
//! `agora dev`.
//!
//! - pymesos 0.3.15's operator drivers: the master driver's event stream, GET_STATE on the
//!   master and the agent, LIST_FILES and READ_FILE of a task's sandbox
//!   (`tests/compat/pymesos_operator.py` says what it checks).
//! - avmesos-cli 1.0.0 (the Mesos CLI from PyPI): `agent list`, `framework list` and
//!   `task list` show the live cluster's agent, framework and running task; it reads the legacy
//!   endpoints `/slaves`, `/master/frameworks/` and `/tasks`.
//!
//! Needs the venv that `scripts/setup-python.sh` builds, named by `AGORA_COMPAT_PYTHON`;
//! without it each test says why it did not run, and in CI it fails instead.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use agora_client::scheduler::SchedulerSession;
use agora_proto::Format;
use agora_proto::v1::{self, TaskState};
use agora_tests::{Cluster, command_task, next_offers, next_update, required_in_ci};
use anyhow::{Context, ensure};

fn compat_python(test: &str) -> Option<OsString> {
    let python = std::env::var_os("AGORA_COMPAT_PYTHON");
    if python.is_none() {
        required_in_ci(test, "AGORA_COMPAT_PYTHON is not set (run scripts/setup-python.sh)");
    }
    python
}

#[test]
fn pymesos_operator_drivers() -> anyhow::Result<()> {
    let Some(python) = compat_python("the pymesos operator compat test") else {
        return Ok(());
    };
    let cluster = Cluster::start()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/pymesos_operator.py");
    let output = Command::new(&python)
        .arg(script)
        .args(["--master", &cluster.master, "--agent", &cluster.agent, "--timeout", "120"])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "the pymesos operator script failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    println!("{stdout}");
    Ok(())
}

/// Runs `mesos <args>` of avmesos-cli against the cluster's master; its stdout.
fn avmesos(python: &OsString, config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(python)
        .args(["-m", "avmesos.cli.mesos-cli"])
        .args(args)
        .env("MESOS_CLI_CONFIG", config)
        // Its own package directory must not shadow the real `docopt` module.
        .current_dir(config.parent().context("config dir")?)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "mesos {} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

#[tokio::test]
async fn avmesos_cli_lists_agents_frameworks_and_tasks() -> anyhow::Result<()> {
    let Some(python) = compat_python("the avmesos-cli compat test") else {
        return Ok(());
    };
    let cluster = Cluster::start()?;
    let info = v1::FrameworkInfo {
        user: "root".into(),
        name: "avmesos-compat".into(),
        ..Default::default()
    };
    let (session, mut events) =
        SchedulerSession::subscribe(&cluster.master, info, Format::Json).await?;
    let offer = next_offers(&mut events).await?.remove(0);
    let task = command_task("avm-1", &offer.agent_id, "cpus:0.1;mem:32", "sleep 600");
    session.launch(vec![offer.id.clone()], vec![task], Some(0.0)).await?;
    loop {
        let status = next_update(&session, &mut events).await?;
        session.acknowledge(&status).await?;
        if status.state() == TaskState::TaskRunning {
            break;
        }
    }
    let framework_id = session.framework_id.value.clone();

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[master]\naddress = \"{}\"\n", cluster.master))?;

    let agents = avmesos(&python, &config, &["agent", "list"])?;
    ensure!(agents.contains(&offer.agent_id.value), "agent list:\n{agents}");
    let frameworks = avmesos(&python, &config, &["framework", "list"])?;
    ensure!(
        frameworks.contains(&framework_id) && frameworks.contains("avmesos-compat"),
        "framework list:\n{frameworks}"
    );
    let tasks = avmesos(&python, &config, &["task", "list"])?;
    ensure!(
        tasks.contains("avm-1") && tasks.contains("TASK_RUNNING") && tasks.contains(&framework_id),
        "task list:\n{tasks}"
    );
    println!("{agents}\n{frameworks}\n{tasks}");
    Ok(())
}
