//! Health checks of a task (reference §2.12, §7.7): what a `HealthCheck` asks for in the
//! executors' terms ([`HealthSpec`]: the probe and its timing), and the sans-IO checker that
//! decides when the next probe is due, which results are worth a TASK_RUNNING update with
//! `healthy` set, and when failures add up to killing the task ([`HealthChecker`]).
//!
//! It runs no probe: the IO shell (`probe.rs`) connects, requests or runs the command and feeds
//! the verdict back; time enters as the `now` of each call. It does not send updates or kill
//! anything either: it says so, and the executor core that owns the task acts. Generalized
//! checks (`CheckInfo`) have their own checker in `check.rs`, which shares [`Probe`] and the
//! field parsing here.

use std::time::{Duration, Instant};

use agora_proto::v1;
use agora_proto::v1::health_check::Type;

/// Mesos's defaults for the fields a `HealthCheck` leaves unset.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(15);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The longest duration honoured; it keeps `Instant` arithmetic far from overflow when a
/// health check from the wire names centuries.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// What one probe does, and what its result means for a health check (a generalized check
/// reports the raw exit code, status code or connection result instead; see `check.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Run this command in the task's sandbox; exit status 0 means healthy. (Boxed: a
    /// CommandInfo is large, and probes travel inside every task's state.)
    Command(Box<v1::CommandInfo>),
    /// Connect to 127.0.0.1:port; a completed connection means healthy.
    Tcp { port: u16 },
    /// GET http://127.0.0.1:port/path; a status in 200..=399 means healthy.
    Http { port: u16, path: String },
}

/// A task's health check: the probe, and when its results count.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSpec {
    pub probe: Probe,
    /// From the task's start to the first probe.
    pub delay: Duration,
    /// From the end of one probe to the start of the next.
    pub interval: Duration,
    /// How long one probe may take before it counts as a failure; `None` for no limit
    /// (a zero `timeout_seconds`, as in Mesos).
    pub timeout: Option<Duration>,
    /// Failures in a row, outside the grace period, that get the task killed (at least 1).
    pub consecutive_failures: u32,
    /// From the task's start: failures before the first success within it are ignored.
    pub grace_period: Duration,
}

impl HealthSpec {
    /// The executors' view of `check`, with Mesos's defaults for what it leaves unset; the
    /// error says what makes it unusable (and becomes the message of the task's TASK_FAILED).
    pub fn from_proto(check: &v1::HealthCheck) -> Result<Self, String> {
        let probe = match check.r#type() {
            Type::Command => {
                let command =
                    check.command.clone().ok_or("a COMMAND health check needs a command")?;
                if command.value.as_deref().unwrap_or_default().is_empty() {
                    return Err("the health check's command has no value".into());
                }
                Probe::Command(Box::new(command))
            }
            Type::Tcp => {
                let tcp = check.tcp.as_ref().ok_or("a TCP health check needs a port")?;
                Probe::Tcp { port: port(WHAT, tcp.port)? }
            }
            Type::Http => {
                let http = check.http.as_ref().ok_or("an HTTP health check needs a port")?;
                if !matches!(http.scheme(), "" | "http") {
                    let scheme = http.scheme();
                    return Err(format!("HTTP health checks over '{scheme}' are not supported"));
                }
                Probe::Http { port: port(WHAT, http.port)?, path: url_path(WHAT, http.path())? }
            }
            Type::Unknown => return Err("the health check has no (known) type".into()),
        };
        let timeout = seconds(WHAT, "timeout_seconds", check.timeout_seconds, DEFAULT_TIMEOUT)?;
        Ok(Self {
            probe,
            delay: seconds(WHAT, "delay_seconds", check.delay_seconds, DEFAULT_DELAY)?,
            interval: seconds(WHAT, "interval_seconds", check.interval_seconds, DEFAULT_INTERVAL)?,
            timeout: (!timeout.is_zero()).then_some(timeout),
            consecutive_failures: check
                .consecutive_failures
                .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES)
                .max(1),
            grace_period: seconds(
                WHAT,
                "grace_period_seconds",
                check.grace_period_seconds,
                DEFAULT_GRACE_PERIOD,
            )?,
        })
    }
}

/// How errors about a `HealthCheck` name it.
const WHAT: &str = "health check";

/// A probe's port; `what` names the check in the error.
pub(crate) fn port(what: &str, port: u32) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{port} is not a {what} port"))
}

/// The path an HTTP probe requests: rooted, `/` when unset.
pub(crate) fn url_path(what: &str, path: &str) -> Result<String, String> {
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    // The path goes into a request line: whitespace or line breaks would forge one.
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the {what}'s path {path:?} is not a URL path"));
    }
    Ok(path)
}

