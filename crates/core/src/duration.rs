//! Durations in stout's text form (`5secs`, `100ms`, `15mins`, `1weeks`), which Mesos uses for
//! flags and for environment variables such as `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`.
//!
//! Parsing accepts a non-negative decimal number followed by one of the units `ns`, `us`, `ms`,
//! `secs`, `mins`, `hrs`, `days`, `weeks` (and the short `s`, `m`, `h`, `d`, `w` that operators
//! often type). Formatting picks the largest unit that keeps the number at least 1.

use std::time::Duration;

const UNITS: [(&str, f64); 8] = [
    ("weeks", 604_800.0),
    ("days", 86_400.0),
    ("hrs", 3_600.0),
    ("mins", 60.0),
    ("secs", 1.0),
    ("ms", 1e-3),
    ("us", 1e-6),
    ("ns", 1e-9),
];

const ALIASES: [(&str, &str); 5] =
    [("s", "secs"), ("m", "mins"), ("h", "hrs"), ("d", "days"), ("w", "weeks")];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration '{input}': {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses `5secs`, `0.5secs`, `100ms`, `2mins`, ...
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    let error = |reason| DurationError { input: input.to_string(), reason };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| error("missing unit (ns, us, ms, secs, mins, hrs, days, weeks)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| error("not a non-negative number"))?;
    let unit = ALIASES.iter().find(|(short, _)| *short == unit).map_or(unit, |(_, long)| long);
    let (_, scale) = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(|| error("unknown unit (ns, us, ms, secs, mins, hrs, days, weeks)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| error("out of range"))
}

/// Formats like stout: `5secs`, `1.5secs`, `100ms`, `15mins`.
pub fn format(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds == 0.0 {
        return "0ns".into();
    }
    let (name, scale) =
        UNITS.iter().find(|(_, scale)| seconds >= *scale).copied().unwrap_or(("ns", 1e-9));
    let value = seconds / scale;
    let rounded = (value * 1000.0).round() / 1000.0;
    format!("{rounded}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        for (text, expected) in [
            ("5secs", Duration::from_secs(5)),
            ("100ms", Duration::from_millis(100)),
            ("0.5secs", Duration::from_millis(500)),
            ("15mins", Duration::from_secs(900)),
            ("2hrs", Duration::from_secs(7200)),
            ("1weeks", Duration::from_secs(604_800)),
            ("3s", Duration::from_secs(3)),
            ("10ns", Duration::from_nanos(10)),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
        for bad in ["", "5", "secs", "-1secs", "5 parsecs", "1.2.3secs"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_table() {
        for (duration, text) in [
            (Duration::from_secs(5), "5secs"),
            (Duration::from_millis(1500), "1.5secs"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(900), "15mins"),
            (Duration::ZERO, "0ns"),
        ] {
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Ok(duration));
        }
    }
}
