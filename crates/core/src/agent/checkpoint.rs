//! The agent's checkpoint (reference §7.4): which records must be made durable after each
//! input, and how a restarted agent rebuilds its frameworks, executors, tasks and status update
//! streams from them.
//!
//! The core never writes anything itself. Every change marks a record dirty; at the end of
//! `Agent::handle` the dirty records go out first, as one `Output::Checkpoint`, and the shell
//! makes them durable before it carries out any of the outputs that follow (an ACKNOWLEDGED to
//! an executor, an update to the master). So nothing the agent has acknowledged or forwarded
//! can be missing after a crash. The agent's own record (id, AgentInfo, checkpointed
//! resources) is always kept; frameworks, executors and tasks only when the framework asked for
//! `checkpoint`, as in Mesos. Process ids are the shell's business: it knows which recovered
//! executors are still alive and says so in [`Recovered`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use agora_proto::internal;
use agora_proto::v1::task_status::Reason;
use agora_proto::v1::{self, TaskState};

use super::updates::UpdateStream;
use super::{Agent, Executor, Framework, LaunchedTask, Output};

/// Names one checkpointed record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckpointKey {
    Agent,
    Framework(String),
    /// (framework id, executor id)
    Executor(String, String),
    /// (framework id, task id)
    Task(String, String),
}

/// The content of one record.
#[expect(
    clippy::large_enum_variant,
    reason = "built and written at once, never stored in bulk; boxing would add an allocation per record"
)]
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointRecord {
    Agent(internal::AgentCheckpoint),
    Framework(internal::FrameworkCheckpoint),
    Executor(internal::ExecutorCheckpoint),
    Task(internal::TaskCheckpoint),
}

/// Whether a checkpointed executor's process is still there after the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Running: it gets `executor_reregistration_timeout` to subscribe again.
    Alive,
    /// Gone while the agent was down: its unfinished tasks fail.
    Gone,
}

/// What the shell read back from the checkpoint, for [`Agent::recover`].
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub agent: Option<internal::AgentCheckpoint>,
    pub frameworks: Vec<internal::FrameworkCheckpoint>,
    pub executors: Vec<(internal::ExecutorCheckpoint, Liveness)>,
    pub tasks: Vec<internal::TaskCheckpoint>,
    /// The machine rebooted since the checkpoint was written: every executor is gone and its
    /// unfinished tasks are lost.
    pub rebooted: bool,
}

impl Agent {
    /// Marks a record to be written (or deleted) at the end of this input. Records of
    /// frameworks that do not checkpoint are never kept.
    pub(super) fn mark(&mut self, key: CheckpointKey) {
        let keep = match &key {
            CheckpointKey::Agent => true,
            CheckpointKey::Framework(f)
            | CheckpointKey::Executor(f, _)
            | CheckpointKey::Task(f, _) => self.checkpointing.contains(f),
        };
        if keep {
            self.dirty.insert(key);
        }
    }

    /// Marks an executor and every task it holds.
    pub(super) fn mark_executor(&mut self, framework_id: &str, executor_id: &str) {
        let Some(executor) = self.executor_mut(framework_id, executor_id) else {
            self.mark(CheckpointKey::Executor(framework_id.into(), executor_id.into()));
            return;
        };
        let tasks: Vec<String> = executor
            .queued
            .iter()
            .map(|t| t.task_id.value.clone())
            .chain(executor.launched.keys().cloned())
            .collect();
        self.mark(CheckpointKey::Executor(framework_id.into(), executor_id.into()));
        for task_id in tasks {
            self.mark(CheckpointKey::Task(framework_id.into(), task_id));
        }
    }

    /// The dirty records as they stand now (`None`: delete it), for the front of the outputs.
    pub(super) fn flush_checkpoint(&mut self, out: &mut Vec<Output>) {
        if self.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let records = dirty
            .into_iter()
            .map(|key| {
                let record = self.record(&key);
                (key, record)
            })
            .collect();
        out.insert(0, Output::Checkpoint(records));
    }

