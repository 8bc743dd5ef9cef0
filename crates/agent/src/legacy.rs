//! The agent's legacy (v0) endpoints with Mesos's JSON shapes (reference §4.4): `/state` (the
//! agent, its frameworks, executors and tasks), `/flags`, `/monitor/statistics`,
//! `/containers` and `/metrics/snapshot`, plus `GET /metrics` in Prometheus text.
//!
//! The data is the operator API's (the core's views through the dispatcher, `usage.rs`,
//! `operator::metrics`); only the shapes are legacy: resources as flat objects with `cpus`,
//! `gpus`, `mem` and `disk` always present, ranges as `"[31000-32000]"`, sets as `"{a,b}"`,
//! task states as their names, and `slave` wherever Mesos said so.

use std::collections::BTreeMap;

use agora_http::Refusal;
use agora_proto::v1;
use agora_proto::{agent, to_json_value};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::http::AppState;
use crate::operator::{self, MESOS_VERSION, ask};

/// `resources` as Mesos's flat object: scalars summed per name (revocable ones under
/// `<name>_revocable`), ranges and sets merged per name and spelled as Mesos prints them.
pub(crate) fn flat_resources<'a>(resources: impl IntoIterator<Item = &'a v1::Resource>) -> Value {
    let mut scalars: BTreeMap<String, f64> =
        ["cpus", "gpus", "mem", "disk"].iter().map(|n| ((*n).to_string(), 0.0)).collect();
    let mut ranges: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in resources {
        let name =
            if r.revocable.is_some() { format!("{}_revocable", r.name) } else { r.name.clone() };
        if let Some(s) = &r.scalar {
            *scalars.entry(name).or_default() += s.value;
        } else if let Some(rs) = &r.ranges {
            ranges.entry(name).or_default().extend(rs.range.iter().map(|r| (r.begin, r.end)));
        } else if let Some(set) = &r.set {
            sets.entry(name).or_default().extend(set.item.iter().cloned());
        }
    }
    let mut out = Map::new();
    for (name, value) in scalars {
        // Mesos rounds scalars to three decimals; floating sums would show 0.30000000000000004.
        out.insert(name, json!((value * 1000.0).round() / 1000.0));
    }
    for (name, mut list) in ranges {
        list.sort_unstable();
        let text: Vec<String> = list.iter().map(|(b, e)| format!("{b}-{e}")).collect();
        out.insert(name, json!(format!("[{}]", text.join(", "))));
    }
    for (name, items) in sets {
        out.insert(name, json!(format!("{{{}}}", items.join(","))));
    }
    Value::Object(out)
}

/// The role a resource is reserved for, `None` when unreserved.
#[expect(deprecated, reason = "a static reservation in the pre-refinement format is `role`")]
fn reserved_role(r: &v1::Resource) -> Option<String> {
    if let Some(last) = r.reservations.last() {
        return last.role.clone();
    }
    r.role.clone().filter(|role| role != "*")
}

/// Attributes as `{name: value}`: scalars as numbers, the rest as Mesos prints them.
fn flat_attributes(attributes: &[v1::Attribute]) -> Value {
    let mut out = Map::new();
    for a in attributes {
        let value = if let Some(s) = &a.scalar {
            json!(s.value)
        } else if let Some(r) = &a.ranges {
            let parts: Vec<String> =
                r.range.iter().map(|r| format!("{}-{}", r.begin, r.end)).collect();
            json!(format!("[{}]", parts.join(", ")))
        } else if let Some(t) = &a.text {
            json!(t.value)
        } else if let Some(s) = &a.set {
            json!(format!("{{{}}}", s.item.join(",")))
        } else {
            Value::Null
        };
        out.insert(a.name.clone(), value);
    }
    Value::Object(out)
}

fn state_name(state: v1::TaskState) -> &'static str {
    state.as_str_name()
}

/// A task in the legacy shape.
fn task_json(task: &v1::Task) -> Value {
    let statuses: Vec<Value> = task
        .statuses
        .iter()
        .map(|s| {
            let mut status = json!({
                "state": state_name(s.state()),
                "timestamp": s.timestamp.unwrap_or(0.0),
            });
            if let Some(healthy) = s.healthy {
                status["healthy"] = json!(healthy);
            }
            if let Some(labels) = &s.labels {
                status["labels"] = to_json_value(labels)["labels"].clone();
            }
            if let Some(container_status) = &s.container_status {
                status["container_status"] = to_json_value(container_status);
            }
            status
        })
        .collect();
    let mut out = json!({
        "id": task.task_id.as_ref().map_or("", |t| t.value.as_str()),
        "name": task.name.clone().unwrap_or_default(),
        "framework_id": task.framework_id.as_ref().map_or("", |f| f.value.as_str()),
        "executor_id": task.executor_id.as_ref().map_or("", |e| e.value.as_str()),
        "slave_id": task.agent_id.as_ref().map_or("", |a| a.value.as_str()),
        "state": state_name(task.state()),
        "resources": flat_resources(&task.resources),
        "statuses": statuses,
    });
    if let Some(labels) = &task.labels {
        out["labels"] = to_json_value(labels)["labels"].clone();
    }
    for (key, present) in [
        ("discovery", task.discovery.as_ref().map(to_json_value)),
        ("container", task.container.as_ref().map(to_json_value)),
        ("health_check", task.health_check.as_ref().map(to_json_value)),
    ] {
        if let Some(value) = present {
            out[key] = value;
        }
    }
    out
}

