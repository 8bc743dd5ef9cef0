//! The launch helper (`agora session-exec`): the agent re-executes its own binary to build an
//! executor's container around the current process and then exec the executor, as Mesos's
//! `mesos-containerizer launch` does (reference §7.5).
//!
//! In order: it waits for the agent's go-ahead (the agent records the helper's pid durably
//! first), becomes a session leader, joins the container's cgroups, sets the container's
//! rlimits, optionally enters a new PID namespace (with a private mount namespace and a fresh
//! `/proc`, so that the executor is pid 1 and sees only its container), switches to the task's
//! user and execs the executor. Everything that can fail is done before the exec, and a failure
//! exits 127 with the reason on stderr (the sandbox's), so no executor ever runs in a container
//! that is only partly built.
//!
//! It deliberately decides nothing: the agent validates users, rlimits and cgroups and only
//! passes what it decided; this process is small so that it can run between fork and exec of
//! somebody else's program.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Pid, Uid, User};

#[derive(Args, Clone)]
pub(crate) struct SessionExecFlags {
    /// A `cgroup.procs` file to join before the exec (once per hierarchy).
    #[arg(long = "cgroup")]
    cgroups: Vec<PathBuf>,
    /// A resource limit, `NAME=SOFT:HARD` with Mesos's names without `RLMT_` (`NOFILE`,
    /// `NPROC`, ...) and `unlimited` for no limit.
    #[arg(long = "rlimit")]
    rlimits: Vec<String>,
    /// Run the program as pid 1 of a new PID namespace, with its own `/proc`.
    #[arg(long = "pid-namespace")]
    pid_namespace: bool,
    /// Run the program as this user (its groups, group and user id).
    #[arg(long)]
    user: Option<String>,
    /// The helper's second half, pid 1 of the namespace `--pid-namespace` made: it mounts
    /// `/proc`, switches user and execs; the rest is done.
    #[arg(long = "in-namespace", hide = true)]
    in_namespace: bool,
    program: String,
    arg0: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Builds the container and execs the program; returns only if that fails. Without the
/// agent's go-ahead (it went away) the program never runs.
pub(crate) fn session_exec(flags: SessionExecFlags) -> ExitCode {
    match build(&flags) {
        Ok(never) => match never {},
        Err(message) => {
            eprintln!("agora session-exec: {message}");
            ExitCode::from(127)
        }
    }
}

fn build(flags: &SessionExecFlags) -> Result<Infallible, String> {
    use std::io::Read;
    if flags.in_namespace {
        mount_proc()?;
        return exec(flags, flags.user.as_deref().map(lookup).transpose()?.as_ref());
    }
    let mut byte = [0u8; 1];
    if !matches!(std::io::stdin().read(&mut byte), Ok(1)) {
        return Err("the agent did not confirm the launch; not starting it".into());
    }
    let null =
        std::fs::File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| format!("cannot point stdin at /dev/null: {e}"))?;
    nix::unistd::setsid().map_err(|e| format!("cannot start a session: {e}"))?;
    // Joined before the exec, so the program and everything it starts are limited and
    // accounted for from their first instruction.
    let me = std::process::id().to_string();
    for procs in &flags.cgroups {
        std::fs::write(procs, &me)
            .map_err(|e| format!("cannot join the cgroup {}: {e}", procs.display()))?;
    }
    // Before the user switch: only root may raise a hard limit.
    for rlimit in &flags.rlimits {
        let (resource, soft, hard) = parse_rlimit(rlimit)?;
        setrlimit(resource, soft, hard).map_err(|e| format!("cannot set rlimit {rlimit}: {e}"))?;
    }
    // Looked up before any namespace exists, so that an unknown user fails the launch here.
    let user = flags.user.as_deref().map(lookup).transpose()?;
    if flags.pid_namespace {
        return enter_pid_namespace(flags);
    }
    exec(flags, user.as_ref())
}

/// Switches to `user` (if any) and execs the program.
fn exec(flags: &SessionExecFlags, user: Option<&User>) -> Result<Infallible, String> {
    let mut command = std::process::Command::new(&flags.program);
    command.arg0(&flags.arg0).args(&flags.args);
    if let Some(user) = user {
        switch_user(user)?;
        // As `su` sets them.
        command.env("USER", &user.name).env("LOGNAME", &user.name).env("HOME", &user.dir);
    }
    let error = command.exec();
    Err(format!("cannot start '{}': {error}", flags.program))
}