    fn record(&self, key: &CheckpointKey) -> Option<CheckpointRecord> {
        match key {
            CheckpointKey::Agent => Some(CheckpointRecord::Agent(internal::AgentCheckpoint {
                agent_id: self.agent_id.clone(),
                agent_info: self.config.agent_info.clone(),
                checkpointed_resources: self.checkpointed.clone(),
            })),
            CheckpointKey::Framework(f) => {
                let framework = self.frameworks.get(f)?;
                Some(CheckpointRecord::Framework(internal::FrameworkCheckpoint {
                    framework_info: framework.info.clone(),
                    terminating: Some(framework.terminating),
                }))
            }
            CheckpointKey::Executor(f, e) => {
                let executor = self.frameworks.get(f)?.executors.get(e)?;
                Some(CheckpointRecord::Executor(internal::ExecutorCheckpoint {
                    framework_id: f.clone(),
                    executor_info: executor.info.clone(),
                    container_id: executor.container_id.clone(),
                    sandbox: executor.sandbox.clone(),
                    command: Some(executor.command),
                    queued: executor.queued.iter().map(|t| t.task_id.value.clone()).collect(),
                    groups: executor
                        .groups
                        .iter()
                        .map(|g| internal::executor_checkpoint::TaskIds {
                            task_ids: g.iter().cloned().collect(),
                        })
                        .collect(),
                    kill_requested: executor.kill_requested.iter().cloned().collect(),
                    shutting_down: Some(executor.kill_at.is_some()),
                }))
            }
            CheckpointKey::Task(f, t) => self.task_record(f, t).map(CheckpointRecord::Task),
        }
    }

    fn task_record(&self, framework_id: &str, task_id: &str) -> Option<internal::TaskCheckpoint> {
        let held = self.frameworks.get(framework_id).and_then(|framework| {
            framework.executors.iter().find_map(|(executor_id, executor)| {
                if let Some(task) = executor.launched.get(task_id) {
                    return Some((executor_id, task.info.clone(), task.state, task.latest.clone()));
                }
                let queued = executor.queued.iter().find(|t| t.task_id.value == task_id)?;
                Some((executor_id, queued.clone(), TaskState::TaskStaging, None))
            })
        });
        let stream = self.streams.get(&(framework_id.to_string(), task_id.to_string()));
        if held.is_none() && stream.is_none() {
            return None;
        }
        let mut record = internal::TaskCheckpoint {
            framework_id: framework_id.to_string(),
            task_id: task_id.to_string(),
            ..Default::default()
        };
        if let Some((executor_id, info, state, latest)) = held {
            record.executor_id = Some(executor_id.clone());
            record.task_info = Some(info);
            record.set_state(state);
            record.latest = latest;
        }
        if let Some(stream) = stream {
            let (pending, seen) = stream.to_checkpoint();
            record.pending = pending;
            record.seen = seen;
        }
        Some(record)
    }

