//! Where work goes on the agent: RUN_TASK and RUN_TASK_GROUP from the master, the executor
//! that takes it (the command executor the agent synthesizes for a command task, the agent's
//! built-in default executor for a task group whose ExecutorInfo has type DEFAULT, or the
//! framework's own), the sandbox, environment and persistent volumes of a new executor
//! (reference §3.4, §7.3), and the hand-over of tasks and task groups to it, where a group
//! travels as one LAUNCH_GROUP event and never in pieces (reference §2.8, §5.5).
//!
//! Once delivered, the tasks of a group are tracked one by one like any other task: their
//! updates go through the status update manager, a KILL of one of them goes to the executor
//! (the default executor then kills the whole group), and the executor's end fails whatever
//! it left unfinished (`agent.rs`). Starting processes is the shell's business; running the
//! tasks of a group is the default executor's, in the `executor` crate.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use agora_proto::executor;
use agora_proto::v1::task_status::Reason;
use agora_proto::v1::{self, TaskState};

use super::{
    Agent, AgentConfig, CheckpointKey, CommandExecutor, ConnId, Executor, Framework, Launch,
    LaunchedTask, Output, VolumeLink, shutdown_grace,
};

impl Agent {
    /// RUN_TASK: a command task goes to a command executor of its own, any other task to the
    /// custom executor it names.
    pub(super) fn run_task(
        &mut self,
        framework_info: v1::FrameworkInfo,
        task: v1::TaskInfo,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let Some(framework_id) = framework_info.id.as_ref().map(|f| f.value.clone()) else {
            return;
        };
        let (executor_info, work) = match &task.executor {
            Some(executor) => (executor.clone(), Work::Task(task)),
            None => (self.command_executor_info(&framework_id, &task), Work::CommandTask(task)),
        };
        self.run_on_executor(framework_info, executor_info, work, now, out);
    }

    /// Hands `work` to its executor: at once if it is subscribed, after its SUBSCRIBE if it is
    /// starting, and after launching it if it does not run yet. An executor that is shutting
    /// down takes nothing: the tasks are lost.
    fn run_on_executor(
        &mut self,
        framework_info: v1::FrameworkInfo,
        executor_info: v1::ExecutorInfo,
        work: Work,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let Some(framework_id) = framework_info.id.as_ref().map(|f| f.value.clone()) else {
            return;
        };
        let executor_id = executor_info.executor_id.value.clone();
        let agent_id = self.agent_id.clone().unwrap_or_default();
        if framework_info.checkpoint() {
            self.checkpointing.insert(framework_id.clone());
        }
        self.mark(CheckpointKey::Framework(framework_id.clone()));
        self.mark(CheckpointKey::Executor(framework_id.clone(), executor_id.clone()));
        for task in work.tasks() {
            self.mark(CheckpointKey::Task(framework_id.clone(), task.task_id.value.clone()));
        }
        let framework = self.frameworks.entry(framework_id.clone()).or_insert_with(|| Framework {
            info: framework_info.clone(),
            executors: BTreeMap::new(),
            terminating: false,
        });
        framework.info = framework_info;
        if let Some(executor) = framework.executors.get_mut(&executor_id) {
            if executor.kill_at.is_some() {
                // The executor is shutting down; it cannot take new work.
                for task in work.tasks() {
                    let status = self.agent_status(
                        &framework_id,
                        &task.task_id.value,
                        Some(&executor_id),
                        TaskState::TaskLost,
                        Reason::ExecutorTerminated,
                        "Executor is shutting down",
                        now,
                    );
                    self.enqueue_update(&framework_id, status, now, out);
                }
                return;
            }
            let volumes: Vec<VolumeLink> = work
                .tasks()
                .iter()
                .flat_map(|t| volume_links(&self.config.work_dir, &t.resources))
                .collect();
            if !volumes.is_empty() {
                out.push(Output::AttachVolumes { sandbox: executor.sandbox.clone(), volumes });
            }
            executor.take(work, out);
            // The container grows by the new work's resources.
            self.resize_containers(out);
            return;
        }
        let command_executor = matches!(work, Work::CommandTask(_));
        // The built-in executors run their tasks with `MESOS_ALLOCATION_ROLE` (reference §3.4);
        // the command executor's resources are its task's, the default executor has its own.
        let role = match &work {
            Work::CommandTask(task) => Some(allocation_role(&framework.info, &task.resources)),
            Work::Group(_) if is_default(&executor_info) => {
                Some(allocation_role(&framework.info, &executor_info.resources))
            }
            Work::Task(_) | Work::Group(_) => None,
        };
        let container_id = self.uuids.next_string();
        let sandbox = format!(
            "{}/slaves/{agent_id}/frameworks/{framework_id}/executors/{executor_id}/runs/{container_id}",
            self.config.work_dir.trim_end_matches('/')
        );
        let command = if is_default(&executor_info) {
            builtin_command(&self.config.default_executor, None)
        } else {
            executor_info.command.clone().unwrap_or_default()
        };
        let user = command.user.clone().or_else(|| Some(framework.info.user.clone()));
        let mut env = executor_environment(
            &self.config,
            &agent_id,
            &framework.info,
            &executor_info,
            &sandbox,
        );
        if let Some(role) = role {
            env.push(("MESOS_ALLOCATION_ROLE".to_string(), role));
        }
        let mut volumes = volume_links(&self.config.work_dir, &executor_info.resources);
        for task in work.tasks() {
            volumes.extend(volume_links(&self.config.work_dir, &task.resources));
        }
        let Size { cpus, mem_mb, disk_mb } = container_size(
            if command_executor { &[] } else { &executor_info.resources },
            command_executor,
            work.tasks().iter(),
        );
        let container_info = match &work {
            Work::CommandTask(task) => task.container.as_ref(),
            _ => executor_info.container.as_ref(),
        };
        let rlimits = container_info.and_then(|c| c.rlimit_info.clone());
        let mut executor = Executor {
            info: executor_info,
            container_id: container_id.clone(),
            sandbox: sandbox.clone(),
            conn: None,
            queued: VecDeque::new(),
            groups: Vec::new(),
            launched: BTreeMap::new(),
            kill_at: None,
            killed: false,
            command: command_executor,
            kill_requested: BTreeSet::new(),
            register_by: Some(now + self.config.executor_registration_timeout),
            registration_timed_out: false,
            recovered: false,
            limitation: None,
            size: Size { cpus, mem_mb, disk_mb },
        };
        executor.take(work, out);
        framework.executors.insert(executor_id.clone(), executor);
        out.push(Output::LaunchExecutor(Box::new(Launch {
            framework_id,
            executor_id,
            container_id,
            sandbox,
            command,
            env,
            user,
            volumes,
            cpus,
            mem_mb,
            disk_mb,
            rlimits,
        })));
    }

