//! Tests of the default executor's decision core: groups that finish, fail or are killed as a
//! whole, the kill policies and escalation of each task, groups arriving over time, shutdown,
//! refusals, losing the agent and the acknowledgements that end the executor. No processes,
//! no clock: time is an `Instant` the tests move by hand.

use super::*;
use crate::check::{CheckSpec, CheckStatus};
use crate::common::{ACK_TIMEOUT, DEFAULT_KILL_GRACE, SHUTDOWN_RESERVE, counting_uuids};
use crate::health::{HealthSpec, Probe};

fn executor(task_killing_state: bool) -> DefaultExecutor {
    let mut ex = DefaultExecutor::new(Config::new(Duration::from_secs(5)), counting_uuids());
    ex.handle(Input::Subscribed { task_killing_state }, Instant::now());
    ex
}

fn spec(task_id: &str, kill_grace: Option<Duration>) -> TaskSpec {
    TaskSpec {
        task_id: task_id.into(),
        command: Some(v1::CommandInfo { value: Some("sleep 60".into()), ..Default::default() }),
        kill_grace,
        health: None,
        check: None,
    }
}

fn group(ids: &[&str]) -> Input {
    Input::LaunchGroup { tasks: ids.iter().map(|id| spec(id, None)).collect() }
}

fn spawned(task_id: &str) -> Input {
    Input::Spawned { task_id: task_id.into() }
}

fn exited(task_id: &str, termination: Termination) -> Input {
    Input::Exited { task_id: task_id.into(), termination }
}

/// The updates among `outputs`, as (task, state).
fn states(outputs: &[Output]) -> Vec<(String, TaskState)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => Some((u.task_id.clone(), u.state)),
            _ => None,
        })
        .collect()
}

fn messages(outputs: &[Output]) -> Vec<Option<String>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => Some(u.message.clone()),
            _ => None,
        })
        .collect()
}

/// The uuids of the updates among `outputs`, by task.
fn uuids(outputs: &[Output]) -> Vec<(String, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => Some((u.task_id.clone(), u.uuid.to_vec())),
            _ => None,
        })
        .collect()
}

fn signals(outputs: &[Output]) -> Vec<(String, Signal)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Signal { task_id, signal } => Some((task_id.clone(), *signal)),
            _ => None,
        })
        .collect()
}

