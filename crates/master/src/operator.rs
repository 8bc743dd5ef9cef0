//! The master's operator API, `POST /api/v1` (reference §4.1, §4.2): every call type is
//! decoded here, checked for its payload, and either answered from the shell (health, flags,
//! version, logging level, files), answered from a read-only snapshot of the core (GET_STATE
//! and the other GET_* calls), turned into a core input (UPDATE_WEIGHTS, UPDATE_QUOTA, the
//! reservation and volume calls, TEARDOWN, MARK_AGENT_GONE), or opened as the event stream
//! (SUBSCRIBE).
//!
//! Snapshots are built by the dispatcher (which owns the core) and encoded here, in the
//! handler's task, in the format `Accept` asks for. SET_LOGGING_LEVEL changes the process's
//! log filter for its duration (`agora_http::logging` maps the glog level). LIST_FILES and
//! READ_FILE see the master's log at `/master/log` when `--log_dir` is set, and nothing else.
//! Maintenance, GET_OPERATIONS, volume resizing and draining are answered 501.

use std::time::Duration;

use agora_core::master::{ConnId, Input, Master};
use agora_http::{EventBody, Refusal, refuse, response_format, stream_response};
use agora_proto::master::{Call, Response, call, response};
use agora_proto::{Format, internal, v1};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use tokio::sync::mpsc;

use crate::dispatcher::{self, Command, StreamSender, submit};
use crate::http::{AppState, refusal};

/// A `Response` of the given type with no payload yet.
fn response(kind: response::Type) -> Response {
    let mut r = Response::default();
    r.set_type(kind);
    r
}

/// 200 with the encoded response.
pub(crate) fn encoded(format: Format, response: &Response) -> HttpResponse {
    let body = format.encode(response);
    let mut answer = (StatusCode::OK, body).into_response();
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    answer
}

fn missing(field: &str) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, format!("Expecting '{field}' to be present"))
}

fn shutting_down() -> Refusal {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "The master is shutting down")
}

/// Runs a query on the core; 503 when the dispatcher is gone.
async fn read<R: Send + 'static>(
    state: &AppState,
    query: impl FnOnce(&Master, Duration) -> R + Send + 'static,
) -> Result<R, Refusal> {
    dispatcher::read(&state.handle, query).await.ok_or_else(shutting_down)
}

