//! Table-driven tests of the command executor's decision core: the update sequence, the exit
//! mapping, kill escalation, refusals, shutdown and losing the agent. No processes, no clock:
//! time is an `Instant` the tests move by hand.

use super::*;
use crate::check::{CheckSpec, CheckStatus};
use crate::common::{ACK_TIMEOUT, DEFAULT_KILL_GRACE, SHUTDOWN_RESERVE, counting_uuids};
use crate::health::{HealthSpec, Probe};

fn uuid(n: u8) -> Vec<u8> {
    let mut uuid = vec![0u8; 16];
    uuid[0] = n;
    uuid
}

fn executor() -> CommandExecutor {
    CommandExecutor::new(Config::new(Duration::from_secs(5)), counting_uuids())
}

fn launch(task_id: &str, kill_grace: Option<Duration>) -> Input {
    Input::Launch {
        task_id: task_id.into(),
        command: Some(v1::CommandInfo { value: Some("true".into()), ..Default::default() }),
        kill_grace,
        health: None,
        check: None,
    }
}

fn kill(grace: Option<Duration>) -> Input {
    Input::Kill { task_id: "t".into(), grace }
}

/// The updates among `outputs`, as (task, state, message).
fn sent(outputs: &[Output]) -> Vec<(String, TaskState, Option<String>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => Some((u.task_id.clone(), u.state, u.message.clone())),
            _ => None,
        })
        .collect()
}

fn states(outputs: &[Output]) -> Vec<TaskState> {
    sent(outputs).into_iter().map(|(_, state, _)| state).collect()
}

fn signals(outputs: &[Output]) -> Vec<Signal> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Signal(s) => Some(*s),
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

/// An executor whose task `t` is running (uuids 1 and 2 used), at `t0`.
fn running(kill_grace: Option<Duration>) -> (CommandExecutor, Instant) {
    let t0 = Instant::now();
    let mut ex = executor();
    ex.handle(Input::Subscribed { task_killing_state: false }, t0);
    ex.handle(launch("t", kill_grace), t0);
    ex.handle(Input::Spawned, t0);
    (ex, t0)
}

#[test]
fn a_task_goes_starting_running_finished_and_the_ack_ends_the_executor() {
    let t0 = Instant::now();
    let mut ex = executor();
    assert!(ex.handle(Input::Subscribed { task_killing_state: false }, t0).is_empty());

    let out = ex.handle(launch("t", None), t0);
    assert_eq!(states(&out), [TaskState::TaskStarting]);
    assert!(out.iter().any(|o| matches!(o, Output::Spawn(Some(_)))));
    // STARTING goes out before the fork is attempted.
    let send = out.iter().position(|o| matches!(o, Output::Send(_)));
    let spawn = out.iter().position(|o| matches!(o, Output::Spawn(_)));
    assert!(send < spawn);

    assert_eq!(states(&ex.handle(Input::Spawned, t0)), [TaskState::TaskRunning]);
    assert_eq!(ex.next_deadline(), None);

    let out = ex.handle(Input::Exited(Termination::Exited(0)), t0);
    assert_eq!(
        sent(&out),
        [(
            "t".to_string(),
            TaskState::TaskFinished,
            Some("Command exited with status 0".to_string())
        )]
    );
    assert_eq!(exit(&out), None);
    assert_eq!(ex.next_deadline(), Some(t0 + ACK_TIMEOUT));
    assert_eq!(ex.unacknowledged().len(), 3);

    // Acks of the earlier updates only retire them.
    assert!(exit(&ex.handle(Input::Acknowledged { uuid: uuid(1) }, t0)).is_none());
    assert!(exit(&ex.handle(Input::Acknowledged { uuid: uuid(2) }, t0)).is_none());
    assert_eq!(ex.unacknowledged().len(), 1);
    assert_eq!(exit(&ex.handle(Input::Acknowledged { uuid: uuid(3) }, t0)), Some(0));
    assert!(ex.unacknowledged().is_empty());
    // Nothing happens after the exit.
    assert!(ex.handle(launch("u", None), t0).is_empty());
}

