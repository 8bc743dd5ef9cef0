//! Read-only views of the agent for its operator API (`POST /api/v1` on an agent, reference
//! §4.3) and its legacy endpoints: the GET_STATE, GET_TASKS, GET_EXECUTORS, GET_FRAMEWORKS and
//! GET_AGENT answers as `mesos.v1.agent` protobufs, the containers it runs, and the numbers
//! behind the `slave/*` metrics.
//!
//! The views change nothing; they are built on demand by the dispatcher, the state's one
//! owner. What the agent no longer runs (completed tasks, executors and frameworks) is kept
//! here in bounded lists, as Mesos keeps them, so that an operator can still see how
//! things ended; the lists are soft state and start empty after a restart. Usage figures
//! (CPU time, memory, disk) are not the core's business: the shell measures them.

use std::collections::{BTreeMap, VecDeque};

use agora_proto::agent::response;
use agora_proto::v1::{self, TaskState};

use super::{Agent, Executor};
use crate::status::is_terminal;

/// How many completed tasks are kept (Mesos keeps 200 per executor; one agent-wide list is
/// simpler and bounded all the same).
const MAX_COMPLETED_TASKS: usize = 1000;
/// Mesos's `--max_completed_executors_per_framework` default, applied agent-wide.
const MAX_COMPLETED_EXECUTORS: usize = 150;
/// Mesos's MAX_COMPLETED_FRAMEWORKS.
const MAX_COMPLETED_FRAMEWORKS: usize = 50;

/// What the agent ran and no longer runs, and the counters its metrics report.
#[derive(Debug, Default)]
pub(super) struct History {
    tasks: VecDeque<v1::Task>,
    executors: VecDeque<v1::ExecutorInfo>,
    frameworks: VecDeque<v1::FrameworkInfo>,
    pub(super) executors_terminated: u64,
    pub(super) valid_status_updates: u64,
    pub(super) invalid_status_updates: u64,
    /// Terminal updates that entered a stream, by the metric name's state part.
    pub(super) terminal: BTreeMap<&'static str, u64>,
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, max: usize) {
    if list.len() == max {
        list.pop_front();
    }
    list.push_back(item);
}

impl History {
    pub(super) fn task_completed(&mut self, task: v1::Task) {
        push_bounded(&mut self.tasks, task, MAX_COMPLETED_TASKS);
    }

    /// The completed tasks remembered, oldest first.
    pub(super) fn completed_tasks(&self) -> impl Iterator<Item = &v1::Task> {
        self.tasks.iter()
    }

    pub(super) fn executor_completed(&mut self, info: v1::ExecutorInfo) {
        self.executors_terminated += 1;
        push_bounded(&mut self.executors, info, MAX_COMPLETED_EXECUTORS);
    }

    pub(super) fn framework_completed(&mut self, info: v1::FrameworkInfo) {
        push_bounded(&mut self.frameworks, info, MAX_COMPLETED_FRAMEWORKS);
    }

    /// Counts a terminal update as it enters its task's stream (duplicates are dropped before).
    pub(super) fn terminal_update(&mut self, state: TaskState) {
        let name = match state {
            TaskState::TaskFinished => "finished",
            TaskState::TaskFailed => "failed",
            TaskState::TaskKilled => "killed",
            TaskState::TaskLost | TaskState::TaskDropped | TaskState::TaskGone => "lost",
            _ => return,
        };
        *self.terminal.entry(name).or_default() += 1;
    }
}

/// One executor's container as the shell needs it to measure and report it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub framework_id: String,
    pub executor_id: String,
    pub executor_name: Option<String>,
    pub container_id: String,
    pub sandbox: String,
    /// The executor's own resources plus those of every task it holds that is not over: the
    /// container's limits.
    pub resources: Vec<v1::Resource>,
}

/// The sum of a scalar resource over a list (0 when absent).
pub fn scalar_sum(resources: &[v1::Resource], name: &str) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name)
        .filter_map(|r| r.scalar.as_ref())
        .map(|s| s.value)
        .sum()
}

impl Executor {
    /// The ExecutorInfo as the operator API shows it: with its framework id.
    fn shown_info(&self, framework_id: &str) -> v1::ExecutorInfo {
        let mut info = self.info.clone();
        info.framework_id = Some(v1::FrameworkId { value: framework_id.to_string() });
        info
    }

