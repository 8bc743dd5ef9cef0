//! Prometheus text exposition (format 0.0.4) of a daemon's metrics, for `GET /metrics`: the
//! same numbers `/metrics/snapshot` gives as Mesos's JSON object, under names Prometheus
//! accepts.
//!
//! It only renders a map it is given; which metrics exist and how they are counted is each
//! daemon's business. Every metric is typed `gauge`, because a Mesos metric name does not say
//! whether it only grows, and a gauge is never wrong for a scraper.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The `Content-Type` of the rendered text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `metrics` as Prometheus text: each Mesos name (`slave/tasks_running`) becomes a
/// Prometheus one (`slave_tasks_running`) with one `# TYPE` line. Two names that end up the
/// same keep only the first (in name order), since a family may be declared only once.
pub fn render(metrics: &BTreeMap<String, f64>) -> String {
    let mut text = String::new();
    let mut seen = BTreeSet::new();
    for (name, value) in metrics {
        let name = metric_name(name);
        if !seen.insert(name.clone()) {
            continue;
        }
        // Writing to a String cannot fail.
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name} {}", sample(*value));
    }
    text
}

/// A name Prometheus accepts (`[a-zA-Z_:][a-zA-Z0-9_:]*`): `/` and every other character
/// outside that set become `_`, and a leading digit gets a `_` before it.
fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A sample value as Prometheus spells it: integers without a fraction, and its own words for
/// the values that are not numbers.
fn sample(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_mapped_and_each_gets_one_type_line() {
        let metrics = BTreeMap::from([
            ("slave/tasks_running".to_string(), 3.0),
            ("system/load_1min".to_string(), 0.25),
            ("master/frameworks/web app/1-2/calls".to_string(), 7.0),
            ("9lives".to_string(), f64::NAN),
            ("a/b".to_string(), 1.0),
            ("a_b".to_string(), 2.0),
            ("up".to_string(), f64::INFINITY),
        ]);
        let text = render(&metrics);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "# TYPE _9lives gauge",
                "_9lives NaN",
                "# TYPE a_b gauge",
                "a_b 1",
                "# TYPE master_frameworks_web_app_1_2_calls gauge",
                "master_frameworks_web_app_1_2_calls 7",
                "# TYPE slave_tasks_running gauge",
                "slave_tasks_running 3",
                "# TYPE system_load_1min gauge",
                "system_load_1min 0.25",
                "# TYPE up gauge",
                "up +Inf",
            ]
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn no_metrics_render_nothing() {
        assert_eq!(render(&BTreeMap::new()), "");
    }
}