#[test]
fn exit_mapping() {
    use TaskState::*;
    let table = [
        (Termination::Exited(0), false, TaskFinished, "Command exited with status 0"),
        (Termination::Exited(1), false, TaskFailed, "Command exited with status 1"),
        (Termination::Exited(137), false, TaskFailed, "Command exited with status 137"),
        (Termination::Signaled(9), false, TaskFailed, "Command terminated with signal SIGKILL"),
        (Termination::Signaled(15), false, TaskFailed, "Command terminated with signal SIGTERM"),
        (Termination::Unknown, false, TaskFailed, "Command terminated with an unknown status"),
        (Termination::Signaled(15), true, TaskKilled, "Command terminated with signal SIGTERM"),
        (Termination::Signaled(9), true, TaskKilled, "Command terminated with signal SIGKILL"),
        (Termination::Exited(0), true, TaskKilled, "Command exited with status 0"),
        (Termination::Exited(2), true, TaskKilled, "Command exited with status 2"),
    ];
    for (termination, killed, state, message) in table {
        assert_eq!(
            terminal_state(termination, killed),
            (state, message.to_string()),
            "{termination:?} killed={killed}"
        );
    }
}

#[test]
fn the_exit_of_a_task_clears_its_process_group() {
    let (mut ex, t0) = running(None);
    let out = ex.handle(Input::Exited(Termination::Exited(1)), t0);
    assert_eq!(states(&out), [TaskState::TaskFailed]);
    assert_eq!(signals(&out), [Signal::SIGKILL]);
}

#[test]
fn kill_grace_comes_from_the_event_then_the_task_then_the_default() {
    let secs = Duration::from_secs;
    let table = [
        (Some(secs(10)), Some(secs(1)), secs(1)),
        (Some(secs(10)), None, secs(10)),
        (None, Some(secs(0)), secs(0)),
        (None, None, DEFAULT_KILL_GRACE),
    ];
    for (task_grace, event_grace, expected) in table {
        let (mut ex, t0) = running(task_grace);
        let out = ex.handle(kill(event_grace), t0);
        if expected.is_zero() {
            assert_eq!(signals(&out), [Signal::SIGTERM, Signal::SIGKILL]);
            assert_eq!(ex.next_deadline(), None);
        } else {
            assert_eq!(signals(&out), [Signal::SIGTERM]);
            assert_eq!(ex.next_deadline(), Some(t0 + expected), "{task_grace:?} {event_grace:?}");
        }
    }
}

#[test]
fn kill_escalates_to_sigkill_after_the_grace_period_and_ends_killed() {
    let (mut ex, t0) = running(None);
    let out = ex.handle(kill(None), t0);
    assert_eq!(signals(&out), [Signal::SIGTERM]);
    assert!(states(&out).is_empty(), "no TASK_KILLING without the capability");

    // A tick before the deadline changes nothing.
    assert!(signals(&ex.handle(Input::Tick, t0 + Duration::from_secs(2))).is_empty());
    let out = ex.handle(Input::Tick, t0 + DEFAULT_KILL_GRACE);
    assert_eq!(signals(&out), [Signal::SIGKILL]);
    assert_eq!(ex.next_deadline(), None);
    // Once escalated, more ticks and kills do nothing.
    assert!(signals(&ex.handle(Input::Tick, t0 + Duration::from_secs(10))).is_empty());
    assert!(signals(&ex.handle(kill(Some(Duration::ZERO)), t0)).is_empty());

    let out = ex.handle(Input::Exited(Termination::Signaled(9)), t0 + DEFAULT_KILL_GRACE);
    assert_eq!(states(&out), [TaskState::TaskKilled]);
}

#[test]
fn a_task_that_stops_on_sigterm_is_killed_without_sigkill() {
    let (mut ex, t0) = running(None);
    ex.handle(kill(None), t0);
    let out = ex.handle(Input::Exited(Termination::Signaled(15)), t0 + Duration::from_millis(5));
    assert_eq!(
        sent(&out),
        [(
            "t".to_string(),
            TaskState::TaskKilled,
            Some("Command terminated with signal SIGTERM".to_string())
        )]
    );
    // Only the clean-up of the group, no escalation timer left.
    assert_eq!(signals(&out), [Signal::SIGKILL]);
    assert_eq!(ex.next_deadline(), Some(t0 + Duration::from_millis(5) + ACK_TIMEOUT));
}

