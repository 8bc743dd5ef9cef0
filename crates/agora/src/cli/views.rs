//! The tables and lines the read verbs print, each a pure function of a master `Response` (or
//! `Event`) and the current time: `agent list`, `framework list`, `task list`, `task show`,
//! `role list`, `quota get` and the one-line-per-event view of `agora events`.
//!
//! Rows are sorted by id (then by framework), so the same state always prints the same way;
//! asking the master and choosing `--json` live in the command modules.

use agora_proto::master::{Event, Response, event, response};
use agora_proto::v1;

use super::render::{age, fields, number, resources, scalars, seconds, state, table};

/// `host:port` an agent serves on: from its pid (`slave(1)@ip:port`) if it has one, otherwise
/// its hostname and port.
pub(crate) fn agent_address(agent: &response::get_agents::Agent) -> String {
    agent
        .pid
        .as_deref()
        .and_then(|pid| pid.split_once('@'))
        .map(|(_, address)| address.to_string())
        .unwrap_or_else(|| {
            format!("{}:{}", agent.agent_info.hostname, agent.agent_info.port.unwrap_or(5051))
        })
}

fn agent_id(agent: &response::get_agents::Agent) -> String {
    agent.agent_info.id.as_ref().map(|id| id.value.clone()).unwrap_or_default()
}

fn agent_state(agent: &response::get_agents::Agent) -> &'static str {
    if agent.drain_info.is_some() {
        "draining"
    } else if agent.deactivated == Some(true) {
        "deactivated"
    } else if agent.active {
        "active"
    } else {
        "inactive"
    }
}

/// `agora agent list`.
pub(crate) fn agents(response: &Response, now: f64) -> String {
    let mut list: Vec<&response::get_agents::Agent> =
        response.get_agents.iter().flat_map(|a| &a.agents).collect();
    list.sort_by_key(|a| agent_id(a));
    let rows = list
        .into_iter()
        .map(|a| {
            let since = a.reregistered_time.as_ref().or(a.registered_time.as_ref());
            vec![
                agent_id(a),
                a.agent_info.hostname.clone(),
                agent_address(a),
                agent_state(a).to_string(),
                resources(&a.total_resources),
                resources(&a.allocated_resources),
                age(seconds(since), now),
            ]
        })
        .collect();
    table(&["ID", "HOSTNAME", "ADDRESS", "STATE", "RESOURCES", "ALLOCATED", "AGE"], rows)
}

fn framework_id(info: &v1::FrameworkInfo) -> String {
    info.id.as_ref().map(|id| id.value.clone()).unwrap_or_default()
}

/// The roles a framework subscribed with: `roles` (MULTI_ROLE) or the old single `role`.
fn framework_roles(info: &v1::FrameworkInfo) -> String {
    if !info.roles.is_empty() {
        return info.roles.join(",");
    }
    #[expect(deprecated, reason = "frameworks without MULTI_ROLE still name their role here")]
    let role = info.role.clone();
    role.unwrap_or_else(|| "*".to_string())
}

/// `agora framework list`; `all` adds the completed frameworks.
pub(crate) fn frameworks(response: &Response, all: bool, now: f64) -> String {
    let Some(got) = &response.get_frameworks else { return frameworks_table(Vec::new()) };
    let mut list: Vec<(&response::get_frameworks::Framework, &str)> = got
        .frameworks
        .iter()
        .map(|f| {
            let status = match (f.active, f.connected) {
                (_, false) => "disconnected",
                (true, true) => "active",
                (false, true) => "inactive",
            };
            (f, status)
        })
        .collect();
    if all {
        list.extend(got.completed_frameworks.iter().map(|f| (f, "completed")));
    }
    list.sort_by_key(|(f, _)| framework_id(&f.framework_info));
    let rows = list
        .into_iter()
        .map(|(f, status)| {
            let since = f.reregistered_time.as_ref().or(f.registered_time.as_ref());
            vec![
                framework_id(&f.framework_info),
                f.framework_info.name.clone(),
                framework_roles(&f.framework_info),
                status.to_string(),
                resources(&f.allocated_resources),
                age(seconds(since), now),
            ]
        })
        .collect();
    frameworks_table(rows)
}

fn frameworks_table(rows: Vec<Vec<String>>) -> String {
    table(&["ID", "NAME", "ROLES", "STATE", "ALLOCATED", "AGE"], rows)
}

pub(crate) fn task_id(task: &v1::Task) -> &str {
    task.task_id.as_ref().map_or("", |id| id.value.as_str())
}