    /// The tasks this executor holds that still use resources.
    fn live_task_resources(&self) -> impl Iterator<Item = &v1::Resource> {
        self.queued.iter().flat_map(|t| t.resources.iter()).chain(
            self.launched
                .values()
                .filter(|t| !is_terminal(t.state))
                .flat_map(|t| t.info.resources.iter()),
        )
    }
}

impl Agent {
    /// GET_TASKS: queued (the executor has not subscribed yet), launched (handed to the
    /// executor, not over), terminated (over, updates not all acknowledged), completed (over
    /// and acknowledged). Agora never holds a task before its executor's container exists,
    /// so `pending_tasks` is always empty.
    pub fn get_tasks(&self) -> response::GetTasks {
        let mut answer = response::GetTasks::default();
        for (framework_id, framework) in &self.frameworks {
            for (executor_id, executor) in &framework.executors {
                let custom = (!executor.command).then_some(executor_id.as_str());
                for task in &executor.queued {
                    answer.queued_tasks.push(self.task_report(
                        framework_id,
                        custom,
                        task,
                        TaskState::TaskStaging,
                        None,
                    ));
                }
                for task in executor.launched.values() {
                    let report = self.task_report(
                        framework_id,
                        custom,
                        &task.info,
                        task.state,
                        task.latest.as_ref(),
                    );
                    if is_terminal(task.state) {
                        answer.terminated_tasks.push(report);
                    } else {
                        answer.launched_tasks.push(report);
                    }
                }
            }
        }
        // Tasks whose executor is gone while their last updates wait for acknowledgement.
        for ((framework_id, task_id), stream) in &self.streams {
            let held = [&answer.queued_tasks, &answer.launched_tasks, &answer.terminated_tasks]
                .iter()
                .any(|list| {
                    list.iter().any(|t| {
                        t.task_id.as_ref().is_some_and(|t| t.value == *task_id)
                            && t.framework_id.as_ref().is_some_and(|f| f.value == *framework_id)
                    })
                });
            let Some(latest) = stream.latest().filter(|_| !held) else {
                continue;
            };
            answer.terminated_tasks.push(self.bare_task(framework_id, latest));
        }
        answer.completed_tasks = self.history.tasks.iter().cloned().collect();
        answer
    }

    /// A task known only by a status of it.
    pub(super) fn bare_task(&self, framework_id: &str, status: &v1::TaskStatus) -> v1::Task {
        let mut task = v1::Task {
            name: Some(status.task_id.value.clone()),
            task_id: Some(status.task_id.clone()),
            framework_id: Some(v1::FrameworkId { value: framework_id.to_string() }),
            executor_id: status.executor_id.clone(),
            agent_id: self.agent_id.as_ref().map(|a| v1::AgentId { value: a.clone() }),
            statuses: vec![status.clone()],
            ..Default::default()
        };
        task.set_state(status.state());
        task
    }

    /// GET_EXECUTORS: every executor the agent runs (registering or terminating included),
    /// and the completed ones it remembers.
    pub fn get_executors(&self) -> response::GetExecutors {
        let executors = self
            .frameworks
            .iter()
            .flat_map(|(f, fw)| fw.executors.values().map(move |e| e.shown_info(f)))
            .map(|executor_info| response::get_executors::Executor { executor_info })
            .collect();
        let completed_executors = self
            .history
            .executors
            .iter()
            .cloned()
            .map(|executor_info| response::get_executors::Executor { executor_info })
            .collect();
        response::GetExecutors { executors, completed_executors }
    }

    /// GET_FRAMEWORKS: the frameworks the agent runs executors for, and the completed ones.
    pub fn get_frameworks(&self) -> response::GetFrameworks {
        let framework = |framework_info: v1::FrameworkInfo| response::get_frameworks::Framework {
            framework_info,
        };
        response::GetFrameworks {
            frameworks: self.frameworks.values().map(|f| framework(f.info.clone())).collect(),
            completed_frameworks: self.history.frameworks.iter().cloned().map(framework).collect(),
        }
    }