    /// The ExecutorInfo Mesos synthesizes for a task that only has a CommandInfo: the executor
    /// id is the task id and the command runs our own command executor.
    #[expect(
        deprecated,
        reason = "Mesos still fills `source` with the task id for command executors"
    )]
    fn command_executor_info(&self, framework_id: &str, task: &v1::TaskInfo) -> v1::ExecutorInfo {
        let command = task.command.clone().unwrap_or_default();
        let shown = if command.shell() {
            let text: String = command.value().chars().take(12).collect();
            let more = if command.value().chars().count() > 12 { "..." } else { "" };
            format!("sh -c '{text}{more}'")
        } else {
            format!("[{}]", command.arguments.join(", "))
        };
        v1::ExecutorInfo {
            executor_id: v1::ExecutorId { value: task.task_id.value.clone() },
            framework_id: Some(v1::FrameworkId { value: framework_id.to_string() }),
            name: Some(format!(
                "Command Executor (Task: {}) (Command: {shown})",
                task.task_id.value
            )),
            source: Some(task.task_id.value.clone()),
            command: Some(builtin_command(&self.config.command_executor, Some(&command))),
            resources: task.resources.clone(),
            labels: task.labels.clone(),
            ..Default::default()
        }
    }

    /// RUN_TASK_GROUP: the group goes to the executor the master named, which is launched if
    /// it does not run yet. The master has validated the group (reference §5.5).
    pub(super) fn run_task_group(
        &mut self,
        framework_info: v1::FrameworkInfo,
        mut executor_info: v1::ExecutorInfo,
        group: v1::TaskGroupInfo,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if group.tasks.is_empty() {
            return;
        }
        if executor_info.framework_id.is_none() {
            executor_info.framework_id = framework_info.id.clone();
        }
        self.run_on_executor(framework_info, executor_info, Work::Group(group), now, out);
    }
}

