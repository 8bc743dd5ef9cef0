//! Build script of `agora-proto`: compiles our own `.proto` files with protox
//! (pure Rust, so no `protoc` on the machine), writes the descriptor set to
//! `$OUT_DIR/fds.bin` for the runtime JSON mapping, and generates the prost
//! types. It never downloads anything and does not touch files outside
//! `$OUT_DIR`.

use std::path::PathBuf;

use protox::prost::Message as _;

/// The files compiled, relative to the `proto` include directory. Imports
/// are resolved from the same directory.
const PROTOS: [&str; 7] = [
    "mesos/v1/mesos.proto",
    "mesos/v1/scheduler/scheduler.proto",
    "mesos/v1/executor/executor.proto",
    "mesos/v1/master/master.proto",
    "mesos/v1/agent/agent.proto",
    "mesos/v1/quota/quota.proto",
    "agora/internal/v1/internal.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(out_dir.join("fds.bin"), fds.encode_to_vec())?;

    prost_build::Config::new().bytes(["."]).enable_type_names().compile_fds(fds)?;
    Ok(())
}
