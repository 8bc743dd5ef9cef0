//! The broker model of the Kafka framework and the text syntax of its values: periods (`1m`,
//! `30s`), ports (`9092`, `31000..31010`, auto), option maps (`k=v,k2=v2` with `\,`).
//!
//! These types are what the scheduler stores and what the REST API shows, in the JSON shapes of
//! Kafka-on-Mesos (camelCase names, periods and ports as strings). Parsing returns errors with
//! the offending text; nothing here does IO or reads a clock: times are milliseconds since the
//! epoch handed in by the caller.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::constraint::Constraint;

/// Bad user input, with a message fit for the CLI and the API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

pub(crate) fn bad(message: impl Into<String>) -> InputError {
    InputError(message.into())
}

/// A duration as Kafka-on-Mesos writes it: a number and a unit (`ms`, `s`, `m`, `h`, `d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Period(pub u64);

impl Period {
    pub fn ms(self) -> u64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Period, InputError> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| bad(format!("invalid period {text:?}: expected e.g. 30s")))?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(bad(format!("invalid period {text:?}: unit must be ms, s, m, h or d")));
            }
        };
        number
            .checked_mul(factor)
            .map(Period)
            .ok_or_else(|| bad(format!("invalid period {text:?}: too long")))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Period::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The ports a broker may listen on: one port or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// `9092`, `31000..31010`; empty or `auto` means any offered port (`None`).
    pub fn parse(text: &str) -> Result<Option<PortRange>, InputError> {
        let text = text.trim();
        if text.is_empty() || text == "auto" {
            return Ok(None);
        }
        let port = |t: &str| -> Result<u16, InputError> {
            match t.trim().parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
                _ => Err(bad(format!("invalid port {t:?}: must be a number in 1..65535"))),
            }
        };
        let (start, end) = match text.split_once("..") {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(text)?, port(text)?),
        };
        if start > end {
            return Err(bad(format!("invalid port range {text:?}: start > end")));
        }
        Ok(Some(PortRange { start, end }))
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}..{}", self.start, self.end)
        }
    }
}

/// Ports as an optional string: absent or `null` is auto.
mod port_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(p: &Option<PortRange>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.collect_str(p),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PortRange>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        PortRange::parse(text.as_deref().unwrap_or("")).map_err(serde::de::Error::custom)
    }
}

/// `k=v,k2=v2` with `\,` for a literal comma; an empty text is the empty map.
pub fn parse_map(text: &str) -> Result<BTreeMap<String, String>, InputError> {
    let mut map = BTreeMap::new();
    for item in split_escaped(text) {
        if item.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(bad(format!("invalid option {item:?}: expected key=value")));
        };
        if key.trim().is_empty() {
            return Err(bad(format!("invalid option {item:?}: empty key")));
        }
        map.insert(key.trim().to_string(), value.to_string());
    }
    Ok(map)
}

/// Splits on commas not preceded by a backslash, unescaping `\,`.
fn split_escaped(text: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                items.last_mut().expect("never empty").push(',');
            }
            ',' => items.push(String::new()),
            c => items.last_mut().expect("never empty").push(c),
        }
    }
    items
}

/// The broker options tansu can honour (Kafka-on-Mesos passes any `server.properties` key, but
/// tansu has no such file): `storage.engine` (`memory`, `sqlite`, or a `memory://` or
/// `sqlite://` URL), `log.dirs` (one directory, relative to the sandbox or absolute, holding a
/// SQLite store), `advertised.host.name` (advertised instead of the agent's hostname) and
/// `cluster.id` (tansu's cluster id). An empty value is the same as leaving an option out.
pub const BROKER_OPTIONS: &[&str] =
    &["storage.engine", "log.dirs", "advertised.host.name", "cluster.id"];

