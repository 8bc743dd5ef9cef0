//! `agora-sim` runs the real sans-IO cores of Agora (the master, agents, command executors)
//! together with scripted schedulers on a virtual clock, over a seeded network that delays,
//! reorders and drops messages and partitions agents, while agents, masters and executors
//! crash; after every step it checks the invariants of `invariants.rs`, and at the end that
//! every task reached a settled state. One seed is one run, replayed exactly.
//!
//! With `Options::masters` above one, the masters contend in a modelled coordination service
//! (`coord.rs`: sessions that expire, sequential candidacy nodes, a fenced registry) and
//! follow the election as the real shells do (`nodes/election.rs`): only the elected master
//! recovers from the registry and serves, agents and schedulers find it through their
//! detectors, and a leader cut off from the service or frozen past its session timeout is
//! deposed while it still runs, and keeps acting until it learns so; its registry writes are
//! refused.
//!
//! The simulator holds no copy of the cores' logic: it plays the part of their IO shells
//! (`crates/master/src/dispatcher.rs`, `crates/agent/src/dispatcher.rs` and `master_link.rs`,
//! the executor's `lib.rs` and `shell.rs`), and of the world around them (processes, disks,
//! sockets). Messages arrive twice only where the real senders make copies: scheduler calls (a
//! retrying HTTP client), agents' and executors' status updates (`--duplicate-updates`: the
//! update manager re-sends its unacknowledged head, the executor retries an UPDATE whose
//! answer it lost, and a re-subscribing executor carries its unacknowledged updates); streams
//! and other agent calls never duplicate, as TCP and the agent's link do not. What it does
//! not model yet: slow disks and failed disk writes, a quorum of masters, redirects from
//! standby masters, task groups and custom executors, the operator API.

mod coord;
mod invariants;
mod network;
mod nodes;
mod rng;
mod sim;

use std::fmt;
use std::time::Duration;

pub use rng::Rng;

/// What one run looks like.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Print every step.
    pub trace: bool,
    /// Masters in the election; one (the default) runs the single-master setup with the
    /// embedded registry, as before several existed, so that pinned seeds keep their runs.
    pub masters: usize,
    pub agents: usize,
    pub schedulers: usize,
    /// Virtual time with faults and new work.
    pub fault_time: Duration,
    /// Virtual time after that, with a healed network and no faults, for everything to settle.
    pub quiet_time: Duration,
    /// A run stops (and fails) after this many steps.
    pub max_steps: u64,
    /// Every other scheduler runs a framework that does not checkpoint. Off by default until
    /// the master and the agent agree on what a lost master connection does to such tasks
    /// (see `tests/regressions.rs`).
    pub non_checkpointing: bool,
    /// Schedulers kill some of their running tasks. Off by default until the agent stops
    /// answering a KILL of a finished task with TASK_LOST (see `tests/regressions.rs`).
    pub kills: bool,
    /// Hold reconciliation answers to the same order as the update stream. Off by default:
    /// the master answers from its latest knowledge (a task's `latest_state`, or nothing for a
    /// task already completed), which may run ahead of, or contradict, updates still in flight,
    /// as in Mesos (see `tests/regressions.rs`).
    pub strict_reconciliation: bool,
    /// Let the network duplicate ACCEPT calls too, not only idempotent ones. Off by default:
    /// the copy finds its offer used and the master answers TASK_LOST (REASON_INVALID_OFFERS)
    /// for tasks the first copy launched, as Mesos does (see `tests/regressions.rs`).
    pub duplicate_accepts: bool,
    /// Hold the master's TASK_LOST for an unreachable agent as final. Off by default: for a
    /// framework that is not partition-aware it is not (the agent may come back and report
    /// the task), as Mesos documents (see `tests/regressions.rs`).
    pub strict_lost: bool,
    /// Hold the master's announcement of a returning agent's tasks (REASON_AGENT_REREGISTERED)
    /// to the order of the update stream. Off by default until the master stops announcing a
    /// task's latest state ahead of older updates the agent still holds (see
    /// `tests/regressions.rs`).
    pub strict_announcements: bool,
    /// Let status updates arrive twice where the real senders re-send them: an agent's
    /// STATUS_UPDATE (its update manager re-sends the unacknowledged head) and an executor's
    /// UPDATE (its sender retries a call whose answer it lost). Off by default so that the
    /// seeds pinned before it keep their runs; on in the sweep.
    pub duplicate_updates: bool,
}

impl Options {
    /// The flags of `agora-sim` that select these options' workload (beyond the seed).
    pub fn flags(&self) -> String {
        let mut flags = String::new();
        let defaults = Options::new(self.seed);
        if self.masters != defaults.masters {
            flags += &format!(" --masters {}", self.masters);
        }
        if self.max_steps != defaults.max_steps {
            flags += &format!(" --steps {}", self.max_steps);
        }
        for (on, flag) in [
            (self.non_checkpointing, " --non-checkpointing"),
            (self.kills, " --kills"),
            (self.strict_reconciliation, " --strict-reconciliation"),
            (self.duplicate_accepts, " --duplicate-accepts"),
            (self.strict_lost, " --strict-lost"),
            (self.strict_announcements, " --strict-announcements"),
            (self.duplicate_updates, " --duplicate-updates"),
        ] {
            if on {
                flags += flag;
            }
        }
        flags
    }

    /// The defaults for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            trace: false,
            masters: 1,
            agents: 3,
            schedulers: 2,
            fault_time: Duration::from_secs(300),
            quiet_time: Duration::from_secs(400),
            max_steps: 2_000_000,
            non_checkpointing: false,
            kills: false,
            strict_reconciliation: false,
            duplicate_accepts: false,
            strict_lost: false,
            strict_announcements: false,
            duplicate_updates: false,
        }
    }
}

/// A broken invariant, with what it takes to see it again.
#[derive(Debug, Clone)]
pub struct Violation {
    pub seed: u64,
    pub step: u64,
    /// Virtual time since the start of the run.
    pub time: Duration,
    pub message: String,
    /// The command-line flags of the options that differ from the defaults.
    pub flags: String,
}

impl Violation {
    /// The command that replays the run with a trace of every step.
    pub fn replay_command(&self) -> String {
        format!("cargo run -p agora-sim -- --seed {}{} --trace", self.seed, self.flags)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} step {} at {:.3}s: {}\nreplay: {}",
            self.seed,
            self.step,
            self.time.as_secs_f64(),
            self.message,
            self.replay_command()
        )
    }
}

impl std::error::Error for Violation {}

/// What a successful run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub steps: u64,
    pub tasks_launched: u64,
    pub updates_seen: u64,
    pub faults: u64,
    /// Status updates the network sent twice.
    pub duplicates: u64,
    /// Masters that learned they lead and recovered (several masters).
    pub elections: u64,
    /// Registry writes the coordination service refused (a deposed or cut-off leader's).
    pub refused_writes: u64,
    /// Of those, the writes that reached the service and failed the fence.
    pub fenced_writes: u64,
    /// Messages masters sent after their session was gone, before they learned so.
    pub deposed_messages: u64,
}

/// Runs one simulation; `Err` on the first broken invariant.
pub fn run(options: &Options) -> Result<Summary, Violation> {
    sim::Sim::new(options.clone()).run()
}

/// Runs one simulation and returns its trace too (every line `--trace` prints), to show that
/// a seed replays step for step.
pub fn run_traced(options: &Options) -> (Result<Summary, Violation>, Vec<String>) {
    let mut sim = sim::Sim::new(options.clone());
    sim.keep_trace();
    let result = sim.run();
    (result, sim.take_trace())
}
