//! The master's legacy (unversioned) JSON endpoints in Mesos's shapes (reference §4.4):
//! `/master/state` (and `/state`, `/state.json`, `/master/state.json`), `/master/state-summary`,
//! `/master/frameworks`, `/master/slaves` (`/slaves`), `/master/tasks` (`/tasks`),
//! `/master/roles`, `/master/flags` and `/master/redirect`.
//!
//! They are rendered from the same snapshot the operator API's GET_STATE returns: the
//! dispatcher copies the core's state into wire types, and the rendering (the slowest part for
//! a large cluster) happens here, in the handler's task. Legacy JSON differs from the v1 JSON:
//! resources are one flat object (`cpus`, `gpus`, `mem`, `disk` always present, ranges as
//! `"[31000-32000]"`, sets as `"{a,b}"`), agents are `slave`s, times are seconds, and a task's
//! statuses are a short array. Tasks, agents and frameworks, the bulk of a large state, are
//! serialized straight to the output through `serde::Serialize` without an intermediate
//! `serde_json::Value` (agents' and frameworks' keys in the sorted order such a value used to
//! give them, so the bytes did not change), on a render thread of low priority.
//! `?jsonp=` is not supported.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agora_core::master::StateView;
use agora_http::{Refusal, refuse};
use agora_proto::master::response;
use agora_proto::v1;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::{Value, json};

use crate::http::AppState;

/// Everything `/master/state` shows, taken out of the core (tasks shared, not copied).
pub struct StateSnapshot {
    pub master_info: v1::MasterInfo,
    pub start_time: Duration,
    pub state: StateView,
    pub flags: Vec<(String, String)>,
}

/// Runs `/master/state` renders one at a time, and lets the requests that waited together share
/// one.
///
/// A render of a large cluster takes a core for a good part of a second; twenty pollers
/// rendering at once would take both cores from the dispatcher and the schedulers, and hold
/// twenty snapshots. So one render runs at a time, and a request is answered by the first
/// render whose snapshot was taken after it arrived: every request that queued while a render
/// ran shares the next one, which is as fresh as a render of its own would have been. The body
/// is kept only while a request still waits. This is the handlers' cache of bytes, not state of
/// the core: the core stays with the dispatcher.
#[derive(Default)]
pub struct StateRenders {
    /// Held for the whole of a render (snapshot and rendering).
    turn: tokio::sync::Mutex<()>,
    shared: Mutex<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Renders started so far.
    started: u64,
    /// The latest body, with the number of the render that made it.
    latest: Option<(u64, Bytes)>,
    /// Requests that arrived and have not been answered yet.
    waiting: usize,
}

/// Why `/master/state` could not be served.
#[derive(Debug)]
pub enum StateFailure {
    /// No snapshot: the master is shutting down.
    Unavailable,
    /// The render failed, or its thread did not finish.
    Render(String),
}

/// Counts a request among the waiting ones for as long as it lives, even if it is dropped
/// half-way (the client went away); the last one out drops the shared body.
struct Waiting<'a>(&'a StateRenders);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut shared = self.0.lock();
        shared.waiting -= 1;
        if shared.waiting == 0 {
            shared.latest = None;
        }
    }
}

impl StateRenders {
    /// The `/master/state` body, from a snapshot `snapshot` takes (on the dispatcher) or
    /// shared with the requests that waited alongside.
    pub async fn serve<F, Fut>(&self, snapshot: F) -> Result<Bytes, StateFailure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<StateSnapshot>>,
    {
        let arrival = {
            let mut shared = self.lock();
            shared.waiting += 1;
            shared.started
        };
        let _waiting = Waiting(self);
        let _turn = self.turn.lock().await;
        let number = {
            let mut shared = self.lock();
            if let Some((number, body)) = &shared.latest
                && *number > arrival
            {
                return Ok(body.clone());
            }
            shared.started += 1;
            shared.started
        };
        let snapshot = snapshot().await.ok_or(StateFailure::Unavailable)?;
        let (done, rendered) = tokio::sync::oneshot::channel();
        // A thread of its own rather than the blocking pool, because it lowers its priority
        // and pool threads are reused for the registry's commits. It also drops the snapshot
        // (400k task pointers on a large cluster) away from the dispatcher.
        std::thread::Builder::new()
            .name("state-render".into())
            .spawn(move || {
                yield_to_scheduling();
                let _ = done.send(render_state(&snapshot));
            })
            .map_err(|e| StateFailure::Render(e.to_string()))?;
        let body = rendered
            .await
            .map_err(|e| StateFailure::Render(e.to_string()))?
            .map_err(|e| StateFailure::Render(e.to_string()))?;
        let body = Bytes::from(body);
        self.lock().latest = Some((number, body.clone()));
        Ok(body)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The niceness of the `/master/state` render thread: a render takes a core for most of a
/// second on a large cluster, and must not take it from the dispatcher, the allocator and the
/// schedulers' calls when the cores are short (a CFS weight of 15 against 1024).
const RENDER_NICENESS: i32 = 19;

/// Lowers the calling thread's priority (Linux applies `setpriority` to one thread when given
/// its thread id). A failure only costs the protection, so it is logged and ignored.
fn yield_to_scheduling() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), RENDER_NICENESS) {
        tracing::debug!("cannot lower the priority of the state render thread: {e}");
    }
}

/// A value of a flat resources object: a summed scalar, or ranges or a set as a string.
#[derive(Debug, Clone, PartialEq)]
enum Flat {
    Scalar(f64),
    Ranges(Vec<(u64, u64)>),
    Set(Vec<String>),
}