impl Executor {
    /// Takes a task or a task group: delivered at once to a subscribed executor, otherwise
    /// queued until it subscribes.
    fn take(&mut self, work: Work, out: &mut Vec<Output>) {
        let group = match work {
            Work::CommandTask(task) | Work::Task(task) => {
                match self.conn {
                    Some(conn) => {
                        self.hand_over(&task);
                        out.push(Output::ToExecutor { conn, event: launch_event(task) });
                    }
                    None => self.queued.push_back(task),
                }
                return;
            }
            Work::Group(group) => group,
        };
        self.groups.push(group.tasks.iter().map(|t| t.task_id.value.clone()).collect());
        match self.conn {
            Some(conn) => {
                for task in &group.tasks {
                    self.hand_over(task);
                }
                out.push(Output::ToExecutor { conn, event: launch_group_event(group) });
            }
            None => self.queued.extend(group.tasks),
        }
    }

    /// Drops a task whose terminal update was acknowledged; says whether it held it.
    pub(super) fn forget(&mut self, task_id: &str) -> bool {
        let held = self.launched.remove(task_id).is_some();
        let killed = self.kill_requested.remove(task_id);
        let mut grouped = false;
        self.groups.retain_mut(|group| {
            grouped |= group.remove(task_id);
            !group.is_empty()
        });
        held || killed || grouped
    }

    /// Records a task as delivered to the executor; it stays staging until the executor
    /// reports on it.
    fn hand_over(&mut self, task: &v1::TaskInfo) {
        self.launched.insert(task.task_id.value.clone(), LaunchedTask::new(task.clone()));
    }

    /// Delivers the queued work to the executor that just subscribed on `conn`, in the order it
    /// arrived: each task group as one LAUNCH_GROUP, every other task as a LAUNCH.
    pub(super) fn deliver_queued(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let mut queued = std::mem::take(&mut self.queued);
        while let Some(task) = queued.pop_front() {
            let Some(group) = self.groups.iter().find(|g| g.contains(&task.task_id.value)) else {
                self.hand_over(&task);
                out.push(Output::ToExecutor { conn, event: launch_event(task) });
                continue;
            };
            let group = group.clone();
            let mut tasks = vec![task];
            let (members, rest): (Vec<_>, Vec<_>) =
                queued.into_iter().partition(|t| group.contains(&t.task_id.value));
            tasks.extend(members);
            queued = rest.into();
            for task in &tasks {
                self.hand_over(task);
            }
            out.push(Output::ToExecutor {
                conn,
                event: launch_group_event(v1::TaskGroupInfo { tasks }),
            });
        }
    }

    /// The ids of the task group `task_id` belongs to, or just `task_id` outside a group.
    pub(super) fn group_of(&self, task_id: &str) -> BTreeSet<String> {
        self.groups
            .iter()
            .find(|g| g.contains(task_id))
            .cloned()
            .unwrap_or_else(|| BTreeSet::from([task_id.to_string()]))
    }

    /// Accepts the tasks a (re)subscribing executor says it holds without an acknowledged
    /// update (reference §3.2): any of them still queued here reached it already, with the
    /// rest of its task group, so they count as delivered and are not sent again. Tasks the
    /// agent does not know are not adopted: their launch was never the agent's.
    pub(super) fn accept_unacknowledged(&mut self, tasks: &[v1::TaskInfo]) {
        for task in tasks {
            if !self.queued.iter().any(|t| t.task_id == task.task_id) {
                continue;
            }
            let group = self.group_of(&task.task_id.value);
            let (held, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued)
                .into_iter()
                .partition(|t| group.contains(&t.task_id.value));
            self.queued = rest.into();
            for task in &held {
                self.hand_over(task);
            }
        }
    }
}

/// Mesos's allowance for the command executor itself (`DEFAULT_EXECUTOR_CPUS`/`_MEM`).
const COMMAND_EXECUTOR_CPUS: f64 = 0.1;
const COMMAND_EXECUTOR_MEM_MB: f64 = 32.0;

fn launch_group_event(task_group: v1::TaskGroupInfo) -> executor::Event {
    let mut e = executor::Event::default();
    e.set_type(executor::event::Type::LaunchGroup);
    e.launch_group = Some(executor::event::LaunchGroup { task_group });
    e
}

/// What a RUN_TASK or RUN_TASK_GROUP gives an executor.
#[derive(Debug)]
enum Work {
    /// A task with a CommandInfo, for the command executor the agent synthesized for it.
    CommandTask(v1::TaskInfo),
    /// A task for its custom executor.
    Task(v1::TaskInfo),
    /// A task group, delivered as one LAUNCH_GROUP.
    Group(v1::TaskGroupInfo),
}

