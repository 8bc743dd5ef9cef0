//! Leader election and leader detection on ZooKeeper, in the layout Mesos masters use
//! (reference §5.9), so that pymesos, kazoo scripts and other Mesos tools find our leader:
//! under the group znode of a `zk://` URL every master contends with an **ephemeral
//! sequential** znode `json.info_<10-digit sequence>` holding its `MasterInfo` as Mesos JSON;
//! the lowest sequence leads.
//!
//! `contend` is a master's side: it enters the group and reports its `Standing` as it
//! changes (leading, following whom, or lost for good when the session ends or the
//! connection stays down longer than the session timeout, at which point a leader must stop
//! acting at once). `detect` is everyone else's side (agents, the client library, the CLI,
//! standby masters): the current leader's `MasterInfo`, following changes and reconnecting
//! across sessions. The registry of the elected master also lives under the group, below
//! `log_replicas`, the one child name Mesos's detectors skip (see `REGISTRY_NODE`); writes
//! there are fenced with a check on the writer's own candidacy znode (`Candidacy::node`).
//!
//! This crate does no leader work itself; it only says who leads.

mod url;

use std::sync::OnceLock;
use std::time::Duration;

use agora_proto::v1;
use tokio::sync::watch;
pub use url::{UrlError, ZkUrl};
pub use zookeeper_client as zk;

/// The prefix of a contender's znode name; the rest is the 10-digit sequence.
pub const INFO_PREFIX: &str = "json.info_";
/// The child of the group under which the master keeps its registry. Mesos keeps its
/// replicated log's replicas there, and every Mesos detector skips it when looking for the
/// leader, so nothing placed below it can be mistaken for a contender.
pub const REGISTRY_NODE: &str = "log_replicas";
/// Mesos's ZooKeeper session timeout (`--zk_session_timeout`).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("cannot reach ZooKeeper at {url}: {source}")]
    Connect { url: ZkUrl, source: zk::Error },
    #[error("ZooKeeper {url}: cannot {what}: {source}")]
    Request { url: ZkUrl, what: String, source: zk::Error },
}

/// Opens a session with the ensemble of `url`, authenticated with its credentials if it has
/// some.
pub async fn connect(url: &ZkUrl, session_timeout: Duration) -> Result<zk::Client, LeaderError> {
    let mut connector = zk::Client::connector()
        .with_session_timeout(session_timeout)
        .with_connection_timeout(session_timeout);
    if let Some(credentials) = &url.credentials {
        connector = connector.with_auth("digest", credentials.as_bytes());
    }
    let servers = url.servers.clone();
    // The client's session task is spawned where it connects: on the sessions' own runtime.
    let connected = sessions().spawn(async move { connector.connect(&servers).await }).await;
    match connected {
        Ok(connected) => {
            connected.map_err(|source| LeaderError::Connect { url: url.clone(), source })
        }
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The runtime every ZooKeeper session of this process runs on: one thread of its own, so
/// that pings and session upkeep keep their pace while the process's main runtime is busy
/// (a master taking 10,000 agent registrations at once once missed its pings for longer
/// than a 2 s session timeout, and was deposed for it).
fn sessions() -> &'static tokio::runtime::Handle {
    static SESSIONS: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("zookeeper".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime needs only the OS's timers and sockets");
                let _ = tx.send(runtime.handle().clone());
                runtime.block_on(std::future::pending::<()>());
            })
            .expect("the ZooKeeper thread starts");
        rx.recv().expect("the ZooKeeper thread hands over its runtime")
    })
}

/// The access control list of the znodes we create: open without credentials, as Mesos;
/// with credentials, everyone may read (detectors do not authenticate) and only the
/// authenticated creator may change them.
pub fn acls(url: &ZkUrl) -> zk::Acls<'static> {
    static WITH_CREDENTIALS: [zk::Acl; 2] = [
        zk::Acl::new_const(zk::Permission::READ, "world", "anyone"),
        zk::Acl::new_const(zk::Permission::ALL, "auth", ""),
    ];
    if url.credentials.is_some() {
        zk::Acls::new(&WITH_CREDENTIALS)
    } else {
        zk::Acls::anyone_all()
    }
}

/// The leading contender among a group's children: the lowest `json.info_` sequence. The
/// names are zero-padded, so the lexicographic minimum is the numeric one, which is how
/// pymesos and Mesos's own detector choose.
pub fn leader_node(children: &[String]) -> Option<&str> {
    children.iter().map(String::as_str).filter(|c| c.starts_with(INFO_PREFIX)).min()
}

/// `host:port` to reach a master, from its MasterInfo as detectors read it: `address.ip` and
/// `address.port` first (pymesos reads only those), then the hostname, then the legacy `ip`
/// field (network byte order read as a little-endian integer).
pub fn master_address(info: &v1::MasterInfo) -> Option<String> {
    if let Some(address) = &info.address {
        let port = address.port;
        if let Some(ip) = address.ip.as_deref().filter(|ip| !ip.is_empty()) {
            return Some(format!("{ip}:{port}"));
        }
        if let Some(host) = address.hostname.as_deref().filter(|h| !h.is_empty()) {
            return Some(format!("{host}:{port}"));
        }
    }
    if let Some(host) = info.hostname.as_deref().filter(|h| !h.is_empty()) {
        return Some(format!("{host}:{}", info.port));
    }
    (info.ip != 0).then(|| {
        let [a, b, c, d] = info.ip.to_le_bytes();
        format!("{a}.{b}.{c}.{d}:{}", info.port)
    })
}