/// The limit `NAME=SOFT:HARD` asks for.
fn parse_rlimit(text: &str) -> Result<(Resource, u64, u64), String> {
    let bad = || format!("bad --rlimit '{text}' (expected NAME=SOFT:HARD)");
    let (name, values) = text.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = values.split_once(':').ok_or_else(bad)?;
    let value = |v: &str| match v {
        "unlimited" => Ok(nix::sys::resource::RLIM_INFINITY),
        v => v.parse::<u64>().map_err(|_| bad()),
    };
    let resource = match name {
        "AS" => Resource::RLIMIT_AS,
        "CORE" => Resource::RLIMIT_CORE,
        "CPU" => Resource::RLIMIT_CPU,
        "DATA" => Resource::RLIMIT_DATA,
        "FSIZE" => Resource::RLIMIT_FSIZE,
        "LOCKS" => Resource::RLIMIT_LOCKS,
        "MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "NICE" => Resource::RLIMIT_NICE,
        "NOFILE" => Resource::RLIMIT_NOFILE,
        "NPROC" => Resource::RLIMIT_NPROC,
        "RSS" => Resource::RLIMIT_RSS,
        "RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RTTIME" => Resource::RLIMIT_RTTIME,
        "SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "STACK" => Resource::RLIMIT_STACK,
        _ => return Err(format!("unknown rlimit '{name}'")),
    };
    Ok((resource, value(soft)?, value(hard)?))
}

/// The user the program runs as; the agent checked it exists, but it may have gone since.
fn lookup(name: &str) -> Result<User, String> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(format!("no such user '{name}'")),
        Err(e) => Err(format!("cannot look up user '{name}': {e}")),
    }
}

/// Drops to `user`: its supplementary groups, its group, then its user id (in that order,
/// since each step needs the privileges the next one gives up). Running as that user
/// already changes nothing.
fn switch_user(user: &User) -> Result<(), String> {
    if Uid::effective() == user.uid {
        return Ok(());
    }
    let name = CString::new(user.name.as_bytes()).map_err(|e| format!("bad user name: {e}"))?;
    nix::unistd::initgroups(&name, user.gid)
        .map_err(|e| format!("cannot set the groups of '{}': {e}", user.name))?;
    nix::unistd::setgid(user.gid)
        .map_err(|e| format!("cannot switch to group {}: {e}", user.gid.as_raw()))?;
    nix::unistd::setuid(user.uid)
        .map_err(|e| format!("cannot switch to user '{}': {e}", user.name))?;
    Ok(())
}

/// Moves the rest of the launch into a new PID namespace, whose first process (pid 1) is a
/// child of this one: the helper again, with `--in-namespace`, which mounts a `/proc` that
/// shows only its namespace and goes on to exec the executor. This process stays outside as
/// the pid the agent recorded, passes on the signals it gets and ends as its child ends.
///
/// The pid 1 of a namespace takes every process in it down when it dies, so nothing in the
/// container outlives the executor. The child is a fresh exec rather than a fork because
/// the workspace forbids `unsafe`, which a raw fork needs.
fn enter_pid_namespace(flags: &SessionExecFlags) -> Result<Infallible, String> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("cannot create the container's namespaces: {e}"))?;
    // Private, so that the container's /proc never shows up in the host's mount table.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("cannot make the container's mounts private: {e}"))?;
    // Blocked before the child exists, so that neither its end nor a signal meant for it can
    // come before this process waits for them; the child starts with an empty mask.
    let mut signals = SigSet::empty();
    for signal in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        signals.add(*signal);
    }
    signals.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;
    let helper = std::env::current_exe().map_err(|e| format!("cannot find the helper: {e}"))?;
    let mut inner = std::process::Command::new(helper);
    inner.arg("session-exec").arg("--in-namespace");
    if let Some(user) = &flags.user {
        inner.arg("--user").arg(user);
    }
    inner.arg(&flags.program).arg(&flags.arg0).args(&flags.args);
    let mut child =
        inner.spawn().map_err(|e| format!("cannot start the container's first process: {e}"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    loop {
        let signal = signals.wait().map_err(|e| format!("cannot wait for signals: {e}"))?;
        if signal != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(pid, signal);
            continue;
        }
        if let Ok(Some(status)) = child.try_wait() {
            end_like(status);
        }
    }
}

/// The signals the outside half passes on to the namespace's pid 1 (which receives only
/// those it handles, as any pid 1 from outside its namespace).
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Ends this process the way its child ended: the same exit code, or killed by the same
/// signal, so that the agent sees the executor's own end.
fn end_like(status: std::process::ExitStatus) -> ! {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal().and_then(|s| Signal::try_from(s).ok()) {
        // Never handled here, so its default action (the end) applies once it is unblocked.
        let mut set = SigSet::empty();
        set.add(signal);
        let _ = set.thread_unblock();
        let _ = nix::sys::signal::raise(signal);
        std::process::exit(128 + signal as i32);
    }
    std::process::exit(status.code().unwrap_or(127))
}

/// The namespace's pid 1, before it becomes the executor: its own `/proc`.
fn mount_proc() -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>)
        .map_err(|e| format!("cannot mount the container's /proc: {e}"))
}