#[test]
fn a_later_kill_can_shorten_but_never_extend_the_grace_period() {
    let secs = Duration::from_secs;
    let (mut ex, t0) = running(None);
    ex.handle(kill(Some(secs(10))), t0);
    assert_eq!(ex.next_deadline(), Some(t0 + secs(10)));

    // Longer: ignored, and no second SIGTERM.
    let out = ex.handle(kill(Some(secs(60))), t0 + secs(1));
    assert!(signals(&out).is_empty());
    assert_eq!(ex.next_deadline(), Some(t0 + secs(10)));

    // Shorter: the SIGKILL comes earlier.
    let out = ex.handle(kill(Some(secs(2))), t0 + secs(1));
    assert!(signals(&out).is_empty());
    assert_eq!(ex.next_deadline(), Some(t0 + secs(3)));

    // A zero grace escalates at once.
    let out = ex.handle(kill(Some(Duration::ZERO)), t0 + secs(2));
    assert_eq!(signals(&out), [Signal::SIGKILL]);
}

#[test]
fn task_killing_is_sent_when_the_framework_asks_for_it() {
    let t0 = Instant::now();
    let mut ex = executor();
    ex.handle(Input::Subscribed { task_killing_state: true }, t0);
    ex.handle(launch("t", None), t0);
    ex.handle(Input::Spawned, t0);
    let out = ex.handle(kill(None), t0);
    assert_eq!(states(&out), [TaskState::TaskKilling]);
    assert_eq!(signals(&out), [Signal::SIGTERM]);
    // Only the first kill reports KILLING.
    assert!(states(&ex.handle(kill(Some(Duration::from_secs(1))), t0)).is_empty());
}

#[test]
fn kills_of_other_or_absent_tasks_are_ignored() {
    let t0 = Instant::now();
    let mut ex = executor();
    let out = ex.handle(kill(None), t0);
    assert!(signals(&out).is_empty() && states(&out).is_empty() && exit(&out).is_none());

    let (mut ex, t0) = running(None);
    let out = ex.handle(Input::Kill { task_id: "other".into(), grace: None }, t0);
    assert!(signals(&out).is_empty() && states(&out).is_empty());
    assert_eq!(ex.next_deadline(), None);
}

#[test]
fn a_kill_during_the_fork_is_carried_out_once_the_process_exists() {
    let t0 = Instant::now();
    let mut ex = executor();
    ex.handle(launch("t", None), t0);
    let out = ex.handle(kill(None), t0);
    assert!(signals(&out).is_empty(), "there is no process group yet");
    let out = ex.handle(Input::Spawned, t0);
    assert_eq!(states(&out), [TaskState::TaskRunning]);
    assert_eq!(signals(&out), [Signal::SIGTERM]);
    assert_eq!(ex.next_deadline(), Some(t0 + DEFAULT_KILL_GRACE));
}

#[test]
fn a_second_launch_is_refused() {
    let (mut ex, t0) = running(None);
    let out = ex.handle(launch("second", None), t0);
    assert_eq!(
        sent(&out),
        [("second".to_string(), TaskState::TaskFailed, Some(MULTIPLE_TASKS.to_string()))]
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Spawn(_))));
    // The refusal's ack does not end the executor; the first task still runs.
    assert_eq!(exit(&ex.handle(Input::Acknowledged { uuid: uuid(3) }, t0)), None);
    assert_eq!(
        states(&ex.handle(Input::Exited(Termination::Exited(0)), t0)),
        [TaskState::TaskFinished]
    );
}

#[test]
fn a_task_group_is_refused_task_by_task() {
    let t0 = Instant::now();
    let mut ex = executor();
    let out = ex.handle(Input::LaunchGroup { task_ids: vec!["a".into(), "b".into()] }, t0);
    let refused: Vec<_> = sent(&out).into_iter().map(|(id, state, _)| (id, state)).collect();
    assert_eq!(
        refused,
        [("a".to_string(), TaskState::TaskFailed), ("b".to_string(), TaskState::TaskFailed)]
    );
}

