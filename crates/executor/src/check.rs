//! Generalized checks of a task (`TaskInfo.check`, reference §2.12, §7.7): what a `CheckInfo`
//! asks for in the executors' terms ([`CheckSpec`]: the probe and its timing), the result the
//! framework sees ([`CheckStatus`], the sans-wire form of `CheckStatusInfo`), and the sans-IO
//! checker that decides when the next probe is due and which results are worth a TASK_RUNNING
//! update ([`Checker`]).
//!
//! Unlike a health check, a check judges nothing: it reports the raw result (a command's exit
//! code, an HTTP status code, whether a TCP connection succeeded) and never kills the task.
//! An update goes out only when the result differs from the last one. The checker starts with
//! an empty result of the check's type ("no result yet"), which the executors put on the
//! task's first TASK_RUNNING update, as Mesos does; so the first real result is a change, and
//! a probe that times out (an empty result too) is not one until a real result came before
//! it. A probe that could not be carried out at all (the command would not start, the HTTP
//! server would not answer with a status line) changes nothing: the executor logs why.
//!
//! Like `health.rs` it runs no probe (`probe.rs` does, with the same [`Probe`]), and time
//! enters as the `now` of each call.

use std::time::{Duration, Instant};

use agora_proto::v1;
use agora_proto::v1::check_info::Type;

use crate::health::{Probe, ProbeSchedule, port, seconds, url_path};

/// Mesos's defaults for the fields a `CheckInfo` leaves unset.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(15);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// How errors about a `CheckInfo` name it.
const WHAT: &str = "check";

/// A task's check: the probe and its timing.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub probe: Probe,
    /// From the task's start to the first probe.
    pub delay: Duration,
    /// From the end of one probe to the start of the next.
    pub interval: Duration,
    /// How long one probe may take before its result is empty; `None` for no limit (a zero
    /// `timeout_seconds`, as for health checks).
    pub timeout: Option<Duration>,
}

impl CheckSpec {
    /// The executors' view of `check`, with Mesos's defaults for what it leaves unset; the
    /// error says what makes it unusable (and becomes the message of the task's TASK_FAILED).
    pub fn from_proto(check: &v1::CheckInfo) -> Result<Self, String> {
        let probe = match check.r#type() {
            Type::Command => {
                let command = check
                    .command
                    .as_ref()
                    .map(|c| c.command.clone())
                    .ok_or("a COMMAND check needs a command")?;
                if command.value.as_deref().unwrap_or_default().is_empty() {
                    return Err("the check's command has no value".into());
                }
                Probe::Command(Box::new(command))
            }
            Type::Tcp => {
                let tcp = check.tcp.as_ref().ok_or("a TCP check needs a port")?;
                Probe::Tcp { port: port(WHAT, tcp.port)? }
            }
            Type::Http => {
                let http = check.http.as_ref().ok_or("an HTTP check needs a port")?;
                Probe::Http { port: port(WHAT, http.port)?, path: url_path(WHAT, http.path())? }
            }
            Type::Unknown => return Err("the check has no (known) type".into()),
        };
        let timeout = seconds(WHAT, "timeout_seconds", check.timeout_seconds, DEFAULT_TIMEOUT)?;
        Ok(Self {
            probe,
            delay: seconds(WHAT, "delay_seconds", check.delay_seconds, DEFAULT_DELAY)?,
            interval: seconds(WHAT, "interval_seconds", check.interval_seconds, DEFAULT_INTERVAL)?,
            timeout: (!timeout.is_zero()).then_some(timeout),
        })
    }
}

/// The result of a check as the framework sees it (`CheckStatusInfo`): its type, and the
/// result when there is one (`None`: no result yet, or the probe timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Command { exit_code: Option<i32> },
    Http { status_code: Option<u32> },
    Tcp { succeeded: Option<bool> },
}

impl CheckStatus {
    /// The empty result of the type of check that `probe` carries out.
    pub fn empty(probe: &Probe) -> Self {
        match probe {
            Probe::Command(_) => Self::Command { exit_code: None },
            Probe::Http { .. } => Self::Http { status_code: None },
            Probe::Tcp { .. } => Self::Tcp { succeeded: None },
        }
    }