impl Serialize for Flat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Fixed-point with three decimals, as Mesos keeps scalars.
            Flat::Scalar(v) => s.serialize_f64((v * 1000.0).round() / 1000.0),
            Flat::Ranges(ranges) => s.serialize_str(&format_ranges(ranges)),
            Flat::Set(items) => s.serialize_str(&format!("{{{}}}", items.join(","))),
        }
    }
}

/// `[a-b, c-d]` with the ranges sorted and adjacent ones merged.
fn format_ranges(ranges: &[(u64, u64)]) -> String {
    // The core's normal form: sorted, adjacent ones merged (inverted ones are dropped).
    let valid = ranges.iter().copied().filter(|(begin, end)| begin <= end);
    let merged = agora_core::resources::Ranges::try_from_intervals(valid).unwrap_or_default();
    let parts: Vec<String> = merged.intervals().iter().map(|(b, e)| format!("{b}-{e}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The flat resources object of reference §4.4. A task has a handful of entries, so a short
/// vector searched in place beats a map: this is built once per task of `/master/state`.
#[derive(Debug, Default, PartialEq)]
struct FlatResources<'a>(Vec<(Cow<'a, str>, Flat)>);

impl<'a> FlatResources<'a> {
    fn of(resources: impl IntoIterator<Item = &'a v1::Resource>) -> FlatResources<'a> {
        let mut flat: Vec<(Cow<'a, str>, Flat)> = ["cpus", "gpus", "mem", "disk"]
            .into_iter()
            .map(|name| (Cow::Borrowed(name), Flat::Scalar(0.0)))
            .collect();
        for r in resources {
            let name: Cow<'a, str> = if r.revocable.is_some() {
                Cow::Owned(format!("{}_revocable", r.name))
            } else {
                Cow::Borrowed(r.name.as_str())
            };
            let index = match flat.iter().position(|(n, _)| *n == name) {
                Some(index) => index,
                None => {
                    let empty = if r.ranges.is_some() {
                        Flat::Ranges(Vec::new())
                    } else if r.set.is_some() {
                        Flat::Set(Vec::new())
                    } else {
                        Flat::Scalar(0.0)
                    };
                    flat.push((name, empty));
                    flat.len() - 1
                }
            };
            match (&mut flat[index].1, &r.scalar, &r.ranges, &r.set) {
                (Flat::Scalar(v), Some(scalar), _, _) => *v += scalar.value,
                (Flat::Ranges(list), _, Some(ranges), _) => {
                    list.extend(ranges.range.iter().map(|x| (x.begin, x.end)));
                }
                (Flat::Set(items), _, _, Some(set)) => items.extend(set.item.iter().cloned()),
                // A name used with two types: the first one wins, as in a Mesos Resources sum.
                _ => {}
            }
        }
        FlatResources(flat)
    }
}

/// The flat resources object with its keys in sorted order, as agents and frameworks have
/// always shown it (they went through a `serde_json::Value`, whose objects sort their keys;
/// tasks never did).
fn sorted_flat<'a>(resources: impl IntoIterator<Item = &'a v1::Resource>) -> FlatResources<'a> {
    let mut flat = FlatResources::of(resources);
    flat.0.sort_by(|(a, _), (b, _)| a.cmp(b));
    flat
}

impl Serialize for FlatResources<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

fn flat(resources: &[v1::Resource]) -> Value {
    serde_json::to_value(FlatResources::of(resources)).unwrap_or(Value::Null)
}

/// The role a resource is reserved for, if any (either reservation format).
fn reservation_role(r: &v1::Resource) -> Option<String> {
    if let Some(last) = r.reservations.last() {
        return last.role.clone();
    }
    #[expect(deprecated, reason = "the pre-refinement format names the role here")]
    let role = r.role.clone();
    role.filter(|role| role != "*")
}

/// A time in seconds since the epoch, or null.
fn seconds(time: Option<&v1::TimeInfo>) -> Option<f64> {
    time.map(|t| t.nanoseconds as f64 / 1e9)
}

fn attributes(attributes: &[v1::Attribute]) -> Value {
    let mut out = serde_json::Map::new();
    for a in attributes {
        let value = if let Some(s) = &a.scalar {
            json!(s.value)
        } else if let Some(r) = &a.ranges {
            let list: Vec<(u64, u64)> = r.range.iter().map(|x| (x.begin, x.end)).collect();
            json!(format_ranges(&list))
        } else if let Some(s) = &a.set {
            json!(format!("{{{}}}", s.item.join(",")))
        } else if let Some(t) = &a.text {
            json!(t.value)
        } else {
            continue;
        };
        out.insert(a.name.clone(), value);
    }
    Value::Object(out)
}

/// The labels of a proto as Mesos's legacy JSON shows them: `[{"key":..,"value":..}]`.
fn labels(labels: &v1::Labels) -> Value {
    labels
        .labels
        .iter()
        .map(|l| match &l.value {
            Some(v) => json!({"key": l.key, "value": v}),
            None => json!({"key": l.key}),
        })
        .collect()
}

/// A task in the legacy shape, serialized without an intermediate value.
struct LegacyTask<'a> {
    task: &'a v1::Task,
    role: &'a str,
}

