//! The master state machine: frameworks, agents, offers and tasks, driven by
//! `Master::handle(input, now) -> Vec<Output>`.
//!
//! Inputs are already-decoded scheduler calls, internal agent calls, stream closures and timer
//! ticks; outputs are events for scheduler and agent streams, stream closures and the answer to
//! each request. The HTTP shell in the `master` crate decodes bytes, owns the sockets and turns
//! ticks into inputs. Scheduler calls live in `master/scheduler.rs`, the agent protocol in
//! `master/agents.rs`; this file holds the state and what both sides share (offers, task
//! bookkeeping, allocation). Persistence is not here yet: nothing of the master survives its
//! process.

mod accept;
mod agents;
mod health;
mod operator;
mod recovery;
mod scheduler;
mod shown;
mod task_table;
mod tasks;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agora_proto::master::response;
use agora_proto::{internal, master as ops, scheduler as sched, v1};
use bytes::Bytes;

use crate::allocator::{Allocation, Allocator, AllocatorConfig};
pub use crate::call::CallError;
use crate::convert;
use crate::resources::Resources;
use crate::status::is_terminal;
pub use recovery::RegistryOp;
pub use scheduler::validate_call;
pub use view::{Counters, StateView, TASK_STATES};

/// The Mesos release whose APIs the master speaks, as the operator API reports it.
pub const MESOS_VERSION: &str = "1.11.0";

/// A scheduler or agent stream, numbered by the shell.
pub type ConnId = u64;
/// A request awaiting its `Output::Reply`, numbered by the shell.
pub type ReqId = u64;

/// The Mesos default for `Filters.refuse_seconds`.
const DEFAULT_REFUSE_SECONDS: f64 = 5.0;
/// Refusals are capped at 365 days, like Mesos.
const MAX_REFUSE_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
/// How many removed framework ids the master remembers (and refuses) at most.
const MAX_REMOVED_FRAMEWORKS: usize = 100_000;
/// The protocol version of `agora.internal.v1` this master speaks.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Filled by the shell: id, ip, port, hostname, version, address.
    pub master_info: v1::MasterInfo,
    pub allocation_interval: Duration,
    pub heartbeat_interval: Duration,
    /// Offers not answered within this are rescinded (`--offer_timeout`; none by default).
    pub offer_timeout: Option<Duration>,
    pub allocator: AllocatorConfig,
    pub max_completed_tasks_per_framework: usize,
    pub max_completed_frameworks: usize,
    /// How long agents of the registry have to re-register after a restart before they count
    /// as unreachable (`--agent_reregister_timeout`).
    pub agent_reregister_timeout: Duration,
    /// How often connected agents are pinged (`--agent_ping_timeout`, Mesos: 15secs).
    pub agent_ping_timeout: Duration,
    /// Unanswered pings in a row after which an agent is unreachable
    /// (`--max_agent_ping_timeouts`, Mesos: 5).
    pub max_agent_ping_timeouts: u32,
    /// Operator event streams open at once at most; one more closes the oldest
    /// (`--max_operator_event_stream_subscribers`, Mesos: 1000).
    pub max_operator_event_stream_subscribers: usize,
}

#[derive(Debug, Clone)]
pub enum Input {
    /// A SUBSCRIBE call whose stream the shell has opened as `conn`.
    Subscribe {
        req: ReqId,
        conn: ConnId,
        stream_id: String,
        call: sched::Call,
    },
    /// Any other scheduler call, with the `Mesos-Stream-Id` header if there was one.
    SchedulerCall {
        req: ReqId,
        stream_id: Option<String>,
        call: sched::Call,
    },
    SchedulerClosed {
        conn: ConnId,
    },
    /// A REGISTER call whose stream the shell has opened as `conn`.
    AgentRegister {
        req: ReqId,
        conn: ConnId,
        stream_id: String,
        call: internal::AgentCall,
    },
    AgentCall {
        req: ReqId,
        stream_id: Option<String>,
        call: internal::AgentCall,
    },
    AgentClosed {
        conn: ConnId,
    },
    /// Fires every `allocation_interval`.
    AllocationTick,
    /// Fires every `heartbeat_interval`.
    HeartbeatTick,
    /// Fires every `agent_ping_timeout`.
    PingTick,
    /// Sets the weights of the named roles (the operator's UPDATE_WEIGHTS).
    UpdateWeights {
        req: ReqId,
        weights: Vec<v1::WeightInfo>,
    },
    /// Sets the quota of roles, all or none; a config with no guarantees and no limits
    /// removes the role's quota (the operator's UPDATE_QUOTA).
    UpdateQuota {
        req: ReqId,
        quotas: Vec<internal::RegistryQuota>,
    },
    /// An operator's SUBSCRIBE whose stream the shell has opened as `conn`.
    OperatorSubscribe {
        req: ReqId,
        conn: ConnId,
    },
    OperatorClosed {
        conn: ConnId,
    },
    /// RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES or DESTROY_VOLUMES of the
    /// operator API, as the offer operation that does the same.
    OperatorOperation {
        req: ReqId,
        agent_id: String,
        operation: Box<v1::offer::Operation>,
    },
    /// TEARDOWN of the operator API.
    Teardown {
        req: ReqId,
        framework_id: String,
    },
    /// MARK_AGENT_GONE of the operator API.
    MarkAgentGone {
        req: ReqId,
        agent_id: String,
    },
    /// Agora's operator extension: kill one task as its framework's KILL would.
    OperatorKillTask {
        req: ReqId,
        task_id: String,
        framework_id: Option<String>,
    },
}

