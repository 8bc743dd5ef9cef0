//! Rust clients for the Mesos v1 HTTP APIs as Agora speaks them: the RecordIO subscription
//! stream and plain calls (`http`), thin scheduler and executor sessions on top, and the
//! operator API with an agent's files API (`operator`), and which master to talk to when
//! `--master` is a `zk://` URL (`leader`).
//!
//! The agent uses the same machinery for its internal link to the master; `agora execute`, the
//! command executor and the integration tests use the sessions. This crate holds no policy:
//! retries and reconnection belong to its callers.

pub mod executor;
pub mod http;
pub mod leader;
pub mod operator;
pub mod scheduler;

pub use http::{ClientError, Subscription};