pub(crate) fn task_framework(task: &v1::Task) -> &str {
    task.framework_id.as_ref().map_or("", |id| id.value.as_str())
}

pub(crate) fn task_agent(task: &v1::Task) -> &str {
    task.agent_id.as_ref().map_or("", |id| id.value.as_str())
}

/// When the task was first heard of: its oldest status update.
fn task_since(task: &v1::Task) -> Option<f64> {
    task.statuses.iter().filter_map(|s| s.timestamp).reduce(f64::min)
}

/// The tasks of a GET_TASKS answer that `task list` shows: active and unreachable ones, and
/// with `all` the completed ones too, sorted by id and framework.
pub(crate) fn listed_tasks(response: &Response, all: bool) -> Vec<&v1::Task> {
    let Some(got) = &response.get_tasks else { return Vec::new() };
    let mut list: Vec<&v1::Task> =
        got.pending_tasks.iter().chain(&got.tasks).chain(&got.unreachable_tasks).collect();
    if all {
        list.extend(&got.completed_tasks);
    }
    list.sort_by(|a, b| (task_id(a), task_framework(a)).cmp(&(task_id(b), task_framework(b))));
    list
}

/// `agora task list`.
pub(crate) fn tasks(response: &Response, all: bool, now: f64) -> String {
    let rows = listed_tasks(response, all)
        .into_iter()
        .map(|t| {
            vec![
                task_id(t).to_string(),
                t.name.clone().unwrap_or_default(),
                task_framework(t).to_string(),
                task_agent(t).to_string(),
                state(t.state()),
                resources(&t.resources),
                age(task_since(t), now),
            ]
        })
        .collect();
    table(&["ID", "NAME", "FRAMEWORK", "AGENT", "STATE", "RESOURCES", "AGE"], rows)
}