impl Work {
    fn tasks(&self) -> &[v1::TaskInfo] {
        match self {
            Self::CommandTask(task) | Self::Task(task) => std::slice::from_ref(task),
            Self::Group(group) => &group.tasks,
        }
    }
}

/// What isolation limits a container to (`None`: not asked for).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Size {
    pub(super) cpus: Option<f64>,
    /// MB.
    pub(super) mem_mb: Option<f64>,
    /// MB, persistent volumes excluded: they live outside the sandbox.
    pub(super) disk_mb: Option<f64>,
}

/// A container's size: its executor's resources plus those of its live tasks (reference
/// §7.5), and for the command executor, whose resources are its task's, Mesos's allowance on
/// top (0.1 cpus, 32 MB), so that the executor is not what runs out.
pub(super) fn container_size<'a>(
    executor_resources: &[v1::Resource],
    command_executor: bool,
    tasks: impl Iterator<Item = &'a v1::TaskInfo>,
) -> Size {
    let mut sized: Vec<v1::Resource> = executor_resources.to_vec();
    for task in tasks {
        sized.extend(task.resources.iter().cloned());
    }
    let (mut cpus, mut mem_mb) = match crate::convert::resources_from_proto(&sized) {
        Ok(r) => (
            Some(r.cpus()).filter(|c| c.is_positive()).map(|c| c.as_f64()),
            Some(r.mem()).filter(|m| m.is_positive()).map(|m| m.as_f64()),
        ),
        Err(_) => (None, None),
    };
    if command_executor {
        cpus = cpus.map(|c| c + COMMAND_EXECUTOR_CPUS);
        mem_mb = mem_mb.map(|m| m + COMMAND_EXECUTOR_MEM_MB);
    }
    sized.retain(|r| r.disk.as_ref().is_none_or(|d| d.persistence.is_none()));
    let disk_mb = crate::convert::resources_from_proto(&sized)
        .ok()
        .map(|r| r.disk())
        .filter(|d| d.is_positive())
        .map(|d| d.as_f64());
    Size { cpus, mem_mb, disk_mb }
}

impl Agent {
    /// Orders a new size for every container whose live work changed (tasks joined a running
    /// executor, or ended), as Mesos updates a container's resources; a command executor's
    /// container never changes. Containers being killed or over a limit are left alone.
    pub(super) fn resize_containers(&mut self, out: &mut Vec<Output>) {
        for (framework_id, framework) in &mut self.frameworks {
            for (executor_id, executor) in &mut framework.executors {
                if executor.command || executor.killed || executor.limitation.is_some() {
                    continue;
                }
                let live = executor.queued.iter().chain(
                    executor
                        .launched
                        .values()
                        .filter(|t| !crate::status::is_terminal(t.state))
                        .map(|t| &t.info),
                );
                let size = container_size(&executor.info.resources, false, live);
                if size != executor.size {
                    executor.size = size;
                    out.push(Output::ResizeContainer {
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        cpus: size.cpus,
                        mem_mb: size.mem_mb,
                        disk_mb: size.disk_mb,
                    });
                }
            }
        }
    }
}

/// Whether an ExecutorInfo asks for the agent's built-in default executor.
fn is_default(executor: &v1::ExecutorInfo) -> bool {
    executor.r#type() == v1::executor_info::Type::Default
}

/// The command that starts one of our built-in executors; a command task's environment and
/// user carry over to its executor.
fn builtin_command(launcher: &CommandExecutor, task: Option<&v1::CommandInfo>) -> v1::CommandInfo {
    v1::CommandInfo {
        value: Some(launcher.program.clone()),
        arguments: launcher.arguments.clone(),
        shell: Some(false),
        environment: task.and_then(|c| c.environment.clone()),
        user: task.and_then(|c| c.user.clone()),
        // The agent fetches the executor's URIs before starting it, so the task's URIs must
        // travel on the synthesized executor's command (as in Mesos).
        uris: task.map(|c| c.uris.clone()).unwrap_or_default(),
    }
}

fn launch_event(task: v1::TaskInfo) -> executor::Event {
    let mut e = executor::Event::default();
    e.set_type(executor::event::Type::Launch);
    e.launch = Some(executor::event::Launch { task });
    e
}

