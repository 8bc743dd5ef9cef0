//! The registry in ZooKeeper, for masters elected through `--zk` (issue 8): the same records
//! as the embedded store, one znode per record, under the group's `log_replicas` child
//! (which Mesos's leader detectors skip):
//!
//! ```text
//! <group>/log_replicas/registry/format             format version (decimal text)
//! <group>/log_replicas/registry/master             the last leader's MasterInfo (protobuf)
//! <group>/log_replicas/registry/<table>/<bb>/<key> a record (protobuf); bb = 00..63
//! ```
//!
//! Records are spread over 64 bucket znodes per table, so that no znode's child list comes
//! near ZooKeeper's 1 MB packet limit (`jute.maxbuffer`) even at 50k agents (≈800 names per
//! bucket). Keys are percent-escaped into single znode names.
//!
//! Every write is a multi-op that starts with a version check of the writer's own
//! `json.info_` candidacy znode: the znode lives exactly as long as the leader's session, so
//! a deposed leader (its session expired, another master elected) can no longer change
//! anything. A batch of the dispatcher is one multi-op, split only when it would exceed a
//! packet; the dispatcher answers nothing of the batch before every part is confirmed. The
//! leader is the only writer, so it knows which record znodes exist (`known`) and can pick
//! create, set or delete without reading first.
//!
//! The store has its own ZooKeeper session, apart from the candidacy's: a slow batch (a
//! large multi-op waiting for the ensemble's disk) must not delay the candidacy's pings
//! until its session times out, which would depose a healthy leader under load. Fencing does
//! not need the candidacy's session, only its znode. A batch whose answer was lost (the
//! connection dropped, or the store's session ended) is tried again, after re-reading which
//! of its records exist: each write says what a record must hold, so applying it twice does
//! no harm, and the check keeps a deposed leader out. Only a failed check, or ZooKeeper out of
//! reach for longer than a session, ends the leader.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agora_core::master::RegistryOp;
use agora_leader::{Candidacy, REGISTRY_NODE, ZkUrl, zk};
use agora_proto::{internal, v1};
use futures::StreamExt;
use prost::Message;

use super::{RegistryError, Table, decode_into, writes};

/// Buckets per table.
const BUCKETS: u64 = 64;
/// Layout version; another one is refused rather than misread.
const FORMAT_VERSION: &str = "1";
/// The most record bytes in one multi-op, well under the 1 MB packet limit.
const MAX_MULTI_BYTES: usize = 512 * 1024;
/// The pause before a write whose outcome is unknown is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Reads in flight at once when loading the registry.
const READ_WINDOW: usize = 1024;

/// See the module documentation.
pub struct ZkStore {
    /// The store's own session; replaced when it ends.
    client: Mutex<zk::Client>,
    url: ZkUrl,
    session_timeout: Duration,
    /// The leader's candidacy znode that every write checks.
    fence: String,
    /// `<group>/log_replicas/registry`.
    root: String,
    /// Paths of the record znodes that exist.
    known: Mutex<HashSet<String>>,
    commits: AtomicU64,
    acls: zk::Acls<'static>,
}

impl ZkStore {
    /// Creates the layout if it is new, checks its format, reads every record back and
    /// records `master` as the writer from now on (a fenced write: it fails if this master no
    /// longer holds its candidacy).
    pub async fn open(
        candidacy: &Candidacy,
        master: &v1::MasterInfo,
    ) -> Result<(ZkStore, internal::Registry), RegistryError> {
        let url = candidacy.url().clone();
        let session_timeout = candidacy.session_timeout();
        let client = agora_leader::connect(&url, session_timeout)
            .await
            .map_err(|e| RegistryError::Connect(e.to_string()))?;
        let root = format!("{}/registry", url.child(REGISTRY_NODE));
        let acls = agora_leader::acls(&url);
        let store = ZkStore {
            client: Mutex::new(client),
            url,
            session_timeout,
            fence: candidacy.node().to_string(),
            root,
            known: Mutex::new(HashSet::new()),
            commits: AtomicU64::new(0),
            acls,
        };
        store.prepare().await?;
        let registry = store.read().await?;
        store.put_raw("master", &master.encode_to_vec()).await?;
        Ok((store, registry))
    }

