//! The simulation itself: the virtual clock, the queue of pending events, the nodes, the
//! fault schedule, and the step loop that checks the invariants after every event.
//!
//! Every event is delivered at a virtual instant; ties go in the order events were queued, so
//! a run depends on nothing but its seed. How each kind of node reacts lives in `nodes/`; this
//! file only dispatches and injects faults. It does not judge what it sees: that is
//! `invariants.rs`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agora_executor::process::Termination;
use agora_proto::{executor, internal, scheduler as sched};

use crate::coord::Coord;
use crate::network::{NetConfig, Network};
use crate::nodes::agent::AgentNode;
use crate::nodes::election::{Client, Registry};
use crate::nodes::executor::ExecNode;
use crate::nodes::master::MasterNode;
use crate::nodes::scheduler::SchedNode;
use crate::rng::Rng;
use crate::{Options, Summary, Violation};

/// The cores get wall-clock-like times: this many seconds since the epoch at the start.
pub(crate) const EPOCH: Duration = Duration::from_secs(1_700_000_000);

pub(crate) type ConnId = u64;

/// Something that happens at a virtual instant.
#[derive(Debug)]
pub(crate) enum Event {
    AllocationTick,
    HeartbeatTick,
    PingTick,
    AgentTick(usize),
    SchedulerTick(usize),
    /// The executor core's deadline may have passed.
    ExecutorTick(usize),
    /// A re-subscription attempt of a checkpointing executor is due.
    ExecutorRetry(usize),
    /// The next fault of the schedule.
    Fault,
    AgentRestart(usize),
    /// Faults stop and the network heals.
    Heal,
    /// An input for incarnation `epoch` of master `m` (a request, or a stream it learns is
    /// gone).
    AtMaster {
        m: usize,
        epoch: u64,
        input: agora_core::master::Input,
    },
    /// Master `m`'s candidacy hears that it leads (several masters).
    Elected {
        m: usize,
        epoch: u64,
    },
    /// Master `m`'s process may wake up from a freeze.
    Thaw(usize),
    /// Master `m` may hear that its session is gone.
    MasterLost {
        m: usize,
        epoch: u64,
    },
    /// The coordination service checks whether a session timed out.
    SessionExpiry {
        session: u64,
    },
    /// The supervisor of master `m` starts it again (several masters).
    MasterStart(usize),
    /// A client's leader detector reports (several masters).
    Detect(Client),
    /// A scheduler's stream `conn` delivers an event, or ends (`None`).
    AtScheduler {
        s: usize,
        conn: ConnId,
        event: Option<sched::Event>,
    },
    /// The master's stream `conn` delivers an event to agent incarnation `inc`, or ends.
    FromMaster {
        a: usize,
        inc: u64,
        conn: ConnId,
        event: Option<internal::AgentEvent>,
    },
    /// An executor's request reaches agent incarnation `inc` over loopback.
    FromExecutor {
        a: usize,
        inc: u64,
        e: usize,
        input: agora_core::agent::Input,
    },
    /// The agent answers an executor's request.
    ExecutorReply {
        e: usize,
        req: u64,
        ok: bool,
    },
    /// The agent's stream `conn` delivers an event to an executor, or ends.
    ToExecutor {
        e: usize,
        conn: ConnId,
        event: Option<executor::Event>,
    },
    /// A task's process ends (if `generation` is still the executor's current process).
    ProcessExit {
        e: usize,
        generation: u64,
        termination: Termination,
    },
}

/// See the module documentation.
pub(crate) struct Sim {
    pub(crate) options: Options,
    pub(crate) now: Duration,
    /// What `Instant`-based cores (executors) take as the start of the run.
    pub(crate) base: Instant,
    pub(crate) rng: Rng,
    pub(crate) net: Network,
    /// Boxed: an event can carry a whole call, and the tree shifts its entries on every
    /// insertion and removal; a box shifts as one pointer.
    queue: BTreeMap<(Duration, u64), Box<Event>>,
    next_seq: u64,
    next_id: u64,
    pub(crate) step: u64,
    pub(crate) masters: Vec<MasterNode>,
    /// Master process incarnations so far, over all masters.
    pub(crate) epochs: u64,
    /// The registry store every leader reads and writes.
    pub(crate) registry: Registry,
    /// The coordination service, with several masters.
    pub(crate) coord: Option<Coord>,
    /// The decisions about several masters have a generator of their own, so that a run
    /// with one master draws exactly what it drew before they existed.
    pub(crate) ha_rng: Rng,
    /// The trace, kept for the caller (see `crate::run_traced`).
    trace_lines: Option<RefCell<Vec<String>>>,
    pub(crate) agents: Vec<AgentNode>,
    pub(crate) executors: Vec<ExecNode>,
    pub(crate) schedulers: Vec<SchedNode>,
    /// Set by a node that saw something that must never happen.
    pub(crate) violation: Option<String>,
    pub(crate) summary: Summary,
    /// Offers as the master emitted them: offer id → (framework, agent, resources).
    pub(crate) offers_seen: BTreeMap<String, crate::invariants::OfferSeen>,
    /// Tasks as the schedulers launched them: framework → task → (agent, resources).
    pub(crate) tasks_launched: BTreeMap<String, BTreeMap<String, crate::invariants::TaskSeen>>,
    /// Agent and framework ids, and who got each: "agent 2", "scheduler 0".
    pub(crate) id_owners: BTreeMap<String, String>,
    /// What every agent has, computed once: the invariants compare against it every step.
    pub(crate) capacity: crate::invariants::Load,
    pub(crate) faults_over: bool,
}

