//! The agent's operator API, `POST /api/v1` (also `/slave(1)/api/v1`, reference §4.1 and
//! §4.3), in JSON or protobuf with `Accept` choosing the answer's format.
//!
//! Queries about tasks, executors, frameworks and the agent are answered from the core's
//! read-only views through the dispatcher (the state's one owner); files through `agora_http::files`
//! over the sandboxes `files.rs` attaches (the same virtual paths as `/files/*`); the logging
//! level through `agora_http::Logging`; containers' usage through `usage.rs`; metrics here,
//! from the core's counts plus uptime and the machine's figures. Calls Agora does not serve
//! (nested and standalone containers, resource providers, images, operations) are answered
//! `501` with their name. While executors found alive after a restart may still subscribe
//! again, the API answers `503`, as Mesos's does during recovery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agora_core::agent::{ContainerView, scalar_sum};
use agora_http::{Refusal, decode_call, refuse, request_format, response_format};
use agora_proto::agent::{call, response};
use agora_proto::{Format, agent, v1};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::dispatcher::{Handle, query};
use crate::http::AppState;
use crate::usage::{self, Limits};
use agora_http::files;

/// The version Agora answers as, Mesos's last (pymesos and others pick features by it).
pub(crate) const MESOS_VERSION: &str = "1.11.0";

/// One container with its executor's process, as a query hands it out.
/// A container to measure: its view, its executor's pid, and its cgroup if it has one.
type Measured = (ContainerView, Option<i32>, Option<crate::cgroups::Container>);

pub(crate) async fn operator_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    refuse_while_recovering(&state.handle).await?;
    let format = request_format(&headers)?;
    let call: agent::Call = decode_call(format, &body)?;
    let answer = response_format(&headers)?;
    let Some(number) = call.r#type else {
        return Err(refuse(StatusCode::BAD_REQUEST, "Expecting 'type' to be present"));
    };
    let kind = call::Type::try_from(number).unwrap_or(call::Type::Unknown);
    let missing =
        |field: &str| refuse(StatusCode::BAD_REQUEST, format!("Expecting '{field}' to be present"));
    let mut response = agent::Response::default();
    match kind {
        call::Type::GetHealth => {
            response.set_type(response::Type::GetHealth);
            response.get_health = Some(response::GetHealth { healthy: true });
        }
        call::Type::GetFlags => {
            response.set_type(response::Type::GetFlags);
            let flags = state
                .flags
                .iter()
                .map(|(name, value)| v1::Flag { name: name.clone(), value: Some(value.clone()) })
                .collect();
            response.get_flags = Some(response::GetFlags { flags });
        }
        call::Type::GetVersion => {
            response.set_type(response::Type::GetVersion);
            response.get_version = Some(response::GetVersion { version_info: version_info() });
        }
        call::Type::GetMetrics => {
            if call.get_metrics.is_none() {
                return Err(missing("get_metrics"));
            }
            response.set_type(response::Type::GetMetrics);
            let metrics = metrics(&state.handle)
                .await?
                .into_iter()
                .map(|(name, value)| v1::Metric { name, value: Some(value) })
                .collect();
            response.get_metrics = Some(response::GetMetrics { metrics });
        }
        call::Type::GetLoggingLevel => {
            response.set_type(response::Type::GetLoggingLevel);
            let level = state.logging.level();
            response.get_logging_level = Some(response::GetLoggingLevel { level });
        }
        call::Type::SetLoggingLevel => {
            let Some(set) = call.set_logging_level else {
                return Err(missing("set_logging_level"));
            };
            set_logging_level(&state.logging, set.level, &set.duration)?;
            return Ok(StatusCode::OK.into_response());
        }
        call::Type::ListFiles => {
            let Some(list) = call.list_files else {
                return Err(missing("list_files"));
            };
            let file_infos = files::list_files(&state.files, list.path).await?;
            response.set_type(response::Type::ListFiles);
            response.list_files = Some(response::ListFiles { file_infos });
        }
        call::Type::ReadFile => {
            let Some(read) = call.read_file else {
                return Err(missing("read_file"));
            };
            let (size, data) =
                files::read_file(&state.files, read.path, read.offset, read.length).await?;
            response.set_type(response::Type::ReadFile);
            response.read_file = Some(response::ReadFile { size, data: Bytes::from(data) });
        }
        call::Type::GetState => {
            response.set_type(response::Type::GetState);
            response.get_state = Some(ask(&state.handle, |v| v.agent.get_state()).await?);
        }
        call::Type::GetFrameworks => {
            response.set_type(response::Type::GetFrameworks);
            response.get_frameworks = Some(ask(&state.handle, |v| v.agent.get_frameworks()).await?);
        }
        call::Type::GetExecutors => {
            response.set_type(response::Type::GetExecutors);
            response.get_executors = Some(ask(&state.handle, |v| v.agent.get_executors()).await?);
        }
        call::Type::GetTasks => {
            response.set_type(response::Type::GetTasks);
            response.get_tasks = Some(ask(&state.handle, |v| v.agent.get_tasks()).await?);
        }
        call::Type::GetAgent => {
            response.set_type(response::Type::GetAgent);
            response.get_agent = Some(ask(&state.handle, |v| v.agent.get_agent()).await?);
        }
        call::Type::GetContainers => {
            response.set_type(response::Type::GetContainers);
            let containers = containers(&state.handle)
                .await?
                .into_iter()
                .map(|(c, (statistics, pid))| response::get_containers::Container {
                    framework_id: Some(v1::FrameworkId { value: c.framework_id }),
                    executor_id: Some(v1::ExecutorId { value: c.executor_id }),
                    executor_name: c.executor_name,
                    container_id: v1::ContainerId { value: c.container_id.clone(), parent: None },
                    container_status: Some(v1::ContainerStatus {
                        container_id: Some(v1::ContainerId { value: c.container_id, parent: None }),
                        executor_pid: pid.and_then(|pid| u32::try_from(pid).ok()),
                        ..Default::default()
                    }),
                    resource_statistics: Some(statistics),
                })
                .collect();
            response.get_containers = Some(response::GetContainers { containers });
        }
        call::Type::Unknown => {
            return Err(refuse(StatusCode::NOT_IMPLEMENTED, "Unknown call type UNKNOWN"));
        }
        other => {
            return Err(refuse(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "Agent call {} is not implemented by this version of Agora",
                    other.as_str_name()
                ),
            ));
        }
    }
    Ok(encoded(answer, &response))
}

