//! The Kafka framework of Agora: Kafka-protocol brokers (tansu) managed on an Agora cluster,
//! with the CLI and REST API of Kafka-on-Mesos.
//!
//! `core` (with `model`, `expr` and `constraint`) is the sans-IO brain: brokers, expressions,
//! constraints, placement, failover backoff and stickiness. The rest are thin IO shells around
//! it: the scheduler's loop and state storage, the REST API, the CLI, the executor that runs a
//! broker process, and a minimal Kafka protocol client for topic administration.

pub mod api;
pub mod cli;
pub mod constraint;
pub mod core;
pub mod executor;
pub mod expr;
pub mod kafka;
pub mod model;
pub mod scheduler;
pub mod storage;