#[test]
fn a_failed_spawn_reports_failed_after_starting() {
    let t0 = Instant::now();
    let mut ex = executor();
    let out = ex.handle(launch("t", None), t0);
    assert_eq!(states(&out), [TaskState::TaskStarting]);
    let out = ex.handle(Input::SpawnFailed { message: "no such file".into() }, t0);
    assert_eq!(
        sent(&out),
        [("t".to_string(), TaskState::TaskFailed, Some("no such file".to_string()))]
    );
    assert!(signals(&out).is_empty(), "there is no process group to signal");
    assert_eq!(exit(&ex.handle(Input::Acknowledged { uuid: uuid(2) }, t0)), Some(0));
}

#[test]
fn shutdown_kills_with_the_shutdown_grace_minus_one_second_and_waits_briefly_for_the_ack() {
    let secs = Duration::from_secs;
    let (mut ex, t0) = running(Some(secs(30)));
    let out = ex.handle(Input::Shutdown, t0);
    assert_eq!(signals(&out), [Signal::SIGTERM]);
    assert_eq!(exit(&out), None);
    // 5 s configured, 1 s kept back for the terminal update.
    assert_eq!(ex.next_deadline(), Some(t0 + secs(4)));
    assert_eq!(signals(&ex.handle(Input::Tick, t0 + secs(4))), [Signal::SIGKILL]);

    let out = ex.handle(Input::Exited(Termination::Signaled(9)), t0 + secs(4));
    assert_eq!(states(&out), [TaskState::TaskKilled]);
    assert_eq!(ex.next_deadline(), Some(t0 + secs(4) + SHUTDOWN_RESERVE));
    assert_eq!(exit(&ex.handle(Input::Acknowledged { uuid: uuid(3) }, t0 + secs(4))), Some(0));
}

#[test]
fn shutdown_without_a_task_exits_at_once() {
    let mut ex = executor();
    assert_eq!(exit(&ex.handle(Input::Shutdown, Instant::now())), Some(0));
}

#[test]
fn shutdown_while_waiting_for_the_ack_shortens_the_wait() {
    let (mut ex, t0) = running(None);
    ex.handle(Input::Exited(Termination::Exited(0)), t0);
    assert_eq!(ex.next_deadline(), Some(t0 + ACK_TIMEOUT));
    let out = ex.handle(Input::Shutdown, t0);
    assert!(signals(&out).is_empty() && exit(&out).is_none());
    assert_eq!(ex.next_deadline(), Some(t0 + SHUTDOWN_RESERVE));
    assert_eq!(exit(&ex.handle(Input::Tick, t0 + SHUTDOWN_RESERVE)), Some(1));
}

#[test]
fn shutdown_grace_shorter_than_the_reserve_kills_at_once() {
    let t0 = Instant::now();
    let mut ex = CommandExecutor::new(Config::new(Duration::from_millis(500)), counting_uuids());
    ex.handle(launch("t", None), t0);
    ex.handle(Input::Spawned, t0);
    assert_eq!(signals(&ex.handle(Input::Shutdown, t0)), [Signal::SIGTERM, Signal::SIGKILL]);
}

#[test]
fn without_an_ack_the_executor_gives_up_after_the_fail_safe() {
    let (mut ex, t0) = running(None);
    ex.handle(Input::Exited(Termination::Exited(0)), t0);
    assert_eq!(exit(&ex.handle(Input::Tick, t0 + Duration::from_secs(59))), None);
    assert_eq!(exit(&ex.handle(Input::Tick, t0 + ACK_TIMEOUT)), Some(1));
}

#[test]
fn a_second_subscribed_after_a_resubscription_changes_nothing_but_the_capability() {
    // A checkpointing executor subscribes again after an agent restart, and the agent answers
    // SUBSCRIBED again: the running task carries on, nothing is sent, nothing is killed.
    let (mut ex, t0) = running(None);
    assert!(ex.handle(Input::Subscribed { task_killing_state: true }, t0).is_empty());
    // The framework info of the new SUBSCRIBED is the one that counts.
    assert_eq!(states(&ex.handle(kill(None), t0)), [TaskState::TaskKilling]);
    assert_eq!(ex.next_deadline(), Some(t0 + DEFAULT_KILL_GRACE));
}