impl Sim {
    pub(crate) fn new(options: Options) -> Self {
        let mut rng = Rng::new(options.seed);
        let net_rng = rng.fork();
        let config = NetConfig::draw(&mut rng);
        let mut net = Network::new(net_rng, config);
        if options.duplicate_updates {
            net.duplicate_updates(Rng::new(options.seed ^ 0xD0B1_E5EE_D0B1_E5EE));
        }
        let masters = (0..options.masters.max(1)).map(|_| MasterNode::new()).collect();
        let ha = options.masters > 1;
        let mut agents: Vec<AgentNode> =
            (0..options.agents).map(|a| AgentNode::new(a, &mut rng)).collect();
        let mut schedulers: Vec<SchedNode> =
            (0..options.schedulers).map(|s| SchedNode::new(s, options.non_checkpointing)).collect();
        if ha {
            // Clients know no leader until their detector reports one.
            agents.iter_mut().for_each(|a| a.leader = None);
            schedulers.iter_mut().for_each(|s| s.leader = None);
        }
        let ha_rng = Rng::new(options.seed ^ 0x4A11_0C0D_E1EC_7104);
        Self {
            options,
            now: Duration::ZERO,
            base: Instant::now(),
            rng,
            net,
            queue: BTreeMap::new(),
            next_seq: 0,
            next_id: 1,
            step: 0,
            masters,
            epochs: 0,
            registry: Registry::default(),
            coord: ha.then(Coord::default),
            ha_rng,
            trace_lines: None,
            agents,
            executors: Vec::new(),
            schedulers,
            violation: None,
            summary: Summary::default(),
            offers_seen: BTreeMap::new(),
            tasks_launched: BTreeMap::new(),
            id_owners: BTreeMap::new(),
            capacity: crate::invariants::agent_capacity(),
            faults_over: false,
        }
    }

    /// Queues `event` at the absolute virtual time `at`.
    pub(crate) fn at(&mut self, at: Duration, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert((at.max(self.now), seq), Box::new(event));
    }

    /// Queues `event` after `delay`.
    pub(crate) fn after(&mut self, delay: Duration, event: Event) {
        self.at(self.now + delay, event);
    }

    /// A fresh id for a connection or a request; unique over the whole run, so that nothing
    /// of a dead connection can be mistaken for a live one.
    pub(crate) fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The cores' idea of the current time.
    pub(crate) fn wall(&self) -> Duration {
        EPOCH + self.now
    }

    pub(crate) fn instant(&self) -> Instant {
        self.base + self.now
    }

    pub(crate) fn trace(&self, what: impl FnOnce() -> String) {
        if !self.options.trace && self.trace_lines.is_none() {
            return;
        }
        let line = format!("[{:>7} {:>10.6}] {}", self.step, self.now.as_secs_f64(), what());
        if let Some(lines) = &self.trace_lines {
            lines.borrow_mut().push(line.clone());
        }
        if self.options.trace {
            println!("{line}");
        }
    }

    /// Keeps every trace line for [`Sim::take_trace`].
    pub(crate) fn keep_trace(&mut self) {
        self.trace_lines = Some(RefCell::new(Vec::new()));
    }

    pub(crate) fn take_trace(&mut self) -> Vec<String> {
        self.trace_lines.take().map(RefCell::into_inner).unwrap_or_default()
    }

    pub(crate) fn fail(&mut self, message: String) {
        if self.violation.is_none() {
            self.violation = Some(message);
        }
    }

    fn violation(&self, message: String) -> Violation {
        Violation {
            seed: self.options.seed,
            step: self.step,
            time: self.now,
            message,
            flags: self.options.flags(),
        }
    }

