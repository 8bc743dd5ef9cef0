//! Agent health on the master (reference §5.2): a PING to every connected agent each
//! `--agent_ping_timeout`, answered by a PONG call; an agent that leaves
//! `--max_agent_ping_timeouts` pings in a row unanswered is marked unreachable.
//!
//! Marking an agent unreachable is durable (its registry record gets `unreachable_time`), closes
//! its stream, rescinds its offers, takes it out of the allocator, ends its tasks for their
//! frameworks (TASK_UNREACHABLE for PARTITION_AWARE frameworks, TASK_LOST for others, source
//! MASTER, reason REASON_AGENT_REMOVED, no uuid) and tells every framework with FAILURE. The
//! agent may come back: it re-registers with its tasks, which are adopted again. This module
//! does not decide how a returning agent is reconciled (`recovery.rs` does).

use std::time::Duration;

use agora_proto::internal;
use agora_proto::v1::TaskState;
use agora_proto::v1::framework_info::capability::Type as Capability;
use agora_proto::v1::task_status::{Reason, Source};

use super::{Master, Output, RegistryOp, has_capability, time_info};
use crate::status::Synthesized;

impl Master {
    /// The ping timer fired: agents that left the previous ping unanswered count a miss, and
    /// are marked unreachable after `max_agent_ping_timeouts` of them; every other connected
    /// agent gets a new PING. An agent whose stream broke cannot answer: each tick counts as
    /// a miss until it registers again, so one that never returns becomes unreachable.
    pub(super) fn ping_agents(&mut self, now: Duration, out: &mut Vec<Output>) {
        let max = self.config.max_agent_ping_timeouts.max(1);
        let mut unreachable = Vec::new();
        // Pings change nothing an agent's view shows.
        for agent in self.agents.values_mut_unshown() {
            let Some(conn) = agent.conn else {
                agent.missed_pings += 1;
                if agent.missed_pings >= max {
                    unreachable.push(agent.id.clone());
                }
                continue;
            };
            if agent.awaiting_pong {
                agent.missed_pings += 1;
                if agent.missed_pings >= max {
                    unreachable.push(agent.id.clone());
                    continue;
                }
            }
            agent.awaiting_pong = true;
            let mut e = internal::AgentEvent::default();
            e.set_type(internal::agent_event::Type::Ping);
            out.push(Output::ToAgent { conn, event: e });
        }
        for id in unreachable {
            self.mark_unreachable(&id, now, out);
        }
    }

    /// A PONG: the agent is alive.
    pub(super) fn pong(&mut self, agent_id: &str) {
        if let Some(agent) = self.agents.get_mut_unshown(agent_id) {
            agent.awaiting_pong = false;
            agent.missed_pings = 0;
        }
    }

    /// See the module documentation.
    fn mark_unreachable(&mut self, agent_id: &str, now: Duration, out: &mut Vec<Output>) {
        self.rescind_agent_offers(agent_id, now, out);
        let Some(agent) = self.agents.remove(agent_id) else {
            return;
        };
        if let Some(conn) = agent.conn {
            self.agent_conns.remove(&conn);
            out.push(Output::CloseAgent { conn });
        }
        self.allocator.remove_agent(agent_id);
        let mut record = agent.record;
        record.unreachable_time = Some(time_info(now));
        out.push(Output::Persist(RegistryOp::UpdateAgent(record.clone())));
        self.unreachable_agents.insert(agent_id.to_string(), record);

        let mut ended = Vec::new();
        for framework in self.frameworks.values_mut() {
            let partition_aware = has_capability(&framework.info, Capability::PartitionAware);
            for (task_id, task) in framework.tasks.on_agent(agent_id) {
                if !task.released {
                    ended.push((framework.id.clone(), task_id.clone(), partition_aware));
                }
            }
            framework.executors.retain(|(executor_agent, _), _| executor_agent != agent_id);
        }
        for (framework_id, task_id, partition_aware) in ended {
            let state =
                if partition_aware { TaskState::TaskUnreachable } else { TaskState::TaskLost };
            let mut status = Synthesized {
                task_id: &task_id,
                state,
                source: Source::Master,
                reason: Some(Reason::AgentRemoved),
                message: "Agent is unreachable".into(),
                agent_id: Some(agent_id),
                executor_id: None,
            }
            .build(now);
            status.unreachable_time = Some(time_info(now));
            self.apply_status(&framework_id, &status, None, now, out);
            // An unreachable task is not over: it may come back with its agent.
            if state == TaskState::TaskUnreachable {
                self.complete_task(&framework_id, &task_id);
            }
            self.send_update(&framework_id, status, out);
        }
        self.announce_agent_failure(agent_id, out);
        self.counters.slave_removals += 1;
        self.emit_agent_removed(agent_id, out);
    }

    /// Tells each framework the state of its tasks on an agent that was unreachable and
    /// re-registered.
    pub(super) fn announce_returned_tasks(
        &self,
        agent_id: &str,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        for framework in self.frameworks.values() {
            for (task_id, task) in framework.tasks.on_agent(agent_id) {
                // A task with an update in flight is told about by the agent's own stream,
                // which still holds older states: an announcement of the latest one would run
                // ahead of them (found by the simulator, seed 3031).
                if task.released || task.status_update_uuid.is_some() {
                    continue;
                }
                let status = Synthesized {
                    task_id,
                    state: task.state,
                    source: Source::Master,
                    reason: Some(Reason::AgentReregistered),
                    message: "Agent re-registered".into(),
                    agent_id: Some(agent_id),
                    executor_id: None,
                }
                .build(now);
                self.send_update(&framework.id, status, out);
            }
        }
    }
}