impl Serialize for LegacyTask<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.task;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &t.task_id.as_ref().map_or("", |i| i.value.as_str()))?;
        map.serialize_entry("name", t.name.as_deref().unwrap_or(""))?;
        map.serialize_entry(
            "framework_id",
            &t.framework_id.as_ref().map_or("", |i| i.value.as_str()),
        )?;
        map.serialize_entry(
            "executor_id",
            &t.executor_id.as_ref().map_or("", |i| i.value.as_str()),
        )?;
        map.serialize_entry("slave_id", &t.agent_id.as_ref().map_or("", |i| i.value.as_str()))?;
        map.serialize_entry("state", t.state().as_str_name())?;
        map.serialize_entry("resources", &FlatResources::of(&t.resources))?;
        map.serialize_entry("role", self.role)?;
        map.serialize_entry("statuses", &Statuses(&t.statuses))?;
        if let Some(user) = &t.user {
            map.serialize_entry("user", user)?;
        }
        if let Some(l) = &t.labels {
            map.serialize_entry("labels", &labels(l))?;
        }
        if let Some(d) = &t.discovery {
            map.serialize_entry("discovery", &agora_proto::to_json_value(d))?;
        }
        if let Some(c) = &t.container {
            map.serialize_entry("container", &agora_proto::to_json_value(c))?;
        }
        if let Some(h) = &t.health_check {
            map.serialize_entry("health_check", &agora_proto::to_json_value(h))?;
        }
        map.end()
    }
}

struct Statuses<'a>(&'a [v1::TaskStatus]);

impl Serialize for Statuses<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for status in self.0 {
            seq.serialize_element(&LegacyStatus(status))?;
        }
        seq.end()
    }
}

struct LegacyStatus<'a>(&'a v1::TaskStatus);

impl Serialize for LegacyStatus<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let status = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("state", status.state().as_str_name())?;
        map.serialize_entry("timestamp", &status.timestamp.unwrap_or(0.0))?;
        if let Some(healthy) = status.healthy {
            map.serialize_entry("healthy", &healthy)?;
        }
        if let Some(l) = &status.labels {
            map.serialize_entry("labels", &labels(l))?;
        }
        if let Some(c) = &status.container_status {
            map.serialize_entry("container_status", &agora_proto::to_json_value(c))?;
        }
        map.end()
    }
}

/// A list of tasks, serialized lazily.
struct TaskList<'a>(Vec<LegacyTask<'a>>);

impl Serialize for TaskList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for t in &self.0 {
            seq.serialize_element(t)?;
        }
        seq.end()
    }
}

/// The roles of a framework: `roles` with MULTI_ROLE, else its one `role`.
fn framework_roles(info: &v1::FrameworkInfo) -> (bool, Vec<String>) {
    let multi = info
        .capabilities
        .iter()
        .any(|c| c.r#type() == v1::framework_info::capability::Type::MultiRole);
    if multi {
        (true, info.roles.clone())
    } else {
        #[expect(deprecated, reason = "a single-role framework names its role this way")]
        let role = info.role.clone().unwrap_or_else(|| "*".into());
        (false, vec![role])
    }
}

/// The first role of a framework, for tasks whose resources do not say theirs.
fn framework_role(info: &v1::FrameworkInfo) -> &str {
    #[expect(deprecated, reason = "a single-role framework names its role this way")]
    let single = info.role.as_deref();
    info.roles.first().map(String::as_str).or(single).unwrap_or("*")
}

/// The role a task's resources are allocated to.
fn task_role<'a>(task: &'a v1::Task, framework_role: &'a str) -> &'a str {
    task.resources
        .iter()
        .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.as_deref()))
        .unwrap_or(framework_role)
}

/// Tasks, completed tasks and executors of a snapshot, by framework id.
#[derive(Default)]
struct ByFramework<'a> {
    tasks: HashMap<&'a str, Vec<&'a v1::Task>>,
    completed: HashMap<&'a str, Vec<&'a v1::Task>>,
    executors: HashMap<&'a str, Vec<&'a response::get_executors::Executor>>,
}

impl<'a> ByFramework<'a> {
    fn of(state: &'a StateView) -> ByFramework<'a> {
        let mut by = ByFramework::default();
        let fid = |t: &'a v1::Task| t.framework_id.as_ref().map_or("", |f| f.value.as_str());
        for t in &state.tasks {
            by.tasks.entry(fid(t)).or_default().push(t);
        }
        for t in &state.completed_tasks {
            by.completed.entry(fid(t)).or_default().push(t);
        }
        for e in &state.executors.executors {
            let id = e.executor_info.framework_id.as_ref().map_or("", |f| f.value.as_str());
            by.executors.entry(id).or_default().push(e);
        }
        by
    }
}

/// A framework with its tasks: the fields of `FrameworkFields`, then `tasks` and
/// `completed_tasks`, all serialized straight from the snapshot.
struct FullFramework<'a> {
    fields: FrameworkFields<'a>,
    tasks: TaskList<'a>,
    completed: TaskList<'a>,
}

impl<'a> FullFramework<'a> {
    /// The one place a framework of `/master/state` and `/master/frameworks` is rendered.
    fn of(
        f: &'a response::get_frameworks::Framework,
        by: &ByFramework<'a>,
    ) -> Result<FullFramework<'a>, serde_json::Error> {
        let id = f.framework_info.id.as_ref().map_or("", |i| i.value.as_str());
        let role = framework_role(&f.framework_info);
        let list = |tasks: Option<&Vec<&'a v1::Task>>| {
            TaskList(
                tasks
                    .map(|ts| {
                        ts.iter()
                            .map(|t| LegacyTask { task: t, role: task_role(t, role) })
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        };
        Ok(FullFramework {
            fields: FrameworkFields {
                f,
                executors: by.executors.get(id).cloned().unwrap_or_default(),
                full: true,
            },
            tasks: list(by.tasks.get(id)),
            completed: list(by.completed.get(id)),
        })
    }
}

impl Serialize for FullFramework<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.fields.entries(&mut map)?;
        map.serialize_entry("tasks", &self.tasks)?;
        map.serialize_entry("completed_tasks", &self.completed)?;
        map.end()
    }
}