    pub(crate) fn run(&mut self) -> Result<Summary, Violation> {
        let c = self.net.config().clone();
        self.trace(|| format!("network: {c:?}"));
        if self.coord.is_some() {
            for m in 0..self.masters.len() {
                self.start_standby(m);
            }
        } else {
            self.start_master();
        }
        for a in 0..self.agents.len() {
            let delay = Duration::from_millis(self.rng.range(0, 2000));
            self.after(delay, Event::AgentRestart(a));
            self.after(Duration::from_secs(1) + delay, Event::AgentTick(a));
        }
        for s in 0..self.schedulers.len() {
            let delay = Duration::from_millis(self.rng.range(0, 3000));
            self.after(delay, Event::SchedulerTick(s));
        }
        self.after(Duration::from_secs(1), Event::AllocationTick);
        self.after(Duration::from_secs(15), Event::HeartbeatTick);
        self.after(Duration::from_secs(15), Event::PingTick);
        let first_fault = Duration::from_secs(self.rng.range(5, 30));
        self.after(first_fault, Event::Fault);
        self.at(self.options.fault_time, Event::Heal);
        let end = self.options.fault_time + self.options.quiet_time;
        while let Some(((at, _), event)) = self.queue.pop_first() {
            if at > end {
                break;
            }
            self.now = at;
            self.step += 1;
            if self.step > self.options.max_steps {
                return Err(self.violation(format!(
                    "the run took more than {} steps",
                    self.options.max_steps
                )));
            }
            self.dispatch(*event);
            if let Some(message) = self.violation.take() {
                return Err(self.violation(message));
            }
            if let Err(message) = self.check() {
                return Err(self.violation(message));
            }
        }
        self.now = end;
        if let Err(message) = self.check_settled() {
            return Err(self.violation(format!("at the end: {message}")));
        }
        self.summary.steps = self.step;
        Ok(self.summary.clone())
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::AllocationTick => {
                self.serving_input(|| agora_core::master::Input::AllocationTick);
                self.after(Duration::from_secs(1), Event::AllocationTick);
            }
            Event::HeartbeatTick => {
                self.serving_input(|| agora_core::master::Input::HeartbeatTick);
                self.after(Duration::from_secs(15), Event::HeartbeatTick);
            }
            Event::PingTick => {
                self.serving_input(|| agora_core::master::Input::PingTick);
                self.after(Duration::from_secs(15), Event::PingTick);
            }
            Event::AgentTick(a) => self.agent_tick(a),
            Event::SchedulerTick(s) => self.scheduler_tick(s),
            Event::ExecutorTick(e) => self.executor_tick(e),
            Event::ExecutorRetry(e) => self.executor_retry(e),
            Event::Fault => self.fault(),
            Event::AgentRestart(a) => self.restart_agent(a),
            Event::Heal => {
                self.trace(|| "faults stop; the network heals".into());
                self.faults_over = true;
                self.net.heal();
                self.heal_masters();
            }
            Event::AtMaster { m, epoch, input } => {
                if self.masters[m].frozen_until > self.now {
                    // A frozen process reads its sockets when it wakes up, in arrival order.
                    self.masters[m].backlog.push((epoch, input));
                } else if epoch == self.masters[m].epoch && self.masters[m].alive {
                    self.master_input(m, input);
                }
            }
            Event::Thaw(m) => self.thaw(m),
            Event::Elected { m, epoch } => self.elected(m, epoch),
            Event::MasterLost { m, epoch } => self.master_lost(m, epoch),
            Event::SessionExpiry { session } => self.session_expiry(session),
            Event::MasterStart(m) => self.start_standby(m),
            Event::Detect(client) => self.detect(client),
            Event::AtScheduler { s, conn, event } => self.scheduler_event(s, conn, event),
            Event::FromMaster { a, inc, conn, event } => {
                self.agent_from_master(a, inc, conn, event)
            }
            Event::FromExecutor { a, inc, e, input } => self.agent_from_executor(a, inc, e, input),
            Event::ExecutorReply { e, req, ok } => self.executor_reply(e, req, ok),
            Event::ToExecutor { e, conn, event } => self.executor_event(e, conn, event),
            Event::ProcessExit { e, generation, termination } => {
                self.process_exit(e, generation, termination)
            }
        }
    }

    /// Injects one fault, and schedules the next while faults last.
    fn fault(&mut self) {
        if self.faults_over {
            return;
        }
        self.summary.faults += 1;
        match self.rng.range(0, 9) {
            0 | 1 => {
                let a = self.rng.index(self.agents.len());
                let down = Duration::from_millis(self.rng.range(100, 10_000));
                self.crash_agent(a);
                self.after(down, Event::AgentRestart(a));
            }
            2 if self.coord.is_some() => self.master_fault(),
            2 => self.crash_master(),
            3 | 4 => self.kill_random_executor(),
            5 | 6 => {
                let a = self.rng.index(self.agents.len());
                let length = Duration::from_millis(self.rng.range(1000, 120_000));
                self.trace(|| format!("fault: agent {a} partitioned for {length:?}"));
                self.net.partition(a, self.now + length);
            }
            _ => {
                let s = self.rng.index(self.schedulers.len());
                self.scheduler_failover(s);
            }
        }
        // Several masters fail more often than one: a quarter of the faults hit one more.
        if self.coord.is_some() && self.ha_rng.chance(0.25) {
            self.master_fault();
        }
        let next = Duration::from_millis(self.rng.range(2_000, 30_000));
        self.after(next, Event::Fault);
    }

    /// A timer input, for every master that runs a core (its own dispatcher's timers).
    fn serving_input(&mut self, input: impl Fn() -> agora_core::master::Input) {
        for m in 0..self.masters.len() {
            if self.masters[m].core.is_some() && self.masters[m].frozen_until <= self.now {
                self.master_input(m, input());
            }
        }
    }
}
