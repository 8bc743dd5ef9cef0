//! A task's process: turning a `CommandInfo` into a running child in its own process group,
//! signalling that group, and describing how the child ended.
//!
//! It decides nothing: when to start, signal or report is the business of the cores
//! (`state.rs`, `group.rs`). It does not fetch URIs, switch users or isolate anything. The
//! command executor's task runs in the sandbox the agent prepared, with the executor's own
//! stdout/stderr (already the sandbox files); a task of a task group gets a sandbox of its own
//! under the executor's, `tasks/<task_id>`, with its own `stdout` and `stderr` files, where
//! Mesos would put a nested container's.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use agora_proto::v1;
use agora_proto::v1::environment::variable::Type as VariableType;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Variables of the executor's own environment that the task must not see: the executor's
/// credential towards the agent is not the task's to use.
const PRIVATE_VARIABLES: &[&str] = &["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"];

/// How the task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this status.
    Exited(i32),
    /// A signal with this number ended it.
    Signaled(i32),
    /// The wait failed or the status says neither.
    Unknown,
}

impl From<ExitStatus> for Termination {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Exited(code),
            (None, Some(signal)) => Self::Signaled(signal),
            (None, None) => Self::Unknown,
        }
    }
}

impl fmt::Display for Termination {
    /// The `message` of the terminal update, in Mesos's words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "Command exited with status {code}"),
            Self::Signaled(number) => match Signal::try_from(*number) {
                Ok(signal) => write!(f, "Command terminated with signal {}", signal.as_str()),
                Err(_) => write!(f, "Command terminated with signal {number}"),
            },
            Self::Unknown => write!(f, "Command terminated with an unknown status"),
        }
    }
}

/// Builds the task's command: `/bin/sh -c <value>` for a shell command, otherwise `value`
/// executed with `arguments` as its whole argv (argv[0] included), run in `sandbox` with the
/// inherited environment, then `env`, then the CommandInfo's variables (which win, as in
/// Mesos), in a process group of its own.
pub fn build_command(
    command: &v1::CommandInfo,
    sandbox: &Path,
    env: &[(&str, &OsStr)],
) -> Result<std::process::Command, String> {
    let value = command.value.as_deref().unwrap_or_default();
    if value.is_empty() {
        return Err("the task's CommandInfo has no value".into());
    }
    let mut process = if command.shell() {
        let mut p = std::process::Command::new("/bin/sh");
        p.arg("-c").arg(value);
        p
    } else {
        let mut p = std::process::Command::new(value);
        if let Some((argv0, rest)) = command.arguments.split_first() {
            p.arg0(argv0).args(rest);
        }
        p
    };
    for name in PRIVATE_VARIABLES {
        process.env_remove(name);
    }
    for (name, value) in env {
        process.env(name, value);
    }
    if let Some(environment) = &command.environment {
        for variable in &environment.variables {
            // Secrets need a secret resolver, which this executor does not have; skipping them
            // is better than exporting an empty or reference value in their place.
            if variable.r#type() == VariableType::Value {
                process.env(&variable.name, variable.value.as_deref().unwrap_or_default());
            }
        }
    }
    process
        .current_dir(sandbox)
        .stdin(Stdio::null())
        // A group of its own, so that a kill reaches everything the task started and a task
        // that signals its own group cannot reach the executor.
        .process_group(0);
    Ok(process)
}

/// Starts the task's command (see [`build_command`]) in the executor's sandbox; the error is
/// the update's `message`.
pub fn spawn(command: &v1::CommandInfo, sandbox: &Path) -> Result<tokio::process::Child, String> {
    start(build_command(command, sandbox, &[])?)
}

/// Starts a task of a task group in its own sandbox `<executor sandbox>/tasks/<task_id>`
/// (created here), with `stdout` and `stderr` files there and `MESOS_SANDBOX` naming it; the
/// error is the update's `message`.
pub fn spawn_in_task_sandbox(
    command: &v1::CommandInfo,
    executor_sandbox: &Path,
    task_id: &str,
) -> Result<tokio::process::Child, String> {
    // The id becomes a directory name: one that could climb out of `tasks/` is refused.
    agora_core::ids::validate_id(task_id)
        .map_err(|e| format!("Task ID '{task_id}' cannot name a sandbox: {e}"))?;
    let dir = executor_sandbox.join("tasks").join(task_id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("Failed to create the task sandbox {}: {e}", dir.display()))?;
    let output = |name: &str| {
        File::create(dir.join(name))
            .map_err(|e| format!("Failed to create {}: {e}", dir.join(name).display()))
    };
    let (stdout, stderr) = (output("stdout")?, output("stderr")?);
    let mut process = build_command(command, &dir, &[("MESOS_SANDBOX", dir.as_os_str())])?;
    process.stdout(stdout).stderr(stderr);
    start(process)
}

fn start(process: std::process::Command) -> Result<tokio::process::Child, String> {
    let program = process.get_program().to_string_lossy().into_owned();
    tokio::process::Command::from(process)
        .spawn()
        .map_err(|e| format!("Failed to launch '{program}': {e}"))
}

