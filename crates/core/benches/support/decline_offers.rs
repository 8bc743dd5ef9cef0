//! The DeclineOffers scenario shared by the criterion bench (`benches/allocator.rs`) and the
//! table-printing example (`examples/allocator_bench.rs`).
//!
//! It mirrors Mesos's `HierarchicalAllocator_BENCHMARK_Test.DeclineOffers`: every agent has
//! `cpus:24;mem:4096;disk:4096;ports:[31000-32000]`, of which `cpus:16;mem:2014;disk:1024` and
//! 16 ports are already used by one framework (round-robin over the frameworks); all frameworks
//! subscribe to role `*`; before each cycle every offer of the previous cycle is declined with
//! a filter of `INT_MAX` seconds. Only the allocation cycle itself is meant to be timed. The
//! agents and frameworks are the allocator's own in-process records; no protocol is involved.

use std::time::Duration;

use agora_core::allocator::{Allocation, Allocator, AllocatorConfig};
use agora_core::resources::Resources;

/// One grid point in progress.
pub(crate) struct DeclineOffers {
    allocator: Allocator,
    offers: Vec<Allocation>,
    round: u64,
}

impl DeclineOffers {
    /// Adds `frameworks` frameworks and `agents` agents.
    pub(crate) fn new(agents: usize, frameworks: usize) -> DeclineOffers {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        let total = Resources::parse("cpus:24;mem:4096;disk:4096;ports:[31000-32000]")
            .expect("the benchmark's resources are valid");
        // Sixteen single ports spread over the range, like Mesos's 16 fragments.
        let ports: Vec<String> = (0..16).map(|i| format!("{p}-{p}", p = 31_000 + i * 61)).collect();
        let used =
            Resources::parse(&format!("cpus:16;mem:2014;disk:1024;ports:[{}]", ports.join(",")))
                .expect("the benchmark's resources are valid");
        let roles = vec!["*".to_string()];
        let ids: Vec<String> = (0..frameworks).map(|i| format!("framework-{i:05}")).collect();
        for id in &ids {
            allocator.add_framework(id, &roles, &[], true);
        }
        for i in 0..agents {
            let held = [(ids[i % frameworks].clone(), "*".to_string(), used.clone())];
            allocator.add_agent(&format!("agent-{i:06}"), total.clone(), &held);
        }
        DeclineOffers { allocator, offers: Vec::new(), round: 0 }
    }

    /// Declines every offer of the previous cycle with a filter of `INT_MAX` seconds (untimed
    /// part of a round), and returns the time of the coming cycle.
    pub(crate) fn decline_all(&mut self) -> Duration {
        let now = Duration::from_secs(self.round);
        let refuse = Some(Duration::from_secs(i32::MAX as u64));
        for offer in self.offers.drain(..) {
            self.allocator.recover(
                &offer.framework_id,
                &offer.role,
                &offer.agent_id,
                &offer.resources,
                refuse,
                now,
            );
        }
        now
    }

    /// Runs the cycle (the timed part) and keeps its offers for the next decline; returns how
    /// many offers it made.
    pub(crate) fn cycle(&mut self, now: Duration) -> usize {
        self.offers = self.allocator.allocate(now);
        self.round += 1;
        self.offers.len()
    }
}