/// The role the tasks of a built-in executor run under, for `MESOS_ALLOCATION_ROLE`: the
/// allocation role of `resources`, else the framework's single role.
fn allocation_role(framework: &v1::FrameworkInfo, resources: &[v1::Resource]) -> String {
    resources
        .iter()
        .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.clone()))
        .or_else(|| framework.roles.first().cloned())
        .unwrap_or_else(|| framework.role().to_string())
}

/// The persistent volumes among `resources`, as links into a sandbox. Volumes are created by
/// the master's CREATE and survive their tasks, so they live outside every sandbox.
fn volume_links(work_dir: &str, resources: &[v1::Resource]) -> Vec<VolumeLink> {
    let Ok(resources) = crate::convert::resources_from_proto(resources) else {
        return Vec::new();
    };
    resources
        .iter()
        .filter_map(|r| {
            let id = r.persistence_id()?;
            let volume = r.disk.as_ref()?.volume.as_ref()?;
            Some(VolumeLink {
                host_path: volume_path(work_dir, r.role(), id),
                container_path: volume.container_path.clone(),
            })
        })
        .collect()
}

/// Where a persistent volume lives: `<work_dir>/volumes/roles/<role>/<id>`, with the `/` of
/// hierarchical roles turned into spaces so that role `eng/db` cannot land inside volume `db`
/// of role `eng`.
pub(super) fn volume_path(work_dir: &str, role: &str, id: &str) -> String {
    format!("{}/volumes/roles/{}/{id}", work_dir.trim_end_matches('/'), role.replace('/', " "))
}

/// The host paths of the persistent volumes among `resources`, or `None` when they cannot be
/// read (then nothing may be concluded about which volumes are gone).
pub(super) fn volume_paths(work_dir: &str, resources: &[v1::Resource]) -> Option<BTreeSet<String>> {
    let resources = crate::convert::resources_from_proto(resources).ok()?;
    Some(
        resources
            .iter()
            .filter_map(|r| Some(volume_path(work_dir, r.role(), r.persistence_id()?)))
            .collect(),
    )
}

/// The environment of reference §3.4.
fn executor_environment(
    config: &AgentConfig,
    agent_id: &str,
    framework: &v1::FrameworkInfo,
    executor: &v1::ExecutorInfo,
    sandbox: &str,
) -> Vec<(String, String)> {
    let grace = shutdown_grace(executor, config.executor_shutdown_grace_period);
    let framework_id = framework.id.as_ref().map(|f| f.value.clone()).unwrap_or_default();
    let checkpoint = framework.checkpoint();
    let mut env = vec![
        ("MESOS_FRAMEWORK_ID".to_string(), framework_id),
        ("MESOS_EXECUTOR_ID".to_string(), executor.executor_id.value.clone()),
        ("MESOS_DIRECTORY".to_string(), sandbox.to_string()),
        ("MESOS_SANDBOX".to_string(), sandbox.to_string()),
        ("MESOS_AGENT_ENDPOINT".to_string(), config.endpoint.clone()),
        ("MESOS_SLAVE_ID".to_string(), agent_id.to_string()),
        ("MESOS_SLAVE_PID".to_string(), format!("slave(1)@{}", config.endpoint)),
        ("MESOS_CHECKPOINT".to_string(), if checkpoint { "1" } else { "0" }.to_string()),
        ("MESOS_HTTP_COMMAND_EXECUTOR".to_string(), "1".to_string()),
        ("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".to_string(), crate::duration::format(grace)),
        ("LIBPROCESS_PORT".to_string(), "0".to_string()),
    ];
    if checkpoint {
        let recovery = crate::duration::format(config.recovery_timeout);
        // Mesos hands executors the re-registration timeout as their backoff ceiling, so
        // that each retries at least once while a restarted agent waits for it.
        let backoff = crate::duration::format(config.executor_reregistration_timeout);
        env.push(("MESOS_RECOVERY_TIMEOUT".to_string(), recovery));
        env.push(("MESOS_SUBSCRIPTION_BACKOFF_MAX".to_string(), backoff));
    }
    if let Some(variables) = executor.command.as_ref().and_then(|c| c.environment.as_ref()) {
        for variable in &variables.variables {
            if let Some(value) = &variable.value {
                env.retain(|(name, _)| *name != variable.name);
                env.push((variable.name.clone(), value.clone()));
            }
        }
    }
    env
}