    /// GET_STATE: tasks, executors and frameworks in one answer.
    pub fn get_state(&self) -> response::GetState {
        response::GetState {
            get_tasks: Some(self.get_tasks()),
            get_executors: Some(self.get_executors()),
            get_frameworks: Some(self.get_frameworks()),
        }
    }

    /// GET_AGENT: the AgentInfo with the id the master gave (none before registering).
    pub fn get_agent(&self) -> response::GetAgent {
        response::GetAgent { agent_info: Some(self.agent_info()), ..Default::default() }
    }

    /// This agent's AgentInfo, with its id once it has one.
    pub fn agent_info(&self) -> v1::AgentInfo {
        let mut info = self.config.agent_info.clone();
        info.id = self.agent_id.as_ref().map(|id| v1::AgentId { value: id.clone() });
        info
    }

    /// Whether the agent is still recovering: some executor found alive after a restart has
    /// neither subscribed again nor run out of time to. Mesos refuses operator queries with
    /// 503 meanwhile, since what it would report is not settled yet.
    pub fn recovering(&self) -> bool {
        self.frameworks
            .values()
            .flat_map(|f| f.executors.values())
            .any(|e| e.recovered && e.conn.is_none() && !e.registration_timed_out && !e.killed)
    }

    /// Whether the master has accepted this agent on the current connection.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// One container per executor the agent runs, in (framework, executor) order.
    pub fn containers(&self) -> Vec<ContainerView> {
        let mut containers = Vec::new();
        for (framework_id, framework) in &self.frameworks {
            for (executor_id, executor) in &framework.executors {
                let mut resources = executor.info.resources.clone();
                resources.extend(executor.live_task_resources().cloned());
                containers.push(ContainerView {
                    framework_id: framework_id.clone(),
                    executor_id: executor_id.clone(),
                    executor_name: executor.info.name.clone(),
                    container_id: executor.container_id.clone(),
                    sandbox: executor.sandbox.clone(),
                    resources,
                });
            }
        }
        containers
    }

    /// The agent's own `slave/*` metrics that the core knows (uptime and the `system/*`
    /// figures are the shell's).
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let mut put = |name: &str, value: f64| {
            m.insert(format!("slave/{name}"), value);
        };
        put("registered", if self.registered { 1.0 } else { 0.0 });
        let total = &self.config.agent_info.resources;
        let used: Vec<v1::Resource> =
            self.containers().into_iter().flat_map(|c| c.resources).collect();
        for name in ["cpus", "mem", "disk", "gpus"] {
            let (t, u) = (scalar_sum(total, name), scalar_sum(&used, name));
            put(&format!("{name}_total"), t);
            put(&format!("{name}_used"), u);
            put(&format!("{name}_percent"), if t > 0.0 { u / t } else { 0.0 });
        }
        let (mut registering, mut running, mut terminating) = (0.0, 0.0, 0.0);
        let mut states: BTreeMap<&str, f64> = BTreeMap::new();
        for framework in self.frameworks.values() {
            for executor in framework.executors.values() {
                match (executor.kill_at, executor.conn) {
                    (Some(_), _) => terminating += 1.0,
                    (None, Some(_)) => running += 1.0,
                    (None, None) => registering += 1.0,
                }
                *states.entry("staging").or_default() += executor.queued.len() as f64;
                for task in executor.launched.values() {
                    let state = match task.state {
                        TaskState::TaskStaging => "staging",
                        TaskState::TaskStarting => "starting",
                        TaskState::TaskRunning => "running",
                        TaskState::TaskKilling => "killing",
                        _ => continue,
                    };
                    *states.entry(state).or_default() += 1.0;
                }
            }
        }
        put("executors_registering", registering);
        put("executors_running", running);
        put("executors_terminating", terminating);
        put("executors_terminated", self.history.executors_terminated as f64);
        for state in ["staging", "starting", "running", "killing"] {
            put(&format!("tasks_{state}"), states.get(state).copied().unwrap_or(0.0));
        }
        for state in ["finished", "failed", "killed", "lost"] {
            let count = self.history.terminal.get(state).copied().unwrap_or(0);
            put(&format!("tasks_{state}"), count as f64);
        }
        put("frameworks_active", self.frameworks.len() as f64);
        put("valid_status_updates", self.history.valid_status_updates as f64);
        put("invalid_status_updates", self.history.invalid_status_updates as f64);
        m
    }
}