/// A framework in the legacy shape; `full` adds its offers and executors (`FullFramework`
/// its tasks).
fn framework_json(
    f: &response::get_frameworks::Framework,
    by: &ByFramework<'_>,
    full: bool,
) -> Result<Value, serde_json::Error> {
    let id = f.framework_info.id.as_ref().map_or("", |i| i.value.as_str());
    let executors = by.executors.get(id).cloned().unwrap_or_default();
    serde_json::to_value(FrameworkFields { f, executors, full })
}

/// The fields of a framework in the legacy shape, written without an intermediate value. The
/// keys come in sorted order, as they did when this was a `serde_json::Value` object (a
/// `BTreeMap`), so that the document stays byte for byte the same.
struct FrameworkFields<'a> {
    f: &'a response::get_frameworks::Framework,
    executors: Vec<&'a response::get_executors::Executor>,
    /// With `unreachable_tasks`, `offers` and `executors`.
    full: bool,
}

impl FrameworkFields<'_> {
    fn entries<M: SerializeMap>(&self, o: &mut M) -> Result<(), M::Error> {
        let f = self.f;
        let info = &f.framework_info;
        let (multi, roles) = framework_roles(info);
        let capabilities: Vec<&str> =
            info.capabilities.iter().map(|c| c.r#type().as_str_name()).collect();
        o.serialize_entry("active", &f.active)?;
        o.serialize_entry("capabilities", &capabilities)?;
        o.serialize_entry("checkpoint", &info.checkpoint())?;
        o.serialize_entry("connected", &f.connected)?;
        if self.full {
            o.serialize_entry("executors", &LegacyExecutors(&self.executors))?;
        }
        o.serialize_entry("failover_timeout", &info.failover_timeout())?;
        o.serialize_entry("hostname", info.hostname.as_deref().unwrap_or_default())?;
        o.serialize_entry("id", info.id.as_ref().map_or("", |i| i.value.as_str()))?;
        if let Some(l) = &info.labels {
            o.serialize_entry("labels", &labels(l))?;
        }
        o.serialize_entry("name", &info.name)?;
        o.serialize_entry("offered_resources", &sorted_flat(&f.offered_resources))?;
        if self.full {
            o.serialize_entry("offers", &LegacyOffers(&f.offers))?;
        }
        if let Some(p) = &info.principal {
            o.serialize_entry("principal", p)?;
        }
        o.serialize_entry("recovered", &f.recovered)?;
        o.serialize_entry("registered_time", &seconds(f.registered_time.as_ref()))?;
        if let Some(t) = &f.reregistered_time {
            o.serialize_entry("reregistered_time", &seconds(Some(t)))?;
        }
        o.serialize_entry(
            "resources",
            &sorted_flat(f.allocated_resources.iter().chain(&f.offered_resources)),
        )?;
        if multi {
            o.serialize_entry("roles", &roles)?;
        } else {
            o.serialize_entry("role", &roles.first())?;
        }
        if self.full {
            o.serialize_entry("unreachable_tasks", &[(); 0])?;
        }
        // Mesos writes 0, an integer, for a framework that never disconnected.
        match seconds(f.unregistered_time.as_ref()) {
            Some(t) => o.serialize_entry("unregistered_time", &t)?,
            None => o.serialize_entry("unregistered_time", &0)?,
        }
        o.serialize_entry("used_resources", &sorted_flat(&f.allocated_resources))?;
        o.serialize_entry("user", &info.user)?;
        o.serialize_entry("webui_url", info.webui_url.as_deref().unwrap_or_default())
    }
}

impl Serialize for FrameworkFields<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.entries(&mut map)?;
        map.end()
    }
}

/// A framework's offers in the legacy shape.
struct LegacyOffers<'a>(&'a [v1::Offer]);

impl Serialize for LegacyOffers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for offer in self.0 {
            seq.serialize_element(&LegacyOffer(offer))?;
        }
        seq.end()
    }
}

struct LegacyOffer<'a>(&'a v1::Offer);

impl Serialize for LegacyOffer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let offer = self.0;
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("framework_id", &offer.framework_id.value)?;
        map.serialize_entry("id", &offer.id.value)?;
        map.serialize_entry("resources", &sorted_flat(&offer.resources))?;
        map.serialize_entry("slave_id", &offer.agent_id.value)?;
        map.end()
    }
}

/// A framework's executors: their v1 JSON with `slave_id` and flat `resources` added. They
/// are few, so they go through `serde_json::Value`.
struct LegacyExecutors<'a>(&'a [&'a response::get_executors::Executor]);

impl Serialize for LegacyExecutors<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            let mut v = agora_proto::to_json_value(&e.executor_info);
            if let Value::Object(m) = &mut v {
                m.insert("slave_id".into(), json!(e.agent_id.value));
                m.insert("resources".into(), flat(&e.executor_info.resources));
            }
            seq.serialize_element(&v)?;
        }
        seq.end()
    }
}

/// An agent in the legacy shape, as a value (for the endpoints that add fields to it).
fn slave_json(a: &response::get_agents::Agent) -> Value {
    serde_json::to_value(LegacySlave(a)).unwrap_or(Value::Null)
}

