//! `agora-executor` holds Agora's two built-in executors, the processes the agent starts to run
//! tasks (reference §3.5):
//!
//! - the command executor (Mesos's `mesos-executor`), for a task that carries a `CommandInfo`
//!   and no executor of its own: it runs that one task as a child process in its own process
//!   group, reports STARTING, RUNNING and the terminal state, kills the task on KILL or
//!   SHUTDOWN with SIGTERM and then SIGKILL after the grace period, and exits once the agent
//!   has acknowledged the terminal update;
//! - the default executor (Mesos's `mesos-default-executor`), for task groups whose
//!   ExecutorInfo has type DEFAULT: it runs every task of each LAUNCH_GROUP in a process group
//!   and a sandbox of its own, ends a whole group when one of its tasks fails or is killed,
//!   and exits once every task is over and acknowledged.
//!
//! This file holds the two executors' IO loops (the agent starts `agora executor` and `agora
//! executor --default`): each feeds its core the agent's events, the outcome of starting its
//! tasks, their exits and the passing of time, and carries out what the core decides. Every
//! decision lives in the sans-IO cores (`state.rs` for the command executor, `group.rs` for the
//! default executor, `common.rs` for what they share); the process plumbing, task sandboxes
//! included, in `process.rs`; the IO both loops share (the environment, the subscription,
//! sending updates, subscribing again) in `shell.rs`, with its bookkeeping of what the agent
//! has not acknowledged in `recovery.rs`; the probes in `probe.rs`, the timing of health checks in
//! `health.rs` and of generalized checks in `check.rs`. Both executors run their tasks' health
//! checks (COMMAND, TCP or HTTP; failures add up to a kill) and generalized checks
//! (`TaskInfo.check`, COMMAND, TCP or HTTP: each changed result reaches the framework as
//! `check_status` on a TASK_RUNNING update with reason TASK_CHECK_STATUS_UPDATED, and checks
//! never kill). For a
//! checkpointing framework both survive a restart of their agent: the shell subscribes again,
//! re-sending what is unacknowledged, and the tasks carry on untouched; only when the agent
//! stays away past the recovery timeout (or the framework does not checkpoint) does a lost
//! agent end the executor and its tasks.

pub mod check;
pub mod common;
pub mod group;
pub mod health;
mod probe;
pub mod process;
mod recovery;
mod shell;
pub mod state;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use agora_proto::v1;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::check::CheckStatus;
use crate::common::Config;
use crate::group::DefaultExecutor;
use crate::process::{Termination, signal_group};
use crate::shell::{Incoming, Link, Setup, log, sleep_until};
use crate::state::{CommandExecutor, Input, Output};

/// Runs the command executor until its task has been reported and acknowledged; returns the
/// process exit code (0 after the terminal update's ack, non-zero otherwise).
pub async fn run_command_executor() -> i32 {
    let Some(setup) = Setup::from_env() else {
        return 1;
    };
    let core = CommandExecutor::new(Config::new(setup.shutdown_grace), shell::random_uuids());
    let link = match Link::open(&setup.env, setup.recovery).await {
        Ok(link) => link,
        Err(e) => {
            log(&format!("cannot subscribe: {e}"));
            return 1;
        }
    };
    let shell = Shell { sandbox: setup.sandbox, child: None, pgid: None, probe: None, check: None };
    shell.run(core, link).await
}

/// The command executor's side of the IO: its one task's process.
struct Shell {
    sandbox: PathBuf,
    /// The task's process while it runs.
    child: Option<tokio::process::Child>,
    /// The task's process group, kept after the leader's exit to clear what it left behind.
    pgid: Option<u32>,
    /// The health-check probe under way; it runs beside the loop so that a slow one delays
    /// nothing else.
    probe: Option<JoinHandle<Result<(), String>>>,
    /// The check probe under way, beside the loop (and any health-check probe) for the same
    /// reason.
    check: Option<JoinHandle<Result<CheckStatus, String>>>,
}

