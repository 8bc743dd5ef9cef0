//! The simulated nodes, each the stand-in for one of Agora's IO shells around a real core:
//! the masters (`master.rs`) and their part in the election with the registry they share
//! (`election.rs`), agents with their checkpoint disks (`agent.rs`), command
//! executors with their task processes (`executor.rs`) and scripted schedulers
//! (`scheduler.rs`). Each file adds the node's reactions to `Sim`; none decides anything the
//! cores decide.

pub(crate) mod agent;
pub(crate) mod election;
pub(crate) mod executor;
pub(crate) mod master;
pub(crate) mod scheduler;