#[expect(
    clippy::large_enum_variant,
    reason = "built and consumed at once, never stored in bulk; boxing would add an allocation per message"
)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The answer to request `req`; every request gets exactly one.
    Reply {
        req: ReqId,
        result: Result<(), CallError>,
    },
    ToScheduler {
        conn: ConnId,
        event: sched::Event,
    },
    CloseScheduler {
        conn: ConnId,
    },
    ToAgent {
        conn: ConnId,
        event: internal::AgentEvent,
    },
    CloseAgent {
        conn: ConnId,
    },
    /// Ends the operator stream `conn` (one subscriber too many: the oldest goes).
    CloseOperator {
        conn: ConnId,
    },
    /// An event of the operator stream `conn` (SUBSCRIBE of `/api/v1`).
    ToOperator {
        conn: ConnId,
        event: Box<ops::Event>,
    },
    /// A registry change that must be durable before any other output of the same input is
    /// delivered (ARCHITECTURE: persist before you promise).
    Persist(RegistryOp),
}

#[derive(Debug)]
struct Framework {
    id: String,
    info: v1::FrameworkInfo,
    conn: Option<ConnId>,
    stream_id: Option<String>,
    /// When the stream closed, for the failover timeout.
    disconnected_at: Option<Duration>,
    offers: BTreeSet<String>,
    tasks: task_table::TaskTable,
    /// Completed tasks never change again: each is kept in its wire form, once, so that a
    /// snapshot of the state copies a pointer per task rather than the task.
    completed_tasks: VecDeque<Arc<v1::Task>>,
    /// Custom executors by (agent, executor id), with the resources they hold.
    executors: BTreeMap<(String, String), ExecutorRecord>,
    /// Known from the registry or an agent's report, but its scheduler has not subscribed to
    /// this master yet.
    recovered: bool,
    /// When its scheduler first subscribed to this master.
    registered_time: Option<Duration>,
    /// Its operator view (GET_FRAMEWORKS' entry), kept until it changes: `Shown` forgets it
    /// on every mutable access.
    view: shown::Cached<response::get_frameworks::Framework>,
}

impl shown::Viewed for Framework {
    fn changed(&mut self) {
        self.view.clear();
    }
}

/// A removed framework: its view at removal and its tasks, all of them over by then.
#[derive(Debug, Clone)]
struct CompletedFramework {
    view: ops::response::get_frameworks::Framework,
    /// At most `max_completed_tasks_per_framework`, oldest first.
    tasks: Vec<Arc<v1::Task>>,
}

#[derive(Debug, Clone)]
struct ExecutorRecord {
    role: String,
    resources: Resources,
    /// As launched, with `framework_id` filled in; later tasks must name the same.
    info: v1::ExecutorInfo,
}

#[derive(Debug, Clone)]
struct Task {
    info: v1::TaskInfo,
    agent_id: String,
    role: String,
    resources: Resources,
    state: v1::TaskState,
    /// The state and uuid of the update last forwarded and not yet acknowledged.
    status_update_state: Option<v1::TaskState>,
    status_update_uuid: Option<Bytes>,
    latest_status: Option<v1::TaskStatus>,
    /// Whether the resources went back to the allocator (on the first known terminal state).
    released: bool,
    /// Set by KILL; the kill is sent again when the agent re-registers, in case it never got it.
    kill: Option<Option<v1::KillPolicy>>,
    /// The task's wire form as the operator API shows it, built by the first snapshot that
    /// needs it and shared by the next ones; emptied (`Task::changed`) whenever a field it
    /// shows changes.
    view: OnceLock<Arc<v1::Task>>,
}