    /// How many multi-ops this store committed since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn error(&self, what: impl Into<String>) -> impl FnOnce(zk::Error) -> RegistryError {
        let what = what.into();
        move |source| RegistryError::ZooKeeper { what, source }
    }

    /// The znodes of the layout, and the format version.
    async fn prepare(&self) -> Result<(), RegistryError> {
        let client = self.client();
        let options = zk::CreateMode::Persistent.with_acls(self.acls);
        client
            .mkdir(&self.root, &options)
            .await
            .map_err(self.error(format!("create {}", self.root)))?;
        let format = format!("{}/format", self.root);
        match client.get_data(&format).await {
            Ok((data, _)) if data == FORMAT_VERSION.as_bytes() => {}
            Ok((data, _)) => {
                return Err(RegistryError::Format {
                    path: format.into(),
                    found: String::from_utf8_lossy(&data).into_owned(),
                });
            }
            Err(zk::Error::NoNode) => {
                let created = client.create(&format, FORMAT_VERSION.as_bytes(), &options).await;
                match created {
                    Ok(_) | Err(zk::Error::NodeExists) => {}
                    Err(e) => return Err(self.error(format!("create {format}"))(e)),
                }
            }
            Err(e) => return Err(self.error(format!("read {format}"))(e)),
        }
        // Tables first, then their buckets: requests on one session are applied in order.
        let paths: Vec<String> = Table::ALL
            .iter()
            .map(|table| format!("{}/{}", self.root, table.name()))
            .chain(
                Table::ALL
                    .iter()
                    .flat_map(|table| (0..BUCKETS).map(move |b| self.bucket_path(*table, b))),
            )
            .collect();
        let creates = paths.iter().map(|path| client.create(path, &[], &options));
        for result in futures::future::join_all(creates).await {
            match result {
                Ok(_) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(self.error("create the registry's buckets")(e)),
            }
        }
        Ok(())
    }

    fn bucket_path(&self, table: Table, bucket: u64) -> String {
        format!("{}/{}/{bucket:02}", self.root, table.name())
    }

    fn record_path(&self, table: Table, key: &str) -> String {
        format!("{}/{}", self.bucket_path(table, bucket_of(key)), escape(key))
    }

    /// Every record, table by table.
    async fn read(&self) -> Result<internal::Registry, RegistryError> {
        let client = self.client();
        let mut registry = internal::Registry::default();
        if let Ok((data, _)) = client.get_data(&format!("{}/master", self.root)).await
            && !data.is_empty()
        {
            registry.master = v1::MasterInfo::decode(data.as_slice()).ok();
        }
        let mut known = HashSet::new();
        for table in Table::ALL {
            let mut paths = Vec::new();
            let buckets: Vec<String> = (0..BUCKETS).map(|b| self.bucket_path(table, b)).collect();
            let listings = buckets.iter().map(|bucket| client.list_children(bucket));
            for (bucket, listing) in buckets.iter().zip(futures::future::join_all(listings).await) {
                let children = listing.map_err(self.error(format!("list {bucket}")))?;
                paths.extend(children.into_iter().map(|child| format!("{bucket}/{child}")));
            }
            paths.sort();
            // A window that slides (rather than windows read one after another) keeps
            // READ_WINDOW requests in flight until the last; the answers come in path order.
            let mut next = paths.iter();
            let mut reads = futures::stream::FuturesOrdered::new();
            reads.extend(next.by_ref().take(READ_WINDOW).map(|path| read_one(&client, path)));
            while let Some((path, read)) = reads.next().await {
                reads.extend(next.next().map(|path| read_one(&client, path)));
                let (data, _) = read.map_err(self.error(format!("read {path}")))?;
                decode_into(&mut registry, table, &data).map_err(|source| {
                    RegistryError::Decode {
                        path: path.into(),
                        table: table.name(),
                        key: path.rsplit('/').next().unwrap_or_default().to_string(),
                        source,
                    }
                })?;
                known.insert(path.clone());
            }
        }
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = known;
        Ok(registry)
    }

    /// Writes a node directly under the root (fenced).
    async fn put_raw(&self, name: &str, data: &[u8]) -> Result<(), RegistryError> {
        let path = format!("{}/{name}", self.root);
        self.recheck(&self.client(), std::slice::from_ref(&path)).await?;
        self.write_all(&[(path, Some(data))]).await
    }

    /// The store's current session.
    fn client(&self) -> zk::Client {
        self.client.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens a new session if `client`'s has ended (expired while ZooKeeper was out of reach).
    async fn renew(&self, client: &zk::Client) -> Result<(), RegistryError> {
        if !client.state().is_terminated() {
            return Ok(());
        }
        let fresh = agora_leader::connect(&self.url, self.session_timeout)
            .await
            .map_err(|e| RegistryError::Connect(e.to_string()))?;
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Learns again which of `paths` exist, after a write whose outcome is unknown.
    async fn recheck(&self, client: &zk::Client, paths: &[String]) -> Result<(), RegistryError> {
        let stats = futures::future::join_all(paths.iter().map(|path| client.check_stat(path)));
        let stats = stats.await;
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (path, stat) in paths.iter().zip(stats) {
            if stat.map_err(self.error(format!("stat {path}")))?.is_some() {
                known.insert(path.clone());
            } else {
                known.remove(path);
            }
        }
        Ok(())
    }

    /// Applies `ops` in order; returns once ZooKeeper confirmed every part.
    pub async fn commit(&self, ops: &[RegistryOp]) -> Result<(), RegistryError> {
        // Only the last write of a key in a batch matters; keep the batch's order otherwise.
        let mut writes = writes(ops);
        let mut seen = HashSet::new();
        writes.reverse();
        writes.retain(|w| seen.insert((w.table, w.key.clone())));
        writes.reverse();
        let writes: Vec<(String, Option<&[u8]>)> = writes
            .iter()
            .map(|w| (self.record_path(w.table, &w.key), w.value.as_deref()))
            .collect();
        self.write_all(&writes).await
    }

    /// Writes each path's value (`None` deletes), in order, as fenced multi-ops of at most
    /// `MAX_MULTI_BYTES` each.
    async fn write_all(&self, writes: &[(String, Option<&[u8]>)]) -> Result<(), RegistryError> {
        let mut start = 0;
        while start < writes.len() {
            let mut bytes = 0;
            let mut end = start;
            while end < writes.len() && (end == start || bytes < MAX_MULTI_BYTES) {
                bytes += writes[end].0.len() + writes[end].1.map_or(0, <[u8]>::len);
                end += 1;
            }
            self.write_part(&writes[start..end]).await?;
            self.commits.fetch_add(1, Ordering::Relaxed);
            start = end;
        }
        Ok(())
    }

    /// One multi-op, tried again (see the module documentation) until it is confirmed, the
    /// fence refuses it, or twice the session timeout has passed.
    async fn write_part(&self, part: &[(String, Option<&[u8]>)]) -> Result<(), RegistryError> {
        let deadline = Instant::now() + 2 * self.session_timeout;
        let mut outcome_unknown = false;
        loop {
            let client = self.client();
            let attempt = async {
                if outcome_unknown {
                    let paths: Vec<String> = part.iter().map(|(path, _)| path.clone()).collect();
                    self.recheck(&client, &paths).await?;
                }
                self.try_write(&client, part).await
            };
            let error = match attempt.await {
                Ok(()) => return Ok(()),
                Err(error @ RegistryError::Deposed { .. }) => return Err(error),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(error) => error,
            };
            tracing::warn!(%error, "registry write not confirmed; trying again");
            outcome_unknown = true;
            tokio::time::sleep(RETRY_PAUSE).await;
            if let Err(error) = self.renew(&client).await {
                tracing::warn!(%error, "no new ZooKeeper session for the registry yet");
            }
        }
    }

    /// One fenced multi-op over `client`: create, set or delete as `known` says.
    async fn try_write(
        &self,
        client: &zk::Client,
        part: &[(String, Option<&[u8]>)],
    ) -> Result<(), RegistryError> {
        let options = zk::CreateMode::Persistent.with_acls(self.acls);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut writer =
            client.new_check_writer(&self.fence, None).map_err(self.error("start a write"))?;
        for (path, value) in part {
            let added = match value {
                Some(value) if known.contains(path) => writer.add_set_data(path, value, None),
                Some(value) => {
                    known.insert(path.clone());
                    writer.add_create(path, value, &options)
                }
                None if known.remove(path) => writer.add_delete(path, None),
                None => Ok(()),
            };
            added.map_err(self.error(format!("write {path}")))?;
        }
        writer.commit().await.map_err(|e| self.fence_error(e))?;
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = known;
        Ok(())
    }

    fn fence_error(&self, error: zk::CheckWriteError) -> RegistryError {
        match error {
            zk::CheckWriteError::CheckFailed { .. } => {
                RegistryError::Deposed { node: self.fence.clone() }
            }
            other => RegistryError::ZooKeeper { what: "commit".into(), source: other.into() },
        }
    }
}

/// One record's read, with its path.
async fn read_one<'a>(
    client: &zk::Client,
    path: &'a String,
) -> (&'a String, Result<(Vec<u8>, zk::Stat), zk::Error>) {
    (path, client.get_data(path).await)
}

