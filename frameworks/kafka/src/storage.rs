//! Where the scheduler keeps its `State`: `file:<path>` (a JSON file, replaced atomically) or
//! `zk:<path>` (one znode under the `--zk` ensemble and chroot), as Kafka-on-Mesos's
//! `--storage` names them.
//!
//! A save returns only once the state is durable (fsync, or ZooKeeper's acknowledgement), so
//! the dispatcher can promise after it. It knows nothing of what the state means.

use std::path::PathBuf;
use std::time::Duration;

use agora_leader::{ZkUrl, zk as zookeeper_client};
use anyhow::{Context, bail};

use crate::core::State;

pub enum Storage {
    File(PathBuf),
    Zk { client: zookeeper_client::Client, url: ZkUrl },
}

/// How long a ZooKeeper session survives a lost connection.
const ZK_SESSION: Duration = Duration::from_secs(30);

impl Storage {
    /// `file:<path>`, or `zk:/<path>` with `zk` naming the ensemble (and its chroot).
    pub async fn open(spec: &str, zk: Option<&str>) -> anyhow::Result<Storage> {
        match spec.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(Storage::File(PathBuf::from(path))),
            Some(("zk", path)) if path.starts_with('/') && path.len() > 1 => {
                let zk = zk.context("--storage zk:... needs --zk host:port[/chroot]")?;
                let base = zk.strip_prefix("zk://").unwrap_or(zk).trim_end_matches('/');
                let url: ZkUrl = format!("zk://{base}{path}")
                    .parse()
                    .with_context(|| format!("invalid --zk {zk:?} with --storage {spec:?}"))?;
                let client = agora_leader::connect(&url, ZK_SESSION).await?;
                let acls = agora_leader::acls(&url);
                let options = zookeeper_client::CreateMode::Persistent.with_acls(acls);
                // Create the parents; the node itself is created by the first save.
                let mut parent = String::new();
                let parts: Vec<&str> = url.path.split('/').filter(|p| !p.is_empty()).collect();
                for part in &parts[..parts.len().saturating_sub(1)] {
                    parent = format!("{parent}/{part}");
                    match client.create(&parent, &[], &options).await {
                        Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                        Err(e) => bail!("ZooKeeper: cannot create {parent}: {e}"),
                    }
                }
                Ok(Storage::Zk { client, url })
            }
            _ => bail!("invalid --storage {spec:?}: expected file:<path> or zk:/<path>"),
        }
    }

    pub async fn load(&self) -> anyhow::Result<State> {
        let data = match self {
            Storage::File(path) => match std::fs::read(path) {
                Ok(data) => data,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            },
            Storage::Zk { client, url } => match client.get_data(&url.path).await {
                Ok((data, _)) => data,
                Err(zookeeper_client::Error::NoNode) => return Ok(State::default()),
                Err(e) => bail!("ZooKeeper: cannot read {}: {e}", url.path),
            },
        };
        serde_json::from_slice(&data).context("corrupt scheduler state")
    }

    pub async fn save(&self, state: &State) -> anyhow::Result<()> {
        let data = serde_json::to_vec_pretty(state).context("serialize state")?;
        match self {
            Storage::File(path) => {
                // A temporary file, synced and renamed over the old state: a crash leaves one
                // or the other, never half of one.
                let tmp = path.with_extension("tmp");
                let write = || -> std::io::Result<()> {
                    let mut file = std::fs::File::create(&tmp)?;
                    std::io::Write::write_all(&mut file, &data)?;
                    file.sync_all()?;
                    std::fs::rename(&tmp, path)
                };
                write().with_context(|| format!("cannot write {}", path.display()))
            }
            Storage::Zk { client, url } => match client.set_data(&url.path, &data, None).await {
                Ok(_) => Ok(()),
                Err(zookeeper_client::Error::NoNode) => {
                    let options =
                        zookeeper_client::CreateMode::Persistent.with_acls(agora_leader::acls(url));
                    client
                        .create(&url.path, &data, &options)
                        .await
                        .map(|_| ())
                        .with_context(|| format!("ZooKeeper: cannot create {}", url.path))
                }
                Err(e) => bail!("ZooKeeper: cannot write {}: {e}", url.path),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_state_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = format!("file:{}", dir.path().join("state.json").display());
        let storage = Storage::open(&spec, None).await.expect("open");
        assert_eq!(storage.load().await.expect("empty"), State::default());
        let mut state = State { framework_id: Some("f".into()), ..Default::default() };
        state.brokers.insert(0, crate::model::Broker::new(0));
        storage.save(&state).await.expect("save");
        assert_eq!(storage.load().await.expect("load"), state);
    }

    #[tokio::test]
    async fn bad_specs_are_refused() {
        for (spec, zk) in
            [("kafka.json", None), ("zk:/x", None), ("zk:x", Some("h:2181")), ("s3:x", None)]
        {
            assert!(Storage::open(spec, zk).await.is_err(), "{spec}");
        }
    }
}
