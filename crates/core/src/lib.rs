//! Agora's brain, free of IO: resources (with reservations and persistent volumes) and their
//! syntax, the offer operations, the DRF allocator, and the master and agent state machines.
//!
//! Every state machine here is driven by `handle(input, now) -> outputs`. Time, ids and randomness
//! arrive as inputs or as seeded generators, so the same code runs in the daemons and in the
//! deterministic simulator. Nothing in this crate touches tokio, clocks, files or sockets; the
//! `master` and `agent` crates own that.

pub mod agent;
pub mod allocator;
pub mod attributes;
pub mod call;
pub mod convert;
pub mod duration;
pub mod ids;
pub mod master;
pub mod offer_constraints;
pub mod operations;
pub mod resources;
pub mod status;
