//! `agora events`: the master's operator event stream (SUBSCRIBE), printed live, one line per
//! event: a readable summary, or with `--json` the raw event in Mesos's JSON mapping (one
//! event per line, so that `jq` or `grep` can follow it).
//!
//! It runs until the master closes the stream or the operator interrupts it; reconnecting
//! after a master restart is left to whoever runs it (a new subscription starts with a fresh
//! SUBSCRIBED snapshot anyway).

use std::process::ExitCode;

use anyhow::bail;

use super::{Master, out, views, waiting};

/// `agora events [--json]`.
pub(crate) async fn events(master: &Master, json: bool) -> anyhow::Result<ExitCode> {
    let message = format!("subscribing to the master at {}", master.address());
    let mut stream =
        waiting(&message, master.operator().subscribe()).await.map_err(|e| master.explain(e))?;
    loop {
        match stream.next().await.map_err(|e| master.explain(e))? {
            Some(event) => {
                let mut line =
                    if json { agora_proto::to_json(&event) } else { views::event_line(&event) };
                line.push('\n');
                out(&line);
            }
            None => bail!("the master at {} closed the event stream", master.address()),
        }
    }
}