/// Serves one decoded call; see the module documentation.
pub(crate) async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    call: Call,
) -> Result<HttpResponse, Refusal> {
    use call::Type as T;
    use response::Type as R;
    let Some(kind) = call.r#type.and_then(|t| T::try_from(t).ok()) else {
        return Err(missing("type"));
    };
    let format = response_format(headers)?;
    let req = state.handle.next_id();
    // At debug level: what SET_LOGGING_LEVEL turns on.
    tracing::debug!(call = kind.as_str_name(), "operator call");
    let answer = |r: Response| Ok(encoded(format, &r));
    match kind {
        T::Unknown => {
            Err(refuse(StatusCode::NOT_IMPLEMENTED, "Call type UNKNOWN is not supported"))
        }
        T::GetHealth => {
            let mut r = response(R::GetHealth);
            r.get_health = Some(response::GetHealth { healthy: true });
            answer(r)
        }
        T::GetFlags => {
            let mut r = response(R::GetFlags);
            let flags = state
                .shell
                .flags
                .iter()
                .map(|(name, value)| v1::Flag { name: name.clone(), value: Some(value.clone()) })
                .collect();
            r.get_flags = Some(response::GetFlags { flags });
            answer(r)
        }
        T::GetVersion => {
            let mut r = response(R::GetVersion);
            r.get_version = Some(response::GetVersion { version_info: version_info() });
            answer(r)
        }
        T::GetMetrics => {
            let metrics = crate::metrics::snapshot(state).await?;
            let mut r = response(R::GetMetrics);
            r.get_metrics = Some(response::GetMetrics {
                metrics: metrics
                    .into_iter()
                    .map(|(name, value)| v1::Metric { name, value: Some(value) })
                    .collect(),
            });
            answer(r)
        }
        T::GetLoggingLevel => {
            let mut r = response(R::GetLoggingLevel);
            let level = state.shell.logging.level();
            r.get_logging_level = Some(response::GetLoggingLevel { level });
            answer(r)
        }
        T::SetLoggingLevel => {
            let set = call.set_logging_level.ok_or_else(|| missing("set_logging_level"))?;
            let nanos = u64::try_from(set.duration.nanoseconds).map_err(|_| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "Expecting 'duration' to be a non-negative duration",
                )
            })?;
            state.shell.logging.set(set.level, Duration::from_nanos(nanos)).map_err(|e| {
                refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("Failed to set log level: {e}"))
            })?;
            Ok(StatusCode::OK.into_response())
        }
        T::ListFiles => {
            let list = call.list_files.ok_or_else(|| missing("list_files"))?;
            let file_infos = agora_http::files::list_files(&state.shell.files, list.path).await?;
            let mut r = response(R::ListFiles);
            r.list_files = Some(response::ListFiles { file_infos });
            answer(r)
        }
        T::ReadFile => {
            let read = call.read_file.ok_or_else(|| missing("read_file"))?;
            let (size, data) = agora_http::files::read_file(
                &state.shell.files,
                read.path,
                read.offset,
                read.length,
            )
            .await?;
            let mut r = response(R::ReadFile);
            r.read_file = Some(response::ReadFile { size, data: data.into() });
            answer(r)
        }
        T::GetState => {
            // The dispatcher hands out shared tasks; copying them into the message happens here.
            let state_view = read(state, |m, _| m.state_view()).await?;
            let mut r = response(R::GetState);
            r.get_state = Some(state_view.into_proto());
            answer(r)
        }
        T::GetAgents => {
            let mut r = response(R::GetAgents);
            r.get_agents = Some(read(state, |m, _| m.get_agents()).await?);
            answer(r)
        }
        T::GetFrameworks => {
            let mut r = response(R::GetFrameworks);
            r.get_frameworks = Some(read(state, |m, _| m.get_frameworks()).await?);
            answer(r)
        }
        T::GetExecutors => {
            let mut r = response(R::GetExecutors);
            r.get_executors = Some(read(state, |m, _| m.get_executors()).await?);
            answer(r)
        }
        T::GetTasks => {
            let mut r = response(R::GetTasks);
            let (tasks, completed_tasks) = read(state, |m, _| m.task_views()).await?;
            let view =
                agora_core::master::StateView { tasks, completed_tasks, ..Default::default() };
            r.get_tasks = Some(view.get_tasks());
            answer(r)
        }
        T::GetRoles => {
            let mut r = response(R::GetRoles);
            r.get_roles = Some(read(state, |m, _| m.get_roles()).await?);
            answer(r)
        }
        T::GetWeights => {
            let mut r = response(R::GetWeights);
            r.get_weights = Some(read(state, |m, _| m.get_weights()).await?);
            answer(r)
        }
        T::GetQuota => {
            let mut r = response(R::GetQuota);
            r.get_quota = Some(read(state, |m, _| m.get_quota()).await?);
            answer(r)
        }
        T::GetMaster => {
            let (info, start) =
                read(state, |m, _| (m.master_info().clone(), m.start_time())).await?;
            let mut r = response(R::GetMaster);
            r.get_master = Some(response::GetMaster {
                master_info: Some(info),
                start_time: Some(start.as_secs_f64()),
                // This master is elected when it starts: there is no election yet.
                elected_time: Some(start.as_secs_f64()),
            });
            answer(r)
        }
        T::Subscribe => subscribe(state, format, req).await,
        T::UpdateWeights => {
            let update = call.update_weights.ok_or_else(|| missing("update_weights"))?;
            done(state, Input::UpdateWeights { req, weights: update.weight_infos }, StatusCode::OK)
                .await
        }
        T::UpdateQuota => {
            let update = call.update_quota.ok_or_else(|| missing("update_quota"))?;
            let quotas = update
                .quota_configs
                .into_iter()
                .map(|c| internal::RegistryQuota {
                    role: c.role,
                    guarantees: c.guarantees,
                    limits: c.limits,
                })
                .collect();
            done(state, Input::UpdateQuota { req, quotas }, StatusCode::OK).await
        }
        T::ReserveResources => {
            let reserve = call.reserve_resources.ok_or_else(|| missing("reserve_resources"))?;
            let mut operation = operation(v1::offer::operation::Type::Reserve);
            operation.reserve = Some(v1::offer::operation::Reserve {
                resources: reserve.resources,
                source: reserve.source,
            });
            let agent_id = reserve.agent_id.value;
            done(
                state,
                Input::OperatorOperation { req, agent_id, operation: Box::new(operation) },
                StatusCode::ACCEPTED,
            )
            .await
        }
        T::UnreserveResources => {
            let unreserve =
                call.unreserve_resources.ok_or_else(|| missing("unreserve_resources"))?;
            let mut operation = operation(v1::offer::operation::Type::Unreserve);
            operation.unreserve =
                Some(v1::offer::operation::Unreserve { resources: unreserve.resources });
            let agent_id = unreserve.agent_id.value;
            done(
                state,
                Input::OperatorOperation { req, agent_id, operation: Box::new(operation) },
                StatusCode::ACCEPTED,
            )
            .await
        }
        T::CreateVolumes => {
            let create = call.create_volumes.ok_or_else(|| missing("create_volumes"))?;
            let mut operation = operation(v1::offer::operation::Type::Create);
            operation.create = Some(v1::offer::operation::Create { volumes: create.volumes });
            let agent_id = create.agent_id.value;
            done(
                state,
                Input::OperatorOperation { req, agent_id, operation: Box::new(operation) },
                StatusCode::ACCEPTED,
            )
            .await
        }
        T::DestroyVolumes => {
            let destroy = call.destroy_volumes.ok_or_else(|| missing("destroy_volumes"))?;
            let mut operation = operation(v1::offer::operation::Type::Destroy);
            operation.destroy = Some(v1::offer::operation::Destroy { volumes: destroy.volumes });
            let agent_id = destroy.agent_id.value;
            done(
                state,
                Input::OperatorOperation { req, agent_id, operation: Box::new(operation) },
                StatusCode::ACCEPTED,
            )
            .await
        }
        T::Teardown => {
            let teardown = call.teardown.ok_or_else(|| missing("teardown"))?;
            let framework_id = teardown.framework_id.value;
            done(state, Input::Teardown { req, framework_id }, StatusCode::OK).await
        }
        T::MarkAgentGone => {
            let gone = call.mark_agent_gone.ok_or_else(|| missing("mark_agent_gone"))?;
            let agent_id = gone.agent_id.value;
            done(state, Input::MarkAgentGone { req, agent_id }, StatusCode::OK).await
        }
        other => Err(refuse(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "Operator call {} is not implemented by this version of Agora",
                other.as_str_name()
            ),
        )),
    }
}