    /// Rebuilds the agent from its checkpoint, before it registers with a master. Executors
    /// that are still alive get `executor_reregistration_timeout` to subscribe again (or they
    /// are killed and their tasks fail with REASON_EXECUTOR_REREGISTRATION_TIMEOUT); tasks of
    /// executors that died meanwhile fail, and after a reboot they are lost. Executors the
    /// agent was shutting down are killed. Pending status updates go out once the agent is
    /// registered again.
    pub fn recover(&mut self, recovered: Recovered, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(agent) = recovered.agent {
            self.agent_id = agent.agent_id;
            self.checkpointed = agent.checkpointed_resources;
        }
        for record in recovered.frameworks {
            let Some(id) = record.framework_info.id.as_ref().map(|f| f.value.clone()) else {
                continue;
            };
            self.checkpointing.insert(id.clone());
            let terminating = record.terminating();
            self.frameworks.insert(
                id,
                Framework { info: record.framework_info, executors: BTreeMap::new(), terminating },
            );
        }
        let mut tasks: BTreeMap<(String, String), internal::TaskCheckpoint> = BTreeMap::new();
        for record in recovered.tasks {
            self.checkpointing.insert(record.framework_id.clone());
            let key = (record.framework_id.clone(), record.task_id.clone());
            // A stream without pending updates still remembers the uuids it took, so an
            // executor that sends an acknowledged update again is not forwarded twice.
            if !record.pending.is_empty() || !record.seen.is_empty() {
                let stream = UpdateStream::from_checkpoint(
                    record.pending.clone(),
                    record.seen.clone(),
                    self.config.status_update_retry_min,
                );
                self.streams.insert(key.clone(), stream);
            }
            tasks.insert(key, record);
        }
        let mut gone = Vec::new();
        let mut doomed = Vec::new();
        let known: BTreeSet<(String, String)> = recovered
            .executors
            .iter()
            .map(|(e, _)| (e.framework_id.clone(), e.executor_info.executor_id.value.clone()))
            .collect();
        for (record, liveness) in recovered.executors {
            let framework_id = record.framework_id.clone();
            let executor_id = record.executor_info.executor_id.value.clone();
            let shutting_down = record.shutting_down();
            let executor = self.recovered_executor(record, &tasks, now);
            let framework = self.frameworks.entry(framework_id.clone()).or_insert_with(|| {
                // Written in the same batch as its executors; missing only if the checkpoint
                // was damaged, and then the id is all there is to go on.
                Framework {
                    info: v1::FrameworkInfo {
                        id: Some(v1::FrameworkId { value: framework_id.clone() }),
                        checkpoint: Some(true),
                        ..Default::default()
                    },
                    executors: BTreeMap::new(),
                    terminating: false,
                }
            });
            self.checkpointing.insert(framework_id.clone());
            let terminating = framework.terminating;
            framework.executors.insert(executor_id.clone(), executor);
            if recovered.rebooted || liveness == Liveness::Gone {
                gone.push((framework_id, executor_id));
            } else if shutting_down || terminating {
                doomed.push((framework_id, executor_id));
            }
        }
        for (framework_id, executor_id) in gone {
            let (reason, message) = if recovered.rebooted {
                (Reason::AgentRestarted, "The agent's machine rebooted")
            } else {
                (Reason::ExecutorTerminated, "Executor terminated while the agent was down")
            };
            self.executor_gone(&framework_id, &executor_id, None, reason, message, now, &mut out);
        }
        for (framework_id, executor_id) in doomed {
            self.shutdown_executor(&framework_id, &executor_id, now, &mut out);
        }
        // Tasks whose executor record is missing (a damaged checkpoint, read without
        // `--strict`): nobody runs them any more, so the framework must hear so.
        for ((framework_id, task_id), record) in &tasks {
            let orphaned = record
                .executor_id
                .as_ref()
                .is_some_and(|e| !known.contains(&(framework_id.clone(), e.clone())));
            if orphaned && !crate::status::is_terminal(record.state()) {
                let status = self.agent_status(
                    framework_id,
                    task_id,
                    record.executor_id.as_deref(),
                    TaskState::TaskLost,
                    Reason::AgentRestarted,
                    "The agent restarted and could not recover the task's executor",
                    now,
                );
                self.enqueue_update(framework_id, status, now, &mut out);
            }
        }
        // Frameworks left with neither executors nor streams have nothing to recover.
        let streams = &self.streams;
        let empty: Vec<String> = self
            .frameworks
            .iter()
            .filter(|(id, f)| f.executors.is_empty() && !streams.keys().any(|(s, _)| s == *id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in empty {
            self.frameworks.remove(&id);
            self.mark(CheckpointKey::Framework(id));
        }
        self.flush_checkpoint(&mut out);
        out
    }

    fn recovered_executor(
        &self,
        record: internal::ExecutorCheckpoint,
        tasks: &BTreeMap<(String, String), internal::TaskCheckpoint>,
        now: Duration,
    ) -> Executor {
        let framework_id = &record.framework_id;
        let executor_id = &record.executor_info.executor_id.value;
        let queued_ids: BTreeSet<&String> = record.queued.iter().collect();
        let queued: VecDeque<v1::TaskInfo> = record
            .queued
            .iter()
            .filter_map(|id| tasks.get(&(framework_id.clone(), id.clone()))?.task_info.clone())
            .collect();
        let launched = tasks
            .values()
            .filter(|t| {
                t.framework_id == *framework_id
                    && t.executor_id.as_ref() == Some(executor_id)
                    && !queued_ids.contains(&t.task_id)
            })
            .filter_map(|t| {
                let info = t.task_info.clone()?;
                let mut task = LaunchedTask::new(info);
                task.state = t.state();
                task.latest = t.latest.clone();
                Some((t.task_id.clone(), task))
            })
            .collect();
        let command = record.command();
        Executor {
            container_id: record.container_id,
            sandbox: record.sandbox,
            conn: None,
            queued,
            groups: record.groups.into_iter().map(|g| g.task_ids.into_iter().collect()).collect(),
            launched,
            kill_at: None,
            killed: false,
            command,
            kill_requested: record.kill_requested.into_iter().collect(),
            register_by: Some(now + self.config.executor_reregistration_timeout),
            registration_timed_out: false,
            recovered: true,
            limitation: None,
            // Unknown until the first resize, which then goes out whatever the size.
            size: super::launch::Size { cpus: Some(f64::NAN), mem_mb: None, disk_mb: None },
            info: record.executor_info,
        }
    }
}
