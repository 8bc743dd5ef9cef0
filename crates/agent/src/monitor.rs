//! `GET /monitor/statistics` (and `.json`): one entry per running executor with cgroup
//! isolation, `{framework_id, executor_id, executor_name, source, statistics}`, where
//! `statistics` is Mesos's ResourceStatistics in its JSON form (reference §4.4) read from the
//! container's cgroup.
//!
//! Only what the cgroups measure is reported; executors without a cgroup (posix isolation)
//! are left out, since nothing here measures them. The dispatcher only hands out the list of
//! containers; the reading happens here, on a blocking thread.

use serde_json::{Map, Value, json};

use crate::cgroups::{Container, Stats};

/// A running executor's container, as the dispatcher knows it.
pub(crate) struct Entry {
    pub(crate) framework_id: String,
    pub(crate) executor_id: String,
    pub(crate) container: Container,
}

/// The statistics of every container, read now; containers that cannot be read (the
/// executor ended meanwhile) are left out.
pub(crate) fn statistics(entries: Vec<Entry>) -> Value {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Value::Array(
        entries
            .into_iter()
            .filter_map(|entry| {
                let stats = entry.container.stats().ok()?;
                Some(render(&entry.framework_id, &entry.executor_id, &stats, timestamp))
            })
            .collect(),
    )
}

/// One entry of `/monitor/statistics`; absent figures are left out, as Mesos leaves unset
/// optional fields out of its JSON.
fn render(framework_id: &str, executor_id: &str, stats: &Stats, timestamp: f64) -> Value {
    let mut statistics = Map::new();
    statistics.insert("timestamp".into(), json!(timestamp));
    let floats = [
        ("cpus_user_time_secs", stats.cpus_user_time_secs),
        ("cpus_system_time_secs", stats.cpus_system_time_secs),
        ("cpus_limit", stats.cpus_limit),
        ("cpus_throttled_time_secs", stats.cpus_throttled_time_secs),
    ];
    for (name, value) in floats {
        if let Some(value) = value {
            statistics.insert(name.into(), json!(value));
        }
    }
    let integers = [
        ("cpus_nr_periods", stats.cpus_nr_periods),
        ("cpus_nr_throttled", stats.cpus_nr_throttled),
        ("mem_rss_bytes", stats.mem_rss_bytes),
        ("mem_total_bytes", stats.mem_total_bytes),
        ("mem_limit_bytes", stats.mem_limit_bytes),
    ];
    for (name, value) in integers {
        if let Some(value) = value {
            statistics.insert(name.into(), json!(value));
        }
    }
    json!({
        "framework_id": framework_id,
        "executor_id": executor_id,
        "executor_name": "",
        "source": executor_id,
        "statistics": statistics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_mesos_field_names_and_leave_unknowns_out() {
        let stats = Stats {
            cpus_user_time_secs: Some(1.5),
            cpus_limit: Some(0.5),
            cpus_nr_throttled: Some(3),
            mem_rss_bytes: Some(4096),
            mem_limit_bytes: Some(1 << 20),
            ..Stats::default()
        };
        let entry = render("f", "e", &stats, 12.0);
        assert_eq!(entry["framework_id"], "f");
        assert_eq!(entry["executor_id"], "e");
        assert_eq!(entry["source"], "e");
        let s = &entry["statistics"];
        assert_eq!(s["timestamp"], 12.0);
        assert_eq!(s["cpus_user_time_secs"], 1.5);
        assert_eq!(s["cpus_limit"], 0.5);
        assert_eq!(s["cpus_nr_throttled"], 3);
        assert_eq!(s["mem_rss_bytes"], 4096);
        assert_eq!(s["mem_limit_bytes"], 1 << 20);
        assert!(s.get("cpus_system_time_secs").is_none());
        assert!(s.get("mem_total_bytes").is_none());
    }

    #[test]
    fn containers_that_cannot_be_read_are_left_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cgroups = crate::cgroups::Cgroups::new(
            crate::cgroups::Layout::V1 {
                controllers: [("cpuacct".to_string(), tmp.path().to_path_buf())].into(),
            },
            "agora",
        );
        let gone = Entry {
            framework_id: "f".into(),
            executor_id: "e".into(),
            container: cgroups.container("missing", &["cpuacct"]),
        };
        assert_eq!(statistics(vec![gone]), json!([]));
    }
}