/// `503` while the agent recovers (reference §4.4): what it would report is not settled.
pub(crate) async fn refuse_while_recovering(handle: &Handle) -> Result<(), Refusal> {
    if ask(handle, |v| v.agent.recovering()).await? {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "Agent has not finished recovery"));
    }
    Ok(())
}

/// A 200 answer in the negotiated format.
fn encoded(format: Format, response: &agent::Response) -> Response {
    let mut answer = format.encode(response).into_response();
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    answer
}

/// Runs a read-only look at the core; 503 when the dispatcher is gone (the agent stops).
pub(crate) async fn ask<R: Send + 'static>(
    handle: &Handle,
    look: impl FnOnce(crate::dispatcher::View<'_>) -> R + Send + 'static,
) -> Result<R, Refusal> {
    query(handle, look)
        .await
        .ok_or_else(|| refuse(StatusCode::SERVICE_UNAVAILABLE, "The agent is shutting down"))
}

/// Every container with its usage and its executor's process id, measured off the async
/// threads (reading `/proc` and walking sandboxes takes a while).
pub(crate) async fn containers(
    handle: &Handle,
) -> Result<Vec<(ContainerView, (v1::ResourceStatistics, Option<i32>))>, Refusal> {
    let found: Vec<Measured> = ask(handle, |v| {
        v.agent
            .containers()
            .into_iter()
            .map(|c| {
                let key = (c.framework_id.clone(), c.executor_id.clone());
                let pid = v.pids.get(&key).map(|p| p.pid);
                let cgroup = v.containers.get(&key).cloned();
                (c, pid, cgroup)
            })
            .collect()
    })
    .await?;
    tokio::task::spawn_blocking(move || {
        // One pass over `/proc` serves every container.
        let processes = usage::Processes::read();
        found
            .into_iter()
            .map(|(c, pid, cgroup)| {
                let limits = Limits {
                    cpus: scalar_sum(&c.resources, "cpus"),
                    mem_mb: scalar_sum(&c.resources, "mem"),
                    disk_mb: scalar_sum(&c.resources, "disk"),
                };
                let mut statistics =
                    processes.statistics(pid, std::path::Path::new(&c.sandbox), limits);
                // Under cgroup isolation the kernel's own accounting is the better source.
                if let Some(stats) = cgroup.and_then(|g| g.stats().ok()) {
                    usage::overlay(&mut statistics, &stats);
                }
                (c, (statistics, pid))
            })
            .collect()
    })
    .await
    .map_err(|e| {
        refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("Failed to measure containers: {e}"))
    })
}

/// The agent's metrics, Mesos-named: the core's `slave/*` counts, uptime, and `system/*`.
pub(crate) async fn metrics(handle: &Handle) -> Result<BTreeMap<String, f64>, Refusal> {
    let mut metrics = ask(handle, |v| {
        let mut m = v.agent.metrics();
        m.insert("slave/uptime_secs".into(), v.now.saturating_sub(v.started).as_secs_f64());
        m
    })
    .await?;
    // Agora stops rather than recover around a checkpoint it cannot read, so none happen.
    metrics.insert("slave/recovery_errors".into(), 0.0);
    metrics.extend(system_metrics());
    Ok(metrics)
}

/// `system/*`: CPUs, load averages and memory, as `/proc` tells them.
fn system_metrics() -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    m.insert("system/cpus_total".into(), cpus as f64);
    if let Ok(loadavg) = std::fs::read_to_string("/proc/loadavg") {
        let loads: Vec<f64> =
            loadavg.split_whitespace().take(3).filter_map(|v| v.parse().ok()).collect();
        for (name, value) in ["load_1min", "load_5min", "load_15min"].iter().zip(loads) {
            m.insert(format!("system/{name}"), value);
        }
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        for (key, name) in [("MemTotal:", "mem_total_bytes"), ("MemFree:", "mem_free_bytes")] {
            let kb = meminfo
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(kb) = kb {
                m.insert(format!("system/{name}"), kb * 1024.0);
            }
        }
    }
    m
}

pub(crate) fn version_info() -> v1::VersionInfo {
    v1::VersionInfo { version: MESOS_VERSION.into(), ..Default::default() }
}

/// SET_LOGGING_LEVEL: the level for `duration`, then back to 0 (`agora_http::logging`).
pub(crate) fn set_logging_level(
    logging: &Arc<agora_http::Logging>,
    level: u32,
    duration: &v1::DurationInfo,
) -> Result<(), Refusal> {
    let nanos = u64::try_from(duration.nanoseconds).map_err(|_| {
        refuse(StatusCode::BAD_REQUEST, "Expecting 'duration' to be a non-negative duration")
    })?;
    logging.set(level, Duration::from_nanos(nanos)).map_err(|e| {
        refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("Failed to set log level: {e}"))
    })
}