#[test]
fn losing_the_agent_or_an_error_kills_the_task_and_exits_non_zero() {
    let lost = || Input::Disconnected { reason: "stream ended".into() };
    let error = || Input::Error { message: "bad".into() };
    for input in [lost(), error()] {
        let (mut ex, t0) = running(None);
        let out = ex.handle(input.clone(), t0);
        assert_eq!(signals(&out), [Signal::SIGKILL], "{input:?}");
        assert_eq!(exit(&out), Some(1), "{input:?}");
        assert!(states(&out).is_empty());

        // Before any task there is nothing to kill.
        let mut ex = executor();
        let out = ex.handle(input.clone(), t0);
        assert!(signals(&out).is_empty());
        assert_eq!(exit(&out), Some(1));
    }
}

#[test]
fn unknown_acks_and_stray_exits_change_nothing() {
    let t0 = Instant::now();
    let mut ex = executor();
    assert!(ex.handle(Input::Acknowledged { uuid: vec![1, 2, 3] }, t0).is_empty());
    assert!(ex.handle(Input::Exited(Termination::Exited(0)), t0).is_empty());
    assert!(ex.handle(Input::Spawned, t0).is_empty());
    assert!(ex.handle(Input::Tick, t0).is_empty());
}

/// A health check probing port 80 after 1 s, every 1 s, with no grace and a 2-failure limit.
fn health_spec() -> HealthSpec {
    HealthSpec {
        probe: Probe::Tcp { port: 80 },
        delay: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        timeout: Some(Duration::from_secs(1)),
        consecutive_failures: 2,
        grace_period: Duration::ZERO,
    }
}

/// An executor whose health-checked task `t` is running (uuids 1 and 2 used), at `t0`.
fn running_checked() -> (CommandExecutor, Instant) {
    let t0 = Instant::now();
    let mut ex = executor();
    ex.handle(Input::Subscribed { task_killing_state: false }, t0);
    let Input::Launch { task_id, command, kill_grace, .. } = launch("t", None) else {
        unreachable!("launch() makes a Launch");
    };
    let health = Some(Ok(Box::new(health_spec())));
    ex.handle(Input::Launch { task_id, command, kill_grace, health, check: None }, t0);
    ex.handle(Input::Spawned, t0);
    (ex, t0)
}

/// The health updates among `outputs`, as (state, healthy, reason).
fn health(outputs: &[Output]) -> Vec<(TaskState, Option<bool>, Option<Reason>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => Some((u.state, u.healthy, u.reason)),
            _ => None,
        })
        .collect()
}

fn probes(outputs: &[Output]) -> usize {
    outputs.iter().filter(|o| matches!(o, Output::Probe { .. })).count()
}

#[test]
fn health_checks_report_changes_and_kill_after_consecutive_failures() {
    let (mut ex, t0) = running_checked();
    let secs = Duration::from_secs;
    let updated = Some(Reason::TaskHealthCheckStatusUpdated);
    assert_eq!(ex.next_deadline(), Some(t0 + secs(1)), "the first probe after the delay");
    assert_eq!(probes(&ex.handle(Input::Tick, t0)), 0, "not before the delay");

    assert_eq!(probes(&ex.handle(Input::Tick, t0 + secs(1))), 1);
    let out = ex.handle(Input::Probed(Ok(())), t0 + secs(1));
    assert_eq!(health(&out), [(TaskState::TaskRunning, Some(true), updated)]);
    assert_eq!(ex.next_deadline(), Some(t0 + secs(2)));

    assert_eq!(probes(&ex.handle(Input::Tick, t0 + secs(2))), 1);
    assert!(
        ex.handle(Input::Probed(Ok(())), t0 + secs(2))
            .iter()
            .all(|o| !matches!(o, Output::Send(_)))
    );

    assert_eq!(probes(&ex.handle(Input::Tick, t0 + secs(3))), 1);
    let out = ex.handle(Input::Probed(Err("refused".into())), t0 + secs(3));
    assert_eq!(health(&out), [(TaskState::TaskRunning, Some(false), updated)]);
    assert!(signals(&out).is_empty());

    assert_eq!(probes(&ex.handle(Input::Tick, t0 + secs(4))), 1);
    let out = ex.handle(Input::Probed(Err("refused".into())), t0 + secs(4));
    assert_eq!(health(&out), [(TaskState::TaskRunning, Some(false), updated)]);
    assert_eq!(signals(&out), [Signal::SIGTERM], "the second failure in a row kills");
    assert_eq!(ex.next_deadline(), Some(t0 + secs(4) + DEFAULT_KILL_GRACE), "no more probes");
    assert_eq!(probes(&ex.handle(Input::Tick, t0 + secs(5))), 0);

    let out = ex.handle(Input::Exited(Termination::Signaled(15)), t0 + secs(5));
    assert_eq!(health(&out), [(TaskState::TaskKilled, Some(false), None)]);
}