/// An agent in the legacy shape, written without an intermediate value; keys in sorted order,
/// as `FrameworkFields`.
struct LegacySlave<'a>(&'a response::get_agents::Agent);

impl Serialize for LegacySlave<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.0;
        let info = &a.agent_info;
        let mut reserved: BTreeMap<String, Vec<&v1::Resource>> = BTreeMap::new();
        let mut unreserved = Vec::new();
        for r in &a.total_resources {
            match reservation_role(r) {
                Some(role) => reserved.entry(role).or_default().push(r),
                None => unreserved.push(r),
            }
        }
        let mut map = s.serialize_map(Some(16))?;
        map.serialize_entry("active", &a.active)?;
        map.serialize_entry("attributes", &attributes(&info.attributes))?;
        map.serialize_entry("capabilities", &[(); 0])?;
        map.serialize_entry("deactivated", &a.deactivated.unwrap_or(false))?;
        map.serialize_entry("hostname", &info.hostname)?;
        map.serialize_entry("id", info.id.as_ref().map_or("", |i| i.value.as_str()))?;
        map.serialize_entry("offered_resources", &sorted_flat(&a.offered_resources))?;
        map.serialize_entry("pid", a.pid.as_deref().unwrap_or_default())?;
        map.serialize_entry("port", &info.port())?;
        map.serialize_entry("registered_time", &seconds(a.registered_time.as_ref()))?;
        map.serialize_entry("reregistered_time", &seconds(a.reregistered_time.as_ref()))?;
        map.serialize_entry("reserved_resources", &Reserved(&reserved))?;
        map.serialize_entry("resources", &sorted_flat(&a.total_resources))?;
        map.serialize_entry("unreserved_resources", &sorted_flat(unreserved))?;
        map.serialize_entry("used_resources", &sorted_flat(&a.allocated_resources))?;
        map.serialize_entry("version", &a.version)?;
        map.end()
    }
}

/// An agent's reserved resources: a flat resources object per role.
struct Reserved<'a, 'r>(&'a BTreeMap<String, Vec<&'r v1::Resource>>);

impl Serialize for Reserved<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (role, resources) in self.0 {
            map.serialize_entry(role, &sorted_flat(resources.iter().copied()))?;
        }
        map.end()
    }
}

/// The agents of `/master/state`.
struct Slaves<'a>(&'a [std::sync::Arc<response::get_agents::Agent>]);

impl Serialize for Slaves<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for a in self.0 {
            seq.serialize_element(&LegacySlave(a))?;
        }
        seq.end()
    }
}

fn leader_info(info: &v1::MasterInfo) -> Value {
    json!({
        "id": info.id,
        "pid": info.pid.clone().unwrap_or_default(),
        "port": info.port,
        "hostname": info.hostname.clone().unwrap_or_default(),
    })
}

/// `/master/state` as bytes.
pub fn render_state(snapshot: &StateSnapshot) -> Result<Vec<u8>, serde_json::Error> {
    let state = &snapshot.state;
    let by = ByFramework::of(state);
    let frameworks: Vec<FullFramework<'_>> =
        state.frameworks.iter().map(|f| FullFramework::of(f, &by)).collect::<Result<_, _>>()?;
    let active = state.agents.iter().filter(|a| a.active).count();
    let total = state.agents.len();
    let recovered: Vec<Value> = state
        .recovered_agents
        .iter()
        .map(|info| json!({"id": info.id.as_ref().map_or("", |i| i.value.as_str()), "hostname": info.hostname}))
        .collect();
    let info = &snapshot.master_info;
    let flags: serde_json::Map<String, Value> =
        snapshot.flags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let start = snapshot.start_time.as_secs_f64();
    // The small fields as a value; `slaves` and `frameworks`, the bulk, are streamed.
    let v = json!({
        "version": crate::MESOS_API_VERSION,
        "build_date": "",
        "build_time": 0,
        "build_user": "",
        "start_time": start,
        "elected_time": start,
        "id": info.id,
        "pid": info.pid.clone().unwrap_or_default(),
        "hostname": info.hostname.clone().unwrap_or_default(),
        "capabilities": [],
        "activated_slaves": active,
        "deactivated_slaves": total - active,
        "unreachable_slaves": recovered.len(),
        "leader": info.pid.clone().unwrap_or_default(),
        "leader_info": leader_info(info),
        "flags": flags,
        "recovered_slaves": recovered,
        "completed_frameworks": completed_frameworks(state, &by)?,
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    });
    let mut v = v;
    // Mesos writes `log_dir` only when the flag is set.
    if let (Some((_, dir)), Value::Object(fields)) =
        (snapshot.flags.iter().find(|(name, _)| name == "log_dir"), &mut v)
    {
        fields.insert("log_dir".into(), json!(dir));
    }
    // One buffer sized for the whole document up front (a task takes about 300 bytes, an
    // agent about 900): growing a 100 MB vector by doubling copies it over and over.
    let capacity = (state.tasks.len() + state.completed_tasks.len()) * 320
        + state.agents.len() * 1024
        + (1 << 16);
    let mut out = Vec::with_capacity(capacity);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut map = serde::Serializer::serialize_map(&mut ser, None)?;
    // `slaves` goes where a sorted object would put it, as it did when it was in the value.
    let slaves = Slaves(&state.agents);
    let mut slaves_written = false;
    if let Value::Object(fields) = &v {
        for (k, value) in fields {
            if !slaves_written && k.as_str() > "slaves" {
                map.serialize_entry("slaves", &slaves)?;
                slaves_written = true;
            }
            map.serialize_entry(k, value)?;
        }
    }
    if !slaves_written {
        map.serialize_entry("slaves", &slaves)?;
    }
    SerializeMap::end(map)?;
    // `frameworks` (which hold the tasks, most of the document) comes last, written by hand
    // in place of the closing brace so that its two halves can be rendered on two cores.
    out.pop();
    out.extend_from_slice(b",\"frameworks\":[");
    let tasks = |f: &FullFramework<'_>| f.tasks.0.len() + f.completed.0.len() + 1;
    let all: usize = frameworks.iter().map(tasks).sum();
    let mut split = 0;
    let mut first_half = 0;
    while split < frameworks.len() && first_half * 2 < all {
        first_half += tasks(&frameworks[split]);
        split += 1;
    }
    let (head, tail) = frameworks.split_at(split);
    let tail_capacity = capacity.saturating_sub(out.len()) * (all - first_half) / all.max(1);
    let tail = std::thread::scope(|scope| {
        // The second thread inherits this one's priority (lowered for the server's renders).
        let tail = (!tail.is_empty()).then(|| {
            scope.spawn(move || {
                let mut buffer = Vec::with_capacity(tail_capacity);
                write_elements(&mut buffer, tail).map(|()| buffer)
            })
        });
        write_elements(&mut out, head)?;
        match tail.map(|t| t.join()) {
            None => Ok(Vec::new()),
            Some(Ok(rendered)) => rendered,
            Some(Err(_)) => Err(serde::ser::Error::custom("the render thread panicked")),
        }
    })?;
    if !head.is_empty() && !tail.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(&tail);
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// JSON array elements separated by commas, as serde_json's compact writer separates them.
fn write_elements<T: Serialize>(out: &mut Vec<u8>, items: &[T]) -> Result<(), serde_json::Error> {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, item)?;
    }
    Ok(())
}

