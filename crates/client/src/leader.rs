//! Which master to talk to: `--master` is either `host:port` or a `zk://` URL, in which case
//! the leading master is the one ZooKeeper names (`agora-leader`, the layout Mesos uses), and
//! it may change while a client runs.

use std::time::Duration;

use agora_leader::{DEFAULT_SESSION_TIMEOUT, UrlError, ZkUrl};
use tokio::sync::watch;

/// The current master's `host:port`; `None` while ZooKeeper names none.
pub type Masters = watch::Receiver<Option<String>>;

/// Follows `master`: a fixed `host:port`, or the leader under a `zk://` URL (detected in the
/// background for as long as the receiver is held; needs a tokio runtime).
pub fn follow(master: &str) -> Result<Masters, UrlError> {
    if !ZkUrl::is_zk(master) {
        return Ok(watch::channel(Some(master.to_string())).1);
    }
    let url: ZkUrl = master.parse()?;
    let mut leaders = agora_leader::detect(url, DEFAULT_SESSION_TIMEOUT);
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        loop {
            let address =
                leaders.borrow_and_update().as_ref().and_then(agora_leader::master_address);
            tx.send_if_modified(|current| {
                let changed = *current != address;
                *current = address;
                changed
            });
            tokio::select! {
                changed = leaders.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    Ok(rx)
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("no master leads under {0} (waited {1:?}); are the masters running with --zk {0}?")]
    NoLeader(String, Duration),
}

/// The current master of `masters`, waiting up to `wait` for ZooKeeper to name one; `source`
/// is what `--master` said, for the error.
pub async fn current(
    masters: &mut Masters,
    source: &str,
    wait: Duration,
) -> Result<String, LookupError> {
    match tokio::time::timeout(wait, masters.wait_for(Option::is_some)).await {
        Ok(Ok(address)) => Ok(address.clone().unwrap_or_default()),
        _ => Err(LookupError::NoLeader(source.to_string(), wait)),
    }
}

/// The leading master's `host:port` right now, for a client that talks to it once.
pub async fn leading_master(master: &str, wait: Duration) -> Result<String, LookupError> {
    let mut masters = follow(master)?;
    current(&mut masters, master, wait).await
}