/// The executor a task belongs to: its own id for a custom executor's task, the task's id
/// for a command task (whose executor Agora names after it).
fn executor_of(task: &v1::Task) -> (String, String) {
    let framework = task.framework_id.as_ref().map(|f| f.value.clone()).unwrap_or_default();
    let executor = task
        .executor_id
        .as_ref()
        .or(task.statuses.last().and_then(|s| s.executor_id.as_ref()))
        .map(|e| e.value.clone())
        .or_else(|| task.task_id.as_ref().map(|t| t.value.clone()))
        .unwrap_or_default();
    (framework, executor)
}

/// An executor in the legacy shape, with its tasks sorted into Mesos's three lists.
#[expect(deprecated, reason = "the legacy shape still shows `source`")]
fn executor_json(
    info: &v1::ExecutorInfo,
    container: Option<(&str, &str)>,
    tasks: &[&v1::Task],
    queued: &[&v1::Task],
    completed: &[&v1::Task],
) -> Value {
    let mut resources: Vec<v1::Resource> = info.resources.clone();
    for task in tasks.iter().chain(queued) {
        resources.extend(task.resources.iter().cloned());
    }
    let (container_id, directory) = container.unwrap_or(("", ""));
    let role = info
        .resources
        .iter()
        .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.clone()))
        .unwrap_or_else(|| "*".into());
    json!({
        "id": info.executor_id.value,
        "name": info.name.clone().unwrap_or_default(),
        "source": info.source.clone().unwrap_or_default(),
        "container": container_id,
        "directory": directory,
        "resources": flat_resources(&resources),
        "role": role,
        "type": if info.r#type.is_some() { info.r#type().as_str_name() } else { "CUSTOM" },
        "tasks": tasks.iter().map(|t| task_json(t)).collect::<Vec<_>>(),
        "queued_tasks": queued.iter().map(|t| task_json(t)).collect::<Vec<_>>(),
        "completed_tasks": completed.iter().map(|t| task_json(t)).collect::<Vec<_>>(),
    })
}