#[test]
fn an_invalid_health_check_fails_the_task_without_starting_it() {
    let t0 = Instant::now();
    let mut ex = executor();
    let Input::Launch { task_id, command, kill_grace, .. } = launch("t", None) else {
        unreachable!("launch() makes a Launch");
    };
    let health = Some(Err("no port".into()));
    let out = ex.handle(Input::Launch { task_id, command, kill_grace, health, check: None }, t0);
    assert!(!out.iter().any(|o| matches!(o, Output::Spawn(_))));
    let sent = sent(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, TaskState::TaskFailed);
    assert!(sent[0].2.as_deref().is_some_and(|m| m.contains("Invalid health check: no port")));
}

#[test]
fn a_kill_stops_health_checks_and_the_terminal_update_says_nothing_of_health() {
    let (mut ex, t0) = running_checked();
    let secs = Duration::from_secs;
    assert_eq!(probes(&ex.handle(Input::Tick, t0 + secs(1))), 1);
    ex.handle(kill(None), t0 + secs(1));
    let out = ex.handle(Input::Probed(Err("refused".into())), t0 + secs(2));
    assert!(health(&out).is_empty(), "a late result is ignored");
    let out = ex.handle(Input::Exited(Termination::Signaled(15)), t0 + secs(2));
    assert_eq!(health(&out), [(TaskState::TaskKilled, None, None)]);
}

/// A COMMAND check probing after 1 s, every 1 s.
fn check_spec() -> CheckSpec {
    CheckSpec {
        probe: Probe::Command(Box::default()),
        delay: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        timeout: Some(Duration::from_secs(1)),
    }
}

/// An executor whose task `t`, with a check and maybe a health check, was launched and
/// spawned at `t0`; also the outputs of the spawn.
fn running_with_check(health: Option<HealthSpec>) -> (CommandExecutor, Instant, Vec<Output>) {
    let t0 = Instant::now();
    let mut ex = executor();
    ex.handle(Input::Subscribed { task_killing_state: true }, t0);
    let Input::Launch { task_id, command, kill_grace, .. } = launch("t", None) else {
        unreachable!("launch() makes a Launch");
    };
    let health = health.map(|h| Ok(Box::new(h)));
    let check = Some(Ok(Box::new(check_spec())));
    ex.handle(Input::Launch { task_id, command, kill_grace, health, check }, t0);
    let out = ex.handle(Input::Spawned, t0);
    (ex, t0, out)
}

/// The updates among `outputs`, as (state, check status, healthy, reason).
type CheckRow = (TaskState, Option<CheckStatus>, Option<bool>, Option<Reason>);
fn check_updates(outputs: &[Output]) -> Vec<CheckRow> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(u) => Some((u.state, u.check_status, u.healthy, u.reason)),
            _ => None,
        })
        .collect()
}

fn checks(outputs: &[Output]) -> usize {
    outputs.iter().filter(|o| matches!(o, Output::Check { .. })).count()
}

fn exit_code(code: Option<i32>) -> CheckStatus {
    CheckStatus::Command { exit_code: code }
}