impl Shell {
    async fn run(mut self, mut core: CommandExecutor, mut link: Link) -> i32 {
        loop {
            let deadline = core.next_deadline();
            let input = tokio::select! {
                incoming = link.next() => match incoming {
                    Incoming::Event(event) => Input::from(event),
                    Incoming::Disconnected(reason) => Input::Disconnected { reason },
                },
                termination = wait(&mut self.child) => {
                    self.child = None;
                    Input::Exited(termination)
                }
                result = probed(&mut self.probe) => {
                    self.probe = None;
                    Input::Probed(result)
                }
                outcome = probed(&mut self.check) => {
                    self.check = None;
                    Input::Checked(outcome)
                }
                () = sleep_until(deadline) => Input::Tick,
            };
            let mut inputs = VecDeque::from([input]);
            while let Some(input) = inputs.pop_front() {
                for output in core.handle(input, Instant::now()) {
                    match output {
                        Output::Send(update) => link.send(update),
                        Output::Spawn(command) => inputs.push_back(self.spawn(command)),
                        Output::Signal(signal) => {
                            if let Some(pgid) = self.pgid
                                && let Err(e) = signal_group(pgid, signal)
                            {
                                log(&format!("cannot send {signal} to process group {pgid}: {e}"));
                            }
                        }
                        Output::Probe { probe, timeout } => {
                            let sandbox = self.sandbox.clone();
                            self.probe = Some(tokio::spawn(async move {
                                probe::run(&probe, timeout, &sandbox).await
                            }));
                        }
                        Output::Check { probe, timeout } => {
                            let sandbox = self.sandbox.clone();
                            self.check = Some(tokio::spawn(async move {
                                probe::check(&probe, timeout, &sandbox).await
                            }));
                        }
                        Output::Log(line) => log(&line),
                        Output::Exit(code) => {
                            // A probe still running (and its command) must not outlive us.
                            if let Some(probe) = self.probe.take() {
                                probe.abort();
                            }
                            if let Some(check) = self.check.take() {
                                check.abort();
                            }
                            link.close().await;
                            return code;
                        }
                    }
                }
            }
        }
    }

    /// Starts the task and tells the core how that went.
    fn spawn(&mut self, command: Option<v1::CommandInfo>) -> Input {
        let Some(command) = command else {
            return Input::SpawnFailed { message: "the task has no CommandInfo".into() };
        };
        match process::spawn(&command, &self.sandbox) {
            Ok(child) => {
                self.pgid = child.id();
                if let Some(pid) = self.pgid {
                    log(&format!("forked task process {pid}"));
                }
                self.child = Some(child);
                Input::Spawned
            }
            Err(message) => Input::SpawnFailed { message },
        }
    }
}

/// The result of the probe under way; never resolves without one.
async fn probed<T>(probe: &mut Option<JoinHandle<Result<T, String>>>) -> Result<T, String> {
    match probe {
        Some(handle) => handle.await.unwrap_or_else(|e| Err(format!("the probe failed: {e}"))),
        None => std::future::pending().await,
    }
}

/// How the child ended; never resolves without a child.
async fn wait(child: &mut Option<tokio::process::Child>) -> Termination {
    match child {
        Some(child) => reap(child).await,
        None => std::future::pending().await,
    }
}

/// Waits for a task's process to end and says how it did.
async fn reap(child: &mut tokio::process::Child) -> Termination {
    match child.wait().await {
        Ok(status) => Termination::from(status),
        Err(e) => {
            log(&format!("cannot wait for a task's process: {e}"));
            Termination::Unknown
        }
    }
}