#[expect(deprecated, reason = "a single-role framework names its role in `role`")]
fn framework_json(info: &v1::FrameworkInfo, executors: Vec<Value>, completed: Vec<Value>) -> Value {
    let mut out = json!({
        "id": info.id.as_ref().map_or("", |f| f.value.as_str()),
        "name": info.name,
        "user": info.user,
        "failover_timeout": info.failover_timeout.unwrap_or(0.0),
        "checkpoint": info.checkpoint.unwrap_or(false),
        "hostname": info.hostname.clone().unwrap_or_default(),
        "capabilities": info.capabilities.iter().map(|c| c.r#type().as_str_name()).collect::<Vec<_>>(),
        "executors": executors,
        "completed_executors": completed,
    });
    if info.roles.is_empty() {
        out["role"] = json!(info.role.clone().unwrap_or_else(|| "*".into()));
    } else {
        out["roles"] = json!(info.roles);
    }
    if let Some(principal) = &info.principal {
        out["principal"] = json!(principal);
    }
    if let Some(url) = &info.webui_url {
        out["webui_url"] = json!(url);
    }
    out
}

/// Tasks grouped by the executor they belong to.
fn by_executor(list: &[v1::Task]) -> BTreeMap<(String, String), Vec<&v1::Task>> {
    let mut map: BTreeMap<(String, String), Vec<&v1::Task>> = BTreeMap::new();
    for task in list {
        map.entry(executor_of(task)).or_default().push(task);
    }
    map
}

/// What `/state` is built from, taken from the dispatcher in one look.
struct Snapshot {
    agent_info: v1::AgentInfo,
    state: agent::response::GetState,
    /// (framework, executor) → (container id, sandbox) of the running executors.
    containers: BTreeMap<(String, String), (String, String)>,
    started: f64,
    master: Option<String>,
}

fn state_json(snapshot: &Snapshot, addr: &str, flags: &BTreeMap<String, String>) -> Value {
    let state = &snapshot.state;
    let empty = Vec::new();
    let tasks = state.get_tasks.as_ref();
    let list = |pick: fn(&agent::response::GetTasks) -> &Vec<v1::Task>| tasks.map_or(&empty, pick);
    let mut live = by_executor(list(|t| &t.launched_tasks));
    for (key, tasks) in by_executor(list(|t| &t.terminated_tasks)) {
        live.entry(key).or_default().extend(tasks);
    }
    let queued = by_executor(list(|t| &t.queued_tasks));
    let completed = by_executor(list(|t| &t.completed_tasks));
    let none: Vec<&v1::Task> = Vec::new();
    let executor = |info: &v1::ExecutorInfo, running: bool| {
        let key = (
            info.framework_id.as_ref().map(|f| f.value.clone()).unwrap_or_default(),
            info.executor_id.value.clone(),
        );
        let container = if running {
            snapshot.containers.get(&key).map(|(c, d)| (c.as_str(), d.as_str()))
        } else {
            None
        };
        let done = completed.get(&key).unwrap_or(&none);
        if running {
            let tasks = live.get(&key).unwrap_or(&none);
            executor_json(info, container, tasks, queued.get(&key).unwrap_or(&none), done)
        } else {
            executor_json(info, None, &none, &none, done)
        }
    };
    let executors = state.get_executors.clone().unwrap_or_default();
    let frameworks = state.get_frameworks.clone().unwrap_or_default();
    let of_framework =
        |list: &[agent::response::get_executors::Executor], id: &str, running: bool| {
            list.iter()
                .filter(|e| e.executor_info.framework_id.as_ref().is_some_and(|f| f.value == id))
                .map(|e| executor(&e.executor_info, running))
                .collect::<Vec<_>>()
        };
    let framework = |f: &agent::response::get_frameworks::Framework| {
        let id = f.framework_info.id.as_ref().map(|i| i.value.clone()).unwrap_or_default();
        framework_json(
            &f.framework_info,
            of_framework(&executors.executors, &id, true),
            of_framework(&executors.completed_executors, &id, false),
        )
    };
    let info = &snapshot.agent_info;
    let mut reserved: BTreeMap<String, Vec<v1::Resource>> = BTreeMap::new();
    let mut unreserved = Vec::new();
    for r in &info.resources {
        match reserved_role(r) {
            Some(role) => reserved.entry(role).or_default().push(r.clone()),
            None => unreserved.push(r.clone()),
        }
    }
    let reserved_flat: Map<String, Value> =
        reserved.iter().map(|(role, rs)| (role.clone(), flat_resources(rs))).collect();
    let reserved_full: Map<String, Value> = reserved
        .iter()
        .map(|(role, rs)| (role.clone(), Value::Array(rs.iter().map(to_json_value).collect())))
        .collect();
    json!({
        "version": MESOS_VERSION,
        "agora_version": env!("CARGO_PKG_VERSION"),
        "build_date": "",
        "build_time": 0,
        "build_user": "",
        "start_time": snapshot.started,
        "id": info.id.as_ref().map_or("", |i| i.value.as_str()),
        "pid": format!("slave(1)@{addr}"),
        "hostname": info.hostname,
        "port": info.port,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT", "TASK_NO_EXECUTOR"],
        "resources": flat_resources(&info.resources),
        "reserved_resources": reserved_flat,
        "unreserved_resources": flat_resources(&unreserved),
        "reserved_resources_full": reserved_full,
        "unreserved_resources_full": unreserved.iter().map(to_json_value).collect::<Vec<_>>(),
        "reserved_resources_allocated": {},
        "unreserved_resources_allocated": {},
        "resource_providers": [],
        "attributes": flat_attributes(&info.attributes),
        "master_hostname": snapshot.master.clone().unwrap_or_default(),
        "log_dir": flags.get("log_dir").cloned().unwrap_or_default(),
        "external_log_file": "",
        "flags": flags,
        "frameworks": frameworks.frameworks.iter().map(framework).collect::<Vec<_>>(),
        "completed_frameworks": frameworks.completed_frameworks.iter().map(framework).collect::<Vec<_>>(),
    })
}

pub(crate) async fn state(State(app): State<AppState>) -> Result<Response, Refusal> {
    operator::refuse_while_recovering(&app.handle).await?;
    let master = app.flags.get("master").cloned();
    let snapshot = ask(&app.handle, move |v| Snapshot {
        agent_info: v.agent.agent_info(),
        state: v.agent.get_state(),
        containers: v
            .agent
            .containers()
            .into_iter()
            .map(|c| ((c.framework_id, c.executor_id), (c.container_id, c.sandbox)))
            .collect(),
        started: v.started.as_secs_f64(),
        master: v.agent.is_registered().then_some(master).flatten(),
    })
    .await?;
    Ok(axum::Json(state_json(&snapshot, &app.addr, &app.flags)).into_response())
}

pub(crate) async fn flags(State(app): State<AppState>) -> Response {
    axum::Json(json!({ "flags": *app.flags })).into_response()
}

/// One entry of `/monitor/statistics` and `/containers`.
#[expect(deprecated, reason = "the legacy shape still shows `source`")]
async fn usage_entries(app: &AppState, with_container: bool) -> Result<Vec<Value>, Refusal> {
    let sources: BTreeMap<(String, String), String> = ask(&app.handle, |v| {
        v.agent
            .get_executors()
            .executors
            .into_iter()
            .map(|e| {
                let info = e.executor_info;
                let framework = info.framework_id.map(|f| f.value).unwrap_or_default();
                ((framework, info.executor_id.value), info.source.unwrap_or_default())
            })
            .collect()
    })
    .await?;
    let containers = operator::containers(&app.handle).await?;
    Ok(containers
        .into_iter()
        .map(|(c, (statistics, pid))| {
            let key = (c.framework_id.clone(), c.executor_id.clone());
            let mut entry = json!({
                "framework_id": c.framework_id,
                "executor_id": c.executor_id,
                "executor_name": c.executor_name.unwrap_or_default(),
                "source": sources.get(&key).cloned().unwrap_or_default(),
                "statistics": to_json_value(&statistics),
            });
            if with_container {
                entry["container_id"] = json!(c.container_id);
                let mut status = json!({ "container_id": { "value": c.container_id } });
                if let Some(pid) = pid {
                    status["executor_pid"] = json!(pid);
                }
                entry["status"] = status;
            }
            entry
        })
        .collect())
}

pub(crate) async fn monitor_statistics(State(app): State<AppState>) -> Result<Response, Refusal> {
    Ok(axum::Json(usage_entries(&app, false).await?).into_response())
}

pub(crate) async fn containers(State(app): State<AppState>) -> Result<Response, Refusal> {
    Ok(axum::Json(usage_entries(&app, true).await?).into_response())
}

pub(crate) async fn metrics_snapshot(State(app): State<AppState>) -> Result<Response, Refusal> {
    Ok(axum::Json(operator::metrics(&app.handle).await?).into_response())
}

pub(crate) async fn metrics_prometheus(State(app): State<AppState>) -> Result<Response, Refusal> {
    let text = agora_http::prometheus::render(&operator::metrics(&app.handle).await?);
    Ok(([(header::CONTENT_TYPE, agora_http::prometheus::CONTENT_TYPE)], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::v1::value;

    fn scalar(name: &str, value: f64) -> v1::Resource {
        let mut r = v1::Resource {
            name: name.into(),
            scalar: Some(v1::value::Scalar { value }),
            ..Default::default()
        };
        r.set_type(value::Type::Scalar);
        r
    }

    #[test]
    fn resources_are_flat_with_the_four_scalars_always_there() {
        let mut ports = v1::Resource {
            name: "ports".into(),
            ranges: Some(value::Ranges {
                range: vec![
                    value::Range { begin: 33000, end: 34000 },
                    value::Range { begin: 31000, end: 32000 },
                ],
            }),
            ..Default::default()
        };
        ports.set_type(value::Type::Ranges);
        let mut zones = v1::Resource {
            name: "zones".into(),
            set: Some(value::Set { item: vec!["a".into(), "b".into()] }),
            ..Default::default()
        };
        zones.set_type(value::Type::Set);
        let mut spare = scalar("cpus", 2.0);
        spare.revocable = Some(v1::resource::RevocableInfo {});
        let resources =
            [scalar("cpus", 0.1), scalar("cpus", 0.2), scalar("mem", 128.0), ports, zones, spare];
        assert_eq!(
            flat_resources(&resources),
            json!({
                "cpus": 0.3, "gpus": 0.0, "mem": 128.0, "disk": 0.0, "cpus_revocable": 2.0,
                "ports": "[31000-32000, 33000-34000]", "zones": "{a,b}",
            })
        );
        assert_eq!(
            flat_resources(&[]),
            json!({ "cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0 })
        );
    }

    #[test]
    fn a_command_task_belongs_to_the_executor_named_after_it() {
        let mut task = v1::Task {
            task_id: Some(v1::TaskId { value: "t1".into() }),
            framework_id: Some(v1::FrameworkId { value: "f".into() }),
            ..Default::default()
        };
        assert_eq!(executor_of(&task), ("f".into(), "t1".into()));
        task.executor_id = Some(v1::ExecutorId { value: "e".into() });
        assert_eq!(executor_of(&task), ("f".into(), "e".into()));
        task.set_state(v1::TaskState::TaskRunning);
        assert_eq!(task_json(&task)["state"], "TASK_RUNNING");
        assert_eq!(task_json(&task)["executor_id"], "e");
    }
}