/// Refuses options tansu cannot honour, naming the ones it can.
pub fn check_options(options: &BTreeMap<String, String>) -> Result<(), InputError> {
    let set = |k: &str| options.get(k).map(String::as_str).filter(|v| !v.is_empty());
    for (key, value) in options.iter().filter(|(_, v)| !v.is_empty()) {
        match key.as_str() {
            "storage.engine" => match value.as_str() {
                "memory" | "sqlite" => {}
                url if url.starts_with("memory://") || url.starts_with("sqlite://") => {}
                other => {
                    return Err(bad(format!(
                        "unsupported storage.engine {other:?}: use memory, sqlite, or a memory:// or sqlite:// URL"
                    )));
                }
            },
            "log.dirs" => {
                if value.contains(',') {
                    return Err(bad(format!(
                        "invalid log.dirs {value:?}: tansu keeps one store, in one directory"
                    )));
                }
                if set("storage.engine").is_some_and(|e| e.contains("://") || e == "memory") {
                    return Err(bad(
                        "log.dirs and storage.engine memory or a URL contradict each other: set one",
                    ));
                }
            }
            "advertised.host.name" | "cluster.id" => {
                if value.chars().any(|c| c.is_whitespace() || c == '/' || c == ':') {
                    return Err(bad(format!("invalid {key} {value:?}: a plain name is expected")));
                }
            }
            other => {
                return Err(bad(format!(
                    "unsupported broker option {other:?}: tansu brokers accept {}",
                    BROKER_OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Refuses a bind address that is none of: an IP address or host name, a mask of IPv4
/// addresses with `*` (`192.168.*`), or `if:<interface>`; the executor resolves the last two
/// on the agent.
pub fn check_bind_address(text: &str) -> Result<(), InputError> {
    let invalid = || {
        bad(format!(
            "invalid bindAddress {text:?}: expected an address, a mask like 192.168.* or if:<interface>"
        ))
    };
    let name_char = |c: char| c.is_ascii_alphanumeric() || ".-_:".contains(c);
    match text.strip_prefix("if:") {
        Some(name) if !name.is_empty() && name.chars().all(name_char) => Ok(()),
        Some(_) => Err(invalid()),
        None if text.contains('*') => {
            if text.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '*') {
                Ok(())
            } else {
                Err(invalid())
            }
        }
        None if !text.is_empty() && text.chars().all(name_char) => Ok(()),
        None => Err(invalid()),
    }
}

/// The inverse of `parse_map`.
pub fn format_map<V: fmt::Display>(map: &BTreeMap<String, V>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.to_string().replace(',', "\\,")))
        .collect::<Vec<_>>()
        .join(",")
}

mod map_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        m: &BTreeMap<String, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_map(m))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        parse_map(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod constraints_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        m: &BTreeMap<String, Constraint>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_map(m))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Constraint>, D::Error> {
        Constraint::parse_all(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// When a failed broker may be started again, and when to give up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    pub delay: Period,
    pub max_delay: Period,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tries: Option<u32>,
    #[serde(default)]
    pub failures: u32,
    /// When the last failure happened (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<u64>,
    /// How the last failed task ended, so `broker list` can say why a broker is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Default for Failover {
    fn default() -> Self {
        Self {
            delay: Period(60_000),
            max_delay: Period(600_000),
            max_tries: None,
            failures: 0,
            failure_time: None,
            last_error: None,
        }
    }
}

impl Failover {
    /// `delay * 2^(failures-1)`, at most `max_delay`; zero without failures.
    pub fn current_delay(&self) -> u64 {
        if self.failures == 0 {
            return 0;
        }
        let shift = (self.failures - 1).min(40);
        self.delay.ms().saturating_mul(1u64 << shift).min(self.max_delay.ms())
    }

    /// The moment the broker may start again.
    pub fn delay_expires(&self) -> Option<u64> {
        self.failure_time.map(|t| t.saturating_add(self.current_delay()))
    }

    pub fn exceeded_max_tries(&self) -> bool {
        self.max_tries.is_some_and(|max| self.failures >= max)
    }
}

/// Where a stopped broker prefers to start again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stickiness {
    pub period: Period,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<u64>,
}

impl Default for Stickiness {
    fn default() -> Self {
        Self { period: Period(600_000), hostname: None, stop_time: None }
    }
}

impl Stickiness {
    /// The host the broker must return to at `now`, if the period has not run out.
    pub fn sticky_host(&self, now: u64) -> Option<&str> {
        let stop = self.stop_time?;
        (now < stop.saturating_add(self.period.ms())).then_some(self.hostname.as_deref()?)
    }
}

/// What the framework knows of a broker's current task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub slave_id: String,
    pub executor_id: String,
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `pending` (launched), `starting`, `running`, `stopping`.
    pub state: String,
    /// The text attributes of the agent it runs on, for constraints and broker expressions.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// What a broker's executor reports about it every `METRICS_INTERVAL` (Kafka-on-Mesos sends
/// JMX gauges; a tansu broker has no JMX, so these are what can be measured honestly: its
/// topics and partitions through Metadata, and its process's memory and CPU time). Kept in
/// memory by the scheduler, not stored: the next report comes soon enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// When the executor collected them (ms since the epoch).
    pub timestamp: u64,
    pub topics: u32,
    pub partitions: u32,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// How often an executor reports its broker's metrics (Kafka-on-Mesos's period).
pub const METRICS_INTERVAL_MS: u64 = 30_000;

/// One broker, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    pub id: u32,
    pub active: bool,
    pub cpus: f64,
    pub mem: u64,
    pub heap: u64,
    #[serde(with = "port_text", default)]
    pub port: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(with = "map_text", default)]
    pub options: BTreeMap<String, String>,
    #[serde(with = "constraints_text", default)]
    pub constraints: BTreeMap<String, Constraint>,
    pub failover: Failover,
    pub stickiness: Stickiness,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Updated while running: the change takes effect at the next start.
    #[serde(default)]
    pub needs_restart: bool,
}

impl Broker {
    /// A new broker with Kafka-on-Mesos's defaults (1 cpu, 2048 MB, heap 1024 MB, auto port).
    pub fn new(id: u32) -> Broker {
        Broker {
            id,
            active: false,
            cpus: 1.0,
            mem: 2048,
            heap: 1024,
            port: None,
            bind_address: None,
            volume: None,
            options: BTreeMap::new(),
            constraints: BTreeMap::new(),
            failover: Failover::default(),
            stickiness: Stickiness::default(),
            task: None,
            needs_restart: false,
        }
    }

    /// Options with `$id` replaced by the broker id, as the executor receives them.
    pub fn effective_options(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("$id", &self.id.to_string())))
            .collect()
    }

    /// The state word `broker list` shows.
    pub fn state_word(&self) -> String {
        match (&self.task, self.active) {
            (Some(task), true) => task.state.clone(),
            (Some(_), false) => "stopping".into(),
            (None, false) => "stopped".into(),
            (None, true) if self.failover.failures > 0 => {
                format!("failed {}", self.failover.failures)
            }
            (None, true) => "starting".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_print() {
        for (text, ms, shown) in [
            ("1m", 60_000, "1m"),
            ("30s", 30_000, "30s"),
            ("500ms", 500, "500ms"),
            ("90s", 90_000, "90s"),
            ("2h", 7_200_000, "2h"),
            ("30d", 2_592_000_000, "30d"),
            ("0s", 0, "0ms"),
        ] {
            let p = Period::parse(text).expect(text);
            assert_eq!(p.ms(), ms, "{text}");
            assert_eq!(p.to_string(), shown, "{text}");
        }
        for text in ["", "m", "1", "1x", "-1s", "99999999999999999999d"] {
            assert!(Period::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn ports_parse() {
        assert_eq!(PortRange::parse("").expect("auto"), None);
        assert_eq!(PortRange::parse("auto").expect("auto"), None);
        assert_eq!(
            PortRange::parse("9092").expect("one"),
            Some(PortRange { start: 9092, end: 9092 })
        );
        assert_eq!(
            PortRange::parse("31000..31010").expect("range"),
            Some(PortRange { start: 31000, end: 31010 })
        );
        for text in ["0", "65536", "70000", "a", "10..5", "1..x"] {
            let e = PortRange::parse(text).expect_err(text);
            assert!(e.0.contains("port"), "{e}");
        }
    }

    #[test]
    fn option_maps_round_trip() {
        let map = parse_map("log.retention.hours=1,a=x\\,y,empty=").expect("valid");
        assert_eq!(map["a"], "x,y");
        assert_eq!(map["empty"], "");
        assert_eq!(parse_map(&format_map(&map)).expect("round trip"), map);
        assert!(parse_map("novalue").is_err());
        assert!(parse_map("=v").is_err());
        assert!(parse_map("").expect("empty").is_empty());
    }

    #[test]
    fn only_options_tansu_honours_are_accepted() {
        for ok in [
            "storage.engine=sqlite",
            "storage.engine=memory://tansu/",
            "log.dirs=/var/lib/kafka/$id",
            "log.dirs=data,storage.engine=sqlite",
            "advertised.host.name=broker0.example,cluster.id=c1",
            "num.partitions=",
        ] {
            check_options(&parse_map(ok).expect(ok)).expect(ok);
        }
        for (bad_options, why) in [
            ("num.partitions=3", "tansu brokers accept storage.engine, log.dirs"),
            ("storage.engine=postgres://x", "unsupported storage.engine"),
            ("log.dirs=a\\,b", "one directory"),
            ("log.dirs=d,storage.engine=memory", "contradict"),
            ("advertised.host.name=a b", "plain name"),
        ] {
            let e =
                check_options(&parse_map(bad_options).expect(bad_options)).expect_err(bad_options);
            assert!(e.0.contains(why), "{bad_options}: {e}");
        }
    }

    #[test]
    fn bind_addresses_are_addresses_masks_or_interfaces() {
        for ok in
            ["0.0.0.0", "127.0.0.1", "::1", "broker-1.example", "192.168.*", "10.*.*.1", "if:eth0"]
        {
            check_bind_address(ok).expect(ok);
        }
        for bad_address in ["", "if:", "192.168.*/16", "a b", "if:eth 0", "*.example"] {
            assert!(check_bind_address(bad_address).is_err(), "{bad_address}");
        }
    }

    #[test]
    fn failover_delay_doubles_up_to_the_max() {
        let mut f =
            Failover { delay: Period(1_000), max_delay: Period(5_000), ..Default::default() };
        let delays: Vec<u64> = (0..6)
            .map(|n| {
                f.failures = n;
                f.current_delay()
            })
            .collect();
        assert_eq!(delays, [0, 1_000, 2_000, 4_000, 5_000, 5_000]);
        f.failures = 200;
        assert_eq!(f.current_delay(), 5_000);
        f.max_tries = Some(3);
        assert!(f.exceeded_max_tries());
    }

    #[test]
    fn stickiness_holds_for_its_period() {
        let s = Stickiness {
            period: Period(10_000),
            hostname: Some("h1".into()),
            stop_time: Some(100_000),
        };
        assert_eq!(s.sticky_host(105_000), Some("h1"));
        assert_eq!(s.sticky_host(110_000), None);
    }

    #[test]
    fn brokers_round_trip_through_json() {
        let mut b = Broker::new(3);
        b.port = PortRange::parse("9092").expect("valid");
        b.options = parse_map("log.dirs=/d/$id").expect("valid");
        b.constraints = Constraint::parse_all("hostname=unique,rack=like:r1").expect("valid");
        let json = serde_json::to_value(&b).expect("serializes");
        assert_eq!(json["port"], "9092");
        assert_eq!(json["failover"]["delay"], "1m");
        assert_eq!(json["constraints"], "hostname=unique,rack=like:r1");
        let back: Broker = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, b);
        assert_eq!(b.effective_options()["log.dirs"], "/d/3");
    }
}