impl Task {
    /// Forgets the cached wire form after a change of what it shows.
    fn changed(&mut self) {
        self.view = OnceLock::new();
    }
}

#[derive(Debug)]
struct Agent {
    id: String,
    info: v1::AgentInfo,
    total: Resources,
    attributes: Vec<v1::Attribute>,
    /// `ip:port` of the agent's HTTP server.
    endpoint: String,
    conn: Option<ConnId>,
    stream_id: Option<String>,
    /// What the registry holds about the agent, to persist only real changes.
    record: internal::RegistryAgent,
    /// A PING went out and no PONG came back yet.
    awaiting_pong: bool,
    /// Pings in a row left unanswered.
    missed_pings: u32,
    registered_time: Option<Duration>,
    reregistered_time: Option<Duration>,
    /// Counts changes of the offers on the agent, which its view shows but it does not own;
    /// changed through `Shown::get_mut_unshown`, so that a taken offer re-converts only the
    /// agent's allocated and offered resources, not its whole view.
    offers_changed: u64,
    /// Its operator view (GET_AGENTS' entry), kept until it changes: `Shown` forgets it on
    /// every mutable access, and the stamp it was built with, the allocator's stamp of the
    /// agent and `offers_changed`, tells when its allocation or its offers changed.
    view: shown::Cached<response::get_agents::Agent, (u64, u64)>,
}

impl shown::Viewed for Agent {
    fn changed(&mut self) {
        self.view.clear();
    }
}

#[derive(Debug, Clone)]
struct Offer {
    /// When the offer was made, for `--offer_timeout`.
    created: Duration,
    framework_id: String,
    agent_id: String,
    role: String,
    resources: Resources,
}

/// The master's state. See the module documentation.
#[derive(Debug)]
pub struct Master {
    config: MasterConfig,
    allocator: Allocator,
    next_framework: u64,
    next_offer: u64,
    next_agent: u64,
    frameworks: shown::Shown<Framework>,
    /// Ids of removed frameworks, which can never subscribe again.
    removed_frameworks: HashSet<String>,
    /// The order ids were removed in, to bound `removed_frameworks`.
    removed_order: VecDeque<String>,
    /// Removed frameworks as the state endpoints show them, oldest first, bounded by
    /// `max_completed_frameworks`; soft state (empty after a restart, as in Mesos).
    completed_frameworks: VecDeque<CompletedFramework>,
    agents: shown::Shown<Agent>,
    offers: BTreeMap<String, Offer>,
    /// Ordered maps, so that outputs fanned out over every stream (heartbeats) come in the
    /// same order on every run: the simulator replays runs exactly.
    scheduler_conns: BTreeMap<ConnId, String>,
    agent_conns: BTreeMap<ConnId, String>,
    /// Agents of the registry that have not re-registered since this master started; tasks
    /// that could be on them get no reconciliation answer (reference §5.8).
    recovered_agents: BTreeMap<String, internal::RegistryAgent>,
    /// When the agents still in `recovered_agents` become unreachable.
    reregister_deadline: Option<Duration>,
    /// Agents that did not re-register in time; they may still come back.
    unreachable_agents: BTreeMap<String, internal::RegistryAgent>,
    /// Role weights set through the registry (they override `--weights`).
    weights: BTreeMap<String, f64>,
    quotas: BTreeMap<String, internal::RegistryQuota>,
    /// Open operator event streams.
    operator_conns: BTreeSet<ConnId>,
    /// Agents marked gone by the operator; they are refused if they come back.
    gone_agents: BTreeSet<String>,
    counters: Counters,
    /// When this master started (time since the Unix epoch).
    start_time: Duration,
}

impl Input {
    /// The request an input answers with `Output::Reply`, if it is one; the shell keeps the
    /// reply channel under it. Every variant is named, so a new call cannot go unanswered.
    pub fn req(&self) -> Option<ReqId> {
        match self {
            Input::Subscribe { req, .. }
            | Input::SchedulerCall { req, .. }
            | Input::AgentRegister { req, .. }
            | Input::AgentCall { req, .. }
            | Input::UpdateWeights { req, .. }
            | Input::UpdateQuota { req, .. }
            | Input::OperatorSubscribe { req, .. }
            | Input::OperatorOperation { req, .. }
            | Input::Teardown { req, .. }
            | Input::MarkAgentGone { req, .. }
            | Input::OperatorKillTask { req, .. } => Some(*req),
            Input::SchedulerClosed { .. }
            | Input::AgentClosed { .. }
            | Input::AllocationTick
            | Input::HeartbeatTick
            | Input::PingTick
            | Input::OperatorClosed { .. } => None,
        }
    }
}