/// Reads the MasterInfo a contender's znode holds; `Ok(None)` when the node is gone (it was
/// listed a moment ago) or does not hold Mesos JSON (logged: an unknown writer).
async fn read_info(
    client: &zk::Client,
    url: &ZkUrl,
    node: &str,
) -> Result<Option<v1::MasterInfo>, zk::Error> {
    match client.get_data(&url.child(node)).await {
        Ok((data, _)) => match agora_proto::from_json::<v1::MasterInfo>(&data) {
            Ok(info) => Ok(Some(info)),
            Err(e) => {
                tracing::warn!(%url, node, error = %e, "a contender's znode does not hold a MasterInfo");
                Ok(None)
            }
        },
        Err(zk::Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Follows the leader of the group at `url` for as long as the returned receiver is held:
/// `None` while no master leads (or none is known yet). Sessions that end are replaced; while
/// ZooKeeper cannot be reached the last leader seen stays, as Mesos's detector keeps it.
pub fn detect(url: ZkUrl, session_timeout: Duration) -> watch::Receiver<Option<v1::MasterInfo>> {
    let (tx, rx) = watch::channel(None);
    sessions().spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !tx.is_closed() {
            let client = match connect(&url, session_timeout).await {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "leader detection: ZooKeeper unreachable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let ended = tokio::select! {
                ended = follow(&client, &url, &tx) => ended,
                () = tx.closed() => return,
            };
            tracing::warn!(%url, reason = %ended, "leader detection: ZooKeeper session ended, reconnecting");
        }
    });
    rx
}

/// Publishes the group's leader on `tx` until the session ends; returns why it ended.
async fn follow(
    client: &zk::Client,
    url: &ZkUrl,
    tx: &watch::Sender<Option<v1::MasterInfo>>,
) -> String {
    let publish = |leader: Option<v1::MasterInfo>| {
        tx.send_if_modified(|current| {
            let changed = *current != leader;
            if changed {
                match leader.as_ref().and_then(master_address) {
                    Some(address) => {
                        tracing::info!(%url, %address, "detected a new leading master")
                    }
                    None => tracing::info!(%url, "no leading master"),
                }
                *current = leader;
            }
            changed
        });
    };
    loop {
        let watcher = match client.get_and_watch_children(&url.path).await {
            Ok((children, _, watcher)) => {
                let leader = match leader_node(&children) {
                    Some(node) => match read_info(client, url, node).await {
                        Ok(Some(info)) => Some(info),
                        // Gone between the listing and the read: list again.
                        Ok(None) if !children.iter().any(|c| c == node) => continue,
                        Ok(None) => None,
                        Err(e) => return e.to_string(),
                    },
                    None => None,
                };
                publish(leader);
                watcher
            }
            Err(zk::Error::NoNode) => {
                // No master ever created the group: wait for it to appear.
                publish(None);
                match client.check_and_watch_stat(&url.path).await {
                    Ok((Some(_), _)) => continue,
                    Ok((None, watcher)) => watcher,
                    Err(e) => return e.to_string(),
                }
            }
            Err(e) => return e.to_string(),
        };
        let event = watcher.changed().await;
        if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
            return format!("session {:?}", event.session_state);
        }
    }
}

/// A master's place in the election.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// Still entering the group.
    Entering,
    /// This master leads; `contenders` masters (itself included) are in the group.
    Leading { contenders: usize },
    /// Another master leads (`None`: one is listed but its znode could not be read).
    Following { leader: Option<Box<v1::MasterInfo>> },
    /// The candidacy is over for good: the session expired or was closed, or ZooKeeper stayed
    /// out of reach for longer than the session timeout (by then the ensemble may have
    /// expired the session and elected another leader). A leader must stop acting at once.
    Lost(String),
}

/// A master's candidacy, from `contend`. Dropping every handle to it (the `Candidacy` and the
/// standing receiver) withdraws it: the session closes and the znode goes.
pub struct Candidacy {
    client: zk::Client,
    url: ZkUrl,
    node: String,
    session_timeout: Duration,
}

impl Candidacy {
    /// The session the candidacy lives in, for the leader's registry writes.
    pub fn client(&self) -> &zk::Client {
        &self.client
    }

    /// The absolute path of this master's `json.info_` znode. It exists exactly as long as
    /// the candidacy's session, so a write made conditional on it (a multi-op with a version
    /// check of this path) fails once the session is gone: that is the fencing of a deposed
    /// leader.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn url(&self) -> &ZkUrl {
        &self.url
    }

    /// The session timeout the candidacy was entered with.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }
}

