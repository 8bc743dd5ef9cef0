//! `agora-proto` owns Agora's wire types: the prost structs generated from our
//! own `.proto` files for the Mesos v1 core, scheduler and executor APIs and
//! for Agora's internal master/agent protocol, plus the encodings they travel
//! in (the Mesos JSON mapping, content-type negotiation, RecordIO framing).
//! It holds no behaviour: validation, state machines and HTTP handling live
//! in the crates that use these types.
//!
//! Module nesting follows the protobuf packages, because prost refers to
//! types of other packages by relative `super::` paths.

/// Generated code for the `mesos.*` packages.
pub mod mesos {
    /// Package `mesos.v1`: the core messages shared by every API.
    // Generated code is not ours to restyle: prost's output and the doc
    // comments it copies from the .proto files must not fail the workspace's
    // `-D warnings` when a newer clippy grows a lint. Silenced here only.
    #[allow(unreachable_pub, missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mesos.v1.rs"));

        /// Package `mesos.v1.scheduler`: `Call` and `Event` of `/api/v1/scheduler`.
        pub mod scheduler {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.scheduler.rs"));
        }

        /// Package `mesos.v1.executor`: `Call` and `Event` of `/api/v1/executor`.
        pub mod executor {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.executor.rs"));
        }

        /// Package `mesos.v1.master`: `Call`, `Response` and `Event` of the master's
        /// operator API (`/api/v1`).
        pub mod master {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.master.rs"));
        }

        /// Package `mesos.v1.agent`: `Call` and `Response` of the agent's operator API
        /// (`/api/v1` on an agent).
        pub mod agent {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.agent.rs"));
        }

        /// Package `mesos.v1.quota`: quota configurations.
        pub mod quota {
            include!(concat!(env!("OUT_DIR"), "/mesos.v1.quota.rs"));
        }
    }
}

/// Generated code for the `agora.*` packages.
pub mod agora {
    /// Generated code for `agora.internal.*`.
    pub mod internal {
        /// Package `agora.internal.v1`: the master <-> agent protocol.
        // Generated code; see the note on `mesos::v1`.
        #[allow(unreachable_pub, missing_docs, clippy::all, clippy::pedantic)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/agora.internal.v1.rs"));
        }
    }
}

pub mod codec;
pub mod json;
pub mod recordio;

pub use agora::internal::v1 as internal;
pub use codec::{DecodeError, Format};
pub use json::{JsonError, from_json, to_json, to_json_value};
pub use mesos::v1;
pub use mesos::v1::agent;
pub use mesos::v1::executor;
pub use mesos::v1::master;
pub use mesos::v1::scheduler;
