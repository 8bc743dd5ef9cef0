//! The master's metrics under Mesos's names (reference §4.5): `/metrics/snapshot` (a flat JSON
//! object, name to number), the same numbers in Prometheus's text format at `/metrics`, and the
//! set GET_METRICS returns.
//!
//! The core counts what happens to frameworks, agents, offers and tasks; this module adds what
//! needs the operating system or a clock (`master/uptime_secs`, `system/*`). It keeps no
//! counters of its own. `/proc` is read on each request: a missing file leaves its metrics out.
//! Standbys answer with `master/elected` 0 and the process's own numbers.

use agora_http::Refusal;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::{AppState, Gate};

/// Every metric, in name order. A master that does not serve (a standby, or a leader still
/// reading its registry) has no core to count in, but answers too, as Mesos's standbys do:
/// `master/elected` is how monitoring tells the leader from the others.
pub(crate) async fn snapshot(state: &AppState) -> Result<Vec<(String, f64)>, Refusal> {
    let gate = state.shell.gate.borrow().clone();
    let mut metrics = match gate {
        Gate::Serving => {
            crate::dispatcher::read(&state.handle, |m, _| m.metrics()).await.ok_or_else(|| {
                agora_http::refuse(StatusCode::SERVICE_UNAVAILABLE, "The master is shutting down")
            })?
        }
        Gate::Recovering => vec![("master/elected".to_string(), 1.0)],
        Gate::Standby { .. } => vec![("master/elected".to_string(), 0.0)],
    };
    metrics.push(("master/uptime_secs".into(), state.shell.started.elapsed().as_secs_f64()));
    metrics.extend(system());
    metrics.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(metrics)
}

/// `system/cpus_total`, `system/load_*` and `system/mem_*` from `/proc`.
fn system() -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    out.push(("system/cpus_total".to_string(), cpus as f64));
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let values: Vec<f64> =
            load.split_whitespace().take(3).filter_map(|v| v.parse().ok()).collect();
        for (name, value) in
            ["system/load_1min", "system/load_5min", "system/load_15min"].iter().zip(values)
        {
            out.push((name.to_string(), value));
        }
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        for line in meminfo.lines() {
            let mut parts = line.split_whitespace();
            let (Some(key), Some(kb)) =
                (parts.next(), parts.next().and_then(|v| v.parse::<f64>().ok()))
            else {
                continue;
            };
            match key {
                "MemTotal:" => out.push(("system/mem_total_bytes".into(), kb * 1024.0)),
                "MemFree:" => out.push(("system/mem_free_bytes".into(), kb * 1024.0)),
                _ => {}
            }
        }
    }
    out
}

/// `GET /metrics/snapshot`: `{"name": number, ...}`.
pub(crate) async fn snapshot_json(State(state): State<AppState>) -> Result<Response, Refusal> {
    let metrics = snapshot(&state).await?;
    let object: serde_json::Map<String, serde_json::Value> =
        metrics.into_iter().map(|(name, value)| (name, json_number(value))).collect();
    Ok(axum::Json(serde_json::Value::Object(object)).into_response())
}

/// Integral values print as integers, as Mesos's counters do.
fn json_number(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        serde_json::Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// `GET /metrics`: the same numbers in Prometheus's text format, each name with `/` turned
/// into `_` and a `# TYPE` line.
pub(crate) async fn prometheus(State(state): State<AppState>) -> Result<Response, Refusal> {
    let metrics = snapshot(&state).await?;
    let mut text = String::new();
    for (name, value) in metrics {
        text.push_str(&render_prometheus(&name, value));
    }
    let mut response = (StatusCode::OK, text).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    Ok(response)
}

/// One metric in the Prometheus text format; the names Mesos counts monotonically are
/// counters, the rest gauges.
fn render_prometheus(name: &str, value: f64) -> String {
    let name: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let counter =
        ["registrations", "reregistrations", "removals", "status_updates", "allocation_runs"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
    let kind = if counter { "counter" } else { "gauge" };
    format!("# TYPE {name} {kind}\n{name} {value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_and_types() {
        assert_eq!(
            render_prometheus("master/slave_registrations", 3.0),
            "# TYPE master_slave_registrations counter\nmaster_slave_registrations 3\n"
        );
        assert_eq!(
            render_prometheus("system/load_1min", 0.5),
            "# TYPE system_load_1min gauge\nsystem_load_1min 0.5\n"
        );
    }

    #[test]
    fn integral_values_are_json_integers() {
        assert_eq!(json_number(4.0).to_string(), "4");
        assert_eq!(json_number(0.25).to_string(), "0.25");
    }
}