fn operation(kind: v1::offer::operation::Type) -> v1::offer::Operation {
    let mut operation = v1::offer::Operation::default();
    operation.set_type(kind);
    operation
}

/// A mutating call: `status` once the core applied it (and it is durable), or the refusal.
async fn done(state: &AppState, input: Input, status: StatusCode) -> Result<HttpResponse, Refusal> {
    submit(&state.handle, input, None).await.map(|()| status.into_response()).map_err(refusal)
}

/// What GET_VERSION and `/version` report.
pub(crate) fn version_info() -> v1::VersionInfo {
    v1::VersionInfo {
        version: crate::MESOS_API_VERSION.to_string(),
        build_date: Some(String::new()),
        build_time: Some(0.0),
        build_user: Some(String::new()),
        git_sha: None,
        git_branch: None,
        git_tag: None,
    }
}

/// SUBSCRIBE: a RecordIO stream of `mesos.v1.master.Event`s, SUBSCRIBED first.
async fn subscribe(state: &AppState, format: Format, req: u64) -> Result<HttpResponse, Refusal> {
    let handle = &state.handle;
    let conn: ConnId = handle.next_id();
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = StreamSender { conn, format, tx };
    let body =
        EventBody::new(rx, handle.tx.clone(), Command::Closed(Input::OperatorClosed { conn }));
    match submit(handle, Input::OperatorSubscribe { req, conn }, Some(stream)).await {
        Ok(()) => Ok(stream_response(format, None, body)),
        Err(e) => Err(refusal(e)),
    }
}