/// A duration field in seconds, `default` when unset; `what` names the check in the error.
pub(crate) fn seconds(
    what: &str,
    name: &str,
    value: Option<f64>,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s >= 0.0 => {
            Ok(Duration::from_secs_f64(s.min(MAX_DURATION.as_secs_f64())))
        }
        Some(s) => Err(format!("the {what}'s {name} ({s}) must be a non-negative number")),
    }
}

/// What a probe's result means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to report (a success after a success, or a failure inside the grace period).
    Quiet,
    /// Send a TASK_RUNNING update with `healthy` set to this.
    Report { healthy: bool },
    /// Send the unhealthy update, then kill the task: failures reached the limit.
    ReportAndKill,
}

/// The checker of one running task: when the next probe is due, and what results mean.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    spec: HealthSpec,
    started: Instant,
    schedule: ProbeSchedule,
    failures: u32,
    /// No success yet: failures within the grace period are ignored, and the first success is
    /// reported.
    initializing: bool,
}

/// When the probes of one check (a health check or a generalized check) run: the first after
/// the delay, then one interval after each result, one at a time, none once stopped.
#[derive(Debug, Clone)]
pub(crate) struct ProbeSchedule {
    /// When the next probe is due; `None` while one runs or once checking stopped.
    next: Option<Instant>,
    /// A probe was asked for and its result has not come back.
    running: bool,
    stopped: bool,
}

impl ProbeSchedule {
    pub(crate) fn new(first: Instant) -> Self {
        Self { next: Some(first), running: false, stopped: false }
    }

    /// When [`ProbeSchedule::due`] must be asked next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a probe must start at `now`; a `true` marks it running until its result.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(next) if !self.stopped && !self.running && now >= next => {
                self.next = None;
                self.running = true;
                true
            }
            _ => false,
        }
    }

    /// The probe under way ended at `now`; the next is due `interval` later. `false` for a
    /// result nobody asked for (none running, or checking stopped), which must be ignored.
    pub(crate) fn finished(&mut self, now: Instant, interval: Duration) -> bool {
        if self.stopped || !self.running {
            return false;
        }
        self.running = false;
        self.next = Some(now + interval);
        true
    }

    /// No more probes; later results are ignored.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.next = None;
    }
}

impl HealthChecker {
    /// Starts checking a task that started at `now`.
    pub fn new(spec: HealthSpec, now: Instant) -> Self {
        let schedule = ProbeSchedule::new(now + spec.delay);
        Self { spec, started: now, schedule, failures: 0, initializing: true }
    }

    pub fn spec(&self) -> &HealthSpec {
        &self.spec
    }

    /// When [`HealthChecker::due`] must be asked next.
    pub fn deadline(&self) -> Option<Instant> {
        self.schedule.deadline()
    }

    /// Whether a probe must start at `now`; a `true` marks it running until its result.
    pub fn due(&mut self, now: Instant) -> bool {
        self.schedule.due(now)
    }

    /// The result of the probe that [`HealthChecker::due`] started, observed at `now`; the
    /// next probe is due one interval later. A result nobody asked for is ignored.
    pub fn result(&mut self, healthy: bool, now: Instant) -> Verdict {
        if !self.schedule.finished(now, self.spec.interval) {
            return Verdict::Quiet;
        }
        if healthy {
            let report = self.initializing || self.failures > 0;
            self.initializing = false;
            self.failures = 0;
            return if report { Verdict::Report { healthy: true } } else { Verdict::Quiet };
        }
        if self.initializing
            && now.saturating_duration_since(self.started) <= self.spec.grace_period
        {
            return Verdict::Quiet;
        }
        self.failures += 1;
        if self.failures >= self.spec.consecutive_failures {
            self.stop();
            Verdict::ReportAndKill
        } else {
            Verdict::Report { healthy: false }
        }
    }

    /// No more probes (the task is being killed or is over); later results are ignored.
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

    fn spec(failures: u32, grace: u64) -> HealthSpec {
        HealthSpec {
            probe: Probe::Tcp { port: 80 },
            delay: secs(5),
            interval: secs(2),
            timeout: Some(secs(1)),
            consecutive_failures: failures,
            grace_period: secs(grace),
        }
    }

