//! A scripted scheduler: it subscribes (and subscribes again with its FrameworkID after a
//! broken stream or a failover), launches short `sleep` tasks in bursts on the offers it gets,
//! declines the rest, kills some tasks, acknowledges every update, and reconciles now and then.
//!
//! It plays a framework written against the v1 HTTP API with its own bookkeeping of the tasks
//! it launched (kept across its failovers, as a real framework keeps them in its own store).
//! Calls other than SUBSCRIBE are fire-and-forget (the network may deliver one twice, as a
//! retrying client would): a lost ACCEPT shows up through offer
//! expiry and reconciliation, a lost acknowledgement through the agent's retries. Every update
//! it receives is checked against the previous one for the same task.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agora_core::convert;
use agora_core::resources::Resources;
use agora_core::status::is_terminal;
use agora_proto::scheduler::call::Type as CallType;
use agora_proto::scheduler::event::Type as EventType;
use agora_proto::{scheduler as sched, v1};

use crate::nodes::master::Peer;
use crate::sim::{ConnId, Event, Sim};

/// What each task asks for.
pub(crate) const TASK_RESOURCES: &str = "cpus:0.5;mem:128";
/// How long a SUBSCRIBE may go unanswered.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tasks launched less than this long ago are not reconciled explicitly: their ACCEPT may
/// still be on its way (well above the network's largest delay).
const RECONCILE_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Link {
    Down { retry_at: Duration },
    Subscribing { conn: ConnId, master: usize, stream_id: String, since: Duration },
    Subscribed { conn: ConnId, master: usize, stream_id: String },
}

/// The scheduler's view of one of its tasks.
#[derive(Debug, Clone)]
pub(crate) struct TaskView {
    pub(crate) agent_id: String,
    launched_at: Duration,
    /// The latest state seen, reconciliation answers included.
    pub(crate) last: Option<v1::TaskState>,
    /// The latest state seen on the task's update stream (everything but reconciliation
    /// answers), which must never go backwards.
    streamed: Option<v1::TaskState>,
}

pub(crate) struct SchedNode {
    index: usize,
    checkpoint: bool,
    pub(crate) framework_id: Option<String>,
    link: Link,
    /// The master its detector names as leader.
    pub(crate) leader: Option<usize>,
    /// Bumped by every failover of the scheduler's process.
    process: u64,
    pub(crate) tasks: BTreeMap<String, TaskView>,
    next_task: u64,
    offers: BTreeSet<String>,
    next_reconcile: Duration,
}

impl SchedNode {
    pub(crate) fn new(index: usize, non_checkpointing: bool) -> Self {
        Self {
            index,
            // With `non_checkpointing`, half the frameworks do not checkpoint, so that agent
            // restarts exercise both paths.
            checkpoint: !non_checkpointing || index.is_multiple_of(2),
            framework_id: None,
            link: Link::Down { retry_at: Duration::ZERO },
            leader: Some(0),
            process: 0,
            tasks: BTreeMap::new(),
            next_task: 0,
            offers: BTreeSet::new(),
            next_reconcile: Duration::from_secs(30),
        }
    }

    /// The master this scheduler is subscribed at.
    pub(crate) fn subscribed_at(&self) -> Option<usize> {
        match self.link {
            Link::Subscribed { master, .. } => Some(master),
            _ => None,
        }
    }
}

/// The rank of a state in a task's life; a scheduler must never see a lower rank after a
/// higher one.
fn rank(state: v1::TaskState) -> u8 {
    use v1::TaskState::*;
    match state {
        TaskStaging => 0,
        TaskStarting => 1,
        TaskRunning => 2,
        TaskKilling => 3,
        s if is_terminal(s) => 5,
        _ => 4,
    }
}

fn call(kind: CallType) -> sched::Call {
    let mut c = sched::Call::default();
    c.set_type(kind);
    c
}

impl Sim {
    pub(crate) fn scheduler_tick(&mut self, s: usize) {
        self.after(Duration::from_secs(1), Event::SchedulerTick(s));
        match self.schedulers[s].link.clone() {
            Link::Down { retry_at } if self.now >= retry_at => self.subscribe(s),
            Link::Subscribing { conn, since, .. } if self.now >= since + SUBSCRIBE_TIMEOUT => {
                self.client_closes(conn);
                self.subscribe(s);
            }
            Link::Subscribed { .. } => {
                if self.now >= self.schedulers[s].next_reconcile {
                    self.schedulers[s].next_reconcile = self.now + Duration::from_secs(30);
                    self.reconcile(s);
                }
                if self.options.kills && !self.faults_over && self.rng.chance(0.05) {
                    self.kill_some_task(s);
                }
            }
            _ => {}
        }
    }