/// `agora task show`: one task's fields, with its agent's address and its framework's name
/// when the state names them, and every status update it went through.
pub(crate) fn task(
    task: &v1::Task,
    framework: Option<&v1::FrameworkInfo>,
    agent: Option<&response::get_agents::Agent>,
    now: f64,
) -> String {
    let mut pairs = vec![
        ("id", task_id(task).to_string()),
        ("name", task.name.clone().unwrap_or_default()),
        ("state", state(task.state())),
        (
            "framework",
            match framework {
                Some(info) => format!("{} ({})", task_framework(task), info.name),
                None => task_framework(task).to_string(),
            },
        ),
        (
            "agent",
            match agent {
                Some(agent) => format!("{} ({})", task_agent(task), agent_address(agent)),
                None => task_agent(task).to_string(),
            },
        ),
        (
            "executor",
            task.executor_id.as_ref().map_or_else(|| "(command)".to_string(), |e| e.value.clone()),
        ),
        ("resources", resources(&task.resources)),
        ("user", task.user.clone().unwrap_or_else(|| "-".to_string())),
        ("age", age(task_since(task), now)),
    ];
    if let Some(status) = task.statuses.last() {
        if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
            pairs.push(("message", message.to_string()));
        }
        if let Some(healthy) = status.healthy {
            pairs.push(("healthy", healthy.to_string()));
        }
    }
    let mut out = fields(&pairs);
    if !task.statuses.is_empty() {
        out.push_str("\nstatus updates:\n");
        let mut statuses: Vec<&v1::TaskStatus> = task.statuses.iter().collect();
        statuses.sort_by(|a, b| a.timestamp.unwrap_or(0.0).total_cmp(&b.timestamp.unwrap_or(0.0)));
        let rows = statuses
            .into_iter()
            .map(|s| {
                vec![
                    state(s.state()),
                    age(s.timestamp, now),
                    s.reason.map_or_else(String::new, |_| s.reason().as_str_name().to_string()),
                    s.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&table(&["STATE", "AGO", "REASON", "MESSAGE"], rows));
    }
    out
}

/// `agora role list`.
pub(crate) fn roles(response: &Response) -> String {
    let mut list: Vec<&v1::Role> = response.get_roles.iter().flat_map(|r| &r.roles).collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = list
        .into_iter()
        .map(|r| {
            vec![
                r.name.clone(),
                number(r.weight, 3),
                r.frameworks.len().to_string(),
                resources(&r.resources),
            ]
        })
        .collect();
    table(&["ROLE", "WEIGHT", "FRAMEWORKS", "ALLOCATED"], rows)
}

/// `agora quota get`, for every role with a quota or just `role`.
pub(crate) fn quota(response: &Response, role: Option<&str>) -> String {
    let mut configs: Vec<&agora_proto::v1::quota::QuotaConfig> = response
        .get_quota
        .iter()
        .flat_map(|q| &q.status.configs)
        .filter(|c| role.is_none_or(|r| c.role == r))
        .collect();
    configs.sort_by(|a, b| a.role.cmp(&b.role));
    let rows = configs
        .into_iter()
        .map(|c| vec![c.role.clone(), scalars(&c.guarantees), scalars(&c.limits)])
        .collect();
    table(&["ROLE", "GUARANTEES", "LIMITS"], rows)
}

/// One line of `agora events` for one operator event.
pub(crate) fn event_line(event: &Event) -> String {
    let kind = event.r#type();
    let name = kind.as_str_name();
    match kind {
        event::Type::Subscribed => {
            let state = event.subscribed.as_ref().and_then(|s| s.get_state.as_ref());
            let count =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            let agents = state.and_then(|s| s.get_agents.as_ref()).map_or(0, |a| a.agents.len());
            let frameworks =
                state.and_then(|s| s.get_frameworks.as_ref()).map_or(0, |f| f.frameworks.len());
            let tasks = state.and_then(|s| s.get_tasks.as_ref()).map_or(0, |t| t.tasks.len());
            let heartbeat = event
                .subscribed
                .as_ref()
                .and_then(|s| s.heartbeat_interval_seconds)
                .map(|h| format!("; heartbeat every {}s", number(h, 3)))
                .unwrap_or_default();
            format!(
                "{name} {}, {}, {} active{heartbeat}",
                count(agents, "agent"),
                count(frameworks, "framework"),
                count(tasks, "task")
            )
        }
        event::Type::TaskAdded => match &event.task_added {
            Some(added) => {
                let t = &added.task;
                format!(
                    "{name} task {} ({}) of framework {} on agent {}: {}",
                    task_id(t),
                    t.name.clone().unwrap_or_default(),
                    task_framework(t),
                    task_agent(t),
                    state(t.state())
                )
            }
            None => name.to_string(),
        },
        event::Type::TaskUpdated => match &event.task_updated {
            Some(updated) => {
                let message = updated
                    .status
                    .message
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                format!(
                    "{name} task {} of framework {}: {}{message}",
                    updated.status.task_id.value,
                    updated.framework_id.value,
                    state(updated.state())
                )
            }
            None => name.to_string(),
        },
        event::Type::AgentAdded => match &event.agent_added {
            Some(added) => format!(
                "{name} agent {} at {} ({})",
                agent_id(&added.agent),
                agent_address(&added.agent),
                resources(&added.agent.total_resources)
            ),
            None => name.to_string(),
        },
        event::Type::AgentRemoved => match &event.agent_removed {
            Some(removed) => format!("{name} agent {}", removed.agent_id.value),
            None => name.to_string(),
        },
        event::Type::FrameworkAdded | event::Type::FrameworkUpdated => {
            let framework = event
                .framework_added
                .as_ref()
                .map(|f| &f.framework)
                .or(event.framework_updated.as_ref().map(|f| &f.framework));
            match framework {
                Some(f) => format!(
                    "{name} framework {} ({}) roles {}{}",
                    framework_id(&f.framework_info),
                    f.framework_info.name,
                    framework_roles(&f.framework_info),
                    if f.connected { "" } else { ", disconnected" }
                ),
                None => name.to_string(),
            }
        }
        event::Type::FrameworkRemoved => match &event.framework_removed {
            Some(removed) => format!(
                "{name} framework {} ({})",
                framework_id(&removed.framework_info),
                removed.framework_info.name
            ),
            None => name.to_string(),
        },
        event::Type::Heartbeat | event::Type::Unknown => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time every canned answer is looked at: 1,000,000 s after the epoch.
    const NOW: f64 = 1_000_000.0;

    fn response(json: &str) -> Response {
        agora_proto::from_json(json.as_bytes()).expect("a canned Response")
    }

    pub(crate) const AGENTS: &str = r#"{"type":"GET_AGENTS","get_agents":{"agents":[
        {"agent_info":{"hostname":"node-b","id":{"value":"A-2"},"port":5051},
         "active":true,"deactivated":true,"version":"1.11.0",
         "registered_time":{"nanoseconds":999000000000000},
         "total_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]},
        {"agent_info":{"hostname":"node-a","id":{"value":"A-1"},"port":5051},
         "active":true,"version":"1.11.0","pid":"slave(1)@10.0.0.1:5051",
         "registered_time":{"nanoseconds":990000000000000},
         "reregistered_time":{"nanoseconds":999940000000000},
         "total_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":4}},
           {"name":"mem","type":"SCALAR","scalar":{"value":8192}},
           {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]}}],
         "allocated_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}},
           {"name":"mem","type":"SCALAR","scalar":{"value":512}}]}]}}"#;

    #[test]
    fn agent_list() {
        assert_eq!(
            agents(&response(AGENTS), NOW),
            "\
ID   HOSTNAME  ADDRESS        STATE        RESOURCES                              ALLOCATED             AGE
A-1  node-a    10.0.0.1:5051  active       cpus 4, mem 8GiB, ports [31000-32000]  cpus 0.5, mem 512MiB  1m
A-2  node-b    node-b:5051    deactivated  cpus 2                                 -                     16m
"
        );
        assert_eq!(
            agents(&response(r#"{"type":"GET_AGENTS"}"#), NOW),
            "ID  HOSTNAME  ADDRESS  STATE  RESOURCES  ALLOCATED  AGE\n"
        );
    }

    const FRAMEWORKS: &str = r#"{"type":"GET_FRAMEWORKS","get_frameworks":{
        "frameworks":[
          {"framework_info":{"user":"u","name":"marathon","id":{"value":"F-2"},"roles":["web","batch"]},
           "active":true,"connected":true,"recovered":false,
           "registered_time":{"nanoseconds":900000000000000},
           "allocated_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]},
          {"framework_info":{"user":"u","name":"old","id":{"value":"F-1"},"role":"eng"},
           "active":false,"connected":false,"recovered":false}],
        "completed_frameworks":[
          {"framework_info":{"user":"u","name":"gone","id":{"value":"F-0"}},
           "active":false,"connected":false,"recovered":false}]}}"#;

    #[test]
    fn framework_list_with_and_without_completed_ones() {
        let got = response(FRAMEWORKS);
        assert_eq!(
            frameworks(&got, false, NOW),
            "\
ID   NAME      ROLES      STATE         ALLOCATED  AGE
F-1  old       eng        disconnected  -          -
F-2  marathon  web,batch  active        cpus 1     1d
"
        );
        assert!(
            frameworks(&got, true, NOW)
                .contains("\nF-0  gone      *          completed     -          -\n")
        );
    }

    pub(crate) const TASKS: &str = r#"{"type":"GET_TASKS","get_tasks":{
        "tasks":[
          {"name":"web","task_id":{"value":"web-1"},"framework_id":{"value":"F-2"},
           "agent_id":{"value":"A-1"},"state":"TASK_RUNNING",
           "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}},
             {"name":"mem","type":"SCALAR","scalar":{"value":128}}],
           "statuses":[{"task_id":{"value":"web-1"},"state":"TASK_STARTING","timestamp":999000.0},
             {"task_id":{"value":"web-1"},"state":"TASK_RUNNING","timestamp":999001.5,
              "message":"up","healthy":true}]}],
        "unreachable_tasks":[
          {"name":"db","task_id":{"value":"db"},"framework_id":{"value":"F-2"},
           "agent_id":{"value":"A-2"},"state":"TASK_UNREACHABLE"}],
        "completed_tasks":[
          {"name":"once","task_id":{"value":"batch-7"},"framework_id":{"value":"F-1"},
           "agent_id":{"value":"A-1"},"state":"TASK_FINISHED",
           "statuses":[{"task_id":{"value":"batch-7"},"state":"TASK_FINISHED","timestamp":999990.0,
             "reason":"REASON_COMMAND_EXECUTOR_FAILED","message":"Command exited with status 0"}]}]}}"#;

    #[test]
    fn task_list_hides_completed_tasks_unless_asked() {
        let got = response(TASKS);
        assert_eq!(
            tasks(&got, false, NOW),
            "\
ID     NAME  FRAMEWORK  AGENT  STATE        RESOURCES             AGE
db     db    F-2        A-2    UNREACHABLE  -                     -
web-1  web   F-2        A-1    RUNNING      cpus 0.5, mem 128MiB  16m
"
        );
        assert_eq!(
            tasks(&got, true, NOW).lines().nth(1),
            Some("batch-7  once  F-1        A-1    FINISHED     -                     10s")
        );
    }

    #[test]
    fn task_show_lists_fields_and_status_updates() {
        let got = response(TASKS);
        let task = &got.get_tasks.as_ref().expect("tasks").tasks[0];
        let agents = response(AGENTS);
        let agent = agents.get_agents.as_ref().expect("agents").agents.get(1);
        let framework = v1::FrameworkInfo { name: "marathon".into(), ..Default::default() };
        assert_eq!(
            super::task(task, Some(&framework), agent, NOW),
            "\
id:        web-1
name:      web
state:     RUNNING
framework: F-2 (marathon)
agent:     A-1 (10.0.0.1:5051)
executor:  (command)
resources: cpus 0.5, mem 128MiB
user:      -
age:       16m
message:   up
healthy:   true

status updates:
STATE     AGO  REASON  MESSAGE
STARTING  16m
RUNNING   16m          up
"
        );
    }

    #[test]
    fn role_list_and_quota() {
        let roles_json = r#"{"type":"GET_ROLES","get_roles":{"roles":[
            {"name":"web","weight":2.5,"frameworks":[{"value":"F-2"}],
             "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]},
            {"name":"*","weight":1}]}}"#;
        assert_eq!(
            roles(&response(roles_json)),
            "\
ROLE  WEIGHT  FRAMEWORKS  ALLOCATED
*     1       0           -
web   2.5     1           cpus 1
"
        );
        let quota_json = r#"{"type":"GET_QUOTA","get_quota":{"status":{"configs":[
            {"role":"web","guarantees":{"mem":{"value":2048},"cpus":{"value":1}},
             "limits":{"cpus":{"value":4}}},
            {"role":"batch","limits":{"mem":{"value":512}}}]}}}"#;
        let got = response(quota_json);
        assert_eq!(
            quota(&got, None),
            "\
ROLE   GUARANTEES        LIMITS
batch  -                 mem 512MiB
web    cpus 1, mem 2GiB  cpus 4
"
        );
        assert_eq!(quota(&got, Some("batch")).lines().count(), 2);
    }

    #[test]
    fn one_line_per_event() {
        let lines: Vec<String> = [
            r#"{"type":"SUBSCRIBED","subscribed":{"heartbeat_interval_seconds":15,
                "get_state":{"get_agents":{"agents":[]},"get_tasks":{"tasks":[]}}}}"#,
            r#"{"type":"TASK_ADDED","task_added":{"task":{"name":"web","task_id":{"value":"t1"},
                "framework_id":{"value":"F-1"},"agent_id":{"value":"A-1"},"state":"TASK_STAGING"}}}"#,
            r#"{"type":"TASK_UPDATED","task_updated":{"framework_id":{"value":"F-1"},
                "status":{"task_id":{"value":"t1"},"state":"TASK_FAILED","message":"boom"},
                "state":"TASK_FAILED"}}"#,
            r#"{"type":"AGENT_ADDED","agent_added":{"agent":{"agent_info":{"hostname":"h",
                "id":{"value":"A-1"},"port":5051},"active":true,"version":"1",
                "total_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":2}}]}}}"#,
            r#"{"type":"AGENT_REMOVED","agent_removed":{"agent_id":{"value":"A-1"}}}"#,
            r#"{"type":"FRAMEWORK_ADDED","framework_added":{"framework":{"framework_info":
                {"user":"u","name":"m","id":{"value":"F-1"},"roles":["web"]},
                "active":true,"connected":true,"recovered":false}}}"#,
            r#"{"type":"FRAMEWORK_REMOVED","framework_removed":{"framework_info":
                {"user":"u","name":"m","id":{"value":"F-1"}}}}"#,
            r#"{"type":"HEARTBEAT"}"#,
        ]
        .iter()
        .map(|json| {
            let event: Event = agora_proto::from_json(json.as_bytes()).expect("a canned Event");
            event_line(&event)
        })
        .collect();
        assert_eq!(
            lines.join("\n"),
            "\
SUBSCRIBED 0 agents, 0 frameworks, 0 tasks active; heartbeat every 15s
TASK_ADDED task t1 (web) of framework F-1 on agent A-1: STAGING
TASK_UPDATED task t1 of framework F-1: FAILED (boom)
AGENT_ADDED agent A-1 at h:5051 (cpus 2)
AGENT_REMOVED agent A-1
FRAMEWORK_ADDED framework F-1 (m) roles web
FRAMEWORK_REMOVED framework F-1 (m)
HEARTBEAT"
        );
    }
}