    /// Whether `self` and `other` are results of the same type of check.
    fn same_type(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    /// The wire form: `type` always set, and the sub-message of that type always present, with
    /// its field unset for an empty result (how Mesos says "no result").
    pub fn to_proto(self) -> v1::CheckStatusInfo {
        use v1::check_status_info::{Command, Http, Tcp};
        let mut status = v1::CheckStatusInfo::default();
        match self {
            Self::Command { exit_code } => {
                status.set_type(Type::Command);
                status.command = Some(Command { exit_code });
            }
            Self::Http { status_code } => {
                status.set_type(Type::Http);
                status.http = Some(Http { status_code });
            }
            Self::Tcp { succeeded } => {
                status.set_type(Type::Tcp);
                status.tcp = Some(Tcp { succeeded });
            }
        }
        status
    }
}

/// The checker of one running task: when the next probe is due, and which results to report.
#[derive(Debug, Clone)]
pub struct Checker {
    spec: CheckSpec,
    schedule: ProbeSchedule,
    /// The last result, reported or (at the start) to be put on the first TASK_RUNNING update.
    status: CheckStatus,
}

impl Checker {
    /// Starts checking a task that started at `now`, with an empty result.
    pub fn new(spec: CheckSpec, now: Instant) -> Self {
        let schedule = ProbeSchedule::new(now + spec.delay);
        let status = CheckStatus::empty(&spec.probe);
        Self { spec, schedule, status }
    }

    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }

    /// The latest result: what the task's TASK_RUNNING updates carry.
    pub fn status(&self) -> CheckStatus {
        self.status
    }

    /// When [`Checker::due`] must be asked next.
    pub fn deadline(&self) -> Option<Instant> {
        self.schedule.deadline()
    }

    /// Whether a probe must start at `now`; a `true` marks it running until its result.
    pub fn due(&mut self, now: Instant) -> bool {
        self.schedule.due(now)
    }

    /// The outcome of the probe that [`Checker::due`] started, observed at `now`: a result
    /// (empty for a timeout), or why there is none. The next probe is due one interval later.
    /// Returns the new result when it differs from the last one, i.e. when it must be
    /// reported. An outcome nobody asked for, a failure, or a result of another type of check
    /// changes nothing.
    pub fn result(
        &mut self,
        outcome: Result<CheckStatus, String>,
        now: Instant,
    ) -> Option<CheckStatus> {
        if !self.schedule.finished(now, self.spec.interval) {
            return None;
        }
        let status = outcome.ok().filter(|s| s.same_type(&self.status))?;
        (status != self.status).then(|| {
            self.status = status;
            status
        })
    }

