//! `agora events`: the master's operator event stream (SUBSCRIBE), printed live, one line per
//! event: a readable summary, or with `--json` the raw event in Mesos's JSON mapping (one
//! event per line, so that `jq` or `grep` can follow it).
//!
//! It runs until the operator interrupts it. When the stream breaks (the master closed it,
//! the connection failed, or the master went silent for three heartbeat intervals, which is
//! how a vanished master shows), it says so in one plain line on stderr and subscribes again
//! with backoff (a restarted master may take a while to come back); the new subscription
//! starts with a fresh SUBSCRIBED snapshot, which is printed like any event, so nothing of
//! the master's state is missed. Only the very first subscription's failure ends the
//! command, because then the address is most likely wrong.

use std::process::ExitCode;
use std::time::Duration;

use agora_client::Subscription;
use agora_proto::master::Event;

use super::{Master, out, render, views, waiting};

/// The first wait before subscribing again; it doubles up to `BACKOFF_MAX` while attempts
/// fail and starts over once a subscription is back.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// `agora events [--json]`.
pub(crate) async fn events(master: &Master, json: bool) -> anyhow::Result<ExitCode> {
    let message = format!("subscribing to the master at {}", master.address());
    let mut stream = waiting(&message, master.operator().await?.subscribe())
        .await
        .map_err(|e| master.explain(e))?;
    loop {
        let reason = print_until_broken(master, &mut stream, json).await;
        eprintln!("agora: {reason}; subscribing again");
        stream = resubscribe(master).await;
    }
}

/// Prints the stream's events until it breaks; returns why it broke.
async fn print_until_broken(
    master: &Master,
    stream: &mut Subscription<Event>,
    json: bool,
) -> String {
    // Unknown until SUBSCRIBED says it; until then the stream may take as long as it takes.
    let mut patience: Option<Duration> = None;
    loop {
        let next = match patience {
            Some(limit) => match tokio::time::timeout(limit, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return format!(
                        "the master at {} sent nothing for {}s, three heartbeat intervals",
                        master.address(),
                        render::number(limit.as_secs_f64(), 1)
                    );
                }
            },
            None => stream.next().await,
        };
        match next {
            Ok(Some(event)) => {
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
            Ok(None) => {
                return format!("the master at {} closed the event stream", master.address());
            }
            Err(e) => return format!("the event stream broke: {}", master.explain(e)),
        }
    }
}

/// Subscribes again, waiting longer after each failed attempt, until it works.
async fn resubscribe(master: &Master) -> Subscription<Event> {
    let mut backoff = BACKOFF_MIN;
    loop {
        tokio::time::sleep(backoff).await;
        let operator = match master.operator().await {
            Ok(operator) => operator,
            Err(e) => {
                eprintln!("agora: {e:#}; trying again");
                continue;
            }
        };
        match operator.subscribe().await {
            Ok(stream) => return stream,
            Err(e) => {
                eprintln!(
                    "agora: cannot subscribe yet ({}); trying again in {}s",
                    master.explain(e),
                    render::number((backoff * 2).min(BACKOFF_MAX).as_secs_f64(), 2)
                );
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