#[test]
fn check_results_are_reported_when_they_change_and_never_kill() {
    let (mut ex, t0, out) = running_with_check(None);
    let secs = Duration::from_secs;
    let updated = Some(Reason::TaskCheckStatusUpdated);
    let running = TaskState::TaskRunning;
    assert_eq!(
        check_updates(&out),
        [(running, Some(exit_code(None)), None, None)],
        "TASK_RUNNING carries the empty first result"
    );
    assert_eq!(ex.next_deadline(), Some(t0 + secs(1)));
    assert_eq!(checks(&ex.handle(Input::Tick, t0)), 0, "not before the delay");

    // (time, outcome, expected update): only changes go out; failures and timeouts do not
    // kill.
    let rows: Vec<(u64, Result<CheckStatus, String>, Option<CheckRow>)> = vec![
        (1, Ok(exit_code(Some(3))), Some((running, Some(exit_code(Some(3))), None, updated))),
        (2, Ok(exit_code(Some(3))), None),
        (3, Err("cannot fork".into()), None),
        (4, Ok(exit_code(Some(0))), Some((running, Some(exit_code(Some(0))), None, updated))),
        (5, Ok(exit_code(None)), Some((running, Some(exit_code(None)), None, updated))),
        (6, Ok(exit_code(Some(1))), Some((running, Some(exit_code(Some(1))), None, updated))),
    ];
    for (at, outcome, expected) in rows {
        let now = t0 + secs(at);
        assert_eq!(checks(&ex.handle(Input::Tick, now)), 1, "a probe at {at} s");
        let out = ex.handle(Input::Checked(outcome), now);
        assert_eq!(check_updates(&out), expected.into_iter().collect::<Vec<_>>(), "at {at} s");
        assert!(signals(&out).is_empty(), "checks never kill");
    }

    // A kill stops the checks; the KILLING and terminal updates carry no check status.
    let out = ex.handle(kill(None), t0 + secs(7));
    assert_eq!(check_updates(&out), [(TaskState::TaskKilling, None, None, None)]);
    assert_eq!(checks(&ex.handle(Input::Tick, t0 + secs(8))), 0);
    assert!(
        check_updates(&ex.handle(Input::Checked(Ok(exit_code(Some(9)))), t0 + secs(8))).is_empty()
    );
    let out = ex.handle(Input::Exited(Termination::Signaled(15)), t0 + secs(8));
    assert_eq!(check_updates(&out), [(TaskState::TaskKilled, None, None, None)]);
}

#[test]
fn health_updates_carry_the_latest_check_status() {
    let (mut ex, t0, _) = running_with_check(Some(health_spec()));
    let secs = Duration::from_secs;
    let out = ex.handle(Input::Tick, t0 + secs(1));
    assert_eq!((probes(&out), checks(&out)), (1, 1), "both probes run side by side");
    ex.handle(Input::Checked(Ok(exit_code(Some(2)))), t0 + secs(1));
    let out = ex.handle(Input::Probed(Ok(())), t0 + secs(1));
    assert_eq!(
        check_updates(&out),
        [(
            TaskState::TaskRunning,
            Some(exit_code(Some(2))),
            Some(true),
            Some(Reason::TaskHealthCheckStatusUpdated)
        )]
    );
}

#[test]
fn an_invalid_check_fails_the_task_without_starting_it() {
    let t0 = Instant::now();
    let mut ex = executor();
    let Input::Launch { task_id, command, kill_grace, .. } = launch("t", None) else {
        unreachable!("launch() makes a Launch");
    };
    let check = Some(Err("a TCP check needs a port".into()));
    let out = ex.handle(Input::Launch { task_id, command, kill_grace, health: None, check }, t0);
    assert!(!out.iter().any(|o| matches!(o, Output::Spawn(_))));
    let sent = sent(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, TaskState::TaskFailed);
    assert!(sent[0].2.as_deref().is_some_and(|m| m.contains("Invalid check: a TCP check")));
}

#[test]
fn a_check_never_starts_when_a_kill_came_during_the_spawn() {
    let t0 = Instant::now();
    let mut ex = executor();
    let Input::Launch { task_id, command, kill_grace, .. } = launch("t", None) else {
        unreachable!("launch() makes a Launch");
    };
    let check = Some(Ok(Box::new(check_spec())));
    ex.handle(Input::Launch { task_id, command, kill_grace, health: None, check }, t0);
    ex.handle(kill(None), t0);
    let out = ex.handle(Input::Spawned, t0);
    assert_eq!(check_updates(&out), [(TaskState::TaskRunning, None, None, None)]);
    assert_eq!(checks(&ex.handle(Input::Tick, t0 + Duration::from_secs(1))), 0);
}