/// Runs the default executor until every task it was given is over and acknowledged (or the
/// agent goes away); returns the process exit code (0 after the last ack, non-zero otherwise).
pub async fn run_default_executor() -> i32 {
    let Some(setup) = Setup::from_env() else {
        return 1;
    };
    let mut core = DefaultExecutor::new(Config::new(setup.shutdown_grace), shell::random_uuids());
    let mut link = match Link::open(&setup.env, setup.recovery).await {
        Ok(link) => link,
        Err(e) => {
            log(&format!("cannot subscribe: {e}"));
            return 1;
        }
    };
    // Each task's watcher reports the exit here; the loop keeps a sender, so `recv` never
    // returns `None`.
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<(String, Termination)>();
    // Process groups by task id, kept after a task's exit to clear what it left behind.
    let mut groups: HashMap<String, u32> = HashMap::new();
    // Health-check probes report here, by task id; as with exits, the loop keeps a sender.
    let (probes_tx, mut probes) = mpsc::unbounded_channel::<(String, Result<(), String>)>();
    let mut running_probes: Vec<JoinHandle<()>> = Vec::new();
    // Check probes report here, by task id, the same way.
    let (checks_tx, mut checks) =
        mpsc::unbounded_channel::<(String, Result<CheckStatus, String>)>();
    loop {
        let deadline = core.next_deadline();
        let input = tokio::select! {
            incoming = link.next() => match incoming {
                Incoming::Event(event) => group::Input::from(event),
                Incoming::Disconnected(reason) => group::Input::Disconnected { reason },
            },
            Some((task_id, termination)) = exits.recv() => {
                group::Input::Exited { task_id, termination }
            }
            Some((task_id, result)) = probes.recv() => group::Input::Probed { task_id, result },
            Some((task_id, outcome)) = checks.recv() => group::Input::Checked { task_id, outcome },
            () = sleep_until(deadline) => group::Input::Tick,
        };
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for output in core.handle(input, Instant::now()) {
                match output {
                    group::Output::Send(update) => link.send(update),
                    group::Output::Spawn { task_id, command } => {
                        inputs.push_back(
                            match spawn_group_task(&setup.sandbox, &task_id, &command, &exits_tx) {
                                Ok(pgid) => {
                                    groups.insert(task_id.clone(), pgid);
                                    group::Input::Spawned { task_id }
                                }
                                Err(message) => group::Input::SpawnFailed { task_id, message },
                            },
                        );
                    }
                    group::Output::Signal { task_id, signal } => {
                        if let Some(&pgid) = groups.get(&task_id)
                            && let Err(e) = signal_group(pgid, signal)
                        {
                            log(&format!(
                                "cannot send {signal} to task {task_id} (process group {pgid}): {e}"
                            ));
                        }
                    }
                    group::Output::Probe { task_id, probe, timeout } => {
                        // The same sandbox the task runs in (`process::spawn_in_task_sandbox`).
                        let sandbox = setup.sandbox.join("tasks").join(&task_id);
                        let results = probes_tx.clone();
                        running_probes.retain(|probe| !probe.is_finished());
                        running_probes.push(tokio::spawn(async move {
                            let result = probe::run(&probe, timeout, &sandbox).await;
                            // After the loop returns nobody needs the result.
                            let _ = results.send((task_id, result));
                        }));
                    }
                    group::Output::Check { task_id, probe, timeout } => {
                        let sandbox = setup.sandbox.join("tasks").join(&task_id);
                        let results = checks_tx.clone();
                        running_probes.retain(|probe| !probe.is_finished());
                        running_probes.push(tokio::spawn(async move {
                            let outcome = probe::check(&probe, timeout, &sandbox).await;
                            // After the loop returns nobody needs the outcome.
                            let _ = results.send((task_id, outcome));
                        }));
                    }
                    group::Output::Log(line) => log(&line),
                    group::Output::Exit(code) => {
                        // Probes still running (and their commands) must not outlive us.
                        for probe in running_probes.drain(..) {
                            probe.abort();
                        }
                        link.close().await;
                        return code;
                    }
                }
            }
        }
    }
}

/// Starts one task of a group and a watcher that reports its exit; answers with the task's
/// process group, or with why it could not start.
fn spawn_group_task(
    sandbox: &Path,
    task_id: &str,
    command: &v1::CommandInfo,
    exits: &mpsc::UnboundedSender<(String, Termination)>,
) -> Result<u32, String> {
    let mut child = process::spawn_in_task_sandbox(command, sandbox, task_id)?;
    // A child that was just started has not been reaped, so it has its pid.
    let pgid = child.id().ok_or("The task's process vanished as it started")?;
    log(&format!("forked process {pgid} for task {task_id}"));
    let exits = exits.clone();
    let watched = task_id.to_string();
    tokio::spawn(async move {
        let termination = reap(&mut child).await;
        // The loop holds a sender until it returns; after that nobody needs the exit.
        let _ = exits.send((watched, termination));
    });
    Ok(pgid)
}