/// Removed frameworks, each rendered as a current one is (their tasks are all completed
/// tasks); a bounded list, so a `Value` is cheap enough.
fn completed_frameworks(
    state: &StateView,
    by: &ByFramework<'_>,
) -> Result<Value, serde_json::Error> {
    let completed = state.completed_frameworks.iter().map(|f| FullFramework::of(f, by));
    serde_json::to_value(completed.collect::<Result<Vec<_>, _>>()?)
}

/// The object `fields` with `frameworks` added, serialized.
fn with_frameworks(
    fields: &Value,
    frameworks: &[FullFramework<'_>],
    capacity: usize,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(capacity);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut map = serde::Serializer::serialize_map(&mut ser, None)?;
    if let Value::Object(fields) = fields {
        for (k, v) in fields {
            map.serialize_entry(k, v)?;
        }
    }
    map.serialize_entry("frameworks", frameworks)?;
    SerializeMap::end(map)?;
    Ok(out)
}

fn json_response(body: impl Into<axum::body::Body>) -> Response {
    let mut response = (StatusCode::OK, body.into()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn unavailable() -> Refusal {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "The master is shutting down")
}

fn internal(e: serde_json::Error) -> Refusal {
    refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("Cannot render the state: {e}"))
}

async fn snapshot(state: &AppState) -> Result<StateSnapshot, Refusal> {
    let flags = state.shell.flags.clone();
    crate::dispatcher::read(&state.handle, move |m, _| StateSnapshot {
        master_info: m.master_info().clone(),
        start_time: m.start_time(),
        state: m.state_view(),
        flags,
    })
    .await
    .ok_or_else(unavailable)
}

/// `GET /master/state` and its aliases.
pub(crate) async fn state(State(app): State<AppState>) -> Result<Response, Refusal> {
    let body =
        app.shell.state_renders.serve(|| async { snapshot(&app).await.ok() }).await.map_err(
            |e| match e {
                StateFailure::Unavailable => unavailable(),
                StateFailure::Render(e) => refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Cannot render the state: {e}"),
                ),
            },
        )?;
    Ok(json_response(body))
}

/// Counts of tasks per state name, every state present.
fn state_counts<'a>(tasks: impl Iterator<Item = &'a v1::Task>) -> serde_json::Map<String, Value> {
    let mut counts: BTreeMap<&'static str, u64> =
        agora_core::master::TASK_STATES.iter().map(|s| (s.as_str_name(), 0)).collect();
    for t in tasks {
        *counts.entry(t.state().as_str_name()).or_default() += 1;
    }
    counts.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
}