/// A key's bucket: FNV-1a, stable across versions and machines.
fn bucket_of(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % BUCKETS
}

/// A key as one znode name: letters, digits, `-` and `_` as they are, every other byte as
/// `%XX` (so `/` cannot split it, and `.` or `..` cannot be names).
fn escape(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    if name.is_empty() { "%".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_single_safe_znode_names() {
        assert_eq!(escape("4b7c-S0"), "4b7c-S0");
        assert_eq!(escape("eng/ml"), "eng%2Fml");
        assert_eq!(escape("*"), "%2A");
        assert_eq!(escape(".."), "%2E%2E");
        assert_eq!(escape(""), "%");
        assert!(bucket_of("anything") < BUCKETS);
        assert_eq!(bucket_of("a1"), bucket_of("a1"));
    }

    #[test]
    fn fifty_thousand_agents_spread_under_the_packet_limit() {
        let mut counts = vec![0usize; BUCKETS as usize];
        for i in 0..50_000 {
            let id = format!("{}-S{i}", "8c5e1d3a-2f0b-4b8e-9a51-7d3c2e1f0a9b");
            counts[bucket_of(&id) as usize] += 1;
        }
        // A child listing costs about 4 bytes of length plus the name per child.
        let name = escape("8c5e1d3a-2f0b-4b8e-9a51-7d3c2e1f0a9b-S49999").len() + 4;
        let worst = counts.iter().max().copied().unwrap_or_default() * name;
        assert!(worst < 256 * 1024, "largest bucket listing {worst} bytes: {counts:?}");
    }
}
