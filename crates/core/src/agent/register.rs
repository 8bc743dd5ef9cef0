//! The REGISTER call an agent opens its master stream with, and what it reports there: its id,
//! and once it has one, every task that is not over for the master yet (with the latest status
//! and the update in flight), its custom executors and its frameworks.
//!
//! That report is what lets a restarted master (or one the agent lost touch with) rebuild its
//! view of this agent without killing anything. Deciding what to adopt is the master's business
//! (`master/recovery.rs`); checkpointed resources are reported empty until agents checkpoint.

use agora_proto::internal;
use agora_proto::v1::{self, TaskState};

use super::Agent;
use super::updates::UpdateStream;

impl Agent {
    /// The REGISTER call for the next (re)connection to the master. Once the agent has an id
    /// it carries everything a restarted master needs to rebuild its view of this agent: the
    /// tasks that are not over for the master yet, the custom executors and the frameworks.
    pub fn register_call(&self) -> internal::AgentCall {
        let mut info = self.config.agent_info.clone();
        info.id = self.agent_id.as_ref().map(|id| v1::AgentId { value: id.clone() });
        let mut tasks = Vec::new();
        let mut executors = Vec::new();
        let mut frameworks = Vec::new();
        for (framework_id, framework) in &self.frameworks {
            // The master shuts down frameworks it removed while this agent was away.
            frameworks.push(framework.info.clone());
            if framework.terminating {
                continue;
            }
            for (executor_id, executor) in &framework.executors {
                let custom = (!executor.command).then_some(executor_id.as_str());
                if custom.is_some() {
                    let mut info = executor.info.clone();
                    info.framework_id = Some(v1::FrameworkId { value: framework_id.clone() });
                    executors.push(info);
                }
                for task in &executor.queued {
                    tasks.push(self.task_report(
                        framework_id,
                        custom,
                        task,
                        TaskState::TaskStaging,
                        None,
                    ));
                }
                for task in executor.launched.values() {
                    tasks.push(self.task_report(
                        framework_id,
                        custom,
                        &task.info,
                        task.state,
                        task.latest.as_ref(),
                    ));
                }
            }
        }
        // Tasks whose executor is gone but whose last updates still wait for their
        // acknowledgement: the master learns how they ended.
        for ((framework_id, task_id), stream) in &self.streams {
            let known = tasks.iter().any(|t| {
                t.framework_id.as_ref().is_some_and(|f| f.value == *framework_id)
                    && t.task_id.as_ref().is_some_and(|t| t.value == *task_id)
            });
            let Some(latest) = stream.latest().filter(|_| !known) else {
                continue;
            };
            let mut task = v1::Task {
                task_id: Some(v1::TaskId { value: task_id.clone() }),
                framework_id: Some(v1::FrameworkId { value: framework_id.clone() }),
                agent_id: info.id.clone(),
                statuses: vec![latest.clone()],
                ..Default::default()
            };
            task.set_state(latest.state());
            self.mark_in_flight(&mut task);
            tasks.push(task);
        }
        let mut call = internal::AgentCall::default();
        call.set_type(internal::agent_call::Type::Register);
        call.register = Some(internal::agent_call::Register {
            agent_info: info,
            protocol_version: crate::master::AGENT_PROTOCOL_VERSION,
            endpoint: Some(self.config.endpoint.clone()),
            tasks,
            frameworks,
            executors,
            checkpointed_resources: self.checkpointed.clone(),
            completed_tasks: self.history.completed_tasks().cloned().collect(),
        });
        call
    }

    /// A task as REGISTER (and the operator API) reports it.
    pub(super) fn task_report(
        &self,
        framework_id: &str,
        executor_id: Option<&str>,
        info: &v1::TaskInfo,
        state: TaskState,
        latest: Option<&v1::TaskStatus>,
    ) -> v1::Task {
        let mut task = v1::Task {
            name: Some(info.name.clone()),
            task_id: Some(info.task_id.clone()),
            framework_id: Some(v1::FrameworkId { value: framework_id.to_string() }),
            executor_id: executor_id.map(|e| v1::ExecutorId { value: e.to_string() }),
            agent_id: self.agent_id.as_ref().map(|a| v1::AgentId { value: a.clone() }),
            resources: info.resources.clone(),
            statuses: latest.into_iter().cloned().collect(),
            labels: info.labels.clone(),
            discovery: info.discovery.clone(),
            container: info.container.clone(),
            health_check: info.health_check.clone(),
            kill_policy: info.kill_policy,
            limits: info.limits.clone(),
            ..Default::default()
        };
        task.set_state(state);
        self.mark_in_flight(&mut task);
        task
    }

    /// Names the update of the task's stream that is in flight (the head, unacknowledged).
    fn mark_in_flight(&self, task: &mut v1::Task) {
        let (Some(framework_id), Some(task_id)) = (&task.framework_id, &task.task_id) else {
            return;
        };
        let key = (framework_id.value.clone(), task_id.value.clone());
        if let Some(head) = self.streams.get(&key).and_then(UpdateStream::head) {
            task.set_status_update_state(head.state());
            task.status_update_uuid = head.uuid.clone();
        }
    }
}