/// `GET /master/state-summary`.
pub(crate) async fn state_summary(State(app): State<AppState>) -> Result<Response, Refusal> {
    let snapshot = snapshot(&app).await?;
    let state = &snapshot.state;
    // Every task grouped once by agent and by framework: looking each agent's tasks up in
    // the whole list made this endpoint quadratic (10k agents × 100k tasks).
    let mut by_agent: HashMap<&str, Vec<&v1::Task>> = HashMap::new();
    let mut by_framework: HashMap<&str, Vec<&v1::Task>> = HashMap::new();
    for task in state.tasks.iter().chain(state.completed_tasks.iter()) {
        if let Some(agent) = &task.agent_id {
            by_agent.entry(agent.value.as_str()).or_default().push(task);
        }
        if let Some(framework) = &task.framework_id {
            by_framework.entry(framework.value.as_str()).or_default().push(task);
        }
    }
    let slaves: Vec<Value> = state
        .agents
        .iter()
        .map(|a| {
            let id = a.agent_info.id.as_ref().map_or("", |i| i.value.as_str());
            let here = by_agent.get(id).map_or(&[][..], Vec::as_slice);
            let mut v = slave_json(a);
            if let Value::Object(m) = &mut v {
                m.extend(state_counts(here.iter().copied()));
                let mut fids: Vec<&str> = here
                    .iter()
                    .filter_map(|t| t.framework_id.as_ref().map(|f| f.value.as_str()))
                    .collect();
                fids.sort_unstable();
                fids.dedup();
                m.insert("framework_ids".into(), json!(fids));
            }
            v
        })
        .collect();
    let by = ByFramework::of(state);
    let frameworks: Vec<Value> = state
        .frameworks
        .iter()
        .map(|f| {
            let id = f.framework_info.id.as_ref().map_or("", |i| i.value.as_str());
            let here = by_framework.get(id).map_or(&[][..], Vec::as_slice);
            let mut v = framework_json(f, &by, false)?;
            if let Value::Object(m) = &mut v {
                m.extend(state_counts(here.iter().copied()));
                let mut sids: Vec<&str> = here
                    .iter()
                    .filter_map(|t| t.agent_id.as_ref().map(|a| a.value.as_str()))
                    .collect();
                sids.sort_unstable();
                sids.dedup();
                m.insert("slave_ids".into(), json!(sids));
            }
            Ok(v)
        })
        .collect::<Result<_, serde_json::Error>>()
        .map_err(internal)?;
    let body = json!({
        "hostname": snapshot.master_info.hostname.clone().unwrap_or_default(),
        "cluster": "",
        "slaves": slaves,
        "frameworks": frameworks,
    });
    Ok(json_response(serde_json::to_vec(&body).map_err(internal)?))
}

/// `GET /master/frameworks[?framework_id=]`.
pub(crate) async fn frameworks(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let snapshot = snapshot(&app).await?;
    let by = ByFramework::of(&snapshot.state);
    let wanted = query.get("framework_id");
    let frameworks: Vec<FullFramework<'_>> = snapshot
        .state
        .frameworks
        .iter()
        .filter(|f| {
            wanted.is_none_or(|w| f.framework_info.id.as_ref().is_some_and(|i| &i.value == w))
        })
        .map(|f| FullFramework::of(f, &by))
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    let mut completed = completed_frameworks(&snapshot.state, &by).map_err(internal)?;
    if let (Some(wanted), Value::Array(list)) = (wanted, &mut completed) {
        list.retain(|f| f["id"] == wanted.as_str());
    }
    let fields = json!({"completed_frameworks": completed, "unregistered_frameworks": []});
    Ok(json_response(with_frameworks(&fields, &frameworks, 1 << 16).map_err(internal)?))
}

/// `GET /master/slaves[?slave_id=]`.
pub(crate) async fn slaves(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let agents = crate::dispatcher::read(&app.handle, |m, _| m.get_agents())
        .await
        .ok_or_else(unavailable)?;
    let wanted = query.get("slave_id");
    let slaves: Vec<Value> = agents
        .agents
        .iter()
        .filter(|a| wanted.is_none_or(|w| a.agent_info.id.as_ref().is_some_and(|i| &i.value == w)))
        .map(slave_json)
        .collect();
    let recovered: Vec<Value> = agents
        .recovered_agents
        .iter()
        .map(|info| json!({"id": info.id.as_ref().map_or("", |i| i.value.as_str()), "hostname": info.hostname}))
        .collect();
    let body = json!({"slaves": slaves, "recovered_slaves": recovered});
    Ok(json_response(serde_json::to_vec(&body).map_err(internal)?))
}

/// The parameters of `/master/tasks`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskQuery {
    pub limit: usize,
    pub offset: usize,
    pub descending: bool,
    pub framework_id: Option<String>,
    pub task_id: Option<String>,
}

impl TaskQuery {
    /// Reads the query string: `limit` (100), `offset` (0), `order` (`desc` unless `asc`),
    /// `framework_id`, `task_id`; a number that does not parse is a 400. A negative number
    /// means no bound, as in Mesos (which reads it into an unsigned size): avmesos-cli asks
    /// for `limit=-1` to get every task.
    pub fn parse(query: &HashMap<String, String>) -> Result<TaskQuery, Refusal> {
        let number = |name: &str, default: usize| -> Result<usize, Refusal> {
            match query.get(name) {
                None => Ok(default),
                Some(v) => {
                    v.parse::<i64>().map(|n| usize::try_from(n).unwrap_or(usize::MAX)).map_err(
                        |e| refuse(StatusCode::BAD_REQUEST, format!("Failed to parse {name}: {e}")),
                    )
                }
            }
        };
        Ok(TaskQuery {
            limit: number("limit", 100)?,
            offset: number("offset", 0)?,
            descending: query.get("order").map(String::as_str) != Some("asc"),
            framework_id: query.get("framework_id").cloned(),
            task_id: query.get("task_id").cloned(),
        })
    }
}

/// The tasks `query` selects: unfinished and completed ones, ordered by the time of their
/// latest status (then id), then paged.
pub fn select_tasks<'a>(tasks: &'a response::GetTasks, query: &TaskQuery) -> Vec<&'a v1::Task> {
    let mut selected: Vec<&v1::Task> = tasks
        .tasks
        .iter()
        .chain(tasks.completed_tasks.iter())
        .filter(|t| {
            query
                .framework_id
                .as_ref()
                .is_none_or(|f| t.framework_id.as_ref().is_some_and(|x| &x.value == f))
        })
        .filter(|t| {
            query
                .task_id
                .as_ref()
                .is_none_or(|id| t.task_id.as_ref().is_some_and(|x| &x.value == id))
        })
        .collect();
    let key = |t: &v1::Task| {
        let time = t.statuses.last().and_then(|s| s.timestamp).unwrap_or(0.0);
        (time, t.task_id.as_ref().map(|i| i.value.clone()).unwrap_or_default())
    };
    selected.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
    if query.descending {
        selected.reverse();
    }
    selected.into_iter().skip(query.offset).take(query.limit).collect()
}