    fn subscribe(&mut self, s: usize) {
        let Some(master) = self.schedulers[s].leader else {
            // The client waits for its detector to name a leader.
            self.schedulers[s].link = Link::Down { retry_at: self.now + Duration::from_secs(1) };
            return;
        };
        let node = &self.schedulers[s];
        let info = v1::FrameworkInfo {
            user: "sim".into(),
            name: format!("scheduler{}", node.index),
            id: node.framework_id.clone().map(|value| v1::FrameworkId { value }),
            checkpoint: Some(node.checkpoint),
            failover_timeout: Some(7.0 * 24.0 * 3600.0),
            // A new scheduler process runs elsewhere: its re-subscription changes the
            // framework's record, which the master writes to the registry.
            hostname: Some(format!("sched{}-{}", node.index, node.process)),
            ..Default::default()
        };
        let mut c = call(CallType::Subscribe);
        c.framework_id = info.id.clone();
        c.subscribe = Some(sched::call::Subscribe { framework_info: info, ..Default::default() });
        let conn = self.id();
        let req = self.id();
        let stream_id = format!("sched-stream-{conn}");
        self.schedulers[s].link =
            Link::Subscribing { conn, master, stream_id: stream_id.clone(), since: self.now };
        self.schedulers[s].offers.clear();
        if self.net.request_lost(None, self.now) {
            return;
        }
        let epoch = self.master_open(master, conn, Peer::Scheduler(s));
        let input = agora_core::master::Input::Subscribe { req, conn, stream_id, call: c };
        let delay = self.net.delay();
        self.after(delay, Event::AtMaster { m: master, epoch, input });
    }

    /// The detector of scheduler `s` names `leader`. A subscribed session does not follow it
    /// (it learns of a new leader when its stream ends); one waiting to subscribe again tries
    /// the new leader soon, as `SchedulerSession::resubscribe` does.
    pub(crate) fn scheduler_detects(&mut self, s: usize, leader: Option<usize>) {
        let node = &mut self.schedulers[s];
        if node.leader == leader {
            return;
        }
        node.leader = leader;
        if let Link::Down { retry_at } = &mut node.link {
            *retry_at = (*retry_at).min(self.now + Duration::from_millis(100));
        }
        self.trace(|| format!("scheduler {s}: detects leader {leader:?}"));
    }

    /// A fault: the scheduler process dies and a new one subscribes with the same id.
    pub(crate) fn scheduler_failover(&mut self, s: usize) {
        self.trace(|| format!("fault: scheduler {s} fails over"));
        if let Link::Subscribing { conn, .. } | Link::Subscribed { conn, .. } =
            self.schedulers[s].link.clone()
        {
            self.client_closes(conn);
        }
        self.schedulers[s].link = Link::Down { retry_at: self.now + Duration::from_secs(1) };
        self.schedulers[s].process += 1;
    }

    /// Sends a call on the current subscription; lost or refused calls are not retried.
    fn send(&mut self, s: usize, mut c: sched::Call) {
        let Link::Subscribed { stream_id, master, .. } = &self.schedulers[s].link else { return };
        let (stream_id, m) = (Some(stream_id.clone()), *master);
        c.framework_id =
            self.schedulers[s].framework_id.clone().map(|value| v1::FrameworkId { value });
        if self.net.request_lost(None, self.now) {
            return;
        }
        // ACCEPT is not idempotent: a second copy finds its offer gone (see
        // `Options::duplicate_accepts`).
        let idempotent = c.r#type() != CallType::Accept || self.options.duplicate_accepts;
        let copies = if idempotent && self.net.duplicated() { 2 } else { 1 };
        for _ in 0..copies {
            let req = self.id();
            let epoch = self.masters[m].epoch;
            let delay = self.net.delay();
            let call = c.clone();
            let input = agora_core::master::Input::SchedulerCall {
                req,
                stream_id: stream_id.clone(),
                call,
            };
            self.after(delay, Event::AtMaster { m, epoch, input });
        }
    }