impl Master {
    /// A master with an empty registry.
    pub fn new(config: MasterConfig) -> Self {
        Self::recover(config, internal::Registry::default(), Duration::ZERO)
    }

    /// A master with nothing in it yet; `recover` fills it from the registry.
    fn empty(config: MasterConfig, allocator: AllocatorConfig) -> Self {
        Self {
            allocator: Allocator::new(allocator),
            config,
            next_framework: 0,
            next_offer: 0,
            next_agent: 0,
            frameworks: shown::Shown::default(),
            removed_frameworks: HashSet::new(),
            removed_order: VecDeque::new(),
            completed_frameworks: VecDeque::new(),
            agents: shown::Shown::default(),
            offers: BTreeMap::new(),
            scheduler_conns: BTreeMap::new(),
            agent_conns: BTreeMap::new(),
            recovered_agents: BTreeMap::new(),
            reregister_deadline: None,
            unreachable_agents: BTreeMap::new(),
            weights: BTreeMap::new(),
            quotas: BTreeMap::new(),
            operator_conns: BTreeSet::new(),
            gone_agents: BTreeSet::new(),
            counters: Counters::default(),
            start_time: Duration::ZERO,
        }
    }

    pub fn master_info(&self) -> &v1::MasterInfo {
        &self.config.master_info
    }