/// Enters the group at `url` with `info` (written as Mesos JSON) and follows this master's
/// standing. Errors only if ZooKeeper cannot be reached or refuses the znode at the start.
pub async fn contend(
    url: &ZkUrl,
    info: &v1::MasterInfo,
    session_timeout: Duration,
) -> Result<(Candidacy, watch::Receiver<Standing>), LeaderError> {
    let client = connect(url, session_timeout).await?;
    let request = |what: &str| {
        let url = url.clone();
        let what = what.to_string();
        move |source| LeaderError::Request { url, what, source }
    };
    let acls = acls(url);
    client
        .mkdir(&url.path, &zk::CreateMode::Persistent.with_acls(acls))
        .await
        .map_err(request("create the group znode"))?;
    let data = agora_proto::to_json(info);
    let options = zk::CreateMode::EphemeralSequential.with_acls(acls);
    let (_, sequence) = client
        .create(&url.child(INFO_PREFIX), data.as_bytes(), &options)
        .await
        .map_err(request("create the contender znode"))?;
    let name = format!("{INFO_PREFIX}{sequence}");
    tracing::info!(%url, node = %name, "entered the leader election");
    let (tx, rx) = watch::channel(Standing::Entering);
    let candidacy = Candidacy {
        client: client.clone(),
        url: url.clone(),
        node: url.child(&name),
        session_timeout,
    };
    let url = url.clone();
    sessions().spawn(async move {
        let lost = tokio::select! {
            lost = stand(&client, &url, &name, session_timeout, &tx) => lost,
            () = tx.closed() => return,
        };
        tracing::warn!(%url, node = %name, reason = %lost, "lost the ZooKeeper session of the candidacy");
        let _ = tx.send(Standing::Lost(lost));
    });
    Ok((candidacy, rx))
}

/// Publishes this contender's standing until the candidacy is lost; returns why.
async fn stand(
    client: &zk::Client,
    url: &ZkUrl,
    name: &str,
    session_timeout: Duration,
    tx: &watch::Sender<Standing>,
) -> String {
    let mut states = client.state_watcher();
    // Set while disconnected: the moment the session may have expired on the ensemble.
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let (children, watcher) = match client.get_and_watch_children(&url.path).await {
            Ok((children, _, watcher)) => (children, watcher),
            Err(e) => return format!("cannot list the group: {e}"),
        };
        if !children.iter().any(|c| c == name) {
            return "this master's znode is gone from the group".into();
        }
        let standing = match leader_node(&children) {
            Some(leader) if leader == name => Standing::Leading {
                contenders: children.iter().filter(|c| c.starts_with(INFO_PREFIX)).count(),
            },
            Some(leader) => match read_info(client, url, leader).await {
                Ok(info) => Standing::Following { leader: info.map(Box::new) },
                Err(e) => return format!("cannot read the leader's znode: {e}"),
            },
            None => return "this master's znode is gone from the group".into(),
        };
        tx.send_if_modified(|current| {
            let changed = *current != standing;
            if changed {
                tracing::info!(%url, node = name, ?standing, "election standing");
                *current = standing;
            }
            changed
        });
        let mut watcher = std::pin::pin!(watcher.changed());
        loop {
            tokio::select! {
                event = &mut watcher => {
                    if event.event_type == zk::EventType::Session
                        && event.session_state.is_terminated()
                    {
                        return format!("session {:?}", event.session_state);
                    }
                    break;
                }
                state = states.changed() => match state {
                    zk::SessionState::Disconnected => {
                        tracing::warn!(%url, "disconnected from ZooKeeper");
                        deadline.get_or_insert(tokio::time::Instant::now() + session_timeout);
                    }
                    state if state.is_terminated() => return format!("session {state:?}"),
                    _ => deadline = None,
                },
                () = sleep_until(deadline) => {
                    return format!(
                        "disconnected from ZooKeeper for longer than the session timeout ({session_timeout:?})"
                    );
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_sequence_leads_and_other_children_never_do() {
        let children: Vec<String> =
            ["log_replicas", "json.info_0000000012", "json.info_0000000003", "other"]
                .map(String::from)
                .into();
        assert_eq!(leader_node(&children), Some("json.info_0000000003"));
        assert_eq!(leader_node(&["log_replicas".to_string()]), None);
    }

    #[test]
    fn addresses_come_from_address_first_then_hostname_then_ip() {
        let mut info = v1::MasterInfo {
            id: "m".into(),
            ip: u32::from_le_bytes([10, 0, 0, 7]),
            port: 5050,
            hostname: Some("m1".into()),
            address: Some(v1::Address {
                hostname: Some("m1".into()),
                ip: Some("127.0.0.1".into()),
                port: 5051,
            }),
            ..Default::default()
        };
        assert_eq!(master_address(&info).as_deref(), Some("127.0.0.1:5051"));
        info.address = None;
        assert_eq!(master_address(&info).as_deref(), Some("m1:5050"));
        info.hostname = None;
        assert_eq!(master_address(&info).as_deref(), Some("10.0.0.7:5050"));
    }
}