/// Delivers `signal` to the process group `pgid`; a group that is already gone is not an error.
pub fn signal_group(pgid: u32, signal: Signal) -> Result<(), Errno> {
    let pgid = i32::try_from(pgid).map_err(|_| Errno::EINVAL)?;
    // Process group 0 or 1 would mean "our own group" or init's: never a task's.
    if pgid <= 1 {
        return Err(Errno::EINVAL);
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::terminal_state;
    use agora_proto::v1::TaskState;
    use agora_proto::v1::environment::Variable;

    fn shell(value: &str) -> v1::CommandInfo {
        v1::CommandInfo { value: Some(value.into()), ..Default::default() }
    }

    fn tmp() -> std::path::PathBuf {
        std::env::temp_dir()
    }

    #[tokio::test]
    async fn a_shell_command_that_exits_3_fails() {
        let mut child = spawn(&shell("exit 3"), &tmp()).expect("sh starts");
        let status = child.wait().await.expect("the child can be waited for");
        let termination = Termination::from(status);
        assert_eq!(termination, Termination::Exited(3));
        assert_eq!(
            terminal_state(termination, false),
            (TaskState::TaskFailed, "Command exited with status 3".to_string())
        );
    }

    #[tokio::test]
    async fn sigterm_to_the_group_kills_a_sleeping_task() {
        let mut child = spawn(&shell("sleep 30"), &tmp()).expect("sh starts");
        let pid = child.id().expect("a running child has a pid");
        signal_group(pid, Signal::SIGTERM).expect("the group can be signalled");
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
            .await
            .expect("SIGTERM ends sleep well within 10 s")
            .expect("the child can be waited for");
        let termination = Termination::from(status);
        assert_eq!(termination, Termination::Signaled(Signal::SIGTERM as i32));
        assert_eq!(
            terminal_state(termination, true),
            (TaskState::TaskKilled, "Command terminated with signal SIGTERM".to_string())
        );
        // The group is gone now; signalling it again is not an error.
        signal_group(pid, Signal::SIGKILL).expect("a vanished group is fine");
    }

    #[test]
    fn shell_false_uses_arguments_as_the_whole_argv_and_adds_the_environment() {
        let command = v1::CommandInfo {
            value: Some("/bin/sh".into()),
            shell: Some(false),
            arguments: vec!["renamed".into(), "-c".into(), "echo \"$0 $GREETING\"".into()],
            environment: Some(v1::Environment {
                variables: vec![
                    Variable {
                        name: "GREETING".into(),
                        value: Some("hello".into()),
                        ..Default::default()
                    },
                    Variable {
                        name: "HIDDEN".into(),
                        value: Some("secret".into()),
                        r#type: Some(VariableType::Secret as i32),
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        };
        let output = build_command(&command, &tmp(), &[])
            .expect("the command builds")
            .stdout(Stdio::piped())
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "renamed hello\n");
    }

    #[test]
    fn a_command_without_a_value_is_refused() {
        let error = build_command(&v1::CommandInfo::default(), &tmp(), &[]).expect_err("no value");
        assert!(error.contains("no value"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_program_fails_to_spawn() {
        let command = v1::CommandInfo {
            value: Some("/nonexistent/agora-test-program".into()),
            shell: Some(false),
            ..Default::default()
        };
        let error = spawn(&command, &tmp()).expect_err("the program does not exist");
        assert!(error.contains("/nonexistent/agora-test-program"), "{error}");
    }

    #[tokio::test]
    async fn a_group_task_runs_in_its_own_sandbox_with_its_own_output() {
        let sandbox = tempfile::tempdir().expect("a temporary directory");
        let command = shell("test \"$MESOS_SANDBOX\" = \"$(pwd)\" && echo out && echo err >&2");
        let mut child =
            spawn_in_task_sandbox(&command, sandbox.path(), "web.1").expect("sh starts");
        let status = child.wait().await.expect("the child can be waited for");
        assert_eq!(Termination::from(status), Termination::Exited(0), "cwd is MESOS_SANDBOX");
        let dir = sandbox.path().join("tasks").join("web.1");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("the file exists");
        assert_eq!((read("stdout"), read("stderr")), ("out\n".into(), "err\n".into()));

        // The CommandInfo's own MESOS_SANDBOX wins over the executor's.
        let mut command = shell("echo \"$MESOS_SANDBOX\"");
        command.environment = Some(v1::Environment {
            variables: vec![Variable {
                name: "MESOS_SANDBOX".into(),
                value: Some("/mine".into()),
                ..Default::default()
            }],
        });
        let mut child = spawn_in_task_sandbox(&command, sandbox.path(), "web.2").expect("starts");
        child.wait().await.expect("the child can be waited for");
        let printed = std::fs::read_to_string(sandbox.path().join("tasks/web.2/stdout"));
        assert_eq!(printed.expect("stdout exists"), "/mine\n");

        for bad in ["..", "a/b", ""] {
            let error = spawn_in_task_sandbox(&shell("true"), sandbox.path(), bad)
                .expect_err("the id cannot name a directory under tasks/");
            assert!(error.contains("cannot name a sandbox"), "{error}");
        }
    }

    #[test]
    fn termination_messages_name_the_signal() {
        assert_eq!(Termination::Exited(0).to_string(), "Command exited with status 0");
        assert_eq!(Termination::Signaled(9).to_string(), "Command terminated with signal SIGKILL");
        assert_eq!(Termination::Signaled(200).to_string(), "Command terminated with signal 200");
    }
}