    /// Advances the state machine by one input. `now` is the time since the Unix epoch; it
    /// stamps synthesized status updates and drives filters and failover timeouts.
    pub fn handle(&mut self, input: Input, now: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Subscribe { req, conn, stream_id, call } => {
                self.subscribe(req, conn, stream_id, call, now, &mut out)
            }
            Input::SchedulerCall { req, stream_id, call } => {
                let result = self.scheduler_call(stream_id, call, now, &mut out);
                out.push(Output::Reply { req, result });
            }
            Input::SchedulerClosed { conn } => self.scheduler_closed(conn, now, &mut out),
            Input::AgentRegister { req, conn, stream_id, call } => {
                self.agent_register(req, conn, stream_id, call, now, &mut out)
            }
            Input::AgentCall { req, stream_id, call } => {
                let result = self.agent_call(stream_id, call, now, &mut out);
                out.push(Output::Reply { req, result });
            }
            Input::AgentClosed { conn } => self.agent_closed(conn, now, &mut out),
            Input::AllocationTick => {
                self.counters.allocation_runs += 1;
                self.expire_reregistrations(now, &mut out);
                self.expire_failovers(now, &mut out);
                self.expire_offers(now, &mut out);
                self.allocate(now, &mut out);
            }
            Input::HeartbeatTick => self.heartbeat(&mut out),
            Input::PingTick => self.ping_agents(now, &mut out),
            Input::UpdateWeights { req, weights } => {
                let result = self.update_weights(weights, &mut out);
                out.push(Output::Reply { req, result });
            }
            Input::UpdateQuota { req, quotas } => {
                let result = self.update_quota(quotas, &mut out);
                out.push(Output::Reply { req, result });
            }
            Input::OperatorSubscribe { req, conn } => self.operator_subscribe(req, conn, &mut out),
            Input::OperatorClosed { conn } => {
                self.operator_conns.remove(&conn);
            }
            Input::OperatorOperation { req, agent_id, operation } => {
                let result = self.operator_operation(&agent_id, &operation, now, &mut out);
                out.push(Output::Reply { req, result });
            }
            Input::Teardown { req, framework_id } => {
                let result = self.teardown(&framework_id, now, &mut out);
                out.push(Output::Reply { req, result });
            }
            Input::MarkAgentGone { req, agent_id } => {
                let result = self.mark_agent_gone(&agent_id, now, &mut out);
                out.push(Output::Reply { req, result });
            }
            Input::OperatorKillTask { req, task_id, framework_id } => {
                let result = self.operator_kill(&task_id, framework_id.as_deref(), now, &mut out);
                out.push(Output::Reply { req, result });
            }
        }
        out
    }

    /// Ids of the frameworks the master knows, connected or not.
    pub fn framework_ids(&self) -> Vec<String> {
        self.frameworks.keys().cloned().collect()
    }

    /// Ids of the agents registered with this master, connected or not.
    pub fn agent_ids(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// Ids of the agents of the registry that have not re-registered since the restart.
    pub fn recovered_agent_ids(&self) -> Vec<String> {
        self.recovered_agents.keys().cloned().collect()
    }

    /// Ids of the agents that did not re-register in time after a restart.
    pub fn unreachable_agent_ids(&self) -> Vec<String> {
        self.unreachable_agents.keys().cloned().collect()
    }

    /// Whether framework `id` was removed and is refused.
    pub fn is_removed_framework(&self, id: &str) -> bool {
        self.removed_frameworks.contains(id)
    }

    /// Active (not yet completed) tasks as (framework id, task id, state).
    pub fn tasks(&self) -> Vec<(String, String, v1::TaskState)> {
        self.frameworks
            .values()
            .flat_map(|f| f.tasks.iter().map(|(t, task)| (f.id.clone(), t.clone(), task.state)))
            .collect()
    }

    /// Like [`Master::tasks`], borrowed: for callers that look after every input (the
    /// simulator's invariants), where copying every id each time would dominate.
    pub fn task_states(&self) -> impl Iterator<Item = (&str, &str, v1::TaskState)> {
        self.frameworks
            .values()
            .flat_map(|f| f.tasks.iter().map(|(t, task)| (f.id.as_str(), t.as_str(), task.state)))
    }

    /// Like [`Master::offer_ids`], borrowed, for the same callers as [`Master::task_states`].
    pub fn offers_held(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.offers
            .iter()
            .map(|(id, o)| (id.as_str(), o.framework_id.as_str(), o.agent_id.as_str()))
    }

    /// Outstanding offers as (offer id, framework id, agent id).
    pub fn offer_ids(&self) -> Vec<(String, String, String)> {
        self.offers
            .iter()
            .map(|(id, o)| (id.clone(), o.framework_id.clone(), o.agent_id.clone()))
            .collect()
    }

    fn heartbeat(&self, out: &mut Vec<Output>) {
        let mut beat = ops::Event::default();
        beat.set_type(ops::event::Type::Heartbeat);
        self.operator_event(&beat, out);
        for &conn in self.scheduler_conns.keys() {
            out.push(Output::ToScheduler { conn, event: event(sched::event::Type::Heartbeat) });
        }
        for &conn in self.agent_conns.keys() {
            let mut e = internal::AgentEvent::default();
            e.set_type(internal::agent_event::Type::Heartbeat);
            out.push(Output::ToAgent { conn, event: e });
        }
    }

    /// Runs one allocation and turns it into offers: one offer per (framework, role, agent),
    /// all new offers of one framework in a single OFFERS event.
    fn allocate(&mut self, now: Duration, out: &mut Vec<Output>) {
        let allocations = self.allocator.allocate(now);
        self.offer(allocations, now, out);
    }

    /// An allocation triggered by an agent event: only that agent's resources are considered
    /// (reference §6.2).
    fn allocate_agent(&mut self, agent_id: &str, now: Duration, out: &mut Vec<Output>) {
        let allocations = self.allocator.allocate_agents(&[agent_id], now);
        self.offer(allocations, now, out);
    }

    /// Turns allocations into offers (see [`Master::allocate`]).
    fn offer(&mut self, allocations: Vec<Allocation>, now: Duration, out: &mut Vec<Output>) {
        let mut per_framework: BTreeMap<String, Vec<v1::Offer>> = BTreeMap::new();
        for a in allocations {
            let (Some(framework), Some(agent)) =
                (self.frameworks.get_mut(&a.framework_id), self.agents.get(&a.agent_id))
            else {
                // The allocator never hands out what it does not know; give it back if it did.
                self.allocator.recover(
                    &a.framework_id,
                    &a.role,
                    &a.agent_id,
                    &a.resources,
                    None,
                    now,
                );
                continue;
            };
            let offer_id = format!("{}-O{}", self.config.master_info.id, self.next_offer);
            self.next_offer += 1;
            let multi_role =
                has_capability(&framework.info, v1::framework_info::capability::Type::MultiRole);
            let allocation_info =
                multi_role.then(|| v1::resource::AllocationInfo { role: Some(a.role.clone()) });
            let executor_ids = framework
                .executors
                .keys()
                .filter(|(agent_id, _)| *agent_id == a.agent_id)
                .map(|(_, e)| v1::ExecutorId { value: e.clone() })
                .collect();
            let offer = v1::Offer {
                id: v1::OfferId { value: offer_id.clone() },
                framework_id: v1::FrameworkId { value: framework.id.clone() },
                agent_id: v1::AgentId { value: agent.id.clone() },
                hostname: agent.info.hostname.clone(),
                resources: offer_resources(&framework.info, &a.resources, allocation_info.as_ref()),
                executor_ids,
                attributes: agent.attributes.clone(),
                url: Some(agent_url(agent)),
                allocation_info,
                ..Default::default()
            };
            framework.offers.insert(offer_id.clone());
            self.offers_changed_on(&a.agent_id);
            self.offers.insert(
                offer_id,
                Offer {
                    created: now,
                    framework_id: a.framework_id.clone(),
                    agent_id: a.agent_id,
                    role: a.role,
                    resources: a.resources,
                },
            );
            per_framework.entry(a.framework_id).or_default().push(offer);
        }
        for (framework_id, offers) in per_framework {
            let Some(conn) = self.frameworks.get(&framework_id).and_then(|f| f.conn) else {
                continue;
            };
            let mut e = event(sched::event::Type::Offers);
            e.offers = Some(sched::event::Offers { offers });
            out.push(Output::ToScheduler { conn, event: e });
        }
    }

    /// Notes that the offers on an agent changed: its view shows what is offered on it.
    fn offers_changed_on(&mut self, agent_id: &str) {
        if let Some(agent) = self.agents.get_mut_unshown(agent_id) {
            agent.offers_changed += 1;
        }
    }

    /// Takes an offer out of circulation, returning its resources to the allocator with an
    /// optional refusal filter, and tells the framework if `rescind` is set.
    fn remove_offer(
        &mut self,
        offer_id: &str,
        refuse: Option<Duration>,
        rescind: bool,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Option<Offer> {
        let offer = self.offers.remove(offer_id)?;
        self.offers_changed_on(&offer.agent_id);
        if let Some(framework) = self.frameworks.get_mut(&offer.framework_id) {
            framework.offers.remove(offer_id);
            if rescind && let Some(conn) = framework.conn {
                let mut e = event(sched::event::Type::Rescind);
                e.rescind = Some(sched::event::Rescind {
                    offer_id: Some(v1::OfferId { value: offer_id.to_string() }),
                });
                out.push(Output::ToScheduler { conn, event: e });
            }
        }
        self.allocator.recover(
            &offer.framework_id,
            &offer.role,
            &offer.agent_id,
            &offer.resources,
            refuse,
            now,
        );
        Some(offer)
    }

    /// Rescinds every outstanding offer of an agent (it is going away, or coming back on a new
    /// stream); the resources return to the allocator without a filter.
    fn rescind_agent_offers(&mut self, agent_id: &str, now: Duration, out: &mut Vec<Output>) {
        let offers: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for offer_id in offers {
            self.remove_offer(&offer_id, None, true, now, out);
        }
    }

    /// Tells every connected framework that an agent is lost (FAILURE with only `agent_id`).
    fn announce_agent_failure(&self, agent_id: &str, out: &mut Vec<Output>) {
        for &conn in self.scheduler_conns.keys() {
            let mut e = event(sched::event::Type::Failure);
            e.failure = Some(sched::event::Failure {
                agent_id: Some(v1::AgentId { value: agent_id.to_string() }),
                executor_id: None,
                status: None,
            });
            out.push(Output::ToScheduler { conn, event: e });
        }
    }

    /// Records a status update for a known task: its state, the update in flight, and the
    /// release of its resources on the first known terminal state.
    fn apply_status(
        &mut self,
        framework_id: &str,
        status: &v1::TaskStatus,
        latest_state: Option<v1::TaskState>,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        let Some(mut task) = framework.tasks.get_mut(&status.task_id.value) else {
            return;
        };
        task.changed();
        task.state = latest_state.unwrap_or(status.state());
        let state = task.state;
        if status.uuid.is_some() {
            task.status_update_state = Some(status.state());
            task.status_update_uuid = status.uuid.clone();
        }
        task.latest_status = Some(status.clone());
        if is_terminal(task.state) && !task.released {
            task.released = true;
            self.allocator.recover(
                framework_id,
                &task.role,
                &task.agent_id,
                &task.resources,
                None,
                now,
            );
        }
        drop(task);
        self.emit_task_updated(framework_id, status, state, out);
        // Updates without a uuid are never acknowledged, so a terminal one completes the task
        // at once.
        if status.uuid.is_none() && is_terminal(status.state()) {
            self.complete_task(framework_id, &status.task_id.value);
        }
    }

    /// Moves a task to the framework's bounded list of completed tasks.
    fn complete_task(&mut self, framework_id: &str, task_id: &str) {
        let limit = self.config.max_completed_tasks_per_framework;
        let Some(framework) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if let Some(task) = framework.tasks.remove(task_id) {
            let view = task.view.get().cloned();
            framework
                .completed_tasks
                .push_back(view.unwrap_or_else(|| Arc::new(view::task_view(framework_id, &task))));
            while framework.completed_tasks.len() > limit {
                framework.completed_tasks.pop_front();
            }
        }
    }

    /// Removes a framework for good: offers back to the allocator, its agents told to shut it
    /// down, its stream closed, its id barred from subscribing again.
    fn remove_framework(&mut self, framework_id: &str, now: Duration, out: &mut Vec<Output>) {
        let Some(offer_ids) = self.frameworks.get(framework_id).map(|f| f.offers.clone()) else {
            return;
        };
        for offer_id in offer_ids {
            self.remove_offer(&offer_id, None, false, now, out);
        }
        self.complete_framework(framework_id, now);
        let Some(framework) = self.frameworks.remove(framework_id) else {
            return;
        };
        self.allocator.remove_framework(framework_id);
        let agents: BTreeSet<&String> = framework
            .tasks
            .values()
            .map(|t| &t.agent_id)
            .chain(framework.executors.keys().map(|(a, _)| a))
            .collect();
        for agent_id in agents {
            if let Some(conn) = self.agents.get(agent_id).and_then(|a| a.conn) {
                let mut e = internal::AgentEvent::default();
                e.set_type(internal::agent_event::Type::ShutdownFramework);
                e.shutdown_framework = Some(internal::agent_event::ShutdownFramework {
                    framework_id: v1::FrameworkId { value: framework_id.to_string() },
                });
                out.push(Output::ToAgent { conn, event: e });
            }
        }
        if let Some(conn) = framework.conn {
            self.scheduler_conns.remove(&conn);
            out.push(Output::CloseScheduler { conn });
        }
        self.emit_framework_removed(&framework.info, out);
        // The removal is durable before anything of it is delivered: a restarted master keeps
        // refusing the id.
        out.push(Output::Persist(RegistryOp::RemoveFramework(internal::RegistryFramework {
            framework_info: framework.info,
            removed_time: Some(time_info(now)),
        })));
        for forgotten in self.remember_removed(framework_id) {
            out.push(Output::Persist(RegistryOp::ForgetFramework(forgotten)));
        }
    }

    /// Bars a removed framework's id, within the bound; returns the ids that fell out of it.
    fn remember_removed(&mut self, framework_id: &str) -> Vec<String> {
        self.removed_frameworks.insert(framework_id.to_string());
        self.removed_order.push_back(framework_id.to_string());
        let mut forgotten = Vec::new();
        while self.removed_order.len() > MAX_REMOVED_FRAMEWORKS {
            if let Some(oldest) = self.removed_order.pop_front() {
                self.removed_frameworks.remove(&oldest);
                forgotten.push(oldest);
            }
        }
        forgotten
    }

    /// Keeps a framework about to be removed in the bounded list of completed frameworks:
    /// inactive and disconnected from `now`, with its completed tasks and, as Mesos does, its
    /// unfinished ones as TASK_KILLED (their agents are told to shut the framework down), the
    /// newest `max_completed_tasks_per_framework` of them.
    fn complete_framework(&mut self, framework_id: &str, now: Duration) {
        if self.config.max_completed_frameworks == 0 {
            return;
        }
        let Some(framework) = self.frameworks.get(framework_id) else {
            return;
        };
        let mut view = self.framework_view(framework);
        view.active = false;
        view.connected = false;
        view.offers.clear();
        view.offered_resources.clear();
        view.allocated_resources.clear();
        view.unregistered_time = Some(time_info(now));
        let mut tasks: Vec<Arc<v1::Task>> = framework.completed_tasks.iter().cloned().collect();
        for task in framework.tasks.values() {
            let mut wire = view::task_view(framework_id, task);
            if !is_terminal(wire.state()) {
                wire.set_state(v1::TaskState::TaskKilled);
            }
            tasks.push(Arc::new(wire));
        }
        let excess = tasks.len().saturating_sub(self.config.max_completed_tasks_per_framework);
        tasks.drain(..excess);
        self.completed_frameworks.push_back(CompletedFramework { view, tasks });
        while self.completed_frameworks.len() > self.config.max_completed_frameworks {
            self.completed_frameworks.pop_front();
        }
    }

    /// Removes disconnected frameworks whose failover timeout has run out.
    fn expire_failovers(&mut self, now: Duration, out: &mut Vec<Output>) {
        let expired: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| {
                // A master restart alone must not remove a framework: one whose scheduler has
                // not come back yet gets at least as long as the agents have to re-register.
                let timeout = if f.recovered {
                    failover_timeout(&f.info).max(self.config.agent_reregister_timeout)
                } else {
                    failover_timeout(&f.info)
                };
                f.disconnected_at.is_some_and(|at| now.saturating_sub(at) >= timeout)
            })
            .map(|f| f.id.clone())
            .collect();
        for id in expired {
            self.remove_framework(&id, now, out);
        }
    }

    /// Rescinds offers older than `--offer_timeout`; their resources come back with no
    /// filter (reference §5.4). Checked on the allocation tick, so an offer lives at most one
    /// allocation interval longer than the timeout.
    fn expire_offers(&mut self, now: Duration, out: &mut Vec<Output>) {
        let Some(timeout) = self.config.offer_timeout else {
            return;
        };
        let expired: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| now.saturating_sub(o.created) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for offer_id in expired {
            self.remove_offer(&offer_id, None, true, now, out);
        }
    }

    /// The filter a DECLINE or the leftovers of an ACCEPT install: `max(refuse_seconds,
    /// allocation_interval)`, none for zero, the default for negative values, capped at a year.
    fn refuse_duration(&self, filters: Option<&v1::Filters>) -> Option<Duration> {
        let mut seconds = filters.and_then(|f| f.refuse_seconds).unwrap_or(DEFAULT_REFUSE_SECONDS);
        if !seconds.is_finite() || seconds < 0.0 {
            seconds = DEFAULT_REFUSE_SECONDS;
        }
        if seconds == 0.0 {
            return None;
        }
        let refuse = Duration::from_secs_f64(seconds.min(MAX_REFUSE_SECONDS));
        Some(refuse.max(self.config.allocation_interval))
    }

    fn send_update(&self, framework_id: &str, status: v1::TaskStatus, out: &mut Vec<Output>) {
        if let Some(conn) = self.frameworks.get(framework_id).and_then(|f| f.conn) {
            let mut e = event(sched::event::Type::Update);
            e.update = Some(sched::event::Update { status: Some(status) });
            out.push(Output::ToScheduler { conn, event: e });
        }
    }
}