/// `GET /master/tasks`.
pub(crate) async fn tasks(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let query = TaskQuery::parse(&query)?;
    let (tasks, completed_tasks) = crate::dispatcher::read(&app.handle, |m, _| m.task_views())
        .await
        .ok_or_else(unavailable)?;
    let tasks = StateView { tasks, completed_tasks, ..Default::default() }.get_tasks();
    let selected = select_tasks(&tasks, &query);
    let list = TaskList(
        selected
            .into_iter()
            .map(|task| LegacyTask {
                task,
                role: task
                    .resources
                    .iter()
                    .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.as_deref()))
                    .unwrap_or("*"),
            })
            .collect(),
    );
    let mut out = Vec::new();
    {
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut map = serde::Serializer::serialize_map(&mut ser, Some(1)).map_err(internal)?;
        map.serialize_entry("tasks", &list).map_err(internal)?;
        SerializeMap::end(map).map_err(internal)?;
    }
    Ok(json_response(out))
}

/// `GET /master/roles`.
pub(crate) async fn roles(State(app): State<AppState>) -> Result<Response, Refusal> {
    let roles =
        crate::dispatcher::read(&app.handle, |m, _| m.get_roles()).await.ok_or_else(unavailable)?;
    let roles: Vec<Value> = roles
        .roles
        .iter()
        .map(|r| {
            let frameworks: Vec<&str> = r.frameworks.iter().map(|f| f.value.as_str()).collect();
            json!({
                "name": r.name,
                "weight": r.weight,
                "frameworks": frameworks,
                "resources": flat(&r.resources),
            })
        })
        .collect();
    Ok(json_response(serde_json::to_vec(&json!({"roles": roles})).map_err(internal)?))
}

/// `GET /master/flags`.
pub(crate) async fn flags(State(app): State<AppState>) -> Response {
    let flags: serde_json::Map<String, Value> =
        app.shell.flags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    axum::Json(json!({"flags": flags})).into_response()
}

/// `GET /master/redirect`: 307 to the leading master, which is always this one for now.
/// Like Mesos, the location is scheme-relative (`//host:port`).
pub(crate) async fn redirect(State(app): State<AppState>) -> Response {
    let info = &app.shell.master_info;
    let host = info.hostname.clone().unwrap_or_default();
    let location = format!("//{host}:{}", info.port);
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod render_tests;

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn scalar(name: &str, value: f64) -> v1::Resource {
        let mut r = v1::Resource {
            name: name.into(),
            scalar: Some(v1::value::Scalar { value }),
            ..Default::default()
        };
        r.set_type(v1::value::Type::Scalar);
        r
    }

    #[test]
    fn flat_resources_sum_scalars_and_print_ranges() {
        let mut ports = v1::Resource {
            name: "ports".into(),
            ranges: Some(v1::value::Ranges {
                range: vec![
                    v1::value::Range { begin: 31001, end: 32000 },
                    v1::value::Range { begin: 30000, end: 31000 },
                    v1::value::Range { begin: 5, end: 6 },
                ],
            }),
            ..Default::default()
        };
        ports.set_type(v1::value::Type::Ranges);
        let resources = [scalar("cpus", 0.1), scalar("cpus", 0.2), ports];
        let json = serde_json::to_value(FlatResources::of(&resources)).expect("serializes");
        assert_eq!(
            json,
            json!({"cpus": 0.3, "gpus": 0.0, "mem": 0.0, "disk": 0.0, "ports": "[5-6, 30000-32000]"})
        );
    }

    fn task(id: &str, time: f64) -> v1::Task {
        v1::Task {
            task_id: Some(v1::TaskId { value: id.into() }),
            framework_id: Some(v1::FrameworkId { value: "f".into() }),
            statuses: vec![v1::TaskStatus { timestamp: Some(time), ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn tasks_are_ordered_and_paged() {
        let tasks = response::GetTasks {
            tasks: vec![task("b", 2.0), task("a", 1.0)],
            completed_tasks: vec![task("c", 3.0)],
            ..Default::default()
        };
        let ids = |q: &TaskQuery| -> Vec<String> {
            select_tasks(&tasks, q)
                .iter()
                .map(|t| t.task_id.as_ref().map(|i| i.value.clone()).unwrap_or_default())
                .collect()
        };
        let mut q = TaskQuery::parse(&HashMap::new()).expect("defaults");
        assert_eq!(q.limit, 100);
        assert_eq!(ids(&q), ["c", "b", "a"]);
        q.descending = false;
        q.offset = 1;
        q.limit = 1;
        assert_eq!(ids(&q), ["b"]);
        let all: HashMap<String, String> = [("limit".to_string(), "-1".to_string())].into();
        assert_eq!(TaskQuery::parse(&all).map(|q| q.limit).ok(), Some(usize::MAX));
        let bad: HashMap<String, String> = [("limit".to_string(), "x".to_string())].into();
        assert_eq!(
            TaskQuery::parse(&bad).map(|_| ()).expect_err("a bad limit").status,
            StatusCode::BAD_REQUEST
        );
    }
}