    pub(crate) fn scheduler_event(&mut self, s: usize, conn: ConnId, event: Option<sched::Event>) {
        let current = match &self.schedulers[s].link {
            Link::Subscribing { conn: c, .. } | Link::Subscribed { conn: c, .. } => *c == conn,
            Link::Down { .. } => false,
        };
        if !current {
            return;
        }
        let Some(event) = event else {
            self.trace(|| format!("scheduler {s}: stream {conn} closed"));
            let backoff = Duration::from_millis(self.rng.range(200, 3000));
            self.schedulers[s].link = Link::Down { retry_at: self.now + backoff };
            return;
        };
        match event.r#type() {
            EventType::Subscribed => {
                let Some(subscribed) = event.subscribed else { return };
                let id = subscribed.framework_id.value;
                let node = &mut self.schedulers[s];
                if node.framework_id.as_ref().is_some_and(|old| *old != id) {
                    let old = node.framework_id.clone().unwrap_or_default();
                    self.fail(format!("scheduler {s} re-subscribed as {old} but got {id}"));
                    return;
                }
                node.framework_id = Some(id.clone());
                if let Link::Subscribing { conn, master, stream_id, .. } = node.link.clone() {
                    node.link = Link::Subscribed { conn, master, stream_id };
                }
                self.note_owner(&id, format!("scheduler {s}"));
                self.reconcile(s);
            }
            EventType::Offers => {
                for offer in event.offers.map(|o| o.offers).unwrap_or_default() {
                    self.schedulers[s].offers.insert(offer.id.value.clone());
                    self.answer_offer(s, offer);
                }
            }
            EventType::Rescind => {
                if let Some(id) = event.rescind.and_then(|r| r.offer_id) {
                    self.schedulers[s].offers.remove(&id.value);
                }
            }
            EventType::Update => {
                if let Some(status) = event.update.and_then(|u| u.status) {
                    self.scheduler_update(s, status);
                }
            }
            EventType::Error => {
                let message = event.error.map(|e| e.message).unwrap_or_default();
                self.trace(|| format!("scheduler {s}: ERROR {message}"));
            }
            _ => {}
        }
    }

    /// Launches a burst of tasks on the offer while faults last; declines otherwise.
    fn answer_offer(&mut self, s: usize, offer: v1::Offer) {
        self.schedulers[s].offers.remove(&offer.id.value);
        let offered = convert::resources_from_proto(&offer.resources).unwrap_or_default();
        let task = Resources::parse(TASK_RESOURCES).expect("a valid constant");
        let fit = (offered.cpus().as_f64() / task.cpus().as_f64())
            .min(offered.mem().as_f64() / task.mem().as_f64())
            .floor()
            .max(0.0) as u64;
        let burst = self.rng.range(1, 4).min(fit);
        let launch = !self.faults_over && burst > 0 && self.rng.chance(0.7);
        if !launch {
            let mut c = call(CallType::Decline);
            let refuse = self.rng.range(0, 5) as f64;
            c.decline = Some(sched::call::Decline {
                offer_ids: vec![offer.id],
                filters: Some(v1::Filters { refuse_seconds: Some(refuse) }),
            });
            self.send(s, c);
            return;
        }
        let framework_id = self.schedulers[s].framework_id.clone().unwrap_or_default();
        let mut infos = Vec::new();
        for _ in 0..burst {
            let node = &mut self.schedulers[s];
            node.next_task += 1;
            let task_id = format!("s{}-t{}", node.index, node.next_task);
            let seconds = self.rng.range(1, 20);
            node_insert(&mut self.schedulers[s], &task_id, &offer.agent_id.value, self.now);
            self.note_launch(&framework_id, &task_id, &offer.agent_id.value, &task);
            infos.push(v1::TaskInfo {
                name: task_id.clone(),
                task_id: v1::TaskId { value: task_id },
                agent_id: offer.agent_id.clone(),
                resources: convert::resources_to_proto(&task, None),
                command: Some(v1::CommandInfo {
                    value: Some(format!("sleep {seconds}")),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        self.summary.tasks_launched += burst;
        let mut op = v1::offer::Operation::default();
        op.set_type(v1::offer::operation::Type::Launch);
        op.launch = Some(v1::offer::operation::Launch { task_infos: infos });
        let mut c = call(CallType::Accept);
        c.accept = Some(sched::call::Accept {
            offer_ids: vec![offer.id],
            operations: vec![op],
            filters: Some(v1::Filters { refuse_seconds: Some(1.0) }),
        });
        self.send(s, c);
    }

    fn scheduler_update(&mut self, s: usize, status: v1::TaskStatus) {
        self.summary.updates_seen += 1;
        let task_id = status.task_id.value.clone();
        let state = status.state();
        let node = &mut self.schedulers[s];
        let Some(view) = node.tasks.get_mut(&task_id) else {
            self.fail(format!(
                "scheduler {s} got {state:?} for {task_id}, which it never launched"
            ));
            return;
        };
        // Reconciliation answers come from the master's latest knowledge, out of band: by
        // default they are not held to the order of the update stream (see `Options`).
        let reconciliation =
            status.reason() == v1::task_status::Reason::Reconciliation && status.reason.is_some();
        // A TASK_LOST the master sends for an unreachable agent is not final for a framework
        // that is not partition-aware: the agent may come back with the task (see `Options`).
        let unreachable = state == v1::TaskState::TaskLost
            && status.source() == v1::task_status::Source::Master
            && status.reason() == v1::task_status::Reason::AgentRemoved
            && !self.options.strict_lost;
        // The master's announcement of a returning agent's tasks runs ahead of the updates that
        // agent still holds (see `Options::strict_announcements`).
        let announcement = status.reason() == v1::task_status::Reason::AgentReregistered
            && status.reason.is_some()
            && !self.options.strict_announcements;
        let previous = if unreachable
            || announcement
            || (reconciliation && !self.options.strict_reconciliation)
        {
            None
        } else if self.options.strict_reconciliation {
            view.last
        } else {
            view.streamed
        };
        if let Some(last) = previous {
            let backwards = rank(state) < rank(last);
            let after_terminal = is_terminal(last) && state != last;
            if backwards || after_terminal {
                self.fail(format!(
                    "scheduler {s} saw task {task_id} go from {last:?} to {state:?} ({:?}, {:?})",
                    status.source(),
                    status.reason.and_then(|r| v1::task_status::Reason::try_from(r).ok())
                ));
                return;
            }
        }
        if !reconciliation && !unreachable && !announcement {
            view.streamed = Some(state);
        }
        view.last = Some(state);
        let agent_id =
            status.agent_id.clone().unwrap_or_else(|| v1::AgentId { value: view.agent_id.clone() });
        self.trace(|| {
            let reason = status.reason.and_then(|r| v1::task_status::Reason::try_from(r).ok());
            format!("scheduler {s}: {task_id} is {state:?} ({:?}, {reason:?})", status.source())
        });
        if let Some(uuid) = status.uuid {
            let mut c = call(CallType::Acknowledge);
            c.acknowledge =
                Some(sched::call::Acknowledge { agent_id, task_id: status.task_id, uuid });
            self.send(s, c);
        }
    }

    /// Asks about every task not known to be over, or about everything now and then.
    fn reconcile(&mut self, s: usize) {
        let node = &self.schedulers[s];
        let tasks: Vec<sched::call::reconcile::Task> = node
            .tasks
            .iter()
            .filter(|(_, v)| !v.last.is_some_and(is_terminal))
            .filter(|(_, v)| self.now >= v.launched_at + RECONCILE_AFTER)
            .map(|(id, v)| sched::call::reconcile::Task {
                task_id: Some(v1::TaskId { value: id.clone() }),
                agent_id: Some(v1::AgentId { value: v.agent_id.clone() }),
            })
            .collect();
        if tasks.is_empty() {
            return;
        }
        let mut c = call(CallType::Reconcile);
        c.reconcile = Some(sched::call::Reconcile { tasks });
        self.send(s, c);
    }

    fn kill_some_task(&mut self, s: usize) {
        let live: Vec<(String, String)> = self.schedulers[s]
            .tasks
            .iter()
            .filter(|(_, v)| v.last == Some(v1::TaskState::TaskRunning))
            .map(|(id, v)| (id.clone(), v.agent_id.clone()))
            .collect();
        if live.is_empty() {
            return;
        }
        let (task_id, agent_id) = live[self.rng.index(live.len())].clone();
        let mut c = call(CallType::Kill);
        c.kill = Some(sched::call::Kill {
            task_id: v1::TaskId { value: task_id },
            agent_id: Some(v1::AgentId { value: agent_id }),
            kill_policy: None,
        });
        self.send(s, c);
    }
}

fn node_insert(node: &mut SchedNode, task_id: &str, agent_id: &str, now: Duration) {
    node.tasks.insert(
        task_id.to_string(),
        TaskView { agent_id: agent_id.to_string(), launched_at: now, last: None, streamed: None },
    );
}
