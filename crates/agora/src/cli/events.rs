//! `agora events`: the master's operator event stream (SUBSCRIBE), printed live, one line per
//! event: a readable summary, or with `--json` the raw event in Mesos's JSON mapping (one
//! event per line, so that `jq` or `grep` can follow it).
//!
//! It runs until the master closes the stream, goes silent for three heartbeat intervals (a
//! master that vanished without closing the connection), or the operator interrupts it;
//! reconnecting after a master restart is left to whoever runs it (a new subscription starts
//! with a fresh SUBSCRIBED snapshot anyway).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use super::{Master, out, render, views, waiting};

/// `agora events [--json]`.
pub(crate) async fn events(master: &Master, json: bool) -> anyhow::Result<ExitCode> {
    let message = format!("subscribing to the master at {}", master.address());
    let mut stream =
        waiting(&message, master.operator().subscribe()).await.map_err(|e| master.explain(e))?;
    // Unknown until SUBSCRIBED says it; until then the stream may take as long as it takes.
    let mut patience: Option<Duration> = None;
    loop {
        let next = match patience {
            Some(limit) => match tokio::time::timeout(limit, stream.next()).await {
                Ok(next) => next,
                Err(_) => bail!(
                    "the master at {} sent nothing for {}s, three heartbeat intervals; is it still running?",
                    master.address(),
                    render::number(limit.as_secs_f64(), 1)
                ),
            },
            None => stream.next().await,
        };
        match next.map_err(|e| master.explain(e))? {
            Some(event) => {
                if let Some(interval) = event
                    .subscribed
                    .as_ref()
                    .and_then(|s| s.heartbeat_interval_seconds)
                    .filter(|h| h.is_finite() && *h > 0.0)
                {
                    patience = Some(Duration::from_secs_f64(interval * 3.0));
                }
                let mut line =
                    if json { agora_proto::to_json(&event) } else { views::event_line(&event) };
                line.push('\n');
                out(&line);
            }
            None => bail!("the master at {} closed the event stream", master.address()),
        }
    }
}