/// An event of the given type with no payload yet.
fn event(kind: sched::event::Type) -> sched::Event {
    let mut e = sched::Event::default();
    e.set_type(kind);
    e
}

fn error_event(message: impl Into<String>) -> sched::Event {
    let mut e = event(sched::event::Type::Error);
    e.error = Some(sched::event::Error { message: message.into() });
    e
}

/// `now` as a `TimeInfo`.
fn time_info(now: Duration) -> v1::TimeInfo {
    v1::TimeInfo { nanoseconds: i64::try_from(now.as_nanos()).unwrap_or(i64::MAX) }
}

fn has_capability(info: &v1::FrameworkInfo, kind: v1::framework_info::capability::Type) -> bool {
    info.capabilities.iter().any(|c| c.r#type() == kind)
}

fn failover_timeout(info: &v1::FrameworkInfo) -> Duration {
    let seconds = info.failover_timeout();
    if seconds.is_finite() && seconds > 0.0 {
        Duration::from_secs_f64(seconds.min(MAX_REFUSE_SECONDS * 100.0))
    } else {
        Duration::ZERO
    }
}

/// Offered resources in the reservation format the framework reads: the `reservations` stack
/// for RESERVATION_REFINEMENT frameworks, `role` plus `reservation` for the others (the
/// allocator never gives those a refined reservation).
fn offer_resources(
    info: &v1::FrameworkInfo,
    resources: &Resources,
    allocation_info: Option<&v1::resource::AllocationInfo>,
) -> Vec<v1::Resource> {
    match convert::ResourceFormat::for_framework(info) {
        convert::ResourceFormat::PostRefinement => {
            let role = allocation_info.and_then(|a| a.role.as_deref());
            convert::resources_for_framework(
                resources,
                convert::ResourceFormat::PostRefinement,
                role,
            )
            .unwrap_or_else(|_| convert::resources_to_proto(resources, allocation_info))
        }
        convert::ResourceFormat::PreRefinement => {
            convert::resources_to_proto(resources, allocation_info)
        }
    }
}

/// The agent's address in the shape of `Offer.url`.
fn agent_url(agent: &Agent) -> v1::Url {
    let (ip, port) = match agent.endpoint.rsplit_once(':') {
        Some((ip, port)) => (ip.to_string(), port.parse().unwrap_or(agent.info.port())),
        None => (agent.endpoint.clone(), agent.info.port()),
    };
    v1::Url {
        scheme: "http".into(),
        address: v1::Address { hostname: Some(agent.info.hostname.clone()), ip: Some(ip), port },
        path: Some("/slave(1)".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