    /// No more probes (the task is being killed or is over); later outcomes are ignored.
    pub fn stop(&mut self) {
        self.schedule.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn command_check(value: &str) -> v1::CheckInfo {
        v1::CheckInfo {
            r#type: Some(Type::Command as i32),
            command: Some(v1::check_info::Command {
                command: v1::CommandInfo { value: Some(value.into()), ..Default::default() },
            }),
            ..Default::default()
        }
    }

    fn spec() -> CheckSpec {
        CheckSpec {
            probe: Probe::Command(Box::default()),
            delay: secs(5),
            interval: secs(2),
            timeout: Some(secs(1)),
        }
    }

    fn exit(code: i32) -> Result<CheckStatus, String> {
        Ok(CheckStatus::Command { exit_code: Some(code) })
    }

    #[test]
    fn unset_fields_take_mesos_defaults_and_bad_ones_are_refused() {
        let spec = CheckSpec::from_proto(&command_check("true")).expect("valid");
        assert_eq!((spec.delay, spec.interval, spec.timeout), (secs(15), secs(10), Some(secs(20))));

        let http = v1::CheckInfo {
            r#type: Some(Type::Http as i32),
            http: Some(v1::check_info::Http { port: 8080, path: Some("ready".into()) }),
            timeout_seconds: Some(0.0),
            delay_seconds: Some(0.0),
            interval_seconds: Some(0.5),
            ..Default::default()
        };
        let spec = CheckSpec::from_proto(&http).expect("valid");
        assert_eq!(spec.probe, Probe::Http { port: 8080, path: "/ready".into() });
        assert_eq!((spec.delay, spec.interval, spec.timeout), (secs(0), secs(1) / 2, None));
        let tcp = v1::CheckInfo {
            r#type: Some(Type::Tcp as i32),
            tcp: Some(v1::check_info::Tcp { port: 22 }),
            ..Default::default()
        };
        assert_eq!(CheckSpec::from_proto(&tcp).map(|s| s.probe), Ok(Probe::Tcp { port: 22 }));

        let refused = [
            v1::CheckInfo { r#type: Some(Type::Command as i32), ..Default::default() },
            v1::CheckInfo {
                command: Some(v1::check_info::Command { command: v1::CommandInfo::default() }),
                ..command_check("true")
            },
            command_check(""),
            v1::CheckInfo { r#type: Some(Type::Http as i32), ..Default::default() },
            v1::CheckInfo { r#type: Some(Type::Tcp as i32), ..Default::default() },
            v1::CheckInfo { tcp: Some(v1::check_info::Tcp { port: 70000 }), ..tcp },
            v1::CheckInfo {
                http: Some(v1::check_info::Http { port: 80, path: Some("/a\r\nb".into()) }),
                ..http
            },
            v1::CheckInfo::default(),
            v1::CheckInfo { delay_seconds: Some(-1.0), ..command_check("true") },
            v1::CheckInfo { timeout_seconds: Some(f64::INFINITY), ..command_check("true") },
        ];
        for check in refused {
            assert!(CheckSpec::from_proto(&check).is_err(), "{check:?}");
        }
    }

    #[test]
    fn the_wire_form_always_names_the_type_and_carries_its_sub_message() {
        use v1::check_status_info::{Command, Http, Tcp};
        let empty = CheckStatus::Http { status_code: None }.to_proto();
        assert_eq!(empty.r#type(), Type::Http);
        assert_eq!(empty.http, Some(Http { status_code: None }));
        assert_eq!((empty.command, empty.tcp), (None, None));
        let exited = CheckStatus::Command { exit_code: Some(3) }.to_proto();
        assert_eq!(
            (exited.r#type(), exited.command),
            (Type::Command, Some(Command { exit_code: Some(3) }))
        );
        let tcp = CheckStatus::Tcp { succeeded: Some(false) }.to_proto();
        assert_eq!((tcp.r#type(), tcp.tcp), (Type::Tcp, Some(Tcp { succeeded: Some(false) })));
    }

    #[test]
    fn probes_start_after_the_delay_then_one_interval_after_each_result() {
        let t0 = Instant::now();
        let mut checker = Checker::new(spec(), t0);
        assert_eq!(checker.status(), CheckStatus::Command { exit_code: None }, "empty at first");
        assert_eq!(checker.deadline(), Some(t0 + secs(5)));
        assert!(!checker.due(t0 + secs(4)));
        assert!(checker.due(t0 + secs(5)));
        assert_eq!(checker.deadline(), None, "nothing is due while a probe runs");
        assert!(!checker.due(t0 + secs(9)), "one probe at a time");
        checker.result(exit(0), t0 + secs(6));
        assert_eq!(checker.deadline(), Some(t0 + secs(8)));
        assert!(checker.due(t0 + secs(8)));
        checker.result(Err("cannot run".into()), t0 + secs(8));
        assert_eq!(checker.deadline(), Some(t0 + secs(10)), "a failure reschedules too");
    }

    /// Each row: (probe outcome, expected report), fed in order, one interval apart.
    #[test]
    fn only_changes_are_reported() {
        let timed_out = Ok(CheckStatus::Command { exit_code: None });
        let rows: Vec<(Result<CheckStatus, String>, Option<CheckStatus>)> = vec![
            (timed_out.clone(), None),         // empty, like the start: no change
            (exit(3), exit(3).ok()),           // the first result is a change
            (exit(3), None),                   // the same again is not
            (Err("cannot fork".into()), None), // no result: nothing changes
            (exit(3), None),                   // so 3 is still the last one
            (exit(0), exit(0).ok()),           // a new exit code is reported
            (timed_out.clone(), timed_out.clone().ok()), // a timeout after a result is a change
            (Ok(CheckStatus::Tcp { succeeded: Some(true) }), None), // wrong type: ignored
            (exit(0), exit(0).ok()),
        ];
        let t0 = Instant::now();
        let mut checker = Checker::new(spec(), t0);
        let mut now = t0 + secs(5);
        for (i, (outcome, expected)) in rows.into_iter().enumerate() {
            assert!(checker.due(now), "a probe is due in row {i}");
            assert_eq!(checker.result(outcome, now), expected, "row {i}");
            if let Some(reported) = expected {
                assert_eq!(checker.status(), reported, "row {i}");
            }
            now += secs(2);
        }
    }

    #[test]
    fn a_stopped_checker_asks_for_nothing_and_ignores_late_results() {
        let t0 = Instant::now();
        let mut checker = Checker::new(spec(), t0);
        assert_eq!(checker.result(exit(1), t0), None, "a result nobody asked for");
        assert!(checker.due(t0 + secs(5)));
        checker.stop();
        assert_eq!(checker.result(exit(1), t0 + secs(6)), None);
        assert!(!checker.due(t0 + secs(60)));
        assert_eq!(checker.deadline(), None);
        assert_eq!(checker.status(), CheckStatus::Command { exit_code: None });
    }
}