fn spawns(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Spawn { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

fn exit(outputs: &[Output]) -> Option<i32> {
    outputs.iter().find_map(|o| match o {
        Output::Exit(code) => Some(*code),
        _ => None,
    })
}

fn pairs(list: &[(&str, TaskState)]) -> Vec<(String, TaskState)> {
    list.iter().map(|(id, state)| (id.to_string(), *state)).collect()
}

fn sig(list: &[(&str, Signal)]) -> Vec<(String, Signal)> {
    list.iter().map(|(id, signal)| (id.to_string(), *signal)).collect()
}

/// Acknowledges every update still unacknowledged; returns the exit code if one came.
fn ack_all(ex: &mut DefaultExecutor, now: Instant) -> Option<i32> {
    let pending: Vec<Vec<u8>> = ex.unacknowledged().iter().map(|u| u.uuid.to_vec()).collect();
    pending.into_iter().find_map(|uuid| exit(&ex.handle(Input::Acknowledged { uuid }, now)))
}

/// An executor running the group `ids`, every task spawned, at `t0`.
fn running(ids: &[&str], task_killing_state: bool) -> (DefaultExecutor, Instant) {
    let t0 = Instant::now();
    let mut ex = executor(task_killing_state);
    ex.handle(group(ids), t0);
    for id in ids {
        ex.handle(spawned(id), t0);
    }
    (ex, t0)
}

#[test]
fn a_group_runs_every_task_and_the_last_ack_ends_the_executor() {
    use TaskState::*;
    let t0 = Instant::now();
    let mut ex = executor(false);
    let out = ex.handle(group(&["a", "b"]), t0);
    assert_eq!(states(&out), pairs(&[("a", TaskStarting), ("b", TaskStarting)]));
    assert_eq!(spawns(&out), ["a", "b"]);
    // STARTING goes out before any fork is attempted.
    let last_send = out.iter().rposition(|o| matches!(o, Output::Send(_)));
    let first_spawn = out.iter().position(|o| matches!(o, Output::Spawn { .. }));
    assert!(last_send < first_spawn);

    assert_eq!(states(&ex.handle(spawned("a"), t0)), pairs(&[("a", TaskRunning)]));
    assert_eq!(states(&ex.handle(spawned("b"), t0)), pairs(&[("b", TaskRunning)]));
    assert_eq!(ex.next_deadline(), None);

    let out = ex.handle(exited("a", Termination::Exited(0)), t0);
    assert_eq!(states(&out), pairs(&[("a", TaskFinished)]));
    assert_eq!(messages(&out), [Some("Command exited with status 0".to_string())]);
    assert_eq!(signals(&out), sig(&[("a", Signal::SIGKILL)]), "only a's leftovers are cleared");
    assert_eq!(ex.next_deadline(), None, "b still runs");

    let out = ex.handle(exited("b", Termination::Exited(0)), t0);
    assert_eq!(states(&out), pairs(&[("b", TaskFinished)]));
    assert_eq!(ex.next_deadline(), Some(t0 + ACK_TIMEOUT));
    assert_eq!(ex.unacknowledged().len(), 6);
    assert_eq!(ack_all(&mut ex, t0), Some(0));
    assert!(ex.handle(group(&["c"]), t0).is_empty(), "nothing happens after the exit");
}

#[test]
fn a_failed_task_kills_the_rest_of_its_group_and_only_its_group() {
    let (mut ex, t0) = running(&["a", "b"], false);
    ex.handle(group(&["c"]), t0);
    ex.handle(spawned("c"), t0);
    let out = ex.handle(exited("a", Termination::Exited(3)), t0);
    assert_eq!(states(&out), pairs(&[("a", TaskState::TaskFailed)]));
    assert_eq!(messages(&out), [Some("Command exited with status 3".to_string())]);
    assert_eq!(signals(&out), sig(&[("a", Signal::SIGKILL), ("b", Signal::SIGTERM)]));
    assert_eq!(ex.next_deadline(), Some(t0 + DEFAULT_KILL_GRACE));

    let out = ex.handle(exited("b", Termination::Signaled(15)), t0 + Duration::from_secs(1));
    assert_eq!(states(&out), pairs(&[("b", TaskState::TaskKilled)]));
    assert_eq!(messages(&out), [Some("Command terminated with signal SIGTERM".to_string())]);
    assert_eq!(ex.next_deadline(), None, "c runs on, so nobody waits for acks yet");

    // A task that was killed counts as unsuccessful too, and a signal ends a task FAILED.
    let (mut ex, t0) = running(&["a", "b"], false);
    let out = ex.handle(exited("b", Termination::Signaled(9)), t0);
    assert_eq!(states(&out), pairs(&[("b", TaskState::TaskFailed)]));
    assert_eq!(signals(&out), sig(&[("b", Signal::SIGKILL), ("a", Signal::SIGTERM)]));
}

#[test]
fn a_kill_of_one_task_kills_the_whole_group_each_with_its_grace() {
    use TaskState::*;
    let secs = Duration::from_secs;
    let t0 = Instant::now();
    let mut ex = executor(true);
    ex.handle(
        Input::LaunchGroup {
            tasks: vec![spec("a", None), spec("b", Some(secs(10))), spec("c", None)],
        },
        t0,
    );
    for id in ["a", "b", "c"] {
        ex.handle(spawned(id), t0);
    }
    ex.handle(group(&["other"]), t0);
    ex.handle(spawned("other"), t0);

    let out = ex.handle(Input::Kill { task_id: "a".into(), grace: Some(secs(1)) }, t0);
    assert_eq!(states(&out), pairs(&[("a", TaskKilling), ("b", TaskKilling), ("c", TaskKilling)]));
    assert_eq!(
        signals(&out),
        sig(&[("a", Signal::SIGTERM), ("b", Signal::SIGTERM), ("c", Signal::SIGTERM)])
    );
    // a has the event's grace, b its own kill policy, c the default.
    assert_eq!(ex.next_deadline(), Some(t0 + secs(1)));
    assert_eq!(signals(&ex.handle(Input::Tick, t0 + secs(1))), sig(&[("a", Signal::SIGKILL)]));
    assert_eq!(ex.next_deadline(), Some(t0 + DEFAULT_KILL_GRACE));
    assert_eq!(
        signals(&ex.handle(Input::Tick, t0 + DEFAULT_KILL_GRACE)),
        sig(&[("c", Signal::SIGKILL)])
    );
    assert_eq!(ex.next_deadline(), Some(t0 + secs(10)));

    // A KILL of a task already being killed can only bring its SIGKILL forward.
    assert!(
        signals(&ex.handle(Input::Kill { task_id: "b".into(), grace: Some(secs(60)) }, t0))
            .is_empty()
    );
    let out =
        ex.handle(Input::Kill { task_id: "b".into(), grace: Some(Duration::ZERO) }, t0 + secs(4));
    assert_eq!(signals(&out), sig(&[("b", Signal::SIGKILL)]));
    assert!(states(&out).is_empty(), "TASK_KILLING goes out once");

    for id in ["a", "b", "c"] {
        let out = ex.handle(exited(id, Termination::Signaled(9)), t0 + secs(4));
        assert_eq!(states(&out), pairs(&[(id, TaskKilled)]));
    }
    assert!(ex.next_deadline().is_none(), "the other group runs on");
}

#[test]
fn a_group_doomed_while_starting_is_killed_once_its_processes_exist() {
    let t0 = Instant::now();
    let mut ex = executor(false);
    ex.handle(group(&["a", "b"]), t0);
    let out =
        ex.handle(Input::SpawnFailed { task_id: "a".into(), message: "no such file".into() }, t0);
    assert_eq!(states(&out), pairs(&[("a", TaskState::TaskFailed)]));
    assert_eq!(messages(&out), [Some("no such file".to_string())]);
    assert!(signals(&out).is_empty(), "neither process group exists");

    let out = ex.handle(spawned("b"), t0);
    assert!(states(&out).is_empty(), "b is never reported running");
    assert_eq!(signals(&out), sig(&[("b", Signal::SIGTERM)]));
    assert_eq!(ex.next_deadline(), Some(t0 + DEFAULT_KILL_GRACE));
    let out = ex.handle(exited("b", Termination::Signaled(15)), t0);
    assert_eq!(states(&out), pairs(&[("b", TaskState::TaskKilled)]));
    assert_eq!(ack_all(&mut ex, t0), Some(0));
}

#[test]
fn a_task_without_a_command_fails_and_its_group_never_starts() {
    use TaskState::*;
    let t0 = Instant::now();
    let mut ex = executor(false);
    let mut tasks = vec![spec("a", None), spec("b", None)];
    tasks[1].command = None;
    let out = ex.handle(Input::LaunchGroup { tasks }, t0);
    assert_eq!(
        states(&out),
        pairs(&[("a", TaskStarting), ("b", TaskStarting), ("a", TaskKilled), ("b", TaskFailed)])
    );
    assert!(spawns(&out).is_empty());
    assert_eq!(ex.next_deadline(), Some(t0 + ACK_TIMEOUT));
    assert_eq!(ack_all(&mut ex, t0), Some(0));
}

#[test]
fn groups_arrive_over_time_and_a_new_group_keeps_the_executor_alive() {
    let (mut ex, t0) = running(&["a"], false);
    let out = ex.handle(exited("a", Termination::Exited(0)), t0);
    let terminal = uuids(&out).pop().expect("FINISHED").1;
    assert_eq!(ex.next_deadline(), Some(t0 + ACK_TIMEOUT));

    // A second group before the ack: the executor stays, even once a's update is acknowledged.
    let out = ex.handle(group(&["b"]), t0);
    assert_eq!(spawns(&out), ["b"]);
    assert_eq!(ex.next_deadline(), None);
    assert_eq!(exit(&ex.handle(Input::Acknowledged { uuid: terminal }, t0)), None);
    ex.handle(spawned("b"), t0);

    // A task id still in use refuses the whole new group; one that is over may come back.
    let out = ex.handle(group(&["b", "c"]), t0);
    assert_eq!(states(&out), pairs(&[("c", TaskState::TaskFailed)]), "b's own stream is spared");
    assert!(spawns(&out).is_empty());
    let out = ex.handle(group(&["a"]), t0);
    assert_eq!(spawns(&out), ["a"]);
    let out = ex.handle(group(&["d", "d"]), t0);
    assert_eq!(states(&out), pairs(&[("d", TaskState::TaskFailed)]), "duplicates refuse it too");

    ex.handle(spawned("a"), t0);
    ex.handle(exited("a", Termination::Exited(0)), t0);
    ex.handle(exited("b", Termination::Exited(0)), t0);
    assert_eq!(ack_all(&mut ex, t0), Some(0));
}

#[test]
fn single_tasks_are_refused_and_the_executor_leaves_after_the_ack() {
    let t0 = Instant::now();
    let mut ex = executor(false);
    let out = ex.handle(Input::Launch { task_id: "t".into() }, t0);
    assert_eq!(states(&out), pairs(&[("t", TaskState::TaskFailed)]));
    assert_eq!(messages(&out), [Some(SINGLE_TASK.to_string())]);
    assert_eq!(ack_all(&mut ex, t0), Some(0));
}

#[test]
fn shutdown_kills_every_group_with_the_shutdown_grace_and_waits_briefly_for_acks() {
    let secs = Duration::from_secs;
    let (mut ex, t0) = running(&["a", "b"], false);
    ex.handle(group(&["c"]), t0);
    ex.handle(spawned("c"), t0);
    let out = ex.handle(Input::Shutdown, t0);
    assert_eq!(
        signals(&out),
        sig(&[("a", Signal::SIGTERM), ("b", Signal::SIGTERM), ("c", Signal::SIGTERM)])
    );
    assert_eq!(exit(&out), None);
    // 5 s configured, 1 s kept back for the terminal updates.
    assert_eq!(ex.next_deadline(), Some(t0 + secs(4)));
    assert_eq!(signals(&ex.handle(Input::Tick, t0 + secs(4))).len(), 3);
    for id in ["a", "b", "c"] {
        let out = ex.handle(exited(id, Termination::Signaled(9)), t0 + secs(4));
        assert_eq!(states(&out), pairs(&[(id, TaskState::TaskKilled)]));
    }
    assert_eq!(ex.next_deadline(), Some(t0 + secs(4) + SHUTDOWN_RESERVE));
    // A group arriving now is refused.
    let out = ex.handle(group(&["late"]), t0 + secs(4));
    assert_eq!(states(&out), pairs(&[("late", TaskState::TaskFailed)]));
    assert_eq!(ack_all(&mut ex, t0 + secs(4)), Some(0));

    // Without tasks it exits at once; waiting for acks, it waits less.
    assert_eq!(exit(&executor(false).handle(Input::Shutdown, t0)), Some(0));
    let (mut ex, t0) = running(&["a"], false);
    ex.handle(exited("a", Termination::Exited(0)), t0);
    assert_eq!(ex.next_deadline(), Some(t0 + ACK_TIMEOUT));
    assert!(signals(&ex.handle(Input::Shutdown, t0)).is_empty());
    assert_eq!(ex.next_deadline(), Some(t0 + SHUTDOWN_RESERVE));
    assert_eq!(exit(&ex.handle(Input::Tick, t0 + SHUTDOWN_RESERVE)), Some(1));
}

#[test]
fn without_acks_the_executor_gives_up_after_the_fail_safe() {
    let (mut ex, t0) = running(&["a"], false);
    ex.handle(exited("a", Termination::Exited(0)), t0);
    assert_eq!(exit(&ex.handle(Input::Tick, t0 + Duration::from_secs(59))), None);
    assert_eq!(exit(&ex.handle(Input::Tick, t0 + ACK_TIMEOUT)), Some(1));
}

#[test]
fn a_second_subscribed_after_a_resubscription_changes_nothing() {
    // A checkpointing executor subscribes again after an agent restart, and the agent answers
    // SUBSCRIBED again: the running group carries on and its pending acks still end it.
    let (mut ex, t0) = running(&["a", "b"], false);
    assert!(ex.handle(Input::Subscribed { task_killing_state: false }, t0).is_empty());
    assert!(signals(&ex.handle(Input::Tick, t0)).is_empty());
    ex.handle(exited("a", Termination::Exited(0)), t0);
    ex.handle(exited("b", Termination::Exited(0)), t0);
    assert!(ex.handle(Input::Subscribed { task_killing_state: false }, t0).is_empty());
    assert_eq!(ack_all(&mut ex, t0), Some(0));
}

#[test]
fn losing_the_agent_or_an_error_kills_every_running_task_and_exits_non_zero() {
    let lost = || Input::Disconnected { reason: "stream ended".into() };
    let error = || Input::Error { message: "bad".into() };
    for input in [lost(), error()] {
        let (mut ex, t0) = running(&["a", "b"], false);
        ex.handle(exited("a", Termination::Exited(0)), t0);
        ex.handle(group(&["c"]), t0); // c never started
        let out = ex.handle(input.clone(), t0);
        assert_eq!(signals(&out), sig(&[("b", Signal::SIGKILL)]), "{input:?}");
        assert_eq!(exit(&out), Some(1), "{input:?}");
        assert!(states(&out).is_empty());
    }
}

#[test]
fn stray_kills_exits_acks_and_spawns_change_nothing() {
    let (mut ex, t0) = running(&["a"], false);
    ex.handle(exited("a", Termination::Exited(0)), t0);
    for input in [
        Input::Kill { task_id: "a".into(), grace: None },
        Input::Kill { task_id: "ghost".into(), grace: None },
        exited("a", Termination::Exited(1)),
        exited("ghost", Termination::Exited(1)),
        spawned("ghost"),
        Input::SpawnFailed { task_id: "a".into(), message: "late".into() },
        Input::Acknowledged { uuid: vec![1, 2, 3] },
    ] {
        let out = ex.handle(input.clone(), t0);
        assert!(states(&out).is_empty() && signals(&out).is_empty(), "{input:?}: {out:?}");
        assert_eq!(exit(&out), None);
    }
}

#[test]
fn agent_events_map_to_inputs() {
    let launch = AgentEvent::Launch(spec("t", None));
    assert_eq!(Input::from(launch), Input::Launch { task_id: "t".into() });
    let group = AgentEvent::LaunchGroup(vec![spec("a", None)]);
    assert_eq!(Input::from(group), Input::LaunchGroup { tasks: vec![spec("a", None)] });
    assert_eq!(Input::from(AgentEvent::Shutdown), Input::Shutdown);
}

/// A task spec whose health check probes at once, every 1 s, kills after 1 failure, no grace.
fn checked(task_id: &str) -> TaskSpec {
    let health = HealthSpec {
        probe: Probe::Tcp { port: 80 },
        delay: Duration::ZERO,
        interval: Duration::from_secs(1),
        timeout: None,
        consecutive_failures: 1,
        grace_period: Duration::ZERO,
    };
    TaskSpec { health: Some(Ok(Box::new(health))), ..spec(task_id, None) }
}

fn probes(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Probe { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

fn health(outputs: &[Output]) -> Vec<(String, TaskState, Option<bool>, Option<Reason>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => Some((u.task_id.clone(), u.state, u.healthy, u.reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_task_that_fails_its_health_check_is_killed_and_takes_its_group_down() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let updated = Some(Reason::TaskHealthCheckStatusUpdated);
    let mut ex = executor(false);
    ex.handle(Input::LaunchGroup { tasks: vec![checked("a"), spec("b", None)] }, t0);
    ex.handle(spawned("a"), t0);
    ex.handle(spawned("b"), t0);
    assert_eq!(ex.next_deadline(), Some(t0), "no delay");
    assert_eq!(probes(&ex.handle(Input::Tick, t0)), ["a"], "only the checked task is probed");

    let out = ex.handle(Input::Probed { task_id: "a".into(), result: Ok(()) }, t0);
    assert_eq!(health(&out), [("a".into(), TaskState::TaskRunning, Some(true), updated)]);
    assert!(probes(&ex.handle(Input::Tick, t0)).is_empty(), "not before the interval");

    assert_eq!(probes(&ex.handle(Input::Tick, t0 + secs(1))), ["a"]);
    let failed = Input::Probed { task_id: "a".into(), result: Err("refused".into()) };
    let out = ex.handle(failed, t0 + secs(1));
    assert_eq!(health(&out)[0], ("a".into(), TaskState::TaskRunning, Some(false), updated));
    assert_eq!(
        signals(&out),
        [("a".into(), Signal::SIGTERM), ("b".into(), Signal::SIGTERM)],
        "the failed check kills the task, and the group goes with it"
    );

    let out = ex.handle(exited("a", Termination::Signaled(15)), t0 + secs(2));
    assert_eq!(health(&out), [("a".into(), TaskState::TaskKilled, Some(false), None)]);
    let out = ex.handle(exited("b", Termination::Signaled(15)), t0 + secs(2));
    assert_eq!(health(&out), [("b".into(), TaskState::TaskKilled, None, None)]);
}

#[test]
fn an_invalid_health_check_keeps_the_group_from_starting() {
    let t0 = Instant::now();
    let mut ex = executor(false);
    let bad = TaskSpec { health: Some(Err("no port".into())), ..spec("a", None) };
    let out = ex.handle(Input::LaunchGroup { tasks: vec![bad, spec("b", None)] }, t0);
    assert!(spawns(&out).is_empty());
    let ends: Vec<_> =
        states(&out).into_iter().filter(|(_, s)| *s != TaskState::TaskStarting).collect();
    assert_eq!(ends, [("a".into(), TaskState::TaskFailed), ("b".into(), TaskState::TaskKilled)]);
    assert!(messages(&out).iter().flatten().any(|m| m.contains("Invalid health check: no port")));
}

/// A task spec whose TCP check probes at once, every 1 s.
fn with_check(task_id: &str) -> TaskSpec {
    let check = CheckSpec {
        probe: Probe::Tcp { port: 80 },
        delay: Duration::ZERO,
        interval: Duration::from_secs(1),
        timeout: None,
    };
    TaskSpec { check: Some(Ok(Box::new(check))), ..spec(task_id, None) }
}

fn checks(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Check { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

type CheckRow = (String, TaskState, Option<CheckStatus>, Option<bool>, Option<Reason>);

fn check_updates(outputs: &[Output]) -> Vec<CheckRow> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => {
                Some((u.task_id.clone(), u.state, u.check_status, u.healthy, u.reason))
            }
            _ => None,
        })
        .collect()
}

fn tcp(succeeded: Option<bool>) -> CheckStatus {
    CheckStatus::Tcp { succeeded }
}

#[test]
fn each_checked_task_reports_its_own_changes_and_checks_never_take_the_group_down() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let updated = Some(Reason::TaskCheckStatusUpdated);
    let running = TaskState::TaskRunning;
    let mut ex = executor(false);
    ex.handle(Input::LaunchGroup { tasks: vec![with_check("a"), spec("b", None)] }, t0);
    let out = ex.handle(spawned("a"), t0);
    assert_eq!(check_updates(&out), [("a".into(), running, Some(tcp(None)), None, None)]);
    let out = ex.handle(spawned("b"), t0);
    assert_eq!(check_updates(&out), [("b".into(), running, None, None, None)], "no check");
    assert_eq!(checks(&ex.handle(Input::Tick, t0)), ["a"], "only the checked task is probed");

    let refused = || Input::Checked { task_id: "a".into(), outcome: Ok(tcp(Some(false))) };
    let out = ex.handle(refused(), t0);
    assert_eq!(check_updates(&out), [("a".into(), running, Some(tcp(Some(false))), None, updated)]);
    assert!(signals(&out).is_empty(), "a failed check kills nothing");
    assert!(checks(&ex.handle(Input::Tick, t0)).is_empty(), "not before the interval");

    assert_eq!(checks(&ex.handle(Input::Tick, t0 + secs(1))), ["a"]);
    assert!(check_updates(&ex.handle(refused(), t0 + secs(1))).is_empty(), "no change");
    assert_eq!(checks(&ex.handle(Input::Tick, t0 + secs(2))), ["a"]);
    let why = Input::Checked { task_id: "a".into(), outcome: Err("no answer".into()) };
    assert!(check_updates(&ex.handle(why, t0 + secs(2))).is_empty(), "no result, no change");
    assert_eq!(checks(&ex.handle(Input::Tick, t0 + secs(3))), ["a"]);
    let up = Input::Checked { task_id: "a".into(), outcome: Ok(tcp(Some(true))) };
    let out = ex.handle(up, t0 + secs(3));
    assert_eq!(check_updates(&out), [("a".into(), running, Some(tcp(Some(true))), None, updated)]);

    // The task's end stops its checks; its terminal update carries no check status.
    let out = ex.handle(exited("a", Termination::Exited(0)), t0 + secs(4));
    assert_eq!(check_updates(&out), [("a".into(), TaskState::TaskFinished, None, None, None)]);
    assert!(checks(&ex.handle(Input::Tick, t0 + secs(9))).is_empty());
    let late = Input::Checked { task_id: "a".into(), outcome: Ok(tcp(Some(false))) };
    assert!(check_updates(&ex.handle(late, t0 + secs(9))).is_empty());
}

#[test]
fn health_updates_of_a_checked_task_carry_its_latest_check_status() {
    let t0 = Instant::now();
    let mut ex = executor(false);
    let both = TaskSpec { health: checked("a").health, ..with_check("a") };
    ex.handle(Input::LaunchGroup { tasks: vec![both] }, t0);
    ex.handle(spawned("a"), t0);
    let out = ex.handle(Input::Tick, t0);
    assert_eq!((probes(&out), checks(&out)), (vec!["a".into()], vec!["a".into()]));
    ex.handle(Input::Checked { task_id: "a".into(), outcome: Ok(tcp(Some(true))) }, t0);
    let out = ex.handle(Input::Probed { task_id: "a".into(), result: Ok(()) }, t0);
    let reason = Some(Reason::TaskHealthCheckStatusUpdated);
    let running = TaskState::TaskRunning;
    assert_eq!(
        check_updates(&out),
        [("a".into(), running, Some(tcp(Some(true))), Some(true), reason)]
    );
}

#[test]
fn an_invalid_check_keeps_the_group_from_starting() {
    let t0 = Instant::now();
    let mut ex = executor(false);
    let bad = TaskSpec { check: Some(Err("no port".into())), ..spec("a", None) };
    let out = ex.handle(Input::LaunchGroup { tasks: vec![bad, spec("b", None)] }, t0);
    assert!(spawns(&out).is_empty());
    let ends: Vec<_> =
        states(&out).into_iter().filter(|(_, s)| *s != TaskState::TaskStarting).collect();
    assert_eq!(ends, [("a".into(), TaskState::TaskFailed), ("b".into(), TaskState::TaskKilled)]);
    assert!(messages(&out).iter().flatten().any(|m| m.contains("Invalid check: no port")));
}