    #[test]
    fn unset_fields_take_mesos_defaults_and_bad_ones_are_refused() {
        let check = v1::HealthCheck {
            r#type: Some(Type::Command as i32),
            command: Some(v1::CommandInfo { value: Some("true".into()), ..Default::default() }),
            ..Default::default()
        };
        let spec = HealthSpec::from_proto(&check).expect("valid");
        assert_eq!(
            (spec.delay, spec.interval, spec.timeout, spec.consecutive_failures, spec.grace_period),
            (secs(15), secs(10), Some(secs(20)), 3, secs(10))
        );

        let http = |path: &str, scheme: Option<&str>| v1::HealthCheck {
            r#type: Some(Type::Http as i32),
            http: Some(v1::health_check::HttpCheckInfo {
                port: 8080,
                path: Some(path.into()),
                scheme: scheme.map(str::to_string),
                ..Default::default()
            }),
            timeout_seconds: Some(0.0),
            consecutive_failures: Some(0),
            ..Default::default()
        };
        let spec = HealthSpec::from_proto(&http("health", None)).expect("valid");
        assert_eq!(spec.probe, Probe::Http { port: 8080, path: "/health".into() });
        assert_eq!((spec.timeout, spec.consecutive_failures), (None, 1), "0 = no timeout");

        let refused = [
            http("/a b", None),
            http("/", Some("https")),
            v1::HealthCheck { r#type: Some(Type::Tcp as i32), ..Default::default() },
            v1::HealthCheck {
                r#type: Some(Type::Tcp as i32),
                tcp: Some(v1::health_check::TcpCheckInfo { port: 70000, ..Default::default() }),
                ..Default::default()
            },
            v1::HealthCheck { r#type: Some(Type::Command as i32), ..Default::default() },
            v1::HealthCheck::default(),
            v1::HealthCheck { delay_seconds: Some(-1.0), ..check.clone() },
            v1::HealthCheck { interval_seconds: Some(f64::NAN), ..check },
        ];
        for check in refused {
            assert!(HealthSpec::from_proto(&check).is_err(), "{check:?}");
        }
    }

    #[test]
    fn probes_start_after_the_delay_then_one_interval_after_each_result() {
        let t0 = Instant::now();
        let mut checker = HealthChecker::new(spec(3, 0), t0);
        assert_eq!(checker.deadline(), Some(t0 + secs(5)));
        assert!(!checker.due(t0 + secs(4)));
        assert!(checker.due(t0 + secs(5)));
        assert_eq!(checker.deadline(), None, "nothing is due while a probe runs");
        assert!(!checker.due(t0 + secs(9)), "one probe at a time");
        checker.result(true, t0 + secs(6));
        assert_eq!(checker.deadline(), Some(t0 + secs(8)));
    }

    /// Each row: (seconds since start, probe result, expected verdict), fed in order to a
    /// checker with a 3-failure limit and a 10 s grace period.
    #[test]
    fn the_transition_table() {
        use Verdict::*;
        let unhealthy = Report { healthy: false };
        let healthy = Report { healthy: true };
        let rows: &[(u64, bool, Verdict)] = &[
            (5, false, Quiet),      // inside the grace period before any success: ignored
            (10, false, Quiet),     // the grace period includes its last instant
            (12, true, healthy),    // the first success is reported
            (14, true, Quiet),      // and later ones are not
            (16, false, unhealthy), // every failure is reported
            (18, true, healthy),    // so is the recovery
            (20, false, unhealthy),
            (22, false, unhealthy),
            (24, false, ReportAndKill), // the third failure in a row kills
            (26, true, Quiet),          // and nothing counts after that
        ];
        let t0 = Instant::now();
        let mut checker = HealthChecker::new(spec(3, 10), t0);
        for &(at, result, expected) in rows {
            let now = t0 + secs(at);
            if at < 26 {
                assert!(checker.due(now), "a probe is due at {at} s");
            }
            assert_eq!(checker.result(result, now), expected, "at {at} s");
        }
        assert_eq!(checker.deadline(), None, "no more probes after the kill");
    }

    #[test]
    fn failures_after_the_grace_period_count_even_without_a_success() {
        let t0 = Instant::now();
        let mut checker = HealthChecker::new(spec(2, 6), t0);
        assert!(checker.due(t0 + secs(5)));
        assert_eq!(checker.result(false, t0 + secs(6)), Verdict::Quiet);
        assert!(checker.due(t0 + secs(8)));
        assert_eq!(checker.result(false, t0 + secs(8)), Verdict::Report { healthy: false });
        assert!(checker.due(t0 + secs(10)));
        assert_eq!(checker.result(false, t0 + secs(10)), Verdict::ReportAndKill);
    }

    #[test]
    fn a_stopped_checker_asks_for_nothing_and_ignores_late_results() {
        let t0 = Instant::now();
        let mut checker = HealthChecker::new(spec(1, 0), t0);
        assert!(checker.due(t0 + secs(5)));
        checker.stop();
        assert_eq!(checker.result(false, t0 + secs(6)), Verdict::Quiet);
        assert!(!checker.due(t0 + secs(60)));
        assert_eq!(checker.deadline(), None);
    }
}
